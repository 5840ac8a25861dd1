//! What every integration test needs to reach the sandbox (`scripts/sandbox.sh up`).
//!
//! A test that needs the sandbox and cannot find it fails with a message that says how to start
//! it: it never skips, so a green run always means the real clusters and hosts were exercised.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The sandbox's `.sandbox/env`, parsed.
pub struct Sandbox {
    vars: HashMap<String, String>,
}

impl Sandbox {
    /// Loads `$ZDM_SANDBOX_ENV`, else `<workspace>/.sandbox/env`; panics when it is missing.
    pub fn load() -> Sandbox {
        let path = std::env::var_os("ZDM_SANDBOX_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".sandbox/env"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the sandbox is not running ({}: {e}); start it with `scripts/sandbox.sh up`",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        Sandbox { vars }
    }

    pub fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("the sandbox env file has no {key}"))
    }

    /// `host:port` of a cluster's contact point; `cluster` is `ORIGIN` or `TARGET`.
    pub fn contact_point(&self, cluster: &str) -> String {
        format!(
            "{}:{}",
            self.get(&format!("ZDM_{cluster}_CONTACT_POINTS")),
            self.get(&format!("ZDM_{cluster}_PORT"))
        )
    }

    pub fn username(&self, cluster: &str) -> &str {
        self.get(&format!("ZDM_{cluster}_USERNAME"))
    }

    pub fn password(&self, cluster: &str) -> &str {
        self.get(&format!("ZDM_{cluster}_PASSWORD"))
    }

    /// The proxy host names (`zdm-h1` …) in fleet order.
    pub fn host_names(&self) -> Vec<String> {
        self.get("SANDBOX_HOST_NAMES")
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// The proxy host addresses in fleet order.
    pub fn host_addresses(&self) -> Vec<String> {
        self.get("SANDBOX_HOSTS")
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// Runs a verb of `scripts/sandbox.sh` (a fault switch) and panics if it fails.
    pub fn switch(&self, verb: &str, arg: &str) {
        let status = std::process::Command::new(self.get("SANDBOX_SCRIPT"))
            .args([verb, arg])
            .status()
            .expect("run scripts/sandbox.sh");
        assert!(status.success(), "scripts/sandbox.sh {verb} {arg} failed");
    }
}

/// The lock every test takes that touches the SSH fleet: fault switches (cut, sshd-stop,
/// rekey) take it exclusively, tests that need every host healthy take it shared, so a test
/// never sees a host another test has just cut off. It is a file lock, so it also orders tests
/// in different test binaries. (The SSH tests' `FaultGuard` takes the same file.)
pub struct FleetLock(std::fs::File);

pub const FLEET_LOCK_PATH: &str = "/tmp/zdm-run-ssh-tests-faults.lock";

impl FleetLock {
    fn take(mode: libc::c_int) -> FleetLock {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(FLEET_LOCK_PATH)
            .expect("open the fleet lock file");
        // SAFETY: flock on a descriptor we own; it blocks until the lock is granted.
        let rc = unsafe { libc::flock(file.as_raw_fd(), mode) };
        assert_eq!(rc, 0, "flock {FLEET_LOCK_PATH} failed");
        FleetLock(file)
    }

    /// For tests that flip fault switches.
    pub fn exclusive() -> FleetLock {
        FleetLock::take(libc::LOCK_EX)
    }

    /// For tests that need every host up.
    pub fn shared() -> FleetLock {
        FleetLock::take(libc::LOCK_SH)
    }
}

/// A name no other test run uses, for keyspaces and files.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// The `zdm-proxy` binary of this workspace, as `cargo test --workspace` builds it (beside the
/// `zdm-run` binary under test). Building it from inside a test would resolve the proxy's
/// dependencies with other features and rebuild them for minutes, so the test run builds it
/// once and tests refuse a binary older than the proxy's sources rather than test stale code.
pub fn proxy_binary() -> PathBuf {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_zdm-run"))
        .parent()
        .expect("the zdm-run binary has a directory")
        .to_path_buf();
    let binary = bin_dir.join("zdm-proxy");
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p zdm-proxy` first)",
                binary.display()
            )
        });
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy/src");
    for entry in std::fs::read_dir(&sources).expect("read proxy/src") {
        let path = entry.expect("proxy/src entry").path();
        let changed = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("source mtime");
        assert!(
            changed <= built,
            "{} is older than {}: rebuild it (`cargo test --workspace` or `cargo build -p zdm-proxy`)",
            binary.display(),
            path.display()
        );
    }
    binary
}
