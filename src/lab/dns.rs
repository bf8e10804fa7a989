//! A tiny authoritative DNS responder for the resolver scenarios.
//!
//! nginx resolves names in `proxy_pass http://$var…` (or with `server … resolve`) at run time
//! through `resolver 127.0.0.1:PORT;`. This responder makes that resolver see exactly one kind
//! of answer ([`DnsMode`]): NXDOMAIN ("… could not be resolved (3: Host not found)"), SERVFAIL
//! ("(2: Server failure)"), silence ("(110: Operation timed out)"), or fixed A/AAAA records.
//!
//! Wire format (RFC 1035 §4), written by hand because it is small:
//!
//! ```text
//! header   id(2) flags(2) qdcount(2) ancount(2) nscount(2) arcount(2)
//! question qname(labels…, 0) qtype(2) qclass(2)
//! answer   name(2: pointer 0xC00C → the question's name at offset 12) type(2) class(2) ttl(4)
//!          rdlength(2) rdata
//! ```
//!
//! Only UDP, only loopback, datagrams of at most 512 bytes both ways. A datagram that is not a
//! well-formed single-question standard query is dropped without an answer.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::upstream::{stopped, DoneToken, Lifetime};

/// Largest datagram read or written (the classic UDP DNS limit, no EDNS).
const MAX_PACKET: usize = 512;
/// Datagrams handled over the server's lifetime (bounds the receive loop).
const MAX_DATAGRAMS: u64 = 10_000_000;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// What the responder answers to every query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsMode {
    /// RCODE 3 (name error) for every query.
    NxDomain,
    /// RCODE 2 (server failure) for every query.
    ServFail,
    /// Reads every query and never answers: the resolver times out.
    Silent,
    /// NOERROR with these A records (type A queries) or AAAA records (type AAAA), for any name;
    /// an empty NOERROR answer for other types (and for an empty list). Records that would push
    /// the answer past 512 bytes are left out and the TC bit is set.
    Answer {
        v4: Vec<Ipv4Addr>,
        v6: Vec<Ipv6Addr>,
        ttl: u32,
    },
}

/// A running DNS responder; stopping it ([`DnsServer::stop`] or `Drop`) closes its socket.
pub struct DnsServer {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    life: Lifetime,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .finish()
    }
}

impl DnsServer {
    /// The UDP address actually bound: use it as `resolver IP:PORT;`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Well-formed queries received so far (answered or not).
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Stops the responder and closes its socket (waits, at most 5 s, where blocking is safe;
    /// see `lab::upstream::Upstream::stop`).
    pub fn stop(self) {
        drop(self)
    }

    /// Like [`DnsServer::stop`], without blocking the runtime.
    pub async fn stop_and_wait(mut self) {
        self.life.stop_async().await;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.life.stop();
    }
}

/// Binds a UDP socket on `bind` (loopback only; port 0 picks a free port) and answers queries
/// on `rt` according to `mode`.
pub fn start_dns(rt: &Handle, bind: SocketAddr, mode: DnsMode) -> io::Result<DnsServer> {
    if !bind.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the fault lab only uses loopback addresses, not {bind}"),
        ));
    }
    let std_sock = std::net::UdpSocket::bind(bind)?;
    std_sock.set_nonblocking(true)?;
    let addr = std_sock.local_addr()?;
    let sock = {
        let _enter = rt.enter();
        UdpSocket::from_std(std_sock)?
    };
    let queries = Arc::new(AtomicUsize::new(0));
    let (life, shutdown, done) = Lifetime::new();
    rt.spawn(serve(sock, mode, queries.clone(), shutdown, done));
    Ok(DnsServer {
        addr,
        queries,
        life,
    })
}

async fn serve(
    sock: UdpSocket,
    mode: DnsMode,
    queries: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
    _done: DoneToken,
) {
    // One byte more than allowed, to recognise (and drop) an oversized datagram.
    let mut buf = [0u8; MAX_PACKET + 1];
    for _ in 0..MAX_DATAGRAMS {
        let (n, peer) = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // e.g. ECONNREFUSED reported for an earlier reply to a closed port: not fatal,
                // but do not spin on an error that repeats.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        if n > MAX_PACKET || !peer.ip().is_loopback() {
            continue;
        }
        let Some(q) = parse_query(&buf[..n]) else {
            continue;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        if let Some(reply) = respond(&buf[..n], &q, &mode) {
            let _ = sock.send_to(&reply, peer).await;
        }
    }
}

/// The facts of a well-formed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    /// Offset just past the question (qname + qtype + qclass).
    question_end: usize,
    qtype: u16,
    qclass: u16,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Accepts exactly: QR=0, OPCODE=0 (QUERY), QDCOUNT=1, ANCOUNT=NSCOUNT=0, an uncompressed
