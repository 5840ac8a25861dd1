//! Where a migration stands: its phase, how it got there, and who is acting on it right now.
//!
//! The state file (`zdm-state.json` beside the inventory) is the migration's memory between
//! runs: a phase playbook reads it to refuse skipping a gate, and appends to its history so an
//! operator can later see who moved the migration, when, with which playbook, and what every
//! gate measured. It is written atomically (temporary file + fsync + rename), so a crash never
//! leaves half a history.
//!
//! The lock file (`zdm-state.lock`) keeps two runs against the same inventory from interleaving
//! their rolling restarts: the second run is refused with the holder's user, host, pid and
//! playbook. A lock whose process is gone (same host, pid not alive) is stale and taken over.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::gates::Check;
use crate::inventory::STATE_FILE;

/// The run lock's file name, beside the state file. The state file's own name, `STATE_FILE`,
/// is the inventory's: reading an inventory directory passes over that file, and owning the
/// name keeps the inventory from importing this layer above it.
pub const LOCK_FILE: &str = "zdm-state.lock";

/// The migration's phases in the order they must pass (DESIGN.md's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing has run yet.
    NotStarted,
    Preflight,
    Phase1,
    Phase2,
    Phase3,
    Phase4,
    /// Cutover: the point of no return.
    Phase5,
}

impl Phase {
    /// The phase that must have completed, with its exit gate passed, before this one starts.
    pub fn predecessor(self) -> Option<Phase> {
        use Phase::*;
        match self {
            NotStarted | Preflight => None,
            Phase1 => Some(Preflight),
            Phase2 => Some(Phase1),
            Phase3 => Some(Phase2),
            Phase4 => Some(Phase3),
            Phase5 => Some(Phase4),
        }
    }

    /// Parses the names playbooks use (`preflight`, `phase1` … `phase5`, or `1` … `5`).
    pub fn parse(text: &str) -> Option<Phase> {
        use Phase::*;
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "not_started" | "none" => NotStarted,
            "preflight" | "0" => Preflight,
            "phase1" | "1" => Phase1,
            "phase2" | "2" => Phase2,
            "phase3" | "3" => Phase3,
            "phase4" | "4" => Phase4,
            "phase5" | "5" => Phase5,
            _ => return None,
        })
    }

    /// What the proxies must run in this phase, as (`primary_cluster`, `read_mode`); `None`
    /// where no proxy runs (before phase 1, after cutover).
    pub fn proxy_settings(self) -> Option<(&'static str, &'static str)> {
        use Phase::*;
        match self {
            NotStarted | Preflight | Phase5 => None,
            Phase1 | Phase2 => Some(("ORIGIN", "PRIMARY_ONLY")),
            Phase3 => Some(("ORIGIN", "DUAL_ASYNC_ON_SECONDARY")),
            Phase4 => Some(("TARGET", "PRIMARY_ONLY")),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Phase::*;
        f.write_str(match self {
            NotStarted => "not started",
            Preflight => "preflight",
            Phase1 => "phase1",
            Phase2 => "phase2",
            Phase3 => "phase3",
            Phase4 => "phase4",
            Phase5 => "phase5",
        })
    }
}

/// One gate's verdict, as it was printed: what it measured against which threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub passed: bool,
    pub measured: String,
    pub threshold: String,
}

