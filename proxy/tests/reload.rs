//! Live reload under a driver workload: PRIMARY_ONLY/ORIGIN → PRIMARY_ONLY/TARGET with no
//! client connection closed and no failed request; bad reloads keep the running settings.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

async fn active(p: &Proxy) -> serde_json::Value {
    let (status, body) = p.http_get("/config").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn settings_file(path: &std::path::Path, extra: &str) {
    std::fs::write(path, format!("read_mode: PRIMARY_ONLY\n{extra}")).unwrap();
}

/// Counts of what the workload saw.
#[derive(Default)]
struct Tally {
    reads_origin: AtomicU64,
    reads_target: AtomicU64,
    /// Reads issued and answered while the switch to target stood that still came from origin.
    stale_after_switch: AtomicU64,
    writes_acked: AtomicU64,
    failures: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_switches_reads_to_target_without_closing_connections_or_failing_requests() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_reload");
    let dir = std::env::temp_dir().join(format!("zdm-reload-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("zdm-proxy.yml");
    settings_file(&file, "primary_cluster: ORIGIN\n");

    let p = Proxy::start_with_file(&sb, "127.0.0.26", 19142, &file);
    assert_eq!(active(&p).await["primary_cluster"], "ORIGIN");
    let s = Arc::new(p.session(&sb).await);
    create_kv(&s, &ks).await;
    // The same key holds a different value on each cluster: a read tells who answered.
    for (session, v) in [(&origin, "origin-only"), (&target, "target-only")] {
        session
            .query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (0, '{v}')"), ())
            .await
            .unwrap();
    }
    let read = s
        .prepare(format!("SELECT v FROM {ks}.kv WHERE k = 0"))
        .await
        .unwrap();
    let write = s
        .prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, 'w')"))
        .await
        .unwrap();
    let gauge = "zdm_client_connections_total";
    let conns_before = p.metric(gauge).await;
    assert!(conns_before >= 1.0);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let switched = Arc::new(AtomicBool::new(false));
    let next_key = Arc::new(AtomicU64::new(1));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (s, read, write) = (s.clone(), read.clone(), write.clone());
        let (tally, stop, switched, next_key) = (
            tally.clone(),
            stop.clone(),
            switched.clone(),
            next_key.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let after_switch = switched.load(Ordering::SeqCst);
                match s.execute_unpaged(&read, ()).await {
                    Ok(r) => {
                        let rows = r.into_rows_result().unwrap();
                        let (v,) = rows.single_row::<(String,)>().unwrap();
                        if v == "origin-only" {
                            tally.reads_origin.fetch_add(1, Ordering::SeqCst);
                            // The switch to target is confirmed once and withdrawn once (before
                            // the SIGHUP back to origin): a read that saw it confirmed both when
                            // it was issued and when it was answered ran wholly inside that span.
                            if after_switch && switched.load(Ordering::SeqCst) {
                                tally.stale_after_switch.fetch_add(1, Ordering::SeqCst);
                            }
                        } else {
                            assert_eq!(v, "target-only");
                            tally.reads_target.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(e) => {
                        eprintln!("read failed: {e}");
                        tally.failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let k = next_key.fetch_add(1, Ordering::SeqCst) as i32;
                match s.execute_unpaged(&write, (k,)).await {
                    Ok(_) => {
                        tally.writes_acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        eprintln!("write k={k} failed: {e}");
                        tally.failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    // The connection gauge is sampled all along: a connection closed by the reload would dip
    // it while the driver reconnects.
    let mut min_conns = conns_before;
    let mut sample = |v: f64| min_conns = min_conns.min(v);
    let wait_reads = |n: u64, which: &'static str, tally: Arc<Tally>| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = match which {
                "origin" => tally.reads_origin.load(Ordering::SeqCst),
                _ => tally.reads_target.load(Ordering::SeqCst),
            };
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {got} {which} reads in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_reads(50, "origin", tally.clone()).await;
    sample(p.metric(gauge).await);
    assert_eq!(tally.reads_target.load(Ordering::SeqCst), 0);

    // Invalid file: refused with the reason, settings kept, workload undisturbed.
    settings_file(&file, "primary_cluster: SIDEWAYS\n");
    let (status, body) = p.http_post("/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("primary_cluster") && body.contains("SIDEWAYS"),
        "{body}"
    );
    // A setting that needs a restart: refused whole, named, primary unchanged.
    settings_file(&file, "primary_cluster: TARGET\nproxy_max_stream_ids: 77\n");
    let (status, body) = p.http_post("/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("proxy_max_stream_ids"), "{body}");
    let now = active(&p).await;
    assert_eq!(now["primary_cluster"], "ORIGIN", "{now}");
    assert_eq!(now["reloads_failed"], 2, "{now}");
    sample(p.metric(gauge).await);

    // The switch, over HTTP.
    settings_file(&file, "primary_cluster: TARGET\n");
    let (status, body) = p.http_post("/reload").await;
    assert_eq!(status, 200, "{body}");
    switched.store(true, Ordering::SeqCst);
    let reported: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reported["primary_cluster"], "TARGET");
    assert_eq!(reported["read_mode"], "PRIMARY_ONLY");
    assert_eq!(active(&p).await["primary_cluster"], "TARGET");
    assert!(
        !body.contains(sb.get("ZDM_TARGET_PASSWORD")) && !body.contains("10.213"),
        "/reload must not show addresses or secrets: {body}"
    );
    wait_reads(50, "target", tally.clone()).await;
    sample(p.metric(gauge).await);

    // And back, over SIGHUP; then a bad file over SIGHUP is logged and changes nothing.
    switched.store(false, Ordering::SeqCst);
    settings_file(&file, "primary_cluster: ORIGIN\n");
    let pid = p.child.as_ref().unwrap().id() as i32;
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while active(&p).await["primary_cluster"] != "ORIGIN" {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settings_file(&file, "primary_cluster: [not, a, cluster]\n");
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while active(&p).await["reloads_failed"] != 3 {
        assert!(Instant::now() < deadline, "bad SIGHUP reload not counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(active(&p).await["primary_cluster"], "ORIGIN");
    assert!(
        p.log_text()
            .contains("SIGHUP: reload refused, running settings kept"),
        "log:\n{}",
        p.log_text()
    );
    sample(p.metric(gauge).await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("workload task panicked");
    }
    let conns_after = p.metric(gauge).await;
    assert_eq!(tally.failures.load(Ordering::SeqCst), 0, "failed requests");
    assert_eq!(
        tally.stale_after_switch.load(Ordering::SeqCst),
        0,
        "reads issued after the reload answered still came from origin"
    );
    assert!(
        min_conns >= conns_before && conns_after == conns_before,
        "client connections before {conns_before}, lowest {min_conns}, after {conns_after}"
    );
    assert!(
        !p.log_text().contains("closing client connection"),
        "log:\n{}",
        p.log_text()
    );
    // Every acknowledged write is on both clusters.
    let acked = tally.writes_acked.load(Ordering::SeqCst) as i64;
    for (name, session) in [("origin", &origin), ("target", &target)] {
        let n = session
            .query_unpaged(format!("SELECT COUNT(*) FROM {ks}.kv"), ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .single_row::<(i64,)>()
            .unwrap()
            .0;
        // +1: the key 0 row each cluster holds.
        assert!(
            n > acked,
            "{name} has {n} rows, {acked} writes acknowledged"
        );
    }
    drop(s);
    drop(p);
    drop_ks(&origin, &target, &ks).await;
    let _ = std::fs::remove_dir_all(&dir);
}
