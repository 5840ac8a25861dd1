//! The sandbox's SSH fleet for integration tests: its env file, connection variables as the
//! generated inventory sets them, fault switches with guards that always undo them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};
use zdm_run::transport::ssh::{SshPool, SshTarget, SshTransport};

/// The sandbox's `env` file, parsed. Panics with a clear message if there is none: these
/// tests need the real fleet and never pass without it.
/// What one `zdm-run` run returned: its exit code, and stdout followed by stderr.
pub struct Run {
    pub code: i32,
    pub out: String,
}

/// Runs `zdm-run -i <the sandbox's inventory> ARGS` in `dir`.
pub fn zdm_run_in(sb: &Sandbox, dir: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_zdm-run"))
        .current_dir(dir)
        .args(["-i", &sb.get("SANDBOX_INVENTORY")])
        .args(args)
        .output()
        .expect("run zdm-run");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

pub struct Sandbox {
    pub env: HashMap<String, String>,
}

impl Sandbox {
    pub fn load() -> Sandbox {
        let path = std::env::var("ZDM_SANDBOX_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".sandbox/env"));
        Self::load_from(&path)
    }

    /// The env file of another sandbox instance (its own `ZDM_SANDBOX_DIR`).
    pub fn load_from(path: &std::path::Path) -> Sandbox {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "the SSH tests need the sandbox: cannot read {} ({e}); run scripts/sandbox.sh up \
                 or set ZDM_SANDBOX_ENV",
                path.display()
            )
        });
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        Sandbox { env }
    }

    pub fn get(&self, k: &str) -> String {
        self.env
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("sandbox env has no {k}"))
    }

    /// Address of `zdm-hN`.
    pub fn address(&self, host: &str) -> String {
        let names: Vec<String> = self
            .get("SANDBOX_HOST_NAMES")
            .split_whitespace()
            .map(String::from)
            .collect();
        let addrs: Vec<String> = self
            .get("SANDBOX_HOSTS")
            .split_whitespace()
            .map(String::from)
            .collect();
        let i = names
            .iter()
            .position(|n| n == host)
            .unwrap_or_else(|| panic!("no host {host}"));
        addrs[i].clone()
    }

    /// Connection variables as the generated inventory gives them to `host`.
    pub fn vars(&self, host: &str) -> serde_json::Map<String, Value> {
        json!({
            "inventory_hostname": host,
            "ansible_host": self.address(host),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.get("SANDBOX_SSH_KEY"),
            "ansible_ssh_common_args": format!(
                "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                self.get("SANDBOX_KNOWN_HOSTS")
            ),
        })
        .as_object()
        .unwrap()
        .clone()
    }

    pub fn target(&self, host: &str) -> SshTarget {
        SshTarget::from_vars(host, &self.vars(host)).expect("sandbox vars are valid")
    }

    pub fn transport(&self, host: &str, pool: &Arc<SshPool>) -> SshTransport {
        SshTransport::new(self.target(host), pool.clone())
    }

    /// Runs a fault switch (`cut`, `restore`, `rekey`, `trust`, ...).
    pub fn switch(&self, verb: &str, host: &str) {
        self.switch_args(&[verb, host]);
    }

    /// Runs a fault switch with several arguments (`cassandra-stop origin 2`), in this
    /// sandbox's own directory.
    pub fn switch_args(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(self.get("SANDBOX_SCRIPT"))
            .args(args)
            .env("ZDM_SANDBOX_DIR", self.get("SANDBOX_DIR"))
            .output()
            .expect("run sandbox.sh");
        assert!(
            out.status.success(),
            "sandbox.sh {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Holds an exclusive lock on the fault switches of the fleet across test binaries (tests
/// run in parallel; two tests cutting and restoring the same host would confuse each other),
/// and undoes the fault when dropped, also when the test fails.
pub struct FaultGuard<'a> {
    sandbox: &'a Sandbox,
    undo: Vec<(&'static str, String)>,
    _lock: std::fs::File,
}

impl<'a> FaultGuard<'a> {
    pub fn new(sandbox: &'a Sandbox) -> FaultGuard<'a> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/zdm-run-ssh-tests-faults.lock")
            .expect("open fault lock");
        // SAFETY: flock on a file descriptor we own; blocks until the lock is free.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock failed");
        FaultGuard {
            sandbox,
            undo: vec![],
            _lock: f,
        }
    }

    /// Applies `verb host` now and `undo host` when the guard drops.
    pub fn apply(&mut self, verb: &str, undo: &'static str, host: &str) {
        self.undo.push((undo, host.to_string()));
        self.sandbox.switch(verb, host);
    }
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        for (verb, host) in self.undo.drain(..).rev() {
            self.sandbox.switch(verb, &host);
        }
    }
}

/// A unique directory name below the hosts' private install root.
pub fn unique_dir(tag: &str) -> String {
    format!("/opt/zdm-proxy/test-{tag}-{:08x}", rand::random::<u32>())
}

/// Removes a test directory from hosts when dropped, also when the test fails half-way.
/// Uses the plain `ssh` client with the sandbox's config, so it needs no async runtime.
pub struct RemoteDir {
    config: String,
    hosts: Vec<String>,
    pub path: String,
}

impl RemoteDir {
    pub fn new(sb: &Sandbox, hosts: &[&str], tag: &str) -> RemoteDir {
        RemoteDir {
            config: sb.get("SANDBOX_SSH_CONFIG"),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path: unique_dir(tag),
        }
    }
}

impl Drop for RemoteDir {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = Command::new("ssh")
                .args(["-F", &self.config, "-o", "ConnectTimeout=5", h])
                .arg(format!("rm -rf -- '{}'", self.path))
                .stdin(std::process::Stdio::null())
                .output();
        }
    }
}
