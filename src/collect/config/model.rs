//! What the configuration means: servers, locations, upstream groups, and every target nginx
//! passes requests to, with the settings that apply there.
//!
//! [`build`] walks the parsed files from the main file the way nginx reads them: each `include`
//! is expanded where it appears (a snippet included from three servers is read three times, in
//! each context), each directive is checked against the table of known directives for that
//! context ([`Issue`]), and each `*_pass` becomes a [`Target`] whose [`Settings`] follow nginx's
//! inheritance: a directive set in a location wins over the server's, which wins over http's,
//! wherever in the block it is written; array directives such as `proxy_set_header` are
//! inherited only by a level that sets none of its own.

use super::directives::{self, mask};
use super::parser::{unescape, Config, FileId, Stmt, Stmts};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// A place in the configuration: a file of [`Config::files`] and a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Loc {
    pub file: FileId,
    pub line: u32,
}

/// Where a request goes: a TCP host and port, or a unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Address {
    Tcp { host: String, port: Option<u16> },
    Unix { path: String },
}

impl Address {
    /// Parses `host:port`, `[v6]:port`, `host`, `port` or `unix:/path` (a trailing `:` after
    /// the socket path, as in `http://unix:/s.sock:/uri`, is dropped).
    pub fn parse(s: &str) -> Option<Address> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_suffix(':').unwrap_or(path);
            return (!path.is_empty()).then(|| Address::Unix {
                path: path.to_string(),
            });
        }
        if s.is_empty() {
            return None;
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            return Some(Address::Tcp {
                host: host.to_string(),
                port,
            });
        }
        if let Ok(port) = s.parse::<u16>() {
            return Some(Address::Tcp {
                host: "*".into(),
                port: Some(port),
            });
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => Some(Address::Tcp {
                host: host.to_string(),
                port: Some(port.parse().ok()?),
            }),
            Some(_) => s.parse::<IpAddr>().ok().map(|_| Address::Tcp {
                host: s.to_string(),
                port: None,
            }),
            None => Some(Address::Tcp {
                host: s.to_string(),
                port: None,
            }),
        }
    }

    pub fn host_is_ip(&self) -> bool {
        matches!(self, Address::Tcp { host, .. } if host.parse::<IpAddr>().is_ok() || host == "*")
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix { path } => write!(f, "unix:{path}"),
            Address::Tcp {
                host,
                port: Some(p),
            } if host.contains(':') => write!(f, "[{host}]:{p}"),
            Address::Tcp {
                host,
                port: Some(p),
            } => write!(f, "{host}:{p}"),
            Address::Tcp { host, port: None } => write!(f, "{host}"),
        }
    }
}

/// One setting as it applies at a target: its value and where it was set (`None`: nginx's
/// default).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// Inline when short (most values are): one target has nineteen settings and a large
    /// configuration thousands of targets.
    pub value: compact_str::CompactString,
    pub at: Option<Loc>,
}

impl Setting {
    /// A default of nginx's (no place in the configuration).
    const fn fixed(value: &'static str) -> Setting {
        Setting {
            value: compact_str::CompactString::const_new(value),
            at: None,
        }
    }

    /// The value as a duration in milliseconds (nginx's time syntax).
    pub fn ms(&self) -> Option<u64> {
        parse_msec(&self.value)
    }

    /// The value as a size in bytes (nginx's size syntax).
    pub fn bytes(&self) -> Option<u64> {
        parse_size(&self.value)
    }

    pub fn is_on(&self) -> bool {
        self.value.eq_ignore_ascii_case("on")
    }
}

/// One of the settings of [`Settings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    ConnectTimeout,
    SendTimeout,
    ReadTimeout,
    BufferSize,
    Buffers,
    Buffering,
    NextUpstream,
    /// `proxy_http_version` (proxy only).
    HttpVersion,
    /// The `Connection` header nginx sends upstream (`proxy_set_header Connection …`); unset
    /// means nginx sends `Connection: close`.
    ConnectionHeader,
    /// The `Host` header (`proxy_set_header Host …`).
    HostHeader,
    /// `fastcgi_keep_conn` (FastCGI only).
    KeepConn,
    SslServerName,
    SslName,
    SslVerify,
    SslTrustedCertificate,
    SslProtocols,
    /// `resolver` addresses (and parameters) in scope.
    Resolver,
    ResolverTimeout,
}

/// A default of nginx's, as a `&'static Setting`.
macro_rules! fixed {
    ($value:literal) => {{
        static SETTING: Setting = Setting::fixed($value);
        Some(&SETTING)
    }};
}

impl Field {
    pub const ALL: [Field; 18] = [
        Field::ConnectTimeout,
        Field::SendTimeout,
        Field::ReadTimeout,
        Field::BufferSize,
        Field::Buffers,
        Field::Buffering,
        Field::NextUpstream,
        Field::HttpVersion,
        Field::ConnectionHeader,
        Field::HostHeader,
        Field::KeepConn,
        Field::SslServerName,
        Field::SslName,
        Field::SslVerify,
        Field::SslTrustedCertificate,
        Field::SslProtocols,
        Field::Resolver,
        Field::ResolverTimeout,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Field::ConnectTimeout => "connect_timeout",
            Field::SendTimeout => "send_timeout",
            Field::ReadTimeout => "read_timeout",
            Field::BufferSize => "buffer_size",
            Field::Buffers => "buffers",
            Field::Buffering => "buffering",
            Field::NextUpstream => "next_upstream",
            Field::HttpVersion => "http_version",
            Field::ConnectionHeader => "connection_header",
            Field::HostHeader => "host_header",
            Field::KeepConn => "keep_conn",
            Field::SslServerName => "ssl_server_name",
            Field::SslName => "ssl_name",
            Field::SslVerify => "ssl_verify",
            Field::SslTrustedCertificate => "ssl_trusted_certificate",
            Field::SslProtocols => "ssl_protocols",
            Field::Resolver => "resolver",
            Field::ResolverTimeout => "resolver_timeout",
        }
    }

    /// Whether nginx has this setting for a kind of target.
    pub fn applies(self, kind: PassKind) -> bool {
        let stream = kind == PassKind::Stream;
        match self {
            Field::BufferSize => !stream,
            Field::Buffers | Field::Buffering => matches!(
                kind,
                PassKind::Proxy | PassKind::Fastcgi | PassKind::Uwsgi | PassKind::Scgi
            ),
            Field::HttpVersion | Field::ConnectionHeader | Field::HostHeader => {
                kind == PassKind::Proxy
            }
            Field::KeepConn => kind == PassKind::Fastcgi,
            Field::SslServerName
            | Field::SslName
            | Field::SslVerify
            | Field::SslTrustedCertificate
            | Field::SslProtocols => matches!(
                kind,
                PassKind::Proxy | PassKind::Grpc | PassKind::Uwsgi | PassKind::Stream
            ),
            _ => true,
        }
    }

    /// nginx's default where the setting applies (`None`: unset unless configured).
    fn default(self, kind: PassKind) -> Option<&'static Setting> {
        let stream = kind == PassKind::Stream;
        match self {
            Field::ConnectTimeout => fixed!("60s"),
            Field::SendTimeout | Field::ReadTimeout if stream => fixed!("10m"),
            Field::SendTimeout | Field::ReadTimeout => fixed!("60s"),
            Field::BufferSize => fixed!("4k"),
            Field::Buffers => fixed!("8 4k"),
            Field::Buffering => fixed!("on"),
            Field::NextUpstream if stream => fixed!("on"),
            Field::NextUpstream => fixed!("error timeout"),
            Field::HttpVersion => fixed!("1.0"),
            Field::KeepConn | Field::SslServerName | Field::SslVerify => fixed!("off"),
            Field::ResolverTimeout => fixed!("30s"),
            Field::ConnectionHeader
            | Field::HostHeader
            | Field::SslName
            | Field::SslTrustedCertificate
            | Field::SslProtocols
            | Field::Resolver => None,
        }
    }
}

