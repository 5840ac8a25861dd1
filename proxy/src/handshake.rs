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
    // Phase 1: OPTIONS (answered here) until STARTUP.
    let startup = loop {
        let f = next_frame(framed).await?;
        match f.opcode {
            opcode::OPTIONS => {
                reply(framed, f.stream, opcode::SUPPORTED, supported(shared)).await;
            }
            opcode::STARTUP => break f,
            other => {
                let msg = format!("unexpected opcode {other:#04x} before STARTUP");
                reply_error(framed, f.stream, error_code::PROTOCOL_ERROR, &msg).await;
            }
        }
    };
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
            return None;
        }
    };
    if let Some((_, name)) = options
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("COMPRESSION"))
    {
        let v5 = framed.codec().version() >= crate::protocol::frame::V5;
        match Compression::from_name(name) {
            // v5 compresses segments, with LZ4 only (as Cassandra).
            Some(Compression::Snappy) if v5 => {
                let msg = "Snappy compression is not supported in protocol v5; use lz4";
                reply_error(framed, startup.stream, error_code::PROTOCOL_ERROR, msg).await;
                return None;
            }
            Some(c) => framed.codec_mut().set_compression(Some(c)),
            None => {
                let msg = format!("Unknown compression algorithm: {name}");
                reply_error(framed, startup.stream, error_code::PROTOCOL_ERROR, &msg).await;
                return None;
            }
        }
    }

    // The cluster that does not check the client's credentials (origin, unless
    // `forward_client_credentials_to_origin`): the proxy authenticates with the configured
    // credentials, in the background. Handshakes are bounded by the connection timeouts, not
    // the request timeout: password hashing makes authentication far slower than a request.
    let checker = shared.config.client_credentials_cluster();
    let other = checker.other();
    // Both cluster connections speak the client's version, so its messages pass unchanged.
    let version = framed.codec().version();
    let other_timeout = Duration::from_millis(shared.config.cluster(other).connection_timeout_ms);
    let timeout = Duration::from_millis(shared.config.cluster(checker).connection_timeout_ms);
    let other_task = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = shared
                .connect(other, version)
                .await
                .map_err(OtherFailure::Connect)?;
            handshake(&conn, shared.credentials(other).as_ref(), other_timeout)
                .await
                .map_err(OtherFailure::Handshake)?;
            Ok::<_, OtherFailure>(conn)
        })
    };

    // The checking cluster: relay the client's exchange.
    let relayed = match shared.connect(checker, version).await {
        Ok(c) => c,
        Err(e) => {
            other_task.abort();
            let msg = format!("zdm-proxy cannot connect to {}: {e}", checker.name());
            reply_error(framed, startup.stream, error_code::SERVER_ERROR, &msg).await;
            return None;
        }
    };
    let mut resp = match relayed
        .request(opcode::STARTUP, 0, startup_body(), timeout)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            other_task.abort();
            let msg = format!("{}: {e}", checker.name());
            reply_error(framed, startup.stream, error_code::SERVER_ERROR, &msg).await;
            return None;
        }
    };
    let mut stream = startup.stream;
    loop {
        match resp.opcode {
            opcode::READY | opcode::AUTH_SUCCESS => break,
            opcode::AUTHENTICATE | opcode::AUTH_CHALLENGE | opcode::ERROR => {
                if !reply(framed, stream, resp.opcode, resp.body.clone()).await {
                    other_task.abort();
                    return None;
                }
                if resp.opcode == opcode::AUTHENTICATE {
                    // v5: segments from here on, as on the cluster side.
                    framed.codec_mut().start_segments();
                }
            }
            op => {
                other_task.abort();
                let msg = format!(
                    "{} answered the handshake with opcode {op:#04x}",
                    checker.name()
                );
                reply_error(framed, stream, error_code::PROTOCOL_ERROR, &msg).await;
                return None;
            }
        }
        // The client's next step must be an AUTH_RESPONSE (after AUTHENTICATE/challenge) or a new
        // attempt after an ERROR.
        let f = loop {
            let Some(f) = next_frame(framed).await else {
                other_task.abort();
                return None;
            };
            if f.opcode != opcode::OPTIONS {
                break f;
            }
            reply(framed, f.stream, opcode::SUPPORTED, supported(shared)).await;
        };
        stream = f.stream;
        if f.opcode != opcode::AUTH_RESPONSE {
            other_task.abort();
            reply_error(
                framed,
                f.stream,
                error_code::PROTOCOL_ERROR,
                "expected AUTH_RESPONSE",
            )
            .await;
            return None;
        }
        resp = match relayed
            .request(opcode::AUTH_RESPONSE, 0, f.body, timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                other_task.abort();
                let msg = format!("{}: {e}", checker.name());
                reply_error(framed, stream, error_code::SERVER_ERROR, &msg).await;
                return None;
            }
        };
    }

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
    if !reply(framed, stream, resp.opcode, resp.body).await {
        return None;
    }
    // v5 without authentication: segments start after READY.
    framed.codec_mut().start_segments();
    let (origin, target) = match checker {
        Cluster::Target => (other_conn, relayed),
        Cluster::Origin => (relayed, other_conn),
    };
    Some(Established { origin, target })
}

#[derive(Debug, thiserror::Error)]
enum OtherFailure {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error(transparent)]
    Handshake(HandshakeError),
}
