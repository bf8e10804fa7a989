//! Misbehaving upstreams for the fault lab.
//!
//! A gateway (nginx) answers 502/503/504 because of what happens *behind* it. To reproduce each
//! failure for real, the lab puts a real nginx in front of one of these small servers, each of
//! which misbehaves in exactly one well-known way (see [`Behaviour`]). Every server here:
//!
//! - binds only loopback TCP addresses (127.0.0.0/8, ::1) or a unix socket path;
//! - speaks just enough HTTP/1.1 to be a believable upstream: it reads a request head with
//!   `httparse` (at most 64 KiB), then the body by `Content-Length` or chunked encoding (at most
//!   1 MiB) so that keep-alive works for POST too, and answers with a `Content-Length`;
//! - gives up on a peer that stays silent for 30 s while it waits for a request;
//! - never panics on I/O errors: a connection that fails is simply closed;
//! - stops completely when [`Upstream::stop`] is called or the [`Upstream`] is dropped.
//!
//! ```no_run
//! # fn demo(rt: &tokio::runtime::Handle) -> std::io::Result<()> {
//! use gwdoctor::lab::upstream::{start, Behaviour, Bind};
//! let up = start(rt, Bind::Tcp("127.0.0.1:0".parse().unwrap()), Behaviour::Reset, None, 0)?;
//! let port = up.local_addr().unwrap().port(); // write `proxy_pass http://127.0.0.1:{port};`
//! // … run nginx, send a request, read its error log: "recv() failed (104: Connection reset by peer)"
//! up.stop();
//! # Ok(()) }
//! ```
//!
//! Platform notes (observed on the lab machine, Linux 6.18 in a Firecracker VM, see the tests):
//! - `Reset` really produces an RST on TCP: the client's next read fails with `ConnectionReset`.
//!   Unix sockets have no RST; the nearest equivalent, which is what a killed PHP-FPM worker
//!   produces, is closing the socket while the request is still unread in its receive queue:
//!   Linux then hands the peer `ECONNRESET` as well. `Reset` does exactly that on unix sockets.
//! - `NeverAccept` listens with a backlog of 1. Linux queues backlog + 1 = 2 completed
//!   connections; after [`fill_backlog`] a further TCP `connect()` gets no answer to its SYN and
//!   times out (nginx: "upstream timed out (110: Connection timed out) while connecting to
//!   upstream"), and a non-blocking unix `connect()` fails at once with `EAGAIN` (nginx:
//!   "connect() to unix:… failed (11: Resource temporarily unavailable)").

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

/// How an upstream misbehaves. Each variant reproduces one failure a gateway reports.
///
/// The nginx error-log line in each description is what nginx 1.22.1 wrote for it on the lab
/// machine (plain `proxy_pass`, `proxy_read_timeout 2s`, `proxy_connect_timeout 1s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// A healthy server: `HTTP/1.1 200 OK`, body `ok\n`, `Content-Length: 3`. Honours keep-alive
    /// (HTTP/1.1 default, or `Connection: keep-alive` on HTTP/1.0), serving many requests per
    /// connection.
    Ok,
    /// Reads the request, waits `delay`, then answers like [`Behaviour::Ok`]. With a delay longer
    /// than `proxy_read_timeout`: "upstream timed out (110: Connection timed out) while reading
    /// response header from upstream" → 504.
    Slow { delay: Duration },
    /// Accepts and reads the request, never answers; the connection stays open until the peer
    /// closes it or the upstream is stopped (no idle deadline applies: the point is to outlast
    /// the gateway's timeout) → 504.
    Hang,
    /// Reads the request, writes bytes that are not HTTP (`"\x00\x01garbage\r\n"` repeated, no
    /// `HTTP/`), closes. nginx logs "upstream sent no valid HTTP/1.0 header while reading
    /// response header from upstream" but, without a cache, then relays the bytes to the client
    /// as an HTTP/0.9 response instead of answering 502.
    Garbage,
    /// Answers `HTTP/1.1 200 OK` followed by a line that is not a header. nginx: "upstream sent
    /// invalid header … while reading response header from upstream" → 502.
    InvalidHeader,
    /// Reads the whole request, then closes (FIN) without writing a byte. nginx: "upstream
    /// prematurely closed connection while reading response header from upstream" → 502.
    CloseAfterRequest,
    /// Reads the request head, then aborts the connection: RST on TCP (`SO_LINGER` 0); on a unix
    /// socket, a close with the request still unread (the peer gets `ECONNRESET` too). nginx:
    /// "recv() failed (104: Connection reset by peer) while reading response header from
    /// upstream" → 502. Over TLS on a unix socket this degrades to a plain close.
    Reset,
    /// A 200 whose single extra header line `X-Big: aaaa…` is `bytes` bytes long (without its
    /// CRLF; capped at 16 MiB). Bigger than `proxy_buffer_size`: "upstream sent too big header
    /// while reading response header from upstream" → 502.
    HugeHeader { bytes: usize },
    /// A 200 with `Transfer-Encoding: chunked`, a valid first chunk (`ok\n`), then the invalid
    /// chunk-size line `zz\r\n`, then close. nginx: "upstream sent invalid chunked response
    /// while reading upstream"; the client got an empty reply.
    InvalidChunked,
    /// Answers with another gateway's error page and its `Server` header, e.g. a CDN's 502 page
    /// behind nginx, so the doctor must tell whose page the user saw. nginx relays status and
    /// body (no error-log line); it replaces `Server` unless `proxy_pass_header Server;`.
    ForeignPage {
        status: u16,
        body: &'static str,
        server: &'static str,
    },
    /// Answers the first request on a connection with a keep-alive 200 (`Content-Length`, no
    /// `Connection: close`), then, when the next request arrives on the same connection, closes
    /// (FIN) without answering: what an app with a short keep-alive timeout does when its close
    /// races the gateway's reuse of the connection. Behind nginx with an upstream `keepalive`
    /// pool, `proxy_http_version 1.1` and `proxy_set_header Connection ""`: every reuse logs
    /// "upstream prematurely closed connection while reading response header from upstream";
    /// a GET is retried on a new connection (200), a POST is not (502).
    KeepAliveCloser,
    /// Serves `requests` requests like [`Behaviour::Ok`], then dies like a crashed process: the
    /// listener is closed the moment the last request arrives (before it is answered, so anyone
    /// who has seen that answer finds the port closed: "connect() failed (111: Connection
    /// refused)"), every other connection is aborted, and further requests on open connections
    /// get no answer. A unix socket file stays behind (as after a real crash) until `stop()`.
    /// `CrashAfter { requests: 0 }` never listens at all (the port is bound, then closed).
    CrashAfter { requests: usize },
    /// Listens with a backlog of 1 and never accepts; [`fill_backlog`] fills its queue so that
    /// the gateway's next connect times out (TCP) or fails with `EAGAIN` (unix socket). TLS is
    /// ignored.
    NeverAccept,
    /// A plain HTTP/1.1 server: valid HTTP/1.x requests are answered like [`Behaviour::Ok`]; any
    /// bytes that are not HTTP/1 (such as the HTTP/2 preface `PRI * HTTP/2.0` that `grpc_pass`
    /// sends) get `HTTP/1.1 400 Bad Request` and the connection is closed. nginx `grpc_pass`:
    /// "upstream sent too large http2 frame: 4740180 while reading response header from
    /// upstream" (4740180 = "HTT" read as a frame length) → 502.
    Http1ForGrpc,
}

