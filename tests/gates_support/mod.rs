//! Shared helpers of the gate and phase-state tests: running the zdm-run binary in a private
//! directory, reading its JSON output, and a small HTTP server standing in for proxies' health
//! and metrics endpoints.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A private working directory with an `inventory/` and playbooks.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new(inventory: &str) -> Workdir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("inventory")).unwrap();
        std::fs::write(dir.path().join("inventory/hosts.yml"), inventory).unwrap();
        Workdir { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_zdm-run"));
        c.current_dir(self.dir.path())
            .env_remove("ZDM_INVENTORY")
            .env_remove("ZDM_LOG")
            .args(args);
        c
    }

    /// Runs `zdm-run ARGS -i inventory` (playbook mode) and returns what it printed.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut c = self.command(args);
        c.args(["-i", "inventory"]);
        Run(c.output().expect("run zdm-run"))
    }

    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("inventory/zdm-state.json"))
            .expect("the state file beside the inventory");
        serde_json::from_str(&text).expect("state is JSON")
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout(), self.stderr()))
    }
}

/// The result of task `name` on its (first) host in a `--output json` document.
pub fn task_result(doc: &serde_json::Value, name: &str) -> serde_json::Value {
    for play in doc["plays"].as_array().expect("plays") {
        for task in play["tasks"].as_array().expect("tasks") {
            if task["name"] == name {
                let hosts = task["hosts"].as_object().expect("hosts");
                return hosts.values().next().expect("a host result").clone();
            }
        }
    }
    panic!("no task named {name} in {doc}")
}

/// The sandbox inventory copied into a private directory, so the migration state written
/// beside it is this test's own (the sandbox is shared with other tests and helpers).
pub fn sandbox_inventory() -> String {
    let env = crate::data_support::sandbox_env();
    let dir = env
        .get("SANDBOX_INVENTORY")
        .expect("the sandbox env file has no SANDBOX_INVENTORY");
    std::fs::read_to_string(Path::new(dir).join("hosts.yml"))
        .unwrap_or_else(|e| panic!("the sandbox inventory {dir}/hosts.yml: {e}"))
}

/// What a stand-in proxy answers.
pub struct ProxyBehaviour {
    /// `/health/readiness` status and the two clusters' status words.
    pub ready: bool,
    pub target_down: bool,
    /// Added to the writes counter on every `/metrics` scrape.
    pub writes_per_scrape: u64,
    /// Added to the failed-writes counter on every scrape.
    pub failed_writes_per_scrape: u64,
}

/// A real HTTP server on 127.0.0.1 serving `/health/readiness` and `/metrics` the way the
/// proxy does. It stands in for a proxy because the gate and `status` only speak HTTP to it.
pub struct FakeProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub behaviour: Arc<Mutex<ProxyBehaviour>>,
}

impl FakeProxy {
    pub fn start(behaviour: ProxyBehaviour) -> FakeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (s, b) = (stop.clone(), behaviour.clone());
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(conn, &b, &scrapes);
                }
            }
        });
        FakeProxy {
            port,
            stop,
            handle: Some(handle),
            behaviour,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(conn: TcpStream, behaviour: &Mutex<ProxyBehaviour>, scrapes: &AtomicU64) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let b = behaviour.lock().unwrap();
    let (status, body) = match path.as_str() {
        "/health/readiness" => {
            let target = if b.target_down { "DOWN" } else { "UP" };
            let overall = if b.ready && !b.target_down {
                "UP"
            } else {
                "DOWN"
            };
            let code = if overall == "UP" { 200 } else { 503 };
            (
                code,
                format!(
                    r#"{{"OriginStatus":{{"Addr":"10.0.0.1:9042","CurrentFailureCount":0,"FailureCountThreshold":1,"Status":"UP"}},"TargetStatus":{{"Addr":"10.0.0.2:9042","CurrentFailureCount":0,"FailureCountThreshold":1,"Status":"{target}"}},"Status":"{overall}"}}"#
                ),
            )
        }
        "/metrics" => {
            let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
            (
                200,
                format!(
                    "# TYPE zdm_proxy_request_duration_seconds histogram\n\
                     zdm_proxy_request_duration_seconds_count{{type=\"writes\"}} {}\n\
                     zdm_proxy_request_duration_seconds_count{{type=\"reads_origin\"}} {}\n\
                     zdm_proxy_request_duration_seconds_count{{type=\"reads_target\"}} 0\n\
                     zdm_proxy_failed_writes_total{{failed_on=\"origin\"}} 0\n\
                     zdm_proxy_failed_writes_total{{failed_on=\"target\"}} {}\n\
                     zdm_proxy_failed_writes_total{{failed_on=\"both\"}} 0\n\
                     zdm_proxy_failed_reads_total{{cluster=\"origin\"}} 0\n",
                    n * b.writes_per_scrape,
                    n * b.writes_per_scrape,
                    n * b.failed_writes_per_scrape
                ),
            )
        }
        _ => (404, "not found".to_string()),
    };
    let reason = match status {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
