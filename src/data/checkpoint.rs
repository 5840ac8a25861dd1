//! Per-range progress of a migrate or validate run, so an interrupted run resumes where it
//! stopped.
//!
//! The file is rewritten after every finished range through a temporary file in the same
//! directory and an atomic rename, so a crash leaves either the old or the new version, never a
//! torn one. Ranges that failed are recorded too and are retried by the next run.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::report::{MigrateSummary, TableValidation, ValidationReport};

pub const FORMAT_VERSION: u32 = 1;

/// File name of `zdm-run validate`'s checkpoint in the state directory; the `zdm_validate`
/// gate resumes it too when no phase is being entered.
pub const VALIDATE_CHECKPOINT: &str = "validate-checkpoint.json";

/// File name of `zdm-run migrate`'s checkpoint in the state directory; the `zdm_migrate` module
/// resumes the same file, so a copy started from either front end can be finished by the other.
pub const MIGRATE_CHECKPOINT: &str = "migrate-checkpoint.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TableProgress {
    /// Finished ranges: index -> rows copied in that range.
    pub done: BTreeMap<u32, u64>,
    /// Failed ranges: index -> last error.
    pub failed: BTreeMap<u32, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub version: u32,
    /// The split count the range indexes refer to; a run with another count starts over.
    pub splits: u32,
    /// `ks.table` -> progress.
    pub tables: BTreeMap<String, TableProgress>,
    /// Set when a run finished; the next run starts fresh.
    pub finished: Option<MigrateSummary>,
}

impl Checkpoint {
    pub fn new(splits: u32) -> Checkpoint {
        Checkpoint {
            version: FORMAT_VERSION,
            splits,
            tables: BTreeMap::new(),
            finished: None,
        }
    }

    /// Loads the checkpoint to resume from: `None` when there is no file, or when it belongs to
    /// a finished run or to a different split count (then the run starts over, with a log line).
    /// `splits: None` (the user did not choose) accepts the checkpoint's own count.
    pub fn load_for_resume(path: &Path, splits: Option<u32>) -> anyhow::Result<Option<Checkpoint>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading checkpoint {}", path.display()))
            }
        };
        let cp: Checkpoint = serde_json::from_str(&text).with_context(|| {
            format!(
                "checkpoint {} is not valid (delete it or pass --fresh)",
                path.display()
            )
        })?;
        anyhow::ensure!(
            cp.version == FORMAT_VERSION,
            "checkpoint {} has format version {}, expected {FORMAT_VERSION} (delete it or pass --fresh)",
            path.display(),
            cp.version
        );
        if cp.finished.is_some() {
            tracing::info!(
                "checkpoint {} records a finished run; starting a new one",
                path.display()
            );
            return Ok(None);
        }
        if let Some(splits) = splits.filter(|s| *s != cp.splits) {
            tracing::warn!(
                "checkpoint {} was written with {} splits, this run uses {splits}; starting over",
                path.display(),
                cp.splits
            );
            return Ok(None);
        }
        Ok(Some(cp))
    }

    pub fn table(&mut self, name: &str) -> &mut TableProgress {
        self.tables.entry(name.to_string()).or_default()
    }

    pub fn is_done(&self, table: &str, range: u32) -> bool {
        self.tables
            .get(table)
            .is_some_and(|t| t.done.contains_key(&range))
    }
}

/// Marks a validate checkpoint, so a migrate checkpoint passed by mistake is refused.
pub const VALIDATE_KIND: &str = "validate";

/// Progress of one table in a validate run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ValidateTableProgress {
    /// Finished ranges: index -> rows compared in that range.
    pub done: BTreeMap<u32, u64>,
    /// Failed ranges: index -> last error (retried by the next run).
    pub failed: BTreeMap<u32, String>,
    /// Counts and example keys of the finished ranges only, so a resumed run reports the same
    /// totals as an uninterrupted one without reading those ranges again.
    pub totals: TableValidation,
}

/// Per-range progress of a validate run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ValidateCheckpoint {
    pub kind: String,
    pub version: u32,
    pub splits: u32,
    /// The options that change what a range's result means (sampling, comparison, cutoff,
    /// autocorrect); a run with other options starts over rather than mix two meanings.
    pub options: String,
    /// The writetime cut-off of the interrupted run, reused on resume: rows written since then
    /// are live traffic for the whole run, not only for the ranges checked later.
    pub cutoff: Option<i64>,
    pub tables: BTreeMap<String, ValidateTableProgress>,
    /// Set when a run finished with every range checked; the next run starts fresh.
    pub finished: Option<ValidationReport>,
}

impl ValidateCheckpoint {
    pub fn new(splits: u32, options: String, cutoff: Option<i64>) -> ValidateCheckpoint {
        ValidateCheckpoint {
            kind: VALIDATE_KIND.into(),
            version: FORMAT_VERSION,
            splits,
            options,
            cutoff,
            tables: BTreeMap::new(),
            finished: None,
        }
    }

