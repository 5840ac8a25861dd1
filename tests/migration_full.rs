//! The whole migration with the real playbooks against the sandbox: preflight, phases 1 to 4, a
//! rollback to phase 1 and forward again (2, 3, 4), then the cutover (phase 5), all under a
//! continuous driver workload through the three proxies. Proves that no client request failed,
//! no acknowledged write is missing on either cluster, and that reads come from the primary
//! of each phase: a probe row written directly to origin and to target with different values
//! (in a keyspace outside the migration) tells which cluster answered each proxy.
//!
//! The run uses its own copy of the sandbox inventory, so its migration state (written beside
//! the inventory) is its own. Observation windows are shortened with `zdm_observe_seconds`.

mod deploy_support;
mod migration_support;
mod ssh_support;

use std::sync::Arc;
use std::time::Duration;

use deploy_support::workload::{assert_on_both_clusters, create_table, Workload};
use deploy_support::{unique_keyspace, Fleet, HOSTS};
use migration_support::{
    assert_completed_with, assert_fleet, assert_reads_from, assert_status_shows, private_inventory,
    run_phase, state,
};
use scylla::client::session::Session;

/// Creates the migrated keyspace (workload table `kv`, sample table `items` with rows on origin
/// only) and the probe keyspace, outside the migration, with different rows per cluster.
async fn prepare_data(origin: &Session, target: &Session, ks: &str, probe_ks: &str) {
    for s in [origin, target] {
        create_table(s, ks).await;
        for cql in [
            format!("CREATE TABLE IF NOT EXISTS {ks}.items (id int PRIMARY KEY, name text)"),
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {probe_ks} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            format!("CREATE TABLE IF NOT EXISTS {probe_ks}.probe (k int PRIMARY KEY, side text)"),
        ] {
            s.query_unpaged(cql.as_str(), &[])
                .await
                .unwrap_or_else(|e| panic!("{cql}: {e}"));
        }
    }
    let insert = origin
        .prepare(format!("INSERT INTO {ks}.items (id, name) VALUES (?, ?)"))
        .await
        .unwrap();
    for id in 0..1000 {
        origin
            .execute_unpaged(&insert, (id, format!("item {id}")))
            .await
            .expect("load items into origin");
    }
    for (s, side) in [(origin, "origin"), (target, "target")] {
        s.query_unpaged(
            format!("INSERT INTO {probe_ks}.probe (k, side) VALUES (1, '{side}')"),
            &[],
        )
        .await
        .expect("probe row");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_migration_with_a_rollback_under_load_fails_no_request_and_loses_no_write() {
    let fleet = Fleet::take();
    let inv_dir = private_inventory(&fleet);
    let inv = inv_dir.path();
    let ks = unique_keyspace("mig");
    let probe_ks = format!("{ks}_probe");
    let _ks_guard = fleet.keyspace_guard(&ks);
    let _probe_guard = fleet.keyspace_guard(&probe_ks);
    let origin = fleet.direct_session("origin").await;
    let target = fleet.direct_session("target").await;
    prepare_data(&origin, &target, &ks, &probe_ks).await;

    // --check of phase 1 before anything exists: a plan, nothing changes.
    let check = run_phase(&fleet, inv, &ks, "preflight.yml", &["--check"]).await;
    check.assert_ok("preflight --check");
    assert!(check.out.contains("PLAN"), "{}", check.out);
    assert!(
        !inv.join("zdm-state.json").exists(),
        "check mode records nothing"
    );

    run_phase(&fleet, inv, &ks, "preflight.yml", &[])
        .await
        .assert_ok("preflight");
    run_phase(&fleet, inv, &ks, "phase1.yml", &[])
        .await
        .assert_ok("phase1");
    assert_fleet(&fleet, "ORIGIN", "PRIMARY_ONLY", "after phase1");

    let session = Arc::new(fleet.proxy_session(&HOSTS).await);
    let workload = Workload::start(session.clone(), &ks, 3, Duration::from_millis(100)).await;
    assert_reads_from(&fleet, &session, &probe_ks, "origin", "phase1").await;

    // Forward: 2, 3, 4.
    run_phase(&fleet, inv, &ks, "phase2.yml", &[])
        .await
        .assert_ok("phase2");
    assert_completed_with(inv, "phase2", "missing");
    assert_reads_from(&fleet, &session, &probe_ks, "origin", "phase2").await;
    run_phase(&fleet, inv, &ks, "phase3.yml", &[])
        .await
        .assert_ok("phase3");
    assert_completed_with(inv, "phase3", "p99");
    assert_fleet(&fleet, "ORIGIN", "DUAL_ASYNC_ON_SECONDARY", "after phase3");
    assert_reads_from(&fleet, &session, &probe_ks, "origin", "phase3").await;
    run_phase(&fleet, inv, &ks, "phase4.yml", &[])
        .await
        .assert_ok("phase4");
    assert_completed_with(inv, "phase4", "missing");
    assert_fleet(&fleet, "TARGET", "PRIMARY_ONLY", "after phase4");
    assert_status_shows(inv, "TARGET", "PRIMARY_ONLY", "after phase4");
    assert_reads_from(&fleet, &session, &probe_ks, "target", "phase4").await;

    // Back to phase 1.
    run_phase(&fleet, inv, &ks, "rollback.yml", &[])
        .await
        .assert_ok("rollback");
    assert_fleet(&fleet, "ORIGIN", "PRIMARY_ONLY", "after rollback");
    assert_reads_from(&fleet, &session, &probe_ks, "origin", "rollback").await;
    let st = state(inv);
    assert_eq!(
        (st["phase"].as_str(), st["completed"].as_bool()),
        (Some("phase1"), Some(true))
    );

    // Forward again: phase 3 may not skip phase 2's gate after a rollback.
    let skip = run_phase(&fleet, inv, &ks, "phase3.yml", &[]).await;
    assert_eq!(
        skip.code, 2,
        "phase3 right after the rollback:\n{}",
        skip.out
    );
    assert_fleet(&fleet, "ORIGIN", "PRIMARY_ONLY", "after the refused phase3");
    for pb in ["phase2.yml", "phase3.yml", "phase4.yml"] {
        run_phase(&fleet, inv, &ks, pb, &[]).await.assert_ok(pb);
    }
    assert_fleet(&fleet, "TARGET", "PRIMARY_ONLY", "after phase4 again");
    assert_reads_from(&fleet, &session, &probe_ks, "target", "phase4 again").await;

    let report = workload.stop().await;
    assert!(
        report.failures.is_empty(),
        "{} failed client requests: {:#?}",
        report.failures.len(),
        report.failures
    );
    assert!(
        report.acked.len() > 100,
        "too few writes to prove anything: {}",
        report.acked.len()
    );
    assert_on_both_clusters(&origin, &target, &ks, &report.acked).await;
    eprintln!(
        "workload: {} writes acknowledged, {} reads ok, 0 failed, longest gap {:?}, over {:?}",
        report.acked.len(),
        report.reads_ok,
        report.longest_gap,
        report.ran
    );
    let st = state(inv);
    assert_eq!(
        (st["phase"].as_str(), st["completed"].as_bool()),
        (Some("phase4"), Some(true))
    );
    let history = st["history"].as_array().unwrap();
    assert!(
        history.iter().any(|e| e["event"] == "rolled_back"),
        "the rollback is in the history: {history:#?}"
    );

    // Cutover while a client is still connected to the proxies: refused before any proxy
    // stops, naming the proxies that still have clients.
    let early = run_phase(
        &fleet,
        inv,
        &ks,
        "phase5.yml",
        &[
            "-e",
            "zdm_confirm_cutover=yes",
            "-e",
            "zdm_cutover_client_wait_seconds=3",
        ],
    )
    .await;
    assert_eq!(early.code, 2, "{}", early.out);
    assert!(early.out.contains("still connected after"), "{}", early.out);
    for h in HOSTS {
        assert!(
            fleet.proxy_pid(h).is_some(),
            "{h} keeps serving its clients"
        );
    }
    drop(session);

    // Cutover: refused without the confirmation, then retires every proxy.
    let unconfirmed = run_phase(&fleet, inv, &ks, "phase5.yml", &[]).await;
    assert_eq!(unconfirmed.code, 2, "{}", unconfirmed.out);
    assert!(unconfirmed.out.contains("zdm_confirm_cutover=yes"));
    let p5 = run_phase(
        &fleet,
        inv,
        &ks,
        "phase5.yml",
        &["-e", "zdm_confirm_cutover=yes"],
    )
    .await;
    p5.assert_ok("phase5");
    let recorded = state(inv);
    let completed = recorded["history"].as_array().unwrap().last().unwrap();
    let clients_gate = completed["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "cutover: clients left the proxies")
        .expect("the clients gate is recorded");
    assert_eq!(clients_gate["passed"], true, "{clients_gate}");
    let target_cp = fleet.sb.get("ZDM_TARGET_CONTACT_POINTS");
    assert!(
        p5.out.contains("CUTOVER") && p5.out.contains(&target_cp),
        "phase5 tells clients where to connect: {}",
        p5.out
    );
    for h in HOSTS {
        assert_eq!(fleet.proxy_pid(h), None, "{h}'s proxy is retired");
        assert_eq!(
            fleet.config(h),
            "",
            "{h}'s config (with passwords) is removed"
        );
    }
    assert_eq!(state(inv)["phase"], "phase5");
    let late = run_phase(&fleet, inv, &ks, "rollback.yml", &[]).await;
    assert_eq!(late.code, 2, "rollback after cutover: {}", late.out);
}
