//! Bare repositories for tests, written with the real `git` through `git fast-import` (no work
//! tree, so any path and mode is possible, `.git` components included), with fixed identities
//! and dates so that the same calls always give the same commit ids.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::git::PRIVATE_HOME;
use crate::server::splitmix64;

/// Commit dates start here (2023-11-14 22:13:20 UTC) and advance a minute per commit.
const FIRST_COMMIT_TIME: u64 = 1_700_000_000;

/// A `git` command with a clean environment: no system, global or user configuration.
pub(crate) fn git(dir: Option<&Path>) -> Command {
    let mut command = Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("HOME", PRIVATE_HOME)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C")
        .env("TZ", "UTC");
    if let Some(dir) = dir {
        command.arg("--git-dir").arg(dir);
    }
    command
}

pub(crate) fn run(mut command: Command) -> io::Result<String> {
    let output = command.stdin(Stdio::null()).output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// What a file holds: given bytes, or `size` pseudo-random bytes made while writing (for huge,
/// poorly compressible files that never sit in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Bytes(Vec<u8>),
    Random { size: u64, seed: u64 },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Random { size, .. } => *size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File {
        content: Content,
        executable: bool,
    },
    Symlink(String),
    /// A submodule: mode 160000 pointing at a commit of another repository.
    Gitlink {
        commit: String,
        url: String,
    },
}

/// The full content of one commit: paths (`/`-separated, any bytes git allows in a tree,
/// including `.git` components) to entries. Submodules also get their `.gitmodules` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    pub fn new() -> Self {
        Tree::default()
    }

    /// A regular file (mode 100644). Paths that `git add` refuses, such as
    /// `sub/.git/hooks/post-checkout` or `.GIT/config`, are fine here.
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        let content = Content::Bytes(bytes.into());
        self.entries.insert(path.into(), Entry::File { content, executable: false });
        self
    }

    /// An executable file (mode 100755).
    pub fn executable(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        let content = Content::Bytes(bytes.into());
        self.entries.insert(path.into(), Entry::File { content, executable: true });
        self
    }

    /// A symbolic link (mode 120000) whose target is `target` as written, for example
    /// `/etc/passwd` or `../../outside`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.insert(path.into(), Entry::Symlink(target.into()));
        self
    }

    /// A submodule: a gitlink (mode 160000) to `commit` (40 hex digits) plus its section in
    /// `.gitmodules`.
    pub fn submodule(mut self, path: &str, url: &str, commit: &str) -> Self {
        self.entries.insert(path.into(), Entry::Gitlink { commit: commit.into(), url: url.into() });
        self
    }

    /// A Git LFS pointer file for `object` (its SHA-256 and size), as `git lfs` commits it.
    pub fn lfs_pointer(self, path: &str, object: &[u8]) -> Self {
        let oid: String = Sha256::digest(object).iter().map(|b| format!("{b:02x}")).collect();
        let pointer = format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n", object.len());
        self.file(path, pointer)
    }

    /// A file of `size` pseudo-random bytes (deterministic per path), generated while the
    /// repository is written.
    pub fn huge_file(mut self, path: &str, size: u64) -> Self {
        let content = Content::Random { size, seed: crate::server::fnv1a(path.as_bytes()) };
        self.entries.insert(path.into(), Entry::File { content, executable: false });
        self
    }

    /// `count` small distinct text files `dir/file-00000.txt`, `dir/file-00001.txt`, …
    pub fn many_files(mut self, dir: &str, count: usize) -> Self {
        let dir = dir.trim_end_matches('/');
        for i in 0..count {
            let content = Content::Bytes(format!("file {i} of {count} in {dir}\n").into_bytes());
            self.entries.insert(format!("{dir}/file-{i:05}.txt"), Entry::File { content, executable: false });
        }
        self
    }

    /// The same tree without `path` (a file, link or submodule).
    pub fn without(mut self, path: &str) -> Self {
        self.entries.remove(path);
        self
    }

    /// How many entries (files, links, submodules; `.gitmodules` not counted unless set).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total size of the file contents (links and submodules not counted).
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match e {
                Entry::File { content, .. } => content.len(),
                _ => 0,
            })
            .sum()
    }

    /// `.gitmodules` for the submodules, unless the tree sets that file itself.
    fn gitmodules(&self) -> Option<String> {
        if self.entries.contains_key(".gitmodules") {
            return None;
        }
        let sections: Vec<String> = self
            .entries
            .iter()
            .filter_map(|(path, e)| match e {
                Entry::Gitlink { url, .. } => Some(format!("[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n")),
                _ => None,
            })
            .collect();
        (!sections.is_empty()).then(|| sections.concat())
    }
}

