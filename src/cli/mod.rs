//! The command line: ansible-playbook's flags and exit codes.
//!
//! The default mode runs playbooks (`zdm-run [OPTIONS] PLAYBOOK...`). The parser is set up
//! with `args_conflicts_with_subcommands` so that subcommands (`migrate`, `validate`,
//! `status`) can be added beside it later without changing how playbooks are run.

pub mod data;
pub mod docs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::inventory::Inventory;
use crate::output::{Format, Reporter};
use crate::playbook::Playbook;
use crate::run::{RunOptions, Runner};
use crate::secrets::Redactor;
use crate::template::Templar;
use crate::vars::{yaml_to_json, Vars};

/// ansible-core's exit codes as it actually returns them (2.19's `ExitCode`), which differ
/// from its manual in two places: an unreachable host gives 4 (the manual says 3; 4 is
/// also the parse error, a clash ansible-core itself notes), and a command line the
/// option parser rejects gives 2 (argparse's usage error), not 5.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const HOST_FAILED: u8 = 2;
    pub const HOST_UNREACHABLE: u8 = 4;
    pub const PARSE_ERROR: u8 = 4;
    /// A value zdm-run's own checks refuse (`-e novalue`); ansible's INVALID_CLI_OPTION.
    pub const BAD_OPTIONS: u8 = 5;
    /// The option parser's usage error (unknown flag, bad number), as argparse exits.
    pub const USAGE: u8 = 2;
    pub const INTERRUPTED: u8 = 99;
}

/// Ansible-style orchestrator for zero-downtime Cassandra migrations.
#[derive(Parser, Debug)]
#[command(
    name = "zdm-run",
    version = crate::VERSION,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub playbook: PlaybookArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands beside the default playbook mode.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy origin's rows to target, keeping every cell's writetime and TTL (phase 2 backfill).
    Migrate(data::MigrateArgs),
    /// Compare origin with target: missing, mismatched and extra rows (exit 2 when any remain).
    Validate(data::ValidateArgs),
    /// Show the migration's phase, each proxy's readiness, the last gate results and history.
    Status(crate::migration::status::StatusArgs),
    /// Print a completion script for a shell (bash, zsh, fish, ...) to stdout.
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff) to stdout: `zdm-run man > zdm-run.1`.
    Man,
    /// Serve the migration's phase and last gate results as Prometheus metrics (`/metrics`).
    Metrics(crate::migration::metrics::MetricsArgs),
}

/// Arguments of the default (playbook) mode.
#[derive(Args, Debug)]
pub struct PlaybookArgs {
    /// Playbook(s) to run, in order.
    #[arg(value_name = "PLAYBOOK")]
    pub playbooks: Vec<PathBuf>,

    /// Inventory file or directory, or a host list `h1,h2,` (repeatable) [default:
    /// $ZDMRUN_INVENTORY, else ./inventory].
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    pub inventory: Vec<PathBuf>,

    /// Further limit the selected hosts with a pattern (`zdm-h1:zdm-h2`, `proxies:!zdm-h3`,
    /// `~zdm-h[12]`, `proxies[0:1]`, `@file` with one pattern a line). Matching no host is
    /// an error.
    #[arg(short = 'l', long = "limit", value_name = "SUBSET")]
    pub limit: Option<String>,

    /// Connect as this user (`ansible_user` below every inventory variable).
    #[arg(short = 'u', long = "user", value_name = "REMOTE_USER")]
    pub user: Option<String>,

    /// Connection type, `ssh` or `local` (`ansible_connection` below every inventory
    /// variable).
    #[arg(short = 'c', long = "connection", value_name = "CONNECTION")]
    pub connection: Option<String>,

    /// SSH private key file (`ansible_ssh_private_key_file` below every inventory variable).
    #[arg(long = "private-key", visible_alias = "key-file", value_name = "FILE")]
    pub private_key: Option<PathBuf>,

    /// Run tasks with privilege escalation (`become: true`, below every play and task
    /// keyword).
    #[arg(short = 'b', long = "become")]
    pub r#become: bool,

    /// The user to become (`become_user`, below every play and task keyword).
    #[arg(long = "become-user", value_name = "USER")]
    pub become_user: Option<String>,

    /// Start at the first task whose name is this (or matches it as a `*` glob).
    #[arg(long = "start-at-task", value_name = "NAME")]
    pub start_at_task: Option<String>,

    /// Only run tasks tagged with these (comma-separated, repeatable).
    #[arg(short = 't', long = "tags", value_delimiter = ',')]
    pub tags: Vec<String>,

