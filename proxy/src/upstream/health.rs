//! Control connections and heartbeats: whether each cluster is UP, as readiness reports it.
//!
//! Each cluster gets one control connection authenticated with the configured credentials, to
//! the first reachable contact point. It sends OPTIONS often enough, with a reply timeout short
//! enough, that a closed *or hung* node is DOWN within one `heartbeat_interval_ms` (see
//! `heartbeat_timing`); a failed heartbeat or a closed socket marks the cluster DOWN at once, so
//! `/health/readiness` (served by `ops::http`) turns 503 within one heartbeat interval. The
//! control connection also discovers the local data center's nodes (see `nodes`), and origin's
//! refreshes the cluster facts used in topology answers.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::ops::config::{Cluster, Config};
use crate::ops::exposition::{Exposition, Kind};
use crate::protocol::frame::opcode;
use crate::protocol::wire;
use crate::state::Shared;
use crate::statements::topology::ClusterInfo;
use crate::upstream::cluster::{handshake, ClusterConn, ClusterError};
use crate::upstream::nodes::{self, NodeRow};

pub struct ClusterHealth {
    up: AtomicBool,
    failures: AtomicU32,
    addr: Mutex<String>,
    /// A settings error the control connection found (a local data center without nodes):
    /// the proxy refuses to start on it rather than retry forever.
    settings_error: Mutex<Option<String>>,
    /// Whether the cluster speaks protocol v5 (its SUPPORTED lists "5/v5"), as the control
    /// connection last saw it.
    v5: AtomicBool,
}

pub struct Health {
    origin: ClusterHealth,
    target: ClusterHealth,
}

impl Health {
    pub fn new(config: &Config) -> Health {
        let h = |c: &crate::ops::config_cluster::ClusterConfig| ClusterHealth {
            up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            addr: Mutex::new(format!("{}:{}", c.contact_points.join(","), c.port)),
            settings_error: Mutex::new(None),
            v5: AtomicBool::new(false),
        };
        Health {
            origin: h(&config.origin),
            target: h(&config.target),
        }
    }

    pub fn of(&self, c: Cluster) -> &ClusterHealth {
        match c {
            Cluster::Origin => &self.origin,
            Cluster::Target => &self.target,
        }
    }

    /// The first settings error either control connection found, if any.
    pub fn settings_error(&self) -> Option<String> {
        [&self.origin, &self.target]
            .iter()
            .find_map(|h| h.settings_error.lock().unwrap().clone())
    }

    /// The highest protocol version a client may use: 5 when both clusters speak it.
    pub fn max_client_version(&self) -> u8 {
        if self.origin.speaks_v5() && self.target.speaks_v5() {
            crate::protocol::frame::V5
        } else {
            crate::protocol::frame::VERSION
        }
    }

    pub fn both_up(&self) -> bool {
        self.origin.up.load(Ordering::SeqCst) && self.target.up.load(Ordering::SeqCst)
    }

    /// Readiness as gauges, appended to `/metrics`: `<prefix>_proxy_cluster_up{cluster}` (1 while
    /// the last heartbeat saw the cluster UP) and `<prefix>_proxy_ready` (1 exactly when
    /// `/health/readiness` answers 200). The reference proxy has no such series; without them
    /// Prometheus could only see readiness through a probe it does not ship, so an alert on
    /// "a proxy not ready" would need a second exporter.
    pub fn render_metrics(&self, x: &mut Exposition) {
        x.by_label(
            "proxy_cluster_up",
            Kind::Gauge,
            "1 while the proxy's control connection sees the cluster UP",
            "cluster",
            [
                ("origin", u8::from(self.origin.is_up())),
                ("target", u8::from(self.target.is_up())),
            ],
        );
        x.single(
            "proxy_ready",
            Kind::Gauge,
            "1 when /health/readiness answers 200 (both clusters UP)",
            u8::from(self.both_up()),
        );
    }

    /// The reference proxy's readiness report.
    pub fn report(&self) -> serde_json::Value {
        let one = |h: &ClusterHealth| {
            serde_json::json!({
                "Addr": h.addr.lock().unwrap().clone(),
                "CurrentFailureCount": h.failures.load(Ordering::SeqCst),
                "FailureCountThreshold": 1,
                "Status": if h.up.load(Ordering::SeqCst) { "UP" } else { "DOWN" },
            })
        };
        serde_json::json!({
            "OriginStatus": one(&self.origin),
            "TargetStatus": one(&self.target),
            "Status": if self.both_up() { "UP" } else { "DOWN" },
        })
    }
}

