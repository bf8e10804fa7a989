//! The lab's HTTP client: writes a request itself and reads the raw answer, so that what nginx
//! really sent is seen as it is (an HTTP/0.9 pass-through has no status line at all). Every step
//! has a deadline and every read a size bound.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The most of a response the client keeps.
const MAX_RESPONSE: usize = 256 * 1024;

/// One request of a scenario.
#[derive(Debug, Clone)]
pub struct LabRequest {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl LabRequest {
    pub fn get(path: &str) -> LabRequest {
        LabRequest {
            method: "GET",
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn post(path: &str, body: &str) -> LabRequest {
        LabRequest {
            method: "POST",
            path: path.to_string(),
            headers: Vec::new(),
            body: Some(body.to_string()),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> LabRequest {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: lab.test\r\nUser-Agent: gwdoctor-lab\r\nConnection: close\r\n",
            self.method, self.path
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = &self.body {
            out.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if let Some(body) = &self.body {
            bytes.extend_from_slice(body.as_bytes());
        }
        bytes
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A status line was read.
    Status {
        code: u16,
        server: Option<String>,
        body: String,
    },
    /// Bytes without a status line: the gateway passed an HTTP/0.9 answer through.
    Http09 { first_bytes: String },
    /// The connection closed before any byte.
    Empty,
    /// The gateway could not be reached.
    ConnectFailed(String),
    /// No complete answer before the deadline.
    TimedOut,
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A short label: `502`, `HTTP/0.9`, `refused`, `timeout`, `empty`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Status { code, .. } => code.to_string(),
            Outcome::Http09 { .. } => "HTTP/0.9".into(),
            Outcome::Empty => "empty".into(),
            Outcome::ConnectFailed(e) => format!("connect failed ({e})"),
            Outcome::TimedOut => "timeout".into(),
        }
    }
}

/// Sends `request` to `addr` and reads the answer within `deadline` in all. With `source`, the
/// connection is made from that address and port instead of an ephemeral one (the scenario that
/// exhausts the ephemeral range must not starve its own client).
pub fn send(
    addr: SocketAddr,
    request: &LabRequest,
    deadline: Duration,
    source: Option<SocketAddr>,
) -> Outcome {
    let start = Instant::now();
    let mut stream = match connect(addr, source, deadline.min(Duration::from_secs(5))) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Outcome::TimedOut,
        Err(e) => return Outcome::ConnectFailed(e.to_string()),
    };
    let _ = stream.set_write_timeout(Some(deadline));
    if stream.write_all(&request.bytes()).is_err() {
        return Outcome::Empty;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return if buf.is_empty() {
                Outcome::TimedOut
            } else {
                interpret(&buf)
            };
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() >= MAX_RESPONSE {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return if buf.is_empty() {
                    Outcome::TimedOut
                } else {
                    interpret(&buf)
                };
            }
            Err(_) => break,
        }
    }
    if buf.is_empty() {
        Outcome::Empty
    } else {
        interpret(&buf)
    }
}

fn connect(
    addr: SocketAddr,
    source: Option<SocketAddr>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect_timeout(&addr, timeout);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&source.into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

fn interpret(buf: &[u8]) -> Outcome {
    if !buf.starts_with(b"HTTP/") {
        return Outcome::Http09 {
            first_bytes: String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned(),
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(head)) => {
            let server = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("server"))
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            Outcome::Status {
                code: response.code.unwrap_or(0),
                server,
                body: String::from_utf8_lossy(&buf[head..buf.len().min(head + 8192)]).into_owned(),
            }
        }
        // A status line with a broken or cut head still has a code worth reporting.
        _ => {
            let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
            let code = String::from_utf8_lossy(line)
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            Outcome::Status {
                code,
                server: None,
                body: String::new(),
            }
        }
    }
}
