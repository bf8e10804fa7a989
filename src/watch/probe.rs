//! How `watch` probes a target and posts a webhook: with the probe collector's own steps
//! ([`crate::collect::probe`]), driven once per interval, not with a client of its own.
//!
//! One probe is: the system's resolver (getaddrinfo, skipped for an address literal), a TCP
//! connect, for `https://` the rustls handshake with the chain the server presented recorded
//! (so an expired or untrusted certificate is both a named failure and an expiry date), then
//! one HTTP/1.1 GET read with httparse within size bounds. Every step has its deadline inside
//! the target's timeout.
//!
//! What the collector's `gwdoctor probe` does on top of that is left out, because a monitor
//! repeats it every second for every target: no second resolver asked side by side, no
//! redirects followed (a 301 is the answer), no proxy, no HTTP/2 (ALPN offers `http/1.1` only,
//! as blackbox_exporter does by default). The trust anchors (the system's plus `ca_files`) are
//! loaded once per watch, not per probe.
//!
//! When a probe fails it says why in one word, the collector's [`FailureKind`] name
//! (`refused`, `connect-timeout`, `no-response`, `cert-expired`, `cert-unknown-issuer`,
//! `cert-wrong-name`, `tls-alert`, …) or `http-5xx`: the label of
//! `gwdoctor_probe_failures_total{reason}`, so a dashboard shows not just that a target is
//! down but how.

use crate::collect::probe::http::{h1_exchange_with_body, RequestSpec};
use crate::collect::probe::tls::{CertInfo, TlsReport};
use crate::collect::probe::{
    dns, exchange, host_of, tcp, Context, Failure, FailureKind, Limits, Phase, ProbeOptions,
    CONNECT_LIMIT, DNS_LIMIT, HANDSHAKE_LIMIT,
};
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// What is read of an answer: the head within the collector's bound, a body of at most 1 MiB
/// (a health check's body is small; past that reading stops, which is not a failure), and its
/// first 4 KiB kept to recognise whose error page it is.
const LIMITS: Limits = Limits {
    max_head: 64 * 1024,
    max_headers: 128,
    max_body: 1024 * 1024,
    keep_body: 4096,
};

/// Parses a target or webhook URL: `http://` or `https://`, a host, a port that fits. Unlike
/// `gwdoctor probe`, the scheme must be written: a configuration says what it means.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let shown = crate::redact::redact(text);
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return Err(format!(
            "URL {shown}: expected http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH"
        ));
    }
    let url = Url::parse(text).map_err(|e| format!("URL {shown}: {e}"))?;
    if host_of(&url).is_empty() {
        return Err(format!("URL {shown}: no host"));
    }
    Ok(url)
}

/// The certificate facts of one probe: what `gwdoctor_cert_expiry_timestamp_seconds` and the
/// status page show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertFacts {
    /// Unix seconds of the earliest `notAfter` among the certificates the server presented
    /// (as blackbox_exporter's `probe_ssl_earliest_cert_expiry`): usually the leaf's, an
    /// intermediate's when that one runs out first.
    pub expires: i64,
    /// Whole days from the probe to `expires` (29.9 days is 29), negative for the whole days
    /// since it expired (expired 1.5 days ago is -1; an hour ago is 0: compare `expires`).
    pub days_left: i64,
    /// The subject of the certificate that expires first.
    pub subject: String,
    /// The leaf's names (subject alternative names).
    pub names: Vec<String>,
    /// The chain verified: a trusted root, valid now, for this name.
    pub verified: bool,
    /// Why it did not verify: the failure kind's name (`cert-expired`, …).
    pub problem: Option<&'static str>,
}

impl CertFacts {
    /// The facts of a handshake's report, `None` when no certificate was presented (the
    /// handshake failed before it, or the connection did).
    pub fn from_report(report: &TlsReport, now: i64) -> Option<CertFacts> {
        let dated: Vec<(i64, &CertInfo)> = report
            .chain
            .iter()
            .filter_map(|c| Some((rfc3339_unix(&c.not_after)?, c)))
            .collect();
        let (expires, first) = dated.iter().min_by_key(|(t, _)| *t)?;
        Some(CertFacts {
            expires: *expires,
            days_left: whole_days(expires - now),
            subject: first.subject.clone(),
            names: report
                .chain
                .first()
                .map(|leaf| leaf.names.clone())
                .unwrap_or_default(),
            verified: report.verified,
            problem: report.verify_kind.map(FailureKind::name),
        })
    }
}

