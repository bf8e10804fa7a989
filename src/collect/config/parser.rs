//! From tokens to statements, and from a main file to every file it includes.
//!
//! [`load`] reads the main configuration file, follows every `include` (globs sorted, relative
//! paths taken from the main file's directory, nginx's "conf prefix"), parses each file once and
//! records, on each `include` statement, the files it brought in. The result, a [`Config`], is
//! context-free: the model ([`super::model`]) walks it from the main file and expands each
//! include in the context it appears in, so a snippet included from three servers is checked
//! three times.
//!
//! Everything nginx would refuse to even parse is an error here, with file and line: unbalanced
//! braces, a missing `;`, an unterminated quote, an explicit include that cannot be opened, an
//! include loop, binary data, a file too large to be a configuration.

use super::directives::{self, Terminator};
use super::lexer::{self, Kind, Lexed};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The index of a file in [`Config::files`].
pub type FileId = usize;

/// A configuration file larger than this is refused (real ones are kilobytes).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// All files together may not exceed this.
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
/// At most this many files.
pub const MAX_FILES: usize = 20_000;
/// Blocks nested deeper than this are refused (nginx configurations nest a handful deep).
pub const MAX_DEPTH: usize = 100;

/// One directive of a file: its name and arguments as written (quotes removed, escapes kept),
/// its line, how it ended and, for a block, the statements inside. A handle into its file's
/// statement table ([`SourceFile`]): copying it copies two words.
#[derive(Clone, Copy)]
pub struct Stmt<'a> {
    file: &'a SourceFile,
    index: u32,
}

/// What the table holds for one statement.
#[derive(Debug, Clone, Copy)]
struct StmtData {
    /// Its name in [`SourceFile::words`]; its arguments follow it there.
    first_word: u32,
    args: u32,
    line: u32,
    /// The index after its block in the table (its own index + 1 without one).
    end: u32,
    /// The directive's position in the table of known directives, or [`UNKNOWN`].
    id: u16,
    terminator: Terminator,
    /// Where its arguments and terminator are right: [`directives::accepted_contexts`].
    accepted_contexts: u32,
}

/// [`StmtData::id`] of a name the table of directives does not know.
const UNKNOWN: u16 = u16::MAX;

/// A word of the file: a byte range of its text, or (with [`Word::EXTRA`] set in `start`) of
/// [`SourceFile::extra`], for the rare word that is not a slice of the text (a quoted word
/// with an escaped quote).
#[derive(Debug, Clone, Copy)]
struct Word {
    start: u32,
    end: u32,
}

impl Word {
    const EXTRA: u32 = 1 << 31;
}

/// The text of a word of a file with this text and extra text.
#[inline]
fn word_str<'s>(text: &'s str, extra: &'s str, w: Word) -> &'s str {
    if w.start & Word::EXTRA != 0 {
        &extra[(w.start & !Word::EXTRA) as usize..w.end as usize]
    } else {
        &text[w.start as usize..w.end as usize]
    }
}

impl<'a> Stmt<'a> {
    fn data(self) -> &'a StmtData {
        &self.file.table[self.index as usize]
    }

    #[inline]
    pub fn name(self) -> &'a str {
        let d = self.data();
        // A known directive's name is the table's (the same text, without slicing the file's).
        match d.id {
            UNKNOWN => self.file.word(d.first_word),
            id => directives::name_of(id),
        }
    }

    /// The directive's position in the table of known directives, when it is a known one.
    pub fn id(self) -> Option<u16> {
        let id = self.data().id;
        (id != UNKNOWN).then_some(id)
    }

    /// The directive's entry in the table, when it is a known one.
    pub fn known(self) -> Option<directives::Directive> {
        self.id().map(directives::by_index)
    }

    pub fn line(self) -> u32 {
        self.data().line
    }

    /// The contexts (bits of [`directives::mask::CONTEXTS`]) where this use of the directive
    /// is right, as [`directives::analyze`] would find (none for an unknown directive).
    pub fn accepted_contexts(self) -> u32 {
        self.data().accepted_contexts
    }

    pub fn terminator(self) -> Terminator {
        self.data().terminator
    }

    pub fn args(self) -> Args<'a> {
        let d = self.data();
        let first = d.first_word as usize + 1;
        Args {
            file: self.file,
            words: &self.file.words[first..first + d.args as usize],
        }
    }

    pub fn arg(self, i: usize) -> Option<&'a str> {
        self.args().get(i)
    }

    /// The statements of its block, when it opens one.
    pub fn block(self) -> Option<Stmts<'a>> {
        let d = self.data();
        (d.terminator == Terminator::Open).then(|| Stmts {
            file: self.file,
            next: self.index + 1,
            end: d.end,
        })
    }

    /// For `include`: the files it brought in, in nginx's order.
    pub fn includes(self) -> &'a [FileId] {
        let includes = &self.file.includes;
        match includes.binary_search_by_key(&self.index, |(i, _)| *i) {
            Ok(at) => &includes[at].1,
            Err(_) => &[],
        }
    }
}

