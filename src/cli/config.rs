//! `gwdoctor config [PATH]`: parse the gateway's configuration, list every upstream target,
//! check each statically and live.

use super::{Common, Failure};
use gwdoctor::collect::config::model::Field;
use gwdoctor::collect::config::{self, crossplane, model, Dest, Facts};
use gwdoctor::findings::{Check, Finding};
use gwdoctor::i18n::Lang;
use gwdoctor::report::findings::{check_json, checks_text, finding_json, finding_text};
use gwdoctor::report::Format;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// The main nginx configuration file [default: the running nginx's -c, else nginx -V's
    /// --conf-path, else /etc/nginx/nginx.conf].
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// nginx's prefix (-p) for `nginx -t` [default: the running master's].
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
    /// A PHP-FPM configuration file (master or pool file); repeatable. Without it, PHP-FPM's
    /// configuration is looked for on this host when PATH is not given.
    #[arg(long = "fpm-config", value_name = "PATH")]
    fpm_config: Vec<PathBuf>,
    /// PHP-FPM's prefix, for relative includes [default: /usr].
    #[arg(long, value_name = "DIR")]
    fpm_prefix: Option<PathBuf>,
    /// Do not look for PHP-FPM's configuration on this host.
    #[arg(long)]
    no_fpm: bool,
    /// An access log to compare the timeouts with (read in the format the configuration gives
    /// it); repeatable.
    #[arg(long = "access-log", value_name = "PATH")]
    access_log: Vec<PathBuf>,
    /// Static checks only: do not connect to the targets.
    #[arg(long)]
    no_live: bool,
    /// Do not run `nginx -t`.
    #[arg(long = "no-nginx-t")]
    no_nginx_t: bool,
    /// Deadline of every live step, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    timeout: f64,
    /// The user nginx's workers run as, when no running worker says so.
    #[arg(long, value_name = "USER")]
    worker_user: Option<String>,
    /// With --format crossplane: do not follow includes (`crossplane parse --single-file`).
    #[arg(long)]
    single_file: bool,
    /// With --format crossplane: syntax only, no context or argument checks (crossplane's
    /// `check_ctx=False, check_args=False`).
    #[arg(long)]
    syntax_only: bool,
}

/// Exit status: 0 no findings, 1 findings (with --format crossplane: crossplane reported
/// errors), 2 unreadable or malformed configuration.
pub fn run(common: &Common, args: ConfigArgs) -> Result<u8, Failure> {
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        return Err(Failure::Usage(
            "config: --timeout takes 0 < SECONDS ≤ 600".into(),
        ));
    }
    if common.format == Format::Crossplane {
        return crossplane_output(&args);
    }
    if matches!(common.format, Format::Markdown | Format::Html) {
        return Err(Failure::Usage(
            "config: --format takes text, json or crossplane".into(),
        ));
    }
    let opts = config::Options {
        discover_fpm: args.path.is_none() && !args.no_fpm,
        path: args.path,
        prefix: args.prefix,
        fpm_configs: args.fpm_config,
        fpm_prefix: args.fpm_prefix,
        access_logs: args.access_log,
        nginx_test: !args.no_nginx_t,
        live: !args.no_live,
        timeout: Duration::from_secs_f64(args.timeout),
        worker_user: args.worker_user,
    };
    let facts = config::collect(&opts).map_err(|e| Failure::Usage(format!("config: {e}")))?;
    let (findings, checks) = gwdoctor::rules::config::judge(&facts);
    let lang = common.lang();
    let rendered = match common.format {
        Format::Json => {
            let mut s =
                serde_json::to_string_pretty(&json_report(&facts, &findings, &checks, lang))
                    .map_err(|e| Failure::Internal(e.into()))?;
            s.push('\n');
            // JSON carries no colour: written as it is (a report of thousands of targets is
            // megabytes, too many to scan for escape sequences).
            // Secrets written in the configuration (a token in a URL, credentials) stay out.
            print_plain(&gwdoctor::redact::redact(&s))?;
            return Ok(if findings.is_empty() { 0 } else { 1 });
        }
        _ => text_report(&facts, &findings, &checks, lang),
    };
    common.print(&gwdoctor::redact::redact(&rendered))?;
    Ok(if findings.is_empty() { 0 } else { 1 })
}

