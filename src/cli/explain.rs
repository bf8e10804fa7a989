//! `gwdoctor explain TEXT | CAUSE-ID | -` and `--file PATH`.

use super::{Common, Failure};
use gwdoctor::explain::explain;
use gwdoctor::input::InputText;
use gwdoctor::report::{self, Format};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// A log line, an error page's text, a cause id, or `-` to read standard input. Several
    /// words are joined with spaces, so quoting the line is optional.
    #[arg(
        value_name = "TEXT",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    text: Vec<String>,
    /// Read the text from this file.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// Exit status: 0 when the input named a cause, 1 when nothing in it was recognised.
pub fn run(common: &Common, args: ExplainArgs) -> Result<u8, Failure> {
    let input = match (&args.file, args.text.as_slice()) {
        (Some(path), _) => read(path)?,
        (None, [dash]) if dash == "-" => read(&PathBuf::from("-"))?,
        (None, words) => InputText::from_bytes(words.join(" ").into_bytes()),
    };
    if input.text.trim().is_empty() {
        return Err(Failure::Usage(
            "explain: the input is empty; paste a log line, an error page or a cause id".into(),
        ));
    }
    let explanation = explain(&input);
    let lang = common.lang();
    let rendered = match common.format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&report::explain::json(&explanation, lang))
                .map_err(|e| Failure::Internal(e.into()))?;
            s.push('\n');
            s
        }
        Format::Text => report::explain::text(&explanation, lang),
        Format::Markdown | Format::Html | Format::Crossplane => {
            return Err(Failure::Usage(
                "explain: --format takes text or json".into(),
            ));
        }
    };
    common.print(&rendered)?;
    Ok(if explanation.recognised() { 0 } else { 1 })
}

fn read(path: &std::path::Path) -> Result<InputText, Failure> {
    InputText::read(path).map_err(|e| Failure::Usage(e.to_string()))
}
