//! The `watch` command line: bad input is a clear message naming the file and line (exit 2);
//! the flag form serves /metrics and stops cleanly on SIGTERM (exit 0).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn gwdoctor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gwdoctor"))
}

#[test]
fn bad_configurations_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("watch.toml");
    std::fs::write(
        &config,
        "interval = \"1s\"\n[[target]]\nurl = \"http://127.0.0.1:1/\"\ntimeout = \"fast\"\n",
    )
    .unwrap();
    let out = gwdoctor()
        .arg("watch")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("watch.toml:4:") && err.contains("timeout"),
        "{err}"
    );

    std::fs::write(&config, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let out = gwdoctor()
        .arg("watch")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("watch.toml"));

    let out = gwdoctor()
        .args(["watch", "ftp://127.0.0.1/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));

    // A CA file that is not there is named.
    let out = gwdoctor()
        .args([
            "watch",
            "https://127.0.0.1:1/",
            "--ca-file",
            "/nonexistent/ca.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.pem"));

    let out = gwdoctor()
        .args(["watch", "http://127.0.0.1:1/", "--interval", "1 fortnight"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_flag_form_serves_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("error.log");
    std::fs::write(&log, "").unwrap();
    let mut child = gwdoctor()
        .args([
            "watch",
            "http://127.0.0.1:1/",
            "--interval",
            "200ms",
            "--listen",
            "127.0.0.1:0",
            "--error-log",
        ])
        .arg(&log)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Port 1 refuses: after a few probes the failures are counted by reason.
    let began = Instant::now();
    let text = loop {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.take(1 << 20).read_to_string(&mut text).unwrap();
        if text.contains("reason=\"refused\"") || began.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        text.contains(
            "gwdoctor_probe_failures_total{target=\"http://127.0.0.1:1/\",reason=\"refused\"}"
        ),
        "{text}"
    );
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let began = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if began.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("watch did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}
