//! How many token sub-ranges a run splits each table into when the user does not say.
//!
//! WHY not a fixed count: validate holds one whole target sub-range in memory while it reads
//! the same origin sub-range, and a sub-range is also the unit of resume and retry. A fixed 256
//! ranges means ~4 million rows per range on a billion-row table. The count is derived from
//! Cassandra's own size estimates (`system.size_estimates`: partitions and mean partition size
//! per token range of the node answering), aiming at most [`PARTITIONS_PER_RANGE`] partitions and
//! [`BYTES_PER_RANGE`] bytes per sub-range, never fewer than [`MIN_SPLITS`].
//!
//! The estimates only count flushed SSTables and are refreshed every few minutes; a table whose
//! data is still in memtables estimates as empty and gets the minimum, which is small enough
//! for data that fits in memtables anyway.

use anyhow::Context;
use futures::TryStreamExt;
use scylla::client::session::Session;

use super::schema::Table;

/// Fewest sub-ranges per table: fine-grained enough for resume and balance on small tables.
pub const MIN_SPLITS: u32 = 256;
/// Most sub-ranges per table: the checkpoint (one entry per range, rewritten after each range)
/// stays small enough to rewrite that often.
pub const MAX_SPLITS: u32 = 16_384;
/// Target partitions per sub-range (rows, for tables without clustering columns).
pub const PARTITIONS_PER_RANGE: u64 = 100_000;
/// Target bytes per sub-range (bounds validate's in-memory target sub-range for wide rows).
pub const BYTES_PER_RANGE: u64 = 64 * 1024 * 1024;

/// A table's estimated size over the whole ring.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SizeEstimate {
    pub partitions: u64,
    pub bytes: u64,
}

/// One row of `system.size_estimates`: the token range `(start, end]` and what it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangeEstimate {
    pub start: i64,
    pub end: i64,
    pub partitions: i64,
    pub mean_partition_size: i64,
}

const RING: f64 = 18_446_744_073_709_551_616.0; // 2^64 tokens

/// Width of `(start, end]` in tokens; `end <= start` wraps around the ring.
fn width(start: i64, end: i64) -> f64 {
    if end > start {
        (end as i128 - start as i128) as f64
    } else {
        (i64::MAX as i128 - start as i128 + end as i128 - i64::MIN as i128) as f64
    }
}

/// Extrapolates the ranges one node reports to the whole ring: the node only reports its own
/// primary ranges, so the totals are scaled by the share of the ring those ranges cover.
pub fn extrapolate(ranges: &[RangeEstimate]) -> SizeEstimate {
    let covered: f64 = ranges.iter().map(|r| width(r.start, r.end)).sum();
    if covered <= 0.0 {
        return SizeEstimate::default();
    }
    let partitions: f64 = ranges.iter().map(|r| r.partitions.max(0) as f64).sum();
    let bytes: f64 = ranges
        .iter()
        .map(|r| r.partitions.max(0) as f64 * r.mean_partition_size.max(0) as f64)
        .sum();
    let scale = RING / covered.min(RING);
    SizeEstimate {
        partitions: (partitions * scale).round() as u64,
        bytes: (bytes * scale).round() as u64,
    }
}

/// Sub-ranges for a table of this size: enough for at most [`PARTITIONS_PER_RANGE`] partitions
/// and [`BYTES_PER_RANGE`] bytes each, rounded up to a power of two (so a slightly different
/// estimate on the next run usually gives the same count), within
/// [`MIN_SPLITS`]..=[`MAX_SPLITS`].
pub fn splits_for(size: SizeEstimate) -> u32 {
    let by_partitions = size.partitions.div_ceil(PARTITIONS_PER_RANGE);
    let by_bytes = size.bytes.div_ceil(BYTES_PER_RANGE);
    let needed = by_partitions.max(by_bytes).max(MIN_SPLITS as u64);
    needed
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .min(MAX_SPLITS as u64) as u32
}

