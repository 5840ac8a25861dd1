//! Where the workspace and the binaries under test are.
//!
//! Cargo tells an integration test where its own package's binaries are (`CARGO_BIN_EXE_*`),
//! but only while compiling that test; this crate serves both packages, so it finds them where
//! cargo puts them: in the directory above the test executable's `deps/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The workspace root (this crate is one of its members).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit lives inside the workspace")
        .to_path_buf()
}

/// A binary of this workspace built beside the running test or bench; panics when it is not
/// there, saying how to build it.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test");
    let mut dir = exe.parent().expect("the test's directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: run the tests with cargo (`cargo test --workspace`, or build it with \
         `cargo build --bin {name}` first)",
        binary.display()
    );
    binary
}

/// `zdm-run`, not yet started.
pub fn zdm_run() -> Command {
    Command::new(built_binary("zdm-run"))
}

/// The `zdm-proxy` binary of this workspace, refused when older than the proxy's sources.
///
/// `cargo test -p zdm-run` does not rebuild it, and building it from inside a test would resolve
/// the proxy's dependencies with other features and rebuild them for minutes, so the test run
/// builds it once (`cargo test --workspace`) and tests refuse a stale one rather than test or
/// deploy old code.
pub fn proxy_binary() -> PathBuf {
    let binary = built_binary("zdm-proxy");
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let sources = workspace_root().join("proxy/src");
    let newest = newest_mtime(&sources);
    assert!(
        newest <= built,
        "{} is older than the proxy sources in {}: rebuild it (`cargo test --workspace` or \
         `cargo build -p zdm-proxy`)",
        binary.display(),
        sources.display()
    );
    binary
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
