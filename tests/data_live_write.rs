//! A dual write that lands on target while the backfill runs is never overwritten by the older
//! origin row the backfill copies afterwards.

mod data_support;

use data_support::*;

use std::time::{Duration, Instant};

use scylla::value::CqlValue;
use zdm_run::data::checkpoint::Checkpoint;
use zdm_run::data::{
    migrate, validate, Cutoff, DataConfig, NoProgress, Selection, ValidateOptions, ValidationReport,
};
use zdm_testkit::{keyspace::*, unique_name, KeyspaceGuard};

const OLD: i64 = 1_500_000_000_000_000;
const ROWS: i32 = 3000;
const SPLITS: u32 = 64;
const CONCURRENCY: usize = 2;

/// Validates with `opts`, origin's rate limit lifted.
async fn validated(cfg: &DataConfig, sel: &Selection, opts: ValidateOptions) -> ValidationReport {
    let mut cfg = cfg.clone();
    cfg.origin.rate_limit = None;
    validate(&cfg, sel, &opts, &NoProgress)
        .await
        .expect("validate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_write_made_during_backfill_survives() {
    let mut cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_live");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.kv");
    create_schema(
        &c,
        &ks,
        &[format!("CREATE TABLE {table} (k int PRIMARY KEY, v text)")],
    )
    .await;
    load_kv(&c.origin, &table, ROWS, OLD).await;
    let token_of = tokens(&c.origin, &table).await;

    let dir = tempfile::tempdir().unwrap();
    let cp_path = dir.path().join("cp.json");
    cfg.splits = Some(SPLITS);
    cfg.concurrency = CONCURRENCY;
    cfg.checkpoint = Some(cp_path.clone());
    // Slow enough (about 12 s) that the dual writes land in the middle of the copy, even on a
    // loaded machine where the 300 writes below take several seconds (at 500 rows/s the copy
    // once finished before they did).
    cfg.origin.rate_limit = Some(250);
    let sel = Selection {
        keyspaces: vec![ks.clone()],
        tables: vec![],
    };
    let task = {
        let (cfg, sel) = (cfg.clone(), sel.clone());
        tokio::spawn(async move { migrate(&cfg, &sel, &NoProgress).await })
    };

    // Wait until a few ranges are done, then dual-write newer values to target.
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        assert!(
            Instant::now() < deadline,
            "the backfill never made progress"
        );
        if let Ok(Some(cp)) = Checkpoint::load_for_resume(&cp_path, Some(SPLITS)) {
            let d = cp.tables.get(&table).map(|t| t.done.len()).unwrap_or(0);
            if d >= 4 {
                break d;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        done < SPLITS as usize / 2,
        "the copy went too fast to race with"
    );
    let live_ts = now_micros();
    let updated: Vec<i32> = (0..ROWS).step_by(10).collect();
    for k in &updated {
        exec(
            &c.target,
            &format!("UPDATE {table} USING TIMESTAMP {live_ts} SET v = 'live{k}' WHERE k = {k}"),
        )
        .await;
    }
    // Ranges are started in index order, so once the live writes are all in, the ranges past
    // (finished + in flight) had not been read yet: the backfill wrote their old values later.
    let done_after = Checkpoint::load_for_resume(&cp_path, Some(SPLITS))
        .unwrap()
        .expect("the copy is still running")
        .tables[&table]
        .done
        .len();
    let not_started = updated
        .iter()
        .filter(|k| range_of(token_of[k], SPLITS) as usize >= done_after + CONCURRENCY)
        .count();
    assert!(
        not_started > 10,
        "only {not_started} live writes preceded their copy"
    );

    let summary = task.await.unwrap().expect("migrate");
    assert_eq!((summary.rows_read, summary.ranges_failed), (ROWS as u64, 0));
    for k in &updated {
        let r = rows(
            &c.target,
            &format!("SELECT v, writetime(v) FROM {table} WHERE k = {k}"),
        )
        .await;
        assert_eq!(
            r[0].columns[0],
            Some(CqlValue::Text(format!("live{k}"))),
            "key {k}"
        );
        assert_eq!(r[0].columns[1], Some(CqlValue::BigInt(live_ts)));
    }
    // Rows nobody touched carry origin's old writetime.
    let r = rows(
        &c.target,
        &format!("SELECT writetime(v) FROM {table} WHERE k = 1"),
    )
    .await;
    assert_eq!(r[0].columns[0], Some(CqlValue::BigInt(OLD)));
    assert_eq!(count(&c.target, &table).await, ROWS as i64);

    // Validation's writetime cut-off: the live writes are newer than the cut-off, so they are
    // live traffic, not differences; without a cut-off they are all reported.
    let judged = |cutoff| {
        let opts = ValidateOptions {
            cutoff,
            ..ValidateOptions::default()
        };
        validated(&cfg, &sel, opts)
    };
    let r = judged(Cutoff::At(live_ts - 1)).await;
    assert_eq!(
        (r.missing, r.mismatched, r.extra, r.skipped_recent),
        (0, 0, 0, updated.len() as u64),
        "{}",
        r.human()
    );
    let r = judged(Cutoff::None).await;
    assert_eq!((r.mismatched, r.skipped_recent), (updated.len() as u64, 0));

    // Once origin has the dual writes too, the clusters are identical, timestamps included.
    for k in &updated {
        exec(
            &c.origin,
            &format!("UPDATE {table} USING TIMESTAMP {live_ts} SET v = 'live{k}' WHERE k = {k}"),
        )
        .await;
    }
    let with_times = |cutoff| ValidateOptions {
        compare_writetime: true,
        cutoff,
        ..ValidateOptions::default()
    };
    let r = validated(&cfg, &sel, with_times(Cutoff::StartOfRun)).await;
    assert_eq!(
        (r.missing, r.mismatched, r.extra, r.rows_compared),
        (0, 0, 0, ROWS as u64),
        "{}",
        r.human()
    );

    // Values are read first and times only where values differ: with both clusters equal, the
    // rows written after the cut-off are compared (and equal), not set aside as live traffic.
    // Comparing writetimes reads them for every row, so those rows are told apart again.
    let after_live = Cutoff::At(live_ts - 1);
    let r = judged(after_live).await;
    assert_eq!(
        (
            r.missing + r.mismatched + r.extra,
            r.rows_compared,
            r.skipped_recent
        ),
        (0, ROWS as u64, 0),
        "{}",
        r.human()
    );
    let r = validated(&cfg, &sel, with_times(after_live)).await;
    assert_eq!(
        (r.missing + r.mismatched + r.extra, r.skipped_recent),
        (0, updated.len() as u64),
        "{}",
        r.human()
    );
}
