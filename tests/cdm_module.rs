//! `zdm_cdm` against the sandbox: the rendered `cdm.properties` on a real SSH host (exact
//! keys, mode 0600, passwords masked in human and JSON output), the `spark-submit` command line
//! it runs there, and the gate reading real `cdm_run_info`/`cdm_run_details` tables created on
//! the sandbox target with CDM's schema.
//!
//! What is NOT exercised: CDM itself. Its jar is on no registry this machine reaches, so
//! `spark-submit` is replaced on the host by a small script that records its arguments and
//! exits 0; the tracking rows a real CDM run would write are inserted by the test (a finished
//! run, a run with differences, a failed run, and a run id with no rows at all).

mod data_support;
mod ssh_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use data_support::{config, connect, exec, unique_keyspace, KeyspaceGuard};
use ssh_support::{zdm_run_in, RemoteDir, Run, Sandbox};
use zdm_run::data::cdm::{judge, read_run, CdmJob, CdmThresholds};

/// CDM's tracking tables, as its `TargetUpsertRunDetailsStatement` creates them.
fn tracking_ddl(ks: &str) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.cdm_run_info (table_name TEXT, run_id BIGINT, \
             run_type TEXT, prev_run_id BIGINT, start_time TIMESTAMP, end_time TIMESTAMP, \
             run_info TEXT, status TEXT, PRIMARY KEY (table_name, run_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.cdm_run_details (table_name TEXT, run_id BIGINT, \
             start_time TIMESTAMP, token_min BIGINT, token_max BIGINT, status TEXT, \
             run_info TEXT, PRIMARY KEY ((table_name, run_id), token_min))"
        ),
    ]
}

/// Records a run the way CDM does: one `cdm_run_info` row and one `cdm_run_details` row per
/// token range with its status.
async fn record_run(
    session: &scylla::client::session::Session,
    (ks, table): (&str, &str),
    run_id: i64,
    run_type: &str,
    status: &str,
    run_info: &str,
    ranges: &[&str],
) {
    exec(
        session,
        &format!(
            "INSERT INTO {ks}.cdm_run_info (table_name, run_id, run_type, prev_run_id, \
             start_time, end_time, run_info, status) VALUES ('{table}', {run_id}, '{run_type}', \
             0, toTimestamp(now()), toTimestamp(now()), '{run_info}', '{status}')"
        ),
    )
    .await;
    let width = u64::MAX / ranges.len() as u64;
    for (i, st) in ranges.iter().enumerate() {
        let min = (i64::MIN as i128 + (width as i128) * i as i128) as i64;
        let max = (min as i128 + width as i128 - 1) as i64;
        exec(
            session,
            &format!(
                "INSERT INTO {ks}.cdm_run_details (table_name, run_id, start_time, token_min, \
                 token_max, status, run_info) VALUES ('{table}', {run_id}, toTimestamp(now()), \
                 {min}, {max}, '{st}', 'Read: 1')"
            ),
        )
        .await;
    }
}

const MIGRATE_DONE: &str = "Read: 1000; Write: 1000; Skipped: 0; Error: 0; Partitions Passed: 4; \
                            Partitions Failed: 0";
const DIFF_WITH_MISMATCH: &str = "Read: 1000; Valid: 995; Mismatch: 3; Corrected Mismatch: 0; \
     Missing: 2; Corrected Missing: 2; Skipped: 0; Error: 0; Partitions Passed: 4; \
     Partitions Failed: 0";
