//! Target down: writes fail, readiness turns 503 within the heartbeat interval, and everything
//! recovers once the target is back; once with the target stopped (connections close), once with
//! it hung (SIGSTOP: connections stay open, nothing answers). Both hold the exclusive test lock
//! (no other proxy test runs meanwhile) and restart/thaw the target on drop.
use std::time::{Duration, Instant};
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_fails_writes_turns_unready_and_recovers() {
    let _lock = Lock::exclusive(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let ks = unique_name("proxy_down");
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

/// A hung target (process frozen with SIGSTOP: its sockets stay open, nothing answers) is the
/// harder case than a stopped one: no connection closes, so only timeouts can tell. Writes must
/// fail within the request timeout (origin having taken them), readiness must turn 503 within
/// one heartbeat interval, the stream ids of unanswered requests stay reserved until their late
/// answers come, and everything recovers once the target runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_target_fails_writes_in_time_turns_unready_and_recovers() {
    let _lock = Lock::exclusive(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let ks = unique_name("proxy_hung");
    let heartbeat = Duration::from_millis(2000);
    let request_timeout = Duration::from_millis(3000);
    let p = Proxy::start(
        &sb,
        "127.0.0.95",
        19580,
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
    assert_eq!(p.http_get("/health/readiness").await.0, 200);
    let failed_on_target = r#"zdm_proxy_failed_writes_total{failed_on="target"}"#;
    let target_ids = format!(
        "zdm_target_used_stream_ids_total{{node=\"{}\"}}",
        sb.node("target")
    );
    let failed_before = p.metric(failed_on_target).await;

    // Freeze right after a heartbeat was answered: the worst moment for detection (the whole
    // wait until the next heartbeat plus its reply timeout must fit in one interval). With no
    // client traffic, the target's request count moves only with the control connection's
    // heartbeats (and its node discovery that follows them).
    let target_requests = format!(
        "zdm_target_request_duration_seconds_count{{node=\"{}\"}}",
        sb.node("target")
    );
    let seen = p.metric(&target_requests).await;
    let watch_until = Instant::now() + heartbeat * 3;
    while p.metric(&target_requests).await == seen {
        assert!(
            Instant::now() < watch_until,
            "no heartbeat to the target seen within {:?}",
            heartbeat * 3
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Then let the burst (heartbeat, then maybe discovery queries) end: 150 ms without change.
    let mut last = p.metric(&target_requests).await;
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(150) {
        assert!(
            Instant::now() < watch_until,
            "the target's requests never settled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = p.metric(&target_requests).await;
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    let mut frozen = TargetFrozen::freeze(&sb);
    let frozen_at = Instant::now();
    let write = async {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            s.query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (2, 'hung')"), ()),
        )
        .await;
        (r, started.elapsed())
    };
    let readiness = async {
        while frozen_at.elapsed() < heartbeat * 5 {
            let (code, body) = p.http_get("/health/readiness").await;
            if code == 503 {
                return Some((frozen_at.elapsed(), body));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    };
    let ((write, write_took), unready) = tokio::join!(write, readiness);

    let write = write.expect("a write to a hung target must fail, not hang");
    let err = write.expect_err("a write to a hung target must fail");
    assert!(
        write_took <= request_timeout + Duration::from_millis(2500),
        "the write failed only after {write_took:?} ({err})"
    );
    assert!(
        err.to_string().contains("target"),
        "the error names the target: {err}"
    );
    let (became_503, body) = unready.expect("readiness did not turn 503 while the target hung");
    eprintln!("readiness 503 after {became_503:?}; the write failed after {write_took:?}");
    assert!(
        became_503 <= heartbeat + Duration::from_millis(1000),
        "503 only after {became_503:?} (heartbeat interval {heartbeat:?})"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["TargetStatus"]["Status"], "DOWN", "{body}");
    assert_eq!(v["OriginStatus"]["Status"], "UP", "{body}");
    assert_eq!(p.metric(failed_on_target).await, failed_before + 1.0);
    // Origin took the write the client saw fail.
    assert_eq!(read_v(&origin, &ks, 2).await.as_deref(), Some("hung"));
    // The unanswered request's stream id is still reserved: its answer may yet come.
    assert!(
        p.metric(&target_ids).await >= 1.0,
        "the timed-out request's stream id must stay reserved while the target is silent"
    );
    assert!(
        frozen_at.elapsed() < Duration::from_secs(30),
        "keep the freeze short"
    );

    frozen.thaw();
    let deadline = Instant::now() + Duration::from_secs(90);
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
    // The late answers came: every stream id is free again.
    while p.metric(&target_ids).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "stream ids still reserved after the target answered again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let target = sb.direct("target").await;
    assert_eq!(read_v(&origin, &ks, 3).await.as_deref(), Some("back"));
    assert_eq!(read_v(&target, &ks, 3).await.as_deref(), Some("back"));
    drop_ks(&origin, &target, &ks).await;
}