/// QNAME of valid labels (≤ 63 bytes each, ≤ 255 in all). Additional records (e.g. an EDNS OPT)
/// are allowed and ignored.
pub(crate) fn parse_query(p: &[u8]) -> Option<Query> {
    if p.len() < 12 || p.len() > MAX_PACKET {
        return None;
    }
    let flags = be16(p, 2)?;
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xF;
    if qr || opcode != 0 || be16(p, 4)? != 1 || be16(p, 6)? != 0 || be16(p, 8)? != 0 {
        return None;
    }
    let mut i = 12;
    let mut name_len = 0usize;
    // Bounded: every label advances i by at least 2, within a 512-byte packet.
    loop {
        let len = *p.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 {
            return None; // compression pointers or reserved label types: not in a query
        }
        name_len += len + 1;
        if name_len > 255 {
            return None;
        }
        p.get(i + 1..i + 1 + len)?;
        i += 1 + len;
    }
    let qtype = be16(p, i)?;
    let qclass = be16(p, i + 2)?;
    Some(Query {
        question_end: i + 4,
        qtype,
        qclass,
    })
}

/// Builds the answer to `query` (the raw packet) or `None` for silence.
pub(crate) fn respond(query: &[u8], q: &Query, mode: &DnsMode) -> Option<Vec<u8>> {
    let rcode: u16 = match mode {
        DnsMode::Silent => return None,
        DnsMode::NxDomain => 3,
        DnsMode::ServFail => 2,
        DnsMode::Answer { .. } => 0,
    };
    let qflags = be16(query, 2)?;
    // QR=1, OPCODE=0, AA=1, TC=0, RD copied, RA=0, RCODE.
    let mut flags = 0x8000 | 0x0400 | (qflags & 0x0100) | rcode;
    let mut out = Vec::with_capacity(MAX_PACKET);
    out.extend_from_slice(&query[0..2]); // id
    out.extend_from_slice(&[0, 0]); // flags, set below
    out.extend_from_slice(&1u16.to_be_bytes()); // qdcount
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // ancount, nscount, arcount
    out.extend_from_slice(&query[12..q.question_end]);

    let mut answers = 0u16;
    if let DnsMode::Answer { v4, v6, ttl } = mode {
        let rdatas: Vec<Vec<u8>> = match (q.qclass, q.qtype) {
            (CLASS_IN, TYPE_A) => v4.iter().map(|a| a.octets().to_vec()).collect(),
            (CLASS_IN, TYPE_AAAA) => v6.iter().map(|a| a.octets().to_vec()).collect(),
            _ => Vec::new(),
        };
        for rdata in &rdatas {
            let rr_len = 12 + rdata.len();
            if out.len() + rr_len > MAX_PACKET {
                flags |= 0x0200; // TC: the rest did not fit
                break;
            }
            out.extend_from_slice(&[0xC0, 0x0C]); // pointer to the question's name
            out.extend_from_slice(&q.qtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
            answers += 1;
        }
    }
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    /// A standard query with RD set, as a stub resolver sends it.
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
        q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    /// The decoded parts of an answer this test cares about.
    #[derive(Debug)]
    struct Reply {
        id: u16,
        flags: u16,
        qdcount: u16,
        rdata: Vec<(u16, u32, Vec<u8>)>, // (type, ttl, rdata)
    }

    fn decode(p: &[u8], question_len: usize) -> Reply {
        let ancount = be16(p, 6).unwrap();
        let mut i = 12 + question_len;
        let mut rdata = Vec::new();
        for _ in 0..ancount {
            assert_eq!(
                &p[i..i + 2],
                &[0xC0, 0x0C],
                "name is a pointer to the question"
            );
            let t = be16(p, i + 2).unwrap();
            assert_eq!(be16(p, i + 4).unwrap(), CLASS_IN);
            let ttl = u32::from_be_bytes(p[i + 6..i + 10].try_into().unwrap());
            let len = be16(p, i + 10).unwrap() as usize;
            rdata.push((t, ttl, p[i + 12..i + 12 + len].to_vec()));
            i += 12 + len;
        }
        assert_eq!(i, p.len(), "no trailing bytes");
        Reply {
            id: be16(p, 0).unwrap(),
            flags: be16(p, 2).unwrap(),
            qdcount: be16(p, 4).unwrap(),
            rdata,
        }
    }

    async fn ask(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(packet, server).await.unwrap();
        let mut buf = [0u8; 1024];
        match timeout(Duration::from_millis(500), c.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                assert_eq!(from, server);
                Some(buf[..n].to_vec())
            }
            _ => None,
        }
    }

    fn lo0() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_a_and_aaaa_records() {
        timeout(Duration::from_secs(20), async {
            let mode = DnsMode::Answer {
                v4: vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)],
                v6: vec![Ipv6Addr::LOCALHOST],
                ttl: 30,
            };
            let dns = start_dns(&Handle::current(), lo0(), mode).unwrap();
            let name = "backend.lab.test";
            let qlen = name.len() + 2 + 4;

            let q = query(0xBEEF, name, TYPE_A);
            let r = ask(dns.addr(), &q).await.expect("answer");
            assert_eq!(&r[12..12 + qlen], &q[12..], "question copied");
            let d = decode(&r, qlen);
            assert_eq!(d.id, 0xBEEF);
            assert_eq!(d.flags, 0x8000 | 0x0400 | 0x0100, "QR AA RD, NOERROR");
            assert_eq!(d.qdcount, 1);
            assert_eq!(
                d.rdata,
                vec![
                    (TYPE_A, 30, vec![127, 0, 0, 2]),
                    (TYPE_A, 30, vec![127, 0, 0, 3])
                ]
            );

            let r = ask(dns.addr(), &query(7, name, TYPE_AAAA)).await.unwrap();
            let d = decode(&r, qlen);
            assert_eq!(
                d.rdata,
                vec![(TYPE_AAAA, 30, Ipv6Addr::LOCALHOST.octets().to_vec())]
            );

            // Another type (MX = 15): NOERROR, no answers.
            let r = ask(dns.addr(), &query(8, name, 15)).await.unwrap();
            let d = decode(&r, qlen);
            assert_eq!(d.flags & 0xF, 0);
            assert!(d.rdata.is_empty());
            assert_eq!(dns.queries(), 3);
            dns.stop();
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nxdomain_servfail_and_silence() {
        timeout(Duration::from_secs(20), async {
            let name = "gone.lab.test";
            let qlen = name.len() + 2 + 4;
            let nx = start_dns(&Handle::current(), lo0(), DnsMode::NxDomain).unwrap();
            let d = decode(
                &ask(nx.addr(), &query(1, name, TYPE_A)).await.unwrap(),
                qlen,
            );
            assert_eq!((d.id, d.flags & 0xF), (1, 3));
            assert!(d.flags & 0x8000 != 0 && d.rdata.is_empty());

            let sf = start_dns(&Handle::current(), lo0(), DnsMode::ServFail).unwrap();
            let d = decode(
                &ask(sf.addr(), &query(2, name, TYPE_AAAA)).await.unwrap(),
                qlen,
            );
            assert_eq!((d.id, d.flags & 0xF), (2, 2));

            let quiet = start_dns(&Handle::current(), lo0(), DnsMode::Silent).unwrap();
            assert!(ask(quiet.addr(), &query(3, name, TYPE_A)).await.is_none());
            assert_eq!(quiet.queries(), 1, "read, never answered");
            nx.stop();
            sf.stop();
            quiet.stop_and_wait().await;
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_queries_are_dropped_silently() {
        timeout(Duration::from_secs(20), async {
            let mode = DnsMode::Answer {
                v4: vec![Ipv4Addr::LOCALHOST],
                v6: vec![],
                ttl: 5,
            };
            let dns = start_dns(&Handle::current(), lo0(), mode).unwrap();
            let good = query(9, "a.test", TYPE_A);
            let mut response = good.clone();
            response[2] |= 0x80; // QR set: a response, not a query
            let mut two_questions = good.clone();
            two_questions[5] = 2;
            let mut pointer = good[..12].to_vec();
            pointer.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
            let truncated = good[..good.len() - 3].to_vec();
            let long_label = query(10, &"x".repeat(64), TYPE_A);
            let oversized = [good.clone(), vec![0; 600]].concat();
            for bad in [
                &b"\x00\x01"[..],
                &response,
                &two_questions,
                &pointer,
                &truncated,
                &long_label,
                &oversized,
            ] {
                assert!(ask(dns.addr(), bad).await.is_none(), "{bad:?}");
            }
            assert_eq!(dns.queries(), 0);
            // Still serving afterwards.
            let r = ask(dns.addr(), &good).await.unwrap();
            assert_eq!(
                decode(&r, 6 + 2 + 4).rdata,
                vec![(TYPE_A, 5, vec![127, 0, 0, 1])]
            );
            dns.stop();
        })
        .await
        .unwrap()
    }

    #[test]
    fn answers_stay_within_512_bytes() {
        let v4: Vec<Ipv4Addr> = (0..100).map(|i| Ipv4Addr::new(127, 0, 1, i)).collect();
        let mode = DnsMode::Answer {
            v4,
            v6: vec![],
            ttl: 1,
        };
        let q = query(1, "many.test", TYPE_A);
        let parsed = parse_query(&q).unwrap();
        let r = respond(&q, &parsed, &mode).unwrap();
        assert!(r.len() <= MAX_PACKET);
        assert!(be16(&r, 2).unwrap() & 0x0200 != 0, "TC set");
        let d = decode(&r, 9 + 2 + 4);
        assert_eq!(d.rdata.len(), (MAX_PACKET - 12 - 15) / 16);
    }

    #[test]
    fn loopback_only() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err =
            start_dns(rt.handle(), "0.0.0.0:0".parse().unwrap(), DnsMode::Silent).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