/// Whole days in `seconds`, rounded toward zero.
pub fn whole_days(seconds: i64) -> i64 {
    seconds / 86_400
}

/// `2026-12-22T03:04:05Z` → Unix seconds.
fn rfc3339_unix(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// The response status, when a response head arrived.
    pub status: Option<u16>,
    /// Why the probe failed (`None`: a complete response below 500 arrived).
    pub failure: Option<&'static str>,
    /// Seconds spent in each phase that was reached: `resolve` (only when a name was looked
    /// up), `connect`, `tls` (https), `first_byte` (from the request sent to the first byte of
    /// the answer), `total`.
    pub phases: Vec<(&'static str, f64)>,
    /// The server's address, once resolved.
    pub addr: Option<SocketAddr>,
    /// A line for people: what happened, with its numbers.
    pub detail: String,
    /// The certificate (https), also when the handshake failed because of it.
    pub cert: Option<CertFacts>,
}

/// Probes and posts with one set of trust anchors: one per watch, shared by every target.
pub struct Prober {
    ctx: Context,
}

impl Prober {
    /// A prober trusting the system's roots plus `extra_roots` (`ca_files`).
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> Prober {
        let options = ProbeOptions {
            // Each probe brings its own deadline (the target's timeout).
            max_redirects: 0,
            system_dns: true,
            http1_only: true,
            extra_roots,
            limits: LIMITS,
            ..ProbeOptions::default()
        };
        Prober {
            ctx: Context {
                tls: crate::collect::probe::tls::TlsClient::new(&options),
                options,
            },
        }
    }

    /// Reads the trust anchors now (a few milliseconds of file reading and parsing): call it on
    /// a blocking thread before the first https probe, so that no probe pays for it.
    pub fn load_anchors(&self) {
        self.ctx.tls.load_anchors();
    }

    /// The address to dial for `url`: an address literal as is, else the system's answer.
    async fn address(
        &self,
        url: &Url,
        deadline: Instant,
    ) -> Result<(SocketAddr, Option<f64>), Failure> {
        let host = host_of(url);
        let port = url.port_or_known_default().unwrap_or(80);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok((SocketAddr::new(ip, port), None));
        }
        let started = Instant::now();
        let answer = dns::system(&host, deadline.min(started + DNS_LIMIT)).await;
        let seconds = started.elapsed().as_secs_f64();
        match answer.addresses.first() {
            Some(ip) => Ok((SocketAddr::new(*ip, port), Some(seconds))),
            None => Err(answer.failure.unwrap_or_else(|| {
                Failure::new(
                    Phase::Dns,
                    FailureKind::DnsNoAddress,
                    format!("{host} has no address"),
                )
            })),
        }
    }

    /// Probes `url` with a GET within `timeout`. A 5xx answer is a failure with reason
    /// `http-5xx`.
    pub async fn probe(&self, url: &Url, timeout: Duration) -> ProbeResult {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut phases = Vec::new();
        let (addr, dns_seconds) = match self.address(url, deadline).await {
            Ok(a) => a,
            Err(f) => {
                phases.push(("resolve", started.elapsed().as_secs_f64()));
                return ProbeResult {
                    status: None,
                    failure: Some(f.kind.name()),
                    phases,
                    addr: None,
                    detail: f.detail,
                    cert: None,
                };
            }
        };
        if let Some(s) = dns_seconds {
            phases.push(("resolve", s));
        }
        let ex = exchange(&self.ctx, url, Some(addr), None, deadline, &LIMITS).await;
        let t = &ex.timings;
        for (phase, ms) in [
            ("connect", t.connect_ms),
            ("tls", t.tls_ms),
            ("first_byte", t.wait_ms),
        ] {
            if let Some(ms) = ms {
                phases.push((phase, ms / 1000.0));
            }
        }
        let total = started.elapsed().as_secs_f64();
        let status = ex.http.as_ref().map(|h| h.status);
        let cert = ex
            .tls
            .as_ref()
            .and_then(|r| CertFacts::from_report(r, super::unix_now()));
        let (failure, detail) = match (&ex.failure, &ex.http) {
            (Some(f), _) => (Some(f.kind.name()), f.detail.clone()),
            (None, Some(h)) => {
                // Whose answer it is, when the signature database recognises an error page.
                let by = h
                    .fingerprint
                    .producer()
                    .map(|hop| format!(", from {}", hop.label()))
                    .unwrap_or_default();
                (
                    (h.status >= 500).then_some("http-5xx"),
                    format!("HTTP {} in {:.1} ms{by}", h.status, total * 1000.0),
                )
            }
            (None, None) => (
                Some(FailureKind::InvalidResponse.name()),
                "no response and no failure recorded".to_string(),
            ),
        };
        // Reached the end of the exchange: the total is what a client waited.
        if ex.http.is_some() {
            phases.push(("total", total));
        }
        ProbeResult {
            status,
            failure,
            phases,
            addr: Some(addr),
            detail,
            cert,
        }
    }

    /// POSTs `body` to `url` within `timeout`; Ok with the status when a response below 300
    /// arrived.
    pub async fn post(
        &self,
        url: &Url,
        content_type: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<u16, String> {
        let deadline = Instant::now() + timeout;
        let (addr, _) = self.address(url, deadline).await.map_err(|f| f.detail)?;
        let stream = tcp::connect(addr, deadline.min(Instant::now() + CONNECT_LIMIT))
            .await
            .map_err(|f| f.detail)?;
        let mut request = RequestSpec::for_url(url, None);
        request.method = "POST";
        request
            .headers
            .push(("Content-Type".to_string(), content_type.to_string()));
        request
            .headers
            .push(("Content-Length".to_string(), body.len().to_string()));
        let outcome = if url.scheme() == "https" {
            let (mut tls, _) = self
                .ctx
                .tls
                .handshake(stream, url, deadline.min(Instant::now() + HANDSHAKE_LIMIT))
                .await
                .map_err(|(f, _)| f.detail)?;
            h1_exchange_with_body(&mut tls, &request, body, &LIMITS, deadline).await
        } else {
            let mut stream = stream;
            h1_exchange_with_body(&mut stream, &request, body, &LIMITS, deadline).await
        };
        match (outcome.report, outcome.failure) {
            // Delivered: what the receiver did with the rest of its answer does not matter.
            (Some(r), _) if (200..300).contains(&r.status) => Ok(r.status),
            (Some(r), _) => Err(format!("HTTP {} {}", r.status, r.reason)),
            (None, Some(f)) => Err(f.detail),
            (None, None) => Err("no response".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(u.port(), Some(8080));
        assert_eq!(host_of(&parse_url("https://[::1]:8443/").unwrap()), "::1");
        assert_eq!(
            parse_url("https://example.test/")
                .unwrap()
                .port_or_known_default(),
            Some(443)
        );
        assert!(parse_url("ftp://h/").unwrap_err().contains("https://"));
        assert!(parse_url("example.test/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
        // Messages never echo a password.
        assert!(!parse_url("http://u:secret@h:x/")
            .unwrap_err()
            .contains("secret"));
    }

    #[test]
    fn the_earliest_expiry_of_the_chain_counts() {
        let cert = |subject: &str, not_after: &str| CertInfo {
            subject: subject.into(),
            issuer: "CN=ca".into(),
            names: vec![subject.into()],
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: not_after.into(),
            days_left: 0,
            self_issued: false,
        };
        let report = TlsReport {
            server_name: "shop".into(),
            version: None,
            cipher: None,
            alpn: None,
            chain: vec![
                cert("leaf", "2027-01-01T00:00:00Z"),
                cert("intermediate", "2026-12-01T00:00:00Z"),
            ],
            verified: false,
            verify_kind: Some(FailureKind::CertUnknownIssuer),
            verify_error: None,
            name_matches: Some(true),
            roots: String::new(),
        };
        let now = rfc3339_unix("2026-11-21T12:00:00Z").unwrap();
        let facts = CertFacts::from_report(&report, now).unwrap();
        assert_eq!(facts.subject, "intermediate");
        assert_eq!(facts.expires, rfc3339_unix("2026-12-01T00:00:00Z").unwrap());
        assert_eq!(facts.days_left, 9);
        assert_eq!(facts.names, ["leaf"]);
        assert_eq!(facts.problem, Some("cert-unknown-issuer"));
        let none = TlsReport {
            chain: Vec::new(),
            ..report
        };
        assert_eq!(CertFacts::from_report(&none, now), None);
    }
}
