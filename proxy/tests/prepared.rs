//! Prepared statements and batches through the proxy, including after a restart empties the
//! proxy's prepared cache (the driver must be told UNPREPARED and re-prepare).
mod common;
use common::*;
use scylla::statement::batch::{Batch, BatchType};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_and_batches_survive_a_proxy_restart() {
    let _lock = ClusterLock::shared();
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_ks("proxy_ps");
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
    let _lock = ClusterLock::shared();
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_ks("proxy_unp");
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
