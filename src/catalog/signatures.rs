//! The signature database: patterns that recognise what a product wrote (a log line, an error
//! page, a response header) and map it to the product and to cause ids of the catalog.
//!
//! Matching is two-stage so that it stays fast on gigabytes of logs: every signature names a
//! `literal` that all of its matches contain, and one Aho-Corasick automaton over all literals
//! finds the few candidate signatures of a line in a single pass. Only those candidates run their
//! `also` substrings and their regex, which also extracts fields (upstream address, errno …).
//!
//! When several log signatures match one line, the highest `priority` wins (ties: the one
//! written first), so a specific signature ("refused on [::1]") beats a general one ("refused").
//! For pages every match is reported: a header names the product, the body names the cause.

use super::refine;
use super::DataError;
use crate::i18n::Text;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The signature files, in order (order breaks priority ties).
const SIGNATURE_FILES: &[(&str, &str)] = &[
    (
        "data/signatures/nginx.toml",
        include_str!("../../data/signatures/nginx.toml"),
    ),
    (
        "data/signatures/servers.toml",
        include_str!("../../data/signatures/servers.toml"),
    ),
    (
        "data/signatures/pages.toml",
        include_str!("../../data/signatures/pages.toml"),
    ),
];

/// What a signature is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// One line of a log file.
    Log,
    /// An error page or response headers: matched against the whole text.
    Page,
}

/// One entry of the signature database, as written in `data/signatures/*.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub id: String,
    pub product: String,
    pub source: Source,
    pub causes: Vec<String>,
    pub literal: String,
    #[serde(default)]
    pub also: Vec<String>,
    #[serde(default)]
    pub ignore_case: bool,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub priority: i32,
    /// The status the product's client receives; 0 when no error status reaches it.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub refine: Option<String>,
    pub note: Text,
    pub test: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    signature: Vec<Signature>,
}

/// A signature that matched, with the fields its regex extracted and its causes after any
/// refinement (see [`refine`]).
#[derive(Debug, Clone)]
pub struct SignatureMatch<'db> {
    pub signature: &'db Signature,
    pub causes: Vec<String>,
    pub fields: Vec<(String, String)>,
}

impl SignatureMatch<'_> {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The compiled database.
pub struct SignatureDb {
    signatures: Vec<Signature>,
    /// Compiled on first use: a run meets a few dozen signatures, not all of them.
    regexes: Vec<OnceLock<Option<Regex>>>,
    /// Automaton over the case-sensitive literals, and which signatures each pattern stands for.
    exact: AhoCorasick,
    exact_owners: Vec<Vec<usize>>,
    /// Automaton over the literals of `ignore_case` signatures (ASCII case folded).
    folded: AhoCorasick,
    folded_owners: Vec<Vec<usize>>,
}

impl std::fmt::Debug for SignatureDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureDb")
            .field("signatures", &self.signatures.len())
            .finish()
    }
}

impl SignatureDb {
    /// The database embedded in the binary.
    pub fn embedded() -> Result<SignatureDb, DataError> {
        Self::from_sources(SIGNATURE_FILES)
    }

