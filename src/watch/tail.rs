//! Follows a log file the way `tail -F` does, through both kinds of rotation, without losing or
//! repeating a line:
//!
//! - **rename** (logrotate's default, then `nginx -s reopen`): the path now names a new file.
//!   The old file is still open here; it is read to its end, and kept open a little longer
//!   (`DRAIN_GRACE`), because the writer keeps appending to it until it reopens. The new file is
//!   read from its first byte.
//! - **copytruncate**: the same file shrinks to zero. Reading restarts at offset 0. (Lines the
//!   writer appended between logrotate's copy and its truncate are lost by copytruncate itself;
//!   no reader can see them.) A file truncated and refilled past our offset between two polls
//!   is noticed too: the last bytes read no longer sit just before the offset.
//!
//! Memory is bounded: each poll reads at most `MAX_READ` bytes per file, and a line longer than
//! `MAX_LINE` is cut there (the rest of it is skipped).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest line kept; longer lines are cut (a log line is rarely over 8 KiB).
pub const MAX_LINE: usize = 64 * 1024;
/// The most bytes read from one file in one poll; the rest waits for the next poll.
const MAX_READ: u64 = 8 * 1024 * 1024;
/// How long a renamed file is still read after its successor appeared.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// One open file and how far it has been read.
#[derive(Debug)]
struct Open {
    file: File,
    id: (u64, u64),
    offset: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    /// Inside a line longer than MAX_LINE: skip until its newline.
    skipping: bool,
    /// The last bytes read (up to `SEAM` of them), which must still sit just before `offset`:
    /// if they do not, the file was truncated and rewritten past our offset between two polls.
    seam: Vec<u8>,
}

/// How many bytes before the offset are compared to notice a truncate-and-refill.
const SEAM: usize = 64;

impl Open {
    fn at(path: &Path, from_end: bool) -> std::io::Result<Open> {
        use std::os::unix::fs::FileExt;
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let offset = if from_end { meta.len() } else { 0 };
        // Starting at the end: remember what precedes it, to notice a truncate-and-refill
        // before the first read.
        let seam_len = (offset as usize).min(SEAM);
        let mut seam = vec![0u8; seam_len];
        file.read_exact_at(&mut seam, offset - seam_len as u64)?;
        Ok(Open {
            id: (meta.dev(), meta.ino()),
            offset,
            file,
            partial: Vec::new(),
            skipping: false,
            seam,
        })
    }

    /// Whether the bytes last read are still just before the offset.
    fn seam_intact(&self) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        if self.seam.is_empty() {
            return Ok(true);
        }
        let mut now = vec![0u8; self.seam.len()];
        match self
            .file
            .read_exact_at(&mut now, self.offset - self.seam.len() as u64)
        {
            Ok(()) => Ok(now == self.seam),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads what was appended since the last read and hands over every complete line.
    /// Returns the number of bytes read.
    fn read_new(
        &mut self,
        lines: &mut dyn FnMut(&str),
        stats: &mut TailStats,
    ) -> std::io::Result<u64> {
        let len = self.file.metadata()?.len();
        if len < self.offset || !self.seam_intact()? {
            // copytruncate: the file was cut under us; what is there now is new.
            stats.truncations += 1;
            self.offset = 0;
            self.partial.clear();
            self.skipping = false;
            self.seam.clear();
        }
        if len == self.offset {
            return Ok(0);
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let want = (len - self.offset).min(MAX_READ);
        let mut buf = Vec::with_capacity(want as usize);
        (&mut self.file).take(want).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        let keep = buf.len().min(SEAM);
        if keep == SEAM {
            self.seam.clear();
        } else if self.seam.len() + keep > SEAM {
            self.seam.drain(..self.seam.len() + keep - SEAM);
        }
        self.seam.extend_from_slice(&buf[buf.len() - keep..]);
        let mut rest: &[u8] = &buf;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let piece = &rest[..nl];
            rest = &rest[nl + 1..];
            if self.skipping {
                self.skipping = false;
                self.partial.clear();
                continue;
            }
            let line: &[u8] = if self.partial.is_empty() {
                piece
            } else {
                let room = MAX_LINE.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
                &self.partial
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = &line[..line.len().min(MAX_LINE)];
            stats.lines += 1;
            lines(&String::from_utf8_lossy(line));
            self.partial.clear();
        }
        if !self.skipping && !rest.is_empty() {
            let room = MAX_LINE.saturating_sub(self.partial.len());
            if rest.len() > room {
                // Too long: hand over what fits now, skip the rest of the line.
                self.partial.extend_from_slice(&rest[..room]);
                stats.lines += 1;
                stats.cut += 1;
                lines(&String::from_utf8_lossy(&self.partial));
                self.partial.clear();
                self.skipping = true;
            } else {
                self.partial.extend_from_slice(rest);
            }
        }
        Ok(buf.len() as u64)
    }
}

/// What the tailer has seen since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailStats {
    pub lines: u64,
    pub rotations: u64,
    pub truncations: u64,
    /// Lines cut at MAX_LINE.
    pub cut: u64,
}

/// Follows one path.
#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    current: Option<Open>,
    /// The file the path named before a rename, read until DRAIN_GRACE after it stops growing.
    draining: Option<(Open, Instant)>,
    /// Whether the path had been seen at all (a file that appears later is read from its start).
    started: bool,
    pub stats: TailStats,
    /// The last error opening or reading the path (shown on the status page).
    pub error: Option<String>,
}

