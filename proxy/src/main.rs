//! zdm-proxy: the bundled CQL dual-write proxy.
use std::process::ExitCode;

use clap::Parser;
use zdm_proxy::config::{Config, ReadMode};

/// CQL proxy that writes to origin and target and reads from the primary.
#[derive(Parser)]
#[command(name = "zdm-proxy", version)]
struct Cli {
    /// Configuration file (YAML); settings may also come from ZDM_* environment variables.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Validate the configuration and exit (0 when valid).
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zdm-proxy: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("zdm-proxy: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let level = match config.log_level.as_str() {
        "WARNING" => "WARN".to_string(),
        l => l.to_string(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "zdm_proxy={level},warn"
        )))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    tracing::info!(config = ?config, "starting zdm-proxy");
    if config.read_mode == ReadMode::DualAsyncOnSecondary {
        tracing::warn!("read_mode DUAL_ASYNC_ON_SECONDARY is accepted but async shadow reads are not implemented yet: reads go to the primary only");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zdm-proxy: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shared = zdm_proxy::state::Shared::new(config);
    match runtime.block_on(zdm_proxy::server::run(shared)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zdm-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
