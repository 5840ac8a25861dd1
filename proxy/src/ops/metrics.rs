//! Prometheus metrics with the reference ZDM proxy's names and labels, plus the summary names
//! our users' runbook (ZDM-APPROACH.md) queries.
//!
//! A small hand-written registry (atomics + a text renderer) instead of the `prometheus` crate:
//! the set of series is fixed at start (every labelled counter exists at 0 from the first scrape,
//! which the reference dashboard relies on) and the exposition format is a few lines of code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ops::config::Cluster;
use crate::ops::exposition::{Exposition, Kind};
use crate::protocol::wire::error_code;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The reference proxy's default latency buckets (milliseconds), exported in seconds.
const BUCKETS_MS: [f64; 17] = [
    1.0, 4.0, 7.0, 10.0, 25.0, 40.0, 60.0, 80.0, 100.0, 150.0, 250.0, 500.0, 1000.0, 2500.0,
    5000.0, 10000.0, 15000.0,
];

pub struct Histogram {
    counts: [AtomicU64; BUCKETS_MS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        if let Some(i) = BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` samples of the family `name` (its HELP and TYPE are
    /// the caller's: one family holds the histograms of several label sets).
    pub(crate) fn render(&self, x: &mut Exposition, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let le = format!("{labels}{sep}le=\"{}\"", b / 1000.0);
            x.sample(&bucket, &le, cumulative);
        }
        let count = self.count.load(Ordering::Relaxed);
        x.sample(&bucket, &format!("{labels}{sep}le=\"+Inf\""), count);
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        x.sample(&format!("{name}_sum"), labels, sum);
        x.sample(&format!("{name}_count"), labels, count);
    }
}

/// Error kinds of the reference `*_requests_failed_total{error=...}` series.
pub const ERROR_KINDS: [&str; 9] = [
    "client_timeout",
    "read_timeout",
    "read_failure",
    "write_timeout",
    "write_failure",
    "overloaded",
    "unavailable",
    "unprepared",
    "other",
];

/// Per-node series (`zdm_origin_*` / `zdm_target_*` with `node="host:port"`).
pub struct NodeMetrics {
    pub errors: [Counter; ERROR_KINDS.len()],
    pub client_timeouts: Counter,
    pub request_duration: Histogram,
    pub open_connections: Gauge,
    pub used_stream_ids: Gauge,
    pub failed_connections: Arc<FailedConnections>,
}

/// Failed connection attempts, counted per node and per cluster.
pub struct FailedConnections {
    node: Counter,
    cluster: Arc<Counter>,
}

impl FailedConnections {
    pub fn inc(&self) {
        self.node.inc();
        self.cluster.inc();
    }

    /// This node's count.
    pub fn get(&self) -> u64 {
        self.node.get()
    }
}

impl NodeMetrics {
    /// Series not registered under a cluster (the shadow-read connections keep their own
    /// registry, `shadow::metrics`); failed connection attempts are counted but not exported.
    pub fn detached() -> NodeMetrics {
        NodeMetrics {
            errors: Default::default(),
            client_timeouts: Counter::default(),
            request_duration: Histogram::default(),
            open_connections: Gauge::default(),
            used_stream_ids: Gauge::default(),
            failed_connections: Arc::new(FailedConnections {
                node: Counter::default(),
                cluster: Arc::default(),
            }),
        }
    }

    /// Counts an ERROR answer by the kind the reference proxy distinguishes.
    pub fn count_error(&self, body: &[u8]) {
        let code = crate::protocol::wire::parse_error(body)
            .map(|e| e.0)
            .unwrap_or(-1);
        let kind = match code {
            error_code::READ_TIMEOUT => 1,
            error_code::READ_FAILURE => 2,
            error_code::WRITE_TIMEOUT => 3,
            error_code::WRITE_FAILURE => 4,
            error_code::OVERLOADED => 5,
            error_code::UNAVAILABLE => 6,
            error_code::UNPREPARED => 7,
            _ => 8,
        };
        self.errors[kind].inc();
    }

    /// Failed requests by the reference's error kinds ([`ERROR_KINDS`]): client-side timeouts
    /// first, then the ERROR answers by kind.
    pub fn failed_requests(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ERROR_KINDS.iter().enumerate().map(|(k, kind)| {
            let v = if k == 0 {
                self.client_timeouts.get()
            } else {
                self.errors[k].get()
            };
            (*kind, v)
        })
    }
}

/// Which of the reference `type` labels a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    ReadsOrigin,
    ReadsTarget,
    Writes,
}

/// All proxy metrics.
pub struct Metrics {
    prefix: String,
    pub failed_reads: [Counter; 2],
    pub failed_writes_origin: Counter,
    pub failed_writes_target: Counter,
    pub failed_writes_both: Counter,
    failed_connections: [Arc<Counter>; 2],
    pub pscache_miss: Counter,
    pub pscache_entries: Gauge,
    durations: [Histogram; 3],
    inflight: [Gauge; 3],
    pub client_connections: Gauge,
    /// Client connections past their handshake by negotiated protocol version: [v4, v5].
    pub client_connections_by_version: [Gauge; 2],
    pub requests_total: Counter,
    pub requests_duration: Histogram,
    pub errors_total: Counter,
    pub origin_requests_total: Counter,
    pub target_requests_total: Counter,
    /// `zdm_async_*`: shadow reads on the secondary (read_mode DUAL_ASYNC_ON_SECONDARY).
    pub shadow: crate::shadow::metrics::ShadowMetrics,
    nodes: Mutex<BTreeMap<(u8, String), Arc<NodeMetrics>>>,
    /// `proxy_writes_total{keyspace,table,cluster,outcome}`.
    pub writes: crate::statements::write_metrics::WriteMetrics,
    /// `proxy_unsafe_writes_total{keyspace,table,cause}`.
    pub unsafe_writes: crate::statements::unsafe_writes::UnsafeWrites,
}

fn cluster_index(c: Cluster) -> usize {
    match c {
        Cluster::Origin => 0,
        Cluster::Target => 1,
    }
}

impl Metrics {
    pub fn new(prefix: &str) -> Metrics {
        Metrics {
            prefix: prefix.to_string(),
            failed_reads: Default::default(),
            failed_writes_origin: Counter::default(),
            failed_writes_target: Counter::default(),
            failed_writes_both: Counter::default(),
            failed_connections: Default::default(),
            pscache_miss: Counter::default(),
            pscache_entries: Gauge::default(),
            durations: Default::default(),
            inflight: Default::default(),
            client_connections: Gauge::default(),
            client_connections_by_version: Default::default(),
            requests_total: Counter::default(),
            requests_duration: Histogram::default(),
            errors_total: Counter::default(),
            origin_requests_total: Counter::default(),
            target_requests_total: Counter::default(),
            shadow: Default::default(),
            nodes: Mutex::new(BTreeMap::new()),
            writes: Default::default(),
            unsafe_writes: Default::default(),
        }
    }

    /// The metric name prefix (`zdm` unless configured otherwise).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The series of one node, created (at zero) on first use.
    pub fn node(&self, cluster: Cluster, node: &str) -> Arc<NodeMetrics> {
        let ci = cluster_index(cluster);
        let mut nodes = self.nodes.lock().unwrap();
        nodes
            .entry((ci as u8, node.to_string()))
            .or_insert_with(|| {
                Arc::new(NodeMetrics {
                    errors: Default::default(),
                    client_timeouts: Counter::default(),
                    request_duration: Histogram::default(),
                    open_connections: Gauge::default(),
                    used_stream_ids: Gauge::default(),
                    failed_connections: Arc::new(FailedConnections {
                        node: Counter::default(),
                        cluster: self.failed_connections[ci].clone(),
                    }),
                })
            })
            .clone()
    }

    pub fn duration(&self, t: RequestType) -> &Histogram {
        &self.durations[t as usize]
    }

    pub fn inflight(&self, t: RequestType) -> &Gauge {
        &self.inflight[t as usize]
    }

    pub fn failed_read(&self, c: Cluster) {
        self.failed_reads[cluster_index(c)].inc();
    }

    /// Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut x = Exposition::new(&mut out, &self.prefix);
        self.render_failures(&mut x);
        self.render_requests(&mut x);
        self.render_cache_and_clients(&mut x);
        {
            let nodes = self.nodes.lock().unwrap();
            for (ci, cluster) in ["origin", "target"].iter().enumerate() {
                let of_cluster: Vec<(&str, &NodeMetrics)> = nodes
                    .iter()
                    .filter(|((c, _), _)| *c as usize == ci)
                    .map(|((_, node), m)| (node.as_str(), m.as_ref()))
                    .collect();
                render_cluster_nodes(&mut x, cluster, &of_cluster);
            }
        }
        self.render_runbook_summary(&mut x);
        self.writes.render(&mut x);
        self.unsafe_writes.render(&mut x);
        self.shadow.render(&mut x);
        out
    }

    /// The reference's failed reads, writes and connection attempts, by cluster.
    fn render_failures(&self, x: &mut Exposition) {
        x.by_label(
            "proxy_failed_reads_total",
            Kind::Counter,
            "Running total of failed reads",
            "cluster",
            [
                ("origin", self.failed_reads[0].get()),
                ("target", self.failed_reads[1].get()),
            ],
        );
        x.by_label(
            "proxy_failed_writes_total",
            Kind::Counter,
            "Running total of failed writes",
            "failed_on",
            [
                ("origin", self.failed_writes_origin.get()),
                ("target", self.failed_writes_target.get()),
                ("both", self.failed_writes_both.get()),
            ],
        );
        x.by_label(
            "proxy_failed_connections_total",
            Kind::Counter,
            "Running total of failed connection attempts to a cluster",
            "cluster",
            [
                ("origin", self.failed_connections[0].get()),
                ("target", self.failed_connections[1].get()),
            ],
        );
    }

    /// The reference's request latency and requests in flight, by request type.
    fn render_requests(&self, x: &mut Exposition) {
        let types = ["reads_origin", "reads_target", "writes"];
        x.family(
            "proxy_request_duration_seconds",
            Kind::Histogram,
            "Latency of requests at proxy entry point",
        );
        for (t, h) in types.iter().zip(&self.durations) {
            h.render(
                x,
                "proxy_request_duration_seconds",
                &format!("type=\"{t}\""),
            );
        }
        x.by_label(
            "proxy_inflight_requests_total",
            Kind::Gauge,
            "Number of requests currently in flight in the proxy",
            "type",
            types.into_iter().zip(self.inflight.iter().map(Gauge::get)),
        );
    }

    /// The prepared statement cache and the client connections.
    fn render_cache_and_clients(&self, x: &mut Exposition) {
        x.single(
            "pscache_entries_total",
            Kind::Gauge,
            "Number of entries currently in the prepared statement cache",
            self.pscache_entries.get(),
        );
        x.single(
            "pscache_miss_total",
            Kind::Counter,
            "Running total of prepared statement cache misses in the proxy",
            self.pscache_miss.get(),
        );
        x.single(
            "client_connections_total",
            Kind::Gauge,
            "Number of client connections currently open",
            self.client_connections.get(),
        );
        x.by_label(
            "client_connections_by_protocol_version",
            Kind::Gauge,
            "Number of client connections currently open past their handshake, by the protocol version negotiated",
            "protocol_version",
            ["4", "5"]
                .into_iter()
                .zip(self.client_connections_by_version.iter().map(Gauge::get)),
        );
    }

    /// Summary names used by our users' runbook dashboards (ZDM-APPROACH.md).
    fn render_runbook_summary(&self, x: &mut Exposition) {
        x.single(
            "proxy_requests_total",
            Kind::Counter,
            "Requests received from clients",
            self.requests_total.get(),
        );
        x.family(
            "proxy_requests_duration_seconds",
            Kind::Histogram,
            "Latency of all client requests",
        );
        self.requests_duration
            .render(x, "proxy_requests_duration_seconds", "");
        x.single(
            "proxy_errors_total",
            Kind::Counter,
            "Client requests answered with an error",
            self.errors_total.get(),
        );
        x.single(
            "proxy_origin_requests_total",
            Kind::Counter,
            "Requests sent to origin",
            self.origin_requests_total.get(),
        );
        x.single(
            "proxy_target_requests_total",
            Kind::Counter,
            "Requests sent to target",
            self.target_requests_total.get(),
        );
    }
}

/// The reference's per-node series of one cluster (`<prefix>_origin_*` / `<prefix>_target_*`
/// with `node="host:port"`).
fn render_cluster_nodes(x: &mut Exposition, cluster: &str, nodes: &[(&str, &NodeMetrics)]) {
    let failed = format!("{cluster}_requests_failed_total");
    x.family(
        &failed,
        Kind::Counter,
        &format!("Running total of requests that failed on {cluster}"),
    );
    for (node, m) in nodes {
        for (kind, v) in m.failed_requests() {
            x.sample(&failed, &format!("error=\"{kind}\",node=\"{node}\""), v);
        }
    }
    let duration = format!("{cluster}_request_duration_seconds");
    x.family(
        &duration,
        Kind::Histogram,
        &format!("Latency of requests sent to {cluster} at cluster connector level"),
    );
    for (node, m) in nodes {
        m.request_duration
            .render(x, &duration, &format!("node=\"{node}\""));
    }
    let per_node = [
        (
            "connections_total",
            Kind::Gauge,
            "Number of connections currently open",
            (|m: &NodeMetrics| m.open_connections.get()) as fn(&NodeMetrics) -> i64,
        ),
        (
            "used_stream_ids_total",
            Kind::Gauge,
            "Number of used stream ids",
            |m| m.used_stream_ids.get(),
        ),
        (
            "failed_connections_total",
            Kind::Counter,
            "Running total of failed connection attempts",
            |m| m.failed_connections.node.get() as i64,
        ),
    ];
    for (name, kind, help, get) in per_node {
        let samples = nodes.iter().map(|(node, m)| (*node, get(m)));
        x.by_label(&format!("{cluster}_{name}"), kind, help, "node", samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counters_exist_at_zero_before_any_traffic() {
        let m = Metrics::new("zdm");
        m.node(Cluster::Origin, "10.0.0.1:9042");
        let text = m.render();
        for series in [
            "zdm_proxy_failed_writes_total{failed_on=\"both\"} 0",
            "zdm_proxy_failed_reads_total{cluster=\"target\"} 0",
            "zdm_proxy_inflight_requests_total{type=\"writes\"} 0",
            "zdm_proxy_request_duration_seconds_count{type=\"reads_origin\"} 0",
            "zdm_origin_requests_failed_total{error=\"unprepared\",node=\"10.0.0.1:9042\"} 0",
            "zdm_origin_used_stream_ids_total{node=\"10.0.0.1:9042\"} 0",
            "zdm_proxy_requests_total 0",
            "zdm_proxy_errors_total 0",
        ] {
            assert!(text.contains(series), "missing {series}");
        }
    }

    /// The whole exposition of a registry with every family populated, byte for byte: the
    /// reference dashboards, our runbook's queries and the health gate read these names, labels
    /// and values, so a change to the text must be a deliberate one (update the file with it).
    #[test]
    fn exposition_of_a_populated_registry_is_unchanged() {
        use crate::protocol::wire::error_body;
        use crate::shadow::metrics::DropReason;
        use crate::statements::write_metrics::TableRef;
        let m = Metrics::new("zdm");
        m.failed_read(Cluster::Target);
        m.failed_writes_origin.inc();
        m.failed_writes_both.inc();
        m.failed_writes_both.inc();
        let origin = m.node(Cluster::Origin, "10.0.0.1:9042");
        origin.count_error(&error_body(error_code::READ_TIMEOUT, "timeout"));
        origin.count_error(&error_body(error_code::UNPREPARED, "unprepared"));
        origin.client_timeouts.inc();
        origin.request_duration.observe(Duration::from_millis(3));
        origin.request_duration.observe(Duration::from_millis(700));
        origin.open_connections.add(2);
        origin.used_stream_ids.set(5);
        origin.failed_connections.inc();
        m.node(Cluster::Origin, "10.0.0.2:9042");
        let target = m.node(Cluster::Target, "10.0.0.3:9042");
        target.request_duration.observe(Duration::from_millis(120));
        target.count_error(&error_body(error_code::OVERLOADED, "busy"));
        m.duration(RequestType::Writes)
            .observe(Duration::from_millis(8));
        m.duration(RequestType::ReadsTarget)
            .observe(Duration::from_secs(20));
        m.inflight(RequestType::ReadsOrigin).add(1);
        m.pscache_entries.set(7);
        m.pscache_miss.inc();
        m.client_connections.add(3);
        m.client_connections_by_version[1].add(1);
        m.requests_total.inc();
        m.requests_duration.observe(Duration::from_micros(1500));
        m.errors_total.inc();
        m.origin_requests_total.inc();
        m.target_requests_total.inc();
        let odd = TableRef {
            keyspace: "ks".into(),
            table: "we\"ird\\name".into(),
        };
        let plain = TableRef {
            keyspace: "ks".into(),
            table: "kv".into(),
        };
        m.writes
            .record(&[odd.clone(), plain.clone()], Cluster::Origin, true);
        m.writes
            .record(std::slice::from_ref(&plain), Cluster::Target, false);
        m.unsafe_writes.record(&[odd], "counter");
        m.unsafe_writes.record(&[plain], "now()");
        let shadow = m.shadow.node("10.0.0.3:9042");
        shadow.inflight.add(1);
        shadow
            .conn
            .request_duration
            .observe(Duration::from_millis(30));
        shadow.conn.open_connections.add(1);
        m.shadow.dropped(DropReason::MemoryBudget);
        m.shadow.table("ks", "kv").matches.inc();
        m.shadow.table("ks", "kv").mismatches.inc();
        let expected = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/metrics_exposition.prom"
        ));
        assert_eq!(m.render(), expected);
    }

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(30));
        let mut s = String::new();
        h.render(&mut Exposition::new(&mut s, "zdm"), "x", "");
        assert!(s.contains("zdm_x_bucket{le=\"0.004\"} 1"), "{s}");
        assert!(s.contains("zdm_x_bucket{le=\"0.04\"} 2"), "{s}");
        assert!(s.contains("zdm_x_count 2"), "{s}");
    }
}
