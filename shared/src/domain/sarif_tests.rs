//! SARIF shapes follow OASIS SARIF 2.1.0 (sections 3.13 sarifLog, 3.14 run, 3.19 tool component
//! with `rules`, 3.27 result with `ruleId`, `level`, `message`, `locations`, `fixes`, 3.29
//! physicalLocation, 3.30 region, 3.55 fix, 3.56 artifactChange, 3.57 replacement), in the form
//! semgrep writes with `--sarif` (rules carry `properties.security-severity`).

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn log(results: &serde_json::Value) -> Vec<u8> {
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "semgrep",
                "rules": [
                    { "id": "python.sqli", "defaultConfiguration": { "level": "error" },
                      "properties": { "security-severity": "9.1" } },
                    { "id": "js.eval", "defaultConfiguration": { "level": "warning" } },
                    { "id": "style.note", "defaultConfiguration": { "level": "note" } }
                ]
            }},
            "results": results
        }]
    })
    .to_string()
    .into_bytes()
}

fn result(rule: &str, uri: &str, line: u32) -> serde_json::Value {
    json!({
        "ruleId": rule,
        "message": { "text": format!("{rule} found") },
        "locations": [{ "physicalLocation": {
            "artifactLocation": { "uri": uri },
            "region": { "startLine": line, "startColumn": 5, "endLine": line, "endColumn": 20 }
        }}]
    })
}

#[test]
fn results_map_to_findings_with_severity_from_the_rule() {
    let bytes = log(&json!([
        result("python.sqli", "app/db.py", 12),
        result("js.eval", "web/index.js", 3),
        result("style.note", "README.md", 1),
    ]));
    let report = parse_sarif(&bytes, "semgrep", SarifLimits::default()).expect("parsed");
    assert_eq!(report.dropped, 0);
    let got: Vec<(&str, Severity, &str, u32)> =
        report.findings.iter().map(|f| (f.rule_id.as_str(), f.severity, f.path.as_str(), f.line)).collect();
    assert_eq!(
        got,
        vec![
            ("python.sqli", Severity::Critical, "app/db.py", 12),
            ("js.eval", Severity::Medium, "web/index.js", 3),
            ("style.note", Severity::Low, "README.md", 1),
        ]
    );
    assert!(report.findings.iter().all(|f| f.scanner == "semgrep" && f.fixes.is_empty()));
}

#[test]
fn fixes_become_edits() {
    let mut with_fix = result("js.eval", "web/index.js", 3);
    with_fix["fixes"] = json!([{
        "description": { "text": "Use JSON.parse" },
        "artifactChanges": [{
            "artifactLocation": { "uri": "web/index.js" },
            "replacements": [{
                "deletedRegion": { "startLine": 3, "startColumn": 5, "endLine": 3, "endColumn": 20 },
                "insertedContent": { "text": "JSON.parse(input)" }
            }]
        }]
    }]);
    let report = parse_sarif(&log(&json!([with_fix])), "semgrep", SarifLimits::default()).expect("parsed");
    assert_eq!(
        report.findings[0].fixes,
        vec![vec![Edit {
            path: "web/index.js".into(),
            start_line: 3,
            start_column: Some(5),
            end_line: Some(3),
            end_column: Some(20),
            insert: "JSON.parse(input)".into(),
        }]]
    );
}

#[test]
fn paths_outside_the_checkout_and_missing_locations_are_dropped() {
    let mut no_location = result("js.eval", "x.js", 1);
    no_location["locations"] = json!([]);
    let bytes = log(&json!([
        result("js.eval", "/etc/passwd", 1),
        result("js.eval", "../../outside.js", 1),
        result("js.eval", "https://example.com/a.js", 1),
        result("js.eval", "C:\\temp\\a.js", 1),
        result("js.eval", "file:///etc/shadow", 1),
        no_location,
        result("js.eval", "./src/./ok.js", 2),
    ]));
    let report = parse_sarif(&bytes, "semgrep", SarifLimits::default()).expect("parsed");
    assert_eq!(report.dropped, 6);
    assert_eq!(report.findings.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), vec!["src/ok.js"]);
}

#[test]
fn output_is_bounded() {
    let many: Vec<serde_json::Value> = (1..=50).map(|i| result("js.eval", "a.js", i)).collect();
    let limits = SarifLimits { max_results: 10, max_message_chars: 4, ..SarifLimits::default() };
    let report = parse_sarif(&log(&json!(many)), "semgrep", limits).expect("parsed");
    assert_eq!((report.findings.len(), report.dropped), (10, 40));
    assert!(report.findings.iter().all(|f| f.message.chars().count() <= 4));
}

#[test]
fn other_versions_and_non_sarif_are_refused() {
    assert!(matches!(parse_sarif(b"not json", "s", SarifLimits::default()), Err(SarifError::Malformed(_))));
    assert!(matches!(parse_sarif(b"{\"runs\": []}", "s", SarifLimits::default()), Err(SarifError::Malformed(_))));
    let old = json!({ "version": "2.0.0", "runs": [] }).to_string();
    assert_eq!(parse_sarif(old.as_bytes(), "s", SarifLimits::default()), Err(SarifError::Version("2.0.0".into())));
}

#[test]
fn fingerprints_survive_line_moves() {
    let a = parse_sarif(&log(&json!([result("js.eval", "a.js", 3)])), "semgrep", SarifLimits::default()).expect("a");
    let b = parse_sarif(&log(&json!([result("js.eval", "a.js", 40)])), "semgrep", SarifLimits::default()).expect("b");
    let c = parse_sarif(&log(&json!([result("js.eval", "b.js", 3)])), "semgrep", SarifLimits::default()).expect("c");
    assert_eq!(a.findings[0].fingerprint, b.findings[0].fingerprint);
    assert_ne!(a.findings[0].fingerprint, c.findings[0].fingerprint);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever URI a scanner writes, a kept path is relative, normalised and inside the checkout.
    #[test]
    fn kept_paths_stay_inside_the_checkout(uri in "[a-zA-Z0-9./\\\\:_-]{0,40}") {
        if let Some(path) = checkout_path(&uri) {
            prop_assert!(!path.starts_with('/') && !path.contains('\\') && !path.contains(':'));
            prop_assert!(path.split('/').all(|p| !p.is_empty() && p != "." && p != ".."));
        }
    }
}
