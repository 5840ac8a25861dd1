//! `zdm_cdm` against the sandbox: the rendered `cdm.properties` on a real SSH host (exact
//! keys, mode 0600, passwords masked in human and JSON output), the `spark-submit` command line
//! it runs there, and the gate reading real `cdm_run_info`/`cdm_run_details` tables created on
//! the sandbox target with CDM's schema, including the five ways CDM 5.8.1's behaviour could
//! mislead it (a resume with nothing pending, a reused run id, a failure before the tracking
//! tables exist, corrections counted as fixes, a mixed-case keyspace).
//!
//! Here `spark-submit` is a small stand-in script on the host that records its arguments, can
//! hold until the test has written the tracking rows a CDM run would write, and can fail the
//! way CDM does; the real CDM jar on the real Spark cluster is `tests/cdm_spark.rs`.

mod data_support;

use data_support::{config, connect};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use zdm_run::data::cdm::{judge, read_run, CdmJob, CdmThresholds};
use zdm_testkit::{
    keyspace::exec, remote_dir::RemoteDir, run::zdm_run_in, unique_name, KeyspaceGuard, Run,
    Sandbox,
};

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
    let ks = unique_name("zdm_data_cdmgate");
    let _guard = KeyspaceGuard::new(&ks);
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
    // CDM corrected the two missing rows: they still count (hazard 4), with the three
    // mismatches it left alone.
    assert_eq!((v.missing, v.mismatched), (2, 3));
    assert!(
        v.summary.contains("2 missing (allowed 0)")
            && v.summary.contains("3 mismatched (allowed 0)")
            && v.summary.contains("CDM wrote 2 corrections"),
        "{}",
        v.summary
    );
    let v = judge(
        Some(&run),
        102,
        CdmJob::DiffData,
        &CdmThresholds {
            missing: 2,
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

/// Hazard 5: CDM (5.6.3 and later) quotes the keyspace of its tracking tables, so a
/// mixed-case keyspace keeps its case; an unquoted read would find the lower-case one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_reads_a_mixed_case_keyspace_where_cdm_writes_it() {
    let cfg = config();
    let c = connect(&cfg).await;
    let lower = unique_name("zdm_data_cdmcase");
    let mixed = lower.replacen("zdm_data_cdmcase", "Zdm_Data_CdmCase", 1);
    let quoted = format!("\"{mixed}\"");
    let _guards = (KeyspaceGuard::new(&lower), KeyspaceGuard::new(&quoted));
    for ks in [&lower, &quoted] {
        exec(
            &c.target,
            &format!(
                "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', \
                 'replication_factor': 1}}"
            ),
        )
        .await;
        for ddl in tracking_ddl(ks) {
            exec(&c.target, &ddl).await;
        }
    }
    // The run CDM wrote, in the mixed-case keyspace; a different one under the lower-case name.
    record_run(
        &c.target,
        (&quoted, "orders"),
        301,
        "MIGRATE",
        "ENDED",
        MIGRATE_DONE,
        &["PASS"; 4],
    )
    .await;
    record_run(
        &c.target,
        (&lower, "orders"),
        301,
        "MIGRATE",
        "STARTED",
        MIGRATE_FAILED,
        &["FAIL"; 2],
    )
    .await;
    let run = read_run(&c.target, &mixed, "orders", 301)
        .await
        .expect("the mixed-case keyspace's tracking tables")
        .expect("run 301");
    assert_eq!(run.status.as_deref(), Some("ENDED"));
    assert_eq!(run.ranges, BTreeMap::from([("PASS".to_string(), 4)]));
    let run = read_run(&c.target, &lower, "orders", 301)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status.as_deref(), Some("STARTED"));
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
            sb.get("SANDBOX_SSH_CONFIG"),
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

/// Stands in for `spark-submit` on the host: records its arguments; while a `hold` file is
/// beside it, says `started` and waits for `go` (the test writes CDM's tracking rows in
/// between, as a CDM run would); with a `fail` file, prints that file to stderr and exits 1,
/// as CDM does when it cannot start.
const STAND_IN: &str = "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\n' \"$@\" > \"$d/argv.txt\"\n\
echo stand-in spark-submit ran\nif [ -f \"$d/hold\" ]; then touch \"$d/started\"; i=0; \
while [ ! -f \"$d/go\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \
rm -f \"$d/started\" \"$d/go\"; fi\nif [ -f \"$d/fail\" ]; then cat \"$d/fail\" >&2; exit 1; fi\nexit 0\n";

/// Runs `book` while the stand-in holds, writing the run's tracking rows (`record`) only once
/// spark-submit has started: the module refuses a run id that is recorded before it runs.
async fn run_recording(
    sb: &Sandbox,
    dir: &Path,
    root: &str,
    book: &str,
    extra: &[&str],
    record: impl std::future::Future<Output = ()>,
) -> Run {
    on_host(sb, &format!("mkdir -p {root} && touch {root}/hold"));
    let (dir2, book2) = (dir.to_path_buf(), book.to_string());
    let extra2: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    let zdm = std::thread::spawn(move || {
        let extra: Vec<&str> = extra2.iter().map(String::as_str).collect();
        zdm_run(&Sandbox::load(), &dir2, &book2, &extra)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while on_host(
        sb,
        &format!("test -e {root}/started && echo yes || echo no"),
    )
    .trim()
        != "yes"
    {
        assert!(
            !zdm.is_finished(),
            "zdm-run ended before spark-submit started"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the stand-in spark-submit did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    record.await;
    on_host(sb, &format!("rm -f {root}/hold && touch {root}/go"));
    zdm.join().expect("zdm-run thread")
}

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
    let env = Sandbox::load();
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_cdmmod");
    let _guard = KeyspaceGuard::new(&ks);
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
    let passwords = [
        env.get("ZDM_ORIGIN_PASSWORD"),
        env.get("ZDM_TARGET_PASSWORD"),
    ];
    let assert_masked = |out: &str| {
        for pw in passwords {
            assert!(!out.contains(pw), "a password reached the output:\n{out}");
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
    // (JSON: the human line of a changed task shows the plan; the verdict is its msg.)
    let run = run_recording(
        &sb,
        work.path(),
        &root,
        &book(&root, &ks, "diffdata", 7002, ""),
        &["--output", "json"],
        record_run(
            &c.target,
            (&ks, "orders"),
            7002,
            "VALIDATE",
            "ENDED",
            clean,
            &["PASS", "PASS"],
        ),
    )
    .await;
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
            env.get("ZDM_ORIGIN_CONTACT_POINTS").to_string(),
        ),
        (
            "spark.cdm.connect.origin.port",
            env.get("ZDM_ORIGIN_PORT").to_string(),
        ),
        (
            "spark.cdm.connect.origin.username",
            env.get("ZDM_ORIGIN_USERNAME").to_string(),
        ),
        (
            "spark.cdm.connect.origin.password",
            env.get("ZDM_ORIGIN_PASSWORD").to_string(),
        ),
        (
            "spark.cdm.connect.target.host",
            env.get("ZDM_TARGET_CONTACT_POINTS").to_string(),
        ),
        (
            "spark.cdm.connect.target.port",
            env.get("ZDM_TARGET_PORT").to_string(),
        ),
        (
            "spark.cdm.connect.target.username",
            env.get("ZDM_TARGET_USERNAME").to_string(),
        ),
        (
            "spark.cdm.connect.target.password",
            env.get("ZDM_TARGET_PASSWORD").to_string(),
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
    let run = run_recording(
        &sb,
        work.path(),
        &root,
        &book(&root, &ks, "diffdata", 7003, ""),
        &[],
        record_run(
            &c.target,
            (&ks, "orders"),
            7003,
            "VALIDATE",
            "ENDED",
            DIFF_WITH_MISMATCH,
            &["PASS", "DIFF"],
        ),
    )
    .await;
    assert_eq!(run.code, 2, "a failed gate is a failed host:\n{}", run.out);
    assert!(
        run.out.contains("run 7003") && run.out.contains("3 mismatched (allowed 0)"),
        "{}",
        run.out
    );
    assert_masked(&run.out);
    // Hazard 4: the two missing rows CDM corrected still count (a correction is a write with
    // origin's writetime, not a row shown to match)...
    assert!(
        run.out.contains("2 missing (allowed 0)") && run.out.contains("CDM wrote 2 corrections"),
        "{}",
        run.out
    );
    // ...and the run passes when the task allows them all.
    let run = run_recording(
        &sb,
        work.path(),
        &root,
        &book(
            &root,
            &ks,
            "diffdata",
            7013,
            "        max_missing: 2\n        max_mismatched: 3\n",
        ),
        &[],
        record_run(
            &c.target,
            (&ks, "orders"),
            7013,
            "VALIDATE",
            "ENDED",
            DIFF_WITH_MISMATCH,
            &["PASS", "DIFF"],
        ),
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.out);

    // A failed migrate run, and a run id CDM never recorded, both fail.
    let run = run_recording(
        &sb,
        work.path(),
        &root,
        &book(&root, &ks, "migrate", 7004, ""),
        &[],
        record_run(
            &c.target,
            (&ks, "orders"),
            7004,
            "MIGRATE",
            "STARTED",
            MIGRATE_FAILED,
            &["PASS", "FAIL"],
        ),
    )
    .await;
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

/// Hazards 1 to 3 with the module on a real host: a reused run id is refused before
/// spark-submit runs (CDM would refuse it and the gate would read the old run); a resume whose
/// previous run left nothing pending passes on that run (CDM records no new run then); and a
/// CDM that fails before its tracking tables exist is reported with its own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zdm_cdm_refuses_a_used_run_id_accepts_a_resume_with_nothing_pending_and_shows_why_cdm_failed(
) {
    let sb = Sandbox::load();
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_cdmhaz");
    let _guard = KeyspaceGuard::new(&ks);
    let remote = RemoteDir::new(&sb, &["zdm-h1"], "cdmhaz");
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

    // Hazard 2: run id 7020 is recorded already (a finished, clean run).
    let clean = "Read: 10; Valid: 10; Mismatch: 0; Corrected Mismatch: 0; Missing: 0; \
                 Corrected Missing: 0; Skipped: 0; Error: 0; Partitions Passed: 2; \
                 Partitions Failed: 0";
    record_run(
        &c.target,
        (&ks, "orders"),
        7020,
        "VALIDATE",
        "ENDED",
        clean,
        &["PASS", "PASS"],
    )
    .await;
    let run = zdm_run(
        &sb,
        work.path(),
        &book(&root, &ks, "diffdata", 7020, ""),
        &[],
    );
    assert_eq!(run.code, 2, "a reused run id must fail:\n{}", run.out);
    assert!(
        run.out.contains("CDM run id 7020 is already recorded") && run.out.contains("status ENDED"),
        "{}",
        run.out
    );
    assert_eq!(
        on_host(
            &sb,
            &format!("test -e {root}/argv.txt && echo ran || echo not")
        )
        .trim(),
        "not",
        "spark-submit ran for a refused run id"
    );

    // Hazard 1: run 7030 finished every range; resuming it records nothing and exits 0.
    record_run(
        &c.target,
        (&ks, "orders"),
        7030,
        "MIGRATE",
        "ENDED",
        MIGRATE_DONE,
        &["PASS"; 4],
    )
    .await;
    let run = zdm_run(
        &sb,
        work.path(),
        &book(
            &root,
            &ks,
            "migrate",
            7031,
            "        previous_run_id: 7030\n",
        ),
        &["--output", "json"],
    );
    assert_eq!(run.code, 0, "{}", run.out);
    let start = run.out.find('{').expect("a JSON document");
    let doc: serde_json::Value = serde_json::Deserializer::from_str(&run.out[start..])
        .into_iter()
        .next()
        .expect("a JSON document")
        .expect("valid JSON");
    let msg = doc["plays"][0]["tasks"][2]["hosts"]["zdm-h1"]["msg"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("run 7031 resumed run 7030") && msg.contains("nothing was pending"),
        "{}",
        run.out
    );
    // ...but a resume of a run with failed ranges that records nothing is no success.
    record_run(
        &c.target,
        (&ks, "orders"),
        7032,
        "MIGRATE",
        "ENDED",
        MIGRATE_FAILED,
        &["PASS", "FAIL"],
    )
    .await;
    let run = zdm_run(
        &sb,
        work.path(),
        &book(
            &root,
            &ks,
            "migrate",
            7033,
            "        previous_run_id: 7032\n",
        ),
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.out);
    assert!(
        run.out.contains("1 ranges of run 7032 are pending"),
        "{}",
        run.out
    );

    // Hazard 3: CDM fails before it creates its tracking tables (a keyspace that has none).
    let error = "Exception in thread \"main\" com.datastax.oss.driver.api.core.\
                 AllNodesFailedException: Could not reach any contact point";
    on_host(
        &sb,
        &format!("printf '%s\\n' 'INFO starting' '{error}' > {root}/fail"),
    );
    let bare = unique_name("zdm_data_cdmnone");
    let run = zdm_run(
        &sb,
        work.path(),
        &book(&root, &bare, "migrate", 7040, ""),
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.out);
    assert!(
        run.out.contains("spark-submit exited 1") && run.out.contains("AllNodesFailedException"),
        "CDM's own error must be shown:\n{}",
        run.out
    );
    on_host(&sb, &format!("rm -f {root}/fail"));
}
