//! `zdm_config_change`: does the proxy need a restart, a live reload, or nothing, to run the
//! wanted config?
//!
//! WHY: a phase change alters only `primary_cluster`/`read_mode`, which the proxy reloads in
//! place (`POST /reload`) without closing a single client connection; a restart drains every
//! connection of the host. So the rolling step compares the config the wanted settings render
//! to (`src`, the same template the `template` task writes) with the config the running process
//! was started or last reloaded with (`running`, a copy kept by restart/reload), key by key:
//! - nothing differs: `action: none`;
//! - only settings the proxy reloads differ ([`RELOADABLE`]): `action: reload`;
//! - any other setting differs, or there is no record of what runs: `action: restart`.
//!
//! It never changes the host, so it also runs in check mode and the plan tells reload from
//! restart. Only setting *names* are reported, never values, except the wanted values of the
//! reloadable settings (`live`), which hold no secret and which the reload task expects `/config`
//! to report afterwards.

use std::collections::BTreeSet;

use futures::FutureExt;
use serde_json::{Map, Value};

use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{
    arg_str, render_template, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned,
};
use crate::modules::{Query, Query::Done};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_config_change",
    free_form: false,
    any_args: false,
    args: &[("src", Kind::Scalar), ("running", Kind::Scalar)],
    one_of_required: &[],
    required: &["src", "running"],
};

/// The settings zdm-proxy applies on a live reload: the proxy's own list, from the crate both
/// programs share (`zdm_proxy_settings`). A change of any other setting needs a restart.
pub const RELOADABLE: &[&str] = zdm_proxy_settings::RELOADABLE;

/// What it takes for the running proxy to run the wanted config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// `none`, `reload` or `restart`.
    pub action: &'static str,
    /// Every setting whose value differs (sorted).
    pub changed: Vec<String>,
    /// The changed settings a reload cannot apply (sorted).
    pub restart_only: Vec<String>,
}

/// Compares two parsed configs key by key (an absent key differs from a present one).
pub fn classify(running: &Map<String, Value>, wanted: &Map<String, Value>) -> Classified {
    let keys: BTreeSet<&String> = running.keys().chain(wanted.keys()).collect();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| running.get(*k) != wanted.get(*k))
        .cloned()
        .collect();
    let restart_only: Vec<String> = changed
        .iter()
        .filter(|k| !RELOADABLE.contains(&k.as_str()))
        .cloned()
        .collect();
    let action = if changed.is_empty() {
        "none"
    } else if restart_only.is_empty() {
        "reload"
    } else {
        "restart"
    };
    Classified {
        action,
        changed,
        restart_only,
    }
}

/// Parses a proxy config (a YAML mapping; an empty file is an empty mapping).
fn parse(what: &str, text: &str) -> Result<Map<String, Value>, String> {
    let v: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("{what}: {e}"))?;
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => Err(format!("{what}: not a mapping of settings")),
    }
}

pub struct ZdmConfigChange;

impl ZdmConfigChange {
    async fn run(ctx: &ModuleCtx<'_>) -> Result<ModResult, ModuleError> {
        let src = arg_str(ctx.args, "src").unwrap_or_default();
        let running_path = arg_str(ctx.args, "running").unwrap_or_default();
        let rendered = render_template(ctx, &src)?;
        let wanted = parse(&format!("rendered {src}"), &rendered).map_err(ModuleError::Failed)?;
        let mut live = Map::new();
        for k in RELOADABLE {
            if let Some(v) = wanted.get(*k) {
                live.insert((*k).to_string(), Value::from(crate::vars::display(v)));
            }
        }
        let running = ctx.transport.read_file(&running_path).await?;
        let (c, msg) = match running {
            None => (
                Classified {
                    action: "restart",
                    changed: vec![],
                    restart_only: vec![],
                },
                format!("restart: no record of the config the running proxy uses ({running_path})"),
            ),
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let running = parse(&running_path, &text).map_err(ModuleError::Failed)?;
                let c = classify(&running, &wanted);
                let msg = match c.action {
                    "none" => "none: the proxy runs the wanted settings".to_string(),
                    "reload" => format!("reload: live settings changed ({})", c.changed.join(", ")),
                    _ => format!(
                        "restart: changed settings that need a restart: {} (all changed: {})",
                        c.restart_only.join(", "),
                        c.changed.join(", ")
                    ),
                };
                (c, msg)
            }
        };
        let mut data = Map::new();
        data.insert("action".into(), Value::from(c.action));
        data.insert("changed_settings".into(), Value::from(c.changed));
        data.insert("restart_settings".into(), Value::from(c.restart_only));
        data.insert("live".into(), Value::Object(live));
        Ok(ModResult {
            msg: Some(msg),
            data,
            ..Default::default()
        })
    }
}

impl Module for ZdmConfigChange {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move { Ok(Done(Self::run(ctx).await?)) }.boxed()
    }

    fn apply<'a>(&'a self, _: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async move { Ok(ModResult::ok()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Map<String, Value> {
        parse("test", text).unwrap()
    }

    const BASE: &str = "primary_cluster: ORIGIN\nread_mode: PRIMARY_ONLY\nlog_level: INFO\n\
                        proxy_listen_port: 9042\norigin_contact_points: \"10.0.0.2\"\n";

    #[test]
    fn live_settings_reload_and_others_restart() {
        let base = cfg(BASE);
        assert_eq!(classify(&base, &base).action, "none");
        let phase3 = cfg(&BASE.replace("PRIMARY_ONLY", "DUAL_ASYNC_ON_SECONDARY"));
        let c = classify(&base, &phase3);
        assert_eq!(
            (c.action, c.changed.clone()),
            ("reload", vec!["read_mode".into()])
        );
        let moved = cfg(&BASE.replace("9042", "9043").replace("INFO", "DEBUG"));
        let c = classify(&base, &moved);
        assert_eq!(c.action, "restart");
        assert_eq!(c.restart_only, vec!["proxy_listen_port".to_string()]);
        assert_eq!(
            c.changed,
            vec!["log_level".to_string(), "proxy_listen_port".into()]
        );
        let contact = cfg(&BASE.replace("10.0.0.2", "10.0.0.9"));
        assert_eq!(classify(&base, &contact).action, "restart");
    }

    #[test]
    fn a_setting_added_or_removed_counts_as_changed() {
        let base = cfg(BASE);
        let more = cfg(&format!("{BASE}proxy_max_stream_ids: 4096\n"));
        assert_eq!(
            classify(&base, &more).restart_only,
            vec!["proxy_max_stream_ids"]
        );
        assert_eq!(classify(&more, &base).action, "restart");
        let timeout = cfg(&format!("{BASE}proxy_request_timeout_ms: 9000\n"));
        assert_eq!(classify(&base, &timeout).action, "reload");
    }

    #[test]
    fn comments_and_layout_do_not_count() {
        let a = cfg(BASE);
        let b = cfg(&format!("# managed by zdm-run\n\n{BASE}"));
        assert_eq!(classify(&a, &b).action, "none");
    }
}
