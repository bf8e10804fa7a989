//! PHP-FPM's configuration: the master file (`php-fpm.conf`), the pool files it includes, and
//! for each pool where it listens, who may connect (owner, group, mode, ACLs), its process
//! manager and its time limits.
//!
//! The format is PHP's INI dialect as PHP-FPM reads it: `[section]` starts a pool (`[global]`
//! is the master's), `key = value` sets, `;` starts a comment (outside quotes), values may be
//! quoted, `${NAME}` is taken from the environment, `$pool` stands for the pool's name, and
//! `include = pattern` (a glob; relative to the prefix, `/usr` when none was given) pulls in
//! more files.

use super::model::Address;
use super::parser::{glob_sorted, has_magic, read_text, ConfigError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// PHP-FPM's own compile-time prefix on Debian (`--prefix=/usr`): where relative includes go
/// when no `--prefix` was given.
pub const DEFAULT_PREFIX: &str = "/usr";
/// PHP-FPM files are small; anything bigger is not one.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
const MAX_FILES: usize = 1000;

/// A place in the PHP-FPM files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FpmLoc {
    pub file: usize,
    pub line: u32,
}

/// One value and where it was set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FpmValue {
    pub value: String,
    pub at: FpmLoc,
}

/// One pool.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub name: String,
    pub at: FpmLoc,
    /// Every setting of the pool by key (`listen`, `listen.mode`, `pm.max_children`,
    /// `php_admin_value[max_execution_time]` …), with `$pool` expanded.
    pub values: BTreeMap<String, FpmValue>,
    /// Where it listens.
    pub listen: Option<Address>,
}

impl Pool {
    pub fn get(&self, key: &str) -> Option<&FpmValue> {
        self.values.get(key)
    }

    /// `listen.mode` as a number (PHP-FPM's default is 0660).
    pub fn listen_mode(&self) -> u32 {
        self.get("listen.mode")
            .and_then(|v| u32::from_str_radix(v.value.trim_start_matches("0o"), 8).ok())
            .unwrap_or(0o660)
    }

    /// `request_terminate_timeout` in seconds (0: off).
    pub fn terminate_timeout_secs(&self) -> Option<u64> {
        self.get("request_terminate_timeout")
            .and_then(|v| parse_fpm_seconds(&v.value))
    }
}

/// The files read.
#[derive(Debug, Clone, Serialize)]
pub struct FpmFile {
    pub path: PathBuf,
    #[serde(skip)]
    pub text: String,
}

impl FpmFile {
    pub fn line_text(&self, n: u32) -> &str {
        self.text
            .split('\n')
            .nth(n.saturating_sub(1) as usize)
            .unwrap_or("")
            .trim_end_matches('\r')
    }
}

/// A PHP-FPM configuration: the master's settings and its pools.
#[derive(Debug, Clone, Serialize)]
pub struct FpmConfig {
    pub files: Vec<FpmFile>,
    pub global: BTreeMap<String, FpmValue>,
    pub pools: Vec<Pool>,
}

/// PHP-FPM's time syntax: a number with an optional `s`, `m`, `h` or `d`.
pub fn parse_fpm_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        'd' => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mul)
}

/// Loads a PHP-FPM configuration (a master file or a lone pool file).
pub fn load(path: &Path, prefix: Option<&Path>) -> Result<FpmConfig, ConfigError> {
    let mut config = FpmConfig {
        files: Vec::new(),
        global: BTreeMap::new(),
        pools: Vec::new(),
    };
    let prefix = prefix
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PREFIX));
    let mut section: Option<usize> = None;
    read_file(path, &prefix, &mut config, &mut section, 0)?;
    for pool in &mut config.pools {
        pool.listen = pool
            .get("listen")
            .and_then(|v| listen_address(v.value.trim(), &prefix));
    }
    Ok(config)
}

/// PHP-FPM's `listen`: `ip:port`, `[v6]:port` or a port are TCP; anything else is a socket
/// path (relative to the prefix).
fn listen_address(value: &str, prefix: &Path) -> Option<Address> {
    if value.is_empty() {
        return None;
    }
    if value.contains(':') || value.parse::<u16>().is_ok() {
        return Address::parse(value);
    }
    let path = if value.starts_with('/') {
        PathBuf::from(value)
    } else {
        prefix.join(value)
    };
    Some(Address::Unix {
        path: path.to_string_lossy().into_owned(),
    })
}

