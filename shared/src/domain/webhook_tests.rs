use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::domain::integration::webhook_secret_digest;

const NOW: i64 = 1_790_000_000;
const MR: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/merge_request.json");
const PUSH: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/push.json");
const TAG_PUSH: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/tag_push.json");
const NOTE: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/note_merge_request.json");
const VULNERABILITY: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/vulnerability.json");
const ACCESS_TOKEN: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/resource_access_token_project.json");

fn token_creds(secret: &str) -> Credentials {
    Credentials::default().with_token_digest_hex(&webhook_secret_digest(secret))
}

fn with_token(token: &str) -> DeliveryHeaders<'_> {
    DeliveryHeaders { token: Some(token), ..DeliveryHeaders::default() }
}

fn signed<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> DeliveryHeaders<'a> {
    DeliveryHeaders {
        webhook_id: Some(id),
        webhook_timestamp: Some(ts),
        webhook_signature: Some(sig),
        ..DeliveryHeaders::default()
    }
}

fn edit(fixture: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(fixture).expect("fixture is JSON");
    f(&mut v);
    serde_json::to_vec(&v).expect("serialises")
}

#[test]
fn the_token_must_match_a_stored_digest() {
    let creds = token_creds("s3cret-value");
    assert_eq!(authenticate(Some(&creds), &with_token("s3cret-value"), b"{}", NOW), Ok(()));
    assert_eq!(authenticate(Some(&creds), &with_token("s3cret-valuE"), b"{}", NOW), Err(AuthFailure::WrongToken));
    assert_eq!(authenticate(Some(&creds), &DeliveryHeaders::default(), b"{}", NOW), Err(AuthFailure::MissingToken));
    assert_eq!(authenticate(Some(&creds), &with_token(""), b"{}", NOW), Err(AuthFailure::MissingToken));
    let huge = "x".repeat(513);
    assert_eq!(authenticate(Some(&creds), &with_token(&huge), b"{}", NOW), Err(AuthFailure::MissingToken));
}

#[test]
fn a_previous_secret_still_verifies_while_it_is_listed() {
    let creds = token_creds("new-secret").with_token_digest_hex(&webhook_secret_digest("old-secret"));
    assert_eq!(authenticate(Some(&creds), &with_token("old-secret"), b"{}", NOW), Ok(()));
    assert_eq!(authenticate(Some(&creds), &with_token("new-secret"), b"{}", NOW), Ok(()));
    assert_eq!(authenticate(Some(&creds), &with_token("other"), b"{}", NOW), Err(AuthFailure::WrongToken));
}

#[test]
fn unknown_integrations_and_empty_credentials_refuse_everything() {
    assert_eq!(authenticate(None, &with_token("anything"), b"{}", NOW), Err(AuthFailure::UnknownIntegration));
    let empty = Credentials::default().with_token_digest_hex("not hex");
    assert_eq!(authenticate(Some(&empty), &with_token(""), b"{}", NOW), Err(AuthFailure::NoCredentials));
    // The digest of the empty string must not let an empty token in through the dummy path.
    assert_eq!(authenticate(Some(&empty), &DeliveryHeaders::default(), b"{}", NOW), Err(AuthFailure::NoCredentials));
}

#[test]
fn a_valid_signature_authenticates_and_the_token_is_then_ignored() {
    let key = SigningKey::generate();
    let creds = Credentials { token_digests: Vec::new(), signing_keys: vec![key.clone()] };
    let ts = NOW.to_string();
    let sig = key.sign("msg_1", &ts, MR);
    assert_eq!(authenticate(Some(&creds), &signed("msg_1", &ts, &sig), MR, NOW), Ok(()));
    // A signing integration never falls back to the plain token, even a correct one.
    let both = token_creds("s3cret").signing_keys(vec![key]);
    assert_eq!(authenticate(Some(&both), &with_token("s3cret"), MR, NOW), Err(AuthFailure::MissingSignature));
}

