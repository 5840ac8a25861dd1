//! Modules that only look or decide: `set_fact`, `debug`, `assert`, `fail`, `pause`.
//! They never change a host, so their query is their whole work (the trait's default `apply`).

use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;

use super::spec::{Kind, ModuleSpec};
use super::{arg_f64, arg_str, ModFuture, ModResult, Module, ModuleCtx, Query};

pub static SET_FACT_SPEC: ModuleSpec = ModuleSpec {
    name: "set_fact",
    free_form: false,
    any_args: true,
    args: &[],
    one_of_required: &[],
    required: &[],
};

pub static DEBUG_SPEC: ModuleSpec = ModuleSpec {
    name: "debug",
    free_form: false,
    any_args: false,
    args: &[
        ("msg", Kind::Any),
        ("var", Kind::Scalar),
        ("verbosity", Kind::Int),
    ],
    one_of_required: &[],
    required: &[],
};

pub static ASSERT_SPEC: ModuleSpec = ModuleSpec {
    name: "assert",
    free_form: false,
    any_args: false,
    args: &[
        ("that", Kind::ScalarList),
        ("fail_msg", Kind::Scalar),
        ("msg", Kind::Scalar),
        ("success_msg", Kind::Scalar),
        ("quiet", Kind::Bool),
    ],
    one_of_required: &[],
    required: &["that"],
};

pub static FAIL_SPEC: ModuleSpec = ModuleSpec {
    name: "fail",
    free_form: false,
    any_args: false,
    args: &[("msg", Kind::Scalar)],
    one_of_required: &[],
    required: &[],
};

pub static PAUSE_SPEC: ModuleSpec = ModuleSpec {
    name: "pause",
    free_form: false,
    any_args: false,
    args: &[
        ("seconds", Kind::Number),
        ("minutes", Kind::Number),
        ("prompt", Kind::Scalar),
    ],
    one_of_required: &[],
    required: &[],
};

pub struct SetFact;
pub struct Debug;
pub struct Assert;
pub struct Fail;
pub struct Pause;

impl Module for SetFact {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            Ok(Query::Done(ModResult {
                facts: Some(ctx.args.clone()),
                ..Default::default()
            }))
        }
        .boxed()
    }
}

impl Module for Debug {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let mut r = ModResult::ok();
            if let Some(var) = arg_str(ctx.args, "var") {
                // As in Ansible, an undefined variable is reported, not a failure (in check
                // mode a registered command result has no stdout, for example).
                let name = format!("debug var {var}");
                let defined = ctx
                    .templar
                    .eval_bool(&name, &format!("({var}) is defined"), ctx.vars)
                    .unwrap_or(false);
                if !defined {
                    r.msg = Some(format!("{var}: VARIABLE IS NOT DEFINED!"));
                    return Ok(Query::Done(r));
                }
                let v = ctx.templar.eval(&name, &var, ctx.vars)?;
                r.msg = Some(format!("{var}: {}", crate::vars::display(&v)));
                r.data.insert(var, v);
            } else {
                let msg = ctx
                    .args
                    .get("msg")
                    .cloned()
                    .unwrap_or(Value::String("Hello world!".into()));
                r.msg = Some(crate::vars::display(&msg));
                r.data.insert("msg".into(), msg);
            }
            Ok(Query::Done(r))
        }
        .boxed()
    }
}

impl Module for Assert {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let that: Vec<String> = match ctx.args.get("that") {
                Some(Value::Array(a)) => a.iter().map(crate::vars::display).collect(),
                Some(v) => vec![crate::vars::display(v)],
                None => vec![],
            };
            for cond in &that {
                if !ctx.templar.eval_bool("assert", cond, ctx.vars)? {
                    let msg = arg_str(ctx.args, "fail_msg")
                        .or_else(|| arg_str(ctx.args, "msg"))
                        .unwrap_or_else(|| format!("Assertion failed: {cond}"));
                    let mut r = ModResult::failed(msg);
                    r.data
                        .insert("assertion".into(), Value::String(cond.clone()));
                    return Ok(Query::Done(r));
                }
            }
            Ok(Query::Done(ModResult::msg(
                arg_str(ctx.args, "success_msg").unwrap_or_else(|| "All assertions passed".into()),
            )))
        }
        .boxed()
    }
}

impl Module for Fail {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            Ok(Query::Done(ModResult::failed(
                arg_str(ctx.args, "msg").unwrap_or_else(|| "Failed as requested from task".into()),
            )))
        }
        .boxed()
    }
}

impl Module for Pause {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let secs = arg_f64(ctx.args, "seconds")?.unwrap_or(0.0)
                + arg_f64(ctx.args, "minutes")?.unwrap_or(0.0) * 60.0;
            if secs <= 0.0 && arg_str(ctx.args, "prompt").is_some() {
                return Ok(Query::Done(ModResult::failed(
                    "interactive pause prompts are not supported; give seconds or minutes",
                )));
            }
            tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
            Ok(Query::Done(ModResult::msg(format!("paused {secs}s"))))
        }
        .boxed()
    }
}