    /// The checkpoint to resume from, or `None` (no file, a finished run, other splits or
    /// other options: the run starts over, with a log line).
    pub fn load_for_resume(
        path: &Path,
        splits: Option<u32>,
        options: &str,
    ) -> anyhow::Result<Option<ValidateCheckpoint>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading checkpoint {}", path.display()))
            }
        };
        let cp: ValidateCheckpoint = serde_json::from_str(&text).with_context(|| {
            format!(
                "checkpoint {} is not a valid validate checkpoint (delete it or pass --fresh)",
                path.display()
            )
        })?;
        anyhow::ensure!(
            cp.kind == VALIDATE_KIND && cp.version == FORMAT_VERSION,
            "checkpoint {} is a {} checkpoint version {}, expected {VALIDATE_KIND} version \
             {FORMAT_VERSION} (delete it or pass --fresh)",
            path.display(),
            cp.kind,
            cp.version
        );
        if cp.finished.is_some() {
            tracing::info!(
                "checkpoint {} records a finished validation; starting a new one",
                path.display()
            );
            return Ok(None);
        }
        if splits.is_some_and(|s| s != cp.splits) || cp.options != options {
            tracing::warn!(
                "checkpoint {} was written with other splits or options; starting over",
                path.display()
            );
            return Ok(None);
        }
        Ok(Some(cp))
    }

    pub fn table(&mut self, name: &str) -> &mut ValidateTableProgress {
        self.tables.entry(name.to_string()).or_default()
    }

    pub fn is_done(&self, table: &str, range: u32) -> bool {
        self.tables
            .get(table)
            .is_some_and(|t| t.done.contains_key(&range))
    }
}

/// Saves a validate checkpoint atomically.
pub fn save_validate(path: &Path, cp: &ValidateCheckpoint) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(cp)?;
    write_atomic(path, &json)
}

/// Writes `contents` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    // The rename is only durable once the directory entry is: without this a power loss
    // right after the rename can bring back the previous version (or no file at all).
    sync_dir(&dir).with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for syncing on this platform; the rename is atomic anyway.
    Ok(())
}

/// Saves the checkpoint atomically.
pub fn save(path: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(cp)?;
    write_atomic(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_resume_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cp.json");
        assert!(Checkpoint::load_for_resume(&path, Some(8))
            .unwrap()
            .is_none());

        let mut cp = Checkpoint::new(8);
        cp.table("ks.t").done.insert(3, 42);
        cp.table("ks.t").failed.insert(5, "boom".into());
        save(&path, &cp).unwrap();
        let back = Checkpoint::load_for_resume(&path, Some(8))
            .unwrap()
            .unwrap();
        assert_eq!(back, cp);
        assert!(back.is_done("ks.t", 3));
        assert!(!back.is_done("ks.t", 5));

        // Another split count starts over; no chosen count takes the checkpoint's.
        assert!(Checkpoint::load_for_resume(&path, Some(16))
            .unwrap()
            .is_none());
        assert_eq!(
            Checkpoint::load_for_resume(&path, None)
                .unwrap()
                .unwrap()
                .splits,
            8
        );

        // A finished run starts over.
        cp.finished = Some(MigrateSummary::default());
        save(&path, &cp).unwrap();
        assert!(Checkpoint::load_for_resume(&path, Some(8))
            .unwrap()
            .is_none());

        // Garbage is an error naming the file.
        std::fs::write(&path, "{nope").unwrap();
        let err = Checkpoint::load_for_resume(&path, Some(8)).unwrap_err();
        assert!(format!("{err:#}").contains("cp.json"), "{err:#}");
    }

    #[test]
    fn validate_checkpoint_resume_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.json");
        let mut cp = ValidateCheckpoint::new(8, "opts-a".into(), Some(7));
        cp.table("ks.t").done.insert(2, 10);
        cp.table("ks.t").totals.missing = 3;
        save_validate(&path, &cp).unwrap();
        let back = ValidateCheckpoint::load_for_resume(&path, Some(8), "opts-a")
            .unwrap()
            .unwrap();
        assert_eq!(back, cp);
        assert!(back.is_done("ks.t", 2) && !back.is_done("ks.t", 3));
        assert!(
            ValidateCheckpoint::load_for_resume(&path, Some(8), "opts-b")
                .unwrap()
                .is_none()
        );
        assert!(
            ValidateCheckpoint::load_for_resume(&path, Some(4), "opts-a")
                .unwrap()
                .is_none()
        );
        cp.finished = Some(ValidationReport::default());
        save_validate(&path, &cp).unwrap();
        assert!(
            ValidateCheckpoint::load_for_resume(&path, Some(8), "opts-a")
                .unwrap()
                .is_none()
        );

        // A migrate checkpoint is refused, naming the file.
        save(&path, &Checkpoint::new(8)).unwrap();
        let err = ValidateCheckpoint::load_for_resume(&path, Some(8), "opts-a").unwrap_err();
        assert!(format!("{err:#}").contains("v.json"), "{err:#}");
    }
}