const MIGRATE_FAILED: &str = "Read: 500; Write: 480; Skipped: 0; Error: 20; Partitions Passed: 2; \
                              Partitions Failed: 2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_reads_cdm_tracking_tables_on_target() {
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_keyspace("cdmgate");
    let _guard = KeyspaceGuard::new(&cfg, &ks);
    exec(
        &c.target,
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', \
             'replication_factor': 1}}"
        ),
    )
    .await;
    for ddl in tracking_ddl(&ks) {
        exec(&c.target, &ddl).await;
    }
    record_run(
        &c.target,
        (&ks, "orders"),
        101,
        "MIGRATE",
        "ENDED",
        MIGRATE_DONE,
        &["PASS"; 4],
    )
    .await;
    record_run(
        &c.target,
        (&ks, "orders"),
        102,
        "VALIDATE",
        "ENDED",
        DIFF_WITH_MISMATCH,
        &["PASS", "DIFF", "DIFF_CORRECTED", "PASS"],
    )
    .await;
    record_run(
        &c.target,
        (&ks, "orders"),
        103,
        "MIGRATE",
        "STARTED",
        MIGRATE_FAILED,
        &["PASS", "FAIL", "FAIL", "STARTED"],
    )
    .await;

    let none = CdmThresholds::default();
    let run = read_run(&c.target, &ks, "orders", 101)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status.as_deref(), Some("ENDED"));
    assert_eq!(run.counter("Write"), 1000);
    assert_eq!(run.ranges, BTreeMap::from([("PASS".to_string(), 4)]));
    let v = judge(Some(&run), 101, CdmJob::Migrate, &none);
    assert!(v.ok, "{}", v.summary);
    assert!(
        v.summary.contains("run 101") && v.summary.contains("Write=1000"),
        "{}",
        v.summary
    );

    let run = read_run(&c.target, &ks, "orders", 102)
        .await
        .unwrap()
        .unwrap();
    let v = judge(Some(&run), 102, CdmJob::DiffData, &none);
    assert!(!v.ok);
    // Two missing rows were corrected by CDM; three mismatches remain.
    assert_eq!((v.missing, v.mismatched), (0, 3));
    assert!(
        v.summary.contains("3 mismatched (allowed 0)"),
        "{}",
        v.summary
    );
    let v = judge(
        Some(&run),
        102,
        CdmJob::DiffData,
        &CdmThresholds {
            missing: 0,
            mismatched: 3,
        },
    );
    assert!(v.ok, "within the thresholds: {}", v.summary);

    let run = read_run(&c.target, &ks, "orders", 103)
        .await
        .unwrap()
        .unwrap();
    let v = judge(Some(&run), 103, CdmJob::Migrate, &none);
    assert!(!v.ok);
    for part in [
        "status STARTED",
        "2 FAIL",
        "1 STARTED",
        "Partitions Failed: 2",
        "Error: 20",
    ] {
        assert!(
            v.summary.contains(part),
            "{part} missing from: {}",
            v.summary
        );
    }

    // Another table's rows and an unknown run id are not this run.
    assert!(read_run(&c.target, &ks, "other", 101)
        .await
        .unwrap()
        .is_none());
    assert!(read_run(&c.target, &ks, "orders", 999)
        .await
        .unwrap()
        .is_none());
    assert!(!judge(None, 999, CdmJob::Migrate, &none).ok);
}

fn zdm_run(sb: &Sandbox, dir: &Path, book: &str, extra: &[&str]) -> Run {
    std::fs::write(dir.join("site.yml"), book).unwrap();
    let args: Vec<&str> = ["-l", "zdm-h1"]
        .into_iter()
        .chain(extra.iter().copied())
        .chain(["site.yml"])
        .collect();
    zdm_run_in(sb, dir, &args)
}

