//! `gwdoctor explain` as a user runs it: the binary, its output and its exit status.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn gwdoctor() -> Command {
    let mut c = Command::cargo_bin("gwdoctor").unwrap();
    c.env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES");
    c
}

fn explain_json(input: &str) -> Value {
    let out = gwdoctor()
        .args(["explain", "--format", "json", "-"])
        .write_stdin(input)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn causes(v: &Value) -> Vec<String> {
    v["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

const REFUSED: &str = r#"2024/05/02 14:02:11 [error] 812#812: *1042 connect() failed (111: Connection refused) while connecting to upstream, client: 203.0.113.7, server: example.com, request: "GET /login?password=hunter2 HTTP/1.1", upstream: "http://127.0.0.1:8000/login", host: "example.com""#;

#[test]
fn a_refused_line_names_nginx_the_cause_and_fills_the_port_into_the_checks() {
    gwdoctor()
        .args(["explain", REFUSED])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("nginx"))
        .stdout(predicate::str::contains("upstream-refused"))
        .stdout(predicate::str::contains("127.0.0.1:8000"))
        .stdout(predicate::str::contains(":8000"))
        // Secrets never reach the report.
        .stdout(predicate::str::contains("hunter2").not());
}

#[test]
fn json_output_follows_the_interface() {
    let v = explain_json(REFUSED);
    assert_eq!(v["product"], "nginx");
    // A refusal on loopback also raises the loopback-specific causes, after the refusal itself.
    assert_eq!(
        causes(&v).first().map(String::as_str),
        Some("upstream-refused")
    );
    assert_eq!(v["lines"][0]["fields"]["upstream"], "127.0.0.1:8000");
    assert_eq!(v["lines"][0]["status"], 502);
    assert!(!v["explanations"][0]["fix"].as_array().unwrap().is_empty());
}

#[test]
fn the_errno_and_the_address_decide_the_cause() {
    let cases = [
        // A refusal on [::1] when the upstream was a name: the app listens on IPv4 only.
        (
            r#"2024/05/02 14:02:11 [error] 812#812: *7 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://[::1]:3000/", host: "localhost""#,
            "upstream-address-family",
        ),
        // (13) on a unix socket: its owner or mode; on a TCP port: SELinux.
        (
            r#"2024/05/02 14:02:11 [crit] 812#812: *7 connect() to unix:/run/php/php8.2-fpm.sock failed (13: Permission denied) while connecting to upstream, client: 10.0.0.1, server: _, request: "GET /index.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", host: "x""#,
            "unix-socket-permission",
        ),
        (
            r#"2024/05/02 14:02:11 [crit] 812#812: *7 connect() to 127.0.0.1:8000 failed (13: Permission denied) while connecting to upstream, client: 10.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8000/", host: "x""#,
            "selinux-denied",
        ),
        (
            r#"2024/05/02 14:02:11 [crit] 812#812: *7 connect() to unix:/run/php/php8.2-fpm.sock failed (2: No such file or directory) while connecting to upstream, client: 10.0.0.1, server: _, request: "GET /index.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", host: "x""#,
            "unix-socket-missing",
        ),
        (
            r#"2024/05/02 14:02:11 [crit] 812#812: *7 connect() to 127.0.0.1:8000 failed (99: Cannot assign requested address) while connecting to upstream, client: 10.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8000/", host: "x""#,
            "ephemeral-port-exhaustion",
        ),
        // 'H' = 72: an HTTP server answered a FastCGI request.
        (
            r#"2024/05/02 14:02:11 [error] 812#812: *7 upstream sent unsupported FastCGI protocol version: 72 while reading response header from upstream, client: 10.0.0.1, server: _, request: "GET /index.php HTTP/1.1", upstream: "fastcgi://127.0.0.1:8000", host: "x""#,
            "protocol-mismatch",
        ),
    ];
    for (line, cause) in cases {
        let v = explain_json(line);
        assert_eq!(
            causes(&v).first().map(String::as_str),
            Some(cause),
            "{line}"
        );
    }
}

#[test]
fn uwsgi_block_sizes_tell_http_from_big_cookies() {
    let http = "invalid request block size: 21573 (max 4096)...skip";
    let cookies = "invalid request block size: 4313 (max 4096)...skip";
    assert_eq!(causes(&explain_json(http)), ["protocol-mismatch"]);
    assert_eq!(
        causes(&explain_json(cookies)),
        ["upstream-request-header-too-big"]
    );
}

#[test]
fn a_cause_id_prints_its_card_in_both_languages() {
    gwdoctor()
        .args(["explain", "fpm-max-children"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("pm.max_children"));
    let zh = gwdoctor()
        .args(["explain", "--lang", "zh", "fpm-max-children"])
        .output()
        .unwrap();
    let text = String::from_utf8(zh.stdout).unwrap();
    assert!(
        text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{text}"
    );
    // LANG decides when --lang is absent.
    let env = gwdoctor()
        .env("LANG", "zh_CN.UTF-8")
        .args(["explain", "upstream-refused"])
        .output()
        .unwrap();
    assert!(String::from_utf8(env.stdout).unwrap().contains("检查"));
}

#[test]
fn many_lines_are_listed_then_summarised() {
    let log = include_str!("../examples/incident/error.log");
    let v = explain_json(log);
    assert!(v["recognised_lines"].as_u64().unwrap() >= 7, "{v}");
    let named = causes(&v);
    for cause in [
        "upstream-refused",
        "no-live-upstreams",
        "upstream-read-timeout",
    ] {
        assert!(
            named.iter().any(|c| c == cause),
            "{cause} missing from {named:?}"
        );
    }
    gwdoctor()
        .args(["explain", "--file", "examples/incident/error.log"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Summary"));
}

#[test]
fn an_error_page_names_who_produced_it() {
    let page = "HTTP/1.1 502 Bad Gateway\r\nServer: nginx/1.24.0\r\nContent-Type: text/html\r\n\r\n<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n";
    let v = explain_json(page);
    assert_eq!(v["input"], "page");
    assert_eq!(v["product"], "nginx");
}

#[test]
fn unrecognised_text_exits_1_and_says_so() {
    gwdoctor()
        .args(["explain", "the", "weather", "is", "nice"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("Nothing in this input"));
}

#[test]
fn bad_input_never_panics() {
    // Empty input: a usage error.
    gwdoctor()
        .args(["explain", "-"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("empty"));
    // An unreadable file names the file.
    gwdoctor()
        .args(["explain", "--file", "/nonexistent/error.log"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/error.log"));
    // Binary junk.
    let junk: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    gwdoctor()
        .args(["explain", "-"])
        .write_stdin(junk)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("binary"));
    // Invalid UTF-8 around a real line still finds the line.
    let mut mixed = b"\xff\xfe garbage\n".to_vec();
    mixed.extend_from_slice(REFUSED.as_bytes());
    gwdoctor()
        .args(["explain", "-"])
        .write_stdin(mixed)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("UTF-8"));
    // One 10 MB line.
    let long = format!(
        "{}{}",
        "x".repeat(10 * 1024 * 1024),
        " connect() failed (111: Connection refused) while connecting to upstream"
    );
    gwdoctor()
        .args(["explain", "-"])
        .write_stdin(long)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(predicate::in_iter([0, 1]))
        .stdout(predicate::str::contains("1 MiB"));
}