fn print_plain(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Internal(e.into())),
    }
}

/// `--format crossplane`: crossplane's JSON, printed as it is (no colour, no redaction: it is
/// the parse, for tools that read crossplane's output).
fn crossplane_output(args: &ConfigArgs) -> Result<u8, Failure> {
    let path = match &args.path {
        Some(p) => p.clone(),
        None => {
            let running = config::discover::running_nginx();
            let build = config::discover::nginx_binary(running.first())
                .and_then(|b| config::discover::nginx_build(&b));
            config::discover::default_config(&running, build.as_ref()).0
        }
    };
    if let Err(e) = std::fs::metadata(&path) {
        return Err(Failure::Usage(format!(
            "config: {}: cannot read: {e}",
            path.display()
        )));
    }
    let opts = crossplane::Options {
        single: args.single_file,
        check_ctx: !args.syntax_only,
        check_args: !args.syntax_only,
    };
    let out = crossplane::parse(&path.to_string_lossy(), &opts);
    print_plain(&out)?;
    Ok(if out.starts_with("{\"status\":\"ok\"") {
        0
    } else {
        1
    })
}

fn at(facts: &Facts, loc: model::Loc) -> String {
    format!(
        "{}:{}",
        facts.config.files[loc.file].path.display(),
        loc.line
    )
}

fn dest_text(facts: &Facts, d: &Dest) -> String {
    match d {
        Dest::Address { address } => address.to_string(),
        Dest::Group { name, index } => {
            let g = &facts.model.upstreams[*index];
            format!(
                "upstream {name} ({} server{})",
                g.servers.len(),
                if g.servers.len() == 1 { "" } else { "s" }
            )
        }
        Dest::Variable { expr, candidates } if candidates.is_empty() => {
            format!("{expr} (per request)")
        }
        Dest::Variable { expr, candidates } => {
            format!("{expr} (per request: {})", candidates.join(", "))
        }
    }
}

/// A setting as the JSON shows it: its value and where it was set (`null`: nginx's default).
#[derive(Serialize)]
struct SettingOut<'a> {
    value: &'a str,
    at: Option<String>,
}

fn setting_out<'a>(facts: &Facts, s: Option<&'a model::Setting>) -> Option<SettingOut<'a>> {
    s.map(|s| SettingOut {
        value: &s.value,
        at: s.at.map(|l| at(facts, l)),
    })
}

/// A target's settings by name, in [`Field::ALL`]'s order (`null` where one does not apply).
/// `ssl_protocols` is not reported.
struct SettingsOut<'a> {
    facts: &'a Facts,
    settings: &'a model::Settings,
}

impl Serialize for SettingsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for field in Field::ALL.into_iter().filter(|f| *f != Field::SslProtocols) {
            map.serialize_entry(
                field.name(),
                &setting_out(self.facts, self.settings.get(field)),
            )?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct LiveOut<'a> {
    address: String,
    resolution: &'a Option<config::live::Resolution>,
    attempts: &'a [config::live::Attempt],
}

#[derive(Serialize)]
struct TargetOut<'a> {
    directive: &'static str,
    raw: &'a str,
    at: String,
    included_from: Vec<String>,
    scheme: &'a str,
    tls: bool,
    destination: &'a Dest,
    runtime: bool,
    server_names: &'a [String],
    location: &'a str,
    settings: SettingsOut<'a>,
    live: Vec<LiveOut<'a>>,
}

