//! Prepared statements and batches through the proxy, including after a restart empties the
//! proxy's prepared cache (the driver must be told UNPREPARED and re-prepare).
use scylla::statement::batch::{Batch, BatchType};
use std::time::{Duration, Instant};
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_and_batches_survive_a_proxy_restart() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_ps");
    let mut p = Proxy::start(&sb, "127.0.0.22", 19050, &[]);
    let s = p.session(&sb).await;
    create_kv(&s, &ks).await;

    let insert = s
        .prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"))
        .await
        .unwrap();
    let select = s
        .prepare(format!("SELECT v FROM {ks}.kv WHERE k = ?"))
        .await
        .unwrap();
    s.execute_unpaged(&insert, (1, "p1")).await.unwrap();
    let read = |k: i32| {
        let (s, select) = (&s, &select);
        async move {
            s.execute_unpaged(select, (k,)).await.map(|r| {
                r.into_rows_result()
                    .unwrap()
                    .rows::<(String,)>()
                    .unwrap()
                    .next()
                    .map(|r| r.unwrap().0)
            })
        }
    };
    assert_eq!(read(1).await.unwrap().as_deref(), Some("p1"));
    assert_eq!(read_v(&target, &ks, 1).await.as_deref(), Some("p1"));

    let mut batch = Batch::new(BatchType::Logged);
    batch.append_statement(insert.clone());
    batch.append_statement(insert.clone());
    batch.append_statement(format!("INSERT INTO {ks}.kv (k, v) VALUES (12, 'simple')").as_str());
    s.batch(&batch, ((10, "b10"), (11, "b11"), ()))
        .await
        .unwrap();
    for (k, v) in [(10, "b10"), (11, "b11"), (12, "simple")] {
        assert_eq!(
            read_v(&origin, &ks, k).await.as_deref(),
            Some(v),
            "origin k={k}"
        );
        assert_eq!(
            read_v(&target, &ks, k).await.as_deref(),
            Some(v),
            "target k={k}"
        );
    }
    assert!(p.metric("zdm_pscache_entries_total").await >= 2.0);

    // Restart: the new process knows no prepared ids. The driver keeps its prepared statements.
    p.kill();
    p.spawn();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match s.execute_unpaged(&insert, (2, "after-restart")).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "driver never recovered after proxy restart: {e}\n{}",
                    p.log_text()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    assert!(
        p.metric("zdm_pscache_miss_total").await >= 1.0,
        "the restarted proxy must have answered UNPREPARED"
    );
    assert_eq!(read(2).await.unwrap().as_deref(), Some("after-restart"));
    s.batch(&batch, ((20, "b20"), (21, "b21"), ()))
        .await
        .unwrap();
    for (k, v) in [(2, "after-restart"), (20, "b20"), (21, "b21")] {
        assert_eq!(
            read_v(&origin, &ks, k).await.as_deref(),
            Some(v),
            "origin k={k}"
        );
        assert_eq!(
            read_v(&target, &ks, k).await.as_deref(),
            Some(v),
            "target k={k}"
        );
    }
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_the_target_forgot_is_reprepared_through_the_proxy() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_unp");
    let p = Proxy::start(&sb, "127.0.0.22", 19051, &[]);
    let s = p.session(&sb).await;
    create_kv(&s, &ks).await;
    let insert = s
        .prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"))
        .await
        .unwrap();
    s.execute_unpaged(&insert, (1, "before")).await.unwrap();

    // Dropping and re-creating the table on the target alone makes the target forget the
    // prepared statement: its next EXECUTE answers UNPREPARED with the target's id, which the
    // proxy must turn into an UNPREPARED the driver can act on (origin's id).
    target
        .query_unpaged(format!("DROP TABLE {ks}.kv"), ())
        .await
        .unwrap();
    target
        .query_unpaged(
            format!("CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)"),
            (),
        )
        .await
        .unwrap();
    s.execute_unpaged(&insert, (2, "after"))
        .await
        .expect("the driver must re-prepare through the proxy and succeed");
    assert_eq!(read_v(&origin, &ks, 2).await.as_deref(), Some("after"));
    assert_eq!(read_v(&target, &ks, 2).await.as_deref(), Some("after"));
    let unprepared = p
        .metric(&format!(
            "zdm_target_requests_failed_total{{error=\"unprepared\",node=\"{}\"}}",
            sb.node("target")
        ))
        .await;
    assert!(
        unprepared >= 1.0,
        "the target's UNPREPARED must have been seen"
    );
    drop_ks(&origin, &target, &ks).await;
}

