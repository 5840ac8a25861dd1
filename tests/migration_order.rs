//! The phase order with the real playbooks, on one phase-1 deployment (a deploy costs a minute,
//! so the entry checks share it):
//! - target Cassandra stopped after phase 1 (the sandbox's real fault switch): phase 2 is
//!   refused by the readiness check, which names each proxy and the cluster it sees DOWN
//!   (TARGET), before anything is recorded;
//! - phase 4 right after phase 1 (phases 2 and 3 never ran) is refused before any proxy is
//!   touched; with `--force-phase` it runs, warns, and the state history keeps the warning.
//!
//! The deployment also shows the phase summary's words for what changed on each proxy: phase 1
//! on a new fleet ships the binary and the config and (re)starts the proxy; phase 4 changes
//! only `primary_cluster`, so the config and a live reload.

use std::time::{Duration, Instant};
use zdm_testkit::{
    fleet::{Fleet, HOSTS},
    phases::{assert_fleet, private_inventory, run_phase, state},
    unique_name,
    workload::create_table,
    KeyspaceGuard, Run,
};

/// The state file's `phase`, `completed` and number of history entries.
fn recorded(inv: &std::path::Path) -> (String, bool, usize) {
    let st = state(inv);
    (
        st["phase"].as_str().unwrap_or_default().to_string(),
        st["completed"].as_bool().unwrap_or_default(),
        st["history"].as_array().map_or(0, Vec::len),
    )
}

/// The run's SUMMARY block says, for every proxy, `changed: <changed>` (the fixed words the
/// deploy tasks' change tags give, not task names), that the health gate passed, and `next`.
fn assert_summary(run: &Run, phase: &str, changed: &str, next: &str) {
    let summary = run
        .out
        .split(&format!("SUMMARY [{phase}]"))
        .nth(1)
        .unwrap_or_else(|| panic!("no summary for {phase}:\n{}", run.out))
        .split("PLAY RECAP")
        .next()
        .unwrap();
    for h in HOSTS {
        assert!(
            summary.contains(&format!("\n  {h}  changed: {changed}\n")),
            "{phase}: {h} changed {changed}:\n{summary}"
        );
    }
    assert!(
        summary.contains("\ngates:\n") && summary.contains("\n  health: PASSED ("),
        "{phase}: the health gate's verdict:\n{summary}"
    );
    assert!(
        summary.contains(&format!("\nnext: {next}")),
        "{phase}: next step {next}:\n{summary}"
    );
}

/// Waits (bounded) until every proxy's readiness answers `want` (503 once it sees a cluster
/// DOWN, 200 once both are UP again).
async fn wait_readiness(fleet: &Fleet, want: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut now = Vec::new();
        for h in HOSTS {
            now.push(fleet.readiness(h).await);
        }
        if now.iter().all(|s| *s == Some(want)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "readiness of {HOSTS:?} is {now:?}, not {want} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Target stopped after phase 1 completed: phase 2 is refused naming TARGET DOWN on every
/// proxy, and the recorded state does not move.
async fn target_down_refuses_phase2(fleet: &Fleet, inv: &std::path::Path, ks: &str) {
    let before = recorded(inv);
    assert_eq!((before.0.as_str(), before.1), ("phase1", true));
    let down = fleet.stop_cluster("target");
    let stopped = Instant::now();
    wait_readiness(fleet, 503, Duration::from_secs(60)).await;
    eprintln!("proxies saw target DOWN after {:.1?}", stopped.elapsed());

    let refused = run_phase(fleet, inv, ks, "phase2.yml", &[]).await;
    assert_eq!(refused.code, 2, "phase2 with target down:\n{}", refused.out);
    assert!(
        refused.out.contains("readiness gate FAILED"),
        "the readiness check refused:\n{}",
        refused.out
    );
    for h in HOSTS {
        assert!(
            refused
                .out
                .contains(&format!("{h}: readiness 503, TARGET DOWN")),
            "the refusal names {h} and the cluster it sees DOWN:\n{}",
            refused.out
        );
    }
    assert!(
        !refused.out.contains("ORIGIN DOWN"),
        "origin is up and must not be blamed:\n{}",
        refused.out
    );
    assert_eq!(recorded(inv), before, "a refused phase 2 records nothing");
    let st = state(inv);
    assert!(
        st["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["phase"] != "phase2"),
        "no phase2 entry in the history: {st:#}"
    );
    assert_fleet(fleet, "ORIGIN", "PRIMARY_ONLY", "after the refused phase2");

    let restarting = Instant::now();
    down.start();
    wait_readiness(fleet, 200, Duration::from_secs(120)).await;
    eprintln!(
        "target back and every proxy ready after {:.1?}; target was down {:.1?}",
        restarting.elapsed(),
        stopped.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_refuses_phase2_and_phase4_before_phase2_is_refused_and_forcing_it_is_recorded()
{
    let fleet = Fleet::take();
    let inv_dir = private_inventory(&fleet);
    let inv = inv_dir.path();
    let ks = unique_name("deploy_order");
    let _ks_guard = KeyspaceGuard::on(&fleet.sb, &ks);
    for cluster in ["origin", "target"] {
        create_table(&fleet.direct_session(cluster).await, &ks).await;
    }

    run_phase(&fleet, inv, &ks, "preflight.yml", &[])
        .await
        .assert_ok("preflight.yml");
    let phase1 = run_phase(&fleet, inv, &ks, "phase1.yml", &[]).await;
    phase1.assert_ok("phase1.yml");
    assert_summary(
        &phase1,
        "phase1",
        "binary, config, restart",
        "playbooks/phase2.yml (backfill and validate the data)",
    );
    let pids: Vec<Option<u32>> = HOSTS.iter().map(|h| fleet.proxy_pid(h)).collect();
    assert!(
        pids.iter().all(Option::is_some),
        "phase1 started every proxy"
    );

    target_down_refuses_phase2(&fleet, inv, &ks).await;

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
    assert_summary(
        &forced,
        "phase4",
        "config, reload",
        "playbooks/phase5.yml (cutover)",
    );
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
