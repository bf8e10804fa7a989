//! The client's own HTTP proxy: `http_proxy` / `HTTP_PROXY`, `https_proxy` / `HTTPS_PROXY`,
//! `all_proxy` / `ALL_PROXY` and `no_proxy` / `NO_PROXY`, as curl reads them (the lowercase
//! name first). A probe goes through the proxy the way the user's tools would, and then makes
//! the same request directly: when the proxied request fails and the direct one works, the
//! failing gateway is the client's proxy, not the site (`client-proxy`).
//!
//! Plain-HTTP URLs are sent to the proxy in absolute form (`GET http://site/path`); https URLs
//! go through a `CONNECT site:443` tunnel, and TLS runs end to end inside it. Only `http://`
//! proxies are spoken to; another scheme (socks5, https) is reported and the probe goes direct.

use super::http::{h1_exchange, RequestSpec, USER_AGENT};
use super::{Context, Failure, FailureKind, HttpReport, Limits, Phase, RequestReport};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::Url;

/// The proxy variables of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// For http:// URLs: (variable name, value).
    pub http: Option<(String, String)>,
    /// For https:// URLs.
    pub https: Option<(String, String)>,
    /// For both, when the specific one is not set.
    pub all: Option<(String, String)>,
    /// Hosts reached directly.
    pub no_proxy: Option<(String, String)>,
}

impl ProxySettings {
    /// Reads the variables (lowercase first, as curl).
    pub fn from_env() -> ProxySettings {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (the environment, or a test's map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> ProxySettings {
        let pick = |lower: &str, upper: &str| {
            [lower, upper].into_iter().find_map(|n| {
                get(n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (n.to_string(), v.trim().to_string()))
            })
        };
        ProxySettings {
            http: pick("http_proxy", "HTTP_PROXY"),
            https: pick("https_proxy", "HTTPS_PROXY"),
            all: pick("all_proxy", "ALL_PROXY"),
            no_proxy: pick("no_proxy", "NO_PROXY"),
        }
    }

    /// What to do for `url`.
    pub fn choose(&self, url: &Url) -> ProxyChoice {
        let setting = match url.scheme() {
            "https" => self.https.as_ref().or(self.all.as_ref()),
            _ => self.http.as_ref().or(self.all.as_ref()),
        };
        let Some((variable, value)) = setting else {
            return ProxyChoice::Direct;
        };
        let host = super::host_of(url);
        let port = url.port_or_known_default().unwrap_or(80);
        if let Some((no_var, list)) = &self.no_proxy {
            if let Some(entry) = no_proxy_match(list, &host, port) {
                return ProxyChoice::Bypassed(format!("{no_var} entry {entry:?} matches {host}"));
            }
        }
        let text = if value.contains("://") {
            value.clone()
        } else {
            format!("http://{value}")
        };
        match Url::parse(&text) {
            Ok(u) if u.scheme() == "http" && u.host().is_some() => ProxyChoice::Use(Proxy {
                url: u,
                variable: variable.clone(),
            }),
            Ok(u) => ProxyChoice::Unsupported(format!(
                "{variable} names a {}:// proxy, which the probe does not speak; probed directly",
                u.scheme()
            )),
            Err(e) => ProxyChoice::Unsupported(format!(
                "{variable}={:?} is not a proxy URL ({e}); probed directly",
                crate::redact::redact(value)
            )),
        }
    }
}

/// The proxy decision for one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChoice {
    /// No proxy variable applies.
    Direct,
    /// `NO_PROXY` excludes the host (the text says which entry).
    Bypassed(String),
    /// A proxy of a kind the probe cannot speak (the text says which).
    Unsupported(String),
    Use(Proxy),
}

/// `Some(entry)` when an entry of a `NO_PROXY` list covers `host:port`. Entries: `*`, a domain
/// (`example.com` or `.example.com`: the domain and its subdomains), an address, a CIDR block
/// (`10.0.0.0/8`), each optionally with `:port`.
pub fn no_proxy_match(list: &str, host: &str, port: u16) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    for raw in list
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if raw == "*" {
            return Some(raw.to_string());
        }
        let mut entry = raw.to_ascii_lowercase();
        // A port, when given, must match (not for IPv6 literals without brackets).
        if let Some((name, p)) = entry.rsplit_once(':') {
            if !name.contains(':') || name.ends_with(']') {
                if let Ok(p) = p.parse::<u16>() {
                    if p != port {
                        continue;
                    }
                    entry = name.to_string();
                }
            }
        }
        let entry = entry.trim_start_matches('[').trim_end_matches(']');
        if let Some((net, bits)) = entry.split_once('/') {
            if let (Some(ip), Ok(net), Ok(bits)) =
                (host_ip, net.parse::<IpAddr>(), bits.parse::<u32>())
            {
                if in_cidr(ip, net, bits) {
                    return Some(raw.to_string());
                }
            }
            continue;
        }
        if let (Some(ip), Ok(e)) = (host_ip, entry.parse::<IpAddr>()) {
            if ip == e {
                return Some(raw.to_string());
            }
            continue;
        }
        let domain = entry.trim_start_matches("*.").trim_start_matches('.');
        if !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}"))) {
            return Some(raw.to_string());
        }
    }
    None
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// An HTTP proxy in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub url: Url,
    /// The variable it came from (`HTTPS_PROXY` …).
    pub variable: String,
}

impl Proxy {
    /// `http://proxy:3128` (credentials redacted) and its variable.
    pub fn shown(&self) -> String {
        format!("{} (from {})", super::shown(&self.url), self.variable)
    }

    /// `Proxy-Authorization` from credentials in the proxy URL.
    pub fn authorization(&self) -> Option<String> {
        super::http::basic_auth(&self.url)
    }

