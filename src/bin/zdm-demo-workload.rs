//! The demo's application: sample data in origin, then a steady client load through the proxies
//! that proves the migration lost nothing.
//!
//! - `load`: creates keyspace `zdm_demo` (tables `customers`, `orders`, and `events` for the
//!   load) on BOTH clusters, as an operator prepares target's schema before phase 1, and
//!   inserts the sample rows into origin only (phase 2's backfill copies them).
//! - `run`: writes a new row of `zdm_demo.events` at a steady rate through the three proxies
//!   (one driver session that knows them all) and reads each one back, until the stop file
//!   appears (or `--seconds` pass). A write counts once the driver acknowledged it; every
//!   error the driver returns after its own retries is a failed request. At the end every
//!   acknowledged write is looked up directly on origin AND on target; one missing on either is
//!   a lost write. Exits 1 when there was any failed request or lost write.
//!
//! Connection settings come from the sandbox env file (`--sandbox-env`, else `ZDM_SANDBOX_ENV`,
//! else `.sandbox/env`); clients authenticate to the proxies with target's credentials.
//! Passwords are never printed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const KEYSPACE: &str = "zdm_demo";

#[derive(Parser)]
struct Args {
    /// Sandbox env file (default: ZDM_SANDBOX_ENV, else .sandbox/env).
    #[arg(long, global = true)]
    sandbox_env: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create zdm_demo on both clusters and load sample rows into origin only.
    Load {
        /// Customers to insert (each with 4 orders).
        #[arg(long, default_value_t = 500)]
        customers: i64,
        /// Drop zdm_demo on both clusters first (a rerun of the demo starts from scratch).
        #[arg(long)]
        fresh: bool,
    },
    /// Write and read through the proxies until the stop file exists, then check every
    /// acknowledged write on both clusters.
    Run {
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Writes per second per client (each followed by a read).
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Stop when this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Stop after this many seconds (when no stop file is given).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Print a progress line every this many seconds.
        #[arg(long, default_value_t = 15)]
        progress_every: u64,
    },
}

/// `KEY=value` lines of the sandbox env file.
fn read_env(path: Option<PathBuf>) -> anyhow::Result<HashMap<String, String>> {
    let path = path
        .or_else(|| std::env::var_os("ZDM_SANDBOX_ENV").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".sandbox/env"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the sandbox env {} (is the sandbox up? scripts/sandbox.sh up)",
            path.display()
        )
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

fn get<'a>(env: &'a HashMap<String, String>, key: &str) -> anyhow::Result<&'a str> {
    env.get(key)
        .map(String::as_str)
        .with_context(|| format!("the sandbox env has no {key}"))
}

/// A session straight to `origin` or `target` with that cluster's credentials.
async fn direct(env: &HashMap<String, String>, cluster: &str) -> anyhow::Result<Session> {
    let up = cluster.to_uppercase();
    let node = format!(
        "{}:{}",
        get(env, &format!("ZDM_{up}_CONTACT_POINTS"))?,
        get(env, &format!("ZDM_{up}_PORT"))?
    );
    SessionBuilder::new()
        .known_node(&node)
        .user(
            get(env, &format!("ZDM_{up}_USERNAME"))?,
            get(env, &format!("ZDM_{up}_PASSWORD"))?,
        )
        .connection_timeout(Duration::from_secs(30))
        .build()
        .await
        .with_context(|| format!("connecting to {cluster} at {node}"))
}

/// A session through every proxy (port 9042 of each sandbox host).
async fn through_proxies(env: &HashMap<String, String>) -> anyhow::Result<Session> {
    let nodes: Vec<String> = get(env, "SANDBOX_HOSTS")?
        .split_whitespace()
        .map(|h| format!("{h}:9042"))
        .collect();
    SessionBuilder::new()
        .known_nodes(&nodes)
        .user(
            get(env, "ZDM_TARGET_USERNAME")?,
            get(env, "ZDM_TARGET_PASSWORD")?,
        )
        .connection_timeout(Duration::from_secs(30))
        .build()
        .await
        .with_context(|| format!("connecting to the proxies {nodes:?}"))
}

