//! The nginx configuration lexer: bytes → words, `{`, `}` and `;`, each with its line.
//!
//! It reproduces crossplane's lexer exactly (so that `--format crossplane` prints what
//! `crossplane parse` prints), which is also what nginx reads for every configuration nginx
//! accepts:
//!
//! - Whitespace separates words; `{`, `}` and `;` are tokens of their own even inside a word.
//! - A `#` at the start of a word begins a comment that runs to the end of the line (a
//!   [`Kind::Comment`] token: the parser skips them; crossplane prints those between arguments).
//! - A quote at the start of a word begins a quoted word that runs to the same quote; inside it
//!   `\"` (or `\'` in single quotes) stands for the quote. A quote inside a word is an ordinary
//!   character (`right-"quote"`). A backslash always escapes the next character, which is kept
//!   with its backslash (`\;` does not end a directive; nginx decodes `\t`, `\n`, `\\` later).
//! - `${name}` keeps its braces inside the word.
//! - The body of a `*_by_lua_block` directive is one quoted word (Lua code has braces and
//!   quotes of its own), followed by a `;`; `set_by_lua_block` takes one word before it.
//!
//! Like Python's `str.isspace` (crossplane's rule), Unicode spaces such as U+00A0 separate
//! words too; nginx itself would read a no-break space as part of a word, so the model reports
//! such lines (see [`Lexed::odd_spaces`]).
//!
//! Errors do not stop the lexer at once: an unbalanced `}` or a missing `}` at the end is
//! recorded with the index of the token where crossplane raises it ([`Lexed::fatal`]), because
//! crossplane hands out the tokens before that point.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Word,
    /// `#…` to the end of the line (the text keeps the `#`).
    Comment,
    Open,
    Close,
    Semi,
}

/// One token: its kind, the line it starts on, whether it was quoted, and its text.
#[derive(Debug, Clone)]
pub struct Token {
    pub kind: Kind,
    pub line: u32,
    pub quoted: bool,
    text: Text,
}

#[derive(Debug, Clone)]
enum Text {
    /// A byte range of the source (most tokens).
    Span(u32, u32),
    /// Text that is not a plain slice of the source (a quoted word with an escaped quote).
    Owned(Box<str>),
}

/// Why lexing could not finish cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FatalKind {
    /// A `}` with no open block.
    UnexpectedClose,
    /// The file ended inside a block.
    UnexpectedEof,
    /// The file ended inside a quoted word.
    UnterminatedQuote,
    /// A `*_by_lua_block` not followed by `{`.
    LuaBlockStart,
    /// The file ended inside a `*_by_lua_block` body.
    UnterminatedLuaBlock,
}

/// A lexing error and where crossplane would raise it.
#[derive(Debug, Clone)]
pub struct Fatal {
    pub kind: FatalKind,
    pub line: u32,
    /// Tokens before this index are delivered before the error.
    pub at_token: usize,
}

impl Fatal {
    /// nginx's wording of the error.
    pub fn message(&self) -> &'static str {
        match self.kind {
            FatalKind::UnexpectedClose => "unexpected \"}\"",
            FatalKind::UnexpectedEof => "unexpected end of file, expecting \"}\"",
            FatalKind::UnterminatedQuote => "unexpected end of file inside a quoted string",
            FatalKind::LuaBlockStart => "expected { to start Lua block",
            FatalKind::UnterminatedLuaBlock => "unexpected end of file inside a Lua block",
        }
    }
}

/// The tokens of one file.
#[derive(Debug)]
pub struct Lexed {
    pub source: String,
    pub tokens: Vec<Token>,
    pub fatal: Option<Fatal>,
    /// Lines where a non-ASCII space (U+00A0 …) separated words: nginx reads it as part of a word.
    pub odd_spaces: Vec<u32>,
    /// How many statements the tokens hold (their `;` and `{`), so that the parser's table
    /// is made the right size at once.
    pub statements: usize,
    /// How many words they hold (names and arguments, quoted or not), for the same reason.
    pub words: usize,
}

impl Lexed {
    /// The token's byte range in the source, when its text is one.
    pub fn span(&self, token: &Token) -> Option<(u32, u32)> {
        match token.text {
            Text::Span(a, b) => Some((a, b)),
            Text::Owned(_) => None,
        }
    }

