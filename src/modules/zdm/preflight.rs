//! `zdm_preflight`: can a proxy send every request unchanged to both clusters?
//!
//! Runs [`crate::gates::preflight::run_preflight`] from the control machine (use it with
//! `run_once`/`delegate_to: localhost`): reachability with the configured credentials, a common
//! protocol version, the same partitioner and identical schemas of the selected keyspaces.
//! Connection settings are the host's `origin_*`/`target_*` variables, as the proxy uses them.

use futures::FutureExt;

use super::common::{cluster_from_vars, describe_selection, gate_result, selection};
use crate::gates::preflight::run_preflight;
use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{ModFuture, ModResult, Module, ModuleCtx, Planned, Query};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_preflight",
    free_form: false,
    any_args: false,
    args: &[
        ("keyspaces", Kind::ScalarList),
        ("tables", Kind::ScalarList),
    ],
    one_of_required: &[],
    required: &[],
};

pub struct ZdmPreflight;

impl Module for ZdmPreflight {
    /// Gates measure live systems, so there is nothing to compare ahead of time: check mode
    /// reports exactly what would be checked, against which clusters.
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let origin = cluster_from_vars(ctx.vars, "origin")?;
            let target = cluster_from_vars(ctx.vars, "target")?;
            let sel = selection(ctx.args, ctx.vars)?;
            Ok(Query::Run(Planned {
                summary: format!(
                    "check origin ({}:{}) and target ({}:{}): both reachable with the configured \
                     credentials, a common protocol version (v4), the same partitioner, and \
                     identical keyspaces, tables, columns, types and primary keys for {}",
                    origin.contact_points.join(","),
                    origin.port,
                    target.contact_points.join(","),
                    target.port,
                    describe_selection(&sel)
                ),
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let origin = cluster_from_vars(ctx.vars, "origin")?;
            let target = cluster_from_vars(ctx.vars, "target")?;
            let sel = selection(ctx.args, ctx.vars)?;
            let checks = run_preflight(&origin, &target, &sel).await;
            Ok(gate_result("preflight", &checks))
        }
        .boxed()
    }
}