/// A bare repository being built. Commits are written one `git fast-import` run each and do not
/// move any ref; name them with [`TestRepo::branch`], [`TestRepo::merge_request`] or
/// [`TestRepo::set_ref`].
#[derive(Debug)]
pub struct TestRepo {
    path: PathBuf,
    commits: u64,
}

impl TestRepo {
    /// `git init --bare` at `path` (created if missing), with `HEAD` on `refs/heads/main`.
    pub fn init(path: impl Into<PathBuf>) -> io::Result<TestRepo> {
        let path = path.into();
        std::fs::create_dir_all(&path)?;
        let mut init = git(None);
        init.args(["init", "--bare", "--quiet", "--initial-branch=main"]).arg(&path);
        run(init)?;
        Ok(TestRepo { path, commits: 0 })
    }

    /// The repository directory, for `RunningSim::set_repository` or `SimProject::repo`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a commit of `tree` with the given parents (none: a root commit) and returns its id.
    pub fn commit(&mut self, tree: &Tree, message: &str, parents: &[&str]) -> io::Result<String> {
        const SCRATCH: &str = "refs/gitlab-sim/scratch";
        let time = FIRST_COMMIT_TIME + 60 * self.commits;
        self.commits += 1;
        let sha = self.fast_import(&[], &[], |out| {
            write!(out, "reset {SCRATCH}\ncommit {SCRATCH}\nmark :1\n")?;
            write_identity(out, time)?;
            write_data(out, message.as_bytes())?;
            if let Some((first, rest)) = parents.split_first() {
                writeln!(out, "from {first}")?;
                for parent in rest {
                    writeln!(out, "merge {parent}")?;
                }
            }
            writeln!(out, "deleteall")?;
            if let Some(gitmodules) = tree.gitmodules() {
                write_file(out, ".gitmodules", "100644", &Content::Bytes(gitmodules.into_bytes()))?;
            }
            for (path, entry) in &tree.entries {
                match entry {
                    Entry::File { content, executable } => {
                        write_file(out, path, if *executable { "100755" } else { "100644" }, content)?;
                    }
                    Entry::Symlink(target) => {
                        write_file(out, path, "120000", &Content::Bytes(target.as_bytes().to_vec()))?;
                    }
                    Entry::Gitlink { commit, .. } => writeln!(out, "M 160000 {commit} {}", quote(path))?,
                }
            }
            write!(out, "\nget-mark :1\n")
        })?;
        let mut delete = git(Some(&self.path));
        delete.args(["update-ref", "-d", SCRATCH]);
        run(delete)?;
        Ok(sha)
    }

    /// Points `name` (a full ref name such as `refs/heads/main`) at `commit`.
    pub fn set_ref(&self, name: &str, commit: &str) -> io::Result<()> {
        let mut update = git(Some(&self.path));
        update.args(["update-ref", name, commit]);
        run(update).map(drop)
    }

    /// `refs/heads/<name>`.
    pub fn branch(&self, name: &str, commit: &str) -> io::Result<()> {
        self.set_ref(&format!("refs/heads/{name}"), commit)
    }

    /// `refs/merge-requests/<iid>/head`, the ref GitLab keeps for a merge request's source.
    pub fn merge_request(&self, iid: u64, commit: &str) -> io::Result<()> {
        self.set_ref(&format!("refs/merge-requests/{iid}/head"), commit)
    }

