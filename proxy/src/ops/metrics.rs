//! Prometheus metrics with the reference ZDM proxy's names and labels, plus the summary names
//! our users' runbook (ZDM-APPROACH.md) queries.
//!
//! A small hand-written registry (atomics + a text renderer) instead of the `prometheus` crate:
//! the set of series is fixed at start (every labelled counter exists at 0 from the first scrape,
//! which the reference dashboard relies on) and the exposition format is a few lines of code.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ops::config::Cluster;
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

    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                b / 1000.0
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
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
        let p = &self.prefix;
        let mut o = String::with_capacity(16 * 1024);
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {p}_{name} {help}\n# TYPE {p}_{name} {kind}");
        };
        head(
            &mut o,
            "proxy_failed_reads_total",
            "counter",
            "Running total of failed reads",
        );
        for (i, c) in ["origin", "target"].iter().enumerate() {
            let _ = writeln!(
                o,
                "{p}_proxy_failed_reads_total{{cluster=\"{c}\"}} {}",
                self.failed_reads[i].get()
            );
        }
        head(
            &mut o,
            "proxy_failed_writes_total",
            "counter",
            "Running total of failed writes",
        );
        for (c, v) in [
            ("origin", &self.failed_writes_origin),
            ("target", &self.failed_writes_target),
            ("both", &self.failed_writes_both),
        ] {
            let _ = writeln!(
                o,
                "{p}_proxy_failed_writes_total{{failed_on=\"{c}\"}} {}",
                v.get()
            );
        }
        head(
            &mut o,
            "proxy_failed_connections_total",
            "counter",
            "Running total of failed connection attempts to a cluster",
        );
        for (i, c) in ["origin", "target"].iter().enumerate() {
            let _ = writeln!(
                o,
                "{p}_proxy_failed_connections_total{{cluster=\"{c}\"}} {}",
                self.failed_connections[i].get()
            );
        }
        let types = ["reads_origin", "reads_target", "writes"];
        head(
            &mut o,
            "proxy_request_duration_seconds",
            "histogram",
            "Latency of requests at proxy entry point",
        );
        for (i, t) in types.iter().enumerate() {
            self.durations[i].render(
                &mut o,
                &format!("{p}_proxy_request_duration_seconds"),
                &format!("type=\"{t}\""),
            );
        }
        head(
            &mut o,
            "proxy_inflight_requests_total",
            "gauge",
            "Number of requests currently in flight in the proxy",
        );
        for (i, t) in types.iter().enumerate() {
            let _ = writeln!(
                o,
                "{p}_proxy_inflight_requests_total{{type=\"{t}\"}} {}",
                self.inflight[i].get()
            );
        }
        head(
            &mut o,
            "pscache_entries_total",
            "gauge",
            "Number of entries currently in the prepared statement cache",
        );
        let _ = writeln!(
            o,
            "{p}_pscache_entries_total {}",
            self.pscache_entries.get()
        );
        head(
            &mut o,
            "pscache_miss_total",
            "counter",
            "Running total of prepared statement cache misses in the proxy",
        );
        let _ = writeln!(o, "{p}_pscache_miss_total {}", self.pscache_miss.get());
        head(
            &mut o,
            "client_connections_total",
            "gauge",
            "Number of client connections currently open",
        );
        let _ = writeln!(
            o,
            "{p}_client_connections_total {}",
            self.client_connections.get()
        );
        head(
            &mut o,
            "client_connections_by_protocol_version",
            "gauge",
            "Number of client connections currently open past their handshake, by the protocol version negotiated",
        );
        for (i, v) in ["4", "5"].iter().enumerate() {
            let _ = writeln!(
                o,
                "{p}_client_connections_by_protocol_version{{protocol_version=\"{v}\"}} {}",
                self.client_connections_by_version[i].get()
            );
        }

        let nodes = self.nodes.lock().unwrap();
        for (ci, cluster) in ["origin", "target"].iter().enumerate() {
            let of_cluster: Vec<_> = nodes
                .iter()
                .filter(|((c, _), _)| *c as usize == ci)
                .collect();
            head(
                &mut o,
                &format!("{cluster}_requests_failed_total"),
                "counter",
                &format!("Running total of requests that failed on {cluster}"),
            );
            for ((_, node), m) in &of_cluster {
                for (k, kind) in ERROR_KINDS.iter().enumerate() {
                    let v = if k == 0 {
                        m.client_timeouts.get()
                    } else {
                        m.errors[k].get()
                    };
                    let _ = writeln!(o, "{p}_{cluster}_requests_failed_total{{error=\"{kind}\",node=\"{node}\"}} {v}");
                }
            }
            head(
                &mut o,
                &format!("{cluster}_request_duration_seconds"),
                "histogram",
                &format!("Latency of requests sent to {cluster} at cluster connector level"),
            );
            for ((_, node), m) in &of_cluster {
                m.request_duration.render(
                    &mut o,
                    &format!("{p}_{cluster}_request_duration_seconds"),
                    &format!("node=\"{node}\""),
                );
            }
            for (name, help) in [
                ("connections_total", "Number of connections currently open"),
                ("used_stream_ids_total", "Number of used stream ids"),
                (
                    "failed_connections_total",
                    "Running total of failed connection attempts",
                ),
            ] {
                head(
                    &mut o,
                    &format!("{cluster}_{name}"),
                    if name.starts_with("failed") {
                        "counter"
                    } else {
                        "gauge"
                    },
                    help,
                );
                for ((_, node), m) in &of_cluster {
                    let v = match name {
                        "connections_total" => m.open_connections.get(),
                        "used_stream_ids_total" => m.used_stream_ids.get(),
                        _ => m.failed_connections.node.get() as i64,
                    };
                    let _ = writeln!(o, "{p}_{cluster}_{name}{{node=\"{node}\"}} {v}");
                }
            }
        }
        drop(nodes);

        // Summary names used by our users' runbook dashboards (ZDM-APPROACH.md).
        head(
            &mut o,
            "proxy_requests_total",
            "counter",
            "Requests received from clients",
        );
        let _ = writeln!(o, "{p}_proxy_requests_total {}", self.requests_total.get());
        head(
            &mut o,
            "proxy_requests_duration_seconds",
            "histogram",
            "Latency of all client requests",
        );
        self.requests_duration
            .render(&mut o, &format!("{p}_proxy_requests_duration_seconds"), "");
        head(
            &mut o,
            "proxy_errors_total",
            "counter",
            "Client requests answered with an error",
        );
        let _ = writeln!(o, "{p}_proxy_errors_total {}", self.errors_total.get());
        head(
            &mut o,
            "proxy_origin_requests_total",
            "counter",
            "Requests sent to origin",
        );
        let _ = writeln!(
            o,
            "{p}_proxy_origin_requests_total {}",
            self.origin_requests_total.get()
        );
        head(
            &mut o,
            "proxy_target_requests_total",
            "counter",
            "Requests sent to target",
        );
        let _ = writeln!(
            o,
            "{p}_proxy_target_requests_total {}",
            self.target_requests_total.get()
        );
        self.writes.render(&mut o, p);
        self.unsafe_writes.render(&mut o, p);
        self.shadow.render(&mut o, p);
        o
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
        m.writes.record(&[plain.clone()], Cluster::Target, false);
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
        h.render(&mut s, "x", "");
        assert!(s.contains("x_bucket{le=\"0.004\"} 1"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.04\"} 2"), "{s}");
        assert!(s.contains("x_count 2"), "{s}");
    }
}
