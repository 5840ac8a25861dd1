//! The sandbox fleet as the deploy playbooks see it: the real `zdm-run` running
//! `playbooks/deploy.yml` / `rolling-restart.yml` against the sandbox's generated inventory,
//! with the real `zdm-proxy` on the hosts' addresses (CQL 9042, metrics 14001).
//!
//! Every test takes the fleet exclusively ([`Fleet`]): the playbooks install into the hosts'
//! default `/opt/zdm-proxy` and bind fixed ports, so two of them cannot overlap. The fleet is
//! wiped before the test and again when it ends (also on panic): proxies stopped, deployed
//! files removed, so other tests sharing the sandbox never meet a leftover proxy.

#![allow(dead_code)]

pub mod workload;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::ssh_support::Sandbox;

pub const HOSTS: [&str; 3] = ["zdm-h1", "zdm-h2", "zdm-h3"];
pub const CQL_PORT: u16 = 9042;
pub const METRICS_PORT: u16 = 14001;
/// What the deploy playbooks create below the install root (other tests use their own
/// `test-*` directories there, which stay untouched).
const DEPLOYED: &str =
    "/opt/zdm-proxy/versions /opt/zdm-proxy/current /opt/zdm-proxy/zdm-proxy.yml \
                        /opt/zdm-proxy/run /opt/zdm-proxy/logs";

/// An advisory file lock held for the guard's life.
struct FileLock(std::fs::File);

impl FileLock {
    fn take(path: &Path, exclusive: bool) -> FileLock {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open lock {}: {e}", path.display()));
        let lock = FileLock(f);
        lock.set(exclusive);
        lock
    }

    /// Takes the lock shared or exclusive, or converts the one this descriptor holds (blocks
    /// until granted). Converting on the same descriptor is what lets a holder of the shared
    /// lock go exclusive: a second descriptor of this process asking for LOCK_EX would wait
    /// forever on our own shared lock.
    fn set(&self, exclusive: bool) {
        use std::os::fd::AsRawFd;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(self.0.as_raw_fd(), op) };
        assert_eq!(rc, 0, "flock failed: {}", std::io::Error::last_os_error());
    }
}

/// Exclusive use of the fleet's default install root and ports for one test.
///
/// Locks, always in this order so no two holders can wait on each other: the deploy tests'
/// own lock (exclusive), the proxy tests' cluster lock (shared: a test stopping a cluster
/// takes it exclusively), and, unless the test uses fault switches itself, the SSH tests'
/// fault lock (shared: a test cutting a host takes it exclusively through `FaultGuard`).
pub struct Fleet {
    pub sb: Sandbox,
    _locks: Vec<FileLock>,
    /// The proxy tests' cluster lock, shared; exclusive while [`Fleet::stop_cluster`] holds a
    /// cluster down.
    clusters: FileLock,
}

impl Fleet {
    /// For tests that use no fault switch: also waits until no other test has one applied.
    pub fn take() -> Fleet {
        Self::new(true)
    }

    /// For tests that apply fault switches (through [`Fleet::fault`]): holds the SSH tests'
    /// fault lock exclusively.
    pub fn take_for_faults() -> Fleet {
        Self::new(false)
    }

    /// The fleet of another sandbox instance (its env file), e.g. the multi-node one of
    /// `scripts/sandbox-nodes.sh`: the same locks, so fleet tests still run one at a time.
    pub fn take_in(sb: Sandbox) -> Fleet {
        Self::with_sandbox(sb, true)
    }

    fn new(share_fault_lock: bool) -> Fleet {
        Self::with_sandbox(Sandbox::load(), share_fault_lock)
    }

    fn with_sandbox(sb: Sandbox, share_fault_lock: bool) -> Fleet {
        check_proxy_binary();
        let deploy = FileLock::take(Path::new("/tmp/zdm-run-deploy-tests.lock"), true);
        let clusters = FileLock::take(&std::env::temp_dir().join("zdm-proxy-tests.lock"), false);
        // The same file `ssh_support::FaultGuard` locks.
        let faults = FileLock::take(
            Path::new("/tmp/zdm-run-ssh-tests-faults.lock"),
            !share_fault_lock,
        );
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
        let guard = FaultUndo {
            sb: &self.sb,
            undo: Some((undo, host.to_string())),
        };
        self.sb.switch(verb, host);
        guard
    }

