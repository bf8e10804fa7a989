//! The knowledge files hold together: every cause id of the contract is in the catalog with every
//! field filled in both languages; every signature recognises its own test lines and names only
//! causes that exist.

use gwdoctor::catalog::{catalog, signatures, Source};
use gwdoctor::explain::{explain, InputKind};
use gwdoctor::input::InputText;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The cause ids of `shared/causes.md`: the first column of its table.
fn contract_ids() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/causes.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .map(str::trim)
        .filter(|id| {
            !id.is_empty()
                && *id != "id"
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .map(String::from)
        .collect();
    assert!(
        ids.len() >= 50,
        "read only {} ids from {}",
        ids.len(),
        path.display()
    );
    ids
}

fn has_cjk(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[test]
fn every_contract_cause_is_in_the_catalog_with_every_field_in_both_languages() {
    let catalog = catalog();
    let mut problems = Vec::new();
    for id in contract_ids() {
        let Some(cause) = catalog.get(&id) else {
            problems.push(format!("{id}: missing from the catalog"));
            continue;
        };
        for (field, text) in [
            ("title", &cause.title),
            ("summary", &cause.summary),
            ("technical", &cause.technical),
        ] {
            if text.en.trim().len() < 10 {
                problems.push(format!("{id}: {field}.en is too short"));
            }
            if !has_cjk(&text.zh) {
                problems.push(format!("{id}: {field}.zh is not Chinese"));
            }
        }
        if cause.statuses.is_empty() {
            problems.push(format!("{id}: no statuses"));
        }
        if cause.checks.len() < 2 {
            problems.push(format!("{id}: fewer than two checks"));
        }
        if cause.fixes.is_empty() {
            problems.push(format!("{id}: no fix"));
        }
        for check in &cause.checks {
            if check.en.trim().is_empty() || !has_cjk(&check.zh) {
                problems.push(format!("{id}: a check lacks its English or Chinese text"));
            }
        }
        for fix in &cause.fixes {
            if fix.en.trim().is_empty() || !has_cjk(&fix.zh) {
                problems.push(format!("{id}: a fix lacks its English or Chinese text"));
            }
            if fix.snippet.is_some() != fix.lang.is_some() {
                problems.push(format!(
                    "{id}: a fix has a snippet without its lang or the reverse"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn catalog_texts_are_not_boilerplate() {
    // The same summary or technical paragraph under two ids is a copy, not knowledge.
    let mut seen = BTreeSet::new();
    for cause in catalog().causes() {
        for text in [
            &cause.summary.en,
            &cause.technical.en,
            &cause.summary.zh,
            &cause.technical.zh,
        ] {
            assert!(
                seen.insert(text.clone()),
                "{}: text repeated from another cause: {text}",
                cause.id
            );
        }
        assert!(
            !cause.summary.en.to_lowercase().contains("todo")
                && !cause.technical.en.contains("TODO"),
            "{}",
            cause.id
        );
    }
}

#[test]
fn the_signature_database_is_large_and_names_only_catalog_causes() {
    let db = signatures();
    assert!(
        db.signatures().len() >= 120,
        "only {} signatures",
        db.signatures().len()
    );
    for sig in db.signatures() {
        assert!(!sig.test.is_empty(), "{}: no test line", sig.id);
        for cause in &sig.causes {
            assert!(
                catalog().get(cause).is_some(),
                "{}: unknown cause {cause}",
                sig.id
            );
        }
        assert!(has_cjk(&sig.note.zh), "{}: note.zh is not Chinese", sig.id);
        assert!(sig.note.en.len() > 20, "{}: note.en too short", sig.id);
    }
}

#[test]
fn every_signature_wins_on_its_own_test_lines() {
    let db = signatures();
    let mut problems = Vec::new();
    for sig in db.signatures() {
        for test in &sig.test {
            let contains = if sig.ignore_case {
                test.to_ascii_lowercase()
                    .contains(&sig.literal.to_ascii_lowercase())
            } else {
                test.contains(&sig.literal)
            };
            if !contains {
                problems.push(format!(
                    "{}: literal {:?} is not in its test",
                    sig.id, sig.literal
                ));
            }
            let best = match sig.source {
                Source::Log => db.match_line(test),
                Source::Page => db.match_page(test).into_iter().next(),
            };
            match best {
                Some(m) if m.signature.id == sig.id => {}
                Some(m) => {
                    problems.push(format!("{}: its test is won by {}", sig.id, m.signature.id))
                }
                None => problems.push(format!("{}: its test matches nothing: {test}", sig.id)),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn explain_names_the_product_and_causes_of_every_signature_test() {
    let mut problems = Vec::new();
    for sig in signatures().signatures() {
        for test in &sig.test {
            let e = explain(&InputText::from_bytes(test.clone().into_bytes()));
            let (product, causes): (Option<&str>, Vec<String>) = match e.kind {
                InputKind::Lines if !e.lines.is_empty() => (
                    Some(e.lines[0].signature.product.as_str()),
                    e.lines[0].causes.clone(),
                ),
                _ => (
                    e.pages.first().map(|p| p.signature.product.as_str()),
                    e.pages
                        .first()
                        .map(|p| p.causes.clone())
                        .unwrap_or_default(),
                ),
            };
            if product != Some(sig.product.as_str()) {
                problems.push(format!(
                    "{}: product {:?}, expected {}",
                    sig.id, product, sig.product
                ));
            }
            if sig.refine.is_none() && causes != sig.causes {
                problems.push(format!(
                    "{}: causes {:?}, expected {:?}",
                    sig.id, causes, sig.causes
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_catalog_covers_every_product_the_issue_names() {
    let products: BTreeSet<&str> = signatures()
        .signatures()
        .iter()
        .map(|s| s.product.as_str())
        .collect();
    for product in [
        "nginx",
        "apache",
        "php-fpm",
        "gunicorn",
        "uwsgi",
        "haproxy",
        "envoy",
        "traefik",
        "caddy",
        "cloudflare",
        "aws-elb",
        "google",
        "varnish",
        "iis",
        "heroku",
    ] {
        assert!(products.contains(product), "no signature for {product}");
    }
}