trait WithKeys {
    fn signing_keys(self, keys: Vec<SigningKey>) -> Self;
}

impl WithKeys for Credentials {
    fn signing_keys(mut self, keys: Vec<SigningKey>) -> Self {
        self.signing_keys = keys;
        self
    }
}

#[test]
fn tampered_bodies_wrong_keys_and_stale_timestamps_fail() {
    let key = SigningKey::generate();
    let creds = Credentials::default().signing_keys(vec![key.clone()]);
    let ts = NOW.to_string();
    let sig = key.sign("msg_1", &ts, MR);
    let mut tampered = MR.to_vec();
    tampered[10] ^= 1;
    assert_eq!(authenticate(Some(&creds), &signed("msg_1", &ts, &sig), &tampered, NOW), Err(AuthFailure::BadSignature));
    assert_eq!(authenticate(Some(&creds), &signed("msg_2", &ts, &sig), MR, NOW), Err(AuthFailure::BadSignature));
    let other = SigningKey::generate().sign("msg_1", &ts, MR);
    assert_eq!(authenticate(Some(&creds), &signed("msg_1", &ts, &other), MR, NOW), Err(AuthFailure::BadSignature));
    for (skew, ok) in [(300, true), (-300, true), (301, false), (-301, false)] {
        let ts = (NOW + skew).to_string();
        let sig = key.sign("msg_1", &ts, MR);
        let expected = if ok { Ok(()) } else { Err(AuthFailure::StaleTimestamp) };
        assert_eq!(authenticate(Some(&creds), &signed("msg_1", &ts, &sig), MR, NOW), expected, "skew {skew}");
    }
    assert_eq!(authenticate(Some(&creds), &signed("msg_1", "soon", &sig), MR, NOW), Err(AuthFailure::StaleTimestamp));
    let v2 = sig.replacen("v1,", "v2,", 1);
    assert_eq!(authenticate(Some(&creds), &signed("msg_1", &ts, &v2), MR, NOW), Err(AuthFailure::BadSignature));
}

#[test]
fn any_one_of_several_signatures_and_keys_may_match() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let ts = NOW.to_string();
    let good = new.sign("msg_1", &ts, PUSH);
    let junk = SigningKey::generate().sign("msg_1", &ts, PUSH);
    let header = format!("v1,bm90IGEgc2lnbmF0dXJl {junk} {good}");
    let creds = Credentials::default().signing_keys(vec![old.clone(), new]);
    assert_eq!(authenticate(Some(&creds), &signed("msg_1", &ts, &header), PUSH, NOW), Ok(()));
    let only_old = Credentials::default().signing_keys(vec![old]);
    assert_eq!(
        authenticate(Some(&only_old), &signed("msg_1", &ts, &header), PUSH, NOW),
        Err(AuthFailure::BadSignature)
    );
}

#[test]
fn signing_keys_round_trip_through_the_whsec_form() {
    let key = SigningKey::generate();
    let text = key.to_whsec();
    assert!(text.starts_with("whsec_"));
    assert_eq!(SigningKey::parse(&text), Some(key.clone()));
    assert!(SigningKey::parse("whsec_").is_none());
    assert!(SigningKey::parse(&text[6..]).is_none());
    assert!(!format!("{key:?}").contains(&text[6..]));
}

