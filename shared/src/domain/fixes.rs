//! Fixes that scanners propose (SARIF `fixes[].artifactChanges[].replacements[]`), applied to the
//! scanned files' text to give the content a fix merge request commits. Columns count Unicode
//! scalar values; an edit without columns replaces whole lines, line ends included.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::sarif::Edit;

/// Files one fix merge request may change.
pub const MAX_FIX_FILES: usize = 50;
/// Largest file a fix is applied to.
pub const MAX_FIX_FILE_BYTES: usize = 512 * 1024;

/// What the fix merge request of one target commits: new contents by path, and the findings
/// the edits answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FixPlan {
    /// Path → the whole new content.
    pub files: BTreeMap<String, String>,
    /// Fingerprints of the findings whose fixes are in `files`.
    pub fingerprints: Vec<String>,
}

/// The fix branch of a target: the same name on every run, so a later run updates the merge
/// request it opened instead of opening another.
pub fn fix_branch(project_id: u64, target_branch: &str) -> String {
    let digest = Sha256::digest(format!("{project_id}\n{target_branch}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("gitlab-connector/fix-{hex}")
}

/// Byte offset of 1-based `line`, `column` (`None`: the line's start), or of the end of the text
/// for the line just past the last one. `None` when outside the text.
fn offset(starts: &[usize], text: &str, line: u32, column: Option<u32>) -> Option<usize> {
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    if index == starts.len() && column.is_none_or(|c| c == 1) {
        return Some(text.len());
    }
    let start = *starts.get(index)?;
    let end = starts.get(index + 1).copied().unwrap_or(text.len());
    let line_text = text[start..end].strip_suffix('\n').unwrap_or(&text[start..end]);
    let column = usize::try_from(column.unwrap_or(1)).ok()?.checked_sub(1)?;
    if column == line_text.chars().count() {
        return Some(start + line_text.len());
    }
    line_text.char_indices().nth(column).map(|(i, _)| start + i)
}

/// The text with `edits` applied, or `None` when an edit lies outside the text or two overlap.
pub fn apply_edits(text: &str, edits: &[&Edit]) -> Option<String> {
    let mut starts = vec![0];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1).filter(|i| *i < text.len()));
    let mut spans = Vec::with_capacity(edits.len());
    for e in edits {
        let from = offset(&starts, text, e.start_line, e.start_column)?;
        let last = e.end_line.unwrap_or(e.start_line);
        let to = match e.end_column {
            Some(c) => offset(&starts, text, last, Some(c))?,
            // Whole lines: up to the start of the next line.
            None => offset(&starts, text, last.checked_add(1)?, None)?,
        };
        if to < from {
            return None;
        }
        spans.push((from, to, e.insert.as_str()));
    }
    spans.sort_by_key(|s| s.0);
    if spans.windows(2).any(|w| w[0].1 > w[1].0) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (from, to, insert) in spans {
        out.push_str(&text[at..from]);
        out.push_str(insert);
        at = to;
    }
    out.push_str(&text[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(line: u32, col: Option<u32>, end_line: Option<u32>, end_col: Option<u32>, insert: &str) -> Edit {
        Edit {
            path: "a.rs".into(),
            start_line: line,
            start_column: col,
            end_line,
            end_column: end_col,
            insert: insert.into(),
        }
    }

    #[test]
    fn whole_lines_and_column_ranges_are_replaced() {
        let text = "fn main() {\n    println!(\"hi\");\n}\n";
        let whole = edit(2, None, None, None, "    // removed\n");
        assert_eq!(apply_edits(text, &[&whole]).as_deref(), Some("fn main() {\n    // removed\n}\n"));
        // Columns: replace `println` (columns 5..12) with `eprintln`.
        let word = edit(2, Some(5), None, Some(12), "eprintln");
        assert_eq!(apply_edits(text, &[&word]).as_deref(), Some("fn main() {\n    eprintln!(\"hi\");\n}\n"));
        // Two edits, given in any order.
        let first = edit(1, Some(4), None, Some(8), "start");
        assert_eq!(apply_edits(text, &[&word, &first]).as_deref(), Some("fn start() {\n    eprintln!(\"hi\");\n}\n"));
        // Deleting the last line, and inserting at the end.
        assert_eq!(
            apply_edits(text, &[&edit(3, None, None, None, "")]).as_deref(),
            Some("fn main() {\n    println!(\"hi\");\n")
        );
        assert_eq!(apply_edits("a\n", &[&edit(2, Some(1), None, Some(1), "b\n")]).as_deref(), Some("a\nb\n"));
        // Multi-byte characters count as one column.
        assert_eq!(apply_edits("é=1\n", &[&edit(1, Some(3), None, Some(4), "2")]).as_deref(), Some("é=2\n"));
    }

    #[test]
    fn edits_outside_the_text_or_overlapping_are_refused() {
        let text = "a\nb\n";
        assert_eq!(apply_edits(text, &[&edit(9, None, None, None, "x")]), None);
        assert_eq!(apply_edits(text, &[&edit(1, Some(5), None, None, "x")]), None);
        assert_eq!(apply_edits(text, &[&edit(0, None, None, None, "x")]), None);
        let a = edit(1, None, Some(2), None, "x");
        let b = edit(2, None, None, None, "y");
        assert_eq!(apply_edits(text, &[&a, &b]), None);
        assert_eq!(apply_edits(text, &[&edit(2, Some(2), Some(1), Some(1), "x")]), None, "end before start");
    }

    #[test]
    fn the_fix_branch_is_stable_and_never_a_protected_name() {
        let a = fix_branch(1, "feature");
        assert_eq!(a, fix_branch(1, "feature"));
        assert_ne!(a, fix_branch(1, "main"));
        assert_ne!(a, fix_branch(2, "feature"));
        assert!(a.starts_with("gitlab-connector/fix-") && a.len() == "gitlab-connector/fix-".len() + 12);
    }
}
