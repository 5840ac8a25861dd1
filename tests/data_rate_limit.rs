//! The per-cluster rate limits hold a run to rows/s (a lower bound on its duration: the first
//! reservation starts at once, so N rows at R rows/s take at least (N - one page) / R), and the
//! split count is derived from origin's size estimates unless set.

mod data_support;

use data_support::*;

use std::time::{Duration, Instant};

use zdm_run::data::{migrate, NoProgress, Selection};
use zdm_testkit::{keyspace::*, unique_name, KeyspaceGuard};

const ROWS: i32 = 3000;
const RATE: u32 = 1000;
const PAGE: i32 = 100;

async fn kv_table(test: &str) -> (zdm_run::data::DataConfig, Clusters, String, KeyspaceGuard) {
    let mut cfg = config();
    cfg.splits = Some(8);
    cfg.concurrency = 4;
    cfg.page_size = PAGE;
    let c = connect(&cfg).await;
    let ks = unique_name(&format!("zdm_data_{test}"));
    let guard = KeyspaceGuard::new(&ks);
    create_schema(
        &c,
        &ks,
        &[format!("CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)")],
    )
    .await;
    load_kv(&c.origin, &format!("{ks}.kv"), ROWS, 1_000_000).await;
    (cfg, c, ks, guard)
}

fn least(rows: i32) -> Duration {
    Duration::from_secs_f64((rows - PAGE) as f64 / RATE as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_and_target_rate_limits_hold_migrate_to_rows_per_second() {
    let (mut cfg, c, ks, _guard) = kv_table("rate").await;
    let sel = Selection {
        keyspaces: vec![ks.clone()],
        tables: vec![],
    };

    cfg.origin.rate_limit = Some(RATE);
    let start = Instant::now();
    let s = migrate(&cfg, &sel, &NoProgress).await.expect("migrate");
    let took = start.elapsed();
    assert_eq!((s.rows_read, s.ranges_failed), (ROWS as u64, 0));
    assert!(
        took >= least(ROWS),
        "{ROWS} rows at --origin-rate {RATE} took {took:?}, less than {:?}",
        least(ROWS)
    );

    // Target's limit counts rows written too.
    exec(&c.target, &format!("TRUNCATE {ks}.kv")).await;
    cfg.origin.rate_limit = None;
    cfg.target.rate_limit = Some(RATE);
    let start = Instant::now();
    let s = migrate(&cfg, &sel, &NoProgress).await.expect("migrate");
    let took = start.elapsed();
    assert_eq!((s.rows_read, s.ranges_failed), (ROWS as u64, 0));
    assert_eq!(count(&c.target, &format!("{ks}.kv")).await, ROWS as i64);
    assert!(
        took >= least(ROWS),
        "{ROWS} rows at --target-rate {RATE} took {took:?}, less than {:?}",
        least(ROWS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_count_comes_from_size_estimates_unless_set() {
    let (mut cfg, _c, ks, _guard) = kv_table("splits").await;
    let sel = Selection {
        keyspaces: vec![ks.clone()],
        tables: vec![],
    };
    cfg.splits = None;
    let s = migrate(&cfg, &sel, &NoProgress).await.expect("migrate");
    // A 3000-row table needs no more than the minimum.
    assert_eq!(s.splits, zdm_run::data::sizing::MIN_SPLITS);
    assert_eq!(s.tables[0].ranges_total, s.splits);
    assert!(
        s.splits_reason.contains("size estimates") && s.human().contains("256 token ranges"),
        "{}",
        s.human()
    );
    cfg.splits = Some(8);
    let s = migrate(&cfg, &sel, &NoProgress).await.expect("migrate");
    assert_eq!((s.splits, s.tables[0].ranges_total), (8, 8));
    assert_eq!(s.splits_reason, "as configured");
}
