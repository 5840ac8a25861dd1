use clap::Parser;

/// CQL proxy that writes to origin and target and reads from the primary.
#[derive(Parser)]
#[command(name = "zdm-proxy", version)]
struct Cli {
    /// Configuration file (YAML); settings may also come from ZDM_* environment variables.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

fn main() {
    let _cli = Cli::parse();
}