/// Where an upstream listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// A loopback TCP address; port 0 picks a free port (see [`Upstream::local_addr`]).
    Tcp(SocketAddr),
    /// A unix socket path. A stale *socket* file at that path is replaced; any other file is an
    /// error (`AlreadyExists`).
    Unix(PathBuf),
}

/// Largest request head read (httparse); a longer head closes the connection.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read; a longer body is not read and the connection is closed after the answer.
const MAX_BODY: usize = 1024 * 1024;
/// How long a read may wait for the peer while a request is expected.
const IDLE: Duration = Duration::from_secs(30);
/// How long a single write may take (a peer that stops reading must not pin a task forever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// TLS handshake deadline.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// After our FIN, how long we keep reading (and discarding) so that unread request bytes do not
/// turn our close into an RST that could destroy the answer in flight.
const LINGER_DRAIN: Duration = Duration::from_secs(2);
/// Upper bound for `HugeHeader { bytes }`.
const MAX_HUGE_HEADER: usize = 16 * 1024 * 1024;
/// Connections served at the same time; further ones are closed at once.
const MAX_CONNS: usize = 512;
/// Accepts (and failed accepts) over the upstream's lifetime (bounds the accept loop).
const MAX_ACCEPTS: u64 = 1_000_000;
/// Requests served on one connection (bounds the keep-alive loop).
const MAX_REQUESTS_PER_CONN: usize = 100_000;
/// Listen backlog for the serving behaviours.
const BACKLOG: i32 = 1024;
/// How long `stop()` waits for the server task to finish closing everything.
const STOP_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Lifetime: how stop()/Drop end a task that runs on some tokio runtime.
// ---------------------------------------------------------------------------------------------

/// Ends a spawned server task and, where that is safe, waits until it has finished.
///
/// The task holds a `std::sync::mpsc::Sender` ([`DoneToken`]) that is dropped when its future is
/// dropped (finished, aborted, or its runtime shut down), so `recv_timeout` on the receiver
/// returns as soon as every socket the task owned is closed.
///
/// Waiting is done only where blocking cannot deadlock: on a thread outside any runtime, or on a
/// multi-thread runtime (through `block_in_place`, which hands this worker's other tasks to
/// another thread). On a current-thread runtime `stop()` only signals; the sockets close as soon
/// as that runtime next runs the task (use `stop_and_wait().await` there).
pub(crate) struct Lifetime {
    shutdown: Option<watch::Sender<bool>>,
    done: Option<std::sync::mpsc::Receiver<()>>,
}

/// Resolves once the owner asked the task to stop (or dropped its side).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, never held across an await (it is not Send).
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Held by a server task for as long as it owns sockets; see [`Lifetime`].
pub(crate) type DoneToken = std::sync::mpsc::Sender<()>;

impl Lifetime {
    pub(crate) fn new() -> (Lifetime, watch::Receiver<bool>, DoneToken) {
        let (tx, rx) = watch::channel(false);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        (
            Lifetime {
                shutdown: Some(tx),
                done: Some(done_rx),
            },
            rx,
            done_tx,
        )
    }