    pub fn text<'a>(&'a self, token: &'a Token) -> &'a str {
        match &token.text {
            Text::Span(a, b) => &self.source[*a as usize..*b as usize],
            Text::Owned(s) => s,
        }
    }
}

/// The directives whose body is Lua code, lexed as one word.
pub const LUA_BLOCKS: &[&str] = &[
    "access_by_lua_block",
    "balancer_by_lua_block",
    "body_filter_by_lua_block",
    "content_by_lua_block",
    "header_filter_by_lua_block",
    "init_by_lua_block",
    "init_worker_by_lua_block",
    "log_by_lua_block",
    "rewrite_by_lua_block",
    "set_by_lua_block",
    "ssl_certificate_by_lua_block",
    "ssl_session_fetch_by_lua_block",
    "ssl_session_store_by_lua_block",
];

/// One character as crossplane sees it: a backslash and the character after it form one unit.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    /// The line this unit belongs to, counted after it (a newline unit carries the next line).
    line: u32,
}

struct Units<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
    pushed: Option<Unit>,
}

impl<'a> Units<'a> {
    fn next(&mut self) -> Option<Unit> {
        if let Some(u) = self.pushed.take() {
            return Some(u);
        }
        let bytes = self.src.as_bytes();
        if self.pos >= bytes.len() {
            return None;
        }
        let start = self.pos;
        let mut end = start + char_len(bytes[start]);
        if bytes[start] == b'\\' {
            if end >= bytes.len() {
                // A trailing backslash: crossplane's escape iterator stops without it.
                self.pos = bytes.len();
                return None;
            }
            end += char_len(bytes[end]);
        }
        let end = end.min(bytes.len());
        self.pos = end;
        if bytes[end - 1] == b'\n' {
            self.line += 1;
        }
        Some(Unit {
            start,
            end,
            line: self.line,
        })
    }
}

/// A byte that, inside an unquoted word, is simply appended: ASCII, not a space, not one of
/// `{ } ; " ' \\ $ #` (`$` may start `${`, which has its own rule).
fn is_plain(b: u8) -> bool {
    // A table: this runs for nearly every byte of a configuration.
    static PLAIN: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = b' ' + 1;
        while b < 0x7f {
            table[b as usize] =
                !matches!(b, b'{' | b'}' | b';' | b'"' | b'\'' | b'\\' | b'$' | b'#');
            b += 1;
        }
        table
    };
    PLAIN[usize::from(b)]
}

fn char_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xff => 4,
        _ => 1,
    }
}

/// The token being built: a span of the source, or owned text once it stops being one.
#[derive(Default)]
struct Building {
    start: usize,
    end: usize,
    owned: Option<String>,
    line: u32,
}

impl Building {
    fn is_empty(&self) -> bool {
        self.owned
            .as_ref()
            .map_or(self.start == self.end, |s| s.is_empty())
    }

    fn push(&mut self, src: &str, u: Unit) {
        self.push_text(src, u.start, u.end);
    }

    fn push_text(&mut self, src: &str, start: usize, end: usize) {
        match &mut self.owned {
            Some(s) => s.push_str(&src[start..end]),
            None if self.start == self.end => {
                self.start = start;
                self.end = end;
            }
            None if self.end == start => self.end = end,
            None => {
                let mut s = src[self.start..self.end].to_string();
                s.push_str(&src[start..end]);
                self.owned = Some(s);
            }
        }
    }

    fn push_str(&mut self, src: &str, text: &str) {
        let mut s = self
            .owned
            .take()
            .unwrap_or_else(|| src[self.start..self.end].to_string());
        s.push_str(text);
        self.owned = Some(s);
    }

    fn last_byte(&self, src: &str) -> Option<u8> {
        match &self.owned {
            Some(s) => s.as_bytes().last().copied(),
            None if self.start == self.end => None,
            None => Some(src.as_bytes()[self.end - 1]),
        }
    }

    fn as_str<'a>(&'a self, src: &'a str) -> &'a str {
        match &self.owned {
            Some(s) => s,
            None => &src[self.start..self.end],
        }
    }

