//! The data engine: backfill (migrate) origin into target and prove they hold the same rows
//! (validate), preserving every cell's writetime and remaining TTL.
//!
//! Layout, one concern per module:
//! - [`schema`]: reads `system_schema` and classifies columns (how each must be read and written).
//! - [`ranges`]: splits the Murmur3 ring into sub-ranges, the unit of parallelism and resume.
//! - [`sizing`]: how many sub-ranges, from origin's size estimates, unless the user says.
//! - [`scan`]: pages through one sub-range with retries, backoff, rate limit and page shrinking.
//! - [`copy`]: turns one origin row into target writes that keep per-cell writetime and TTL.
//! - [`diff`]: compares one sub-range of origin with the same sub-range of target.
//! - [`autocorrect`]: rewrites missing and mismatched rows on target.
//! - [`counters`]: counter tables, copied and corrected by adding the difference.
//! - [`checkpoint`]: per-range progress file, written atomically, so a run can resume.
//! - [`report`]: summaries, the JSON report and the human summary.
//! - [`engine`]: the library entry points [`migrate`] and [`validate`] a playbook module wraps.
//! - [`progress`]: bars with rows/s and ETA on a terminal, plain periodic lines otherwise.
//! - [`cdm`]: Cassandra Data Migrator's settings, command line and run-tracking gate
//!   (the `zdm_cdm` module), for data that outgrows one machine.
//!
//! The `zdm-run migrate` / `zdm-run validate` subcommands that drive it from the command line
//! live with the other front ends, in `cli/data.rs`, so the engine itself depends on no
//! inventory, migration state or run output.
//!
//! What is preserved, and where the CQL interface sets limits:
//! - every cell's writetime and remaining TTL, per column and per set/map element (Cassandra 5
//!   returns per-element `writetime()`/`ttl()` lists for multi-cell columns);
//! - non-frozen lists and UDTs are written whole with their newest element's time (a list is
//!   not idempotent to write element by element); a list whose target copy has the same
//!   timestamp but other content is cleared and written 1 µs later;
//! - a row's primary-key liveness (row marker) timestamp and TTL are not readable through CQL
//!   (`writetime()`/`ttl()` take non-key columns only): a row with no non-key cells (a key-only
//!   row, or one whose other columns are all null) is written with the time it was read and
//!   **without a TTL**, so on target it does not expire when it would on origin (a known limit;
//!   such rows must be expired or deleted on target by hand, or copied by a tool reading
//!   SSTables);
//! - counter tables cannot be written with a value or a timestamp: migrate and autocorrect add
//!   the difference origin - target to target's counters once it held across quiet re-reads, and
//!   validate judges a counter row only after such a re-read ([`counters`]);
//! - only Murmur3 token ranges.
//!
//! Both migrate and validate checkpoint per range; an interrupted run resumes (a resumed
//! validate keeps the first run's writetime cut-off and reports totals over all ranges). In the
//! library, [`validate`] keeps no checkpoint and [`validate_resumable`] does (the CLI and the
//! `zdm_validate` gate use it).

pub mod autocorrect;
pub mod cdm;
pub mod checkpoint;
pub mod config;
pub mod copy;
pub mod counters;
pub mod diff;
pub mod driver_errors;
pub mod engine;
pub mod likely_cause;
pub mod progress;
pub mod ranges;
pub mod report;
pub mod scan;
pub mod schema;
pub mod sizing;
pub mod value;

pub use config::{ClusterConfig, DataConfig, Selection};
pub use engine::{
    migrate, validate, validate_resumable, Cutoff, NoProgress, Progress, ValidateOptions,
    ValidateResume,
};
pub use report::{MigrateSummary, Thresholds, ValidationReport};
