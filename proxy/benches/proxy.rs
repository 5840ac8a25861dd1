//! Benchmark: one driver workload (mixed prepared reads and writes, fixed concurrency) run
//! directly against origin and then through a local zdm-proxy, in the same run, and through a
//! second proxy in `read_mode: DUAL_ASYNC_ON_SECONDARY` (every read also shadowed on target and
//! compared). Writes throughput, p50/p99 latency (all requests and reads alone), the proxy's
//! CPU seconds per 10k requests and its peak RSS to `bench-results/proxy.md`.
//!
//! Run: `ZDM_SANDBOX_ENV=/path/.sandbox/env cargo bench -p zdm-proxy --bench proxy`
//! (optional: BENCH_SECONDS, BENCH_CONCURRENCY (empty: no throughput runs), BENCH_PROXY_BIN,
//! BENCH_IDLE_CONNECTIONS (default 1000, 0: no idle measurement)).
//!
//! Also measures the idle memory per authenticated client connection (`support/idle_memory.rs`).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::Sandbox;

#[path = "support/idle_memory.rs"]
mod idle_memory;

struct Stats {
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
    read_p50_us: u64,
    read_p99_us: u64,
}

/// Runs the workload on `s`. With `also_write_to`, every INSERT is also sent (concurrently) to
/// that second session: the client doing the proxy's dual write itself, the fair baseline.
async fn workload(
    s: Arc<Session>,
    also_write_to: Option<Arc<Session>>,
    ks: &str,
    concurrency: usize,
    secs: u64,
) -> Stats {
    let insert_cql = format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)");
    let insert = s.prepare(insert_cql.clone()).await.unwrap();
    let select = s
        .prepare(format!("SELECT v FROM {ks}.kv WHERE k = ?"))
        .await
        .unwrap();
    let second = match &also_write_to {
        Some(t) => Some((t.clone(), t.prepare(insert_cql).await.unwrap())),
        None => None,
    };
    // Warm-up so connections and caches are in place.
    for k in 0..1000i32 {
        s.execute_unpaged(&insert, (k, "warm")).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (s, insert, select, stop) = (s.clone(), insert.clone(), select.clone(), stop.clone());
        let second = second.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut read_lat = Vec::with_capacity(50_000);
            let mut errors = 0;
            let mut i: i32 = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = (w as i32 * 7919 + i) % 1000;
                let t = Instant::now();
                let r = if i % 2 == 0 {
                    let values = (k, "value-of-some-length");
                    match &second {
                        Some((t, tinsert)) => {
                            let (a, b) = tokio::join!(
                                s.execute_unpaged(&insert, values),
                                t.execute_unpaged(tinsert, values)
                            );
                            a.and(b).map(|_| ())
                        }
                        None => s.execute_unpaged(&insert, values).await.map(|_| ()),
                    }
                } else {
                    s.execute_unpaged(&select, (k,)).await.map(|_| ())
                };
                if r.is_err() {
                    errors += 1;
                }
                let us = t.elapsed().as_micros() as u64;
                lat.push(us);
                if i % 2 == 1 {
                    read_lat.push(us);
                }
                i += 1;
            }
            (lat, read_lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut reads = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, r, e) = t.await.unwrap();
        all.extend(l);
        reads.extend(r);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    reads.sort_unstable();
    let pct = |v: &[u64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    Stats {
        requests: all.len(),
        errors,
        seconds,
        p50_us: pct(&all, 0.50),
        p99_us: pct(&all, 0.99),
        read_p50_us: pct(&reads, 0.50),
        read_p99_us: pct(&reads, 0.99),
    }
}

/// (matches, mismatches, dropped, failed) shadow reads so far, from the DUAL proxy's metrics.
async fn shadow_counts() -> [f64; 4] {
    let body = reqwest::get("http://127.0.0.29:20401/metrics")
        .await
        .expect("scrape the DUAL proxy")
        .text()
        .await
        .unwrap();
    let sum = |name: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    [
        sum("zdm_async_read_matches_total"),
        sum("zdm_async_read_mismatches_total"),
        sum("zdm_async_requests_dropped_total"),
        sum("zdm_async_requests_failed_total"),
    ]
}

