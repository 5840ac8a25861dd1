//! `zdm_health_gate`: may the fleet of proxies move on to the next phase?
//!
//! Every proxy's `/health/readiness` must answer 200, then `/metrics` is watched over an
//! observation window and judged by [`crate::gates::health`]. Runs from the control machine
//! (`run_once`); the proxies are found from the `proxies` group (`ansible_host` and
//! `metrics_port`, default 14001) unless a `proxies` list of URLs is given. Every threshold is
//! an argument or a playbook variable (`zdm_observe_seconds`, `zdm_max_failed_write_ratio`, ...)
//! so a demo can shorten the window without editing playbooks.
//!
//! `readiness_only: true` asks readiness and nothing else (gate name `readiness`): the entry
//! check of a transition, which must refuse at once, before anything is recorded, when a
//! proxy sees a cluster DOWN (the metrics window is the previous phase's exit gate).

use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;

use super::common::{flag, gate_result, number, string_list};
use crate::gates::health::{run_health_gate, run_readiness_gate, HealthThresholds};
use crate::gates::{Check, DEFAULT_METRICS_PORT};
use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{
    arg_bool, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query,
};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_health_gate",
    free_form: false,
    any_args: false,
    args: &[
        ("proxies", Kind::ScalarList),
        ("observe_seconds", Kind::Number),
        ("max_failed_write_ratio", Kind::Number),
        ("max_failed_read_ratio", Kind::Number),
        ("check_target_latency", Kind::Bool),
        ("max_async_read_error_ratio", Kind::Number),
        ("max_async_read_mismatch_ratio", Kind::Number),
        ("max_target_p99_ratio", Kind::Number),
        ("target_p99_floor_seconds", Kind::Number),
        ("accept_divergent_tables", Kind::ScalarList),
        ("readiness_only", Kind::Bool),
    ],
    one_of_required: &[],
    required: &[],
};

pub struct ZdmHealthGate;

/// The fleet as (name, base URL): the `proxies` argument (URLs, named by themselves), else every
/// host of the `proxies` group at `http://<ansible_host>:<metrics_port>`.
pub fn proxy_urls(ctx: &ModuleCtx<'_>) -> Result<Vec<(String, String)>, ModuleError> {
    let given = string_list(ctx.args.get("proxies"));
    if !given.is_empty() {
        return Ok(given
            .into_iter()
            .map(|u| {
                let u = u.trim_end_matches('/').to_string();
                (u.clone(), u)
            })
            .collect());
    }
    let hosts = string_list(ctx.vars.get("groups").and_then(|g| g.get("proxies")));
    if hosts.is_empty() {
        return Err(ModuleError::Failed(
            "no proxies to check: the inventory has no 'proxies' group and no 'proxies' argument \
             (a list of http://host:port metrics URLs) was given"
                .into(),
        ));
    }
    hosts
        .into_iter()
        .map(|h| {
            let hv = ctx.hostvars.get(&h);
            let addr = hv
                .and_then(|v| v.get("ansible_host"))
                .map(crate::vars::display)
                .unwrap_or_else(|| h.clone());
            let port = match hv.and_then(|v| v.get("metrics_port")) {
                None | Some(Value::Null) => DEFAULT_METRICS_PORT,
                Some(p) => crate::vars::display(p).trim().parse().map_err(|_| {
                    ModuleError::Failed(format!("host {h}: metrics_port {p} is not a port number"))
                })?,
            };
            Ok((h, format!("http://{addr}:{port}")))
        })
        .collect()
}

