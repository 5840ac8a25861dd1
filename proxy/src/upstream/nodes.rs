//! Which nodes of a cluster the proxy's per-client connections go to.
//!
//! The control connection discovers the cluster's nodes (system.local and system.peers) and
//! keeps those of the local data center: `<cluster>_local_datacenter` when set, else the data
//! center of the contact point it reached. Each new client connection's cluster connection is
//! assigned the next node round-robin (the reference proxy's host assignment), so clients spread
//! over the local nodes instead of all landing on the first contact point; when that node is
//! unreachable the next ones are tried in order. Until the first discovery the configured
//! contact points stand in for the node list.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// One node as system.local / system.peers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// The address the proxy connects to (host name or IP, without port).
    pub address: String,
    pub data_center: String,
}

/// The local data center and its nodes, as chosen from a discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNodes {
    pub data_center: String,
    pub nodes: Vec<String>,
}

/// Keeps the nodes of `configured_dc` (or, when that is empty, of the contact point's data
/// center). `local` is the node the control connection reached, with the contact point's name
/// as its address (so TLS host names keep matching); `peers` are the other nodes. A configured
/// data center without any node is an error naming `setting`: connecting elsewhere would send
/// the application's traffic to a remote data center without anyone having asked for it.
pub fn select_local(
    local: &NodeRow,
    peers: &[NodeRow],
    configured_dc: &str,
    setting: &str,
) -> Result<LocalNodes, String> {
    let dc = if configured_dc.is_empty() {
        local.data_center.as_str()
    } else {
        configured_dc
    };
    let mut nodes: Vec<String> = Vec::new();
    for n in std::iter::once(local).chain(peers) {
        if n.data_center == dc && !nodes.contains(&n.address) {
            nodes.push(n.address.clone());
        }
    }
    if nodes.is_empty() {
        let mut seen: Vec<&str> = std::iter::once(local)
            .chain(peers)
            .map(|n| n.data_center.as_str())
            .collect();
        seen.sort_unstable();
        seen.dedup();
        return Err(format!(
            "{setting} is '{dc}' but the cluster has no node in that data center (its data \
             centers: {})",
            seen.join(", ")
        ));
    }
    Ok(LocalNodes {
        data_center: dc.to_string(),
        nodes,
    })
}

/// The address a peer row advertises for clients: `rpc_address`, unless it is missing or the
/// wildcard address, then `peer` (what the drivers do too).
pub fn peer_address(peer: Option<IpAddr>, rpc_address: Option<IpAddr>) -> Option<IpAddr> {
    match rpc_address {
        Some(a) if !a.is_unspecified() => Some(a),
        _ => peer,
    }
}

/// A CQL `inet` cell: 4 or 16 address bytes.
pub fn inet(cell: &[u8]) -> Option<IpAddr> {
    match cell.len() {
        4 => <[u8; 4]>::try_from(cell).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(cell).ok().map(IpAddr::from),
        _ => None,
    }
}

/// `host:port`, with IPv6 addresses in brackets.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The node list of one cluster and its round-robin cursor.
pub struct NodeSet {
    nodes: RwLock<Arc<Vec<String>>>,
    next: AtomicUsize,
    discovered: AtomicBool,
}

impl NodeSet {
    /// Starts with the contact points, until the control connection has discovered the nodes.
    pub fn new(contact_points: &[String]) -> NodeSet {
        NodeSet {
            nodes: RwLock::new(Arc::new(contact_points.to_vec())),
            next: AtomicUsize::new(0),
            discovered: AtomicBool::new(false),
        }
    }

    pub fn nodes(&self) -> Arc<Vec<String>> {
        self.nodes.read().unwrap().clone()
    }

    /// Replaces the node list (a discovery's result); the cursor carries on. True when this is
    /// the first discovery or the list changed (worth a log line).
    pub fn set(&self, nodes: &[String]) -> bool {
        let first = !self.discovered.swap(true, Ordering::Relaxed);
        let mut cur = self.nodes.write().unwrap();
        let changed = cur.as_slice() != nodes;
        if changed {
            *cur = Arc::new(nodes.to_vec());
        }
        first || changed
    }