    /// Skip tasks tagged with these (comma-separated, repeatable).
    #[arg(long = "skip-tags", value_delimiter = ',')]
    pub skip_tags: Vec<String>,

    /// Extra variables: `key=value ...`, a JSON/YAML mapping, or `@file` (repeatable; wins
    /// over every other variable).
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,

    /// Change nothing; show what would change (the plan).
    #[arg(short = 'C', long = "check", visible_alias = "dry-run")]
    pub check: bool,

    /// Show unified diffs of files that change (or would change).
    #[arg(short = 'D', long = "diff")]
    pub diff: bool,

    /// How many hosts to work on at once within a batch.
    #[arg(short = 'f', long = "forks", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,

    /// More output (repeat for more).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Output format.
    #[arg(long = "output", value_enum, default_value = "human")]
    pub output: Format,

    /// List the hosts each play would run on, then exit.
    #[arg(long = "list-hosts")]
    pub list_hosts: bool,

    /// List the tasks each play would run, then exit.
    #[arg(long = "list-tasks")]
    pub list_tasks: bool,

    /// Only check the playbook(s) and inventory, then exit.
    #[arg(long = "syntax-check")]
    pub syntax_check: bool,

    /// Let a phase start although the previous one has not completed with its gate passed
    /// (same as `-e zdm_force_phase=true`). Loudly warned about and recorded in the history.
    #[arg(long = "force-phase")]
    pub force_phase: bool,
}

/// Parses `-e` values: `@file`, a JSON/YAML mapping, or `k=v` words.
pub fn parse_extra_vars(items: &[String]) -> Result<Vars, String> {
    let mut out = Vars::new();
    for item in items {
        let item = item.trim();
        let parsed: Vars = if let Some(file) = item.strip_prefix('@') {
            let text = std::fs::read_to_string(file).map_err(|e| format!("-e @{file}: {e}"))?;
            mapping(&text).map_err(|e| format!("-e @{file}: {e}"))?
        } else if item.starts_with('{') {
            mapping(item).map_err(|e| format!("-e '{item}': {e}"))?
        } else {
            let mut m = Vars::new();
            // Shell-style words, as ansible-playbook reads them: `k='a b'` is one value.
            let words =
                shlex::split(item).ok_or_else(|| format!("-e '{item}': unbalanced quotes"))?;
            for word in &words {
                let (k, v) = word
                    .split_once('=')
                    .ok_or_else(|| format!("-e '{word}': expected key=value, JSON, or @file"))?;
                if k.is_empty() {
                    return Err(format!("-e '{word}': empty variable name"));
                }
                m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            m
        };
        crate::vars::overlay(&mut out, &parsed);
    }
    Ok(out)
}

fn mapping(text: &str) -> Result<Vars, String> {
    let y: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&crate::yaml11::normalize(text)).map_err(|e| e.to_string())?;
    match yaml_to_json(&y) {
        serde_json::Value::Object(m) => Ok(m),
        serde_json::Value::Null => Ok(Vars::new()),
        _ => Err("must be a mapping of variables".into()),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.playbook.verbose);
    match cli.command {
        None => ExitCode::from(run_playbooks(cli.playbook)),
        Some(Command::Status(args)) => ExitCode::from(match crate::migration::status::run(args) {
            Ok(code) => code,
            Err(e) => {
                error(&format!("{e:#}"));
                exit::ERROR
            }
        }),
        Some(Command::Completions(args)) => ExitCode::from(docs::completions(&args)),
        Some(Command::Man) => ExitCode::from(docs::man()),
        Some(Command::Metrics(args)) => {
            ExitCode::from(match crate::migration::metrics::run(args) {
                Ok(code) => code,
                Err(e) => {
                    error(&format!("{e:#}"));
                    exit::ERROR
                }
            })
        }
        Some(command) => ExitCode::from(run_subcommand(command)),
    }
}

