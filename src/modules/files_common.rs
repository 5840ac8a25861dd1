//! `template` and `copy`: make a file on the host hold given content with given attributes.
//!
//! Both compute the wanted bytes on the control machine, compare them and the attributes
//! with the host in `query`, and in `apply` validate (if asked), back up (if asked) and write
//! atomically, so a failed validation or an interrupted run leaves the old file in place.

use std::path::{Path, PathBuf};

use futures::FutureExt;
use serde_json::Value;

use super::spec::{Kind, ModuleSpec};
use super::{
    arg_bool, arg_str, parse_mode, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned,
    Query,
};
use crate::transport::{FileKind, Ownership};

/// Renders a Jinja2 template file from the control machine onto the host.
/// The attributes every file module takes.
pub(super) const FILE_ATTRS: [(&str, Kind); 4] = [
    ("mode", Kind::Scalar),
    ("owner", Kind::Scalar),
    ("group", Kind::Scalar),
    ("backup", Kind::Bool),
];

pub static TEMPLATE_SPEC: ModuleSpec = ModuleSpec {
    name: "template",
    free_form: false,
    any_args: false,
    args: &[
        ("src", Kind::Scalar),
        ("dest", Kind::Scalar),
        FILE_ATTRS[0],
        FILE_ATTRS[1],
        FILE_ATTRS[2],
        FILE_ATTRS[3],
        ("validate", Kind::Scalar),
        ("force", Kind::Bool),
    ],
    one_of_required: &[],
    required: &["src", "dest"],
};

pub static COPY_SPEC: ModuleSpec = ModuleSpec {
    name: "copy",
    free_form: false,
    any_args: false,
    args: &[
        ("src", Kind::Scalar),
        ("content", Kind::Any),
        ("dest", Kind::Scalar),
        FILE_ATTRS[0],
        FILE_ATTRS[1],
        FILE_ATTRS[2],
        FILE_ATTRS[3],
        ("validate", Kind::Scalar),
        ("force", Kind::Bool),
    ],
    one_of_required: &["src", "content"],
    required: &["dest"],
};

pub struct Template;
/// Copies a control-machine file (`src`) or literal `content` onto the host.
pub struct Copy;

/// Finds a `src:` file: `templates/`/`files/` beside the task's file, the task's
/// directory, `../templates`/`../files` (the repository layout puts templates beside
/// playbooks/), then the working directory.
pub(crate) fn find_src(base: &Path, sub: &str, src: &str) -> Result<PathBuf, ModuleError> {
    let p = Path::new(src);
    if p.is_absolute() {
        return if p.exists() {
            Ok(p.to_path_buf())
        } else {
            Err(ModuleError::Failed(format!("src {src} not found")))
        };
    }
    let candidates = [
        base.join(sub).join(src),
        base.join(src),
        base.join("..").join(sub).join(src),
        PathBuf::from(src),
    ];
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| {
            let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            ModuleError::Failed(format!(
                "src '{src}' not found (looked in {})",
                tried.join(", ")
            ))
        })
}

/// Finds the template `src` (see [`find_src`]) and renders it with the task's variables.
pub(crate) fn render_template(ctx: &ModuleCtx<'_>, src: &str) -> Result<String, ModuleError> {
    let path = find_src(ctx.base_dir, "templates", src)?;
    let source = std::fs::read_to_string(&path).map_err(|e| {
        ModuleError::Failed(format!("cannot read template {}: {e}", path.display()))
    })?;
    Ok(ctx.templar.render_str(src, &source, ctx.vars)?)
}

impl Module for Template {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let src = arg_str(ctx.args, "src").unwrap_or_default();
            let rendered = render_template(ctx, &src)?;
            plan_file(ctx, rendered.into_bytes()).await
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, plan: &'a Planned) -> ModFuture<'a, ModResult> {
        apply_file(ctx, plan).boxed()
    }
}

