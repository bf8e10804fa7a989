//! The knowledge gwdoctor reasons with, loaded from data files embedded at build time:
//!
//! - the cause catalog (`data/catalog/*.toml`): one entry per root cause id of
//!   `shared/causes.md`, with its texts in English and Chinese, the checks and the fixes;
//! - the signature database (`data/signatures/*.toml`, see [`signatures`]): patterns that
//!   recognise a product's log line or error page and map it to cause ids.
//!
//! Both are parsed once per process ([`catalog()`], [`signatures()`]) and validated by tests,
//! so a broken data file fails the build's tests, never a user's run.

pub mod refine;
pub mod signatures;

use crate::i18n::Text;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

pub use signatures::{Signature, SignatureDb, SignatureMatch, Source};

/// The catalog files, in order. Adding a file here is the only code change a new file needs;
/// adding a cause to an existing file needs none.
const CATALOG_FILES: &[(&str, &str)] = &[
    (
        "data/catalog/10-path.toml",
        include_str!("../../data/catalog/10-path.toml"),
    ),
    (
        "data/catalog/20-upstream.toml",
        include_str!("../../data/catalog/20-upstream.toml"),
    ),
    (
        "data/catalog/30-host.toml",
        include_str!("../../data/catalog/30-host.toml"),
    ),
];

/// Where on the request path a cause sits, in the order an operator walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Client,
    Dns,
    Edge,
    Gateway,
    Network,
    Upstream,
    Host,
    Containers,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::Client => "client",
            Layer::Dns => "dns",
            Layer::Edge => "edge",
            Layer::Gateway => "gateway",
            Layer::Network => "network",
            Layer::Upstream => "upstream",
            Layer::Host => "host",
            Layer::Containers => "containers",
        }
    }
}

/// One thing to check, in order: a sentence in each language and, usually, a command to paste.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub en: String,
    pub zh: String,
    #[serde(default)]
    pub cmd: Option<String>,
}

/// One way to fix the cause, with an optional configuration or command block.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fix {
    pub en: String,
    pub zh: String,
    /// What the snippet is written in: nginx, php-fpm, sysctl, systemd, shell, kubernetes …
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub snippet: Option<String>,
}

/// One root cause of the catalog.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cause {
    pub id: String,
    pub layer: Layer,
    /// What a client typically sees (502, 503, 504).
    pub statuses: Vec<u16>,
    pub related: Vec<String>,
    pub title: Text,
    /// For a site owner who does not read code.
    pub summary: Text,
    /// For an operator: the mechanism and the exact messages.
    pub technical: Text,
    #[serde(rename = "check")]
    pub checks: Vec<Check>,
    #[serde(rename = "fix")]
    pub fixes: Vec<Fix>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    cause: Vec<Cause>,
}

/// The cause catalog: every cause id with its texts, checks and fixes.
#[derive(Debug)]
pub struct Catalog {
    causes: Vec<Cause>,
    by_id: HashMap<String, usize>,
}

/// A data file that does not parse or does not hold together.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DataError {
    pub file: String,
    pub message: String,
}

impl Catalog {
    /// Parses catalog files given as (name, text) pairs.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<Catalog, DataError> {
        let mut causes = Vec::new();
        let mut by_id = HashMap::new();
        for (file, text) in sources {
            let parsed: CatalogFile = toml::from_str(text).map_err(|e| DataError {
                file: file.to_string(),
                message: e.to_string(),
            })?;
            for cause in parsed.cause {
                if by_id.insert(cause.id.clone(), causes.len()).is_some() {
                    return Err(DataError {
                        file: file.to_string(),
                        message: format!("cause id {:?} is defined twice", cause.id),
                    });
                }
                causes.push(cause);
            }
        }
        let catalog = Catalog { causes, by_id };
        for cause in &catalog.causes {
            for related in &cause.related {
                if catalog.get(related).is_none() {
                    return Err(DataError {
                        file: "data/catalog".into(),
                        message: format!(
                            "{}: related id {related:?} is not in the catalog",
                            cause.id
                        ),
                    });
                }
            }
        }
        Ok(catalog)
    }

    pub fn get(&self, id: &str) -> Option<&Cause> {
        self.by_id.get(id).map(|&i| &self.causes[i])
    }

    pub fn causes(&self) -> &[Cause] {
        &self.causes
    }
}

/// The embedded catalog. Tests prove it parses; a failure here is a build defect.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::from_sources(CATALOG_FILES).expect("embedded catalog is valid"))
}

/// The embedded signature database, compiled once.
pub fn signatures() -> &'static SignatureDb {
    static DB: OnceLock<SignatureDb> = OnceLock::new();
    DB.get_or_init(|| SignatureDb::embedded().expect("embedded signature database is valid"))
}
