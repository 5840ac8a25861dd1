//! The sandbox's env file (`scripts/sandbox.sh up` writes it): where the clusters, the SSH
//! fleet and the fault switches are. This is the one reader of that file.
//!
//! A test that needs the sandbox and cannot find it fails with a message that says how to start
//! it: it never skips, so a green run always means the real clusters and hosts were exercised.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde_json::{json, Value};

use crate::binaries::workspace_root;

/// The sandbox's `KEY=value` file, parsed (values may be double-quoted; the quotes are not
/// part of the value).
#[derive(Clone, Debug)]
pub struct Sandbox {
    vars: HashMap<String, String>,
}

/// `$ZDM_SANDBOX_ENV`, else this workspace's `.sandbox/env`.
pub fn default_env_path() -> PathBuf {
    std::env::var_os("ZDM_SANDBOX_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".sandbox/env"))
}

impl Sandbox {
    /// The sandbox of [`default_env_path`]; panics, saying how to start it, when it is missing.
    pub fn load() -> Sandbox {
        Self::load_from(&default_env_path())
    }

    /// The env file of another sandbox instance (its own `ZDM_SANDBOX_DIR`); panics when it is
    /// missing.
    pub fn load_from(path: &Path) -> Sandbox {
        Self::read(path).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// For tools that report errors rather than panic.
    pub fn read(path: &Path) -> anyhow::Result<Sandbox> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "the sandbox is not running: cannot read {}; start it with `scripts/sandbox.sh up` \
                 or set ZDM_SANDBOX_ENV",
                path.display()
            )
        })?;
        let vars = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        Ok(Sandbox { vars })
    }

    /// A variable of the env file; panics naming it when the file has none.
    pub fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("the sandbox env file has no {key}"))
    }

    /// A variable the sandbox may not have (an optional part: Spark, monitoring, TLS).
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// [`Sandbox::get`] as an error, for tools.
    pub fn require(&self, key: &str) -> anyhow::Result<&str> {
        self.var(key)
            .with_context(|| format!("the sandbox env file has no {key}"))
    }

    /// `host:port` of a cluster's first contact point; `cluster` is `origin` or `target` (any
    /// case).
    pub fn node(&self, cluster: &str) -> String {
        let c = cluster.to_ascii_uppercase();
        let host = self
            .get(&format!("ZDM_{c}_CONTACT_POINTS"))
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string();
        format!("{host}:{}", self.get(&format!("ZDM_{c}_PORT")))
    }

    /// A cluster's (username, password).
    pub fn creds(&self, cluster: &str) -> (String, String) {
        let c = cluster.to_ascii_uppercase();
        (
            self.get(&format!("ZDM_{c}_USERNAME")).into(),
            self.get(&format!("ZDM_{c}_PASSWORD")).into(),
        )
    }

    /// The settings every proxy needs to reach the clusters (`ZDM_*` environment form).
    pub fn cluster_settings(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for c in ["ORIGIN", "TARGET"] {
            for k in ["CONTACT_POINTS", "PORT", "USERNAME", "PASSWORD"] {
                let key = format!("ZDM_{c}_{k}");
                v.push((key.clone(), self.get(&key).to_string()));
            }
        }
        v
    }

    /// Every secret of the sandbox (must never show in output).
    pub fn passwords(&self) -> [String; 2] {
        [self.creds("origin").1, self.creds("target").1]
    }

    /// A driver session straight to `origin` or `target`, with that cluster's credentials.
    pub async fn connect_direct(&self, cluster: &str) -> anyhow::Result<Session> {
        let (user, password) = self.creds(cluster);
        let node = self.node(cluster);
        SessionBuilder::new()
            .known_node(&node)
            .user(user, password)
            .connection_timeout(Duration::from_secs(30))
            .build()
            .await
            .with_context(|| format!("cannot connect to {cluster} directly at {node}"))
    }

    /// [`Sandbox::connect_direct`] for tests: panics when the cluster does not answer.
    pub async fn direct(&self, cluster: &str) -> Session {
        self.connect_direct(cluster)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A driver session through proxies at `nodes` (`host:port`), with target's credentials as
    /// an application has in phase 1.
    pub async fn connect_through_proxies(&self, nodes: &[String]) -> anyhow::Result<Session> {
        let (user, password) = self.creds("target");
        SessionBuilder::new()
            .known_nodes(nodes)
            .user(user, password)
            .connection_timeout(Duration::from_secs(30))
            .build()
            .await
            .with_context(|| format!("cannot connect to the proxies {nodes:?}"))
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

    /// Address of host `zdm-hN`.
    pub fn address(&self, host: &str) -> String {
        let i = self
            .host_names()
            .iter()
            .position(|n| n == host)
            .unwrap_or_else(|| panic!("the sandbox has no host {host}"));
        self.host_addresses()[i].clone()
    }

    /// Connection variables as the generated inventory gives them to `host`.
    pub fn ssh_vars(&self, host: &str) -> serde_json::Map<String, Value> {
        let vars = json!({
            "inventory_hostname": host,
            "ansible_host": self.address(host),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.get("SANDBOX_SSH_KEY"),
            "ansible_ssh_common_args": format!(
                "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                self.get("SANDBOX_KNOWN_HOSTS")
            ),
        });
        match vars {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        }
    }

    /// The generated inventory's `hosts.yml`, for a migration of the test's own: the state file
    /// is written beside the inventory, and the sandbox's is shared with other tests.
    pub fn inventory_yaml(&self) -> String {
        let path = Path::new(self.get("SANDBOX_INVENTORY")).join("hosts.yml");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the sandbox inventory {}: {e}", path.display()))
    }

    /// Runs a fault switch of `scripts/sandbox.sh` (`cut`, `restore`, `rekey`, `trust`, ...)
    /// and panics if it fails.
    pub fn switch(&self, verb: &str, host: &str) {
        self.switch_args(&[verb, host]);
    }

    /// Runs a fault switch with several arguments (`cassandra-stop origin 2`), in this
    /// sandbox's own directory, and panics with its stderr if it fails.
    pub fn switch_args(&self, args: &[&str]) {
        let out = self
            .script(args)
            .output()
            .unwrap_or_else(|e| panic!("run sandbox.sh {}: {e}", args.join(" ")));
        assert!(
            out.status.success(),
            "sandbox.sh {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `scripts/sandbox.sh ARGS` for this sandbox instance, not yet run.
    pub fn script(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(self.get("SANDBOX_SCRIPT"))
            .args(args)
            .env("ZDM_SANDBOX_DIR", self.get("SANDBOX_DIR"));
        cmd
    }

    /// The plain `ssh` client with the sandbox's config, to `host` running `script`.
    pub fn ssh(&self, host: &str, script: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-F",
            self.get("SANDBOX_SSH_CONFIG"),
            "-o",
            "ConnectTimeout=10",
            "-o",
            "BatchMode=yes",
            host,
            script,
        ])
        .stdin(std::process::Stdio::null());
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lose_their_quotes_and_surrounding_blanks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(
            &path,
            "ZDM_ORIGIN_PASSWORD=\"p=w d\"\n SANDBOX_HOSTS = 10.0.0.1 10.0.0.2\n# a comment\n",
        )
        .unwrap();
        let sb = Sandbox::read(&path).unwrap();
        assert_eq!(sb.get("ZDM_ORIGIN_PASSWORD"), "p=w d");
        assert_eq!(sb.host_addresses(), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(sb.var("ZDM_TARGET_PASSWORD"), None);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it_and_the_way_to_start_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-env");
        let e = format!("{:#}", Sandbox::read(&path).unwrap_err());
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("scripts/sandbox.sh up"), "{e}");
    }
}