    fn take(&mut self) -> Text {
        let text = match self.owned.take() {
            Some(s) => Text::Owned(s.into_boxed_str()),
            None => Text::Span(self.start as u32, self.end as u32),
        };
        self.start = 0;
        self.end = 0;
        text
    }
}

/// Why the unit stream ended early.
enum Stop {
    Eof,
    Fatal(FatalKind, u32),
}

struct Lexer<'a> {
    src: &'a str,
    units: Units<'a>,
    tokens: Vec<Token>,
    odd_spaces: Vec<u32>,
    next_is_directive: bool,
    /// Whether [`Lexer::simple_tokens`] reads what it can (off only to test it against the
    /// rules alone).
    simple: bool,
    /// Braces open so far, counted as tokens are made (crossplane balances them after).
    depth: i64,
    /// The first `}` too many: its token's index and line.
    extra_close: Option<(usize, u32)>,
    /// Statements so far (their `;` and `{`).
    statements: usize,
    /// Words so far (every token but comments and the `;`, `{` and `}` that are not quoted).
    words: usize,
}

impl<'a> Lexer<'a> {
    fn unit_is(&self, u: Unit, c: u8) -> bool {
        u.end - u.start == 1 && self.src.as_bytes()[u.start] == c
    }

    /// Python's `str.isspace` for one unit (an escape pair is never a space).
    #[inline]
    fn is_space(&mut self, u: Unit) -> bool {
        if u.end - u.start == 1 {
            return matches!(
                self.src.as_bytes()[u.start],
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f
            );
        }
        self.is_wide_space(u)
    }

    /// [`Lexer::is_space`] for a unit of several bytes (rare: an escape or a non-ASCII
    /// character), noting the lines where a Unicode space separates words.
    #[cold]
    #[inline(never)]
    fn is_wide_space(&mut self, u: Unit) -> bool {
        let bytes = &self.src.as_bytes()[u.start..u.end];
        if bytes[0] == b'\\' {
            return false;
        }
        let space = self.src[u.start..u.end]
            .chars()
            .next()
            .is_some_and(char::is_whitespace);
        if space && self.odd_spaces.last() != Some(&u.line) {
            self.odd_spaces.push(u.line);
        }
        space
    }

    #[inline(always)]
    fn emit(&mut self, kind: Kind, line: u32, quoted: bool, text: Text) {
        if !quoted {
            match kind {
                Kind::Open => {
                    self.depth += 1;
                    self.statements += 1;
                }
                Kind::Close => {
                    self.depth -= 1;
                    if self.depth < 0 && self.extra_close.is_none() {
                        self.extra_close = Some((self.tokens.len(), line));
                    }
                }
                Kind::Semi => self.statements += 1,
                Kind::Word => self.words += 1,
                Kind::Comment => {}
            }
        } else {
            self.words += 1;
        }
        self.tokens.push(Token {
            kind,
            line,
            quoted,
            text,
        });
    }

    /// An unquoted token that is the source's bytes `start..end`.
    fn emit_span(&mut self, kind: Kind, line: u32, start: usize, end: usize) {
        self.emit(kind, line, false, Text::Span(start as u32, end as u32));
    }

    fn next(&mut self) -> Result<Unit, Stop> {
        self.units.next().ok_or(Stop::Eof)
    }

