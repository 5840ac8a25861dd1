//! `uri` (HTTP requests) and `wait_for` (ports and paths).

use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::Value;

use super::spec::{Kind, ModuleSpec};
use super::{
    arg_bool, arg_f64, arg_str, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned,
    Query,
};

pub static URI_SPEC: ModuleSpec = ModuleSpec {
    name: "uri",
    free_form: false,
    any_args: false,
    args: &[
        ("url", Kind::Scalar),
        (
            "method",
            Kind::OneOf(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        ),
        ("body", Kind::Any),
        ("body_format", Kind::OneOf(&["json", "raw"])),
        ("headers", Kind::Mapping),
        ("status_code", Kind::IntList),
        ("return_content", Kind::Bool),
        ("timeout", Kind::Number),
        ("validate_certs", Kind::Bool),
    ],
    one_of_required: &[],
    required: &["url"],
};

pub static WAIT_FOR_SPEC: ModuleSpec = ModuleSpec {
    name: "wait_for",
    free_form: false,
    any_args: false,
    args: &[
        ("host", Kind::Scalar),
        ("port", Kind::Int),
        ("path", Kind::Scalar),
        (
            "state",
            Kind::OneOf(&["started", "stopped", "present", "absent"]),
        ),
        ("timeout", Kind::Number),
        ("delay", Kind::Number),
        ("sleep", Kind::Number),
        ("connect_timeout", Kind::Number),
        ("msg", Kind::Scalar),
    ],
    one_of_required: &["port", "path"],
    required: &[],
};

pub struct Uri;
pub struct WaitFor;

fn method(ctx: &ModuleCtx<'_>) -> String {
    arg_str(ctx.args, "method")
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase()
}

impl Module for Uri {
    /// GET and HEAD only read, so they are performed during the query (also in check mode:
    /// health checks are exactly what a dry run wants to know). Other methods change
    /// something remote and "would run".
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let m = method(ctx);
            if m == "GET" || m == "HEAD" {
                return request(ctx).await.map(Query::Done);
            }
            Ok(Query::Run(Planned {
                summary: format!("{m} {}", arg_str(ctx.args, "url").unwrap_or_default()),
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let mut r = request(ctx).await?;
            r.changed = !r.failed;
            Ok(r)
        }
        .boxed()
    }
}

fn status_codes(ctx: &ModuleCtx<'_>) -> Result<Vec<u16>, ModuleError> {
    let parse = |v: &Value| -> Result<u16, ModuleError> {
        crate::vars::display(v)
            .trim()
            .parse()
            .map_err(|_| ModuleError::Failed(format!("status_code: '{v}' is not an HTTP status")))
    };
    match ctx.args.get("status_code") {
        None | Some(Value::Null) => Ok(vec![200]),
        Some(Value::Array(a)) => a.iter().map(parse).collect(),
        Some(v) => Ok(vec![parse(v)?]),
    }
}

async fn request(ctx: &ModuleCtx<'_>) -> Result<ModResult, ModuleError> {
    let url = arg_str(ctx.args, "url").unwrap_or_default();
    let m = method(ctx);
    let timeout = arg_f64(ctx.args, "timeout")?.unwrap_or(30.0);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(timeout))
        .danger_accept_invalid_certs(!arg_bool(ctx.args, "validate_certs", true))
        .build()
        .map_err(|e| ModuleError::Failed(format!("HTTP client: {e}")))?;
    let method = reqwest::Method::from_bytes(m.as_bytes())
        .map_err(|_| ModuleError::Failed(format!("bad method {m}")))?;
    let mut req = client.request(method, &url);
    if let Some(Value::Object(h)) = ctx.args.get("headers") {
        for (k, v) in h {
            req = req.header(k.as_str(), crate::vars::display(v));
        }
    }
    if let Some(body) = ctx.args.get("body") {
        let json = arg_str(ctx.args, "body_format").as_deref() == Some("json");
        req = if json || body.is_object() || body.is_array() {
            req.header("content-type", "application/json")
                .body(body.to_string())
        } else {
            req.body(crate::vars::display(body))
        };
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let mut r = ModResult::failed(format!("request to {url} failed: {e}"));
            r.data.insert("status".into(), Value::from(-1));
            r.data.insert("url".into(), Value::String(url));
            return Ok(r);
        }
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let mut r = ModResult::ok();
    r.data.insert("status".into(), Value::from(status));
    r.data.insert("url".into(), Value::String(url.clone()));
    if let Ok(j) = serde_json::from_str::<Value>(&text) {
        r.data.insert("json".into(), j);
    }
    if arg_bool(ctx.args, "return_content", false) {
        r.data.insert("content".into(), Value::String(text));
    }
    let wanted = status_codes(ctx)?;
    if !wanted.contains(&status) {
        r.failed = true;
        r.msg = Some(format!(
            "status code was {status} and not {wanted:?}: {url}"
        ));
    } else {
        r.msg = Some(format!("{m} {url}: {status}"));
    }
    Ok(r)
}

impl Module for WaitFor {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move { wait(ctx).await.map(Query::Done) }.boxed()
    }
}

/// Polls until the port/path reaches the wanted state or the timeout passes. Read-only, so
/// it runs in check mode too.
async fn wait(ctx: &ModuleCtx<'_>) -> Result<ModResult, ModuleError> {
    let timeout = Duration::from_secs_f64(arg_f64(ctx.args, "timeout")?.unwrap_or(300.0));
    let delay = Duration::from_secs_f64(arg_f64(ctx.args, "delay")?.unwrap_or(0.0));
    let sleep = Duration::from_secs_f64(arg_f64(ctx.args, "sleep")?.unwrap_or(0.5).max(0.05));
    let connect_timeout =
        Duration::from_secs_f64(arg_f64(ctx.args, "connect_timeout")?.unwrap_or(5.0));
    let state = arg_str(ctx.args, "state").unwrap_or_else(|| "started".into());
    let want_present = matches!(state.as_str(), "started" | "present");
    let host = arg_str(ctx.args, "host").unwrap_or_else(|| "127.0.0.1".into());
    let port: Option<u16> = match ctx.args.get("port") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            crate::vars::display(v)
                .trim()
                .parse()
                .map_err(|_| ModuleError::Failed(format!("port: '{v}' is not a port number")))?,
        ),
    };
    let path = arg_str(ctx.args, "path");
    tokio::time::sleep(delay).await;
    let start = Instant::now();
    loop {
        let present = if let Some(p) = port {
            ctx.transport
                .tcp_probe(&host, p, connect_timeout.min(timeout))
                .await?
        } else if let Some(p) = &path {
            ctx.transport.stat(p).await?.is_some()
        } else {
            return Err(ModuleError::Failed("wait_for needs port or path".into()));
        };
        if present == want_present {
            let what = port.map_or_else(
                || path.clone().unwrap_or_default(),
                |p| format!("{host}:{p}"),
            );
            let mut r = ModResult::msg(format!("{what} is {state}"));
            r.data
                .insert("elapsed".into(), Value::from(start.elapsed().as_secs()));
            return Ok(r);
        }
        if start.elapsed() >= timeout {
            let what = port.map_or_else(
                || path.clone().unwrap_or_default(),
                |p| format!("{host}:{p}"),
            );
            return Ok(ModResult::failed(arg_str(ctx.args, "msg").unwrap_or_else(
                || {
                    format!(
                        "Timeout when waiting for {what} to be {state} ({}s)",
                        timeout.as_secs_f64()
                    )
                },
            )));
        }
        tokio::time::sleep(sleep).await;
    }
}