#[test]
fn dedup_keys_prefer_the_idempotency_key_then_the_event_uuid_with_the_body() {
    let h = DeliveryHeaders {
        idempotency_key: Some("a2b0c7f2-1111-4d2e-9f00-000000000001"),
        webhook_id: Some("other"),
        event_uuid: Some("e1"),
        ..DeliveryHeaders::default()
    };
    assert_eq!(dedup_key(&h, b"{}"), "idem:a2b0c7f2-1111-4d2e-9f00-000000000001");
    let h = DeliveryHeaders { webhook_id: Some("msg_2"), event_uuid: Some("e1"), ..DeliveryHeaders::default() };
    assert_eq!(dedup_key(&h, b"{}"), "idem:msg_2");
    let h = DeliveryHeaders { event_uuid: Some("e1"), ..DeliveryHeaders::default() };
    let a = dedup_key(&h, b"{\"a\":1}");
    assert!(a.starts_with("uuid:e1:"));
    // Two hooks triggered by one request share the UUID but not the body.
    assert_ne!(a, dedup_key(&h, b"{\"a\":2}"));
    let none = DeliveryHeaders::default();
    assert!(dedup_key(&none, b"{}").starts_with("body:"));
    assert_eq!(dedup_key(&none, b"{}"), dedup_key(&none, b"{}"));
    // Keys with characters outside the safe set, or too long, are not used verbatim.
    let odd = DeliveryHeaders { idempotency_key: Some("a#b"), ..DeliveryHeaders::default() };
    assert!(dedup_key(&odd, b"{}").starts_with("body:"));
    let long = "k".repeat(129);
    let long = DeliveryHeaders { idempotency_key: Some(&long), ..DeliveryHeaders::default() };
    assert!(dedup_key(&long, b"{}").starts_with("body:"));
}

fn mr_scan(body: &[u8]) -> Routed {
    route(Some("Merge Request Hook"), body, 999).expect("json")
}

