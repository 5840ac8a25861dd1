//! The migration as seen by one `zdm-run` process: which state file it acts on, the run lock it
//! holds, the transition it started, and the gate results measured since.
//!
//! WHY process-wide: the run lock must be held from the start of a run that touches the
//! migration state until the process exits, whatever task fails in between, so the lock's
//! natural owner is the process. The command line installs one [`MigrationRun`] before the
//! first play when a playbook contains `zdm_phase` tasks and calls [`finish`] at exit; the
//! `zdm_phase` module and the gate modules reach it through [`current`]. Without an installed
//! run (a library user driving the runner directly) gates still work, nothing is recorded, and
//! `zdm_phase` refuses with a message saying why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::gates::Check;
use crate::migration::state::{entry, Event, GateResult, LockHeld, Phase, RunLock, StateStore};

/// The transition this run started with `zdm_phase start` (or `rollback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub phase: Phase,
    pub rollback: bool,
    /// `complete` or `fail` was recorded: nothing is left to record at exit.
    pub finished: bool,
}

#[derive(Default)]
struct Inner {
    playbook: String,
    transition: Option<Transition>,
    /// The transition a check-mode run would start (nothing is recorded, so `transition`
    /// stays empty): what the phase summary of a `--check` run is about.
    planned: Option<Transition>,
    /// Gate results since the transition started (or since the run began).
    gates: Vec<GateResult>,
    /// `--force-phase` warnings issued by this run, repeated at the end of the output.
    warnings: Vec<String>,
}

/// One process's handle on a migration's state.
pub struct MigrationRun {
    store: StateStore,
    check: bool,
    _lock: Option<RunLock>,
    inner: Mutex<Inner>,
    /// Serializes read-decide-write of the state file by tasks of this run.
    recording: Mutex<()>,
}

static CURRENT: Mutex<Option<Arc<MigrationRun>>> = Mutex::new(None);

/// Directory name of the data engine's checkpoints and reports, beside the state file (and, with
/// no state file, in the working directory).
pub const DATA_DIR: &str = ".zdm-state";

fn data_dir_of(store: &StateStore) -> PathBuf {
    store.path().with_file_name(DATA_DIR)
}

/// Where the data engine keeps checkpoints and reports for the migration of `inventory` (a
/// file or directory): beside its state file. The playbook modules (`zdm_migrate`,
/// `zdm_validate`) and `zdm-run migrate|validate -i INVENTORY` all use this directory, so
/// either can resume a backfill the other was interrupted in.
pub fn data_dir_beside(inventory: &Path) -> PathBuf {
    data_dir_of(&StateStore::beside_inventory(inventory))
}

impl MigrationRun {
    /// Opens the state beside `inventory` (a file or directory; `.` when the run has none) and,
    /// unless in check mode (which changes nothing), takes its run lock.
    pub fn open(inventory: Option<&Path>, playbook: &str, check: bool) -> Result<Self, LockHeld> {
        let store = StateStore::beside_inventory(inventory.unwrap_or(Path::new(".")));
        let lock = if check {
            None
        } else {
            Some(store.lock(playbook)?)
        };
        Ok(MigrationRun {
            store,
            check,
            _lock: lock,
            inner: Mutex::new(Inner {
                playbook: playbook.to_string(),
                ..Default::default()
            }),
            recording: Mutex::new(()),
        })
    }

    /// Held while a task reads, decides on and writes the state file.
    pub fn serialize(&self) -> MutexGuard<'_, ()> {
        self.recording.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn check_mode(&self) -> bool {
        self.check
    }

