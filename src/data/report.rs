//! What a run found and did: the JSON report written to a file and the human summary printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TableMigrate {
    pub table: String,
    pub ranges_total: u32,
    /// Ranges copied by this run.
    pub ranges_copied: u32,
    /// Ranges skipped because a previous, interrupted run had finished them.
    pub ranges_resumed: u32,
    pub ranges_failed: u32,
    pub rows_read: u64,
    pub writes: u64,
    /// Errors of failed ranges: range index -> message.
    pub failures: BTreeMap<u32, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MigrateSummary {
    pub tables: Vec<TableMigrate>,
    /// Token sub-ranges per table, and why that many.
    #[serde(default)]
    pub splits: u32,
    #[serde(default)]
    pub splits_reason: String,
    pub rows_read: u64,
    pub writes: u64,
    pub ranges_resumed: u32,
    pub ranges_failed: u32,
    pub elapsed_secs: f64,
    pub rows_per_sec: f64,
}

impl MigrateSummary {
    pub fn ok(&self) -> bool {
        self.ranges_failed == 0
    }

    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "MIGRATE SUMMARY");
        let _ = writeln!(
            s,
            "  {} token ranges per table ({})",
            self.splits, self.splits_reason
        );
        for t in &self.tables {
            let _ = writeln!(
                s,
                "  {:<40} rows={:<10} writes={:<10} ranges copied={} resumed={} failed={} of {}",
                t.table,
                t.rows_read,
                t.writes,
                t.ranges_copied,
                t.ranges_resumed,
                t.ranges_failed,
                t.ranges_total
            );
            for (r, e) in &t.failures {
                let _ = writeln!(s, "    range {r} failed: {e}");
            }
        }
        let _ = writeln!(
            s,
            "  total rows={} in {:.1}s ({:.0} rows/s){}",
            self.rows_read,
            self.elapsed_secs,
            self.rows_per_sec,
            if self.ok() {
                String::new()
            } else {
                format!(
                    "; {} range(s) FAILED, run again to retry them",
                    self.ranges_failed
                )
            }
        );
        s
    }
}

/// A mismatched row: its key and the columns that differ.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Mismatch {
    pub key: BTreeMap<String, String>,
    /// column -> (origin value, target value), as CQL literals.
    pub columns: BTreeMap<String, (String, String)>,
    /// column -> its likely cause and what to do, where the values tell
    /// (`data::likely_cause`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub causes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TableValidation {
    pub table: String,
    /// Ranges with a result, including those an interrupted earlier run finished.
    pub ranges_checked: u32,
    /// Of `ranges_checked`, the ranges taken from the checkpoint of an interrupted run.
    #[serde(default)]
    pub ranges_resumed: u32,
    pub ranges_failed: u32,
    pub rows_compared: u64,
    pub missing: u64,
    pub mismatched: u64,
    pub extra: u64,
    /// Rows skipped because a cell was written after the validation started (live traffic).
    /// Only rows that differ are told apart this way: a row equal on both clusters is counted
    /// as compared whenever it was written (see `engine::RangeScans`).
    pub skipped_recent: u64,
    pub corrected_missing: u64,
    pub corrected_mismatched: u64,
    pub corrected_extra: u64,
    /// Corrected rows whose timestamps had to be raised above a stale target tombstone.
    pub corrected_raised_writetime: u64,
    /// Corrections that did not take effect.
    pub corrections_failed: u64,
    /// A counter table: compared by value (counters have no writetime, so live traffic cannot
    /// be told apart by time) and corrected by adding origin - target (`data::counters`).
    #[serde(default)]
    pub counter_table: bool,
    /// Counter rows apart at the scan but equal when read again moments later: increments the
    /// proxies were still applying to the second cluster. Not differences.
    #[serde(default)]
    pub counter_rows_in_flight: u64,
    /// Up to `max_examples` keys per kind.
    pub missing_keys: Vec<BTreeMap<String, String>>,
    pub mismatched_rows: Vec<Mismatch>,
    pub extra_keys: Vec<BTreeMap<String, String>>,
    pub failures: BTreeMap<u32, String>,
}

