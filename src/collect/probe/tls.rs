//! The TLS handshake of an exchange, as a browser does it (rustls, the system's trust anchors,
//! SNI, ALPN `h2` + `http/1.1`), with everything a person checks written down: version, cipher,
//! ALPN, the certificate chain (x509-parser) with days to expiry, whether the name matches, and
//! every failure named (expired, not yet valid, unknown issuer, wrong name, an alert from the
//! server, no common version, not TLS at all).
//!
//! The certificate is verified by rustls' own WebPKI verifier. A thin wrapper around it
//! ([`Recorder`]) keeps a copy of the chain the server presented and of the verifier's verdict,
//! so that a failed handshake still shows the certificate that caused it, and so that
//! `--insecure` can go on past a bad certificate while the problem is still reported.
//!
//! The ring provider is passed explicitly to every configuration; no process-wide default
//! provider is installed.

use super::{ms, Failure, FailureKind, Phase, ProbeOptions};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::Serialize;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use url::Url;

/// A certificate expiring within this many days is worth a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// One certificate of the chain the server presented.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// The names it is valid for (subject alternative names: DNS names and IP addresses).
    pub names: Vec<String>,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
    /// Whole days until `not_after`; negative once expired.
    pub days_left: i64,
    /// Issuer equals subject: a root, or a self-signed leaf.
    pub self_issued: bool,
}

/// What the handshake showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsReport {
    /// The name sent as SNI and checked against the certificate (an address literal is not
    /// sent as SNI, but still checked).
    pub server_name: String,
    /// `TLS 1.3`, `TLS 1.2`; absent when the handshake did not finish.
    pub version: Option<String>,
    pub cipher: Option<String>,
    /// The protocol agreed by ALPN (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
    /// The chain as presented, leaf first.
    pub chain: Vec<CertInfo>,
    /// The chain leads to a trusted root and the leaf is valid now for the name.
    pub verified: bool,
    /// Why it did not verify, named.
    pub verify_kind: Option<FailureKind>,
    /// rustls' words for it.
    pub verify_error: Option<String>,
    /// Whether the leaf names this host (checked on its own, whatever else failed).
    pub name_matches: Option<bool>,
    /// The trust anchors used: `system (N)` and any `--ca-file` ones.
    pub roots: String,
}

impl TlsReport {
    fn new(server_name: String, roots: String) -> TlsReport {
        TlsReport {
            server_name,
            version: None,
            cipher: None,
            alpn: None,
            chain: Vec::new(),
            verified: false,
            verify_kind: None,
            verify_error: None,
            name_matches: None,
            roots,
        }
    }

    /// Days until the leaf expires.
    pub fn leaf_days_left(&self) -> Option<i64> {
        self.chain.first().map(|c| c.days_left)
    }
}

/// The verifier built once per run (loading the system's roots costs a few milliseconds), or
/// why it could not be built.
struct Anchors {
    verifier: Result<Arc<WebPkiServerVerifier>, String>,
    description: String,
}

/// Makes TLS connections for one probe run.
pub struct TlsClient {
    provider: Arc<CryptoProvider>,
    extra_roots: Vec<CertificateDer<'static>>,
    insecure: bool,
    alpn: Vec<Vec<u8>>,
    anchors: OnceLock<Anchors>,
}

impl TlsClient {
    pub fn new(options: &ProbeOptions) -> TlsClient {
        let alpn = if options.http1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        TlsClient {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            extra_roots: options.extra_roots.clone(),
            insecure: options.insecure,
            alpn,
            anchors: OnceLock::new(),
        }
    }

    /// Loads the trust anchors now (the system's store takes a few milliseconds to read and
    /// parse), so that it is not counted in a handshake's time.
    pub fn load_anchors(&self) {
        let _ = self.anchors();
    }