impl fmt::Debug for Stmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} {}",
            self.file.path.display(),
            self.line(),
            self.name()
        )?;
        for a in self.args() {
            write!(f, " {a:?}")?;
        }
        Ok(())
    }
}

/// The arguments of a statement.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    file: &'a SourceFile,
    words: &'a [Word],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&'a str> {
        let w = *self.words.get(i)?;
        Some(self.file.word_text(w))
    }

    pub fn first(&self) -> Option<&'a str> {
        self.get(0)
    }

    pub fn iter(&self) -> ArgsIter<'a> {
        ArgsIter {
            file: self.file,
            words: self.words.iter(),
        }
    }

    /// The arguments from the `n`th on.
    pub fn skip(&self, n: usize) -> Args<'a> {
        Args {
            file: self.file,
            words: self.words.get(n..).unwrap_or_default(),
        }
    }

    /// The words with `separator` between them (inline when short: a location's label, a
    /// setting's value).
    pub fn join(&self, separator: &str) -> compact_str::CompactString {
        if let [one] = self.words {
            return self.file.word_text(*one).into();
        }
        // Words written with the separator between them (`location ~ \.php$`) are joined
        // already in the text: one copy of its span.
        if let (Some(first), Some(last)) = (self.words.first(), self.words.last()) {
            let text = &self.file.text;
            let written_so = self.words.windows(2).all(|w| {
                (w[0].start | w[1].start) & Word::EXTRA == 0
                    && text.get(w[0].end as usize..w[1].start as usize) == Some(separator)
            });
            if written_so {
                return text[first.start as usize..last.end as usize].into();
            }
        }
        let size = self.iter().map(str::len).sum::<usize>()
            + separator.len() * self.len().saturating_sub(1);
        let mut out = compact_str::CompactString::with_capacity(size);
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(separator);
            }
            out.push_str(a);
        }
        out
    }

    pub fn to_vec(&self) -> Vec<&'a str> {
        self.iter().collect()
    }
}

impl<'a> IntoIterator for Args<'a> {
    type Item = &'a str;
    type IntoIter = ArgsIter<'a>;

    fn into_iter(self) -> ArgsIter<'a> {
        self.iter()
    }
}

/// The arguments of a statement, one by one.
#[derive(Clone)]
pub struct ArgsIter<'a> {
    file: &'a SourceFile,
    words: std::slice::Iter<'a, Word>,
}

impl<'a> Iterator for ArgsIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.words.next().map(|&w| self.file.word_text(w))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.words.size_hint()
    }
}

impl DoubleEndedIterator for ArgsIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.words.next_back().map(|&w| self.file.word_text(w))
    }
}

impl ExactSizeIterator for ArgsIter<'_> {}

impl std::ops::Index<usize> for Args<'_> {
    type Output = str;

    fn index(&self, i: usize) -> &str {
        self.get(i).expect("argument index within the arguments")
    }
}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The statements of a block (or of a file's top level), in order.
#[derive(Clone)]
pub struct Stmts<'a> {
    file: &'a SourceFile,
    next: u32,
    end: u32,
}

impl<'a> Iterator for Stmts<'a> {
    type Item = Stmt<'a>;

    fn next(&mut self) -> Option<Stmt<'a>> {
        if self.next >= self.end {
            return None;
        }
        let stmt = Stmt {
            file: self.file,
            index: self.next,
        };
        self.next = self.file.table[self.next as usize].end;
        Some(stmt)
    }
}

/// One parsed file.
///
/// Its statements are one table, in the order written, each block's statements right after
/// the statement that opens it, and their words are ranges of the file's text: a file of
/// tens of thousands of statements is a handful of allocations, not one or more per
/// statement.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as nginx opens it (the conf prefix joined with the include's argument).
    pub path: PathBuf,
    pub text: String,
    table: Vec<StmtData>,
    words: Vec<Word>,
    /// The text of words that are not slices of `text`.
    extra: String,
    /// For each `include` statement (by index in `table`, in order): the files it brought in.
    includes: Vec<(u32, std::sync::Arc<[FileId]>)>,
    /// Lines where a Unicode space separates words (nginx would not split there).
    pub odd_spaces: Vec<u32>,
    pub modified: Option<std::time::SystemTime>,
    /// Where each line starts, computed the first time a line is shown.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl SourceFile {
    /// The statements of the file's top level.
    pub fn stmts(&self) -> Stmts<'_> {
        Stmts {
            file: self,
            next: 0,
            end: self.table.len() as u32,
        }
    }

    /// Every statement of the file, those inside blocks too, in the order written.
    pub fn all_stmts(&self) -> impl Iterator<Item = Stmt<'_>> {
        (0..self.table.len() as u32).map(move |index| Stmt { file: self, index })
    }

    /// How many statements the file has, those inside blocks included.
    pub fn count(&self) -> usize {
        self.table.len()
    }

    fn word(&self, i: u32) -> &str {
        self.word_text(self.words[i as usize])
    }

    fn word_text(&self, w: Word) -> &str {
        word_str(&self.text, &self.extra, w)
    }

    /// The text of line `n` (1-based), without its line break.
    pub fn line_text(&self, n: u32) -> &str {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(memchr::memchr_iter(b'\n', self.text.as_bytes()).map(|i| i + 1))
                .collect()
        });
        let Some(&start) = starts.get(n.saturating_sub(1) as usize) else {
            return "";
        };
        let end = starts.get(n as usize).map_or(self.text.len(), |&e| e - 1);
        self.text[start..end.max(start)].trim_end_matches('\r')
    }
}

