//! `zdm_validate`, the consistency gate, against the sandbox's two real Cassandra clusters:
//! a row deleted on target fails the gate and is named; autocorrect brings it back and the
//! gate passes; a phase cannot complete on a failed consistency gate.

mod data_support;

use data_support::{config, connect};
use zdm_testkit::{
    keyspace::{create_schema, exec, load_kv, now_micros},
    run::task_result,
    unique_name,
    workdir::Workdir,
    KeyspaceGuard, Sandbox,
};

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
    let ks = unique_name("zdm_data_gate");
    let _guard = KeyspaceGuard::new(&ks);
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

    let w = Workdir::new(&Sandbox::load().inventory_yaml());
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
        refused.out.contains("phase3 needs phase2 completed"),
        "{}",
        refused.out
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
    let ks = unique_name("zdm_data_gatemig");
    let _guard = KeyspaceGuard::new(&ks);
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

    let w = Workdir::new(&Sandbox::load().inventory_yaml());
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
        rt.block_on(zdm_testkit::keyspace::count(
            &clusters.target,
            &format!("{ks}.kv")
        )),
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
    // The gate's checkpoint is the phase's own: a later phase's check never resumes it.
    let gate_cp = w.path("inventory/.zdm-state/validate-phase2-checkpoint.json");
    let gate_cp: zdm_run::data::checkpoint::ValidateCheckpoint =
        serde_json::from_str(&std::fs::read_to_string(&gate_cp).expect("the gate's checkpoint"))
            .unwrap();
    assert!(gate_cp.finished.is_some(), "the finished gate records it");
    let gate = task_result(&doc, "consistency");
    assert!(
        gate["msg"]
            .as_str()
            .unwrap()
            .contains("[PASS] missing rows: 0 missing of 30 rows compared"),
        "{gate}"
    );
    assert_eq!(
        rt.block_on(zdm_testkit::keyspace::count(
            &clusters.target,
            &format!("{ks}.kv")
        )),
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

/// Marks ranges `0..upto` of `table` as finished (with 0 rows) in a migrate checkpoint, as an
/// interrupted run that had copied them would have, although nothing was copied: a run that
/// resumes the checkpoint leaves those rows off target, one that does not copies them.
fn interrupted_migrate_checkpoint(path: &std::path::Path, table: &str, splits: u32, upto: u32) {
    use zdm_run::data::checkpoint::{save, Checkpoint};
    let mut cp = Checkpoint::new(splits);
    for r in 0..upto {
        cp.table(table).done.insert(r, 0);
    }
    save(path, &cp).unwrap();
}

fn migrate_report(path: &std::path::Path) -> zdm_run::data::MigrateSummary {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no migrate report {}: {e}", path.display()));
    serde_json::from_str(&text).expect("migrate report JSON")
}

/// `zdm-run migrate -i INVENTORY` keeps its checkpoint where the `zdm_migrate` module keeps
/// its own (`.zdm-state` beside the inventory's state file), so each resumes a backfill the
/// other was interrupted in.
#[test]
fn the_cli_and_the_playbook_module_resume_each_others_backfill() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config();
    let clusters = rt.block_on(connect(&cfg));
    let ks = unique_name("zdm_data_sharedcp");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.kv");
    rt.block_on(create_schema(
        &clusters,
        &ks,
        &[format!("CREATE TABLE {table} (k int PRIMARY KEY, v text)")],
    ));
    const ROWS: i64 = 2000;
    const SPLITS: u32 = 16;
    rt.block_on(load_kv(
        &clusters.origin,
        &table,
        ROWS as i32,
        now_micros() - 60_000_000,
    ));
    let token_of = rt.block_on(zdm_testkit::keyspace::tokens(&clusters.origin, &table));
    let rows_below = |upto: u32| {
        token_of
            .values()
            .filter(|t| data_support::range_of(**t, SPLITS) < upto)
            .count() as i64
    };

    let w = Workdir::new(&Sandbox::load().inventory_yaml());
    let state = w.path("inventory/.zdm-state");
    let cp = state.join("migrate-checkpoint.json");

    // 1. An interrupted CLI run's checkpoint, resumed by the playbook module.
    interrupted_migrate_checkpoint(&cp, &table, SPLITS, 4);
    w.write(
        "backfill.yml",
        &format!(
            r#"
- hosts: proxies
  tasks:
    - name: backfill
      zdm_migrate: {{tables: [{table}], splits: {SPLITS}}}
      run_once: true
      delegate_to: localhost
"#
        ),
    );
    let run = w.run(&["backfill.yml", "--output", "json"]);
    run.assert_code(0);
    let report = migrate_report(&state.join("migrate-report.json"));
    assert_eq!(
        (
            report.tables[0].ranges_resumed,
            report.tables[0].ranges_copied
        ),
        (4, SPLITS - 4),
        "{}",
        report.human()
    );
    assert!(rows_below(4) > 0);
    assert_eq!(
        rt.block_on(zdm_testkit::keyspace::count(&clusters.target, &table)),
        ROWS - rows_below(4),
        "the playbook resumed the checkpoint: the 'finished' ranges were not copied"
    );

    // 2. An interrupted playbook run's checkpoint, resumed by the CLI given only -i.
    rt.block_on(exec(&clusters.target, &format!("TRUNCATE {table}")));
    interrupted_migrate_checkpoint(&cp, &table, SPLITS, 8);
    // While a playbook holds the migration's run lock, the CLI does not touch its checkpoint.
    {
        let _held = zdm_run::migration::state::StateStore::beside_inventory(&w.path("inventory"))
            .lock("playbooks/phase2.yml")
            .expect("take the run lock");
        let out = w
            .command(&["migrate", "-i", "inventory", "--table", &table])
            .output()
            .expect("run zdm-run migrate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("holds the migration lock") && stderr.contains("playbooks/phase2.yml"),
            "{stderr}"
        );
    }
    let out = w
        .command(&["migrate", "-i", "inventory", "--table", &table])
        .output()
        .expect("run zdm-run migrate");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{SPLITS} token ranges per table (kept from the interrupted run's checkpoint)"
        )),
        "without --splits a resumed run keeps the checkpoint's count: {stdout}"
    );
    let report = migrate_report(&state.join("migrate-report.json"));
    assert_eq!(report.tables[0].ranges_resumed, 8, "{}", report.human());
    assert_eq!(
        rt.block_on(zdm_testkit::keyspace::count(&clusters.target, &table)),
        ROWS - rows_below(8),
        "the CLI resumed the playbook's checkpoint"
    );
    assert!(
        !w.path(".zdm-state").exists(),
        "nothing is written to the working directory's .zdm-state"
    );
}