/// The settings that decide how a target is talked to, as nginx applies them there.
///
/// Only what the configuration sets is stored: the rest are nginx's defaults, given when
/// asked. A large configuration has thousands of targets, most settings of which are defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    kind: PassKind,
    /// In [`Field`] order.
    set: Box<[(Field, Setting)]>,
}

impl Settings {
    /// The setting at the target: the configuration's, else nginx's default; `None` where
    /// it does not apply to this kind of target or is unset with no default.
    pub fn get(&self, field: Field) -> Option<&Setting> {
        if !field.applies(self.kind) {
            return None;
        }
        match self.set.iter().find(|(f, _)| *f == field) {
            Some((_, s)) => Some(s),
            None => field.default(self.kind),
        }
    }

    /// A setting every kind of target has, with a default.
    fn always(&self, field: Field) -> &Setting {
        self.get(field)
            .expect("a setting of every kind, with a default")
    }

    pub fn connect_timeout(&self) -> &Setting {
        self.always(Field::ConnectTimeout)
    }
    pub fn send_timeout(&self) -> &Setting {
        self.always(Field::SendTimeout)
    }
    pub fn read_timeout(&self) -> &Setting {
        self.always(Field::ReadTimeout)
    }
    pub fn resolver_timeout(&self) -> &Setting {
        self.always(Field::ResolverTimeout)
    }
    pub fn http_version(&self) -> Option<&Setting> {
        self.get(Field::HttpVersion)
    }
    pub fn connection_header(&self) -> Option<&Setting> {
        self.get(Field::ConnectionHeader)
    }
    pub fn host_header(&self) -> Option<&Setting> {
        self.get(Field::HostHeader)
    }
    pub fn keep_conn(&self) -> Option<&Setting> {
        self.get(Field::KeepConn)
    }
    pub fn ssl_server_name(&self) -> Option<&Setting> {
        self.get(Field::SslServerName)
    }
    pub fn ssl_name(&self) -> Option<&Setting> {
        self.get(Field::SslName)
    }
    pub fn ssl_verify(&self) -> Option<&Setting> {
        self.get(Field::SslVerify)
    }
    pub fn ssl_trusted_certificate(&self) -> Option<&Setting> {
        self.get(Field::SslTrustedCertificate)
    }
    pub fn resolver(&self) -> Option<&Setting> {
        self.get(Field::Resolver)
    }
}

/// Every setting by name, defaults included (`null` where one does not apply).
impl Serialize for Settings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(Field::ALL.len()))?;
        for field in Field::ALL {
            map.serialize_entry(field.name(), &self.get(field))?;
        }
        map.end()
    }
}

/// Which `*_pass` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PassKind {
    Proxy,
    Fastcgi,
    Uwsgi,
    Grpc,
    Scgi,
    Memcached,
    /// `proxy_pass` in a `stream` server: plain TCP (or TLS with `proxy_ssl on`).
    Stream,
}

impl PassKind {
    pub fn directive(self) -> &'static str {
        match self {
            PassKind::Proxy | PassKind::Stream => "proxy_pass",
            PassKind::Fastcgi => "fastcgi_pass",
            PassKind::Uwsgi => "uwsgi_pass",
            PassKind::Grpc => "grpc_pass",
            PassKind::Scgi => "scgi_pass",
            PassKind::Memcached => "memcached_pass",
        }
    }
}

/// Where a target sends requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Dest {
    /// A fixed address (a name here is resolved when nginx starts, unless [`Target::runtime`]).
    Address { address: Address },
    /// An `upstream` group, by index into [`Model::upstreams`].
    Group { name: String, index: usize },
    /// The host part holds variables: resolved per request. `candidates` are the values the
    /// configuration can give it (`set`, `map`), when it says.
    Variable {
        expr: String,
        candidates: Vec<String>,
    },
}

/// One `*_pass`: where it is, where it sends requests, and how.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub kind: PassKind,
    /// The argument as written. (The short strings of a target are inline: a large
    /// configuration has thousands of targets.)
    pub raw: compact_str::CompactString,
    pub loc: Loc,
    /// The include statements that brought this line in, outermost first.
    pub via: Vec<Loc>,
    /// `http`, `https`, `grpc`, `grpcs`, `uwsgi`, `suwsgi`, or the kind's own protocol.
    pub scheme: compact_str::CompactString,
    pub tls: bool,
    pub dest: Dest,
    /// The URL holds variables, so nginx builds it (and resolves a name in it) per request.
    pub runtime: bool,
    /// Index into [`Model::servers`].
    pub server: Option<usize>,
    /// The location path(s) around it (`/api/ › if ($x)`).
    pub location: compact_str::CompactString,
    pub settings: Settings,
}

/// A `listen` of a server.
#[derive(Debug, Clone, Serialize)]
pub struct Listen {
    pub raw: String,
    pub ssl: bool,
    pub http2: bool,
    pub default_server: bool,
    pub loc: Loc,
}

/// A location of a server.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    /// Modifier and path as written (`= /x`, `~* \.php$`, `/api/`): inline when short.
    pub path: compact_str::CompactString,
    pub loc: Loc,
    /// Nesting depth (1: directly in the server).
    pub depth: usize,
}

/// A virtual server.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// `http` or `stream` (mail servers are not modelled).
    pub protocol: &'static str,
    pub loc: Loc,
    pub via: Vec<Loc>,
    pub listen: Vec<Listen>,
    pub names: Vec<String>,
    pub locations: Vec<Location>,
}

/// A `server` line of an upstream group.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamServer {
    pub raw: String,
    pub address: Option<Address>,
    pub weight: u32,
    pub max_fails: u32,
    /// Whether `max_fails` was written.
    pub max_fails_set: bool,
    pub fail_timeout: String,
    pub backup: bool,
    pub down: bool,
    pub resolve: bool,
    pub loc: Loc,
}

/// An `upstream` block.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamGroup {
    pub name: String,
    pub protocol: &'static str,
    pub loc: Loc,
    pub servers: Vec<UpstreamServer>,
    /// `keepalive N`: idle connections kept per worker.
    pub keepalive: Option<(u32, Loc)>,
    pub keepalive_timeout: Option<Setting>,
    /// `hash`, `ip_hash`, `least_conn`, `random` … when not round-robin.
    pub balancer: Option<String>,
    /// Targets that use this group.
    pub used_by: Vec<usize>,
}

/// A directive nginx -t would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub loc: Loc,
    pub via: Vec<Loc>,
    pub directive: String,
    pub message: String,
    /// For an unknown directive: the known one it most likely meant.
    pub suggestion: Option<String>,
    /// `unknown`, `context`, `arguments`, `address`.
    pub kind: &'static str,
}

/// An access log and the format it is written in.
#[derive(Debug, Clone, Serialize)]
pub struct AccessLog {
    pub path: String,
    pub format_name: String,
    /// The format's text when the configuration defines it (`combined` is built in).
    pub format: Option<String>,
    pub loc: Loc,
}

/// Main-context settings that matter for the checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MainConf {
    /// `user USER [GROUP]`.
    pub user: Option<(String, Option<String>, Loc)>,
    pub worker_processes: Option<Setting>,
    pub worker_rlimit_nofile: Option<Setting>,
    pub worker_connections: Option<Setting>,
    pub pid: Option<Setting>,
}

/// The whole model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Model {
    pub main: MainConf,
    pub servers: Vec<Server>,
    pub upstreams: Vec<UpstreamGroup>,
    /// Boxed: they are built on several threads and then gathered in order, and gathering
    /// moves a pointer each instead of copying thousands of 200-byte records into fresh memory.
    #[allow(clippy::vec_box)]
    pub targets: Vec<Box<Target>>,
    pub issues: Vec<Issue>,
    pub access_logs: Vec<AccessLog>,
    /// `set` and `map` values per variable name (without `$`).
    pub variables: HashMap<String, Vec<String>>,
    /// Lines where a no-break (or other Unicode) space separates words.
    pub odd_spaces: Vec<Loc>,
}