/// The record a gate's check leaves in the history. It is made here, above the gates, so the
/// gates measure without knowing how the migration keeps their verdicts.
impl From<&Check> for GateResult {
    fn from(check: &Check) -> GateResult {
        GateResult {
            name: check.name.clone(),
            passed: check.passed,
            measured: check.measured.clone(),
            threshold: check.threshold.clone(),
        }
    }
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Started,
    Completed,
    Failed,
    /// A rollback began: the fleet is being moved back to origin; until it completes the
    /// current phase is no longer complete (the fleet may be mixed).
    RollbackStarted,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// RFC 3339, UTC.
    pub at: String,
    pub user: String,
    pub host: String,
    pub playbook: String,
    pub phase: Phase,
    pub event: Event,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateResult>,
    /// Set when `--force-phase` overrode the phase order; the warning is kept here for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<String>,
    /// Why an entry was written when that is not obvious (a failed gate, a run that ended
    /// before its phase completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationState {
    /// The phase most recently started (or rolled back to).
    pub phase: Phase,
    /// Whether that phase completed with its exit gate passed.
    pub completed: bool,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

impl Default for MigrationState {
    fn default() -> Self {
        MigrationState {
            phase: Phase::NotStarted,
            completed: true,
            history: Vec::new(),
        }
    }
}

/// Why a phase may not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionRefused {
    #[error("{wanted} needs {needed} completed with its gate passed first; the migration is at {at} ({status}). Run the {needed} playbook, or pass --force-phase to override (recorded in the state history)")]
    GateNotPassed {
        wanted: Phase,
        needed: Phase,
        at: Phase,
        status: &'static str,
    },
    #[error("the migration was cut over (phase5 completed): there is no going back to {wanted}")]
    AfterCutover { wanted: Phase },
}

impl MigrationState {
    /// Checks that `wanted` may start now. Re-running the current phase, or running any phase
    /// the migration has already passed (to re-apply it), is allowed; jumping ahead is not.
    /// `force` turns a refusal into a warning that the caller must print and record.
    pub fn check_start(
        &self,
        wanted: Phase,
        force: bool,
    ) -> Result<Option<String>, TransitionRefused> {
        if self.phase == Phase::Phase5 && self.completed && wanted != Phase::Phase5 {
            return Err(TransitionRefused::AfterCutover { wanted });
        }
        let Some(needed) = wanted.predecessor() else {
            return Ok(None);
        };
        let reached = if self.completed {
            self.phase
        } else {
            self.phase.predecessor().unwrap_or(Phase::NotStarted)
        };
        if reached >= needed || wanted <= self.phase {
            return Ok(None);
        }
        let refusal = TransitionRefused::GateNotPassed {
            wanted,
            needed,
            at: self.phase,
            status: if self.completed {
                "completed"
            } else {
                "not completed"
            },
        };
        if force {
            Ok(Some(format!("WARNING: --force-phase: {refusal}")))
        } else {
            Err(refusal)
        }
    }

    /// Rollback returns the proxies to origin; it is refused once the migration is cut over.
    pub fn check_rollback(&self) -> Result<(), TransitionRefused> {
        if self.phase == Phase::Phase5 {
            return Err(TransitionRefused::AfterCutover {
                wanted: Phase::Phase1,
            });
        }
        Ok(())
    }

    /// Records an event and moves the phase accordingly.
    pub fn record(&mut self, entry: HistoryEntry) {
        match entry.event {
            Event::Started => {
                self.phase = entry.phase;
                self.completed = false;
            }
            Event::Completed => {
                self.phase = entry.phase;
                self.completed = true;
            }
            Event::Failed | Event::RollbackStarted => self.completed = false,
            Event::RolledBack => {
                self.phase = entry.phase;
                self.completed = true;
            }
        }
        self.history.push(entry);
    }

    /// The gates of the most recent entry that has any.
    pub fn last_gates(&self) -> &[GateResult] {
        self.history
            .iter()
            .rev()
            .find(|e| !e.gates.is_empty())
            .map(|e| e.gates.as_slice())
            .unwrap_or(&[])
    }
}

/// A history entry stamped with now, this user and this host.
pub fn entry(playbook: &str, phase: Phase, event: Event) -> HistoryEntry {
    HistoryEntry {
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        user: current_user(),
        host: current_host(),
        playbook: playbook.to_string(),
        phase,
        event,
        gates: Vec::new(),
        forced: None,
        note: None,
    }
}