impl Module for Copy {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let content = match ctx.args.get("content") {
                Some(Value::String(s)) => s.clone().into_bytes(),
                Some(Value::Null) | None => {
                    let src = arg_str(ctx.args, "src").unwrap_or_default();
                    let path = find_src(ctx.base_dir, "files", &src)?;
                    std::fs::read(&path).map_err(|e| {
                        ModuleError::Failed(format!("cannot read {}: {e}", path.display()))
                    })?
                }
                // Mappings and lists are written as JSON, as Ansible does.
                Some(other) => other.to_string().into_bytes(),
            };
            plan_file(ctx, content).await
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, plan: &'a Planned) -> ModFuture<'a, ModResult> {
        apply_file(ctx, plan).boxed()
    }
}

fn ownership(ctx: &ModuleCtx<'_>) -> Ownership {
    // Changing owners needs root; elsewhere the options are ignored rather than failing, so
    // the same playbook works for an unprivileged local test fleet.
    if !ctx.transport.is_root() {
        return Ownership::default();
    }
    Ownership {
        owner: arg_str(ctx.args, "owner"),
        group: arg_str(ctx.args, "group"),
    }
}

/// Compares wanted content and attributes with the host.
async fn plan_file(ctx: &ModuleCtx<'_>, content: Vec<u8>) -> Result<Query, ModuleError> {
    let dest = arg_str(ctx.args, "dest").unwrap_or_default();
    let wanted_mode = ctx.args.get("mode").map(parse_mode).transpose()?;
    let owner = ownership(ctx);
    let stat = ctx.transport.stat(&dest).await?;
    let mut changes = Vec::new();
    let mut diff = None;
    let text_of = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    match &stat {
        Some(st) if st.kind == FileKind::Directory => {
            return Err(ModuleError::Failed(format!("dest {dest} is a directory")));
        }
        Some(_) => {
            let old = ctx.transport.read_file(&dest).await?.unwrap_or_default();
            if old != content {
                if !arg_bool(ctx.args, "force", true) {
                    return Ok(Query::Done(ModResult::msg(format!(
                        "{dest} exists and force is off"
                    ))));
                }
                changes.push("update content".to_string());
                diff = Some(match (text_of(&old), text_of(&content)) {
                    (Some(a), Some(b)) => crate::diff::unified(&dest, Some(&a), Some(&b)),
                    _ => format!("Binary files a{dest} and b{dest} differ\n"),
                });
            }
        }
        None => {
            changes.push("create file".to_string());
            diff = Some(match text_of(&content) {
                Some(b) => crate::diff::unified(&dest, None, Some(&b)),
                None => format!("Binary file b{dest} created\n"),
            });
        }
    }
    // Mode: explicit; else 0600 for content holding a secret (a rendered config with a
    // password is never group/world-readable, even if an older copy was); else keep the
    // existing mode; else 0644.
    let holds_secret = {
        let text = String::from_utf8_lossy(&content);
        ctx.redactor.redact(&text) != text
    };
    let mode = wanted_mode
        .or(holds_secret.then_some(0o600))
        .or(stat.as_ref().map(|s| s.mode))
        .unwrap_or(0o644);
    if let Some(st) = &stat {
        if st.mode != mode {
            changes.push(format!("mode {:04o} -> {mode:04o}", st.mode));
        }
        let (uid, gid) = ctx.transport.owner_ids(&owner).await?;
        if uid.is_some_and(|u| u != st.uid) || gid.is_some_and(|g| g != st.gid) {
            changes.push("owner".to_string());
        }
    }
    if changes.is_empty() {
        return Ok(Query::Done(ModResult::ok()));
    }
    let mut detail = serde_json::Map::new();
    detail.insert("mode".into(), Value::from(mode));
    detail.insert(
        "write".into(),
        Value::Bool(
            changes
                .iter()
                .any(|c| c.contains("content") || c.contains("create")),
        ),
    );
    Ok(Query::Change(Planned {
        summary: format!("{dest}: {}", changes.join(", ")),
        diff,
        content: Some(content),
        detail,
    }))
}

