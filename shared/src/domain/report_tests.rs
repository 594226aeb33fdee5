use std::collections::HashSet;

use super::*;
use crate::domain::findings::{Finding, FindingState, SecretInfo, Triage};
use crate::domain::secrets::Severity;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn finding(fp: &str, state: FindingState, path: &str, line: u32, message: &str) -> Finding {
    Finding {
        fingerprint: fp.repeat(32 / fp.len()),
        scanner: "builtin".into(),
        rule_id: "aws-access-key".into(),
        severity: Severity::High,
        path: path.into(),
        line,
        message: message.into(),
        secret: Some(SecretInfo { redacted: "AKIA…".into(), length: 20 }),
        has_fix: false,
        state,
        triage: Triage::Open,
    }
}

fn input<'a>(findings: &'a [Finding], on_target: &'a HashSet<String>) -> ReportInput<'a> {
    ReportInput {
        integration_id: "int_1",
        project_web_url: "https://gitlab.example.com/group/app",
        sha: SHA,
        findings,
        on_target,
        truncated: false,
    }
}

/// Lines GitLab's quick-action extractor would run: a line starting with `/` outside code.
fn quick_action_lines(body: &str) -> Vec<&str> {
    body.lines().filter(|l| l.trim_start_matches('\r').starts_with('/')).collect()
}

#[test]
fn hostile_text_stays_inside_one_code_span() {
    let hostile = [
        "/approve",
        "x\n/merge\r\n/close",
        "@all please look",
        "<img src=x onerror=alert(1)>",
        "```\n/approve\n```",
        "[click](javascript:alert(1))",
        "``",
        "`a` and ``b``",
        "rtl\u{202E}gnp.exe",
        " ",
    ];
    for text in hostile {
        let span = inert(text);
        assert!(!span.contains('\n') && !span.contains('\r'), "{span:?}");
        assert!(!span.contains('\u{202E}'));
        // The fence is longer than any backtick run inside, so the span cannot be closed early.
        let fence = span.chars().take_while(|c| *c == '`').count();
        assert!(fence >= 1 && span.ends_with(&"`".repeat(fence)), "{span:?}");
        let inner = &span[fence..span.len() - fence];
        let longest = inner.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        assert!(longest < fence, "{span:?}");
    }
    assert_eq!(inert("/approve"), "`/approve`");
    assert_eq!(inert("a`b"), "``a`b``");
    assert_eq!(inert("`x"), "`` `x ``");
    assert_eq!(inert(&"a".repeat(500)).chars().count(), 200 + 1 + 2);
}

#[test]
fn the_summary_lists_new_findings_with_links_and_counts_the_rest() {
    let findings = vec![
        finding("a", FindingState::New, "config/app.env", 3, "AWS access key"),
        finding("b", FindingState::Present, "old.env", 1, "AWS access key"),
        finding("c", FindingState::Fixed, "gone.env", 9, "AWS access key"),
    ];
    let on_target = HashSet::new();
    let s = summary(&input(&findings, &on_target));
    assert!(s.body.starts_with("<!-- gitlab-connector:summary integration=int_1 digest="));
    assert_eq!(summary_digest(&s.body, "int_1"), Some(s.digest.as_str()));
    assert_eq!(summary_digest(&s.body, "int_2"), None, "another integration's marker");
    assert!(s.body.contains("2 open findings introduced"), "{}", s.body);
    assert!(s.body.contains("**1 new**, 1 present, 1 fixed"), "{}", s.body);
    assert!(s.body.contains(
        "[`config/app.env:3`](https://gitlab.example.com/group/app/-/blob/0123456789abcdef0123456789abcdef01234567/config/app.env#L3)"
    ));
    assert!(!s.body.contains("AKIA"), "not even the redacted prefix");
    // The same content gives the same digest; another commit another one.
    assert_eq!(summary(&input(&findings, &on_target)), s);
    let mut other = input(&findings, &on_target);
    other.sha = "1123456789abcdef0123456789abcdef01234567";
    assert_ne!(summary(&other).digest, s.digest);
}

#[test]
fn a_finding_also_on_the_target_branch_or_dismissed_is_not_introduced() {
    let mut dismissed = finding("d", FindingState::New, "a.env", 1, "m");
    dismissed.triage = Triage::Dismissed;
    let findings = vec![finding("a", FindingState::Present, "a.env", 2, "m"), dismissed];
    let on_target: HashSet<String> = [findings[0].fingerprint.clone()].into();
    let i = input(&findings, &on_target);
    assert_eq!(i.introduced().count(), 0);
    assert_eq!(status_for(i.introduced().count()).0, "success");
    assert_eq!(status_for(2), ("failed", "2 open findings introduced".to_owned()));
    assert!(summary(&i).body.contains("no open findings introduced"));
    assert!(summary(&i).body.contains("(dismissed)"));
}

#[test]
fn hostile_paths_and_messages_render_inert_in_every_body() {
    let findings = vec![finding(
        "e",
        FindingState::New,
        "x\n/approve\n@all <b>`</b>.env",
        4,
        "```\n/merge\n``` [x](javascript:alert(1)) @all",
    )];
    let on_target = HashSet::new();
    let body = summary(&input(&findings, &on_target)).body;
    let thread = thread_body(&findings[0], SHA);
    for b in [&body, &thread] {
        assert!(quick_action_lines(b).is_empty(), "{b}");
        assert!(!b.lines().any(|l| l.starts_with("```")), "no fence opens: {b}");
        // Every hostile fragment is inside a code span on a line of ours.
        for line in b.lines().filter(|l| l.contains("@all") || l.contains("<b>") || l.contains("javascript")) {
            assert!(line.starts_with("- **") || line.starts_with("**"), "{line}");
        }
    }
    // The path in the URL is percent-encoded: no space, newline, bracket or parenthesis.
    let url = blob_url("https://h/g/p", SHA, "a b/(x)\n[y].env", 2);
    assert_eq!(url, format!("https://h/g/p/-/blob/{SHA}/a%20b/%28x%29%0A%5By%5D.env#L2"));
}

#[test]
fn thread_markers_round_trip_and_foreign_bodies_do_not_match() {
    let f = finding("f", FindingState::New, "a.env", 1, "m");
    assert_eq!(thread_fingerprint(&thread_body(&f, SHA)), Some(f.fingerprint.as_str()));
    assert_eq!(thread_fingerprint("<!-- gitlab-connector:finding fingerprint=zz -->"), None);
    assert_eq!(thread_fingerprint("hello"), None);
}

#[test]
fn added_lines_follow_the_hunks() {
    let diff = "@@ -1,3 +1,4 @@\n line1\n-old2\n+new2\n+new3\n line3\n@@ -10,2 +11,3 @@ fn x()\n ctx\n+added\n ctx\n\\ No newline at end of file\n";
    assert_eq!(added_lines(diff).into_iter().collect::<Vec<_>>(), vec![2, 3, 12]);
    assert!(added_lines("").is_empty());
    assert!(added_lines("@@ garbage @@\n+x\n").is_empty());
    // A new file: every line added.
    assert_eq!(added_lines("@@ -0,0 +1,2 @@\n+a\n+b\n").into_iter().collect::<Vec<_>>(), vec![1, 2]);
}
