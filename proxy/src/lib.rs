//! zdm-proxy: a CQL native-protocol (v4) proxy that writes to an origin and a target cluster
//! and reads from the primary one, so applications can migrate with zero downtime.
//!
//! # Layout
//!
//! A client's request, top to bottom, is the files at the top level; each folder below is one
//! layer they use.
//!
//! * `server`: the listener, the control loops and the process's graceful shutdown.
//! * `connection`: one client connection, read as one loop: `handshake` (the client's
//!   handshake, mirrored onto both clusters), then `session` (each request: route it, send it
//!   to one or both clusters, answer the client), then a graceful end.
//! * `state`: what every connection of the process shares.
//! * `shadow`: shadow reads (`DUAL_ASYNC_ON_SECONDARY`) sent to the secondary and compared.
//! * `protocol/`: bytes on the wire: frames (v4), segments (v5), the protocol's notations,
//!   stream ids, socket buffers. Knows nothing of statements or clusters.
//! * `statements/`: what a statement says and what the proxy does with it: lexing, routing,
//!   prepared ids, the rewrites of a write, per-table write metrics, and the
//!   system.local/system.peers answers the proxy makes itself.
//! * `upstream/`: the two clusters behind the proxy: node connections, node selection, the
//!   control connection and heartbeats (cluster health), events, losing the secondary.
//! * `ops/`: what the operator sets and reads: config and its validation, TLS, live reload,
//!   metrics and the HTTP endpoints (health, metrics, config, reload).
//! * `fuzzing`: entry points for the fuzz targets and property tests.
//!
//! The setting names and defaults live in the `zdm-proxy-settings` crate, which zdm-run
//! depends on too.

pub mod connection;
pub mod fuzzing;
pub mod handshake;
pub mod ops;
pub mod protocol;
pub mod server;
pub mod session;
pub mod shadow;
pub mod state;
pub mod statements;
pub mod upstream;

/// What `--version` prints after the program name: the package version, the commit it was
/// built from and the build date (set by the build script).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ZDMRUN_BUILD_COMMIT"),
    ", built ",
    env!("ZDMRUN_BUILD_DATE"),
    ")"
);
