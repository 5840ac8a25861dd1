//! `zdm_proxy_unsafe_writes_total{keyspace,table,cause}`: writes that dual writing cannot keep
//! equal on both clusters, by table, so the migration's health gate can name the tables that
//! will (or may) differ instead of leaving it to a failed consistency check later.
//!
//! Causes:
//! - a per-call function left to each cluster (`now()`, `uuid()`, `currentTimestamp()`, ...,
//!   see `cql_functions::Func`): with `replace_cql_functions` off, or a prepared statement the
//!   proxy could not rewrite. Each cluster stores its own value: the rows certainly differ.
//!   The cause is the function's name.
//! - `counter`: an increment `c = c + n` / `c = c - n` (a counter update; a list append by a
//!   bound value looks the same and is just as unsafe). Not idempotent: equal only while every
//!   increment succeeds on both clusters. `counter_failed_on_one` counts those that did not.
//! - `lwt_outcome`: a conditional write (`IF ...`) that one cluster applied and the other did
//!   not (their `[applied]` differed): the clusters certainly hold different rows.
//!
//! Counted once both answers are in (a write that failed on both changed nothing). The same
//! cardinality bound as the write metrics applies (`write_metrics::MAX_TABLES`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ops::exposition::{self, label_value, Exposition};
use crate::ops::metrics::Counter;
use crate::statements::cql_functions::{is_modification, scan};
use crate::statements::cql_lex::{tokenize, Kind};
use crate::statements::write_metrics::{TableRef, MAX_TABLES};

