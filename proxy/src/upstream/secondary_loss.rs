//! A client connection whose secondary cluster connection was lost while the primary's lives.
//!
//! Reads only need the primary, so the client connection stays open and keeps answering them
//! (writes fail: they cannot reach both clusters). That is what lets reads, and the shadow reads
//! of DUAL_ASYNC_ON_SECONDARY, go on at full rate while the secondary is down. The lost
//! connection is not rebuilt in place (the target's is authenticated with the client's own
//! credentials, which the proxy does not keep), so the client connection closes once a new
//! one would work again: the driver then reconnects and writes reach both clusters.

use std::time::{Duration, Instant};

use crate::ops::config::Cluster;
use crate::session::Session;

pub struct SecondaryLoss {
    pub cluster: Cluster,
    since: Instant,
    seen_down: bool,
}

impl SecondaryLoss {
    pub fn new(cluster: Cluster) -> SecondaryLoss {
        SecondaryLoss {
            cluster,
            since: Instant::now(),
            seen_down: false,
        }
    }

    /// Whether the client connection must close now: the lost cluster is back (the heartbeat saw
    /// it DOWN, now UP), a reload made it the primary, or the other connection is lost too. If
    /// the heartbeat never saw it DOWN (only this connection was dropped), the cluster is fine:
    /// close once the heartbeat had two intervals to notice otherwise.
    pub fn ends(&mut self, session: &Session) -> bool {
        let shared = &session.shared;
        let other = match self.cluster {
            Cluster::Origin => &session.target,
            Cluster::Target => &session.origin,
        };
        let live = shared.live();
        if live.primary_cluster == self.cluster || other.is_closed() {
            return true;
        }
        if !shared.health.of(self.cluster).is_up() {
            self.seen_down = true;
            return false;
        }
        self.seen_down
            || self.since.elapsed() > live.heartbeat_interval() * 2 + Duration::from_secs(1)
    }
}
