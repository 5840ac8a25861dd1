//! Splits the Murmur3 token ring into sub-ranges: the unit of parallel work, of rate
//! accounting, of checkpointing and of sampling.

use serde::{Deserialize, Serialize};

/// A half-open token range `(start, end]`. Murmur3 never produces `i64::MIN` as a token, so the
/// ranges from `(i64::MIN, ...]` to `(..., i64::MAX]` cover every row exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRange {
    /// Index of this range in the split, stable for a given number of splits.
    pub index: u32,
    pub start: i64,
    pub end: i64,
}

/// Splits the whole ring into `splits` contiguous ranges of (nearly) equal width.
pub fn split_ring(splits: u32) -> Vec<TokenRange> {
    let splits = splits.max(1);
    let width: i128 = (i64::MAX as i128 - i64::MIN as i128) / splits as i128;
    let mut out = Vec::with_capacity(splits as usize);
    let mut start = i64::MIN as i128;
    for i in 0..splits {
        let end = if i + 1 == splits {
            i64::MAX as i128
        } else {
            start + width
        };
        out.push(TokenRange {
            index: i,
            start: start as i64,
            end: end as i64,
        });
        start = end;
    }
    out
}

/// Picks about `percent` of the ranges, spread evenly over the ring and the same on every run
/// for the same inputs, so a sampled validation is reproducible.
pub fn sample(ranges: &[TokenRange], percent: f64) -> Vec<TokenRange> {
    if percent >= 100.0 {
        return ranges.to_vec();
    }
    let n = ranges.len();
    let want = ((n as f64) * percent / 100.0).ceil().max(1.0) as usize;
    let want = want.min(n);
    // Evenly spaced indices: i * n / want for i in 0..want.
    (0..want).map(|i| ranges[i * n / want]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_ring_without_gaps() {
        for splits in [1, 2, 3, 7, 256, 1000] {
            let r = split_ring(splits);
            assert_eq!(r.len(), splits as usize);
            assert_eq!(r[0].start, i64::MIN);
            assert_eq!(r.last().unwrap().end, i64::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start, "ranges must be contiguous");
                assert!(w[0].start < w[0].end);
            }
        }
    }

    #[test]
    fn sample_is_even_and_stable() {
        let r = split_ring(100);
        let s = sample(&r, 10.0);
        assert_eq!(s.len(), 10);
        assert_eq!(s, sample(&r, 10.0));
        let idx: Vec<u32> = s.iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
        assert_eq!(sample(&r, 100.0).len(), 100);
        assert_eq!(sample(&r, 0.1).len(), 1);
    }
}
