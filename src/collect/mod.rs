//! Evidence collectors. A collector gathers facts and says where each came from; it does not
//! judge (that is the rules' job).
//!
//! - [`logs`]: log files of gateways and app servers, their line formats.

pub mod config;
pub mod host;
pub mod logs;
pub mod probe;