async fn apply_file(ctx: &ModuleCtx<'_>, plan: &Planned) -> Result<ModResult, ModuleError> {
    let dest = arg_str(ctx.args, "dest").unwrap_or_default();
    let mode = plan
        .detail
        .get("mode")
        .and_then(Value::as_u64)
        .unwrap_or(0o644) as u32;
    let owner = ownership(ctx);
    let content = plan.content.as_deref().unwrap_or_default();
    let write = plan
        .detail
        .get("write")
        .is_some_and(|w| w == &Value::Bool(true));
    let mut result = ModResult {
        changed: true,
        diff: plan.diff.clone(),
        msg: Some(plan.summary.clone()),
        ..Default::default()
    };
    if !write {
        ctx.transport.set_attrs(&dest, Some(mode), &owner).await?;
        return Ok(result);
    }
    if let Some(cmd) = arg_str(ctx.args, "validate") {
        validate(ctx, &dest, content, &cmd).await?;
    }
    if arg_bool(ctx.args, "backup", false) {
        if let Some(b) = ctx.transport.backup(&dest).await? {
            result.data.insert("backup_file".into(), Value::String(b));
        }
    }
    ctx.transport
        .write_file(&dest, content, mode, &owner)
        .await?;
    result.data.insert("dest".into(), Value::String(dest));
    Ok(result)
}

/// Writes the new content beside `dest` and runs the validate command on it (`%s` is the
/// file); a non-zero exit refuses the change before `dest` is touched.
async fn validate(
    ctx: &ModuleCtx<'_>,
    dest: &str,
    content: &[u8],
    cmd: &str,
) -> Result<(), ModuleError> {
    if !cmd.contains("%s") {
        return Err(ModuleError::Failed(format!(
            "validate command '{cmd}' must contain %s (the file to check)"
        )));
    }
    let tmp = validate_copy_path(dest);
    ctx.transport
        .write_file(&tmp, content, 0o600, &Ownership::default())
        .await?;
    let guard = RemoveOnDrop {
        transport: ctx.transport,
        path: Some(tmp.clone()),
    };
    let real_tmp = ctx.transport.path_for_command(&tmp);
    let out = ctx
        .transport
        .run(crate::transport::CommandSpec {
            shell: Some(cmd.replace("%s", &crate::transport::shlex_quote(&real_tmp))),
            timeout: Some(std::time::Duration::from_secs(120)),
            ..Default::default()
        })
        .await;
    guard.remove().await;
    let out = out?;
    if out.rc != 0 {
        return Err(ModuleError::Failed(format!(
            "validation of {dest} failed (rc={}): {}",
            out.rc,
            out.stderr.trim()
        )));
    }
    Ok(())
}

/// Where the copy checked by `validate` goes: beside `dest` (same filesystem, same
/// directory permissions) under a `.zdm-` name, so that leftovers are recognisable and the
/// file keeps its extension (validators such as `nginx -t` may look at it).
fn validate_copy_path(dest: &str) -> String {
    let (dir, base) = match dest.rsplit_once('/') {
        Some((d, b)) => (format!("{d}/"), b),
        None => (String::new(), dest),
    };
    format!("{dir}.zdm-validate-{}-{base}", std::process::id())
}

/// How long an interrupted run waits for the validate copy to be removed.
const CLEANUP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Removes the validate copy (the new content, maybe with secrets) also when the task's
/// future is dropped mid-command, which is what Ctrl-C does to a running task.
///
/// WHY a blocking wait in `drop`: there is no async drop, and the interrupted run drops the
/// task on the thread that drives the whole run while the runtime's workers keep running,
/// so the removal can complete there. The wait is bounded so a dead host cannot hang the
/// exit.
struct RemoveOnDrop<'a> {
    transport: &'a dyn crate::transport::Transport,
    path: Option<String>,
}

impl RemoveOnDrop<'_> {
    async fn remove(mut self) {
        if let Some(p) = self.path.take() {
            let _ = self.transport.remove(&p).await;
        }
    }
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let Some(p) = self.path.take() else {
            return;
        };
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(CLEANUP_WAIT);
            let _ = tx.send(());
        });
        let remove = self.transport.remove(&p);
        futures::executor::block_on(futures::future::select(remove, rx));
    }
}

#[cfg(test)]
mod validate_copy_tests {
    use super::validate_copy_path;

    #[test]
    fn the_validate_copy_is_a_dot_zdm_file_beside_dest_keeping_its_extension() {
        let pid = std::process::id();
        assert_eq!(
            validate_copy_path("/etc/app/site.conf"),
            format!("/etc/app/.zdm-validate-{pid}-site.conf")
        );
        assert_eq!(
            validate_copy_path("rel.yml"),
            format!(".zdm-validate-{pid}-rel.yml")
        );
    }
}