/// Parses nginx's time syntax (`500ms`, `30s`, `1m30s`, `2h`; plain numbers are seconds).
pub fn parse_msec(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next() {
                None => (1000, 0),
                Some('s') => (1000, 1),
                Some('m') => (60_000, 1),
                Some('h') => (3_600_000, 1),
                Some('d') => (86_400_000, 1),
                Some('w') => (604_800_000, 1),
                Some('M') => (2_592_000_000, 1),
                Some('y') => (31_536_000_000, 1),
                _ => return None,
            }
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// Parses nginx's size syntax (`4k`, `8K`, `1m`, `1g`; plain numbers are bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1024),
        (i, 'm' | 'M') => (&s[..i], 1024 * 1024),
        (i, 'g' | 'G') => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(unit)
}

/// The context nginx reads a block in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Main,
    Events,
    Http,
    HttpServer,
    HttpLocation,
    HttpServerIf,
    HttpLocationIf,
    HttpLimitExcept,
    HttpUpstream,
    Stream,
    StreamServer,
    StreamUpstream,
    Mail,
    MailServer,
    /// A block whose body is not directives (`map`, `types`, `geo`, `split_clients` …).
    Opaque,
}

impl Ctx {
    fn bit(self) -> u32 {
        match self {
            Ctx::Main => mask::MAIN,
            Ctx::Events => mask::EVENT,
            Ctx::Http => mask::HTTP_MAIN,
            Ctx::HttpServer => mask::HTTP_SRV,
            Ctx::HttpLocation => mask::HTTP_LOC,
            Ctx::HttpServerIf => mask::HTTP_SIF,
            Ctx::HttpLocationIf => mask::HTTP_LIF,
            Ctx::HttpLimitExcept => mask::HTTP_LMT,
            Ctx::HttpUpstream => mask::HTTP_UPS,
            Ctx::Stream => mask::STREAM_MAIN,
            Ctx::StreamServer => mask::STREAM_SRV,
            Ctx::StreamUpstream => mask::STREAM_UPS,
            Ctx::Mail => mask::MAIL_MAIN,
            Ctx::MailServer => mask::MAIL_SRV,
            Ctx::Opaque => 0,
        }
    }

    fn enter(self, directive: &str) -> Ctx {
        match (self, directive) {
            (Ctx::Main, "events") => Ctx::Events,
            (Ctx::Main, "http") => Ctx::Http,
            (Ctx::Main, "stream") => Ctx::Stream,
            (Ctx::Main, "mail") => Ctx::Mail,
            (Ctx::Http, "server") => Ctx::HttpServer,
            (Ctx::Http, "upstream") => Ctx::HttpUpstream,
            (Ctx::HttpServer, "location") | (Ctx::HttpLocation, "location") => Ctx::HttpLocation,
            (Ctx::HttpServer, "if") => Ctx::HttpServerIf,
            (Ctx::HttpLocation, "if") => Ctx::HttpLocationIf,
            (Ctx::HttpLocation, "limit_except") => Ctx::HttpLimitExcept,
            (Ctx::Stream, "server") => Ctx::StreamServer,
            (Ctx::Stream, "upstream") => Ctx::StreamUpstream,
            (Ctx::Mail, "server") => Ctx::MailServer,
            _ => Ctx::Opaque,
        }
    }
}

/// One statement with the file it is in and the include chain that brought it in.
#[derive(Clone, Copy)]
struct Item<'a> {
    stmt: Stmt<'a>,
    /// The statement's name, looked at for every item of every block.
    name: &'a str,
    file: FileId,
    via: usize,
    /// The directive's index in the table ([`UNKNOWN`] for a name not in it).
    id: u16,
}

/// The [`Item::id`] of a directive the table does not know.
const UNKNOWN: u16 = u16::MAX;

impl<'a> Item<'a> {
    fn new(stmt: Stmt<'a>, file: FileId, via: usize) -> Item<'a> {
        Item {
            stmt,
            name: stmt.name(),
            file,
            via,
            id: stmt.id().unwrap_or(UNKNOWN),
        }
    }

    /// Where the statement is.
    fn loc(&self) -> Loc {
        Loc {
            file: self.file,
            line: self.stmt.line(),
        }
    }

    fn is(&self, key: Key) -> bool {
        match key.index {
            Some(index) => self.id == index,
            None => self.name == key.name,
        }
    }
}

/// A directive name the model looks for, with its table index when it has one, so that
/// finding it compares numbers rather than strings.
#[derive(Debug, Clone, Copy)]
struct Key {
    name: &'static str,
    index: Option<u16>,
}

impl Key {
    fn of(name: &'static str) -> Key {
        Key {
            name,
            index: directives::index_of(name),
        }
    }
}

/// One level of inheritance: the directives of a block, and the level around it.
struct Level<'a, 'p> {
    parent: Option<&'p Level<'a, 'p>>,
    items: &'p [Item<'a>],
    /// Which ids (modulo 256) occur here: most settings are set at no level or at one, so a
    /// lookup mostly skips a level on one bit instead of scanning it.
    present: [u64; 4],
    /// Whether a directive the table does not know occurs here.
    has_unknown: bool,
    /// `present` of this level and every level around it: most settings are set nowhere
    /// above a target, which this tells at once.
    present_around: [u64; 4],
    /// Positions of each known directive in `items`, for big blocks (an http{} with thousands
    /// of servers is searched for every setting of every target).
    index: Option<rustc_hash::FxHashMap<u16, Vec<u32>>>,
}

/// How deep the walk follows blocks (through includes, a file's own limit being
/// [`super::parser::MAX_DEPTH`]).
const MAX_WALK_DEPTH: usize = 200;

/// Blocks with more statements than this get an index.
const INDEX_FROM: usize = 24;

impl<'a, 'p> Level<'a, 'p> {
    fn new(parent: Option<&'p Level<'a, 'p>>, items: &'p [Item<'a>]) -> Level<'a, 'p> {
        let mut present = [0u64; 4];
        let mut has_unknown = false;
        for item in items {
            if item.id == UNKNOWN {
                has_unknown = true;
            } else {
                present[usize::from(item.id >> 6) & 3] |= 1 << (item.id & 63);
            }
        }
        let index = (items.len() > INDEX_FROM).then(|| {
            let mut index: rustc_hash::FxHashMap<u16, Vec<u32>> = Default::default();
            for (i, item) in items.iter().enumerate() {
                if item.id != UNKNOWN {
                    index.entry(item.id).or_default().push(i as u32);
                }
            }
            index
        });
        let mut present_around = present;
        if let Some(p) = parent {
            for (mine, theirs) in present_around.iter_mut().zip(p.present_around) {
                *mine |= theirs;
            }
        }
        Level {
            parent,
            items,
            present,
            has_unknown,
            present_around,
            index,
        }
    }

    /// Whether `key` may occur at this level (false: it surely does not).
    fn may_have(&self, key: Key) -> bool {
        match key.index {
            Some(id) => self.present[usize::from(id >> 6) & 3] & (1 << (id & 63)) != 0,
            None => self.has_unknown,
        }
    }

    /// The positions of `key` at this level, when the level has an index for it.
    fn indexed(&self, key: Key) -> Option<&[u32]> {
        match (&self.index, key.index) {
            (Some(index), Some(id)) => Some(index.get(&id).map_or(&[][..], Vec::as_slice)),
            _ => None,
        }
    }

    /// Whether `key` may occur at this level or one around it (false: it surely does not).
    fn may_have_around(&self, key: Key) -> bool {
        match key.index {
            Some(id) => self.present_around[usize::from(id >> 6) & 3] & (1 << (id & 63)) != 0,
            None => true,
        }
    }

    /// The nearest level's last use of `key`.
    fn last(&self, key: Key) -> Option<Item<'a>> {
        if !self.may_have_around(key) {
            return None;
        }
        let mut level = Some(self);
        while let Some(l) = level {
            if l.may_have(key) {
                let found = match l.indexed(key) {
                    Some(positions) => positions.last().map(|&i| l.items[i as usize]),
                    None => l.items.iter().rev().find(|i| i.is(key)).copied(),
                };
                if found.is_some() {
                    return found;
                }
            }
            level = l.parent;
        }
        None
    }

