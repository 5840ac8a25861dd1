//! Varied table shapes survive migrate with their writetimes and TTLs, and validate is clean,
//! with pages so small that ranges span many pages and partitions (and their static cells)
//! cross page boundaries. A page the server refuses for its tombstones is retried smaller, and a
//! batch it refuses as too large is written one by one.

mod data_support;

use data_support::*;

use std::collections::BTreeMap;

use scylla::value::CqlValue;
use zdm_run::data::{migrate, validate, NoProgress, Selection, ValidateOptions};
use zdm_testkit::{keyspace::*, unique_name, KeyspaceGuard};

/// An explicit, old writetime (2020-09-13) so a copy that used "now" would be caught.
const OLD: i64 = 1_600_000_000_000_000;

fn schema(ks: &str) -> Vec<String> {
    vec![
        format!("CREATE TYPE {ks}.address (street text, zip int)"),
        format!(
            "CREATE TABLE {ks}.orders (region text, id int, seq int, \
             owner text STATIC, labels set<text> STATIC, \
             name text, score double, tags set<text>, attrs map<text, int>, history list<int>, \
             addr frozen<address>, home address, data blob, note text, \
             PRIMARY KEY ((region, id), seq))"
        ),
        format!("CREATE TABLE {ks}.sessions (k int PRIMARY KEY, v text, n bigint)"),
    ]
}

async fn load(c: &Clusters, ks: &str) {
    let o = &c.origin;
    for p in 0..60i64 {
        let region = ["eu", "us", "ap"][(p % 3) as usize];
        let base = OLD + p * 1_000_000;
        if p % 10 == 9 {
            // A partition with static cells and no clustering rows.
            exec(o, &format!("INSERT INTO {ks}.orders (region, id, owner) VALUES ('{region}', {p}, 'solo{p}') USING TIMESTAMP {base}")).await;
            continue;
        }
        exec(o, &format!("INSERT INTO {ks}.orders (region, id, owner, labels) VALUES ('{region}', {p}, 'own{p}', {{'l1', 'l2'}}) USING TIMESTAMP {}", base + 1)).await;
        for seq in 0..6i64 {
            let key = format!("region = '{region}' AND id = {p} AND seq = {seq}");
            if seq == 5 && p % 7 == 0 {
                // A row that is only its primary key.
                exec(o, &format!("INSERT INTO {ks}.orders (region, id, seq) VALUES ('{region}', {p}, {seq}) USING TIMESTAMP {}", base + 2)).await;
                continue;
            }
            let ttl = if seq == 1 { " AND TTL 7200" } else { "" };
            exec(o, &format!("INSERT INTO {ks}.orders (region, id, seq, name, score, addr, data) VALUES ('{region}', {p}, {seq}, 'n{p}-{seq}', {seq}.5, {{street: 'main', zip: {seq}}}, 0xcafe{seq:02}) USING TIMESTAMP {}{ttl}", base + 10 + seq)).await;
            if seq % 2 == 0 {
                exec(
                    o,
                    &format!(
                        "UPDATE {ks}.orders USING TIMESTAMP {} SET note = 'later' WHERE {key}",
                        base + 500 + seq
                    ),
                )
                .await;
            }
            exec(
                o,
                &format!(
                    "UPDATE {ks}.orders USING TIMESTAMP {} SET tags = tags + {{'a'}} WHERE {key}",
                    base + 20
                ),
            )
            .await;
            exec(o, &format!("UPDATE {ks}.orders USING TIMESTAMP {} AND TTL 5000 SET tags = tags + {{'b'}}, attrs = attrs + {{'x': {seq}}} WHERE {key}", base + 30)).await;
            if seq % 3 == 0 {
                exec(o, &format!("UPDATE {ks}.orders USING TIMESTAMP {} SET history = [{seq}, {}] WHERE {key}", base + 40, seq + 1)).await;
            }
            if seq % 4 == 0 {
                exec(o, &format!("UPDATE {ks}.orders USING TIMESTAMP {} SET home = {{street: 'side', zip: {seq}}} WHERE {key}", base + 50)).await;
            }
        }
    }
    for k in 0..100i64 {
        let mut using = Vec::new();
        if k % 2 == 0 {
            using.push(format!("TIMESTAMP {}", OLD + k));
        }
        if k % 3 == 0 {
            using.push("TTL 3600".to_string());
        }
        let using = if using.is_empty() {
            String::new()
        } else {
            format!(" USING {}", using.join(" AND "))
        };
        exec(
            o,
            &format!(
                "INSERT INTO {ks}.sessions (k, v, n) VALUES ({k}, 'v{k}', {}){using}",
                k * 1000
            ),
        )
        .await;
    }
}

