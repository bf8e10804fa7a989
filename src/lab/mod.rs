//! The fault lab: real nginx (and PHP-FPM, gunicorn, uWSGI) in front of misbehaving upstreams on
//! loopback, one scenario per root cause. It is a user feature (`gwdoctor lab`) and the
//! project's test bed.
//!
//! - [`upstream`]: misbehaving upstreams (tokio), [`tls`]: the lab's certificates,
//!   [`dns`]: a tiny DNS responder for the resolver cases.
//! - [`nginx`], [`fpm`], [`appserver`]: real servers as child processes, stopped by pid
//!   ([`process`]); [`netns`]: network namespaces for the gateway-in-a-container and firewall cases.
//! - [`scenario`]: what a scenario is; [`scenarios`]: all of them; [`bench`]: one run's
//!   resources; [`runner`]: runs a scenario and checks what it showed; [`client`]: the raw HTTP
//!   client that sends the requests.

pub mod appserver;
pub mod bench;
pub mod client;
pub mod dns;
pub mod fpm;
pub mod netns;
pub mod nginx;
pub mod process;
pub mod runner;
pub mod scenario;
pub mod scenarios;
pub mod tls;
pub mod upstream;