/// The thresholds from arguments, else playbook variables, else the defaults.
pub fn thresholds(ctx: &ModuleCtx<'_>) -> Result<HealthThresholds, ModuleError> {
    let d = HealthThresholds::default();
    let n =
        |arg: &str, default: f64| number(ctx.args, ctx.vars, arg, &format!("zdm_{arg}"), default);
    let observe = n("observe_seconds", d.observe.as_secs_f64())?;
    if !(0.0..=86_400.0).contains(&observe) {
        return Err(ModuleError::Failed(format!(
            "observe_seconds must be between 0 and 86400, got {observe}"
        )));
    }
    Ok(HealthThresholds {
        observe: Duration::from_secs_f64(observe),
        max_failed_write_ratio: n("max_failed_write_ratio", d.max_failed_write_ratio)?,
        max_failed_read_ratio: n("max_failed_read_ratio", d.max_failed_read_ratio)?,
        check_target_latency: flag(
            ctx.args,
            ctx.vars,
            "check_target_latency",
            "zdm_check_target_latency",
            d.check_target_latency,
        ),
        max_async_read_error_ratio: n("max_async_read_error_ratio", d.max_async_read_error_ratio)?,
        max_async_read_mismatch_ratio: n(
            "max_async_read_mismatch_ratio",
            d.max_async_read_mismatch_ratio,
        )?,
        max_target_p99_ratio: n("max_target_p99_ratio", d.max_target_p99_ratio)?,
        target_p99_floor: n("target_p99_floor_seconds", d.target_p99_floor)?,
        accept_divergent_tables: string_list(
            ctx.args
                .get("accept_divergent_tables")
                .or_else(|| ctx.vars.get("zdm_accept_divergent_tables")),
        ),
    })
}

/// What the gate will hold the fleet to, in one line (check mode's plan).
pub fn describe(proxies: &[(String, String)], t: &HealthThresholds) -> String {
    let names: Vec<&str> = proxies.iter().map(|(n, _)| n.as_str()).collect();
    let mut s = format!(
        "check {} proxies ({}): /health/readiness 200 (origin and target UP), then over {:.0} s \
         of /metrics: failed writes <= {:.3}%, failed reads <= {:.3}%, no write the clusters \
         cannot keep equal (functions left to each cluster, LWTs applied on one only, counter \
         updates failed on one) outside zdm_accept_divergent_tables",
        proxies.len(),
        names.join(", "),
        t.observe.as_secs_f64(),
        t.max_failed_write_ratio * 100.0,
        t.max_failed_read_ratio * 100.0
    );
    if t.check_target_latency {
        s.push_str(&format!(
            ", failed shadow reads on target <= {:.3}%, shadow reads differing from origin <= {:.3}%, \
             target p99 <= x{:.2} of origin p99 (or <= {:.1} ms)",
            t.max_async_read_error_ratio * 100.0,
            t.max_async_read_mismatch_ratio * 100.0,
            t.max_target_p99_ratio,
            t.target_p99_floor * 1000.0
        ));
    }
    s
}

impl Module for ZdmHealthGate {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let proxies = proxy_urls(ctx)?;
            let summary = if arg_bool(ctx.args, "readiness_only", false) {
                let names: Vec<&str> = proxies.iter().map(|(n, _)| n.as_str()).collect();
                format!(
                    "check {} proxies ({}): /health/readiness 200 (origin and target UP)",
                    proxies.len(),
                    names.join(", ")
                )
            } else {
                describe(&proxies, &thresholds(ctx)?)
            };
            Ok(Query::Run(Planned {
                summary,
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let proxies = proxy_urls(ctx)?;
            let (gate, checks) = if arg_bool(ctx.args, "readiness_only", false) {
                let checks = run_readiness_gate(&proxies)
                    .await
                    .map_err(|e| ModuleError::Failed(format!("http client: {e:#}")))?;
                ("readiness", checks)
            } else {
                let limits = thresholds(ctx)?;
                let checks = match run_health_gate(&proxies, &limits).await {
                    Ok(checks) => checks,
                    // A proxy that answers readiness but not /metrics cannot be judged: that fails.
                    Err(e) => vec![Check {
                        name: "metrics".into(),
                        passed: false,
                        measured: format!("cannot scrape /metrics: {e:#}"),
                        threshold: "every proxy serves /metrics".into(),
                    }],
                };
                ("health", checks)
            };
            let mut r = gate_result(gate, &checks);
            r.data.insert(
                "proxies".into(),
                Value::from(proxies.iter().map(|(_, u)| u.clone()).collect::<Vec<_>>()),
            );
            Ok(r)
        }
        .boxed()
    }
}
