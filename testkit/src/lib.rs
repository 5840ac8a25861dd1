//! What the tests, the benches and the sandbox tools share: one reader of the sandbox's env
//! file, the locks that order suites sharing it, runners for the binaries under test, the fleets
//! they run on and the client workload. Both packages dev-depend on it; it depends on neither
//! (it drives their binaries and the scylla driver), so it builds before either.
//!
//! # Layout
//!
//! - `sandbox`: the env file ([`Sandbox`]), sessions to the clusters, fault switches, `ssh`.
//! - `locks`: the cross-suite locks ([`Lock`]) and their names, all in one directory.
//! - `binaries`: where the workspace and the built `zdm-run` / `zdm-proxy` are.
//! - `run`: a finished or running process and what it printed ([`Run`], [`Running`]), and
//!   readers of `--output json`.
//! - `names`: [`unique_name`] for keyspaces, files and directories.
//! - `keyspace`: test keyspaces on both clusters ([`Clusters`], [`KeyspaceGuard`], CQL helpers).
//! - `workdir`, `local_fleet`: `zdm-run` in a private directory; a local three-host fleet.
//! - `fleet`, `faults`, `remote_dir`: the sandbox's SSH fleet with the deploy playbooks, fault
//!   switches that always undo, test directories on the hosts.
//! - `phases`: the migration's phase playbooks on that fleet and what they left behind.
//! - `workload`: the one client workload loop (tests and `zdm-demo-workload`).
//! - `fake_proxy`: an HTTP stand-in for a proxy's health and metrics endpoints.
//! - `proxy`, `raw_cql`: a local `zdm-proxy` process; a raw native-protocol client.
//!
//! A helper two suites need goes here, in the module of its concern; one only a single test file
//! uses stays in that file.

pub mod binaries;
pub mod fake_proxy;
pub mod faults;
pub mod fleet;
pub mod keyspace;
pub mod local_fleet;
pub mod locks;
pub mod names;
pub mod phases;
pub mod proxy;
pub mod raw_cql;
pub mod remote_dir;
pub mod run;
pub mod sandbox;
pub mod workdir;
pub mod workload;

pub use keyspace::{Clusters, KeyspaceGuard};
pub use locks::Lock;
pub use names::unique_name;
pub use run::{Run, Running};
pub use sandbox::Sandbox;
