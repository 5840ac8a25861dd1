//! Benchmark of the data engine on the sandbox clusters: loads a table of (by default) one
//! million rows into origin, then measures, in one run, the engine and the ceilings it is held
//! to, and writes the figures to `bench-results/data-engine.md`:
//!
//! - migrate against *scan origin while bulk-writing target*: a plain scan of origin and, at
//!   the same time, the same rows written to target with single-partition unlogged batches
//!   (the driver used the simplest fast way). Migrate must do both, plus writetimes and TTLs;
//! - validate against *scan both clusters at once*: two plain scans running together, since
//!   validate must read both.
//!
//! Both ceilings share the machine with the clusters exactly as the engine does, so their ratios
//! hold on a busy machine better than absolute rates do. Run with
//! `cargo build --release -p zdm-tools --bin zdm-data-bench && target/release/zdm-data-bench` (add `--keep`
//! to leave the loaded table on origin so the next run skips the load).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

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
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::sandbox::{default_env_path, Sandbox};

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
    /// Sandbox env file (default: ZDM_SANDBOX_ENV, else the workspace's .sandbox/env).
    #[arg(long)]
    sandbox_env: Option<PathBuf>,
    /// Leave the loaded table on origin (and reuse one left by an earlier run with the same row
    /// count) instead of dropping it at the end: loading a million rows is the slowest part.
    #[arg(long)]
    keep: bool,
}