    /// Where the data engine keeps its checkpoints and reports for this migration.
    pub fn data_dir(&self) -> PathBuf {
        data_dir_of(&self.store)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner inconsistent (plain pushes).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The playbook now running (history entries name it).
    pub fn set_playbook(&self, playbook: &str) {
        self.inner().playbook = playbook.to_string();
    }

    pub fn playbook(&self) -> String {
        self.inner().playbook.clone()
    }

    pub fn transition(&self) -> Option<Transition> {
        self.inner().transition
    }

    /// Notes the transition a check-mode run would start, so its summary can say what the
    /// phase would change; it records nothing and changes no other behaviour.
    pub fn plan_begin(&self, phase: Phase, rollback: bool) {
        self.inner().planned = Some(Transition {
            phase,
            rollback,
            finished: false,
        });
    }

    /// The transition this run started or, in check mode, would start.
    pub fn started_or_planned(&self) -> Option<Transition> {
        let inner = self.inner();
        inner.transition.or(inner.planned)
    }

    /// A transition starts: gates measured before it do not count for it.
    pub fn begin(&self, phase: Phase, rollback: bool, forced: Option<String>) {
        let mut inner = self.inner();
        inner.transition = Some(Transition {
            phase,
            rollback,
            finished: false,
        });
        inner.gates.clear();
        inner.warnings.extend(forced);
    }

    pub fn mark_finished(&self) {
        if let Some(t) = self.inner().transition.as_mut() {
            t.finished = true;
        }
    }

    /// Keeps a gate's latest verdict: a gate measured again (a task retried with `until` while
    /// the fleet warms up) replaces its earlier checks, so the phase is judged on the fleet as
    /// it is now. A failed gate still stops the play unless a task ignores its failure.
    pub fn add_gates(&self, gate: &str, checks: &[Check]) {
        let mut inner = self.inner();
        let prefix = format!("{gate}: ");
        inner.gates.retain(|g| !g.name.starts_with(&prefix));
        for c in checks {
            let mut r = GateResult::from(c);
            r.name = format!("{gate}: {}", r.name);
            inner.gates.push(r);
        }
    }

    pub fn gates(&self) -> Vec<GateResult> {
        self.inner().gates.clone()
    }

    pub fn warnings(&self) -> Vec<String> {
        self.inner().warnings.clone()
    }

    /// Records that the run ended with its transition neither completed nor failed (a task
    /// failed and the play stopped, or the run was interrupted), with the gates measured.
    fn record_unfinished(&self) -> anyhow::Result<Option<String>> {
        let (transition, gates, playbook) = {
            let inner = self.inner();
            (
                inner.transition,
                inner.gates.clone(),
                inner.playbook.clone(),
            )
        };
        let Some(t) = transition.filter(|t| !t.finished && !self.check) else {
            return Ok(None);
        };
        let mut state = self.store.load()?;
        let mut e = entry(&playbook, t.phase, Event::Failed);
        let what = if t.rollback {
            "the rollback".to_string()
        } else {
            t.phase.to_string()
        };
        let note = format!(
            "the run ended before {what} completed (a task or gate failed, or the run was interrupted)"
        );
        e.note = Some(note.clone());
        e.gates = gates;
        state.record(e);
        self.store.save(&state)?;
        self.mark_finished();
        Ok(Some(format!(
            "{note}; recorded in {}",
            self.store.path().display()
        )))
    }
}

/// Makes `run` the process's migration run.
pub fn install(run: MigrationRun) -> Arc<MigrationRun> {
    let run = Arc::new(run);
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(run.clone());
    run
}

/// The process's migration run, when one is installed.
pub fn current() -> Option<Arc<MigrationRun>> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Hands a gate's checks to the run (a no-op when no run is installed).
pub fn record_gate(gate: &str, checks: &[Check]) {
    if let Some(run) = current() {
        run.add_gates(gate, checks);
    }
}

/// Ends the run: records an unfinished transition as failed, then releases the lock. Returns
/// what was recorded, for the operator.
pub fn finish() -> anyhow::Result<Option<String>> {
    let run = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).take();
    match run {
        // Dropping the last Arc drops the RunLock, removing the lock file.
        Some(run) => run.record_unfinished(),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, passed: bool) -> Check {
        Check {
            name: name.into(),
            passed,
            measured: String::new(),
            threshold: String::new(),
        }
    }

    #[test]
    fn a_gate_measured_again_replaces_its_earlier_verdict_and_a_start_clears_all() {
        let dir = tempfile::tempdir().unwrap();
        let run = MigrationRun::open(Some(dir.path()), "p.yml", true).unwrap();
        run.add_gates("preflight", &[check("schemas", true)]);
        run.add_gates("health", &[check("failed writes", false)]);
        run.add_gates(
            "health",
            &[check("failed writes", true), check("p1 ready", true)],
        );
        let names: Vec<(String, bool)> = run
            .gates()
            .into_iter()
            .map(|g| (g.name, g.passed))
            .collect();
        assert_eq!(
            names,
            [
                ("preflight: schemas".to_string(), true),
                ("health: failed writes".to_string(), true),
                ("health: p1 ready".to_string(), true)
            ]
        );
        run.begin(Phase::Phase1, false, None);
        assert!(run.gates().is_empty());
        assert!(
            !dir.path().join(crate::migration::state::LOCK_FILE).exists(),
            "check mode takes no lock"
        );
    }
}
