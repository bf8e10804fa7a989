//! What a scan counts: per cause, per status, per minute, per upstream, per URI. Every map is
//! keyed by something the logs name (a cause id, an upstream address, a path), so memory grows
//! with the number of distinct keys, never with the size of the input.
//!
//! Chunks of a file are counted in parallel and merged in order; line references are counted
//! from the chunk's start and shifted when the chunk's place in the file is known.

use std::collections::{BTreeMap, HashMap};

/// How many examples of lines nobody understood are kept.
pub const MAX_UNKNOWN_EXAMPLES: usize = 5;
/// How much of a line an example keeps.
pub const MAX_EXAMPLE: usize = 400;

/// A line of an input: which file (index into the scan's files), which line (1-based), its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef {
    pub file: usize,
    pub line: u64,
    pub text: String,
}

impl LineRef {
    pub fn new(file: usize, line: u64, text: &str) -> LineRef {
        let text = if text.len() > MAX_EXAMPLE {
            let mut end = MAX_EXAMPLE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &text[..end])
        } else {
            text.to_string()
        };
        LineRef { file, line, text }
    }

    fn before(&self, other: &LineRef) -> bool {
        (self.file, self.line) < (other.file, other.line)
    }
}

/// A response-time histogram with bounded memory: 1 ms steps to 1 s, 10 ms to 10 s, 100 ms to
/// 10 min, then one overflow bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    buckets: Vec<u32>,
    count: u64,
}

const FINE: usize = 1000;
const MEDIUM: usize = 900;
const COARSE: usize = 5900;

impl Histogram {
    fn index(ms: f64) -> usize {
        let ms = ms.max(0.0);
        if ms < 1000.0 {
            ms as usize
        } else if ms < 10_000.0 {
            FINE + ((ms - 1000.0) / 10.0) as usize
        } else if ms < 600_000.0 {
            FINE + MEDIUM + ((ms - 10_000.0) / 100.0) as usize
        } else {
            FINE + MEDIUM + COARSE
        }
    }

    fn value(index: usize) -> f64 {
        if index < FINE {
            index as f64
        } else if index < FINE + MEDIUM {
            1000.0 + (index - FINE) as f64 * 10.0
        } else {
            10_000.0 + (index - FINE - MEDIUM) as f64 * 100.0
        }
    }

    pub fn record(&mut self, seconds: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; FINE + MEDIUM + COARSE + 1];
        }
        self.buckets[Self::index(seconds * 1000.0)] += 1;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The q-quantile in seconds (lower bound of its bucket).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(Self::value(i) / 1000.0);
            }
        }
        None
    }

    fn merge(&mut self, other: Histogram) {
        if other.count == 0 {
            return;
        }
        if self.buckets.is_empty() {
            *self = other;
            return;
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.count += other.count;
    }
}

/// One cause, as the logs named it.
#[derive(Debug, Clone, Default)]
pub struct CauseTally {
    /// Lines whose most likely cause this is.
    pub primary: u64,
    /// Lines that name it in any position.
    pub mentions: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub upstreams: HashMap<String, u64>,
    /// The earliest line that names it first.
    pub example: Option<LineRef>,
    /// The line at `first`.
    pub first_line: Option<LineRef>,
    /// Which log kinds named it (nginx-error, php-fpm …).
    pub kinds: Vec<&'static str>,
    /// The earliest line of an upstream-side log (PHP-FPM, app server, kernel) naming it: an
    /// event that can explain the gateway's errors after it.
    pub upstream_first: Option<(i64, LineRef)>,
}

/// One upstream address, as the access log saw it.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTally {
    pub attempts: u64,
    /// Attempts that ended with a 5xx (or no status: nginx logs `-`… for a failed connect, 502).
    pub errors: u64,
    pub times: Histogram,
    /// The longest attempt that ended in a 504: about the gateway's read timeout.
    pub timeout_seconds: f64,
}

impl UpstreamTally {
    pub fn merge(&mut self, other: UpstreamTally) {
        self.attempts += other.attempts;
        self.errors += other.errors;
        self.times.merge(other.times);
        self.timeout_seconds = self.timeout_seconds.max(other.timeout_seconds);
    }
}

