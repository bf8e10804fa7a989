//! The scanner: reads each file in large blocks that end at a line break, counts the blocks in
//! parallel (rayon) and merges their tallies in order, so line numbers stay exact and memory
//! stays bounded by the block size and the number of distinct keys.
//!
//! Per line, an access log is parsed by its compiled `log_format` (a few substring searches,
//! no regex); any other log goes through the signature database, whose Aho-Corasick prefilter
//! leaves the regexes for the few candidate signatures of the line.

use super::formats::access::{attempts, LogFormat};
use super::formats::detect::{self, LogKind};
use super::formats::nginx_error::Head;
use super::formats::{json_access, nginx_error};
use super::source::LogFile;
use super::tally::{LineRef, Tally, MAX_UNKNOWN_EXAMPLES};
use super::time;
use crate::catalog::{catalog, signatures, Signature};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::io::Read;
use std::sync::Arc;

/// The size of a block handed to one thread.
const BLOCK: usize = 8 << 20;
/// A line is classified on at most this many bytes.
pub const MAX_LINE: usize = crate::input::MAX_LINE;
/// How much of a file's start is used to decide its format.
const SAMPLE: usize = 64 << 10;
/// How many sample lines decide the format.
const SAMPLE_LINES: usize = 200;

/// What a scan is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Access-log formats to try, besides combined and common (from the nginx config or
    /// `--log-format`).
    pub formats: Vec<LogFormat>,
    /// Only lines at or after / before these times (lines without a time are kept).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// The year of syslog lines that do not carry one.
    pub reference_year: i64,
}

/// What a scan saw of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub path: String,
    pub kind: &'static str,
    /// The access-log format, when it is one.
    pub format: Option<String>,
    pub lines: u64,
    pub bytes: u64,
    /// What went wrong while reading (a truncated gzip stream …): the lines before it count.
    pub warning: Option<String>,
}

/// The result of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanResult {
    pub files: Vec<FileSummary>,
    pub tally: Tally,
}

/// A file that could not be opened at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot read: {source}")]
pub struct ScanError {
    pub path: String,
    pub source: std::io::Error,
}

/// Scans every file in order. `progress` is told how many bytes were read.
pub fn scan(
    files: &[LogFile],
    options: &ScanOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ScanResult, ScanError> {
    let mut formats = options.formats.clone();
    formats.push(LogFormat::combined());
    formats.push(LogFormat::common());
    let mut result = ScanResult::default();
    for (index, file) in files.iter().enumerate() {
        let reader = file.open().map_err(|source| ScanError {
            path: file.display(),
            source,
        })?;
        let (tally, summary) = scan_file(index, file, reader, &formats, options, progress);
        result.files.push(summary);
        result.tally.merge(tally);
    }
    Ok(result)
}

/// What every line of one file is read with.
struct Context<'a> {
    file: usize,
    kind: LogKind,
    format: Option<&'a LogFormat>,
    options: &'a ScanOptions,
}

fn scan_file(
    index: usize,
    file: &LogFile,
    reader: Box<dyn Read + Send>,
    formats: &[LogFormat],
    options: &ScanOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> (Tally, FileSummary) {
    let mut blocks = Blocks::new(reader);
    let mut tally = Tally::default();
    let mut warning = None;
    let mut context: Option<Context> = None;
    let mut lines_before = 0u64;
    let batch_size = rayon::current_num_threads().max(1) * 2;
    loop {
        let mut batch = Vec::with_capacity(batch_size);
        let mut ended = false;
        while batch.len() < batch_size {
            match blocks.next() {
                Ok(Some(block)) => batch.push(block),
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) => {
                    warning = Some(format!(
                        "reading stopped at line {}: {e}",
                        lines_before
                            + 1
                            + batch.iter().map(|b: &Vec<u8>| count_lines(b)).sum::<u64>()
                    ));
                    ended = true;
                    break;
                }
            }
        }
        if context.is_none() {
            let Some(first) = batch.first() else { break };
            let sample: Vec<&[u8]> = first[..first.len().min(SAMPLE)]
                .split(|&b| b == b'\n')
                .take(SAMPLE_LINES)
                .collect();
            let kind = detect::detect(&sample, formats);
            let format = match kind {
                LogKind::Access(i) => formats.get(i),
                _ => None,
            };
            context = Some(Context {
                file: index,
                kind,
                format,
                options,
            });
        }
        let ctx = context.as_ref().expect("set above");
        let counted: Vec<(Tally, u64)> = batch
            .par_iter()
            .map(|block| scan_block(ctx, block))
            .collect();
        for (mut t, lines) in counted {
            t.shift(lines_before);
            lines_before += lines;
            tally.merge(t);
        }
        progress(blocks.take_read());
        if ended {
            break;
        }
    }
    if let Some(e) = blocks.error.take() {
        warning = Some(format!("reading stopped after line {lines_before}: {e}"));
    }
    let (kind, format) = context.map_or(("empty", None), |c| {
        (c.kind.name(), c.format.map(|f| f.name.clone()))
    });
    let summary = FileSummary {
        path: file.display(),
        kind,
        format,
        lines: tally.lines,
        bytes: tally.bytes,
        warning,
    };
    (tally, summary)
}