    /// Stops `cluster`'s Cassandra (`origin` or `target`, the sandbox's real fault switch) until
    /// the returned guard drops, also on panic; the guard starts it again and waits until CQL
    /// answers. Meanwhile the proxy tests' cluster lock is held exclusively (converted from the
    /// shared one this fleet holds), so no test that needs both clusters runs against a
    /// stopped one. Declare the guard after the fleet.
    pub fn stop_cluster(&self, cluster: &'static str) -> ClusterDown<'_> {
        let waited = Instant::now();
        self.clusters.set(true);
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
        self.sb
            .get("SANDBOX_HOST_NAMES")
            .split_whitespace()
            .map(String::from)
            .collect()
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
            let out = self.ssh_output(&h, &script);
            if let Err(e) = out {
                eprintln!("wiping {h} failed: {e}");
            }
        }
    }

    /// Runs a script on a host with the plain `ssh` client and the sandbox's config.
    pub fn ssh_output(&self, host: &str, script: &str) -> Result<String, String> {
        let out = Command::new("ssh")
            .args([
                "-F",
                &self.sb.get("SANDBOX_SSH_CONFIG"),
                "-o",
                "ConnectTimeout=10",
                "-o",
                "BatchMode=yes",
                host,
                script,
            ])
            .stdin(Stdio::null())
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
        self.run_with_inventory(&self.sb.get("SANDBOX_INVENTORY"), playbook, args)
    }

    pub fn run_with_inventory(&self, inventory: &str, playbook: &str, args: &[&str]) -> Run {
        let started = Instant::now();
        let out = zdm_run_command(inventory, playbook, args)
            .output()
            .expect("run zdm-run");
        Run {
            code: out.status.code().unwrap_or(-1),
            out: format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            took: started.elapsed(),
        }
    }

    /// Starts zdm-run and hands its output line by line (for acting at a given moment).
    pub fn spawn(&self, playbook: &str, args: &[&str]) -> Running {
        let mut child = zdm_run_command(&self.sb.get("SANDBOX_INVENTORY"), playbook, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zdm-run");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for pipe in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            lines: rx,
            seen: String::new(),
        }
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
        SessionBuilder::new()
            .known_nodes(&nodes)
            .user(
                self.sb.get("ZDM_TARGET_USERNAME"),
                self.sb.get("ZDM_TARGET_PASSWORD"),
            )
            .connection_timeout(Duration::from_secs(30))
            .build()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the proxies {nodes:?}: {e}"))
    }

    /// A driver session straight to `origin` or `target`, with that cluster's credentials.
    pub async fn direct_session(&self, cluster: &str) -> Session {
        let up = cluster.to_uppercase();
        let node = format!(
            "{}:{}",
            self.sb.get(&format!("ZDM_{up}_CONTACT_POINTS")),
            self.sb.get(&format!("ZDM_{up}_PORT"))
        );
        SessionBuilder::new()
            .known_node(&node)
            .user(
                self.sb.get(&format!("ZDM_{up}_USERNAME")),
                self.sb.get(&format!("ZDM_{up}_PASSWORD")),
            )
            .connection_timeout(Duration::from_secs(30))
            .build()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {cluster} directly: {e}"))
    }

    /// Drops `keyspace` on both clusters when the returned guard drops (also on panic).
    pub fn keyspace_guard(&self, keyspace: &str) -> KeyspaceGuard {
        let creds = ["ORIGIN", "TARGET"]
            .iter()
            .map(|c| {
                (
                    format!(
                        "{}:{}",
                        self.sb.get(&format!("ZDM_{c}_CONTACT_POINTS")),
                        self.sb.get(&format!("ZDM_{c}_PORT"))
                    ),
                    self.sb.get(&format!("ZDM_{c}_USERNAME")),
                    self.sb.get(&format!("ZDM_{c}_PASSWORD")),
                )
            })
            .collect();
        KeyspaceGuard {
            keyspace: keyspace.to_string(),
            creds,
        }
    }

    /// Every secret of the sandbox inventory (must never show in output).
    pub fn passwords(&self) -> [String; 2] {
        [
            self.sb.get("ZDM_ORIGIN_PASSWORD"),
            self.sb.get("ZDM_TARGET_PASSWORD"),
        ]
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.wipe();
    }
}