/// The access-log side.
#[derive(Debug, Clone, Default)]
pub struct AccessTally {
    pub requests: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Per minute (Unix time / 60): (requests, 5xx).
    pub minutes: BTreeMap<i64, (u64, u64)>,
    pub upstreams: rustc_hash::FxHashMap<String, UpstreamTally>,
    pub paths_5xx: HashMap<String, u64>,
    /// Requests where an upstream failed and nginx's retry on another one answered: the error
    /// log shows a failure the client never saw.
    pub hidden_retries: u64,
    /// Of those, the retries where the same server failed and then answered (stale keep-alive
    /// connections).
    pub same_server_retries: u64,
    pub first_5xx: Option<(i64, LineRef)>,
    pub last_5xx: Option<i64>,
    /// Requests answered as HTTP/0.9 (`009`): the upstream sent no status line.
    pub http09: u64,
}

/// PHP errors grouped by the code that raised them (a WordPress plugin or theme, else the file).
#[derive(Debug, Clone, Default)]
pub struct PhpCulprit {
    pub count: u64,
    pub fatal: u64,
    pub example: Option<LineRef>,
}

/// Everything a scan counts.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub lines: u64,
    pub bytes: u64,
    /// Lines a signature recognised.
    pub classified: u64,
    /// Routine lines (notices, info) nobody needs to read.
    pub routine: u64,
    pub unknown: u64,
    pub unknown_examples: Vec<LineRef>,
    /// Lines over the length bound (classified on their first MiB).
    pub long_lines: u64,
    /// Lines outside --since/--until.
    pub outside_window: u64,
    pub causes: HashMap<&'static str, CauseTally>,
    pub signatures: HashMap<&'static str, u64>,
    pub access: AccessTally,
    pub php: HashMap<String, PhpCulprit>,
    pub first_time: Option<i64>,
    pub last_time: Option<i64>,
    /// The earliest gateway error line (nginx's or Apache's error log) that names a cause.
    pub gateway_first: Option<(i64, LineRef)>,
}

/// The earlier of two timed lines.
fn earliest(a: Option<(i64, LineRef)>, b: Option<(i64, LineRef)>) -> Option<(i64, LineRef)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 < x.0 || (y.0 == x.0 && y.1.before(&x.1)) {
            y
        } else {
            x
        }),
        (x, y) => x.or(y),
    }
}

impl Tally {
    /// Records a timed line as a candidate for the earliest of `slot`.
    pub fn earliest_into(
        slot: &mut Option<(i64, LineRef)>,
        t: i64,
        line: impl FnOnce() -> LineRef,
    ) {
        if slot.as_ref().is_none_or(|(f, _)| t < *f) {
            *slot = Some((t, line()));
        }
    }

