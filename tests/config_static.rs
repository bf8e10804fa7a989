//! `gwdoctor config` without live checks: the model, every static check on a fixture of its
//! own (tests/fixtures/config/), `nginx -t` and the running master with a real nginx, and bad
//! input (exit 2 with file and line, never a panic).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixture(rel: &str) -> String {
    format!("tests/fixtures/config/{rel}")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn gwdoctor(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_gwdoctor"))
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("gwdoctor runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `config --format json` without live checks or nginx -t, plus `extra` arguments.
fn report(path: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["config", "--format", "json", "--no-live", "--no-nginx-t"];
    args.extend_from_slice(extra);
    args.push(path);
    let r = gwdoctor(&args);
    assert!(r.code == 0 || r.code == 1, "exit {}: {}", r.code, r.stderr);
    (
        r.code,
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout)),
    )
}

fn causes(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["cause"].as_str().unwrap().to_string())
        .collect()
}

fn finding<'v>(v: &'v Value, cause: &str) -> &'v Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["cause"] == cause)
        .unwrap_or_else(|| panic!("no {cause} in {:?}", causes(v)))
}

fn evidence_text(f: &Value) -> String {
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

fn check<'v>(v: &'v Value, name: &str) -> &'v Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn models_servers_locations_upstreams_and_targets() {
    let (code, v) = report(&fixture("site/nginx.conf"), &[]);
    assert_eq!(code, 0, "{:?}", causes(&v));
    assert_eq!(v["files"].as_array().unwrap().len(), 6);
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(
        servers[0]["server_names"],
        serde_json::json!(["example.test", "www.example.test"])
    );
    assert_eq!(servers[0]["listen"][0]["default_server"], true);
    let paths: Vec<&str> = servers[0]["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/", "~* \\.(png|jpe?g)$", "/admin/", "/lua"]);
    let app = &v["upstreams"][0];
    assert_eq!(
        (app["name"].as_str(), app["keepalive"].as_u64()),
        (Some("app"), Some(16))
    );
    assert_eq!(app["servers"][0]["max_fails"], 2);
    assert_eq!(app["servers"][1]["backup"], true);

    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 5);
    // Inheritance: the location's own timeout, else http's; the snippet's headers from the server.
    let t0 = &targets[0];
    assert_eq!(t0["destination"]["type"], "group");
    assert_eq!(t0["settings"]["read_timeout"]["value"], "5s");
    assert!(t0["settings"]["read_timeout"]["at"]
        .as_str()
        .unwrap()
        .ends_with("conf.d/10-app.conf:8"));
    assert_eq!(targets[1]["settings"]["read_timeout"]["value"], "30s");
    assert!(targets[1]["settings"]["read_timeout"]["at"]
        .as_str()
        .unwrap()
        .ends_with("site/nginx.conf:27"));
    assert_eq!(t0["settings"]["http_version"]["value"], "1.1");
    assert!(t0["settings"]["http_version"]["at"]
        .as_str()
        .unwrap()
        .ends_with("snippets/proxy-common.conf:1"));
    assert_eq!(t0["settings"]["connection_header"]["value"], "");
    assert_eq!(
        t0["settings"]["connect_timeout"]["at"],
        Value::Null,
        "nginx's default"
    );
    // The variable target inside `if`: values from the map, both upstream groups.
    let t2 = &targets[2];
    assert_eq!(t2["destination"]["type"], "variable");
    assert_eq!(
        t2["destination"]["candidates"],
        serde_json::json!(["app", "admin"])
    );
    assert_eq!(t2["location"], "/admin/ › if ($request_method = POST)");
    assert_eq!(targets[3]["destination"]["type"], "group");
    // Included from the main file.
    assert!(targets[4]["included_from"][0]
        .as_str()
        .unwrap()
        .ends_with("site/nginx.conf:28"));
    assert_eq!(targets[4]["destination"]["address"]["port"], 9100);
    assert_eq!(check(&v, "directives")["status"], "pass");
}

