//! Fake credentials for scanner tests and demos, each shaped like a real kind so that common
//! detectors match it, none of them real (every value says `SIM`/`fake`), and the demo
//! repositories `make run` serves.

use std::io;
use std::path::Path;

use crate::config::SimConfig;
use crate::repos::{TestRepo, Tree};

/// One planted credential: which kind, in which file, and the value a scanner should report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlantedSecret {
    /// A short name of the kind, the rule id of `shared::domain::secrets` where one exists.
    pub kind: &'static str,
    pub path: &'static str,
    pub secret: &'static str,
}

const GITLAB_TOKEN: &str = "glpat-SIMfake0token0Abc123";
const AWS_KEY_ID: &str = "AKIASIMFAKE000000001";
const AWS_SECRET: &str = "SIMfake/AWS+secret0key0not0real000000001";
const GITHUB_TOKEN: &str = "ghp_SIMfake0GitHub0token0not0real0000001";
const SLACK_TOKEN: &str = "xoxb-000000000000-SIMfake0slack0token";
const STRIPE_KEY: &str = "sk_live_SIMfake0not0real0stripe0key01";
const GOOGLE_KEY: &str = "AIzaSyFAKE-gitlab-sim-not-a-real-key-01";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
eyJzdWIiOiJnaXRsYWItc2ltLWZha2UtdXNlciIsIm5hbWUiOiJub3QgYSByZWFsIHRva2VuIn0.SIMfakeSignature0notReal0000";
const DB_PASSWORD: &str = "SIMfakePassw0rd";
/// Base64 of "gitlab-sim fake RSA key material, not a real private key. " three times.
const RSA_BODY: &str = "Z2l0bGFiLXNpbSBmYWtlIFJTQSBrZXkgbWF0ZXJpYWwsIG5vdCBhIHJlYWwgcHJp\n\
dmF0ZSBrZXkuIGdpdGxhYi1zaW0gZmFrZSBSU0Ega2V5IG1hdGVyaWFsLCBub3Qg\n\
YSByZWFsIHByaXZhdGUga2V5LiBnaXRsYWItc2ltIGZha2UgUlNBIGtleSBtYXRl\n\
cmlhbCwgbm90IGEgcmVhbCBwcml2YXRlIGtleS4g";

/// Every credential [`planted_secrets`] writes, in path order.
pub const PLANTED_SECRETS: &[PlantedSecret] = &[
    PlantedSecret { kind: "aws-access-key-id", path: ".env", secret: AWS_KEY_ID },
    PlantedSecret { kind: "aws-secret-access-key", path: ".env", secret: AWS_SECRET },
    PlantedSecret { kind: "database-url-password", path: ".env", secret: DB_PASSWORD },
    PlantedSecret { kind: "private-key", path: "deploy/id_rsa", secret: "-----BEGIN RSA PRIVATE KEY-----" },
    PlantedSecret { kind: "gitlab-token", path: "scripts/release.sh", secret: GITLAB_TOKEN },
    PlantedSecret { kind: "github-token", path: "scripts/release.sh", secret: GITHUB_TOKEN },
    PlantedSecret { kind: "slack-token", path: "src/notify.py", secret: SLACK_TOKEN },
    PlantedSecret { kind: "stripe-key", path: "src/payments.js", secret: STRIPE_KEY },
    PlantedSecret { kind: "google-api-key", path: "src/payments.js", secret: GOOGLE_KEY },
    PlantedSecret { kind: "jwt", path: "tests/fixtures/session.json", secret: JWT },
];

const NOTE: &str = "Fake credentials planted by gitlab-sim for secret-scanner tests; none of them is real.";

/// A small project tree with the fake credentials of [`PLANTED_SECRETS`] in it, next to files
/// without any.
pub fn planted_secrets() -> Tree {
    Tree::new()
        .file("README.md", format!("# Demo service\n\n{NOTE}\n"))
        .file(
            ".env",
            format!(
                "# {NOTE}\nAWS_ACCESS_KEY_ID={AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n\
                 DATABASE_URL=postgres://sim_user:{DB_PASSWORD}@db.gitlab-sim.test:5432/app\n"
            ),
        )
        .file(
            "deploy/id_rsa",
            format!("-----BEGIN RSA PRIVATE KEY-----\n{RSA_BODY}\n-----END RSA PRIVATE KEY-----\n"),
        )
        .executable(
            "scripts/release.sh",
            format!(
                "#!/bin/sh\n# {NOTE}\nexport GITLAB_TOKEN={GITLAB_TOKEN}\nexport GH_TOKEN={GITHUB_TOKEN}\n\
                 curl --header \"PRIVATE-TOKEN: $GITLAB_TOKEN\" https://gitlab.example.com/api/v4/version\n"
            ),
        )
        .file("src/notify.py", format!("# {NOTE}\nSLACK_BOT = \"{SLACK_TOKEN}\"\n\n\ndef notify(text):\n    return text\n"))
        .file(
            "src/payments.js",
            format!("// {NOTE}\nconst stripe = \"{STRIPE_KEY}\";\nconst maps = \"{GOOGLE_KEY}\";\nexport {{ stripe, maps }};\n"),
        )
        .file("src/main.rs", "fn main() {\n    println!(\"no secrets here\");\n}\n")
        .file("tests/fixtures/session.json", format!("{{\"note\": \"{NOTE}\", \"session\": \"{JWT}\"}}\n"))
}

/// Creates the demo repositories under `dir` and attaches them to the demo projects that
/// `config` has: `demo/backend` (id 1) gets the planted credentials on `main`, a second commit
/// and `refs/merge-requests/1/head`; `demo/frontend` (2) a small clean tree; `demo/docs` (3) an
/// empty repository. Projects that are missing are skipped.
pub fn attach_demo_repositories(config: &mut SimConfig, dir: &Path) -> io::Result<()> {
    let mut repos = Vec::new();

    let mut backend = TestRepo::init(dir.join("demo-backend.git"))?;
    let first = backend.commit(&planted_secrets(), "Add the service", &[])?;
    let second_tree = planted_secrets().file("CHANGELOG.md", "## 0.2.0\n\n- Release script.\n");
    let second = backend.commit(&second_tree, "Add a changelog", &[&first])?;
    backend.branch("main", &second)?;
    let feature =
        backend.commit(&second_tree.file("src/feature.rs", "pub fn feature() {}\n"), "Add a feature", &[&second])?;
    backend.branch("feature", &feature)?;
    backend.merge_request(1, &feature)?;
    repos.push(("demo/backend", backend.path().to_path_buf()));

    let mut frontend = TestRepo::init(dir.join("demo-frontend.git"))?;
    let tree = Tree::new()
        .file("README.md", "# Frontend\n")
        .file("src/index.js", "console.log(\"hello\");\n")
        .symlink("docs", "../docs");
    let tip = frontend.commit(&tree, "Initial commit", &[])?;
    frontend.branch("main", &tip)?;
    repos.push(("demo/frontend", frontend.path().to_path_buf()));

    let docs = TestRepo::init(dir.join("demo-docs.git"))?;
    repos.push(("demo/docs", docs.path().to_path_buf()));

    for (path, repo) in repos {
        if let Some(project) = config.projects.iter_mut().find(|p| p.path_with_namespace == path) {
            project.repo = Some(repo);
        }
    }
    Ok(())
}
