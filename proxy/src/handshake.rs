//! The client's handshake, mirrored onto both clusters.
//!
//! The client's own credentials go to the target (its AUTHENTICATE / AUTH_RESPONSE exchange is
//! relayed as is); the origin is authenticated by the proxy with the configured origin
//! credentials, concurrently. With `forward_client_credentials_to_origin` the roles swap: the
//! client's exchange is relayed to origin and the proxy authenticates target itself. The client sees READY / AUTH_SUCCESS only when both sides
//! succeeded; a refusal from either cluster reaches the client as that cluster's ERROR, so a bad
//! password fails fast with the real authentication error instead of hanging.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use crate::ops::config::Cluster;
use crate::protocol::frame::{opcode, Compression, Frame, FrameCodec, FrameError};
use crate::protocol::wire::{self, error_code};
use crate::state::Shared;
use crate::upstream::cluster::{handshake, startup_body, ClusterConn, HandshakeError};

pub type ClientFramed = Framed<crate::ops::tls::ClientStream, FrameCodec>;

/// Both cluster connections of an authenticated client.
pub struct Established {
    pub origin: Arc<ClusterConn>,
    pub target: Arc<ClusterConn>,
}

/// Reads the next client frame; answers unreadable input the way the protocol wants and reports
/// `None` when the connection is over.
pub async fn next_frame(framed: &mut ClientFramed) -> Option<Frame> {
    match framed.next().await {
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            reject(framed, e).await;
            None
        }
        None => None,
    }
}

/// The SUPPORTED answer, with the versions the proxy speaks right now.
fn supported(shared: &Shared) -> Bytes {
    wire::supported_body(shared.health.max_client_version())
}

/// Answers a frame-level error before the connection is closed: a protocol-version error in a
/// layout the client can read, or a v4 PROTOCOL_ERROR.
pub async fn reject(framed: &mut ClientFramed, e: FrameError) {
    use tokio::io::AsyncWriteExt;
    tracing::debug!("closing client connection: {e}");
    let bytes = match e {
        FrameError::UnsupportedVersion {
            version,
            stream,
            max,
        } => crate::protocol::frame::unsupported_version_response(version, stream, max),
        FrameError::Io(_) => return,
        other => {
            let f = Frame::response(
                0,
                opcode::ERROR,
                wire::error_body(error_code::PROTOCOL_ERROR, &other.to_string()),
            );
            let _ = framed.send(f).await;
            return;
        }
    };
    let _ = framed.get_mut().write_all(&bytes).await;
}

async fn reply(framed: &mut ClientFramed, stream: i16, op: u8, body: Bytes) -> bool {
    framed.send(Frame::response(stream, op, body)).await.is_ok()
}

async fn reply_error(framed: &mut ClientFramed, stream: i16, code: i32, msg: &str) -> bool {
    reply(framed, stream, opcode::ERROR, wire::error_body(code, msg)).await
}

/// Runs the handshake; `None` means the client went away or was refused (already told why).
pub async fn client_handshake(
    framed: &mut ClientFramed,
    shared: &Arc<Shared>,
) -> Option<Established> {
    let startup = until_startup(framed, shared).await?;
    if !apply_startup_options(framed, &startup).await {
        return None;
    }
    // The cluster that does not check the client's credentials (origin, unless
    // `forward_client_credentials_to_origin`): the proxy authenticates with the configured
    // credentials, in the background.
    let checker = shared.config.client_credentials_cluster();
    let other = checker.other();
    // Both cluster connections speak the client's version, so its messages pass unchanged.
    let version = framed.codec().version();
    let other_task = spawn_configured_handshake(shared, other, version);
    let relayed =
        match relay_client_exchange(framed, shared, checker, version, startup.stream).await {
            Ok(r) => r,
            Err(stop) => {
                other_task.abort();
                stop.tell(framed).await;
                return None;
            }
        };
    let stream = relayed.stream;

    // Both must have succeeded before the client hears so.
    let other_conn = match other_task.await {
        Ok(Ok(c)) => c,
        Ok(Err(OtherFailure::Handshake(HandshakeError::Refused(body)))) => {
            reply(framed, stream, opcode::ERROR, body).await;
            return None;
        }
        Ok(Err(e)) => {
            let msg = format!("{}: {e}", other.name());
            reply_error(framed, stream, error_code::SERVER_ERROR, &msg).await;
            return None;
        }
        Err(_) => return None,
    };
    if !reply(framed, stream, relayed.last.opcode, relayed.last.body).await {
        return None;
    }
    // v5 without authentication: segments start after READY.
    framed.codec_mut().start_segments();
    let (origin, target) = match checker {
        Cluster::Target => (other_conn, relayed.conn),
        Cluster::Origin => (relayed.conn, other_conn),
    };
    Some(Established { origin, target })
}

/// Answers OPTIONS until the client's STARTUP, which it returns.
async fn until_startup(framed: &mut ClientFramed, shared: &Shared) -> Option<Frame> {
    loop {
        let f = next_frame(framed).await?;
        match f.opcode {
            opcode::OPTIONS => {
                reply(framed, f.stream, opcode::SUPPORTED, supported(shared)).await;
            }
            opcode::STARTUP => return Some(f),
            other => {
                let msg = format!("unexpected opcode {other:#04x} before STARTUP");
                reply_error(framed, f.stream, error_code::PROTOCOL_ERROR, &msg).await;
            }
        }
    }
}

