//! State shared by every connection of one proxy process.

use std::sync::{Arc, RwLock};

use crate::ops::config::{Cluster, Config};
use crate::ops::metrics::{Metrics, NodeMetrics};
use crate::ops::reload::{LiveSettings, Reloader};
use crate::statements::prepared::PreparedCache;
use crate::statements::topology::ClusterInfo;
use crate::upstream::cluster::{ClusterConn, Credentials};
use crate::upstream::health::Health;
use crate::upstream::nodes::NodeSet;

pub struct Shared {
    /// The settings the process started with. Its restart-only settings are in force; for
    /// the live ones (primary cluster, read mode, timeouts) read `live()` instead.
    pub config: Config,
    /// The reloadable settings in force (see `reload`).
    pub live: arc_swap::ArcSwap<LiveSettings>,
    pub reloader: Reloader,
    pub metrics: Metrics,
    pub prepared: PreparedCache,
    pub health: Health,
    /// Origin's real cluster facts, refreshed by the control connection.
    pub info: RwLock<Option<ClusterInfo>>,
    /// Process-wide limits of shadow reads (memory budget, mismatch log rate).
    pub shadow: Arc<crate::shadow::ShadowLimits>,
    /// Each cluster's local-DC nodes, as the control connection discovered them.
    origin_nodes: NodeSet,
    target_nodes: NodeSet,
}

