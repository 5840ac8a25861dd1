//! One connection from the proxy to a cluster node, shared by many concurrent requests.
//!
//! Stream ids on this connection are the proxy's own, allocated from a pool of
//! `proxy_max_stream_ids`; a client's stream id never reaches a cluster. That way two clients'
//! (or a client's and the heartbeat's) requests can never receive each other's answers. An id is
//! released only when its answer arrives, even if the requester stopped waiting (timeout): an id
//! whose answer is still on its way must not be reused (see `stream_ids`). A connection with too
//! many such orphaned ids closes itself, which releases them all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::ops::metrics::NodeMetrics;
use crate::ops::tls::ClusterTls;
use crate::protocol::frame::{opcode, Frame, FrameCodec};
use crate::protocol::stream_ids::{Answer, OrphanLimits, StreamIds};
use crate::protocol::wire;

/// Why a request to a cluster produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error("no free stream id on the connection to {0}")]
    StreamIdsExhausted(String),
    #[error("no answer from {0} within {1} ms")]
    Timeout(String, u128),
    #[error("connection to {0} is closed")]
    Closed(String),
}

type Pending = StreamIds<oneshot::Sender<Frame>>;

/// A multiplexed connection to one cluster node.
pub struct ClusterConn {
    /// The host as given (contact point name or discovered address), without port.
    pub host: String,
    /// `host:port`: the label of this node's metrics.
    pub node: String,
    /// The protocol version this connection speaks (4, or 5 for a v5 client's connections).
    pub version: u8,
    tx: mpsc::UnboundedSender<Frame>,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<AtomicBool>,
    closed_notify: Arc<Notify>,
    /// Ends the reader and writer tasks (and so the socket): on drop, or when orphans pile up.
    cancel: CancellationToken,
    orphan_limits: OrphanLimits,
    metrics: Arc<NodeMetrics>,
    /// Where the reader hands EVENT frames (stream -1): set by `subscribe_events` on the
    /// connections a client REGISTERed through; without it events are dropped.
    events: Arc<Mutex<Option<mpsc::Sender<Frame>>>>,
}

/// Events a client connection may have queued before it writes them; beyond that they are
/// dropped (a client that does not read its socket must not grow the proxy's memory).
pub const EVENT_QUEUE: usize = 64;

impl Drop for ClusterConn {
    fn drop(&mut self) {
        // Nobody can send on this connection any more: close it rather than let the reader
        // wait for a peer that may never close its side.
        self.cancel.cancel();
    }
}

