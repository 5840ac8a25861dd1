//! `zdm_preflight` against the sandbox's two real Cassandra clusters, through the binary and the
//! sandbox's generated inventory (copied, so the state beside it is this test's own).

mod data_support;

use data_support::{config, connect};
use zdm_testkit::{
    keyspace::{create_schema, exec},
    run::task_result,
    unique_name,
    workdir::Workdir,
    KeyspaceGuard, Sandbox,
};

fn preflight_playbook(keyspace: &str) -> String {
    format!(
        r#"
- hosts: proxies
  tasks:
    - name: preflight
      zdm_preflight:
        keyspaces: [{keyspace}]
      run_once: true
      delegate_to: localhost
"#
    )
}

#[test]
fn preflight_passes_on_identical_schemas_and_names_a_column_added_on_target() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config();
    let clusters = rt.block_on(connect(&cfg));
    let ks = unique_name("zdm_data_preflight");
    let _guard = KeyspaceGuard::new(&ks);
    rt.block_on(create_schema(
        &clusters,
        &ks,
        &[format!(
            "CREATE TABLE {ks}.orders (id int, at timestamp, total decimal, PRIMARY KEY (id, at))"
        )],
    ));

    let w = Workdir::new(&Sandbox::load().inventory_yaml());
    w.write("preflight.yml", &preflight_playbook(&ks));

    let check = w.run(&["preflight.yml", "--check", "--output", "json"]);
    check.assert_code(0);
    let planned = task_result(&check.json(), "preflight");
    assert_eq!(planned["status"], "would_run");
    let summary = planned["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!(
            "identical keyspaces, tables, columns, types and primary keys for {ks}"
        )),
        "{summary}"
    );

    let run = w.run(&["preflight.yml", "--output", "json"]);
    run.assert_code(0);
    let r = task_result(&run.json(), "preflight");
    let msg = r["msg"].as_str().unwrap();
    assert!(msg.starts_with("preflight gate PASSED"), "{msg}");
    assert!(
        msg.contains("[PASS] schemas compatible: 1 tables identical"),
        "{msg}"
    );
    assert!(msg.contains("[PASS] common protocol version: v5"), "{msg}");
    assert!(msg.contains("[PASS] target reachable"), "{msg}");

    rt.block_on(exec(
        &clusters.target,
        &format!("ALTER TABLE {ks}.orders ADD coupon text"),
    ));
    let run = w.run(&["preflight.yml", "--output", "json"]);
    run.assert_code(2);
    let r = task_result(&run.json(), "preflight");
    assert_eq!(r["status"], "failed");
    let msg = r["msg"].as_str().unwrap();
    assert!(msg.starts_with("preflight gate FAILED"), "{msg}");
    assert!(
        msg.contains(&format!(
            "[FAIL] schemas compatible: 1 difference(s):\n        - {ks}.orders: column coupon text (regular column) exists on target only"
        )),
        "{msg}"
    );
    // The password never reaches the output.
    let env = Sandbox::load();
    for secret in [
        env.get("ZDM_ORIGIN_PASSWORD"),
        env.get("ZDM_TARGET_PASSWORD"),
    ] {
        assert!(!run.out.contains(secret), "a password leaked");
    }
}