impl ClusterHealth {
    /// As the last heartbeat saw it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Whether the cluster speaks protocol v5.
    pub fn speaks_v5(&self) -> bool {
        self.v5.load(Ordering::SeqCst)
    }

    fn mark_up(&self, node: &str) {
        *self.addr.lock().unwrap() = node.to_string();
        self.failures.store(0, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }

    fn set_settings_error(&self, e: String) {
        *self.settings_error.lock().unwrap() = Some(e);
    }

    fn clear_settings_error(&self) {
        *self.settings_error.lock().unwrap() = None;
    }

    fn mark_down(&self) {
        self.failures.fetch_add(1, Ordering::SeqCst);
        self.up.store(false, Ordering::SeqCst);
    }
}

const LOCAL_QUERY: &str = "SELECT cluster_name, data_center, rack, release_version, partitioner, \
                           cql_version, schema_version FROM system.local WHERE key='local'";
const PEERS_QUERY: &str = "SELECT peer, rpc_address, data_center FROM system.peers";

/// Runs one system-table query on the control connection; its rows.
async fn select(
    conn: &ClusterConn,
    query: &str,
    timeout: Duration,
) -> Result<Vec<wire::Row>, ControlError> {
    let mut body = BytesMut::new();
    wire::put_long_string(&mut body, query);
    body.put_u16(0x0001); // consistency ONE
    body.put_u8(0); // v4 query flags are one byte
    let resp = conn
        .request(opcode::QUERY, 0, body.freeze(), timeout)
        .await?;
    if resp.opcode != opcode::RESULT {
        return Err(ControlError::Other(format!(
            "{query}: {:?}",
            wire::parse_error(&resp.body)
        )));
    }
    wire::parse_rows(&resp.body).map_err(|e| ControlError::Other(format!("{query}: {e}")))
}

fn cell<'r>(row: &'r wire::Row, name: &str) -> Option<&'r [u8]> {
    row.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
}

