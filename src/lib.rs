//! gwdoctor: finds out why a website answers 502 Bad Gateway (and 504, 503) and says how to fix it.
//!
//! The crate follows one pipeline (see `docs/ARCHITECTURE.md`):
//!
//! ```text
//! collectors (evidence) ──▶ findings (rules over evidence) ──▶ reports (renderers)
//!          ▲
//!   knowledge: the cause catalog and the signature database (data/, embedded)
//! ```
//!
//! - [`catalog`]: the cause catalog and the signature database, loaded from embedded data files.
//! - [`collect`]: evidence collectors; today the log-line envelopes (`collect::logs::formats`).
//! - [`report`]: renderers that turn a result into text or JSON.
//! - [`i18n`]: the two languages every user-facing text exists in.

pub mod catalog;
pub mod collect;
pub mod diagnose;
pub mod explain;
pub mod findings;
pub mod i18n;
pub mod input;
pub mod lab;
pub mod redact;
pub mod report;
pub mod rules;
pub mod watch;
