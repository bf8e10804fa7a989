//! Which files a `gwdoctor logs` run reads, in which order, and how: paths, globs and
//! directories are expanded; a rotated series (`error.log.3.gz`, `error.log.2.gz`,
//! `error.log.1`, `error.log`) is read oldest first; `.gz` and `.zst` are decompressed as read.

use std::io::Read;
use std::path::{Path, PathBuf};

/// How a file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One input of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The path, or `-` for standard input.
    pub path: PathBuf,
    pub compression: Compression,
    /// Size on disk (compressed size for .gz/.zst), 0 for stdin.
    pub size: u64,
}

impl LogFile {
    pub fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// Opens the file for reading, decompressing as it goes.
    pub fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        if self.path.as_os_str() == "-" {
            return Ok(Box::new(std::io::stdin()));
        }
        let file = std::fs::File::open(&self.path)?;
        let buffered = std::io::BufReader::with_capacity(1 << 20, file);
        Ok(match self.compression {
            Compression::None => Box::new(buffered),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        })
    }
}

/// Why the inputs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}: no such file or directory")]
    Missing(String),
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a valid glob pattern")]
    BadGlob(String),
    #[error("{0}: the pattern matches no file")]
    NoMatch(String),
}

/// How a log file is compressed, by its name (`.gz`, `.zst`, `.zstd`).
pub fn compression_of(path: &Path) -> Compression {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Compression::Gzip,
        Some("zst") | Some("zstd") => Compression::Zstd,
        _ => Compression::None,
    }
}

/// `error.log.2.gz` → ("error.log", 2); `error.log` → ("error.log", 0); `error.log-20240502.gz`
/// → ("error.log", date as a rotation key, newer = smaller after reversal is handled by caller).
fn rotation_key(path: &Path) -> (String, i64) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name
        .trim_end_matches(".gz")
        .trim_end_matches(".zst")
        .trim_end_matches(".zstd");
    if let Some((base, n)) = stem.rsplit_once('.') {
        if let Ok(n) = n.parse::<i64>() {
            return (base.to_string(), n);
        }
    }
    // logrotate's dateext: newer files have larger dates, so a negative key sorts them later.
    if let Some((base, date)) = stem.rsplit_once('-') {
        if date.len() >= 8 && date.bytes().all(|b| b.is_ascii_digit()) {
            return (base.to_string(), -date.parse::<i64>().unwrap_or(0));
        }
    }
    (stem.to_string(), 0)
}

/// Whether a file in a directory looks like a log (directories hold other things too).
fn looks_like_log(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.contains(".log")
        || name.ends_with("log")
        || name.contains("error")
        || name.contains("access")
}

/// Expands the command line's inputs into files, each rotated series oldest first.
pub fn expand(inputs: &[String]) -> Result<Vec<LogFile>, SourceError> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for input in inputs {
        if input == "-" {
            paths.push(PathBuf::from("-"));
            continue;
        }
        let path = PathBuf::from(input);
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|source| SourceError::Io {
                path: input.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && looks_like_log(p))
                .collect();
            found.sort();
            paths.extend(found);
        } else if path.exists() {
            paths.push(path);
        } else if input.contains(['*', '?', '[']) {
            let matches: Vec<PathBuf> = glob::glob(input)
                .map_err(|_| SourceError::BadGlob(input.clone()))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if matches.is_empty() {
                return Err(SourceError::NoMatch(input.clone()));
            }
            paths.extend(matches);
        } else {
            return Err(SourceError::Missing(input.clone()));
        }
    }
    // Group rotated series and order each oldest first (highest rotation number first); the
    // groups keep the order in which they were named.
    let mut order: Vec<String> = Vec::new();
    for p in &paths {
        let (base, _) = rotation_key(p);
        let key = p
            .parent()
            .map(|d| d.join(&base))
            .unwrap_or_default()
            .display()
            .to_string();
        if !order.contains(&key) {
            order.push(key);
        }
    }
    paths.sort_by_key(|p| {
        let (base, n) = rotation_key(p);
        let key = p
            .parent()
            .map(|d| d.join(&base))
            .unwrap_or_default()
            .display()
            .to_string();
        (order.iter().position(|k| *k == key), std::cmp::Reverse(n))
    });
    paths.dedup();
    Ok(paths
        .into_iter()
        .map(|path| {
            let size = if path.as_os_str() == "-" {
                0
            } else {
                std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            };
            LogFile {
                compression: compression_of(&path),
                size,
                path,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_series_are_read_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "error.log",
            "error.log.1",
            "error.log.2.gz",
            "error.log.10.gz",
            "access.log",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x\n").unwrap();
        }
        let files = expand(&[dir.path().display().to_string()]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "access.log",
                "error.log.10.gz",
                "error.log.2.gz",
                "error.log.1",
                "error.log"
            ]
        );
        assert_eq!(files[1].compression, Compression::Gzip);
        assert!(matches!(
            expand(&["/nonexistent/x.log".into()]),
            Err(SourceError::Missing(_))
        ));
        let pattern = format!("{}/error.log*", dir.path().display());
        assert_eq!(expand(&[pattern]).unwrap().len(), 4);
    }
}
