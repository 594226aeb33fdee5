//! A deterministic generator of realistic-looking projects, cheap enough for 100,000.

use time::{Duration, OffsetDateTime};

use crate::config::SimProject;

const GROUP_WORDS: &[&str] = &[
    "platform",
    "payments",
    "identity",
    "data",
    "mobile",
    "web",
    "infra",
    "security",
    "search",
    "billing",
    "growth",
    "ml",
    "devtools",
    "core",
    "edge",
    "support",
    "analytics",
    "content",
    "commerce",
    "marketing",
];
const SUBGROUP_WORDS: &[&str] =
    &["backend", "frontend", "services", "libs", "tools", "apps", "ops", "sandbox", "archive", "experiments"];
const PROJECT_WORDS: &[&str] = &[
    "api",
    "gateway",
    "worker",
    "ui",
    "sdk",
    "cli",
    "docs",
    "infra",
    "pipeline",
    "service",
    "dashboard",
    "auth",
    "scheduler",
    "exporter",
    "bot",
    "proxy",
    "cache",
    "ingest",
    "etl",
    "portal",
    "mailer",
    "notifier",
    "console",
    "agent",
    "operator",
    "chart",
    "terraform",
    "config",
    "schema",
    "client",
];
const TOPICS: &[&str] = &[
    "backend",
    "frontend",
    "go",
    "java",
    "kubernetes",
    "library",
    "microservice",
    "python",
    "ruby",
    "rust",
    "terraform",
    "typescript",
    "internal",
    "deprecated",
    "security",
];
const LANGUAGES: &[&str] = &[
    "Go",
    "Java",
    "JavaScript",
    "Python",
    "Ruby",
    "Rust",
    "TypeScript",
    "C#",
    "Kotlin",
    "PHP",
    "Shell",
    "HCL",
    "Dockerfile",
    "Makefile",
    "HTML",
    "CSS",
    "Vue",
    "Swift",
];

/// A small deterministic PRNG (SplitMix64), so a seed always gives the same projects.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len() as u64) as usize]
    }
}

/// Builds the namespace tree: top-level groups with subgroups and a few sub-subgroups, plus a
/// weight per namespace so that some groups are much larger than others.
fn namespaces(n: usize, rng: &mut Rng) -> Vec<(String, u64)> {
    let tops = (n / 600 + 2).min(2000);
    let mut out = Vec::new();
    for t in 0..tops {
        let top = format!("{}-{t}", rng.pick(GROUP_WORDS));
        // Zipf-like sizes: the first groups are the big ones.
        let weight = 1 + 1000 / (t as u64 + 1);
        out.push((top.clone(), weight));
        for s in 0..rng.below(5) {
            let sub = format!("{top}/{}-{s}", rng.pick(SUBGROUP_WORDS));
            out.push((sub.clone(), weight / 2 + 1));
            if rng.chance(300) {
                out.push((format!("{sub}/{}", rng.pick(SUBGROUP_WORDS)), weight / 4 + 1));
            }
        }
    }
    out
}

