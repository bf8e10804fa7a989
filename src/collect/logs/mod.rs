//! Logs of gateways and app servers: which files, in which format, and what they say.
//!
//! - [`source`]: inputs (paths, globs, directories, rotated series, .gz/.zst).
//! - [`formats`]: one module per log format: nginx error and access logs (any `log_format`),
//!   JSON access logs, and the detection of Apache, PHP-FPM, gunicorn, uWSGI and kernel logs,
//!   whose lines the signature database classifies.
//! - [`scan`]: the parallel block scanner; [`tally`]: what it counts; [`time`]: timestamps.

pub mod formats;
pub mod scan;
pub mod source;
pub mod tally;
pub mod time;