const SCHEMA: [&str; 4] = [
    "CREATE KEYSPACE IF NOT EXISTS zdm_demo WITH replication = \
     {'class': 'SimpleStrategy', 'replication_factor': 1}",
    "CREATE TABLE IF NOT EXISTS zdm_demo.customers (id bigint PRIMARY KEY, name text, \
     email text, since timestamp)",
    "CREATE TABLE IF NOT EXISTS zdm_demo.orders (customer_id bigint, order_id int, \
     amount decimal, status text, PRIMARY KEY (customer_id, order_id))",
    "CREATE TABLE IF NOT EXISTS zdm_demo.events (k bigint PRIMARY KEY, v bigint)",
];

async fn load(env: &HashMap<String, String>, customers: i64, fresh: bool) -> anyhow::Result<()> {
    let origin = direct(env, "origin").await?;
    let target = direct(env, "target").await?;
    for (name, s) in [("origin", &origin), ("target", &target)] {
        if fresh {
            s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {KEYSPACE}"), &[])
                .await
                .with_context(|| format!("{name}: dropping {KEYSPACE}"))?;
        }
        for cql in SCHEMA {
            s.query_unpaged(cql, &[])
                .await
                .with_context(|| format!("{name}: {cql}"))?;
        }
    }
    let customer = origin
        .prepare("INSERT INTO zdm_demo.customers (id, name, email, since) VALUES (?, ?, ?, toTimestamp(now()))")
        .await?;
    let order = origin
        .prepare(
            "INSERT INTO zdm_demo.orders (customer_id, order_id, amount, status) \
             VALUES (?, ?, ?, ?)",
        )
        .await?;
    let mut rows = 0;
    for id in 0..customers {
        origin
            .execute_unpaged(
                &customer,
                (id, format!("customer {id}"), format!("c{id}@example.com")),
            )
            .await
            .context("loading customers into origin")?;
        rows += 1;
        for o in 0..4 {
            let amount = scylla::value::CqlDecimal::from_signed_be_bytes_slice_and_exponent(
                &((id * 100 + o * 7) as i32).to_be_bytes(),
                2,
            );
            origin
                .execute_unpaged(
                    &order,
                    (
                        id,
                        o as i32,
                        amount,
                        if o % 2 == 0 { "paid" } else { "open" },
                    ),
                )
                .await
                .context("loading orders into origin")?;
            rows += 1;
        }
    }
    println!(
        "loaded {rows} rows into origin ({customers} customers, {} orders); zdm_demo's schema \
         exists on origin and target",
        customers * 4
    );
    Ok(())
}

#[derive(Default)]
struct Shared {
    acked: Mutex<Vec<i64>>,
    failures: Mutex<Vec<String>>,
    reads_ok: AtomicU64,
}

