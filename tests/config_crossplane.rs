//! Differential test: `gwdoctor config --format crossplane` prints byte for byte what the real
//! `crossplane parse` (PyPI's crossplane) prints, over crossplane's own test configurations and
//! over gwdoctor's fixtures; and, over 90 real-world files, the same as crossplane's syntax-only
//! reading recorded beside them (`*.crossplane-nocheck.json`).
//!
//! crossplane must be installed (`pip install crossplane`, `.ci/run` does it): in CI (env `CI`
//! set) its absence fails the test; elsewhere the test says so and skips.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn peer(rel: &str) -> PathBuf {
    Path::new(ROOT).join("../shared/peer").join(rel)
}

/// Whether crossplane is there; in CI its absence is a failure.
fn have_crossplane() -> bool {
    let ok = Command::new("crossplane")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("crossplane is not installed (pip install crossplane): the differential test cannot run");
        }
        eprintln!("skipped: crossplane is not installed (pip install crossplane)");
    }
    ok
}

/// Every `*.conf` under `dir`, relative to it, sorted.
fn conf_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("readable dir")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.extension().is_some_and(|x| x == "conf") {
                out.push(
                    path.strip_prefix(base)
                        .expect("under base")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn run(cwd: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8(out.stdout).expect("UTF-8 JSON (non-ASCII is escaped)")
}

/// Runs both on every file of `dir` (relative names, so both print the same file names) and
/// returns (files compared, mismatches).
fn compare_dir(dir: &Path) -> (usize, Vec<String>) {
    let gwdoctor = env!("CARGO_BIN_EXE_gwdoctor");
    let files = conf_files(dir);
    let mut mismatches = Vec::new();
    for f in &files {
        let expected = run(dir, "crossplane", &["parse", f]);
        let got = run(dir, gwdoctor, &["config", "--format", "crossplane", f]);
        if expected != got {
            mismatches.push(format!(
                "{}:\n  crossplane: {}\n  gwdoctor:   {}",
                f,
                expected.trim(),
                got.trim()
            ));
        }
    }
    (files.len(), mismatches)
}

#[test]
fn crossplane_test_configurations_print_the_same() {
    if !have_crossplane() {
        return;
    }
    let (n, mismatches) = compare_dir(&peer("crossplane/tests/configs"));
    assert!(n >= 25, "only {n} files found");
    assert!(
        mismatches.is_empty(),
        "{} of {n} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    eprintln!("{n} of {n} crossplane test configurations print the same JSON");
}

#[test]
fn gwdoctor_fixtures_print_the_same() {
    if !have_crossplane() {
        return;
    }
    let (n, mismatches) = compare_dir(&Path::new(ROOT).join("tests/fixtures/config"));
    assert!(n >= 15, "only {n} files found");
    assert!(
        mismatches.is_empty(),
        "{} of {n} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    eprintln!("{n} of {n} fixtures print the same JSON");
}

/// The recorded file name is crossplane's machine's; compare everything else.
fn without_file_names(mut v: serde_json::Value) -> serde_json::Value {
    for key in ["config", "errors"] {
        if let Some(items) = v.get_mut(key).and_then(|x| x.as_array_mut()) {
            for item in items {
                if let Some(obj) = item.as_object_mut() {
                    obj.remove("file");
                }
            }
        }
    }
    v
}

#[test]
fn real_configurations_match_the_recorded_syntax_only_reading() {
    // No crossplane needed: its output is recorded beside each file.
    let dir = peer("real-configs/nginx");
    let gwdoctor = env!("CARGO_BIN_EXE_gwdoctor");
    let mut n = 0;
    let mut mismatches = Vec::new();
    for f in conf_files(&dir) {
        let recorded = std::fs::read_to_string(dir.join(format!("{f}.crossplane-nocheck.json")))
            .expect("recorded output");
        let expected = without_file_names(serde_json::from_str(&recorded).expect("JSON"));
        let got = run(
            &dir,
            gwdoctor,
            &[
                "config",
                "--format",
                "crossplane",
                "--single-file",
                "--syntax-only",
                &f,
            ],
        );
        let got = without_file_names(
            serde_json::from_str(&got).unwrap_or_else(|e| panic!("{f}: {e}: {got}")),
        );
        n += 1;
        if expected != got {
            mismatches.push(f);
        }
    }
    assert!(n >= 90, "only {n} files");
    assert!(
        mismatches.is_empty(),
        "{} of {n} differ: {mismatches:?}",
        mismatches.len()
    );
    eprintln!("{n} of {n} real configurations match crossplane's syntax-only reading");
}