fn count_lines(block: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', block).count() as u64;
    newlines + u64::from(block.last().is_some_and(|&b| b != b'\n'))
}

/// Reads a stream in blocks of about [`BLOCK`] bytes that end at a line break. A line longer
/// than a block is cut: its first block is kept as one line, the rest up to the next break is
/// dropped, so memory never grows with a line's length.
struct Blocks {
    reader: Box<dyn Read + Send>,
    carry: Vec<u8>,
    skipping: bool,
    done: bool,
    read: u64,
    /// The error that ended the stream early (a truncated gzip member …).
    error: Option<std::io::Error>,
}

impl Blocks {
    fn new(reader: Box<dyn Read + Send>) -> Blocks {
        Blocks {
            reader,
            carry: Vec::new(),
            skipping: false,
            done: false,
            read: 0,
            error: None,
        }
    }

    fn take_read(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }

    fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if self.done {
                return Ok((!self.carry.is_empty()).then(|| std::mem::take(&mut self.carry)));
            }
            let mut buf = std::mem::take(&mut self.carry);
            let start = buf.len();
            buf.resize(start.max(BLOCK) + BLOCK / 4, 0);
            let mut filled = start;
            while filled < BLOCK {
                match self.reader.read(&mut buf[filled..]) {
                    Ok(0) => {
                        self.done = true;
                        break;
                    }
                    Ok(n) => {
                        filled += n;
                        self.read += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // What was read before the error still counts; the error is reported after.
                    Err(e) => {
                        self.error = Some(e);
                        self.done = true;
                        break;
                    }
                }
            }
            buf.truncate(filled);
            if self.skipping {
                match memchr::memchr(b'\n', &buf) {
                    Some(i) => {
                        self.skipping = false;
                        buf.drain(..=i);
                    }
                    None => {
                        if self.done {
                            return Ok(None);
                        }
                        continue;
                    }
                }
            }
            if self.done {
                return Ok((!buf.is_empty()).then_some(buf));
            }
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => {
                    self.carry = buf.split_off(i + 1);
                    return Ok(Some(buf));
                }
                None if buf.len() >= BLOCK => {
                    // One line longer than a block: keep its start as a line of its own.
                    self.skipping = true;
                    buf.push(b'\n');
                    return Ok(Some(buf));
                }
                None => self.carry = buf,
            }
        }
    }
}

/// Counts one block; returns its tally (line numbers from 1 within the block) and its lines.
fn scan_block(ctx: &Context, block: &[u8]) -> (Tally, u64) {
    let mut tally = Tally::default();
    let mut access = AccessCache::default();
    let mut memo = Memo::default();
    let mut number = 0u64;
    let mut start = 0;
    let mut line_of = |line: &[u8], tally: &mut Tally, access: &mut AccessCache| {
        number += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        tally.lines += 1;
        tally.bytes += line.len() as u64 + 1;
        let line = if line.len() > MAX_LINE {
            tally.long_lines += 1;
            &line[..MAX_LINE]
        } else {
            line
        };
        if line.is_empty() {
            return;
        }
        match ctx.kind {
            LogKind::Access(_) => access_line(ctx, line, number, tally, access),
            LogKind::JsonAccess => json_line(ctx, line, number, tally),
            _ => event_line(ctx, line, number, tally, &mut memo),
        }
    };
    for end in memchr::memchr_iter(b'\n', block) {
        line_of(&block[start..end], &mut tally, &mut access);
        start = end + 1;
    }
    if start < block.len() {
        line_of(&block[start..], &mut tally, &mut access);
    }
    access.flush(&mut tally);
    (tally, number)
}