async fn run(
    env: &HashMap<String, String>,
    workers: usize,
    rate: f64,
    stop_file: Option<&Path>,
    seconds: u64,
    progress_every: u64,
) -> anyhow::Result<bool> {
    if !rate.is_finite() || rate <= 0.0 {
        bail!("--rate must be > 0");
    }
    let session = Arc::new(through_proxies(env).await?);
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {KEYSPACE}.events (k, v) VALUES (?, ?)"
        ))
        .await
        .context("prepare insert (did `load` run?)")?;
    // Writes by primary key are idempotent: the driver may retry them on another proxy when
    // one drains (OVERLOADED) or its connection drops, as an application would configure.
    insert.set_is_idempotent(true);
    let mut select = session
        .prepare(format!("SELECT v FROM {KEYSPACE}.events WHERE k = ?"))
        .await?;
    select.set_is_idempotent(true);

    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    // Keys unique to this run, so a second run never reads an older run's rows.
    let base = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        & 0xff_ffff)
        << 32;
    let period = Duration::from_secs_f64(1.0 / rate);
    let handles: Vec<_> = (0..workers as i64)
        .map(|w| {
            let (session, insert, select, stop, shared) = (
                session.clone(),
                insert.clone(),
                select.clone(),
                stop.clone(),
                shared.clone(),
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i: i64 = 0;
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    let k = base | (w << 24) | i;
                    i += 1;
                    let t = format!("t={:.1}s", started.elapsed().as_secs_f64());
                    if let Err(e) = session.execute_unpaged(&insert, (k, k ^ 0x5a5a)).await {
                        shared
                            .failures
                            .lock()
                            .unwrap()
                            .push(format!("{t} write k={k}: {e}"));
                        continue;
                    }
                    shared.acked.lock().unwrap().push(k);
                    let read = async {
                        session
                            .execute_unpaged(&select, (k,))
                            .await
                            .map_err(|e| e.to_string())?
                            .into_rows_result()
                            .map_err(|e| e.to_string())?
                            .maybe_first_row::<(i64,)>()
                            .map_err(|e| e.to_string())
                    };
                    match read.await {
                        Ok(Some((v,))) if v == k ^ 0x5a5a => {
                            shared.reads_ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(other) => shared.failures.lock().unwrap().push(format!(
                            "{t} read k={k}: acknowledged write read back as {other:?}"
                        )),
                        Err(e) => shared
                            .failures
                            .lock()
                            .unwrap()
                            .push(format!("{t} read k={k}: {e}")),
                    }
                }
            })
        })
        .collect();

    println!(
        "workload: {workers} clients x {rate} writes/s (each read back) through the proxies {}",
        get(env, "SANDBOX_HOSTS")?
    );
    let mut last_progress = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = match stop_file {
            Some(f) => f.exists(),
            None => started.elapsed() >= Duration::from_secs(seconds),
        };
        if done {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(progress_every) {
            last_progress = Instant::now();
            println!(
                "workload t={:.0}s: {} writes acknowledged, {} reads ok, {} failed requests",
                started.elapsed().as_secs_f64(),
                shared.acked.lock().unwrap().len(),
                shared.reads_ok.load(Ordering::Relaxed),
                shared.failures.lock().unwrap().len()
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.await.context("a workload client panicked")?;
    }
    let acked = shared.acked.lock().unwrap().clone();
    let failures = shared.failures.lock().unwrap().clone();

    let mut lost_total = 0;
    let mut lost_lines = Vec::new();
    for cluster in ["origin", "target"] {
        let s = direct(env, cluster).await?;
        let present = keys(&s).await?;
        let lost: Vec<i64> = acked
            .iter()
            .copied()
            .filter(|k| !present.contains(k))
            .collect();
        lost_total += lost.len();
        lost_lines.push(format!(
            "  {cluster}: {} of {} acknowledged writes present, {} lost{}",
            acked.len() - lost.len(),
            acked.len(),
            lost.len(),
            if lost.is_empty() {
                String::new()
            } else {
                format!(", e.g. k={:?}", &lost[..lost.len().min(5)])
            }
        ));
    }
    println!(
        "\nWORKLOAD RESULT after {:.0} s: {} writes acknowledged, {} reads ok",
        started.elapsed().as_secs_f64(),
        acked.len(),
        shared.reads_ok.load(Ordering::Relaxed)
    );
    println!("failed requests: {}", failures.len());
    for f in failures.iter().take(20) {
        println!("  {f}");
    }
    println!("lost writes: {lost_total}");
    for l in lost_lines {
        println!("{l}");
    }
    Ok(failures.is_empty() && lost_total == 0 && !acked.is_empty())
}

/// Every key of `zdm_demo.events` on one cluster.
async fn keys(s: &Session) -> anyhow::Result<HashSet<i64>> {
    Ok(s.query_iter(format!("SELECT k FROM {KEYSPACE}.events"), ())
        .await?
        .rows_stream::<(i64,)>()?
        .map_ok(|(k,)| k)
        .try_collect()
        .await?)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = async {
        let env = read_env(args.sandbox_env)?;
        match args.cmd {
            Cmd::Load { customers, fresh } => load(&env, customers, fresh).await.map(|()| true),
            Cmd::Run {
                workers,
                rate,
                stop_file,
                seconds,
                progress_every,
            } => {
                run(
                    &env,
                    workers,
                    rate,
                    stop_file.as_deref(),
                    seconds,
                    progress_every,
                )
                .await
            }
        }
    }
    .await;
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("zdm-demo-workload: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
