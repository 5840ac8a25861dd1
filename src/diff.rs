//! Unified diffs of text files for `--diff` and the plan.
//!
//! Written by hand (a longest-common-subsequence over lines) rather than pulling in a diff
//! crate: config files are small, and the output only has to be a correct, readable unified
//! diff. The common head and tail are stripped first (a config change usually touches a few
//! lines), and only the differing middle goes through the quadratic table; when that middle
//! exceeds [`MAX_CELLS`] the diff is a one-line summary instead.

/// Largest LCS table (lines of old middle x lines of new middle) computed, 4M cells = 16 MB.
pub const MAX_CELLS: usize = 4_000_000;
const CONTEXT: usize = 3;

/// Unified diff from `before` to `after`, labelled with the file name. Empty when equal.
pub fn unified(path: &str, before: Option<&str>, after: Option<&str>) -> String {
    if before == after {
        return String::new();
    }
    let a: Vec<&str> = before.map(|s| s.lines().collect()).unwrap_or_default();
    let b: Vec<&str> = after.map(|s| s.lines().collect()).unwrap_or_default();
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
    let mut out = format!("--- {from}\n+++ {to}\n");
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    if (a.len() - head - tail).saturating_mul(b.len() - head - tail) > MAX_CELLS {
        out.push_str(&format!(
            "@@ file too large to diff ({} -> {} lines) @@\n",
            a.len(),
            b.len()
        ));
        return out;
    }
    let mut ops: Vec<Op> = (0..head).map(|i| Op::Same(i, i)).collect();
    let middle = edit_script(&a[head..a.len() - tail], &b[head..b.len() - tail]);
    ops.extend(middle.into_iter().map(|op| match op {
        Op::Same(i, j) => Op::Same(i + head, j + head),
        Op::Del(i) => Op::Del(i + head),
        Op::Add(j) => Op::Add(j + head),
    }));
    ops.extend((0..tail).map(|k| Op::Same(a.len() - tail + k, b.len() - tail + k)));
    for hunk in hunks(&ops) {
        let (a_start, a_len, b_start, b_len) = hunk_range(&ops[hunk.0..hunk.1]);
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            a_start + usize::from(a_len > 0),
            a_len,
            b_start + usize::from(b_len > 0),
            b_len
        ));
        for op in &ops[hunk.0..hunk.1] {
            match op {
                Op::Same(i, _) => out.push_str(&format!(" {}\n", a[*i])),
                Op::Del(i) => out.push_str(&format!("-{}\n", a[*i])),
                Op::Add(j) => out.push_str(&format!("+{}\n", b[*j])),
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

#[derive(Debug, Clone, Copy)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j] = LCS length of a[i..] and b[j..]
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions first, as diff(1) prints them.
            ops.push(Op::Del(i));
            i += 1;
        } else {
            ops.push(Op::Add(j));
            j += 1;
        }
    }
    ops
}

/// Groups changes with up to CONTEXT unchanged lines around them into hunks (index ranges).
fn hunks(ops: &[Op]) -> Vec<(usize, usize)> {
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for idx in changed {
        let start = idx.saturating_sub(CONTEXT);
        let end = (idx + CONTEXT + 1).min(ops.len());
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

fn hunk_range(ops: &[Op]) -> (usize, usize, usize, usize) {
    let mut a_start = None;
    let mut b_start = None;
    let (mut a_len, mut b_len) = (0, 0);
    let mut a_next = 0;
    let mut b_next = 0;
    for op in ops {
        match *op {
            Op::Same(i, j) => {
                a_start.get_or_insert(i);
                b_start.get_or_insert(j);
                a_len += 1;
                b_len += 1;
                a_next = i + 1;
                b_next = j + 1;
            }
            Op::Del(i) => {
                a_start.get_or_insert(i);
                a_len += 1;
                a_next = i + 1;
            }
            Op::Add(j) => {
                b_start.get_or_insert(j);
                b_len += 1;
                b_next = j + 1;
            }
        }
    }
    (
        a_start.unwrap_or(a_next),
        a_len,
        b_start.unwrap_or(b_next),
        b_len,
    )
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
    fn large_files_with_a_small_change_get_a_real_diff() {
        let before: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let after = before.replace("line 10000\n", "line ten thousand\n");
        let d = unified("big", Some(&before), Some(&after));
        assert!(d.contains("-line 10000\n+line ten thousand\n"), "{d}");
        assert!(d.contains("@@ -9998,7 +9998,7 @@"), "{d}");
        let unrelated: String = (0..5_000).map(|i| format!("other {i}\n")).collect();
        let d = unified("big", Some(&before), Some(&unrelated));
        assert!(d.contains("too large to diff"), "{d}");
    }

    #[test]
    fn equal_inputs_give_no_diff() {
        assert_eq!(unified("f", Some("x\n"), Some("x\n")), "");
    }
}
