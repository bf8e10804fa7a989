//! `explain`: the signature database and the catalog applied to pasted text.
//!
//! Input is a cause id (answered from the catalog), log lines (each classified by its best log
//! signature), or an error page (every page signature that matches, so that a header can name
//! the product and the body the cause). The result is a value; `report::explain` renders it.

use crate::catalog::{self, Signature, SignatureMatch};
use crate::collect::logs::formats::nginx_error;
use crate::input::{bounded_line, InputText};
use crate::redact::redact;

/// How many classified lines are kept for the report; counts cover every line.
pub const MAX_KEPT_LINES: usize = 1000;
/// How many unrecognised line numbers are kept as examples.
const MAX_UNRECOGNISED_EXAMPLES: usize = 5;
/// How much of a line a report echoes.
const MAX_ECHO: usize = 400;

/// One classified log line.
#[derive(Debug, Clone)]
pub struct ClassifiedLine {
    /// 1-based line number in the input.
    pub number: usize,
    /// The line as a report may show it: redacted and cut to a readable length.
    pub text: String,
    pub signature: &'static Signature,
    pub causes: Vec<String>,
    /// Fields from the line's envelope (nginx) and from the signature's regex, redacted.
    pub fields: Vec<(String, String)>,
    pub time: Option<String>,
    pub level: Option<String>,
}

/// One matching page signature.
#[derive(Debug, Clone)]
pub struct PageMatch {
    pub signature: &'static Signature,
    pub causes: Vec<String>,
    pub fields: Vec<(String, String)>,
}

/// A cause named by the input and how often: `count` as the most likely cause of a line or
/// page, `mentions` in any position (a signature lists the alternatives after its first cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseCount {
    pub id: String,
    pub count: usize,
    pub mentions: usize,
}

/// What the input was taken to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A cause id of the catalog.
    CauseId,
    /// Log lines.
    Lines,
    /// An error page, with or without headers.
    Page,
}

/// The whole answer of `explain`.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub kind: InputKind,
    /// The product that wrote the text (the most frequent among recognised lines, or the page's).
    pub product: Option<String>,
    /// Causes named, the most frequent first.
    pub causes: Vec<CauseCount>,
    pub lines: Vec<ClassifiedLine>,
    pub pages: Vec<PageMatch>,
    /// Non-empty lines read.
    pub total_lines: usize,
    pub recognised_lines: usize,
    pub unrecognised_lines: usize,
    pub unrecognised_examples: Vec<usize>,
    /// Lines cut at [`crate::input::MAX_LINE`] before classification.
    pub cut_lines: usize,
    pub binary: bool,
    pub lossy: bool,
}

impl Explanation {
    /// True when the input named at least one cause (the exit-status rule of `explain`).
    pub fn recognised(&self) -> bool {
        !self.causes.is_empty()
    }

    /// The cause ids in order.
    pub fn cause_ids(&self) -> Vec<&str> {
        self.causes.iter().map(|c| c.id.as_str()).collect()
    }

    fn empty(kind: InputKind) -> Explanation {
        Explanation {
            kind,
            product: None,
            causes: Vec::new(),
            lines: Vec::new(),
            pages: Vec::new(),
            total_lines: 0,
            recognised_lines: 0,
            unrecognised_lines: 0,
            unrecognised_examples: Vec::new(),
            cut_lines: 0,
            binary: false,
            lossy: false,
        }
    }
}

/// Explains `input`: a cause id, log lines, or an error page.
pub fn explain(input: &InputText) -> Explanation {
    let trimmed = input.text.trim();
    if catalog::catalog().get(trimmed).is_some() {
        let mut e = Explanation::empty(InputKind::CauseId);
        e.causes.push(CauseCount {
            id: trimmed.to_string(),
            count: 1,
            mentions: 1,
        });
        return e;
    }
    let mut e = if looks_like_page(trimmed) {
        explain_page(trimmed)
    } else {
        explain_lines(&input.text)
    };
    e.binary = input.binary;
    e.lossy = input.lossy;
    e
}

