//! Running the phase playbooks against the sandbox fleet with a migration state of its own,
//! and reading what they did: the state file, the deployed settings, which cluster answers.

use std::path::Path;

use scylla::client::session::Session;

use crate::binaries::{workspace_root, zdm_run};
use crate::fleet::{via, Fleet, HOSTS};
use crate::run::Run;

/// The migration's inventory: the sandbox's generated hosts.yml in a directory of its own.
pub fn private_inventory(fleet: &Fleet) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hosts.yml"), fleet.sb.inventory_yaml())
        .expect("write the private inventory");
    dir
}

/// Asserts the last history entry completed `phase` with passed gate results, one of them
/// named like `gate` (e.g. "p99").
pub fn assert_completed_with(inv: &Path, phase: &str, gate: &str) {
    let st = state(inv);
    let last = st["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["phase"].as_str(), last["event"].as_str()),
        (Some(phase), Some("completed")),
        "{last:#}"
    );
    let gates = last["gates"].as_array().unwrap();
    assert!(
        gates.iter().all(|g| g["passed"] == true),
        "{phase}: every recorded gate check passed: {gates:#?}"
    );
    assert!(
        gates
            .iter()
            .any(|g| g["name"].as_str().unwrap_or_default().contains(gate)),
        "{phase}: a '{gate}' check is recorded: {gates:#?}"
    );
}

/// The gate check named `name` recorded by the last history entry (completed or failed).
pub fn recorded_check(inv: &Path, name: &str) -> serde_json::Value {
    let st = state(inv);
    let last = st["history"].as_array().unwrap().last().unwrap().clone();
    last["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no '{name}' check in the last history entry: {last:#}"))
}

/// Sets `replace_cql_functions` for the proxy group the way an operator does: a group_vars
/// file beside the inventory.
pub fn set_replace_cql_functions(inv: &Path, on: bool) {
    let dir = inv.join("group_vars");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("proxies.yml"),
        format!("replace_cql_functions: {on}\n"),
    )
    .unwrap();
}

pub fn state(inv: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(inv.join("zdm-state.json")).expect("state file");
    serde_json::from_str(&text).expect("state JSON")
}

/// Which cluster answered reads through each proxy: the probe row holds `origin` on origin and
/// `target` on target.
pub async fn assert_reads_from(fleet: &Fleet, s: &Session, probe_ks: &str, want: &str, when: &str) {
    for h in HOSTS {
        let row = s
            .query_unpaged(
                via(
                    fleet,
                    h,
                    &format!("SELECT side FROM {probe_ks}.probe WHERE k = 1"),
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{when}: probe read through {h}: {e}"))
            .into_rows_result()
            .unwrap()
            .maybe_first_row::<(String,)>()
            .unwrap();
        assert_eq!(
            row,
            Some((want.to_string(),)),
            "{when}: reads through {h} must come from {want}"
        );
    }
}

/// Asserts every proxy runs these settings (as deployed).
pub fn assert_fleet(fleet: &Fleet, primary: &str, read_mode: &str, when: &str) {
    for h in HOSTS {
        assert_eq!(
            fleet.setting(h, "primary_cluster").as_deref(),
            Some(primary),
            "{when}: {h} primary_cluster"
        );
        assert_eq!(
            fleet.setting(h, "read_mode").as_deref(),
            Some(read_mode),
            "{when}: {h} read_mode"
        );
    }
}

pub fn no_secrets(fleet: &Fleet, run: &Run, what: &str) {
    for p in fleet.passwords() {
        assert!(
            !run.out.contains(&p),
            "{what}: a password reached the output"
        );
    }
}

pub async fn run_phase(fleet: &Fleet, inv: &Path, ks: &str, playbook: &str, extra: &[&str]) -> Run {
    let ks_arg = format!("zdm_keyspaces={ks}");
    let mut args = vec!["-e", &ks_arg, "-e", "zdm_observe_seconds=5"];
    args.extend_from_slice(extra);
    let pb = format!("playbooks/{playbook}");
    let inv = inv.to_str().unwrap().to_string();
    // zdm-run blocks; the workload's tasks keep running on the runtime meanwhile.
    let run = tokio::task::block_in_place(|| fleet.run_with_inventory(&inv, &pb, &args));
    eprintln!("{playbook}: exit {} in {:.0?}", run.code, run.took);
    no_secrets(fleet, &run, playbook);
    run
}

/// `zdm-run status --output json` for a private inventory.
pub fn status_json(inv: &Path) -> serde_json::Value {
    let out = zdm_run()
        .current_dir(workspace_root())
        .args(["status", "-i", inv.to_str().unwrap(), "--output", "json"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run zdm-run status");
    assert!(
        out.status.success(),
        "zdm-run status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// `zdm-run status` reports what every proxy really runs (asked over `/config`) and that
/// the workload's clients are connected to each of them.
pub fn assert_status_shows(inv: &Path, primary: &str, read_mode: &str, when: &str) {
    let status = status_json(inv);
    let proxies = status["proxies"].as_array().expect("proxies");
    assert_eq!(proxies.len(), HOSTS.len(), "{when}: {status:#}");
    for p in proxies {
        assert_eq!(p["ready"], true, "{when}: {p:#}");
        assert_eq!(p["running"]["primary_cluster"], primary, "{when}: {p:#}");
        assert_eq!(p["running"]["read_mode"], read_mode, "{when}: {p:#}");
        let clients = p["client_connections"].as_f64().expect("client count");
        assert!(clients >= 1.0, "{when}: the workload is connected: {p:#}");
    }
}
