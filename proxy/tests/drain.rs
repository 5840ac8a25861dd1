//! SIGTERM under steady load: the driver (knowing two proxies) sees no failed request and every
//! acknowledged write is on both clusters.
use futures::TryStreamExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

async fn keys(s: &scylla::client::session::Session, ks: &str) -> HashSet<i32> {
    s.query_iter(format!("SELECT k FROM {ks}.kv"), ())
        .await
        .unwrap()
        .rows_stream::<(i32,)>()
        .unwrap()
        .map_ok(|(k,)| k)
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_request_and_no_write() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_drain");
    let ips = ["127.0.0.24", "127.0.0.25"];
    let port = 19090;
    let addresses = ips.join(",");
    let mut a = Proxy::start(
        &sb,
        ips[0],
        port,
        &[
            ("ZDM_PROXY_TOPOLOGY_ADDRESSES", &addresses),
            ("ZDM_PROXY_TOPOLOGY_INDEX", "0"),
        ],
    );
    let b = Proxy::start(
        &sb,
        ips[1],
        port,
        &[
            ("ZDM_PROXY_TOPOLOGY_ADDRESSES", &addresses),
            ("ZDM_PROXY_TOPOLOGY_INDEX", "1"),
        ],
    );
    let (u, pw) = sb.creds("target");
    let s = Arc::new(
        scylla::client::session_builder::SessionBuilder::new()
            .known_nodes([a.addr.as_str(), b.addr.as_str()])
            .user(u, pw)
            .connection_timeout(Duration::from_secs(30))
            .build()
            .await
            .unwrap(),
    );
    assert_eq!(s.get_cluster_state().get_nodes_info().len(), 2);
    create_kv(&s, &ks).await;
    let mut insert = s
        .prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"))
        .await
        .unwrap();
    insert.set_is_idempotent(true); // same key, same value: safe to retry on the next proxy

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    let started = std::time::Instant::now();
    for w in 0..8i32 {
        let (s, insert, stop, acked, failed) = (
            s.clone(),
            insert.clone(),
            stop.clone(),
            acked.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let k = w * 1_000_000 + i;
                i += 1;
                let sent = started.elapsed();
                match s.execute_unpaged(&insert, (k, "v")).await {
                    Ok(_) => acked.lock().unwrap().push(k),
                    Err(e) => failed
                        .lock()
                        .unwrap()
                        .push(format!("k={k} sent at t={sent:.1?}: {e}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = acked.lock().unwrap().len();
    let status = tokio::task::spawn_blocking(move || {
        let st = a.terminate(Duration::from_secs(30));
        (st, a)
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "proxy must exit 0 after SIGTERM, got {}\n{}",
        status.0,
        status.1.log_text()
    );
    let log = status.1.log_text();
    let drained: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("client connection drained"))
        .collect();
    assert!(
        !drained.is_empty(),
        "the proxy must drain its client connections:\n{log}"
    );
    assert!(
        drained.iter().all(|l| l.contains("unfinished=0")) && !log.contains("drain did not finish"),
        "in-flight requests left unfinished:\n{log}"
    );
    // Requests arriving during the drain were answered OVERLOADED (and retried on the other
    // proxy by the driver): the path this test is about was really taken.
    let refused: u64 = drained
        .iter()
        .filter_map(|l| l.split("refused_while_draining=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(refused > 0, "no request reached the draining proxy:\n{log}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    // On failure, say when the request was sent (SIGTERM went out at t=3 s) and what the
    // proxies logged above INFO, so a rare failure can be told apart from a drain problem.
    let warnings = |log: String| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_string)
            .collect()
    };
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}\nproxy a (drained) warnings: {:#?}\nproxy b warnings: {:#?}",
        failed.len(),
        &failed[..failed.len().min(5)],
        warnings(log.clone()),
        warnings(b.log_text())
    );
    assert!(
        acked.len() > before + 50,
        "load must continue on the other proxy ({before} -> {})",
        acked.len()
    );
    assert!(b.metric("zdm_proxy_requests_total").await > 0.0);
    let on_origin = keys(&origin, &ks).await;
    let on_target = keys(&target, &ks).await;
    let missing_o = acked.iter().filter(|k| !on_origin.contains(k)).count();
    let missing_t = acked.iter().filter(|k| !on_target.contains(k)).count();
    assert_eq!(
        (missing_o, missing_t),
        (0, 0),
        "acknowledged writes missing (origin, target) of {}",
        acked.len()
    );
    drop_ks(&origin, &target, &ks).await;
}
