//! `zdm_validate`, the consistency gate, against the sandbox's two real Cassandra clusters:
//! a row deleted on target fails the gate and is named; autocorrect brings it back and the
//! gate passes; a phase cannot complete on a failed consistency gate.

mod data_support;
mod gates_support;

use data_support::{
    config, connect, create_schema, exec, load_kv, now_micros, unique_keyspace, KeyspaceGuard,
};
use gates_support::{sandbox_inventory, task_result, Workdir};

fn validate_playbook(keyspace: &str, autocorrect: bool) -> String {
    format!(
        r#"
- hosts: proxies
  tasks:
    - name: consistency
      zdm_validate:
        keyspaces: [{keyspace}]
        splits: 16
        autocorrect: {autocorrect}
      run_once: true
      delegate_to: localhost
"#
    )
}

#[test]
fn a_row_deleted_on_target_fails_the_gate_by_key_and_autocorrect_makes_it_pass() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config();
    let clusters = rt.block_on(connect(&cfg));
    let ks = unique_keyspace("gate");
    let _guard = KeyspaceGuard::new(&cfg, &ks);
    rt.block_on(create_schema(
        &clusters,
        &ks,
        &[format!("CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)")],
    ));
    let ts = now_micros() - 60_000_000;
    rt.block_on(load_kv(&clusters.origin, &format!("{ks}.kv"), 40, ts));
    rt.block_on(load_kv(&clusters.target, &format!("{ks}.kv"), 40, ts));
    rt.block_on(exec(
        &clusters.target,
        &format!("DELETE FROM {ks}.kv WHERE k = 17"),
    ));

    let w = Workdir::new(&sandbox_inventory());
    w.write("validate.yml", &validate_playbook(&ks, false));
    let run = w.run(&["validate.yml", "--output", "json"]);
    run.assert_code(2);
    let r = task_result(&run.json(), "consistency");
    let msg = r["msg"].as_str().unwrap();
    assert!(msg.starts_with("consistency gate FAILED"), "{msg}");
    assert!(
        msg.contains(&format!(
            "[FAIL] missing rows: 1 missing of 40 rows compared; e.g.: {ks}.kv (k=17)"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("[PASS] mismatched rows: 0 mismatched"),
        "{msg}"
    );
    assert!(msg.contains("[PASS] extra rows: 0 extra"), "{msg}");

    // A phase cannot complete on it, and the next one is refused.
    std::fs::write(
        w.path("inventory/zdm-state.json"),
        r#"{"phase": "phase1", "completed": true, "history": []}"#,
    )
    .unwrap();
    w.write(
        "phase2.yml",
        &format!(
            r#"
- hosts: localhost
  tasks:
    - zdm_phase: {{action: start, phase: phase2}}
    - name: consistency
      zdm_validate: {{keyspaces: [{ks}], splits: 16}}
      ignore_errors: true
    - name: complete
      zdm_phase: {{action: complete}}
"#
        ),
    );
    let run = w.run(&["phase2.yml", "--output", "json"]);
    run.assert_code(2);
    let complete = task_result(&run.json(), "complete");
    assert!(
        complete["msg"].as_str().unwrap().contains(
            "phase2 cannot complete: gate check(s) failed in this run: consistency: missing rows"
        ),
        "{complete}"
    );
    let state = w.state();
    assert_eq!(state["completed"], false);
    w.write(
        "phase3.yml",
        "- hosts: localhost\n  tasks:\n    - zdm_phase: {action: start, phase: phase3}\n",
    );
    let refused = w.run(&["phase3.yml"]);
    refused.assert_code(2);
    assert!(
        refused.text().contains("phase3 needs phase2 completed"),
        "{}",
        refused.text()
    );

    w.write("fix.yml", &validate_playbook(&ks, true));
    let run = w.run(&["fix.yml", "--output", "json"]);
    run.assert_code(0);
    let r = task_result(&run.json(), "consistency");
    assert_eq!(r["status"], "changed", "autocorrect wrote to target: {r}");
    let msg = r["msg"].as_str().unwrap();
    assert!(msg.starts_with("consistency gate PASSED"), "{msg}");
    assert!(
        msg.contains("0 missing of 40 rows compared (1 found, 1 corrected on target)"),
        "{msg}"
    );

    let run = w.run(&["validate.yml", "--output", "json"]);
    run.assert_code(0);
    let msg = task_result(&run.json(), "consistency")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("[PASS] missing rows: 0 missing of 40 rows compared"),
        "{msg}"
    );
    // The row is really back on target.
    let rows = rt.block_on(data_support::rows(
        &clusters.target,
        &format!("SELECT v FROM {ks}.kv WHERE k = 17"),
    ));
    assert_eq!(rows.len(), 1);

    // And phase 2 completes now.
    let run = w.run(&["phase2.yml"]);
    run.assert_code(0);
    assert_eq!(w.state()["phase"], "phase2");
    assert_eq!(w.state()["completed"], true);
}