impl ClusterConn {
    /// Opens a TCP connection (TLS when `tls` is set) to the first reachable of `hosts`, tried
    /// in order (the caller's order is the node assignment: see `nodes`).
    pub async fn connect(
        hosts: &[String],
        port: u16,
        timeout: Duration,
        max_stream_ids: usize,
        tls: Option<&ClusterTls>,
        version: u8,
        metrics_for: impl Fn(&str) -> Arc<NodeMetrics>,
    ) -> Result<Arc<ClusterConn>, String> {
        let mut last_err = String::from("no node to connect to");
        for host in hosts {
            let node = crate::upstream::nodes::endpoint(host, port);
            match tokio::time::timeout(timeout, TcpStream::connect(&node)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let Some(tls) = tls else {
                        // Plain: tokio's owned halves, no lock between reader and writer.
                        let (rd, wr) = stream.into_split();
                        let metrics = metrics_for(&node);
                        return Ok(ClusterConn::start(
                            host,
                            node,
                            rd,
                            wr,
                            max_stream_ids,
                            version,
                            metrics,
                        ));
                    };
                    match tokio::time::timeout(timeout, tls.connect(host, stream)).await {
                        Ok(Ok(stream)) => {
                            let (rd, wr) = tokio::io::split(stream);
                            let metrics = metrics_for(&node);
                            return Ok(ClusterConn::start(
                                host,
                                node,
                                rd,
                                wr,
                                max_stream_ids,
                                version,
                                metrics,
                            ));
                        }
                        Ok(Err(e)) => last_err = format!("{node}: {e}"),
                        Err(_) => last_err = format!("{node}: TLS handshake timed out"),
                    }
                }
                Ok(Err(e)) => last_err = format!("{node}: {e}"),
                Err(_) => last_err = format!("{node}: connect timed out"),
            }
            metrics_for(&node).failed_connections.inc();
        }
        Err(last_err)
    }

    fn start<R, W>(
        host: &str,
        node: String,
        rd: R,
        wr: W,
        max_stream_ids: usize,
        version: u8,
        metrics: Arc<NodeMetrics>,
    ) -> Arc<ClusterConn>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel::<Frame>();
        let pending = Arc::new(Mutex::new(Pending::new(max_stream_ids)));
        let closed = Arc::new(AtomicBool::new(false));
        let closed_notify = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let events: Arc<Mutex<Option<mpsc::Sender<Frame>>>> = Arc::new(Mutex::new(None));
        // v5: set by the reader when STARTUP's answer (READY or AUTHENTICATE) arrives: from
        // then on both directions are in segments. The writer follows before its next request,
        // which is only sent once that answer was handed over.
        let segmented = Arc::new(AtomicBool::new(false));
        let writer_segmented = segmented.clone();
        metrics.open_connections.add(1);
        let conn = Arc::new(ClusterConn {
            host: host.to_string(),
            node: node.clone(),
            version,
            tx,
            pending: pending.clone(),
            closed: closed.clone(),
            closed_notify: closed_notify.clone(),
            cancel: cancel.clone(),
            orphan_limits: OrphanLimits::for_capacity(max_stream_ids),
            metrics: metrics.clone(),
            events: events.clone(),
        });

        // Writer: batches whatever is queued into one flush.
        let writer_closed = closed.clone();
        let writer_notify = closed_notify.clone();
        let writer_cancel = cancel.clone();
        tokio::spawn(async move {
            write_frames(wr, rx, version, &writer_segmented, &writer_cancel).await;
            writer_closed.store(true, Ordering::SeqCst);
            writer_notify.notify_waiters();
        });

        // Reader: hands each answer to whoever waits on its stream id.
        tokio::spawn(async move {
            read_frames(rd, version, &segmented, &cancel, |frame| {
                hand_over(frame, &node, &events, &pending, &metrics)
            })
            .await;
            closed.store(true, Ordering::SeqCst);
            cancel.cancel(); // the writer too
            metrics.open_connections.add(-1);
            // Dropping the waiters wakes every requester with `Closed`.
            let released = pending.lock().unwrap().release_all();
            metrics.used_stream_ids.add(-(released as i64));
            closed_notify.notify_waiters();
        });
        conn
    }

    /// From now on, EVENT frames this connection receives (after a REGISTER sent on it) go to
    /// the returned receiver, at most `EVENT_QUEUE` waiting; a later call replaces the earlier
    /// receiver.
    pub fn subscribe_events(&self) -> mpsc::Receiver<Frame> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        *self.events.lock().unwrap() = Some(tx);
        rx
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Resolves when the connection has closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Number of stream ids currently reserved (answers not yet received, orphans included).
    pub fn used_stream_ids(&self) -> usize {
        self.pending.lock().unwrap().reserved()
    }

    /// Closes the connection: requests waiting on it fail with `Closed`, its ids are released.
    pub fn close(&self) {
        self.cancel.cancel();
    }

    /// Sends one request and waits up to `timeout` for its answer. The returned frame carries the
    /// proxy's stream id; callers put the client's back.
    pub async fn request(
        &self,
        op: u8,
        flags: u8,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Frame, ClusterError> {
        let (tx, rx) = oneshot::channel();
        let ticket = {
            let mut p = self.pending.lock().unwrap();
            // Checked under the lock: the reader marks the connection closed before it takes
            // the lock to release every id, so no reservation can slip in after that.
            if self.is_closed() {
                return Err(ClusterError::Closed(self.node.clone()));
            }
            // An old orphan is found here too, not only at the next timeout.
            if p.orphaned() > 0 && self.orphan_limits.exceeded(&mut p, Instant::now()) {
                drop(p);
                self.close_orphaned();
                return Err(ClusterError::Closed(self.node.clone()));
            }
            let Some(ticket) = p.reserve(tx) else {
                return Err(ClusterError::StreamIdsExhausted(self.node.clone()));
            };
            ticket
        };
        self.metrics.used_stream_ids.add(1);
        let started = Instant::now();
        let mut frame = Frame::request(ticket.id, op, body);
        frame.flags = flags;
        let result = if self.tx.send(frame).is_err() {
            Err(ClusterError::Closed(self.node.clone()))
        } else {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(frame)) => Ok(frame),
                Ok(Err(_)) => Err(ClusterError::Closed(self.node.clone())),
                Err(_) => {
                    self.metrics.client_timeouts.inc();
                    self.orphan(ticket);
                    Err(ClusterError::Timeout(
                        self.node.clone(),
                        timeout.as_millis(),
                    ))
                }
            }
        };
        self.metrics.request_duration.observe(started.elapsed());
        if let Ok(f) = &result {
            if f.opcode == opcode::ERROR {
                self.metrics.count_error(&f.body);
            }
        }
        result
    }

    /// The requester of `ticket` gave up: its id stays reserved until the answer comes; past
    /// the orphan limits the connection is closed, the only safe way to get the ids back.
    fn orphan(&self, ticket: crate::protocol::stream_ids::Ticket) {
        let now = Instant::now();
        let mut p = self.pending.lock().unwrap();
        p.orphan(ticket, now);
        if self.orphan_limits.exceeded(&mut p, now) {
            drop(p);
            self.close_orphaned();
        }
    }

    fn close_orphaned(&self) {
        if !self.cancel.is_cancelled() {
            tracing::warn!(
                node = %self.node,
                orphaned = self.pending.lock().unwrap().orphaned(),
                "closing the connection: too many or too old requests without an answer (their \
                 stream ids cannot be reused safely)"
            );
        }
        self.close();
    }
}

