//! zdm-proxy: a CQL native-protocol (v4) proxy that writes to an origin and a target cluster
//! and reads from the primary one, so applications can migrate with zero downtime.

pub mod cluster;
pub mod config;
pub mod connection;
pub mod frame;
pub mod fuzzing;
pub mod handshake;
pub mod health;
pub mod metrics;
pub mod prepared;
pub mod reload;
pub mod routing;
pub mod secondary_loss;
pub mod server;
pub mod session;
pub mod shadow;
pub mod state;
pub mod topology;
pub mod wire;