    fn run(&mut self) -> Result<(), Stop> {
        let mut token = Building::default();
        loop {
            if self.simple && token.is_empty() && self.units.pushed.is_none() {
                self.simple_tokens();
            }
            let Some(mut u) = self.units.next() else {
                break;
            };
            if self.is_space(u) {
                if !token.is_empty() {
                    let lua = self.lua_kind(&token);
                    let line = token.line;
                    let text = token.take();
                    token.owned = None;
                    self.emit(Kind::Word, line, false, text);
                    match lua {
                        Some(set) => self.lua_block(set)?,
                        None => self.next_is_directive = false,
                    }
                }
                // Fast path: runs of ASCII blanks and line breaks.
                let bytes = self.src.as_bytes();
                if self.units.pushed.is_none() {
                    let mut pos = self.units.pos;
                    while pos < bytes.len() && matches!(bytes[pos], b' ' | b'\t' | b'\r' | b'\n') {
                        if bytes[pos] == b'\n' {
                            self.units.line += 1;
                        }
                        pos += 1;
                    }
                    self.units.pos = pos;
                }
                while self.is_space(u) {
                    u = self.next()?;
                }
            }

            // Fast path: an ordinary byte (most words start with one) is simply appended,
            // with the ordinary bytes that follow it; none of the rules below apply to it.
            if u.end - u.start == 1 && is_plain(self.src.as_bytes()[u.start]) {
                if token.is_empty() {
                    token.line = u.line;
                }
                token.push(self.src, u);
                self.take_plain_run(&mut token);
                continue;
            }

            if token.is_empty() && self.unit_is(u, b'#') {
                let (start, line) = (u.start, u.line);
                while !self.src.as_bytes()[..u.end].ends_with(b"\n") {
                    u = self.next()?;
                }
                self.emit_span(Kind::Comment, line, start, u.start);
                continue;
            }

            if token.is_empty() {
                token.line = u.line;
            }

            if token.last_byte(self.src) == Some(b'$') && self.unit_is(u, b'{') {
                self.next_is_directive = false;
                while token.last_byte(self.src) != Some(b'}') && !self.is_space(u) {
                    token.push(self.src, u);
                    u = self.next()?;
                }
            }

            if self.unit_is(u, b'"') || self.unit_is(u, b'\'') {
                if !token.is_empty() {
                    token.push(self.src, u);
                    continue;
                }
                let quote = self.src.as_bytes()[u.start];
                let quote_line = u.line;
                u = self
                    .next()
                    .map_err(|_| Stop::Fatal(FatalKind::UnterminatedQuote, quote_line))?;
                // An empty quoted word is still a word: mark the span's position.
                token.start = u.start;
                token.end = u.start;
                while !self.unit_is(u, quote) {
                    let bytes = &self.src.as_bytes()[u.start..u.end];
                    if bytes.len() == 2 && bytes[0] == b'\\' && bytes[1] == quote {
                        let q = if quote == b'"' { "\"" } else { "'" };
                        token.push_str(self.src, q);
                    } else {
                        token.push(self.src, u);
                    }
                    u = self
                        .next()
                        .map_err(|_| Stop::Fatal(FatalKind::UnterminatedQuote, quote_line))?;
                }
                let lua = self.lua_kind(&token);
                let line = token.line;
                let text = token.take();
                self.emit(Kind::Word, line, true, text);
                match lua {
                    Some(set) => self.lua_block(set)?,
                    None => self.next_is_directive = false,
                }
                continue;
            }

            let special = if self.unit_is(u, b'{') {
                Some(Kind::Open)
            } else if self.unit_is(u, b'}') {
                Some(Kind::Close)
            } else if self.unit_is(u, b';') {
                Some(Kind::Semi)
            } else {
                None
            };
            if let Some(kind) = special {
                if !token.is_empty() {
                    let line = token.line;
                    let text = token.take();
                    self.emit(Kind::Word, line, false, text);
                }
                self.emit_span(kind, u.line, u.start, u.end);
                self.next_is_directive = true;
                continue;
            }

            token.push(self.src, u);
            self.take_plain_run(&mut token);
        }
        // Like crossplane, a word still being built at the end of the file is dropped: a
        // configuration cannot end in the middle of a directive anyway.
        Ok(())
    }