/// The main file and everything it includes.
#[derive(Debug)]
pub struct Config {
    /// `files[0]` is the main file.
    pub files: Vec<SourceFile>,
    /// The directory relative include paths start from.
    pub prefix: PathBuf,
}

/// A configuration nginx would refuse to parse, or one that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<u32>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

fn error(file: &Path, line: Option<u32>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Reads a file with the size bound, refusing directories and binary data.
pub fn read_text(
    path: &Path,
    limit: u64,
) -> Result<(String, Option<std::time::SystemTime>), ConfigError> {
    let io = |e: std::io::Error| error(path, None, format!("cannot read: {e}"));
    let file = open_without_waiting(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(error(
            path,
            None,
            "is a directory, not a configuration file",
        ));
    }
    if !meta.is_file() {
        // A FIFO, socket or device: reading it could wait for a writer or never end.
        return Err(error(
            path,
            None,
            "is not a regular file (a FIFO, socket or device): not read",
        ));
    }
    if meta.len() > limit {
        return Err(error(
            path,
            None,
            format!(
                "{} bytes: too large for a configuration file (limit {} MiB)",
                meta.len(),
                limit >> 20
            ),
        ));
    }
    // Read to the end (a file may grow after the `stat`) into room for what the `stat` said and
    // a byte more. A regular file's read stops short of the room only at its end, so a first
    // read of just the `stat`'s size is the whole file: one read for most files, where
    // `read_to_end` behind `take` makes three.
    let mut bytes = vec![0u8; meta.len() as usize + 1];
    let mut filled = 0;
    loop {
        if filled == bytes.len() {
            if filled as u64 > limit {
                break;
            }
            let grown = (filled * 2).min(limit as usize + 1);
            bytes.resize(grown, 0);
        }
        match (&file).read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                let first_read = filled == 0;
                filled += n;
                if first_read && filled as u64 == meta.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    bytes.truncate(filled);
    if bytes.len() as u64 > limit {
        return Err(error(
            path,
            None,
            format!(
                "too large for a configuration file (limit {} MiB)",
                limit >> 20
            ),
        ));
    }
    if let Some(at) = memchr::memchr(0, &bytes) {
        let line = memchr::memchr_iter(b'\n', &bytes[..at]).count() as u32 + 1;
        return Err(error(
            path,
            Some(line),
            "binary data (a NUL byte): this is not an nginx configuration file",
        ));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok((text, meta.modified().ok()))
}

/// Builds the statement table of one lexed file, or the first error nginx would report.
pub fn parse_tokens(mut lexed: Lexed, path: &Path) -> Result<SourceFile, ConfigError> {
    parse_tokens_noting(&mut lexed, path, None, &mut Includes::default())
}

/// A file's `include` statements (those with one argument): each distinct argument, as nginx
/// reads it, with the line of its first use, and each statement's index in the table with
/// the number of its argument. A file often includes the same snippets in each of its servers:
/// [`load`], which resolves them one after the other, looks each up once per file.
#[derive(Default)]
struct Includes {
    args: Vec<(String, u32)>,
    uses: Vec<(u32, u32)>,
}

/// How many distinct include arguments of a file are compared with a new one (beyond, the
/// argument is noted again: resolving it twice is only slower).
const INCLUDE_ARGS_COMPARED: usize = 32;

/// [`parse_tokens`], noting every `include` in `includes` as it goes, so that [`load`] need
/// not walk the statements again to find them. The file takes the text; the tokens stay, for
/// their buffer to be reused.
fn parse_tokens_noting(
    lexed: &mut Lexed,
    path: &Path,
    modified: Option<std::time::SystemTime>,
    includes: &mut Includes,
) -> Result<SourceFile, ConfigError> {
    let end = lexed
        .fatal
        .as_ref()
        .map_or(lexed.tokens.len(), |f| f.at_token);
    let mut tokens = lexed.tokens[..end]
        .iter()
        .filter(|t| t.kind != Kind::Comment);
    let mut table: Vec<StmtData> = Vec::with_capacity(lexed.statements);
    let mut words: Vec<Word> = Vec::with_capacity(lexed.words);
    let mut extra = String::new();
    let word = |t: &lexer::Token, extra: &mut String| -> Word {
        match lexed.span(t) {
            Some((start, end)) => Word { start, end },
            None => {
                let start = extra.len() as u32;
                extra.push_str(lexed.text(t));
                Word {
                    start: start | Word::EXTRA,
                    end: extra.len() as u32,
                }
            }
        }
    };
    // The statements whose blocks are open, innermost last.
    let mut open: Vec<usize> = Vec::new();
    // The accepted contexts of the last statement shapes seen (a file repeats a few dozen):
    // shape key (see below), contexts.
    const SHAPES: usize = 64;
    let mut shapes = [(u32::MAX, 0u32); SHAPES];
    while let Some(t) = tokens.next() {
        match t.kind {
            Kind::Close if !t.quoted => {
                let Some(parent) = open.pop() else {
                    return Err(error(path, Some(t.line), "unexpected \"}\""));
                };
                table[parent].end = table.len() as u32;
                continue;
            }
            Kind::Semi if !t.quoted => {
                return Err(error(path, Some(t.line), "unexpected \";\""));
            }
            Kind::Open if !t.quoted => {
                return Err(error(path, Some(t.line), "unexpected \"{\""));
            }
            _ => {}
        }
        let name = lexed.text(t);
        let id = directives::index_of(name).unwrap_or(UNKNOWN);
        let line = t.line;
        let first_word = words.len();
        words.push(word(t, &mut extra));
        let terminator = loop {
            let Some(t) = tokens.next() else {
                if let Some(f) = &lexed.fatal {
                    return Err(error(path, Some(f.line), f.message()));
                }
                return Err(error(
                    path,
                    Some(line),
                    format!(
                        "unexpected end of file in directive \"{name}\", expecting \";\" or \"}}\""
                    ),
                ));
            };
            match (t.kind, t.quoted) {
                (Kind::Semi, false) => break Terminator::Semi,
                (Kind::Open, false) => break Terminator::Open,
                (Kind::Close, false) => {
                    return Err(error(
                        path,
                        Some(line),
                        format!(
                        "directive \"{name}\" is not terminated by \";\" (found \"}}\" on line {})",
                        t.line
                    ),
                    ))
                }
                _ => words.push(word(t, &mut extra)),
            }
        };
        let args = (words.len() - first_word - 1) as u32;
        if name == "include" && args == 1 && terminator == Terminator::Semi {
            let arg = word_str(&lexed.source, &extra, words[first_word + 1]);
            let arg = unescape(arg);
            let known = includes
                .args
                .iter()
                .take(INCLUDE_ARGS_COMPARED)
                .position(|(a, _)| *a == arg);
            let number = known.unwrap_or_else(|| {
                includes.args.push((arg.into_owned(), line));
                includes.args.len() - 1
            });
            includes.uses.push((table.len() as u32, number as u32));
        }
        let accepted_contexts = match id {
            UNKNOWN => 0,
            id => {
                let arg = |i: usize| word_str(&lexed.source, &extra, words[first_word + 1 + i]);
                if name == "if" {
                    let d = directives::by_index(id);
                    let all: Vec<&str> = (0..args as usize).map(arg).collect();
                    let args = directives::if_args(&all);
                    directives::accepted_contexts(
                        d.masks,
                        args.len(),
                        args.first().copied(),
                        terminator,
                        directives::checks_args(&d),
                    )
                } else {
                    // What decides it: the directive, the number of arguments (any above
                    // eight alike), the terminator, and whether a lone argument is on or off.
                    let first = (args == 1).then(|| arg(0));
                    let shape = u32::from(id)
                        | args.min(8) << 16
                        | (terminator as u32) << 20
                        | u32::from(first.is_some_and(directives::is_flag_value)) << 22;
                    let slot = &mut shapes[(usize::from(id) ^ args as usize) & (SHAPES - 1)];
                    if slot.0 != shape {
                        let d = directives::by_index(id);
                        let accepted = directives::accepted_contexts(
                            d.masks,
                            args as usize,
                            first,
                            terminator,
                            directives::checks_args(&d),
                        );
                        *slot = (shape, accepted);
                    }
                    slot.1
                }
            }
        };
        let index = table.len();
        table.push(StmtData {
            first_word: first_word as u32,
            args,
            line,
            end: index as u32 + 1,
            id,
            terminator,
            accepted_contexts,
        });
        if terminator == Terminator::Open {
            if open.len() >= MAX_DEPTH {
                return Err(error(
                    path,
                    Some(line),
                    format!("blocks nested deeper than {MAX_DEPTH}"),
                ));
            }
            open.push(index);
        }
    }
    if let Some(f) = &lexed.fatal {
        return Err(error(path, Some(f.line), f.message()));
    }
    if let Some(&open) = open.last() {
        return Err(error(
            path,
            Some(table[open].line),
            format!(
                "unexpected end of file: the \"{}\" block opened here is not closed",
                word_str(
                    &lexed.source,
                    &extra,
                    words[table[open].first_word as usize]
                )
            ),
        ));
    }
    Ok(SourceFile {
        path: path.to_path_buf(),
        text: std::mem::take(&mut lexed.source),
        table,
        words,
        extra,
        includes: Vec::new(),
        odd_spaces: std::mem::take(&mut lexed.odd_spaces),
        modified,
        line_starts: std::sync::OnceLock::new(),
    })
}

thread_local! {
    /// One token buffer reused for every file: freeing a large buffer per file makes the
    /// allocator consolidate all its small free chunks each time, which costs more than lexing.
    static TOKENS: std::cell::RefCell<Vec<lexer::Token>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads, lexes and parses one file.
pub fn parse_file(path: &Path, limit: u64) -> Result<SourceFile, ConfigError> {
    parse_file_noting(path, limit).map(|(file, _)| file)
}

/// [`parse_file`], with the file's `include` arguments in order.
fn parse_file_noting(path: &Path, limit: u64) -> Result<(SourceFile, Includes), ConfigError> {
    let (text, modified) = read_text(path, limit)?;
    let buffer = TOKENS.with(|t| std::mem::take(&mut *t.borrow_mut()));
    let mut lexed = lexer::lex_into(text, buffer);
    let mut includes = Includes::default();
    let parsed = parse_tokens_noting(&mut lexed, path, modified, &mut includes);
    let mut tokens = std::mem::take(&mut lexed.tokens);
    tokens.clear();
    TOKENS.with(|t| *t.borrow_mut() = tokens);
    Ok((parsed?, includes))
}

/// Whether an include argument is a glob pattern (Python's `glob.has_magic`, glob(3)'s syntax).
pub fn has_magic(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// How glob(3) matches: `*` stops at `/`, and only a literal dot matches a leading dot.
const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// The files a glob pattern names, sorted like glob(3) (dot files need a literal dot).
pub fn glob_sorted(pattern: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = match glob::glob_with(pattern, GLOB_OPTIONS) {
        Ok(paths) => paths.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    };
    found.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    found
}

/// The regular files a glob pattern names, sorted like glob(3), each with its [`FileKey`]
/// (directories, FIFOs, sockets and devices are left out: nginx could not parse them).
fn glob_files(pattern: &Path) -> Vec<(PathBuf, FileKey)> {
    let keyed = |p: PathBuf| {
        let meta = std::fs::metadata(&p).ok().filter(|m| m.is_file())?;
        Some((p, FileKey::of(&meta)))
    };
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let last_only = match (dir.to_str(), name.to_str()) {
        (Some(dir_text), Some(name)) if !has_magic(dir_text) => Some((dir_text, name)),
        _ => None,
    };
    let Some((dir_text, name)) = last_only else {
        return glob_sorted(&pattern.to_string_lossy())
            .into_iter()
            .filter_map(keyed)
            .collect();
    };
    // The usual case, a pattern in the last component only (`sites-enabled/*`): one read of
    // the directory, whose entries give their type and inode, rather than a `stat` per file
    // (hundreds of them, before the files can be parsed in parallel).
    use std::os::unix::fs::{DirEntryExt, MetadataExt};
    let Ok(pattern) = glob::Pattern::new(name) else {
        return Vec::new();
    };
    let listed = if dir_text.is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let (Ok(entries), Ok(dir_meta)) = (std::fs::read_dir(listed), std::fs::metadata(listed)) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, FileKey)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| pattern.matches_with(n, GLOB_OPTIONS))
        })
        .filter_map(|e| match e.file_type() {
            // A regular file is on its directory's device (mount points are directories).
            Ok(t) if t.is_file() => Some((
                dir.join(e.file_name()),
                FileKey::Inode(dir_meta.dev(), e.ino()),
            )),
            // A link is what it points to.
            Ok(t) if t.is_symlink() => keyed(dir.join(e.file_name())),
            _ => None,
        })
        .collect();
    found.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    found
}

/// Parses several files, on all cores when there are several: each file is independent, and
/// a glob such as `sites/*.conf` brings in hundreds at once. The results keep `paths`' order.
fn parse_many(paths: &[PathBuf]) -> Vec<Result<(SourceFile, Includes), ConfigError>> {
    use rayon::prelude::*;
    if paths.len() < 4 {
        return paths
            .iter()
            .map(|p| parse_file_noting(p, MAX_FILE_BYTES))
            .collect();
    }
    paths
        .par_iter()
        .with_min_len(2)
        .map(|p| parse_file_noting(p, MAX_FILE_BYTES))
        .collect()
}

/// Loads the main file and everything it includes.
pub fn load(main: &Path) -> Result<Config, ConfigError> {
    let prefix = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let (first, first_includes) = parse_file_noting(main, MAX_FILE_BYTES)?;
    let mut total = first.text.len() as u64;
    let mut files = vec![first];
    // Each file's include arguments, taken when the file's turn comes.
    let mut pending_includes = vec![first_includes];
    let mut by_path: rustc_hash::FxHashMap<FileKey, FileId> = Default::default();
    by_path.insert(file_key(main), 0);
    // Files are parsed in discovery order; each file's include statements are resolved once,
    // and each distinct argument once (a snippet is often included from thousands of places;
    // the prefix is the same for all, so the argument alone names the pattern).
    let mut resolved: rustc_hash::FxHashMap<String, std::sync::Arc<[FileId]>> = Default::default();
    let mut next = 0;
    while next < files.len() {
        let Includes { args, uses } = std::mem::take(&mut pending_includes[next]);
        // The files each distinct argument brings in, in the order of their first uses (so
        // that the first failing include statement is the one reported).
        let mut brought_by_arg: Vec<std::sync::Arc<[FileId]>> = Vec::with_capacity(args.len());
        for (arg, line) in args {
            if let Some(ids) = resolved.get(&arg) {
                brought_by_arg.push(ids.clone());
                continue;
            }
            let includer = &files[next].path;
            let pattern = if Path::new(&arg).is_absolute() {
                PathBuf::from(&arg)
            } else {
                prefix.join(&arg)
            };
            // The files, each with what makes it one file.
            let (paths, keys): (Vec<PathBuf>, Vec<FileKey>) = if has_magic(&arg) {
                glob_files(&pattern).into_iter().unzip()
            } else {
                let opened = open_without_waiting(&pattern).and_then(|f| f.metadata());
                match opened {
                    Ok(meta) => (vec![pattern.clone()], vec![FileKey::of(&meta)]),
                    Err(e) => {
                        return Err(error(
                            includer,
                            Some(line),
                            format!(
                                "include: open() \"{}\" failed ({})",
                                pattern.display(),
                                errno_text(&e)
                            ),
                        ))
                    }
                }
            };
            // The files this include brings in for the first time.
            let mut fresh: Vec<(FileKey, PathBuf)> = Vec::new();
            let mut fresh_keys: rustc_hash::FxHashSet<&FileKey> = Default::default();
            for (key, path) in keys.iter().zip(&paths) {
                if !by_path.contains_key(key) && fresh_keys.insert(key) {
                    fresh.push((key.clone(), path.clone()));
                }
            }
            if files.len() + fresh.len() > MAX_FILES {
                return Err(error(
                    includer,
                    Some(line),
                    format!("more than {MAX_FILES} included files"),
                ));
            }
            let includer = includer.clone();
            let parsed = parse_many(&fresh.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>());
            for ((key, _), file) in fresh.into_iter().zip(parsed) {
                let (file, its_includes) = file.map_err(|mut e| {
                    if e.line.is_none() {
                        // Name the include that brought the unreadable file in.
                        e.message = format!(
                            "{} (included from {}:{line})",
                            e.message,
                            includer.display()
                        );
                    }
                    e
                })?;
                total += file.text.len() as u64;
                if total > MAX_TOTAL_BYTES {
                    return Err(error(
                        &includer,
                        Some(line),
                        format!(
                            "the included files exceed {} MiB in all",
                            MAX_TOTAL_BYTES >> 20
                        ),
                    ));
                }
                files.push(file);
                pending_includes.push(its_includes);
                by_path.insert(key, files.len() - 1);
            }
            let ids: std::sync::Arc<[FileId]> = keys.iter().map(|k| by_path[k]).collect();
            brought_by_arg.push(ids.clone());
            resolved.insert(arg, ids);
        }
        // The files each include statement brings in, in the statements' order.
        files[next].includes = uses
            .iter()
            .map(|&(index, number)| (index, brought_by_arg[number as usize].clone()))
            .collect();
        next += 1;
    }
    check_loops(&files)?;
    Ok(Config { files, prefix })
}

/// An I/O error the way nginx prints one: `2: No such file or directory`.
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = std::io::Error::from_raw_os_error(n).to_string();
            format!("{n}: {}", text.split(" (os error").next().unwrap_or(&text))
        }
        None => e.to_string(),
    }
}