/// Runs a subcommand on its own runtime; its own code decides the exit code.
fn run_subcommand(command: Command) -> u8 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            error(&format!("cannot start the async runtime: {e}"));
            return exit::ERROR;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Migrate(args) => data::run_migrate(args).await,
            Command::Validate(args) => data::run_validate(args).await,
            Command::Status(_) | Command::Completions(_) | Command::Man | Command::Metrics(_) => {
                unreachable!("runs on its own, without a runtime")
            }
        }
    });
    match result {
        Ok(code) => u8::try_from(code).unwrap_or(exit::ERROR),
        Err(e) => {
            error(&format!("{e:#}"));
            exit::ERROR
        }
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = crate::own_env::var("LOG")
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(format!("zdm_run={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::output::LogWriter)
        .try_init();
}

fn error(msg: &str) {
    eprintln!("ERROR: {msg}");
}

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

/// Everything loaded and checked before the first task runs.
struct Prepared {
    extra: Vars,
    inventory: Inventory,
    books: Vec<Playbook>,
    templar: Templar,
}

/// Loads options, inventory and playbooks; an error carries its exit code.
fn prepare(args: &PlaybookArgs) -> Result<Prepared, (u8, String)> {
    if args.playbooks.is_empty() {
        return Err((
            exit::BAD_OPTIONS,
            "no playbook given (usage: zdm-run [OPTIONS] PLAYBOOK...)".into(),
        ));
    }
    let extra = parse_extra_vars(&args.extra_vars).map_err(|e| (exit::BAD_OPTIONS, e))?;
    let parse_err = |e: String| (exit::PARSE_ERROR, e);
    let mut inventory =
        Inventory::load_all(&args.inventory).map_err(|e| parse_err(e.to_string()))?;
    inventory.defaults = connection_defaults(args);
    for p in &args.playbooks {
        if !p.exists() {
            return Err((exit::ERROR, missing_playbook(p)));
        }
    }
    let mut books = Vec::new();
    for p in &args.playbooks {
        books.push(Playbook::load(p).map_err(|e| parse_err(e.to_string()))?);
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        inventory
            .add_vars_dir(dir)
            .map_err(|e| parse_err(e.to_string()))?;
    }
    let templar = Templar::new();
    for b in &books {
        crate::playbook::preflight(b, &templar).map_err(|e| parse_err(e.to_string()))?;
    }
    Ok(Prepared {
        extra,
        inventory,
        books,
        templar,
    })
}

/// The message for a playbook that does not exist. A bare word (no `/`, no extension) was
/// most likely meant as a subcommand (`zdm-run valdate`): the commands are listed, with the
/// closest one.
fn missing_playbook(p: &std::path::Path) -> String {
    let word = p.display().to_string();
    let mut msg = format!("the playbook: {word} could not be found");
    if word.contains('/') || p.extension().is_some() {
        return msg;
    }
    use clap::CommandFactory;
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    msg.push_str(&format!(
        "; '{word}' is no command either (commands: {})",
        names.join(", ")
    ));
    let closest = names
        .iter()
        .map(|n| (crate::edit_distance::edit_distance(&word, n), n))
        .min()
        .filter(|(d, n)| *d <= n.len() / 2);
    if let Some((_, n)) = closest {
        msg.push_str(&format!("; did you mean '{n}'?"));
    }
    msg
}

/// `-u`, `-c` and `--private-key` as connection variables below every inventory variable.
fn connection_defaults(args: &PlaybookArgs) -> Vars {
    let mut out = Vars::new();
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.insert(k.into(), serde_json::Value::String(v));
        }
    };
    set("ansible_user", args.user.clone());
    set("ansible_connection", args.connection.clone());
    set(
        "ansible_ssh_private_key_file",
        args.private_key.as_ref().map(|p| p.display().to_string()),
    );
    out
}

/// The `--limit` pattern: `@file` is read (one pattern a line, as Ansible's retry files).
fn limit_pattern(limit: &str) -> Result<String, String> {
    let Some(file) = limit.strip_prefix('@') else {
        return Ok(limit.to_string());
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("--limit @{file}: cannot read: {e}"))?;
    let terms: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if terms.is_empty() {
        return Err(format!("--limit @{file}: the file names no host"));
    }
    Ok(terms.join(","))
}

