//! One module per command: parse its arguments, run the pipeline, pick a renderer.

pub mod config;
pub mod diagnose;
pub mod explain;
pub mod host;
pub mod lab;
pub mod logs;
pub mod probe;
pub mod watch;

use gwdoctor::i18n::Lang;
use gwdoctor::report::Format;
use std::io::Write;

/// Options every command takes (`shared/interface.md`).
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Language of the explanations [default: from LC_ALL / LC_MESSAGES / LANG].
    #[arg(long, global = true, value_enum)]
    pub lang: Option<Lang>,
    /// No colour, even on a terminal (colour is never used when stdout is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
}

impl Common {
    pub fn lang(&self) -> Lang {
        self.lang.unwrap_or_else(Lang::from_env)
    }

    /// Writes a rendered report to stdout; ANSI styles are stripped unless stdout is a terminal
    /// that wants colour.
    pub fn print(&self, rendered: &str) -> Result<(), Failure> {
        let choice = if self.no_color {
            anstream::ColorChoice::Never
        } else {
            anstream::ColorChoice::Auto
        };
        let mut out = anstream::AutoStream::new(std::io::stdout().lock(), choice);
        match out.write_all(rendered.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => Ok(()),
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Failure::Internal(e.into())),
        }
    }
}

/// Why a command could not do its job: the user's input (exit 2) or the tool itself (exit 3).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Internal(anyhow::Error),
}
