//! The sandbox fleet as the deploy playbooks see it: the real `zdm-run` running
//! `playbooks/deploy.yml` / `rolling-restart.yml` against the sandbox's generated inventory,
//! with the real `zdm-proxy` on the hosts' addresses (CQL 9042, metrics 14001).
//!
//! Every test takes the fleet exclusively ([`Fleet`]): the playbooks install into the hosts'
//! default `/opt/zdm-proxy` and bind fixed ports, so two of them cannot overlap. The fleet is
//! wiped before the test and again when it ends (also on panic): proxies stopped, deployed
//! files removed, so other tests sharing the sandbox never meet a leftover proxy.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::statement::unprepared::Statement;

use crate::binaries::{proxy_binary, workspace_root, zdm_run};
use crate::faults::FaultUndo;
use crate::locks::{Lock, CLUSTERS, DEPLOY, FAULTS};
use crate::run::{Run, Running};
use crate::sandbox::Sandbox;

pub const HOSTS: [&str; 3] = ["zdm-h1", "zdm-h2", "zdm-h3"];
pub const CQL_PORT: u16 = 9042;
pub const METRICS_PORT: u16 = 14001;
/// What the deploy playbooks create below the install root (other tests use their own
/// `test-*` directories there, which stay untouched).
const DEPLOYED: &str =
    "/opt/zdm-proxy/versions /opt/zdm-proxy/current /opt/zdm-proxy/zdm-proxy.yml \
                        /opt/zdm-proxy/run /opt/zdm-proxy/logs";

/// Exclusive use of the fleet's default install root and ports for one test.
///
/// Locks, in the order of [`crate::locks`]: [`DEPLOY`] exclusive, [`CLUSTERS`] shared (a test
/// stopping a cluster takes it exclusively), and [`FAULTS`] shared unless the test uses fault
/// switches itself (a test cutting a host takes it exclusively).
pub struct Fleet {
    pub sb: Sandbox,
    _locks: Vec<Lock>,
    /// [`CLUSTERS`], shared; exclusive while [`Fleet::stop_cluster`] holds a cluster down.
    clusters: Lock,
}

impl Fleet {
    /// For tests that use no fault switch: also waits until no other test has one applied.
    pub fn take() -> Fleet {
        Self::with_sandbox(Sandbox::load(), true)
    }

    /// For tests that apply fault switches (through [`Fleet::fault`]): holds [`FAULTS`]
    /// exclusively.
    pub fn take_for_faults() -> Fleet {
        Self::with_sandbox(Sandbox::load(), false)
    }

    /// The fleet of another sandbox instance (its env file), e.g. the multi-node one of
    /// `scripts/sandbox-nodes.sh`: the same locks, so fleet tests still run one at a time.
    pub fn take_in(sb: Sandbox) -> Fleet {
        Self::with_sandbox(sb, true)
    }

    fn with_sandbox(sb: Sandbox, share_fault_lock: bool) -> Fleet {
        // The deploy playbooks ship the zdm-proxy built beside zdm-run.
        proxy_binary();
        let deploy = Lock::exclusive(DEPLOY);
        let clusters = Lock::shared(CLUSTERS);
        let faults = if share_fault_lock {
            Lock::shared(FAULTS)
        } else {
            Lock::exclusive(FAULTS)
        };
        let fleet = Fleet {
            sb,
            _locks: vec![deploy, faults],
            clusters,
        };
        fleet.wipe();
        fleet
    }