    /// The order in which a new connection tries the nodes: the next node round-robin first,
    /// then the following ones as fallbacks.
    pub fn assignment(&self) -> Vec<String> {
        let nodes = self.nodes();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        rotation(&nodes, start)
    }
}

/// `nodes` starting at `start` (modulo its length), wrapping around.
pub fn rotation(nodes: &[String], start: usize) -> Vec<String> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let start = start % nodes.len();
    nodes[start..]
        .iter()
        .chain(&nodes[..start])
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(a: &str, dc: &str) -> NodeRow {
        NodeRow {
            address: a.into(),
            data_center: dc.into(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn local_dc_defaults_to_the_contact_points() {
        let peers = [
            row("10.0.0.2", "dc1"),
            row("10.1.0.1", "dc2"),
            row("10.0.0.3", "dc1"),
        ];
        let got = select_local(
            &row("cp.example", "dc1"),
            &peers,
            "",
            "origin_local_datacenter",
        )
        .unwrap();
        assert_eq!(got.data_center, "dc1");
        assert_eq!(got.nodes, names(&["cp.example", "10.0.0.2", "10.0.0.3"]));
    }

    #[test]
    fn a_configured_dc_keeps_only_its_nodes_even_without_the_contact_point() {
        let peers = [
            row("10.0.0.2", "dc1"),
            row("10.1.0.1", "dc2"),
            row("10.1.0.2", "dc2"),
        ];
        let got = select_local(
            &row("10.0.0.1", "dc1"),
            &peers,
            "dc2",
            "target_local_datacenter",
        )
        .unwrap();
        assert_eq!(got.data_center, "dc2");
        assert_eq!(got.nodes, names(&["10.1.0.1", "10.1.0.2"]));
    }

    #[test]
    fn a_configured_dc_without_nodes_is_an_error_naming_the_setting() {
        let peers = [row("10.1.0.1", "dc2")];
        let err = select_local(
            &row("10.0.0.1", "dc1"),
            &peers,
            "dc9",
            "origin_local_datacenter",
        )
        .unwrap_err();
        assert!(err.contains("origin_local_datacenter"), "{err}");
        assert!(err.contains("'dc9'"), "{err}");
        assert!(err.contains("dc1, dc2"), "{err}");
    }

    #[test]
    fn peers_are_reached_on_rpc_address_unless_it_is_the_wildcard() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let rpc: IpAddr = "192.168.0.2".parse().unwrap();
        assert_eq!(peer_address(Some(peer), Some(rpc)), Some(rpc));
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(peer_address(Some(peer), Some(any)), Some(peer));
        assert_eq!(peer_address(Some(peer), None), Some(peer));
        assert_eq!(inet(&[10, 0, 0, 2]), Some(peer));
        assert_eq!(inet(&[1, 2, 3]), None);
        assert_eq!(endpoint("10.0.0.2", 9042), "10.0.0.2:9042");
        assert_eq!(endpoint("::1", 9042), "[::1]:9042");
    }

    #[test]
    fn assignments_go_round_robin_and_fall_back_in_order() {
        let set = NodeSet::new(&names(&["a", "b", "c"]));
        assert_eq!(set.assignment(), names(&["a", "b", "c"]));
        assert_eq!(set.assignment(), names(&["b", "c", "a"]));
        assert_eq!(set.assignment(), names(&["c", "a", "b"]));
        assert_eq!(set.assignment(), names(&["a", "b", "c"]));
        // A discovery replaces the list; the cursor carries on over the new one.
        assert!(set.set(&names(&["x", "y"])), "first discovery");
        assert!(!set.set(&names(&["x", "y"])), "unchanged");
        assert_eq!(set.assignment(), names(&["x", "y"]));
        assert_eq!(set.assignment(), names(&["y", "x"]));
        assert!(rotation(&[], 3).is_empty());
    }
}