#[test]
fn merge_request_open_and_reopen_scan_the_head() {
    let Routed::Act(Action::Scan { project_id, target, sha, trigger }) = mr_scan(MR) else {
        panic!("the doc's open event is not a scan");
    };
    assert_eq!(project_id, 1);
    assert_eq!(target, ScanTarget::MergeRequest { iid: 1, target_branch: "master".into() });
    assert_eq!(sha.as_str(), "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(trigger, ScanTrigger::MergeRequest);
    let reopened = edit(MR, |v| v["object_attributes"]["action"] = json!("reopen"));
    assert!(matches!(mr_scan(&reopened), Routed::Act(Action::Scan { .. })));
}

#[test]
fn merge_request_updates_scan_only_with_new_commits() {
    let pushed = edit(MR, |v| {
        v["object_attributes"]["action"] = json!("update");
        v["object_attributes"]["oldrev"] = json!("95790bf891e76fee5e1747ab589903a6a1f80f22");
    });
    assert!(matches!(mr_scan(&pushed), Routed::Act(Action::Scan { .. })));
    // Title, labels, assignees or reviewers: `changes` differ, no `oldrev`.
    for field in ["title", "labels", "assignees", "reviewers"] {
        let edited = edit(MR, |v| {
            v["object_attributes"]["action"] = json!("update");
            v["changes"] = json!({ field: { "previous": "a", "current": "b" } });
        });
        assert_eq!(mr_scan(&edited), Routed::Ignore(IgnoreReason::NoNewCommits), "{field}");
    }
    for action in ["approved", "unapproved", "approval", "unapproval"] {
        let a = edit(MR, |v| v["object_attributes"]["action"] = json!(action));
        assert_eq!(mr_scan(&a), Routed::Ignore(IgnoreReason::NotACodeChange), "{action}");
    }
}

#[test]
fn merge_and_close_cancel_pending_work() {
    for (action, reason) in [("merge", CancelReason::Merged), ("close", CancelReason::Closed)] {
        let body = edit(MR, |v| v["object_attributes"]["action"] = json!(action));
        assert_eq!(mr_scan(&body), Routed::Act(Action::Cancel { project_id: 1, iid: 1, reason }));
    }
}

#[test]
fn merge_requests_with_bad_ids_or_commits_are_unexpected_not_errors() {
    for f in [
        (|v: &mut Value| v["object_attributes"]["last_commit"]["id"] = json!("nope")) as fn(&mut Value),
        |v| v["object_attributes"]["last_commit"]["id"] = json!("0000000000000000000000000000000000000000"),
        |v| v["project"]["id"] = json!(0),
        |v| v["project"]["id"] = json!(u64::MAX),
        |v| v["object_attributes"]["iid"] = json!(-1),
        |v| v["object_attributes"]["target_branch"] = json!("a..b"),
        |v| v["object_kind"] = json!("push"),
    ] {
        assert_eq!(mr_scan(&edit(MR, f)), Routed::Ignore(IgnoreReason::UnexpectedPayload));
    }
}

#[test]
fn pushes_to_the_default_branch_scan_the_new_head() {
    let Routed::Act(Action::Scan { project_id, target, sha, trigger }) =
        route(Some("Push Hook"), PUSH, 999).expect("json")
    else {
        panic!("the doc's push to master is not a scan");
    };
    assert_eq!(project_id, 15);
    assert_eq!(target, ScanTarget::Branch { branch: "master".into() });
    assert_eq!(sha.as_str(), "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(trigger, ScanTrigger::Push);
    let other = edit(PUSH, |v| v["ref"] = json!("refs/heads/feature"));
    assert_eq!(route(Some("Push Hook"), &other, 999), Ok(Routed::Ignore(IgnoreReason::NotDefaultBranch)));
    let deleted = edit(PUSH, |v| {
        v["after"] = json!("0000000000000000000000000000000000000000");
        v["checkout_sha"] = Value::Null;
    });
    assert_eq!(route(Some("Push Hook"), &deleted, 999), Ok(Routed::Ignore(IgnoreReason::BranchDeleted)));
    assert_eq!(route(Some("Tag Push Hook"), TAG_PUSH, 999), Ok(Routed::Ignore(IgnoreReason::TagPush)));
}

#[test]
fn the_integrations_own_notes_are_ignored_as_such() {
    assert_eq!(route(Some("Note Hook"), NOTE, 1), Ok(Routed::Ignore(IgnoreReason::OwnNote)));
    assert_eq!(route(Some("Confidential Note Hook"), NOTE, 1), Ok(Routed::Ignore(IgnoreReason::OwnNote)));
    assert_eq!(route(Some("Note Hook"), NOTE, 2), Ok(Routed::Ignore(IgnoreReason::Note)));
}

#[test]
fn vulnerability_events_carry_gitlabs_state() {
    let Ok(Routed::Act(Action::Vulnerability(v))) = route(Some("Vulnerability Hook"), VULNERABILITY, 1) else {
        panic!("not recorded");
    };
    assert_eq!(v.project_id, 50);
    assert_eq!(v.vulnerability_id, Some(1));
    assert_eq!(v.state, "confirmed");
    assert_eq!(v.severity.as_deref(), Some("high"));
    assert_eq!(v.report_type.as_deref(), Some("dependency_scanning"));
    assert!(!v.identifiers.is_empty() && v.identifiers.len() <= 10);
    assert!(v.identifiers.iter().all(|i| i.contains(':')));
}

#[test]
fn only_the_integrations_own_expiring_token_matters() {
    assert_eq!(
        route(Some("Resource Access Token Hook"), ACCESS_TOKEN, 90),
        Ok(Routed::Act(Action::TokenExpiring { expires_at: Some("2024-01-26".into()) }))
    );
    assert_eq!(
        route(Some("Resource Access Token Hook"), ACCESS_TOKEN, 91),
        Ok(Routed::Ignore(IgnoreReason::OtherToken))
    );
}

#[test]
fn unknown_kinds_are_ignored_and_non_json_is_an_error() {
    assert_eq!(
        route(Some("Pipeline Hook"), b"{\"object_kind\":\"pipeline\"}", 1),
        Ok(Routed::Ignore(IgnoreReason::UnknownEvent))
    );
    assert_eq!(route(Some("System Hook"), b"[1,2]", 1), Ok(Routed::Ignore(IgnoreReason::UnknownEvent)));
    assert_eq!(route(Some("Pipeline Hook"), b"{nope", 1), Err(NotJson));
    assert_eq!(route(Some("Merge Request Hook"), b"{\"object_kind\":", 1), Err(NotJson));
    assert_eq!(
        route(Some("Merge Request Hook"), b"{\"object_kind\":\"merge_request\"}", 1),
        Ok(Routed::Ignore(IgnoreReason::UnexpectedPayload))
    );
    // Without the header, the body's object_kind decides.
    assert!(matches!(route(None, MR, 1), Ok(Routed::Act(Action::Scan { .. }))));
    assert_eq!(route(None, b"{}", 1), Ok(Routed::Ignore(IgnoreReason::UnknownEvent)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_headers_and_bodies_never_panic_or_authenticate(
        token in proptest::option::of(".{0,80}"),
        id in proptest::option::of("[ -~]{0,40}"),
        ts in proptest::option::of("-?[0-9]{0,12}"),
        sig in proptest::option::of("[ -~]{0,200}"),
        event in proptest::option::of("[ -~]{0,30}"),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let h = DeliveryHeaders {
            event: event.as_deref(),
            token: token.as_deref(),
            idempotency_key: id.as_deref(),
            event_uuid: id.as_deref(),
            webhook_id: id.as_deref(),
            webhook_timestamp: ts.as_deref(),
            webhook_signature: sig.as_deref(),
        };
        let creds = token_creds("the-real-secret").signing_keys(Vec::new());
        prop_assert!(authenticate(Some(&creds), &h, &body, NOW).is_err() || token.as_deref() == Some("the-real-secret"));
        let signing = Credentials::default().signing_keys(vec![SigningKey::generate()]);
        prop_assert!(authenticate(Some(&signing), &h, &body, NOW).is_err());
        prop_assert!(authenticate(None, &h, &body, NOW).is_err());
        let key = dedup_key(&h, &body);
        prop_assert!(key.len() <= 140 && key.is_ascii());
        let _ = route(event.as_deref(), &body, 1);
    }

    #[test]
    fn a_signed_body_verifies_and_any_flipped_byte_does_not(
        body in proptest::collection::vec(any::<u8>(), 1..2048),
        flip in any::<prop::sample::Index>(),
        skew in -300i64..=300,
    ) {
        let key = SigningKey::generate();
        let creds = Credentials::default().signing_keys(vec![key.clone()]);
        let ts = (NOW + skew).to_string();
        let sig = key.sign("msg_p", &ts, &body);
        prop_assert_eq!(authenticate(Some(&creds), &signed("msg_p", &ts, &sig), &body, NOW), Ok(()));
        let mut tampered = body;
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        prop_assert_eq!(
            authenticate(Some(&creds), &signed("msg_p", &ts, &sig), &tampered, NOW),
            Err(AuthFailure::BadSignature)
        );
    }

    #[test]
    fn merge_request_payloads_with_arbitrary_fields_route_without_panicking(
        action in "[a-z_]{0,12}",
        iid in any::<i64>(),
        project in any::<u64>(),
        sha in "[0-9a-fA-F]{0,70}",
        branch in ".{0,40}",
    ) {
        let body = edit(MR, |v| {
            v["object_attributes"]["action"] = json!(action);
            v["object_attributes"]["iid"] = json!(iid);
            v["object_attributes"]["last_commit"]["id"] = json!(sha);
            v["object_attributes"]["target_branch"] = json!(branch);
            v["project"]["id"] = json!(project);
        });
        if let Ok(Routed::Act(Action::Scan { project_id, target: ScanTarget::MergeRequest { iid: got, target_branch }, sha: s, .. })) =
            route(Some("Merge Request Hook"), &body, 1)
        {
            prop_assert!(project_id >= 1 && project_id <= i64::MAX as u64);
            prop_assert_eq!(got as i64, iid);
            prop_assert!(valid_branch(&target_branch));
            prop_assert_eq!(s.as_str(), sha.to_ascii_lowercase());
        }
    }
}
