//! The demo's application: sample data in origin, then a steady client load through the proxies
//! that proves the migration lost nothing.
//!
//! - `load`: creates keyspace `zdm_demo` (tables `customers`, `orders`, and `kv` for the
//!   load) on BOTH clusters, as an operator prepares target's schema before phase 1, and
//!   inserts the sample rows into origin only (phase 2's backfill copies them).
//! - `run`: writes a new row of `zdm_demo.kv` at a steady rate through the three proxies
//!   (one driver session that knows them all) and reads each one back (the tests' workload
//!   loop, `zdm_testkit::workload`), until the stop file
//!   appears (or `--seconds` pass). A write counts once the driver acknowledged it; every
//!   error the driver returns after its own retries is a failed request. At the end every
//!   acknowledged write is looked up directly on origin AND on target; one missing on either is
//!   a lost write. Exits 1 when there was any failed request or lost write.
//!
//! Connection settings come from the sandbox env file (`--sandbox-env`, else `ZDM_SANDBOX_ENV`,
//! else the workspace's `.sandbox/env`); clients authenticate to the proxies with target's credentials.
//! Passwords are never printed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use zdm_testkit::sandbox::{default_env_path, Sandbox};
use zdm_testkit::workload::{keys_on, Workload, Writes};

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

const SCHEMA: [&str; 4] = [
    "CREATE KEYSPACE IF NOT EXISTS zdm_demo WITH replication = \
     {'class': 'SimpleStrategy', 'replication_factor': 1}",
    "CREATE TABLE IF NOT EXISTS zdm_demo.customers (id bigint PRIMARY KEY, name text, \
     email text, since timestamp)",
    "CREATE TABLE IF NOT EXISTS zdm_demo.orders (customer_id bigint, order_id int, \
     amount decimal, status text, PRIMARY KEY (customer_id, order_id))",
    // The table the client workload writes (`zdm_testkit::workload`).
    "CREATE TABLE IF NOT EXISTS zdm_demo.kv (k bigint PRIMARY KEY, v bigint)",
];

async fn load(sb: &Sandbox, customers: i64, fresh: bool) -> anyhow::Result<()> {
    let origin = sb.connect_direct("origin").await?;
    let target = sb.connect_direct("target").await?;
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

async fn run(
    sb: &Sandbox,
    workers: usize,
    rate: f64,
    stop_file: Option<&Path>,
    seconds: u64,
    progress_every: u64,
) -> anyhow::Result<bool> {
    if !rate.is_finite() || rate <= 0.0 {
        bail!("--rate must be > 0");
    }
    let proxies: Vec<String> = sb
        .host_addresses()
        .iter()
        .map(|h| format!("{h}:9042"))
        .collect();
    let session = Arc::new(sb.connect_through_proxies(&proxies).await?);
    let period = Duration::from_secs_f64(1.0 / rate);
    let workload = Workload::try_start(session, KEYSPACE, workers, period, Writes::Plain)
        .await
        .context("starting the workload (did `load` run?)")?;
    let started = Instant::now();
    println!(
        "workload: {workers} clients x {rate} writes/s (each read back) through the proxies {}",
        sb.require("SANDBOX_HOSTS")?
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
            let p = workload.progress();
            println!(
                "workload t={:.0}s: {} writes acknowledged, {} reads ok, {} failed requests",
                started.elapsed().as_secs_f64(),
                p.acked,
                p.reads_ok,
                p.failures
            );
        }
    }
    let report = workload.stop().await;
    let acked = &report.acked;

    let mut lost_total = 0;
    let mut lost_lines = Vec::new();
    for cluster in ["origin", "target"] {
        let s = sb.connect_direct(cluster).await?;
        let present = keys_on(&s, KEYSPACE).await;
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
        report.ran.as_secs_f64(),
        acked.len(),
        report.reads_ok
    );
    println!("failed requests: {}", report.failures.len());
    for f in report.failures.iter().take(20) {
        println!("  {f}");
    }
    println!("lost writes: {lost_total}");
    for l in lost_lines {
        println!("{l}");
    }
    Ok(report.failures.is_empty() && lost_total == 0 && !acked.is_empty())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = async {
        let sb = Sandbox::read(&args.sandbox_env.unwrap_or_else(default_env_path))?;
        match args.cmd {
            Cmd::Load { customers, fresh } => load(&sb, customers, fresh).await.map(|()| true),
            Cmd::Run {
                workers,
                rate,
                stop_file,
                seconds,
                progress_every,
            } => {
                run(
                    &sb,
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
