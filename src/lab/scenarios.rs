//! The lab's scenarios, one per failure mode: each sets up real upstreams (and PHP-FPM, app
//! servers, a DNS responder, a network namespace where it must) behind a real nginx, says what to
//! send, and what the client and the logs must show.
//!
//! Causes that cannot happen on one machine are listed in [`NOT_REPRODUCIBLE`] with the reason.

use super::appserver::Kind as App;
use super::bench::{Bench, APP_NAME};
use super::client::LabRequest;
use super::dns::DnsMode;
use super::fpm::Pool;
use super::nginx::NginxParts;
use super::scenario::{Expect, Need, Plan, Scenario, Step};
use super::tls::CertKind;
use super::upstream::{Behaviour, Bind};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// `location / { proxy_pass TARGET; EXTRA }`.
fn location(directive: &str, target: &str, extra: &str) -> NginxParts {
    NginxParts {
        server: format!("    location / {{\n      {directive} {target};\n      {extra}\n    }}\n"),
        ..Default::default()
    }
}

fn proxy(target: &str, extra: &str) -> NginxParts {
    location("proxy_pass", target, extra)
}

fn gets(n: usize) -> Step {
    Step::Sequential((0..n).map(|_| LabRequest::get("/")).collect())
}

fn plan(
    nginx: NginxParts,
    steps: Vec<Step>,
    outcomes: &[&'static str],
    log_causes: &[&'static str],
) -> Plan {
    Plan {
        nginx,
        steps,
        expect: Expect {
            outcomes: outcomes.to_vec(),
            log_causes: log_causes.to_vec(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// FastCGI to a PHP-FPM socket, the way Debian's snippets/fastcgi-php.conf does it.
fn fastcgi(socket: &std::path::Path, docroot: &std::path::Path, extra: &str) -> NginxParts {
    NginxParts {
        server: format!(
            "    root {root};\n    location ~ \\.php$ {{\n      include /etc/nginx/fastcgi_params;\n      \
             fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n      \
             fastcgi_pass unix:{socket};\n      {extra}\n    }}\n",
            root = docroot.display(),
            socket = socket.display(),
        ),
        ..Default::default()
    }
}

/// Causes of `shared/causes.md` that the lab cannot reproduce on one machine, and why.
pub const NOT_REPRODUCIBLE: &[(&str, &str)] = &[
    ("client-proxy", "the client's own proxy or VPN: a property of the user's machine, seen by `probe`, not by a gateway"),
    ("client-dns-mismatch", "needs two resolvers that disagree for a public name; the client's view is `probe`'s job"),
    ("dns-nxdomain", "the site's own name in public DNS; tested by `probe` against the lab's DNS responder instead"),
    ("dns-failure", "the client's resolver failing; tested by `probe` against the lab's DNS responder instead"),
    ("edge-error", "a CDN's own failure; its error pages are recognised from real-format fixtures"),
    ("edge-origin-error", "a CDN in front of the origin; its error pages are recognised from real-format fixtures"),
    ("waf-blocked", "a WAF answers 403, not a gateway error; recognised from its block pages and ModSecurity lines"),
    ("selinux-denied", "needs an SELinux kernel in enforcing mode; Debian and this sandbox have none"),
    ("oom-killed", "needs the kernel's OOM killer to kill a process, which this sandbox does not allow safely"),
    ("host-cpu-saturated", "saturating both cores would make every other test flaky; tested on captured /proc files"),
    ("host-memory-exhausted", "exhausting memory is unsafe on a shared machine; tested on captured /proc files"),
    ("conntrack-full", "the sandbox's network stack has no nf_conntrack table to fill"),
    ("overload", "a rate effect over minutes of traffic; tested on generated access logs"),
    ("container-down", "needs a container engine; none runs on this machine"),
    ("k8s-no-endpoints", "needs a Kubernetes cluster"),
    ("k8s-pod-terminating", "needs a Kubernetes cluster"),
    ("site-cert-invalid", "a client-side TLS check of the site; `probe` tests it against the lab's TLS upstreams"),
    ("host-disk-full", "needs mounting a tiny file system, which the lab does not do on a shared machine"),
];

/// Every scenario, the healthy control first.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "healthy",
            cause: "none",
            summary: "a working upstream: the control, every request answers 200",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Ok)?;
                let mut p = plan(proxy(&format!("http://{up}"), ""), vec![gets(3)], &["200"], &[]);
                p.expect.never = vec!["502", "503", "504", "500"];
                Ok(p)
            },
        },
        Scenario {
            name: "refused",
            cause: "upstream-refused",
            summary: "proxy_pass to a port where nothing listens",
            needs: &[],
            setup: |b| {
                let port = b.free_port(b.ip)?;
                Ok(plan(proxy(&format!("http://{}:{port}", b.ip), ""), vec![gets(2)], &["502"], &["upstream-refused"]))
            },
        },
        Scenario {
            name: "port-mismatch",
            cause: "upstream-port-mismatch",
            summary: "the app listens on one port, proxy_pass names the next one",
            needs: &[],
            setup: |b| {
                let app = b.upstream(Behaviour::Ok)?;
                let mut wrong = app.port().wrapping_add(1);
                if std::net::TcpListener::bind((b.ip, wrong)).is_err() {
                    wrong = b.free_port(b.ip)?;
                }
                Ok(plan(proxy(&format!("http://{}:{wrong}", b.ip), ""), vec![gets(2)], &["502"], &["upstream-refused"]))
            },
        },
        Scenario {
            name: "listens-localhost",
            cause: "upstream-listens-localhost",
            summary: "the app binds 127.0.0.1 only; nginx dials another address of the host",
            needs: &[],
            setup: |b| {
                let app = b.upstream_at(Ipv4Addr::LOCALHOST, 0, Behaviour::Ok)?;
                Ok(plan(proxy(&format!("http://{}:{}", b.ip, app.port()), ""), vec![gets(2)], &["502"], &["upstream-refused"]))
            },
        },
        Scenario {
            name: "address-family",
            cause: "upstream-address-family",
            summary: "the upstream name resolves to ::1 and an IPv4 address; the app listens on IPv4 only",
            needs: &[],
            setup: |b| {
                let app = b.upstream(Behaviour::Ok)?;
                let dns = b.dns(DnsMode::Answer { v4: vec![b.ip], v6: vec![Ipv6Addr::LOCALHOST], ttl: 300 })?;
                let parts = NginxParts {
                    server: format!(
                        "    resolver {dns} valid=300s;\n    location / {{\n      set $app {APP_NAME};\n      proxy_pass http://$app:{port};\n    }}\n",
                        port = app.port()
                    ),
                    ..Default::default()
                };
                // nginx's resolver hands the addresses out in a random order per request; a
                // refusal on [::1] is retried on IPv4. Sixteen requests miss [::1] with p = 2^-16.
                Ok(plan(parts, vec![gets(16)], &["200"], &["upstream-address-family"]))
            },
        },
        Scenario {
            name: "read-timeout",
            cause: "upstream-read-timeout",
            summary: "the upstream accepts and never answers; proxy_read_timeout expires",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Hang)?;
                Ok(plan(proxy(&format!("http://{up}"), "proxy_read_timeout 1s;"), vec![gets(1)], &["504"], &["upstream-read-timeout"]))
            },
        },
        Scenario {
            name: "timeout-too-short",
            cause: "proxy-timeout-too-short",
            summary: "the upstream answers in 1.5 s, proxy_read_timeout is 1 s",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Slow { delay: Duration::from_millis(1500) })?;
                Ok(plan(proxy(&format!("http://{up}"), "proxy_read_timeout 1s;"), vec![gets(1)], &["504"], &["upstream-read-timeout"]))
            },
        },
        Scenario {
            name: "connect-timeout",
            cause: "upstream-connect-timeout",
            summary: "a firewall drops SYNs to the upstream (gateway and upstream in a namespace of the lab's own)",
            needs: &[Need::Netns, Need::Iptables],
            setup: |b| {
                b.netns()?;
                let up = b.upstream_in_netns(0, Behaviour::Ok)?;
                b.namespace().expect("made above").exec(&["iptables", "-A", "INPUT", "-p", "tcp", "--dport", &up.port().to_string(), "-j", "DROP"])?;
                let mut p = plan(proxy(&format!("http://{up}"), "proxy_connect_timeout 1s;"), vec![gets(1)], &["504"], &["upstream-connect-timeout"]);
                p.gateway_in_netns = true;
                Ok(p)
            },
        },
        Scenario {
            name: "firewall-reject",
            cause: "firewall-blocked",
            summary: "a firewall rejects connections to the upstream port with admin-prohibited",
            needs: &[Need::Netns, Need::Iptables],
            setup: |b| {
                b.netns()?;
                let up = b.upstream_in_netns(0, Behaviour::Ok)?;
                b.namespace().expect("made above").exec(&[
                    "iptables", "-A", "INPUT", "-p", "tcp", "--dport", &up.port().to_string(), "-j", "REJECT", "--reject-with", "icmp-admin-prohibited",
                ])?;
                // Linux turns admin-prohibited into EHOSTUNREACH: nginx logs (113: No route to host).
                let mut p = plan(proxy(&format!("http://{up}"), "proxy_connect_timeout 1s;"), vec![gets(1)], &["502"], &["firewall-blocked"]);
                p.gateway_in_netns = true;
                Ok(p)
            },
        },
        Scenario {
            name: "unreachable",
            cause: "upstream-unreachable",
            summary: "no route to the upstream's network (an unreachable route in the lab's namespace)",
            needs: &[Need::Netns],
            setup: |b| {
                b.netns()?.exec(&["ip", "route", "add", "unreachable", "10.99.0.0/24"])?;
                let mut p = plan(proxy("http://10.99.0.10:8000", "proxy_connect_timeout 1s;"), vec![gets(1)], &["502"], &["upstream-unreachable"]);
                p.gateway_in_netns = true;
                Ok(p)
            },
        },
        Scenario {
            name: "container-loopback",
            cause: "container-loopback",
            summary: "nginx in its own network namespace dials 127.0.0.1, where the app of the host is not",
            needs: &[Need::Netns],
            setup: |b| {
                let app = b.upstream_at(Ipv4Addr::LOCALHOST, 0, Behaviour::Ok)?;
                b.netns()?;
                let mut p = plan(proxy(&format!("http://127.0.0.1:{}", app.port()), ""), vec![gets(1)], &["502"], &["upstream-refused"]);
                p.gateway_in_netns = true;
                Ok(p)
            },
        },
        Scenario {
            name: "ephemeral-ports",
            cause: "ephemeral-port-exhaustion",
            summary: "three local ports in ip_local_port_range; the upstream holds every connection",
            needs: &[Need::Netns],
            setup: |b| {
                b.netns()?.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40002"])?;
                let up = b.upstream_in_netns(0, Behaviour::Hang)?;
                let mut p = plan(
                    proxy(&format!("http://{up}"), "proxy_read_timeout 2s;"),
                    vec![Step::Parallel((0..6).map(|_| LabRequest::get("/")).collect())],
                    &["502"],
                    &["ephemeral-port-exhaustion"],
                );
                p.gateway_in_netns = true;
                p.client_ports = Some(41000);
                Ok(p)
            },
        },
        Scenario {
            name: "dns-nxdomain-upstream",
            cause: "upstream-dns-unresolvable",
            summary: "proxy_pass with a variable; the resolver answers NXDOMAIN for the upstream name",
            needs: &[],
            setup: |b| {
                let dns = b.dns(DnsMode::NxDomain)?;
                let parts = NginxParts {
                    server: format!("    resolver {dns} valid=1s;\n    location / {{\n      set $app {APP_NAME};\n      proxy_pass http://$app:8000;\n    }}\n"),
                    ..Default::default()
                };
                Ok(plan(parts, vec![gets(1)], &["502"], &["upstream-dns-unresolvable"]))
            },
        },
        Scenario {
            name: "dns-timeout-upstream",
            cause: "upstream-dns-unresolvable",
            summary: "proxy_pass with a variable; the resolver never answers",
            needs: &[],
            setup: |b| {
                let dns = b.dns(DnsMode::Silent)?;
                let parts = NginxParts {
                    server: format!(
                        "    resolver {dns} valid=1s;\n    resolver_timeout 1s;\n    location / {{\n      set $app {APP_NAME};\n      proxy_pass http://$app:8000;\n    }}\n"
                    ),
                    ..Default::default()
                };
                Ok(plan(parts, vec![gets(1)], &["502"], &["upstream-dns-unresolvable"]))
            },
        },
        Scenario {
            name: "no-resolver",
            cause: "no-resolver",
            summary: "proxy_pass with a variable holding a name, and no resolver configured",
            needs: &[],
            setup: |_| {
                let parts = NginxParts {
                    server: format!("    location / {{\n      set $app {APP_NAME};\n      proxy_pass http://$app:8000;\n    }}\n"),
                    ..Default::default()
                };
                Ok(plan(parts, vec![gets(1)], &["502"], &["no-resolver"]))
            },
        },
        Scenario {
            name: "no-live-upstreams",
            cause: "no-live-upstreams",
            summary: "both servers of a group failed once (max_fails=1) and are marked down (a group of one is never marked down)",
            needs: &[],
            setup: |b| {
                let (one, two) = (b.free_port(b.ip)?, b.free_port(Ipv4Addr::LOCALHOST)?);
                let parts = NginxParts {
                    http: format!(
                        "  upstream app {{\n    server {}:{one} max_fails=1 fail_timeout=30s;\n    server 127.0.0.1:{two} max_fails=1 fail_timeout=30s;\n  }}\n",
                        b.ip
                    ),
                    server: "    location / {\n      proxy_pass http://app;\n    }\n".into(),
                    ..Default::default()
                };
                Ok(plan(parts, vec![gets(3)], &["502"], &["upstream-refused", "no-live-upstreams"]))
            },
        },
        Scenario {
            name: "reset",
            cause: "upstream-reset",
            summary: "the upstream resets the connection after reading the request (SO_LINGER 0)",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Reset)?;
                Ok(plan(proxy(&format!("http://{up}"), ""), vec![gets(1)], &["502"], &["upstream-reset"]))
            },
        },
        Scenario {
            name: "premature-close",
            cause: "upstream-premature-close",
            summary: "the upstream closes the connection without answering",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::CloseAfterRequest)?;
                Ok(plan(proxy(&format!("http://{up}"), ""), vec![gets(1)], &["502"], &["upstream-premature-close"]))
            },
        },
        Scenario {
            name: "keepalive-race",
            cause: "keepalive-race",
            summary: "upstream keepalive; the app closes a reused connection instead of answering: GET is retried, POST gets 502",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::KeepAliveCloser)?;
                let parts = NginxParts {
                    http: format!("  upstream app {{\n    server {up};\n    keepalive 4;\n  }}\n"),
                    server: "    location / {\n      proxy_pass http://app;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }\n".into(),
                    ..Default::default()
                };
                let steps = vec![
                    Step::Sequential(vec![LabRequest::get("/first")]),
                    Step::Sequential(vec![LabRequest::get("/again")]),
                    Step::Sequential(vec![LabRequest::get("/warm"), LabRequest::post("/submit", "a=1")]),
                ];
                let mut p = plan(parts, steps, &["200", "502"], &["upstream-premature-close"]);
                p.expect.log_causes = vec!["upstream-premature-close"];
                Ok(p)
            },
        },
        Scenario {
            name: "http-to-tls-port",
            cause: "protocol-mismatch",
            summary: "proxy_pass http:// to a port that speaks TLS",
            needs: &[],
            setup: |b| {
                let up = b.upstream_tls(Some(CertKind::Valid { name: APP_NAME.into() }), Behaviour::Ok)?;
                Ok(plan(proxy(&format!("http://{up}"), ""), vec![gets(1)], &[], &[]))
            },
        },
        Scenario {
            name: "https-to-plain-port",
            cause: "protocol-mismatch",
            summary: "proxy_pass https:// to a port that speaks plain HTTP",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Ok)?;
                Ok(plan(proxy(&format!("https://{up}"), ""), vec![gets(1)], &["502"], &["protocol-mismatch"]))
            },
        },
        Scenario {
            name: "fastcgi-to-http",
            cause: "protocol-mismatch",
            summary: "fastcgi_pass to an HTTP server: nginx reads 'H' (72) as a FastCGI version",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Ok)?;
                Ok(plan(location("fastcgi_pass", &up.to_string(), "include /etc/nginx/fastcgi_params;"), vec![gets(1)], &["502"], &["protocol-mismatch"]))
            },
        },
        Scenario {
            name: "grpc-to-http1",
            cause: "protocol-mismatch",
            summary: "grpc_pass to a plain HTTP/1 server",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Http1ForGrpc)?;
                Ok(plan(location("grpc_pass", &format!("grpc://{up}"), ""), vec![gets(1)], &["502"], &["protocol-mismatch"]))
            },
        },
        Scenario {
            name: "http-to-uwsgi",
            cause: "protocol-mismatch",
            summary: "proxy_pass http:// to a uWSGI protocol socket (uwsgi reads \"GET \" as a block size of 21573)",
            needs: &[Need::Uwsgi],
            setup: |b| {
                let app = b.app(App::Uwsgi { buffer_size: 4096 })?;
                Ok(plan(proxy(&format!("http://{app}"), ""), vec![gets(1)], &["502"], &["protocol-mismatch"]))
            },
        },
        Scenario {
            name: "uwsgi-big-headers",
            cause: "upstream-request-header-too-big",
            summary: "a 5 KB cookie through uwsgi_pass to a uWSGI with buffer-size 4096",
            needs: &[Need::Uwsgi],
            setup: |b| {
                let app = b.app(App::Uwsgi { buffer_size: 4096 })?;
                let cookie = format!("session={}", "c".repeat(5000));
                let parts = location("uwsgi_pass", &app.to_string(), "include /etc/nginx/uwsgi_params;");
                Ok(plan(parts, vec![Step::Sequential(vec![LabRequest::get("/").header("Cookie", &cookie)])], &["502"], &["upstream-request-header-too-big"]))
            },
        },
        Scenario {
            name: "invalid-header",
            cause: "upstream-invalid-response",
            summary: "the upstream sends a status line followed by a line that is not a header",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::InvalidHeader)?;
                Ok(plan(proxy(&format!("http://{up}"), ""), vec![gets(1)], &["502"], &["upstream-invalid-response"]))
            },
        },
        Scenario {
            name: "garbage",
            cause: "protocol-mismatch",
            summary: "the upstream answers with bytes that are not HTTP: nginx passes them on as HTTP/0.9, not a 502",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Garbage)?;
                Ok(plan(proxy(&format!("http://{up}"), ""), vec![gets(1)], &["HTTP/0.9"], &["protocol-mismatch"]))
            },
        },
        Scenario {
            name: "invalid-chunked",
            cause: "upstream-invalid-response",
            summary: "a chunked body with an invalid chunk size, found while reading the body: no 502, the client gets an empty reply",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::InvalidChunked)?;
                // nginx had not flushed the header yet and closes: curl says "Empty reply from server".
                Ok(plan(proxy(&format!("http://{up}"), ""), vec![gets(1)], &["empty"], &["upstream-invalid-response"]))
            },
        },
        Scenario {
            name: "header-too-big",
            cause: "upstream-header-too-big",
            summary: "an 8 KB response header against proxy_buffer_size 4k",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::HugeHeader { bytes: 8 * 1024 })?;
                Ok(plan(proxy(&format!("http://{up}"), "proxy_buffer_size 4k;"), vec![gets(1)], &["502"], &["upstream-header-too-big"]))
            },
        },
        Scenario {
            name: "tls-expired",
            cause: "upstream-tls-verify",
            summary: "proxy_ssl_verify on; the upstream's certificate has expired",
            needs: &[],
            setup: |b| tls_verify(b, CertKind::Expired { name: APP_NAME.into() }),
        },
        Scenario {
            name: "tls-self-signed",
            cause: "upstream-tls-verify",
            summary: "proxy_ssl_verify on; the upstream's certificate is self-signed",
            needs: &[],
            setup: |b| tls_verify(b, CertKind::SelfSigned { name: APP_NAME.into() }),
        },
        Scenario {
            name: "tls-wrong-name",
            cause: "upstream-tls-verify",
            summary: "proxy_ssl_verify on; the upstream's certificate is for another name",
            needs: &[],
            setup: |b| tls_verify(b, CertKind::WrongName { name: APP_NAME.into() }),
        },
        Scenario {
            name: "tls-no-sni",
            cause: "upstream-tls-handshake",
            summary: "the upstream requires SNI; nginx sends none (proxy_ssl_server_name off, the default)",
            needs: &[],
            setup: |b| {
                let up = b.upstream_tls(None, Behaviour::Ok)?;
                Ok(plan(proxy(&format!("https://{up}"), ""), vec![gets(1)], &["502"], &["upstream-tls-handshake"]))
            },
        },
        Scenario {
            name: "passthrough-502",
            cause: "upstream-5xx-passthrough",
            summary: "the upstream is itself a proxy and answers with HAProxy's 502 page; nginx passes it on",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::ForeignPage {
                    status: 502,
                    body: "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n",
                    server: "",
                })?;
                let mut p = plan(proxy(&format!("http://{up}"), ""), vec![gets(1)], &["502"], &[]);
                p.expect.page_product = Some("haproxy");
                Ok(p)
            },
        },
        Scenario {
            name: "crash",
            cause: "upstream-crashed",
            summary: "the upstream serves one request, then its process is gone",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::CrashAfter { requests: 1 })?;
                let steps = vec![gets(1), Step::Pause(Duration::from_millis(200)), gets(1)];
                Ok(plan(proxy(&format!("http://{up}"), ""), steps, &["200", "502"], &["upstream-refused"]))
            },
        },
        Scenario {
            name: "partial-backend",
            cause: "partial-backend-failure",
            summary: "two servers in a group, one down, no retry (proxy_next_upstream off): some requests fail",
            needs: &[],
            setup: |b| {
                let ok = b.upstream(Behaviour::Ok)?;
                let down = b.free_port(b.ip)?;
                let parts = NginxParts {
                    http: format!("  upstream app {{\n    server {ok};\n    server {}:{down};\n  }}\n", b.ip),
                    server: "    location / {\n      proxy_pass http://app;\n      proxy_next_upstream off;\n    }\n".into(),
                    ..Default::default()
                };
                Ok(plan(parts, vec![gets(6)], &["200", "502"], &["upstream-refused"]))
            },
        },
        Scenario {
            name: "backlog-full",
            cause: "listen-backlog-overflow",
            summary: "the upstream's unix socket accept queue is full: connect() fails with EAGAIN at once",
            needs: &[],
            setup: |b| {
                let path = b.unix_upstream("app.sock", Behaviour::NeverAccept, 0o666)?;
                b.fill_backlog(&Bind::Unix(path.clone()))?;
                Ok(plan(proxy(&format!("http://unix:{}:", path.display()), ""), vec![gets(1)], &["502"], &["listen-backlog-overflow"]))
            },
        },
        Scenario {
            name: "worker-connections",
            cause: "fd-exhaustion",
            summary: "worker_connections 4 and a slow upstream: nginx runs out of connections and drops new clients (empty replies, no 502)",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Slow { delay: Duration::from_millis(1500) })?;
                let mut parts = proxy(&format!("http://{up}"), "");
                parts.events = "worker_connections 4;".into();
                Ok(plan(parts, vec![Step::Parallel((0..4).map(|_| LabRequest::get("/")).collect())], &["empty"], &["fd-exhaustion"]))
            },
        },
        Scenario {
            name: "gateway-port-taken",
            cause: "gateway-down",
            summary: "nginx cannot bind its port (another socket holds it) and does not start",
            needs: &[],
            setup: |b| {
                let addr = std::net::SocketAddr::from((b.ip, super::runner::GATEWAY_PORT));
                b.hold_port(addr)?;
                let up = b.upstream(Behaviour::Ok)?;
                let mut p = plan(proxy(&format!("http://{up}"), ""), vec![gets(1)], &[], &["gateway-down"]);
                p.expect.gateway_down = true;
                Ok(p)
            },
        },
        Scenario {
            name: "reload-failed",
            cause: "config-not-applied",
            summary: "a reload with a typo (proxy_passs) fails; nginx keeps serving the old configuration",
            needs: &[],
            setup: |b| {
                let up = b.upstream(Behaviour::Ok)?;
                let broken = NginxParts { server: format!("    location / {{\n      proxy_passs http://{up};\n    }}\n"), ..Default::default() };
                let steps = vec![gets(1), Step::Reload(broken), Step::Pause(Duration::from_millis(300)), gets(1)];
                Ok(plan(proxy(&format!("http://{up}"), ""), steps, &["200"], &["config-not-applied"]))
            },
        },
        Scenario {
            name: "fpm-socket-missing",
            cause: "unix-socket-missing",
            summary: "fastcgi_pass names a socket path where PHP-FPM does not listen",
            needs: &[Need::PhpFpm],
            setup: |b| {
                let pool = Pool::new(b.dir().join("php-fpm.sock"));
                b.php_fpm(std::slice::from_ref(&pool))?;
                let docroot = b.fpm().expect("started").docroot.clone();
                let parts = fastcgi(&b.dir().join("php8.2-fpm.sock"), &docroot, "");
                Ok(plan(parts, vec![Step::Sequential(vec![LabRequest::get("/ok.php")])], &["502"], &["unix-socket-missing"]))
            },
        },
        Scenario {
            name: "fpm-socket-permission",
            cause: "unix-socket-permission",
            summary: "PHP-FPM's socket is root's, mode 0660; nginx's workers run as www-data",
            needs: &[Need::PhpFpm, Need::Root],
            setup: |b| {
                let mut pool = Pool::new(b.dir().join("php-fpm.sock"));
                pool.mode = 0o660;
                b.php_fpm(std::slice::from_ref(&pool))?;
                let docroot = b.fpm().expect("started").docroot.clone();
                let parts = fastcgi(&pool.socket, &docroot, "");
                Ok(plan(parts, vec![Step::Sequential(vec![LabRequest::get("/ok.php")])], &["502"], &["unix-socket-permission"]))
            },
        },
        Scenario {
            name: "fpm-max-children",
            cause: "fpm-max-children",
            summary: "pm.max_children = 1 and a tiny listen.backlog; parallel slow requests overflow it",
            needs: &[Need::PhpFpm],
            setup: |b| {
                let mut pool = Pool::new(b.dir().join("php-fpm.sock"));
                pool.max_children = 1;
                pool.backlog = 1;
                b.php_fpm(std::slice::from_ref(&pool))?;
                let docroot = b.fpm().expect("started").docroot.clone();
                let parts = fastcgi(&pool.socket, &docroot, "fastcgi_read_timeout 10s;");
                let requests = (0..6).map(|_| LabRequest::get("/sleep.php?s=2")).collect();
                Ok(plan(parts, vec![Step::Parallel(requests)], &["502"], &["fpm-max-children"]))
            },
        },
        Scenario {
            name: "fpm-terminate",
            cause: "fpm-execution-timeout",
            summary: "request_terminate_timeout = 1s kills a 3 s PHP request",
            needs: &[Need::PhpFpm],
            setup: |b| {
                let mut pool = Pool::new(b.dir().join("php-fpm.sock"));
                pool.terminate_after = 1;
                b.php_fpm(std::slice::from_ref(&pool))?;
                let docroot = b.fpm().expect("started").docroot.clone();
                let parts = fastcgi(&pool.socket, &docroot, "");
                Ok(plan(parts, vec![Step::Sequential(vec![LabRequest::get("/sleep.php?s=3")])], &["502"], &["fpm-execution-timeout"]))
            },
        },
        Scenario {
            name: "gunicorn-timeout",
            cause: "app-worker-timeout",
            summary: "gunicorn --timeout 1 kills its worker during a 4 s request",
            needs: &[Need::Gunicorn],
            setup: |b| {
                let app = b.app(App::Gunicorn { timeout: 1 })?;
                Ok(plan(proxy(&format!("http://{app}"), ""), vec![Step::Sequential(vec![LabRequest::get("/slow?s=4")])], &["502"], &["app-worker-timeout"]))
            },
        },
    ]
}

fn tls_verify(b: &mut Bench, kind: CertKind) -> anyhow::Result<Plan> {
    let up = b.upstream_tls(Some(kind), Behaviour::Ok)?;
    let ca = b.ca_file()?;
    let extra = format!(
        "proxy_ssl_verify on;\n      proxy_ssl_trusted_certificate {};\n      proxy_ssl_name {APP_NAME};\n      proxy_ssl_server_name on;",
        ca.display()
    );
    Ok(plan(
        proxy(&format!("https://{up}"), &extra),
        vec![gets(1)],
        &["502"],
        &["upstream-tls-verify"],
    ))
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}
