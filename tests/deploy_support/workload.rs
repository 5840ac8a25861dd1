//! An application's steady load through the proxy fleet: each worker writes a new key at a
//! fixed rate and reads it back, through one driver session that knows every proxy.
//!
//! A write counts only once the driver acknowledged it; every error the driver returns (after
//! its own retries) is a failed client request. Statements are marked idempotent, as an
//! application writing by primary key should: a request the proxy refused while draining
//! (OVERLOADED) or that lost its connection is then retried on the next proxy by the driver's
//! default retry policy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use scylla::client::session::Session;
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
}

#[derive(Default)]
struct Shared {
    acked: Mutex<Vec<(i64, Instant)>>,
    failures: Mutex<Vec<String>>,
    reads_ok: AtomicU64,
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

impl Workload {
    /// Starts `workers` workers, each writing (and reading back) one key every `period`.
    pub async fn start(
        session: Arc<Session>,
        keyspace: &str,
        workers: usize,
        period: Duration,
    ) -> Workload {
        let mut insert = session
            .prepare(format!("INSERT INTO {keyspace}.kv (k, v) VALUES (?, ?)"))
            .await
            .expect("prepare insert");
        insert.set_is_idempotent(true);
        let mut select = session
            .prepare(format!("SELECT v FROM {keyspace}.kv WHERE k = ?"))
            .await
            .expect("prepare select");
        select.set_is_idempotent(true);
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let handles = (0..workers as i64)
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
                        let k = (w << 40) | i;
                        i += 1;
                        let t = || format!("t={:.1}s", started.elapsed().as_secs_f64());
                        if let Err(e) = session.execute_unpaged(&insert, (k, k * 7)).await {
                            shared
                                .failures
                                .lock()
                                .unwrap()
                                .push(format!("{} write k={k}: {e}", t()));
                            continue;
                        }
                        shared.acked.lock().unwrap().push((k, Instant::now()));
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
                            Ok(Some((v,))) if v == k * 7 => {
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
        Workload {
            stop,
            workers: handles,
            shared,
            started,
        }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.shared.acked.lock().unwrap().len()
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
        }
    }
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
