//! What a scenario is: a named failure, the cause id it reproduces, what it needs from the
//! machine, how to set it up on a [`Bench`], what to send and what must be seen.

use super::bench::Bench;
use super::client::LabRequest;
use super::nginx::NginxParts;
use std::time::Duration;

/// Something a scenario needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A network namespace of the lab's own (root, iproute2).
    Netns,
    /// iptables inside that namespace.
    Iptables,
    PhpFpm,
    Gunicorn,
    Uwsgi,
    /// Root, for a worker user that differs from the socket's owner.
    Root,
}

/// One step of a scenario's script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these requests one after the other.
    Sequential(Vec<LabRequest>),
    /// Send these requests at once, each on its own connection.
    Parallel(Vec<LabRequest>),
    /// Wait.
    Pause(Duration),
    /// Rewrite nginx's configuration with these parts and ask it to reload (SIGHUP).
    Reload(NginxParts),
}

/// What a run must show for the scenario to have reproduced its failure.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Outcome labels (`502`, `504`, `200`, `HTTP/0.9`, `refused`) that must each appear at least once.
    pub outcomes: Vec<&'static str>,
    /// Outcome labels that must not appear.
    pub never: Vec<&'static str>,
    /// Cause ids the logs (nginx's error log, PHP-FPM's, the app server's) must name, as
    /// classified by the signature database.
    pub log_causes: Vec<&'static str>,
    /// A product the signature database must recognise in a response body (an error page of
    /// another hop passed through).
    pub page_product: Option<&'static str>,
    /// The gateway must have failed to start.
    pub gateway_down: bool,
}

/// How a scenario is set up: the nginx configuration parts, whether nginx runs in the bench's
/// namespace, the script, and what must be seen.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub nginx: NginxParts,
    pub gateway_in_netns: bool,
    /// The client connects from these source ports (127.0.0.1:N, N+1 …) instead of ephemeral ones.
    pub client_ports: Option<u16>,
    pub steps: Vec<Step>,
    pub expect: Expect,
}

/// One reproducible failure.
pub struct Scenario {
    pub name: &'static str,
    /// The cause id of `shared/causes.md` it reproduces (`none` for the healthy control).
    pub cause: &'static str,
    pub summary: &'static str,
    pub needs: &'static [Need],
    pub setup: fn(&mut Bench) -> anyhow::Result<Plan>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("cause", &self.cause)
            .finish()
    }
}

/// Why a need cannot be met on this machine, if it cannot.
pub fn unmet(need: Need) -> Option<String> {
    use super::process::{have_program, is_root};
    match need {
        Need::Netns => super::netns::unavailable_reason(),
        Need::Iptables => {
            (!have_program("iptables")).then(|| "iptables is not installed".to_string())
        }
        Need::PhpFpm => super::fpm::binary()
            .is_none()
            .then(|| "PHP-FPM is not installed".to_string()),
        Need::Gunicorn => {
            super::appserver::unavailable_reason(super::appserver::Kind::Gunicorn { timeout: 1 })
        }
        Need::Uwsgi => super::appserver::unavailable_reason(super::appserver::Kind::Uwsgi {
            buffer_size: 4096,
        }),
        Need::Root => {
            (!is_root()).then(|| "needs root (nginx workers must run as another user)".to_string())
        }
    }
}
