//! The command line: ansible-playbook's flags and exit codes, and zdm-run's subcommands.
//!
//! The default mode runs playbooks (`zdm-run [OPTIONS] PLAYBOOK...`). The parser is set up
//! with `args_conflicts_with_subcommands` so that the subcommands (`migrate`, `validate`,
//! `status`, ...) sit beside it without changing how playbooks are run. This file declares the
//! parser and hands each mode to its front end:
//!
//! - `playbooks/`: the default mode: its flags, `-e`, loading, `--limit`, `--list-*`, the run;
//! - `data/`: `migrate` and `validate`, the data engine's front end;
//! - `docs.rs`: `completions` and `man`, generated from the parser;
//! - `exit.rs`: the exit codes, ansible-core's;
//! - `status` and `metrics` are served by the migration domain (`crate::migration`).

pub mod data;
pub mod docs;
pub mod exit;
mod playbooks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use playbooks::{parse_extra_vars, run_playbooks, PlaybookArgs};

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
    ExitCode::from(match cli.command {
        None => run_playbooks(cli.playbook),
        Some(Command::Status(args)) => exit_code(crate::migration::status::run(args)),
        Some(Command::Completions(args)) => docs::completions(&args),
        Some(Command::Man) => docs::man(),
        Some(Command::Metrics(args)) => exit_code(crate::migration::metrics::run(args)),
        Some(command) => run_subcommand(command),
    })
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
    exit_code(result)
}

/// The exit code a subcommand decided (one that fits no exit status is an error), or, when it
/// failed, ERROR after saying why.
fn exit_code<C: TryInto<u8>>(result: anyhow::Result<C>) -> u8 {
    match result {
        Ok(code) => code.try_into().unwrap_or(exit::ERROR),
        Err(e) => {
            error(&format!("{e:#}"));
            exit::ERROR
        }
    }
}

/// Log lines at `-v`'s level (`ZDMRUN_LOG` overrides it), written through the output's
/// writer so they are masked and never tear a progress bar.
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

/// An error that ends the command, on stderr as ansible-playbook prints one.
fn error(msg: &str) {
    eprintln!("ERROR: {msg}");
}
