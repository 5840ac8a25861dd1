//! The real `zdm-proxy` binary as the proxy's tests and benches run it: a local process in
//! front of the sandbox's clusters, and the small CQL helpers they check it with.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::binaries::built_binary;
use crate::sandbox::Sandbox;

/// `zdm-proxy --check-config [--config FILE]` with `env` as its whole environment (nothing of
/// the test's own leaks in), as an operator would validate a config before deploying it.
pub fn check_config(file: Option<&std::path::Path>, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(built_binary("zdm-proxy"));
    cmd.env_clear()
        .envs(env.iter().copied())
        .arg("--check-config");
    if let Some(file) = file {
        cmd.arg("--config").arg(file);
    }
    cmd.output().expect("run zdm-proxy --check-config")
}

/// A running `zdm-proxy` child process, killed on drop.
pub struct Proxy {
    pub child: Option<Child>,
    pub addr: String,
    pub ip: String,
    pub port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    /// Command-line arguments (e.g. `--config FILE`).
    pub args: Vec<String>,
}

impl Proxy {
    /// Starts a proxy on `ip:port` (metrics on `ip:port+1000`) and waits until it listens.
    pub fn start(sb: &Sandbox, ip: &str, port: u16, extra: &[(&str, &str)]) -> Proxy {
        let mut p = Proxy::start_unspawned(sb, ip, port, extra);
        p.spawn();
        p
    }