/// `n` projects with increasing ids (with gaps, as deleted projects leave them), spread over
/// groups and subgroups. About 5 % are archived, 3 % have an empty repository (no default branch,
/// no languages), visibility is roughly 70 % private, 20 % internal, 10 % public; topics,
/// languages, descriptions, star counts and timestamps vary. The same `seed` gives the same
/// projects (timestamps are relative to now, whole seconds).
pub fn generate_projects(n: usize, seed: u64) -> Vec<SimProject> {
    let mut rng = Rng(seed ^ 0x005e_ed0f_9117_1ab5);
    let spaces = namespaces(n, &mut rng);
    let total_weight: u64 = spaces.iter().map(|(_, w)| w).sum();
    // Cumulative weights for a binary-search pick.
    let mut cumulative = Vec::with_capacity(spaces.len());
    let mut acc = 0;
    for (_, w) in &spaces {
        acc += w;
        cumulative.push(acc);
    }

    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let span_secs = 6 * 365 * 86_400i64;
    let start = now - Duration::seconds(span_secs);
    let mut projects = Vec::with_capacity(n);
    let mut id = 0u64;
    for k in 0..n {
        id += match rng.below(100) {
            0..80 => 1,
            80..95 => 2 + rng.below(4),
            _ => 6 + rng.below(55),
        };
        let target = rng.below(total_weight) + 1;
        let ns = &spaces[cumulative.partition_point(|&c| c < target).min(spaces.len() - 1)].0;
        let path = format!("{}-{}-{id}", rng.pick(PROJECT_WORDS), rng.pick(PROJECT_WORDS));

        let created_at = (start + Duration::seconds(span_secs * k as i64 / n.max(1) as i64 + rng.below(3600) as i64))
            .min(now - Duration::minutes(1));
        let age = (now - created_at).whole_seconds().max(1);
        // Most projects were active recently, some not for years.
        let idle = (age as f64 * rng.unit().powi(3)) as i64;
        let last_activity_at = now - Duration::seconds(idle);
        let updated_at = (last_activity_at + Duration::seconds(rng.below(2 * 86_400) as i64)).min(now);

        let empty = rng.chance(30);
        let default_branch = (!empty).then(|| {
            match rng.below(100) {
                0..85 => "main",
                85..97 => "master",
                _ => "develop",
            }
            .to_string()
        });
        let visibility = match rng.below(100) {
            0..70 => "private",
            70..90 => "internal",
            _ => "public",
        };
        let mut topics: Vec<String> = (0..rng.below(4)).map(|_| rng.pick(TOPICS).to_string()).collect();
        topics.sort();
        topics.dedup();
        let languages = if empty { Vec::new() } else { languages(&mut rng) };
        let description = rng.chance(600).then(|| format!("The {path} project of {ns}."));
        let marked_for_deletion_on = rng.chance(2).then(|| (now + Duration::days(7)).date());

        projects.push(SimProject {
            id,
            path_with_namespace: format!("{ns}/{path}"),
            default_branch,
            visibility: visibility.into(),
            archived: rng.chance(50),
            empty_repo: empty,
            name: None,
            description,
            topics,
            created_at,
            last_activity_at,
            updated_at,
            languages,
            star_count: if rng.chance(100) { rng.below(500) } else { rng.below(3) },
            forks_count: rng.below(3),
            open_issues_count: rng.below(40),
            marked_for_deletion_on,
            repo: None,
            members: None,
        });
    }
    projects
}

/// One to three languages whose shares add up to 100.00 %, largest first.
fn languages(rng: &mut Rng) -> Vec<(String, u32)> {
    let count = 1 + rng.below(3) as usize;
    let mut names: Vec<&str> = Vec::with_capacity(count);
    while names.len() < count {
        let name = rng.pick(LANGUAGES);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut left = 10_000u32;
    let mut out = Vec::with_capacity(count);
    for (i, name) in names.iter().enumerate() {
        let share = if i + 1 == count { left } else { (left / 2) + rng.below(u64::from(left / 2).max(1)) as u32 };
        left -= share;
        out.push(((*name).to_string(), share));
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_with_gaps_and_mix_is_plausible() {
        let projects = generate_projects(20_000, 7);
        assert_eq!(projects.len(), 20_000);
        assert!(projects.windows(2).all(|w| w[0].id < w[1].id));
        assert!(projects.last().map_or(0, |p| p.id) > 20_000, "ids have gaps");
        let archived = projects.iter().filter(|p| p.archived).count();
        let empty = projects.iter().filter(|p| p.empty_repo).count();
        assert!((600..1500).contains(&archived), "{archived}");
        assert!((300..900).contains(&empty), "{empty}");
        assert!(projects.iter().filter(|p| p.empty_repo).all(|p| p.default_branch.is_none() && p.languages.is_empty()));
        assert!(projects.iter().any(|p| p.path_with_namespace.matches('/').count() >= 2), "subgroups");
        for v in ["private", "internal", "public"] {
            assert!(projects.iter().any(|p| p.visibility == v));
        }
        for p in projects.iter().filter(|p| !p.languages.is_empty()).take(500) {
            assert_eq!(p.languages.iter().map(|(_, s)| s).sum::<u32>(), 10_000);
        }
        assert!(projects.iter().all(|p| p.created_at <= p.last_activity_at && p.last_activity_at <= p.updated_at));
        let paths: std::collections::HashSet<_> = projects.iter().map(|p| &p.path_with_namespace).collect();
        assert_eq!(paths.len(), projects.len());
    }

    #[test]
    fn same_seed_same_projects() {
        let a = generate_projects(50, 3);
        let b = generate_projects(50, 3);
        let ids = |v: &[SimProject]| v.iter().map(|p| (p.id, p.path_with_namespace.clone())).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
    }
}