    fn anchors(&self) -> &Anchors {
        self.anchors.get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            let (system, _ignored) = roots.add_parsable_certificates(native.certs);
            let mut extra = 0;
            for cert in &self.extra_roots {
                if roots.add(cert.clone()).is_ok() {
                    extra += 1;
                }
            }
            let description = if extra > 0 {
                format!("system ({system}) + {extra} from --ca-file")
            } else {
                format!("system ({system})")
            };
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| format!("no trust anchors to verify with: {e}"));
            Anchors {
                verifier,
                description,
            }
        })
    }

    /// The handshake over `tcp` for `url`'s host, before `deadline`.
    #[allow(clippy::type_complexity)]
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        url: &Url,
        deadline: Instant,
    ) -> Result<(TlsStream<TcpStream>, TlsReport), (Failure, Option<TlsReport>)> {
        let host = super::host_of(url);
        let anchors = self.anchors();
        let mut report = TlsReport::new(host.clone(), anchors.description.clone());
        let server_name = match ServerName::try_from(host.clone()) {
            Ok(n) => n,
            Err(e) => {
                let f = Failure::new(
                    Phase::Tls,
                    FailureKind::TlsOther,
                    format!("{host:?} is not a name TLS can check: {e}"),
                );
                return Err((f, Some(report)));
            }
        };
        let recorder = Arc::new(Recorder {
            inner: anchors.verifier.clone(),
            provider: self.provider.clone(),
            insecure: self.insecure,
            seen: Mutex::new(None),
        });
        let config = match ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
        {
            Ok(b) => {
                let mut c = b
                    .dangerous()
                    .with_custom_certificate_verifier(recorder.clone())
                    .with_no_client_auth();
                c.alpn_protocols = self.alpn.clone();
                c
            }
            Err(e) => {
                let f = Failure::new(
                    Phase::Tls,
                    FailureKind::TlsOther,
                    format!("TLS configuration: {e}"),
                );
                return Err((f, Some(report)));
            }
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let started = Instant::now();
        let result =
            tokio::time::timeout_at(deadline, connector.connect(server_name.clone(), tcp)).await;
        // Whatever happened, the chain the server presented (if it got that far).
        recorder.fill(&mut report, &server_name);
        match result {
            Ok(Ok(stream)) => {
                let (_, conn) = stream.get_ref();
                report.version = conn.protocol_version().map(version_name);
                report.cipher = conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()));
                report.alpn = conn
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                Ok((stream, report))
            }
            Ok(Err(e)) => {
                let failure = classify(&e, &report);
                Err((failure, Some(report)))
            }
            Err(_) => {
                let f = Failure::new(
                    Phase::Tls,
                    FailureKind::NoResponse,
                    format!(
                        "TLS handshake with {host}: no answer in {} ms",
                        ms(started.elapsed())
                    ),
                );
                Err((f, Some(report)))
            }
        }
    }
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Names a failed handshake.
fn classify(e: &std::io::Error, report: &TlsReport) -> Failure {
    let tls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let (kind, detail) = match tls_error {
        Some(rustls::Error::InvalidCertificate(c)) => {
            let kind = certificate_kind(c);
            (kind, certificate_detail(kind, c, report))
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            let kind = match alert {
                rustls::AlertDescription::ProtocolVersion
                | rustls::AlertDescription::InsufficientSecurity => FailureKind::TlsIncompatible,
                _ => FailureKind::TlsAlert,
            };
            (
                kind,
                format!("the server ended the handshake with the alert {alert:?}"),
            )
        }
        Some(rustls::Error::PeerIncompatible(why)) => (
            FailureKind::TlsIncompatible,
            format!("no TLS version or cipher in common with the server ({why:?})"),
        ),
        Some(rustls::Error::InvalidMessage(why)) => (
            FailureKind::ProtocolMismatch,
            format!(
                "the server does not speak TLS on this port ({why:?}): plain HTTP on an https URL?"
            ),
        ),
        Some(other) => (
            FailureKind::TlsOther,
            format!("TLS handshake failed: {other}"),
        ),
        None => match e.kind() {
            std::io::ErrorKind::ConnectionReset => (
                FailureKind::Reset,
                "the server reset the connection during the TLS handshake".to_string(),
            ),
            std::io::ErrorKind::UnexpectedEof => (
                FailureKind::Truncated,
                "the server closed the connection during the TLS handshake".to_string(),
            ),
            _ => (FailureKind::TlsOther, format!("TLS handshake failed: {e}")),
        },
    };
    Failure::new(Phase::Tls, kind, detail).with_errno(e.raw_os_error())
}