    /// The proxy's address (its name through the system resolver).
    pub async fn address(&self, deadline: Instant) -> Result<SocketAddr, Failure> {
        let host = super::host_of(&self.url);
        let port = self.url.port_or_known_default().unwrap_or(3128);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let answer = super::dns::system(&host, deadline).await;
        match (answer.addresses.first(), answer.failure) {
            (Some(ip), _) => Ok(SocketAddr::new(*ip, port)),
            (None, Some(mut f)) => {
                f.detail = format!("the proxy's name: {}", f.detail);
                Err(f)
            }
            (None, None) => Err(Failure::new(
                Phase::Dns,
                FailureKind::DnsNoAddress,
                format!("the proxy {host} has no address"),
            )),
        }
    }

    /// Opens a `CONNECT` tunnel to `url`'s host and port on `stream`. On refusal, the proxy's
    /// answer comes back with the failure (its error page tells who refused).
    pub async fn tunnel(
        &self,
        stream: &mut TcpStream,
        url: &Url,
        deadline: Instant,
        limits: &Limits,
    ) -> Result<(), (Failure, Option<Box<HttpReport>>)> {
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            Some(h) => h.to_string(),
            None => String::new(),
        };
        let authority = format!("{host}:{}", url.port_or_known_default().unwrap_or(443));
        let mut headers = vec![("User-Agent".to_string(), USER_AGENT.to_string())];
        if let Some(auth) = self.authorization() {
            headers.push(("Proxy-Authorization".to_string(), auth));
        }
        let spec = RequestSpec {
            method: "CONNECT",
            target: authority.clone(),
            host: authority.clone(),
            headers,
        };
        let outcome = h1_exchange(stream, &spec, limits, deadline).await;
        match (outcome.report, outcome.failure) {
            (Some(r), None) if (200..300).contains(&r.status) => Ok(()),
            (Some(r), failure) => {
                let detail = format!(
                    "the proxy answered CONNECT {authority} with {} {}{}",
                    r.status,
                    r.reason,
                    failure
                        .map(|f| format!(" ({})", f.detail))
                        .unwrap_or_default()
                );
                Err((
                    Failure::new(Phase::Proxy, FailureKind::ProxyTunnelRefused, detail),
                    Some(Box::new(r)),
                ))
            }
            (None, Some(mut f)) => {
                f.phase = Phase::Proxy;
                f.detail = format!("CONNECT {authority} through the proxy: {}", f.detail);
                Err((f, None))
            }
            (None, None) => Err((
                Failure::new(
                    Phase::Proxy,
                    FailureKind::EmptyReply,
                    "the proxy did not answer CONNECT",
                ),
                None,
            )),
        }
    }
}

/// The proxy in use and the same request made directly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyReport {
    /// The proxy (credentials redacted) and its variable.
    pub proxy: String,
    /// The direct request (one, to the first address), or none when the site has no address
    /// this machine can resolve.
    pub direct: Option<RequestReport>,
}

/// Makes the request directly, for comparison with the proxied ones.
pub(crate) async fn compare(
    ctx: &Context,
    url: &Url,
    addresses: &[SocketAddr],
    proxy: &Proxy,
    dns_ms: Option<f64>,
) -> ProxyReport {
    let direct = match addresses.first() {
        Some(a) => Some(super::request(ctx, 0, url, Some(*a), None, dns_ms, Instant::now()).await),
        None => None,
    };
    ProxyReport {
        proxy: proxy.shown(),
        direct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_entries() {
        assert_eq!(no_proxy_match("*", "a.b", 80).as_deref(), Some("*"));
        assert!(no_proxy_match("example.com", "www.example.com", 443).is_some());
        assert!(no_proxy_match(".example.com", "example.com", 443).is_some());
        assert!(no_proxy_match("example.com", "badexample.com", 443).is_none());
        assert!(no_proxy_match("example.com:8080", "example.com", 443).is_none());
        assert!(no_proxy_match("example.com:443", "example.com", 443).is_some());
        assert!(no_proxy_match("localhost,127.0.0.0/8", "127.1.2.3", 80).is_some());
        assert!(no_proxy_match("10.0.0.0/8", "127.1.2.3", 80).is_none());
        assert!(no_proxy_match("::1", "::1", 80).is_some());
        assert!(no_proxy_match("[::1]:80", "::1", 80).is_some());
    }

    #[test]
    fn the_lowercase_variable_wins_and_no_proxy_bypasses() {
        let env = |n: &str| match n {
            "https_proxy" => Some("http://user:pw@127.0.0.9:3128".to_string()),
            "HTTPS_PROXY" => Some("http://127.0.0.8:3128".to_string()),
            "NO_PROXY" => Some("internal.test".to_string()),
            _ => None,
        };
        let s = ProxySettings::from_lookup(env);
        let url = Url::parse("https://example.test/").unwrap();
        match s.choose(&url) {
            ProxyChoice::Use(p) => {
                assert_eq!(p.variable, "https_proxy");
                assert!(!p.shown().contains("pw"), "{}", p.shown());
                assert!(p.authorization().unwrap().starts_with("Basic "));
            }
            other => panic!("{other:?}"),
        }
        let url = Url::parse("https://api.internal.test/").unwrap();
        assert!(matches!(s.choose(&url), ProxyChoice::Bypassed(_)));
        let url = Url::parse("http://example.test/").unwrap();
        assert_eq!(s.choose(&url), ProxyChoice::Direct);
        let socks = ProxySettings::from_lookup(|n| {
            (n == "all_proxy").then(|| "socks5://127.0.0.1:1080".to_string())
        });
        assert!(matches!(socks.choose(&url), ProxyChoice::Unsupported(_)));
    }
}