fn in_window(options: &ScanOptions, t: Option<i64>) -> bool {
    match t {
        Some(t) => options.since.is_none_or(|s| t >= s) && options.until.is_none_or(|u| t < u),
        None => true,
    }
}

fn unknown(ctx: &Context, tally: &mut Tally, number: u64, line: &[u8]) {
    tally.unknown += 1;
    if tally.unknown_examples.len() < MAX_UNKNOWN_EXAMPLES {
        tally.unknown_examples.push(LineRef::new(
            ctx.file,
            number,
            &String::from_utf8_lossy(line),
        ));
    }
}

/// Lines that report nothing wrong: notices, info, debug, start-up chatter.
fn routine(kind: LogKind, line: &[u8]) -> bool {
    let has = |needle: &[u8]| memchr::memmem::find(line, needle).is_some();
    match kind {
        LogKind::NginxError => has(b"] [notice] ") || has(b"] [info] ") || has(b"] [debug] "),
        LogKind::PhpFpm => has(b"] NOTICE: ") || has(b"] DEBUG: "),
        LogKind::Gunicorn => has(b"] [INFO] ") || has(b"] [DEBUG] "),
        LogKind::ApacheError => {
            has(b":notice] ") || has(b":info] ") || has(b":debug] ") || has(b":trace")
        }
        // uWSGI's and the kernel's logs are mostly start-up and housekeeping lines.
        LogKind::Uwsgi | LogKind::System => true,
        _ => false,
    }
}

/// A line's best signature and its causes (catalog ids, most likely first).
type Classification = Option<(&'static Signature, Arc<[&'static str]>)>;

/// Classifications of nginx error lines by their shape, within one block. Millions of lines of
/// an error log share a few hundred shapes; the shape is everything a signature may look at:
/// the level, the message, the upstream's scheme://host:port, and whether the request context
/// follows the message directly (client-side TLS errors).
#[derive(Default)]
struct Memo {
    key: String,
    known: FxHashMap<String, Classification>,
}

/// Distinct shapes remembered per block before the memo starts over.
const MEMO_LIMIT: usize = 4096;

impl Memo {
    fn shape(&mut self, parsed: &Head) {
        self.key.clear();
        self.key.push_str(parsed.level);
        self.key.push('\u{0}');
        self.key.push_str(parsed.message);
        self.key.push('\u{0}');
        if let Some(upstream) = parsed.upstream() {
            let bytes = upstream.as_bytes();
            // "scheme://host:port/…": the scheme ends at the first ':'; the host part at the next '/'.
            let host_end = match memchr::memchr(b':', bytes) {
                Some(i) if bytes[i..].starts_with(b"://") => {
                    let rest = &bytes[i + 3..];
                    let end = if rest.starts_with(b"unix:") {
                        rest.len()
                    } else {
                        memchr::memchr(b'/', rest).map_or(rest.len(), |e| e + 1)
                    };
                    i + 3 + end
                }
                _ => bytes.len(),
            };
            self.key.push_str(&upstream[..host_end]);
        }
        self.key.push('\u{0}');
        self.key
            .push(if parsed.client_follows() { 'c' } else { '-' });
    }
}

