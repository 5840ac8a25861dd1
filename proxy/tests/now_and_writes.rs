//! `replace_cql_functions`, per-table write metrics and `target_consistency_level`, against the
//! sandbox's real clusters through the real proxy and the scylla driver.
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::value::CqlTimeuuid;
use std::collections::BTreeSet;
use uuid::Uuid;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

/// `ts` of row `k` of `table`, read straight from one cluster.
async fn timeuuid_of(s: &Session, ks: &str, table: &str, col: &str, k: i32) -> Option<Uuid> {
    let rows = s
        .query_unpaged(format!("SELECT {col} FROM {ks}.{table} WHERE k = ?"), (k,))
        .await
        .unwrap_or_else(|e| panic!("select {ks}.{table} k={k}: {e}"))
        .into_rows_result()
        .unwrap();
    rows.rows::<(Option<CqlTimeuuid>,)>()
        .unwrap()
        .next()
        .and_then(|r| r.unwrap().0)
        .map(Uuid::from)
}

/// The same row's timeuuid on both clusters: present, version 1, identical.
async fn same_on_both(o: &Session, t: &Session, ks: &str, k: i32, what: &str) -> Uuid {
    let a = timeuuid_of(o, ks, "ev", "ts", k).await;
    let b = timeuuid_of(t, ks, "ev", "ts", k).await;
    let a = a.unwrap_or_else(|| panic!("{what}: no ts on origin for k={k}"));
    assert_eq!(Some(a), b, "{what}: origin and target differ for k={k}");
    assert_eq!(a.get_version_num(), 1, "{what}: not a timeuuid");
    a
}

