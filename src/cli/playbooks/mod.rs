//! The default mode, `zdm-run [OPTIONS] PLAYBOOK...`: load and check everything, then run the
//! playbooks in order on one runtime, holding the migration's run lock when a playbook touches
//! migration state, and return ansible-playbook's exit code.
//!
//! `args` holds the flags, `extra_vars` reads `-e`, `prepare` loads the inventory and
//! playbooks, `limit` checks `--limit`, `list` answers `--list-hosts`/`--list-tasks`,
//! `migration_state` holds the run lock and records the phase; this file runs the playbooks.

mod args;
mod extra_vars;
mod limit;
mod list;
mod migration_state;
mod prepare;

pub use args::PlaybookArgs;
pub use extra_vars::parse_extra_vars;
use limit::{check_limit, limit_pattern};
use list::list;
use prepare::{prepare, Prepared};

use super::{error, exit};
use crate::inventory::Inventory;
use crate::migration::run::MigrationRun;
use crate::output::{Format, Reporter};
use crate::playbook::Playbook;
use crate::run::{RunError, RunOptions, Runner};
use crate::secrets::Redactor;
use crate::template::Templar;
use crate::vars::Vars;

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
    let limit = match args.limit.as_deref().map(limit_pattern).transpose() {
        Ok(l) => l,
        Err(msg) => return refuse_run(&args, exit::ERROR, &msg),
    };
    if let Some(l) = &limit {
        if let Err((code, msg)) = check_limit(&inventory, l) {
            return refuse_run(&args, code, &msg);
        }
    }
    let opts = run_options(&args, extra, limit);
    // The template engine's filters report re-encoded secrets to this same set.
    let redactor = templar.redactor();
    crate::output::redact_logs_with(&redactor);
    redactor.add_from_vars(&opts.extra_vars);
    if let Some(want) = &opts.start_at_task {
        if !names_a_task(&books, want) {
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
    let migration = match migration_state::open(&args, &inventory, &books) {
        Ok(m) => m,
        Err(msg) => return refuse_run(&args, exit::ERROR, &msg),
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
        let work = run_books(
            &books,
            &inventory,
            &opts,
            &templar,
            &redactor,
            &reporter,
            migration.as_deref(),
        );
        tokio::select! {
            r = work => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // Dropping the runtime kills child processes (kill_on_drop) of interrupted tasks.
    drop(rt);
    if let Some(m) = migration {
        if let Err(code) = migration_state::finish(m, &reporter, result.is_none()) {
            return code;
        }
    }
    end_of_run(result, &reporter, &redactor)
}

/// The run's options from the flags, `-e` and the checked `--limit`.
fn run_options(args: &PlaybookArgs, mut extra: Vars, limit: Option<String>) -> RunOptions {
    if args.force_phase {
        extra.insert("zdm_force_phase".into(), serde_json::Value::Bool(true));
    }
    RunOptions {
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
    }
}

/// Whether `--start-at-task` names a task the playbooks list (by name or as a `*` glob), checked
/// before anything runs; [`run_books`] looks again, inside includes too.
fn names_a_task(books: &[Playbook], want: &str) -> bool {
    books.iter().flat_map(|b| &b.plays).any(|p| {
        p.all_tasks(false)
            .into_iter()
            .any(|t| t.display_name() == *want || crate::inventory::glob(want, &t.display_name()))
    })
}

/// Runs the playbooks in order; `--start-at-task` carries over from one playbook to the next.
async fn run_books(
    books: &[Playbook],
    inventory: &Inventory,
    opts: &RunOptions,
    templar: &Templar,
    redactor: &Redactor,
    reporter: &Reporter,
    migration: Option<&MigrationRun>,
) -> Result<(), RunError> {
    let mut started = opts.start_at_task.is_none();
    for book in books {
        if let Some(m) = migration {
            m.set_playbook(&book.path.display().to_string());
        }
        let mut runner = Runner::new(inventory, book, opts, templar, redactor, reporter);
        runner.started = started;
        runner.run().await?;
        started = runner.started;
    }
    if !started {
        return Err(RunError(format!(
            "--start-at-task: no task named '{}' found (a task inside an \
             include_tasks/import_tasks counts too)",
            opts.start_at_task.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Ends the report of a run that started (`None`: interrupted) and returns its exit code:
/// a failed host outranks an unreachable one, as in ansible-playbook.
fn end_of_run(
    result: Option<Result<(), RunError>>,
    reporter: &Reporter,
    redactor: &Redactor,
) -> u8 {
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
