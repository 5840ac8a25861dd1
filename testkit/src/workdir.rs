//! A private working directory for `zdm-run`: an `inventory/` of the test's own (the migration
//! state is written beside it) and whatever playbooks the test writes.

use std::path::PathBuf;
use std::process::Command;

use crate::binaries::zdm_run;
use crate::run::Run;

pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    /// A directory with `inventory/hosts.yml` holding `inventory`.
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

    /// `zdm-run ARGS` in this directory, with none of the caller's `ZDM_INVENTORY`/`ZDM_LOG`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = zdm_run();
        c.current_dir(self.dir.path())
            .env_remove("ZDM_INVENTORY")
            .env_remove("ZDM_LOG")
            .args(args);
        c
    }

    /// Runs `zdm-run ARGS -i inventory` (playbook mode) and returns what it printed.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args).args(["-i", "inventory"]))
    }

    /// The migration state file written beside the inventory.
    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("inventory/zdm-state.json"))
            .expect("the state file beside the inventory");
        serde_json::from_str(&text).expect("state is JSON")
    }
}
