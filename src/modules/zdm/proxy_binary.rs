//! `zdm_proxy_binary`: ships the proxy binary into a versioned directory and points the
//! stable `current` link at it.
//!
//! Layout on the host (`install_root`, default `/opt/zdm-proxy`):
//! `versions/<first 16 hex digits of the SHA-256>/zdm-proxy` and `current -> versions/<id>`.
//! The content hash names the version, so the host's copy is compared by checksum before a
//! single byte is sent, and a host that already has the build uploads nothing. Old versions
//! stay, so rolling a binary back is only a link swap (`previous` in the result says where).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use futures::FutureExt;
use serde_json::Value;
use sha2::Digest;

use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{
    arg_str, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query,
};
use crate::transport::Ownership;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_proxy_binary",
    free_form: false,
    any_args: false,
    args: &[("src", Kind::Scalar), ("install_root", Kind::Scalar)],
    one_of_required: &[],
    required: &[],
};

/// Default install root, shared with the `service` module and the templates.
pub const DEFAULT_INSTALL_ROOT: &str = "/opt/zdm-proxy";
/// Hex digits of the SHA-256 that name a version directory (64 bits: collisions between a
/// fleet's handful of builds are not a concern, and paths stay short).
const VERSION_ID_LEN: usize = 16;

pub struct ZdmProxyBinary;

/// The install root from the task, else the host's `zdm_install_root`, else the default.
pub fn install_root(ctx: &ModuleCtx<'_>) -> String {
    arg_str(ctx.args, "install_root")
        .or_else(|| ctx.vars.get("zdm_install_root").map(crate::vars::display))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_INSTALL_ROOT.into())
        .trim_end_matches('/')
        .to_string()
}

/// Where the binary to ship comes from: the task's `src`, else the host's (or its group's)
/// `zdm_proxy_binary_src` (another architecture), else the `zdm-proxy` built beside the
/// running `zdm-run`.
fn source(ctx: &ModuleCtx<'_>) -> Result<PathBuf, ModuleError> {
    if let Some(s) = arg_str(ctx.args, "src")
        .or_else(|| {
            ctx.vars
                .get("zdm_proxy_binary_src")
                .map(crate::vars::display)
        })
        .filter(|s| !s.trim().is_empty())
    {
        let p = PathBuf::from(&s);
        return Ok(if p.is_absolute() {
            p
        } else {
            ctx.base_dir.join(p)
        });
    }
    let exe = std::env::current_exe()
        .map_err(|e| ModuleError::Failed(format!("cannot locate zdm-run itself: {e}")))?;
    Ok(exe
        .parent()
        .map(|d| d.join("zdm-proxy"))
        .unwrap_or_else(|| PathBuf::from("zdm-proxy")))
}

/// Which version of a local file a hash is of: path, inode, size, modification time.
type FileVersion = (PathBuf, u64, u64, SystemTime);

/// The SHA-256 of each local binary this process has hashed. Process-wide on purpose: one run
/// asks for the same build once per host and per play (200 times for a 100-host deploy), and
/// hashing a ~20 MB binary each time cost the control machine seconds of CPU. A rebuilt or
/// replaced file is another inode, size or time, so it is hashed again.
static LOCAL_SHA256: LazyLock<Mutex<HashMap<FileVersion, String>>> =
    LazyLock::new(Default::default);

fn unreadable(src: &Path, e: std::io::Error) -> ModuleError {
    ModuleError::Failed(format!(
        "cannot read the proxy binary {} ({e}); build it (cargo build -p zdm-proxy) \
         or set src / zdm_proxy_binary_src",
        src.display()
    ))
}

