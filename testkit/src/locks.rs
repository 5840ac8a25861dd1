//! The locks that order tests (and the demo and benchmarks) sharing one sandbox.
//!
//! Test binaries run in parallel, so these are file locks (`flock`), which also order separate
//! processes. Every lock file lives in [`LOCK_DIR`], a fixed directory rather than `$TMPDIR`:
//! the sandbox is one per machine, so two runs with different `TMPDIR`s must still exclude each
//! other. `scripts/demo.sh` takes the same files.
//!
//! Whoever needs several takes them in the order listed here (deploy, then clusters, then
//! faults), so no two holders can wait on each other.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Where every lock file is.
pub const LOCK_DIR: &str = "/tmp";

/// A resource several suites use, named by its lock file.
#[derive(Clone, Copy, Debug)]
pub struct Shared(&'static str);

/// The fleet's default install root and ports: a test deploying with the playbooks holds it
/// exclusively.
pub const DEPLOY: Shared = Shared("zdm-run-deploy-tests.lock");
/// Origin and target: a test stopping (or freezing) a cluster holds it exclusively, every test
/// that needs both clusters up holds it shared.
pub const CLUSTERS: Shared = Shared("zdm-proxy-tests.lock");
/// The SSH fleet's fault switches (cut, sshd-stop, rekey): a test flipping one holds it
/// exclusively, tests that need every host healthy hold it shared.
pub const FAULTS: Shared = Shared("zdm-run-ssh-tests-faults.lock");

impl Shared {
    pub fn path(self) -> PathBuf {
        PathBuf::from(LOCK_DIR).join(self.0)
    }
}

/// A lock held until dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    resource: Shared,
}

impl Lock {
    /// Waits for `resource` shared.
    pub fn shared(resource: Shared) -> Lock {
        Self::take(resource, false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for `resource` exclusively.
    pub fn exclusive(resource: Shared) -> Lock {
        Self::take(resource, true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for `resource`; for tools that report errors rather than panic.
    pub fn take(resource: Shared, exclusive: bool) -> std::io::Result<Lock> {
        let path = resource.path();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| annotate(e, &format!("open the lock {}", path.display())))?;
        let lock = Lock { file, resource };
        lock.set(exclusive)?;
        Ok(lock)
    }

    /// Converts the lock this holder has to exclusive or back to shared (blocks until granted).
    /// Converting on the same descriptor is what lets a holder of the shared lock go exclusive:
    /// a second descriptor of this process asking for it would wait forever on our own shared
    /// lock.
    pub fn convert(&self, exclusive: bool) {
        self.set(exclusive).unwrap_or_else(|e| panic!("{e}"));
    }

    fn set(&self, exclusive: bool) -> std::io::Result<()> {
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a descriptor we own; it blocks until the lock is granted and is
        // released when the file is closed.
        if unsafe { libc::flock(self.file.as_raw_fd(), op) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(annotate(
                e,
                &format!("flock {}", self.resource.path().display()),
            ));
        }
        Ok(())
    }
}

fn annotate(e: std::io::Error, what: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}