    /// Makes `refs/heads/<branch>` the default branch (`HEAD`).
    pub fn set_head(&self, branch: &str) -> io::Result<()> {
        let mut symbolic = git(Some(&self.path));
        symbolic.args(["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")]);
        run(symbolic).map(drop)
    }

    /// Generates a long history on `refs/heads/<branch>` in one `git fast-import` run: an
    /// initial commit with `spec.files` files, then `spec.commits` commits each rewriting
    /// `spec.changes_per_commit` of them with fresh pseudo-random (incompressible) content.
    pub fn generate_history(&mut self, branch: &str, spec: &HistorySpec) -> io::Result<History> {
        let files = spec.files.max(1);
        let first_time = FIRST_COMMIT_TIME + 60 * self.commits;
        self.commits += spec.commits as u64 + 1;
        let reference = format!("refs/heads/{branch}");
        let mut rng = spec.seed;
        let mut history_bytes = 0u64;
        // Random content neither compresses nor deltifies: skipping both makes generation
        // several times faster, and the pack is as large either way.
        let output = self.fast_import(&["-c", "pack.compression=0"], &["--depth=0"], |out| {
            for n in 0..=spec.commits {
                write!(out, "commit {reference}\nmark :{}\n", n + 1)?;
                write_identity(out, first_time + 60 * n as u64)?;
                write_data(out, format!("history commit {n}\n").as_bytes())?;
                if n == 0 {
                    writeln!(out, "deleteall")?;
                    write_file(out, "README.md", "100644", &Content::Bytes(b"# Generated history\n".to_vec()))?;
                }
                // Distinct files: consecutive ones from a random start.
                let (start, count) =
                    if n == 0 { (0, files) } else { (next(&mut rng) as usize, spec.changes_per_commit.min(files)) };
                let changed = (0..count).map(|k| start.wrapping_add(k) % files);
                for file in changed {
                    let content = Content::Random { size: spec.file_size, seed: next(&mut rng) };
                    history_bytes += spec.file_size;
                    write_file(out, &format!("data/blob-{file:03}.bin"), "100644", &content)?;
                }
                writeln!(out)?;
            }
            write!(out, "get-mark :1\nget-mark :{}\n", spec.commits + 1)
        })?;
        let mut lines = output.lines();
        let first = lines.next().unwrap_or_default().to_string();
        let tip = lines.next().unwrap_or_default().to_string();
        Ok(History { first, tip, history_bytes, tip_tree_bytes: spec.tip_tree_bytes() })
    }

    /// Runs `git <config> fast-import <options>` on this repository with the stream `write`
    /// produces and returns what it printed (the answers to `get-mark`).
    fn fast_import(
        &self,
        config: &[&str],
        options: &[&str],
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<String> {
        let mut child = git(Some(&self.path))
            .args(config)
            .args(["fast-import", "--quiet", "--done"])
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let written = {
            let stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?;
            let mut out = BufWriter::with_capacity(256 * 1024, stdin);
            write(&mut out).and_then(|()| writeln!(out, "done")).and_then(|()| out.flush())
        };
        let mut stdout = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            pipe.read_to_string(&mut stdout)?;
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr)?;
        }
        let status = child.wait()?;
        if !status.success() {
            return Err(io::Error::other(format!("git fast-import failed: {}", stderr.trim())));
        }
        written?;
        Ok(stdout.trim().to_string())
    }
}

/// How [`TestRepo::generate_history`] builds a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySpec {
    pub commits: usize,
    /// Files in the tree (`data/blob-NNN.bin`, plus a README).
    pub files: usize,
    pub file_size: u64,
    pub changes_per_commit: usize,
    pub seed: u64,
}

impl HistorySpec {
    /// About 57 MB of history (the first 16 files, then 420 commits × 128 KiB of fresh content)
    /// behind a tip tree of 2 MiB: a shallow fetch moves about 1/27 of a full one. About 1.5 s
    /// to write in a debug build.
    pub fn benchmark() -> Self {
        HistorySpec { commits: 420, files: 16, file_size: 128 * 1024, changes_per_commit: 1, seed: 7 }
    }

