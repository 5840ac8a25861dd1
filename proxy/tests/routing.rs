//! Writes land on both clusters, reads come from the primary, failures are counted.
use scylla::client::session_builder::SessionBuilder;
use scylla::frame::Compression;
use std::time::Duration;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_on_both_and_reads_come_from_the_primary() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_rt");

    let p = Proxy::start(&sb, "127.0.0.21", 19042, &[]);
    let s = p.session(&sb).await;
    create_kv(&s, &ks).await; // DDL through the proxy: must exist on both afterwards
    s.query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (1, 'both')"), ())
        .await
        .unwrap();
    assert_eq!(read_v(&origin, &ks, 1).await.as_deref(), Some("both"));
    assert_eq!(read_v(&target, &ks, 1).await.as_deref(), Some("both"));

    // Different rows written straight to each cluster tell who answered a read.
    origin
        .query_unpaged(
            format!("INSERT INTO {ks}.kv (k, v) VALUES (2, 'origin-only')"),
            (),
        )
        .await
        .unwrap();
    target
        .query_unpaged(
            format!("INSERT INTO {ks}.kv (k, v) VALUES (3, 'target-only')"),
            (),
        )
        .await
        .unwrap();
    assert_eq!(read_v(&s, &ks, 2).await.as_deref(), Some("origin-only"));
    assert_eq!(read_v(&s, &ks, 3).await, None);
    assert!(
        p.metric("zdm_proxy_request_duration_seconds_count{type=\"reads_origin\"}")
            .await
            >= 2.0
    );
    assert!(
        p.metric("zdm_proxy_request_duration_seconds_count{type=\"writes\"}")
            .await
            >= 3.0
    );
    assert_eq!(
        p.metric("zdm_proxy_failed_writes_total{failed_on=\"both\"}")
            .await,
        0.0
    );
    drop(s);
    drop(p);

    let p = Proxy::start(
        &sb,
        "127.0.0.21",
        19043,
        &[("ZDM_PRIMARY_CLUSTER", "TARGET")],
    );
    let s = p.session(&sb).await;
    assert_eq!(read_v(&s, &ks, 2).await, None);
    assert_eq!(read_v(&s, &ks, 3).await.as_deref(), Some("target-only"));
    s.query_unpaged(format!("UPDATE {ks}.kv SET v = 'again' WHERE k = 4"), ())
        .await
        .unwrap();
    assert_eq!(read_v(&origin, &ks, 4).await.as_deref(), Some("again"));
    assert_eq!(read_v(&target, &ks, 4).await.as_deref(), Some("again"));
    assert!(
        p.metric("zdm_proxy_request_duration_seconds_count{type=\"reads_target\"}")
            .await
            >= 2.0
    );
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_on_one_cluster_fails_and_is_counted() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_fw");
    // The table exists on origin only: the target half of the write fails.
    create_kv(&origin, &ks).await;
    let p = Proxy::start(&sb, "127.0.0.21", 19045, &[]);
    let s = p.session(&sb).await;
    let err = s
        .query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (1, 'x')"), ())
        .await
        .expect_err("a write the target refuses must fail");
    assert!(
        err.to_string().to_lowercase().contains(&ks),
        "error should be target's: {err}"
    );
    assert_eq!(
        p.metric("zdm_proxy_failed_writes_total{failed_on=\"target\"}")
            .await,
        1.0
    );
    assert_eq!(
        p.metric("zdm_proxy_failed_writes_total{failed_on=\"origin\"}")
            .await,
        0.0
    );
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_and_snappy_clients_work() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_cmp");
    let p = Proxy::start(&sb, "127.0.0.21", 19044, &[]);
    let (u, pw) = sb.creds("target");
    for (i, c) in [Compression::Lz4, Compression::Snappy]
        .into_iter()
        .enumerate()
    {
        let s = SessionBuilder::new()
            .known_node(&p.addr)
            .user(&u, &pw)
            .compression(Some(c))
            .connection_timeout(Duration::from_secs(30))
            .build()
            .await
            .unwrap_or_else(|e| panic!("{c:?} session: {e}"));
        create_kv(&s, &ks).await;
        let long = "x".repeat(5000); // big enough that compression really happens
        s.query_unpaged(
            format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"),
            (i as i32, &long),
        )
        .await
        .unwrap();
        assert_eq!(
            read_v(&s, &ks, i as i32).await.as_deref(),
            Some(long.as_str())
        );
        assert_eq!(
            read_v(&target, &ks, i as i32).await.as_deref(),
            Some(long.as_str())
        );
    }
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_the_request_timeout_fails_instead_of_hanging() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_to");
    create_kv(&origin, &ks).await;
    create_kv(&target, &ks).await;
    // 1 ms: a logged batch of 30 rows takes longer than that on any cluster.
    let p = Proxy::start(
        &sb,
        "127.0.0.21",
        19046,
        &[("ZDM_PROXY_REQUEST_TIMEOUT_MS", "1")],
    );
    let (u, pw) = sb.creds("target");
    let s = SessionBuilder::new()
        .known_node(&p.addr)
        .user(u, pw)
        .fetch_schema_metadata(false) // schema reads would time out too
        .build()
        .await
        .unwrap();
    let mut batch =
        scylla::statement::batch::Batch::new(scylla::statement::batch::BatchType::Logged);
    for k in 0..30 {
        batch.append_statement(
            format!(
                "INSERT INTO {ks}.kv (k, v) VALUES ({k}, '{}')",
                "x".repeat(200)
            )
            .as_str(),
        );
    }
    let values: Vec<()> = vec![(); 30];
    let mut timed_out = 0;
    for _ in 0..10 {
        let r = tokio::time::timeout(Duration::from_secs(30), s.batch(&batch, &values))
            .await
            .expect("the proxy must answer, not hang");
        if let Err(e) = r {
            assert!(
                e.to_string().contains("within 1 ms"),
                "unexpected error: {e}"
            );
            timed_out += 1;
        }
    }
    assert!(timed_out > 0, "no batch exceeded 1 ms");
    let failed: f64 = p
        .metric("zdm_proxy_failed_writes_total{failed_on=\"origin\"}")
        .await
        + p.metric("zdm_proxy_failed_writes_total{failed_on=\"target\"}")
            .await
        + p.metric("zdm_proxy_failed_writes_total{failed_on=\"both\"}")
            .await;
    assert_eq!(
        failed as usize, timed_out,
        "every timed-out write is a failed write"
    );
    let client_timeouts = p
        .metric(&format!(
            "zdm_origin_requests_failed_total{{error=\"client_timeout\",node=\"{}\"}}",
            sb.node("origin")
        ))
        .await
        + p.metric(&format!(
            "zdm_target_requests_failed_total{{error=\"client_timeout\",node=\"{}\"}}",
            sb.node("target")
        ))
        .await;
    assert!(client_timeouts >= 1.0);
    drop_ks(&origin, &target, &ks).await;
}

