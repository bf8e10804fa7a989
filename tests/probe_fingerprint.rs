//! Who produced a response, from real-format error pages: every page test text of the signature
//! database is served over a real socket on loopback and probed; the probe must recognise the
//! product that wrote it.

use gwdoctor::catalog::{signatures, Source};
use gwdoctor::collect::probe::fingerprint::identify;
use gwdoctor::collect::probe::{probe_blocking, ProbeOptions, ProbeTarget};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// A test text as a complete HTTP/1.1 response: its own head when it has one (HTTP/2 status
/// lines written as HTTP/1.1, the framing replaced by a close), else a head with `status`.
fn as_response(text: &str, status: u16) -> Vec<u8> {
    let text = text.trim_start_matches(['\n', '\r']);
    let (head, body) = if text.starts_with("HTTP/") {
        let split = text
            .find("\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| text.find("\n\n").map(|i| (i, 2)));
        match split {
            Some((i, n)) => (text[..i].to_string(), text[i + n..].to_string()),
            None => (text.to_string(), String::new()),
        }
    } else {
        (format!("HTTP/1.1 {status} Error"), text.to_string())
    };
    let mut out = String::new();
    for (i, line) in head.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-length:")
            || lower.starts_with("transfer-encoding:")
            || lower.starts_with("connection:")
        {
            continue;
        }
        if i == 0 {
            let rest = line.split_once(' ').map(|(_, r)| r).unwrap_or("502");
            let rest = if rest.contains(' ') {
                rest.to_string()
            } else {
                format!("{rest} Error")
            };
            out.push_str(&format!("HTTP/1.1 {rest}\r\n"));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[test]
fn every_real_format_page_is_attributed_to_its_product() {
    let db = signatures();
    let cases: Vec<(String, String, Vec<u8>)> = db
        .signatures()
        .iter()
        .filter(|s| s.source == Source::Page && s.priority >= 5)
        .flat_map(|s| {
            s.test.iter().map(|t| {
                (
                    s.id.clone(),
                    s.product.clone(),
                    as_response(t, s.status.filter(|c| *c >= 100).unwrap_or(502)),
                )
            })
        })
        .collect();
    assert!(cases.len() > 50, "{} page texts", cases.len());

    // One server answers each connection with the next page, in order.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pages: Vec<Vec<u8>> = cases.iter().map(|c| c.2.clone()).collect();
    let server = std::thread::spawn(move || {
        for page in pages {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&page);
        }
    });
    let options = ProbeOptions {
        timeout: Duration::from_secs(3),
        max_redirects: 0,
        ..ProbeOptions::default()
    };
    let target = ProbeTarget::parse(&format!("http://{addr}/")).unwrap();
    let mut wrong = Vec::new();
    for (id, product, _) in &cases {
        let report = probe_blocking(&target, &options).unwrap();
        let Some(http) = report.requests[0].hops[0].http.as_ref() else {
            wrong.push(format!(
                "{id}: no answer: {:?}",
                report.requests[0].failure()
            ));
            continue;
        };
        let fp = &http.fingerprint;
        let matched = fp.matches.iter().any(|m| &m.signature == id);
        let producer = fp.producer().map(|p| p.product.clone()).unwrap_or_default();
        if !matched || &producer != product {
            wrong.push(format!(
                "{id}: matched itself: {matched}, producer {producer:?}, want {product:?}"
            ));
        }
    }
    server.join().unwrap();
    assert!(
        wrong.is_empty(),
        "{} of {} pages misattributed:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_front_hop_and_the_page_are_told_apart() {
    // Cloudflare relaying the origin nginx's own 502 page.
    let head = "HTTP/1.1 502 Bad Gateway\r\nServer: cloudflare\r\nCF-RAY: 87d1f0a2b3c4d5e6-FRA\r\n";
    let body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let fp = identify(head, body);
    assert_eq!(fp.front.as_ref().unwrap().product, "cloudflare");
    let page = fp.page_match().unwrap();
    assert!(
        page.causes
            .contains(&"upstream-5xx-passthrough".to_string()),
        "{fp:#?}"
    );
    // A version on the page completes a header that hides it.
    let fp = identify(
        "HTTP/1.1 504 Gateway Time-out\r\nServer: nginx\r\n",
        "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx/1.18.0 (Ubuntu)</center>\r\n</body>\r\n</html>\r\n",
    );
    assert_eq!(fp.front.as_ref().unwrap().label(), "nginx/1.18.0");
    assert_eq!(fp.page.as_ref().unwrap().signature, "nginx-504-page");
}