/// What makes two paths one file, so that it is parsed once: its device and inode (one
/// `stat`, where resolving the path would look at each of its components), else the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileKey {
    Inode(u64, u64),
    Path(PathBuf),
}

fn file_key(path: &Path) -> FileKey {
    match std::fs::metadata(path) {
        Ok(m) => FileKey::of(&m),
        Err(_) => FileKey::Path(path.to_path_buf()),
    }
}

impl FileKey {
    fn of(meta: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey::Inode(meta.dev(), meta.ino())
    }
}

/// Opens a file for reading without waiting: a FIFO with no writer would otherwise block the
/// open (and the read) forever; regular files ignore the flag.
fn open_without_waiting(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Refuses include loops: nginx would include the files again and again until it runs out of
/// file descriptors.
fn check_loops(files: &[SourceFile]) -> Result<(), ConfigError> {
    // 0 = not visited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; files.len()];
    // Iterative depth-first search over each file's include edges, read in place: the file,
    // its include statement (index in `includes`) and the file of it to follow next.
    let mut stack: Vec<(FileId, usize, usize)> = vec![(0, 0, 0)];
    state[0] = 1;
    while let Some(&mut (file, ref mut include, ref mut next)) = stack.last_mut() {
        let Some((index, ids)) = files[file].includes.get(*include) else {
            state[file] = 2;
            stack.pop();
            continue;
        };
        let Some(&to) = ids.get(*next) else {
            *include += 1;
            *next = 0;
            continue;
        };
        *next += 1;
        match state[to] {
            0 => {
                state[to] = 1;
                stack.push((to, 0, 0));
            }
            1 => {
                let chain: Vec<String> = stack
                    .iter()
                    .map(|(f, _, _)| files[*f].path.display().to_string())
                    .skip_while(|p| *p != files[to].path.display().to_string())
                    .collect();
                return Err(error(
                    &files[file].path,
                    Some(files[file].table[*index as usize].line),
                    format!(
                        "include loop: {} includes {} again",
                        chain.join(" → "),
                        files[to].path.display()
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// An argument as nginx reads it: `\"`, `\'` and `\\` stand for the character, `\t`, `\r` and
/// `\n` for tab, carriage return and line feed; any other backslash stays.
pub fn unescape(arg: &str) -> std::borrow::Cow<'_, str> {
    if !arg.contains('\\') {
        return std::borrow::Cow::Borrowed(arg);
    }
    let mut out = String::with_capacity(arg.len());
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('"') | Some('\'') | Some('\\') => {
                    out.push(chars.next().expect("peeked"));
                    continue;
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                    continue;
                }
                Some('r') => {
                    chars.next();
                    out.push('\r');
                    continue;
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<SourceFile, ConfigError> {
        parse_tokens(lexer::lex(src.to_string()), Path::new("t.conf"))
    }

    /// The statements as text, blocks in braces, to compare shapes.
    fn shape(stmts: Stmts) -> String {
        let mut out = Vec::new();
        for s in stmts {
            let words: Vec<&str> = std::iter::once(s.name()).chain(s.args()).collect();
            out.push(match s.block() {
                Some(block) => format!("{} {{ {} }}", words.join(" "), shape(block)),
                None => format!("{};", words.join(" ")),
            });
        }
        out.join(" ")
    }

    #[test]
    fn builds_the_tree() {
        let file = parse("http {\n server { listen 80; location / { proxy_pass http://a; } }\n}\n")
            .unwrap();
        let top: Vec<Stmt> = file.stmts().collect();
        assert_eq!(top.len(), 1);
        let server = top[0].block().unwrap().next().unwrap();
        assert_eq!(server.name(), "server");
        let location = server.block().unwrap().nth(1).unwrap();
        assert_eq!(location.args().to_vec(), ["/"]);
        assert_eq!(location.line(), 2);
        let pass = location.block().unwrap().next().unwrap();
        assert_eq!(pass.args().to_vec(), ["http://a"]);
        assert_eq!(pass.known().map(|d| d.name), Some("proxy_pass"));
        assert_eq!(file.count(), 5);
        assert_eq!(file.all_stmts().count(), 5);
    }

    #[test]
    fn blocks_and_their_neighbours_keep_their_order() {
        let src = "a 1;\nb {\n c { d; }\n e \"x\\\"y\" 'z' \"\";\n c2 {}\n}\nf { }\ng;\n";
        let file = parse(src).unwrap();
        assert_eq!(
            shape(file.stmts()),
            "a 1; b { c { d; } e x\"y z ; c2 {  } } f {  } g;"
        );
        let e = file.all_stmts().find(|s| s.name() == "e").unwrap();
        // A quoted word with an escaped quote is not a slice of the text; the empty one is.
        assert_eq!(e.args().to_vec(), ["x\"y", "z", ""]);
        assert_eq!(e.args().skip(1).to_vec(), ["z", ""]);
        assert_eq!(e.args().skip(5).len(), 0);
        assert_eq!(e.args().join("|"), "x\"y|z|");
        assert_eq!(e.line(), 4);
        assert!(e.block().is_none());
        assert_eq!(e.terminator(), Terminator::Semi);
        let names: Vec<&str> = file.all_stmts().map(|s| s.name()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e", "c2", "f", "g"]);
    }

    #[test]
    fn arguments_joined_as_written_or_word_by_word() {
        let src = "a x y;\nb x  y;\nc \"x\" y;\nd \"x\\\"q\" y;\ne x\ty z;\nf;\ng x;\n";
        let file = parse(src).unwrap();
        let joined: Vec<String> = file
            .stmts()
            .map(|s| s.args().join(" ").to_string())
            .collect();
        assert_eq!(joined, ["x y", "x y", "x y", "x\"q y", "x y z", "", "x"]);
        let commas: Vec<String> = file
            .stmts()
            .map(|s| s.args().join(",").to_string())
            .collect();
        assert_eq!(commas[0], "x,y");
    }

    #[test]
    fn malformed_input_names_the_line() {
        let e = parse("http {\n  location / {\n    proxy_pass http://a\n  }\n}\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("not terminated"), "{e}");
        assert_eq!(parse("a;\n}\n").unwrap_err().line, Some(2));
        assert_eq!(parse("http {\n server {\n").unwrap_err().line, Some(2));
        assert!(parse("a b").is_err() || parse("a b").unwrap().count() == 0);
        assert_eq!(parse("x;\n;\n").unwrap_err().line, Some(2));
    }

    #[test]
    fn each_include_statement_brings_its_files_and_the_first_that_fails_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.conf"), "a 1;\n").unwrap();
        std::fs::write(d.join("b.conf"), "b 1;\n").unwrap();
        let main = d.join("nginx.conf");
        std::fs::write(
            &main,
            "include a.conf;\nx { include b.conf; include a.conf; }\ninclude b.conf;\n",
        )
        .unwrap();
        let config = load(&main).unwrap();
        let brought: Vec<(u32, Vec<FileId>)> = config.files[0]
            .includes
            .iter()
            .map(|(index, ids)| (config.files[0].table[*index as usize].line, ids.to_vec()))
            .collect();
        assert_eq!(
            brought,
            [(1, vec![1]), (2, vec![2]), (2, vec![1]), (3, vec![2])]
        );
        // The same missing file twice, another before: the first statement that fails.
        std::fs::write(
            &main,
            "include a.conf;\ninclude gone.conf;\ninclude lost.conf;\ninclude gone.conf;\n",
        )
        .unwrap();
        let e = load(&main).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("gone.conf"), "{e}");
    }

    #[test]
    fn a_glob_takes_files_and_links_to_files_sorted_and_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sites/dir.conf")).unwrap();
        std::fs::create_dir(d.join("other")).unwrap();
        std::fs::write(d.join("shared.conf"), "s 1;\n").unwrap();
        std::fs::write(d.join("other/elsewhere.conf"), "e 1;\n").unwrap();
        std::fs::write(d.join("sites/b.conf"), "b 1;\n").unwrap();
        std::fs::write(d.join("sites/a.conf"), "a 1;\n").unwrap();
        std::fs::write(d.join("sites/.hidden.conf"), "h 1;\n").unwrap();
        std::fs::write(d.join("sites/c.txt"), "c 1;\n").unwrap();
        std::os::unix::fs::symlink(d.join("shared.conf"), d.join("sites/link.conf")).unwrap();
        std::os::unix::fs::symlink("../other/elsewhere.conf", d.join("sites/rel.conf")).unwrap();
        std::os::unix::fs::symlink(d.join("missing.conf"), d.join("sites/dangling.conf")).unwrap();
        let main = d.join("nginx.conf");
        // shared.conf comes in by name first, then through the link: parsed once.
        std::fs::write(&main, "include shared.conf;\ninclude sites/*.conf;\n").unwrap();
        let config = load(&main).unwrap();
        let names: Vec<String> = config
            .files
            .iter()
            .map(|f| f.path.strip_prefix(d).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "nginx.conf",
                "shared.conf",
                "sites/a.conf",
                "sites/b.conf",
                "sites/rel.conf"
            ]
        );
        let brought: Vec<&[FileId]> = config.files[0]
            .includes
            .iter()
            .map(|(_, ids)| &ids[..])
            .collect();
        assert_eq!(
            brought,
            [&[1][..], &[2, 3, 1, 4][..]],
            "the link to shared.conf is file 1"
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once_and_skipped_by_a_glob() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let mkfifo = |p: &Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        };
        std::fs::create_dir(dir.path().join("sites")).unwrap();
        mkfifo(&dir.path().join("sites/b.conf"));
        mkfifo(&dir.path().join("pipe.conf"));
        std::fs::write(dir.path().join("sites/a.conf"), "a 1;\n").unwrap();
        let globbed = dir.path().join("globbed.conf");
        std::fs::write(&globbed, "include sites/*.conf;\n").unwrap();
        let named = dir.path().join("named.conf");
        std::fs::write(&named, "include pipe.conf;\n").unwrap();
        // In a thread: a regression would block for ever on the FIFO's open.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send((load(&globbed).map(|c| c.files.len()), load(&named)));
        });
        let (globbed, named) = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("loading returns without waiting for a FIFO's writer");
        assert_eq!(globbed, Ok(2), "the FIFO matched by the glob is skipped");
        let e = named.unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        assert!(e.message.contains("named.conf:1"), "{e}");
    }

    #[test]
    fn unescapes_like_nginx() {
        assert_eq!(unescape(r#"a\"b\\c\td\$e"#), "a\"b\\c\td\\$e");
    }
}