fn cluster(sb: &Sandbox, name: &str) -> anyhow::Result<ClusterConfig> {
    let get = |k: &str| {
        sb.require(&format!("ZDM_{}_{k}", name.to_uppercase()))
            .map(str::to_string)
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

/// Creates the bench keyspace and table if absent (a kept table is reused as it is).
async fn setup(s: &Session) -> anyhow::Result<()> {
    s.query_unpaged(
        format!("CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
        &[],
    )
    .await?;
    s.query_unpaged(
        format!("CREATE TABLE IF NOT EXISTS {KS}.events (p int, c int, v text, n bigint, PRIMARY KEY (p, c))"),
        &[],
    )
    .await?;
    Ok(())
}

/// Empties the bench table (the sandbox runs with `auto_snapshot: false`, so this leaves no
/// snapshot behind).
async fn empty(s: &Session) -> anyhow::Result<()> {
    s.query_unpaged(format!("TRUNCATE {KS}.events"), &[])
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

/// A plain full scan (values only, no writetimes, nothing written): the ceilings' reads.
async fn full_scan(s: &Session, cfg: &DataConfig) -> anyhow::Result<u64> {
    scan(s, cfg, false).await
}

/// A full scan through the engine's range scanner; `with_times` also selects every cell's
/// writetime and TTL, as migrate and validate must.
async fn scan(s: &Session, cfg: &DataConfig, with_times: bool) -> anyhow::Result<u64> {
    let sel = Selection {
        keyspaces: vec![],
        tables: vec![(KS.into(), "events".into())],
    };
    let table = load_tables(s, "bench", &sel).await?.remove(0);
    let stmt = s.prepare(select_cql(&table, with_times)).await?;
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

/// CPU seconds used so far by this tool and by each cluster's Cassandra process: a phase's
/// share of each shows where its time goes (the machine's cores are shared by all three).
#[derive(Clone, Copy, Default)]
struct CpuUse {
    tool: f64,
    origin: Option<f64>,
    target: Option<f64>,
}

/// Reads [`CpuUse`] from `/proc`; the clusters' pids come from the sandbox's pid files.
struct CpuMeter {
    origin_pid: Option<String>,
    target_pid: Option<String>,
}

impl CpuMeter {
    fn new(sb: &Sandbox) -> CpuMeter {
        let pid = |cluster: &str| {
            let dir = sb.require("SANDBOX_DIR").ok()?;
            let pid = std::fs::read_to_string(format!("{dir}/{cluster}/cassandra.pid")).ok()?;
            Some(pid.trim().to_string())
        };
        CpuMeter {
            origin_pid: pid("origin"),
            target_pid: pid("target"),
        }
    }

    fn now(&self) -> CpuUse {
        CpuUse {
            tool: process_cpu_secs("self").unwrap_or(0.0),
            origin: self.origin_pid.as_deref().and_then(process_cpu_secs),
            target: self.target_pid.as_deref().and_then(process_cpu_secs),
        }
    }
}

/// User + system CPU seconds of a process (`/proc/PID/stat` fields 14 and 15).
fn process_cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted from the closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / per_sec.max(1.0))
}

/// When a phase started: wall clock and CPU used so far.
struct Mark {
    at: Instant,
    cpu: CpuUse,
}

impl Mark {
    fn now(meter: &CpuMeter) -> Mark {
        Mark {
            at: Instant::now(),
            cpu: meter.now(),
        }
    }
}

struct Phase {
    name: &'static str,
    rows: u64,
    secs: f64,
    /// CPU seconds the phase used in this tool, origin's and target's Cassandra.
    cpu: CpuUse,
}

impl Phase {
    fn new(name: &'static str, rows: u64, started: &Mark, meter: &CpuMeter) -> Phase {
        let now = meter.now();
        let delta = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        Phase {
            name,
            rows,
            secs: started.at.elapsed().as_secs_f64(),
            cpu: CpuUse {
                tool: now.tool - started.cpu.tool,
                origin: delta(now.origin, started.cpu.origin),
                target: delta(now.target, started.cpu.target),
            },
        }
    }

    fn rate(&self) -> f64 {
        self.rows as f64 / self.secs.max(1e-9)
    }

    /// CPU seconds as `tool / origin / target` (`?` where a cluster's process was not found).
    fn cpu_cell(&self) -> String {
        let show = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.1}"));
        format!(
            "{:.1} / {} / {}",
            self.cpu.tool,
            show(self.cpu.origin),
            show(self.cpu.target)
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sb = Sandbox::read(&args.sandbox_env.clone().unwrap_or_else(default_env_path))?;
    let cfg = DataConfig {
        origin: cluster(&sb, "origin")?,
        target: cluster(&sb, "target")?,
        splits: Some(args.splits),
        concurrency: args.concurrency,
        ..DataConfig::default()
    };
    // The clusters lock held shared for the whole run: a test that stops a Cassandra node takes
    // it exclusive, so it waits for the measurement instead of pulling a cluster away in the
    // middle of it.
    let _lock = tokio::task::spawn_blocking(|| Lock::take(CLUSTERS, false)).await??;
    let meter = CpuMeter::new(&sb);
    let load_start = load_average();
    let origin = Arc::new(cfg.origin.connect().await?);
    let target = Arc::new(cfg.target.connect().await?);
    let versions = format!(
        "origin Cassandra {}, target Cassandra {}",
        release_version(&origin).await?,
        release_version(&target).await?
    );
    setup(&origin).await?;
    setup(&target).await?;
    empty(&target).await?;
    let rows = args.rows as u64;
    let mut phases = Vec::new();

    // A kept table from an earlier run is reused when it holds exactly the rows asked for.
    let kept = args.keep && full_scan(&origin, &cfg).await? == rows;
    if kept {
        eprintln!("reusing the {rows} rows kept on origin");
    } else {
        empty(&origin).await?;
        let t = Mark::now(&meter);
        load(&origin, args.rows).await?;
        phases.push(Phase::new(
            "load origin (unlogged batches, not the engine)",
            rows,
            &t,
            &meter,
        ));
        eprintln!("loaded {rows} rows in {:.1}s", t.at.elapsed().as_secs_f64());
    }

    let t = Mark::now(&meter);
    let n = full_scan(&origin, &cfg).await?;
    anyhow::ensure!(n == rows, "origin scan saw {n} rows, loaded {rows}");
    phases.push(Phase::new("plain full scan of origin alone", n, &t, &meter));

    // Not a ceiling: what reading the writetimes and TTLs the engine needs costs by itself.
    let t = Mark::now(&meter);
    let n = scan(&origin, &cfg, true).await?;
    anyhow::ensure!(n == rows, "origin scan saw {n} rows, loaded {rows}");
    phases.push(Phase::new(
        "full scan of origin with writetime/ttl, alone",
        n,
        &t,
        &meter,
    ));

    // Ceiling of migrate: read origin and write target at the same time.
    let t = Mark::now(&meter);
    let (n, ()) = tokio::try_join!(full_scan(&origin, &cfg), load(&target, args.rows))?;
    anyhow::ensure!(n == rows, "origin scan saw {n} rows");
    let copy_ceiling = Phase::new(
        "ceiling: plain scan of origin + bulk write of target, together",
        n,
        &t,
        &meter,
    );
    empty(&target).await?;

    let sel = Selection {
        keyspaces: vec![KS.into()],
        tables: vec![],
    };
    let t = Mark::now(&meter);
    let m = migrate(&cfg, &sel, &NoProgress).await?;
    anyhow::ensure!(m.ok() && m.rows_read == rows, "migrate: {}", m.human());
    let migrate_phase = Phase::new(
        "migrate (read origin with writetime/ttl, write target)",
        m.rows_read,
        &t,
        &meter,
    );

    // Ceiling of validate: read both clusters at the same time.
    let t = Mark::now(&meter);
    let (o, g) = tokio::try_join!(full_scan(&origin, &cfg), full_scan(&target, &cfg))?;
    anyhow::ensure!(
        o == rows && g == rows,
        "scans saw {o} (origin), {g} (target) rows"
    );
    let scan_ceiling = Phase::new(
        "ceiling: plain scans of origin and target, together",
        o,
        &t,
        &meter,
    );

    let t = Mark::now(&meter);
    let v = validate(&cfg, &sel, &ValidateOptions::default(), &NoProgress).await?;
    anyhow::ensure!(
        v.missing + v.mismatched + v.extra == 0 && v.rows_compared == rows,
        "validate: {}",
        v.human()
    );
    let validate_phase = Phase::new(
        "validate (scan both, compare; writetime/ttl read again where values differ)",
        v.rows_compared,
        &t,
        &meter,
    );
    let load_end = load_average();

    empty(&target).await?;
    if !args.keep {
        for s in [&origin, &target] {
            s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {KS}"), &[])
                .await?;
        }
    }

    let migrate_ratio = migrate_phase.rate() / copy_ceiling.rate();
    let validate_ratio = validate_phase.rate() / scan_ceiling.rate();
    let verdict = |ratio: f64, goal: f64| {
        if ratio >= goal {
            format!("meets the goal of {goal}")
        } else {
            format!("**below the goal of {goal}**")
        }
    };
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| phase | rows | seconds | rows/s | vs. its ceiling | CPU s: tool / origin / target |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|");
    for p in &phases {
        let _ = writeln!(
            table,
            "| {} | {} | {:.1} | {:.0} | |",
            p.name,
            p.rows,
            p.secs,
            p.rate()
        );
    }
    for (p, ratio) in [
        (&copy_ceiling, 1.0),
        (&migrate_phase, migrate_ratio),
        (&scan_ceiling, 1.0),
        (&validate_phase, validate_ratio),
    ] {
        let _ = writeln!(
            table,
            "| {} | {} | {:.1} | {:.0} | {ratio:.2} | {} |",
            p.name,
            p.rows,
            p.secs,
            p.rate(),
            p.cpu_cell()
        );
    }

    let mut md = String::new();
    let _ = writeln!(md, "# Data engine benchmark\n");
    let _ = writeln!(
        md,
        "Written by `zdm-data-bench` ({}). One table `(p int, c int, v text, n bigint, PRIMARY KEY (p, c))`, \
         {} rows in {} partitions{}; {} token sub-ranges, {} in parallel, page size {}. Both clusters are \
         single-node ({versions}) on the same machine as the tool ({} CPUs).\n",
        std::env::var("ZDM_BENCH_LABEL").unwrap_or_else(|_| "sandbox".into()),
        args.rows,
        args.rows.div_ceil(10),
        if kept { " (kept from an earlier run, not loaded again)" } else { "" },
        args.splits,
        cfg.concurrency,
        cfg.page_size,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    md.push_str(&table);
    let _ = writeln!(
        md,
        "\nThe ceilings are measured in the same run, on the same machine, each doing the least the \
         engine's job needs with the driver used plainly: for migrate, a scan of origin (values \
         only) while the same rows are bulk-written to target (one unlogged batch per partition, \
         64 in flight); for validate, scans of both clusters at the same time.\n"
    );
    let _ = writeln!(
        md,
        "- migrate / its ceiling = {migrate_ratio:.2} ({})",
        verdict(migrate_ratio, 0.7)
    );
    let _ = writeln!(
        md,
        "- validate / its ceiling = {validate_ratio:.2} ({})",
        verdict(validate_ratio, 0.8)
    );
    let _ = writeln!(
        md,
        "\nThe machine was shared with other sessions' builds and tests while this ran: load average \
         {load_start} at the start, {load_end} at the end (1, 5, 15 min). Absolute rates move with \
         that load; the ratios, taken minutes apart in one run, move much less. The CPU column counts \
         each phase's CPU seconds in this tool and in each cluster's Cassandra process (other \
         sessions' tests also use those nodes, so theirs may include a little of that).",
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &md)?;
    print!("{md}");
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
