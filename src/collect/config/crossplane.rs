//! `gwdoctor config --format crossplane`: the JSON that `crossplane parse` (crossplane 0.5.8)
//! prints, byte for byte, so tools built on crossplane can use gwdoctor instead (and so that a
//! differential test can hold gwdoctor's lexer to crossplane's).
//!
//! This reproduces crossplane's own walk, quirks included, on top of the shared lexer:
//! includes are taken relative to the main file's directory and parsed once each, in the
//! context of their first inclusion; a statement its analyzer rejects is left out (with its
//! block, when the error is a missing `;`); a file with a syntax error keeps its errors but no
//! statements; file names are printed as they were given; the JSON is Python's
//! `json.dumps(…, separators=(',', ':'))` with non-ASCII escaped.

use super::directives::{self, mask, Origin, Terminator};
use super::lexer::{self, Kind, Lexed, Token};
use super::parser::{glob_sorted, has_magic};
use std::collections::HashMap;
use std::fmt::Write;

/// crossplane's parse options (`crossplane parse --single-file`, and `check_ctx` /
/// `check_args` of its Python API).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Do not follow includes.
    pub single: bool,
    pub check_ctx: bool,
    pub check_args: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            single: false,
            check_ctx: true,
            check_args: true,
        }
    }
}

struct Stmt {
    directive: String,
    /// For a comment found among a directive's arguments (`"directive": "#"`).
    comment: Option<String>,
    line: u32,
    args: Vec<String>,
    includes: Option<Vec<usize>>,
    block: Option<Vec<Stmt>>,
}

struct FileOut {
    file: String,
    errors: Vec<(String, Option<u32>)>,
    parsed: Vec<Stmt>,
}

/// What stops crossplane's parse of one file.
enum Abort {
    /// A syntax error of the lexer, or any exception: (message, line).
    Error(String, Option<u32>),
}

struct Run<'o> {
    opts: &'o Options,
    config_dir: String,
    includes: Vec<(String, Vec<String>)>,
    included: HashMap<String, usize>,
    payload_errors: Vec<(String, String, Option<u32>)>,
}

struct Cursor<'l> {
    lexed: &'l Lexed,
    pos: usize,
    file: &'l str,
}

impl<'l> Cursor<'l> {
    /// The next token; `Ok(None)` at the end; the lexer's error when its token is reached.
    fn next(&mut self) -> Result<Option<&'l Token>, Abort> {
        if let Some(f) = &self.lexed.fatal {
            if self.pos == f.at_token {
                let message = if f.kind == lexer::FatalKind::LuaBlockStart {
                    format!("{} in None:{}", f.message(), f.line)
                } else {
                    format!("{} in {}:{}", f.message(), self.file, f.line)
                };
                return Err(Abort::Error(message, Some(f.line)));
            }
        }
        let t = self.lexed.tokens.get(self.pos);
        self.pos += 1;
        Ok(t)
    }

    /// Like `next`, but the end of the tokens is Python's bare `StopIteration` (an error with
    /// an empty message and no line).
    fn next_required(&mut self) -> Result<&'l Token, Abort> {
        self.next()?.ok_or(Abort::Error(String::new(), None))
    }
}

fn is_special(t: &Token, kind: Kind) -> bool {
    t.kind == kind && !t.quoted
}

/// Python's `os.path.join(a, b)` for two strings.
fn path_join(a: &str, b: &str) -> String {
    if b.starts_with('/') || a.is_empty() {
        b.to_string()
    } else if a.ends_with('/') {
        format!("{a}{b}")
    } else {
        format!("{a}/{b}")
    }
}

/// Python's `str(OSError)`: `[Errno 2] No such file or directory: 'path'`.
fn os_error(e: &std::io::Error, path: &str) -> String {
    let errno = e.raw_os_error().unwrap_or(0);
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let quoted = if path.contains('\'') && !path.contains('"') {
        format!("\"{path}\"")
    } else {
        format!("'{path}'")
    };
    format!("[Errno {errno}] {text}: {quoted}")
}

