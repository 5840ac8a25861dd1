//! Shared helpers for the data-engine integration tests: the sandbox clusters, unique keyspaces,
//! and small query helpers. The sandbox is required: without it these tests fail, loudly.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use scylla::client::session::Session;
use scylla::value::{CqlValue, Row};
use zdm_run::data::value::ScanRow;
use zdm_run::data::{ClusterConfig, DataConfig};

/// The sandbox's `KEY=value` file, from `ZDM_SANDBOX_ENV` or `<workspace>/.sandbox/env`.
pub fn sandbox_env() -> HashMap<String, String> {
    let path = std::env::var_os("ZDM_SANDBOX_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".sandbox/env"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the sandbox is required for this test but {} cannot be read ({e}); start it with \
             scripts/sandbox.sh up or set ZDM_SANDBOX_ENV",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn cluster(env: &HashMap<String, String>, name: &str) -> ClusterConfig {
    let get = |k: &str| {
        env.get(&format!("ZDM_{}_{k}", name.to_uppercase()))
            .cloned()
            .unwrap_or_else(|| panic!("sandbox env lacks ZDM_{}_{k}", name.to_uppercase()))
    };
    ClusterConfig {
        name: name.into(),
        contact_points: get("CONTACT_POINTS")
            .split(',')
            .map(str::to_string)
            .collect(),
        port: get("PORT").parse().expect("port"),
        username: Some(get("USERNAME")),
        password: Some(get("PASSWORD")),
        rate_limit: None,
    }
}

/// Engine settings pointing at the sandbox, with splits small enough for test tables.
pub fn config() -> DataConfig {
    let env = sandbox_env();
    DataConfig {
        origin: cluster(&env, "origin"),
        target: cluster(&env, "target"),
        splits: Some(32),
        concurrency: 4,
        ..DataConfig::default()
    }
}

/// The proxy tests' cluster lock (`$TMPDIR/zdm-proxy-tests.lock`) held shared: a test of another
/// suite that stops a Cassandra node takes it exclusive, so it waits for this test to end rather
/// than pull a cluster away in the middle of it (and the other way round).
pub struct ClusterLock(std::fs::File);

impl ClusterLock {
    pub fn shared() -> ClusterLock {
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join("zdm-proxy-tests.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open lock {}: {e}", path.display()));
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) };
        assert_eq!(rc, 0, "flock failed: {}", std::io::Error::last_os_error());
        ClusterLock(f)
    }
}

pub struct Clusters {
    pub origin: Arc<Session>,
    pub target: Arc<Session>,
    /// Held for as long as the test uses the clusters.
    pub _lock: ClusterLock,
}

pub async fn connect(cfg: &DataConfig) -> Clusters {
    let lock = tokio::task::spawn_blocking(ClusterLock::shared)
        .await
        .expect("taking the cluster lock");
    Clusters {
        origin: Arc::new(cfg.origin.connect().await.expect("connect origin")),
        target: Arc::new(cfg.target.connect().await.expect("connect target")),
        _lock: lock,
    }
}

/// A keyspace name unique to this test run.
pub fn unique_keyspace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("zdm_data_{test}_{}_{nanos}", std::process::id())
}

pub async fn exec(session: &Session, cql: &str) {
    session
        .query_unpaged(cql, &[])
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"));
}

/// Runs the same schema statements on both clusters (dropping the keyspace first).
pub async fn create_schema(c: &Clusters, keyspace: &str, statements: &[String]) {
    for s in [&c.origin, &c.target] {
        exec(s, &format!("DROP KEYSPACE IF EXISTS {keyspace}")).await;
        exec(
            s,
            &format!(
                "CREATE KEYSPACE {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
        )
        .await;
        for st in statements {
            exec(s, st).await;
        }
    }
}

/// All rows of a query, through the driver's pager (lists with null elements, as `ttl()` of a
/// collection returns them, are read as the engine reads them).
pub async fn rows(session: &Session, cql: &str) -> Vec<Row> {
    use futures::TryStreamExt;
    session
        .query_iter(cql, &[])
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
        .rows_stream::<ScanRow>()
        .expect("rows")
        .map_ok(|r| r.0)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
}

pub async fn count(session: &Session, table: &str) -> i64 {
    let r = rows(session, &format!("SELECT count(*) FROM {table}")).await;
    match &r[0].columns[0] {
        Some(CqlValue::BigInt(n)) => *n,
        other => panic!("count returned {other:?}"),
    }
}

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Inserts rows `(k, 'v<k>')` for k in 0..n into `table (k int PRIMARY KEY, v text)` with
/// writetime `ts`, 64 at a time.
pub async fn load_kv(session: &Session, table: &str, n: i32, ts: i64) {
    use futures::StreamExt;
    let p = session
        .prepare(format!(
            "INSERT INTO {table} (k, v) VALUES (?, ?) USING TIMESTAMP ?"
        ))
        .await
        .expect("prepare insert");
    futures::stream::iter(0..n)
        .map(|k| {
            let p = &p;
            async move {
                session
                    .execute_unpaged(p, (k, format!("v{k}"), ts))
                    .await
                    .expect("insert");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

/// Token of each key of a `k int` table, read from the cluster.
pub async fn tokens(session: &Session, table: &str) -> HashMap<i32, i64> {
    rows(session, &format!("SELECT k, token(k) FROM {table}"))
        .await
        .into_iter()
        .map(|r| match (&r.columns[0], &r.columns[1]) {
            (Some(CqlValue::Int(k)), Some(CqlValue::BigInt(t))) => (*k, *t),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// Index of the range `(start, end]` of `split_ring(splits)` holding `token`.
pub fn range_of(token: i64, splits: u32) -> u32 {
    zdm_run::data::ranges::split_ring(splits)
        .iter()
        .find(|r| token > r.start && token <= r.end)
        .expect("every token is in a range")
        .index
}

/// Drops a test keyspace on both clusters when the test ends, also when it panics, so a failing
/// test leaves nothing behind on the shared sandbox.
pub struct KeyspaceGuard {
    cfg: DataConfig,
    keyspace: String,
}

impl KeyspaceGuard {
    pub fn new(cfg: &DataConfig, keyspace: &str) -> KeyspaceGuard {
        KeyspaceGuard {
            cfg: cfg.clone(),
            keyspace: keyspace.to_string(),
        }
    }
}

impl Drop for KeyspaceGuard {
    fn drop(&mut self) {
        let (cfg, ks) = (self.cfg.clone(), self.keyspace.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with
        // its own runtime and wait for it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                for side in [&cfg.origin, &cfg.target] {
                    if let Ok(s) = side.connect().await {
                        let _ = s
                            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), &[])
                            .await;
                    }
                }
            });
        })
        .join();
    }
}