    /// Signals the task to stop and waits (bounded) when blocking is safe here.
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        let Some(done) = self.done.take() else { return };
        let wait = move || {
            // Err(Disconnected) is the normal way out: the task dropped its token.
            let _ = done.recv_timeout(STOP_WAIT);
        };
        match Handle::try_current() {
            Err(_) => wait(),
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            Ok(_) => {}
        }
    }

    /// Signals the task to stop and waits (bounded) without blocking the runtime.
    pub(crate) async fn stop_async(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        let Some(done) = self.done.take() else { return };
        let deadline = Instant::now() + STOP_WAIT;
        // Bounded poll: at most STOP_WAIT / 5 ms iterations.
        while Instant::now() < deadline {
            match done.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                _ => return,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The public handle.
// ---------------------------------------------------------------------------------------------

/// A running upstream. Stopping it ([`Upstream::stop`] or `Drop`) ends its task, closes its
/// listener and every connection, and removes the unix socket file it created.
pub struct Upstream {
    addr: Option<SocketAddr>,
    /// The unix socket file we created, with its (dev, inode) so that we never remove a file
    /// someone else put there after us.
    unix_file: Option<(PathBuf, u64, u64)>,
    requests: Arc<AtomicUsize>,
    life: Lifetime,
    /// `NeverAccept` needs no task: the listening socket just sits here, never accepted from.
    idle_listener: Option<Socket>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("unix_file", &self.unix_file.as_ref().map(|u| &u.0))
            .field("requests", &self.requests())
            .finish()
    }
}

impl Upstream {
    /// The TCP address actually bound (port 0 → the real port); `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Request heads read completely so far, over all connections (including malformed heads
    /// that were answered with 400, and requests a behaviour then refused to answer).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stops the upstream: listener and connections are closed and the unix socket file is
    /// removed. Waits (at most 5 s) for the task to finish when called outside a runtime or on a
    /// multi-thread runtime; on a current-thread runtime prefer [`Upstream::stop_and_wait`].
    pub fn stop(self) {
        drop(self)
    }

    /// Like [`Upstream::stop`], but waits for the closing to finish without blocking the runtime.
    pub async fn stop_and_wait(mut self) {
        self.life.stop_async().await;
        // Drop does the rest (listener of NeverAccept, socket file).
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.life.stop();
        self.idle_listener = None;
        if let Some((path, dev, ino)) = self.unix_file.take() {
            remove_if_same(&path, dev, ino);
        }
    }
}

fn remove_if_same(path: &Path, dev: u64, ino: u64) {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.dev() == dev && md.ino() == ino {
            let _ = std::fs::remove_file(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Binding.
// ---------------------------------------------------------------------------------------------

fn not_loopback(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the fault lab only uses loopback addresses, not {what}"),
    )
}

fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<(Socket, SocketAddr)> {
    if !addr.ip().is_loopback() {
        return Err(not_loopback(&addr.to_string()));
    }
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // SO_REUSEADDR: a scenario can rebind the port of an upstream it just stopped even while
    // old connections sit in TIME_WAIT.
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    let local = sock
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound TCP socket has no inet address"))?;
    Ok((sock, local))
}

fn bind_unix(path: &Path, backlog: i32, mode: u32) -> io::Result<(Socket, (PathBuf, u64, u64))> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.bind(&SockAddr::unix(path)?)?;
    // The mode decides who may connect (connect() needs write permission on the file). Set it
    // before listen() so that nobody can connect through a wider mode in between. Note: root
    // bypasses the check, so 0o600 only denies an nginx whose workers run as another user.
    let md = std::fs::symlink_metadata(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    Ok((sock, (path.to_path_buf(), md.dev(), md.ino())))
}

// ---------------------------------------------------------------------------------------------
// start()
// ---------------------------------------------------------------------------------------------

/// Binds (TCP with `SO_REUSEADDR`, or a unix socket whose file gets `unix_mode`, e.g. `0o666` or
/// `0o600`; ignored for TCP) and starts serving `behaviour` on `rt`. With `tls`, every
/// connection is a TLS server (see `lab::tls`) and the behaviour runs inside it.
///
/// Errors: a non-loopback address (`InvalidInput`), a path occupied by a non-socket
/// (`AlreadyExists`), and whatever bind/listen report (e.g. `AddrInUse`).
pub fn start(
    rt: &Handle,
    bind: Bind,
    behaviour: Behaviour,
    tls: Option<Arc<rustls::ServerConfig>>,
    unix_mode: u32,
) -> io::Result<Upstream> {
    let backlog = if behaviour == Behaviour::NeverAccept {
        1
    } else {
        BACKLOG
    };
    let (sock, addr, unix_file) = match &bind {
        Bind::Tcp(a) => {
            let (s, local) = bind_tcp(*a, backlog)?;
            (s, Some(local), None)
        }
        Bind::Unix(p) => {
            let (s, f) = bind_unix(p, backlog, unix_mode)?;
            (s, None, Some(f))
        }
    };
    let requests = Arc::new(AtomicUsize::new(0));
    let (mut life, shutdown_rx, done) = Lifetime::new();

    if behaviour == Behaviour::NeverAccept {
        // Nothing to run: the listening socket is never accepted from.
        drop((shutdown_rx, done));
        life.shutdown = None;
        life.done = None;
        return Ok(Upstream {
            addr,
            unix_file,
            requests,
            life,
            idle_listener: Some(sock),
        });
    }

    // Registering with tokio's reactor needs the runtime's context.
    let listener = {
        let _enter = rt.enter();
        match &bind {
            Bind::Tcp(_) => Listener::Tcp(TcpListener::from_std(sock.into())?),
            Bind::Unix(_) => Listener::Unix(UnixListener::from_std(sock.into())?),
        }
    };
    let (ctl_tx, ctl_rx) = mpsc::channel(16);
    let shared = Arc::new(Shared {
        behaviour,
        requests: requests.clone(),
        tickets: AtomicUsize::new(0),
        ctl: ctl_tx,
    });
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    rt.spawn(accept_loop(
        listener,
        shared,
        acceptor,
        ctl_rx,
        shutdown_rx,
        done,
    ));
    Ok(Upstream {
        addr,
        unix_file,
        requests,
        life,
        idle_listener: None,
    })
}

// ---------------------------------------------------------------------------------------------
// fill_backlog()
// ---------------------------------------------------------------------------------------------

/// For [`Behaviour::NeverAccept`]: opens connections to the upstream at `bind` until one does
/// not complete within 200 ms (at most 64), and returns the completed ones; keep them alive for
/// as long as the queue must stay full. Afterwards a new `connect()` (e.g. from nginx) gets no
/// SYN-ACK and times out (TCP), or fails with `EAGAIN` when non-blocking (unix socket).
///
/// Errors: a non-loopback address, and a connect that fails outright (e.g. `ConnectionRefused`
/// because nothing listens there).
pub fn fill_backlog(bind: &Bind) -> io::Result<Vec<Box<dyn Any + Send>>> {
    let (domain, addr) = match bind {
        Bind::Tcp(a) => {
            if !a.ip().is_loopback() {
                return Err(not_loopback(&a.to_string()));
            }
            (Domain::for_address(*a), SockAddr::from(*a))
        }
        Bind::Unix(p) => (Domain::UNIX, SockAddr::unix(p)?),
    };
    let mut held: Vec<Box<dyn Any + Send>> = Vec::new();
    for _ in 0..64 {
        let sock = Socket::new(domain, Type::STREAM, None)?;
        sock.set_nonblocking(true)?;
        match sock.connect(&addr) {
            Ok(()) => held.push(Box::new(sock)),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                if !wait_writable(&sock, Duration::from_millis(200))? {
                    // The SYN went unanswered: the accept queue is full. This half-open
                    // attempt is dropped; the completed ones stay queued.
                    break;
                }
                match sock.take_error()? {
                    None => held.push(Box::new(sock)),
                    Some(err) if held.is_empty() => return Err(err),
                    Some(_) => break,
                }
            }
            // Unix sockets: a full queue refuses a non-blocking connect at once.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if held.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(held)
}

/// poll(2) for writability; `Ok(false)` on timeout.
fn wait_writable(sock: &Socket, wait: Duration) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + wait;
    // Bounded: EINTR retries stop at the deadline.
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
        if r > 0 {
            return Ok(true);
        }
        if r == 0 {
            return Ok(false);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted || left.is_zero() {
            return Err(err);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The accept loop.
// ---------------------------------------------------------------------------------------------

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Messages from connections to the accept loop (used by `CrashAfter`).
enum Ctl {
    /// Close the listener now and confirm.
    CloseListener(oneshot::Sender<()>),
    /// Abort every connection.
    Crash,
}

struct Shared {
    behaviour: Behaviour,
    requests: Arc<AtomicUsize>,
    /// `CrashAfter`: requests taken for serving, over all connections.
    tickets: AtomicUsize,
    ctl: mpsc::Sender<Ctl>,
}

async fn accept_one(listener: &Option<Listener>) -> io::Result<Accepted> {
    match listener {
        Some(Listener::Tcp(l)) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Some(Listener::Unix(l)) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        None => std::future::pending().await,
    }
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut ctl_rx: mpsc::Receiver<Ctl>,
    mut shutdown: watch::Receiver<bool>,
    _done: DoneToken,
) {
    let mut listener = Some(listener);
    if shared.behaviour == (Behaviour::CrashAfter { requests: 0 }) {
        // Crashed before serving anything.
        listener = None;
    }
    let mut conns = JoinSet::new();
    let mut accepted: u64 = 0;
    while accepted < MAX_ACCEPTS {
        // Reap finished connections so that `conns.len()` counts live ones.
        while conns.try_join_next().is_some() {}
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(ctl) = ctl_rx.recv() => match ctl {
                Ctl::CloseListener(ack) => {
                    listener = None;
                    let _ = ack.send(());
                }
                Ctl::Crash => conns.abort_all(),
            },
            res = accept_one(&listener) => match res {
                Ok(conn) => {
                    accepted += 1;
                    if conns.len() >= MAX_CONNS {
                        continue; // dropped: closed at once
                    }
                    conns.spawn(serve_accepted(conn, tls.clone(), shared.clone()));
                }
                // EMFILE and friends: back off a little instead of spinning.
                Err(_) => {
                    accepted += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            },
        }
    }
    drop(listener);
    // Aborts every connection task and waits until their sockets are dropped.
    conns.shutdown().await;
}

async fn serve_accepted(conn: Accepted, tls: Option<tokio_rustls::TlsAcceptor>, sh: Arc<Shared>) {
    match (conn, tls) {
        (Accepted::Tcp(s), None) => serve(s, &sh).await,
        (Accepted::Unix(s), None) => serve(s, &sh).await,
        (Accepted::Tcp(s), Some(acc)) => {
            if let Ok(Ok(t)) = timeout(HANDSHAKE_TIMEOUT, acc.accept(s)).await {
                serve(t, &sh).await
            }
        }
        (Accepted::Unix(s), Some(acc)) => {
            if let Ok(Ok(t)) = timeout(HANDSHAKE_TIMEOUT, acc.accept(s)).await {
                serve(t, &sh).await
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Streams.
// ---------------------------------------------------------------------------------------------

/// What the behaviours need from a transport beyond reading and writing.
trait LabStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Makes the coming drop abort the connection with a TCP RST (`SO_LINGER` 0). Returns
    /// `false` when the transport has no RST (unix sockets).
    fn arm_reset(&self) -> bool;
    /// The raw unix stream, for the unix flavour of `Reset` (peek, then close unread).
    fn as_unix(&self) -> Option<&UnixStream> {
        None
    }
}

impl LabStream for TcpStream {
    fn arm_reset(&self) -> bool {
        // Linger 0 makes close() abortive: RST instead of FIN, and it never blocks.
        SockRef::from(self).set_linger(Some(Duration::ZERO)).is_ok()
    }
}

impl LabStream for UnixStream {
    fn arm_reset(&self) -> bool {
        false
    }
    fn as_unix(&self) -> Option<&UnixStream> {
        Some(self)
    }
}

impl<S: LabStream> LabStream for tokio_rustls::server::TlsStream<S> {
    fn arm_reset(&self) -> bool {
        self.get_ref().0.arm_reset()
    }
}

/// A stream with the bytes read but not yet consumed.
struct Conn<S> {
    s: S,
    buf: Vec<u8>,
}

/// The framing facts of one request.
struct Request {
    keep_alive: bool,
    body: Body,
}

enum Body {
    None,
    Length(usize),
    Chunked,
}

enum Head {
    Request(Request),
    /// Not HTTP/1.x (or unusable framing): answer 400 and close.
    Malformed,
    /// EOF, error, idle timeout or a head over 64 KiB: just close.
    Gone,
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a complete request head; `None` while incomplete, `Some(Err(()))` when malformed.
fn parse_head(buf: &[u8]) -> Option<Result<(usize, Request), ()>> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Err(())),
    };
    let minor = req.version.unwrap_or(0);
    let mut keep_alive = minor >= 1;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                keep_alive = false;
            } else if has_token(h.value, "keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            else {
                return Some(Err(()));
            };
            if length.is_some_and(|l| l != n) {
                return Some(Err(()));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only "chunked" (last) is a framing we can follow.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Some(Err(()));
            }
            chunked = true;
        }
    }
    let body = if chunked {
        Body::Chunked
    } else {
        match length {
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        }
    };
    Some(Ok((len, Request { keep_alive, body })))
}

impl<S: LabStream> Conn<S> {
    fn new(s: S) -> Self {
        Conn {
            s,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Reads more bytes into `buf`; `Ok(0)` at EOF. Idle deadline: 30 s.
    async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(16 * 1024);
        match timeout(IDLE, self.s.read_buf(&mut self.buf)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }

    async fn read_head(&mut self) -> Head {
        // Bounded: each round adds at least one byte, and the head is capped at 64 KiB.
        loop {
            if !self.buf.is_empty() {
                match parse_head(&self.buf) {
                    Some(Ok((len, req))) => {
                        self.consume(len);
                        return Head::Request(req);
                    }
                    Some(Err(())) => return Head::Malformed,
                    None if self.buf.len() >= MAX_HEAD => return Head::Gone,
                    None => {}
                }
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Head::Gone,
                Ok(_) => {}
            }
        }
    }

    /// Reads and discards the request body. `false` when it could not be read completely
    /// (too big, malformed, EOF, timeout): the connection must not be reused.
    async fn read_body(&mut self, body: &Body) -> bool {
        match *body {
            Body::None => true,
            Body::Length(n) if n > MAX_BODY => false,
            Body::Length(n) => self.skip(n).await,
            Body::Chunked => self.skip_chunked().await,
        }
    }

    /// Discards exactly `n` bytes.
    async fn skip(&mut self, mut n: usize) -> bool {
        // Bounded: n ≤ 1 MiB and every round consumes at least one byte or returns.
        loop {
            let take = n.min(self.buf.len());
            self.consume(take);
            n -= take;
            if n == 0 {
                return true;
            }
            match self.fill().await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    }

    /// Takes one CRLF-terminated line (without CRLF) of at most 4 KiB.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = memchr::memmem::find(&self.buf, b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.consume(i + 2);
                return Some(line);
            }
            if self.buf.len() > 4096 {
                return None;
            }
            match self.fill().await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Discards a chunked body (chunks, last chunk, trailers), at most 1 MiB of data.
    async fn skip_chunked(&mut self) -> bool {
        let mut total = 0usize;
        // Bounded: each chunk has at least one byte and the total is capped; trailers are
        // capped at 64 lines.
        loop {
            let Some(line) = self.line().await else {
                return false;
            };
            let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
            let Some(size) = std::str::from_utf8(size_part)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            else {
                return false;
            };
            if size == 0 {
                for _ in 0..64 {
                    match self.line().await {
                        Some(l) if l.is_empty() => return true,
                        Some(_) => {}
                        None => return false,
                    }
                }
                return false;
            }
            total = total.saturating_add(size);
            if total > MAX_BODY || !self.skip(size + 2).await {
                return false;
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        matches!(
            timeout(WRITE_TIMEOUT, async {
                self.s.write_all(bytes).await?;
                self.s.flush().await
            })
            .await,
            Ok(Ok(()))
        )
    }

    /// Closes politely: FIN (and TLS close_notify) first, then reads and discards what the peer
    /// still sends for a short while, because closing with unread bytes would make the kernel
    /// send an RST that can destroy our answer before the peer has read it.
    async fn close(mut self) {
        let _ = timeout(Duration::from_secs(5), self.s.shutdown()).await;
        let deadline = Instant::now() + LINGER_DRAIN;
        let mut drained = 0usize;
        let mut scratch = vec![0u8; 16 * 1024];
        while drained <= MAX_BODY {
            match tokio::time::timeout_at(deadline, self.s.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    /// `Hang`: keeps reading and discarding (so the peer's writes never block) until the peer
    /// closes; after 1 MiB just sits there. Never answers; ends on EOF/error or when stopped.
    async fn hang(mut self) {
        self.buf.clear();
        let mut discarded = 0usize;
        let mut scratch = vec![0u8; 16 * 1024];
        while discarded <= MAX_BODY {
            match self.s.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
        // Ends only when the task is aborted (stop), with the socket still open until then.
        std::future::pending::<()>().await
    }
}

// ---------------------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------------------

const SERVER: &str = "gwdoctor-lab";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        520..=530 => "Origin Error",
        _ => "Status",
    }
}

/// A complete response with `Content-Length`; `connection` is the `Connection` header to send,
/// if any.
fn response(
    status: u16,
    server: &str,
    content_type: &str,
    extra: &str,
    connection: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} {}\r\nServer: {server}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    r.push_str(extra);
    if let Some(c) = connection {
        r.push_str("Connection: ");
        r.push_str(c);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

/// The `Connection` header for an answer: `close` when we will close, `keep-alive` otherwise
/// (harmless for HTTP/1.1, needed for HTTP/1.0 keep-alive).
fn conn_header(keep: bool) -> Option<&'static str> {
    Some(if keep { "keep-alive" } else { "close" })
}

fn ok_response(keep: bool) -> Vec<u8> {
    response(200, SERVER, "text/plain", "", conn_header(keep), "ok\n")
}

fn bad_request() -> Vec<u8> {
    response(
        400,
        SERVER,
        "text/html",
        "",
        Some("close"),
        "<html><head><title>400 Bad Request</title></head><body>400 Bad Request</body></html>\n",
    )
}

fn huge_header_response(bytes: usize, keep: bool) -> Vec<u8> {
    let line_len = bytes.clamp(8, MAX_HUGE_HEADER);
    let mut extra = String::with_capacity(line_len + 2);
    extra.push_str("X-Big: ");
    extra.push_str(&"a".repeat(line_len - "X-Big: ".len()));
    extra.push_str("\r\n");
    response(200, SERVER, "text/plain", &extra, conn_header(keep), "ok\n")
}

fn garbage() -> Vec<u8> {
    b"\x00\x01garbage\r\n".repeat(16)
}

const INVALID_HEADER: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: gwdoctor-lab\r\nthis line is not a header\r\nContent-Length: 3\r\n\r\nok\n";

const INVALID_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nServer: gwdoctor-lab\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\nzz\r\n";

// ---------------------------------------------------------------------------------------------
// Serving one connection.
// ---------------------------------------------------------------------------------------------

async fn serve<S: LabStream>(s: S, sh: &Shared) {
    if sh.behaviour == Behaviour::Reset {
        if let Some(u) = s.as_unix() {
            reset_unix(u, sh).await;
            return; // dropping `s` with the request unread: the peer gets ECONNRESET
        }
    }
    let mut c = Conn::new(s);
    for served in 0..MAX_REQUESTS_PER_CONN {
        let req = match c.read_head().await {
            Head::Request(r) => r,
            Head::Malformed => {
                sh.requests.fetch_add(1, Ordering::SeqCst);
                if c.write(&bad_request()).await {
                    c.close().await;
                }
                return;
            }
            Head::Gone => return,
        };
        sh.requests.fetch_add(1, Ordering::SeqCst);
        match step(c, req, served, sh).await {
            Some(next) => c = next,
            None => return,
        }
    }
}

/// Handles one request whose head was read; returns the connection if it stays open.
async fn step<S: LabStream>(
    mut c: Conn<S>,
    req: Request,
    served: usize,
    sh: &Shared,
) -> Option<Conn<S>> {
    match &sh.behaviour {
        Behaviour::Ok | Behaviour::Http1ForGrpc => {
            let keep = c.read_body(&req.body).await && req.keep_alive;
            answer(c, ok_response(keep), keep).await
        }
        Behaviour::Slow { delay } => {
            let keep = c.read_body(&req.body).await && req.keep_alive;
            tokio::time::sleep(*delay).await;
            answer(c, ok_response(keep), keep).await
        }
        Behaviour::Hang => {
            c.hang().await;
            None
        }
        Behaviour::Garbage => {
            c.read_body(&req.body).await;
            answer(c, garbage(), false).await
        }
        Behaviour::InvalidHeader => {
            c.read_body(&req.body).await;
            answer(c, INVALID_HEADER.to_vec(), false).await
        }
        Behaviour::CloseAfterRequest => {
            c.read_body(&req.body).await;
            c.close().await;
            None
        }
        Behaviour::Reset => {
            // Request body deliberately left unread: with SO_LINGER 0 the close is an RST.
            c.s.arm_reset();
            None
        }
        Behaviour::HugeHeader { bytes } => {
            let keep = c.read_body(&req.body).await && req.keep_alive;
            answer(c, huge_header_response(*bytes, keep), keep).await
        }
        Behaviour::InvalidChunked => {
            c.read_body(&req.body).await;
            answer(c, INVALID_CHUNKED.to_vec(), false).await
        }
        Behaviour::ForeignPage {
            status,
            body,
            server,
        } => {
            let keep = c.read_body(&req.body).await && req.keep_alive;
            let page = response(*status, server, "text/html", "", conn_header(keep), body);
            answer(c, page, keep).await
        }
        Behaviour::KeepAliveCloser => {
            if served > 0 {
                // The app's idle timer fired just as the gateway reused the connection.
                c.close().await;
                return None;
            }
            let ok = c.read_body(&req.body).await;
            // Keep-alive as far as the response says: Content-Length, no Connection header.
            let r = response(200, SERVER, "text/plain", "", None, "ok\n");
            answer(c, r, ok).await
        }
        Behaviour::CrashAfter { requests: limit } => {
            let ticket = sh.tickets.fetch_add(1, Ordering::SeqCst);
            if ticket >= *limit {
                return None; // already dead: no answer
            }
            let keep = c.read_body(&req.body).await && req.keep_alive;
            if ticket + 1 == *limit {
                // Close the port first, so that whoever reads this last answer finds it closed.
                let (ack_tx, ack_rx) = oneshot::channel();
                if sh.ctl.send(Ctl::CloseListener(ack_tx)).await.is_ok() {
                    let _ = timeout(Duration::from_secs(5), ack_rx).await;
                }
                c.write(&ok_response(keep)).await;
                drop(c);
                let _ = sh.ctl.send(Ctl::Crash).await;
                return None;
            }
            answer(c, ok_response(keep), keep).await
        }
        // Never reached: NeverAccept runs no task.
        Behaviour::NeverAccept => None,
    }
}

/// Writes a response; keeps the connection when `keep`, closes it politely otherwise.
async fn answer<S: LabStream>(mut c: Conn<S>, bytes: Vec<u8>, keep: bool) -> Option<Conn<S>> {
    if !c.write(&bytes).await {
        return None;
    }
    if keep {
        Some(c)
    } else {
        c.close().await;
        None
    }
}

/// `Reset` on a unix socket: peek (do not consume) until the request head is complete, count
/// it, and return so that the caller closes the socket with the request still queued.
async fn reset_unix(u: &UnixStream, sh: &Shared) {
    let mut buf = vec![0u8; MAX_HEAD];
    let deadline = Instant::now() + IDLE;
    let mut last = 0usize;
    // Bounded by the idle deadline (sleeps of 5 ms between peeks that saw no new bytes).
    while Instant::now() < deadline {
        let n = match tokio::time::timeout_at(deadline, peek_unix(u, &mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if n == 0 {
            return; // EOF
        }
        match parse_head(&buf[..n]) {
            Some(_) => {
                sh.requests.fetch_add(1, Ordering::SeqCst);
                return;
            }
            None if n >= MAX_HEAD => return,
            None => {}
        }
        if n == last {
            // Peeking does not consume, so readiness stays set; wait for more bytes.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        last = n;
    }
}

/// recv(MSG_PEEK) on a tokio unix stream.
async fn peek_unix(u: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    {
        // Bounded: spurious readiness is rare; give up after 1000 of them.
        for _ in 0..1000 {
            u.readable().await?;
            let r = u.try_io(tokio::io::Interest::READABLE, || {
                // SAFETY: `buf` is a valid, writable buffer of `buf.len()` bytes.
                let n = unsafe {
                    libc::recv(
                        u.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_PEEK,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
        Err(io::ErrorKind::TimedOut.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Every test body runs under this deadline.
    const TEST_DEADLINE: Duration = Duration::from_secs(20);

    async fn bounded<F: std::future::Future>(f: F) -> F::Output {
        timeout(TEST_DEADLINE, f).await.expect("test took too long")
    }

    fn loopback0() -> Bind {
        Bind::Tcp("127.0.0.1:0".parse().unwrap())
    }

    fn tcp(b: Behaviour) -> (Upstream, SocketAddr) {
        let up = start(&Handle::current(), loopback0(), b, None, 0).unwrap();
        let addr = up.local_addr().unwrap();
        (up, addr)
    }

    fn unix_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("gwdoctor-lab-{}-{tag}.sock", std::process::id()))
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n";

    /// Reads one response (head + Content-Length body). Returns (head, body).
    async fn read_response<S: AsyncRead + Unpin>(
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> io::Result<(String, Vec<u8>)> {
        loop {
            if let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
                let cl = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < i + 4 + cl {
                    if s.read_buf(buf).await? == 0 {
                        return Err(ErrorKind::UnexpectedEof.into());
                    }
                }
                let body = buf[i + 4..i + 4 + cl].to_vec();
                buf.drain(..i + 4 + cl);
                return Ok((head, body));
            }
            if s.read_buf(buf).await? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn read_to_end_or_err<S: AsyncRead + Unpin>(s: &mut S) -> (Vec<u8>, Option<io::Error>) {
        let mut all = Vec::new();
        match s.read_to_end(&mut all).await {
            Ok(_) => (all, None),
            Err(e) => (all, Some(e)),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ok_serves_many_requests_per_connection() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Ok);
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            s.write_all(GET).await.unwrap();
            let (head, body) = read_response(&mut s, &mut buf).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(head.contains("Content-Length: 3\r\n"));
            assert_eq!(body, b"ok\n");
            // POST with a body by Content-Length, then a chunked POST, on the same connection.
            s.write_all(b"POST /a HTTP/1.1\r\nHost: lab\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
            let (head, _) = read_response(&mut s, &mut buf).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200"));
            s.write_all(b"POST /b HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await.unwrap();
            let (head, _) = read_response(&mut s, &mut buf).await.unwrap();
            assert!(head.contains("Connection: keep-alive"));
            // Two pipelined requests, the last asking to close.
            s.write_all(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nConnection: close\r\n\r\n").await.unwrap();
            read_response(&mut s, &mut buf).await.unwrap();
            let (head, _) = read_response(&mut s, &mut buf).await.unwrap();
            assert!(head.contains("Connection: close"));
            assert_eq!(s.read_buf(&mut buf).await.unwrap(), 0, "closed after Connection: close");
            assert_eq!(up.requests(), 5);

            // HTTP/1.0 without keep-alive: answered, then closed.
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let (all, err) = read_to_end_or_err(&mut s).await;
            assert!(err.is_none());
            assert!(all.starts_with(b"HTTP/1.1 200 OK\r\n"));
            assert!(all.ends_with(b"\r\n\r\nok\n"));
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_and_oversized_heads() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Ok);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"\x16\x03\x01 not http\r\n\r\n").await.unwrap();
            let (all, _) = read_to_end_or_err(&mut s).await;
            assert!(all.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
            // A head over 64 KiB: closed without an answer.
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut big = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
            big.extend(vec![b'a'; 70 * 1024]);
            let _ = s.write_all(&big).await;
            let (all, _) = read_to_end_or_err(&mut s).await;
            assert!(all.is_empty());
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_answers_after_the_delay() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Slow {
                delay: Duration::from_millis(400),
            });
            let mut s = TcpStream::connect(addr).await.unwrap();
            let t0 = Instant::now();
            s.write_all(GET).await.unwrap();
            let (head, _) = read_response(&mut s, &mut Vec::new()).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200"));
            assert!(t0.elapsed() >= Duration::from_millis(400));
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hang_never_answers_until_stopped() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Hang);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let mut b = [0u8; 64];
            assert!(
                timeout(Duration::from_millis(700), s.read(&mut b))
                    .await
                    .is_err(),
                "no answer, connection open"
            );
            assert_eq!(up.requests(), 1);
            up.stop(); // closes the connection
            let r = timeout(Duration::from_secs(2), s.read(&mut b))
                .await
                .expect("closed by stop");
            assert!(matches!(r, Ok(0)) || r.is_err());
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_is_not_http() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Garbage);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let (all, err) = read_to_end_or_err(&mut s).await;
            assert!(err.is_none());
            assert!(all.starts_with(b"\x00\x01garbage\r\n"));
            assert!(memchr::memmem::find(&all, b"HTTP/").is_none());
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_header_fails_to_parse() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::InvalidHeader);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let (all, _) = read_to_end_or_err(&mut s).await;
            assert!(all.starts_with(b"HTTP/1.1 200 OK\r\n"));
            assert!(memchr::memmem::find(&all, b"\r\nthis line is not a header\r\n").is_some());
            let mut headers = [httparse::EMPTY_HEADER; 16];
            assert!(httparse::Response::new(&mut headers).parse(&all).is_err());
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_after_request_sends_fin_without_bytes() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::CloseAfterRequest);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody")
                .await
                .unwrap();
            let mut b = [0u8; 64];
            assert_eq!(
                s.read(&mut b).await.unwrap(),
                0,
                "clean EOF (FIN), no bytes"
            );
            assert_eq!(up.requests(), 1);
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reset_gives_connection_reset_on_tcp() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Reset);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let mut b = [0u8; 64];
            let err = s.read(&mut b).await.expect_err("RST expected");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
            assert_eq!(up.requests(), 1);
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reset_gives_connection_reset_on_unix() {
        bounded(async {
            let path = unix_path("reset");
            let up = start(
                &Handle::current(),
                Bind::Unix(path.clone()),
                Behaviour::Reset,
                None,
                0o666,
            )
            .unwrap();
            let mut s = UnixStream::connect(&path).await.unwrap();
            s.write_all(GET).await.unwrap();
            let mut b = [0u8; 64];
            let err = s.read(&mut b).await.expect_err("ECONNRESET expected");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
            assert_eq!(up.requests(), 1);
            up.stop();
            assert!(!path.exists());
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn huge_header_has_one_line_of_the_given_size() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::HugeHeader { bytes: 20_000 });
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let (head, body) = read_response(&mut s, &mut Vec::new()).await.unwrap();
            let line = head.lines().find(|l| l.starts_with("X-Big: ")).unwrap();
            assert_eq!(line.len(), 20_000);
            assert!(line["X-Big: ".len()..].bytes().all(|b| b == b'a'));
            assert_eq!(body, b"ok\n");
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_chunked_breaks_after_first_chunk() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::InvalidChunked);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let (all, _) = read_to_end_or_err(&mut s).await;
            let text = String::from_utf8_lossy(&all);
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
            assert!(text.contains("Transfer-Encoding: chunked\r\n"));
            assert!(!text.contains("Content-Length"));
            assert!(text.ends_with("\r\n\r\n3\r\nok\n\r\nzz\r\n"), "{text:?}");
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn foreign_page_carries_its_server_header() {
        bounded(async {
            let page = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n";
            let (up, addr) = tcp(Behaviour::ForeignPage { status: 502, body: page, server: "cloudflare" });
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let (head, body) = read_response(&mut s, &mut Vec::new()).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
            assert!(head.contains("\r\nServer: cloudflare\r\n"));
            assert_eq!(body, page.as_bytes());
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_closer_answers_once_then_closes() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::KeepAliveCloser);
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            s.write_all(GET).await.unwrap();
            let (head, _) = read_response(&mut s, &mut buf).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
            assert!(head.contains("Content-Length: 3"));
            assert!(!head.to_ascii_lowercase().contains("connection:"), "{head}");
            s.write_all(GET).await.unwrap();
            let (all, err) = read_to_end_or_err(&mut s).await;
            assert!(
                all.is_empty() && err.is_none(),
                "second request: FIN, no answer"
            );
            assert_eq!(up.requests(), 2);
            // A new connection gets its one answer again.
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            read_response(&mut s, &mut Vec::new()).await.unwrap();
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_after_refuses_connections() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::CrashAfter { requests: 2 });
            // A bystander connection, idle, opened before the crash.
            let mut idle = TcpStream::connect(addr).await.unwrap();
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            s.write_all(GET).await.unwrap();
            read_response(&mut s, &mut buf).await.unwrap();
            let mut s2 = TcpStream::connect(addr).await.unwrap();
            s2.write_all(GET).await.unwrap();
            let (head, _) = read_response(&mut s2, &mut Vec::new()).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200"));
            // Right after the 2nd answer: the port is closed …
            let err = TcpStream::connect(addr).await.expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
            // … and every connection is gone, including the kept-alive first one.
            let r = timeout(Duration::from_secs(2), s.write_all(GET))
                .await
                .unwrap();
            if r.is_ok() {
                let (all, _) = read_to_end_or_err(&mut s).await;
                assert!(all.is_empty());
            }
            let mut b = [0u8; 8];
            let r = timeout(Duration::from_secs(2), idle.read(&mut b))
                .await
                .expect("bystander closed");
            assert!(matches!(r, Ok(0)) || r.is_err());
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_after_zero_never_listens() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::CrashAfter { requests: 0 });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let err = TcpStream::connect(addr).await.expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
            up.stop();
        })
        .await
    }

    /// Observed on the lab machine (Linux 6.18, Firecracker VM): backlog 1 holds 2 completed
    /// connections; the 3rd SYN is dropped, so connect() times out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_accept_fills_and_then_tcp_connect_times_out() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::NeverAccept);
            let bind = Bind::Tcp(addr);
            let held = tokio::task::spawn_blocking(move || fill_backlog(&bind))
                .await
                .unwrap()
                .unwrap();
            assert!(!held.is_empty() && held.len() < 64, "held {}", held.len());
            eprintln!("NeverAccept/TCP: the queue took {} connections", held.len());
            let r = timeout(Duration::from_secs(1), TcpStream::connect(addr)).await;
            assert!(r.is_err(), "connect should hang (SYN dropped), got {r:?}");
            drop(held);
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_accept_fills_and_then_unix_connect_would_block() {
        bounded(async {
            let path = unix_path("never");
            let up = start(
                &Handle::current(),
                Bind::Unix(path.clone()),
                Behaviour::NeverAccept,
                None,
                0o666,
            )
            .unwrap();
            let bind = Bind::Unix(path.clone());
            let held = fill_backlog(&bind).unwrap();
            assert!(!held.is_empty() && held.len() < 64);
            eprintln!(
                "NeverAccept/unix: the queue took {} connections",
                held.len()
            );
            // What nginx does: a non-blocking connect.
            let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let err = s
                .connect(&SockAddr::unix(&path).unwrap())
                .expect_err("EAGAIN");
            assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
            assert_eq!(err.raw_os_error(), Some(libc::EAGAIN));
            drop(held);
            up.stop();
            assert!(!path.exists());
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http1_server_rejects_http2_preface() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Http1ForGrpc);
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS frame
            s.write_all(&preface).await.unwrap();
            let (all, _) = read_to_end_or_err(&mut s).await;
            assert!(all.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
            // Plain HTTP/1.1 still works.
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let (head, _) = read_response(&mut s, &mut Vec::new()).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200"));
            assert_eq!(up.requests(), 2);
            up.stop();
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_closes_listener_connections_and_socket_file() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Ok);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            read_response(&mut s, &mut Vec::new()).await.unwrap();
            up.stop();
            let err = TcpStream::connect(addr)
                .await
                .expect_err("refused after stop");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
            let mut b = [0u8; 8];
            let r = timeout(Duration::from_secs(2), s.read(&mut b))
                .await
                .unwrap();
            assert!(matches!(r, Ok(0)) || r.is_err());
            // Same port can be bound again right away (SO_REUSEADDR).
            let again = start(&Handle::current(), Bind::Tcp(addr), Behaviour::Ok, None, 0).unwrap();
            again.stop_and_wait().await;

            let path = unix_path("mode");
            let up = start(
                &Handle::current(),
                Bind::Unix(path.clone()),
                Behaviour::Ok,
                None,
                0o600,
            )
            .unwrap();
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            let mut u = UnixStream::connect(&path).await.unwrap();
            u.write_all(GET).await.unwrap();
            read_response(&mut u, &mut Vec::new()).await.unwrap();
            drop(up); // Drop stops too
            assert!(!path.exists());
        })
        .await
    }

    /// On a current-thread runtime `stop()` cannot block; `stop_and_wait()` is the way to know
    /// that everything is closed.
    #[tokio::test(flavor = "current_thread")]
    async fn stop_and_wait_on_a_current_thread_runtime() {
        bounded(async {
            let (up, addr) = tcp(Behaviour::Ok);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            read_response(&mut s, &mut Vec::new()).await.unwrap();
            up.stop_and_wait().await;
            let err = TcpStream::connect(addr).await.expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
            let (up, addr) = tcp(Behaviour::Hang);
            up.stop(); // only signals here; the task closes at its next poll
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(TcpStream::connect(addr).await.is_err());
        })
        .await
    }

    #[test]
    fn stop_outside_a_runtime_and_loopback_only() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let up = start(rt.handle(), loopback0(), Behaviour::Ok, None, 0).unwrap();
        let addr = up.local_addr().unwrap();
        up.stop(); // from a plain thread: waits until closed
        assert_eq!(
            std::net::TcpStream::connect(addr).unwrap_err().kind(),
            ErrorKind::ConnectionRefused
        );

        let err = start(
            rt.handle(),
            Bind::Tcp("0.0.0.0:0".parse().unwrap()),
            Behaviour::Ok,
            None,
            0,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = fill_backlog(&Bind::Tcp("192.0.2.1:80".parse().unwrap())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
