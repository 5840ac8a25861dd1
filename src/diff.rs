//! Unified diffs of text files for `--diff` and the plan.
//!
//! The line diff is `similar`'s Myers diff (a well-kept crate, linear in space), so a big file
//! with a small change gets a real diff rather than a summary. A deadline bounds the rare
//! pathological input: past it the diff is still correct, only less minimal.

use std::time::Duration;

const CONTEXT: usize = 3;
/// How long the diff may look for the smallest edit script before settling for a correct,
/// larger one.
const DEADLINE: Duration = Duration::from_secs(2);

/// Unified diff from `before` to `after`, labelled with the file name. Empty when equal.
pub fn unified(path: &str, before: Option<&str>, after: Option<&str>) -> String {
    if before == after {
        return String::new();
    }
    let from = if before.is_some() {
        format!("a{}", slash(path))
    } else {
        "/dev/null".into()
    };
    let to = if after.is_some() {
        format!("b{}", slash(path))
    } else {
        "/dev/null".into()
    };
    // Lines are compared without their line ends; a change of the last line's end alone is
    // said in words below (as the previous diff did), not as a whole-line change.
    let a: Vec<&str> = before.map(|s| s.lines().collect()).unwrap_or_default();
    let b: Vec<&str> = after.map(|s| s.lines().collect()).unwrap_or_default();
    let diff = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .timeout(DEADLINE)
        .diff_slices(&a, &b);
    let mut out = format!("--- {from}\n+++ {to}\n");
    for group in diff.grouped_ops(CONTEXT) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let (old, new) = (
            first.old_range().start..last.old_range().end,
            first.new_range().start..last.new_range().end,
        );
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            old.start + usize::from(!old.is_empty()),
            old.len(),
            new.start + usize::from(!new.is_empty()),
            new.len()
        ));
        for op in &group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Equal => ' ',
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                };
                out.push(sign);
                out.push_str(change.value());
                out.push('\n');
            }
        }
    }
    if before.is_some_and(|s| !s.is_empty() && !s.ends_with('\n'))
        != after.is_some_and(|s| !s.is_empty() && !s.ends_with('\n'))
    {
        out.push_str("\\ trailing newline changed\n");
    }
    out
}

fn slash(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_line_shows_as_minus_plus_with_context() {
        let d = unified("/etc/x.conf", Some("a\nb\nc\n"), Some("a\nB\nc\n"));
        assert_eq!(
            d,
            "--- a/etc/x.conf\n+++ b/etc/x.conf\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
    }

    #[test]
    fn new_file_diffs_against_dev_null() {
        let d = unified("f", None, Some("x\n"));
        assert_eq!(d, "--- /dev/null\n+++ b/f\n@@ -0,0 +1,1 @@\n+x\n");
    }

    #[test]
    fn large_files_get_a_real_diff_whatever_their_size() {
        let before: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let after = before.replace("line 10000\n", "line ten thousand\n");
        let d = unified("big", Some(&before), Some(&after));
        assert!(d.contains("-line 10000\n+line ten thousand\n"), "{d}");
        assert!(d.contains("@@ -9998,7 +9998,7 @@"), "{d}");
        // Two unrelated big files: no one-line summary any more, every line is in the diff.
        let unrelated: String = (0..5_000).map(|i| format!("other {i}\n")).collect();
        let d = unified("big", Some(&before), Some(&unrelated));
        assert!(!d.contains("too large"), "{d}");
        assert_eq!(
            d.lines().filter(|l| l.starts_with("+other ")).count(),
            5_000
        );
        assert_eq!(
            d.lines().filter(|l| l.starts_with("-line ")).count(),
            20_000
        );
    }

    #[test]
    fn a_trailing_newline_change_is_said_in_words() {
        let d = unified("f", Some("a\nb"), Some("a\nb\n"));
        assert_eq!(d, "--- a/f\n+++ b/f\n\\ trailing newline changed\n");
    }

    #[test]
    fn equal_inputs_give_no_diff() {
        assert_eq!(unified("f", Some("x\n"), Some("x\n")), "");
    }
}