#[derive(Serialize)]
struct ListenOut<'a> {
    address: &'a str,
    ssl: bool,
    http2: bool,
    default_server: bool,
}

#[derive(Serialize)]
struct LocationOut<'a> {
    path: &'a str,
    at: String,
}

#[derive(Serialize)]
struct ServerOut<'a> {
    protocol: &'a str,
    at: String,
    listen: Vec<ListenOut<'a>>,
    server_names: &'a [String],
    locations: Vec<LocationOut<'a>>,
}

/// `config --format json`: `{"files", "servers", "upstreams", "targets", "findings", "checks", …}`.
#[derive(Serialize)]
struct Report<'a> {
    main: String,
    found_by: &'a str,
    files: Vec<Value>,
    servers: Vec<ServerOut<'a>>,
    upstreams: Vec<Value>,
    targets: Vec<TargetOut<'a>>,
    php_fpm: Value,
    nginx_test: &'a Option<config::discover::NginxTest>,
    running: Option<Value>,
    worker: &'a Option<config::discover::Identity>,
    findings: Vec<Value>,
    checks: Vec<Value>,
}

fn json_report<'a>(
    facts: &'a Facts,
    findings: &[Finding],
    checks: &[Check],
    lang: Lang,
) -> Report<'a> {
    let m = &facts.model;
    let files: Vec<Value> = facts
        .config
        .files
        .iter()
        .map(|f| json!({ "path": f.path.display().to_string(), "lines": memchr::memchr_iter(b'\n', f.text.as_bytes()).count() }))
        .collect();
    let servers = m
        .servers
        .iter()
        .map(|s| ServerOut {
            protocol: s.protocol,
            at: at(facts, s.loc),
            listen: s
                .listen
                .iter()
                .map(|l| ListenOut {
                    address: &l.raw,
                    ssl: l.ssl,
                    http2: l.http2,
                    default_server: l.default_server,
                })
                .collect(),
            server_names: &s.names,
            locations: s
                .locations
                .iter()
                .map(|l| LocationOut {
                    path: &l.path,
                    at: at(facts, l.loc),
                })
                .collect(),
        })
        .collect();
    let upstreams: Vec<Value> = m
        .upstreams
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "protocol": g.protocol,
                "at": at(facts, g.loc),
                "keepalive": g.keepalive.map(|k| k.0),
                "balancer": g.balancer,
                "servers": g.servers.iter().map(|s| json!({
                    "address": s.raw, "weight": s.weight, "max_fails": s.max_fails, "fail_timeout": s.fail_timeout,
                    "backup": s.backup, "down": s.down, "at": at(facts, s.loc),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let targets = m
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| TargetOut {
            directive: t.kind.directive(),
            raw: &t.raw,
            at: at(facts, t.loc),
            included_from: t.via.iter().map(|l| at(facts, *l)).collect(),
            scheme: &t.scheme,
            tls: t.tls,
            destination: &t.dest,
            runtime: t.runtime,
            server_names: t
                .server
                .map(|i| m.servers[i].names.as_slice())
                .unwrap_or_default(),
            location: &t.location,
            settings: SettingsOut {
                facts,
                settings: &t.settings,
            },
            live: facts
                .live
                .iter()
                .flatten()
                .filter(|r| r.endpoint.targets.contains(&i))
                .map(|r| LiveOut {
                    address: r.endpoint.address.to_string(),
                    resolution: &r.resolution,
                    attempts: &r.attempts,
                })
                .collect(),
        })
        .collect();
    let pools: Vec<Value> = facts
        .fpm
        .iter()
        .flat_map(|c| {
            c.pools.iter().map(move |p| {
                json!({
                    "name": p.name,
                    "at": format!("{}:{}", c.files[p.at.file].path.display(), p.at.line),
                    "listen": p.listen.as_ref().map(|a| a.to_string()),
                    "settings": p.values.iter().map(|(k, v)| (k.clone(), Value::String(v.value.clone()))).collect::<serde_json::Map<_, _>>(),
                })
            })
        })
        .collect();
    Report {
        main: facts.main.display().to_string(),
        found_by: &facts.found_by,
        files,
        servers,
        upstreams,
        targets,
        php_fpm: json!({ "files": facts.fpm.iter().flat_map(|c| c.files.iter().map(|f| f.path.display().to_string())).collect::<Vec<_>>(), "pools": pools }),
        nginx_test: &facts.nginx_test,
        running: facts
            .running
            .as_ref()
            .map(|r| json!({"pid": r.pid, "cmdline": r.cmdline})),
        worker: &facts.worker,
        findings: findings.iter().map(|f| finding_json(f, lang)).collect(),
        checks: checks.iter().map(check_json).collect(),
    }
}

/// The report's own headings, in both languages.
fn heading(lang: Lang, key: &str) -> &'static str {
    let (en, zh) = match key {
        "targets" => ("Upstream targets", "上游目标"),
        "findings" => ("Findings", "发现的问题"),
        "checks" => ("Checks", "检查项"),
        "none" => ("No problems found.", "未发现问题。"),
        "files" => ("file(s)", "个文件"),
        "servers" => ("server(s)", "个 server"),
        "parsed" => ("parsed in", "解析耗时"),
        "timeouts" => ("timeouts", "超时"),
        _ => ("", ""),
    };
    if lang == Lang::Zh {
        zh
    } else {
        en
    }
}