/// The context bit of a crossplane context tuple, if it is one crossplane analyzes.
fn context_bit(ctx: &[String]) -> Option<u32> {
    let c: Vec<&str> = ctx.iter().map(String::as_str).collect();
    Some(match c.as_slice() {
        [] => mask::MAIN,
        ["events"] => mask::EVENT,
        ["mail"] => mask::MAIL_MAIN,
        ["mail", "server"] => mask::MAIL_SRV,
        ["stream"] => mask::STREAM_MAIN,
        ["stream", "server"] => mask::STREAM_SRV,
        ["stream", "upstream"] => mask::STREAM_UPS,
        ["http"] => mask::HTTP_MAIN,
        ["http", "server"] => mask::HTTP_SRV,
        ["http", "location"] => mask::HTTP_LOC,
        ["http", "upstream"] => mask::HTTP_UPS,
        ["http", "server", "if"] => mask::HTTP_SIF,
        ["http", "location", "if"] => mask::HTTP_LIF,
        ["http", "location", "limit_except"] => mask::HTTP_LMT,
        _ => return None,
    })
}

/// How deep blocks may nest before the parse gives up.
const MAX_NESTING: usize = 400;

/// crossplane's `NGX_ANY_CONF`, which (unlike nginx's) leaves out `if` and `limit_except`.
const CROSSPLANE_INCLUDE: &[u32] = &[0x1ffc_0000 | mask::TAKE1];

