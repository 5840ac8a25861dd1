//! Control connections, heartbeats and the HTTP endpoints on the metrics port.
//!
//! Each cluster gets one control connection authenticated with the configured credentials. It
//! sends OPTIONS every `heartbeat_interval_ms`; a failed heartbeat or a closed socket marks the
//! cluster DOWN at once, so `/health/readiness` turns 503 within one heartbeat interval. The
//! origin's control connection also refreshes the cluster facts used in topology answers.
//!
//! The HTTP side is a few lines on a raw `TcpListener` (a handful of endpoints, no keep-alive):
//! pulling in an HTTP server framework for that would cost more build time than it saves.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::cluster::{handshake, ClusterConn};
use crate::config::{Cluster, Config};
use crate::frame::opcode;
use crate::state::Shared;
use crate::topology::ClusterInfo;
use crate::wire;

pub struct ClusterHealth {
    up: AtomicBool,
    failures: AtomicU32,
    addr: Mutex<String>,
}

pub struct Health {
    origin: ClusterHealth,
    target: ClusterHealth,
}

impl Health {
    pub fn new(config: &Config) -> Health {
        let h = |c: &crate::config::ClusterConfig| ClusterHealth {
            up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            addr: Mutex::new(format!("{}:{}", c.contact_points.join(","), c.port)),
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

    pub fn both_up(&self) -> bool {
        self.origin.up.load(Ordering::SeqCst) && self.target.up.load(Ordering::SeqCst)
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

    fn mark_up(&self, node: &str) {
        *self.addr.lock().unwrap() = node.to_string();
        self.failures.store(0, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }

    fn mark_down(&self) {
        self.failures.fetch_add(1, Ordering::SeqCst);
        self.up.store(false, Ordering::SeqCst);
    }
}

const LOCAL_QUERY: &str = "SELECT cluster_name, data_center, rack, release_version, partitioner, \
                           cql_version, schema_version FROM system.local WHERE key='local'";

/// Reads origin's system.local for the topology answers.
async fn fetch_info(conn: &ClusterConn, timeout: Duration) -> Result<ClusterInfo, String> {
    let mut body = BytesMut::new();
    wire::put_long_string(&mut body, LOCAL_QUERY);
    body.put_u16(0x0001); // consistency ONE
    body.put_u8(0); // v4 query flags are one byte
    let resp = conn
        .request(opcode::QUERY, 0, body.freeze(), timeout)
        .await
        .map_err(|e| e.to_string())?;
    if resp.opcode != opcode::RESULT {
        return Err(format!(
            "system.local query failed: {:?}",
            wire::parse_error(&resp.body)
        ));
    }
    let rows = wire::parse_rows(&resp.body).map_err(|e| e.to_string())?;
    let row = rows.first().ok_or("system.local returned no row")?;
    let text = |name: &str| -> String {
        row.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let mut schema_version = [0u8; 16];
    if let Some((_, Some(v))) = row.iter().find(|(n, _)| n == "schema_version") {
        if v.len() == 16 {
            schema_version.copy_from_slice(v);
        }
    }
    Ok(ClusterInfo {
        cluster_name: text("cluster_name"),
        data_center: text("data_center"),
        rack: text("rack"),
        release_version: text("release_version"),
        partitioner: text("partitioner"),
        cql_version: text("cql_version"),
        schema_version,
    })
}

/// Keeps one control connection to `cluster` alive for the life of the process.
pub async fn control_loop(shared: Arc<Shared>, cluster: Cluster) {
    let health = shared.health.of(cluster);
    loop {
        // Read each round: `heartbeat_interval_ms` is reloadable.
        let interval = shared.live().heartbeat_interval();
        let retry = interval.min(Duration::from_secs(1));
        match open_control(&shared, cluster, interval).await {
            Ok(conn) => {
                health.mark_up(&conn.node);
                tracing::info!(cluster = cluster.name(), node = %conn.node, "control connection up");
                loop {
                    let interval = shared.live().heartbeat_interval();
                    tokio::select! {
                        _ = conn.closed() => break,
                        _ = tokio::time::sleep(interval) => {
                            match conn.request(opcode::OPTIONS, 0, Default::default(), interval).await {
                                Ok(f) if f.opcode == opcode::SUPPORTED => {}
                                other => {
                                    tracing::warn!(cluster = cluster.name(), "heartbeat failed: {:?}", other.err());
                                    break;
                                }
                            }
                            if cluster == Cluster::Origin {
                                if let Ok(info) = fetch_info(&conn, interval).await {
                                    *shared.info.write().unwrap() = Some(info);
                                }
                            }
                        }
                    }
                }
                health.mark_down();
                tracing::warn!(
                    cluster = cluster.name(),
                    "control connection lost; cluster DOWN"
                );
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

async fn open_control(
    shared: &Shared,
    cluster: Cluster,
    timeout: Duration,
) -> Result<Arc<ClusterConn>, String> {
    let conn = shared.connect(cluster).await?;
    let timeout = timeout.max(Duration::from_secs(5));
    handshake(&conn, shared.credentials(cluster).as_ref(), timeout)
        .await
        .map_err(|e| format!("{}: {e}", conn.node))?;
    if cluster == Cluster::Origin {
        let info = fetch_info(&conn, timeout).await?;
        *shared.info.write().unwrap() = Some(info);
    }
    Ok(conn)
}

/// Serves /health/liveness, /health/readiness, /metrics, /config (the live settings, no
/// secrets) and POST /reload (200 with the new settings, or 400 with why nothing changed)
/// until the process ends. The metrics port is the proxy's admin port: bind it to a private
/// address (`metrics_address`, default localhost).
pub async fn serve_http(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read the request head (bounded); the body, if any, is ignored.
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let method = head.split_whitespace().next().unwrap_or("GET");
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let (status, ctype, body) = match path {
                "/config" => (
                    200,
                    "application/json",
                    crate::reload::report(&shared.live(), &shared.reloader).to_string(),
                ),
                "/reload" if method == "POST" => match shared.reload().await {
                    Ok(live) => (
                        200,
                        "application/json",
                        crate::reload::report(&live, &shared.reloader).to_string(),
                    ),
                    Err(e) => {
                        tracing::warn!("POST /reload: {e}");
                        (400, "text/plain", format!("{e}\n"))
                    }
                },
                "/reload" => (405, "text/plain", "use POST /reload\n".to_string()),
                "/health/liveness" => (200, "text/plain", "OK".to_string()),
                "/health/readiness" => {
                    let code = if shared.health.both_up() { 200 } else { 503 };
                    (code, "application/json", shared.health.report().to_string())
                }
                "/metrics" if shared.config.metrics_enabled => {
                    (200, "text/plain; version=0.0.4", shared.metrics.render())
                }
                _ => (404, "text/plain", "not found\n".to_string()),
            };
            let reason = match status {
                200 => "OK",
                400 => "Bad Request",
                405 => "Method Not Allowed",
                503 => "Service Unavailable",
                _ => "Not Found",
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