    /// The environment of a proxy on `ip:port` (metrics on `ip:port+1000`): the sandbox's
    /// cluster settings, the addresses, a 1 s heartbeat, then `extra`, which wins.
    pub fn env_for(
        sb: &Sandbox,
        ip: &str,
        port: u16,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut env = sb.cluster_settings();
        env.push(("ZDM_PROXY_LISTEN_ADDRESS".into(), ip.into()));
        env.push(("ZDM_PROXY_LISTEN_PORT".into(), port.to_string()));
        env.push(("ZDM_METRICS_ADDRESS".into(), ip.into()));
        env.push(("ZDM_METRICS_PORT".into(), (port + 1000).to_string()));
        env.push(("ZDM_HEARTBEAT_INTERVAL_MS".into(), "1000".into()));
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    /// Where the proxy on `ip:port` writes its log.
    pub fn log_path(ip: &str, port: u16) -> PathBuf {
        std::env::temp_dir().join(format!("zdm-proxy-test-{ip}-{port}.log"))
    }

    fn start_unspawned(sb: &Sandbox, ip: &str, port: u16, extra: &[(&str, &str)]) -> Proxy {
        let env = Proxy::env_for(sb, ip, port, extra);
        Proxy {
            child: None,
            addr: format!("{ip}:{port}"),
            ip: ip.into(),
            port,
            metrics_port: port + 1000,
            log: Proxy::log_path(ip, port),
            env,
            args: Vec::new(),
        }
    }

    /// Like `start`, with a settings file as well (`--config file`; the environment still
    /// carries the cluster settings and addresses, and wins over the file).
    pub fn start_with_file(sb: &Sandbox, ip: &str, port: u16, file: &std::path::Path) -> Proxy {
        let mut p = Proxy::start_unspawned(sb, ip, port, &[]);
        p.args = vec!["--config".into(), file.display().to_string()];
        p.spawn();
        p
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(built_binary("zdm-proxy"))
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn zdm-proxy");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "zdm-proxy exited early ({status}); log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "zdm-proxy did not listen on {} within 90 s; log:\n{}",
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a proxy that is expected to refuse to start: waits (up to `bound`) for it to exit
    /// and returns its status and log. Panics if it starts listening or outlives `bound`.
    pub fn run_expecting_exit(
        sb: &Sandbox,
        ip: &str,
        port: u16,
        extra: &[(&str, &str)],
        bound: Duration,
    ) -> (std::process::ExitStatus, String) {
        let mut p = Proxy::start_unspawned(sb, ip, port, extra);
        let log = std::fs::File::create(&p.log).unwrap();
        let child = Command::new(built_binary("zdm-proxy"))
            .env_clear()
            .envs(p.env.iter().cloned())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn zdm-proxy");
        p.child = Some(child);
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = p.child.as_mut().unwrap().try_wait().unwrap() {
                p.child = None;
                return (status, p.log_text());
            }
            assert!(
                std::net::TcpStream::connect(&p.addr).is_err(),
                "zdm-proxy started listening although it should have refused; log:\n{}",
                p.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "zdm-proxy still running after {bound:?}; log:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Sends SIGTERM and returns the exit status (waits up to `bound`).
    pub fn terminate(&mut self, bound: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + bound;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "zdm-proxy did not exit within {bound:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A driver session through this proxy with the target's credentials.
    pub async fn session(&self, sb: &Sandbox) -> Session {
        let (u, p) = sb.creds("target");
        SessionBuilder::new()
            .known_node(&self.addr)
            .user(u, p)
            .connection_timeout(Duration::from_secs(30))
            .build()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect through proxy {}: {e}\nlog:\n{}",
                    self.addr,
                    self.log_text()
                )
            })
    }

    /// GET on the metrics port: (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}:{}{path}", self.ip, self.metrics_port);
        let resp = reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// POSTs to the metrics port (e.g. `/reload`): (status, body).
    pub async fn http_post(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}:{}{path}", self.ip, self.metrics_port);
        let resp = reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Waits (up to 60 s) until `/health/readiness` answers 200: both clusters UP, which also
    /// means the control connections have learnt which protocol versions the clusters speak.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.http_get("/health/readiness").await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "proxy {} not ready within 60 s; log:\n{}",
                self.addr,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Value of one exact Prometheus series line (e.g. `zdm_proxy_failed_writes_total{failed_on="target"}`).
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("series {series} not in /metrics"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates a keyspace and a `kv (k int PRIMARY KEY, v text)` table through `s`.
pub async fn create_kv(s: &Session, ks: &str) {
    s.query_unpaged(
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class':'SimpleStrategy','replication_factor':1}}"),
        (),
    )
    .await
    .unwrap_or_else(|e| panic!("create keyspace {ks}: {e}"));
    s.query_unpaged(
        format!("CREATE TABLE IF NOT EXISTS {ks}.kv (k int PRIMARY KEY, v text)"),
        (),
    )
    .await
    .unwrap_or_else(|e| panic!("create table {ks}.kv: {e}"));
}

/// Reads `v` of key `k` from `s` (None when absent).
pub async fn read_v(s: &Session, ks: &str, k: i32) -> Option<String> {
    let rows = s
        .query_unpaged(format!("SELECT v FROM {ks}.kv WHERE k = ?"), (k,))
        .await
        .unwrap_or_else(|e| panic!("select {ks}.kv k={k}: {e}"))
        .into_rows_result()
        .unwrap();
    rows.rows::<(Option<String>,)>()
        .unwrap()
        .next()
        .and_then(|r| r.unwrap().0)
}

/// Drops a keyspace on both clusters directly (cleanup).
pub async fn drop_ks(origin: &Session, target: &Session, ks: &str) {
    for s in [origin, target] {
        let _ = s
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await;
    }
}

/// Stops the sandbox's target cluster; restarts it on drop (also when the test fails). Hold
/// `Lock::exclusive(CLUSTERS)` meanwhile: no other proxy test may see target vanish.
pub struct TargetStopped {
    script: String,
}

impl TargetStopped {
    pub fn stop(script: &str) -> TargetStopped {
        let guard = TargetStopped {
            script: script.to_string(),
        };
        let st = std::process::Command::new(script)
            .args(["cassandra-stop", "target"])
            .status()
            .expect("run sandbox.sh");
        assert!(
            st.success(),
            "sandbox.sh cassandra-stop target failed: {st}"
        );
        guard
    }

    pub fn start(&mut self) {
        let st = std::process::Command::new(&self.script)
            .args(["cassandra-start", "target"])
            .status()
            .expect("run sandbox.sh");
        assert!(
            st.success(),
            "sandbox.sh cassandra-start target failed: {st}"
        );
        self.script.clear();
    }
}

impl Drop for TargetStopped {
    fn drop(&mut self) {
        if !self.script.is_empty() {
            let _ = std::process::Command::new(&self.script)
                .args(["cassandra-start", "target"])
                .status();
        }
    }
}

/// Freezes the sandbox's target Cassandra with SIGSTOP (a hung node: its sockets stay open but
/// nothing answers) and thaws it with SIGCONT on `thaw` or drop (also when the test fails). Hold
/// `Lock::exclusive(CLUSTERS)` meanwhile, and keep the freeze short.
pub struct TargetFrozen {
    pid: Option<i32>,
}

impl TargetFrozen {
    pub fn freeze(sb: &Sandbox) -> TargetFrozen {
        // scripts/sandbox.sh keeps each node in `$SANDBOX_DIR/<cluster>` with its pidfile there.
        let pidfile = PathBuf::from(sb.get("SANDBOX_DIR")).join("target/cassandra.pid");
        let text = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("target pidfile {} not readable: {e}", pidfile.display()));
        let pid: i32 = text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("target pidfile {}: {e}", pidfile.display()));
        assert_eq!(
            unsafe { libc::kill(pid, 0) },
            0,
            "target Cassandra (pid {pid}) is not running"
        );
        let guard = TargetFrozen { pid: Some(pid) };
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGSTOP) },
            0,
            "SIGSTOP {pid}"
        );
        guard
    }

    pub fn thaw(&mut self) {
        if let Some(pid) = self.pid.take() {
            assert_eq!(
                unsafe { libc::kill(pid, libc::SIGCONT) },
                0,
                "SIGCONT {pid}"
            );
        }
    }
}

impl Drop for TargetFrozen {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }
}
