//! Phase 2's CDM backfill (`playbooks/tasks/backfill-cdm.yml`, what `phase2.yml` runs with
//! `zdm_backfill_engine: cdm`) end to end: the real Cassandra Data Migrator 5.8.1 jar on the
//! sandbox's standalone Spark 3.5.8 cluster (master on the control side, one worker on zdm-h1
//! and one on zdm-h2), the driver on zdm-h3 over SSH, against the real origin and target.
//!
//! Pass: Migrate copies every row and DiffData finds them all equal; both tasks pass on CDM's
//! own tracking rows, and executors ran on both workers. Fail: a row deleted on target and a
//! row changed on target after origin's write; DiffData alone (`--skip-tags cdm_migrate`) with
//! autocorrection writes origin's rows with origin's writetime, so target keeps its newer
//! state; CDM reports them as corrected, and the gate still fails on them (a correction is not
//! a match).
//!
//! CDM's jar is no registry's artefact: the test takes it from `../shared/cdm/` beside the
//! repository. Where that is absent (a clone elsewhere) the test prints that it did not run
//! and why, and returns.

mod data_support;

use data_support::{config, connect, rows};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use scylla::value::CqlValue;
use zdm_testkit::{
    keyspace::exec, remote_dir::RemoteDir, run::zdm_run_in, unique_name, KeyspaceGuard, Run,
    Sandbox,
};

const JAR: &str = "cassandra-data-migrator-5.8.1.jar";
const ROWS: i32 = 200;
/// The driver's host: neither worker's, so executors really talk to it over the network.
const DRIVER: (&str, &str) = ("zdm-h3", "10.213.0.13");
/// Short-lived JVMs on a small machine: most of a job's time is JIT compilation and start-up.
const JVM_OPTS: &str = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC";

fn jar() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/cdm")
        .join(JAR);
    p.is_file().then(|| p.canonicalize().unwrap())
}

/// The applications each worker has run executors for (its work directory).
fn apps(sb: &Sandbox, worker: usize) -> BTreeSet<String> {
    let dir = Path::new(sb.get("SANDBOX_DIR")).join(format!("spark/worker{worker}/work"));
    std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("app-"))
                .collect()
        })
        .unwrap_or_default()
}

fn playbook(sb: &Sandbox, ks: &str, jar: &Path, root: &str) -> String {
    let tasks = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/tasks/backfill-cdm.yml");
    format!(
        r#"- hosts: proxies
  gather_facts: false
  vars:
    zdm_cdm_tables: ["{ks}.orders"]
    zdm_cdm_jar: "{jar}"
    zdm_cdm_spark_submit: "{submit}"
    zdm_cdm_master: "{master}"
    zdm_cdm_host: {driver}
    zdm_cdm_driver_memory: 512m
    zdm_cdm_executor_memory: 512m
    zdm_cdm_spark_args: ["--conf", "spark.driver.host={ip}", "--conf", "spark.driver.bindAddress={ip}", "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.extraJavaOptions={jvm}", "--conf", "spark.executor.extraJavaOptions={jvm}"]
    zdm_cdm_num_parts: 8
    zdm_cdm_dir: "{root}"
  tasks:
    - import_tasks: {tasks}
"#,
        jar = jar.display(),
        submit = sb.get("SANDBOX_SPARK_SUBMIT"),
        master = sb.get("SANDBOX_SPARK_MASTER"),
        driver = DRIVER.0,
        ip = DRIVER.1,
        jvm = JVM_OPTS,
        tasks = tasks.display(),
    )
}

fn run_book(sb: &Sandbox, dir: &Path, book: &str, extra: &[&str]) -> Run {
    std::fs::write(dir.join("site.yml"), book).unwrap();
    let args: Vec<&str> = extra.iter().copied().chain(["site.yml"]).collect();
    zdm_run_in(sb, dir, &args)
}