fn text_report(facts: &Facts, findings: &[Finding], checks: &[Check], lang: Lang) -> String {
    let m = &facts.model;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gwdoctor config: {} ({})\n  {} {}, {} {}, {} {} ms\n",
        facts.main.display(),
        facts.found_by,
        facts.config.files.len(),
        heading(lang, "files"),
        m.servers.len(),
        heading(lang, "servers"),
        heading(lang, "parsed"),
        facts.parse_ms
    );
    if !m.targets.is_empty() {
        let _ = writeln!(out, "{}", heading(lang, "targets"));
        for (i, t) in m.targets.iter().enumerate() {
            let server = t
                .server
                .and_then(|s| m.servers[s].names.first().cloned())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {} → {}",
                t.kind.directive(),
                t.raw,
                dest_text(facts, &t.dest)
            );
            let _ = writeln!(out, "      {}  {} {}", at(facts, t.loc), server, t.location);
            let s = &t.settings;
            let mut line = format!(
                "      {} connect {} / send {} / read {}",
                heading(lang, "timeouts"),
                s.connect_timeout().value,
                s.send_timeout().value,
                s.read_timeout().value
            );
            if let Some(v) = s.http_version() {
                let _ = write!(line, ", HTTP/{}", v.value);
            }
            if let Some(c) = s.connection_header() {
                let _ = write!(line, ", Connection \"{}\"", c.value);
            }
            if let Some(r) = s.resolver() {
                let _ = write!(line, ", resolver {}", r.value);
            }
            let _ = writeln!(out, "{line}");
            for r in facts
                .live
                .iter()
                .flatten()
                .filter(|r| r.endpoint.targets.first() == Some(&i))
            {
                for a in &r.attempts {
                    let answer = a.answer.as_ref().map(|x| x.label()).unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "      live {}: {} in {} ms{}",
                        a.addr,
                        a.connect.label(),
                        a.connect_ms,
                        if answer.is_empty() {
                            String::new()
                        } else {
                            format!("; answered by {answer}")
                        }
                    );
                }
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}", heading(lang, "findings"));
    if findings.is_empty() {
        let _ = writeln!(out, "  {}", heading(lang, "none"));
    }
    for f in findings {
        finding_text(&mut out, f, lang);
        out.push('\n');
    }
    let _ = writeln!(out, "\n{}", heading(lang, "checks"));
    checks_text(&mut out, checks);
    out
}
