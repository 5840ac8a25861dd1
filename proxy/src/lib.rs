//! zdm-proxy: a CQL native-protocol (v4) proxy that writes to an origin and a target cluster
//! and reads from the primary one, so applications can migrate with zero downtime.

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