    /// Reads the tokens that need none of the rules above, straight from the bytes: blanks,
    /// words of ordinary bytes ending at a blank or at `;`, `{`, `}`, those three, and
    /// comments. Most of a configuration is such tokens. It stops, leaving the position at
    /// the start of the token, at anything else (quotes, escapes, `${`, non-ASCII, the end of
    /// the file, a Lua block's name), for [`Lexer::run`]'s rules to read.
    fn simple_tokens(&mut self) {
        let bytes = self.src.as_bytes();
        let len = bytes.len();
        let mut pos = self.units.pos;
        let mut line = self.units.line;
        while pos < len {
            match bytes[pos] {
                b' ' => {
                    // Indentation: runs of spaces.
                    pos += 1;
                    while bytes.get(pos) == Some(&b' ') {
                        pos += 1;
                    }
                }
                b'\n' => {
                    line += 1;
                    pos += 1;
                }
                b'\t' | b'\r' => pos += 1,
                b @ (b';' | b'{' | b'}') => {
                    let kind = match b {
                        b';' => Kind::Semi,
                        b'{' => Kind::Open,
                        _ => Kind::Close,
                    };
                    self.emit_span(kind, line, pos, pos + 1);
                    self.next_is_directive = true;
                    pos += 1;
                }
                b'#' => {
                    // To the end of the line, unless an escaped line break ends it.
                    let Some(nl) = memchr::memchr(b'\n', &bytes[pos..]).map(|i| pos + i) else {
                        break;
                    };
                    if bytes[nl - 1] == b'\\' {
                        break;
                    }
                    self.emit_span(Kind::Comment, line, pos, nl);
                    line += 1;
                    pos = nl + 1;
                }
                b if is_plain(b) || (b == b'$' && bytes.get(pos + 1) != Some(&b'{')) => {
                    // A word of ordinary bytes; `$` too, unless it starts `${`.
                    let start = pos;
                    pos += 1;
                    loop {
                        pos += bytes[pos..]
                            .iter()
                            .position(|&b| !is_plain(b))
                            .unwrap_or(len - pos);
                        if bytes.get(pos) == Some(&b'$') && bytes.get(pos + 1) != Some(&b'{') {
                            pos += 1;
                        } else {
                            break;
                        }
                    }
                    let blank = match bytes.get(pos) {
                        Some(b' ' | b'\t' | b'\r' | b'\n') => true,
                        Some(b';' | b'{' | b'}') => false,
                        _ => {
                            pos = start;
                            break;
                        }
                    };
                    if blank
                        && self.next_is_directive
                        && self.src[start..pos].ends_with("_by_lua_block")
                    {
                        pos = start;
                        break;
                    }
                    self.emit_span(Kind::Word, line, start, pos);
                    if blank {
                        self.next_is_directive = false;
                    }
                }
                _ => break,
            }
        }
        self.units.pos = pos;
        self.units.line = line;
    }

    /// Appends the ordinary bytes that follow (ASCII, not space, not special) all at once:
    /// one by one, each would only be appended.
    #[inline]
    fn take_plain_run(&mut self, token: &mut Building) {
        let bytes = self.src.as_bytes();
        let start = self.units.pos;
        let mut end = start;
        while end < bytes.len() && is_plain(bytes[end]) {
            end += 1;
        }
        if end > start && self.units.pushed.is_none() {
            token.push_text(self.src, start, end);
            self.units.pos = end;
        }
    }

    /// Whether the word just read is a directive whose body is Lua code: `Some(true)` for
    /// `set_by_lua_block` (which takes one word before the body), `Some(false)` for the others.
    fn lua_kind(&self, token: &Building) -> Option<bool> {
        if !self.next_is_directive {
            return None;
        }
        let name = token.as_str(self.src);
        // Checked without allocating: this runs for the first word of every directive.
        (name.ends_with("_by_lua_block") && LUA_BLOCKS.contains(&name))
            .then(|| name == "set_by_lua_block")
    }

    /// The body of a `*_by_lua_block`: one quoted word up to the matching `}`, then `;`
    /// (`set`: `set_by_lua_block`, which takes one word before the body).
    fn lua_block(&mut self, set: bool) -> Result<(), Stop> {
        if set {
            let mut arg = Building::default();
            loop {
                let mut u = self.next()?;
                if self.is_space(u) {
                    if !arg.is_empty() {
                        let text = arg.take();
                        self.emit(Kind::Word, u.line, false, text);
                        break;
                    }
                    while self.is_space(u) {
                        u = self.next()?;
                    }
                }
                arg.push(self.src, u);
            }
        }
        let open = loop {
            let u = self.next()?;
            if !self.is_space(u) {
                break u;
            }
        };
        if !self.unit_is(open, b'{') {
            return Err(Stop::Fatal(FatalKind::LuaBlockStart, open.line));
        }
        let start_line = open.line;
        let eof = |_| Stop::Fatal(FatalKind::UnterminatedLuaBlock, start_line);
        let mut depth = 1usize;
        let body_start = open.end;
        loop {
            let mut u = self.next().map_err(eof)?;
            if self.unit_is(u, b'-') {
                let after = self.next().map_err(eof)?;
                if self.unit_is(after, b'-') {
                    u = after;
                    while !self.unit_is(u, b'\n') {
                        u = self.next().map_err(eof)?;
                    }
                } else {
                    self.units.pushed = Some(after);
                }
            } else if self.unit_is(u, b'{') {
                depth += 1;
            } else if self.unit_is(u, b'}') {
                depth -= 1;
            } else if self.unit_is(u, b'"') || self.unit_is(u, b'\'') {
                let quote = self.src.as_bytes()[u.start];
                u = self.next().map_err(eof)?;
                while !self.unit_is(u, quote) {
                    u = self.next().map_err(eof)?;
                }
            }
            if depth == 0 {
                let text = Text::Span(body_start as u32, u.start as u32);
                self.emit(Kind::Word, u.line, true, text);
                self.emit_span(Kind::Semi, u.line, u.start, u.start);
                self.next_is_directive = true;
                return Ok(());
            }
        }
    }
}

