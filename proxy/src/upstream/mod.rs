//! The two clusters behind the proxy: one connection to a node shared by many requests
//! (`cluster`), which nodes the connections go to (`nodes`), the control connection and
//! heartbeats that say whether each cluster is UP (`health`), the cluster events relayed to
//! clients (`events`), and what a client connection does when it loses the secondary
//! (`secondary_loss`).

pub mod cluster;
pub mod events;
pub mod health;
pub mod nodes;
pub mod secondary_loss;
