//! The whole migration with the real playbooks against the sandbox: preflight, phases 1 to 4, a
//! rollback to phase 1 and forward again (2, 3, 4), then the cutover (phase 5), all under a
//! continuous driver workload through the three proxies. Proves that no client request failed,
//! no acknowledged write is missing on either cluster, and that reads come from the primary
//! of each phase: a probe row written directly to origin and to target with different values
//! (in a keyspace outside the migration) tells which cluster answered each proxy.
//!
//! The workload writes as an ordinary application does: `toTimestamp(now())` and `uuid()` in
//! its inserts and a counter beside them, and a counter row exists on origin only before phase
//! 1; with the playbooks' defaults every consistency gate finds 0 mismatched rows. The second
//! test runs the same application with `replace_cql_functions: false` and follows the
//! README's recovery path, asserting what the operator is told at each step.
//!
//! The run uses its own copy of the sandbox inventory, so its migration state (written beside
//! the inventory) is its own. Observation windows are shortened with `zdm_observe_seconds`.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use zdm_testkit::{
    fleet::{Fleet, HOSTS},
    phases::{
        assert_completed_with, assert_fleet, assert_reads_from, assert_status_shows,
        private_inventory, recorded_check, run_phase, set_replace_cql_functions, state,
    },
    unique_name,
    workload::{
        assert_application_writes_agree, assert_on_both_clusters, create_application_tables,
        Workload, Writes,
    },
    KeyspaceGuard,
};

/// A counter row on origin only before phase 1: the backfill must add it to target.
const SEEDED_COUNTER: (i64, i64) = (1000, 42);

