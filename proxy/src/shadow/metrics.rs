//! The `zdm_async_*` series: the reference proxy's names for its async (shadow-read)
//! connections, plus ours for what the reference lacks (drops, matches, mismatches).
//!
//! Connection-level series are per secondary node (`node="host:port"`) like the reference's;
//! the comparison counters are per keyspace and table. The number of (keyspace, table) series
//! is capped so a workload touching many tables cannot grow the scrape without limit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::ops::exposition::{label_value, Exposition, Kind};
use crate::ops::metrics::{Counter, Gauge, NodeMetrics};

/// Beyond this many (keyspace, table) pairs, further tables are counted under `(other)` (as the write metrics do).
pub const MAX_TABLE_SERIES: usize = 1000;

/// Why a shadow read was not sent (or not compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The connection's queue or the process-wide job budget was full.
    QueueFull,
    /// No async connection to the secondary (connecting failed, waiting to retry).
    NotConnected,
    /// Holding the primary's answer for the comparison would exceed the byte budget.
    MemoryBudget,
}

const DROP_REASONS: [(DropReason, &str); 3] = [
    (DropReason::QueueFull, "queue_full"),
    (DropReason::NotConnected, "not_connected"),
    (DropReason::MemoryBudget, "memory_budget"),
];

/// One secondary node's async series.
pub struct AsyncNode {
    /// Maintained by `ClusterConn` itself: connections, stream ids, latency, errors by kind.
    pub conn: Arc<NodeMetrics>,
    pub inflight: Gauge,
}

#[derive(Default)]
pub struct TableCounts {
    pub matches: Counter,
    pub mismatches: Counter,
}

#[derive(Default)]
pub struct ShadowMetrics {
    nodes: Mutex<BTreeMap<String, Arc<AsyncNode>>>,
    dropped: [Counter; DROP_REASONS.len()],
    tables: Mutex<BTreeMap<(String, String), Arc<TableCounts>>>,
}

impl ShadowMetrics {
    /// The series of one secondary node, created (at zero) on first use.
    pub fn node(&self, node: &str) -> Arc<AsyncNode> {
        self.nodes
            .lock()
            .unwrap()
            .entry(node.to_string())
            .or_insert_with(|| {
                Arc::new(AsyncNode {
                    conn: Arc::new(NodeMetrics::detached()),
                    inflight: Gauge::default(),
                })
            })
            .clone()
    }

    pub fn dropped(&self, why: DropReason) {
        let i = DROP_REASONS
            .iter()
            .position(|(r, _)| *r == why)
            .unwrap_or(0);
        self.dropped[i].inc();
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(Counter::get).sum()
    }

    /// The comparison counters of one table.
    pub fn table(&self, keyspace: &str, table: &str) -> Arc<TableCounts> {
        let mut tables = self.tables.lock().unwrap();
        let key = (keyspace.to_string(), table.to_string());
        if let Some(t) = tables.get(&key) {
            return t.clone();
        }
        let key = if tables.len() >= MAX_TABLE_SERIES {
            ("(other)".to_string(), "(other)".to_string())
        } else {
            key
        };
        tables.entry(key).or_default().clone()
    }

    pub fn render(&self, x: &mut Exposition) {
        let nodes: Vec<(String, Arc<AsyncNode>)> = self
            .nodes
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        render_nodes(x, &nodes);
        x.by_label(
            "async_requests_dropped_total",
            Kind::Counter,
            "Shadow reads not sent to the secondary (queue full, no connection) or not compared \
             (memory budget)",
            "reason",
            DROP_REASONS
                .iter()
                .zip(&self.dropped)
                .map(|((_, reason), n)| (*reason, n.get())),
        );
        let tables: Vec<((String, String), Arc<TableCounts>)> = self
            .tables
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, help, get) in [
            (
                "async_read_matches_total",
                "Shadow reads whose rows equal the primary's",
                (|t: &TableCounts| t.matches.get()) as fn(&TableCounts) -> u64,
            ),
            (
                "async_read_mismatches_total",
                "Shadow reads whose rows differ from the primary's",
                |t: &TableCounts| t.mismatches.get(),
            ),
        ] {
            x.family(name, Kind::Counter, help);
            for ((ks, table), t) in &tables {
                let labels = format!(
                    "keyspace=\"{}\",table=\"{}\"",
                    label_value(ks),
                    label_value(table)
                );
                x.sample(name, &labels, get(t));
            }
        }
    }
}

