//! `zdm_proxy_writes_total{keyspace,table,cluster,outcome}`: every data write, by the table it
//! wrote, the cluster and whether that cluster acknowledged it.
//!
//! What counts as a write: INSERT, UPDATE and DELETE statements, plain or prepared. A BATCH
//! counts once per child statement, under that child's table (a batch applies or fails as a
//! whole on one cluster, so all its children share the outcome); this matches what the
//! clusters' own per-table write metrics count. DDL, USE and TRUNCATE are not data writes and
//! are not counted. UNPREPARED answers are not counted either: the statement did not run, and
//! the driver's retry after re-preparing is the write that counts.
//!
//! The keyspace is the statement's (`ks.table`), else the connection's current one (USE), else
//! empty (the cluster then refuses the write, which counts as a failure).
//!
//! Cardinality is bounded: keyspace and table come from client text, including statements
//! that fail (a typo, a fuzzer, an application creating tables per tenant), and every distinct
//! pair costs four series in memory and in every scrape. After [`MAX_TABLES`] distinct pairs,
//! further new pairs are counted under `keyspace="(other)",table="(other)"` (parentheses never
//! occur in CQL names, so the label cannot collide with a real table).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ops::config::Cluster;
use crate::ops::exposition::{label_value, Exposition, Kind};
use crate::ops::metrics::Counter;
use crate::statements::cql_functions::is_modification;
use crate::statements::cql_lex::{qualified_name, tokenize};

/// Distinct (keyspace, table) pairs with their own series.
pub const MAX_TABLES: usize = 1000;
const OTHER: &str = "(other)";

/// The table a write statement writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub keyspace: String,
    pub table: String,
}