fn classify_direct(text: &str) -> Classification {
    let m = signatures().match_line(text)?;
    let causes: Arc<[&'static str]> = m
        .causes
        .iter()
        .filter_map(|c| catalog().get(c).map(|c| c.id.as_str()))
        .collect();
    Some((m.signature, causes))
}

/// The best signature of a line and its causes, through the memo for nginx error lines.
fn classify(text: &str, parsed: Option<&Head>, memo: &mut Memo) -> Classification {
    let Some(parsed) = parsed else {
        return classify_direct(text);
    };
    memo.shape(parsed);
    if let Some(known) = memo.known.get(&memo.key) {
        return known.clone();
    }
    let result = classify_direct(text);
    if memo.known.len() >= MEMO_LIMIT {
        memo.known.clear();
    }
    memo.known.insert(memo.key.clone(), result.clone());
    result
}

fn event_line(ctx: &Context, line: &[u8], number: u64, tally: &mut Tally, memo: &mut Memo) {
    let t = detect::line_time(ctx.kind, line, ctx.options.reference_year);
    if !in_window(ctx.options, t) {
        tally.outside_window += 1;
        return;
    }
    if let Some(t) = t {
        tally.see_time(t);
    }
    // from_utf8 is the fast check; the lossy copy only for the rare invalid line.
    let text = match std::str::from_utf8(line) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(line),
    };
    let parsed = if ctx.kind == LogKind::NginxError {
        nginx_error::parse_head(&text)
    } else {
        None
    };
    let Some((signature, causes)) = classify(&text, parsed.as_ref(), memo) else {
        if routine(ctx.kind, line) {
            tally.routine += 1;
        } else {
            unknown(ctx, tally, number, line);
        }
        return;
    };
    tally.classified += 1;
    *tally.signatures.entry(signature.id.as_str()).or_default() += 1;
    let upstream: Option<std::borrow::Cow<str>> = match &parsed {
        Some(p) => p
            .upstream()
            .map(|u| std::borrow::Cow::Borrowed(nginx_error::upstream_address(u))),
        // Other products name their upstream in the message: the signature's regex takes it.
        None => signatures()
            .best_with_fields(&text, signature)
            .and_then(|fields| {
                fields
                    .into_iter()
                    .find(|(k, _)| k == "upstream")
                    .map(|(_, v)| std::borrow::Cow::Owned(v))
            }),
    };
    let kind = ctx.kind.name();
    let gateway = matches!(ctx.kind, LogKind::NginxError | LogKind::ApacheError);
    if let (true, Some(t), false) = (gateway, t, causes.is_empty()) {
        Tally::earliest_into(&mut tally.gateway_first, t, || {
            LineRef::new(ctx.file, number, &text)
        });
    }
    for (position, &id) in causes.iter().enumerate() {
        let c = tally.causes.entry(id).or_default();
        c.mentions += 1;
        if !c.kinds.contains(&kind) {
            c.kinds.push(kind);
        }
        if position == 0 {
            c.primary += 1;
            // Upstreams are counted where the cause is the line's most likely one.
            if let Some(u) = upstream.as_deref() {
                let full = c.upstreams.len() >= 64;
                match c.upstreams.get_mut(u) {
                    Some(n) => *n += 1,
                    None if !full => {
                        c.upstreams.insert(u.to_string(), 1);
                    }
                    None => {}
                }
            }
            if c.example.is_none() {
                c.example = Some(LineRef::new(ctx.file, number, &text));
            }
        }
        let earlier = match (c.first, t) {
            (Some(a), Some(b)) => b < a,
            (None, Some(_)) => true,
            (None, None) => c.first_line.is_none(),
            (Some(_), None) => false,
        };
        if earlier {
            c.first_line = Some(LineRef::new(ctx.file, number, &text));
        }
        if let Some(t) = t {
            c.first = Some(c.first.map_or(t, |f| f.min(t)));
            c.last = Some(c.last.map_or(t, |l| l.max(t)));
            if !gateway {
                Tally::earliest_into(&mut c.upstream_first, t, || {
                    LineRef::new(ctx.file, number, &text)
                });
            }
        }
    }
    static PHP: std::sync::OnceLock<memchr::memmem::Finder<'static>> = std::sync::OnceLock::new();
    if PHP
        .get_or_init(|| memchr::memmem::Finder::new(b"PHP "))
        .find(line)
        .is_some()
    {
        if let Some((culprit, fatal)) = php_culprit(&text) {
            let p = tally.php.entry(culprit).or_default();
            p.count += 1;
            p.fatal += u64::from(fatal);
            if p.example.is_none() {
                p.example = Some(LineRef::new(ctx.file, number, &text));
            }
        }
    }
}

/// The code a PHP error names: `plugin NAME` / `theme NAME` under wp-content, else the file.
/// The second value says whether it was fatal.
pub fn php_culprit(text: &str) -> Option<(String, bool)> {
    let (at, fatal) = ["PHP Fatal error", "PHP Parse error", "PHP Warning"]
        .iter()
        .enumerate()
        .find_map(|(i, m)| text.find(m).map(|at| (at, i < 2)))?;
    let rest = &text[at..];
    // "… in /var/www/html/wp-content/plugins/foo/bar.php on line 12" or "…(): … in /x.php:12"
    let file_start = rest.find(" in /").map(|i| i + 4)?;
    let file = &rest[file_start..];
    let file_end = file
        .find(|c: char| c.is_whitespace() || c == ':' || c == '"' || c == '(')
        .unwrap_or(file.len());
    let file = &file[..file_end];
    for (marker, label) in [
        ("/wp-content/plugins/", "plugin"),
        ("/wp-content/themes/", "theme"),
        ("/wp-content/mu-plugins/", "mu-plugin"),
    ] {
        if let Some(i) = file.find(marker) {
            let name = file[i + marker.len()..]
                .split('/')
                .next()
                .unwrap_or_default();
            if !name.is_empty() {
                return Some((format!("{label} {name}"), fatal));
            }
        }
    }
    Some((file.to_string(), fatal))
}

