//! `file`: directories, symlinks, absence, and attributes of existing paths.

use futures::FutureExt;
use serde_json::Value;

use super::files_common::FILE_ATTRS;
use super::spec::{Kind, ModuleSpec};
use super::{
    arg_bool, arg_str, parse_mode, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned,
    Query,
};
use crate::transport::{FileKind, Ownership};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "file",
    free_form: false,
    any_args: false,
    args: &[
        ("path", Kind::Scalar),
        ("dest", Kind::Scalar),
        ("name", Kind::Scalar),
        (
            "state",
            Kind::OneOf(&["file", "directory", "absent", "link", "touch"]),
        ),
        ("src", Kind::Scalar),
        FILE_ATTRS[0],
        FILE_ATTRS[1],
        FILE_ATTRS[2],
        ("force", Kind::Bool),
    ],
    one_of_required: &["path", "dest", "name"],
    required: &[],
};

pub struct File;

fn path_arg(ctx: &ModuleCtx<'_>) -> String {
    arg_str(ctx.args, "path")
        .or_else(|| arg_str(ctx.args, "dest"))
        .or_else(|| arg_str(ctx.args, "name"))
        .unwrap_or_default()
}

fn ownership(ctx: &ModuleCtx<'_>) -> Ownership {
    if !ctx.transport.is_root() {
        return Ownership::default();
    }
    Ownership {
        owner: arg_str(ctx.args, "owner"),
        group: arg_str(ctx.args, "group"),
    }
}

impl Module for File {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let path = path_arg(ctx);
            let stat = ctx.transport.stat(&path).await?;
            let state = arg_str(ctx.args, "state").unwrap_or_else(|| {
                match &stat {
                    Some(s) if s.kind == FileKind::Directory => "directory",
                    Some(s) if s.kind == FileKind::Symlink => "link",
                    _ => "file",
                }
                .to_string()
            });
            let mode = ctx.args.get("mode").map(parse_mode).transpose()?;
            let owner = ownership(ctx);
            let (want_uid, want_gid) = ctx.transport.owner_ids(&owner).await?;
            let change = |summary: String, action: &str| {
                let mut detail = serde_json::Map::new();
                detail.insert("action".into(), Value::String(action.into()));
                Query::Change(Planned {
                    summary,
                    detail,
                    ..Default::default()
                })
            };
            let attrs_differ =
                |s: &crate::transport::FileStat| -> Result<Vec<String>, ModuleError> {
                    let mut out = Vec::new();
                    if let Some(m) = mode {
                        if s.mode != m {
                            out.push(format!("mode {:04o} -> {m:04o}", s.mode));
                        }
                    }
                    if want_uid.is_some_and(|u| u != s.uid) || want_gid.is_some_and(|g| g != s.gid)
                    {
                        out.push("owner".into());
                    }
                    Ok(out)
                };
            match state.as_str() {
                "absent" => Ok(match stat {
                    Some(_) => change(format!("{path}: remove"), "remove"),
                    None => Query::Done(ModResult::ok()),
                }),
                "directory" => match stat {
                    None => Ok(change(format!("{path}: create directory"), "mkdir")),
                    Some(s) if s.kind == FileKind::Directory => {
                        let d = attrs_differ(&s)?;
                        Ok(if d.is_empty() {
                            Query::Done(ModResult::ok())
                        } else {
                            change(format!("{path}: {}", d.join(", ")), "attrs")
                        })
                    }
                    Some(_) => Err(ModuleError::Failed(format!(
                        "{path} exists and is not a directory"
                    ))),
                },
                "link" => {
                    let src = arg_str(ctx.args, "src").ok_or_else(|| {
                        ModuleError::Failed("state=link needs src (the link target)".into())
                    })?;
                    match stat {
                        Some(s) if s.kind == FileKind::Symlink => {
                            Ok(if s.link_target.as_deref() == Some(src.as_str()) {
                                Query::Done(ModResult::ok())
                            } else {
                                change(
                                    format!(
                                        "{path}: relink {} -> {src}",
                                        s.link_target.unwrap_or_default()
                                    ),
                                    "link",
                                )
                            })
                        }
                        Some(_) if !arg_bool(ctx.args, "force", false) => {
                            Err(ModuleError::Failed(format!(
                                "{path} exists and is not a symlink (use force: true to replace)"
                            )))
                        }
                        _ => Ok(change(format!("{path}: link -> {src}"), "link")),
                    }
                }
                "touch" => match stat {
                    None => Ok(change(format!("{path}: create empty file"), "touch")),
                    Some(s) => {
                        let d = attrs_differ(&s)?;
                        Ok(if d.is_empty() {
                            Query::Done(ModResult::ok())
                        } else {
                            change(format!("{path}: {}", d.join(", ")), "attrs")
                        })
                    }
                },
                _ => match stat {
                    None => Err(ModuleError::Failed(format!(
                        "{path} does not exist (state=file only changes attributes; use \
                         state=touch to create it)"
                    ))),
                    Some(s) => {
                        let d = attrs_differ(&s)?;
                        Ok(if d.is_empty() {
                            Query::Done(ModResult::ok())
                        } else {
                            change(format!("{path}: {}", d.join(", ")), "attrs")
                        })
                    }
                },
            }
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, plan: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let path = path_arg(ctx);
            let mode = ctx.args.get("mode").map(parse_mode).transpose()?;
            let owner = ownership(ctx);
            let action = plan
                .detail
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("");
            match action {
                "remove" => ctx.transport.remove(&path).await?,
                "mkdir" => {
                    ctx.transport.mkdir(&path, mode.unwrap_or(0o755)).await?;
                    ctx.transport.set_attrs(&path, mode, &owner).await?;
                }
                "link" => {
                    let src = arg_str(ctx.args, "src").unwrap_or_default();
                    if let Some(s) = ctx.transport.stat(&path).await? {
                        if s.kind == FileKind::Directory {
                            return Err(ModuleError::Failed(format!(
                                "{path} is a directory; refusing to replace it with a link"
                            )));
                        }
                    }
                    ctx.transport.symlink(&src, &path).await?;
                }
                "touch" => {
                    ctx.transport
                        .write_file(&path, b"", mode.unwrap_or(0o644), &owner)
                        .await?
                }
                _ => ctx.transport.set_attrs(&path, mode, &owner).await?,
            }
            Ok(ModResult {
                changed: true,
                msg: Some(plan.summary.clone()),
                ..Default::default()
            })
        }
        .boxed()
    }
}