    /// The last of the uses of `key` at the nearest level that has one (array directives,
    /// such as `proxy_set_header`) for which `wanted` holds.
    fn last_of_all(&self, key: Key, wanted: impl Fn(&Item) -> bool) -> Option<Item<'a>> {
        if !self.may_have_around(key) {
            return None;
        }
        let mut level = Some(self);
        while let Some(l) = level {
            if l.may_have(key) {
                match l.indexed(key) {
                    Some([]) => {}
                    Some(positions) => {
                        return positions
                            .iter()
                            .rev()
                            .map(|&i| l.items[i as usize])
                            .find(|i| wanted(i));
                    }
                    None => {
                        let mut uses = l.items.iter().rev().filter(|i| i.is(key)).peekable();
                        if uses.peek().is_some() {
                            return uses.find(|i| wanted(i)).copied();
                        }
                    }
                }
            }
            level = l.parent;
        }
        None
    }
}

struct Builder<'a> {
    config: &'a Config,
    model: Model,
    /// The include chains of the builder this one works for ([`Builder::part`]): an item's
    /// `via` below their number is one of them. A chain is its last include and the chain
    /// before it (a tree: one entry per include expanded, not a list each); 0 is the empty one.
    outer_chains: &'a [(usize, Loc)],
    /// The include chains found by this builder, numbered after `outer_chains`.
    chains: Vec<(usize, Loc)>,
    log_formats: HashMap<String, String>,
    /// What each `set` and `map` gives a variable, in the configuration's order: the model's
    /// `variables` and the targets' candidates are made from it in `finish`.
    var_values: Vec<VarValues>,
    /// Whether the blocks of the http (or stream) level are built on all cores (only the
    /// outermost builder does it: the parts it hands out work alone).
    parallel: bool,
    /// Emptied item lists of blocks already walked, for the next blocks to fill (a block's
    /// list lives as long as its walk; thousands of blocks would each allocate one).
    spare_items: Vec<Vec<Item<'a>>>,
    /// Where a target's settings are gathered before they are boxed at their number.
    found_settings: Vec<(Field, Setting)>,
}

/// The values one `set` or `map` gives a variable (named without `$`), and where they apply.
struct VarValues {
    name: String,
    values: Vec<String>,
    /// `None`: a `map`'s, which applies in every server; else a `set`'s, which applies in
    /// its own server (`Some(None)`: a `set` outside any server, which nginx refuses).
    set_in: Option<Option<usize>>,
}

/// What a [`Builder::part`] built, to be merged.
struct Part {
    model: Model,
    var_values: Vec<VarValues>,
}

/// An http (or stream) level with at least this many blocks has them built in parallel.
const PARALLEL_FROM: usize = 16;

/// How many statements of such a level one part builds.
const PART_SIZE: usize = 64;

/// Builds the model of a loaded configuration.
pub fn build(config: &Config) -> Model {
    build_with(config, true)
}

/// [`build`], with runs of server blocks built in parallel or not (the same model either way).
fn build_with(config: &Config, parallel: bool) -> Model {
    let mut b = Builder {
        config,
        model: Model::default(),
        outer_chains: &[],
        chains: vec![(0, Loc { file: 0, line: 0 })],
        log_formats: HashMap::new(),
        var_values: Vec::new(),
        parallel,
        spare_items: Vec::new(),
        found_settings: Vec::new(),
    };
    let items = b.flatten(config.files[0].stmts(), 0, 0);
    let root = Level::new(None, &items);
    b.walk(&items, Ctx::Main, &root, None, "", 0);
    b.finish();
    for (id, f) in config.files.iter().enumerate() {
        for &line in &f.odd_spaces {
            b.model.odd_spaces.push(Loc { file: id, line });
        }
    }
    b.model
}

