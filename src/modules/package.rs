//! `package` (alias `apt`): makes sure Debian packages are installed.
//!
//! The query asks `dpkg-query` for each package's status, so a host where the package is
//! already installed (a prepared image, a mirror-fed machine, the sandbox, whose hosts share
//! the machine's packages) is left alone and check mode can tell what would be installed. Only
//! missing packages are passed to `apt-get install` (non-interactive, without recommended
//! packages, so nothing unasked for is pulled in or started); `update_cache: true` runs
//! `apt-get update` first, and only when something is missing.

use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;

use super::spec::{Kind, ModuleSpec};
use super::{arg_bool, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query};
use crate::transport::CommandSpec;

const ARGS: &[(&str, Kind)] = &[
    ("name", Kind::ScalarList),
    ("state", Kind::OneOf(&["present"])),
    ("update_cache", Kind::Bool),
];

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "package",
    free_form: false,
    any_args: false,
    args: ARGS,
    one_of_required: &[],
    required: &["name"],
};

pub static APT_SPEC: ModuleSpec = ModuleSpec {
    name: "apt",
    free_form: false,
    any_args: false,
    args: ARGS,
    one_of_required: &[],
    required: &["name"],
};

/// An install may download and unpack for a while on a slow mirror.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);

pub struct Package;

/// The package names of the task, each checked to be a Debian package name (they end up on a
/// command line).
fn names(ctx: &ModuleCtx<'_>) -> Result<Vec<String>, ModuleError> {
    let list: Vec<String> = match ctx.args.get("name") {
        Some(Value::Array(items)) => items.iter().map(crate::vars::display).collect(),
        Some(Value::Null) | None => vec![],
        Some(v) => crate::vars::display(v)
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    };
    if list.is_empty() {
        return Err(ModuleError::Failed("name: no package given".into()));
    }
    for n in &list {
        let ok = n.len() >= 2
            && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !ok {
            return Err(ModuleError::Failed(format!(
                "name: '{n}' is not a Debian package name"
            )));
        }
    }
    Ok(list)
}

/// Which of `names` dpkg does not report as installed. `dpkg-query -W` prints one status
/// line per known package and nothing for a package it never saw.
pub(crate) fn missing(names: &[String], dpkg_output: &str) -> Vec<String> {
    let installed: Vec<&str> = dpkg_output
        .lines()
        .filter_map(|l| {
            let (name, status) = l.split_once(' ')?;
            status
                .trim()
                .ends_with("ok installed")
                .then_some(name.split(':').next().unwrap_or(name))
        })
        .collect();
    names
        .iter()
        .filter(|n| !installed.contains(&n.as_str()))
        .cloned()
        .collect()
}

impl Module for Package {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let names = names(ctx)?;
            let mut argv = vec![
                "dpkg-query".to_string(),
                "-W".into(),
                "-f".into(),
                "${Package} ${Status}\\n".into(),
            ];
            argv.extend(names.iter().cloned());
            let out = ctx
                .transport
                .run(CommandSpec {
                    argv,
                    timeout: Some(Duration::from_secs(60)),
                    ..Default::default()
                })
                .await?;
            // rc 1 only means "some package is unknown"; anything else is dpkg itself failing.
            if out.rc > 1 {
                return Err(ModuleError::Failed(format!(
                    "dpkg-query failed on {} (rc {}): {}",
                    ctx.host,
                    out.rc,
                    out.stderr.trim()
                )));
            }
            let missing = missing(&names, &out.stdout);
            let mut data = serde_json::Map::new();
            data.insert("missing".into(), Value::from(missing.clone()));
            if missing.is_empty() {
                return Ok(Query::Done(ModResult {
                    msg: Some(format!("installed: {}", names.join(", "))),
                    data,
                    ..Default::default()
                }));
            }
            Ok(Query::Change(Planned {
                summary: format!("apt-get install {}", missing.join(" ")),
                detail: data,
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, plan: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let missing: Vec<String> = plan
                .detail
                .get("missing")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(crate::vars::display).collect())
                .unwrap_or_default();
            let quoted: Vec<String> = missing
                .iter()
                .map(|n| crate::transport::ssh::shell_quote(n))
                .collect();
            let update = if arg_bool(ctx.args, "update_cache", false) {
                "apt-get update -qq && "
            } else {
                ""
            };
            let script = format!(
                "{update}DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {}",
                quoted.join(" ")
            );
            let out = ctx
                .transport
                .run(CommandSpec {
                    shell: Some(script),
                    timeout: Some(INSTALL_TIMEOUT),
                    ..Default::default()
                })
                .await?;
            if out.rc != 0 {
                return Ok(ModResult::failed(format!(
                    "apt-get install {} failed on {} (rc {}): {}",
                    missing.join(" "),
                    ctx.host,
                    out.rc,
                    out.stderr.trim()
                )));
            }
            Ok(ModResult {
                changed: true,
                msg: Some(format!("installed {}", missing.join(", "))),
                data: plan.detail.clone(),
                ..Default::default()
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::missing;

    #[test]
    fn dpkg_status_lines_tell_what_is_missing() {
        let names: Vec<String> = ["prometheus", "curl", "libc6"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = "prometheus install ok installed\ncurl deinstall ok config-files\nlibc6:amd64 install ok installed\n";
        assert_eq!(missing(&names, out), vec!["curl".to_string()]);
        assert_eq!(missing(&names, ""), names);
    }
}