/// The state file of one inventory.
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// The store beside an inventory (a file or a directory).
    pub fn beside_inventory(inventory: &Path) -> StateStore {
        let dir = if inventory.is_dir() {
            inventory.to_path_buf()
        } else {
            inventory
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        };
        StateStore {
            path: dir.join(STATE_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file guarding this state file.
    pub fn lock_path(&self) -> PathBuf {
        self.path.with_file_name(LOCK_FILE)
    }

    /// Who holds the run lock right now, if anyone (for `zdm-run status`); a stale lock of a
    /// dead process on this host is reported as nobody.
    pub fn lock_holder(&self) -> Option<LockOwner> {
        let text = fs::read_to_string(self.lock_path()).ok()?;
        let owner: LockOwner = serde_json::from_str(&text).ok()?;
        (!is_stale(&owner)).then_some(owner)
    }

    /// The recorded state; a missing file is a migration that has not started.
    pub fn load(&self) -> anyhow::Result<MigrationState> {
        match fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: line {}, column {}: {e}",
                    self.path.display(),
                    e.line(),
                    e.column()
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(MigrationState::default()),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", self.path.display())),
        }
    }

    /// Replaces the file atomically; on any failure the previous state stays as it was.
    pub fn save(&self, state: &MigrationState) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(state)? + "\n";
        write_atomically(&self.path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.path.display()))
    }

    /// Takes the inventory's run lock, or says who holds it.
    pub fn lock(&self, playbook: &str) -> Result<RunLock, LockHeld> {
        RunLock::acquire(&self.lock_path(), playbook)
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is.
    File::open(dir)?.sync_all()
}

