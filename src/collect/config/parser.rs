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

use super::directives::Terminator;
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

/// One directive: its name and arguments as written (quotes removed, escapes kept), its line,
/// how it ended and, for a block, the statements inside.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// Known directive names are the table's own strings (no allocation for each of them).
    pub name: std::borrow::Cow<'static, str>,
    /// The directive's position in the table, when it is a known one (see [`Stmt::known`]):
    /// two bytes rather than the entry, as there are tens of thousands of statements.
    pub id: Option<u16>,
    /// Most arguments are short: kept inline (CompactString), not one allocation each. Boxed
    /// slices rather than vectors here: a configuration has tens of thousands of statements,
    /// and none of these lists grows once parsed.
    pub args: Box<[compact_str::CompactString]>,
    pub line: u32,
    pub terminator: Terminator,
    pub block: Option<Box<[Stmt]>>,
    /// For `include`: the files it brought in, in nginx's order.
    pub includes: Box<[FileId]>,
}

impl Stmt {
    /// The directive's entry in the table, when it is a known one.
    pub fn known(&self) -> Option<super::directives::Directive> {
        self.id.map(super::directives::by_index)
    }

    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(compact_str::CompactString::as_str)
    }
}

/// One parsed file.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as nginx opens it (the conf prefix joined with the include's argument).
    pub path: PathBuf,
    pub text: String,
    pub stmts: Vec<Stmt>,
    /// Lines where a Unicode space separates words (nginx would not split there).
    pub odd_spaces: Vec<u32>,
    pub modified: Option<std::time::SystemTime>,
    /// Where each line starts, computed the first time a line is shown.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl SourceFile {
    /// Every statement of the file, those inside blocks too (in no particular order).
    pub fn all_stmts(&self) -> impl Iterator<Item = &Stmt> {
        let mut stack: Vec<&Stmt> = self.stmts.iter().collect();
        std::iter::from_fn(move || {
            let stmt = stack.pop()?;
            if let Some(block) = &stmt.block {
                stack.extend(block.iter());
            }
            Some(stmt)
        })
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
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(error(
            path,
            None,
            "is a directory, not a configuration file",
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
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
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

/// Builds the statement tree of one lexed file, or the first error nginx would report.
pub fn parse_tokens(lexed: &Lexed, path: &Path) -> Result<Vec<Stmt>, ConfigError> {
    parse_tokens_noting(lexed, path, &mut Vec::new())
}

/// An `include` with one argument, as (line, the argument as nginx reads it), in the order
/// the statements appear (a block's statement before those inside it).
type IncludeArg = (u32, String);

/// [`parse_tokens`], noting every `include` in `includes` as it goes, so that [`load`] need
/// not walk the tree again to find them.
fn parse_tokens_noting(
    lexed: &Lexed,
    path: &Path,
    includes: &mut Vec<IncludeArg>,
) -> Result<Vec<Stmt>, ConfigError> {
    let end = lexed
        .fatal
        .as_ref()
        .map_or(lexed.tokens.len(), |f| f.at_token);
    let mut tokens = lexed.tokens[..end]
        .iter()
        .filter(|t| t.kind != Kind::Comment);
    // Every statement read and not yet placed in its block, outermost level first; `open`
    // holds each open block's statement and where its children start in `stmts`. A block's
    // children are moved out in one piece when it closes, into a vector of exactly their
    // number (no vector per level growing and shrinking).
    let mut stmts: Vec<Stmt> = Vec::new();
    let mut open: Vec<(Stmt, usize)> = Vec::new();
    let mut scratch: Vec<compact_str::CompactString> = Vec::new();
    while let Some(t) = tokens.next() {
        match t.kind {
            Kind::Close if !t.quoted => {
                let Some((mut parent, start)) = open.pop() else {
                    return Err(error(path, Some(t.line), "unexpected \"}\""));
                };
                parent.block = Some(stmts.drain(start..).collect());
                stmts.push(parent);
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
        let text = lexed.text(t);
        let known = super::directives::lookup(text);
        let name = match known {
            Some(d) => std::borrow::Cow::Borrowed(d.name),
            None => std::borrow::Cow::Owned(text.to_string()),
        };
        let line = t.line;
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
                _ => scratch.push(compact_str::CompactString::from(lexed.text(t))),
            }
        };
        let args: Box<[compact_str::CompactString]> = scratch.drain(..).collect();
        if name == "include" && args.len() == 1 && terminator == Terminator::Semi {
            includes.push((line, unescape(&args[0])));
        }
        let stmt = Stmt {
            name,
            id: known.map(|d| d.index),
            args,
            line,
            terminator,
            block: None,
            includes: Box::default(),
        };
        if terminator == Terminator::Open {
            if open.len() >= MAX_DEPTH {
                return Err(error(
                    path,
                    Some(line),
                    format!("blocks nested deeper than {MAX_DEPTH}"),
                ));
            }
            open.push((stmt, stmts.len()));
        } else {
            stmts.push(stmt);
        }
    }
    if let Some(f) = &lexed.fatal {
        return Err(error(path, Some(f.line), f.message()));
    }
    if let Some((open, _)) = open.last() {
        return Err(error(
            path,
            Some(open.line),
            format!(
                "unexpected end of file: the \"{}\" block opened here is not closed",
                open.name
            ),
        ));
    }
    Ok(stmts)
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
fn parse_file_noting(
    path: &Path,
    limit: u64,
) -> Result<(SourceFile, Vec<IncludeArg>), ConfigError> {
    let (text, modified) = read_text(path, limit)?;
    let buffer = TOKENS.with(|t| std::mem::take(&mut *t.borrow_mut()));
    let mut lexed = lexer::lex_into(text, buffer);
    let mut includes = Vec::new();
    let stmts = parse_tokens_noting(&lexed, path, &mut includes);
    let mut tokens = std::mem::take(&mut lexed.tokens);
    tokens.clear();
    TOKENS.with(|t| *t.borrow_mut() = tokens);
    let stmts = stmts?;
    let file = SourceFile {
        path: path.to_path_buf(),
        stmts,
        odd_spaces: lexed.odd_spaces,
        text: lexed.source,
        modified,
        line_starts: std::sync::OnceLock::new(),
    };
    Ok((file, includes))
}

/// Whether an include argument is a glob pattern (Python's `glob.has_magic`, glob(3)'s syntax).
pub fn has_magic(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The files a glob pattern names, sorted like glob(3) (dot files need a literal dot).
pub fn glob_sorted(pattern: &str) -> Vec<PathBuf> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let mut found: Vec<PathBuf> = match glob::glob_with(pattern, options) {
        Ok(paths) => paths.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    };
    found.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    found
}

/// Parses several files, on all cores when there are several: each file is independent, and
/// a glob such as `sites/*.conf` brings in hundreds at once. The results keep `paths`' order.
fn parse_many(paths: &[PathBuf]) -> Vec<Result<(SourceFile, Vec<IncludeArg>), ConfigError>> {
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
    let mut resolved: rustc_hash::FxHashMap<String, Vec<FileId>> = Default::default();
    // For each file: the files each of its include statements brings in, in the statements'
    // order, and the same as (file, line) edges for the loop check.
    let mut brought_by_file: Vec<Vec<Vec<FileId>>> = Vec::new();
    let mut edges: Vec<Vec<(FileId, u32)>> = Vec::new();
    let mut next = 0;
    while next < files.len() {
        let includes = std::mem::take(&mut pending_includes[next]);
        let mut brought: Vec<Vec<FileId>> = Vec::with_capacity(includes.len());
        let mut out: Vec<(FileId, u32)> = Vec::new();
        for (line, arg) in includes {
            if let Some(ids) = resolved.get(&arg) {
                out.extend(ids.iter().map(|&id| (id, line)));
                brought.push(ids.clone());
                continue;
            }
            let includer = &files[next].path;
            let pattern = if Path::new(&arg).is_absolute() {
                PathBuf::from(&arg)
            } else {
                prefix.join(&arg)
            };
            let paths = if has_magic(&arg) {
                glob_sorted(&pattern.to_string_lossy())
                    .into_iter()
                    .filter(|p| p.is_file())
                    .collect()
            } else {
                if let Err(e) = std::fs::File::open(&pattern) {
                    return Err(error(
                        includer,
                        Some(line),
                        format!(
                            "include: open() \"{}\" failed ({})",
                            pattern.display(),
                            errno_text(&e)
                        ),
                    ));
                }
                vec![pattern.clone()]
            };
            // The files this include brings in for the first time.
            let keys: Vec<FileKey> = paths.iter().map(|p| file_key(p)).collect();
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
            let ids: Vec<FileId> = keys.iter().map(|k| by_path[k]).collect();
            out.extend(ids.iter().map(|&id| (id, line)));
            resolved.insert(arg, ids.clone());
            brought.push(ids);
        }
        brought_by_file.push(brought);
        edges.push(out);
        next += 1;
    }
    check_loops(&files, &edges)?;
    // Each file's include statements get their files, every file on its own (a walk over
    // every statement: on all cores when there are several files).
    let attach = |(file, brought): (&mut SourceFile, Vec<Vec<FileId>>)| {
        set_includes(&mut file.stmts, &mut brought.into_iter())
    };
    if files.len() < 4 {
        files.iter_mut().zip(brought_by_file).for_each(attach);
    } else {
        use rayon::prelude::*;
        files.par_iter_mut().zip(brought_by_file).for_each(attach);
    }
    Ok(Config { files, prefix })
}

/// Hands each `include` statement the files it brought in: `brought` follows the order in
/// which [`parse_tokens_noting`] noted them (a block's statement before those inside it).
fn set_includes(stmts: &mut [Stmt], brought: &mut std::vec::IntoIter<Vec<FileId>>) {
    for s in stmts {
        if s.name == "include" && s.args.len() == 1 && s.terminator == Terminator::Semi {
            if let Some(ids) = brought.next() {
                s.includes = ids.into_boxed_slice();
            }
        }
        if let Some(block) = &mut s.block {
            set_includes(block, brought);
        }
    }
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
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => FileKey::Inode(m.dev(), m.ino()),
        Err(_) => FileKey::Path(path.to_path_buf()),
    }
}

/// Refuses include loops: nginx would include the files again and again until it runs out of
/// file descriptors.
/// `edges[f]`: the files file `f` includes, with the line of each include.
fn check_loops(files: &[SourceFile], edges: &[Vec<(FileId, u32)>]) -> Result<(), ConfigError> {
    // 0 = not visited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; files.len()];
    // Iterative depth-first search over (file, its include edges).
    let mut stack: Vec<(FileId, usize)> = vec![(0, 0)];
    state[0] = 1;
    while let Some(&mut (file, ref mut next)) = stack.last_mut() {
        if let Some(&(to, line)) = edges[file].get(*next) {
            *next += 1;
            match state[to] {
                0 => {
                    state[to] = 1;
                    stack.push((to, 0));
                }
                1 => {
                    let chain: Vec<String> = stack
                        .iter()
                        .map(|(f, _)| files[*f].path.display().to_string())
                        .skip_while(|p| *p != files[to].path.display().to_string())
                        .collect();
                    return Err(error(
                        &files[file].path,
                        Some(line),
                        format!(
                            "include loop: {} includes {} again",
                            chain.join(" → "),
                            files[to].path.display()
                        ),
                    ));
                }
                _ => {}
            }
        } else {
            state[file] = 2;
            stack.pop();
        }
    }
    Ok(())
}

/// An argument as nginx reads it: `\"`, `\'` and `\\` stand for the character, `\t`, `\r` and
/// `\n` for tab, carriage return and line feed; any other backslash stays.
pub fn unescape(arg: &str) -> String {
    if !arg.contains('\\') {
        return arg.to_string();
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Vec<Stmt>, ConfigError> {
        parse_tokens(&lexer::lex(src.to_string()), Path::new("t.conf"))
    }

    #[test]
    fn builds_the_tree() {
        let stmts =
            parse("http {\n server { listen 80; location / { proxy_pass http://a; } }\n}\n")
                .unwrap();
        assert_eq!(stmts.len(), 1);
        let server = &stmts[0].block.as_ref().unwrap()[0];
        assert_eq!(server.name, "server");
        let location = &server.block.as_ref().unwrap()[1];
        assert_eq!(location.args[..], ["/"]);
        assert_eq!(location.block.as_ref().unwrap()[0].args[..], ["http://a"]);
    }

    #[test]
    fn malformed_input_names_the_line() {
        let e = parse("http {\n  location / {\n    proxy_pass http://a\n  }\n}\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("not terminated"), "{e}");
        assert_eq!(parse("a;\n}\n").unwrap_err().line, Some(2));
        assert_eq!(parse("http {\n server {\n").unwrap_err().line, Some(2));
        assert!(parse("a b").is_err() || parse("a b").unwrap().is_empty());
        assert_eq!(parse("x;\n;\n").unwrap_err().line, Some(2));
    }

    #[test]
    fn unescapes_like_nginx() {
        assert_eq!(unescape(r#"a\"b\\c\td\$e"#), "a\"b\\c\td\\$e");
    }
}