/// Lexes one file's text.
pub fn lex(source: String) -> Lexed {
    lex_into(source, Vec::new())
}

/// Lexes one file's text into a (cleared) token buffer, reusing its memory.
pub fn lex_into(source: String, buffer: Vec<Token>) -> Lexed {
    lex_with(source, buffer, true)
}

fn lex_with(source: String, mut buffer: Vec<Token>, simple: bool) -> Lexed {
    buffer.clear();
    buffer.reserve(source.len() / 6);
    let mut lexer = Lexer {
        src: &source,
        units: Units {
            src: &source,
            pos: 0,
            line: 1,
            pushed: None,
        },
        tokens: buffer,
        odd_spaces: Vec::new(),
        next_is_directive: true,
        simple,
        depth: 0,
        extra_close: None,
        statements: 0,
        words: 0,
    };
    let stop = lexer.run().err();
    let Lexer {
        tokens,
        odd_spaces,
        depth,
        extra_close,
        statements,
        words,
        ..
    } = lexer;
    // Braces balanced the way crossplane does: the first `}` too many, else a missing `}` at
    // the end (after a lexing error, the tokens read so far are what there is).
    let fatal = match (extra_close, stop) {
        (Some((at_token, line)), _) => Some(Fatal {
            kind: FatalKind::UnexpectedClose,
            line,
            at_token,
        }),
        (None, Some(Stop::Fatal(kind, line))) => Some(Fatal {
            kind,
            line,
            at_token: tokens.len(),
        }),
        _ if depth > 0 => Some(Fatal {
            kind: FatalKind::UnexpectedEof,
            line: tokens.last().map_or(1, |t| t.line),
            at_token: tokens.len(),
        }),
        _ => None,
    };
    Lexed {
        source,
        tokens,
        fatal,
        odd_spaces,
        statements,
        words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<(String, u32, bool)> {
        let lexed = lex(src.to_string());
        assert!(lexed.fatal.is_none(), "{:?}", lexed.fatal);
        lexed
            .tokens
            .iter()
            .filter(|t| t.kind != Kind::Comment)
            .map(|t| (lexed.text(t).to_string(), t.line, t.quoted))
            .collect()
    }

    fn texts(src: &str) -> Vec<String> {
        words(src).into_iter().map(|w| w.0).collect()
    }

    #[test]
    fn quotes_escapes_and_variables() {
        assert_eq!(
            texts(r#""outer-quote" "left"-quote right-"quote" inner"-"quote;"#),
            [
                "outer-quote",
                "left",
                "-quote",
                "right-\"quote\"",
                "inner\"-\"quote",
                ";"
            ]
        );
        assert_eq!(
            texts(r#"a "x\"y" 'p\'q' "p\'q" b\;c;"#),
            ["a", "x\"y", "p'q", "p\\'q", "b\\;c", ";"]
        );
        // crossplane keeps what follows `${name}` in the same word, up to whitespace.
        assert_eq!(texts("set $a ${b} c;"), ["set", "$a", "${b} c", ";"]);
        assert_eq!(texts("a \"\" b;"), ["a", "", "b", ";"]);
    }

    #[test]
    fn comments_lines_and_braces() {
        let w = words("# top\nhttp { # c\n  server_name a.b; }\n");
        assert_eq!(
            w,
            [
                ("http".into(), 2, false),
                ("{".into(), 2, false),
                ("server_name".into(), 3, false),
                ("a.b".into(), 3, false),
                (";".into(), 3, false),
                ("}".into(), 3, false),
            ]
        );
        assert_eq!(texts("a\"#b\" #c\n;"), ["a\"#b\"", ";"]);
    }

    #[test]
    fn lua_blocks_are_one_word() {
        let src = "content_by_lua_block {\n  local t = { a = \"}\" } -- }\n  ngx.say(t)\n}\nx y;";
        let w = words(src);
        assert_eq!(w[0].0, "content_by_lua_block");
        assert_eq!(w[1].0, "\n  local t = { a = \"}\" } -- }\n  ngx.say(t)\n");
        assert!(w[1].2);
        assert_eq!(w[2].0, "");
        assert_eq!(&w[3].0, "x");
        let w = texts("set_by_lua_block $res { return 1 }");
        assert_eq!(w, ["set_by_lua_block", "$res", " return 1 ", ""]);
        // As an argument, the name is an ordinary word.
        assert_eq!(
            texts("server_name content_by_lua_block ;"),
            ["server_name", "content_by_lua_block", ";"]
        );
    }

    #[test]
    fn errors_name_their_line() {
        let l = lex("http {\n}\n}\n".into());
        let f = l.fatal.unwrap();
        assert_eq!(
            (f.kind, f.line, f.at_token),
            (FatalKind::UnexpectedClose, 3, 3)
        );
        let l = lex("http {\n server {\n".into());
        assert_eq!(l.fatal.unwrap().kind, FatalKind::UnexpectedEof);
        let l = lex("a \"b;\n".into());
        assert_eq!(l.fatal.unwrap().kind, FatalKind::UnterminatedQuote);
    }

    /// One token as (kind, line, quoted, text).
    type Seen = (Kind, u32, bool, String);

    /// Every token, and how lexing ended (kind, line, token index).
    fn all(lexed: &Lexed) -> (Vec<Seen>, Option<(FatalKind, u32, usize)>) {
        let tokens = lexed
            .tokens
            .iter()
            .map(|t| (t.kind, t.line, t.quoted, lexed.text(t).to_string()))
            .collect();
        let fatal = lexed
            .fatal
            .as_ref()
            .map(|f| (f.kind.clone(), f.line, f.at_token));
        (tokens, fatal)
    }

    #[test]
    fn simple_tokens_read_what_the_rules_read() {
        // Random texts made of the pieces the rules care about, lexed with and without the
        // shortcut for simple tokens.
        const PIECES: &[&str] = &[
            "proxy_pass",
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            ";",
            "{",
            "}",
            "#c",
            "# x;{}\n",
            "$host",
            "${a}",
            "$",
            "\"q\"",
            "'s'",
            "\"a\\\"b\"",
            "\\",
            "\\\n",
            "\\;",
            "x\"y",
            "#",
            "a#b",
            "content_by_lua_block",
            "set_by_lua_block",
            "x_by_lua_block",
            " { a = \"}\" } ",
            "-- }",
            "\u{a0}",
            "é",
            "\u{0b}",
            "server",
            "127.0.0.1:80",
            "$a$b",
            "${x",
            "'",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let n = (next() % 24) as usize;
            let text: String = (0..n)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            let fast = lex_with(text.clone(), Vec::new(), true);
            let slow = lex_with(text.clone(), Vec::new(), false);
            assert_eq!(all(&fast), all(&slow), "{text:?}");
            assert_eq!(fast.odd_spaces, slow.odd_spaces, "{text:?}");
            // The count the parser sizes its words by: names and arguments, quoted or not.
            let counts = |l: &Lexed| (l.statements, l.words);
            let counted = fast
                .tokens
                .iter()
                .filter(|t| t.quoted || t.kind == Kind::Word);
            assert_eq!(counts(&fast), counts(&slow), "{text:?}");
            assert_eq!(fast.words, counted.count(), "{text:?}");
        }
    }

    #[test]
    fn unicode_spaces_split_words_and_are_noted() {
        let l = lex("proxy_pass\u{a0}http://a;\n".into());
        assert_eq!(l.tokens.len(), 3);
        assert_eq!(l.odd_spaces, [1]);
    }
}
