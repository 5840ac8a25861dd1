//! A `local` fleet of three hosts: each host's files live under its own temporary root (the
//! `zdm_local_root` host variable), so one machine plays three.

use std::path::{Path, PathBuf};

use crate::binaries::workspace_root;
use crate::run::Run;
use crate::workdir::Workdir;

pub const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
/// The fleet's database password: must never appear in any output.
pub const DB_PASSWORD: &str = "S3cr3t-Pa55w0rd";

/// A [`Workdir`] whose inventory is the three local hosts, with the fixtures (playbooks,
/// templates) copied to `playbooks/`.
pub struct LocalFleet {
    work: Workdir,
}

impl std::ops::Deref for LocalFleet {
    type Target = Workdir;
    fn deref(&self) -> &Workdir {
        &self.work
    }
}

impl LocalFleet {
    pub fn new() -> LocalFleet {
        let work = Workdir::new("");
        let mut inv = String::from("fleet:\n  vars:\n    ansible_connection: local\n");
        inv.push_str(&format!("    db_password: {DB_PASSWORD}\n  hosts:\n"));
        for h in HOSTS {
            let root = host_root(&work, h);
            std::fs::create_dir_all(&root).unwrap();
            inv.push_str(&format!(
                "    {h}:\n      zdm_local_root: {}\n",
                root.display()
            ));
        }
        work.write("inventory/hosts.yml", &inv);
        copy_dir(&fixtures(), &work.path("playbooks"));
        LocalFleet { work }
    }

    /// The directory standing for host `h`'s `/`.
    pub fn root(&self, h: &str) -> PathBuf {
        host_root(&self.work, h)
    }

    /// A file on host `h` (absolute host path).
    pub fn host_file(&self, h: &str, path: &str) -> PathBuf {
        self.root(h).join(path.trim_start_matches('/'))
    }

    pub fn write_playbook(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!("playbooks/{name}"), text)
    }

    /// Runs `zdm-run -i inventory ARGS` in the fleet directory.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(&["-i", "inventory"]).args(args))
    }

    /// Every file under the host roots, with content, for before/after comparisons.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        walk(&self.path("hosts"), &mut out);
        out.sort();
        out
    }
}

impl Default for LocalFleet {
    fn default() -> Self {
        Self::new()
    }
}

fn host_root(work: &Workdir, h: &str) -> PathBuf {
    work.path("hosts").join(h)
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

/// The orchestrator's test fixtures (`tests/fixtures`).
pub fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures")
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
