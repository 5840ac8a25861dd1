use clap::{Parser, Subcommand};

/// Ansible-style runner for zero-downtime Cassandra migrations.
#[derive(Parser)]
#[command(name = "zdm-run", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Playbook to run.
    playbook: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Copy origin's rows to target, keeping writetime and TTL (phase 2 backfill).
    Migrate(zdm_run::data::cli::MigrateArgs),
    /// Compare origin with target: missing, mismatched and extra rows.
    Validate(zdm_run::data::cli::ValidateArgs),
}

fn main() {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Migrate(args) => zdm_run::data::cli::run_migrate(args).await,
            Command::Validate(args) => zdm_run::data::cli::run_validate(args).await,
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
