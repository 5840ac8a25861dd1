//! An interrupted migrate resumes without re-copying the ranges it finished, and ranges recorded
//! as failed are retried. An interrupted validate resumes without re-reading finished ranges and
//! reports the same totals as an uninterrupted run.

mod data_support;

use data_support::*;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zdm_run::data::checkpoint::{self, Checkpoint, ValidateCheckpoint};
use zdm_run::data::{
    migrate, validate, MigrateSummary, NoProgress, Selection, ValidateOptions, ValidationReport,
};
use zdm_testkit::{keyspace::*, unique_name, KeyspaceGuard, Sandbox};

const SPLITS: u32 = 64;

/// Kills the child on drop so a failed assertion never leaves a migrate running.
struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn migrate_command(table: &str, state: &std::path::Path, extra: &[&str]) -> Command {
    data_command("migrate", table, state, extra)
}

fn data_command(verb: &str, table: &str, state: &std::path::Path, extra: &[&str]) -> Command {
    let env = Sandbox::load();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zdm-run"));
    cmd.args([verb, "--table", table, "--splits", &SPLITS.to_string()])
        .args(["--concurrency", "2"])
        .args([
            "--origin-contact-points",
            env.get("ZDM_ORIGIN_CONTACT_POINTS"),
        ])
        .args(["--origin-port", env.get("ZDM_ORIGIN_PORT")])
        .args(["--origin-username", env.get("ZDM_ORIGIN_USERNAME")])
        .args([
            "--target-contact-points",
            env.get("ZDM_TARGET_CONTACT_POINTS"),
        ])
        .args(["--target-port", env.get("ZDM_TARGET_PORT")])
        .args(["--target-username", env.get("ZDM_TARGET_USERNAME")])
        // Passwords through the environment, not the command line (visible in ps).
        .env("ZDM_DATA_ORIGIN_PASSWORD", env.get("ZDM_ORIGIN_PASSWORD"))
        .env("ZDM_DATA_TARGET_PASSWORD", env.get("ZDM_TARGET_PASSWORD"))
        .arg("--state-dir")
        .arg(state)
        .args(extra);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_migrate_resumes_without_recopying_finished_ranges() {
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_resume");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.kv");
    create_schema(
        &c,
        &ks,
        &[format!("CREATE TABLE {table} (k int PRIMARY KEY, v text)")],
    )
    .await;
    const ROWS: i32 = 20_000;
    load_kv(&c.origin, &table, ROWS, 1_000_000).await;

    let state = tempfile::tempdir().unwrap();
    let cp_path = state.path().join("migrate-checkpoint.json");
    // About 10 s at 2000 rows/s: killed after a quarter of the ranges.
    let child = migrate_command(&table, state.path(), &["--origin-rate", "2000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zdm-run migrate");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "migrate never finished 16 ranges"
        );
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("migrate exited early with {status}");
        }
        if let Ok(Some(cp)) = Checkpoint::load_for_resume(&cp_path, Some(SPLITS)) {
            if cp.tables.get(&table).is_some_and(|t| t.done.len() >= 16) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let cp = Checkpoint::load_for_resume(&cp_path, Some(SPLITS))
        .unwrap()
        .expect("an interrupted run leaves a resumable checkpoint");
    let done = cp.tables[&table].done.clone();
    assert!(
        done.len() >= 16 && done.len() < SPLITS as usize,
        "{} ranges done",
        done.len()
    );
    let rows_done: u64 = done.values().sum();
    assert!(rows_done > 0);

    // Evidence independent of the engine's own counters: change some origin rows of finished
    // ranges with a newer writetime. A resumed run that copied those ranges again would carry
    // the change to target (its timestamp wins); one that skips them leaves target as it was.
    let token_of = tokens(&c.origin, &table).await;
    let mut altered: Vec<i32> = token_of
        .iter()
        .filter(|(_, t)| done.contains_key(&range_of(**t, SPLITS)))
        .map(|(k, _)| *k)
        .collect();
    altered.sort_unstable();
    altered.truncate(5);
    assert!(!altered.is_empty());
    for k in &altered {
        exec(
            &c.origin,
            &format!("UPDATE {table} USING TIMESTAMP 1000005 SET v = 'changed after the kill' WHERE k = {k}"),
        )
        .await;
    }

    let out = migrate_command(&table, state.path(), &[])
        .output()
        .expect("run zdm-run migrate again");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: MigrateSummary = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("migrate-report.json")).unwrap(),
    )
    .unwrap();
    let t = &report.tables[0];
    assert_eq!(t.ranges_resumed as usize, done.len());
    assert_eq!(t.ranges_copied as usize, SPLITS as usize - done.len());
    assert_eq!(
        t.rows_read,
        ROWS as u64 - rows_done,
        "finished ranges were read again"
    );
    let cp: Checkpoint = serde_json::from_str(&std::fs::read_to_string(&cp_path).unwrap()).unwrap();
    assert!(cp.finished.is_some(), "a finished run records its summary");
    assert_eq!(cp.tables[&table].done.len(), SPLITS as usize);

    assert_eq!(count(&c.target, &table).await, ROWS as i64);
    for k in &altered {
        let r = rows(&c.target, &format!("SELECT v FROM {table} WHERE k = {k}")).await;
        assert_eq!(
            r[0].columns[0],
            Some(scylla::value::CqlValue::Text(format!("v{k}"))),
            "key {k} of a finished range was copied again by the resumed run"
        );
    }
    let sel = Selection {
        keyspaces: vec![],
        tables: vec![(ks.clone(), "kv".into())],
    };
    let mut vcfg = cfg.clone();
    vcfg.splits = Some(SPLITS);
    let r = validate(&vcfg, &sel, &ValidateOptions::default(), &NoProgress)
        .await
        .unwrap();
    // Exactly the rows changed on origin after the kill differ; everything else was copied.
    assert_eq!(
        (r.missing, r.mismatched, r.extra),
        (0, altered.len() as u64, 0),
        "{}",
        r.human()
    );
    let mut mismatched: Vec<i32> = r.tables[0]
        .mismatched_rows
        .iter()
        .map(|m| m.key["k"].parse().unwrap())
        .collect();
    mismatched.sort_unstable();
    assert_eq!(mismatched, altered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_ranges_are_retried_and_done_ranges_skipped() {
    let mut cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_retry");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.kv");
    create_schema(
        &c,
        &ks,
        &[format!("CREATE TABLE {table} (k int PRIMARY KEY, v text)")],
    )
    .await;
    load_kv(&c.origin, &table, 2000, 1_000_000).await;
    let token_of = tokens(&c.origin, &table).await;
    let splits = 16;

    // A checkpoint from an "earlier run": ranges 0-3 done (but never actually copied, so any
    // re-copy would show on target), range 4 failed.
    let dir = tempfile::tempdir().unwrap();
    let cp_path = dir.path().join("cp.json");
    let mut cp = Checkpoint::new(splits);
    for r in 0..4 {
        cp.table(&table).done.insert(r, 0);
    }
    cp.table(&table).failed.insert(4, "read timeout".into());
    checkpoint::save(&cp_path, &cp).unwrap();

    cfg.splits = Some(splits);
    cfg.checkpoint = Some(cp_path.clone());
    let sel = Selection {
        keyspaces: vec![ks.clone()],
        tables: vec![],
    };
    let s = migrate(&cfg, &sel, &NoProgress).await.expect("migrate");
    let t = &s.tables[0];
    assert_eq!(
        (t.ranges_resumed, t.ranges_copied, t.ranges_failed),
        (4, 12, 0)
    );
    let skipped = token_of
        .values()
        .filter(|t| range_of(**t, splits) < 4)
        .count() as i64;
    let retried = token_of
        .values()
        .filter(|t| range_of(**t, splits) == 4)
        .count() as i64;
    assert!(skipped > 0 && retried > 0);
    assert_eq!(t.rows_read as i64, 2000 - skipped);
    assert_eq!(
        count(&c.target, &table).await,
        2000 - skipped,
        "done ranges were skipped, the failed one copied"
    );
    let after: Checkpoint =
        serde_json::from_str(&std::fs::read_to_string(&cp_path).unwrap()).unwrap();
    assert!(after.tables[&table].failed.is_empty());
    assert!(after.finished.is_some());
}