/// Applies the STARTUP's options (compression); `false` when the client was refused (and told
/// why).
async fn apply_startup_options(framed: &mut ClientFramed, startup: &Frame) -> bool {
    let options = match wire::Reader::new(&startup.body).string_map() {
        Ok(o) => o,
        Err(e) => {
            reply_error(
                framed,
                startup.stream,
                error_code::PROTOCOL_ERROR,
                &e.to_string(),
            )
            .await;
            return false;
        }
    };
    let Some((_, name)) = options
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("COMPRESSION"))
    else {
        return true;
    };
    let v5 = framed.codec().version() >= crate::protocol::frame::V5;
    let refusal = match Compression::from_name(name) {
        // v5 compresses segments, with LZ4 only (as Cassandra).
        Some(Compression::Snappy) if v5 => {
            "Snappy compression is not supported in protocol v5; use lz4".to_string()
        }
        Some(c) => {
            framed.codec_mut().set_compression(Some(c));
            return true;
        }
        None => format!("Unknown compression algorithm: {name}"),
    };
    reply_error(framed, startup.stream, error_code::PROTOCOL_ERROR, &refusal).await;
    false
}

/// Connects to `cluster` and authenticates with its configured credentials, in the background.
/// Bounded by the cluster's connection timeout, not the request timeout: password hashing
/// makes authentication far slower than a request.
fn spawn_configured_handshake(
    shared: &Arc<Shared>,
    cluster: Cluster,
    version: u8,
) -> JoinHandle<Result<Arc<ClusterConn>, OtherFailure>> {
    let timeout = Duration::from_millis(shared.config.cluster(cluster).connection_timeout_ms);
    let shared = shared.clone();
    tokio::spawn(async move {
        let conn = shared
            .connect(cluster, version)
            .await
            .map_err(OtherFailure::Connect)?;
        handshake(&conn, shared.credentials(cluster).as_ref(), timeout)
            .await
            .map_err(OtherFailure::Handshake)?;
        Ok(conn)
    })
}

/// The checking cluster's side once the client's exchange succeeded there.
struct Relayed {
    conn: Arc<ClusterConn>,
    /// Its READY or AUTH_SUCCESS, for the client once the other cluster succeeded too.
    last: Frame,
    /// The client's stream that answer goes to.
    stream: i16,
}

/// Why the relayed exchange ended before success.
enum Stop {
    /// The client went away, or was already told why.
    Gone,
    /// The client still has to be told.
    Refuse { stream: i16, code: i32, msg: String },
}

impl Stop {
    async fn tell(self, framed: &mut ClientFramed) {
        if let Stop::Refuse { stream, code, msg } = self {
            reply_error(framed, stream, code, &msg).await;
        }
    }
}

/// Relays the client's STARTUP and authentication exchange to the `checker` cluster, as is,
/// until that cluster accepts it. Bounded by the cluster's connection timeout, as the
/// configured handshake is.
async fn relay_client_exchange(
    framed: &mut ClientFramed,
    shared: &Shared,
    checker: Cluster,
    version: u8,
    startup_stream: i16,
) -> Result<Relayed, Stop> {
    let timeout = Duration::from_millis(shared.config.cluster(checker).connection_timeout_ms);
    let failed = |stream, e: &dyn std::fmt::Display| Stop::Refuse {
        stream,
        code: error_code::SERVER_ERROR,
        msg: format!("{}: {e}", checker.name()),
    };
    let conn = shared
        .connect(checker, version)
        .await
        .map_err(|e| Stop::Refuse {
            stream: startup_stream,
            code: error_code::SERVER_ERROR,
            msg: format!("zdm-proxy cannot connect to {}: {e}", checker.name()),
        })?;
    let mut resp = conn
        .request(opcode::STARTUP, 0, startup_body(), timeout)
        .await
        .map_err(|e| failed(startup_stream, &e))?;
    let mut stream = startup_stream;
    loop {
        match resp.opcode {
            opcode::READY | opcode::AUTH_SUCCESS => {
                return Ok(Relayed {
                    conn,
                    last: resp,
                    stream,
                })
            }
            opcode::AUTHENTICATE | opcode::AUTH_CHALLENGE | opcode::ERROR => {
                if !reply(framed, stream, resp.opcode, resp.body.clone()).await {
                    return Err(Stop::Gone);
                }
                if resp.opcode == opcode::AUTHENTICATE {
                    // v5: segments from here on, as on the cluster side.
                    framed.codec_mut().start_segments();
                }
            }
            op => {
                return Err(Stop::Refuse {
                    stream,
                    code: error_code::PROTOCOL_ERROR,
                    msg: format!(
                        "{} answered the handshake with opcode {op:#04x}",
                        checker.name()
                    ),
                })
            }
        }
        let f = next_auth_step(framed, shared).await.ok_or(Stop::Gone)?;
        stream = f.stream;
        if f.opcode != opcode::AUTH_RESPONSE {
            return Err(Stop::Refuse {
                stream,
                code: error_code::PROTOCOL_ERROR,
                msg: "expected AUTH_RESPONSE".into(),
            });
        }
        resp = conn
            .request(opcode::AUTH_RESPONSE, 0, f.body, timeout)
            .await
            .map_err(|e| failed(stream, &e))?;
    }
}

/// The client's next step of the exchange: an AUTH_RESPONSE (after AUTHENTICATE or a challenge)
/// or a new attempt after an ERROR. OPTIONS in between are answered here.
async fn next_auth_step(framed: &mut ClientFramed, shared: &Shared) -> Option<Frame> {
    loop {
        let f = next_frame(framed).await?;
        if f.opcode != opcode::OPTIONS {
            return Some(f);
        }
        reply(framed, f.stream, opcode::SUPPORTED, supported(shared)).await;
    }
}

#[derive(Debug, thiserror::Error)]
enum OtherFailure {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error(transparent)]
    Handshake(HandshakeError),
}