/// Every non-key column's writetime and ttl, by primary key.
async fn cell_times(
    s: &scylla::client::session::Session,
    ks: &str,
) -> BTreeMap<String, Vec<Option<CqlValue>>> {
    let cols = [
        "owner", "labels", "name", "tags", "attrs", "history", "addr", "home", "note",
    ];
    let sel: Vec<String> = cols
        .iter()
        .map(|c| format!("writetime({c}), ttl({c})"))
        .collect();
    let mut out = BTreeMap::new();
    for r in rows(
        s,
        &format!(
            "SELECT region, id, seq, {} FROM {ks}.orders",
            sel.join(", ")
        ),
    )
    .await
    {
        let key = format!("{:?}", &r.columns[..3]);
        out.insert(key, r.columns[3..].to_vec());
    }
    for r in rows(
        s,
        &format!("SELECT k, writetime(v), ttl(v), writetime(n), ttl(n) FROM {ks}.sessions"),
    )
    .await
    {
        out.insert(
            format!("sessions {:?}", r.columns[0]),
            r.columns[1..].to_vec(),
        );
    }
    out
}

fn ints(v: &Option<CqlValue>) -> Vec<Option<i64>> {
    match v {
        None => vec![None],
        Some(CqlValue::Int(x)) => vec![Some(*x as i64)],
        Some(CqlValue::List(l)) => l
            .iter()
            .map(|x| match x {
                CqlValue::Int(x) => Some(*x as i64),
                _ => None,
            })
            .collect(),
        other => panic!("unexpected ttl {other:?}"),
    }
}