impl<'a> Builder<'a> {
    /// A builder for part of the configuration, working for `self` (see [`Builder::merge`]).
    fn part<'s>(&'s self) -> Builder<'s> {
        Builder {
            config: self.config,
            model: Model::default(),
            outer_chains: &self.chains,
            chains: Vec::new(),
            log_formats: HashMap::new(),
            var_values: Vec::new(),
            parallel: false,
            spare_items: Vec::new(),
            found_settings: Vec::new(),
        }
    }

    /// The include statements that brought in what chain `via` holds, outermost first.
    fn chain(&self, via: usize) -> Vec<Loc> {
        let link = |via: usize| match via.checked_sub(self.outer_chains.len()) {
            Some(own) => self.chains[own],
            None => self.outer_chains[via],
        };
        // Counted first: every server and target has a chain, most of one or two links,
        // and a growing vector would take room for four.
        let mut links = 0;
        let mut at = via;
        while at != 0 {
            links += 1;
            at = link(at).0;
        }
        let mut chain = vec![Loc { file: 0, line: 0 }; links];
        let mut at = via;
        for slot in chain.iter_mut().rev() {
            let (before, include) = link(at);
            *slot = include;
            at = before;
        }
        chain
    }

    /// Takes in what a part built (in the order of the configuration): its servers after
    /// those already here, its targets pointing at them.
    fn merge(&mut self, part: Part) {
        let Part { model, var_values } = part;
        let Model {
            servers,
            upstreams,
            targets,
            issues,
            access_logs,
            ..
        } = model;
        let server_offset = self.model.servers.len();
        self.model.servers.extend(servers);
        self.model.upstreams.extend(upstreams);
        self.model.targets.extend(targets.into_iter().map(|mut t| {
            if let Some(s) = &mut t.server {
                *s += server_offset;
            }
            t
        }));
        for issue in issues {
            if !self.model.issues.contains(&issue) {
                self.model.issues.push(issue);
            }
        }
        self.model.access_logs.extend(access_logs);
        self.var_values.extend(var_values.into_iter().map(|mut v| {
            if let Some(Some(s)) = &mut v.set_in {
                *s += server_offset;
            }
            v
        }));
    }

    /// The statements of a block with includes expanded in place.
    fn flatten(&mut self, stmts: Stmts<'a>, file: FileId, via: usize) -> Vec<Item<'a>> {
        // Room for the block's own statements at once (counting them is a hop each).
        let mut out = self.spare_items.pop().unwrap_or_default();
        out.reserve(stmts.clone().count());
        self.flatten_into(stmts, file, via, &mut out, 0);
        out
    }

    fn flatten_into(
        &mut self,
        stmts: Stmts<'a>,
        file: FileId,
        via: usize,
        out: &mut Vec<Item<'a>>,
        depth: usize,
    ) {
        for s in stmts {
            // An include is checked like any directive, then followed by what it brings.
            let item = Item::new(s, file, via);
            out.push(item);
            if item.name == "include" && s.block().is_none() {
                if depth > super::parser::MAX_DEPTH {
                    continue;
                }
                let include = Loc {
                    file,
                    line: s.line(),
                };
                self.chains.push((via, include));
                let child = self.outer_chains.len() + self.chains.len() - 1;
                for &id in s.includes() {
                    let config = self.config;
                    self.flatten_into(config.files[id].stmts(), id, child, out, depth + 1);
                }
            }
        }
    }

    fn issue(
        &mut self,
        item: &Item,
        kind: &'static str,
        message: String,
        suggestion: Option<String>,
    ) {
        let issue = Issue {
            loc: item.loc(),
            via: self.chain(item.via),
            directive: item.name.to_string(),
            message,
            suggestion,
            kind,
        };
        if !self.model.issues.contains(&issue) {
            self.model.issues.push(issue);
        }
    }

    /// Checks a directive against the table, as nginx -t would.
    fn analyze(&mut self, item: &Item, ctx: Ctx) {
        if ctx == Ctx::Opaque {
            return;
        }
        let s = item.stmt;
        if s.accepted_contexts() & ctx.bit() != 0 {
            return;
        }
        match s.known() {
            None if directives::is_third_party(item.name) => {}
            None => {
                let suggestion = directives::suggest(item.name, ctx.bit()).map(str::to_string);
                let mut message = format!("unknown directive \"{}\"", item.name);
                if let Some(sug) = &suggestion {
                    message.push_str(&format!(" (did you mean \"{sug}\"?)"));
                }
                self.issue(item, "unknown", message, suggestion);
            }
            Some(d) => {
                let check_args = directives::checks_args(&d);
                let checked = if item.name == "if" {
                    let args = s.args().to_vec();
                    directives::analyze(
                        d.masks,
                        ctx.bit(),
                        &directives::if_args(&args),
                        s.terminator(),
                        check_args,
                    )
                } else {
                    let args = s.args();
                    directives::analyze_counted(
                        d.masks,
                        ctx.bit(),
                        args.len(),
                        args.first(),
                        s.terminator(),
                        check_args,
                    )
                };
                if let Err(p) = checked {
                    let kind = match p {
                        directives::Problem::NotAllowedHere => "context",
                        _ => "arguments",
                    };
                    self.issue(item, kind, p.message(item.name), None);
                }
            }
        }
    }

    fn walk(
        &mut self,
        items: &[Item<'a>],
        ctx: Ctx,
        level: &Level<'a, '_>,
        server: Option<usize>,
        path: &str,
        depth: usize,
    ) {
        for item in items {
            self.analyze(item, ctx);
            self.record(item, ctx, server);
        }
        // Blocks in order; at the http (or stream) level, where each block stands on its own
        // (servers, upstream groups, maps: none looks at another's), many are built in parallel.
        let parallel = self.parallel
            && matches!(ctx, Ctx::Http | Ctx::Stream)
            && items.iter().filter(|it| it.stmt.block().is_some()).count() >= PARALLEL_FROM;
        if parallel {
            self.blocks_in_parallel(items, ctx, level, depth);
        } else {
            for item in items {
                self.block(item, ctx, level, server, path, depth);
            }
        }
        for item in items {
            if let Some(kind) = pass_kind(item.name, ctx) {
                self.pass(item, kind, level, server, path);
            }
        }
    }

    /// One statement's block, in the context `ctx` of the statement (nothing for a statement
    /// without one: most are, so that is decided here, inlined, without a call).
    #[inline(always)]
    fn block(
        &mut self,
        item: &Item<'a>,
        ctx: Ctx,
        level: &Level<'a, '_>,
        server: Option<usize>,
        path: &str,
        depth: usize,
    ) {
        if let Some(block) = item.stmt.block() {
            self.enter_block(item, block, ctx, level, server, path, depth);
        }
    }

    /// [`Builder::block`] for a statement with a block.
    #[allow(clippy::too_many_arguments)]
    fn enter_block(
        &mut self,
        item: &Item<'a>,
        block: Stmts<'a>,
        ctx: Ctx,
        level: &Level<'a, '_>,
        server: Option<usize>,
        path: &str,
        depth: usize,
    ) {
        if depth >= MAX_WALK_DEPTH {
            // Only includes nested in blocks nested in includes get here; nginx would
            // accept it, but nothing real is this deep, and the walk keeps its stack small.
            let message = format!("blocks nested more than {MAX_WALK_DEPTH} deep (through includes): not read further");
            self.issue(item, "nesting", message, None);
            return;
        }
        let child_ctx = ctx.enter(item.name);
        let child_items = self.flatten(block, item.file, item.via);
        let child_level = Level::new(Some(level), &child_items);
        match child_ctx {
            Ctx::HttpServer | Ctx::StreamServer => {
                let index = self.server(item, &child_items, child_ctx);
                // A server's level inherits from http (or stream), not from other servers.
                self.walk(
                    &child_items,
                    child_ctx,
                    &child_level,
                    Some(index),
                    "",
                    depth + 1,
                );
            }
            Ctx::HttpLocation | Ctx::HttpLocationIf | Ctx::HttpServerIf | Ctx::HttpLimitExcept => {
                // Inline strings when short (most are): there are as many as targets.
                let label: compact_str::CompactString = match child_ctx {
                    Ctx::HttpLocation => item.stmt.args().join(" "),
                    _ => compact_str::format_compact!(
                        "{} ({})",
                        item.name,
                        directives::if_args(&item.stmt.args().to_vec()).join(" ")
                    ),
                };
                let inner = if path.is_empty() {
                    label.clone()
                } else {
                    compact_str::format_compact!("{path} › {label}")
                };
                if child_ctx == Ctx::HttpLocation {
                    if let Some(si) = server {
                        // Separators counted only under another block (most locations are
                        // a server's own), by character: a string pattern sets up a searcher.
                        let depth = match path {
                            "" => 1,
                            outer => outer.matches('›').count() + 2,
                        };
                        let loc = item.loc();
                        self.model.servers[si].locations.push(Location {
                            path: label,
                            loc,
                            depth,
                        });
                    }
                }
                self.walk(
                    &child_items,
                    child_ctx,
                    &child_level,
                    server,
                    &inner,
                    depth + 1,
                );
            }
            Ctx::Opaque => {
                if item.name == "map" && ctx != Ctx::Opaque {
                    self.map_values(item, &child_items);
                }
            }
            _ => {
                if matches!(child_ctx, Ctx::HttpUpstream | Ctx::StreamUpstream) {
                    self.upstream(item, &child_items, child_ctx);
                }
                self.walk(
                    &child_items,
                    child_ctx,
                    &child_level,
                    server,
                    path,
                    depth + 1,
                );
            }
        }
        let mut spare = child_items;
        spare.clear();
        self.spare_items.push(spare);
    }

    /// The blocks of the http (or stream) level on all cores: each part of them is built
    /// into a model of its own, and the parts are merged in the configuration's order, so
    /// that the model is the one a single walk would build.
    fn blocks_in_parallel(
        &mut self,
        items: &[Item<'a>],
        ctx: Ctx,
        level: &Level<'a, '_>,
        depth: usize,
    ) {
        use rayon::prelude::*;
        let this = &*self;
        // Parts of a fixed number of statements, not one per worker: a part's lists (servers,
        // target pointers) grow by doubling, and a worker's thousands of entries would be
        // copied as often as that doubles (64 measured best of 16 to 256).
        let parts: Vec<Part> = items
            .par_chunks(PART_SIZE)
            .map(|chunk| {
                let mut part = this.part();
                for item in chunk {
                    part.block(item, ctx, level, None, "", depth);
                }
                Part {
                    model: part.model,
                    var_values: part.var_values,
                }
            })
            .collect();
        // Room for all of them at once: growing by doubling would copy the servers (and the
        // targets' pointers) several times.
        let servers: usize = parts.iter().map(|p| p.model.servers.len()).sum();
        let targets: usize = parts.iter().map(|p| p.model.targets.len()).sum();
        self.model.servers.reserve(servers);
        self.model.targets.reserve(targets);
        for part in parts {
            self.merge(part);
        }
    }

    /// Facts that are not about targets: main settings, variables, logs.
    fn record(&mut self, item: &Item, ctx: Ctx, server: Option<usize>) {
        let s = item.stmt;
        let loc = item.loc();
        let setting = |s: Stmt| Setting {
            value: s.args().join(" "),
            at: Some(loc),
        };
        match (ctx, item.name) {
            (Ctx::Main, "user") if !s.args().is_empty() => {
                self.model.main.user = Some((
                    s.args()[0].to_string(),
                    s.args().get(1).map(|a| a.to_string()),
                    loc,
                ));
            }
            (Ctx::Main, "worker_processes") => self.model.main.worker_processes = Some(setting(s)),
            (Ctx::Main, "worker_rlimit_nofile") => {
                self.model.main.worker_rlimit_nofile = Some(setting(s))
            }
            (Ctx::Main, "pid") => self.model.main.pid = Some(setting(s)),
            (Ctx::Events, "worker_connections") => {
                self.model.main.worker_connections = Some(setting(s))
            }
            (_, "set") if s.args().len() == 2 && ctx != Ctx::Opaque => {
                self.var_values.push(VarValues {
                    name: s.args()[0].trim_start_matches('$').to_string(),
                    values: vec![unescape(&s.args()[1]).into_owned()],
                    set_in: Some(server),
                });
            }
            (Ctx::Http, "log_format") if s.args().len() >= 2 => {
                let (name, rest) = match s.args()[1].strip_prefix("escape=") {
                    Some(_) => (s.args()[0].to_string(), s.args().skip(2)),
                    None => (s.args()[0].to_string(), s.args().skip(1)),
                };
                self.log_formats
                    .insert(name, rest.iter().map(unescape).collect::<String>());
            }
            (
                Ctx::Http
                | Ctx::HttpServer
                | Ctx::HttpLocation
                | Ctx::HttpLocationIf
                | Ctx::HttpLimitExcept,
                "access_log",
            ) if s.arg(0).is_some_and(|a| a != "off") => {
                let format_name = s
                    .arg(1)
                    .filter(|a| !a.contains('='))
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "combined".into());
                self.model.access_logs.push(AccessLog {
                    path: unescape(&s.args()[0]).into_owned(),
                    format_name,
                    format: None,
                    loc,
                });
            }
            _ => {}
        }
    }

    fn map_values(&mut self, item: &Item, entries: &[Item]) {
        let Some(var) = item.stmt.args().get(1) else {
            return;
        };
        let values = entries
            .iter()
            .map(|e| e.stmt)
            .filter(|s| !matches!(s.name(), "hostnames" | "volatile" | "include"))
            .filter_map(|s| s.args().first().map(|v| unescape(v).into_owned()))
            .collect();
        self.var_values.push(VarValues {
            name: var.trim_start_matches('$').to_string(),
            values,
            set_in: None,
        });
    }

    fn server(&mut self, item: &Item, items: &[Item], ctx: Ctx) -> usize {
        let mut server = Server {
            protocol: if ctx == Ctx::StreamServer {
                "stream"
            } else {
                "http"
            },
            loc: item.loc(),
            via: self.chain(item.via),
            listen: Vec::new(),
            names: Vec::new(),
            locations: Vec::new(),
        };
        // Room for each list at once: thousands of servers have one or two of each.
        let (mut listens, mut names, mut locations) = (0, 0, 0);
        for i in items {
            match i.name {
                "listen" => listens += 1,
                "server_name" => names += i.stmt.args().len(),
                "location" => locations += 1,
                _ => {}
            }
        }
        server.listen.reserve_exact(listens);
        server.names.reserve_exact(names);
        server.locations.reserve_exact(locations);
        for i in items {
            match i.name {
                "listen" if !i.stmt.args().is_empty() => {
                    let flags = i.stmt.args().skip(1);
                    server.listen.push(Listen {
                        raw: i.stmt.args()[0].to_string(),
                        ssl: flags.iter().any(|f| f == "ssl"),
                        http2: flags.iter().any(|f| f == "http2"),
                        default_server: flags
                            .iter()
                            .any(|f| f == "default_server" || f == "default"),
                        loc: i.loc(),
                    });
                }
                "server_name" => server
                    .names
                    .extend(i.stmt.args().iter().map(|a| a.to_string())),
                _ => {}
            }
        }
        self.model.servers.push(server);
        self.model.servers.len() - 1
    }

    fn upstream(&mut self, item: &Item, items: &[Item], ctx: Ctx) {
        let Some(name) = item.stmt.args().first() else {
            return;
        };
        let mut group = UpstreamGroup {
            name: name.to_string(),
            protocol: if ctx == Ctx::StreamUpstream {
                "stream"
            } else {
                "http"
            },
            loc: item.loc(),
            servers: Vec::new(),
            keepalive: None,
            keepalive_timeout: None,
            balancer: None,
            used_by: Vec::new(),
        };
        for i in items {
            let s = i.stmt;
            let loc = i.loc();
            match i.name {
                "server" if !s.args().is_empty() => {
                    let mut server = UpstreamServer {
                        raw: s.args()[0].to_string(),
                        address: Address::parse(&s.args()[0]),
                        weight: 1,
                        max_fails: 1,
                        max_fails_set: false,
                        fail_timeout: "10s".into(),
                        backup: false,
                        down: false,
                        resolve: false,
                        loc,
                    };
                    for p in s.args().skip(1) {
                        match p.split_once('=') {
                            Some(("weight", v)) => server.weight = v.parse().unwrap_or(1),
                            Some(("max_fails", v)) => {
                                server.max_fails = v.parse().unwrap_or(1);
                                server.max_fails_set = true;
                            }
                            Some(("fail_timeout", v)) => server.fail_timeout = v.to_string(),
                            None if p == "backup" => server.backup = true,
                            None if p == "down" => server.down = true,
                            None if p == "resolve" => server.resolve = true,
                            _ => {}
                        }
                    }
                    group.servers.push(server);
                }
                "keepalive" => {
                    if let Some(n) = s.arg(0).and_then(|v| v.parse().ok()) {
                        group.keepalive = Some((n, loc));
                    }
                }
                "keepalive_timeout" => {
                    group.keepalive_timeout = Some(Setting {
                        value: s.args().join(" "),
                        at: Some(loc),
                    })
                }
                "hash" | "ip_hash" | "least_conn" | "random" | "least_time" | "ntlm" | "sticky" => {
                    group.balancer = Some(
                        std::iter::once(s.name().to_string())
                            .chain(s.args().iter().map(|a| a.to_string()))
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                }
                _ => {}
            }
        }
        self.model.upstreams.push(group);
    }

    /// One `*_pass`: parse where it goes, gather the settings that apply.
    fn pass(
        &mut self,
        item: &Item,
        kind: PassKind,
        level: &Level,
        server: Option<usize>,
        path: &str,
    ) {
        let s = item.stmt;
        let Some(raw) = s.args().first() else { return };
        let value = unescape(raw);
        let (scheme, rest) = split_scheme(kind, &value);
        let tls = matches!(scheme.as_str(), "https" | "grpcs" | "suwsgi")
            || (kind == PassKind::Stream
                && level
                    .last(Key::of("proxy_ssl"))
                    .is_some_and(|i| i.stmt.arg(0) == Some("on")));
        // The host part ends at the first `/` (not inside `unix:…:`).
        let host_part = if let Some(after) = rest.strip_prefix("unix:") {
            match after.find(':') {
                Some(i) => &rest[..i + 6],
                None => rest,
            }
        } else {
            rest.split('/').next().unwrap_or(rest)
        };
        let runtime = value.contains('$');
        let dest = if host_part.contains('$') {
            // The candidates are filled in once every `set` and `map` is known (`finish`).
            Dest::Variable {
                expr: host_part.to_string(),
                candidates: Vec::new(),
            }
        } else {
            match Address::parse(host_part) {
                Some(Address::Tcp { host, port }) => Dest::Address {
                    address: Address::Tcp { host, port },
                },
                Some(unix) => Dest::Address { address: unix },
                None => {
                    let message = format!("invalid address \"{raw}\" in \"{}\"", s.name());
                    self.issue(item, "address", message, None);
                    return;
                }
            }
        };
        let target = Target {
            kind,
            raw: raw.into(),
            loc: item.loc(),
            via: self.chain(item.via),
            scheme,
            tls,
            dest,
            runtime,
            server,
            location: path.into(),
            settings: settings(kind, level, &mut self.found_settings),
        };
        self.model.targets.push(Box::new(target));
    }

    /// The values a host expression can take: `$backend` or `$backend:8080`, from the `set`s
    /// of the target's server and every `map` (a map applies in every server).
    fn candidates(
        maps: &FxHashMap<&str, Vec<&str>>,
        sets: &FxHashMap<(usize, &str), Vec<&str>>,
        server: Option<usize>,
        expr: &str,
    ) -> Vec<String> {
        let Some(name) = expr.strip_prefix('$') else {
            return Vec::new();
        };
        let (var, suffix) = match name.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            Some(i) => (&name[..i], &name[i..]),
            None => (name, ""),
        };
        let var = var.trim_start_matches('{');
        if suffix.contains('$') {
            return Vec::new();
        }
        let set = server.and_then(|s| sets.get(&(s, var)));
        set.into_iter()
            .flatten()
            .copied()
            .chain(maps.get(var).into_iter().flatten().copied())
            .map(|v| format!("{v}{suffix}"))
            .collect()
    }

    /// Resolves targets to upstream groups and attaches log formats.
    fn finish(&mut self) {
        // FxHash: keys from the configuration, looked up once per target.
        let mut sets: FxHashMap<(usize, &str), Vec<&str>> = Default::default();
        let mut maps: FxHashMap<&str, Vec<&str>> = Default::default();
        for v in &self.var_values {
            let values = v.values.iter().map(String::as_str);
            match v.set_in {
                None => maps.entry(&v.name).or_default().extend(values),
                Some(Some(server)) => sets.entry((server, &v.name)).or_default().extend(values),
                Some(None) => {}
            }
            self.model
                .variables
                .entry(v.name.clone())
                .or_default()
                .extend(v.values.iter().cloned());
        }
        let groups: FxHashMap<(&str, &str), usize> = self
            .model
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, g)| ((g.name.as_str(), g.protocol), i))
            .collect();
        let mut used_by: Vec<(usize, usize)> = Vec::new();
        for (index_of_target, target) in self.model.targets.iter_mut().enumerate() {
            if let Dest::Variable { expr, candidates } = &mut target.dest {
                *candidates = Self::candidates(&maps, &sets, target.server, expr);
            }
            // A name without a port may be a group's.
            if let Dest::Address {
                address: Address::Tcp { host, port: None },
            } = &mut target.dest
            {
                let protocol = if target.kind == PassKind::Stream {
                    "stream"
                } else {
                    "http"
                };
                if let Some(&index) = groups.get(&(host.as_str(), protocol)) {
                    let name = std::mem::take(host);
                    target.dest = Dest::Group { name, index };
                }
            }
            if let Dest::Group { index, .. } = target.dest {
                used_by.push((index, index_of_target));
            } else if let Dest::Address {
                address: Address::Tcp { host, port: None },
            } = &target.dest
            {
                let default = match target.scheme.as_str() {
                    "http" | "grpc" => Some(80),
                    "https" | "grpcs" => Some(443),
                    _ => None,
                };
                match default {
                    Some(p) => {
                        target.dest = Dest::Address {
                            address: Address::Tcp {
                                host: host.clone(),
                                port: Some(p),
                            },
                        }
                    }
                    None => {
                        let issue = Issue {
                            loc: target.loc,
                            via: target.via.clone(),
                            directive: target.kind.directive().to_string(),
                            message: format!("no port in upstream \"{host}\" (and no upstream group of that name)"),
                            suggestion: None,
                            kind: "address",
                        };
                        if !self.model.issues.contains(&issue) {
                            self.model.issues.push(issue);
                        }
                    }
                }
            }
        }
        drop(groups);
        for (group, target) in used_by {
            self.model.upstreams[group].used_by.push(target);
        }
        for log in &mut self.model.access_logs {
            log.format = self.log_formats.get(&log.format_name).cloned();
        }
    }
}