fn read_file(
    path: &Path,
    prefix: &Path,
    config: &mut FpmConfig,
    section: &mut Option<usize>,
    depth: usize,
) -> Result<(), ConfigError> {
    if config.files.len() >= MAX_FILES || depth > 16 {
        return Err(ConfigError {
            file: path.to_path_buf(),
            line: None,
            message: "too many or too deeply nested PHP-FPM includes".into(),
        });
    }
    let (text, _) = read_text(path, MAX_FILE_BYTES)?;
    let file = config.files.len();
    config.files.push(FpmFile {
        path: path.to_path_buf(),
        text: text.clone(),
    });
    // A pool file included from the master continues the section the include was in until
    // its own first `[section]` (PHP-FPM parses each file with the same state).
    for (i, raw) in text.split('\n').enumerate() {
        let line = i as u32 + 1;
        let at = FpmLoc { file, line };
        let content = strip_comment(raw.trim_end_matches('\r')).trim();
        if content.is_empty() {
            continue;
        }
        if let Some(name) = content.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = name.trim().to_string();
            if name.eq_ignore_ascii_case("global") {
                *section = None;
            } else {
                match config.pools.iter().position(|p| p.name == name) {
                    Some(i) => *section = Some(i),
                    None => {
                        config.pools.push(Pool {
                            name,
                            at,
                            values: BTreeMap::new(),
                            listen: None,
                        });
                        *section = Some(config.pools.len() - 1);
                    }
                }
            }
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(ConfigError {
                file: path.to_path_buf(),
                line: Some(line),
                message: format!(
                    "PHP-FPM: syntax error: \"{content}\" is neither [section] nor key = value"
                ),
            });
        };
        let key = key.trim().to_string();
        let mut value = unquote(value.trim());
        value = expand_env(&value);
        if key == "include" {
            let pattern = if Path::new(&value).is_absolute() {
                PathBuf::from(&value)
            } else {
                prefix.join(&value)
            };
            let files = if has_magic(&value) {
                glob_sorted(&pattern.to_string_lossy())
            } else {
                vec![pattern]
            };
            for f in files {
                read_file(&f, prefix, config, section, depth + 1).map_err(|mut e| {
                    if e.line.is_none() {
                        e.message =
                            format!("{} (included from {}:{line})", e.message, path.display());
                    }
                    e
                })?;
            }
            continue;
        }
        match *section {
            None => {
                config.global.insert(key, FpmValue { value, at });
            }
            Some(p) => {
                let pool = &mut config.pools[p];
                let value = value.replace("$pool", &pool.name);
                pool.values.insert(key, FpmValue { value, at });
            }
        }
    }
    Ok(())
}

/// Drops a `;` comment (outside quotes) and a line starting with `#`.
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// `${NAME}` from the environment, as PHP's INI scanner does (unset: empty).
fn expand_env(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                out.push_str(&std::env::var(name).unwrap_or_default());
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_master_pools_and_includes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pool.d")).unwrap();
        std::fs::write(
            dir.path().join("php-fpm.conf"),
            format!(
                "[global]\npid = /run/fpm.pid ; comment\ninclude={}/pool.d/*.conf\n",
                dir.path().display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pool.d/www.conf"),
            "[www]\nuser = www-data\nlisten = /run/php/$pool.sock\nlisten.mode = 0600\n\
             request_terminate_timeout = 2m\npm.max_children = \"5\"\n",
        )
        .unwrap();
        let c = load(&dir.path().join("php-fpm.conf"), None).unwrap();
        assert_eq!(c.global["pid"].value, "/run/fpm.pid");
        assert_eq!(c.pools.len(), 1);
        let p = &c.pools[0];
        assert_eq!(
            p.listen,
            Some(Address::Unix {
                path: "/run/php/www.sock".into()
            })
        );
        assert_eq!(p.listen_mode(), 0o600);
        assert_eq!(p.terminate_timeout_secs(), Some(120));
        assert_eq!(p.get("pm.max_children").unwrap().value, "5");
        assert_eq!(p.get("listen").unwrap().at, FpmLoc { file: 1, line: 3 });
    }

    #[test]
    fn rejects_garbage_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.conf"), "[www]\nthis is not ini\n").unwrap();
        let e = load(&dir.path().join("x.conf"), None).unwrap_err();
        assert_eq!(e.line, Some(2));
    }
}
