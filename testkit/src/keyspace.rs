//! Test keyspaces on the sandbox's clusters: the statements tests set them up with, and a guard
//! that drops them when the test ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use scylla::client::session::Session;

use crate::locks::{Lock, CLUSTERS};
use crate::sandbox::Sandbox;

/// Sessions straight to origin and target, with the clusters lock held shared for as long as
/// the test uses them: a test of another suite that stops a Cassandra node waits for this one
/// to end rather than pull a cluster away in the middle of it (and the other way round).
pub struct Clusters {
    pub origin: Arc<Session>,
    pub target: Arc<Session>,
    _lock: Lock,
}

impl Clusters {
    /// Takes the clusters lock (shared), then holds `origin` and `target`, made by `connect`.
    pub async fn hold<F: std::future::Future<Output = (Session, Session)>>(connect: F) -> Clusters {
        let lock = tokio::task::spawn_blocking(|| Lock::shared(CLUSTERS))
            .await
            .expect("taking the clusters lock");
        let (origin, target) = connect.await;
        Clusters {
            origin: Arc::new(origin),
            target: Arc::new(target),
            _lock: lock,
        }
    }
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

/// `SELECT count(*)` of a table.
pub async fn count(session: &Session, table: &str) -> i64 {
    let cql = format!("SELECT count(*) FROM {table}");
    let (n,) = session
        .query_unpaged(cql.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
        .into_rows_result()
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
        .single_row::<(i64,)>()
        .unwrap_or_else(|e| panic!("{cql}: {e}"));
    n
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
    use futures::TryStreamExt;
    let cql = format!("SELECT k, token(k) FROM {table}");
    session
        .query_iter(cql.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
        .rows_stream::<(i32, i64)>()
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
}

/// Drops a test keyspace on both clusters when the test ends, also when it panics, so a failing
/// test leaves nothing behind on the shared sandbox.
pub struct KeyspaceGuard {
    sandbox: Sandbox,
    keyspace: String,
}

impl KeyspaceGuard {
    /// On the sandbox's clusters.
    pub fn new(keyspace: &str) -> KeyspaceGuard {
        Self::on(&Sandbox::load(), keyspace)
    }

    /// On the clusters of another sandbox instance.
    pub fn on(sandbox: &Sandbox, keyspace: &str) -> KeyspaceGuard {
        KeyspaceGuard {
            sandbox: sandbox.clone(),
            keyspace: keyspace.to_string(),
        }
    }
}

impl Drop for KeyspaceGuard {
    fn drop(&mut self) {
        let (sandbox, ks) = (self.sandbox.clone(), self.keyspace.clone());
        // Drop runs inside the test's runtime, which must not be blocked on: a thread with its
        // own runtime does the work, and the test waits for it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                for cluster in ["origin", "target"] {
                    if let Ok(s) = sandbox.connect_direct(cluster).await {
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
