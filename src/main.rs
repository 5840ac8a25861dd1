use clap::Parser;

/// Ansible-style runner for zero-downtime Cassandra migrations.
#[derive(Parser)]
#[command(name = "zdm-run", version)]
struct Cli {
    /// Playbook to run.
    playbook: Option<std::path::PathBuf>,
}

fn main() {
    let _cli = Cli::parse();
}