impl Tailer {
    /// Follows `path` from its current end: `watch` reports what happens from now on.
    pub fn new(path: &Path) -> Tailer {
        let mut t = Tailer {
            path: path.to_path_buf(),
            current: None,
            draining: None,
            started: false,
            stats: TailStats::default(),
            error: None,
        };
        match Open::at(path, true) {
            Ok(open) => t.current = Some(open),
            Err(e) => t.error = Some(format!("{}: {e}", path.display())),
        }
        t.started = true;
        t
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads everything new and calls `lines` for each complete line, in file order: first the
    /// rest of a renamed file, then the file the path names now.
    pub fn poll(&mut self, lines: &mut dyn FnMut(&str)) {
        let mut stats = self.stats;
        if let Some((old, since)) = &mut self.draining {
            match old.read_new(lines, &mut stats) {
                Ok(n) if n > 0 => *since = Instant::now(),
                Ok(_) if since.elapsed() < DRAIN_GRACE => {}
                _ => self.draining = None,
            }
        }
        // Has the path been renamed away or replaced?
        let now_id = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        match (&mut self.current, now_id) {
            (Some(open), Ok(id)) if open.id == id => {
                if let Err(e) = open.read_new(lines, &mut stats) {
                    self.error = Some(format!("{}: {e}", self.path.display()));
                }
            }
            (Some(_), Ok(_)) => {
                // Renamed, and a new file is in place: finish the old one, then start the new.
                let mut old = self.current.take().expect("matched Some");
                let _ = old.read_new(lines, &mut stats);
                stats.rotations += 1;
                self.draining = Some((old, Instant::now()));
                self.open_from_start(lines, &mut stats);
            }
            (Some(open), Err(_)) => {
                // Renamed and not yet replaced: keep reading the old file until a new one
                // appears.
                let _ = open.read_new(lines, &mut stats);
            }
            (None, Ok(_)) => self.open_from_start(lines, &mut stats),
            (None, Err(e)) => self.error = Some(format!("{}: {e}", self.path.display())),
        }
        self.stats = stats;
    }

    fn open_from_start(&mut self, lines: &mut dyn FnMut(&str), stats: &mut TailStats) {
        match Open::at(&self.path, false) {
            Ok(mut open) => {
                self.error = None;
                if let Err(e) = open.read_new(lines, stats) {
                    self.error = Some(format!("{}: {e}", self.path.display()));
                }
                self.current = Some(open);
            }
            Err(e) => self.error = Some(format!("{}: {e}", self.path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(t: &mut Tailer) -> Vec<String> {
        let mut got = Vec::new();
        t.poll(&mut |l| got.push(l.to_string()));
        got
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn starts_at_the_end_and_joins_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "old\n");
        let mut t = Tailer::new(&p);
        assert!(collect(&mut t).is_empty());
        append(&p, "one\ntw");
        assert_eq!(collect(&mut t), ["one"]);
        append(&p, "o\r\n");
        assert_eq!(collect(&mut t), ["two"]);
    }

    #[test]
    fn long_lines_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "");
        let mut t = Tailer::new(&p);
        append(&p, &"x".repeat(MAX_LINE + 10));
        let got = collect(&mut t);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), MAX_LINE);
        append(&p, "yyy\nnext\n");
        assert_eq!(collect(&mut t), ["next"]);
        assert_eq!(t.stats.cut, 1);
    }

    #[test]
    fn a_file_that_appears_later_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("late.log");
        let mut t = Tailer::new(&p);
        assert!(t.error.is_some());
        append(&p, "first\n");
        assert_eq!(collect(&mut t), ["first"]);
        assert!(t.error.is_none());
    }
}