/// The reference's per-node series of the async connections (`node="host:port"`).
fn render_nodes(x: &mut Exposition, nodes: &[(String, Arc<AsyncNode>)]) {
    let gauges = [
        (
            "async_connections_total",
            "Number of connections currently open for async requests",
            (|m: &AsyncNode| m.conn.open_connections.get()) as fn(&AsyncNode) -> i64,
        ),
        (
            "async_inflight_requests_total",
            "Number of async requests currently in flight",
            |m| m.inflight.get(),
        ),
        (
            "async_used_stream_ids_total",
            "Number of used stream ids in async connections",
            |m| m.conn.used_stream_ids.get(),
        ),
    ];
    for (name, help, get) in gauges {
        let samples = nodes.iter().map(|(node, m)| (node.as_str(), get(m)));
        x.by_label(name, Kind::Gauge, help, "node", samples);
    }
    x.family(
        "async_request_duration_seconds",
        Kind::Histogram,
        "Latency of async requests at async cluster connector level",
    );
    for (node, m) in nodes {
        let labels = format!("node=\"{node}\"");
        m.conn
            .request_duration
            .render(x, "async_request_duration_seconds", &labels);
    }
    x.family(
        "async_requests_failed_total",
        Kind::Counter,
        "Running total of requests that failed on the async connector",
    );
    for (node, m) in nodes {
        for (kind, v) in m.conn.failed_requests() {
            let labels = format!("error=\"{kind}\",node=\"{node}\"");
            x.sample("async_requests_failed_total", &labels, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_reference_names_at_zero_and_per_table_counts() {
        let m = ShadowMetrics::default();
        m.node("10.0.0.3:9042");
        m.dropped(DropReason::QueueFull);
        m.table("ks", "kv").mismatches.inc();
        m.table("ks", "kv").mismatches.inc();
        m.table("ks", "other").matches.inc();
        let mut s = String::new();
        m.render(&mut Exposition::new(&mut s, "zdm"));
        for series in [
            "zdm_async_connections_total{node=\"10.0.0.3:9042\"} 0",
            "zdm_async_inflight_requests_total{node=\"10.0.0.3:9042\"} 0",
            "zdm_async_used_stream_ids_total{node=\"10.0.0.3:9042\"} 0",
            "zdm_async_request_duration_seconds_count{node=\"10.0.0.3:9042\"} 0",
            "zdm_async_requests_failed_total{error=\"client_timeout\",node=\"10.0.0.3:9042\"} 0",
            "zdm_async_requests_dropped_total{reason=\"queue_full\"} 1",
            "zdm_async_requests_dropped_total{reason=\"not_connected\"} 0",
            "zdm_async_read_mismatches_total{keyspace=\"ks\",table=\"kv\"} 2",
            "zdm_async_read_matches_total{keyspace=\"ks\",table=\"kv\"} 0",
            "zdm_async_read_matches_total{keyspace=\"ks\",table=\"other\"} 1",
        ] {
            assert!(s.contains(series), "missing {series} in\n{s}");
        }
    }

    #[test]
    fn table_series_are_capped() {
        let m = ShadowMetrics::default();
        for i in 0..MAX_TABLE_SERIES {
            m.table("ks", &format!("t{i}"));
        }
        m.table("ks", "one_too_many").matches.inc();
        m.table("ks", "t0").matches.inc();
        let mut s = String::new();
        m.render(&mut Exposition::new(&mut s, "zdm"));
        assert!(
            s.contains("zdm_async_read_matches_total{keyspace=\"(other)\",table=\"(other)\"} 1")
        );
        assert!(s.contains("zdm_async_read_matches_total{keyspace=\"ks\",table=\"t0\"} 1"));
        assert!(!s.contains("one_too_many"));
    }
}