/// The tables written by a statement text, one entry per INSERT/UPDATE/DELETE in it (several
/// for a `BEGIN BATCH ... APPLY BATCH` text); empty for anything else.
pub fn tables_of(query: &str, current_keyspace: Option<&str>) -> Vec<TableRef> {
    let toks = tokenize(query);
    if !is_modification(query, &toks) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let name_at = if t.is_word(query, "insert")
            && toks.get(i + 1).is_some_and(|n| n.is_word(query, "into"))
        {
            Some(i + 2)
        } else if t.is_word(query, "update") {
            Some(i + 1)
        } else if t.is_word(query, "delete") {
            // DELETE [columns] FROM name: the first FROM after DELETE.
            (i + 1..toks.len())
                .find(|&j| toks[j].is_word(query, "from"))
                .map(|j| j + 1)
        } else {
            None
        };
        if let Some(at) = name_at {
            if let Some((ks, table, next)) = qualified_name(query, &toks, at) {
                out.push(TableRef {
                    keyspace: ks
                        .or_else(|| current_keyspace.map(str::to_string))
                        .unwrap_or_default(),
                    table,
                });
                i = next;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// [origin success, origin failure, target success, target failure]
type Series = [Counter; 4];

/// The per-table write counters.
#[derive(Default)]
pub struct WriteMetrics {
    series: Mutex<HashMap<TableRef, Arc<Series>>>,
}

fn slot(cluster: Cluster, success: bool) -> usize {
    match (cluster, success) {
        (Cluster::Origin, true) => 0,
        (Cluster::Origin, false) => 1,
        (Cluster::Target, true) => 2,
        (Cluster::Target, false) => 3,
    }
}

impl WriteMetrics {
    fn series(&self, t: &TableRef) -> Arc<Series> {
        let mut m = self.series.lock().unwrap();
        if let Some(s) = m.get(t) {
            return s.clone();
        }
        let key = if m.len() < MAX_TABLES {
            t.clone()
        } else {
            TableRef {
                keyspace: OTHER.into(),
                table: OTHER.into(),
            }
        };
        m.entry(key).or_default().clone()
    }

    /// Counts one write per table entry on `cluster`.
    pub fn record(&self, tables: &[TableRef], cluster: Cluster, success: bool) {
        for t in tables {
            self.series(t)[slot(cluster, success)].inc();
        }
    }

    /// The value of one series (tests and diagnostics).
    pub fn get(&self, t: &TableRef, cluster: Cluster, success: bool) -> u64 {
        self.series
            .lock()
            .unwrap()
            .get(t)
            .map(|s| s[slot(cluster, success)].get())
            .unwrap_or(0)
    }

    pub fn render(&self, x: &mut Exposition) {
        x.family(
            "proxy_writes_total",
            Kind::Counter,
            "Writes (INSERT/UPDATE/DELETE, batch children) by table, cluster and outcome",
        );
        let m = self.series.lock().unwrap();
        let mut keys: Vec<_> = m.keys().collect();
        keys.sort_by(|a, b| (&a.keyspace, &a.table).cmp(&(&b.keyspace, &b.table)));
        for t in keys {
            let s = &m[t];
            for (cluster, success) in [
                (Cluster::Origin, true),
                (Cluster::Origin, false),
                (Cluster::Target, true),
                (Cluster::Target, false),
            ] {
                let labels = format!(
                    "keyspace=\"{}\",table=\"{}\",cluster=\"{}\",outcome=\"{}\"",
                    label_value(&t.keyspace),
                    label_value(&t.table),
                    cluster.name(),
                    if success { "success" } else { "failure" },
                );
                x.sample(
                    "proxy_writes_total",
                    &labels,
                    s[slot(cluster, success)].get(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ks: &str, table: &str) -> TableRef {
        TableRef {
            keyspace: ks.into(),
            table: table.into(),
        }
    }

    #[test]
    fn finds_the_written_table_of_each_statement() {
        assert_eq!(
            tables_of("INSERT INTO ks.t (a) VALUES (1)", None),
            vec![t("ks", "t")]
        );
        assert_eq!(
            tables_of(
                "update \"Tab\" USING TTL 5 SET a = 1 WHERE k = 1",
                Some("cur")
            ),
            vec![t("cur", "Tab")]
        );
        assert_eq!(
            tables_of("DELETE a, b FROM Ks.T WHERE k = 1", None),
            vec![t("ks", "t")]
        );
        assert_eq!(
            tables_of(
                "BEGIN BATCH INSERT INTO a.x (k) VALUES ('update y'); DELETE FROM z WHERE k=1; APPLY BATCH",
                Some("cur")
            ),
            vec![t("a", "x"), t("cur", "z")]
        );
        assert_eq!(
            tables_of("INSERT INTO t (k) VALUES (1)", None),
            vec![t("", "t")]
        );
        for q in [
            "SELECT * FROM t",
            "CREATE TABLE t (k int PRIMARY KEY)",
            "USE ks",
            "TRUNCATE t",
        ] {
            assert!(tables_of(q, Some("ks")).is_empty(), "{q}");
        }
    }

    #[test]
    fn counts_by_cluster_and_outcome_and_caps_distinct_tables() {
        let m = WriteMetrics::default();
        m.record(&[t("ks", "a"), t("ks", "a")], Cluster::Origin, true);
        m.record(&[t("ks", "a")], Cluster::Target, false);
        assert_eq!(m.get(&t("ks", "a"), Cluster::Origin, true), 2);
        assert_eq!(m.get(&t("ks", "a"), Cluster::Target, false), 1);
        assert_eq!(m.get(&t("ks", "a"), Cluster::Target, true), 0);
        for i in 0..MAX_TABLES + 10 {
            m.record(&[t("ks", &format!("t{i}"))], Cluster::Origin, true);
        }
        assert_eq!(m.series.lock().unwrap().len(), MAX_TABLES + 1);
        assert_eq!(m.get(&t(OTHER, OTHER), Cluster::Origin, true), 11);
        let mut s = String::new();
        m.render(&mut Exposition::new(&mut s, "zdm"));
        assert!(s.contains(
            "zdm_proxy_writes_total{keyspace=\"ks\",table=\"a\",cluster=\"target\",outcome=\"failure\"} 1"
        ));
        let mut s = String::new();
        let q = WriteMetrics::default();
        q.record(&[t("k", "we\"ird")], Cluster::Origin, true);
        q.render(&mut Exposition::new(&mut s, "zdm"));
        assert!(s.contains("table=\"we\\\"ird\""), "{s}");
    }
}