#[test]
fn a_snippet_is_checked_in_every_context_it_is_included_in() {
    let (_, v) = report(&fixture("contexts/nginx.conf"), &[]);
    let f = finding(&v, "config-not-applied");
    let ev = f["evidence"].as_array().unwrap();
    // Fine in the location (line 6), refused inside `if` (line 11): reported once, for the if.
    assert_eq!(ev.len(), 1, "{}", evidence_text(f));
    let text = evidence_text(f);
    assert!(text.contains("headers.conf:1"), "{text}");
    assert!(
        text.contains("\"proxy_set_header\" directive is not allowed here"),
        "{text}"
    );
    assert!(
        text.contains("included from tests/fixtures/config/contexts/nginx.conf:11"),
        "{text}"
    );
}

#[test]
fn typos_are_flagged_with_the_intended_name() {
    let (code, v) = report(&fixture("typo/nginx.conf"), &[]);
    assert_eq!(code, 1);
    let text = evidence_text(finding(&v, "config-not-applied"));
    assert!(
        text.contains("typo/nginx.conf:6 proxy_passs http://127.0.0.1:8000;"),
        "{text}"
    );
    assert!(text.contains("did you mean \"proxy_pass\""), "{text}");
    assert!(
        text.contains("did you mean \"proxy_read_timeout\""),
        "{text}"
    );
}

#[test]
fn keepalive_without_http11_and_empty_connection() {
    let (_, v) = report(&fixture("keepalive/nginx.conf"), &[]);
    assert_eq!(causes(&v), ["keepalive-race"]);
    let text = evidence_text(finding(&v, "keepalive-race"));
    assert!(
        text.contains("keepalive/nginx.conf:6 keepalive 32;"),
        "{text}"
    );
    assert!(
        text.contains("keepalive/nginx.conf:12 proxy_pass http://app;"),
        "{text}"
    );
    assert!(text.contains("proxy_http_version 1.0"), "{text}");
    assert!(
        !text.contains(":18"),
        "the location done right is not blamed: {text}"
    );
}

#[test]
fn variable_targets_without_a_resolver() {
    let (_, v) = report(&fixture("resolver/nginx.conf"), &[]);
    let f = finding(&v, "no-resolver");
    let text = evidence_text(f);
    assert!(
        text.contains("resolver/nginx.conf:12"),
        "the map gives a name: {text}"
    );
    assert!(text.contains("beta.example.test:8080"), "{text}");
    assert!(
        text.contains("resolver/nginx.conf:16"),
        "a fixed name with a variable URI: {text}"
    );
    assert!(
        !text.contains(":20"),
        "IP-only values need no resolver: {text}"
    );
    assert!(
        !text.contains(":28"),
        "the server with a resolver is fine: {text}"
    );
    assert!(f["confidence"].as_f64().unwrap() >= 0.85);
}

#[test]
fn protocols_that_do_not_fit_the_port() {
    let (_, v) = report(&fixture("protocol/nginx.conf"), &[]);
    let text = evidence_text(finding(&v, "protocol-mismatch"));
    for needle in [
        "nginx.conf:5",
        "port 443, a TLS port",
        "nginx.conf:6",
        "port 8080, a plain-HTTP port",
        "nginx.conf:7",
        "port 9000",
        "nginx.conf:8",
        "FastCGI to port 80",
    ] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
    assert!(!text.contains("nginx.conf:9"), "{text}");
}

#[test]
fn tls_upstreams_without_sni_or_trust() {
    let (_, v) = report(&fixture("tls/nginx.conf"), &[]);
    let sni = evidence_text(finding(&v, "upstream-tls-handshake"));
    assert!(
        sni.contains("tls/nginx.conf:7 proxy_pass https://api.example.test;"),
        "{sni}"
    );
    assert!(sni.contains("proxy_ssl_server_name off"), "{sni}");
    assert!(!sni.contains("127.0.0.1"), "an IP needs no SNI: {sni}");
    let verify = evidence_text(finding(&v, "upstream-tls-verify"));
    assert!(
        verify.contains("tls/nginx.conf:11 proxy_ssl_verify on;"),
        "{verify}"
    );
}

#[test]
fn max_fails_on_a_single_server() {
    let (_, v) = report(&fixture("maxfails/nginx.conf"), &[]);
    let text = evidence_text(finding(&v, "no-live-upstreams"));
    assert!(
        text.contains("maxfails/nginx.conf:4"),
        "a single name: {text}"
    );
    assert_eq!(check(&v, "upstream by_ip")["status"], "warn");
}