/// The unsafe writes of one statement: each table it writes with each cause.
pub type Risks = std::sync::Arc<[(TableRef, &'static str)]>;

pub const COUNTER: &str = "counter";
pub const COUNTER_FAILED_ON_ONE: &str = "counter_failed_on_one";
pub const LWT_OUTCOME: &str = "lwt_outcome";

/// What a write statement's text makes unsafe: the functions left to the clusters (none when
/// `functions_replaced`), then [`COUNTER`] for an increment. Empty for anything else.
pub fn causes(query: &str, functions_replaced: bool) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    if !functions_replaced {
        for site in scan(query).sites {
            let name = site.func.call_name();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    if is_increment(query) {
        out.push(COUNTER);
    }
    out
}

/// Each of `tables` (the statement's) with each of its [`causes`].
pub fn risks(
    tables: &[TableRef],
    query: &str,
    functions_replaced: bool,
) -> Vec<(TableRef, &'static str)> {
    let causes = causes(query, functions_replaced);
    if causes.is_empty() {
        return Vec::new();
    }
    tables
        .iter()
        .flat_map(|t| causes.iter().map(move |c| (t.clone(), *c)))
        .collect()
}

/// Does the modification statement assign `x = x + v` or `x = x - v` (v not a collection
/// literal, which is a set/list/map addition)?
fn is_increment(query: &str) -> bool {
    let toks = tokenize(query);
    if !is_modification(query, &toks) {
        return false;
    }
    toks.windows(5).any(|w| {
        w[0].kind == Kind::Word
            && w[1].is_punct('=')
            && w[2].kind == Kind::Word
            && w[0].text(query).eq_ignore_ascii_case(w[2].text(query))
            && (w[3].is_punct('+') || w[3].is_punct('-'))
            && !(w[4].is_punct('[') || w[4].is_punct('{'))
    })
}

/// Whether the two clusters' answers to a conditional write disagree on `[applied]`.
/// `None` when either answer is no ROWS result with an `[applied]` first column.
pub fn lwt_outcomes_differ(
    origin: &crate::protocol::frame::Frame,
    target: &crate::protocol::frame::Frame,
) -> bool {
    let applied = |f: &crate::protocol::frame::Frame| -> Option<Vec<u8>> {
        let rows = crate::shadow::compare::decode_rows(f).ok()??;
        if rows.columns.first().map(|c| c.name.as_str()) != Some("[applied]") {
            return None;
        }
        rows.rows.first()?.first()?.map(|c| c.to_vec())
    };
    match (applied(origin), applied(target)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// The per-table counters of unsafe writes.
#[derive(Default)]
pub struct UnsafeWrites {
    series: Mutex<HashMap<(TableRef, &'static str), Counter>>,
}

impl UnsafeWrites {
    /// Counts one write of each table under `cause`.
    pub fn record(&self, tables: &[TableRef], cause: &'static str) {
        for t in tables {
            self.record_one(t, cause);
        }
    }

    /// Counts one write of `t` under `cause`.
    pub fn record_one(&self, t: &TableRef, cause: &'static str) {
        let mut m = self.series.lock().unwrap();
        {
            let key = if m.len() < MAX_TABLES || m.contains_key(&(t.clone(), cause)) {
                t.clone()
            } else {
                TableRef {
                    keyspace: "(other)".into(),
                    table: "(other)".into(),
                }
            };
            m.entry((key, cause)).or_default().inc();
        }
    }

    /// The value of one series (tests and diagnostics).
    pub fn get(&self, t: &TableRef, cause: &str) -> u64 {
        let m = self.series.lock().unwrap();
        m.iter()
            .find(|((k, c), _)| k == t && *c == cause)
            .map(|(_, v)| v.get())
            .unwrap_or(0)
    }

    pub fn render(&self, x: &mut Exposition) {
        x.family(
            "proxy_unsafe_writes_total",
            exposition::Kind::Counter,
            "Writes the two clusters may not store alike (function left to each cluster, counter \
             update, LWT outcome differed), by table",
        );
        let m = self.series.lock().unwrap();
        let mut keys: Vec<_> = m.keys().collect();
        keys.sort_by(|a, b| {
            (&a.0.keyspace, &a.0.table, a.1).cmp(&(&b.0.keyspace, &b.0.table, b.1))
        });
        for k in keys {
            let labels = format!(
                "keyspace=\"{}\",table=\"{}\",cause=\"{}\"",
                label_value(&k.0.keyspace),
                label_value(&k.0.table),
                label_value(k.1),
            );
            x.sample("proxy_unsafe_writes_total", &labels, m[k].get());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_name_functions_left_to_the_clusters_and_increments() {
        let q = "INSERT INTO t (k, ts, id) VALUES (?, toTimestamp(now()), uuid())";
        assert_eq!(causes(q, false), vec!["now()", "uuid()"]);
        assert!(causes(q, true).is_empty());
        assert_eq!(
            causes("UPDATE ks.c SET hits = hits + 1 WHERE k = ?", true),
            vec![COUNTER]
        );
        assert_eq!(
            causes("update c set n = N - ? where k = 1", true),
            vec![COUNTER]
        );
        for q in [
            "UPDATE t SET s = s + {1} WHERE k = 1",
            "UPDATE t SET l = l + [1] WHERE k = 1",
            "UPDATE t SET a = b + 1 WHERE k = 1",
            "SELECT hits = hits + 1 FROM t",
            "INSERT INTO t (k, v) VALUES (1, 'x = x + 1')",
        ] {
            assert!(causes(q, true).is_empty(), "{q}");
        }
    }

    #[test]
    fn counts_by_table_and_cause() {
        let m = UnsafeWrites::default();
        let t = TableRef {
            keyspace: "ks".into(),
            table: "t".into(),
        };
        m.record(std::slice::from_ref(&t), "now()");
        m.record(std::slice::from_ref(&t), "now()");
        m.record(std::slice::from_ref(&t), LWT_OUTCOME);
        assert_eq!(m.get(&t, "now()"), 2);
        let mut s = String::new();
        m.render(&mut Exposition::new(&mut s, "zdm"));
        assert!(
            s.contains(
                "zdm_proxy_unsafe_writes_total{keyspace=\"ks\",table=\"t\",cause=\"now()\"} 2"
            ),
            "{s}"
        );
        assert!(s.contains("cause=\"lwt_outcome\"} 1"), "{s}");
    }
}