/// An HTML document, or a response starting with a status line.
fn looks_like_page(text: &str) -> bool {
    let head = &text.as_bytes()[..text.len().min(4096)];
    let lower = head.to_ascii_lowercase();
    let has = |needle: &[u8]| memchr::memmem::find(&lower, needle).is_some();
    lower.starts_with(b"http/")
        || has(b"<html")
        || has(b"<!doctype")
        || has(b"<body")
        || has(b"<title")
}

fn explain_page(text: &str) -> Explanation {
    let mut e = Explanation::empty(InputKind::Page);
    e.total_lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    let (text, cut) = bounded_line(text);
    e.cut_lines = usize::from(cut);
    for m in catalog::signatures().match_page(text) {
        add_causes(&mut e.causes, &m.causes);
        e.pages.push(PageMatch {
            signature: m.signature,
            fields: redacted_fields(&m),
            causes: m.causes,
        });
    }
    e.product = e.pages.first().map(|p| p.signature.product.clone());
    e
}

fn explain_lines(text: &str) -> Explanation {
    let db = catalog::signatures();
    let mut e = Explanation::empty(InputKind::Lines);
    let mut products: Vec<(String, usize)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        e.total_lines += 1;
        let (line, cut) = bounded_line(raw);
        e.cut_lines += usize::from(cut);
        let Some(m) = db.match_line(line) else {
            e.unrecognised_lines += 1;
            if e.unrecognised_examples.len() < MAX_UNRECOGNISED_EXAMPLES {
                e.unrecognised_examples.push(index + 1);
            }
            continue;
        };
        e.recognised_lines += 1;
        add_causes(&mut e.causes, &m.causes);
        match products.iter_mut().find(|(p, _)| *p == m.signature.product) {
            Some((_, n)) => *n += 1,
            None => products.push((m.signature.product.clone(), 1)),
        }
        if e.lines.len() < MAX_KEPT_LINES {
            e.lines.push(classify(index + 1, line, m));
        }
    }
    // A pasted text without log lines may still be a page fragment ("no healthy upstream").
    if e.recognised_lines == 0 {
        let page = explain_page(text);
        if !page.pages.is_empty() {
            e.pages = page.pages;
            e.causes = page.causes;
            e.product = page.product;
            return e;
        }
    }
    e.product = products
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p.clone());
    e
}

fn classify(number: usize, line: &str, m: SignatureMatch<'static>) -> ClassifiedLine {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut time = None;
    let mut level = None;
    if let Some(parsed) = nginx_error::parse(line) {
        time = Some(parsed.time.to_string());
        level = Some(parsed.level.to_string());
        for (name, value) in parsed.context_fields() {
            fields.push((name.to_string(), redact(value).into_owned()));
        }
    }
    for (name, value) in redacted_fields(&m) {
        if !fields.iter().any(|(n, _)| *n == name) {
            fields.push((name, value));
        }
    }
    ClassifiedLine {
        number,
        text: echo(line),
        signature: m.signature,
        causes: m.causes,
        fields,
        time,
        level,
    }
}

fn redacted_fields(m: &SignatureMatch<'_>) -> Vec<(String, String)> {
    m.fields.iter().map(|(k, v)| (k.clone(), echo(v))).collect()
}

/// A redacted copy of `text`, cut to [`MAX_ECHO`] characters.
fn echo(text: &str) -> String {
    let cut: String = text.chars().take(MAX_ECHO).collect();
    let mut out = redact(&cut).into_owned();
    if cut.len() < text.len() {
        out.push('…');
    }
    out
}

fn add_causes(counts: &mut Vec<CauseCount>, causes: &[String]) {
    for (position, id) in causes.iter().enumerate() {
        let first = usize::from(position == 0);
        match counts.iter_mut().find(|c| &c.id == id) {
            Some(c) => {
                c.count += first;
                c.mentions += 1;
            }
            None => counts.push(CauseCount {
                id: id.clone(),
                count: first,
                mentions: 1,
            }),
        }
    }
    // Stable: equal counts keep the order they were first seen in.
    counts.sort_by_key(|c| std::cmp::Reverse((c.count, c.mentions)));
}
