//! State shared by every connection of one proxy process.

use std::sync::{Arc, RwLock};

use crate::cluster::{ClusterConn, Credentials};
use crate::config::{Cluster, Config};
use crate::health::Health;
use crate::metrics::{Metrics, NodeMetrics};
use crate::prepared::PreparedCache;
use crate::reload::{LiveSettings, Reloader};
use crate::topology::ClusterInfo;

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
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let metrics = Metrics::new(&config.metrics_prefix);
        // Create every configured node's series now so they scrape as 0 before any traffic.
        for (c, cfg) in [
            (Cluster::Origin, &config.origin),
            (Cluster::Target, &config.target),
        ] {
            for host in &cfg.contact_points {
                metrics.node(c, &format!("{host}:{}", cfg.port));
                metrics.shadow.node(&format!("{host}:{}", cfg.port));
            }
        }
        Arc::new(Shared {
            prepared: PreparedCache::new(config.proxy_max_prepared_statement_cache_size),
            health: Health::new(&config),
            metrics,
            info: RwLock::new(None),
            shadow: Default::default(),
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
    pub async fn reload(&self) -> Result<Arc<LiveSettings>, crate::reload::ReloadRefused> {
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

    /// Opens a (not yet handshaken) connection to a cluster, over TLS when configured (also
    /// the control connections' heartbeats).
    pub async fn connect(&self, c: Cluster) -> Result<Arc<ClusterConn>, String> {
        self.connect_observed(c, |node| self.metrics.node(c, node))
            .await
    }

    /// Like `connect`, with the connection's series kept in `metrics_for` (the shadow-read
    /// connections export theirs as `zdm_async_*`, not as the cluster's).
    pub async fn connect_observed(
        &self,
        c: Cluster,
        metrics_for: impl Fn(&str) -> Arc<NodeMetrics>,
    ) -> Result<Arc<ClusterConn>, String> {
        let cfg = self.config.cluster(c);
        ClusterConn::connect(
            &cfg.contact_points,
            cfg.port,
            std::time::Duration::from_millis(cfg.connection_timeout_ms),
            self.config.proxy_max_stream_ids,
            self.config.tls.cluster(c),
            metrics_for,
        )
        .await
    }
}