/// Both clusters' copy of `key`, asserted equal to `want`.
async fn on_both(
    origin: &scylla::client::session::Session,
    target: &scylla::client::session::Session,
    ks: &str,
    key: i32,
    want: &str,
) {
    assert_eq!(
        read_v(origin, ks, key).await.as_deref(),
        Some(want),
        "origin k={key}"
    );
    assert_eq!(
        read_v(target, ks, key).await.as_deref(),
        Some(want),
        "target k={key}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_prepared_statements_first_after_a_restart_is_reprepared() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_psb");
    let mut p = Proxy::start(&sb, "127.0.0.22", 19052, &[]);
    let s = p.session(&sb).await;
    create_kv(&s, &ks).await;
    let insert = s
        .prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"))
        .await
        .unwrap();
    let update = s
        .prepare(format!("UPDATE {ks}.kv SET v = ? WHERE k = ?"))
        .await
        .unwrap();
    s.execute_unpaged(&insert, (1, "before")).await.unwrap();

    // The restarted proxy knows no prepared id; its first request from this driver is the
    // BATCH, so the batch path itself must answer UNPREPARED with an id the driver knows.
    p.kill();
    p.spawn();
    let mut batch = Batch::new(BatchType::Logged);
    batch.append_statement(insert.clone());
    batch.append_statement(update.clone());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match s.batch(&batch, ((30, "b30"), ("b31", 31))).await {
            Ok(_) => break,
            Err(e) => {
                // Only the reconnection may fail: the driver learns of the restart by losing
                // its connections. An UNPREPARED it cannot act on would fail every attempt.
                assert!(
                    Instant::now() < deadline,
                    "batch never succeeded after the proxy restart: {e}\n{}",
                    p.log_text()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    assert!(
        p.metric("zdm_pscache_miss_total").await >= 1.0,
        "the batch (the only EXECUTE/BATCH sent to the restarted proxy) must have met the \
         empty cache and been answered UNPREPARED"
    );
    on_both(&origin, &target, &ks, 30, "b30").await;
    on_both(&origin, &target, &ks, 31, "b31").await;
    drop_ks(&origin, &target, &ks).await;
}

/// Drops and re-creates `ks.kv` on one cluster only: that cluster forgets every statement
/// prepared on the table, the other still knows them.
async fn invalidate_on(s: &scylla::client::session::Session, ks: &str) {
    s.query_unpaged(format!("DROP TABLE {ks}.kv"), ())
        .await
        .unwrap();
    s.query_unpaged(
        format!("CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)"),
        (),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_one_cluster_forgot_is_reprepared_for_execute_and_batch() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_unpb");
    let p = Proxy::start(&sb, "127.0.0.22", 19053, &[]);
    let s = p.session(&sb).await;
    create_kv(&s, &ks).await;
    let insert = s
        .prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"))
        .await
        .unwrap();
    s.execute_unpaged(&insert, (1, "before")).await.unwrap();
    let mut batch = Batch::new(BatchType::Logged);
    batch.append_statement(insert.clone());
    batch.append_statement(insert.clone());
    let unprepared = |cluster: &'static str| {
        let (p, sb) = (&p, &sb);
        async move {
            p.metric(&format!(
                "zdm_{cluster}_requests_failed_total{{error=\"unprepared\",node=\"{}\"}}",
                sb.node(cluster)
            ))
            .await
        }
    };

    let mut key = 100;
    for (name, forgetful) in [("origin", &origin), ("target", &target)] {
        // EXECUTE: the forgetful cluster answers UNPREPARED with its id, the proxy turns it
        // into origin's id, the driver re-prepares (on both) and retries.
        let before = unprepared(name).await;
        invalidate_on(forgetful, &ks).await;
        s.execute_unpaged(&insert, (key, "exec"))
            .await
            .unwrap_or_else(|e| panic!("EXECUTE after {name} forgot: {e}\n{}", p.log_text()));
        on_both(&origin, &target, &ks, key, "exec").await;
        assert!(
            unprepared(name).await > before,
            "{name}'s UNPREPARED to the EXECUTE must have been seen"
        );

        // BATCH of prepared children, likewise.
        let before = unprepared(name).await;
        invalidate_on(forgetful, &ks).await;
        s.batch(&batch, ((key + 1, "batch1"), (key + 2, "batch2")))
            .await
            .unwrap_or_else(|e| panic!("BATCH after {name} forgot: {e}\n{}", p.log_text()));
        on_both(&origin, &target, &ks, key + 1, "batch1").await;
        on_both(&origin, &target, &ks, key + 2, "batch2").await;
        assert!(
            unprepared(name).await > before,
            "{name}'s UNPREPARED to the BATCH must have been seen"
        );
        key += 10;
    }
    drop_ks(&origin, &target, &ks).await;
}