/// The hex SHA-256 of the local binary `src` and its size, hashed once per version of the file.
fn local_sha256(src: &Path) -> Result<(String, u64), ModuleError> {
    let unreadable = |e| unreadable(src, e);
    let meta = std::fs::metadata(src).map_err(unreadable)?;
    let key = (
        src.to_path_buf(),
        meta.ino(),
        meta.len(),
        meta.modified().map_err(unreadable)?,
    );
    // Held while hashing: the forks that ask at the same moment wait for one hash instead of
    // each computing it.
    let mut cache = LOCAL_SHA256.lock().expect("hash cache lock");
    if let Some(sha) = cache.get(&key) {
        return Ok((sha.clone(), meta.len()));
    }
    let bytes = std::fs::read(src).map_err(unreadable)?;
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    cache.insert(key, sha.clone());
    Ok((sha, meta.len()))
}

impl Module for ZdmProxyBinary {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let src = source(ctx)?;
            let (sha, size) = local_sha256(&src)?;
            let root = install_root(ctx);
            let version = &sha[..VERSION_ID_LEN];
            let dir = format!("{root}/versions/{version}");
            let bin = format!("{dir}/zdm-proxy");
            let link = format!("{root}/current");
            let t = ctx.transport;
            let present = t.checksum(&bin).await?.as_deref() == Some(sha.as_str())
                && t.stat(&bin).await?.is_some_and(|s| s.mode & 0o111 != 0);
            let current = t.stat(&link).await?.and_then(|s| s.link_target);
            let mut data = serde_json::Map::new();
            data.insert("sha256".into(), Value::from(sha.clone()));
            data.insert("version".into(), Value::from(version));
            data.insert("path".into(), Value::from(bin.clone()));
            data.insert("src".into(), Value::from(src.display().to_string()));
            if present && current.as_deref() == Some(dir.as_str()) {
                data.insert("uploaded".into(), Value::Bool(false));
                return Ok(Query::Done(ModResult {
                    msg: Some(format!("version {version} is current")),
                    data,
                    ..Default::default()
                }));
            }
            let what = if present {
                format!("switch current to {version} (already on host)")
            } else {
                format!(
                    "upload {} ({size} bytes) and switch current to {version}",
                    src.display()
                )
            };
            data.insert("upload".into(), Value::Bool(!present));
            data.insert(
                "previous".into(),
                current.clone().map(Value::from).unwrap_or(Value::Null),
            );
            data.insert("dir".into(), Value::from(dir.clone()));
            data.insert("link".into(), Value::from(link));
            Ok(Query::Change(Planned {
                summary: what,
                diff: Some(format!(
                    "--- current\n+++ current\n-{}\n+{dir}\n",
                    current.as_deref().unwrap_or("(none)")
                )),
                // Read by `apply`, only when it uploads: a dry run of a new fleet would
                // otherwise hold a copy of the binary per host in flight.
                content: None,
                detail: data,
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, plan: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let d = &plan.detail;
            let get = |k: &str| {
                d.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (dir, bin, link, sha) = (get("dir"), get("path"), get("link"), get("sha256"));
            let upload = d.get("upload") == Some(&Value::Bool(true));
            let t = ctx.transport;
            if upload {
                let src = PathBuf::from(get("src"));
                let bytes = std::fs::read(&src).map_err(|e| unreadable(&src, e))?;
                t.mkdir(&dir, 0o755).await?;
                t.write_file(&bin, &bytes, 0o755, &Ownership::default())
                    .await?;
                // What landed must be what we hashed: a truncated upload, or a file rebuilt
                // since the query hashed it, must never become `current`.
                let landed = t.checksum(&bin).await?;
                if landed.as_deref() != Some(sha.as_str()) {
                    return Err(ModuleError::Failed(format!(
                        "uploaded {bin} has checksum {} instead of {sha}",
                        landed.unwrap_or_else(|| "(missing)".into())
                    )));
                }
            }
            t.symlink(&dir, &link).await?;
            let mut data = d.clone();
            data.insert("uploaded".into(), Value::Bool(upload));
            for k in ["upload", "dir", "link"] {
                data.remove(k);
            }
            Ok(ModResult {
                changed: true,
                msg: Some(plan.summary.clone()),
                data,
                diff: plan.diff.clone(),
                ..Default::default()
            })
        }
        .boxed()
    }
}
