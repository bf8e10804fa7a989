//! What the integration tests share.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A GET of `path` with std sockets, bounded in time (5 s to connect, 10 s per read) and size
/// (8 MiB): the body of a 200; panics on any other status.
// Not every test file that includes this module fetches pages.
#[allow(dead_code)]
pub fn get_body(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.take(8 << 20).read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// Calls the macro `$m` with every lab scenario as `test_name => "scenario-name"`, so each test
/// file that runs all scenarios lists them once, here (a test checks the list is complete).
#[macro_export]
macro_rules! with_scenarios {
    ($m:ident) => {
        $m! {
            healthy => "healthy",
            refused => "refused",
            port_mismatch => "port-mismatch",
            listens_localhost => "listens-localhost",
            address_family => "address-family",
            read_timeout => "read-timeout",
            timeout_too_short => "timeout-too-short",
            connect_timeout => "connect-timeout",
            firewall_reject => "firewall-reject",
            unreachable => "unreachable",
            container_loopback => "container-loopback",
            ephemeral_ports => "ephemeral-ports",
            dns_nxdomain_upstream => "dns-nxdomain-upstream",
            dns_timeout_upstream => "dns-timeout-upstream",
            no_resolver => "no-resolver",
            no_live_upstreams => "no-live-upstreams",
            reset => "reset",
            premature_close => "premature-close",
            keepalive_race => "keepalive-race",
            http_to_tls_port => "http-to-tls-port",
            https_to_plain_port => "https-to-plain-port",
            fastcgi_to_http => "fastcgi-to-http",
            grpc_to_http1 => "grpc-to-http1",
            http_to_uwsgi => "http-to-uwsgi",
            uwsgi_big_headers => "uwsgi-big-headers",
            invalid_header => "invalid-header",
            garbage => "garbage",
            invalid_chunked => "invalid-chunked",
            header_too_big => "header-too-big",
            tls_expired => "tls-expired",
            tls_self_signed => "tls-self-signed",
            tls_wrong_name => "tls-wrong-name",
            tls_no_sni => "tls-no-sni",
            passthrough_502 => "passthrough-502",
            crash => "crash",
            partial_backend => "partial-backend",
            backlog_full => "backlog-full",
            worker_connections => "worker-connections",
            gateway_port_taken => "gateway-port-taken",
            reload_failed => "reload-failed",
            fpm_socket_missing => "fpm-socket-missing",
            fpm_socket_permission => "fpm-socket-permission",
            fpm_max_children => "fpm-max-children",
            fpm_terminate => "fpm-terminate",
            gunicorn_timeout => "gunicorn-timeout",
        }
    };
}

/// Asserts that some evidence of `finding` satisfies `holds`; shows all of it otherwise.
#[allow(dead_code)]
pub fn assert_evidence(
    finding: &gwdoctor::findings::Finding,
    holds: impl Fn(&gwdoctor::findings::Evidence) -> bool,
) {
    assert!(
        finding.evidence.iter().any(holds),
        "{}: {:#?}",
        finding.cause,
        finding.evidence
    );
}

/// Asserts that some check of the walk satisfies `holds`; shows every check otherwise.
#[allow(dead_code)]
pub fn assert_check(
    diagnosis: &gwdoctor::diagnose::Diagnosis,
    holds: impl Fn(&gwdoctor::findings::Check) -> bool,
) {
    assert!(
        diagnosis.checks.iter().any(holds),
        "{:#?}",
        diagnosis.checks
    );
}