/// Reads `system.size_estimates` for one table on the node the driver asks.
pub async fn estimate(session: &Session, table: &Table) -> anyhow::Result<SizeEstimate> {
    let context = || {
        format!(
            "reading the size estimates of {} on origin",
            table.display_name()
        )
    };
    let rows: Vec<(String, String, i64, i64)> = session
        .query_iter(
            "SELECT range_start, range_end, partitions_count, mean_partition_size \
             FROM system.size_estimates WHERE keyspace_name = ? AND table_name = ?",
            (&table.keyspace, &table.name),
        )
        .await
        .with_context(context)?
        .rows_stream::<(String, String, i64, i64)>()
        .with_context(context)?
        .try_collect()
        .await
        .with_context(context)?;
    let mut ranges = Vec::with_capacity(rows.len());
    for (start, end, partitions, mean) in rows {
        let (Ok(start), Ok(end)) = (start.parse::<i64>(), end.parse::<i64>()) else {
            anyhow::bail!(
                "size estimates of {} name a non-Murmur3 token range ({start}, {end}]",
                table.display_name()
            );
        };
        ranges.push(RangeEstimate {
            start,
            end,
            partitions,
            mean_partition_size: mean,
        });
    }
    Ok(extrapolate(&ranges))
}

/// The split count of a run and why, for the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitChoice {
    pub splits: u32,
    pub reason: String,
}

/// The split count for a run over `tables`, derived from origin's estimates (the largest table
/// decides: one count per run keeps the checkpoint's range indexes meaningful).
pub async fn derive(session: &Session, tables: &[&Table]) -> anyhow::Result<SplitChoice> {
    let mut largest = SizeEstimate::default();
    let mut largest_name = String::new();
    for t in tables {
        // The estimates only tune the run: when they cannot be read, the minimum still works
        // (with bigger ranges), so a run is not refused for it.
        let e = match estimate(session, t).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("{e:#}; using {MIN_SPLITS} token ranges");
                return Ok(SplitChoice {
                    splits: MIN_SPLITS,
                    reason: format!("the minimum: origin's size estimates unreadable ({e:#})"),
                });
            }
        };
        if splits_for(e) > splits_for(largest) || largest_name.is_empty() {
            largest = e;
            largest_name = t.display_name();
        }
    }
    let splits = splits_for(largest);
    Ok(SplitChoice {
        splits,
        reason: if largest_name.is_empty() {
            "the minimum (no tables)".into()
        } else {
            format!(
                "derived from origin's size estimates: largest {largest_name} ~{} partitions, \
                 ~{} MiB",
                largest.partitions,
                largest.bytes / (1024 * 1024)
            )
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(partitions: u64, bytes: u64) -> SizeEstimate {
        SizeEstimate { partitions, bytes }
    }

    #[test]
    fn splits_aim_at_100k_partitions_and_64_mib_per_range() {
        assert_eq!(splits_for(est(0, 0)), MIN_SPLITS);
        assert_eq!(
            splits_for(est(25_600_000, 0)),
            256,
            "exactly 100k per range"
        );
        assert_eq!(
            splits_for(est(25_600_001, 0)),
            512,
            "rounded up to a power of two"
        );
        assert_eq!(splits_for(est(100_000_000, 0)), 1024);
        // 1 billion partitions -> 10 000 ranges needed -> 16 384.
        assert_eq!(splits_for(est(1_000_000_000, 0)), 16_384);
        assert_eq!(splits_for(est(u64::MAX, 0)), MAX_SPLITS, "capped");
        // Few but wide partitions: bytes decide. 100 GiB / 64 MiB = 1600 -> 2048.
        assert_eq!(splits_for(est(1_000, 100 * 1024 * 1024 * 1024)), 2048);
    }

    #[test]
    fn a_nodes_ranges_are_extrapolated_to_the_ring() {
        // What a single-token node reports: (MIN, 0] and the wrapping (0, MIN].
        let whole = [
            RangeEstimate {
                start: i64::MIN,
                end: 0,
                partitions: 600,
                mean_partition_size: 100,
            },
            RangeEstimate {
                start: 0,
                end: i64::MIN,
                partitions: 400,
                mean_partition_size: 50,
            },
        ];
        assert_eq!(extrapolate(&whole), est(1000, 60_000 + 20_000));
        // A node of a 4-node cluster reports a quarter of the ring: totals scale by 4.
        let quarter = [RangeEstimate {
            start: 0,
            end: i64::MAX / 2,
            partitions: 1000,
            mean_partition_size: 10,
        }];
        let e = extrapolate(&quarter);
        assert!((3990..=4010).contains(&e.partitions), "{e:?}");
        assert_eq!(extrapolate(&[]), SizeEstimate::default());
    }
}