fn zdm_run_command(inventory: &str, playbook: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zdm-run"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-i", inventory, playbook])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// The deploy playbooks ship the `zdm-proxy` built beside `zdm-run`. `cargo test -p zdm-run`
/// does not build it, so refuse to test a missing or stale one rather than deploy old code.
fn check_proxy_binary() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_zdm-run")).with_file_name("zdm-proxy");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "the deploy tests ship {} but it is missing ({e}): run `cargo build -p zdm-proxy` \
                 (or `cargo test --workspace`) first",
                bin.display()
            )
        });
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy/src");
    let newest = newest_mtime(&src);
    assert!(
        newest <= built,
        "{} is older than the proxy sources in {}: run `cargo build -p zdm-proxy` first",
        bin.display(),
        src.display()
    );
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// A setting's value in a rendered config (`key: value`, quotes removed).
pub fn setting_of(config: &str, key: &str) -> Option<String> {
    config.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// A finished zdm-run.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub took: Duration,
}

impl Run {
    /// The PLAY RECAP counters of `host` (`ok`, `changed`, `unreachable`, `failed`, ...).
    pub fn recap(&self, host: &str, key: &str) -> u32 {
        let line = self
            .out
            .lines()
            .skip_while(|l| !l.contains("PLAY RECAP"))
            .find(|l| l.split_whitespace().next() == Some(host))
            .unwrap_or_else(|| panic!("no recap line for {host} in:\n{}", self.out));
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    }

    /// Asserts exit code 0 with the output in the message.
    pub fn assert_ok(&self, what: &str) {
        assert_eq!(
            self.code, 0,
            "{what}: zdm-run exited {}:\n{}",
            self.code, self.out
        );
    }

    /// Lines `<status>: [<host>] ...` of the output.
    pub fn results(&self, status: &str) -> Vec<&str> {
        self.out
            .lines()
            .filter(|l| l.starts_with(&format!("{status}: [")))
            .collect()
    }
}

/// A zdm-run still running, with its output lines.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: String,
}

impl Running {
    /// Reads output until a line contains `needle` (panics after `limit` or at the end).
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push_str(&l);
                    self.seen.push('\n');
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "zdm-run never printed '{needle}' within {limit:?}:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the end (bounded) and returns everything it printed.
    pub fn finish(mut self, limit: Duration) -> Run {
        let started = Instant::now();
        let deadline = started + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait zdm-run") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("zdm-run did not finish within {limit:?}:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // The reader threads end with the pipes.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push_str(&l);
            self.seen.push('\n');
        }
        Run {
            code: status.code().unwrap_or(-1),
            out: std::mem::take(&mut self.seen),
            took: started.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Drops a test keyspace on both clusters when the test ends, also when it panics.
pub struct KeyspaceGuard {
    keyspace: String,
    /// (node, user, password) of origin and target.
    creds: Vec<(String, String, String)>,
}

impl Drop for KeyspaceGuard {
    fn drop(&mut self) {
        let (ks, creds) = (self.keyspace.clone(), self.creds.clone());
        // Drop runs inside the test's runtime, which must not be blocked on: a thread with
        // its own runtime does the work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                for (node, user, pw) in creds {
                    let s = SessionBuilder::new()
                        .known_node(node)
                        .user(user, pw)
                        .build()
                        .await;
                    if let Ok(s) = s {
                        let _ = s
                            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), &[])
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

/// Undoes a fault switch when dropped (see [`Fleet::fault`]).
pub struct FaultUndo<'a> {
    sb: &'a Sandbox,
    undo: Option<(&'static str, String)>,
}

impl FaultUndo<'_> {
    /// Undoes the fault now.
    pub fn undo(mut self) {
        self.undo_now();
    }

    fn undo_now(&mut self) {
        if let Some((verb, host)) = self.undo.take() {
            self.sb.switch(verb, &host);
        }
    }
}

impl Drop for FaultUndo<'_> {
    fn drop(&mut self) {
        self.undo_now();
    }
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
            let out = Command::new("bash")
                .arg(self.fleet.sb.get("SANDBOX_SCRIPT"))
                .args(["cassandra-start", self.cluster, self.node])
                .env("ZDM_SANDBOX_DIR", self.fleet.sb.get("SANDBOX_DIR"))
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
        self.fleet.clusters.set(false);
    }
}

impl Drop for ClusterDown<'_> {
    fn drop(&mut self) {
        self.start_now();
    }
}

/// A keyspace name unique to this test run.
pub fn unique_keyspace(tag: &str) -> String {
    format!("deploy_{tag}_{:08x}", rand::random::<u32>())
}
