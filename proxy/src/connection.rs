//! One client connection: handshake, then many concurrent requests, then a graceful end.
//!
//! Requests are handled concurrently (each in its own task) and answers are written by a single
//! writer task that batches whatever is ready into one flush. On shutdown the connection stops
//! taking work: new requests get OVERLOADED ("shutting down, retry on next host") so drivers
//! retry elsewhere, in-flight requests finish, and the connection closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

use crate::frame::{opcode, Frame, FrameCodec, FrameError};
use crate::handshake::client_handshake;
use crate::session::Session;
use crate::state::Shared;
use crate::wire::{self, error_code};

/// How long a draining connection keeps answering OVERLOADED after its last in-flight request,
/// so drivers see the refusal (and move on) rather than a reset.
const DRAIN_LINGER: Duration = Duration::from_millis(1000);

pub async fn handle_client(
    socket: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let local_ip = match socket.local_addr() {
        Ok(a) => a.ip(),
        Err(_) => return,
    };
    let mut framed = Framed::new(socket, FrameCodec::client_side());
    let established = tokio::select! {
        e = client_handshake(&mut framed, &shared) => e,
        _ = shutdown.wait_for(|s| *s) => None,
    };
    let Some(est) = established else {
        return;
    };
    let session = Arc::new(Session::new(
        shared.clone(),
        est.origin,
        est.target,
        local_ip,
    ));
    serve(framed, session, shutdown).await;
}

fn overloaded(stream: i16) -> Frame {
    Frame::response(
        stream,
        opcode::ERROR,
        wire::error_body(
            error_code::OVERLOADED,
            "zdm-proxy is shutting down, retry on next host",
        ),
    )
}

async fn serve(
    framed: Framed<TcpStream, FrameCodec>,
    session: Arc<Session>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut sink, mut source) = framed.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.feed(frame).await.is_err() {
                return;
            }
            while let Ok(frame) = rx.try_recv() {
                if sink.feed(frame).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });

    let inflight = Arc::new(AtomicUsize::new(0));
    let mut draining_since: Option<Instant> = None;
    let mut fatal: Option<FrameError> = None;
    let mut refused_while_draining = 0u64;
    // Long-lived futures, created once rather than on every request.
    let cluster_lost = {
        let session = session.clone();
        async move {
            tokio::select! {
                _ = session.origin.closed() => "origin",
                _ = session.target.closed() => "target",
            }
        }
    };
    tokio::pin!(cluster_lost);
    let drain_requested = shutdown.wait_for(|s| *s);
    tokio::pin!(drain_requested);
    let mut drain_tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            frame = source.next() => match frame {
                Some(Ok(req)) => {
                    if draining_since.is_some() {
                        let _ = tx.send(overloaded(req.stream));
                        refused_while_draining += 1;
                        continue;
                    }
                    inflight.fetch_add(1, Ordering::SeqCst);
                    let (session, tx, inflight) = (session.clone(), tx.clone(), inflight.clone());
                    tokio::spawn(async move {
                        let resp = session.handle(req).await;
                        let _ = tx.send(resp);
                        inflight.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Some(Err(e)) => {
                    fatal = Some(e);
                    break;
                }
                None => break,
            },
            cluster = &mut cluster_lost => {
                tracing::warn!("{cluster} connection lost; closing client connection");
                break;
            }
            _ = &mut drain_requested, if draining_since.is_none() => {
                draining_since = Some(Instant::now());
            }
            _ = drain_tick.tick(), if draining_since.is_some() => {
                let since = draining_since.unwrap_or_else(Instant::now);
                if inflight.load(Ordering::SeqCst) == 0 && since.elapsed() >= DRAIN_LINGER {
                    break;
                }
            }
        }
    }
    // Let in-flight requests finish (each is bounded by the request timeout).
    let bound = session.shared.live().request_timeout() + Duration::from_secs(1);
    let started = Instant::now();
    while inflight.load(Ordering::SeqCst) > 0 && started.elapsed() < bound {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if draining_since.is_some() {
        tracing::info!(
            refused_while_draining,
            unfinished = inflight.load(Ordering::SeqCst),
            "client connection drained"
        );
    }
    if let Some(e) = fatal {
        let (version, stream) = match &e {
            FrameError::UnsupportedVersion { version, stream } => (*version, *stream),
            _ => (crate::frame::VERSION, 0),
        };
        tracing::debug!("closing client connection after bad input: {e}");
        if !matches!(e, FrameError::Io(_)) {
            let msg = if version != crate::frame::VERSION {
                e.to_string()
            } else {
                format!("malformed frame: {e}")
            };
            let _ = tx.send(Frame::response(
                stream,
                opcode::ERROR,
                wire::error_body(error_code::PROTOCOL_ERROR, &msg),
            ));
        }
    }
    drop(tx);
    let _ = writer.await;
}
