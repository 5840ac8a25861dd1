//! A `local` fleet of three hosts for integration tests: each host's files live under its
//! own temporary root (the `zdm_local_root` host variable), so one machine plays three.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
/// The fleet's database password: must never appear in any output.
pub const DB_PASSWORD: &str = "S3cr3t-Pa55w0rd";

pub struct Fleet {
    pub dir: tempfile::TempDir,
}

impl Fleet {
    /// Creates the inventory and copies the fixtures (playbooks, templates) beside it.
    pub fn new() -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let fleet = Fleet { dir };
        let mut inv = String::from("fleet:\n  vars:\n    ansible_connection: local\n");
        inv.push_str(&format!("    db_password: {DB_PASSWORD}\n  hosts:\n"));
        for h in HOSTS {
            let root = fleet.root(h);
            std::fs::create_dir_all(&root).unwrap();
            inv.push_str(&format!(
                "    {h}:\n      zdm_local_root: {}\n",
                root.display()
            ));
        }
        std::fs::create_dir_all(fleet.path("inventory")).unwrap();
        std::fs::write(fleet.path("inventory/hosts.yml"), inv).unwrap();
        copy_dir(&fixtures(), &fleet.path("playbooks"));
        fleet
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The directory standing for host `h`'s `/`.
    pub fn root(&self, h: &str) -> PathBuf {
        self.dir.path().join("hosts").join(h)
    }

    /// A file on host `h` (absolute host path).
    pub fn host_file(&self, h: &str, path: &str) -> PathBuf {
        self.root(h).join(path.trim_start_matches('/'))
    }

    pub fn write_playbook(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path("playbooks").join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs zdm-run with the fleet's inventory (from the fleet directory).
    pub fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_zdm-run"))
            .current_dir(self.dir.path())
            .env_remove("ZDM_INVENTORY")
            .args(["-i", "inventory"])
            .args(args)
            .output()
            .expect("run zdm-run");
        Run::from(out)
    }

    /// Every file under the host roots, with content, for before/after comparisons.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        walk(&self.dir.path().join("hosts"), &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            out.push((format!("{}/", p.display()), vec![]));
            walk(&p, out);
        } else if md.file_type().is_symlink() {
            out.push((
                p.display().to_string(),
                std::fs::read_link(&p)
                    .unwrap()
                    .display()
                    .to_string()
                    .into_bytes(),
            ));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A finished zdm-run process.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// `(task, host) -> status` from a JSON document, in order.
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
