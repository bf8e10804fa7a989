//! Building blocks of the text reports: 80-column wrapping, a few styles, and the cause card that
//! `explain` and later reports share. Styles are ANSI codes; the caller's output stream strips
//! them when stdout is not a terminal or colour is off.

use crate::catalog::Cause;
use crate::i18n::{label, Lang};
use anstyle::{AnsiColor, Style};
use std::fmt::Write;

pub const WIDTH: usize = 80;

pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();
pub const CAUSE: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
pub const PRODUCT: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Cyan)));
pub const COMMAND: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));

/// `text` in `style`.
pub fn styled(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// Appends `text` wrapped to [`WIDTH`], every line indented by `indent` spaces.
pub fn wrapped(out: &mut String, indent: usize, text: &str) {
    let pad = " ".repeat(indent);
    let options = textwrap::Options::new(WIDTH.saturating_sub(indent).max(20));
    for paragraph in text.trim().split("\n\n") {
        for line in textwrap::wrap(&paragraph.replace('\n', " "), &options) {
            let _ = writeln!(out, "{pad}{line}");
        }
    }
}

/// Appends a table: the `header` line dimmed, then one line per row (what `row` makes of it)
/// for the first `max_rows` rows, then a dimmed `… N more (--format json lists all)` for the
/// rest; every line indented by two spaces. The caller pads the header and the rows alike.
pub fn table<T>(
    out: &mut String,
    header: &str,
    rows: &[T],
    max_rows: usize,
    lang: Lang,
    row: impl Fn(&T) -> String,
) {
    let _ = writeln!(out, "  {}", styled(DIM, header));
    for r in rows.iter().take(max_rows) {
        let _ = writeln!(out, "  {}", row(r));
    }
    if rows.len() > max_rows {
        let more = match lang {
            Lang::En => "more (--format json lists all)",
            Lang::Zh => "个未列出（--format json 列出全部）",
        };
        let _ = writeln!(
            out,
            "  {}",
            styled(DIM, &format!("… {} {more}", rows.len() - max_rows))
        );
    }
}

/// Values a command's placeholders can be filled with, from the evidence at hand.
#[derive(Debug, Default, Clone)]
pub struct Placeholders {
    pub port: Option<String>,
    pub socket: Option<String>,
    pub upstream: Option<String>,
}

impl Placeholders {
    /// From an upstream address as nginx writes it: `127.0.0.1:8000`, `[::1]:3000`, `unix:/run/x.sock`.
    pub fn from_upstream(address: &str) -> Placeholders {
        let mut p = Placeholders {
            upstream: Some(address.to_string()),
            ..Default::default()
        };
        if let Some(path) = address.strip_prefix("unix:") {
            p.socket = Some(path.to_string());
        } else if let Some((_, port)) = address.rsplit_once(':') {
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                p.port = Some(port.to_string());
            }
        }
        p
    }

    /// `cmd` with the placeholders it can fill replaced (whole words in capitals only).
    pub fn fill(&self, cmd: &str) -> String {
        let mut out = cmd.to_string();
        for (name, value) in [
            ("PORT", &self.port),
            ("SOCKET", &self.socket),
            ("UPSTREAM", &self.upstream),
        ] {
            if let Some(value) = value {
                out = replace_word(&out, name, value);
            }
        }
        out
    }
}

fn replace_word(text: &str, word: &str, value: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before_ok = rest[..at].chars().next_back().is_none_or(|c| !is_word(c));
        let after_ok = rest[at + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word(c));
        out.push_str(&rest[..at]);
        out.push_str(if before_ok && after_ok { value } else { word });
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// The one-line heading of a cause: `● id  title  [502, 504]`.
pub fn cause_heading(out: &mut String, cause: &Cause, lang: Lang) {
    let statuses: Vec<String> = cause.statuses.iter().map(u16::to_string).collect();
    let _ = writeln!(
        out,
        "{} {}  {}",
        styled(CAUSE, "●"),
        styled(CAUSE, &cause.id),
        styled(BOLD, cause.title.get(lang)),
    );
    let _ = writeln!(
        out,
        "  {}",
        styled(
            DIM,
            &format!(
                "{}: {} · {}: {}",
                label(lang, "layer"),
                cause.layer.name(),
                label(lang, "statuses"),
                statuses.join(", ")
            )
        ),
    );
}

/// The full card of a cause: what happened, the technical detail, the checks with commands,
/// the fixes with snippets, related ids.
pub fn cause_card(out: &mut String, cause: &Cause, lang: Lang, placeholders: &Placeholders) {
    cause_heading(out, cause, lang);
    let _ = writeln!(out, "\n{}", styled(BOLD, label(lang, "what")));
    wrapped(out, 2, cause.summary.get(lang));
    let _ = writeln!(out, "\n{}", styled(BOLD, label(lang, "technical")));
    wrapped(out, 2, cause.technical.get(lang));
    let _ = writeln!(out, "\n{}", styled(BOLD, label(lang, "check")));
    for (n, check) in cause.checks.iter().enumerate() {
        let text = match lang {
            Lang::En => &check.en,
            Lang::Zh => &check.zh,
        };
        let number = format!("{}. ", n + 1);
        let mut item = String::new();
        wrapped(&mut item, 2 + number.len(), text);
        let _ = write!(out, "  {number}{}", item.trim_start());
        if let Some(cmd) = &check.cmd {
            for line in placeholders.fill(cmd).lines() {
                let _ = writeln!(
                    out,
                    "{}{}",
                    " ".repeat(2 + number.len()),
                    styled(COMMAND, &format!("$ {line}"))
                );
            }
        }
    }
    let _ = writeln!(out, "\n{}", styled(BOLD, label(lang, "fix")));
    for fix in &cause.fixes {
        let text = match lang {
            Lang::En => &fix.en,
            Lang::Zh => &fix.zh,
        };
        let mut item = String::new();
        wrapped(&mut item, 4, text);
        let _ = write!(out, "  • {}", item.trim_start());
        if let Some(snippet) = &fix.snippet {
            if let Some(kind) = &fix.lang {
                let _ = writeln!(out, "    {}", styled(DIM, &format!("# {kind}")));
            }
            for line in snippet.trim_end().lines() {
                let _ = writeln!(out, "    {}", styled(COMMAND, line));
            }
        }
    }
    if !cause.related.is_empty() {
        let _ = writeln!(
            out,
            "\n{}: {}",
            styled(BOLD, label(lang, "related")),
            cause.related.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_whole_words_only() {
        let p = Placeholders::from_upstream("127.0.0.1:8000");
        assert_eq!(
            p.fill("ss -ltnp 'sport = :PORT' # PORTS SOCKET"),
            "ss -ltnp 'sport = :8000' # PORTS SOCKET"
        );
        let p = Placeholders::from_upstream("unix:/run/php/php8.2-fpm.sock");
        assert_eq!(p.fill("ls -l SOCKET"), "ls -l /run/php/php8.2-fpm.sock");
        assert_eq!(
            Placeholders::from_upstream("[::1]:3000").port.as_deref(),
            Some("3000")
        );
    }
}
