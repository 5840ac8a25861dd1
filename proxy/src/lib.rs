//! zdm-proxy: a CQL native-protocol (v4) proxy that writes to an origin and a target cluster
//! and reads from the primary one, so applications can migrate with zero downtime.

pub mod cluster;
pub mod config;
pub mod connection;
pub mod consistency;
pub mod cql_functions;
pub mod cql_lex;
pub mod frame;
pub mod fuzzing;
pub mod handshake;
pub mod health;
pub mod metrics;
pub mod nodes;
pub mod prepared;
pub mod prepared_now;
pub mod reload;
pub mod routing;
pub mod secondary_loss;
pub mod server;
pub mod session;
pub mod shadow;
pub mod state;
pub mod stream_ids;
pub mod tls;
pub mod topology;
pub mod topology_where;
pub mod unsafe_writes;
pub mod wire;
pub mod write_metrics;
pub mod write_rewrite;
