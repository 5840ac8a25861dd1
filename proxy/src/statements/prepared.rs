//! Prepared statement ids: the client sees the id origin gives the statement as the client
//! wrote it; the proxy remembers the target's id for the same statement and how it routes. A
//! statement whose functions the proxy replaced (`replace_cql_functions`) is prepared on the
//! clusters with other text, so the clusters know it by another id (`origin_id`): the client
//! still gets the id of its own text, so that turning the setting on or off never changes the
//! id of a statement a driver has prepared (drivers refuse an id that changes on re-prepare).
//!
//! The cache is process memory only. After a proxy restart it is empty: an EXECUTE with an
//! unknown id is answered with UNPREPARED carrying that id, which makes every driver re-prepare
//! (on both clusters, since PREPARE goes to both) and retry.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::statements::routing::Route;

#[derive(Debug, Clone)]
pub struct Prepared {
    pub target_id: Bytes,
    /// Origin's id when it is not the one the client knows (the text origin prepared is the
    /// proxy's rewrite); `None`: the client's id is origin's.
    pub origin_id: Option<Bytes>,
    pub route: Route,
    /// The statement text: the proxy answers topology statements itself from it, and prepares
    /// a statement again on a shadow-read connection that does not know it.
    pub query: Option<std::sync::Arc<str>>,
    /// The tables the statement writes, for the per-table write metrics (empty: not a write).
    pub writes: std::sync::Arc<[crate::statements::write_metrics::TableRef]>,
    /// Bind markers the proxy injected in place of `now()`, hidden from the client.
    pub now: Option<std::sync::Arc<crate::statements::prepared_now::NowMarkers>>,
    /// What makes its writes unsafe, per table (see `unsafe_writes`), counted per EXECUTE.
    pub risks: crate::statements::unsafe_writes::Risks,
}

pub struct PreparedCache {
    entries: Mutex<HashMap<Bytes, Prepared>>,
    capacity: usize,
}

impl PreparedCache {
    pub fn new(capacity: usize) -> PreparedCache {
        PreparedCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Remembers a statement; when full, an arbitrary entry makes room (its next EXECUTE gets
    /// UNPREPARED and is re-prepared, so eviction costs a round trip, never correctness).
    /// Returns the number of entries.
    pub fn insert(&self, origin_id: Bytes, entry: Prepared) -> usize {
        let mut m = self.entries.lock().unwrap();
        if m.len() >= self.capacity && !m.contains_key(&origin_id) {
            if let Some(k) = m.keys().next().cloned() {
                m.remove(&k);
            }
        }
        m.insert(origin_id, entry);
        m.len()
    }

    pub fn get(&self, origin_id: &[u8]) -> Option<Prepared> {
        self.entries.lock().unwrap().get(origin_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_keyed_by_origin_id() {
        let c = PreparedCache::new(2);
        let p = |t: &'static [u8]| Prepared {
            origin_id: None,
            target_id: Bytes::from_static(t),
            route: Route::Both,
            query: None,
            writes: Vec::new().into(),
            now: None,
            risks: Default::default(),
        };
        c.insert(Bytes::from_static(b"o1"), p(b"t1"));
        c.insert(Bytes::from_static(b"o2"), p(b"t2"));
        assert_eq!(c.get(b"o1").unwrap().target_id, Bytes::from_static(b"t1"));
        assert_eq!(c.insert(Bytes::from_static(b"o3"), p(b"t3")), 2);
        assert!(c.get(b"o3").is_some());
    }
}
