//! `fetch`: copies a file from each host to the control machine, into
//! `<dest>/<inventory_hostname>/<src path>` (or `<dest>` itself with `flat: true`), so the logs
//! of a fleet land side by side without overwriting each other.

use std::path::{Path, PathBuf};

use futures::FutureExt;
use serde_json::Value;
use sha2::Digest;

use super::spec::{Kind, ModuleSpec};
use super::{
    arg_bool, arg_str, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query,
};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "fetch",
    free_form: false,
    any_args: false,
    args: &[
        ("src", Kind::Scalar),
        ("dest", Kind::Scalar),
        ("flat", Kind::Bool),
        ("fail_on_missing", Kind::Bool),
    ],
    one_of_required: &[],
    required: &["src", "dest"],
};

pub struct Fetch;

/// The local file a host's `src` goes to.
fn local_path(ctx: &ModuleCtx<'_>, src: &str, dest: &str, flat: bool) -> PathBuf {
    let base = Path::new(dest);
    let base = if base.is_absolute() {
        base.to_path_buf()
    } else {
        ctx.base_dir.join(base)
    };
    if flat {
        if dest.ends_with('/') {
            let name = Path::new(src)
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_default();
            return base.join(name);
        }
        return base;
    }
    base.join(ctx.host).join(src.trim_start_matches('/'))
}

impl Module for Fetch {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let src = arg_str(ctx.args, "src").unwrap_or_default();
            let dest = arg_str(ctx.args, "dest").unwrap_or_default();
            if src.contains("..") && Path::new(&src).components().any(|c| c.as_os_str() == "..") {
                return Err(ModuleError::Failed(format!(
                    "src '{src}' must not contain '..'"
                )));
            }
            let local = local_path(ctx, &src, &dest, arg_bool(ctx.args, "flat", false));
            let Some(bytes) = ctx.transport.read_file(&src).await? else {
                if arg_bool(ctx.args, "fail_on_missing", true) {
                    return Err(ModuleError::Failed(format!(
                        "the remote file {src} does not exist on {}",
                        ctx.host
                    )));
                }
                return Ok(Query::Done(ModResult::msg(format!(
                    "{src} does not exist; skipped"
                ))));
            };
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            let mut data = serde_json::Map::new();
            data.insert("dest".into(), Value::from(local.display().to_string()));
            data.insert("checksum".into(), Value::from(sha.clone()));
            let same = std::fs::read(&local)
                .map(|old| sha2::Sha256::digest(&old)[..] == sha2::Sha256::digest(&bytes)[..])
                .unwrap_or(false);
            if same {
                return Ok(Query::Done(ModResult {
                    msg: Some(format!("{} is up to date", local.display())),
                    data,
                    ..Default::default()
                }));
            }
            Ok(Query::Change(Planned {
                summary: format!("fetch {src} to {}", local.display()),
                content: Some(bytes),
                detail: data,
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, _ctx: &'a ModuleCtx<'a>, plan: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let dest = plan
                .detail
                .get("dest")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let dest = Path::new(dest);
            let bytes = plan.content.as_deref().unwrap_or_default();
            let fail = |what: &str, e: std::io::Error| {
                ModuleError::Failed(format!("{what} {}: {e}", dest.display()))
            };
            let dir = dest.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| fail("create directory for", e))?;
            // Temporary file + rename: a reader never sees half a log.
            let mut tmp = tempfile::Builder::new()
                .prefix(".zdm-fetch-")
                .tempfile_in(dir)
                .map_err(|e| fail("create temporary file for", e))?;
            std::io::Write::write_all(&mut tmp, bytes).map_err(|e| fail("write", e))?;
            tmp.persist(dest)
                .map_err(|e| fail("rename into", e.error))?;
            Ok(ModResult {
                changed: true,
                msg: Some(plan.summary.clone()),
                data: plan.detail.clone(),
                ..Default::default()
            })
        }
        .boxed()
    }
}