fn ttl_close(a: &Option<CqlValue>, b: &Option<CqlValue>) -> bool {
    let (a, b) = (ints(a), ints(b));
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| match (x, y) {
            (None, None) => true,
            // Remaining TTL counts down; origin was read first, so target may be a little lower.
            (Some(x), Some(y)) => (x - y).abs() <= 60,
            _ => false,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varied_shapes_migrate_then_validate_clean_with_writetime_and_ttl() {
    let mut cfg = config();
    // 4 ranges of ~100 rows read 7 rows at a time: every range takes many pages, and the
    // 6-row partitions (with static cells) straddle page boundaries.
    cfg.splits = Some(4);
    cfg.page_size = 7;
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_shapes");
    let _guard = KeyspaceGuard::new(&ks);
    create_schema(&c, &ks, &schema(&ks)).await;
    load(&c, &ks).await;
    let origin_orders = count(&c.origin, &format!("{ks}.orders")).await;
    let origin_sessions = count(&c.origin, &format!("{ks}.sessions")).await;
    assert!(origin_orders > 300, "{origin_orders}");
    assert!(
        (origin_orders + origin_sessions) / 4 > 7 * 10,
        "ranges must span many pages"
    );

    let sel = Selection {
        keyspaces: vec![ks.clone()],
        tables: vec![],
    };
    let summary = migrate(&cfg, &sel, &NoProgress).await.expect("migrate");
    assert_eq!(summary.ranges_failed, 0, "{}", summary.human());
    assert_eq!(summary.tables.len(), 2);
    assert_eq!(summary.rows_read as i64, origin_orders + origin_sessions);
    assert_eq!(
        count(&c.target, &format!("{ks}.orders")).await,
        origin_orders
    );
    assert_eq!(
        count(&c.target, &format!("{ks}.sessions")).await,
        origin_sessions
    );

    let report = validate(
        &cfg,
        &sel,
        &ValidateOptions {
            compare_writetime: true,
            ..ValidateOptions::default()
        },
        &NoProgress,
    )
    .await
    .expect("validate");
    assert_eq!(
        (
            report.missing,
            report.mismatched,
            report.extra,
            report.ranges_failed
        ),
        (0, 0, 0, 0),
        "{}",
        report.human()
    );
    assert_eq!(report.rows_compared as i64, origin_orders + origin_sessions);

    // Copying again over the copy (as an interrupted range is, or a row a dual write already
    // put on target) changes nothing: no duplicated list elements, still clean.
    migrate(&cfg, &sel, &NoProgress)
        .await
        .expect("second migrate");
    let again = validate(
        &cfg,
        &sel,
        &ValidateOptions {
            compare_writetime: true,
            ..ValidateOptions::default()
        },
        &NoProgress,
    )
    .await
    .expect("validate after a second copy");
    assert_eq!(
        (again.missing, again.mismatched, again.extra),
        (0, 0, 0),
        "{}",
        again.human()
    );
    let h = rows(
        &c.target,
        &format!("SELECT history FROM {ks}.orders WHERE region = 'eu' AND id = 0 AND seq = 0"),
    )
    .await;
    assert_eq!(
        h[0].columns[0],
        Some(CqlValue::List(vec![CqlValue::Int(0), CqlValue::Int(1)]))
    );

    // Independently of the validator: every cell's writetime equal, every TTL kept.
    let (o, t) = (
        cell_times(&c.origin, &ks).await,
        cell_times(&c.target, &ks).await,
    );
    assert_eq!(o.len(), t.len());
    let mut ttl_cells = 0;
    for (key, ov) in &o {
        let tv = t
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing on target"));
        for (i, (a, b)) in ov.iter().zip(tv).enumerate() {
            if i % 2 == 0 {
                assert_eq!(a, b, "writetime of cell {} of {key}", i / 2);
            } else {
                assert!(
                    ttl_close(a, b),
                    "ttl of cell {} of {key}: {a:?} vs {b:?}",
                    i / 2
                );
                if ints(a).iter().any(Option::is_some) {
                    ttl_cells += 1;
                }
            }
        }
    }
    assert!(
        ttl_cells > 50,
        "the data set must contain TTL'd cells ({ttl_cells})"
    );
    // A spot check against the literal input: note of (eu, 0, 2) was written at OLD + 502.
    let r = rows(
        &c.target,
        &format!(
            "SELECT writetime(note) FROM {ks}.orders WHERE region = 'eu' AND id = 0 AND seq = 2"
        ),
    )
    .await;
    assert_eq!(r[0].columns[0], Some(CqlValue::BigInt(OLD + 502)));
}

/// The counter `n` of `page` in `<ks>.hits` on one cluster (None when the row is absent).
async fn hits(s: &scylla::client::session::Session, ks: &str, page: &str) -> Option<i64> {
    s.query_unpaged(
        format!("SELECT n FROM {ks}.hits WHERE page = '{page}'"),
        &[],
    )
    .await
    .expect("read hits")
    .into_rows_result()
    .unwrap()
    .maybe_first_row::<(scylla::value::Counter,)>()
    .unwrap()
    .map(|(c,)| c.0)
}

/// Counters cannot be written with a value: migrate adds origin - target to target's counter,
/// so running it twice does not add twice; validate names a counter that drifted and
/// autocorrect adds the difference back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_tables_are_copied_and_corrected_by_their_difference() {
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_counter");
    let _guard = KeyspaceGuard::new(&ks);
    create_schema(
        &c,
        &ks,
        &[
            format!("CREATE TABLE {ks}.hits (page text PRIMARY KEY, n counter)"),
            format!("CREATE TABLE {ks}.plain (k int PRIMARY KEY, v text)"),
        ],
    )
    .await;
    exec(
        &c.origin,
        &format!("UPDATE {ks}.hits SET n = n + 5 WHERE page = 'home'"),
    )
    .await;
    exec(
        &c.origin,
        &format!("UPDATE {ks}.hits SET n = n + 2 WHERE page = 'about'"),
    )
    .await;
    // Increments dual-written since phase 1 are on both clusters already.
    for s in [&c.origin, &c.target] {
        exec(
            s,
            &format!("UPDATE {ks}.hits SET n = n + 3 WHERE page = 'about'"),
        )
        .await;
    }
    exec(
        &c.origin,
        &format!("INSERT INTO {ks}.plain (k, v) VALUES (1, 'a')"),
    )
    .await;
    let sel = Selection {
        keyspaces: vec![ks.clone()],
        tables: vec![],
    };
    for run in ["first", "second"] {
        let s = migrate(&cfg, &sel, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("{run} migrate: {e:#}"));
        assert!(s.ok(), "{run} migrate: {s:?}");
        assert_eq!(hits(&c.target, &ks, "home").await, Some(5), "{run} migrate");
        assert_eq!(
            hits(&c.target, &ks, "about").await,
            Some(5),
            "{run} migrate"
        );
    }
    assert_eq!(count(&c.target, &format!("{ks}.plain")).await, 1);
    let r = validate(&cfg, &sel, &ValidateOptions::default(), &NoProgress)
        .await
        .expect("validate");
    assert_eq!(
        (r.missing, r.mismatched, r.extra),
        (0, 0, 0),
        "{}",
        r.human()
    );

    // A counter update that reached target only (a retried increment, say).
    exec(
        &c.target,
        &format!("UPDATE {ks}.hits SET n = n + 4 WHERE page = 'home'"),
    )
    .await;
    let r = validate(&cfg, &sel, &ValidateOptions::default(), &NoProgress)
        .await
        .expect("validate");
    assert_eq!(
        (r.missing, r.mismatched, r.extra),
        (0, 1, 0),
        "{}",
        r.human()
    );
    let table = r
        .tables
        .iter()
        .find(|t| t.table.ends_with(".hits"))
        .unwrap();
    assert!(table.counter_table);
    let m = &table.mismatched_rows[0];
    assert_eq!(m.columns["n"], ("5".into(), "9".into()));
    assert!(m.causes["n"].starts_with("counter column"), "{m:?}");

    let fix = ValidateOptions {
        autocorrect_missing: true,
        autocorrect_mismatched: true,
        ..Default::default()
    };
    let r = validate(&cfg, &sel, &fix, &NoProgress)
        .await
        .expect("validate --autocorrect");
    assert_eq!(
        (r.mismatched, r.corrected_mismatched),
        (1, 1),
        "{}",
        r.human()
    );
    assert_eq!(hits(&c.target, &ks, "home").await, Some(5));
    let r = validate(&cfg, &sel, &ValidateOptions::default(), &NoProgress)
        .await
        .expect("validate after autocorrect");
    assert_eq!(
        (r.missing, r.mismatched, r.extra),
        (0, 0, 0),
        "{}",
        r.human()
    );
}

/// Cassandra refuses a read that crosses more than `tombstone_failure_threshold` (100 000 by
/// default) tombstones. 200 live rows each carrying 1 500 deleted set elements: a page of 400
/// or 200 or 100 rows crosses 150 000+ and fails on the server; the scanner halves the page
/// until it passes (50 rows, 75 000), and migrate and validate still see every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_refused_for_its_tombstones_is_retried_smaller() {
    use zdm_run::data::ranges::split_ring;
    use zdm_run::data::scan::{select_cql, RangeScanner, RetryPolicy};

    let mut cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_tombs");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.wide");
    create_schema(
        &c,
        &ks,
        &[format!(
            "CREATE TABLE {table} (p int, c int, v text, s set<int>, PRIMARY KEY (p, c))"
        )],
    )
    .await;
    let deleted: Vec<String> = (0..1500).map(|i| i.to_string()).collect();
    let deleted = deleted.join(", ");
    for row in 0..200 {
        exec(
            &c.origin,
            &format!(
                "INSERT INTO {table} (p, c, v) VALUES (1, {row}, 'v{row}') USING TIMESTAMP {OLD}"
            ),
        )
        .await;
        exec(
            &c.origin,
            &format!(
                "UPDATE {table} USING TIMESTAMP {} SET s = s - {{{deleted}}} WHERE p = 1 AND c = {row}",
                OLD + 1
            ),
        )
        .await;
    }

    // The scanner on its own, on the range holding the partition.
    const SPLITS: u32 = 4;
    let token = match &rows(
        &c.origin,
        &format!("SELECT token(p) FROM {table} WHERE p = 1 LIMIT 1"),
    )
    .await[0]
        .columns[0]
    {
        Some(CqlValue::BigInt(t)) => *t,
        other => panic!("token {other:?}"),
    };
    let range = split_ring(SPLITS)[range_of(token, SPLITS) as usize];
    let sel = Selection {
        keyspaces: vec![],
        tables: vec![(ks.clone(), "wide".into())],
    };
    let t = zdm_run::data::schema::load_tables(&c.origin, "origin", &sel)
        .await
        .expect("schema")
        .remove(0);
    let stmt = c
        .origin
        .prepare(select_cql(&t, true))
        .await
        .expect("prepare");
    let mut scanner = RangeScanner::new(
        &c.origin,
        &stmt,
        range,
        400,
        RetryPolicy {
            attempts: 5,
            backoff: std::time::Duration::from_millis(50),
        },
        None,
    );
    let mut seen = 0;
    while let Some(page) = scanner
        .next_page()
        .await
        .expect("the scan must get through")
    {
        assert!(
            page.len() <= 50,
            "a page of {} rows got through",
            page.len()
        );
        seen += page.len();
    }
    assert_eq!(seen, 200);
    assert!(
        scanner.retries >= 3 && scanner.page_size() == 50,
        "the first pages must have failed on the server and shrunk: {} retries, page {}",
        scanner.retries,
        scanner.page_size()
    );

    // The engine end to end with the same page size.
    cfg.splits = Some(SPLITS);
    cfg.page_size = 400;
    cfg.backoff = std::time::Duration::from_millis(50);
    let summary = migrate(&cfg, &sel, &NoProgress).await.expect("migrate");
    assert_eq!(
        (summary.rows_read, summary.ranges_failed),
        (200, 0),
        "{}",
        summary.human()
    );
    let report = validate(&cfg, &sel, &ValidateOptions::default(), &NoProgress)
        .await
        .expect("validate");
    assert_eq!(
        (
            report.rows_compared,
            report.missing,
            report.mismatched,
            report.ranges_failed
        ),
        (200, 0, 0, 0),
        "{}",
        report.human()
    );
}