fn certificate_kind(c: &CertificateError) -> FailureKind {
    match c {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            FailureKind::CertExpired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            FailureKind::CertNotYetValid
        }
        CertificateError::UnknownIssuer => FailureKind::CertUnknownIssuer,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            FailureKind::CertWrongName
        }
        CertificateError::Revoked => FailureKind::CertRevoked,
        _ => FailureKind::CertOther,
    }
}

/// The certificate problem with the numbers that matter (dates, names, issuer).
fn certificate_detail(kind: FailureKind, c: &CertificateError, report: &TlsReport) -> String {
    let leaf = report.chain.first();
    match (kind, leaf) {
        (FailureKind::CertExpired, Some(l)) => format!(
            "the certificate of {} expired on {} ({} days ago)",
            report.server_name,
            l.not_after,
            // days_left is rounded down (-2 for one day and an hour ago): whole days since.
            -l.days_left - 1
        ),
        (FailureKind::CertNotYetValid, Some(l)) => format!(
            "the certificate of {} is not valid before {}",
            report.server_name, l.not_before
        ),
        (FailureKind::CertWrongName, Some(l)) => format!(
            "the certificate is for {} , not {}",
            if l.names.is_empty() {
                l.subject.clone()
            } else {
                l.names.join(", ")
            },
            report.server_name
        ),
        (FailureKind::CertUnknownIssuer, Some(l)) => format!(
            "the certificate of {} is issued by {:?}{}, which is not a trusted root (roots: {})",
            report.server_name,
            l.issuer,
            if l.self_issued { " (self-signed)" } else { "" },
            report.roots
        ),
        _ if format!("{c:?}").contains("CaUsedAsEndEntity") => format!(
            "the certificate of {} is a CA certificate (basicConstraints CA:TRUE) used as the server's own; clients reject it",
            report.server_name
        ),
        _ => format!(
            "the certificate of {} does not verify: {c:?}",
            report.server_name
        ),
    }
}

/// What the verifier saw during one handshake.
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    verdict: Result<(), rustls::Error>,
}

/// Wraps the WebPKI verifier: keeps the chain and the verdict, and under `--insecure` lets a
/// bad certificate through (the verdict is still reported).
#[derive(Debug)]
struct Recorder {
    inner: Result<Arc<WebPkiServerVerifier>, String>,
    provider: Arc<CryptoProvider>,
    insecure: bool,
    seen: Mutex<Option<Seen>>,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seen")
            .field("certs", &self.chain.len())
            .finish()
    }
}

impl Recorder {
    /// Copies what was seen into the report: the parsed chain, the verdict, the name check.
    fn fill(&self, report: &mut TlsReport, name: &ServerName<'_>) {
        let seen = self.seen.lock().map(|mut s| s.take()).unwrap_or(None);
        let Some(seen) = seen else { return };
        report.chain = seen.chain.iter().filter_map(cert_info).collect();
        report.name_matches = seen.chain.first().map(|leaf| {
            webpki::EndEntityCert::try_from(leaf)
                .map(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
                .unwrap_or(false)
        });
        match seen.verdict {
            Ok(()) => report.verified = true,
            Err(e) => {
                report.verify_kind = Some(match &e {
                    rustls::Error::InvalidCertificate(c) => certificate_kind(c),
                    _ => FailureKind::CertOther,
                });
                report.verify_error = Some(e.to_string());
            }
        }
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Ok(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ()),
            Err(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let result = match (&verdict, self.insecure) {
            (Ok(()), _) | (Err(_), true) => Ok(ServerCertVerified::assertion()),
            (Err(e), false) => Err(e.clone()),
        };
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(Seen { chain, verdict });
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The facts of one certificate, read with x509-parser.
pub fn cert_info(der: &CertificateDer<'_>) -> Option<CertInfo> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let days_left = (validity.not_after.timestamp() - now).div_euclid(86_400);
    let rfc3339 = |t: &x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
        not_before: rfc3339(&validity.not_before),
        not_after: rfc3339(&validity.not_after),
        days_left,
        self_issued: cert.subject() == cert.issuer(),
    })
}

/// Reads PEM certificates (`--ca-file`). The message names the file.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > 16 * 1024 * 1024 {
        return Err(format!(
            "{}: larger than 16 MiB, not a CA file",
            path.display()
        ));
    }
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e:?}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        ));
    }
    Ok(certs)
}
