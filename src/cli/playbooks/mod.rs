//! The default mode, `zdm-run [OPTIONS] PLAYBOOK...`: load and check everything, then run the
//! playbooks in order on one runtime, holding the migration's run lock when a playbook touches
//! migration state, and return ansible-playbook's exit code.
//!
//! `args` holds the flags, `extra_vars` reads `-e`, `prepare` loads the inventory and
//! playbooks, `limit` checks `--limit`, `list` answers `--list-hosts`/`--list-tasks`; this
//! file runs the playbooks.

mod args;
mod extra_vars;
mod limit;
mod list;
mod prepare;

pub use args::PlaybookArgs;
pub use extra_vars::parse_extra_vars;
use limit::{check_limit, limit_pattern};
use list::list;
use prepare::{prepare, Prepared};

use super::{error, exit};
use crate::output::{Format, Reporter};
use crate::playbook::Playbook;
use crate::run::{RunOptions, Runner};

/// Reports an error that ends the run and returns `code`. With `--output json`, stdout still
/// gets one JSON document (machines reading it never find it empty): `doc` plus the error and
/// the exit code.
fn fail_with_json(args: &PlaybookArgs, code: u8, msg: &str, mut doc: serde_json::Value) -> u8 {
    error(msg);
    if args.output == Format::Json {
        doc["error"] = msg.into();
        doc["exit_code"] = code.into();
        println!("{doc}");
    }
    code
}

/// An error before any play ran: the JSON document has the run's shape, with no plays.
fn refuse_run(args: &PlaybookArgs, code: u8, msg: &str) -> u8 {
    fail_with_json(
        args,
        code,
        msg,
        serde_json::json!({"plays": [], "stats": {}}),
    )
}

/// Runs the playbook mode and returns the exit code.
pub fn run_playbooks(args: PlaybookArgs) -> u8 {
    let Prepared {
        extra,
        inventory,
        books,
        templar,
    } = match prepare(&args) {
        Ok(p) => p,
        Err((code, msg)) => return refuse_run(&args, code, &msg),
    };
    if args.syntax_check {
        for p in &args.playbooks {
            println!("playbook: {}", p.display());
        }
        return exit::OK;
    }
    let mut extra = extra;
    if args.force_phase {
        extra.insert("zdm_force_phase".into(), serde_json::Value::Bool(true));
    }
    let limit = match args.limit.as_deref().map(limit_pattern).transpose() {
        Ok(l) => l,
        Err(msg) => return refuse_run(&args, exit::ERROR, &msg),
    };
    if let Some(l) = &limit {
        if let Err((code, msg)) = check_limit(&inventory, l) {
            return refuse_run(&args, code, &msg);
        }
    }
    let opts = RunOptions {
        check: args.check,
        diff: args.diff,
        forks: args.forks as usize,
        limit,
        escalation: crate::playbook::Escalation {
            enabled: args.r#become.then_some(serde_json::Value::Bool(true)),
            user: args.become_user.clone(),
            method: None,
        },
        start_at_task: args.start_at_task.clone(),
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
        extra_vars: extra,
    };
    // The template engine's filters report re-encoded secrets to this same set.
    let redactor = templar.redactor();
    crate::output::redact_logs_with(&redactor);
    redactor.add_from_vars(&opts.extra_vars);
    if let Some(want) = &opts.start_at_task {
        let found = books.iter().flat_map(|b| &b.plays).any(|p| {
            p.all_tasks(false).into_iter().any(|t| {
                t.display_name() == *want || crate::inventory::glob(want, &t.display_name())
            })
        });
        if !found {
            let msg = format!("--start-at-task: no task named '{want}' found");
            return refuse_run(&args, exit::ERROR, &msg);
        }
    }
    if args.list_hosts || args.list_tasks {
        return list(&args, &inventory, &books, &opts, &templar, &redactor);
    }
    let quiet = Reporter::new(Format::Human, false, 0, false, redactor.clone());
    for book in &books {
        let runner = Runner::new(&inventory, book, &opts, &templar, &redactor, &quiet);
        if let Err(e) = runner.check_play_hosts() {
            return refuse_run(&args, exit::ERROR, &e.to_string());
        }
    }
    let migration = if books.iter().any(touches_migration_state) {
        let first = args.playbooks[0].display().to_string();
        match crate::migration::run::MigrationRun::open(
            inventory.source.as_deref(),
            &first,
            args.check,
        ) {
            Ok(run) => Some(crate::migration::run::install(run)),
            Err(e) => return refuse_run(&args, exit::ERROR, &e.to_string()),
        }
    } else {
        None
    };
    let reporter = Reporter::new(
        args.output,
        args.diff,
        args.verbose,
        args.check,
        redactor.clone(),
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error(&format!("cannot start the async runtime: {e}"));
            let _ = crate::migration::run::finish();
            return exit::ERROR;
        }
    };
    let result = rt.block_on(async {
        let work = async {
            let mut started = opts.start_at_task.is_none();
            for book in &books {
                if let Some(m) = &migration {
                    m.set_playbook(&book.path.display().to_string());
                }
                let mut runner =
                    Runner::new(&inventory, book, &opts, &templar, &redactor, &reporter);
                runner.started = started;
                runner.run().await?;
                started = runner.started;
            }
            if !started {
                return Err(crate::run::RunError(format!(
                    "--start-at-task: no task named '{}' found (a task inside an \
                     include_tasks/import_tasks counts too)",
                    opts.start_at_task.as_deref().unwrap_or_default()
                )));
            }
            Ok::<(), crate::run::RunError>(())
        };
        tokio::select! {
            r = work => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // Dropping the runtime kills child processes (kill_on_drop) of interrupted tasks.
    drop(rt);
    if let Some(m) = migration {
        // The phase's summary, before an unfinished transition is recorded as failed.
        if result.is_some() {
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
                reporter.finish(result.is_none(), Some(&msg));
                return exit::ERROR;
            }
        }
    }
    match result {
        None => {
            reporter.finish(true, Some("interrupted"));
            exit::INTERRUPTED
        }
        Some(Err(e)) => {
            let msg = redactor.redact(&e.to_string());
            error(&msg);
            reporter.finish(false, Some(&msg));
            exit::ERROR
        }
        Some(Ok(())) => {
            reporter.finish(false, None);
            let recap = reporter.recap();
            if recap.any_failed() {
                exit::HOST_FAILED
            } else if recap.any_unreachable() {
                exit::HOST_UNREACHABLE
            } else {
                exit::OK
            }
        }
    }
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
