//! Benchmark of the data engine on the sandbox clusters: loads a table of (by default) one
//! million rows into origin, then measures a plain full scan of origin, migrate, a plain full
//! scan of target and validate, and writes the figures to `bench-results/data-engine.md`.
//!
//! The plain scans are the practical ceiling on this machine: the engine's rates are reported
//! as a ratio of them. Run with `cargo run --release --bin zdm-data-bench`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use zdm_run::data::ranges::split_ring;
use zdm_run::data::scan::{select_cql, RangeScanner, RetryPolicy};
use zdm_run::data::schema::load_tables;
use zdm_run::data::{
    migrate, validate, ClusterConfig, DataConfig, NoProgress, Selection, ValidateOptions,
};

#[derive(Parser)]
struct Args {
    /// Rows to load (10 clustering rows per partition).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u32,
    #[arg(long, default_value_t = 256)]
    splits: u32,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value = "bench-results/data-engine.md")]
    out: PathBuf,
    /// Sandbox env file (default: ZDM_SANDBOX_ENV or .sandbox/env).
    #[arg(long)]
    sandbox_env: Option<PathBuf>,
}

fn sandbox(args: &Args) -> anyhow::Result<HashMap<String, String>> {
    let path = args
        .sandbox_env
        .clone()
        .or_else(|| std::env::var_os("ZDM_SANDBOX_ENV").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".sandbox/env"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "the benchmark needs the sandbox: cannot read {}",
            path.display()
        )
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

fn cluster(env: &HashMap<String, String>, name: &str) -> anyhow::Result<ClusterConfig> {
    let get = |k: &str| {
        env.get(&format!("ZDM_{}_{k}", name.to_uppercase()))
            .cloned()
            .with_context(|| format!("sandbox env lacks ZDM_{}_{k}", name.to_uppercase()))
    };
    Ok(ClusterConfig {
        name: name.into(),
        contact_points: get("CONTACT_POINTS")?
            .split(',')
            .map(str::to_string)
            .collect(),
        port: get("PORT")?.parse()?,
        username: Some(get("USERNAME")?),
        password: Some(get("PASSWORD")?),
        rate_limit: None,
    })
}

const KS: &str = "zdm_data_bench";

async fn setup(s: &Session) -> anyhow::Result<()> {
    s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {KS}"), &[])
        .await?;
    s.query_unpaged(
        format!("CREATE KEYSPACE {KS} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
        &[],
    )
    .await?;
    s.query_unpaged(
        format!("CREATE TABLE {KS}.events (p int, c int, v text, n bigint, PRIMARY KEY (p, c))"),
        &[],
    )
    .await?;
    Ok(())
}

/// Loads rows with one unlogged batch per partition (10 rows), 64 batches in flight.
async fn load(s: &Session, rows: u32) -> anyhow::Result<()> {
    let insert = s
        .prepare(format!(
            "INSERT INTO {KS}.events (p, c, v, n) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
        ))
        .await?;
    let partitions = rows.div_ceil(10) as i32;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..partitions)
        .map(|p| {
            let insert = insert.clone();
            async move {
                let mut batch = Batch::new(BatchType::Unlogged);
                let mut values = Vec::new();
                for c in 0..10 {
                    if (p as u32) * 10 + (c as u32) >= rows {
                        break;
                    }
                    batch.append_statement(insert.clone());
                    values.push((
                        p,
                        c,
                        format!("payload-{p}-{c}-abcdefghijklmnopqrstuvwxyz"),
                        p as i64 * 10 + c as i64,
                        1_600_000_000_000_000i64 + p as i64,
                    ));
                }
                s.batch(&batch, values).await?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A plain full scan (values only, no writetimes, nothing written): the ceiling.
async fn full_scan(s: &Session, cfg: &DataConfig) -> anyhow::Result<u64> {
    let sel = Selection {
        keyspaces: vec![],
        tables: vec![(KS.into(), "events".into())],
    };
    let table = load_tables(s, "bench", &sel).await?.remove(0);
    let stmt = s.prepare(select_cql(&table, false)).await?;
    let retry = RetryPolicy {
        attempts: 5,
        backoff: std::time::Duration::from_millis(200),
    };
    let splits = cfg.splits.expect("the bench always sets --splits");
    let counts: Vec<anyhow::Result<u64>> = futures::stream::iter(split_ring(splits))
        .map(|range| {
            let (stmt, retry) = (&stmt, retry.clone());
            async move {
                let mut scanner = RangeScanner::new(s, stmt, range, cfg.page_size, retry, None);
                let mut n = 0u64;
                while let Some(page) = scanner.next_page().await? {
                    n += page.len() as u64;
                }
                Ok(n)
            }
        })
        .buffer_unordered(cfg.concurrency)
        .collect()
        .await;
    counts.into_iter().sum()
}

/// The Cassandra version a cluster reports (`system.local`), for the figures' context.
async fn release_version(s: &Session) -> anyhow::Result<String> {
    let (version,): (String,) = s
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await?
        .into_rows_result()?
        .single_row()?;
    Ok(version)
}

struct Phase {
    name: &'static str,
    rows: u64,
    secs: f64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.secs.max(1e-9)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = sandbox(&args)?;
    let load_start = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let cfg = DataConfig {
        origin: cluster(&env, "origin")?,
        target: cluster(&env, "target")?,
        splits: Some(args.splits),
        concurrency: args.concurrency,
        ..DataConfig::default()
    };
    let origin = Arc::new(cfg.origin.connect().await?);
    let target = Arc::new(cfg.target.connect().await?);
    let versions = format!(
        "origin Cassandra {}, target Cassandra {}",
        release_version(&origin).await?,
        release_version(&target).await?
    );
    setup(&origin).await?;
    setup(&target).await?;

    let mut phases = Vec::new();
    let t = Instant::now();
    load(&origin, args.rows).await?;
    phases.push(Phase {
        name: "load origin (unlogged batches, not the engine)",
        rows: args.rows as u64,
        secs: t.elapsed().as_secs_f64(),
    });
    eprintln!("loaded {} rows in {:.1}s", args.rows, phases[0].secs);

    let sel = Selection {
        keyspaces: vec![KS.into()],
        tables: vec![],
    };
    let t = Instant::now();
    let n = full_scan(&origin, &cfg).await?;
    phases.push(Phase {
        name: "plain full scan of origin",
        rows: n,
        secs: t.elapsed().as_secs_f64(),
    });
    anyhow::ensure!(
        n == args.rows as u64,
        "origin scan saw {n} rows, loaded {}",
        args.rows
    );

    let t = Instant::now();
    let m = migrate(&cfg, &sel, &NoProgress).await?;
    phases.push(Phase {
        name: "migrate (read origin with writetime/ttl, write target)",
        rows: m.rows_read,
        secs: t.elapsed().as_secs_f64(),
    });
    anyhow::ensure!(
        m.ok() && m.rows_read == args.rows as u64,
        "migrate: {}",
        m.human()
    );

    let t = Instant::now();
    let n = full_scan(&target, &cfg).await?;
    phases.push(Phase {
        name: "plain full scan of target",
        rows: n,
        secs: t.elapsed().as_secs_f64(),
    });
    anyhow::ensure!(n == args.rows as u64, "target scan saw {n} rows");

    let t = Instant::now();
    let v = validate(&cfg, &sel, &ValidateOptions::default(), &NoProgress).await?;
    phases.push(Phase {
        name: "validate (scan both, compare)",
        rows: v.rows_compared,
        secs: t.elapsed().as_secs_f64(),
    });
    anyhow::ensure!(
        v.missing + v.mismatched + v.extra == 0 && v.rows_compared == args.rows as u64,
        "validate: {}",
        v.human()
    );

    for s in [&origin, &target] {
        s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {KS}"), &[])
            .await?;
    }

    let ceiling = phases[1].rate().min(phases[3].rate());
    let mut md = String::new();
    let _ = writeln!(md, "# Data engine benchmark\n");
    let _ = writeln!(
        md,
        "Written by `zdm-data-bench` ({}). One table `(p int, c int, v text, n bigint, PRIMARY KEY (p, c))`, \
         {} rows in {} partitions; {} token sub-ranges, {} in parallel, page size {}. Both clusters are \
         single-node ({versions}) on the same machine as the tool ({} CPUs).\n",
        std::env::var("ZDM_BENCH_LABEL").unwrap_or_else(|_| "sandbox".into()),
        args.rows,
        args.rows.div_ceil(10),
        args.splits,
        cfg.concurrency,
        cfg.page_size,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        md,
        "| phase | rows | seconds | rows/s | vs. slower plain scan |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for p in &phases {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.0} | {:.2} |",
            p.name,
            p.rows,
            p.secs,
            p.rate(),
            p.rate() / ceiling
        );
    }
    let _ = writeln!(
        md,
        "\nmigrate / plain scan ceiling = {:.2}; validate / plain scan ceiling = {:.2} \
         (the ceiling is the slower of the two plain scans, {:.0} rows/s).",
        phases[2].rate() / ceiling,
        phases[4].rate() / ceiling,
        ceiling
    );
    let _ = writeln!(
        md,
        "Writing is the other ceiling: migrate / bulk load with unlogged batches = {:.2}.",
        phases[2].rate() / phases[0].rate()
    );
    let _ = writeln!(
        md,
        "Machine load average when the run started: {load_start} (other sessions share it).",
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &md)?;
    print!("{md}");
    Ok(())
}
