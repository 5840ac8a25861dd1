//! Test directories on the sandbox hosts, removed again when the test ends.

use crate::names::unique_name;
use crate::sandbox::Sandbox;

/// A unique directory below the hosts' private install root, removed from `hosts` when
/// dropped, also when the test fails half-way. Uses the plain `ssh` client, so it needs no
/// async runtime.
pub struct RemoteDir {
    sandbox: Sandbox,
    hosts: Vec<String>,
    pub path: String,
}

impl RemoteDir {
    pub fn new(sb: &Sandbox, hosts: &[&str], tag: &str) -> RemoteDir {
        RemoteDir {
            sandbox: sb.clone(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path: format!("/opt/zdm-proxy/{}", unique_name(&format!("test-{tag}"))),
        }
    }
}

impl Drop for RemoteDir {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = self
                .sandbox
                .ssh(h, &format!("rm -rf -- '{}'", self.path))
                .output();
        }
    }
}
