//! `diagnose` on every lab scenario: the scenario's cause must be the first finding, and the
//! healthy control must report none. Each scenario runs a real nginx (and PHP-FPM, gunicorn,
//! uWSGI where the failure is theirs); diagnose reads its logs, its configuration and the host.

mod common;

use gwdoctor::diagnose::{diagnose, Diagnosis};
use gwdoctor::lab::runner;
use gwdoctor::lab::scenarios;
use std::time::Duration;

/// Runs a scenario, then diagnoses it while its processes still run.
pub fn diagnose_scenario(name: &str) -> Option<Diagnosis> {
    let scenario = scenarios::find(name).unwrap_or_else(|| panic!("no scenario {name}"));
    if let Some(why) = runner::skip_reason(&scenario) {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} cannot run in CI: {why}"
        );
        eprintln!("skipped {name}: {why}");
        return None;
    }
    let mut started = runner::start(&scenario).unwrap();
    runner::exercise(&mut started).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let options = started.diagnose_options();
    let d = diagnose(&options);
    let runner::Started { bench, nginx, .. } = started;
    nginx.stop();
    bench.shutdown();
    Some(d.unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn check(name: &str) {
    let Some(d) = diagnose_scenario(name) else {
        return;
    };
    let cause = scenarios::find(name).unwrap().cause;
    let found: Vec<String> = d
        .findings
        .iter()
        .map(|f| format!("{} {:.2}", f.cause, f.confidence))
        .collect();
    if cause == "none" {
        let gateway: Vec<&String> = found.iter().filter(|f| !f.starts_with("host-")).collect();
        assert!(
            gateway.is_empty(),
            "{name}: healthy control has findings {found:?}"
        );
    } else {
        assert_eq!(
            d.findings.first().map(|f| f.cause.as_str()),
            Some(cause),
            "{name}: findings {found:?}"
        );
    }
}

macro_rules! diagnose_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $( #[test] fn $test() { check($name); } )*

        #[test]
        fn every_scenario_is_diagnosed() {
            let tested = [$($name),*];
            for s in scenarios::all() {
                assert!(tested.contains(&s.name), "scenario {} has no diagnose test", s.name);
            }
        }
    };
}

with_scenarios!(diagnose_tests);

#[test]
fn reports_render_in_every_format() {
    let Some(d) = diagnose_scenario("refused") else {
        return;
    };
    use gwdoctor::i18n::Lang;
    use gwdoctor::report::diagnose as r;
    let json = r::json(&d, Lang::En);
    assert_eq!(json["healthy"], false);
    assert_eq!(json["findings"][0]["cause"], "upstream-refused");
    assert!(json["findings"][0]["evidence"][0]["location"]
        .as_str()
        .unwrap()
        .contains("error.log:"));
    assert!(json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "pass"));
    let html = r::html(&d, Lang::Zh);
    assert!(
        html.contains("<svg") && html.contains("hop failing") && html.contains("upstream-refused")
    );
    assert!(
        !html.contains("http://") || !html.contains("<script src"),
        "no external assets"
    );
    let md = r::markdown(&d, Lang::En);
    assert!(md.starts_with("# gwdoctor diagnosis") && md.contains("`upstream-refused`"));
    assert!(r::text(&d, Lang::Zh).contains("最可能的原因"));
}