impl Run<'_> {
    fn analyze(&self, stmt: &Stmt, term: Terminator, ctx: &[String]) -> Result<(), String> {
        let Some(bit) = context_bit(ctx) else {
            return Ok(());
        };
        let Some(d) = directives::lookup(&stmt.directive) else {
            return Ok(());
        };
        // crossplane knows nginx's and NGINX Plus's directives, not third-party modules'.
        if !matches!(d.origin, Origin::Nginx | Origin::Docs) {
            return Ok(());
        }
        let masks = if stmt.directive == "include" {
            CROSSPLANE_INCLUDE
        } else {
            d.masks
        };
        let args: Vec<&str> = stmt.args.iter().map(String::as_str).collect();
        let context = if self.opts.check_ctx {
            bit
        } else {
            mask::CONTEXTS
        };
        let check_args = self.opts.check_args && d.origin == Origin::Nginx;
        directives::analyze(masks, context, &args, term, check_args)
            .map_err(|p| p.message(&stmt.directive))
    }

    fn parse_block(
        &mut self,
        file: &mut FileOut,
        cursor: &mut Cursor,
        ctx: &[String],
        consume: bool,
        depth: usize,
    ) -> Result<Vec<Stmt>, Abort> {
        // Python stops a recursion this deep; so does this port (and its stack stays small).
        if depth > MAX_NESTING {
            return Err(Abort::Error(
                "maximum recursion depth exceeded".into(),
                None,
            ));
        }
        let mut parsed = Vec::new();
        while let Some(token) = cursor.next()? {
            if is_special(token, Kind::Close) {
                break;
            }
            if consume {
                if is_special(token, Kind::Open) {
                    self.parse_block(file, cursor, &[], true, depth + 1)?;
                }
                continue;
            }
            if token.kind == Kind::Comment {
                continue;
            }
            let mut comments = Vec::new();
            let mut stmt = Stmt {
                comment: None,
                directive: cursor.lexed.text(token).to_string(),
                line: token.line,
                args: Vec::new(),
                includes: None,
                block: None,
            };
            let mut t = cursor.next_required()?;
            while t.quoted || matches!(t.kind, Kind::Word | Kind::Comment) {
                if t.kind == Kind::Comment {
                    comments.push(cursor.lexed.text(t)[1..].to_string());
                } else {
                    stmt.args.push(cursor.lexed.text(t).to_string());
                }
                t = cursor.next_required()?;
            }
            let term = match t.kind {
                Kind::Open => Terminator::Open,
                Kind::Close => Terminator::Close,
                _ => Terminator::Semi,
            };
            if stmt.directive == "if" {
                let args: Vec<&str> = stmt.args.iter().map(String::as_str).collect();
                stmt.args = directives::if_args(&args)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
            }
            if let Err(reason) = self.analyze(&stmt, term, ctx) {
                let message = format!("{reason} in {}:{}", file.file, stmt.line);
                self.error(file, message.clone(), Some(stmt.line));
                if reason.ends_with(" is not terminated by \";\"") {
                    if term != Terminator::Close {
                        self.parse_block(file, cursor, &[], true, depth + 1)?;
                    } else {
                        break;
                    }
                }
                continue;
            }
            if !self.opts.single && stmt.directive == "include" {
                let Some(arg) = stmt.args.first() else {
                    return Err(Abort::Error("list index out of range".into(), None));
                };
                let pattern = if arg.starts_with('/') {
                    arg.clone()
                } else {
                    path_join(&self.config_dir, arg)
                };
                let mut names = Vec::new();
                if has_magic(&pattern) {
                    names = glob_sorted(&pattern)
                        .into_iter()
                        .map(|p| p.to_string_lossy().into_owned())
                        .collect();
                } else {
                    match std::fs::File::open(&pattern) {
                        Ok(_) => names.push(pattern),
                        Err(e) => {
                            let message = os_error(&e, &pattern);
                            self.error(file, message, Some(stmt.line));
                        }
                    }
                }
                let mut indexes = Vec::new();
                for name in names {
                    let index = match self.included.get(&name) {
                        Some(&i) => i,
                        None => {
                            self.included.insert(name.clone(), self.includes.len());
                            self.includes.push((name, ctx.to_vec()));
                            self.includes.len() - 1
                        }
                    };
                    indexes.push(index);
                }
                stmt.includes = Some(indexes);
            }
            if term == Terminator::Open {
                let inner: Vec<String> =
                    if ctx.first().is_some_and(|c| c == "http") && stmt.directive == "location" {
                        vec!["http".into(), "location".into()]
                    } else {
                        ctx.iter()
                            .cloned()
                            .chain(std::iter::once(stmt.directive.clone()))
                            .collect()
                    };
                stmt.block = Some(self.parse_block(file, cursor, &inner, false, depth + 1)?);
            }
            let line = stmt.line;
            parsed.push(stmt);
            // crossplane prints the comments met among the arguments after the directive.
            for c in comments {
                parsed.push(Stmt {
                    directive: "#".into(),
                    comment: Some(c),
                    line,
                    args: Vec::new(),
                    includes: None,
                    block: None,
                });
            }
        }
        Ok(parsed)
    }

    fn error(&mut self, file: &mut FileOut, message: String, line: Option<u32>) {
        file.errors.push((message.clone(), line));
        self.payload_errors.push((file.file.clone(), message, line));
    }
}

/// crossplane's lexer stops quietly at the end of the file inside a quoted word or a Lua
/// block; what it reports is then only what its brace count says.
fn crossplane_eof(lexed: &mut Lexed) {
    let quiet = matches!(
        lexed.fatal.as_ref().map(|f| &f.kind),
        Some(lexer::FatalKind::UnterminatedQuote | lexer::FatalKind::UnterminatedLuaBlock)
    );
    if !quiet {
        return;
    }
    let depth: i64 = lexed
        .tokens
        .iter()
        .map(|t| match (t.kind, t.quoted) {
            (Kind::Open, false) => 1,
            (Kind::Close, false) => -1,
            _ => 0,
        })
        .sum();
    lexed.fatal = (depth > 0).then(|| lexer::Fatal {
        kind: lexer::FatalKind::UnexpectedEof,
        line: lexed.tokens.last().map_or(1, |t| t.line),
        at_token: lexed.tokens.len(),
    });
}