    /// Parses and compiles signature files given as (name, text) pairs.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<SignatureDb, DataError> {
        let mut signatures: Vec<Signature> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut regexes = Vec::new();
        for (file, text) in sources {
            let err = |message: String| DataError {
                file: file.to_string(),
                message,
            };
            let parsed: SignatureFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
            for sig in parsed.signature {
                if let Some(other) = seen.insert(sig.id.clone(), file.to_string()) {
                    return Err(err(format!(
                        "signature id {:?} is also defined in {other}",
                        sig.id
                    )));
                }
                if sig.literal.is_empty() {
                    return Err(err(format!("{}: the literal is empty", sig.id)));
                }
                if let Some(name) = &sig.refine {
                    if !refine::NAMES.contains(&name.as_str()) {
                        return Err(err(format!("{}: unknown refiner {name:?}", sig.id)));
                    }
                }
                // The syntax is checked now (cheap); the automaton is built on first use.
                if let Some(pattern) = &sig.regex {
                    regex_syntax::ParserBuilder::new()
                        .case_insensitive(sig.ignore_case)
                        .build()
                        .parse(pattern)
                        .map_err(|e| err(format!("{}: regex does not compile: {e}", sig.id)))?;
                }
                regexes.push(OnceLock::new());
                signatures.push(sig);
            }
        }
        let (exact, exact_owners) = build_automaton(&signatures, false)?;
        let (folded, folded_owners) = build_automaton(&signatures, true)?;
        Ok(SignatureDb {
            signatures,
            regexes,
            exact,
            exact_owners,
            folded,
            folded_owners,
        })
    }

    /// The regex of signature `index`, compiled on first use. A pattern that passed the syntax
    /// check but cannot be built (over the size limit) matches nothing; `compile_all` finds it.
    fn regex(&self, index: usize) -> Option<&Regex> {
        self.regexes[index]
            .get_or_init(|| {
                let sig = &self.signatures[index];
                let pattern = sig.regex.as_ref()?;
                RegexBuilder::new(pattern)
                    .case_insensitive(sig.ignore_case)
                    .size_limit(1 << 22)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    /// Compiles every regex now; the signatures whose regex cannot be built (tests call this).
    pub fn compile_all(&self) -> Vec<String> {
        (0..self.signatures.len())
            .filter(|&i| self.signatures[i].regex.is_some() && self.regex(i).is_none())
            .map(|i| self.signatures[i].id.clone())
            .collect()
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    pub fn get(&self, id: &str) -> Option<&Signature> {
        self.signatures.iter().find(|s| s.id == id)
    }

    /// Indices of the signatures of `source` whose every condition holds on `text`, in file order.
    fn matching(&self, text: &str, source: Source) -> Vec<usize> {
        let mut candidates: Vec<usize> = Vec::new();
        for m in self.exact.find_overlapping_iter(text) {
            candidates.extend(&self.exact_owners[m.pattern().as_usize()]);
        }
        for m in self.folded.find_overlapping_iter(text) {
            candidates.extend(&self.folded_owners[m.pattern().as_usize()]);
        }
        if candidates.is_empty() {
            return candidates;
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut lowered: Option<String> = None;
        candidates.retain(|&i| {
            let sig = &self.signatures[i];
            if sig.source != source {
                return false;
            }
            let also_ok = if sig.ignore_case {
                let lower = lowered.get_or_insert_with(|| text.to_ascii_lowercase());
                sig.also
                    .iter()
                    .all(|a| lower.contains(&a.to_ascii_lowercase()))
            } else {
                sig.also
                    .iter()
                    .all(|a| memchr::memmem::find(text.as_bytes(), a.as_bytes()).is_some())
            };
            also_ok && self.regex(i).is_none_or(|re| re.is_match(text))
        });
        candidates
    }

    fn complete(&self, index: usize, text: &str) -> SignatureMatch<'_> {
        let signature = &self.signatures[index];
        let mut fields = Vec::new();
        if let Some(re) = self.regex(index) {
            if let Some(caps) = re.captures(text) {
                for name in re.capture_names().flatten() {
                    if let Some(value) = caps.name(name) {
                        fields.push((name.to_string(), value.as_str().to_string()));
                    }
                }
            }
        }
        let causes = match &signature.refine {
            Some(name) => refine::apply(name, &signature.causes, &fields),
            None => signature.causes.clone(),
        };
        SignatureMatch {
            signature,
            causes,
            fields,
        }
    }

    /// The best log signature for one line: the highest priority, ties to the earliest.
    pub fn match_line(&self, line: &str) -> Option<SignatureMatch<'_>> {
        self.best(line, Source::Log)
    }

    /// The best signature of `source` for `text`.
    pub fn best(&self, text: &str, source: Source) -> Option<SignatureMatch<'_>> {
        let matching = self.matching(text, source);
        let best = matching
            .iter()
            .copied()
            .max_by_key(|&i| (self.signatures[i].priority, std::cmp::Reverse(i)))?;
        Some(self.complete(best, text))
    }

    /// The fields `signature`'s regex extracts from `text` (when it has named groups and
    /// matches): for callers that classified the text earlier and need its fields only now.
    pub fn best_with_fields(
        &self,
        text: &str,
        signature: &Signature,
    ) -> Option<Vec<(String, String)>> {
        let index = self
            .signatures
            .iter()
            .position(|s| std::ptr::eq(s, signature))?;
        let re = self.regex(index)?;
        re.capture_names().flatten().next()?;
        Some(self.complete(index, text).fields)
    }

    /// Every page signature matching `text`, the highest priority first.
    pub fn match_page(&self, text: &str) -> Vec<SignatureMatch<'_>> {
        let mut matching = self.matching(text, Source::Page);
        matching.sort_by_key(|&i| (std::cmp::Reverse(self.signatures[i].priority), i));
        matching
            .into_iter()
            .map(|i| self.complete(i, text))
            .collect()
    }
}

/// One Aho-Corasick automaton over the literals of the signatures with `ignore_case == folded`;
/// a literal shared by several signatures is one pattern that owns them all.
fn build_automaton(
    signatures: &[Signature],
    folded: bool,
) -> Result<(AhoCorasick, Vec<Vec<usize>>), DataError> {
    let mut patterns: Vec<Cow<'_, str>> = Vec::new();
    let mut owners: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, sig) in signatures
        .iter()
        .enumerate()
        .filter(|(_, s)| s.ignore_case == folded)
    {
        let key = if folded {
            sig.literal.to_ascii_lowercase()
        } else {
            sig.literal.clone()
        };
        let slot = *index.entry(key).or_insert_with(|| {
            patterns.push(Cow::Borrowed(sig.literal.as_str()));
            owners.push(Vec::new());
            owners.len() - 1
        });
        owners[slot].push(i);
    }
    let automaton = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .ascii_case_insensitive(folded)
        .build(patterns.iter().map(|p| p.as_ref()))
        .map_err(|e| DataError {
            file: "data/signatures".into(),
            message: e.to_string(),
        })?;
    Ok((automaton, owners))
}