/// Per-block memo of the access path: the last time string parsed and the current minute's
/// counts, because consecutive lines share both.
#[derive(Default)]
struct AccessCache {
    last_time: Vec<u8>,
    last_value: Option<i64>,
    minute: Option<i64>,
    requests: u64,
    errors: u64,
}

impl AccessCache {
    fn time(&mut self, raw: &[u8], parse: fn(&[u8]) -> Option<i64>) -> Option<i64> {
        if raw != self.last_time.as_slice() {
            self.last_time.clear();
            self.last_time.extend_from_slice(raw);
            self.last_value = parse(raw);
        }
        self.last_value
    }

    fn count(&mut self, tally: &mut Tally, minute: Option<i64>, error: bool) {
        if minute != self.minute {
            self.flush(tally);
            self.minute = minute;
        }
        self.requests += 1;
        self.errors += u64::from(error);
    }

    fn flush(&mut self, tally: &mut Tally) {
        if let Some(m) = self.minute {
            if self.requests > 0 {
                let slot = tally.access.minutes.entry(m).or_default();
                slot.0 += self.requests;
                slot.1 += self.errors;
            }
        }
        self.requests = 0;
        self.errors = 0;
    }
}

/// A request seen in an access log, whatever its format.
struct Request<'a> {
    time: Option<i64>,
    status: u16,
    path: Option<std::borrow::Cow<'a, str>>,
    upstream_addr: Option<&'a [u8]>,
    upstream_status: Option<&'a [u8]>,
    upstream_time: Option<&'a [u8]>,
}

fn access_line(
    ctx: &Context,
    line: &[u8],
    number: u64,
    tally: &mut Tally,
    cache: &mut AccessCache,
) {
    let Some(record) = ctx.format.and_then(|f| f.parse(line)) else {
        unknown(ctx, tally, number, line);
        return;
    };
    let t = match (record.time_local, record.time_iso8601, record.msec) {
        (Some(raw), _, _) => cache.time(raw, time::time_local),
        (None, Some(raw), _) => cache.time(raw, time::iso8601),
        (None, None, Some(raw)) => std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as i64),
        _ => None,
    };
    let Some(status) = record.status_code() else {
        unknown(ctx, tally, number, line);
        return;
    };
    let request = Request {
        time: t,
        status,
        path: record.path().map(String::from_utf8_lossy),
        upstream_addr: record.upstream_addr,
        upstream_status: record.upstream_status,
        upstream_time: record.upstream_response_time,
    };
    count_request(ctx, request, line, number, tally, cache);
}

fn json_line(ctx: &Context, line: &[u8], number: u64, tally: &mut Tally) {
    let Some(record) = json_access::parse(line) else {
        unknown(ctx, tally, number, line);
        return;
    };
    let Some(status) = record.status else { return };
    let mut cache = AccessCache::default();
    let request = Request {
        time: record.time,
        status,
        path: record.path.as_deref().map(std::borrow::Cow::Borrowed),
        upstream_addr: record.upstream_addr.as_deref().map(str::as_bytes),
        upstream_status: record.upstream_status.as_deref().map(str::as_bytes),
        upstream_time: record.upstream_response_time.as_deref().map(str::as_bytes),
    };
    count_request(ctx, request, line, number, tally, &mut cache);
    cache.flush(tally);
}