/// (run_type, status, run_info) of every run CDM recorded for `orders`, oldest first.
async fn recorded(session: &scylla::client::session::Session, ks: &str) -> Vec<[String; 3]> {
    let text = |v: &Option<CqlValue>| match v {
        Some(CqlValue::Text(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    rows(
        session,
        &format!(
            "SELECT run_type, status, run_info FROM {ks}.cdm_run_info WHERE table_name = 'orders'"
        ),
    )
    .await
    .iter()
    .map(|r| {
        [
            text(&r.columns[0]),
            text(&r.columns[1]),
            text(&r.columns[2]),
        ]
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase2_cdm_backfill_runs_migrate_and_diffdata_on_the_spark_cluster() {
    let Some(jar) = jar() else {
        eprintln!(
            "NOT RUN: phase2_cdm_backfill_runs_migrate_and_diffdata_on_the_spark_cluster needs \
             the Cassandra Data Migrator jar at {}/../shared/cdm/{JAR}, which is absent (CDM is \
             published only on GitHub; see that directory's README where it exists)",
            env!("CARGO_MANIFEST_DIR")
        );
        return;
    };
    let sb = Sandbox::load();
    assert!(
        sb.var("SANDBOX_SPARK_MASTER").is_some(),
        "the sandbox has no Spark cluster: run scripts/sandbox.sh up (or spark-up)"
    );
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_cdmspark");
    let _guard = KeyspaceGuard::new(&ks);
    let remote = RemoteDir::new(&sb, &[DRIVER.0], "cdmspark");
    let work = tempfile::tempdir().unwrap();
    for s in [&c.origin, &c.target] {
        exec(
            s,
            &format!(
                "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', \
                 'replication_factor': 1}}"
            ),
        )
        .await;
        exec(
            s,
            &format!("CREATE TABLE {ks}.orders (id int PRIMARY KEY, item text, qty int)"),
        )
        .await;
    }
    for id in 0..ROWS {
        exec(
            &c.origin,
            &format!(
                "INSERT INTO {ks}.orders (id, item, qty) VALUES ({id}, 'item-{id}', {})",
                id % 7
            ),
        )
        .await;
    }
    let book = playbook(&sb, &ks, &jar, &remote.path);
    let before = (apps(&sb, 1), apps(&sb, 2));

    // Pass: Migrate, then DiffData finds every row equal.
    let run = run_book(&sb, work.path(), &book, &[]);
    assert_eq!(run.code, 0, "{}", run.out);
    assert_eq!(
        zdm_testkit::keyspace::count(&c.target, &format!("{ks}.orders")).await,
        ROWS as i64
    );
    let runs = recorded(&c.target, &ks).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let migrate = runs
        .iter()
        .find(|r| r[0] == "MIGRATE")
        .expect("a MIGRATE run");
    let validate = runs
        .iter()
        .find(|r| r[0] == "VALIDATE")
        .expect("a VALIDATE run");
    assert_eq!(migrate[1], "ENDED", "{runs:?}");
    assert!(migrate[2].contains(&format!("Write: {ROWS}")), "{runs:?}");
    assert_eq!(validate[1], "ENDED", "{runs:?}");
    assert!(
        validate[2].contains(&format!("Valid: {ROWS}"))
            && validate[2].contains("Missing: 0")
            && validate[2].contains("Mismatch: 0"),
        "{runs:?}"
    );
    let after = (apps(&sb, 1), apps(&sb, 2));
    assert!(
        after.0.difference(&before.0).count() == 2 && after.1.difference(&before.1).count() == 2,
        "each job had an executor on both workers: before {before:?}, after {after:?}"
    );

    // Fail: target changed after origin's writes (a row deleted, a row updated), so origin's
    // rows, written with origin's writetime, cannot bring them back.
    exec(&c.target, &format!("DELETE FROM {ks}.orders WHERE id = 17")).await;
    exec(
        &c.target,
        &format!("UPDATE {ks}.orders SET item = 'changed on target' WHERE id = 42"),
    )
    .await;
    // Only DiffData this time (the playbook's tags), with autocorrection.
    let run = run_book(
        &sb,
        work.path(),
        &book,
        &["--skip-tags", "cdm_migrate", "-e", "zdm_autocorrect=true"],
    );
    assert_eq!(run.code, 2, "the DiffData gate must fail:\n{}", run.out);
    for part in [
        "1 missing (allowed 0)",
        "1 mismatched (allowed 0)",
        "CDM wrote 2 corrections",
    ] {
        assert!(run.out.contains(part), "{part} missing from:\n{}", run.out);
    }
    let runs = recorded(&c.target, &ks).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    // CDM counted both as corrected, yet target still differs from origin.
    assert!(
        runs.iter().any(|r| r[0] == "VALIDATE"
            && r[2].contains("Corrected Missing: 1")
            && r[2].contains("Corrected Mismatch: 1")),
        "{runs:?}"
    );
    let gone = rows(
        &c.target,
        &format!("SELECT id FROM {ks}.orders WHERE id = 17"),
    )
    .await;
    assert!(gone.is_empty(), "the newer delete on target stays");
}