/// (user+system CPU seconds, peak RSS kB) of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap_or(0);
    (cpu, hwm)
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The 1-minute load average: what else was running, next to the figures, because the proxy's
/// CPU per request depends on the machine's load (see the report's conditions line).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let sb = Sandbox::load();
    // Shared: a fault test (target_down stops the target) must not run in the middle of a
    // measurement; waits while one runs.
    let _lock = Lock::shared(CLUSTERS);
    let load_before = load_average();
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let levels: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "4,32".into())
        .split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            c.trim()
                .parse()
                .expect("BENCH_CONCURRENCY: comma-separated integers")
        })
        .collect();
    let idle_connections: usize = std::env::var("BENCH_IDLE_CONNECTIONS")
        .ok()
        .map(|n| n.parse().expect("BENCH_IDLE_CONNECTIONS: an integer"))
        .unwrap_or(1000);
    // The proxy (a child: it inherits the limit) holds three sockets per client connection.
    idle_memory::raise_fd_limit(4 * idle_connections as u64 + 256);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let g = |k: &str| sb.get(k).to_string();

    let mut env: Vec<(String, String)> = Vec::new();
    for c in ["ORIGIN", "TARGET"] {
        for k in ["CONTACT_POINTS", "PORT", "USERNAME", "PASSWORD"] {
            let key = format!("ZDM_{c}_{k}");
            env.push((key.clone(), g(&key)));
        }
    }
    env.push(("ZDM_LOG_LEVEL".into(), "WARN".into()));
    if let Ok(n) = std::env::var("TOKIO_WORKER_THREADS") {
        env.push(("TOKIO_WORKER_THREADS".into(), n));
    }
    // One proxy per read mode (a read mode set in the environment cannot be reloaded).
    let spawn = |port: u16, read_mode: &str| {
        let mut env = env.clone();
        env.push(("ZDM_PROXY_LISTEN_ADDRESS".into(), "127.0.0.29".into()));
        env.push(("ZDM_PROXY_LISTEN_PORT".into(), port.to_string()));
        env.push(("ZDM_METRICS_ADDRESS".into(), "127.0.0.29".into()));
        env.push(("ZDM_METRICS_PORT".into(), (port + 1000).to_string()));
        env.push(("ZDM_READ_MODE".into(), read_mode.into()));
        let proxy = Kill(
            // BENCH_PROXY_BIN: run another build (e.g. the previous commit's) under the same conditions.
            Command::new(
                std::env::var("BENCH_PROXY_BIN")
                    .unwrap_or_else(|_| env!("CARGO_BIN_EXE_zdm-proxy").to_string()),
            )
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn zdm-proxy"),
        );
        let addr = format!("127.0.0.29:{port}");
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "proxy did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        (proxy, addr)
    };
    // Idle memory first, on a proxy of its own, so nothing of the throughput runs is in its RSS.
    let idle = (idle_connections > 0).then(|| {
        let (idle_proxy, idle_addr) = spawn(19402, "PRIMARY_ONLY");
        idle_memory::measure(&sb, &idle_addr, idle_proxy.0.id(), idle_connections)
    });
    let (proxy, addr) = spawn(19400, "PRIMARY_ONLY");
    let (dual_proxy, dual_addr) = spawn(19401, "DUAL_ASYNC_ON_SECONDARY");
    let pid = proxy.0.id();
    let dual_pid = dual_proxy.0.id();

    let ks = format!("proxy_bench_{}", std::process::id());
    let results = rt.block_on(async {
        let connect = |node: String, user: String, pass: String| async move {
            Arc::new(SessionBuilder::new().known_node(node).user(user, pass).build().await.unwrap())
        };
        let origin_node = format!("{}:{}", g("ZDM_ORIGIN_CONTACT_POINTS"), g("ZDM_ORIGIN_PORT"));
        let target_node = format!("{}:{}", g("ZDM_TARGET_CONTACT_POINTS"), g("ZDM_TARGET_PORT"));
        let origin = connect(origin_node, g("ZDM_ORIGIN_USERNAME"), g("ZDM_ORIGIN_PASSWORD")).await;
        let target = connect(target_node, g("ZDM_TARGET_USERNAME"), g("ZDM_TARGET_PASSWORD")).await;
        for s in [&origin, &target] {
            s.query_unpaged(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class':'SimpleStrategy','replication_factor':1}}"), ()).await.unwrap();
            s.query_unpaged(format!("CREATE TABLE IF NOT EXISTS {ks}.kv (k int PRIMARY KEY, v text)"), ()).await.unwrap();
        }
        let via = connect(addr.clone(), g("ZDM_TARGET_USERNAME"), g("ZDM_TARGET_PASSWORD")).await;
        let via_dual = connect(dual_addr.clone(), g("ZDM_TARGET_USERNAME"), g("ZDM_TARGET_PASSWORD")).await;
        let mut results = Vec::new();
        for &c in &levels {
            let direct = workload(origin.clone(), None, &ks, c, secs).await;
            let dual = workload(origin.clone(), Some(target.clone()), &ks, c, secs).await;
            let (cpu0, _) = proc_usage(pid);
            let through = workload(via.clone(), None, &ks, c, secs).await;
            let (cpu1, _) = proc_usage(pid);
            let before = shadow_counts().await;
            let (dcpu0, _) = proc_usage(dual_pid);
            let shadowed = workload(via_dual.clone(), None, &ks, c, secs).await;
            let (dcpu1, _) = proc_usage(dual_pid);
            // Let the last comparisons finish before counting.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let after = shadow_counts().await;
            let verdicts = [0, 1, 2, 3].map(|i| after[i] - before[i]);
            results.push((c, direct, dual, through, cpu1 - cpu0, shadowed, dcpu1 - dcpu0, verdicts));
        }
        for s in [&origin, &target] {
            let _ = s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ()).await;
        }
        results
    });
    let (_, rss) = proc_usage(pid);
    let (_, dual_rss) = proc_usage(dual_pid);
    drop(proxy);
    drop(dual_proxy);

    let tput = |s: &Stats| s.requests as f64 / s.seconds;
    let now = std::process::Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let row = |name: &str, s: &Stats| {
        format!(
            "| {name} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            s.requests,
            s.errors,
            tput(s),
            s.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            s.read_p50_us as f64 / 1000.0,
            s.read_p99_us as f64 / 1000.0
        )
    };
    let proxy_bin =
        std::env::var("BENCH_PROXY_BIN").unwrap_or_else(|_| "built with this bench".into());
    let workers =
        std::env::var("TOKIO_WORKER_THREADS").unwrap_or_else(|_| "default (one per core)".into());
    let mut report = format!(
        "# zdm-proxy benchmark\n\n{now}. Workload: scylla driver, prepared statements, 50% INSERT / 50% SELECT by key \
         over 1000 keys, {secs} s per run, 1000 warm-up writes per run. Machine: 2 cores shared by the driver, the proxy and \
         both Cassandra nodes (origin and target), so the runs are CPU-bound: every CPU cycle the proxy and the target's \
         extra writes take is a cycle the clusters lose.\n\n\
         Conditions: proxy binary {proxy_bin}, tokio worker threads {workers}; 1-minute load average {load_before} before \
         the runs (the runs themselves then load both cores). The proxy's CPU per request falls as its batches grow (more requests per socket write and \
         per thread wake-up), so it moves with the machine's load: one build (b441e05) has measured 0.09, 0.12, \
         0.14 and 0.15 s per 10k requests at concurrency 32 in runs of the same day. Compare two builds in alternating runs under the same \
         conditions (BENCH_PROXY_BIN), not against figures from another session.\n"
    );
    for (c, direct, dual, through, cpu, shadowed, dcpu, [matched, mismatched, dropped, failed]) in
        &results
    {
        report.push_str(&format!(
            "\n## concurrency {c}\n\n| run | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | read p50 (ms) | read p99 (ms) |\n|---|---|---|---|---|---|---|---|\n{}{}{}{}\n\
             - Throughput through the proxy vs the client dual-writing itself (same cluster work): {:.1}% lower.\n\
             - Throughput through the proxy vs direct to origin only: {:.1}% lower.\n\
             - Proxy CPU: {:.3} s per 10k requests ({cpu:.2} s user+system over the proxied run); \
             in DUAL mode {:.3} s per 10k requests.\n\
             - DUAL mode vs PRIMARY_ONLY: read p50 {:+.2} ms, read p99 {:+.2} ms, throughput {:+.1}% (the shadow \
             reads are extra work for target on the same 2 cores). Shadow reads: {matched} matched, {mismatched} \
             mismatched (real: see below), {dropped} dropped, {failed} failed.\n",
            row("direct to origin", direct),
            row("direct, client writes to both", dual),
            row("through zdm-proxy (PRIMARY_ONLY)", through),
            row("through zdm-proxy (DUAL_ASYNC_ON_SECONDARY)", shadowed),
            100.0 * (1.0 - tput(through) / tput(dual)),
            100.0 * (1.0 - tput(through) / tput(direct)),
            cpu / (through.requests as f64 / 10_000.0),
            dcpu / (shadowed.requests as f64 / 10_000.0),
            (shadowed.read_p50_us as f64 - through.read_p50_us as f64) / 1000.0,
            (shadowed.read_p99_us as f64 - through.read_p99_us as f64) / 1000.0,
            100.0 * (tput(shadowed) / tput(through) - 1.0),
        ));
    }
    report.push_str(
        "\nMismatches are real differences: each run's warm-up writes go through its own session only, so \
         the direct-to-origin runs leave origin ahead of target for the keys a later run does not rewrite.\n",
    );
    report.push_str(&format!(
        "\nProxy peak RSS (VmHWM) over all runs: {:.1} MiB (PRIMARY_ONLY), {:.1} MiB (DUAL_ASYNC_ON_SECONDARY).\n",
        rss as f64 / 1024.0,
        dual_rss as f64 / 1024.0
    ));
    if let Some(m) = &idle {
        report.push_str(&idle_memory::report(m));
    }
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("proxy.md"), &report).unwrap();
    println!("{report}");
}