fn count_request(
    ctx: &Context,
    r: Request,
    line: &[u8],
    number: u64,
    tally: &mut Tally,
    cache: &mut AccessCache,
) {
    if !in_window(ctx.options, r.time) {
        tally.outside_window += 1;
        return;
    }
    tally.classified += 1;
    let a = &mut tally.access;
    a.requests += 1;
    *a.statuses.entry(r.status).or_default() += 1;
    let error = r.status >= 500;
    if r.status == 9 {
        a.http09 += 1;
    }
    if let Some(addr) = r.upstream_addr {
        let tries = attempts(addr, r.upstream_status, r.upstream_time);
        let failed_try = tries.iter().any(|t| t.status.is_some_and(|s| s >= 500));
        if failed_try && !error {
            a.hidden_retries += 1;
            // The same server failed and then answered: its connection was stale (a reused
            // keep-alive connection it had closed), not the server.
            let last = tries.last().map(|t| t.addr);
            if tries
                .iter()
                .rev()
                .skip(1)
                .any(|t| Some(t.addr) == last && t.status.is_some_and(|s| s >= 500))
            {
                a.same_server_retries += 1;
            }
        }
        for attempt in tries {
            let key = String::from_utf8_lossy(attempt.addr);
            let u = match a.upstreams.get_mut(key.as_ref()) {
                Some(u) => u,
                None => a.upstreams.entry(key.into_owned()).or_default(),
            };
            u.attempts += 1;
            u.errors += u64::from(attempt.status.is_some_and(|s| s >= 500));
            if let Some(seconds) = attempt.seconds {
                u.times.record(seconds);
                if attempt.status == Some(504) {
                    u.timeout_seconds = u.timeout_seconds.max(seconds);
                }
            }
        }
    }
    if error {
        if let Some(path) = &r.path {
            let path: String = path.chars().take(200).collect();
            *a.paths_5xx.entry(path).or_default() += 1;
        }
        if let Some(t) = r.time {
            if a.first_5xx.as_ref().is_none_or(|(f, _)| t < *f) {
                a.first_5xx = Some((
                    t,
                    LineRef::new(ctx.file, number, &String::from_utf8_lossy(line)),
                ));
            }
            a.last_5xx = Some(a.last_5xx.map_or(t, |l| l.max(t)));
        }
    }
    cache.count(tally, r.time.map(|t| t.div_euclid(60)), error);
    if let Some(t) = r.time {
        tally.see_time(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks_of(data: &[u8]) -> Vec<Vec<u8>> {
        let mut b = Blocks::new(Box::new(std::io::Cursor::new(data.to_vec())));
        let mut out = Vec::new();
        while let Some(block) = b.next().unwrap() {
            out.push(block);
        }
        out
    }

    #[test]
    fn blocks_end_at_line_breaks_and_cut_giant_lines() {
        let data = b"a\nbb\nccc";
        assert_eq!(blocks_of(data).concat(), data);
        let mut giant = vec![b'x'; BLOCK * 2 + 10];
        giant.extend_from_slice(b"\nnext\n");
        let blocks = blocks_of(&giant);
        let joined = blocks.concat();
        assert!(joined.len() < BLOCK * 2, "the giant line was kept whole");
        assert!(joined.ends_with(b"\nnext\n"));
    }

    #[test]
    fn the_memo_classifies_as_the_database_does() {
        // Every log test line of the database, classified through the memo (twice: the second
        // time from the memo) and directly, must agree.
        let mut memo = Memo::default();
        for sig in signatures()
            .signatures()
            .iter()
            .filter(|s| s.source == crate::catalog::Source::Log)
        {
            for line in &sig.test {
                let head = nginx_error::parse_head(line);
                let direct = classify_direct(line).map(|(s, c)| (s.id.clone(), c));
                for _ in 0..2 {
                    let memoised =
                        classify(line, head.as_ref(), &mut memo).map(|(s, c)| (s.id.clone(), c));
                    assert_eq!(memoised, direct, "{line}");
                }
            }
        }
    }

    #[test]
    fn wordpress_plugins_are_named() {
        let line = r#"2024/05/02 14:02:11 [error] 9#9: *3 FastCGI sent in stderr: "PHP message: PHP Fatal error:  Uncaught Error: Call to undefined function foo() in /var/www/html/wp-content/plugins/woo-extra/inc/cart.php:42" while reading response header from upstream"#;
        assert_eq!(
            php_culprit(line),
            Some(("plugin woo-extra".to_string(), true))
        );
        let theme = "PHP Warning:  Undefined variable $x in /var/www/wp-content/themes/astra/functions.php on line 7";
        assert_eq!(php_culprit(theme), Some(("theme astra".to_string(), false)));
        assert_eq!(php_culprit("PHP Notice: x in /a.php"), None);
    }
}