/// `origin_|target_request_timeout_ms` (runbook settings) bound the requests to that cluster
/// only: with 1 ms for one cluster, its side of a large write times out and the client hears
/// an error naming that cluster, while the other cluster (under the 10 s
/// `proxy_request_timeout_ms`) answers and keeps every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_cluster_request_timeout_applies_to_that_cluster_only() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_rto");
    // Created on each cluster directly: the proxies below time out one side on purpose.
    create_kv(&origin, &ks).await;
    create_kv(&target, &ks).await;
    for (slow, port, fast_session) in [("target", 19048u16, &origin), ("origin", 19049, &target)] {
        let var = format!("ZDM_{}_REQUEST_TIMEOUT_MS", slow.to_ascii_uppercase());
        let p = Proxy::start(
            &sb,
            "127.0.0.21",
            port,
            &[(&var, "1"), ("ZDM_PROXY_REQUEST_TIMEOUT_MS", "10000")],
        );
        let s = p.session(&sb).await;
        let base = port as i32 * 1000;
        // A logged batch of 200 rows: far more than 1 ms of work for any cluster.
        let mut failures = Vec::new();
        for round in 0..5 {
            let mut q = String::from("BEGIN BATCH ");
            for i in 0..200 {
                let k = base + round * 200 + i;
                q.push_str(&format!("INSERT INTO {ks}.kv (k, v) VALUES ({k}, 'x'); "));
            }
            q.push_str("APPLY BATCH");
            if let Err(e) = s.query_unpaged(q, ()).await {
                failures.push(e.to_string());
            }
        }
        assert!(
            !failures.is_empty(),
            "{slow} with a 1 ms timeout never timed out\n{}",
            p.log_text()
        );
        for f in &failures {
            assert!(f.contains(slow), "the error must name {slow}: {f}");
        }
        let failed_on = |c: &str| format!("zdm_proxy_failed_writes_total{{failed_on=\"{c}\"}}");
        let fast = if slow == "target" { "origin" } else { "target" };
        assert!(p.metric(&failed_on(slow)).await >= 1.0);
        assert_eq!(p.metric(&failed_on(fast)).await, 0.0);
        assert_eq!(p.metric(&failed_on("both")).await, 0.0);
        // The fast cluster took every row of every batch.
        let n = fast_session
            .query_unpaged(
                format!(
                    "SELECT COUNT(*) FROM {ks}.kv WHERE k >= {base} AND k < {} ALLOW FILTERING",
                    base + 1000
                ),
                (),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .first_row::<(i64,)>()
            .unwrap()
            .0;
        assert_eq!(n, 1000, "{fast} must hold every row");
    }
    drop_ks(&origin, &target, &ks).await;
}