fn text(row: &wire::Row, name: &str) -> String {
    cell(row, name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Reads the reached node's system.local (the facts topology answers use).
async fn fetch_info(conn: &ClusterConn, timeout: Duration) -> Result<ClusterInfo, ControlError> {
    let rows = select(conn, LOCAL_QUERY, timeout).await?;
    let row = rows
        .first()
        .ok_or_else(|| ControlError::Other("system.local returned no row".into()))?;
    let mut schema_version = [0u8; 16];
    if let Some(v) = cell(row, "schema_version") {
        if v.len() == 16 {
            schema_version.copy_from_slice(v);
        }
    }
    Ok(ClusterInfo {
        cluster_name: text(row, "cluster_name"),
        data_center: text(row, "data_center"),
        rack: text(row, "rack"),
        release_version: text(row, "release_version"),
        partitioner: text(row, "partitioner"),
        cql_version: text(row, "cql_version"),
        schema_version,
    })
}

/// Why a control-connection step failed.
#[derive(Debug)]
enum ControlError {
    /// No answer or the socket closed: the cluster is DOWN.
    Unanswered(ClusterError),
    /// The configured local data center has no node: a settings error, named.
    Datacenter(String),
    /// Anything else (an error answer, a malformed result): logged, retried.
    Other(String),
}

impl From<ClusterError> for ControlError {
    fn from(e: ClusterError) -> ControlError {
        ControlError::Unanswered(e)
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Unanswered(e) => write!(f, "{e}"),
            ControlError::Datacenter(e) | ControlError::Other(e) => f.write_str(e),
        }
    }
}

/// Discovers the cluster's local-DC nodes and records them (and, for origin, the facts the
/// topology answers use, with the local data center as theirs).
async fn discover(
    shared: &Shared,
    cluster: Cluster,
    conn: &ClusterConn,
    timeout: Duration,
) -> Result<(), ControlError> {
    let mut info = fetch_info(conn, timeout).await?;
    let peers: Vec<NodeRow> = select(conn, PEERS_QUERY, timeout)
        .await?
        .iter()
        .filter_map(|row| {
            let peer = cell(row, "peer").and_then(nodes::inet);
            let rpc = cell(row, "rpc_address").and_then(nodes::inet);
            Some(NodeRow {
                address: nodes::peer_address(peer, rpc)?.to_string(),
                data_center: text(row, "data_center"),
            })
        })
        .collect();
    let local = NodeRow {
        address: conn.host.clone(),
        data_center: info.data_center.clone(),
    };
    let cfg = shared.config.cluster(cluster);
    let setting = format!("{}_local_datacenter", cluster.name());
    let chosen = nodes::select_local(&local, &peers, &cfg.local_datacenter, &setting)
        .map_err(ControlError::Datacenter)?;
    if shared.set_nodes(cluster, &chosen.nodes) {
        tracing::info!(
            cluster = cluster.name(),
            data_center = %chosen.data_center,
            nodes = ?chosen.nodes,
            "local data center nodes"
        );
    }
    if cluster == Cluster::Origin {
        info.data_center = chosen.data_center;
        *shared.info.write().unwrap() = Some(info);
    }
    Ok(())
}

/// How often the control connection sends a heartbeat and how long it waits for the reply, for
/// a `heartbeat_interval_ms`. The two add up to the interval, so a node that stops answering
/// (hung, not closed) is DOWN within one interval of its last answer: a heartbeat is sent at
/// most a third of an interval after it, and its reply is given the remaining two thirds.
pub fn heartbeat_timing(interval: Duration) -> (Duration, Duration) {
    let period = interval / 3;
    (period, interval - period)
}

/// Keeps one control connection to `cluster` alive for the life of the process.
///
/// When the connection is lost, another node is tried at once before the cluster is marked
/// DOWN: on a multi-node cluster the loss of the one node the control connection happened to
/// use is not the loss of the cluster, and readiness must not blink to 503 for it.
pub async fn control_loop(shared: Arc<Shared>, cluster: Cluster) {
    let health = shared.health.of(cluster);
    let mut failover: Option<Arc<ClusterConn>> = None;
    loop {
        // Read each round: `heartbeat_interval_ms` is reloadable.
        let interval = shared.live().heartbeat_interval();
        let retry = interval.min(Duration::from_secs(1));
        let opened = match failover.take() {
            Some(conn) => Ok(conn),
            None => open_control(&shared, cluster, interval, None).await,
        };
        match opened {
            Ok(conn) => {
                health.mark_up(&conn.node);
                tracing::info!(cluster = cluster.name(), node = %conn.node, "control connection up");
                watch(&shared, cluster, &conn).await;
                // Only the *other* nodes: the lost one may be hung rather than closed (TCP
                // connects, nothing answers), and waiting on it would keep a dead cluster UP
                // past the heartbeat's promise. A single-node cluster has no other node and is
                // DOWN at once, as before.
                match open_control(&shared, cluster, interval, Some(&conn.host)).await {
                    Ok(next) => {
                        tracing::warn!(
                            cluster = cluster.name(),
                            lost = %conn.node,
                            node = %next.node,
                            "control connection lost; moved to another node"
                        );
                        failover = Some(next);
                        continue;
                    }
                    Err(e) => {
                        health.mark_down();
                        tracing::warn!(
                            cluster = cluster.name(),
                            "control connection lost and no other node answers ({e}); cluster DOWN"
                        );
                    }
                }
            }
            Err(ControlError::Datacenter(e)) => {
                health.mark_down();
                tracing::error!(cluster = cluster.name(), "{e}");
                health.set_settings_error(e);
            }
            Err(e) => {
                health.mark_down();
                tracing::warn!(
                    cluster = cluster.name(),
                    "cannot open control connection: {e}"
                );
            }
        }
        tokio::time::sleep(retry).await;
    }
}

/// Heartbeats (and rediscovers the nodes about once an interval) until the connection is lost.
async fn watch(shared: &Shared, cluster: Cluster, conn: &ClusterConn) {
    let mut last_discovery = tokio::time::Instant::now();
    loop {
        let interval = shared.live().heartbeat_interval();
        let (period, reply_timeout) = heartbeat_timing(interval);
        tokio::select! {
            _ = conn.closed() => return,
            _ = tokio::time::sleep(period) => {
                match conn.request(opcode::OPTIONS, 0, Default::default(), reply_timeout).await {
                    Ok(f) if f.opcode == opcode::SUPPORTED => {}
                    other => {
                        tracing::warn!(cluster = cluster.name(), node = %conn.node, "heartbeat failed: {:?}", other.err());
                        return;
                    }
                }
                // Rediscover about once an interval, within the same reply budget.
                if last_discovery.elapsed() >= interval {
                    last_discovery = tokio::time::Instant::now();
                    match discover(shared, cluster, conn, reply_timeout).await {
                        Ok(()) => {}
                        Err(ControlError::Other(e)) => {
                            tracing::warn!(cluster = cluster.name(), "node discovery failed: {e}");
                        }
                        Err(e) => {
                            tracing::error!(cluster = cluster.name(), "{e}");
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn open_control(
    shared: &Shared,
    cluster: Cluster,
    timeout: Duration,
    avoid: Option<&str>,
) -> Result<Arc<ClusterConn>, ControlError> {
    let conn = shared
        .connect_control(cluster, avoid)
        .await
        .map_err(ControlError::Other)?;
    let timeout = timeout.max(Duration::from_secs(5));
    handshake(&conn, shared.credentials(cluster).as_ref(), timeout)
        .await
        .map_err(|e| ControlError::Other(format!("{}: {e}", conn.node)))?;
    discover(shared, cluster, &conn, timeout).await?;
    let v5 = speaks_v5(&conn, timeout).await;
    shared.health.of(cluster).v5.store(v5, Ordering::SeqCst);
    shared.health.of(cluster).clear_settings_error();
    Ok(conn)
}

/// Whether the node behind `conn` speaks protocol v5: its SUPPORTED answer lists the versions
/// under PROTOCOL_VERSIONS (Cassandra 4.0+; older nodes list none and speak v4 at most).
async fn speaks_v5(conn: &ClusterConn, timeout: Duration) -> bool {
    let Ok(resp) = conn
        .request(opcode::OPTIONS, 0, Default::default(), timeout)
        .await
    else {
        return false;
    };
    resp.opcode == opcode::SUPPORTED
        && supported_versions(&resp.body)
            .iter()
            .any(|v| v.starts_with("5/"))
}

/// The PROTOCOL_VERSIONS of a SUPPORTED body ([string multimap]); empty if absent or unreadable.
fn supported_versions(body: &[u8]) -> Vec<String> {
    let mut r = wire::Reader::new(body);
    let Ok(n) = r.short() else {
        return Vec::new();
    };
    for _ in 0..n {
        let Ok(key) = r.string() else {
            return Vec::new();
        };
        let Ok(m) = r.short() else {
            return Vec::new();
        };
        let mut values = Vec::with_capacity(m as usize);
        for _ in 0..m {
            match r.string() {
                Ok(v) => values.push(v.to_string()),
                Err(_) => return Vec::new(),
            }
        }
        if key == "PROTOCOL_VERSIONS" {
            return values;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_and_its_reply_timeout_fit_in_one_interval() {
        for ms in [1u64, 3, 100, 1000, 2000, 30_000] {
            let interval = Duration::from_millis(ms);
            let (period, reply) = heartbeat_timing(interval);
            assert_eq!(period + reply, interval, "{ms} ms");
            assert!(
                reply < interval && reply >= period,
                "{ms} ms: {period:?} + {reply:?}"
            );
        }
    }

    #[test]
    fn readiness_gauges_follow_the_heartbeats() {
        let h = Health::new(&Config::default());
        let render = |h: &Health| {
            let mut o = String::new();
            h.render_metrics(&mut Exposition::new(&mut o, "zdm"));
            o
        };
        let before = render(&h);
        assert!(before.contains("zdm_proxy_ready 0\n"), "{before}");
        assert!(before.contains("zdm_proxy_cluster_up{cluster=\"target\"} 0\n"));
        h.origin.mark_up("10.0.0.1:9042");
        h.target.mark_up("10.0.0.2:9042");
        let up = render(&h);
        assert_eq!(
            up,
            "# HELP zdm_proxy_cluster_up 1 while the proxy's control connection sees the cluster UP\n\
             # TYPE zdm_proxy_cluster_up gauge\n\
             zdm_proxy_cluster_up{cluster=\"origin\"} 1\n\
             zdm_proxy_cluster_up{cluster=\"target\"} 1\n\
             # HELP zdm_proxy_ready 1 when /health/readiness answers 200 (both clusters UP)\n\
             # TYPE zdm_proxy_ready gauge\n\
             zdm_proxy_ready 1\n"
        );
        h.target.mark_down();
        let down = render(&h);
        assert!(down.contains("zdm_proxy_ready 0\n"), "{down}");
        assert!(down.contains("zdm_proxy_cluster_up{cluster=\"origin\"} 1\n"));
        assert!(down.contains("zdm_proxy_cluster_up{cluster=\"target\"} 0\n"));
    }
}