/// Checks `--limit` before anything runs: a limit that selects no host of the inventory is
/// an error (as ansible-playbook's "leaves us with no hosts to target"), so a typo in `-l`
/// cannot run nothing and report success. Terms that match nothing are warned about.
fn check_limit(inventory: &Inventory, limit: &str) -> Result<(), (u8, String)> {
    crate::inventory::check_pattern(limit).map_err(|e| (exit::ERROR, format!("--limit: {e}")))?;
    for t in crate::inventory::unknown_terms(inventory, limit) {
        eprintln!("[WARNING]: Could not match supplied host pattern, ignoring: {t}");
    }
    let hosts = crate::inventory::select_hosts(inventory, limit)
        .map_err(|e| (exit::ERROR, format!("--limit: {e}")))?;
    if hosts.is_empty() {
        return Err((
            exit::ERROR,
            format!(
                "--limit '{limit}': specified inventory, host pattern and/or --limit leaves us \
                 with no hosts to target"
            ),
        ));
    }
    Ok(())
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

/// `--list-hosts` / `--list-tasks`, formatted like ansible-playbook, or as one JSON
/// document with `--output json` (machines reading stdout always get JSON).
fn list(
    args: &PlaybookArgs,
    inventory: &Inventory,
    books: &[Playbook],
    opts: &RunOptions,
    templar: &Templar,
    redactor: &Redactor,
) -> u8 {
    let reporter = Reporter::new(Format::Human, false, 0, false, redactor.clone());
    let mut doc = Vec::new();
    for book in books {
        let runner = Runner::new(inventory, book, opts, templar, redactor, &reporter);
        let mut plays = Vec::new();
        for play in &book.plays {
            let mut entry = serde_json::json!({"name": play.name, "pattern": play.hosts});
            if args.list_hosts {
                match runner.play_hosts(play) {
                    Ok(hosts) => entry["hosts"] = serde_json::json!(hosts),
                    Err(e) => {
                        let msg = redactor.redact(&e.to_string());
                        return fail_with_json(
                            args,
                            exit::PARSE_ERROR,
                            &msg,
                            serde_json::json!({}),
                        );
                    }
                }
            }
            if args.list_tasks {
                let tasks: Vec<serde_json::Value> = play
                    .all_tasks(false)
                    .into_iter()
                    .filter(|t| runner.tags_select(t))
                    .map(|t| serde_json::json!({"name": t.display_name(), "tags": t.tags}))
                    .collect();
                entry["tasks"] = serde_json::Value::Array(tasks);
            }
            plays.push(entry);
        }
        doc.push(serde_json::json!({"playbook": book.path.display().to_string(), "plays": plays}));
    }
    match args.output {
        Format::Json => {
            let out = serde_json::json!({"playbooks": doc});
            println!(
                "{}",
                redactor.redact(&serde_json::to_string_pretty(&out).unwrap_or_default())
            );
        }
        Format::Human => print_list(&doc),
    }
    exit::OK
}

/// The human form of [`list`]'s document, laid out as ansible-playbook prints it.
fn print_list(doc: &[serde_json::Value]) {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    for book in doc {
        println!("\nplaybook: {}", s(&book["playbook"]));
        for (i, play) in book["plays"].as_array().into_iter().flatten().enumerate() {
            println!(
                "\n  play #{} ({}): {}",
                i + 1,
                s(&play["pattern"]),
                s(&play["name"])
            );
            if let Some(hosts) = play["hosts"].as_array() {
                println!("    pattern: ['{}']", s(&play["pattern"]));
                println!("    hosts ({}):", hosts.len());
                for h in hosts {
                    println!("      {}", s(h));
                }
            }
            if let Some(tasks) = play["tasks"].as_array() {
                println!("    tasks:");
                for t in tasks {
                    let tags: Vec<String> =
                        t["tags"].as_array().into_iter().flatten().map(&s).collect();
                    println!("      {}\tTAGS: [{}]", s(&t["name"]), tags.join(", "));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn extra_vars_accept_pairs_json_and_files_later_ones_winning() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vars.yml");
        std::fs::write(&f, "from_file: 1\nshared: file\n").unwrap();
        let v = parse_extra_vars(&[
            "a=1 b=two".into(),
            r#"{"c": [1, 2], "shared": "json"}"#.into(),
            format!("@{}", f.display()),
        ])
        .unwrap();
        assert_eq!(v["a"], json!("1"));
        assert_eq!(v["b"], json!("two"));
        assert_eq!(v["c"], json!([1, 2]));
        assert_eq!(v["from_file"], json!(1));
        assert_eq!(v["shared"], json!("file"));
        assert!(parse_extra_vars(&["novalue".into()]).is_err());
        assert!(parse_extra_vars(&["=x".into()]).is_err());
        assert!(parse_extra_vars(&["@/no/such/file".into()]).is_err());
        assert!(parse_extra_vars(&["[1, 2]".into()]).is_err());
    }

    #[test]
    fn extra_vars_words_honour_shell_quotes_like_ansible() {
        let v =
            parse_extra_vars(&["k='a b' plain=x dq=\"c  d\" esc=e\\ f empty=''".into()]).unwrap();
        assert_eq!(v["k"], json!("a b"));
        assert_eq!(v["plain"], json!("x"));
        assert_eq!(v["dq"], json!("c  d"));
        assert_eq!(v["esc"], json!("e f"));
        assert_eq!(v["empty"], json!(""));
        let e = parse_extra_vars(&["k='unterminated".into()]).unwrap_err();
        assert!(e.contains("unbalanced quotes"), "{e}");
    }
}
