//! Live checks against the lab's real upstreams on loopback: a refused port with the app on the
//! next one, an app on 127.0.0.1 only, TLS where plain HTTP is spoken and the reverse, PHP-FPM
//! behind proxy_pass, sockets nginx's workers may not open or that do not exist, TLS servers
//! that need SNI, and names resolved through the configuration's resolver.

use gwdoctor::lab::bench::{Bench, APP_NAME};
use gwdoctor::lab::dns::DnsMode;
use gwdoctor::lab::fpm::Pool;
use gwdoctor::lab::tls::CertKind;
use gwdoctor::lab::upstream::Behaviour;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// Writes `http_body` into an nginx configuration in the bench's directory and runs
/// `gwdoctor config --format json` on it (live checks on, nginx -t off).
fn check(bench: &Bench, http_body: &str, extra: &[&str]) -> (i32, Value) {
    let conf = bench.dir().join("gwdoctor-test.conf");
    std::fs::write(&conf, format!("events {{}}\nhttp {{\n{http_body}\n}}\n")).unwrap();
    let mut args = vec![
        "config",
        "--format",
        "json",
        "--no-nginx-t",
        "--timeout",
        "2",
    ];
    args.extend_from_slice(extra);
    let conf_arg = conf.to_string_lossy().into_owned();
    args.push(&conf_arg);
    let out = Command::new(env!("CARGO_BIN_EXE_gwdoctor"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

fn causes(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["cause"].as_str().unwrap().to_string())
        .collect()
}

fn evidence_of(v: &Value, cause: &str) -> String {
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["cause"] == cause)
        .unwrap_or_else(|| {
            panic!(
                "no {cause} in {:?}\n{}",
                causes(v),
                serde_json::to_string_pretty(&v["checks"]).unwrap()
            )
        });
    f["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}\n",
                e["location"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect()
}

fn server(location: &str) -> String {
    format!(
        "  server {{\n    listen 127.0.0.1:1;\n    location / {{\n      {location}\n    }}\n  }}"
    )
}

#[test]
fn a_healthy_http_target_passes() {
    let mut bench = Bench::new().unwrap();
    let app = bench.upstream(Behaviour::Ok).unwrap();
    let (code, v) = check(&bench, &server(&format!("proxy_pass http://{app};")), &[]);
    assert_eq!(code, 0, "{:?}", causes(&v));
    let live = &v["targets"][0]["live"][0]["attempts"][0];
    assert_eq!(live["connect"], "ok");
    assert_eq!(live["answer"]["protocol"], "http");
    assert_eq!(live["answer"]["status"], 200);
}

#[test]
fn refused_with_the_app_on_the_next_port() {
    let mut bench = Bench::new().unwrap();
    let configured = bench.free_port(bench.ip).unwrap();
    let app = bench
        .upstream_at(bench.ip, configured + 1, Behaviour::Ok)
        .unwrap();
    let (code, v) = check(
        &bench,
        &server(&format!("proxy_pass http://{}:{configured};", bench.ip)),
        &[],
    );
    assert_eq!(code, 1);
    let text = evidence_of(&v, "upstream-port-mismatch");
    assert!(
        text.contains(&format!(
            "listens on port {}, 1 away from {configured}",
            app.port()
        )),
        "{text}"
    );
    assert!(causes(&v).contains(&"upstream-refused".to_string()));
    assert_eq!(
        causes(&v)[0],
        "upstream-port-mismatch",
        "the better explanation ranks first"
    );
}

#[test]
fn refused_because_the_app_listens_on_127_0_0_1_only() {
    let mut bench = Bench::new().unwrap();
    let app = bench
        .upstream_at(std::net::Ipv4Addr::LOCALHOST, 0, Behaviour::Ok)
        .unwrap();
    let (_, v) = check(
        &bench,
        &server(&format!("proxy_pass http://{}:{};", bench.ip, app.port())),
        &[],
    );
    let text = evidence_of(&v, "upstream-listens-localhost");
    assert!(
        text.contains(&format!(
            "listens on 127.0.0.1:{} only, not on {}",
            app.port(),
            bench.ip
        )),
        "{text}"
    );
}

#[test]
fn plain_http_to_a_tls_port_and_https_to_a_plain_port() {
    let mut bench = Bench::new().unwrap();
    let tls = bench
        .upstream_tls(
            Some(CertKind::Valid {
                name: APP_NAME.into(),
            }),
            Behaviour::Ok,
        )
        .unwrap();
    let plain = bench.upstream(Behaviour::Ok).unwrap();
    let body = format!(
        "  server {{\n    listen 127.0.0.1:1;\n    location /a {{ proxy_pass http://{tls}; }}\n    location /b {{ proxy_pass https://{plain}; }}\n  }}"
    );
    let (_, v) = check(&bench, &body, &[]);
    let text = evidence_of(&v, "protocol-mismatch");
    assert!(
        text.contains(&format!("{tls} answered: a TLS server")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{plain} answered: plain HTTP")),
        "{text}"
    );
}

fn have_fpm() -> bool {
    let ok = gwdoctor::lab::fpm::binary().is_some();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "php-fpm must be installed in CI"
        );
        eprintln!("skipped: php-fpm is not installed");
    }
    ok
}

#[test]
fn proxy_pass_to_php_fpm_and_fastcgi_pass_to_it() {
    if !have_fpm() {
        return;
    }
    let mut bench = Bench::new().unwrap();
    let socket = bench.dir().join("fpm.sock");
    bench.php_fpm(&[Pool::new(socket.clone())]).unwrap();
    let s = socket.display();
    let body = format!(
        "  server {{\n    listen 127.0.0.1:1;\n    location /php {{ fastcgi_pass unix:{s}; }}\n    location /wrong {{ proxy_pass http://unix:{s}:/; }}\n  }}"
    );
    let (_, v) = check(&bench, &body, &[]);
    let text = evidence_of(&v, "protocol-mismatch");
    assert!(text.contains("answered: a FastCGI server"), "{text}");
    // The FastCGI target itself is fine: PHP-FPM answered FastCGI.
    let php = &v["targets"][0]["live"][0]["attempts"][0];
    assert_eq!(php["answer"]["protocol"], "fastcgi", "{php}");
    assert!(!text.contains("fastcgi_pass"), "{text}");
}

#[test]
fn sockets_the_workers_may_not_open_or_that_do_not_exist() {
    let mut bench = Bench::new().unwrap();
    let private = bench
        .unix_upstream("private.sock", Behaviour::Ok, 0o600)
        .unwrap();
    let missing: PathBuf = bench.dir().join("missing.sock");
    let body = format!(
        "  server {{\n    listen 127.0.0.1:1;\n    location /a {{ proxy_pass http://unix:{}:/; }}\n    location /b {{ fastcgi_pass unix:{}; }}\n  }}",
        private.display(),
        missing.display()
    );
    let (_, v) = check(&bench, &body, &["--worker-user", "www-data"]);
    let perm = evidence_of(&v, "unix-socket-permission");
    assert!(
        perm.contains("the socket is srw------- (owner root:root): www-data may not write to it"),
        "{perm}"
    );
    let gone = evidence_of(&v, "unix-socket-missing");
    assert!(gone.contains("missing.sock"), "{gone}");
}

#[test]
fn a_tls_server_that_needs_sni() {
    let mut bench = Bench::new().unwrap();
    let app = bench.upstream_tls(None, Behaviour::Ok).unwrap();
    let body = format!(
        "  upstream {APP_NAME} {{ server {app}; }}\n  server {{\n    listen 127.0.0.1:1;\n    location / {{ proxy_pass https://{APP_NAME}; }}\n    location /sni {{ proxy_ssl_server_name on; proxy_pass https://{APP_NAME}; }}\n  }}"
    );
    let (_, v) = check(&bench, &body, &[]);
    let text = evidence_of(&v, "upstream-tls-handshake");
    assert!(text.contains("handshake failed"), "{text}");
    assert!(
        text.contains(&format!("with SNI {APP_NAME}")) && text.contains("handshake succeeded"),
        "{text}"
    );
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["cause"] == "upstream-tls-handshake")
        .unwrap();
    assert!(f["confidence"].as_f64().unwrap() >= 0.9);
    // With SNI configured, the second location's handshake works.
    let sni_ok = v["targets"][1]["live"][0]["attempts"][0]["tls"]["as_configured"].clone();
    assert!(sni_ok.get("Ok").is_some(), "{sni_ok}");
}

#[test]
fn names_resolved_through_the_configured_resolver() {
    let mut bench = Bench::new().unwrap();
    let app = bench.upstream(Behaviour::Ok).unwrap();
    let good = bench
        .dns(DnsMode::Answer {
            v4: vec![bench.ip],
            v6: vec![],
            ttl: 30,
        })
        .unwrap();
    let bad = bench.dns(DnsMode::NxDomain).unwrap();
    let body = format!(
        "  server {{\n    listen 127.0.0.1:1;\n    set $backend app.lab.test:{port};\n    \
         location /good {{ resolver {good}; proxy_pass http://$backend; }}\n    \
         location /bad {{ resolver {bad}; proxy_pass http://$backend; }}\n  }}",
        port = app.port()
    );
    let (_, v) = check(&bench, &body, &[]);
    let text = evidence_of(&v, "upstream-dns-unresolvable");
    assert!(text.contains(&format!("via resolver {bad}")), "{text}");
    assert!(!text.contains(&format!("via resolver {good}")), "{text}");
    let good_live = &v["targets"][0]["live"][0];
    assert_eq!(good_live["resolution"]["addrs"][0], bench.ip.to_string());
    assert_eq!(good_live["attempts"][0]["answer"]["status"], 200);
}

#[test]
fn a_group_where_one_server_of_two_is_down() {
    let mut bench = Bench::new().unwrap();
    let up = bench.upstream(Behaviour::Ok).unwrap();
    let down_port = bench.free_port(bench.ip).unwrap();
    let body = format!(
        "  upstream app {{ server {up}; server {}:{down_port}; }}\n{}",
        bench.ip,
        server("proxy_pass http://app;")
    );
    let (_, v) = check(&bench, &body, &[]);
    let text = evidence_of(&v, "partial-backend-failure");
    assert!(
        text.contains("1 of 2 servers do not accept connections"),
        "{text}"
    );
    assert!(
        text.contains(&format!("server {}:{down_port};", bench.ip)),
        "{text}"
    );
}