impl TableValidation {
    /// Adds the result of one more range, keeping at most `max_examples` keys per kind.
    pub fn absorb(&mut self, part: &TableValidation, max_examples: usize) {
        self.ranges_checked += part.ranges_checked;
        self.rows_compared += part.rows_compared;
        self.missing += part.missing;
        self.mismatched += part.mismatched;
        self.extra += part.extra;
        self.skipped_recent += part.skipped_recent;
        self.corrected_missing += part.corrected_missing;
        self.corrected_mismatched += part.corrected_mismatched;
        self.corrected_extra += part.corrected_extra;
        self.corrected_raised_writetime += part.corrected_raised_writetime;
        self.corrections_failed += part.corrections_failed;
        self.counter_table |= part.counter_table;
        self.counter_rows_in_flight += part.counter_rows_in_flight;
        fn take<T: Clone>(into: &mut Vec<T>, from: &[T], max: usize) {
            let room = max.saturating_sub(into.len());
            into.extend(from.iter().take(room).cloned());
        }
        take(&mut self.missing_keys, &part.missing_keys, max_examples);
        take(
            &mut self.mismatched_rows,
            &part.mismatched_rows,
            max_examples,
        );
        take(&mut self.extra_keys, &part.extra_keys, max_examples);
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ValidationReport {
    pub tables: Vec<TableValidation>,
    /// Token sub-ranges per table (before sampling), and why that many.
    #[serde(default)]
    pub splits: u32,
    #[serde(default)]
    pub splits_reason: String,
    pub missing: u64,
    pub mismatched: u64,
    pub extra: u64,
    pub rows_compared: u64,
    pub skipped_recent: u64,
    pub ranges_failed: u32,
    pub corrected_missing: u64,
    pub corrected_mismatched: u64,
    pub corrected_extra: u64,
    pub corrected_raised_writetime: u64,
    pub corrections_failed: u64,
    /// Percentage of token ranges checked.
    pub sample_percent: f64,
    /// Writetime (µs) after which cells are treated as live traffic and not judged.
    pub cutoff_writetime: Option<i64>,
    pub elapsed_secs: f64,
    pub rows_per_sec: f64,
}

/// Limits the consistency gate allows; the defaults allow nothing.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    pub missing: u64,
    pub mismatched: u64,
    pub extra: u64,
}

/// Differences still on target after autocorrection, per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Remaining {
    pub missing: u64,
    pub mismatched: u64,
    pub extra: u64,
}

impl ValidationReport {
    /// What is left after autocorrection: found minus corrected. When any correction did not
    /// take effect the corrected counts cannot be trusted row by row, so every found difference
    /// counts as remaining (the failed correction also fails [`Self::exceeds`] on its own).
    pub fn remaining(&self) -> Remaining {
        let left = |found: u64, corrected: u64| {
            if self.corrections_failed == 0 {
                found.saturating_sub(corrected)
            } else {
                found
            }
        };
        Remaining {
            missing: left(self.missing, self.corrected_missing),
            mismatched: left(self.mismatched, self.corrected_mismatched),
            extra: left(self.extra, self.corrected_extra),
        }
    }

    /// Whether what remains after autocorrection exceeds a threshold, or some range could not
    /// be checked, or a correction failed (an unchecked range or a failed correction proves
    /// nothing, so either fails the gate too). The playbook gate and the CLI's exit code both
    /// judge with this.
    pub fn exceeds(&self, t: &Thresholds) -> bool {
        let r = self.remaining();
        r.missing > t.missing
            || r.mismatched > t.mismatched
            || r.extra > t.extra
            || self.ranges_failed > 0
            || self.corrections_failed > 0
    }

