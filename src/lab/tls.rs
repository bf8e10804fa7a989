//! Certificates for the fault lab, generated at run time with rcgen.
//!
//! Nothing is written to disk here: the caller writes [`LabCa::cert_pem`] where nginx expects
//! its `proxy_ssl_trusted_certificate`, and hands a [`server_config`] to
//! `lab::upstream::start`. Each [`CertKind`] reproduces one certificate failure that nginx
//! reports when `proxy_ssl_verify on;` is set:
//!
//! | kind         | OpenSSL verify result (nginx error log)                                  |
//! |--------------|---------------------------------------------------------------------------|
//! | `Valid`      | ok                                                                        |
//! | `SelfSigned` | `(18:self-signed certificate)` ("upstream SSL certificate verify error")  |
//! | `Expired`    | `(10:certificate has expired)`                                            |
//! | `WrongName`  | chain ok, then "upstream SSL certificate does not match \"name\""         |
//!
//! [`server_config_requiring_sni`] reproduces the classic failure of `proxy_pass https://…`
//! without `proxy_ssl_server_name on;` in front of a server that insists on SNI: the handshake
//! fails with a `handshake_failure` alert ("sslv3 alert handshake failure … SSL alert number 40").
//!
//! The ring provider is used explicitly; no process-wide default provider is installed.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};
use time::{Duration, OffsetDateTime};

/// The name a `WrongName` certificate is issued for instead of the requested one.
pub const WRONG_NAME: &str = "wrong-name.gwdoctor-lab.invalid";

/// A certificate authority that exists only for one lab run: "gwdoctor lab CA".
pub struct LabCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa").finish_non_exhaustive()
    }
}

impl LabCa {
    /// Generates a fresh CA key (ECDSA P-256) and self-signed CA certificate, valid from a day
    /// ago (clock skew) for a year.
    pub fn new() -> anyhow::Result<LabCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("gwdoctor lab CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        let cert = params.self_signed(&key)?;
        Ok(LabCa { cert, key })
    }