fn pass_kind(name: &str, ctx: Ctx) -> Option<PassKind> {
    let http = matches!(
        ctx,
        Ctx::HttpLocation | Ctx::HttpLocationIf | Ctx::HttpLimitExcept
    );
    match name {
        "proxy_pass" if http => Some(PassKind::Proxy),
        "proxy_pass" if ctx == Ctx::StreamServer => Some(PassKind::Stream),
        "fastcgi_pass" if http => Some(PassKind::Fastcgi),
        "uwsgi_pass" if http => Some(PassKind::Uwsgi),
        "grpc_pass" if http => Some(PassKind::Grpc),
        "scgi_pass" if http => Some(PassKind::Scgi),
        "memcached_pass" if http => Some(PassKind::Memcached),
        _ => None,
    }
}

/// The scheme of a pass argument and the rest (kinds without a scheme get their own protocol).
fn split_scheme(kind: PassKind, value: &str) -> (compact_str::CompactString, &str) {
    // (memchr's search: this runs for every target, and `split_once` sets up a searcher.)
    if let Some(i) = memchr::memmem::find(value.as_bytes(), b"://") {
        let (scheme, rest) = (&value[..i], &value[i + 3..]);
        if !scheme.contains('$') {
            let mut scheme = compact_str::CompactString::from(scheme);
            scheme.make_ascii_lowercase();
            return (scheme, rest);
        }
    }
    let own = match kind {
        PassKind::Proxy => "http",
        PassKind::Fastcgi => "fastcgi",
        PassKind::Uwsgi => "uwsgi",
        PassKind::Grpc => "grpc",
        PassKind::Scgi => "scgi",
        PassKind::Memcached => "memcached",
        PassKind::Stream => "tcp",
    };
    (own.into(), value)
}

