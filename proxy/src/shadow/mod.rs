//! Shadow reads (`read_mode: DUAL_ASYNC_ON_SECONDARY`): every read the primary answers is also
//! sent to the secondary cluster, in the background, and the two answers are compared.
//!
//! Shape, per client connection (as the reference proxy's "async connector"):
//! - the read is handed to a bounded queue (`QUEUE_CAPACITY`) *before* the primary request is
//!   sent, so both clusters see it at about the same time; handing it over never waits: when
//!   the queue or the process-wide budget is full, the shadow read is dropped and counted;
//! - one worker task owns a dedicated connection to the secondary, opened lazily on the first
//!   shadow read (so a reload from PRIMARY_ONLY turns shadowing on for connections that already
//!   exist) and reopened with a backoff when it fails; while it is down, shadow reads are
//!   dropped (`not_connected`), never retried, never queued without bound;
//! - the primary's answer is handed to the shadow read when it arrives (a reference-counted
//!   `Bytes`, no copy); the comparison (`compare`) runs on the worker's side, off the client's
//!   path, and counts a match or a mismatch for the read's keyspace and table.
//!
//! Memory is bounded twice: by count (queue per connection, in-flight per connection, jobs per
//! process) and by bytes (request and primary answer held for comparisons, per process).

pub mod compare;
pub mod metrics;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::ops::config::Cluster;
use crate::protocol::frame::{opcode, Frame};
use crate::protocol::wire::{self, error_code};
use crate::state::Shared;
use crate::upstream::cluster::{handshake, ClusterConn, ClusterError};

use self::compare::Verdict;
use self::metrics::DropReason;

/// Shadow reads waiting for the worker, per client connection.
pub const QUEUE_CAPACITY: usize = 256;
/// Shadow reads in flight on one async connection.
pub const MAX_INFLIGHT_PER_CONNECTION: usize = 128;
/// Shadow reads alive (queued or in flight) in the whole process.
pub const MAX_JOBS: usize = 8192;
/// Bytes of requests and answers held for comparisons in the whole process.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// First and longest wait before reopening a failed async connection.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// At most one mismatch log line per this interval (the rest are counted in the next line).
const MISMATCH_LOG_EVERY: Duration = Duration::from_secs(1);