/// The sandbox's Cassandra refuses a batch over several partitions larger than
/// `batch_size_fail_threshold` (1 MiB there) with INVALID ("Batch too large"). The writer's
/// classification of that driver error is checked against the real answer, and the writer
/// then sends the writes one by one: every row arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_too_large_is_written_one_by_one() {
    use scylla::statement::batch::{Batch, BatchType};
    use zdm_run::data::copy::{Write, Writer};
    use zdm_run::data::driver_errors::batch_refused_as_a_whole;
    use zdm_run::data::scan::RetryPolicy;

    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_bigbatch");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.t");
    create_schema(
        &c,
        &ks,
        &[format!("CREATE TABLE {table} (p int PRIMARY KEY, v text)")],
    )
    .await;
    // 24 partitions of 64 KiB each: 1.5 MiB in one batch.
    let big = "x".repeat(64 * 1024);
    let cql = format!("INSERT INTO {table} (p, v) VALUES (?, ?) USING TIMESTAMP {OLD}");
    let writes: Vec<Write> = (0..24)
        .map(|p| Write {
            cql: cql.as_str().into(),
            values: vec![Some(CqlValue::Int(p)), Some(CqlValue::Text(big.clone()))],
        })
        .collect();

    let prepared = c.target.prepare(cql.clone()).await.expect("prepare");
    let mut batch = Batch::new(BatchType::Unlogged);
    for _ in &writes {
        batch.append_statement(prepared.clone());
    }
    let values: Vec<&Vec<Option<CqlValue>>> = writes.iter().map(|w| &w.values).collect();
    let refused = c
        .target
        .batch(&batch, &values)
        .await
        .expect_err("a 1.5 MiB batch over 24 partitions is over the fail threshold");
    assert!(batch_refused_as_a_whole(&refused), "{refused:?}");
    assert_eq!(
        count(&c.target, &table).await,
        0,
        "nothing of it was applied"
    );

    let writer = Writer::new(
        c.target.clone(),
        RetryPolicy {
            attempts: 2,
            backoff: std::time::Duration::from_millis(50),
        },
    );
    writer
        .apply_batch(&writes)
        .await
        .expect("the writes go one by one");
    assert_eq!(count(&c.target, &table).await, 24);
}
