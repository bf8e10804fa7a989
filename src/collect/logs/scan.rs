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
use super::tally::{LineRef, Tally, UpstreamTally, MAX_UNKNOWN_EXAMPLES};
use super::time;
use crate::catalog::{catalog, signatures, Signature};
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
    let first = blocks.next_into(Vec::new());
    let context = first.as_ref().map(|first| {
        let sample: Vec<&[u8]> = first.data()[..first.len.min(SAMPLE)]
            .split(|&b| b == b'\n')
            .take(SAMPLE_LINES)
            .collect();
        let kind = detect::detect(&sample, formats);
        let format = match kind {
            LogKind::Access(i) => formats.get(i),
            _ => None,
        };
        Context {
            file: index,
            kind,
            format,
            options,
        }
    });
    let mut tally = Tally::default();
    let mut warning = None;
    if let (Some(ctx), Some(first)) = (&context, first) {
        let lines = pipeline(ctx, first, &mut blocks, &mut tally, progress);
        if let Some(e) = blocks.error.take() {
            warning = Some(format!("reading stopped after line {lines}: {e}"));
        }
    } else if let Some(e) = blocks.error.take() {
        warning = Some(format!("reading stopped at line 1: {e}"));
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

/// Counts a file's blocks on every core while one thread reads (and decompresses) ahead, and
/// merges their tallies in file order. A fixed set of buffers circulates between the reader,
/// the workers and the merge, so memory is bounded however large the file and however uneven
/// the blocks; reusing them also spares the page faults of fresh allocations. Returns the
/// number of lines.
fn pipeline(
    ctx: &Context,
    first: Block,
    blocks: &mut Blocks,
    tally: &mut Tally,
    progress: &(dyn Fn(u64) + Sync),
) -> u64 {
    use std::sync::mpsc::{channel, sync_channel};
    let workers = rayon::current_num_threads().max(1);
    let buffers = workers * 2 + 1;
    let mut lines_before = 0u64;
    let (block_tx, block_rx) = sync_channel::<(u64, Block)>(buffers);
    let block_rx = std::sync::Mutex::new(block_rx);
    let read = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        let (done_tx, done_rx) = channel::<(u64, Tally, u64, Block)>();
        let (spare_tx, spare_rx) = channel::<Vec<u8>>();
        let read = &read;
        s.spawn(move || {
            let mut sequence = 0u64;
            let mut next = Some(first);
            let mut allocated = 1;
            while let Some(block) = next {
                if block_tx.send((sequence, block)).is_err() {
                    return;
                }
                sequence += 1;
                // A new buffer while fewer than `buffers` exist, else wait for a spare one.
                let buf = if allocated < buffers {
                    allocated += 1;
                    spare_rx.try_recv().unwrap_or_default()
                } else {
                    match spare_rx.recv() {
                        Ok(buf) => buf,
                        Err(_) => return,
                    }
                };
                next = blocks.next_into(buf);
                read.fetch_add(blocks.take_read(), std::sync::atomic::Ordering::Relaxed);
            }
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let block_rx = &block_rx;
            s.spawn(move || loop {
                let job = block_rx
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .recv();
                let Ok((sequence, block)) = job else { return };
                let (t, lines) = scan_block(ctx, block.data());
                if done_tx.send((sequence, t, lines, block)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        // Tallies that arrive before their predecessors wait here; their buffers go back to
        // the reader only once merged, which is what bounds this map.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u64;
        for (sequence, t, lines, block) in done_rx {
            waiting.insert(sequence, (t, lines, block));
            while let Some((mut t, lines, block)) = waiting.remove(&next) {
                t.shift(lines_before);
                lines_before += lines;
                tally.merge(t);
                next += 1;
                // The reader may have finished: then nobody needs the buffer.
                let _ = spare_tx.send(block.buf);
            }
            progress(read.swap(0, std::sync::atomic::Ordering::Relaxed));
        }
    });
    lines_before
}

/// A block of whole lines: `buf[..len]` (the buffer keeps its full length between uses, so it
/// is zeroed once, not per block).
struct Block {
    buf: Vec<u8>,
    len: usize,
}

impl Block {
    fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Reads a stream in blocks of about [`BLOCK`] bytes that end at a line break. A line longer
/// than a block is cut: its first block is kept as one line, the rest up to the next break is
/// dropped, so memory never grows with a line's length.
struct Blocks {
    reader: Box<dyn Read + Send>,
    /// The start of a line that did not fit in the previous block.
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

    /// The next block, read into `buf` (a spare buffer or an empty one).
    fn next_into(&mut self, mut buf: Vec<u8>) -> Option<Block> {
        loop {
            let start = self.carry.len();
            if self.done {
                return (start > 0).then(|| {
                    let buf = std::mem::take(&mut self.carry);
                    Block {
                        len: buf.len(),
                        buf,
                    }
                });
            }
            let size = start.max(BLOCK) + BLOCK / 4;
            if buf.len() < size {
                buf.resize(size, 0);
            }
            buf[..start].copy_from_slice(&self.carry);
            self.carry.clear();
            let mut filled = start;
            // One byte stays free for the newline that ends a cut giant line.
            let limit = buf.len() - 1;
            while filled < BLOCK {
                match self.reader.read(&mut buf[filled..limit]) {
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
            let mut begin = 0;
            if self.skipping {
                match memchr::memchr(b'\n', &buf[..filled]) {
                    Some(i) => {
                        self.skipping = false;
                        begin = i + 1;
                    }
                    None => {
                        if self.done {
                            return None;
                        }
                        continue;
                    }
                }
            }
            if begin > 0 {
                buf.copy_within(begin..filled, 0);
                filled -= begin;
            }
            if self.done {
                return (filled > 0).then_some(Block { buf, len: filled });
            }
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(i) => {
                    self.carry.extend_from_slice(&buf[i + 1..filled]);
                    return Some(Block { buf, len: i + 1 });
                }
                None if filled >= BLOCK => {
                    // One line longer than a block: keep its start as a line of its own.
                    self.skipping = true;
                    buf[filled] = b'\n';
                    return Some(Block {
                        buf,
                        len: filled + 1,
                    });
                }
                None => self.carry.extend_from_slice(&buf[..filled]),
            }
        }
    }
}

/// Counts one block; returns its tally (line numbers from 1 within the block) and its lines.
fn scan_block<'b>(ctx: &Context, block: &'b [u8]) -> (Tally, u64) {
    let mut tally = Tally::default();
    let mut access = AccessCache::default();
    let mut shapes = Shapes::default();
    let mut timed_out = TimedOutWorkers::default();
    let mut number = 0u64;
    let mut start = 0;
    let mut line_of = |line: &'b [u8], tally: &mut Tally, access: &mut AccessCache<'b>| {
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
            LogKind::NginxError => {
                nginx_line(ctx, line, number, tally, &mut shapes, &mut timed_out)
            }
            _ => event_line(ctx, line, number, tally, &mut timed_out),
        }
    };
    for end in memchr::memchr_iter(b'\n', block) {
        line_of(&block[start..end], &mut tally, &mut access);
        start = end + 1;
    }
    if start < block.len() {
        line_of(&block[start..], &mut tally, &mut access);
    }
    access.finish(&mut tally);
    shapes.fold(ctx, &mut tally);
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

fn classify_direct(text: &str) -> Classification {
    let m = signatures().match_line(text)?;
    let causes: Arc<[&'static str]> = m
        .causes
        .iter()
        .filter_map(|c| catalog().get(c).map(|c| c.id.as_str()))
        .collect();
    Some((m.signature, causes))
}

/// What every nginx error line of one shape has in common. Millions of lines of an error log
/// share a few hundred shapes; the shape is everything a signature may look at: the level, the
/// message, the upstream's scheme://host:port, and whether the request context follows the
/// message directly (client-side TLS errors). So a shape is classified once, and its lines are
/// only counted.
struct ShapeInfo {
    class: Classification,
    /// The upstream's address (`10.0.0.6:8000`, `unix:/run/php.sock`).
    upstream: Option<String>,
    /// The code a PHP error in the message names, and whether it was fatal.
    php: Option<(String, bool)>,
    /// A notice, info or debug line.
    routine: bool,
}

/// Distinct shapes remembered (per block, and per worker thread across blocks) before the
/// memory starts over: the bound on memory when every line has a shape of its own.
const SHAPE_LIMIT: usize = 4096;

thread_local! {
    /// The shapes this worker has classified, across the blocks of a file.
    static KNOWN_SHAPES: std::cell::RefCell<FxHashMap<Box<[u8]>, std::rc::Rc<ShapeInfo>>> =
        std::cell::RefCell::new(FxHashMap::default());
}

/// Writes a line's shape key into `key`.
fn shape_key(key: &mut Vec<u8>, line: &[u8], spans: &nginx_error::HeadSpans) {
    key.clear();
    key.extend_from_slice(&line[spans.level.clone()]);
    key.push(0);
    key.extend_from_slice(&line[spans.message.clone()]);
    key.push(0);
    let context = spans.context.map(|c| &line[c..]);
    if let Some(upstream) = context.and_then(nginx_error::upstream_in) {
        // "scheme://host:port/…": the scheme ends at the first ':'; the host part at the next '/'.
        let host_end = match memchr::memchr(b':', upstream) {
            Some(i) if upstream[i..].starts_with(b"://") => {
                let rest = &upstream[i + 3..];
                let end = if rest.starts_with(b"unix:") {
                    rest.len()
                } else {
                    memchr::memchr(b'/', rest).map_or(rest.len(), |e| e + 1)
                };
                i + 3 + end
            }
            _ => upstream.len(),
        };
        key.extend_from_slice(&upstream[..host_end]);
    }
    key.push(0);
    key.push(if context.is_some_and(|c| c.starts_with(b"client: ")) {
        b'c'
    } else {
        b'-'
    });
}

/// The shape of `key`, classified from `line` (one of its lines) the first time it is seen.
fn known_shape(key: &[u8], line: &[u8]) -> std::rc::Rc<ShapeInfo> {
    KNOWN_SHAPES.with(|known| {
        if let Some(info) = known.borrow().get(key) {
            return info.clone();
        }
        let text = String::from_utf8_lossy(line);
        let head = nginx_error::parse_head(&text);
        let info = std::rc::Rc::new(ShapeInfo {
            class: classify_direct(&text),
            upstream: head
                .as_ref()
                .and_then(Head::upstream)
                .map(|u| nginx_error::upstream_address(u).to_string()),
            php: head.as_ref().and_then(|h| php_culprit(h.message)),
            routine: head
                .as_ref()
                .is_some_and(|h| matches!(h.level, "notice" | "info" | "debug")),
        });
        let mut known = known.borrow_mut();
        if known.len() >= SHAPE_LIMIT {
            known.clear();
        }
        known.insert(key.into(), info.clone());
        info
    })
}

/// The last time text parsed and its value: consecutive lines mostly share their second.
#[derive(Default)]
struct LastTime {
    raw: Vec<u8>,
    value: Option<i64>,
}

impl LastTime {
    fn get(&mut self, raw: &[u8], parse: fn(&[u8]) -> Option<i64>) -> Option<i64> {
        // Compared in place, from the end where consecutive times differ.
        let same = raw.len() == self.raw.len()
            && raw
                .iter()
                .rev()
                .zip(self.raw.iter().rev())
                .all(|(a, b)| a == b);
        if !same {
            self.raw.clear();
            self.raw.extend_from_slice(raw);
            self.value = parse(raw);
        }
        self.value
    }
}

/// The lines of one shape seen in a block.
struct SeenShape {
    info: std::rc::Rc<ShapeInfo>,
    count: u64,
    /// Its first line in the block.
    first: LineRef,
    /// Its line at the earliest time (the first of those).
    earliest: (i64, LineRef),
    latest: i64,
}

/// A block's nginx error lines, counted by shape and added to the tally at the end, so a line
/// costs one key and one lookup instead of a map update per cause and upstream.
#[derive(Default)]
struct Shapes {
    key: Vec<u8>,
    index: FxHashMap<Box<[u8]>, usize>,
    seen: Vec<SeenShape>,
    time: LastTime,
}

impl Shapes {
    /// Adds the shapes seen so far to `tally`, as if their lines had been counted one by one.
    fn fold(&mut self, ctx: &Context, tally: &mut Tally) {
        self.index.clear();
        let kind = ctx.kind.name();
        for seen in self.seen.drain(..) {
            let Some((signature, causes)) = &seen.info.class else {
                continue;
            };
            let n = seen.count;
            let (t, earliest) = &seen.earliest;
            *tally.signatures.entry(signature.id.as_str()).or_default() += n;
            if !causes.is_empty() {
                Tally::earliest_line_into(&mut tally.gateway_first, *t, earliest);
            }
            for (position, &id) in causes.iter().enumerate() {
                let c = tally.causes.entry(id).or_default();
                c.mentions += n;
                if !c.kinds.contains(&kind) {
                    c.kinds.push(kind);
                }
                if position == 0 {
                    c.primary += n;
                    // Upstreams are counted where the cause is the line's most likely one.
                    if let Some(u) = seen.info.upstream.as_deref() {
                        let full = c.upstreams.len() >= 64;
                        match c.upstreams.get_mut(u) {
                            Some(count) => *count += n,
                            None if !full => {
                                c.upstreams.insert(u.to_string(), n);
                            }
                            None => {}
                        }
                    }
                    if c.example.as_ref().is_none_or(|e| seen.first.line < e.line) {
                        c.example = Some(seen.first.clone());
                    }
                }
                let earlier = match c.first {
                    None => true,
                    Some(f) => {
                        *t < f
                            || (*t == f
                                && c.first_line.as_ref().is_none_or(|l| earliest.line < l.line))
                    }
                };
                if earlier {
                    c.first_line = Some(earliest.clone());
                }
                c.first = Some(c.first.map_or(*t, |f| f.min(*t)));
                c.last = Some(c.last.map_or(seen.latest, |l| l.max(seen.latest)));
            }
            if let Some((culprit, fatal)) = &seen.info.php {
                let p = tally.php.entry(culprit.clone()).or_default();
                p.count += n;
                p.fatal += if *fatal { n } else { 0 };
                if p.example.as_ref().is_none_or(|e| seen.first.line < e.line) {
                    p.example = Some(seen.first.clone());
                }
            }
        }
    }
}

/// An nginx error line: its envelope found without validating or copying the line; its shape
/// looked up; its counts kept per shape (see [`Shapes`]).
fn nginx_line(
    ctx: &Context,
    line: &[u8],
    number: u64,
    tally: &mut Tally,
    shapes: &mut Shapes,
    timed_out: &mut TimedOutWorkers,
) {
    let spans = nginx_error::head_spans(line);
    let t = spans
        .as_ref()
        .and_then(|_| shapes.time.get(&line[..19], time::nginx_error));
    let (Some(spans), Some(t)) = (spans, t) else {
        // Not nginx's shape (a continuation, another program's line): one at a time.
        return event_line(ctx, line, number, tally, timed_out);
    };
    if !in_window(ctx.options, Some(t)) {
        tally.outside_window += 1;
        return;
    }
    tally.see_time(t);
    shape_key(&mut shapes.key, line, &spans);
    let index = match shapes.index.get(shapes.key.as_slice()) {
        Some(&index) => index,
        None => {
            if shapes.index.len() >= SHAPE_LIMIT {
                shapes.fold(ctx, tally);
            }
            let info = known_shape(&shapes.key, line);
            let first = LineRef::new(ctx.file, number, &String::from_utf8_lossy(line));
            shapes.seen.push(SeenShape {
                info,
                count: 0,
                earliest: (t, first.clone()),
                first,
                latest: t,
            });
            let index = shapes.seen.len() - 1;
            shapes.index.insert(shapes.key.as_slice().into(), index);
            index
        }
    };
    let seen = &mut shapes.seen[index];
    if seen.info.class.is_none() {
        if seen.info.routine {
            tally.routine += 1;
        } else {
            unknown(ctx, tally, number, line);
        }
        return;
    }
    tally.classified += 1;
    seen.count += 1;
    if t < seen.earliest.0 {
        seen.earliest = (
            t,
            LineRef::new(ctx.file, number, &String::from_utf8_lossy(line)),
        );
    }
    seen.latest = seen.latest.max(t);
}

/// The workers an app server recently killed for running too long, by pid (the last few of a
/// block). uWSGI's harakiri and gunicorn's arbiter end such a worker with SIGKILL, and the
/// SIGKILL line that follows ("killed by signal 9", "was sent SIGKILL! Perhaps out of memory?")
/// alone would point at the kernel's OOM killer; for one of these pids it is the timeout.
#[derive(Default)]
struct TimedOutWorkers(Vec<String>);

/// How many timed-out pids are remembered.
const TIMED_OUT_KEPT: usize = 16;

impl TimedOutWorkers {
    /// Notes a timeout line's pid, and for a kill line of a noted pid puts the timeout first.
    fn explain_kill(
        &mut self,
        causes: Arc<[&'static str]>,
        pid: Option<&str>,
    ) -> Arc<[&'static str]> {
        let Some(pid) = pid else { return causes };
        match causes.first() {
            Some(&"app-worker-timeout") => {
                if !self.0.iter().any(|p| p == pid) {
                    if self.0.len() >= TIMED_OUT_KEPT {
                        self.0.remove(0);
                    }
                    self.0.push(pid.to_string());
                }
                causes
            }
            Some(&"oom-killed") if self.0.iter().any(|p| p == pid) => {
                let mut reordered = vec!["app-worker-timeout"];
                reordered.extend(causes.iter().filter(|&&c| c != "app-worker-timeout"));
                reordered.into()
            }
            _ => causes,
        }
    }
}

/// A line of any other log, classified on its own.
fn event_line(
    ctx: &Context,
    line: &[u8],
    number: u64,
    tally: &mut Tally,
    timed_out: &mut TimedOutWorkers,
) {
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
    let Some((signature, causes)) = classify_direct(&text) else {
        if routine(ctx.kind, line) {
            tally.routine += 1;
        } else {
            unknown(ctx, tally, number, line);
        }
        return;
    };
    tally.classified += 1;
    *tally.signatures.entry(signature.id.as_str()).or_default() += 1;
    // Other products name their upstream (and the worker's pid) in the message: the
    // signature's regex takes them.
    let fields = match parsed {
        Some(_) => Vec::new(),
        None => signatures()
            .best_with_fields(&text, signature)
            .unwrap_or_default(),
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let upstream: Option<std::borrow::Cow<str>> = match &parsed {
        Some(p) => p
            .upstream()
            .map(|u| std::borrow::Cow::Borrowed(nginx_error::upstream_address(u))),
        None => field("upstream").map(|v| std::borrow::Cow::Borrowed(v.as_str())),
    };
    let causes = timed_out.explain_kill(causes, field("pid").map(String::as_str));
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

/// Per-block counts of the access path, added to the tally at the end: the last time string
/// parsed and the current minute (consecutive lines share both), the statuses, and the
/// upstreams keyed by the block's own bytes (no copy, no UTF-8 check per line).
struct AccessCache<'b> {
    time: LastTime,
    minute: Option<i64>,
    requests: u64,
    errors: u64,
    /// Requests per status code (000–999).
    statuses: Vec<u64>,
    upstreams: FxHashMap<&'b [u8], UpstreamTally>,
}

impl Default for AccessCache<'_> {
    fn default() -> Self {
        AccessCache {
            time: LastTime::default(),
            minute: None,
            requests: 0,
            errors: 0,
            statuses: vec![0; 1000],
            upstreams: FxHashMap::default(),
        }
    }
}

impl<'b> AccessCache<'b> {
    fn count(&mut self, tally: &mut Tally, minute: Option<i64>, error: bool) {
        if minute != self.minute {
            self.flush_minute(tally);
            self.minute = minute;
        }
        self.requests += 1;
        self.errors += u64::from(error);
    }

    fn flush_minute(&mut self, tally: &mut Tally) {
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

    /// Adds everything counted to the tally.
    fn finish(&mut self, tally: &mut Tally) {
        self.flush_minute(tally);
        for (status, n) in self.statuses.iter_mut().enumerate() {
            if *n > 0 {
                *tally.access.statuses.entry(status as u16).or_default() += *n;
                *n = 0;
            }
        }
        for (addr, u) in self.upstreams.drain() {
            let key = String::from_utf8_lossy(addr);
            match tally.access.upstreams.get_mut(key.as_ref()) {
                Some(mine) => mine.merge(u),
                None => {
                    tally.access.upstreams.insert(key.into_owned(), u);
                }
            }
        }
    }
}

/// A request seen in an access log, whatever its format.
struct Request<'a> {
    time: Option<i64>,
    status: u16,
    path: Option<&'a [u8]>,
    upstream_addr: Option<&'a [u8]>,
    upstream_status: Option<&'a [u8]>,
    upstream_time: Option<&'a [u8]>,
}

fn access_line<'b>(
    ctx: &Context,
    line: &'b [u8],
    number: u64,
    tally: &mut Tally,
    cache: &mut AccessCache<'b>,
) {
    let Some(record) = ctx.format.and_then(|f| f.parse(line)) else {
        unknown(ctx, tally, number, line);
        return;
    };
    let t = match (record.time_local, record.time_iso8601, record.msec) {
        (Some(raw), _, _) => cache.time.get(raw, time::time_local),
        (None, Some(raw), _) => cache.time.get(raw, time::iso8601),
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
        path: record.path(),
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
        path: record.path.as_deref().map(str::as_bytes),
        upstream_addr: record.upstream_addr.as_deref().map(str::as_bytes),
        upstream_status: record.upstream_status.as_deref().map(str::as_bytes),
        upstream_time: record.upstream_response_time.as_deref().map(str::as_bytes),
    };
    count_request(ctx, request, line, number, tally, &mut cache);
    cache.finish(tally);
}

fn count_request<'b>(
    ctx: &Context,
    r: Request<'b>,
    line: &[u8],
    number: u64,
    tally: &mut Tally,
    cache: &mut AccessCache<'b>,
) {
    if !in_window(ctx.options, r.time) {
        tally.outside_window += 1;
        return;
    }
    tally.classified += 1;
    let a = &mut tally.access;
    a.requests += 1;
    match cache.statuses.get_mut(usize::from(r.status)) {
        Some(n) => *n += 1,
        None => *a.statuses.entry(r.status).or_default() += 1,
    }
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
        for attempt in tries.iter() {
            let u = cache.upstreams.entry(attempt.addr).or_default();
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
        if let Some(path) = r.path {
            let path: String = String::from_utf8_lossy(path).chars().take(200).collect();
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
        let mut spare = Vec::new();
        while let Some(block) = b.next_into(spare) {
            out.push(block.data().to_vec());
            spare = block.buf;
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
    fn shapes_classify_as_the_database_does() {
        // Every log test line of the database in nginx's shape, classified through its shape
        // (twice: the second time from the memory) and directly, must agree.
        let mut key = Vec::new();
        for sig in signatures()
            .signatures()
            .iter()
            .filter(|s| s.source == crate::catalog::Source::Log)
        {
            for line in &sig.test {
                let Some(spans) = nginx_error::head_spans(line.as_bytes()) else {
                    continue;
                };
                let direct = classify_direct(line).map(|(s, c)| (s.id.clone(), c));
                shape_key(&mut key, line.as_bytes(), &spans);
                for _ in 0..2 {
                    let shaped = known_shape(&key, line.as_bytes())
                        .class
                        .clone()
                        .map(|(s, c)| (s.id.clone(), c));
                    assert_eq!(shaped, direct, "{line}");
                }
            }
        }
    }

    #[test]
    fn a_kill_after_a_timeout_of_the_same_worker_is_the_timeout() {
        let mut workers = TimedOutWorkers::default();
        let kill: Arc<[&str]> = Arc::from(vec!["oom-killed", "app-worker-timeout"]);
        let timeout: Arc<[&str]> = Arc::from(vec!["app-worker-timeout", "upstream-read-timeout"]);
        // Another worker's kill before any timeout: the kernel's OOM killer stays first.
        assert_eq!(
            workers.explain_kill(kill.clone(), Some("815"))[0],
            "oom-killed"
        );
        workers.explain_kill(timeout, Some("815"));
        let after = workers.explain_kill(kill.clone(), Some("815"));
        assert_eq!(&after[..], &["app-worker-timeout", "oom-killed"]);
        assert_eq!(
            workers.explain_kill(kill.clone(), Some("999"))[0],
            "oom-killed"
        );
        assert_eq!(workers.explain_kill(kill, None)[0], "oom-killed");
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