/// `zdm_migrate` backfills through the playbook module (checkpoint and report beside the
/// migration state), and the consistency gate then passes.
#[test]
fn the_migrate_module_backfills_and_the_gate_then_passes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config();
    let clusters = rt.block_on(connect(&cfg));
    let ks = unique_keyspace("gatemig");
    let _guard = KeyspaceGuard::new(&cfg, &ks);
    rt.block_on(create_schema(
        &clusters,
        &ks,
        &[format!("CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)")],
    ));
    rt.block_on(load_kv(
        &clusters.origin,
        &format!("{ks}.kv"),
        30,
        now_micros() - 60_000_000,
    ));

    let w = Workdir::new(&sandbox_inventory());
    w.write(
        "phase2.yml",
        &format!(
            r#"
- hosts: proxies
  vars:
    zdm_keyspaces: [{ks}]
  tasks:
    - zdm_phase: {{action: start, phase: phase2}}
      run_once: true
      delegate_to: localhost
    - name: backfill
      zdm_migrate: {{splits: 8}}
      run_once: true
      delegate_to: localhost
    - name: consistency
      zdm_validate: {{splits: 8}}
      run_once: true
      delegate_to: localhost
    - zdm_phase: {{action: complete}}
      run_once: true
      delegate_to: localhost
"#
        ),
    );
    std::fs::write(
        w.path("inventory/zdm-state.json"),
        r#"{"phase": "phase1", "completed": true, "history": []}"#,
    )
    .unwrap();

    let check = w.run(&["phase2.yml", "--check", "--output", "json"]);
    check.assert_code(0);
    let plan = task_result(&check.json(), "backfill");
    assert_eq!(plan["status"], "would_run");
    let summary = plan["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("copy {ks} from origin"))
            && summary.contains("8 token ranges"),
        "{summary}"
    );
    assert_eq!(
        rt.block_on(data_support::count(&clusters.target, &format!("{ks}.kv"))),
        0
    );

    let run = w.run(&["phase2.yml", "--output", "json"]);
    run.assert_code(0);
    let doc = run.json();
    let backfill = task_result(&doc, "backfill");
    assert_eq!(backfill["status"], "changed");
    assert!(
        backfill["msg"]
            .as_str()
            .unwrap()
            .contains("MIGRATE SUMMARY"),
        "{backfill}"
    );
    assert!(w.path("inventory/.zdm-state/migrate-report.json").is_file());
    let gate = task_result(&doc, "consistency");
    assert!(
        gate["msg"]
            .as_str()
            .unwrap()
            .contains("[PASS] missing rows: 0 missing of 30 rows compared"),
        "{gate}"
    );
    assert_eq!(
        rt.block_on(data_support::count(&clusters.target, &format!("{ks}.kv"))),
        30
    );
    let state = w.state();
    assert_eq!(state["phase"], "phase2");
    assert_eq!(state["completed"], true);
    let gates = state["history"][1]["gates"].as_array().unwrap();
    assert!(gates
        .iter()
        .any(|g| g["name"] == "consistency: missing rows" && g["passed"] == true));
}
