//! `zdm_peers_ready`: is every other proxy ready, asked all at once?
//!
//! Before one proxy is taken down, every peer must answer its readiness URL with 200 so
//! the clients have somewhere to fail over to. A `uri` loop asks the peers one after another,
//! each with its own retries: on 100 hosts with nothing ready that is 99 × retries × delay
//! per host (over 11 minutes for one host of a dry run). Here every peer is asked at the same
//! time, each with the same retries, so the task takes as long as the slowest peer.
//!
//! Arguments: `peers` (inventory names), `url_var` (the host variable holding a peer's
//! readiness URL, default `zdm_readiness_url`, read from `hostvars`), `timeout` per request
//! (5 s), `retries` (5) and `delay` (2 s) between the attempts of one peer.
//!
//! Check mode: `serving_var` names a fact saying whether a peer served clients when the run
//! began (deploy.yml's `zdm_was_serving`). A peer where it is false is one this run starts in
//! an earlier play; a dry run started nothing, so such a peer is not asked (it is listed under
//! `not_asked`): waiting for it would only time out, and a real run finds it ready.
//!
//! Read-only: it runs in check mode and never reports a change. The registered value has
//! `ready`, `not_ready` (names), `not_asked`, and `results` (one `{item, status, url}` per
//! peer asked, status -1 when nothing answered).

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

use super::common::string_list;
use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{
    arg_f64, arg_str, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Query,
};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_peers_ready",
    free_form: false,
    any_args: false,
    args: &[
        ("peers", Kind::ScalarList),
        ("url_var", Kind::Scalar),
        ("serving_var", Kind::Scalar),
        ("timeout", Kind::Number),
        ("retries", Kind::Int),
        ("delay", Kind::Number),
    ],
    one_of_required: &[],
    required: &["peers"],
};

/// At most this many peers are asked at the same moment (each ask is one small HTTP GET).
const MAX_IN_FLIGHT: usize = 128;

pub struct ZdmPeersReady;

/// How to ask: the same for every peer.
#[derive(Debug, Clone, Copy)]
struct Asking {
    timeout: Duration,
    attempts: u64,
    delay: Duration,
}

/// One peer's readiness URL from `hostvars`.
fn peer_url(ctx: &ModuleCtx<'_>, peer: &str, url_var: &str) -> Result<String, ModuleError> {
    ctx.hostvars
        .get(peer)
        .and_then(|v| v.get(url_var))
        .filter(|v| !v.is_null())
        .map(crate::vars::display)
        .ok_or_else(|| {
            ModuleError::Failed(format!(
                "peer {peer}: variable {url_var} (its readiness URL) is not defined"
            ))
        })
}

/// True when the peer's `serving_var` fact says it served no client when the run began.
fn started_by_this_run(ctx: &ModuleCtx<'_>, peer: &str, serving_var: &str) -> bool {
    ctx.hostvars
        .get(peer)
        .and_then(|v| v.get(serving_var))
        .is_some_and(|v| !crate::vars::truthy(v))
}

/// Asks one URL until it answers 200 or the attempts run out; the last status (-1: no answer).
async fn ask(client: &reqwest::Client, url: &str, how: Asking) -> i64 {
    let mut status = -1;
    for attempt in 1..=how.attempts {
        status = match client.get(url).timeout(how.timeout).send().await {
            Ok(r) => i64::from(r.status().as_u16()),
            Err(_) => -1,
        };
        if status == 200 {
            break;
        }
        if attempt < how.attempts {
            tokio::time::sleep(how.delay).await;
        }
    }
    status
}

async fn check_peers(ctx: &ModuleCtx<'_>) -> Result<ModResult, ModuleError> {
    let peers = string_list(ctx.args.get("peers"));
    let url_var = arg_str(ctx.args, "url_var").unwrap_or_else(|| "zdm_readiness_url".into());
    let serving_var = arg_str(ctx.args, "serving_var");
    let check = ctx
        .vars
        .get("ansible_check_mode")
        .is_some_and(crate::vars::truthy);
    let retries = arg_f64(ctx.args, "retries")?.unwrap_or(5.0);
    if !(0.0..=10_000.0).contains(&retries) {
        return Err(ModuleError::Failed(format!(
            "retries must be between 0 and 10000, got {retries}"
        )));
    }
    let how = Asking {
        timeout: Duration::from_secs_f64(arg_f64(ctx.args, "timeout")?.unwrap_or(5.0).max(0.1)),
        attempts: retries as u64 + 1,
        delay: Duration::from_secs_f64(arg_f64(ctx.args, "delay")?.unwrap_or(2.0).max(0.0)),
    };
    let mut asked = Vec::new();
    let mut not_asked = Vec::new();
    for p in &peers {
        match &serving_var {
            Some(var) if check && started_by_this_run(ctx, p, var) => not_asked.push(p.clone()),
            _ => asked.push((p.clone(), peer_url(ctx, p, &url_var)?)),
        }
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| ModuleError::Failed(format!("HTTP client: {e}")))?;
    // Owned futures (a cloned client is a handle to the same pool): a stream of futures
    // borrowing `asked` trips the compiler's higher-ranked lifetime check inside a boxed future.
    let asks: Vec<_> = asked
        .iter()
        .map(|(_, url)| {
            let (client, url) = (client.clone(), url.clone());
            async move { ask(&client, &url, how).await }
        })
        .collect();
    let statuses: Vec<i64> = futures::stream::iter(asks)
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await;
    let not_ready: Vec<String> = asked
        .iter()
        .zip(&statuses)
        .filter(|(_, s)| **s != 200)
        .map(|((p, _), _)| p.clone())
        .collect();
    let results: Vec<Value> = asked
        .iter()
        .zip(&statuses)
        .map(|((p, url), s)| json!({"item": p, "status": s, "url": url}))
        .collect();
    let mut msg = format!(
        "{} of {} peers ready",
        asked.len() - not_ready.len(),
        asked.len()
    );
    if !not_ready.is_empty() {
        msg.push_str(&format!("; not ready: {}", not_ready.join(", ")));
    }
    if !not_asked.is_empty() {
        msg.push_str(&format!(
            "; not asked (check mode: this run starts them first): {}",
            not_asked.join(", ")
        ));
    }
    let mut r = ModResult::msg(msg);
    r.data
        .insert("ready".into(), Value::Bool(not_ready.is_empty()));
    r.data.insert("not_ready".into(), json!(not_ready));
    r.data.insert("not_asked".into(), json!(not_asked));
    r.data.insert("results".into(), Value::Array(results));
    Ok(r)
}

impl Module for ZdmPeersReady {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move { check_peers(ctx).await.map(Query::Done) }.boxed()
    }
}
