//! Accept-queue lengths and backlogs of listening sockets, from the kernel's socket diagnostics
//! over netlink (`NETLINK_SOCK_DIAG`, what `ss -lnt` and `ss -lx` use).
//!
//! `/proc/net/tcp` shows a listener's current accept-queue length (its `rx_queue`) but not the
//! backlog it was given, and `/proc/net/unix` shows neither; only netlink tells both: for a
//! listening socket `idiag_rqueue` is the queue length and `idiag_wqueue` the backlog (already
//! capped by `net.core.somaxconn`), and for unix sockets the `UNIX_DIAG_RQLEN` attribute carries
//! the same pair. The kernel drops (TCP) or refuses with EAGAIN (unix) a connection when the
//! queue is longer than the backlog, so `queue > backlog` means the socket is overflowing now.
//!
//! Netlink describes the caller's network namespace, as `/proc/net` of the caller does, so the
//! two agree. It needs no privilege.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::unix::{self, ShowFlags, UnixRequest};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// A listener's accept queue: connections waiting for `accept()`, and the most the kernel keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    pub queue: u32,
    pub backlog: u32,
}

/// The most time one dump may take; a host with a million sockets answers in well under that.
const DEADLINE: Duration = Duration::from_millis(400);
/// The most messages read per dump.
const MAX_MESSAGES: usize = 1_000_000;

/// Queue and backlog of every listening TCP (v4, v6) and unix stream socket, by inode.
pub fn listen_queues() -> std::io::Result<HashMap<u64, Queue>> {
    let mut queues = HashMap::new();
    for family in [AF_INET, AF_INET6] {
        let socket_id = if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        };
        let request = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        });
        dump(request, &mut |message| {
            if let SockDiagMessage::InetResponse(r) = message {
                queues.insert(
                    u64::from(r.header.inode),
                    Queue {
                        queue: r.header.recv_queue,
                        backlog: r.header.send_queue,
                    },
                );
            }
        })?;
    }
    let request = SockDiagMessage::UnixRequest(UnixRequest {
        state_flags: unix::StateFlags::LISTEN,
        inode: 0,
        show_flags: ShowFlags::RQLEN,
        cookie: [0; 8],
    });
    dump(request, &mut |message| {
        if let SockDiagMessage::UnixResponse(r) = message {
            if let (Some(queue), Some(backlog)) = (
                r.number_of_pending_connection(),
                r.max_number_of_pending_connection(),
            ) {
                queues.insert(u64::from(r.header.inode), Queue { queue, backlog });
            }
        }
    })?;
    Ok(queues)
}

/// Sends one dump request and hands every answer to `each`, until the kernel says done, the
/// deadline passes or the message bound is reached.
fn dump(request: SockDiagMessage, each: &mut dyn FnMut(SockDiagMessage)) -> std::io::Result<()> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    set_receive_timeout(&socket, Duration::from_millis(200))?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(header, request.into());
    packet.finalize();
    let mut out = vec![0; packet.buffer_len()];
    packet.serialize(&mut out);
    socket.send(&out, 0)?;

    let started = Instant::now();
    let mut buffer = vec![0u8; 1 << 16];
    let mut messages = 0usize;
    while started.elapsed() < DEADLINE && messages < MAX_MESSAGES {
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        if size == 0 {
            return Ok(());
        }
        let mut offset = 0;
        while offset < size {
            let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&buffer[offset..size])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            let length = message.header.length as usize;
            messages += 1;
            match message.payload {
                NetlinkPayload::InnerMessage(inner) => each(inner),
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(std::io::Error::other(format!("netlink: {e:?}")));
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            // Messages are aligned to 4 bytes.
            offset += (length + 3) & !3;
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "socket diagnostics did not finish in time",
    ))
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt(2) on a socket we own, with a pointer to a live timeval and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::fs::MetadataExt;

    #[test]
    fn a_fresh_listener_has_its_backlog_and_an_empty_queue() {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        socket.listen(7).unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .unwrap()
            .st_ino();
        let queues = listen_queues().unwrap();
        assert_eq!(
            queues.get(&inode),
            Some(&Queue {
                queue: 0,
                backlog: 7
            })
        );
    }
}
