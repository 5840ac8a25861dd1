//! `read_mode: DUAL_ASYNC_ON_SECONDARY` against the sandbox's real clusters, through the scylla
//! driver: shadow reads on target are compared with origin's answers (mismatches counted per
//! table, the client served by origin), prepared reads are shadowed with target's own id (and
//! prepared again when target forgot them), a reload turns shadowing on for open connections,
//! and a stopped target neither fails nor slows the client's reads.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

const DUAL: (&str, &str) = ("ZDM_READ_MODE", "DUAL_ASYNC_ON_SECONDARY");
const IP: &str = "127.0.0.27";

/// Sum of every series of a metric (all label sets), from one scrape.
async fn metric_sum(p: &Proxy, name: &str) -> f64 {
    let (_, body) = p.http_get("/metrics").await;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn table_series(name: &str, ks: &str) -> String {
    format!("zdm_async_read_{name}_total{{keyspace=\"{ks}\",table=\"kv\"}}")
}

/// The (matches, mismatches) counters of `ks.kv`; 0 while the series does not exist yet.
async fn verdicts(p: &Proxy, ks: &str) -> (f64, f64) {
    let (_, body) = p.http_get("/metrics").await;
    let get = |name: &str| {
        let series = table_series(name, ks);
        body.lines()
            .find_map(|l| l.strip_prefix(&series).and_then(|r| r.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    };
    (get("matches"), get("mismatches"))
}

/// Waits (bounded) until the shadow reads of `ks.kv` reached exactly the expected counts; the
/// comparison runs after the client got its answer, so it lags a little.
async fn wait_verdicts(p: &Proxy, ks: &str, want: (f64, f64)) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = verdicts(p, ks).await;
        if got == want {
            return;
        }
        assert!(
            got.0 <= want.0 && got.1 <= want.1,
            "more verdicts than shadowed reads: (matches, mismatches) = {got:?}, want {want:?}"
        );
        assert!(
            Instant::now() < deadline,
            "shadow verdicts for {ks}.kv stuck at (matches, mismatches) = {got:?}, want {want:?}; \
             dropped {}, failed {}\nlog:\n{}",
            metric_sum(p, "zdm_async_requests_dropped_total").await,
            metric_sum(p, "zdm_async_requests_failed_total").await,
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ten rows written through the proxy (so on both clusters), then row 5 changed on target only.
async fn seed_with_drift(
    s: &scylla::client::session::Session,
    target: &scylla::client::session::Session,
    ks: &str,
) {
    create_kv(s, ks).await;
    for k in 1..=10 {
        s.query_unpaged(
            format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"),
            (k, format!("v{k}")),
        )
        .await
        .unwrap_or_else(|e| panic!("insert k={k}: {e}"));
    }
    target
        .query_unpaged(
            format!("UPDATE {ks}.kv SET v = 'drifted-on-target' WHERE k = 5"),
            (),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_mode_counts_a_row_altered_on_target_as_a_mismatch_and_serves_origin() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_shadow_q");
    let p = Proxy::start(&sb, IP, 19160, &[DUAL]);
    let s = p.session(&sb).await;
    seed_with_drift(&s, &target, &ks).await;
    assert_eq!(
        verdicts(&p, &ks).await,
        (0.0, 0.0),
        "writes are not shadowed"
    );

    // Plain QUERY reads (bound values, not prepared): 3 of the drifted row, 9 of the others.
    for _ in 0..3 {
        assert_eq!(
            read_v(&s, &ks, 5).await.as_deref(),
            Some("v5"),
            "client must get origin's value"
        );
    }
    for k in (1..=10).filter(|k| *k != 5) {
        assert_eq!(read_v(&s, &ks, k).await, Some(format!("v{k}")));
    }
    wait_verdicts(&p, &ks, (9.0, 3.0)).await;
    // A sample of the mismatching rows is logged (rate-limited: at least the first one), named
    // by the row's leading columns: here the only selected one, origin's `v`.
    let log = p.log_text();
    assert!(
        log.lines().any(|l| l.contains("shadow read differs")
            && l.contains("first differing row: v='v5'")
            && l.contains(&ks)),
        "no mismatch line naming v='v5' in the log:\n{log}"
    );
    assert!(
        !log.contains(sb.get("ZDM_TARGET_PASSWORD")),
        "a password reached the log"
    );
    // A multi-row read (a whole-table scan, token order on both) counts once, as a mismatch.
    s.query_unpaged(format!("SELECT k, v FROM {ks}.kv"), ())
        .await
        .unwrap();
    wait_verdicts(&p, &ks, (9.0, 4.0)).await;
    assert_eq!(
        metric_sum(&p, "zdm_async_requests_dropped_total").await,
        0.0
    );
    assert_eq!(metric_sum(&p, "zdm_async_requests_failed_total").await, 0.0);
    assert_eq!(
        metric_sum(&p, "zdm_async_connections_total").await,
        1.0,
        "one async connection for the one driver connection"
    );
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_mode_shadows_prepared_selects_with_the_targets_own_id() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_shadow_p");
    let p = Proxy::start(&sb, IP, 19161, &[DUAL]);
    let s = p.session(&sb).await;
    seed_with_drift(&s, &target, &ks).await;
    let select = s
        .prepare(format!("SELECT v FROM {ks}.kv WHERE k = ?"))
        .await
        .unwrap();
    let before_pscache_miss = p.metric("zdm_pscache_miss_total").await;
    for k in [5, 5, 1, 2] {
        let (v,) = s
            .execute_unpaged(&select, (k,))
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .single_row::<(String,)>()
            .unwrap();
        assert_eq!(v, format!("v{k}"), "client must get origin's value");
    }
    wait_verdicts(&p, &ks, (2.0, 2.0)).await;
    // Target answered the EXECUTE itself, no UNPREPARED (or any error): its own id was used.
    assert_eq!(metric_sum(&p, "zdm_async_requests_failed_total").await, 0.0);
    assert_eq!(
        p.metric("zdm_pscache_miss_total").await,
        before_pscache_miss
    );
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_mode_reprepares_a_select_the_target_forgot_on_the_async_connection() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_shadow_u");
    let p = Proxy::start(&sb, IP, 19164, &[DUAL]);
    let s = p.session(&sb).await;
    seed_with_drift(&s, &target, &ks).await;
    let select = s
        .prepare(format!("SELECT v FROM {ks}.kv WHERE k = ?"))
        .await
        .unwrap();
    // Dropping and re-creating the table on target alone makes target forget the statement
    // (and its rows): the shadow EXECUTE gets UNPREPARED, must prepare it again on the async
    // connection and retry, and then finds no row where origin has one.
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
    let (v,) = s
        .execute_unpaged(&select, (1,))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(String,)>()
        .unwrap();
    assert_eq!(v, "v1");
    wait_verdicts(&p, &ks, (0.0, 1.0)).await;
    let unprepared = p
        .metric(&format!(
            "zdm_async_requests_failed_total{{error=\"unprepared\",node=\"{}\"}}",
            sb.node("target")
        ))
        .await;
    assert_eq!(
        unprepared, 1.0,
        "the first shadow EXECUTE must have met UNPREPARED"
    );
    assert_eq!(
        metric_sum(&p, "zdm_async_requests_failed_total").await,
        1.0,
        "nothing but that UNPREPARED may fail"
    );
    // The retry went through: a second read needs no re-prepare.
    s.execute_unpaged(&select, (1,)).await.unwrap();
    wait_verdicts(&p, &ks, (0.0, 2.0)).await;
    assert_eq!(metric_sum(&p, "zdm_async_requests_failed_total").await, 1.0);
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_to_dual_mode_shadows_reads_on_connections_already_open() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_shadow_r");
    let dir = std::env::temp_dir().join(format!("zdm-shadow-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("zdm-proxy.yml");
    std::fs::write(&file, "read_mode: PRIMARY_ONLY\n").unwrap();
    let p = Proxy::start_with_file(&sb, IP, 19162, &file);
    let s = p.session(&sb).await;
    seed_with_drift(&s, &target, &ks).await;
    for k in [5, 1] {
        read_v(&s, &ks, k).await;
    }
    // Nothing is shadowed in PRIMARY_ONLY: give a shadow read time to show up if one was sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(verdicts(&p, &ks).await, (0.0, 0.0));
    assert_eq!(metric_sum(&p, "zdm_async_connections_total").await, 0.0);

    std::fs::write(&file, "read_mode: DUAL_ASYNC_ON_SECONDARY\n").unwrap();
    let (status, body) = p.http_post("/reload").await;
    assert_eq!(status, 200, "{body}");
    let conns = p.metric("zdm_client_connections_total").await;
    for k in [5, 1] {
        read_v(&s, &ks, k).await;
    }
    wait_verdicts(&p, &ks, (1.0, 1.0)).await;
    assert_eq!(
        p.metric("zdm_client_connections_total").await,
        conns,
        "the reload must not reopen client connections"
    );
    drop_ks(&origin, &target, &ks).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads by key with `workers` concurrent loops for `secs`: (successes, failures).
/// (`select` is prepared beforehand: a PREPARE goes to both clusters, so not while one is down.)
async fn read_load(
    s: Arc<scylla::client::session::Session>,
    select: &scylla::statement::prepared::PreparedStatement,
    workers: usize,
    secs: u64,
) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (s, select, ok, failed, stop) = (
            s.clone(),
            select.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = w as i32;
            while !stop.load(Ordering::SeqCst) {
                k = k % 10 + 1;
                match s.execute_unpaged(&select, (k,)).await {
                    Ok(r) => {
                        let (v,) = r
                            .into_rows_result()
                            .unwrap()
                            .single_row::<(String,)>()
                            .unwrap();
                        assert_eq!(v, format!("v{k}"));
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        eprintln!("read k={k} failed: {e}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_stopped_in_dual_mode_reads_keep_succeeding_and_shadow_losses_are_counted() {
    let _lock = Lock::exclusive(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let ks = unique_name("proxy_shadow_down");
    let p = Proxy::start(
        &sb,
        IP,
        19163,
        &[
            DUAL,
            ("ZDM_PROXY_REQUEST_TIMEOUT_MS", "2000"),
            ("ZDM_HEARTBEAT_INTERVAL_MS", "1000"),
        ],
    );
    let s = Arc::new(p.session(&sb).await);
    {
        let target = sb.direct("target").await;
        seed_with_drift(&s, &target, &ks).await;
    }
    let select = s
        .prepare(format!("SELECT v FROM {ks}.kv WHERE k = ?"))
        .await
        .unwrap();
    let secs = 8;
    let (ok_up, failed_up) = read_load(s.clone(), &select, 4, secs).await;
    assert_eq!(failed_up, 0, "reads failed with both clusters up");
    // Every read was shadowed: once the last comparisons are done, each one is a match, a
    // mismatch (row 5 drifted on target) or counted as lost.
    let lost = || async {
        metric_sum(&p, "zdm_async_requests_dropped_total").await
            + metric_sum(&p, "zdm_async_requests_failed_total").await
    };
    let settle = Instant::now() + Duration::from_secs(30);
    let (verdicts_up, lost_before) = loop {
        let (v, l) = (verdicts(&p, &ks).await, lost().await);
        if v.0 + v.1 + l >= ok_up as f64 || Instant::now() > settle {
            break (v, l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        verdicts_up.0 + verdicts_up.1 + lost_before,
        ok_up as f64,
        "shadow reads unaccounted for with target up: {verdicts_up:?}, lost {lost_before}"
    );
    assert!(
        verdicts_up.0 > 0.0 && verdicts_up.1 > 0.0,
        "{verdicts_up:?}"
    );

    let mut down = TargetStopped::stop(sb.get("SANDBOX_SCRIPT"));
    let (ok_down, failed_down) = read_load(s.clone(), &select, 4, secs).await;
    let lost_after = lost().await;
    let verdicts_down = verdicts(&p, &ks).await;
    eprintln!(
        "reads in {secs} s: {ok_up} with target up ({verdicts_up:?} matches/mismatches, \
         {lost_before} lost), {ok_down} with target down ({} lost); at the end:\n{}",
        lost_after - lost_before,
        p.http_get("/metrics")
            .await
            .1
            .lines()
            .filter(|l| l.starts_with("zdm_async_requests_") && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        failed_down, 0,
        "client reads failed while the secondary was down"
    );
    // Full rate: the target's absence must not slow origin reads (it frees CPU, if anything);
    // half the rate is the bar on this shared 2-core machine.
    assert!(
        ok_down * 2 >= ok_up,
        "reads slowed down with the secondary stopped: {ok_down} vs {ok_up} in {secs} s"
    );
    assert!(
        lost_after - lost_before >= (ok_down as f64) * 0.9,
        "shadow reads with target down must be counted as dropped or failed: {} of {ok_down}",
        lost_after - lost_before
    );
    assert_eq!(
        verdicts_down, verdicts_up,
        "no shadow read can be compared while target is down"
    );
    let m = verdicts_up.0;

    // Back up: the proxy closes the connection that lost target, the driver reconnects, and
    // shadow reads are compared again.
    down.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (matches, _) = verdicts(&p, &ks).await;
        if matches > m {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shadow reads did not resume after target came back\nlog:\n{}",
            p.log_text()
        );
        let _ = s.execute_unpaged(&select, (1,)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let target = sb.direct("target").await;
    drop_ks(&origin, &target, &ks).await;
}
