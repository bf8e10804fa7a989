//! Line formats, one module each: where a product's log line is taken apart.
//!
//! - [`nginx_error`]: nginx's error log (`2024/05/02 14:02:11 [error] 812#812: *7 …, client: …`).
//! - [`access`]: access logs in any nginx `log_format` (combined, common, custom).
//! - [`json_access`]: JSON-lines access logs (`escape=json` formats, Caddy, Traefik).
//! - [`detect`]: which format a file is in, and the time of a line of each format.

pub mod access;
pub mod detect;
pub mod json_access;
pub mod nginx_error;