/// Creates the per-node series of `hosts` (as the cluster's and as the shadow reads'), so they
/// scrape as 0 before any traffic reaches those nodes.
fn register_node_series(metrics: &Metrics, c: Cluster, hosts: &[String], port: u16) {
    for host in hosts {
        let node = crate::upstream::nodes::endpoint(host, port);
        metrics.node(c, &node);
        metrics.shadow.node(&node);
    }
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let metrics = Metrics::new(&config.metrics_prefix);
        // Create every configured node's series now so they scrape as 0 before any traffic.
        for (c, cfg) in [
            (Cluster::Origin, &config.origin),
            (Cluster::Target, &config.target),
        ] {
            register_node_series(&metrics, c, &cfg.contact_points, cfg.port);
        }
        Arc::new(Shared {
            prepared: PreparedCache::new(config.proxy_max_prepared_statement_cache_size),
            health: Health::new(&config),
            metrics,
            info: RwLock::new(None),
            shadow: Default::default(),
            origin_nodes: NodeSet::new(&config.origin.contact_points),
            target_nodes: NodeSet::new(&config.target.contact_points),
            live: arc_swap::ArcSwap::from_pointee(LiveSettings::of(&config)),
            reloader: Reloader::default(),
            config,
        })
    }

    /// The live settings in force now: one snapshot per request, so a reload never splits it.
    pub fn live(&self) -> arc_swap::Guard<Arc<LiveSettings>> {
        self.live.load()
    }

    /// Re-reads the settings file; see `reload`.
    pub async fn reload(&self) -> Result<Arc<LiveSettings>, crate::ops::reload::ReloadRefused> {
        self.reloader.reload(&self.config, &self.live).await
    }

    /// The credentials the proxy itself uses for a cluster (origin per-client connections,
    /// control connections).
    pub fn credentials(&self, c: Cluster) -> Option<Credentials> {
        let cfg = self.config.cluster(c);
        (!cfg.username.is_empty()).then(|| Credentials {
            username: cfg.username.clone(),
            password: cfg.password.clone(),
        })
    }

    /// The local-DC nodes of a cluster (see `nodes`).
    pub fn nodes(&self, c: Cluster) -> &NodeSet {
        match c {
            Cluster::Origin => &self.origin_nodes,
            Cluster::Target => &self.target_nodes,
        }
    }

    /// Records a discovery's local-DC nodes; their series scrape as 0 from now on. True on the
    /// first discovery or a change.
    pub fn set_nodes(&self, c: Cluster, nodes: &[String]) -> bool {
        let changed = self.nodes(c).set(nodes);
        if changed {
            register_node_series(&self.metrics, c, nodes, self.config.cluster(c).port);
        }
        changed
    }

    /// Opens a (not yet handshaken) connection to a cluster's next local-DC node (round-robin,
    /// falling back to the following nodes), over TLS when configured.
    /// `version`: the protocol version the connection speaks (the client's).
    pub async fn connect(&self, c: Cluster, version: u8) -> Result<Arc<ClusterConn>, String> {
        self.connect_observed(c, version, |node| self.metrics.node(c, node))
            .await
    }

    /// Like `connect`, with the connection's series kept in `metrics_for` (the shadow-read
    /// connections export theirs as `zdm_async_*`, not as the cluster's).
    pub async fn connect_observed(
        &self,
        c: Cluster,
        version: u8,
        metrics_for: impl Fn(&str) -> Arc<NodeMetrics>,
    ) -> Result<Arc<ClusterConn>, String> {
        let hosts = self.nodes(c).assignment();
        self.connect_to(c, &hosts, version, metrics_for).await
    }

    /// The control connection: to the first reachable contact point, which is where discovery
    /// starts (the node list may be empty or stale when it reconnects), then to the nodes
    /// discovered before, so losing the contact points' nodes does not lose the cluster.
    /// `avoid`: a node not to try (the one the previous control connection was lost on).
    pub async fn connect_control(
        &self,
        c: Cluster,
        avoid: Option<&str>,
    ) -> Result<Arc<ClusterConn>, String> {
        let mut hosts = self.config.cluster(c).contact_points.clone();
        for node in self.nodes(c).nodes().iter() {
            if !hosts.contains(node) {
                hosts.push(node.clone());
            }
        }
        hosts.retain(|h| Some(h.as_str()) != avoid);
        self.connect_to(c, &hosts, crate::protocol::frame::VERSION, |node| {
            self.metrics.node(c, node)
        })
        .await
    }

    async fn connect_to(
        &self,
        c: Cluster,
        hosts: &[String],
        version: u8,
        metrics_for: impl Fn(&str) -> Arc<NodeMetrics>,
    ) -> Result<Arc<ClusterConn>, String> {
        let cfg = self.config.cluster(c);
        ClusterConn::connect(
            hosts,
            cfg.port,
            std::time::Duration::from_millis(cfg.connection_timeout_ms),
            self.config.proxy_max_stream_ids,
            self.config.tls.cluster(c),
            version,
            metrics_for,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New connections take the nodes round-robin and skip an unreachable one: a listener on
    /// 127.0.0.1 stands for the live node; nothing listens on 127.0.0.2 at that port.
    #[tokio::test]
    async fn connections_go_round_robin_over_the_nodes_and_skip_an_unreachable_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let env = [
            ("ZDM_ORIGIN_CONTACT_POINTS", "127.0.0.1"),
            ("ZDM_TARGET_CONTACT_POINTS", "127.0.0.1"),
            ("ZDM_ORIGIN_PORT", &port.to_string()),
            ("ZDM_TARGET_PORT", &port.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let shared = Shared::new(Config::load(None, env).unwrap());
        assert!(shared.set_nodes(
            Cluster::Target,
            &["127.0.0.2".to_string(), "127.0.0.1".to_string()],
        ));
        let dead = shared
            .metrics
            .node(Cluster::Target, &format!("127.0.0.2:{port}"));
        let live = shared
            .metrics
            .node(Cluster::Target, &format!("127.0.0.1:{port}"));

        // First assignment: 127.0.0.2 (refused), then falls back to 127.0.0.1.
        let a = shared.connect(Cluster::Target, 4).await.unwrap();
        assert_eq!(a.node, format!("127.0.0.1:{port}"));
        assert_eq!(dead.failed_connections.get(), 1);
        // Second assignment starts at 127.0.0.1: the dead node is not tried.
        let b = shared.connect(Cluster::Target, 4).await.unwrap();
        assert_eq!(b.node, format!("127.0.0.1:{port}"));
        assert_eq!(dead.failed_connections.get(), 1);
        // Third starts at the dead node again.
        let c = shared.connect(Cluster::Target, 4).await.unwrap();
        assert_eq!(c.node, format!("127.0.0.1:{port}"));
        assert_eq!(dead.failed_connections.get(), 2);
        assert_eq!(live.open_connections.get(), 3);
        // The control connection goes to the contact points, not through the assignment.
        let control = shared.connect_control(Cluster::Target, None).await.unwrap();
        assert_eq!(control.node, format!("127.0.0.1:{port}"));
        assert_eq!(dead.failed_connections.get(), 2);
        // After losing the control connection's node, only the others are tried: here the
        // dead one, so the attempt fails fast instead of waiting on the lost node.
        let Err(err) = shared
            .connect_control(Cluster::Target, Some("127.0.0.1"))
            .await
        else {
            panic!("the control connection reached the node it was told to avoid");
        };
        assert!(err.contains("127.0.0.2"), "{err}");
        assert_eq!(dead.failed_connections.get(), 3);
    }
}
