//! The migration's side of a playbook run: a run that touches migration state holds the
//! inventory's run lock from before the first task to after the recap, and ends by printing
//! the phase's summary and recording a transition it left unfinished.

use std::sync::Arc;

use super::args::PlaybookArgs;
use crate::cli::{error, exit};
use crate::inventory::Inventory;
use crate::migration::run::MigrationRun;
use crate::output::Reporter;
use crate::playbook::Playbook;

/// Installs the process's migration run (taking the run lock) when a playbook touches
/// migration state; `Err` is the message of a refusal (the lock is held elsewhere).
pub(super) fn open(
    args: &PlaybookArgs,
    inventory: &Inventory,
    books: &[Playbook],
) -> Result<Option<Arc<MigrationRun>>, String> {
    if !books.iter().any(touches_migration_state) {
        return Ok(None);
    }
    let first = args.playbooks[0].display().to_string();
    match MigrationRun::open(inventory.source.as_deref(), &first, args.check) {
        Ok(run) => Ok(Some(crate::migration::run::install(run))),
        Err(e) => Err(e.to_string()),
    }
}

/// After the run: the phase's summary (unless interrupted) and the run's warnings, then the
/// record of a transition left unfinished, which releases the run lock. `Err` is the exit code
/// when the state could not be recorded (the report already ended).
pub(super) fn finish(
    m: Arc<MigrationRun>,
    reporter: &Reporter,
    interrupted: bool,
) -> Result<(), u8> {
    // The phase's summary, before an unfinished transition is recorded as failed.
    if !interrupted {
        let hosts = reporter.recap().hosts.into_keys().collect();
        if let Some((title, lines)) =
            crate::migration::phase_summary::for_run(&m, &reporter.changes(), hosts)
        {
            reporter.summary(&title, &lines);
        }
    }
    for w in m.warnings() {
        reporter.warn(&w);
    }
    drop(m);
    // Records a transition left unfinished and releases the run lock.
    match crate::migration::run::finish() {
        Ok(Some(note)) => reporter.warn(&note),
        Ok(None) => {}
        Err(e) => {
            let msg = format!("cannot record the migration state: {e:#}");
            error(&msg);
            reporter.finish(interrupted, Some(&msg));
            return Err(exit::ERROR);
        }
    }
    Ok(())
}

/// Whether a run of this playbook must hold the inventory's run lock for its whole duration:
/// it records migration state (has `zdm_phase` tasks), keeps a data-engine checkpoint beside
/// it (`zdm_migrate`, `zdm_validate`: two runs must not write one checkpoint, and the
/// checkpoint must be the one `zdm-run migrate|validate -i` resumes), or a play asks for the
/// lock with `vars: {zdm_lock: true}` (a rolling restart must not interleave with a phase run
/// either).
fn touches_migration_state(book: &Playbook) -> bool {
    book.plays.iter().any(|play| {
        play.vars.get("zdm_lock").is_some_and(crate::vars::truthy)
            || play.all_tasks(true).into_iter().any(|t| {
                matches!(
                    t.module
                        .strip_prefix("ansible.builtin.")
                        .unwrap_or(&t.module),
                    "zdm_phase" | "zdm_migrate" | "zdm_validate"
                )
            })
    })
}
