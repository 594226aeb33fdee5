//! Tests of the secret scanner. Credentials are assembled at run time from pieces, so that no
//! complete credential-shaped string sits in the source.

use proptest::prelude::*;

use super::*;

fn scanner() -> SecretScanner {
    SecretScanner::new(ScanSettings {
        digest_key: b"test-digest-key".to_vec(),
        allow_paths: vec!["docs/**".into(), "**/*.example".into()],
    })
}

/// A deterministic, high-entropy alphanumeric string of `n` characters.
fn random(n: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

fn upper(n: usize, seed: u64) -> String {
    random(n, seed).to_ascii_uppercase().replace(['O', 'I'], "7")
}

/// Each rule with a credential it must find, in a line of code around it.
fn planted() -> Vec<(&'static str, String, String)> {
    let key_body: String = (0..8).map(|i| random(64, 100 + i)).collect::<Vec<_>>().join("\n");
    vec![
        ("gitlab-token", format!("{}{}", "glpat-", random(20, 1)), "token = \"{}\"".into()),
        ("gitlab-token", format!("{}{}", "glrt-", random(24, 2)), "RUNNER={}".into()),
        ("gitlab-token", format!("{}{}", "gldt-", random(20, 3)), "deploy: {}".into()),
        ("gitlab-runner-registration-token", format!("{}{}", "GR1348941", random(20, 4)), "reg {}".into()),
        (
            "private-key",
            format!("\n{key_body}\n"),
            format!("{}{}", "-----BEGIN RSA PRIVATE", " KEY-----{}-----END RSA PRIVATE KEY-----"),
        ),
        ("aws-access-key-id", format!("{}{}", "AKIA", upper(16, 5)), "aws_access_key_id = {}".into()),
        ("aws-secret-access-key", random(40, 6), "aws_secret_access_key = {}".into()),
        ("github-token", format!("{}{}", "ghp_", random(36, 7)), "GITHUB_TOKEN: {}".into()),
        ("slack-token", format!("{}{}", "xoxb-", random(24, 8)), "slack = '{}'".into()),
        ("stripe-key", format!("{}{}", "sk_live_", random(24, 9)), "Stripe.api_key = '{}'".into()),
        ("google-api-key", format!("{}{}", "AIza", random(35, 10)), "maps key {}".into()),
        (
            "jwt",
            format!("eyJ{}.eyJ{}.{}", random(20, 11), random(30, 12), random(43, 13)),
            "Authorization: Bearer {}".into(),
        ),
        ("database-url-password", random(18, 14), "DATABASE_URL=postgres://app:{}@db.internal:5432/app".into()),
        ("generic-secret", random(32, 15), "client_secret = \"{}\"".into()),
    ]
}

#[test]
fn every_rule_finds_its_credential_and_keeps_none_of_it() {
    let scanner = scanner();
    for (rule, secret, line) in planted() {
        let text = format!("// config\nlet a = 1;\n{}\n", line.replace("{}", &secret));
        let findings = scanner.scan("src/config.rs", text.as_bytes()).expect("scanned");
        let found: Vec<&SecretFinding> = findings.iter().filter(|f| f.rule_id == rule).collect();
        assert_eq!(found.len(), 1, "{rule}: {findings:?}");
        let f = found[0];
        assert_eq!(f.line, 3, "{rule}");
        let compact: String = secret.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        assert_eq!(f.length, compact.len(), "{rule}");
        assert!(f.redacted.chars().count() <= 5, "{rule}: {}", f.redacted);
        let serialised = serde_json::to_string(f).expect("json");
        // No piece of the credential beyond the redacted prefix is kept anywhere in a finding.
        for window in compact.as_bytes().windows(8) {
            let piece = std::str::from_utf8(window).expect("ascii");
            assert!(!serialised.contains(piece), "{rule}: {piece} leaked in {serialised}");
        }
    }
}

#[test]
fn placeholders_and_low_entropy_values_are_not_findings() {
    let scanner = scanner();
    let text = "password = \"changeme-changeme-123\"\n\
                api_key = \"${API_KEY_FROM_ENVIRONMENT}\"\n\
                token = \"aaaaaaaaaaaaaaaaaaaaaaaa\"\n\
                client_secret = \"this-is-not-secret\"\n\
                url = postgres://user:${DB_PASSWORD}@db/app\n\
                see https://docs.example.com/tokens for glpat- tokens\n\
                token_id = \"9fffd2b715f7aab3983be52f\"\n\
                secret_hash = \"Zt4pQ9wLm2Xv8RkC5nB7yH3jD6fG1sA0\"\n\
                auth_url = \"https://login.example.org/oauth2/v2.0/authorize\"\n\
                session_token = \"0123456789abcdef0123456789ab\"\n";
    assert_eq!(scanner.scan("app.env", text.as_bytes()).expect("scanned"), vec![]);
}

#[test]
fn the_allow_comment_silences_its_line_only() {
    let scanner = scanner();
    let a = format!("{}{}", "glpat-", random(20, 21));
    let b = format!("{}{}", "glpat-", random(20, 22));
    let text = format!("x = \"{a}\" # gitlab-connector:allow test fixture\ny = \"{b}\"\n");
    let findings = scanner.scan("tests/fixture.py", text.as_bytes()).expect("scanned");
    assert_eq!(findings.iter().map(|f| f.line).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn binaries_vendored_generated_and_allowlisted_paths_are_skipped() {
    let scanner = scanner();
    let secret = format!("{}{}", "glpat-", random(20, 31));
    let mut binary = vec![0u8, 1, 2];
    binary.extend_from_slice(secret.as_bytes());
    assert_eq!(scanner.scan("logo.png", &binary), Err(Skip::Binary));
    for path in ["node_modules/x/index.js", "vendor/lib/a.go", "web/dist/app.js", "Cargo.lock", "ui/app.min.js"] {
        assert_eq!(scanner.scan(path, secret.as_bytes()), Err(Skip::Generated), "{path}");
    }
    for path in ["docs/setup.md", "config/app.yml.example"] {
        assert_eq!(scanner.scan(path, secret.as_bytes()), Err(Skip::Allowlisted), "{path}");
    }
    // A file named like a vendored directory is still scanned.
    assert_eq!(scanner.scan("scripts/build", secret.as_bytes()).expect("scanned").len(), 1);
    assert_eq!(scanner.scan("big.txt", &vec![b'a'; MAX_FILE_BYTES + 1]), Err(Skip::TooLarge));
}

#[test]
fn fingerprints_survive_line_moves_and_tell_paths_and_keys_apart() {
    let scanner = scanner();
    let secret = format!("{}{}", "glpat-", random(20, 41));
    let before = format!("token = \"{secret}\"\n");
    let after = format!("\n\n// moved down\n\ntoken = \"{secret}\"\n");
    let f1 = &scanner.scan("a.rs", before.as_bytes()).expect("scanned")[0];
    let f2 = &scanner.scan("a.rs", after.as_bytes()).expect("scanned")[0];
    assert_ne!(f1.line, f2.line);
    assert_eq!(f1.fingerprint, f2.fingerprint);
    let other_path = &scanner.scan("b.rs", before.as_bytes()).expect("scanned")[0];
    assert_ne!(f1.fingerprint, other_path.fingerprint);
    let other_key = SecretScanner::new(ScanSettings { digest_key: b"another key".to_vec(), ..ScanSettings::default() });
    let f3 = &other_key.scan("a.rs", before.as_bytes()).expect("scanned")[0];
    assert_ne!(f1.digest, f3.digest, "the digest depends on the deployment's key");
}

#[test]
fn globs_match_within_and_across_segments() {
    assert!(glob_match("docs/**", "docs/a/b.md"));
    assert!(glob_match("**/*.example", "a/b/c.env.example"));
    assert!(glob_match("*.md", "README.md"));
    assert!(!glob_match("*.md", "docs/README.md"));
    assert!(!glob_match("docs/**", "src/docs.rs"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes at all: the scanner answers, and every finding points at a line of the input.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let scanner = scanner();
        if let Ok(findings) = scanner.scan("any.txt", &bytes) {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
            prop_assert!(findings.iter().all(|f| f.line >= 1 && f.line <= lines));
        }
    }

    /// A planted GitLab token is found wherever it sits among arbitrary text.
    #[test]
    fn a_planted_token_is_found_anywhere(prefix in "[a-z =:\"\n]{0,200}", suffix in "[a-z =;\"\n]{0,200}", seed in any::<u64>()) {
        let secret = format!("{}{}", "glpat-", random(20, seed));
        let text = format!("{prefix} {secret} {suffix}");
        let findings = scanner().scan("f.txt", text.as_bytes()).expect("scanned");
        prop_assert!(findings.iter().any(|f| f.rule_id == "gitlab-token" && f.length == secret.len()), "{:?}", findings);
    }
}