/// The directive of each of one kind's settings, in [`Field::ALL`]'s order
/// (`proxy_read_timeout`, `fastcgi_read_timeout` …; the headers' is the kind's `set_header`).
type Names = [Key; Field::ALL.len()];

macro_rules! names {
    ($p:literal, $read:literal, $send:literal, $set_header:literal) => {
        Field::ALL.map(|field| {
            Key::of(match field {
                Field::ConnectTimeout => concat!($p, "_connect_timeout"),
                Field::SendTimeout => $send,
                Field::ReadTimeout => $read,
                Field::BufferSize => concat!($p, "_buffer_size"),
                Field::Buffers => concat!($p, "_buffers"),
                Field::Buffering => concat!($p, "_buffering"),
                Field::NextUpstream => concat!($p, "_next_upstream"),
                Field::HttpVersion => "proxy_http_version",
                Field::ConnectionHeader | Field::HostHeader => $set_header,
                Field::KeepConn => "fastcgi_keep_conn",
                Field::SslServerName => concat!($p, "_ssl_server_name"),
                Field::SslName => concat!($p, "_ssl_name"),
                Field::SslVerify => concat!($p, "_ssl_verify"),
                Field::SslTrustedCertificate => concat!($p, "_ssl_trusted_certificate"),
                Field::SslProtocols => concat!($p, "_ssl_protocols"),
                Field::Resolver => "resolver",
                Field::ResolverTimeout => "resolver_timeout",
            })
        })
    };
}

/// The names of each kind's settings, looked up in the table once.
fn names(kind: PassKind) -> &'static Names {
    static NAMES: std::sync::OnceLock<[Names; 7]> = std::sync::OnceLock::new();
    let all = NAMES.get_or_init(|| {
        [
            names!(
                "proxy",
                "proxy_read_timeout",
                "proxy_send_timeout",
                "proxy_set_header"
            ),
            names!(
                "proxy",
                "proxy_timeout",
                "proxy_timeout",
                "proxy_set_header"
            ),
            names!(
                "fastcgi",
                "fastcgi_read_timeout",
                "fastcgi_send_timeout",
                "proxy_set_header"
            ),
            names!(
                "uwsgi",
                "uwsgi_read_timeout",
                "uwsgi_send_timeout",
                "proxy_set_header"
            ),
            names!(
                "grpc",
                "grpc_read_timeout",
                "grpc_send_timeout",
                "grpc_set_header"
            ),
            names!(
                "scgi",
                "scgi_read_timeout",
                "scgi_send_timeout",
                "proxy_set_header"
            ),
            names!(
                "memcached",
                "memcached_read_timeout",
                "memcached_send_timeout",
                "proxy_set_header"
            ),
        ]
    });
    &all[match kind {
        PassKind::Proxy => 0,
        PassKind::Stream => 1,
        PassKind::Fastcgi => 2,
        PassKind::Uwsgi => 3,
        PassKind::Grpc => 4,
        PassKind::Scgi => 5,
        PassKind::Memcached => 6,
    }]
}

