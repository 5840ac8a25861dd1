//! zdm-proxy: the bundled CQL dual-write proxy.
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use zdm_proxy::ops::config::Config;

/// CQL proxy that writes to origin and target and reads from the primary.
#[derive(Parser)]
#[command(name = "zdm-proxy", version = zdm_proxy::VERSION)]
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
    // The filter sits in a reload layer so `log_level` can change on a settings reload.
    let (filter, filter_handle) =
        tracing_subscriber::reload::Layer::new(log_filter(&config.log_level));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    tracing::info!(config = ?config, "starting zdm-proxy");
    tracing::info!("{}", config.credentials_note());
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
    shared.reloader.set_source(
        cli.config.clone(),
        std::env::vars().collect(),
        Some(Box::new(move |level: &str| {
            filter_handle
                .reload(log_filter(level))
                .map_err(|e| e.to_string())
        })),
    );
    match runtime.block_on(zdm_proxy::server::run(shared)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zdm-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter for a `log_level` setting: the proxy's own events at that level, other
/// crates' at WARN.
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let level = match level {
        "WARNING" => "WARN",
        l => l,
    };
    tracing_subscriber::EnvFilter::new(format!("zdm_proxy={level},warn"))
}
