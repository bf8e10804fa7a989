//! Rules: functions from one collector's facts (or all of them) to findings and checks. Rules
//! judge; collectors only gather and reports only render.
//!
//! - [`logs`]: what the logs prove: causes by count and recency, hidden retries, one failing
//!   upstream among several, the event that came just before the errors began.

pub mod config;
pub mod diagnose;
pub mod host;
pub mod logs;
pub mod probe;