    /// File content the history will hold: [`History::history_bytes`] before generating it.
    pub fn history_bytes(&self) -> u64 {
        let files = self.files.max(1);
        (files + self.commits * self.changes_per_commit.min(files)) as u64 * self.file_size
    }

    /// File content of the tip's tree: [`History::tip_tree_bytes`] before generating it.
    pub fn tip_tree_bytes(&self) -> u64 {
        self.files.max(1) as u64 * self.file_size
    }
}

/// What [`TestRepo::generate_history`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The root commit.
    pub first: String,
    /// The branch's tip.
    pub tip: String,
    /// File content written over the whole history (all versions of all files).
    pub history_bytes: u64,
    /// File content in the tip's tree.
    pub tip_tree_bytes: u64,
}

fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(1);
    splitmix64(*state)
}

fn write_identity(out: &mut dyn Write, time: u64) -> io::Result<()> {
    writeln!(out, "author Sim Author <author@gitlab-sim.test> {time} +0000")?;
    writeln!(out, "committer Sim Committer <committer@gitlab-sim.test> {time} +0000")
}

fn write_data(out: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    writeln!(out, "data {}", bytes.len())?;
    out.write_all(bytes)?;
    writeln!(out)
}

fn write_file(out: &mut dyn Write, path: &str, mode: &str, content: &Content) -> io::Result<()> {
    writeln!(out, "M {mode} inline {}", quote(path))?;
    match content {
        Content::Bytes(bytes) => write_data(out, bytes),
        Content::Random { size, seed } => {
            writeln!(out, "data {size}")?;
            let mut state = *seed;
            let mut left = *size;
            let mut block = [0u8; 8 * 1024];
            while left > 0 {
                for word in block.chunks_exact_mut(8) {
                    word.copy_from_slice(&next(&mut state).to_le_bytes());
                }
                let n = left.min(block.len() as u64) as usize;
                out.write_all(&block[..n])?;
                left -= n as u64;
            }
            writeln!(out)
        }
    }
}

/// A path in fast-import's C-style quoting (always accepted, so always used).
fn quote(path: &str) -> String {
    let mut quoted = String::with_capacity(path.len() + 2);
    quoted.push('"');
    for byte in path.bytes() {
        match byte {
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            b'\n' => quoted.push_str("\\n"),
            b'\t' => quoted.push_str("\\t"),
            0x20..=0x7e => quoted.push(char::from(byte)),
            _ => quoted.push_str(&format!("\\{byte:03o}")),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_history_is_large_behind_a_small_tip() {
        let spec = HistorySpec::benchmark();
        assert!(spec.history_bytes() >= 50_000_000, "{}", spec.history_bytes());
        assert!(spec.tip_tree_bytes() * 20 < spec.history_bytes());
    }

    #[test]
    fn paths_are_quoted_for_fast_import() {
        assert_eq!(quote("a/b c"), "\"a/b c\"");
        assert_eq!(quote("q\"\\\n"), "\"q\\\"\\\\\\n\"");
        assert_eq!(quote("é"), "\"\\303\\251\"");
    }

    #[test]
    fn submodules_get_a_gitmodules_section() {
        let tree = Tree::new().submodule("vendor/lib", "https://example.invalid/lib.git", &"1".repeat(40));
        assert_eq!(
            tree.gitmodules().as_deref(),
            Some("[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n\turl = https://example.invalid/lib.git\n")
        );
        assert_eq!(tree.file(".gitmodules", "x").gitmodules(), None);
        assert_eq!(Tree::new().gitmodules(), None);
    }

    #[test]
    fn lfs_pointer_names_the_objects_hash_and_size() {
        let tree = Tree::new().lfs_pointer("big.bin", b"abc");
        let Some(Entry::File { content: Content::Bytes(bytes), .. }) = tree.entries.get("big.bin") else {
            panic!("no pointer");
        };
        assert_eq!(
            String::from_utf8_lossy(bytes),
            "version https://git-lfs.github.com/spec/v1\n\
             oid sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nsize 3\n"
        );
    }
}