#[test]
fn php_fpm_pools_sockets_and_timeouts() {
    let conf = fixture("fpm/php-fpm.conf");
    let prefix = fixture("fpm");
    let (_, v) = report(
        &fixture("fpm/nginx.conf"),
        &["--fpm-config", &conf, "--fpm-prefix", &prefix],
    );
    let pools: Vec<&str> = v["php_fpm"]["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pools, ["private", "www"]);
    assert_eq!(
        v["php_fpm"]["pools"][1]["listen"], "unix:/nonexistent-gwdoctor/php/www.sock",
        "$pool expanded"
    );
    let missing = evidence_text(finding(&v, "unix-socket-missing"));
    assert!(missing.contains("fpm/nginx.conf:13 fastcgi_pass unix:/nonexistent-gwdoctor/php/php8.1-fpm.sock;    ← no PHP-FPM pool listens"), "{missing}");
    assert!(
        missing.contains("pool.d/www.conf:4 listen = /nonexistent-gwdoctor/php/$pool.sock"),
        "{missing}"
    );
    let perm = evidence_text(finding(&v, "unix-socket-permission"));
    assert!(
        perm.contains("pool.d/private.conf:6 listen.mode = 0600"),
        "{perm}"
    );
    assert!(perm.contains("www-data may not write"), "{perm}");
    let timeout = evidence_text(finding(&v, "proxy-timeout-too-short"));
    assert!(
        timeout.contains("fpm/nginx.conf:8 fastcgi_read_timeout 30s;"),
        "{timeout}"
    );
    assert!(
        timeout.contains("pool.d/www.conf:12 request_terminate_timeout = 120s"),
        "{timeout}"
    );
}

#[test]
fn fpm_killing_requests_before_nginx_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nginx.conf"), "events {}\nhttp { server { listen 8080; location / {\n fastcgi_read_timeout 300s;\n fastcgi_pass 127.0.0.1:9000; } } }\n").unwrap();
    std::fs::write(dir.path().join("www.conf"), "[www]\nlisten = 127.0.0.1:9000\npm = static\npm.max_children = 2\nrequest_terminate_timeout = 30\n").unwrap();
    let conf = dir.path().join("nginx.conf");
    let fpm = dir.path().join("www.conf");
    let (_, v) = report(
        conf.to_str().unwrap(),
        &["--fpm-config", fpm.to_str().unwrap()],
    );
    let text = evidence_text(finding(&v, "fpm-execution-timeout"));
    assert!(
        text.contains("www.conf:5 request_terminate_timeout = 30"),
        "{text}"
    );
    assert!(
        text.contains("nginx.conf:3 fastcgi_read_timeout 300s;"),
        "{text}"
    );
}

#[test]
fn timeouts_below_what_the_access_log_shows() {
    let log = fixture("access/access.log");
    let (_, v) = report(&fixture("access/nginx.conf"), &["--access-log", &log]);
    let f = finding(&v, "proxy-timeout-too-short");
    let text = evidence_text(f);
    assert!(
        text.contains("access.log:41 43 requests to 127.0.0.1:8000: slowest 5.001 s"),
        "{text}"
    );
    assert!(text.contains("3 answered 504"), "{text}");
    assert!(
        text.contains("access/nginx.conf:8 proxy_read_timeout 5s;"),
        "{text}"
    );
    assert_eq!(f["confidence"], 0.8);
    // Without the log, nothing to say.
    let (code, v) = report(&fixture("access/nginx.conf"), &[]);
    assert_eq!((code, causes(&v).len()), (0, 0));
}

