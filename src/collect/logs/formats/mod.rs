//! Line formats, one module each: where a product's log line is taken apart.
//!
//! - [`nginx_error`]: nginx's error log (`2024/05/02 14:02:11 [error] 812#812: *7 …, client: …`).

pub mod nginx_error;