    /// The CA certificate in PEM, to be written as nginx's `proxy_ssl_trusted_certificate`.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate in DER (e.g. for a rustls `RootCertStore`).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

/// Which certificate an upstream presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertKind {
    /// Signed by the lab CA for `name`, valid now.
    Valid { name: String },
    /// Self-signed for `name`, not by the CA. No key-usage extension, so that OpenSSL
    /// recognises it as self-issued and reports `18` rather than `20` (unable to get issuer).
    SelfSigned { name: String },
    /// Signed by the lab CA for `name`, but `not_after` was yesterday.
    Expired { name: String },
    /// Signed by the lab CA, valid now, but for [`WRONG_NAME`] instead of `name`.
    WrongName { name: String },
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "gwdoctor lab");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Parameters of a server certificate for `name` (a DNS name or an IP address literal, which
/// rcgen turns into an IP SAN).
fn leaf_params(name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params.distinguished_name = dn(name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(30);
    Ok(params)
}

/// The certificate for `kind` and its key.
fn issue_cert(ca: &LabCa, kind: &CertKind) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
    let key = KeyPair::generate()?;
    let cert = match kind {
        CertKind::Valid { name } => leaf_params(name)?.signed_by(&key, &ca.cert, &ca.key)?,
        CertKind::Expired { name } => {
            let mut p = leaf_params(name)?;
            let now = OffsetDateTime::now_utc();
            p.not_before = now - Duration::days(30);
            p.not_after = now - Duration::days(1);
            p.signed_by(&key, &ca.cert, &ca.key)?
        }
        CertKind::WrongName { name } => {
            anyhow::ensure!(
                !name.eq_ignore_ascii_case(WRONG_NAME),
                "WrongName needs a name other than {WRONG_NAME}"
            );
            leaf_params(WRONG_NAME)?.signed_by(&key, &ca.cert, &ca.key)?
        }
        CertKind::SelfSigned { name } => {
            let mut p = leaf_params(name)?;
            p.key_usages.clear();
            p.use_authority_key_identifier_extension = false;
            p.self_signed(&key)?
        }
    };
    Ok((cert, key))
}

/// The certificate chain (leaf only; the CA is trusted by the client) and key for `kind`.
fn issue(
    ca: &LabCa,
    kind: &CertKind,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (cert, key) = issue_cert(ca, kind)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((vec![cert.der().clone()], der))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder() -> anyhow::Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>> {
    Ok(ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?)
}

/// A rustls server config (TLS 1.2 and 1.3, ALPN `http/1.1`) presenting a certificate of `kind`.
pub fn server_config(ca: &LabCa, kind: &CertKind) -> anyhow::Result<Arc<ServerConfig>> {
    let (chain, key) = issue(ca, kind)?;
    let mut cfg = builder()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A server config that serves a valid certificate for `name` to a ClientHello with SNI (any
/// name) and fails the handshake of one without SNI, as many CDNs do. A gateway that sends no
/// SNI (nginx without `proxy_ssl_server_name on;`) then logs "SSL_do_handshake() failed (SSL:
/// … sslv3 alert handshake failure … SSL alert number 40) while SSL handshaking to upstream".
///
/// How: a rustls certificate resolver can only refuse with an `access_denied` alert, so for a
/// ClientHello without SNI it hands out the certificate with a signing key that is unusable:
/// it claims no TLS 1.2 signature algorithm (so TLS 1.2 finds no cipher suite and rustls sends
/// `handshake_failure` right after the ClientHello, as CDNs do) and agrees to no signature
/// scheme (so TLS 1.3 sends `handshake_failure` instead of its CertificateVerify).
pub fn server_config_requiring_sni(ca: &LabCa, name: &str) -> anyhow::Result<Arc<ServerConfig>> {
    let (chain, key) = issue(
        ca,
        &CertKind::Valid {
            name: name.to_string(),
        },
    )?;
    let provider = provider();
    let signing = provider.key_provider.load_private_key(key)?;
    let good = Arc::new(CertifiedKey::new(chain.clone(), signing));
    let doomed = Arc::new(CertifiedKey::new(chain, Arc::new(NoSchemes)));
    let mut cfg = builder()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(RequireSni { good, doomed }));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct RequireSni {
    good: Arc<CertifiedKey>,
    doomed: Arc<CertifiedKey>,
}

impl ResolvesServerCert for RequireSni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match hello.server_name() {
            Some(_) => self.good.clone(),
            None => self.doomed.clone(),
        })
    }
}

/// A signing key nobody can use: rustls fails the handshake with a `handshake_failure` alert.
#[derive(Debug)]
struct NoSchemes;

impl SigningKey for NoSchemes {
    fn choose_scheme(&self, _offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        None
    }
    fn algorithm(&self) -> SignatureAlgorithm {
        // No TLS 1.2 cipher suite signs with "anonymous": TLS 1.2 stops at suite selection.
        // TLS 1.3 suites do not depend on it, so 1.3 stops at choose_scheme() above.
        SignatureAlgorithm::Anonymous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::upstream::{start, Behaviour, Bind, Upstream};
    use rustls::pki_types::ServerName;
    use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
    use std::time::Duration as StdDuration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::runtime::Handle;
    use tokio::time::timeout;

    const NAME: &str = "backend.lab.test";

    fn client(
        ca: &LabCa,
        versions: &[&'static rustls::SupportedProtocolVersion],
        sni: bool,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der()).unwrap();
        let mut cfg = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.enable_sni = sni;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    fn upstream(cfg: Arc<ServerConfig>) -> Upstream {
        let bind = Bind::Tcp("127.0.0.1:0".parse().unwrap());
        start(&Handle::current(), bind, Behaviour::Ok, Some(cfg), 0).unwrap()
    }

    /// Handshakes as `name`, sends a GET and returns the response's first line.
    async fn fetch(
        up: &Upstream,
        cfg: Arc<ClientConfig>,
        name: &str,
    ) -> Result<String, rustls::Error> {
        let addr = up.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let sn = ServerName::try_from(name.to_string()).unwrap();
        let conn = tokio_rustls::TlsConnector::from(cfg);
        let io = timeout(StdDuration::from_secs(10), conn.connect(sn, tcp))
            .await
            .expect("handshake deadline");
        let mut tls = io.map_err(|e| {
            e.get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .cloned()
                .unwrap_or_else(|| rustls::Error::General(e.to_string()))
        })?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut all = Vec::new();
        let _ = timeout(StdDuration::from_secs(10), tls.read_to_end(&mut all))
            .await
            .unwrap();
        Ok(String::from_utf8_lossy(&all)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    const BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];

    /// The certificate error that a client trusting `ca` (TLS 1.2 and 1.3, with SNI) gets from
    /// `up` when it asks for [`NAME`]; panics on any other outcome.
    async fn certificate_error(ca: &LabCa, up: &Upstream) -> CertificateError {
        match fetch(up, client(ca, BOTH, true), NAME).await {
            Err(rustls::Error::InvalidCertificate(e)) => e,
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn valid_certificate_is_accepted_over_tls13_and_tls12() {
        let ca = LabCa::new().unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let up = upstream(server_config(&ca, &CertKind::Valid { name: NAME.into() }).unwrap());
        for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let line = fetch(&up, client(&ca, &[v], true), NAME).await.unwrap();
            assert_eq!(line, "HTTP/1.1 200 OK");
        }
        up.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ip_address_names_get_an_ip_san() {
        let ca = LabCa::new().unwrap();
        let up = upstream(
            server_config(
                &ca,
                &CertKind::Valid {
                    name: "127.0.0.1".into(),
                },
            )
            .unwrap(),
        );
        assert_eq!(
            fetch(&up, client(&ca, BOTH, true), "127.0.0.1")
                .await
                .unwrap(),
            "HTTP/1.1 200 OK"
        );
        up.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_certificate_is_rejected() {
        let ca = LabCa::new().unwrap();
        let up = upstream(server_config(&ca, &CertKind::Expired { name: NAME.into() }).unwrap());
        let err = certificate_error(&ca, &up).await;
        assert!(
            matches!(
                err,
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ),
            "{err:?}"
        );
        up.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_name_is_rejected() {
        let ca = LabCa::new().unwrap();
        let up = upstream(server_config(&ca, &CertKind::WrongName { name: NAME.into() }).unwrap());
        let err = certificate_error(&ca, &up).await;
        assert!(
            matches!(
                err,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            "{err:?}"
        );
        // The chain itself is fine: the certificate is valid for the other name.
        assert_eq!(
            fetch(&up, client(&ca, BOTH, true), WRONG_NAME)
                .await
                .unwrap(),
            "HTTP/1.1 200 OK"
        );
        up.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn self_signed_is_rejected() {
        let ca = LabCa::new().unwrap();
        let up = upstream(server_config(&ca, &CertKind::SelfSigned { name: NAME.into() }).unwrap());
        let err = certificate_error(&ca, &up).await;
        assert_eq!(err, CertificateError::UnknownIssuer);
        up.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_sni_is_refused_with_an_alert() {
        let ca = LabCa::new().unwrap();
        let up = upstream(server_config_requiring_sni(&ca, NAME).unwrap());
        // With SNI: fine.
        assert_eq!(
            fetch(&up, client(&ca, BOTH, true), NAME).await.unwrap(),
            "HTTP/1.1 200 OK"
        );
        // Without SNI, TLS 1.3 (what nginx + OpenSSL negotiate): handshake_failure.
        let err = fetch(&up, client(&ca, BOTH, false), NAME)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
        );
        // Without SNI, TLS 1.2 only: handshake_failure as well.
        let err = fetch(&up, client(&ca, &[&rustls::version::TLS12], false), NAME)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
        );
        up.stop();
    }

    #[test]
    fn wrong_name_must_differ() {
        let ca = LabCa::new().unwrap();
        assert!(server_config(
            &ca,
            &CertKind::WrongName {
                name: WRONG_NAME.into()
            }
        )
        .is_err());
    }

    /// Runs `openssl verify` with `options`, trusting `ca_path`, on the PEM certificate at
    /// `leaf_path`; returns what it printed (stdout, then stderr).
    fn openssl_verify(
        options: &[&str],
        ca_path: &std::path::Path,
        leaf_path: &std::path::Path,
    ) -> String {
        let out = std::process::Command::new("openssl")
            .arg("verify")
            .args(options)
            .arg("-CAfile")
            .arg(ca_path)
            .arg(leaf_path)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Cross-check with OpenSSL (what nginx uses) when the `openssl` tool is installed: the
    /// verify error numbers nginx will print.
    #[test]
    fn openssl_agrees_on_verify_errors() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("openssl not installed; skipped");
            return;
        }
        let ca = LabCa::new().unwrap();
        let dir = std::env::temp_dir().join(format!("gwdoctor-lab-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        let cases = [
            (CertKind::Valid { name: NAME.into() }, ": OK"),
            (
                CertKind::SelfSigned { name: NAME.into() },
                "error 18 at 0 depth",
            ),
            (
                CertKind::Expired { name: NAME.into() },
                "error 10 at 0 depth",
            ),
            (CertKind::WrongName { name: NAME.into() }, ": OK"),
        ];
        for (i, (kind, want)) in cases.iter().enumerate() {
            let (cert, _) = issue_cert(&ca, kind).unwrap();
            let p = dir.join(format!("leaf{i}.pem"));
            std::fs::write(&p, cert.pem()).unwrap();
            let text = openssl_verify(&[], &ca_path, &p);
            assert!(text.contains(want), "{kind:?}: {text}");
        }
        // WrongName: the chain verifies, the host check fails.
        let (cert, _) = issue_cert(&ca, &CertKind::WrongName { name: NAME.into() }).unwrap();
        let p = dir.join("wrong.pem");
        std::fs::write(&p, cert.pem()).unwrap();
        let text = openssl_verify(&["-verify_hostname", NAME], &ca_path, &p);
        assert!(text.contains("error 62"), "{text}"); // hostname mismatch
        let _ = std::fs::remove_dir_all(&dir);
    }
}