    /// Whether differences remain after autocorrection (what the exit code reflects).
    pub fn has_differences(&self) -> bool {
        self.exceeds(&Thresholds::default())
    }

    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "VALIDATION SUMMARY ({}% of {} token ranges per table; {})",
            self.sample_percent, self.splits, self.splits_reason
        );
        for t in &self.tables {
            let _ = writeln!(
                s,
                "  {:<40} compared={:<10} missing={:<6} mismatched={:<6} extra={:<6} recent={}{}",
                t.table,
                t.rows_compared,
                t.missing,
                t.mismatched,
                t.extra,
                t.skipped_recent,
                if t.corrected_missing + t.corrected_mismatched + t.corrected_extra > 0 {
                    format!(
                        " corrected: missing={} mismatched={} extra={} (raised writetime {}, failed {})",
                        t.corrected_missing,
                        t.corrected_mismatched,
                        t.corrected_extra,
                        t.corrected_raised_writetime,
                        t.corrections_failed
                    )
                } else {
                    String::new()
                }
            );
            for k in &t.missing_keys {
                let _ = writeln!(s, "    missing    {}", render_key(k));
            }
            for m in &t.mismatched_rows {
                let cols: Vec<String> = m
                    .columns
                    .iter()
                    .map(|(c, (o, t))| format!("{c}: origin={o} target={t}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "    mismatched {} [{}]",
                    render_key(&m.key),
                    cols.join("; ")
                );
                for (c, why) in &m.causes {
                    let _ = writeln!(s, "      {c}: likely cause: {why}");
                }
            }
            for k in &t.extra_keys {
                let _ = writeln!(s, "    extra      {}", render_key(k));
            }
            for (r, e) in &t.failures {
                let _ = writeln!(s, "    range {r} could not be checked: {e}");
            }
        }
        let _ = writeln!(
            s,
            "  total compared={} missing={} mismatched={} extra={} recent={} failed ranges={} in {:.1}s ({:.0} rows/s)",
            self.rows_compared,
            self.missing,
            self.mismatched,
            self.extra,
            self.skipped_recent,
            self.ranges_failed,
            self.elapsed_secs,
            self.rows_per_sec
        );
        if self.corrected_missing + self.corrected_mismatched + self.corrected_extra > 0
            || self.corrections_failed > 0
        {
            let r = self.remaining();
            let _ = writeln!(
                s,
                "  after autocorrect: corrected missing={} mismatched={} extra={} (failed {}); \
                 remaining missing={} mismatched={} extra={}",
                self.corrected_missing,
                self.corrected_mismatched,
                self.corrected_extra,
                self.corrections_failed,
                r.missing,
                r.mismatched,
                r.extra
            );
        }
        s
    }
}

fn render_key(k: &BTreeMap<String, String>) -> String {
    k.iter()
        .map(|(c, v)| format!("{c}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_gate_counts_and_failed_ranges() {
        let mut r = ValidationReport::default();
        assert!(!r.has_differences());
        r.missing = 2;
        assert!(r.exceeds(&Thresholds::default()));
        assert!(!r.exceeds(&Thresholds {
            missing: 2,
            ..Default::default()
        }));
        r.missing = 0;
        r.ranges_failed = 1;
        assert!(r.exceeds(&Thresholds {
            missing: 9,
            mismatched: 9,
            extra: 9
        }));
    }

    #[test]
    fn corrected_differences_do_not_count_but_failed_corrections_do() {
        let mut r = ValidationReport {
            missing: 3,
            mismatched: 2,
            extra: 1,
            corrected_missing: 3,
            corrected_mismatched: 2,
            ..Default::default()
        };
        assert_eq!(
            r.remaining(),
            Remaining {
                missing: 0,
                mismatched: 0,
                extra: 1
            }
        );
        assert!(r.has_differences(), "the uncorrected extra row remains");
        r.corrected_extra = 1;
        assert!(!r.has_differences(), "{}", r.human());
        assert!(r
            .human()
            .contains("remaining missing=0 mismatched=0 extra=0"));
        r.corrections_failed = 1;
        assert_eq!(r.remaining().missing, 3);
        assert!(r.has_differences());
    }
}
