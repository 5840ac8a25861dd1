//! The command line: ansible-playbook's flags and exit codes.
//!
//! The default mode runs playbooks (`zdm-run [OPTIONS] PLAYBOOK...`). The parser is set up
//! with `args_conflicts_with_subcommands` so that subcommands (`migrate`, `validate`,
//! `status`) can be added beside it later without changing how playbooks are run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};

use crate::inventory::Inventory;
use crate::output::{Format, Reporter};
use crate::playbook::Playbook;
use crate::run::{RunOptions, Runner};
use crate::secrets::Redactor;
use crate::template::Templar;
use crate::vars::{yaml_to_json, Vars};

/// Ansible's exit codes.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const HOST_FAILED: u8 = 2;
    pub const HOST_UNREACHABLE: u8 = 3;
    pub const PARSE_ERROR: u8 = 4;
    pub const BAD_OPTIONS: u8 = 5;
    pub const INTERRUPTED: u8 = 99;
}

/// Ansible-style orchestrator for zero-downtime Cassandra migrations.
#[derive(Parser, Debug)]
#[command(name = "zdm-run", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub playbook: PlaybookArgs,
}

/// Arguments of the default (playbook) mode.
#[derive(Args, Debug)]
pub struct PlaybookArgs {
    /// Playbook(s) to run, in order.
    #[arg(value_name = "PLAYBOOK")]
    pub playbooks: Vec<PathBuf>,

    /// Inventory file or directory [default: $ZDM_INVENTORY, else ./inventory].
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    pub inventory: Option<PathBuf>,

    /// Further limit the selected hosts with a pattern (`zdm-h1:zdm-h2`, `proxies:!zdm-h3`).
    #[arg(short = 'l', long = "limit", value_name = "SUBSET")]
    pub limit: Option<String>,

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
            for word in item.split_whitespace() {
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
    let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
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
                _ => exit::BAD_OPTIONS,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.playbook.verbose);
    ExitCode::from(run_playbooks(cli.playbook))
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZDM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("zdm_run={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::output::LogWriter)
        .try_init();
}

fn error(msg: &str) {
    eprintln!("ERROR: {msg}");
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
        Inventory::load(args.inventory.as_deref()).map_err(|e| parse_err(e.to_string()))?;
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

/// Runs the playbook mode and returns the exit code.
pub fn run_playbooks(args: PlaybookArgs) -> u8 {
    let Prepared {
        extra,
        inventory,
        books,
        templar,
    } = match prepare(&args) {
        Ok(p) => p,
        Err((code, msg)) => {
            error(&msg);
            if args.output == Format::Json {
                // Machines reading stdout still get one JSON document.
                let doc =
                    serde_json::json!({"error": msg, "exit_code": code, "plays": [], "stats": {}});
                println!("{doc}");
            }
            return code;
        }
    };
    if args.syntax_check {
        for p in &args.playbooks {
            println!("playbook: {}", p.display());
        }
        return exit::OK;
    }
    let opts = RunOptions {
        check: args.check,
        diff: args.diff,
        forks: args.forks as usize,
        limit: args.limit.clone(),
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
        extra_vars: extra,
    };
    let redactor = Redactor::default();
    redactor.add_from_vars(&opts.extra_vars);
    if args.list_hosts || args.list_tasks {
        return list(&args, &inventory, &books, &opts, &templar, &redactor);
    }
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
            return exit::ERROR;
        }
    };
    let result = rt.block_on(async {
        let work = async {
            for book in &books {
                let mut runner =
                    Runner::new(&inventory, book, &opts, &templar, &redactor, &reporter);
                runner.run().await?;
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

/// `--list-hosts` / `--list-tasks`, formatted like ansible-playbook.
fn list(
    args: &PlaybookArgs,
    inventory: &Inventory,
    books: &[Playbook],
    opts: &RunOptions,
    templar: &Templar,
    redactor: &Redactor,
) -> u8 {
    let reporter = Reporter::new(Format::Human, false, 0, false, redactor.clone());
    for book in books {
        println!("\nplaybook: {}", book.path.display());
        let runner = Runner::new(inventory, book, opts, templar, redactor, &reporter);
        for (i, play) in book.plays.iter().enumerate() {
            println!("\n  play #{} ({}): {}", i + 1, play.hosts, play.name);
            if args.list_hosts {
                match runner.play_hosts(play) {
                    Ok(hosts) => {
                        println!("    pattern: ['{}']", play.hosts);
                        println!("    hosts ({}):", hosts.len());
                        for h in hosts {
                            println!("      {h}");
                        }
                    }
                    Err(e) => {
                        error(&e.to_string());
                        return exit::PARSE_ERROR;
                    }
                }
            }
            if args.list_tasks {
                println!("    tasks:");
                for t in play
                    .pre_tasks
                    .iter()
                    .chain(&play.tasks)
                    .chain(&play.post_tasks)
                {
                    if runner.tags_select(t) {
                        println!("      {}\tTAGS: [{}]", t.display_name(), t.tags.join(", "));
                    }
                }
            }
        }
    }
    exit::OK
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
}