async fn log_ids(s: &Session, ks: &str) -> BTreeSet<Uuid> {
    s.query_unpaged(format!("SELECT id FROM {ks}.log"), ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(CqlTimeuuid,)>()
        .unwrap()
        .map(|r| Uuid::from(r.unwrap().0))
        .collect()
}

/// `at` (a timestamp) of row 20 of `ev`.
async fn at_of(s: &Session, ks: &str) -> Option<i64> {
    s.query_unpaged(format!("SELECT at FROM {ks}.ev WHERE k = 20"), ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(Option<scylla::value::CqlTimestamp>,)>()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .0
        .map(|t| t.0)
}

async fn create_tables(s: &Session, ks: &str) {
    for ddl in [
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class':'SimpleStrategy','replication_factor':1}}"),
        format!("CREATE TABLE IF NOT EXISTS {ks}.ev (k int PRIMARY KEY, ts timeuuid, at timestamp)"),
        format!("CREATE TABLE IF NOT EXISTS {ks}.log (id timeuuid PRIMARY KEY, v text)"),
    ] {
        s.query_unpaged(ddl.as_str(), ())
            .await
            .unwrap_or_else(|e| panic!("{ddl}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_gets_one_value_on_both_clusters_for_queries_batches_and_prepared_statements() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_now");
    let p = Proxy::start(
        &sb,
        "127.0.0.31",
        19300,
        &[("ZDM_REPLACE_CQL_FUNCTIONS", "true")],
    );
    let s = p.session(&sb).await;
    create_tables(&s, &ks).await;

    // Plain INSERT and UPDATE.
    s.query_unpaged(
        format!("INSERT INTO {ks}.ev (k, ts) VALUES (1, now()) -- not now()\n"),
        (),
    )
    .await
    .unwrap();
    same_on_both(&origin, &target, &ks, 1, "plain INSERT").await;
    s.query_unpaged(format!("update {ks}.ev SET ts = NOW ( ) WHERE k = 2"), ())
        .await
        .unwrap();
    same_on_both(&origin, &target, &ks, 2, "plain UPDATE").await;

    // A BATCH: a text child and a prepared child, each with now().
    let insert = s
        .prepare(format!("INSERT INTO {ks}.ev (k, ts) VALUES (?, now())"))
        .await
        .unwrap();
    assert_eq!(
        insert.get_variable_col_specs().len(),
        1,
        "the injected marker must be hidden from the client"
    );
    let mut batch = Batch::new(BatchType::Logged);
    batch.append_statement(format!("INSERT INTO {ks}.ev (k, ts) VALUES (3, now())").as_str());
    batch.append_statement(insert.clone());
    s.batch(&batch, ((), (4,))).await.unwrap();
    let b3 = same_on_both(&origin, &target, &ks, 3, "batch text child").await;
    let b4 = same_on_both(&origin, &target, &ks, 4, "batch prepared child").await;
    assert_ne!(b3, b4, "each now() call gets its own value");

    // A prepared INSERT executed several times: a fresh value every time.
    let mut seen = BTreeSet::new();
    for k in 10..16 {
        s.execute_unpaged(&insert, (k,)).await.unwrap();
        seen.insert(same_on_both(&origin, &target, &ks, k, "prepared INSERT").await);
    }
    assert_eq!(seen.len(), 6, "every execution needs its own timeuuid");

    // now() as the partition key: the same rows on both clusters, not two sets of rows.
    let log = s
        .prepare(format!("INSERT INTO {ks}.log (id, v) VALUES (now(), ?)"))
        .await
        .unwrap();
    for v in ["a", "b", "c"] {
        s.execute_unpaged(&log, (v,)).await.unwrap();
    }
    let (oi, ti) = (log_ids(&origin, &ks).await, log_ids(&target, &ks).await);
    assert_eq!(oi.len(), 3);
    assert_eq!(oi, ti, "rows keyed by now() must be the same rows on both");

    // Named markers, and now() inside another function call.
    let named = s
        .prepare(format!(
            "UPDATE {ks}.ev SET ts = now(), at = toTimestamp(now()) WHERE k = :k"
        ))
        .await
        .unwrap();
    assert_eq!(named.get_variable_col_specs().len(), 1);
    s.execute_unpaged(&named, (20,)).await.unwrap();
    same_on_both(&origin, &target, &ks, 20, "named-marker UPDATE").await;
    let (oa, ta) = (at_of(&origin, &ks).await, at_of(&target, &ks).await);
    assert!(oa.is_some());
    assert_eq!(oa, ta, "toTimestamp(now()) must agree too");

    // SELECT with now() is a read and still works.
    s.query_unpaged(format!("SELECT k, now() FROM {ks}.ev WHERE k = 1"), ())
        .await
        .unwrap();

    // Control: without the setting the clusters disagree, which is what the setting fixes
    // (and shows that the comparison above can fail).
    let plain = Proxy::start(&sb, "127.0.0.31", 19301, &[]);
    let ps = plain.session(&sb).await;
    ps.query_unpaged(
        format!("INSERT INTO {ks}.ev (k, ts) VALUES (99, now())"),
        (),
    )
    .await
    .unwrap();
    assert_ne!(
        timeuuid_of(&origin, &ks, "ev", "ts", 99).await,
        timeuuid_of(&target, &ks, "ev", "ts", 99).await,
        "without replace_cql_functions each cluster runs now() itself"
    );
    // The id a driver holds does not depend on the setting: turning it on (or off) while
    // applications run must not make their re-prepares return another id, which drivers
    // refuse ("prepared statement id changed").
    let plain_insert = ps
        .prepare(format!("INSERT INTO {ks}.ev (k, ts) VALUES (?, now())"))
        .await
        .unwrap();
    assert_eq!(
        plain_insert.get_id(),
        insert.get_id(),
        "the same statement must keep its id with replace_cql_functions on and off"
    );
    drop_ks(&origin, &target, &ks).await;
}

fn series(ks: &str, table: &str, cluster: &str, outcome: &str) -> String {
    format!(
        "zdm_proxy_writes_total{{keyspace=\"{ks}\",table=\"{table}\",cluster=\"{cluster}\",outcome=\"{outcome}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_counted_per_table_cluster_and_outcome() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_wm");
    let p = Proxy::start(&sb, "127.0.0.31", 19302, &[]);
    let s = p.session(&sb).await;
    create_kv(&s, &ks).await;
    // A table that exists on origin only: every write to it fails on target.
    origin
        .query_unpaged(
            format!("CREATE TABLE {ks}.only_origin (k int PRIMARY KEY, v text)"),
            (),
        )
        .await
        .unwrap();

    for k in 0..3 {
        s.query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES ({k}, 'q')"), ())
            .await
            .unwrap();
    }
    let ins = s
        .prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"))
        .await
        .unwrap();
    s.execute_unpaged(&ins, (10, "p")).await.unwrap();
    s.execute_unpaged(&ins, (11, "p")).await.unwrap();
    let mut batch = Batch::new(BatchType::Logged);
    batch.append_statement(ins.clone());
    batch.append_statement(format!("DELETE FROM {ks}.kv WHERE k = 0").as_str());
    s.batch(&batch, ((12, "b"), ())).await.unwrap();
    // Unqualified, after USE: the connection's keyspace.
    s.use_keyspace(&ks, false).await.unwrap();
    s.query_unpaged("UPDATE kv SET v = 'u' WHERE k = 1", ())
        .await
        .unwrap();
    // Reads and DDL are not writes.
    s.query_unpaged(format!("SELECT * FROM {ks}.kv"), ())
        .await
        .unwrap();
    s.query_unpaged(
        format!("CREATE TABLE IF NOT EXISTS {ks}.other (k int PRIMARY KEY)"),
        (),
    )
    .await
    .unwrap();

    for cluster in ["origin", "target"] {
        assert_eq!(
            p.metric(&series(&ks, "kv", cluster, "success")).await,
            8.0,
            "3 queries + 2 executes + 2 batch children + 1 update on {cluster}"
        );
        assert_eq!(p.metric(&series(&ks, "kv", cluster, "failure")).await, 0.0);
    }
    let (_, body) = p.http_get("/metrics").await;
    assert!(
        !body.contains(&format!("keyspace=\"{ks}\",table=\"other\"")),
        "DDL must not be counted"
    );

    let err = s
        .query_unpaged(
            format!("INSERT INTO {ks}.only_origin (k, v) VALUES (1, 'x')"),
            (),
        )
        .await;
    assert!(err.is_err(), "a write that failed on target is an error");
    let prepared_fail = s
        .prepare(format!("INSERT INTO {ks}.only_origin (k, v) VALUES (?, ?)"))
        .await;
    assert!(
        prepared_fail.is_err(),
        "PREPARE fails on target, the client hears it"
    );
    assert_eq!(
        p.metric(&series(&ks, "only_origin", "origin", "success"))
            .await,
        1.0
    );
    assert_eq!(
        p.metric(&series(&ks, "only_origin", "target", "failure"))
            .await,
        1.0
    );
    assert_eq!(
        p.metric(&series(&ks, "only_origin", "target", "success"))
            .await,
        0.0
    );
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_consistency_level_applies_to_target_writes_and_reloads() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_cl");
    let dir = std::env::temp_dir().join(format!("zdm-cl-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.yml");
    // THREE cannot be met by the single-node target; origin keeps the client's level.
    std::fs::write(&file, "target_consistency_level: THREE\n").unwrap();
    let p = Proxy::start_with_file(&sb, "127.0.0.31", 19303, &file);
    let s = p.session(&sb).await;
    // DDL ignores the consistency level: the schema is created on both clusters.
    create_kv(&s, &ks).await;

    let e = s
        .query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (1, 'q')"), ())
        .await
        .expect_err("target cannot achieve THREE");
    let msg = format!("{e:?}");
    assert!(
        msg.contains("Unavailable") && msg.contains("Three"),
        "expected Unavailable for THREE: {msg}"
    );
    let ins = s
        .prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"))
        .await
        .unwrap();
    assert!(s.execute_unpaged(&ins, (2, "p")).await.is_err());
    let mut batch = Batch::new(BatchType::Unlogged);
    batch.append_statement(ins.clone());
    assert!(s.batch(&batch, ((3, "b"),)).await.is_err());
    for k in 1..=3 {
        assert!(read_v(&origin, &ks, k).await.is_some(), "origin k={k}");
        assert_eq!(read_v(&target, &ks, k).await, None, "target k={k}");
    }
    // The driver may retry an Unavailable once: count attempts, which hit both clusters.
    let failed = p.metric(&series(&ks, "kv", "target", "failure")).await;
    assert!(failed >= 3.0, "{failed}");
    assert_eq!(
        p.metric(&series(&ks, "kv", "origin", "success")).await,
        failed
    );
    assert_eq!(p.metric(&series(&ks, "kv", "target", "success")).await, 0.0);
    // Reads keep the client's level (ONE here) and succeed.
    let rows = s
        .query_unpaged(format!("SELECT v FROM {ks}.kv WHERE k = 1"), ())
        .await
        .expect("reads are not overridden")
        .into_rows_result()
        .unwrap();
    assert_eq!(rows.rows_num(), 1);

    // Reloadable: ALL is achievable on one node; writes go through again.
    std::fs::write(&file, "target_consistency_level: ALL\n").unwrap();
    let (status, body) = p.http_post("/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"target_consistency_level\":\"ALL\""),
        "{body}"
    );
    s.execute_unpaged(&ins, (4, "after-reload")).await.unwrap();
    assert_eq!(
        read_v(&target, &ks, 4).await.as_deref(),
        Some("after-reload")
    );
    drop_ks(&origin, &target, &ks).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_target_consistency_level_stops_the_proxy_naming_the_setting() {
    let dir = std::env::temp_dir().join(format!("zdm-cl-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.yml");
    std::fs::write(
        &file,
        "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\n\
         replace_cql_functions: true\ntarget_consistency_level: LOCAL_SERIAL\n",
    )
    .unwrap();
    let out = check_config(Some(&file), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted LOCAL_SERIAL: {err}");
    assert!(
        err.contains("target_consistency_level") && err.contains("line 4"),
        "{err}"
    );
    std::fs::write(
        &file,
        "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\n\
         replace_cql_functions: true\ntarget_consistency_level: local_quorum\n",
    )
    .unwrap();
    let out = check_config(Some(&file), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A row as one JSON text, read straight from one cluster.
async fn row_json(s: &Session, ks: &str, table: &str, k: i32) -> String {
    s.query_unpaged(format!("SELECT JSON * FROM {ks}.{table} WHERE k = ?"), (k,))
        .await
        .unwrap_or_else(|e| panic!("select {ks}.{table} k={k}: {e}"))
        .into_rows_result()
        .unwrap()
        .rows::<(String,)>()
        .unwrap()
        .next()
        .unwrap_or_else(|| panic!("no row {k} in {ks}.{table}"))
        .unwrap()
        .0
}

fn unsafe_series(ks: &str, table: &str, cause: &str) -> String {
    format!(
        "zdm_proxy_unsafe_writes_total{{keyspace=\"{ks}\",table=\"{table}\",cause=\"{cause}\"}}"
    )
}

/// Issue 13: `uuid()`, `currentTimeUUID()`, `currentTimestamp()`, `currentDate()` and
/// `currentTime()` get one value on both clusters, as plain text, prepared (also in an LWT
/// condition); what cannot be made safe is counted per table and cause: the functions with the
/// setting off, a counter update, an LWT that one cluster applied and the other did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_per_call_function_agrees_and_unsafe_writes_are_counted_per_table() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_fx");
    let on = Proxy::start(
        &sb,
        "127.0.0.32",
        19310,
        &[("ZDM_REPLACE_CQL_FUNCTIONS", "true")],
    );
    let s = on.session(&sb).await;
    for ddl in [
        format!("CREATE KEYSPACE {ks} WITH replication = {{'class':'SimpleStrategy','replication_factor':1}}"),
        format!("CREATE TABLE {ks}.fx (k int PRIMARY KEY, u uuid, tu timeuuid, ts timestamp, d date, t time, at timestamp)"),
        format!("CREATE TABLE {ks}.hits (k int PRIMARY KEY, n counter)"),
        format!("CREATE TABLE {ks}.lw (k int PRIMARY KEY, v text)"),
    ] {
        s.query_unpaged(ddl.as_str(), ()).await.unwrap_or_else(|e| panic!("{ddl}: {e}"));
    }
    let all = "uuid(), currentTimeUUID(), currentTimestamp(), currentDate(), currentTime(), \
               toTimestamp(now())";
    s.query_unpaged(
        format!("INSERT INTO {ks}.fx (k, u, tu, ts, d, t, at) VALUES (1, {all})"),
        (),
    )
    .await
    .unwrap();
    let ins = s
        .prepare(format!(
            "INSERT INTO {ks}.fx (k, u, tu, ts, d, t, at) VALUES (?, {all})"
        ))
        .await
        .unwrap();
    s.execute_unpaged(&ins, (2,)).await.unwrap();
    s.execute_unpaged(&ins, (3,)).await.unwrap();
    let upd = s
        .prepare(format!(
            "UPDATE {ks}.fx SET u = uuid() WHERE k = ? IF ts < currentTimestamp()"
        ))
        .await
        .unwrap();
    s.execute_unpaged(&upd, (3,)).await.unwrap();
    for k in 1..=3 {
        let o = row_json(&origin, &ks, "fx", k).await;
        assert_eq!(o, row_json(&target, &ks, "fx", k).await, "row {k}");
        assert!(!o.contains("null"), "every column written: {o}");
    }
    assert_ne!(
        row_json(&origin, &ks, "fx", 2).await,
        row_json(&origin, &ks, "fx", 3).await,
        "each EXECUTE gets fresh values"
    );
    let (_, body) = on.http_get("/metrics").await;
    assert!(
        !body.contains(&format!("keyspace=\"{ks}\",table=\"fx\",cause=")),
        "replaced functions are safe: {body}"
    );

    // A counter update, and an LWT origin refuses (the row exists there only) but target applies.
    s.query_unpaged(format!("UPDATE {ks}.hits SET n = n + 1 WHERE k = 1"), ())
        .await
        .unwrap();
    origin
        .query_unpaged(
            format!("INSERT INTO {ks}.lw (k, v) VALUES (5, 'origin')"),
            (),
        )
        .await
        .unwrap();
    s.query_unpaged(
        format!("INSERT INTO {ks}.lw (k, v) VALUES (5, 'proxy') IF NOT EXISTS"),
        (),
    )
    .await
    .unwrap();
    assert_eq!(on.metric(&unsafe_series(&ks, "hits", "counter")).await, 1.0);
    assert_eq!(
        on.metric(&unsafe_series(&ks, "lw", "lwt_outcome")).await,
        1.0
    );

    // The setting off: each cluster evaluates the functions, and the proxy says so per table.
    let off = Proxy::start(&sb, "127.0.0.33", 19311, &[]);
    let s = off.session(&sb).await;
    s.query_unpaged(
        format!("INSERT INTO {ks}.fx (k, u, tu, ts, d, t, at) VALUES (4, {all})"),
        (),
    )
    .await
    .unwrap();
    let ins = s
        .prepare(format!(
            "INSERT INTO {ks}.fx (k, at) VALUES (?, toTimestamp(now()))"
        ))
        .await
        .unwrap();
    s.execute_unpaged(&ins, (5,)).await.unwrap();
    assert_eq!(off.metric(&unsafe_series(&ks, "fx", "now()")).await, 2.0);
    assert_eq!(off.metric(&unsafe_series(&ks, "fx", "uuid()")).await, 1.0);
    assert_eq!(
        off.metric(&unsafe_series(&ks, "fx", "currentDate()")).await,
        1.0
    );
    drop_ks(&origin, &target, &ks).await;
}
