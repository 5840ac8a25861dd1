//! The phase order with the real playbooks: phase 4 right after phase 1 (phases 2 and 3 never
//! ran) is refused before any proxy is touched; with `--force-phase` it runs, warns, and the
//! state history keeps the warning for good.

mod deploy_support;
mod migration_support;
mod ssh_support;

use deploy_support::workload::create_table;
use deploy_support::{unique_keyspace, Fleet, HOSTS};
use migration_support::{assert_fleet, private_inventory, run_phase, state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase4_before_phase2_is_refused_and_forcing_it_is_recorded() {
    let fleet = Fleet::take();
    let inv_dir = private_inventory(&fleet);
    let inv = inv_dir.path();
    let ks = unique_keyspace("order");
    let _ks_guard = fleet.keyspace_guard(&ks);
    for cluster in ["origin", "target"] {
        create_table(&fleet.direct_session(cluster).await, &ks).await;
    }

    for pb in ["preflight.yml", "phase1.yml"] {
        run_phase(&fleet, inv, &ks, pb, &[]).await.assert_ok(pb);
    }
    let pids: Vec<Option<u32>> = HOSTS.iter().map(|h| fleet.proxy_pid(h)).collect();
    assert!(
        pids.iter().all(Option::is_some),
        "phase1 started every proxy"
    );

    let refused = run_phase(&fleet, inv, &ks, "phase4.yml", &[]).await;
    assert_eq!(refused.code, 2, "phase4 after phase1:\n{}", refused.out);
    assert!(
        refused.out.contains("needs phase3 completed") && refused.out.contains("--force-phase"),
        "the refusal names the missing phase and the override:\n{}",
        refused.out
    );
    assert_fleet(&fleet, "ORIGIN", "PRIMARY_ONLY", "after the refused phase4");
    let now: Vec<Option<u32>> = HOSTS.iter().map(|h| fleet.proxy_pid(h)).collect();
    assert_eq!(now, pids, "no proxy was restarted by the refused run");
    let st = state(inv);
    assert_eq!(
        (st["phase"].as_str(), st["completed"].as_bool()),
        (Some("phase1"), Some(true)),
        "a refused start records nothing"
    );

    let forced = run_phase(&fleet, inv, &ks, "phase4.yml", &["--force-phase"]).await;
    forced.assert_ok("phase4 --force-phase");
    assert!(
        forced.out.contains("WARNING: --force-phase"),
        "a loud warning:\n{}",
        forced.out
    );
    assert_fleet(&fleet, "TARGET", "PRIMARY_ONLY", "after the forced phase4");
    let st = state(inv);
    assert_eq!(
        (st["phase"].as_str(), st["completed"].as_bool()),
        (Some("phase4"), Some(true))
    );
    let started = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["phase"] == "phase4" && e["event"] == "started")
        .expect("phase4's start in the history")
        .clone();
    let warning = started["forced"].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("WARNING: --force-phase") && warning.contains("phase3"),
        "the override is recorded with the start: {started:#}"
    );
}
