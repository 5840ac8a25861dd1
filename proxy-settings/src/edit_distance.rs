//! How far apart two words are, for "did you mean" hints (a misspelt setting in the proxy's
//! config, a variable that names no proxy setting, a misspelt zdm-run subcommand).

/// Levenshtein distance (insertions, deletions, substitutions) over characters. The words are
/// short names, so the simple one-row table is fine.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("validate", "validate"), 0);
        assert_eq!(edit_distance("valdate", "validate"), 1);
        assert_eq!(
            edit_distance("proxy_max_stream_id", "proxy_max_stream_ids"),
            1
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
