//! `zdm-run metrics`: the migration's recorded state as Prometheus metrics.
//!
//! The proxies export what they see; only zdm-run knows which phase the migration is in and
//! what its gates measured. This serves exactly that, read from the state file beside the
//! inventory on every scrape (never cached, never written), so the dashboards' migration panel
//! and an alert follow each phase change without anything being pushed anywhere:
//!
//! ```text
//! zdm-run metrics -i inventory --listen 0.0.0.0:9187     # scraped by monitoring.yml's job
//! zdm-run metrics -i inventory --once                    # print once (textfile collectors)
//! ```
//!
//! Series: `zdm_migration_phase{phase}` (1 for the phase most recently started or rolled back
//! to, 0 for the others), `zdm_migration_phase_number` (-1 not started, 0 preflight, 1..5),
//! `zdm_migration_phase_completed`, `zdm_migration_gate_passed{phase,gate}` for the last gate
//! results, `zdm_migration_history_entries` and `zdm_migration_state_readable` (0 when the state
//! file cannot be read; the other series are then absent rather than made up).

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::inventory::Inventory;
use crate::migration::state::{MigrationState, Phase, StateStore};

#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Inventory file or directory [default: $ZDM_INVENTORY, else ./inventory].
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    pub inventory: Option<PathBuf>,

    /// Address and port to serve `/metrics` on.
    #[arg(
        long = "listen",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:9187"
    )]
    pub listen: SocketAddr,

    /// Print the metrics once to stdout and exit instead of serving them.
    #[arg(long = "once")]
    pub once: bool,
}

const ALL_PHASES: [Phase; 7] = [
    Phase::NotStarted,
    Phase::Preflight,
    Phase::Phase1,
    Phase::Phase2,
    Phase::Phase3,
    Phase::Phase4,
    Phase::Phase5,
];

/// The state file's name for a phase (`not_started`, `preflight`, `phase1`, ...).
fn phase_label(p: Phase) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| p.to_string())
}

fn phase_number(p: Phase) -> i32 {
    match p {
        Phase::NotStarted => -1,
        Phase::Preflight => 0,
        Phase::Phase1 => 1,
        Phase::Phase2 => 2,
        Phase::Phase3 => 3,
        Phase::Phase4 => 4,
        Phase::Phase5 => 5,
    }
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(o: &mut String, name: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// The exposition text for a state, or for a state file that could not be read.
pub fn render(state: Result<&MigrationState, &str>) -> String {
    let mut o = String::new();
    head(
        &mut o,
        "zdm_migration_state_readable",
        "1 when zdm-run could read the migration state file",
    );
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(o, "# state file: {}", e.replace('\n', " "));
            o.push_str("zdm_migration_state_readable 0\n");
            return o;
        }
    };
    o.push_str("zdm_migration_state_readable 1\n");
    head(
        &mut o,
        "zdm_migration_phase",
        "1 for the phase most recently started or rolled back to",
    );
    for p in ALL_PHASES {
        let _ = writeln!(
            o,
            "zdm_migration_phase{{phase=\"{}\"}} {}",
            phase_label(p),
            u8::from(p == state.phase)
        );
    }
    head(
        &mut o,
        "zdm_migration_phase_number",
        "The current phase as a number: -1 not started, 0 preflight, 1 to 5",
    );
    let _ = writeln!(
        o,
        "zdm_migration_phase_number {}",
        phase_number(state.phase)
    );
    head(
        &mut o,
        "zdm_migration_phase_completed",
        "1 when the current phase completed with its exit gate passed",
    );
    let _ = writeln!(
        o,
        "zdm_migration_phase_completed {}",
        u8::from(state.completed)
    );
    head(
        &mut o,
        "zdm_migration_history_entries",
        "Entries in the migration's history",
    );
    let _ = writeln!(o, "zdm_migration_history_entries {}", state.history.len());
    head(
        &mut o,
        "zdm_migration_gate_passed",
        "The most recent gate results: 1 passed, 0 failed",
    );
    if let Some(entry) = state.history.iter().rev().find(|e| !e.gates.is_empty()) {
        let phase = phase_label(entry.phase);
        for g in &entry.gates {
            let _ = writeln!(
                o,
                "zdm_migration_gate_passed{{phase=\"{phase}\",gate=\"{}\"}} {}",
                label(&g.name),
                u8::from(g.passed)
            );
        }
    }
    o
}

/// The metrics for the state file beside `inventory`, as read right now.
fn current(store: &StateStore) -> String {
    match store.load() {
        Ok(s) => render(Ok(&s)),
        Err(e) => render(Err(&format!("{e:#}"))),
    }
}

/// Runs `zdm-run metrics`; returns the exit code.
pub fn run(args: MetricsArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(args.inventory.as_deref()).map_err(|e| anyhow::anyhow!(e.0))?;
    let store = StateStore::beside_inventory(inventory.source.as_deref().unwrap_or(Path::new(".")));
    if args.once {
        print!("{}", current(&store));
        return Ok(0);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args.listen, store))?;
    Ok(0)
}

/// Serves `GET /metrics` until the process is stopped. One request per connection, read with a
/// bounded head and a timeout, so a stuck client cannot hold the exporter.
async fn serve(listen: SocketAddr, store: StateStore) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    eprintln!(
        "zdm-run metrics: serving {} on http://{listen}/metrics",
        store.path().display()
    );
    let store = std::sync::Arc::new(store);
    loop {
        let (mut sock, _) = listener.accept().await?;
        let store = store.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path.split('?').next().unwrap_or(path) {
                "/metrics" => ("200 OK", current(&store)),
                _ => ("404 Not Found", "not found; try /metrics\n".to_string()),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::state::{entry, Event, GateResult};

    #[test]
    fn renders_the_phase_and_the_last_gates() {
        let mut s = MigrationState::default();
        let text = render(Ok(&s));
        assert!(text.contains("zdm_migration_phase{phase=\"not_started\"} 1\n"));
        assert!(text.contains("zdm_migration_phase_number -1\n"));
        assert!(!text.contains("zdm_migration_gate_passed{"));
        let mut e = entry("phase2.yml", Phase::Phase2, Event::Completed);
        e.gates = vec![GateResult {
            name: "consistency \"rows\"".into(),
            passed: true,
            measured: "0".into(),
            threshold: "0".into(),
        }];
        s.record(e);
        s.phase = Phase::Phase3;
        s.completed = false;
        let text = render(Ok(&s));
        assert!(
            text.contains("zdm_migration_phase{phase=\"phase3\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("zdm_migration_phase{phase=\"phase2\"} 0\n"));
        assert!(text.contains("zdm_migration_phase_number 3\n"));
        assert!(text.contains("zdm_migration_phase_completed 0\n"));
        assert!(text.contains(
            "zdm_migration_gate_passed{phase=\"phase2\",gate=\"consistency \\\"rows\\\"\"} 1\n"
        ));
        let broken = render(Err("bad json\nline 2"));
        assert!(broken.contains("zdm_migration_state_readable 0\n"));
        assert!(!broken.contains("zdm_migration_phase{"));
    }
}