/// Process-wide limits: the budget every connection's shadow reads share, and the mismatch log
/// rate.
pub struct ShadowLimits {
    jobs: AtomicUsize,
    bytes: AtomicUsize,
    max_jobs: usize,
    max_bytes: usize,
    started: Instant,
    /// Milliseconds since `started` of the last mismatch line.
    last_log_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for ShadowLimits {
    fn default() -> Self {
        ShadowLimits::new(MAX_JOBS, MAX_BYTES)
    }
}

impl ShadowLimits {
    pub fn new(max_jobs: usize, max_bytes: usize) -> ShadowLimits {
        ShadowLimits {
            jobs: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_jobs,
            max_bytes,
            started: Instant::now(),
            last_log_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Reserves one job holding `bytes`; `None` when the budget is spent.
    fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Ticket> {
        if self.jobs.fetch_add(1, Ordering::SeqCst) >= self.max_jobs {
            self.jobs.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let mut t = Ticket {
            limits: self.clone(),
            bytes: 0,
        };
        t.grow(bytes).then_some(t)
    }

    /// `Some(suppressed lines since the last one)` when a mismatch line may be logged now.
    fn may_log(&self) -> Option<u64> {
        let now = self.started.elapsed().as_millis() as u64 + MISMATCH_LOG_EVERY.as_millis() as u64;
        let last = self.last_log_ms.load(Ordering::SeqCst);
        if now.saturating_sub(last) >= MISMATCH_LOG_EVERY.as_millis() as u64
            && self
                .last_log_ms
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::SeqCst))
        } else {
            self.suppressed.fetch_add(1, Ordering::SeqCst);
            None
        }
    }
}

/// One job's share of the budget, given back on drop.
struct Ticket {
    limits: Arc<ShadowLimits>,
    bytes: usize,
}

impl Ticket {
    fn grow(&mut self, more: usize) -> bool {
        let before = self.limits.bytes.fetch_add(more, Ordering::SeqCst);
        if before + more > self.limits.max_bytes {
            self.limits.bytes.fetch_sub(more, Ordering::SeqCst);
            return false;
        }
        self.bytes += more;
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.limits.bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        self.limits.jobs.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a prepared statement's id sits in an EXECUTE body, and its text for re-preparing it on
/// the async connection (after UNPREPARED: the secondary restarted or evicted it).
#[derive(Debug, Clone)]
pub struct PreparedRef {
    pub id_offset: usize,
    pub query: Arc<str>,
}

/// A read to mirror on the secondary.
pub struct ShadowRead {
    pub cluster: Cluster,
    pub opcode: u8,
    pub flags: u8,
    /// The request body as the secondary must see it (its own prepared id).
    pub body: Bytes,
    /// The client connection's keyspace (after USE), set on the async connection too.
    pub keyspace: Option<String>,
    /// (keyspace, table) from the statement text, used when the answer has no metadata.
    pub table: Option<(String, String)>,
    pub prepared: Option<PreparedRef>,
}

struct Job {
    read: ShadowRead,
    primary: oneshot::Receiver<Frame>,
    ticket: Ticket,
}

/// Hands the primary's answer to its shadow read.
pub struct PrimaryAnswer(oneshot::Sender<Frame>);

impl PrimaryAnswer {
    pub fn deliver(self, answer: &Frame) {
        let _ = self.0.send(answer.clone());
    }
}

/// One client connection's shadow reads.
pub struct Shadow {
    shared: Arc<Shared>,
    /// The client's protocol version, which the async connection speaks too.
    version: u8,
    limits: Arc<ShadowLimits>,
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl Shadow {
    pub fn new(shared: Arc<Shared>, version: u8) -> Shadow {
        Shadow {
            version,
            limits: shared.shadow.clone(),
            shared,
            queue: OnceLock::new(),
        }
    }

    /// Queues a shadow read without waiting; `None` when it was dropped (and counted).
    pub fn submit(&self, read: ShadowRead) -> Option<PrimaryAnswer> {
        let m = &self.shared.metrics.shadow;
        let Some(ticket) = self.limits.reserve(read.body.len()) else {
            m.dropped(DropReason::QueueFull);
            return None;
        };
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(worker(self.shared.clone(), rx, self.version));
            tx
        });
        let (tx, rx) = oneshot::channel();
        let job = Job {
            read,
            primary: rx,
            ticket,
        };
        match queue.try_send(job) {
            Ok(()) => Some(PrimaryAnswer(tx)),
            Err(mpsc::error::TrySendError::Full(_)) => {
                m.dropped(DropReason::QueueFull);
                None
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                m.dropped(DropReason::NotConnected);
                None
            }
        }
    }
}

/// The worker's async connection.
struct AsyncConn {
    cluster: Cluster,
    conn: Arc<ClusterConn>,
    keyspace: Option<String>,
}

/// Owns the async connection of one client connection; ends with the client connection (its
/// queue's sender is dropped), aborting the shadow reads still in flight.
async fn worker(shared: Arc<Shared>, mut queue: mpsc::Receiver<Job>, version: u8) {
    let m = &shared.metrics.shadow;
    let mut current: Option<AsyncConn> = None;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = RECONNECT_MIN;
    let mut inflight = JoinSet::new();
    while let Some(job) = queue.recv().await {
        while inflight.try_join_next().is_some() {}
        let stale = current
            .as_ref()
            .is_some_and(|c| c.cluster != job.read.cluster || c.conn.is_closed());
        if stale {
            // The secondary changed (reload) or the connection died: finish what runs on it.
            while inflight.join_next().await.is_some() {}
            current = None;
        }
        if current.is_none() {
            if retry_at.is_some_and(|t| Instant::now() < t) {
                m.dropped(DropReason::NotConnected);
                continue;
            }
            match open(&shared, job.read.cluster, version).await {
                Ok(conn) => {
                    tracing::debug!(node = %conn.node, "async connection open");
                    current = Some(AsyncConn {
                        cluster: job.read.cluster,
                        conn,
                        keyspace: None,
                    });
                    retry_at = None;
                    backoff = RECONNECT_MIN;
                }
                Err(e) => {
                    tracing::warn!(
                        cluster = job.read.cluster.name(),
                        "async connection for shadow reads failed: {e}; retrying in {backoff:?}"
                    );
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                    m.dropped(DropReason::NotConnected);
                    continue;
                }
            }
        }
        let Some(c) = current.as_mut() else {
            continue;
        };
        if job.read.keyspace.is_some() && job.read.keyspace != c.keyspace {
            // USE changes the keyspace of everything on the connection: let the reads of the
            // previous keyspace finish first.
            while inflight.join_next().await.is_some() {}
            let ks = job.read.keyspace.clone().unwrap_or_default();
            match use_keyspace(&shared, &c.conn, &ks).await {
                Ok(()) => c.keyspace = Some(ks),
                Err(e) => {
                    count_failure(&shared, &c.conn, &e);
                    continue;
                }
            }
        }
        if inflight.len() >= MAX_INFLIGHT_PER_CONNECTION {
            // Back-pressure onto the queue, which drops when full: never onto the client.
            inflight.join_next().await;
        }
        inflight.spawn(run(shared.clone(), c.conn.clone(), job));
    }
}

/// Opens and authenticates an async connection with the configured credentials.
async fn open(shared: &Arc<Shared>, c: Cluster, version: u8) -> Result<Arc<ClusterConn>, String> {
    let metrics = &shared.metrics.shadow;
    let conn = shared
        .connect_observed(c, version, |node| metrics.node(node).conn.clone())
        .await?;
    // The reference proxy's async_handshake_timeout_ms bounds the async connector's handshake.
    let timeout = Duration::from_millis(shared.config.async_handshake_timeout_ms);
    handshake(&conn, shared.credentials(c).as_ref(), timeout)
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

#[derive(Debug)]
enum ShadowError {
    Cluster(ClusterError),
    /// The secondary answered with an ERROR (already counted by kind by the connection).
    Answer,
}

async fn use_keyspace(shared: &Shared, conn: &ClusterConn, ks: &str) -> Result<(), ShadowError> {
    let mut body = BytesMut::new();
    wire::put_long_string(&mut body, &format!("USE \"{}\"", ks.replace('"', "\"\"")));
    body.put_u16(0x0001); // consistency ONE (unused by USE)
    wire::put_query_flags(&mut body, conn.version, 0);
    let resp = conn
        .request(
            opcode::QUERY,
            0,
            body.freeze(),
            shared.live().request_timeout(),
        )
        .await
        .map_err(ShadowError::Cluster)?;
    if resp.opcode == opcode::ERROR {
        return Err(ShadowError::Answer);
    }
    Ok(())
}

/// Counts a failure the connection itself did not count (it counts ERROR answers and
/// timeouts; a closed connection or exhausted stream ids are "other").
fn count_failure(shared: &Shared, conn: &ClusterConn, e: &ShadowError) {
    if let ShadowError::Cluster(ClusterError::Closed(_) | ClusterError::StreamIdsExhausted(_)) = e {
        shared.metrics.shadow.node(&conn.node).conn.errors
            [crate::ops::metrics::ERROR_KINDS.len() - 1]
            .inc();
    }
}

/// Keeps the in-flight gauge right even when the job is aborted.
struct Inflight(Arc<metrics::AsyncNode>);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.inflight.add(-1);
    }
}

/// Sends one shadow read, waits for both answers and records the verdict.
async fn run(shared: Arc<Shared>, conn: Arc<ClusterConn>, job: Job) {
    let Job {
        read,
        primary,
        mut ticket,
    } = job;
    let node = shared.metrics.shadow.node(&conn.node);
    node.inflight.add(1);
    let _inflight = Inflight(node);
    let secondary = match send(&shared, &conn, &read).await {
        Ok(f) => f,
        Err(e) => {
            count_failure(&shared, &conn, &e);
            return;
        }
    };
    if !ticket.grow(secondary.body.len()) {
        shared.metrics.shadow.dropped(DropReason::MemoryBudget);
        return;
    }
    // The client connection went away before its primary answer: nothing to compare.
    let Ok(primary) = primary.await else {
        return;
    };
    if !ticket.grow(primary.body.len()) {
        shared.metrics.shadow.dropped(DropReason::MemoryBudget);
        return;
    }
    let verdict = compare::compare(&primary, &secondary);
    let (ks, table) = compare::decode_rows(&primary)
        .ok()
        .flatten()
        .and_then(|r| r.table)
        .or(read.table)
        .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
    match verdict {
        Verdict::NotComparable => {}
        Verdict::Match => shared.metrics.shadow.table(&ks, &table).matches.inc(),
        Verdict::Mismatch(mm) => {
            shared.metrics.shadow.table(&ks, &table).mismatches.inc();
            if let Some(suppressed) = shared.shadow.may_log() {
                tracing::warn!(
                    keyspace = %ks,
                    table = %table,
                    secondary = read.cluster.name(),
                    suppressed,
                    "shadow read differs from the primary: {}; first differing row: {}",
                    mm.what,
                    if mm.key.is_empty() { "-" } else { &mm.key }
                );
            }
        }
    }
}

/// Sends the read; a prepared statement the secondary does not know is prepared again on this
/// connection (with the id it answers) and the read retried once.
async fn send(
    shared: &Shared,
    conn: &ClusterConn,
    read: &ShadowRead,
) -> Result<Frame, ShadowError> {
    let timeout = shared.live().request_timeout_for(read.cluster);
    // Tracing a shadow read would cost the secondary and reach no one.
    let flags = read.flags & !0x02;
    let resp = conn
        .request(read.opcode, flags, read.body.clone(), timeout)
        .await
        .map_err(ShadowError::Cluster)?;
    if resp.opcode != opcode::ERROR {
        return Ok(resp);
    }
    let unprepared = wire::parse_error(&resp.body).map(|e| e.0) == Some(error_code::UNPREPARED);
    let Some(p) = read.prepared.as_ref().filter(|_| unprepared) else {
        return Err(ShadowError::Answer);
    };
    let id = reprepare(shared, conn, &p.query).await?;
    let body = with_id(&read.body, p.id_offset, &id).ok_or(ShadowError::Answer)?;
    let resp = conn
        .request(read.opcode, flags, body, timeout)
        .await
        .map_err(ShadowError::Cluster)?;
    if resp.opcode == opcode::ERROR {
        return Err(ShadowError::Answer);
    }
    Ok(resp)
}

async fn reprepare(shared: &Shared, conn: &ClusterConn, query: &str) -> Result<Bytes, ShadowError> {
    let mut body = BytesMut::new();
    wire::put_long_string(&mut body, query);
    if conn.version >= crate::protocol::frame::V5 {
        body.put_u32(0); // v5 PREPARE flags: none
    }
    let resp = conn
        .request(
            opcode::PREPARE,
            0,
            body.freeze(),
            shared.live().request_timeout(),
        )
        .await
        .map_err(ShadowError::Cluster)?;
    let mut r = wire::Reader::new(&resp.body);
    match (resp.opcode, r.int()) {
        (opcode::RESULT, Ok(wire::result_kind::PREPARED)) => r
            .short_bytes()
            .map(Bytes::copy_from_slice)
            .map_err(|_| ShadowError::Answer),
        _ => Err(ShadowError::Answer),
    }
}

/// `body` with the [short bytes] id at `at` replaced by `id`.
fn with_id(body: &[u8], at: usize, id: &[u8]) -> Option<Bytes> {
    let old = wire::Reader::at(body, at).short_bytes().ok()?.len();
    let mut b = BytesMut::with_capacity(body.len() + id.len());
    b.put_slice(&body[..at]);
    wire::put_short_bytes(&mut b, id);
    b.put_slice(&body[at + 2 + old..]);
    Some(b.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_caps_jobs_and_bytes_and_is_given_back() {
        let l = Arc::new(ShadowLimits::new(2, 100));
        let a = l.reserve(10).unwrap();
        let mut b = l.reserve(10).unwrap();
        assert!(l.reserve(0).is_none(), "third job over the job cap");
        assert!(b.grow(80));
        assert!(!b.grow(1), "over the byte cap");
        drop(a);
        assert!(
            l.reserve(200).is_none(),
            "one job larger than the byte budget"
        );
        let c = l.reserve(10).unwrap();
        drop((b, c));
        assert_eq!(l.jobs.load(Ordering::SeqCst), 0);
        assert_eq!(l.bytes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn mismatch_lines_are_rate_limited() {
        let l = ShadowLimits::default();
        assert_eq!(l.may_log(), Some(0));
        assert_eq!(l.may_log(), None);
        assert_eq!(l.may_log(), None);
        l.last_log_ms.store(0, Ordering::SeqCst); // as if a second went by
        assert_eq!(l.may_log(), Some(2));
    }

    #[test]
    fn replaces_the_prepared_id() {
        let mut b = BytesMut::new();
        b.put_slice(b"xy");
        wire::put_short_bytes(&mut b, b"old-id");
        b.put_slice(b"rest");
        let out = with_id(&b, 2, b"new").unwrap();
        assert_eq!(&out[..], b"xy\x00\x03newrest");
    }
}
