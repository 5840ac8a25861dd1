//! An application's steady load through the proxy fleet: each worker writes a new key at a
//! fixed rate and reads it back, through one driver session that knows every proxy. The tests
//! and `zdm-demo-workload` (the demo's clients) run this one loop.
//!
//! A write counts only once the driver acknowledged it; every error the driver returns (after
//! its own retries) is a failed client request. Statements are marked idempotent, as an
//! application writing by primary key should: a request the proxy refused while draining
//! (OVERLOADED) or that lost its connection is then retried on the next proxy by the driver's
//! default retry policy.
//!
//! [`Writes::Application`] makes each write look like an ordinary application's: the row also
//! gets `toTimestamp(now())` and `uuid()` evaluated in the statement, and a per-worker counter
//! (`<keyspace>.hits`) is incremented after each acknowledged write: the values that differ
//! per cluster unless the proxies replace the functions, and the one write that is not
//! idempotent. Its tables come from [`create_application_tables`].

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::value::{Counter, CqlValue};
use tokio::task::JoinHandle;

/// What the workload saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Keys whose write was acknowledged.
    pub acked: Vec<i64>,
    /// Failed requests: "t=<seconds since start> <what>: <driver error>".
    pub failures: Vec<String>,
    pub reads_ok: u64,
    pub ran: Duration,
    /// The longest time without any acknowledged write (a stall the clients would notice).
    pub longest_gap: Duration,
    /// [`Writes::Application`]: acknowledged increments of each worker's counter row (key =
    /// worker number).
    pub increments: Vec<u64>,
}

/// Workloads started by this process.
static RUNS: AtomicI64 = AtomicI64::new(0);

/// What a running workload has seen so far.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub acked: usize,
    pub reads_ok: u64,
    pub failures: usize,
}

/// What each write carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Writes {
    /// `(k, v)` bound by the client.
    Plain,
    /// Also `toTimestamp(now())`, `uuid()` and a counter increment.
    Application,
}

#[derive(Default)]
struct Shared {
    acked: Mutex<Vec<(i64, Instant)>>,
    failures: Mutex<Vec<String>>,
    reads_ok: AtomicU64,
    increments: Mutex<Vec<u64>>,
}

pub struct Workload {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    started: Instant,
}

/// Creates `<keyspace>.kv` through the proxies (DDL goes to both clusters).
pub async fn create_table(session: &Session, keyspace: &str) {
    create_kv(
        session,
        keyspace,
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    )
    .await;
}

/// Creates `<keyspace>.kv` with the given replication map, through `session` (a direct session
/// when the two clusters need different maps, as data centers differ).
pub async fn create_kv(session: &Session, keyspace: &str, replication: &str) {
    for cql in [
        format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"),
        format!("CREATE TABLE IF NOT EXISTS {keyspace}.kv (k bigint PRIMARY KEY, v bigint)"),
    ] {
        session
            .query_unpaged(cql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("{cql}: {e}"));
    }
}

impl Report {
    /// This report followed by `later`'s (one application run in two sessions).
    pub fn and_then(mut self, later: Report) -> Report {
        self.acked.extend(later.acked);
        self.failures.extend(later.failures);
        self.reads_ok += later.reads_ok;
        self.ran += later.ran;
        self.longest_gap = self.longest_gap.max(later.longest_gap);
        for (i, n) in later.increments.into_iter().enumerate() {
            match self.increments.get_mut(i) {
                Some(mine) => *mine += n,
                None => self.increments.push(n),
            }
        }
        self
    }
}

/// Creates `<keyspace>.kv` with the columns [`Writes::Application`] fills (`at timestamp`,
/// `id uuid`) and the counter table `<keyspace>.hits`, with `session` (run it on each cluster,
/// or once through the proxies).
pub async fn create_application_tables(session: &Session, keyspace: &str) {
    for cql in [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.kv (k bigint PRIMARY KEY, v bigint, \
             at timestamp, id uuid)"
        ),
        format!("CREATE TABLE IF NOT EXISTS {keyspace}.hits (k bigint PRIMARY KEY, n counter)"),
    ] {
        session
            .query_unpaged(cql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("{cql}: {e}"));
    }
}

impl Workload {
    /// Starts `workers` workers, each writing (and reading back) one key every `period`.
    pub async fn start(
        session: Arc<Session>,
        keyspace: &str,
        workers: usize,
        period: Duration,
    ) -> Workload {
        Self::start_with(session, keyspace, workers, period, Writes::Plain).await
    }

