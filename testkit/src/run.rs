//! A finished (or still running) process of the binaries under test, and what it printed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A finished process: its exit code, what it printed and how long it took.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout then stderr, or for a [`Running`] process both as the lines arrived.
    pub out: String,
    pub took: Duration,
}

impl Run {
    /// Runs `cmd` to the end.
    pub fn of(cmd: &mut Command) -> Run {
        let started = Instant::now();
        let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
        let mut run = Run::from(out);
        run.took = started.elapsed();
        run
    }

    /// A copy of [`Run::out`], for tests that collect outputs.
    pub fn all(&self) -> String {
        self.out.clone()
    }

    /// stdout as a JSON document (`--output json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts exit code 0 with the output in the message.
    pub fn assert_ok(&self, what: &str) {
        assert_eq!(
            self.code, 0,
            "{what}: zdm-run exited {}:\n{}",
            self.code, self.out
        );
    }

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

    /// Lines `<status>: [<host>] ...` of the output.
    pub fn results(&self, status: &str) -> Vec<&str> {
        self.out
            .lines()
            .filter(|l| l.starts_with(&format!("{status}: [")))
            .collect()
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        Run {
            code: o.status.code().unwrap_or(-1),
            out: format!("{stdout}\n{stderr}"),
            stdout,
            stderr,
            took: Duration::ZERO,
        }
    }
}

/// One counter of a host's recap in a `--json` run (`ok`, `changed`, `failed`, ...); panics
/// naming the host and counter when the recap has no such entry.
pub fn recap_stat(doc: &serde_json::Value, host: &str, key: &str) -> u64 {
    doc["stats"][host][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats.{host}.{key} in {}", doc["stats"]))
}

/// `(task, host, status)` of every result in a `--output json` document, in order.
pub fn statuses(doc: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for play in doc["plays"].as_array().unwrap() {
        for task in play["tasks"].as_array().unwrap() {
            let name = task["name"].as_str().unwrap().to_string();
            for (host, r) in task["hosts"].as_object().unwrap() {
                let reports = match r {
                    serde_json::Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                for rep in reports {
                    out.push((
                        name.clone(),
                        host.clone(),
                        rep["status"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    out
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

/// Which pipe a line came from.
enum Line {
    Stdout(String),
    Stderr(String),
}

/// A process still running, with its output lines as they arrive (for acting at a given moment
/// of a run). Killed when dropped unfinished.
pub struct Running {
    child: Child,
    started: Instant,
    lines: mpsc::Receiver<Line>,
    stdout: String,
    stderr: String,
    /// Every line so far, both pipes as they arrived.
    pub seen: String,
}

impl Running {
    /// Starts `cmd` with both pipes read line by line.
    pub fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        read_lines(stdout, tx.clone(), Line::Stdout);
        read_lines(stderr, tx, Line::Stderr);
        Running {
            child,
            started: Instant::now(),
            lines: rx,
            stdout: String::new(),
            stderr: String::new(),
            seen: String::new(),
        }
    }

    /// Reads output until a line contains `needle` (panics after `limit` or at the end).
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if self.keep(line).contains(needle) {
                        return;
                    }
                }
                Err(_) => panic!(
                    "the process never printed '{needle}' within {limit:?}:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the end (bounded) and returns everything it printed.
    pub fn finish(mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait for the process") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the process did not finish within {limit:?}:\n{}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // The reader threads end with the pipes.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.keep(line);
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
            out: std::mem::take(&mut self.seen),
            took: self.started.elapsed(),
        }
    }

    /// Records a line; returns it.
    fn keep(&mut self, line: Line) -> &str {
        let (pipe, text) = match line {
            Line::Stdout(t) => (&mut self.stdout, t),
            Line::Stderr(t) => (&mut self.stderr, t),
        };
        pipe.push_str(&text);
        pipe.push('\n');
        let from = self.seen.len();
        self.seen.push_str(&text);
        self.seen.push('\n');
        &self.seen[from..]
    }
}

fn read_lines(pipe: impl Read + Send + 'static, tx: mpsc::Sender<Line>, wrap: fn(String) -> Line) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(wrap(line)).is_err() {
                break;
            }
        }
    });
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `zdm-run -i <the sandbox's inventory> ARGS` in `dir`.
pub fn zdm_run_in(sb: &crate::Sandbox, dir: &std::path::Path, args: &[&str]) -> Run {
    Run::of(
        crate::binaries::zdm_run()
            .current_dir(dir)
            .args(["-i", sb.get("SANDBOX_INVENTORY")])
            .args(args),
    )
}
