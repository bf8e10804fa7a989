//! Who produced a response: the signature database (`data/signatures/*.toml`, source `page`)
//! over its head and body.
//!
//! Two hops can show in one response, and telling them apart is the point:
//!
//! - the **front**: the product that sent the response to the client, named by the response
//!   headers (`Server: nginx/1.24.0`, `Via: 1.1 google`, `x-amz-cf-id`);
//! - the **page**: the product whose error page the body is (nginx's own 502 page, HAProxy's,
//!   Cloudflare's 521 page …).
//!
//! When they differ, the error was produced behind the front hop and passed through it (nginx
//! relays an upstream's 502 page but replaces its `Server` header). When they agree, the front
//! hop produced the error itself. Every match is kept, with the part of the response it needed
//! (headers, body or both), the causes it names and the version it read.

use crate::catalog::signatures;
use serde::Serialize;

/// Page signatures at or above this priority recognise a page; below it they only identify a
/// product from a header (see the priority bands of `data/signatures/pages.toml`).
pub const PAGE_PRIORITY: i32 = 5;

/// Which part of the response a signature needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Headers,
    Body,
    Both,
}

/// One signature that matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageMatch {
    pub signature: String,
    pub product: String,
    pub causes: Vec<String>,
    pub priority: i32,
    /// The status the product's page is for, when the signature says.
    pub status: Option<u16>,
    /// The product's version, when the page or header shows it.
    pub version: Option<String>,
    pub part: Part,
}

/// A hop and how it was recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub product: String,
    pub version: Option<String>,
    pub signature: String,
}

impl Hop {
    /// `nginx/1.22.1`, or `nginx` without a version.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{}/{v}", self.product),
            None => self.product.clone(),
        }
    }
}

/// Who produced a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Fingerprint {
    /// The hop the headers name (the one that sent the response to us).
    pub front: Option<Hop>,
    /// The product whose error page the body is.
    pub page: Option<Hop>,
    /// Every match, the most specific first.
    pub matches: Vec<PageMatch>,
}

impl Fingerprint {
    /// The hop that produced the response: the page's author, else the front hop.
    pub fn producer(&self) -> Option<&Hop> {
        self.page.as_ref().or(self.front.as_ref())
    }

    /// The page was written by another product than the one that sent it to us.
    pub fn passed_through(&self) -> bool {
        match (&self.front, &self.page) {
            (Some(front), Some(page)) => front.product != page.product,
            _ => false,
        }
    }

    /// The best page match (the one [`Fingerprint::page`] names).
    pub fn page_match(&self) -> Option<&PageMatch> {
        let page = self.page.as_ref()?;
        self.matches.iter().find(|m| m.signature == page.signature)
    }
}

/// Identifies the hops of a response from its head (`HTTP/1.1 502 …\r\nServer: …\r\n`) and the
/// start of its body.
pub fn identify(head: &str, body: &str) -> Fingerprint {
    let db = signatures();
    let mut whole = String::with_capacity(head.len() + body.len() + 2);
    whole.push_str(head);
    whole.push_str("\r\n");
    whole.push_str(body);
    let all = db.match_page(&whole);
    if all.is_empty() {
        return Fingerprint::default();
    }
    let in_head: Vec<String> = db
        .match_page(head)
        .into_iter()
        .map(|m| m.signature.id.clone())
        .collect();
    let in_body: Vec<String> = if body.is_empty() {
        Vec::new()
    } else {
        db.match_page(body)
            .into_iter()
            .map(|m| m.signature.id.clone())
            .collect()
    };
    let matches: Vec<PageMatch> = all
        .iter()
        .map(|m| {
            let id = &m.signature.id;
            PageMatch {
                signature: id.clone(),
                product: m.signature.product.clone(),
                causes: m.causes.clone(),
                priority: m.signature.priority,
                status: m.signature.status,
                version: m
                    .field("value")
                    .or_else(|| m.field("version"))
                    .map(str::to_string),
                part: if in_head.contains(id) {
                    Part::Headers
                } else if in_body.contains(id) {
                    Part::Body
                } else {
                    Part::Both
                },
            }
        })
        .collect();
    let hop = |m: &PageMatch| Hop {
        product: m.product.clone(),
        version: m.version.clone(),
        signature: m.signature.clone(),
    };
    // The front hop: what the headers alone say, identifiers first.
    let front = matches
        .iter()
        .filter(|m| m.part == Part::Headers)
        .min_by_key(|m| (m.priority >= PAGE_PRIORITY, -m.priority))
        .map(hop)
        .map(|mut h| {
            // A version the header omits may be on the page of the same product.
            if h.version.is_none() {
                h.version = matches
                    .iter()
                    .find(|m| m.product == h.product)
                    .and_then(|m| m.version.clone());
            }
            h
        });
    // The page: the most specific page-level match (some pages are recognised from their
    // head alone, such as Caddy's empty 502 or an ELB's status line and Server header).
    let page = matches
        .iter()
        .find(|m| m.priority >= PAGE_PRIORITY)
        .map(hop);
    Fingerprint {
        front,
        page,
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_front_and_page_agree() {
        let head =
            "HTTP/1.1 502 Bad Gateway\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n";
        let body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";
        let f = identify(head, body);
        assert_eq!(f.front.as_ref().unwrap().label(), "nginx/1.22.1");
        assert_eq!(f.page.as_ref().unwrap().signature, "nginx-502-page");
        assert_eq!(f.producer().unwrap().label(), "nginx/1.22.1");
        assert!(!f.passed_through());
    }

    #[test]
    fn a_foreign_page_behind_nginx_is_passed_through() {
        let head = "HTTP/1.1 502 Bad Gateway\r\nServer: nginx/1.22.1\r\n";
        let body = "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n";
        let f = identify(head, body);
        assert_eq!(f.page.as_ref().unwrap().product, "haproxy");
        assert_eq!(f.front.as_ref().unwrap().product, "nginx");
        assert!(f.passed_through());
    }

    #[test]
    fn nothing_known_is_nothing() {
        let f = identify("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", "ok\n");
        assert_eq!(f, Fingerprint::default());
        assert!(f.producer().is_none());
    }
}