    /// [`Workload::start`] with writes shaped as `writes` says.
    pub async fn start_with(
        session: Arc<Session>,
        keyspace: &str,
        workers: usize,
        period: Duration,
        writes: Writes,
    ) -> Workload {
        Self::try_start(session, keyspace, workers, period, writes)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Workload::start_with`] for tools that report errors rather than panic (the tables
    /// must exist: the statements are prepared first).
    pub async fn try_start(
        session: Arc<Session>,
        keyspace: &str,
        workers: usize,
        period: Duration,
        writes: Writes,
    ) -> anyhow::Result<Workload> {
        anyhow::ensure!(
            (1..=256).contains(&workers),
            "1 to 256 workers (a key holds the worker in 8 bits), not {workers}"
        );
        let insert_cql = match writes {
            Writes::Plain => format!("INSERT INTO {keyspace}.kv (k, v) VALUES (?, ?)"),
            Writes::Application => format!(
                "INSERT INTO {keyspace}.kv (k, v, at, id) VALUES (?, ?, toTimestamp(now()), uuid())"
            ),
        };
        let mut insert = session
            .prepare(insert_cql.as_str())
            .await
            .with_context(|| format!("prepare {insert_cql}"))?;
        insert.set_is_idempotent(true);
        let increment = match writes {
            Writes::Plain => None,
            Writes::Application => {
                let mut p = session
                    .prepare(format!("UPDATE {keyspace}.hits SET n = n + 1 WHERE k = ?"))
                    .await
                    .context("prepare the counter increment")?;
                // Not idempotent by nature; marked so, as an application accepting a rare
                // double count would, so the driver retries it on the next proxy when one
                // drains. A retry goes through a proxy to both clusters, so they still agree,
                // and the count can only be higher than the acknowledged increments.
                p.set_is_idempotent(true);
                Some(p)
            }
        };
        let mut select = session
            .prepare(format!("SELECT v FROM {keyspace}.kv WHERE k = ?"))
            .await
            .context("prepare the read back")?;
        select.set_is_idempotent(true);
        // Keys never repeat across the workloads of one process, so a later one cannot
        // overwrite (and so repair) the rows of an earlier one, nor across processes some
        // hours apart (the demo's runs share one keyspace): the run number counts on from
        // the clock's seconds.
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let run = (since_epoch + RUNS.fetch_add(1, Ordering::SeqCst)) & 0x7fff;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            increments: Mutex::new(vec![0; workers]),
            ..Default::default()
        });
        let started = Instant::now();
        let handles = (0..workers as i64)
            .map(|w| {
                let (session, insert, select, stop, shared, increment) = (
                    session.clone(),
                    insert.clone(),
                    select.clone(),
                    stop.clone(),
                    shared.clone(),
                    increment.clone(),
                );
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut i: i64 = 0;
                    while !stop.load(Ordering::SeqCst) {
                        tick.tick().await;
                        let k = (run << 40) | (w << 32) | i;
                        i += 1;
                        let t = || format!("t={:.1}s", started.elapsed().as_secs_f64());
                        if let Err(e) = session.execute_unpaged(&insert, (k, value_of(k))).await {
                            shared
                                .failures
                                .lock()
                                .unwrap()
                                .push(format!("{} write k={k}: {e}", t()));
                            continue;
                        }
                        shared.acked.lock().unwrap().push((k, Instant::now()));
                        if let Some(increment) = &increment {
                            match session.execute_unpaged(increment, (w,)).await {
                                Ok(_) => shared.increments.lock().unwrap()[w as usize] += 1,
                                Err(e) => shared
                                    .failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{} increment hits k={w}: {e}", t())),
                            }
                        }
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
                            Ok(Some((v,))) if v == value_of(k) => {
                                shared.reads_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(other) => shared.failures.lock().unwrap().push(format!(
                                "{} read k={k}: acknowledged write read back as {other:?}",
                                t()
                            )),
                            Err(e) => shared
                                .failures
                                .lock()
                                .unwrap()
                                .push(format!("{} read k={k}: {e}", t())),
                        }
                    }
                })
            })
            .collect();
        Ok(Workload {
            stop,
            workers: handles,
            shared,
            started,
        })
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.shared.acked.lock().unwrap().len()
    }

    /// Acknowledged writes, reads read back and failed requests so far.
    pub fn progress(&self) -> Progress {
        Progress {
            acked: self.acked(),
            reads_ok: self.shared.reads_ok.load(Ordering::Relaxed),
            failures: self.shared.failures.lock().unwrap().len(),
        }
    }

    /// Stops the workers (each finishes its current request) and reports.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            w.await.expect("workload worker panicked");
        }
        let ran = self.started.elapsed();
        let mut acked = self.shared.acked.lock().unwrap().clone();
        acked.sort_by_key(|(_, at)| *at);
        let mut longest_gap = Duration::ZERO;
        let mut last = self.started;
        for (_, at) in &acked {
            longest_gap = longest_gap.max(at.saturating_duration_since(last));
            last = *at;
        }
        Report {
            acked: acked.into_iter().map(|(k, _)| k).collect(),
            failures: self.shared.failures.lock().unwrap().clone(),
            reads_ok: self.shared.reads_ok.load(Ordering::Relaxed),
            ran,
            longest_gap,
            increments: self.shared.increments.lock().unwrap().clone(),
        }
    }
}

/// The value written with key `k` (read back, it proves the row is this write's).
fn value_of(k: i64) -> i64 {
    k * 7
}

/// Every key of `<keyspace>.kv` on one cluster (read directly, with that cluster's session).
pub async fn keys_on(session: &Session, keyspace: &str) -> std::collections::HashSet<i64> {
    session
        .query_iter(format!("SELECT k FROM {keyspace}.kv"), ())
        .await
        .expect("scan kv")
        .rows_stream::<(i64,)>()
        .expect("rows")
        .map_ok(|(k,)| k)
        .try_collect()
        .await
        .expect("scan kv")
}

/// Asserts that every acknowledged key is on origin AND on target.
pub async fn assert_on_both_clusters(
    origin: &Session,
    target: &Session,
    keyspace: &str,
    acked: &[i64],
) {
    for (name, s) in [("origin", origin), ("target", target)] {
        let present = keys_on(s, keyspace).await;
        let missing: Vec<&i64> = acked.iter().filter(|k| !present.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged writes are missing on {name}, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

/// `(at, id)` of every row of `<keyspace>.kv` on one cluster.
async fn function_values_on(
    session: &Session,
    keyspace: &str,
) -> std::collections::HashMap<i64, (Option<CqlValue>, Option<CqlValue>)> {
    session
        .query_iter(format!("SELECT k, at, id FROM {keyspace}.kv"), ())
        .await
        .expect("scan kv")
        .rows_stream::<(i64, Option<CqlValue>, Option<CqlValue>)>()
        .expect("rows")
        .map_ok(|(k, at, id)| (k, (at, id)))
        .try_collect()
        .await
        .expect("scan kv")
}

/// Every counter of `<keyspace>.hits` on one cluster.
async fn counters_on(session: &Session, keyspace: &str) -> std::collections::HashMap<i64, i64> {
    session
        .query_iter(format!("SELECT k, n FROM {keyspace}.hits"), ())
        .await
        .expect("scan hits")
        .rows_stream::<(i64, Counter)>()
        .expect("rows")
        .map_ok(|(k, n)| (k, n.0))
        .try_collect()
        .await
        .expect("scan hits")
}

/// For a [`Writes::Application`] run: every acknowledged row holds the same `now()` and
/// `uuid()` values on both clusters (each set, none left null), and each worker's counter is
/// equal on both clusters and counts at least its acknowledged increments.
pub async fn assert_application_writes_agree(
    origin: &Session,
    target: &Session,
    keyspace: &str,
    report: &Report,
) {
    let (o, t) = (
        function_values_on(origin, keyspace).await,
        function_values_on(target, keyspace).await,
    );
    let apart: Vec<_> = report
        .acked
        .iter()
        .filter(|k| {
            o.get(k) != t.get(k) || o.get(k).is_none_or(|(at, id)| at.is_none() || id.is_none())
        })
        .map(|k| (k, o.get(k), t.get(k)))
        .collect();
    assert!(
        apart.is_empty(),
        "{} of {} acknowledged rows differ in now()/uuid() values (origin, target), e.g. {:?}",
        apart.len(),
        report.acked.len(),
        &apart[..apart.len().min(3)]
    );
    let (o, t) = (
        counters_on(origin, keyspace).await,
        counters_on(target, keyspace).await,
    );
    for (w, &acked) in report.increments.iter().enumerate() {
        let w = w as i64;
        assert_eq!(
            o.get(&w),
            t.get(&w),
            "counter hits k={w} on origin and target ({acked} increments acknowledged)"
        );
        let n = o.get(&w).copied().unwrap_or(0);
        assert!(
            n >= acked as i64,
            "counter hits k={w} holds {n}, fewer than its {acked} acknowledged increments"
        );
    }
}