/// The consistency gate resumes an interrupted check from its checkpoint (ranges it had finished
/// are not read again), a finished check is never resumed, and `fresh: true` starts over.
#[test]
fn the_gate_resumes_an_interrupted_check_and_fresh_starts_over() {
    use zdm_run::data::checkpoint::{save_validate, ValidateCheckpoint};
    use zdm_run::data::engine::validate_fingerprint;
    use zdm_run::data::ValidateOptions;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config();
    let clusters = rt.block_on(connect(&cfg));
    let ks = unique_name("zdm_data_gateresume");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.kv");
    rt.block_on(create_schema(
        &clusters,
        &ks,
        &[format!("CREATE TABLE {table} (k int PRIMARY KEY, v text)")],
    ));
    let ts = now_micros() - 60_000_000;
    rt.block_on(load_kv(&clusters.origin, &table, 40, ts));
    rt.block_on(load_kv(&clusters.target, &table, 40, ts));
    rt.block_on(exec(
        &clusters.target,
        &format!("DELETE FROM {table} WHERE k = 17"),
    ));
    const SPLITS: u32 = 16;
    let token_of = rt.block_on(zdm_testkit::keyspace::tokens(&clusters.origin, &table));
    let hidden_range = data_support::range_of(token_of[&17], SPLITS);
    let in_hidden_range = token_of
        .values()
        .filter(|t| data_support::range_of(**t, SPLITS) == hidden_range)
        .count() as u64;

    let w = Workdir::new(&Sandbox::load().inventory_yaml());
    let cp_path = w.path("inventory/.zdm-state/validate-checkpoint.json");
    // What an interrupted gate run leaves: the range holding k=17 checked (clean at the time),
    // the others not yet.
    let interrupted = || {
        let mut cp = ValidateCheckpoint::new(
            SPLITS,
            validate_fingerprint(&ValidateOptions::default()),
            Some(now_micros()),
        );
        let t = cp.table(&table);
        t.done.insert(hidden_range, in_hidden_range);
        t.totals.ranges_checked = 1;
        t.totals.rows_compared = in_hidden_range;
        save_validate(&cp_path, &cp).unwrap();
    };
    let gate = |fresh: bool| {
        format!(
            r#"
- hosts: proxies
  tasks:
    - name: consistency
      zdm_validate: {{tables: [{table}], splits: {SPLITS}, fresh: {fresh}}}
      run_once: true
      delegate_to: localhost
"#
        )
    };
    w.write("resume.yml", &gate(false));
    w.write("fresh.yml", &gate(true));

    interrupted();
    let run = w.run(&["resume.yml", "--output", "json"]);
    run.assert_code(0);
    let msg = task_result(&run.json(), "consistency")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("[PASS] missing rows: 0 missing of 40 rows compared"),
        "the resumed check must not read the finished range again: {msg}"
    );
    assert!(
        msg.contains("1 of them by an interrupted earlier run"),
        "{msg}"
    );
    let cp: ValidateCheckpoint =
        serde_json::from_str(&std::fs::read_to_string(&cp_path).unwrap()).unwrap();
    assert!(
        cp.finished.is_some(),
        "a finished check records its summary"
    );

    // A finished check is not resumed: the next gate reads every range and finds k=17.
    let run = w.run(&["resume.yml", "--output", "json"]);
    run.assert_code(2);
    let msg = task_result(&run.json(), "consistency")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(&format!(
            "[FAIL] missing rows: 1 missing of 40 rows compared; e.g.: {table} (k=17)"
        )),
        "{msg}"
    );

    // fresh: true ignores an interrupted run's checkpoint.
    interrupted();
    let run = w.run(&["fresh.yml", "--output", "json"]);
    run.assert_code(2);
    let msg = task_result(&run.json(), "consistency")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("[FAIL] missing rows: 1 missing"), "{msg}");
    assert!(!msg.contains("interrupted earlier run"), "{msg}");
}
