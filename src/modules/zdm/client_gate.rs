//! `zdm_client_gate`: waits until no client is connected to any proxy (phase 5, before the
//! proxies stop). Arguments, else playbook variables, else defaults: `wait_seconds`
//! (`zdm_cutover_client_wait_seconds`, 120), `max_client_connections`
//! (`zdm_cutover_max_client_connections`, 0), `proxies` (metrics URLs; default the `proxies`
//! group). Reads only, so check mode shows the plan and runs nothing.

use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;

use super::common::{gate_result, number};
use super::health_gate::proxy_urls;
use crate::gates::clients::wait_for_clients_to_leave;
use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_client_gate",
    free_form: false,
    any_args: false,
    args: &[
        ("proxies", Kind::ScalarList),
        ("wait_seconds", Kind::Number),
        ("max_client_connections", Kind::Number),
    ],
    one_of_required: &[],
    required: &[],
};

pub struct ZdmClientGate;

const POLL: Duration = Duration::from_secs(2);

fn limits(ctx: &ModuleCtx<'_>) -> Result<(Duration, f64), ModuleError> {
    let wait = number(
        ctx.args,
        ctx.vars,
        "wait_seconds",
        "zdm_cutover_client_wait_seconds",
        120.0,
    )?;
    if !(0.0..=86_400.0).contains(&wait) {
        return Err(ModuleError::Failed(format!(
            "wait_seconds must be between 0 and 86400, got {wait}"
        )));
    }
    let max = number(
        ctx.args,
        ctx.vars,
        "max_client_connections",
        "zdm_cutover_max_client_connections",
        0.0,
    )?;
    if max < 0.0 {
        return Err(ModuleError::Failed(format!(
            "max_client_connections must not be negative, got {max}"
        )));
    }
    Ok((Duration::from_secs_f64(wait), max))
}

impl Module for ZdmClientGate {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let proxies = proxy_urls(ctx)?;
            let (wait, max) = limits(ctx)?;
            let names: Vec<&str> = proxies.iter().map(|(n, _)| n.as_str()).collect();
            Ok(Query::Run(Planned {
                summary: format!(
                    "wait up to {:.0} s until {} proxies ({}) have <= {max} client connections",
                    wait.as_secs_f64(),
                    proxies.len(),
                    names.join(", ")
                ),
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let proxies = proxy_urls(ctx)?;
            let (wait, max) = limits(ctx)?;
            let check = wait_for_clients_to_leave(&proxies, max, wait, POLL)
                .await
                .map_err(|e| ModuleError::Failed(format!("{e:#}")))?;
            let mut r = gate_result("cutover", &[check]);
            r.data.insert(
                "proxies".into(),
                Value::from(proxies.iter().map(|(_, u)| u.clone()).collect::<Vec<_>>()),
            );
            Ok(r)
        }
        .boxed()
    }
}
