//! Logs of gateways and app servers.
//!
//! - [`formats`]: one module per log format, each parsing a line's envelope (time, level, pid,
//!   the request's context) so that signatures need only match the message.

pub mod formats;
