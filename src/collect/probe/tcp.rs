//! The TCP connect of an exchange: a deadline, and every failure named with its errno.
//!
//! What a failed connect tells, from the client's side:
//! - **refused** (`ECONNREFUSED`, 111): the host answered the SYN with RST: the machine is up,
//!   nothing listens on that port (or a firewall rejects with `tcp-reset`).
//! - **timeout**: no answer to the SYN at all: a firewall drops it, or the host is down.
//! - **unreachable** (`EHOSTUNREACH` 113, `ENETUNREACH` 101): a router or the local stack says
//!   there is no route (often an ICMP admin-prohibited reject).

use super::{Failure, FailureKind, Phase};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connects to `address` before `deadline`.
pub async fn connect(address: SocketAddr, deadline: Instant) -> Result<TcpStream, Failure> {
    let started = Instant::now();
    match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => {
            // The request goes out in one write; do not let Nagle hold it back.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(classify(address, &e)),
        Err(_) => Err(Failure::new(
            Phase::Connect,
            FailureKind::ConnectTimeout,
            format!(
                "connect to {address}: no answer in {} ms (SYN dropped: a firewall, or the host is down)",
                started.elapsed().as_millis()
            ),
        )),
    }
}

/// Names a connect error by its errno.
pub fn classify(address: SocketAddr, e: &std::io::Error) -> Failure {
    let errno = e.raw_os_error();
    let kind = match errno {
        Some(libc::ECONNREFUSED) => FailureKind::Refused,
        Some(libc::ETIMEDOUT) => FailureKind::ConnectTimeout,
        Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) | Some(libc::EHOSTDOWN) => {
            FailureKind::Unreachable
        }
        _ => FailureKind::ConnectOther,
    };
    let detail = match errno {
        Some(n) => format!("connect to {address} failed ({n}: {})", strerror(e)),
        None => format!("connect to {address} failed: {e}"),
    };
    Failure::new(Phase::Connect, kind, detail).with_errno(errno)
}

/// The OS's words for an error, without std's " (os error N)" suffix (the number is shown
/// the way nginx shows it: `(111: Connection refused)`).
pub fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_closed_port_is_refused_with_its_errno() {
        // Bind and release: nothing listens on that port afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let f = connect(addr, Instant::now() + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::Refused);
        assert_eq!(f.errno, Some(libc::ECONNREFUSED));
        assert!(
            f.detail.contains("(111: Connection refused)"),
            "{}",
            f.detail
        );
    }
}