#[test]
fn malformed_and_unreadable_input_exit_2_with_file_and_line() {
    let cases = [
        ("bad/unbalanced.conf", "bad/unbalanced.conf:9: unexpected end of file, expecting \"}\""),
        ("bad/missing-semicolon.conf", "bad/missing-semicolon.conf:5: directive \"proxy_pass\" is not terminated by \";\""),
        ("bad/quote.conf", "bad/quote.conf:4: unexpected end of file inside a quoted string"),
        ("bad/unreadable-include.conf", "bad/unreadable-include.conf:3: include: open() \"tests/fixtures/config/bad/include/missing.conf\" failed (2: No such file or directory)"),
        ("bad/loop.conf", "include loop"),
        ("bad/no-such-file.conf", "bad/no-such-file.conf: cannot read"),
        ("bad", "is a directory"),
    ];
    for (file, message) in cases {
        let r = gwdoctor(&["config", "--no-live", "--no-nginx-t", &fixture(file)]);
        assert_eq!(r.code, 2, "{file}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(message), "{file}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn binary_and_huge_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary.conf");
    std::fs::write(&binary, b"events {}\nhttp {\n\x00\x01\x02\xff\xfe garbage").unwrap();
    let r = gwdoctor(&[
        "config",
        "--no-live",
        "--no-nginx-t",
        binary.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("binary.conf:3: binary data"),
        "{}",
        r.stderr
    );

    // 100 MB (sparse: nothing is written) is refused before it is read.
    let huge = dir.path().join("huge.conf");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    let r = gwdoctor(&[
        "config",
        "--no-live",
        "--no-nginx-t",
        huge.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("huge.conf: 104857600 bytes: too large"),
        "{}",
        r.stderr
    );

    // Included: the message names the include too.
    let main = dir.path().join("main.conf");
    std::fs::write(&main, "events {}\nhttp {\n    include huge.conf;\n}\n").unwrap();
    let r = gwdoctor(&[
        "config",
        "--no-live",
        "--no-nginx-t",
        main.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("included from") && r.stderr.contains("main.conf:3"),
        "{}",
        r.stderr
    );

    // Crossplane's format reads the same files without a panic.
    let r = gwdoctor(&["config", "--format", "crossplane", binary.to_str().unwrap()]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);

    // Blocks nested 100,000 deep: refused with the line, in both formats, without a crash.
    let deep = dir.path().join("deep.conf");
    std::fs::write(&deep, "a {\n".repeat(100_000) + &"}\n".repeat(100_000)).unwrap();
    let r = gwdoctor(&[
        "config",
        "--no-live",
        "--no-nginx-t",
        deep.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("deep.conf:101: blocks nested deeper than 100"),
        "{}",
        r.stderr
    );
    let r = gwdoctor(&["config", "--format", "crossplane", deep.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("maximum recursion depth exceeded"),
        "{}",
        r.stdout
    );
}

fn have_nginx() -> bool {
    let ok = Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "nginx must be installed in CI"
        );
        eprintln!("skipped: nginx is not installed");
    }
    ok
}

/// A configuration nginx -t can test in a directory of its own, with the files and
/// directories it names in place (as where nginx has run), so that nginx -t creates nothing.
fn write_prefix(dir: &Path, location: &str) -> PathBuf {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    for file in ["logs/error.log", "logs/access.log", "nginx.pid"] {
        std::fs::write(dir.join(file), "").unwrap();
    }
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/logs/access.log;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  \
             fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  \
             server {{\n    listen 127.0.0.1:8089;\n    location / {{\n      {location}\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    conf
}

/// `config --format json --no-live` with nginx -t, in `prefix`.
fn config_with_nginx_t(prefix: &Path, conf: &Path) -> (Run, Value) {
    let r = gwdoctor(&[
        "config",
        "--format",
        "json",
        "--no-live",
        "--prefix",
        prefix.to_str().unwrap(),
        conf.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    (r, v)
}

#[test]
fn nginx_t_is_the_reference() {
    if !have_nginx() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = write_prefix(dir.path(), "proxy_pass http://127.0.0.1:8000;");
    let (r, v) = config_with_nginx_t(dir.path(), &conf);
    assert_eq!(check(&v, "nginx -t")["status"], "pass", "{}", r.stdout);

    let conf = write_prefix(
        dir.path(),
        "proxy_pass http://127.0.0.1:8000;\n      proxy_buffer_sise 8k;",
    );
    let (r, v) = config_with_nginx_t(dir.path(), &conf);
    assert_eq!(r.code, 1);
    assert_eq!(check(&v, "nginx -t")["status"], "fail");
    let f = finding(&v, "config-not-applied");
    let text = evidence_text(f);
    assert!(
        text.contains("unknown directive \"proxy_buffer_sise\""),
        "nginx's own words: {text}"
    );
    assert!(
        text.contains("did you mean \"proxy_buffer_size\""),
        "and gwdoctor's suggestion: {text}"
    );
    assert!(f["confidence"].as_f64().unwrap() >= 0.9);
}

#[test]
fn nginx_t_is_not_run_where_it_would_create_files() {
    if !have_nginx() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = write_prefix(dir.path(), "proxy_pass http://127.0.0.1:8000;");
    std::fs::remove_file(dir.path().join("logs/access.log")).unwrap();
    std::fs::remove_dir(dir.path().join("tmp")).unwrap();
    let (r, v) = config_with_nginx_t(dir.path(), &conf);
    let nginx_t = check(&v, "nginx -t");
    assert_eq!(nginx_t["status"], "skip", "{}", r.stdout);
    let why = nginx_t["detail"].as_str().unwrap();
    assert!(
        why.contains("logs/access.log") && why.contains("/tmp"),
        "{why}"
    );
    assert!(
        !dir.path().join("logs/access.log").exists() && !dir.path().join("tmp").exists(),
        "gwdoctor left the host as it was"
    );
    // A relative path is the prefix's, as nginx reads it.
    let conf = write_prefix(dir.path(), "proxy_pass http://127.0.0.1:8000;");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("error_log logs/relative.log;\n{text}")).unwrap();
    let (r, v) = config_with_nginx_t(dir.path(), &conf);
    let why = check(&v, "nginx -t")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = dir.path().join("logs/relative.log");
    assert!(
        why.contains(&*expected.to_string_lossy()),
        "{why}\n{}",
        r.stdout
    );
    assert!(!expected.exists());
}

#[test]
fn files_changed_after_the_running_nginx_loaded_them() {
    use gwdoctor::lab::bench::Bench;
    use gwdoctor::lab::nginx::{Nginx, NginxParts};
    if !have_nginx() {
        return;
    }
    let bench = Bench::new().unwrap();
    let listen = std::net::SocketAddr::from((bench.ip, bench.free_port(bench.ip).unwrap()));
    let parts = NginxParts {
        server: "    location / { return 200 \"ok\\n\"; }\n".into(),
        ..Default::default()
    };
    let mut nginx = Nginx::start(bench.dir(), listen, &parts, None).unwrap();
    assert!(nginx.is_running(), "{:?}", nginx.error_lines());
    // Edited after the workers started, and never reloaded.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(120);
    std::fs::File::options()
        .append(true)
        .open(&nginx.conf)
        .unwrap()
        .set_modified(later)
        .unwrap();

    let opts = gwdoctor::collect::config::Options {
        path: Some(nginx.conf.clone()),
        prefix: Some(bench.dir().to_path_buf()),
        fpm_configs: Vec::new(),
        fpm_prefix: None,
        discover_fpm: false,
        access_logs: Vec::new(),
        nginx_test: false,
        live: false,
        timeout: std::time::Duration::from_secs(2),
        worker_user: None,
    };
    let facts = gwdoctor::collect::config::collect(&opts).unwrap();
    let running = facts
        .running
        .as_ref()
        .expect("the lab's nginx master is found by its -c");
    assert_eq!(running.pid, nginx.pid());
    let (findings, checks) = gwdoctor::rules::config::judge(&facts);
    nginx.stop();
    let f = findings
        .iter()
        .find(|f| f.cause == "config-not-applied")
        .expect("config-not-applied");
    assert!(
        f.evidence
            .iter()
            .any(|e| e.detail.contains("last loaded its configuration")),
        "{f:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.name == "configuration applied"
                && c.status == gwdoctor::findings::Status::Warn)
    );
}

#[test]
fn secrets_in_the_configuration_stay_out_of_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        "events {}\nhttp { server { listen 8080; location / {\n proxy_set_header Authorization \"Bearer s3cr3t-token\";\n proxy_pass http://127.0.0.1:8000/api?token=hunter2&x=1;\n proxy_passs http://127.0.0.1:8000/?password=hunter3;\n } } }\n",
    )
    .unwrap();
    for format in ["json", "text"] {
        let r = gwdoctor(&[
            "config",
            "--no-live",
            "--no-nginx-t",
            "--format",
            format,
            conf.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        for secret in ["hunter2", "hunter3", "s3cr3t-token"] {
            assert!(
                !r.stdout.contains(secret),
                "{format} shows {secret}:\n{}",
                r.stdout
            );
        }
        assert!(r.stdout.contains("[redacted]"), "{}", r.stdout);
    }
}