/// crossplane reads files in Python's text mode: `\r\n` and a lone `\r` are line breaks.
fn universal_newlines(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Parses `filename` (as given, relative to the working directory) the way `crossplane parse`
/// does and returns its JSON, with a final newline.
pub fn parse(filename: &str, opts: &Options) -> String {
    let config_dir = match filename.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => filename[..i].to_string(),
        None => String::new(),
    };
    let mut run = Run {
        opts,
        config_dir,
        includes: vec![(filename.to_string(), Vec::new())],
        included: HashMap::from([(filename.to_string(), 0)]),
        payload_errors: Vec::new(),
    };
    let mut files = Vec::new();
    let mut i = 0;
    while i < run.includes.len() {
        let (name, ctx) = run.includes[i].clone();
        let mut file = FileOut {
            file: name.clone(),
            errors: Vec::new(),
            parsed: Vec::new(),
        };
        let result = match std::fs::read(&name) {
            Err(e) => Err(Abort::Error(os_error(&e, &name), None)),
            Ok(bytes) => {
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                let mut lexed = lexer::lex(universal_newlines(text));
                crossplane_eof(&mut lexed);
                let mut cursor = Cursor {
                    lexed: &lexed,
                    pos: 0,
                    file: &name,
                };
                run.parse_block(&mut file, &mut cursor, &ctx, false, 0)
            }
        };
        match result {
            Ok(parsed) => file.parsed = parsed,
            Err(Abort::Error(message, line)) => run.error(&mut file, message, line),
        }
        files.push(file);
        i += 1;
    }
    render(&run.payload_errors, &files)
}

fn render(payload_errors: &[(String, String, Option<u32>)], files: &[FileOut]) -> String {
    let mut out = String::with_capacity(4096);
    let status = |failed: bool| if failed { "failed" } else { "ok" };
    out.push_str("{\"status\":");
    json_str(&mut out, status(!payload_errors.is_empty()));
    out.push_str(",\"errors\":[");
    for (i, (file, error, line)) in payload_errors.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"file\":");
        json_str(&mut out, file);
        out.push_str(",\"error\":");
        json_str(&mut out, error);
        out.push_str(",\"line\":");
        json_line(&mut out, *line);
        out.push('}');
    }
    out.push_str("],\"config\":[");
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"file\":");
        json_str(&mut out, &f.file);
        out.push_str(",\"status\":");
        json_str(&mut out, status(!f.errors.is_empty()));
        out.push_str(",\"errors\":[");
        for (j, (error, line)) in f.errors.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"error\":");
            json_str(&mut out, error);
            out.push_str(",\"line\":");
            json_line(&mut out, *line);
            out.push('}');
        }
        out.push_str("],\"parsed\":");
        render_block(&mut out, &f.parsed);
        out.push('}');
    }
    out.push_str("]}\n");
    out
}

fn render_block(out: &mut String, stmts: &[Stmt]) {
    out.push('[');
    for (i, s) in stmts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"directive\":");
        json_str(out, &s.directive);
        let _ = write!(out, ",\"line\":{},\"args\":[", s.line);
        for (j, a) in s.args.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_str(out, a);
        }
        out.push(']');
        if let Some(includes) = &s.includes {
            out.push_str(",\"includes\":[");
            for (j, n) in includes.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{n}");
            }
            out.push(']');
        }
        if let Some(block) = &s.block {
            out.push_str(",\"block\":");
            render_block(out, block);
        }
        if let Some(comment) = &s.comment {
            out.push_str(",\"comment\":");
            json_str(out, comment);
        }
        out.push('}');
    }
    out.push(']');
}

fn json_line(out: &mut String, line: Option<u32>) {
    match line {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("null"),
    }
}

/// A JSON string as Python's `json.dumps` writes it with `ensure_ascii=True`.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json_strings() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\nд\u{7f}😀\u{1}");
        assert_eq!(s, r#""a\"b\\c\n\u0434\u007f\ud83d\ude00\u0001""#);
    }

    #[test]
    fn path_join_like_python() {
        assert_eq!(path_join("", "x.conf"), "x.conf");
        assert_eq!(path_join("a", "x.conf"), "a/x.conf");
        assert_eq!(path_join("a/", "/abs"), "/abs");
    }
}