/// Who holds a lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockOwner {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub playbook: String,
    pub since: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockHeld {
    #[error("another zdm-run holds the migration lock {path}: {} on {} (pid {}) running {} since {}; wait for it to finish (if that process is gone from another machine, remove the lock file)", owner.user, owner.host, owner.pid, owner.playbook, owner.since)]
    Busy { path: String, owner: Box<LockOwner> },
    #[error("cannot take the migration lock {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Held while a run acts on the migration; the lock file goes away on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    fn acquire(path: &Path, playbook: &str) -> Result<RunLock, LockHeld> {
        let me = LockOwner {
            user: current_user(),
            host: current_host(),
            pid: std::process::id(),
            playbook: playbook.to_string(),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let io_err = |source| LockHeld::Io {
            path: path.display().to_string(),
            source,
        };
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let text = serde_json::to_string(&me).expect("lock owner serializes");
                    file.write_all(text.as_bytes())
                        .and_then(|_| file.sync_all())
                        .map_err(io_err)?;
                    return Ok(RunLock {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(path)
                        .ok()
                        .and_then(|t| serde_json::from_str::<LockOwner>(&t).ok());
                    match owner {
                        Some(owner) if !is_stale(&owner) => {
                            return Err(LockHeld::Busy {
                                path: path.display().to_string(),
                                owner: Box::new(owner),
                            })
                        }
                        // Stale (its process is gone) or unreadable (a crash mid-write): take over.
                        _ => {
                            tracing::warn!("removing stale migration lock {}", path.display());
                            fs::remove_file(path).map_err(io_err)?;
                        }
                    }
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(io_err(io::Error::other("the lock kept reappearing")))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A lock is stale when it was taken on this host by a process that no longer runs. A lock
/// from another host is never guessed stale: we cannot see its processes.
fn is_stale(owner: &LockOwner) -> bool {
    owner.host == current_host() && !process_alive(owner.pid)
}

fn process_alive(pid: u32) -> bool {
    // Signal 0 checks existence; EPERM means it exists but belongs to someone else.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }))
}

fn current_host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(phase: Phase, completed: bool) -> MigrationState {
        MigrationState {
            phase,
            completed,
            history: Vec::new(),
        }
    }

    #[test]
    fn phases_must_pass_in_order() {
        let fresh = MigrationState::default();
        assert_eq!(fresh.check_start(Phase::Preflight, false), Ok(None));
        assert!(matches!(
            fresh.check_start(Phase::Phase1, false),
            Err(TransitionRefused::GateNotPassed {
                needed: Phase::Preflight,
                ..
            })
        ));
        assert_eq!(
            at(Phase::Preflight, true).check_start(Phase::Phase1, false),
            Ok(None)
        );
        // Phase 2 started but its gate failed: phase 3 must wait.
        assert!(at(Phase::Phase2, false)
            .check_start(Phase::Phase3, false)
            .is_err());
        assert_eq!(
            at(Phase::Phase2, true).check_start(Phase::Phase3, false),
            Ok(None)
        );
        // Re-running the current or an earlier phase is allowed.
        assert_eq!(
            at(Phase::Phase2, false).check_start(Phase::Phase2, false),
            Ok(None)
        );
        assert_eq!(
            at(Phase::Phase4, true).check_start(Phase::Phase1, false),
            Ok(None)
        );
    }

    #[test]
    fn force_turns_a_refusal_into_a_recorded_warning() {
        let state = at(Phase::Phase1, true);
        let err = state.check_start(Phase::Phase4, false).unwrap_err();
        assert!(
            err.to_string().contains("phase4 needs phase3 completed"),
            "{err}"
        );
        let warning = state.check_start(Phase::Phase4, true).unwrap().unwrap();
        assert!(warning.starts_with("WARNING: --force-phase"), "{warning}");
    }

    #[test]
    fn nothing_goes_back_after_cutover() {
        let state = at(Phase::Phase5, true);
        assert!(state.check_rollback().is_err());
        assert!(matches!(
            state.check_start(Phase::Phase4, true),
            Err(TransitionRefused::AfterCutover { .. })
        ));
        assert!(at(Phase::Phase4, true).check_rollback().is_ok());
    }

    #[test]
    fn state_round_trips_and_a_failed_save_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::beside_inventory(&dir.path().join("hosts.yml"));
        assert_eq!(store.load().unwrap(), MigrationState::default());
        let mut state = MigrationState::default();
        let mut started = entry(
            "playbooks/preflight.yml",
            Phase::Preflight,
            Event::Completed,
        );
        started.gates.push(GateResult {
            name: "schema".into(),
            passed: true,
            measured: "0 differences".into(),
            threshold: "0".into(),
        });
        state.record(started);
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        assert_eq!(state.last_gates()[0].name, "schema");

        // A directory where the temp file would go cannot be written: the old state survives.
        let blocked = StateStore {
            path: dir.path().join("missing-dir").join(STATE_FILE),
        };
        assert!(blocked.save(&state).is_err());
        assert_eq!(store.load().unwrap(), state);
    }

    #[test]
    fn a_corrupt_state_file_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::beside_inventory(dir.path());
        fs::write(store.path(), "{\n  \"phase\": \"phase9\"\n}").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains(STATE_FILE) && err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_second_run_is_refused_with_the_holder_and_a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::beside_inventory(dir.path());
        let held = store.lock("playbooks/phase1.yml").unwrap();
        let refused = store.lock("playbooks/phase2.yml").unwrap_err().to_string();
        assert!(refused.contains("playbooks/phase1.yml"), "{refused}");
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(held);
        assert!(!dir.path().join(LOCK_FILE).exists());

        // A lock left by a process that is gone does not block forever.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let stale = LockOwner {
            user: "someone".into(),
            host: current_host(),
            pid: dead_pid,
            playbook: "playbooks/phase3.yml".into(),
            since: "2026-01-01T00:00:00Z".into(),
        };
        fs::write(
            dir.path().join(LOCK_FILE),
            serde_json::to_string(&stale).unwrap(),
        )
        .unwrap();
        let _taken = store.lock("playbooks/phase3.yml").unwrap();
    }
}