/// The writer task's loop: sends what is queued, batching whatever else is already queued
/// into the same flush, in v5 segments once the reader has set `segmented`. Ends when the
/// queue closes, on `cancel`, or when the socket fails.
async fn write_frames<W>(
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    version: u8,
    segmented: &AtomicBool,
    cancel: &CancellationToken,
) where
    W: AsyncWrite + Unpin,
{
    let mut sink = crate::protocol::buffers::cluster_writer(wr, FrameCodec::cluster_side(version));
    loop {
        let frame = tokio::select! {
            f = rx.recv() => f,
            _ = cancel.cancelled() => None,
        };
        let Some(frame) = frame else { break };
        if !sink.encoder().segmented() && segmented.load(Ordering::SeqCst) {
            sink.encoder_mut().start_segments();
        }
        if sink.feed(frame).await.is_err() {
            break;
        }
        while let Ok(frame) = rx.try_recv() {
            if sink.feed(frame).await.is_err() {
                break;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
}

/// The reader task's loop: gives each frame read to `hand_over` until the socket ends or
/// `cancel` fires. In v5, STARTUP's answer (READY or AUTHENTICATE) is the last unsegmented
/// frame: from then on both directions are in segments, which `segmented` tells the writer.
async fn read_frames<R>(
    rd: R,
    version: u8,
    segmented: &AtomicBool,
    cancel: &CancellationToken,
    mut hand_over: impl FnMut(Frame),
) where
    R: AsyncRead + Unpin,
{
    let mut source =
        crate::protocol::buffers::cluster_reader(rd, FrameCodec::cluster_side(version));
    loop {
        let frame = tokio::select! {
            f = source.next() => f,
            _ = cancel.cancelled() => None,
        };
        let Some(Ok(frame)) = frame else { break };
        if version >= crate::protocol::frame::V5
            && !source.decoder().segmented()
            && matches!(frame.opcode, opcode::READY | opcode::AUTHENTICATE)
        {
            source.decoder_mut().start_segments();
            segmented.store(true, Ordering::SeqCst);
        }
        hand_over(frame);
    }
}

/// Where one frame from the node goes: an answer to whoever waits on its stream id; on a
/// negative stream id, an EVENT to its subscriber, and anything else nowhere.
fn hand_over(
    frame: Frame,
    node: &str,
    events: &Mutex<Option<mpsc::Sender<Frame>>>,
    pending: &Mutex<Pending>,
    metrics: &NodeMetrics,
) {
    if frame.stream < 0 {
        // An EVENT: to the subscriber, if any (see `subscribe_events`).
        if frame.opcode == opcode::EVENT {
            let tx = events.lock().unwrap().clone();
            if let Some(tx) = tx {
                if tx.try_send(frame).is_err() {
                    tracing::debug!(%node, "event dropped: the client's event queue is full or gone");
                }
            }
        }
        return;
    }
    let answer = pending.lock().unwrap().answer(frame.stream);
    match answer {
        Answer::Waiter(w) => {
            metrics.used_stream_ids.add(-1);
            let _ = w.send(frame);
        }
        Answer::Late => {
            metrics.used_stream_ids.add(-1);
            tracing::debug!(%node, stream = frame.stream, "late answer dropped; its stream id is free again");
        }
        Answer::Unknown => {
            tracing::debug!(%node, stream = frame.stream, "answer on a stream id nobody reserved; dropped");
        }
    }
}

/// Credentials for SASL PLAIN (PasswordAuthenticator).
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn plain_token(&self) -> Bytes {
        let mut t = Vec::with_capacity(self.username.len() + self.password.len() + 2);
        t.push(0);
        t.extend_from_slice(self.username.as_bytes());
        t.push(0);
        t.extend_from_slice(self.password.as_bytes());
        Bytes::from(t)
    }
}

/// Builds an AUTH_RESPONSE body from a SASL token.
pub fn auth_response_body(token: &[u8]) -> Bytes {
    let mut b = bytes::BytesMut::new();
    wire::put_bytes(&mut b, Some(token));
    b.freeze()
}

/// The STARTUP body the proxy sends to clusters (never compressed).
pub fn startup_body() -> Bytes {
    wire::string_map(&[("CQL_VERSION", "3.0.0")])
}

/// Full handshake done by the proxy itself with its own credentials (origin connections, control
/// connections). Returns the cluster's ERROR frame body on refusal.
pub async fn handshake(
    conn: &ClusterConn,
    creds: Option<&Credentials>,
    timeout: Duration,
) -> Result<(), HandshakeError> {
    let resp = conn
        .request(opcode::STARTUP, 0, startup_body(), timeout)
        .await?;
    match resp.opcode {
        opcode::READY => return Ok(()),
        opcode::AUTHENTICATE => {}
        opcode::ERROR => return Err(HandshakeError::Refused(resp.body)),
        other => return Err(HandshakeError::Unexpected(other)),
    }
    let Some(creds) = creds else {
        return Err(HandshakeError::NoCredentials(conn.node.clone()));
    };
    let resp = conn
        .request(
            opcode::AUTH_RESPONSE,
            0,
            auth_response_body(&creds.plain_token()),
            timeout,
        )
        .await?;
    match resp.opcode {
        opcode::AUTH_SUCCESS => Ok(()),
        opcode::ERROR => Err(HandshakeError::Refused(resp.body)),
        other => Err(HandshakeError::Unexpected(other)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("refused: {}", wire::parse_error(.0).map(|e| e.1).unwrap_or_default())]
    Refused(Bytes),
    #[error("unexpected opcode {0:#x} during handshake")]
    Unexpected(u8),
    #[error("{0} requires authentication but no username/password is configured for it")]
    NoCredentials(String),
}

#[cfg(test)]
mod tests {
    //! The connection's stream-id handling, against a peer on an in-memory pipe that answers
    //! only when told to (the one thing a real node cannot be made to do on cue).
    use super::*;
    use crate::protocol::frame::FrameCodec;
    use tokio_util::codec::Framed;

    type Peer = Framed<tokio::io::DuplexStream, FrameCodec>;

    fn pair(max_stream_ids: usize) -> (Arc<ClusterConn>, Peer, Arc<NodeMetrics>) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (rd, wr) = tokio::io::split(ours);
        let metrics = Arc::new(NodeMetrics::detached());
        let conn = ClusterConn::start(
            "node",
            "node:9042".into(),
            rd,
            wr,
            max_stream_ids,
            crate::protocol::frame::VERSION,
            metrics.clone(),
        );
        (
            conn,
            Framed::new(
                theirs,
                FrameCodec::client_side(crate::protocol::frame::VERSION),
            ),
            metrics,
        )
    }

    async fn answer(peer: &mut Peer, stream: i16, body: &'static [u8]) {
        peer.send(Frame::response(
            stream,
            opcode::RESULT,
            Bytes::from_static(body),
        ))
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_late_answer_never_reaches_the_next_request() {
        // 8 ids: up to two orphans are tolerated before the connection closes itself.
        let (conn, mut peer, metrics) = pair(8);
        let short = Duration::from_millis(50);
        let err = conn
            .request(opcode::QUERY, 0, Bytes::from_static(b"first"), short)
            .await
            .unwrap_err();
        assert!(matches!(err, ClusterError::Timeout(..)), "{err:?}");
        let first = peer.next().await.unwrap().unwrap();
        // Still reserved after the timeout, and counted so.
        assert_eq!(conn.used_stream_ids(), 1);
        assert_eq!(metrics.used_stream_ids.get(), 1);

        let conn2 = conn.clone();
        let second = tokio::spawn(async move {
            conn2
                .request(
                    opcode::QUERY,
                    0,
                    Bytes::from_static(b"second"),
                    Duration::from_secs(10),
                )
                .await
        });
        let req2 = peer.next().await.unwrap().unwrap();
        assert_ne!(
            req2.stream, first.stream,
            "a timed-out id was handed out again"
        );
        // The late answer to the first request arrives first; the second request must get its own.
        answer(&mut peer, first.stream, b"late").await;
        answer(&mut peer, req2.stream, b"mine").await;
        let got = second.await.unwrap().unwrap();
        assert_eq!(&got.body[..], b"mine");
        assert_eq!(conn.used_stream_ids(), 0);
        assert_eq!(metrics.used_stream_ids.get(), 0);
    }

    #[tokio::test]
    async fn a_connection_whose_ids_are_all_orphaned_closes_instead_of_refusing_forever() {
        // 4 ids: the limit is one orphan per four ids, so the first unanswered request closes it.
        let (conn, mut peer, metrics) = pair(4);
        let short = Duration::from_millis(50);
        let err = conn
            .request(opcode::QUERY, 0, Bytes::from_static(b"lost"), short)
            .await
            .unwrap_err();
        assert!(matches!(err, ClusterError::Timeout(..)), "{err:?}");
        tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("the connection did not close");
        assert_eq!(conn.used_stream_ids(), 0, "closing releases the orphans");
        assert_eq!(metrics.used_stream_ids.get(), 0);
        assert_eq!(metrics.open_connections.get(), 0);
        assert!(matches!(
            conn.request(opcode::QUERY, 0, Bytes::new(), short).await,
            Err(ClusterError::Closed(_))
        ));
        // The peer sees the socket end.
        let _request = peer.next().await;
        assert!(peer.next().await.is_none());
    }

    #[tokio::test]
    async fn connect_falls_back_to_the_next_host() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Nothing listens on 127.0.0.2 at that port: refused, so the next host is tried.
        let hosts = vec!["127.0.0.2".to_string(), "127.0.0.1".to_string()];
        let failed = Arc::new(NodeMetrics::detached());
        let ok = Arc::new(NodeMetrics::detached());
        let conn = ClusterConn::connect(&hosts, port, Duration::from_secs(5), 8, None, 4, |node| {
            if node.starts_with("127.0.0.2") {
                failed.clone()
            } else {
                ok.clone()
            }
        })
        .await
        .unwrap();
        assert_eq!(conn.node, format!("127.0.0.1:{port}"));
        assert_eq!(failed.failed_connections.get(), 1);
        assert_eq!(ok.open_connections.get(), 1);
    }
}