    /// Applies a fault switch now (`cut`, `rekey`, ...) and its undo (`restore`, `trust`)
    /// when the returned guard drops, also on panic. Only with [`Fleet::take_for_faults`].
    /// Declare the guard after the fleet, so the fault is undone before the fleet is wiped.
    pub fn fault(&self, verb: &str, undo: &'static str, host: &str) -> FaultUndo<'_> {
        FaultUndo::apply(&self.sb, verb, undo, host)
    }

    /// Stops `cluster`'s Cassandra (`origin` or `target`, the sandbox's real fault switch) until
    /// the returned guard drops, also on panic; the guard starts it again and waits until CQL
    /// answers. Meanwhile [`CLUSTERS`] is held exclusively (converted from the shared lock this
    /// fleet holds), so no test that needs both clusters runs against a stopped one. Declare
    /// the guard after the fleet.
    pub fn stop_cluster(&self, cluster: &'static str) -> ClusterDown<'_> {
        let waited = Instant::now();
        self.clusters.convert(true);
        eprintln!(
            "cluster lock exclusive after {:.1?}; stopping {cluster}",
            waited.elapsed()
        );
        self.stop_node(cluster, "1")
    }

    /// Stops node `node` of `cluster` (`cassandra-stop origin 2`) until the guard drops, which
    /// starts it again. No cluster lock is taken: it is meant for a multi-node instance of its
    /// own (`Fleet::take_in`), which no other test shares; on the shared sandbox use
    /// [`Fleet::stop_cluster`].
    pub fn stop_node(&self, cluster: &'static str, node: &'static str) -> ClusterDown<'_> {
        let guard = ClusterDown {
            fleet: self,
            cluster,
            node,
            started: false,
        };
        self.sb.switch_args(&["cassandra-stop", cluster, node]);
        guard
    }

    /// The fleet's host names, in order (`zdm-h1`, ...; another instance has its own prefix).
    pub fn hosts(&self) -> Vec<String> {
        self.sb.host_names()
    }

    /// Stops every deployed proxy (SIGTERM, then SIGKILL after 20 s) and removes what the
    /// playbooks installed.
    pub fn wipe(&self) {
        let script = format!(
            "p=$(cat /opt/zdm-proxy/run/zdm-proxy.pid 2>/dev/null)\n\
             case $p in ''|*[!0-9]*) ;; *)\n\
               kill -TERM \"$p\" 2>/dev/null\n\
               i=0; while kill -0 \"$p\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done\n\
               kill -KILL \"$p\" 2>/dev/null ;;\n\
             esac\n\
             rm -rf {DEPLOYED}\n"
        );
        for h in self.hosts() {
            if let Err(e) = self.ssh_output(&h, &script) {
                eprintln!("wiping {h} failed: {e}");
            }
        }
    }

    /// Runs a script on a host with the plain `ssh` client and the sandbox's config.
    pub fn ssh_output(&self, host: &str, script: &str) -> Result<String, String> {
        let out = self
            .sb
            .ssh(host, script)
            .output()
            .map_err(|e| format!("ssh: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ssh {host} exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub fn ssh(&self, host: &str, script: &str) -> String {
        self.ssh_output(host, script)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The pid of the proxy the supervisor runs on `host`, if it is alive.
    pub fn proxy_pid(&self, host: &str) -> Option<u32> {
        self.ssh(
            host,
            "p=$(cat /opt/zdm-proxy/run/zdm-proxy.pid 2>/dev/null) && kill -0 \"$p\" 2>/dev/null && echo $p || true",
        )
        .trim()
        .parse()
        .ok()
    }

    /// The deployed config file of `host` (empty if there is none).
    pub fn config(&self, host: &str) -> String {
        self.ssh(host, "cat /opt/zdm-proxy/zdm-proxy.yml 2>/dev/null || true")
    }

    /// One setting of the deployed config, as written (`read_mode` -> `PRIMARY_ONLY`).
    pub fn setting(&self, host: &str, key: &str) -> Option<String> {
        setting_of(&self.config(host), key)
    }

    /// Runs `zdm-run -i <sandbox inventory> <playbook> <args>` from the workspace root.
    pub fn run(&self, playbook: &str, args: &[&str]) -> Run {
        self.run_with_inventory(self.sb.get("SANDBOX_INVENTORY"), playbook, args)
    }

    pub fn run_with_inventory(&self, inventory: &str, playbook: &str, args: &[&str]) -> Run {
        Run::of(&mut playbook_command(inventory, playbook, args))
    }

    /// Starts zdm-run and hands its output line by line (for acting at a given moment).
    pub fn spawn(&self, playbook: &str, args: &[&str]) -> Running {
        Running::spawn(&mut playbook_command(
            self.sb.get("SANDBOX_INVENTORY"),
            playbook,
            args,
        ))
    }

    /// Address of a host.
    pub fn address(&self, host: &str) -> String {
        self.sb.address(host)
    }

    /// GET `path` on a host's proxy metrics/health port; panics naming the URL if nothing
    /// answers.
    pub async fn proxy_get(&self, host: &str, path: &str) -> (String, reqwest::Response) {
        let url = format!("http://{}:{METRICS_PORT}{path}", self.address(host));
        let response = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        (url, response)
    }

    /// GET /health/readiness of a host's proxy: the status code, or None if nothing answers.
    pub async fn readiness(&self, host: &str) -> Option<u16> {
        let url = format!(
            "http://{}:{METRICS_PORT}/health/readiness",
            self.address(host)
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        client
            .get(url)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// A driver session through the proxies (client credentials are target's, as for an
    /// application in phase 1).
    pub async fn proxy_session(&self, hosts: &[&str]) -> Session {
        let nodes: Vec<String> = hosts
            .iter()
            .map(|h| format!("{}:{CQL_PORT}", self.address(h)))
            .collect();
        self.sb
            .connect_through_proxies(&nodes)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A driver session straight to `origin` or `target`, with that cluster's credentials.
    pub async fn direct_session(&self, cluster: &str) -> Session {
        self.sb.direct(cluster).await
    }

    /// Every secret of the sandbox inventory (must never show in output).
    pub fn passwords(&self) -> [String; 2] {
        self.sb.passwords()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.wipe();
    }
}

fn playbook_command(inventory: &str, playbook: &str, args: &[&str]) -> Command {
    let mut cmd = zdm_run();
    cmd.current_dir(workspace_root())
        .args(["-i", inventory, playbook])
        .args(args)
        .stdin(std::process::Stdio::null());
    cmd
}

/// A statement the driver must send to this one proxy (no other node may answer it).
pub fn via(fleet: &Fleet, host: &str, cql: &str) -> Statement {
    let addr: SocketAddr = format!("{}:{CQL_PORT}", fleet.address(host))
        .parse()
        .unwrap();
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(SingleTargetLoadBalancingPolicy::new(
            NodeIdentifier::NodeAddress(addr),
            None,
        ))
        .build();
    let mut s = Statement::new(cql);
    s.set_execution_profile_handle(Some(profile.into_handle()));
    s
}

/// A setting's value in a rendered config (`key: value`, quotes removed).
pub fn setting_of(config: &str, key: &str) -> Option<String> {
    config.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// A Cassandra cluster stopped by [`Fleet::stop_cluster`]; started again when dropped.
pub struct ClusterDown<'a> {
    fleet: &'a Fleet,
    cluster: &'static str,
    node: &'static str,
    started: bool,
}

impl ClusterDown<'_> {
    /// Starts the cluster now (waits until CQL answers) and gives the cluster lock back to
    /// shared.
    pub fn start(mut self) {
        self.start_now();
    }

    fn start_now(&mut self) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        // Not `Sandbox::switch`: a panic here may run during a panic's unwinding (abort).
        let mut ok = false;
        for attempt in 1..=2 {
            let out = self
                .fleet
                .sb
                .script(&["cassandra-start", self.cluster, self.node])
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    ok = true;
                    break;
                }
                Ok(o) => eprintln!(
                    "sandbox.sh cassandra-start {} (attempt {attempt}) failed: {}",
                    self.cluster,
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => eprintln!("sandbox.sh cassandra-start {}: {e}", self.cluster),
            }
        }
        if !ok {
            eprintln!(
                "WARNING: {} may still be stopped: run scripts/sandbox.sh cassandra-start {}",
                self.cluster, self.cluster
            );
        }
        self.fleet.clusters.convert(false);
    }
}

impl Drop for ClusterDown<'_> {
    fn drop(&mut self) {
        self.start_now();
    }
}