fn read_report(path: &std::path::Path) -> ValidationReport {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading report {}: {e}", path.display()));
    serde_json::from_str(&text).expect("validate report is valid JSON")
}

/// Runs `zdm-run validate` to the end; differences are expected (exit code 2).
fn validate_to_end(table: &str, state: &std::path::Path, extra: &[&str]) -> ValidationReport {
    let out = data_command("validate", table, state, extra)
        .output()
        .expect("run zdm-run validate");
    assert_eq!(
        out.status.code(),
        Some(2),
        "validate must exit 2 on differences\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    read_report(&state.join("validate-report.json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_validate_resumes_without_rereading_finished_ranges() {
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_vresume");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.kv");
    create_schema(
        &c,
        &ks,
        &[format!("CREATE TABLE {table} (k int PRIMARY KEY, v text)")],
    )
    .await;
    const ROWS: i32 = 20_000;
    const TS: i64 = 1_000_000;
    load_kv(&c.origin, &table, ROWS, TS).await;
    load_kv(&c.target, &table, ROWS, TS).await;
    // Differences spread over the ring: 40 missing, 30 mismatched, 20 extra (old timestamps, so
    // the cut-off judges them).
    for k in 0..40 {
        exec(
            &c.target,
            &format!(
                "DELETE FROM {table} USING TIMESTAMP {} WHERE k = {k}",
                TS + 1
            ),
        )
        .await;
    }
    for k in 100..130 {
        exec(
            &c.target,
            &format!(
                "INSERT INTO {table} (k, v) VALUES ({k}, 'changed') USING TIMESTAMP {}",
                TS + 1
            ),
        )
        .await;
    }
    for k in ROWS..ROWS + 20 {
        exec(
            &c.target,
            &format!("INSERT INTO {table} (k, v) VALUES ({k}, 'x') USING TIMESTAMP {TS}"),
        )
        .await;
    }

    // Interrupted run: about 10 s at 2000 rows/s, killed after a quarter of the ranges.
    let state = tempfile::tempdir().unwrap();
    let cp_path = state.path().join("validate-checkpoint.json");
    let child = data_command("validate", &table, state.path(), &["--origin-rate", "2000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zdm-run validate");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let read_cp = || -> Option<ValidateCheckpoint> {
        serde_json::from_str(&std::fs::read_to_string(&cp_path).ok()?).ok()
    };
    loop {
        assert!(
            Instant::now() < deadline,
            "validate never finished 16 ranges"
        );
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("validate exited early with {status}");
        }
        if read_cp().is_some_and(|cp| cp.tables.get(&table).is_some_and(|t| t.done.len() >= 16)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let cp = read_cp().expect("an interrupted validate leaves a checkpoint");
    assert!(cp.finished.is_none());
    let done = cp.tables[&table].done.clone();
    assert!(
        done.len() >= 16 && done.len() < SPLITS as usize,
        "{} ranges done",
        done.len()
    );

    // What an uninterrupted run reports (its own state directory).
    let fresh_state = tempfile::tempdir().unwrap();
    let full = validate_to_end(&table, fresh_state.path(), &["--fresh"]);
    assert_eq!(
        (
            full.missing,
            full.mismatched,
            full.extra,
            full.rows_compared
        ),
        (40, 30, 20, ROWS as u64),
        "{}",
        full.human()
    );

    // Now hide one more row on target in a range the interrupted run already finished: a resumed
    // run that read that range again would report it as missing.
    let token_of = tokens(&c.origin, &table).await;
    let (&hidden, _) = token_of
        .iter()
        .filter(|(k, _)| **k >= 1000)
        .find(|(_, t)| done.contains_key(&range_of(**t, SPLITS)))
        .expect("a key in a finished range");
    exec(
        &c.target,
        &format!(
            "DELETE FROM {table} USING TIMESTAMP {} WHERE k = {hidden}",
            TS + 1
        ),
    )
    .await;

    let resumed = validate_to_end(&table, state.path(), &[]);
    let t = &resumed.tables[0];
    assert_eq!(t.ranges_resumed as usize, done.len(), "{}", resumed.human());
    assert_eq!(t.ranges_checked, SPLITS);
    assert_eq!(
        (
            resumed.missing,
            resumed.mismatched,
            resumed.extra,
            resumed.rows_compared
        ),
        (
            full.missing,
            full.mismatched,
            full.extra,
            full.rows_compared
        ),
        "the resumed run re-read a finished range or lost its counts\n{}",
        resumed.human()
    );
    assert_eq!(resumed.cutoff_writetime, cp.cutoff, "the cut-off is kept");
    let after = read_cp().unwrap();
    assert!(
        after.finished.is_some(),
        "a finished validation records its summary"
    );

    // The hidden row is really there to be found: a run with --fresh sees it.
    let again = validate_to_end(&table, state.path(), &["--fresh"]);
    assert_eq!(again.missing, full.missing + 1, "{}", again.human());
    assert_eq!(again.tables[0].ranges_resumed, 0);
}
