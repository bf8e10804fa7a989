//! Renderers. A report only renders a value the pipeline produced; it decides nothing.
//!
//! - [`explain`]: the answer of `gwdoctor explain`, as text or JSON.
//! - [`text`]: the pieces every text report is built of (wrapping, styles, the cause card).

pub mod diagnose;
pub mod explain;
pub mod findings;
pub mod logs;
pub mod text;

/// The output formats of the interface (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Html,
    /// crossplane's JSON (`gwdoctor config` only).
    Crossplane,
}
