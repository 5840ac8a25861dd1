//! One client connection: handshake, then many concurrent requests, then a graceful end.
//!
//! Requests are handled concurrently (each a future polled by the connection's task, read and
//! forwarded as soon as it arrives) and every answer is written as soon as it is ready, with
//! whatever else is ready in the same flush. On shutdown the connection stops
//! taking work: new requests get OVERLOADED ("shutting down, retry on next host") so drivers
//! retry elsewhere, in-flight requests finish, and the connection closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

use crate::handshake::client_handshake;
use crate::ops::config::Cluster;
use crate::ops::tls::ClientStream;
use crate::protocol::frame::{opcode, Frame, FrameCodec, FrameError, V5};
use crate::protocol::wire::{self, error_code};
use crate::session::Session;
use crate::state::Shared;
use crate::upstream::secondary_loss::SecondaryLoss;

/// How long a draining connection keeps answering OVERLOADED after its last in-flight request,
/// so drivers see the refusal (and move on) rather than a reset.
const DRAIN_LINGER: Duration = Duration::from_millis(1000);

/// Bound on a client's TLS handshake, so a client that connects and sends nothing does not
/// hold a connection slot.
const TLS_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handle_client(
    socket: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let (local_ip, peer) = match (socket.local_addr(), socket.peer_addr()) {
        (Ok(local), Ok(peer)) => (local.ip(), peer),
        _ => return,
    };
    let stream = match shared.config.tls.acceptor() {
        None => ClientStream::Plain(socket),
        Some(acceptor) => {
            let accepted = tokio::select! {
                a = tokio::time::timeout(TLS_ACCEPT_TIMEOUT, acceptor.accept(socket)) => a,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match accepted {
                Ok(Ok(tls)) => ClientStream::Tls(Box::new(tls)),
                // A TCP probe (load balancer, port check) that connects and leaves.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(%peer, "client left before the TLS handshake");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, "client TLS handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "client TLS handshake timed out");
                    return;
                }
            }
        }
    };
    // v5 is offered only while both clusters speak it (v4 clients are unaffected).
    let max_version = shared.health.max_client_version();
    let mut framed =
        crate::protocol::buffers::client_framed(stream, FrameCodec::client_side(max_version));
    let established = tokio::select! {
        e = client_handshake(&mut framed, &shared) => e,
        _ = shutdown.wait_for(|s| *s) => None,
    };
    let Some(est) = established else {
        return;
    };
    let version = framed.codec().version();
    let session = Arc::new(Session::new(
        shared.clone(),
        est.origin,
        est.target,
        local_ip,
        version,
    ));
    let by_version = &shared.metrics.client_connections_by_version[(version >= V5) as usize];
    by_version.add(1);
    serve(framed, session, shutdown).await;
    by_version.add(-1);
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
    framed: Framed<ClientStream, FrameCodec>,
    session: Arc<Session>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut sink, mut source) = framed.split();
    // Every request of this connection is a future polled by this one task: no task spawn per
    // request and no hop through a writer task, so a request costs no cross-thread wake-up on
    // the proxy side; answers are written as soon as they are ready, one flush per batch.
    let mut inflight = FuturesUnordered::new();
    let mut draining_since: Option<Instant> = None;
    let mut fatal: Option<FrameError> = None;
    let mut refused_while_draining = 0u64;
    // Long-lived futures, created once rather than on every request.
    let cluster_lost = {
        let session = session.clone();
        async move {
            tokio::select! {
                _ = session.origin.closed() => Cluster::Origin,
                _ = session.target.closed() => Cluster::Target,
            }
        }
    };
    tokio::pin!(cluster_lost);
    // The secondary's connection lost while the primary's lives: see `secondary_loss`.
    let mut secondary_lost: Option<SecondaryLoss> = None;
    let mut lost_tick = tokio::time::interval(Duration::from_millis(500));
    // Mapped to `()`: the watch guard must not live across the awaits in the select arms.
    let drain_requested = async {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    tokio::pin!(drain_requested);
    let mut drain_tick = tokio::time::interval(Duration::from_millis(50));
    let mut client_gone = false;
    // Origin's events for this client, once it has sent a REGISTER (see `events`).
    let mut events: Option<mpsc::Receiver<Frame>> = None;
    loop {
        tokio::select! {
            frame = source.next() => match frame {
                Some(Ok(req)) => {
                    if draining_since.is_some() {
                        refused_while_draining += 1;
                        if sink.send(overloaded(req.stream)).await.is_err() {
                            client_gone = true;
                            break;
                        }
                        continue;
                    }
                    if req.opcode == opcode::REGISTER && events.is_none() {
                        // Subscribed before the REGISTER leaves, so no event after it is missed.
                        events = Some(session.origin.subscribe_events());
                    }
                    let session = session.clone();
                    inflight.push(async move { session.handle(req).await });
                }
                Some(Err(e)) => {
                    fatal = Some(e);
                    break;
                }
                None => break,
            },
            Some(resp) = inflight.next(), if !inflight.is_empty() => {
                if write_ready(&mut sink, &mut inflight, resp).await.is_err() {
                    client_gone = true;
                    break;
                }
            }
            event = next_event(&mut events), if events.is_some() => match event {
                Some(ev) => {
                    if let Some(ev) = crate::upstream::events::relayed(ev, session.version) {
                        if sink.send(ev).await.is_err() {
                            client_gone = true;
                            break;
                        }
                    }
                }
                None => events = None,
            },
            cluster = &mut cluster_lost, if secondary_lost.is_none() => {
                if session.shared.live().primary_cluster == cluster {
                    tracing::warn!("{} connection lost; closing client connection", cluster.name());
                    break;
                }
                tracing::warn!(
                    "secondary {} connection lost; reads go on, writes fail until it is back",
                    cluster.name()
                );
                secondary_lost = Some(SecondaryLoss::new(cluster));
            }
            _ = lost_tick.tick(), if secondary_lost.is_some() => {
                if secondary_lost.as_mut().is_some_and(|l| l.ends(&session)) {
                    tracing::info!("secondary connection lost earlier; closing client connection so it reconnects");
                    break;
                }
            }
            _ = &mut drain_requested, if draining_since.is_none() => {
                draining_since = Some(Instant::now());
            }
            _ = drain_tick.tick(), if draining_since.is_some() => {
                let since = draining_since.unwrap_or_else(Instant::now);
                if inflight.is_empty() && since.elapsed() >= DRAIN_LINGER {
                    break;
                }
            }
        }
    }
    // Let in-flight requests finish (each is bounded by the request timeout).
    let bound = session.shared.live().longest_request_timeout() + Duration::from_secs(1);
    let finish = async {
        while let Some(resp) = inflight.next().await {
            if !client_gone && write_ready(&mut sink, &mut inflight, resp).await.is_err() {
                client_gone = true;
            }
        }
    };
    let _ = tokio::time::timeout(bound, finish).await;
    if draining_since.is_some() {
        tracing::info!(
            refused_while_draining,
            unfinished = inflight.len(),
            "client connection drained"
        );
    }
    if let Some(e) = fatal {
        let (version, stream) = match &e {
            FrameError::UnsupportedVersion {
                version, stream, ..
            } => (*version, *stream),
            _ => (session.version, 0),
        };
        tracing::debug!("closing client connection after bad input: {e}");
        if !matches!(e, FrameError::Io(_)) && !client_gone {
            let msg = if version != session.version {
                e.to_string()
            } else {
                format!("malformed frame: {e}")
            };
            let _ = sink
                .send(Frame::response(
                    stream,
                    opcode::ERROR,
                    wire::error_body(error_code::PROTOCOL_ERROR, &msg),
                ))
                .await;
        }
    }
    if !client_gone {
        let _ = sink.close().await;
    }
}

/// The next event of `events`; pending forever when there is no receiver.
async fn next_event(events: &mut Option<mpsc::Receiver<Frame>>) -> Option<Frame> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes `first` and every other answer that is already complete, then flushes once.
async fn write_ready<S, F>(
    sink: &mut S,
    inflight: &mut FuturesUnordered<F>,
    first: Frame,
) -> Result<(), FrameError>
where
    S: futures::Sink<Frame, Error = FrameError> + Unpin,
    F: std::future::Future<Output = Frame>,
{
    sink.feed(first).await?;
    while let Some(Some(resp)) = inflight.next().now_or_never() {
        sink.feed(resp).await?;
    }
    sink.flush().await
}