/// Creates the migrated keyspace (workload tables `kv` and `hits`, sample table `items` with
/// rows on origin only, a counter row on origin only) and the probe keyspace, outside the
/// migration, with different rows per cluster.
async fn prepare_data(origin: &Session, target: &Session, ks: &str, probe_ks: &str) {
    for s in [origin, target] {
        create_application_tables(s, ks).await;
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
    let (k, n) = SEEDED_COUNTER;
    origin
        .query_unpaged(
            format!("UPDATE {ks}.hits SET n = n + {n} WHERE k = {k}"),
            &[],
        )
        .await
        .expect("seed a counter on origin");
    for (s, side) in [(origin, "origin"), (target, "target")] {
        s.query_unpaged(
            format!("INSERT INTO {probe_ks}.probe (k, side) VALUES (1, '{side}')"),
            &[],
        )
        .await
        .expect("probe row");
    }
}

/// `<ks>.hits` counter `k` on one cluster.
async fn counter(s: &Session, ks: &str, k: i64) -> Option<i64> {
    s.query_unpaged(format!("SELECT n FROM {ks}.hits WHERE k = {k}"), &[])
        .await
        .expect("read a counter")
        .into_rows_result()
        .unwrap()
        .maybe_first_row::<(scylla::value::Counter,)>()
        .unwrap()
        .map(|(c,)| c.0)
}

/// The consistency gate `phase` just passed found no mismatched row at all (not merely within a
/// threshold), and said how it judged the counter table.
fn assert_no_mismatch(inv: &std::path::Path, ks: &str, phase: &str) {
    let mismatched = recorded_check(inv, "consistency: mismatched rows");
    let measured = mismatched["measured"].as_str().unwrap();
    assert!(
        measured.starts_with("0 mismatched of ") && !measured.contains("corrected"),
        "{phase}: {mismatched:#}"
    );
    let counters = recorded_check(inv, "consistency: counter tables");
    assert!(
        counters["measured"]
            .as_str()
            .unwrap()
            .contains(&format!("{ks}.hits")),
        "{phase}: {counters:#}"
    );
}

/// Runs `phase` (phase2 or phase4), whose consistency gate must pass: it completes with its
/// missing-rows check recorded and no mismatched row at all.
async fn pass_consistency_gate(fleet: &Fleet, inv: &std::path::Path, ks: &str, phase: &str) {
    run_phase(fleet, inv, ks, &format!("{phase}.yml"), &[])
        .await
        .assert_ok(phase);
    assert_completed_with(inv, phase, "missing");
    assert_no_mismatch(inv, ks, phase);
}

/// Runs phase 3, whose gate on the shadow reads' p99 latency must pass.
async fn pass_latency_gate(fleet: &Fleet, inv: &std::path::Path, ks: &str) {
    run_phase(fleet, inv, ks, "phase3.yml", &[])
        .await
        .assert_ok("phase3");
    assert_completed_with(inv, "phase3", "p99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_migration_with_a_rollback_under_load_fails_no_request_and_loses_no_write() {
    let fleet = Fleet::take();
    let inv_dir = private_inventory(&fleet);
    let inv = inv_dir.path();
    let ks = unique_name("deploy_mig");
    let probe_ks = format!("{ks}_probe");
    let _ks_guard = KeyspaceGuard::on(&fleet.sb, &ks);
    let _probe_guard = KeyspaceGuard::on(&fleet.sb, &probe_ks);
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
    let workload = Workload::start_with(
        session.clone(),
        &ks,
        3,
        Duration::from_millis(100),
        Writes::Application,
    )
    .await;
    assert_reads_from(&fleet, &session, &probe_ks, "origin", "phase1").await;

    // Forward: 2, 3, 4.
    pass_consistency_gate(&fleet, inv, &ks, "phase2").await;
    let (k, n) = SEEDED_COUNTER;
    assert_eq!(
        counter(&target, &ks, k).await,
        Some(n),
        "the backfill added origin's counter to target"
    );
    assert_reads_from(&fleet, &session, &probe_ks, "origin", "phase2").await;
    pass_latency_gate(&fleet, inv, &ks).await;
    assert_fleet(&fleet, "ORIGIN", "DUAL_ASYNC_ON_SECONDARY", "after phase3");
    assert_reads_from(&fleet, &session, &probe_ks, "origin", "phase3").await;
    pass_consistency_gate(&fleet, inv, &ks, "phase4").await;
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
    pass_consistency_gate(&fleet, inv, &ks, "phase2").await;
    pass_latency_gate(&fleet, inv, &ks).await;
    pass_consistency_gate(&fleet, inv, &ks, "phase4").await;
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
    assert_application_writes_agree(&origin, &target, &ks, &report).await;
    assert_eq!(
        counter(&target, &ks, k).await,
        Some(n),
        "the seeded counter"
    );
    eprintln!(
        "workload: {} writes acknowledged ({:?} counter increments), {} reads ok, 0 failed, \
         longest gap {:?}, over {:?}",
        report.acked.len(),
        report.increments,
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
        p5.out.contains("CUTOVER") && p5.out.contains(target_cp),
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
        assert_eq!(
            fleet.ssh(
                h,
                "ls /opt/zdm-proxy/run/zdm-proxy.running.yml 2>/dev/null || true"
            ),
            "",
            "{h}'s copy of the running config (with passwords) is removed"
        );
    }
    assert_eq!(state(inv)["phase"], "phase5");
    let late = run_phase(&fleet, inv, &ks, "rollback.yml", &[]).await;
    assert_eq!(late.code, 2, "rollback after cutover: {}", late.out);
}

/// `replace_cql_functions: false` with an application writing `now()` and `uuid()`: phase 1's
/// gate names the table and the functions; after the README's recovery path (the setting back
/// on, deploy.yml, phase 1 again) phase 2's gate names the columns and the likely cause, and
/// `phase2.yml -e zdm_autocorrect=true` repairs the rows and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_function_replacement_off_the_gates_name_table_function_and_column_and_autocorrect_repairs(
) {
    let fleet = Fleet::take();
    let inv_dir = private_inventory(&fleet);
    let inv = inv_dir.path();
    set_replace_cql_functions(inv, false);
    let ks = unique_name("deploy_fnoff");
    let _ks_guard = KeyspaceGuard::on(&fleet.sb, &ks);
    let origin = fleet.direct_session("origin").await;
    let target = fleet.direct_session("target").await;
    for s in [&origin, &target] {
        create_application_tables(s, &ks).await;
    }
    run_phase(&fleet, inv, &ks, "preflight.yml", &[])
        .await
        .assert_ok("preflight");
    // The proxies first, so the application writes before phase 1's gate looks.
    run_phase(&fleet, inv, &ks, "deploy.yml", &[])
        .await
        .assert_ok("deploy with replacement off");
    for h in HOSTS {
        assert_eq!(
            fleet.setting(h, "replace_cql_functions").as_deref(),
            Some("false"),
            "{h}"
        );
    }
    let session = Arc::new(fleet.proxy_session(&HOSTS).await);
    let workload = Workload::start_with(
        session.clone(),
        &ks,
        3,
        Duration::from_millis(100),
        Writes::Application,
    )
    .await;
    while workload.acked() < 30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let p1 = run_phase(&fleet, inv, &ks, "phase1.yml", &[]).await;
    assert_eq!(
        p1.code, 2,
        "phase1 with now() left to each cluster:\n{}",
        p1.out
    );
    let gate = gate_lines(&p1.out, "writes the clusters cannot keep equal");
    eprintln!("OPERATOR SEES (phase1):\n{gate}");
    for needle in [
        format!("{ks}.kv: "),
        "writes with now() evaluated by each cluster".to_string(),
        "writes with uuid() evaluated by each cluster".to_string(),
        format!("Tables that will differ: {ks}.kv."),
        "set replace_cql_functions: true".to_string(),
        "phase2.yml -e zdm_autocorrect=true".to_string(),
        format!("\"zdm_accept_divergent_tables\": [\"{ks}.kv\"]"),
    ] {
        assert!(
            gate.contains(&needle),
            "phase1's gate says {needle:?}:\n{gate}"
        );
    }

    // The recovery path of the README: the setting back on, deployed host by host while the
    // application keeps running on the same session. Its prepared statements with now() and
    // uuid() are re-prepared on the restarted proxies under the same id (the id of the
    // application's own text), so not one request fails across the switch.
    set_replace_cql_functions(inv, true);
    run_phase(&fleet, inv, &ks, "deploy.yml", &[])
        .await
        .assert_ok("deploy with replacement on");
    for h in HOSTS {
        assert_eq!(
            fleet.setting(h, "replace_cql_functions").as_deref(),
            Some("true"),
            "{h}"
        );
    }
    // Some of its writes on the restarted proxies, through the same session.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = workload.stop().await;
    assert!(
        before.failures.is_empty(),
        "{} failed client requests across the switch: {:#?}",
        before.failures.len(),
        before.failures
    );
    drop(session);

    let session = Arc::new(fleet.proxy_session(&HOSTS).await);
    let workload = Workload::start_with(
        session.clone(),
        &ks,
        3,
        Duration::from_millis(100),
        Writes::Application,
    )
    .await;
    run_phase(&fleet, inv, &ks, "phase1.yml", &[])
        .await
        .assert_ok("phase1 once the proxies replace the functions");

    let p2 = run_phase(&fleet, inv, &ks, "phase2.yml", &[]).await;
    assert_eq!(p2.code, 2, "phase2 with rows already apart:\n{}", p2.out);
    let gate = gate_lines(&p2.out, "mismatched rows");
    eprintln!("OPERATOR SEES (phase2):\n{gate}");
    for needle in [
        format!("{ks}.kv ("),
        "differs in ".to_string(),
        "id (likely cause: values made by uuid() on each cluster: written through the proxy \
         while replace_cql_functions was off"
            .to_string(),
        ". To do: set replace_cql_functions: true (the playbooks' default) and run deploy.yml, \
         then repair the rows already apart with phase2.yml -e zdm_autocorrect=true"
            .to_string(),
    ] {
        assert!(
            gate.contains(&needle),
            "phase2's gate says {needle:?}:\n{gate}"
        );
    }
    let report_file = p2
        .out
        .lines()
        .find_map(|l| l.trim().strip_prefix("report: "))
        .unwrap_or_else(|| panic!("phase2 names its report:\n{}", p2.out))
        .to_string();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    let kv = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == format!("{ks}.kv"))
        .unwrap();
    let row = &kv["mismatched_rows"][0];
    assert!(
        row["causes"]["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("values made by uuid() on each cluster"),
        "the report names the column and its cause: {row:#}"
    );

    let fixed = run_phase(
        &fleet,
        inv,
        &ks,
        "phase2.yml",
        &["-e", "zdm_autocorrect=true"],
    )
    .await;
    fixed.assert_ok("phase2 with autocorrect");
    assert_completed_with(inv, "phase2", "mismatched");
    let mismatched = recorded_check(inv, "consistency: mismatched rows");
    eprintln!("OPERATOR SEES (phase2 autocorrect): {mismatched}");
    assert!(
        mismatched["measured"]
            .as_str()
            .unwrap()
            .starts_with("0 mismatched of "),
        "{mismatched:#}"
    );

    let report = before.and_then(workload.stop().await);
    assert!(
        report.failures.is_empty(),
        "{} failed client requests: {:#?}",
        report.failures.len(),
        report.failures
    );
    assert_on_both_clusters(&origin, &target, &ks, &report.acked).await;
    // Rows written while replacement was off were repaired; later ones never differed.
    assert_application_writes_agree(&origin, &target, &ks, &report).await;
}

/// The lines of a failed run's output from the gate check `name` on (the gate's message).
fn gate_lines(out: &str, name: &str) -> String {
    let start = out
        .find(name)
        .unwrap_or_else(|| panic!("no '{name}' in the output:\n{out}"));
    out[start..].lines().take(12).collect::<Vec<_>>().join("\n")
}