    /// Like [`Tally::earliest_into`] for a line already made: at equal times the line that
    /// comes first in the input wins.
    pub fn earliest_line_into(slot: &mut Option<(i64, LineRef)>, t: i64, line: &LineRef) {
        if slot
            .as_ref()
            .is_none_or(|(f, l)| t < *f || (t == *f && line.before(l)))
        {
            *slot = Some((t, line.clone()));
        }
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn earlier(a: Option<LineRef>, b: Option<LineRef>) -> Option<LineRef> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.before(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

impl Tally {
    pub fn see_time(&mut self, t: i64) {
        self.first_time = min_opt(self.first_time, Some(t));
        self.last_time = max_opt(self.last_time, Some(t));
    }

    /// Moves every line reference of this chunk's tally by `lines` (the chunk's first line in
    /// its file, minus one).
    pub fn shift(&mut self, lines: u64) {
        let mut refs: Vec<&mut LineRef> = self.unknown_examples.iter_mut().collect();
        for c in self.causes.values_mut() {
            refs.extend(c.example.as_mut());
            refs.extend(c.first_line.as_mut());
            refs.extend(c.upstream_first.as_mut().map(|(_, r)| r));
        }
        refs.extend(self.access.first_5xx.as_mut().map(|(_, r)| r));
        refs.extend(self.gateway_first.as_mut().map(|(_, r)| r));
        for p in self.php.values_mut() {
            refs.extend(p.example.as_mut());
        }
        for r in refs {
            r.line += lines;
        }
    }

    /// Adds a later chunk's (or file's) tally to this one.
    pub fn merge(&mut self, other: Tally) {
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.classified += other.classified;
        self.routine += other.routine;
        self.unknown += other.unknown;
        self.long_lines += other.long_lines;
        self.outside_window += other.outside_window;
        for r in other.unknown_examples {
            if self.unknown_examples.len() < MAX_UNKNOWN_EXAMPLES {
                self.unknown_examples.push(r);
            }
        }
        for (id, c) in other.causes {
            let mine = self.causes.entry(id).or_default();
            mine.primary += c.primary;
            mine.mentions += c.mentions;
            // The first line is the one at the earliest time; lines without time keep the earlier.
            let take_theirs = match (mine.first, c.first) {
                (Some(a), Some(b)) => b < a,
                (None, Some(_)) => true,
                (None, None) => mine.first_line.is_none(),
                (Some(_), None) => false,
            };
            if take_theirs && c.first_line.is_some() {
                mine.first_line = c.first_line;
            }
            mine.first = min_opt(mine.first, c.first);
            mine.last = max_opt(mine.last, c.last);
            mine.example = earlier(mine.example.take(), c.example);
            mine.upstream_first = earliest(mine.upstream_first.take(), c.upstream_first);
            for (u, n) in c.upstreams {
                *mine.upstreams.entry(u).or_default() += n;
            }
            for k in c.kinds {
                if !mine.kinds.contains(&k) {
                    mine.kinds.push(k);
                }
            }
        }
        for (id, n) in other.signatures {
            *self.signatures.entry(id).or_default() += n;
        }
        let a = &mut self.access;
        let b = other.access;
        a.requests += b.requests;
        a.hidden_retries += b.hidden_retries;
        a.same_server_retries += b.same_server_retries;
        a.http09 += b.http09;
        for (s, n) in b.statuses {
            *a.statuses.entry(s).or_default() += n;
        }
        for (m, (t, e)) in b.minutes {
            let slot = a.minutes.entry(m).or_default();
            slot.0 += t;
            slot.1 += e;
        }
        for (u, t) in b.upstreams {
            a.upstreams.entry(u).or_default().merge(t);
        }
        for (p, n) in b.paths_5xx {
            *a.paths_5xx.entry(p).or_default() += n;
        }
        a.first_5xx = match (a.first_5xx.take(), b.first_5xx) {
            (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
            (x, y) => x.or(y),
        };
        a.last_5xx = max_opt(a.last_5xx, b.last_5xx);
        for (k, p) in other.php {
            let mine = self.php.entry(k).or_default();
            mine.count += p.count;
            mine.fatal += p.fatal;
            mine.example = earlier(mine.example.take(), p.example);
        }
        self.first_time = min_opt(self.first_time, other.first_time);
        self.last_time = max_opt(self.last_time, other.last_time);
        self.gateway_first = earliest(self.gateway_first.take(), other.gateway_first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(ms as f64 / 1000.0);
        }
        assert_eq!(h.quantile(0.5), Some(0.05));
        assert_eq!(h.quantile(0.99), Some(0.099));
        let mut slow = Histogram::default();
        slow.record(30.0);
        h.merge(slow);
        assert_eq!(h.count(), 101);
        assert_eq!(h.quantile(1.0), Some(30.0));
    }

    #[test]
    fn merge_keeps_the_earliest_first_line() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        let c = a.causes.entry("upstream-refused").or_default();
        c.first = Some(100);
        c.first_line = Some(LineRef::new(0, 10, "late"));
        let d = b.causes.entry("upstream-refused").or_default();
        d.first = Some(50);
        d.first_line = Some(LineRef::new(1, 3, "early"));
        a.merge(b);
        assert_eq!(a.causes["upstream-refused"].first, Some(50));
        assert_eq!(
            a.causes["upstream-refused"]
                .first_line
                .as_ref()
                .unwrap()
                .text,
            "early"
        );
    }
}
