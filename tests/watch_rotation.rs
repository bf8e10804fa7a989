//! Log rotation both ways, counted exactly: logrotate's rename (with the writer still appending
//! to the renamed file until it reopens) and copytruncate (including a file refilled past the
//! old offset before the next read), first on the tailer alone, then through a running watch's
//! `/metrics`.

use gwdoctor::i18n::Lang;
use gwdoctor::watch::config::WatchConfig;
use gwdoctor::watch::tail::Tailer;
use gwdoctor::watch::Watch;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

fn writer(path: &Path) -> std::fs::File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Appends lines `from..to` (`line N`) through `f`.
fn write_lines(f: &mut std::fs::File, from: usize, to: usize) {
    let mut text = String::new();
    for i in from..to {
        text.push_str(&format!("line {i}\n"));
    }
    f.write_all(text.as_bytes()).unwrap();
}

fn poll(t: &mut Tailer, into: &mut Vec<usize>) {
    t.poll(&mut |l| into.push(l.strip_prefix("line ").unwrap().parse().unwrap()));
}

#[test]
fn rename_keeps_every_line_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("error.log");
    let mut w = writer(&log);
    write_lines(&mut w, 0, 10); // before the tailer: not reported
    let mut t = Tailer::new(&log);
    let mut got = Vec::new();
    write_lines(&mut w, 10, 1000);
    poll(&mut t, &mut got);
    // logrotate renames; the writer goes on writing to the old file until it reopens.
    std::fs::rename(&log, dir.path().join("error.log.1")).unwrap();
    write_lines(&mut w, 1000, 1200);
    poll(&mut t, &mut got);
    write_lines(&mut w, 1200, 1300);
    let mut w = writer(&log); // reopen (nginx -s reopen)
    write_lines(&mut w, 1300, 2000);
    poll(&mut t, &mut got);
    poll(&mut t, &mut got);
    assert_eq!(got, (10..2000).collect::<Vec<_>>());
    assert_eq!(t.stats.rotations, 1);
    assert_eq!(t.stats.lines, 1990);
}

#[test]
fn copytruncate_keeps_every_line_once_even_when_refilled_past_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut w = writer(&log);
    let mut t = Tailer::new(&log);
    let mut got = Vec::new();
    write_lines(&mut w, 0, 100);
    poll(&mut t, &mut got);
    // copytruncate: copy, then truncate in place; the writer (O_APPEND) goes on at offset 0.
    std::fs::copy(&log, dir.path().join("access.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    write_lines(&mut w, 100, 150);
    poll(&mut t, &mut got);
    // Again, but this time the file grows past the old offset before the next read.
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    write_lines(&mut w, 150, 1000);
    poll(&mut t, &mut got);
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert_eq!(t.stats.truncations, 2);
    assert_eq!(t.stats.rotations, 0);
}

fn metric(addr: SocketAddr, series: &str) -> f64 {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.take(4 << 20).read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (bounded) until `series` reaches `want`; returns its last value.
fn await_metric(addr: SocketAddr, series: &str, want: f64) -> f64 {
    let began = Instant::now();
    loop {
        let v = metric(addr, series);
        if v >= want || began.elapsed() > Duration::from_secs(10) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_running_watch_counts_lines_exactly_through_both_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("error.log");
    let mut w = writer(&log);
    write_lines(&mut w, 0, 5);
    let config = WatchConfig {
        error_logs: vec![log.clone()],
        listen: "127.0.0.1:0".parse().unwrap(),
        tail_every: Duration::from_millis(20),
        ..WatchConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let watch = rt.block_on(Watch::start(config, Lang::En)).unwrap();
    let addr = watch.addr;
    let file = log.display().to_string();
    let lines = format!("gwdoctor_log_lines_total{{file=\"{file}\"}}");
    let renames = format!("gwdoctor_log_rotations_total{{file=\"{file}\",kind=\"rename\"}}");
    let truncates = format!("gwdoctor_log_rotations_total{{file=\"{file}\",kind=\"truncate\"}}");

    write_lines(&mut w, 5, 505);
    assert_eq!(await_metric(addr, &lines, 500.0), 500.0);
    // Rename, a few late lines into the old file, then reopen.
    std::fs::rename(&log, dir.path().join("error.log.1")).unwrap();
    write_lines(&mut w, 505, 605);
    let mut w = writer(&log);
    write_lines(&mut w, 605, 905);
    assert_eq!(await_metric(addr, &lines, 900.0), 900.0);
    assert_eq!(metric(addr, &renames), 1.0);
    // copytruncate.
    std::fs::copy(&log, dir.path().join("error.log.2")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    write_lines(&mut w, 905, 1405);
    assert_eq!(await_metric(addr, &lines, 1400.0), 1400.0);
    assert_eq!(metric(addr, &truncates), 1.0);
    // Nothing counted twice: a little later the count has not moved.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(metric(addr, &lines), 1400.0);
    rt.block_on(watch.stop());
}
