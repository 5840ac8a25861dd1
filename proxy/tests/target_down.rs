//! Target down: writes fail, readiness turns 503 within the heartbeat interval, and everything
//! recovers once the target is back. Stops the sandbox's target cluster, so it holds the
//! exclusive test lock (no other proxy test runs meanwhile) and restarts the target on drop.
mod common;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_fails_writes_turns_unready_and_recovers() {
    let _lock = ClusterLock::exclusive();
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let ks = unique_ks("proxy_down");
    let heartbeat_ms = 2000u64;
    let p = Proxy::start(
        &sb,
        "127.0.0.23",
        19080,
        &[
            ("ZDM_HEARTBEAT_INTERVAL_MS", "2000"),
            ("ZDM_PROXY_REQUEST_TIMEOUT_MS", "3000"),
        ],
    );
    let s = p.session(&sb).await;
    create_kv(&s, &ks).await;
    s.query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (1, 'up')"), ())
        .await
        .unwrap();
    let (code, body) = p.http_get("/health/readiness").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Status"], "UP");
    assert_eq!(v["TargetStatus"]["Status"], "UP");

    let mut down = TargetStopped::stop(sb.get("SANDBOX_SCRIPT"));
    let stopped_at = Instant::now();
    let mut became_503 = None;
    while stopped_at.elapsed() < Duration::from_millis(heartbeat_ms + 3000) {
        let (code, body) = p.http_get("/health/readiness").await;
        if code == 503 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["TargetStatus"]["Status"], "DOWN", "{body}");
            assert_eq!(v["OriginStatus"]["Status"], "UP", "{body}");
            assert_eq!(v["Status"], "DOWN", "{body}");
            became_503 = Some(stopped_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let became_503 = became_503.expect("readiness did not turn 503 after the target stopped");
    assert!(
        became_503 <= Duration::from_millis(heartbeat_ms + 1000),
        "503 after {became_503:?}"
    );
    assert_eq!(p.http_get("/health/liveness").await.0, 200);

    let write = tokio::time::timeout(
        Duration::from_secs(60),
        s.query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (2, 'down')"), ()),
    )
    .await
    .expect("a write with the target down must fail, not hang");
    assert!(write.is_err(), "a write with the target down must fail");

    down.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while p.http_get("/health/readiness").await.0 != 200 {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        match s
            .query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (3, 'back')"), ())
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "writes did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let target = sb.direct("target").await;
    assert_eq!(read_v(&origin, &ks, 3).await.as_deref(), Some("back"));
    assert_eq!(read_v(&target, &ks, 3).await.as_deref(), Some("back"));
    drop_ks(&origin, &target, &ks).await;
}