/// A directive's arguments as one value, unescaped as nginx reads them.
fn value_of(stmt: Stmt) -> compact_str::CompactString {
    let args = stmt.args();
    match args.len() {
        1 if !args[0].contains('\\') => args[0].into(),
        _ => {
            let mut value = compact_str::CompactString::default();
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    value.push(' ');
                }
                value.push_str(&unescape(a));
            }
            value
        }
    }
}

/// The settings that apply at a target of `kind` at `level`, by nginx's inheritance (those the
/// configuration sets). `found` is room to gather them in, boxed from there at their number:
/// one allocation of the right size per target.
fn settings(kind: PassKind, level: &Level, found: &mut Vec<(Field, Setting)>) -> Settings {
    found.clear();
    for (field, key) in Field::ALL.into_iter().zip(names(kind)) {
        if !field.applies(kind) {
            continue;
        }
        let header = match field {
            Field::ConnectionHeader => Some("connection"),
            Field::HostHeader => Some("host"),
            _ => None,
        };
        let setting = match header {
            // An array directive: the nearest level's last line for this header.
            Some(wanted) => level
                .last_of_all(*key, |i| {
                    i.stmt
                        .arg(0)
                        .is_some_and(|h| h.eq_ignore_ascii_case(wanted))
                })
                .map(|i| Setting {
                    value: i.stmt.arg(1).map(unescape).unwrap_or_default().into(),
                    at: Some(i.loc()),
                }),
            // (Most settings are set nowhere around a target: that is told before the call.)
            None if !level.may_have_around(*key) => None,
            None => level.last(*key).map(|i| Setting {
                value: value_of(i.stmt),
                at: Some(i.loc()),
            }),
        };
        if let Some(setting) = setting {
            found.push((field, setting));
        }
    }
    Settings {
        kind,
        set: found.drain(..).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("127.0.0.1:8000"),
            Some(Address::Tcp {
                host: "127.0.0.1".into(),
                port: Some(8000)
            })
        );
        assert_eq!(
            Address::parse("[::1]:3000"),
            Some(Address::Tcp {
                host: "::1".into(),
                port: Some(3000)
            })
        );
        assert_eq!(
            Address::parse("unix:/run/php/fpm.sock"),
            Some(Address::Unix {
                path: "/run/php/fpm.sock".into()
            })
        );
        assert_eq!(
            Address::parse("unix:/tmp/b.sock:"),
            Some(Address::Unix {
                path: "/tmp/b.sock".into()
            })
        );
        assert_eq!(
            Address::parse("backend"),
            Some(Address::Tcp {
                host: "backend".into(),
                port: None
            })
        );
        assert_eq!(
            Address::parse("9000"),
            Some(Address::Tcp {
                host: "*".into(),
                port: Some(9000)
            })
        );
        assert_eq!(Address::parse("a:b"), None);
    }

    #[test]
    fn schemes() {
        let split = |kind, v| {
            let (scheme, rest) = split_scheme(kind, v);
            (scheme.to_string(), rest)
        };
        assert_eq!(
            split(PassKind::Proxy, "HTTPS://up/x"),
            ("https".into(), "up/x")
        );
        assert_eq!(
            split(PassKind::Proxy, "http://h:80/a://b"),
            ("http".into(), "h:80/a://b")
        );
        assert_eq!(split(PassKind::Proxy, "$s://h"), ("http".into(), "$s://h"));
        assert_eq!(
            split(PassKind::Fastcgi, "unix:/run/a.sock"),
            ("fastcgi".into(), "unix:/run/a.sock")
        );
        assert_eq!(
            split(PassKind::Stream, "10.0.0.1:9000"),
            ("tcp".into(), "10.0.0.1:9000")
        );
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(parse_msec("60s"), Some(60_000));
        assert_eq!(parse_msec("1m30s"), Some(90_000));
        assert_eq!(parse_msec("500ms"), Some(500));
        assert_eq!(parse_msec("30"), Some(30_000));
        assert_eq!(parse_msec("x"), None);
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("512"), Some(512));
    }

    /// Loads `main` (and `files`, relative to it) from a temporary directory.
    fn load(main: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let config = super::super::parser::load(&dir.path().join("nginx.conf")).unwrap();
        (dir, config)
    }

    #[test]
    fn blocks_built_in_parallel_make_the_model_of_a_single_walk() {
        // Enough servers for several parts, with what a part hands back: issues (some the
        // same), sets, maps before and after, access logs, includes, groups declared between
        // servers (one with a typo), and a stream block.
        let n = 3 * PART_SIZE;
        let mut main = String::from(
            "events {}\nhttp {\n log_format main '$remote_addr';\n map $host $mapped { default 10.0.0.9:80; }\n upstream grp { server 10.1.1.1:80; keepalive 4; }\n",
        );
        for i in 0..n {
            main.push_str(&format!(
                " server {{\n  listen 127.0.0.1:{};\n  server_name s{i}.test;\n",
                8000 + i
            ));
            if i % 7 == 0 {
                main.push_str(&format!("  set $be 10.2.0.{i}:80;\n"));
            }
            if i % 5 == 0 {
                main.push_str("  proxy_passs http://x;\n");
            }
            if i % 3 == 0 {
                main.push_str("  include inc/common.conf;\n");
            }
            if i % 4 == 0 {
                main.push_str(&format!("  access_log /tmp/a{i}.log main;\n"));
            }
            main.push_str(&format!(
                "  location / {{ proxy_pass http://grp; proxy_read_timeout {}s; }}\n  location /v {{ proxy_pass http://$be; }}\n  location /m {{ proxy_pass http://$mapped; }}\n  location /l {{ proxy_pass http://$late; }}\n  location ~ \\.php$ {{ fastcgi_pass unix:/run/s{i}.sock; if ($x) {{ return 404; }} }}\n }}\n",
                i + 1
            ));
            if i == PART_SIZE + 1 {
                main.push_str(" upstream mid { server 10.9.9.9; keepaliv 2; }\n server { location / { proxy_pass http://mid; } }\n");
            }
        }
        main.push_str(" map $uri $late { default 10.3.3.3:80; }\n}\nstream {\n");
        for i in 0..2 * PARALLEL_FROM {
            main.push_str(&format!(
                " server {{ listen {}; proxy_pass 10.4.0.{i}:9000; }}\n",
                7000 + i
            ));
        }
        main.push_str("}\n");
        let (_dir, config) = load(
            &main,
            &[("inc/common.conf", "add_header X-A b;\nfoo_bar 1;\n")],
        );
        let parallel = build_with(&config, true);
        let serial = build_with(&config, false);
        assert_eq!(
            serde_json::to_value(&parallel).unwrap(),
            serde_json::to_value(&serial).unwrap()
        );
        assert_eq!(parallel.servers.len(), n + 1 + 2 * PARALLEL_FROM);
        assert_eq!(parallel.targets.len(), n * 5 + 1 + 2 * PARALLEL_FROM);
        // Each typo once per line, and the snippet's once per include line.
        assert!(parallel.issues.len() > 3, "{:?}", parallel.issues);
    }

    #[test]
    fn a_set_counts_in_its_own_server_and_a_map_in_every_server() {
        let (_dir, config) = load(
            "events {}\nhttp {\n server { set $be 10.0.0.1:80; location / { proxy_pass http://$be; } }\n server { location / { proxy_pass http://$be; } }\n server { location / { proxy_pass http://$late:81; } }\n map $uri $late { default a; b c; }\n}\n",
            &[],
        );
        let model = build(&config);
        let candidates: Vec<Vec<String>> = model
            .targets
            .iter()
            .map(|t| match &t.dest {
                Dest::Variable { candidates, .. } => candidates.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            candidates,
            [
                vec!["10.0.0.1:80".to_string()],
                vec![],
                vec!["a:81".into(), "c:81".into()]
            ]
        );
    }
}