fn on_host(sb: &Sandbox, script: &str) -> String {
    let out = Command::new("ssh")
        .args([
            "-F",
            &sb.get("SANDBOX_SSH_CONFIG"),
            "-o",
            "ConnectTimeout=10",
            "zdm-h1",
        ])
        .arg(script)
        .output()
        .expect("ssh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Stands in for `spark-submit` on the host (CDM's jar is not available here): records its
/// arguments and exits 0, so the gate alone decides the task's outcome.
const STAND_IN: &str = "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/argv.txt\"\necho stand-in spark-submit ran\nexit 0\n";

fn book(root: &str, ks: &str, job: &str, run_id: i64, extra: &str) -> String {
    format!(
        "- hosts: proxies\n  gather_facts: false\n  tasks:\n\
         \x20   - name: work directory\n\
         \x20     file: {{path: \"{root}\", state: directory}}\n\
         \x20   - name: stand-in spark-submit\n\
         \x20     copy: {{dest: \"{root}/spark-submit\", mode: \"0755\", content: {content:?}}}\n\
         \x20   - name: cdm\n\
         \x20     zdm_cdm:\n\
         \x20       job: {job}\n\
         \x20       keyspace_table: {ks}.orders\n\
         \x20       spark_submit: {root}/spark-submit\n\
         \x20       jar: {root}/cdm.jar\n\
         \x20       properties_dest: {root}/cdm/orders.properties\n\
         \x20       run_id: {run_id}\n\
         \x20       num_parts: 64\n{extra}",
        content = STAND_IN
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zdm_cdm_renders_0600_properties_runs_spark_submit_over_ssh_and_gates_on_tracking() {
    let sb = Sandbox::load();
    let env = data_support::sandbox_env();
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_keyspace("cdmmod");
    let _guard = KeyspaceGuard::new(&cfg, &ks);
    let remote = RemoteDir::new(&sb, &["zdm-h1"], "cdm");
    let root = remote.path.clone();
    let work = tempfile::tempdir().unwrap();
    exec(
        &c.target,
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', \
             'replication_factor': 1}}"
        ),
    )
    .await;
    for ddl in tracking_ddl(&ks) {
        exec(&c.target, &ddl).await;
    }
    let passwords = [&env["ZDM_ORIGIN_PASSWORD"], &env["ZDM_TARGET_PASSWORD"]];
    let assert_masked = |out: &str| {
        for pw in passwords {
            assert!(
                !out.contains(pw.as_str()),
                "a password reached the output:\n{out}"
            );
        }
    };

    // Check mode: the properties as a diff (masked), the command it would run, nothing on the host.
    let run = zdm_run(
        &sb,
        work.path(),
        &book(&root, &ks, "diffdata", 7001, ""),
        &["--check", "--diff"],
    );
    assert_eq!(run.code, 0, "{}", run.out);
    assert_masked(&run.out);
    assert!(
        run.out.contains("spark.cdm.connect.origin.password"),
        "{}",
        run.out
    );
    assert!(run.out.contains("********"), "{}", run.out);
    assert!(run.out.contains("spark.cdm.trackRun.runId"), "{}", run.out);
    assert!(
        run.out.contains(&format!(
            "run spark-submit: {root}/spark-submit --properties-file {root}/cdm/orders.properties"
        )),
        "{}",
        run.out
    );
    assert!(run.out.contains("would"), "{}", run.out);
    assert_eq!(
        on_host(
            &sb,
            &format!("test -e {root}/cdm/orders.properties && echo yes || echo no")
        )
        .trim(),
        "no",
        "check mode wrote the properties"
    );
    let json = zdm_run(
        &sb,
        work.path(),
        &book(&root, &ks, "diffdata", 7001, ""),
        &["--check", "--diff", "--output", "json"],
    );
    assert_masked(&json.out);
    assert!(
        json.out.contains("spark.cdm.connect.target.password"),
        "{}",
        json.out
    );

    // A finished DiffData run with no differences: the task passes and names the run.
    let clean = "Read: 100; Valid: 100; Mismatch: 0; Corrected Mismatch: 0; Missing: 0; \
                 Corrected Missing: 0; Skipped: 0; Error: 0; Partitions Passed: 2; \
                 Partitions Failed: 0";
    record_run(
        &c.target,
        (&ks, "orders"),
        7002,
        "VALIDATE",
        "ENDED",
        clean,
        &["PASS", "PASS"],
    )
    .await;
    // (JSON: the human line of a changed task shows the plan; the verdict is its msg.)
    let run = zdm_run(
        &sb,
        work.path(),
        &book(&root, &ks, "diffdata", 7002, ""),
        &["--output", "json"],
    );
    assert_eq!(run.code, 0, "{}", run.out);
    assert_masked(&run.out);
    let start = run.out.find('{').expect("a JSON document");
    let doc: serde_json::Value = serde_json::Deserializer::from_str(&run.out[start..])
        .into_iter()
        .next()
        .expect("a JSON document")
        .expect("valid JSON");
    let cdm = &doc["plays"][0]["tasks"][2]["hosts"]["zdm-h1"];
    let msg = cdm["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("run 7002") && msg.contains("status ENDED") && msg.contains("Valid=100"),
        "{cdm}"
    );
    assert_eq!(cdm["status"], "changed", "{cdm}");

    // The file on the host: 0600, CDM's keys with the real values.
    let props_path = format!("{root}/cdm/orders.properties");
    assert_eq!(
        on_host(&sb, &format!("stat -c %a {props_path}")).trim(),
        "600"
    );
    let text = on_host(&sb, &format!("cat {props_path}"));
    let props: BTreeMap<String, String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    let expect = [
        (
            "spark.cdm.connect.origin.host",
            env["ZDM_ORIGIN_CONTACT_POINTS"].clone(),
        ),
        (
            "spark.cdm.connect.origin.port",
            env["ZDM_ORIGIN_PORT"].clone(),
        ),
        (
            "spark.cdm.connect.origin.username",
            env["ZDM_ORIGIN_USERNAME"].clone(),
        ),
        (
            "spark.cdm.connect.origin.password",
            env["ZDM_ORIGIN_PASSWORD"].clone(),
        ),
        (
            "spark.cdm.connect.target.host",
            env["ZDM_TARGET_CONTACT_POINTS"].clone(),
        ),
        (
            "spark.cdm.connect.target.port",
            env["ZDM_TARGET_PORT"].clone(),
        ),
        (
            "spark.cdm.connect.target.username",
            env["ZDM_TARGET_USERNAME"].clone(),
        ),
        (
            "spark.cdm.connect.target.password",
            env["ZDM_TARGET_PASSWORD"].clone(),
        ),
        (
            "spark.cdm.schema.origin.keyspaceTable",
            format!("{ks}.orders"),
        ),
        (
            "spark.cdm.schema.target.keyspaceTable",
            format!("{ks}.orders"),
        ),
        ("spark.cdm.autocorrect.missing", "false".into()),
        ("spark.cdm.autocorrect.mismatch", "false".into()),
        ("spark.cdm.trackRun", "true".into()),
        ("spark.cdm.trackRun.runId", "7002".into()),
        ("spark.cdm.perfops.numParts", "64".into()),
        ("spark.cdm.perfops.batchSize", "5".into()),
        ("spark.cdm.perfops.ratelimit.origin", "20000".into()),
        ("spark.cdm.perfops.ratelimit.target", "20000".into()),
    ];
    let expect: BTreeMap<String, String> = expect
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(props, expect);

    // The command line the host ran.
    let argv = on_host(&sb, &format!("cat {root}/argv.txt"));
    let argv: Vec<&str> = argv.lines().collect();
    let ks_table = format!("spark.cdm.schema.origin.keyspaceTable={ks}.orders");
    let jar = format!("{root}/cdm.jar");
    assert_eq!(
        argv,
        vec![
            "--properties-file",
            props_path.as_str(),
            "--conf",
            ks_table.as_str(),
            "--master",
            "local[*]",
            "--driver-memory",
            "25G",
            "--executor-memory",
            "25G",
            "--class",
            "com.datastax.cdm.job.DiffData",
            jar.as_str(),
        ]
    );

    // Differences above the threshold fail the task although spark-submit exited 0.
    record_run(
        &c.target,
        (&ks, "orders"),
        7003,
        "VALIDATE",
        "ENDED",
        DIFF_WITH_MISMATCH,
        &["PASS", "DIFF"],
    )
    .await;
    let run = zdm_run(
        &sb,
        work.path(),
        &book(&root, &ks, "diffdata", 7003, ""),
        &[],
    );
    assert_eq!(run.code, 2, "a failed gate is a failed host:\n{}", run.out);
    assert!(
        run.out.contains("run 7003") && run.out.contains("3 mismatched (allowed 0)"),
        "{}",
        run.out
    );
    assert_masked(&run.out);
    // ...and pass when the task allows them.
    let run = zdm_run(
        &sb,
        work.path(),
        &book(&root, &ks, "diffdata", 7003, "        max_mismatched: 3\n"),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.out);

    // A failed migrate run, and a run id CDM never recorded, both fail.
    record_run(
        &c.target,
        (&ks, "orders"),
        7004,
        "MIGRATE",
        "STARTED",
        MIGRATE_FAILED,
        &["PASS", "FAIL"],
    )
    .await;
    let run = zdm_run(
        &sb,
        work.path(),
        &book(&root, &ks, "migrate", 7004, ""),
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.out);
    assert!(
        run.out.contains("status STARTED") && run.out.contains("1 FAIL"),
        "{}",
        run.out
    );
    let run = zdm_run(
        &sb,
        work.path(),
        &book(&root, &ks, "migrate", 7005, ""),
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.out);
    assert!(run.out.contains("run 7005 is not recorded"), "{}", run.out);
    let migrate_props = on_host(&sb, &format!("cat {props_path}"));
    assert!(
        !migrate_props.contains("spark.cdm.autocorrect"),
        "{migrate_props}"
    );
}
