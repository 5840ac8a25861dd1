//! Running one task on one host: conditions, loop, query/apply, retries, registration.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::modules::{self, ModResult, ModuleCtx, ModuleError, Query};
use crate::plan::{TaskReport, TaskStatus};
use crate::playbook::Task;
use crate::secrets::Redactor;
use crate::template::Templar;
use crate::transport::{self, Transport};
use crate::vars::{display, Vars};

/// Shown instead of the output of a `no_log` task.
pub const NO_LOG_MSG: &str =
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result";

/// Default `retries` when `until` is set (Ansible's default).
const DEFAULT_RETRIES: u64 = 3;
/// Default `delay` between retries, seconds.
const DEFAULT_DELAY: f64 = 5.0;

/// What stays the same for all hosts of one task.
pub struct TaskEnv<'a> {
    pub task: &'a Task,
    pub play: &'a str,
    /// The task's `become*` keywords over the play's.
    pub escalation: crate::playbook::Escalation,
    pub handler: bool,
    pub check: bool,
    pub templar: &'a Templar,
    pub redactor: &'a Redactor,
    pub pool: &'a transport::Pool,
    /// Where `until` retries are announced while the task runs.
    pub out: &'a crate::output::Reporter,
}

/// Everything one host produced for a task.
#[derive(Debug, Default)]
pub struct HostOutcome {
    pub host: String,
    pub reports: Vec<TaskReport>,
    /// The value `register:` stores.
    pub registered: Value,
    pub facts: Option<Vars>,
    /// Changed (or would change): handlers get notified.
    pub changed: bool,
    /// Failed and not ignored: the host leaves the play.
    pub failed: bool,
    pub unreachable: bool,
}

struct ItemResult {
    status: TaskStatus,
    result: ModResult,
    summary: Option<String>,
    diff: Option<String>,
}

impl TaskEnv<'_> {
    fn report(&self, host: &str, status: TaskStatus, item: Option<&Value>) -> TaskReport {
        TaskReport {
            play: self.play.to_string(),
            task: self.task.display_name(),
            host: host.to_string(),
            status,
            ignored: false,
            handler: self.handler,
            msg: None,
            summary: None,
            diff: None,
            item: item.map(display),
            show_msg: false,
        }
    }

    /// Whether a failure before the task's items run (privilege escalation, connection,
    /// loop) is ignored. A template that cannot be rendered here counts as not ignoring:
    /// the failure is shown rather than hidden.
    fn ignore_errors(&self, vars: &Vars) -> bool {
        self.task
            .ignore_errors
            .eval(self.templar, vars)
            .unwrap_or(false)
    }

    fn name(&self) -> String {
        format!("task '{}'", self.task.display_name())
    }
}

/// The outcome of a task whose keyword (`run_once`, `no_log`, ...) could not be rendered on
/// `host`: a failure naming the keyword and where it is written, never ignored (the
/// task's own `ignore_errors` is about what the task does, not about a broken playbook).
pub fn keyword_failure(env: &TaskEnv<'_>, host: &str, msg: &str) -> HostOutcome {
    let mut r = env.report(host, TaskStatus::Failed, None);
    r.msg = Some(msg.to_string());
    HostOutcome {
        host: host.to_string(),
        reports: vec![r],
        registered: serde_json::json!({"failed": true, "changed": false, "msg": msg}),
        failed: true,
        ..Default::default()
    }
}

/// The transport a task uses: the host's own, or with `delegate_to` the control machine
/// (`localhost`) or another inventory host's. The task's variables stay the host's.
fn delegate_transport(env: &TaskEnv<'_>, vars: &Vars) -> Result<Arc<dyn Transport>, ModuleError> {
    let Some(raw) = &env.task.delegate_to else {
        return Ok(env.pool.connect(vars)?);
    };
    let target = env
        .templar
        .render_str(&format!("{} delegate_to", env.name()), raw, vars)?;
    let target = target.trim();
    let inventory_vars = vars
        .get("hostvars")
        .and_then(|hv| hv.get(target))
        .and_then(Value::as_object);
    match (target, inventory_vars) {
        (_, Some(hv)) => Ok(env.pool.connect(hv)?),
        ("localhost" | "127.0.0.1", None) => Ok(env.pool.control_machine()),
        (other, None) => Err(ModuleError::Failed(format!(
            "delegate_to: '{other}' is not an inventory host"
        ))),
    }
}

/// Runs `env.task` on `host` with the host's variables.
pub async fn run_on_host(env: &TaskEnv<'_>, host: &str, mut vars: Vars) -> HostOutcome {
    let mut out = HostOutcome {
        host: host.to_string(),
        ..Default::default()
    };
    let task = env.task;
    // no_log is rendered first: until it is known, nothing about the task may be shown.
    let no_log = match task.no_log.eval(env.templar, &vars) {
        Ok(b) => b,
        Err(msg) => return keyword_failure(env, host, &msg),
    };
    let fail = |out: &mut HostOutcome, msg: String, status: TaskStatus, ignore: bool| {
        let mut r = env.report(host, status, None);
        r.msg = Some(if no_log {
            NO_LOG_MSG.into()
        } else {
            msg.clone()
        });
        r.ignored = ignore && status == TaskStatus::Failed;
        out.reports.push(r);
        out.registered = serde_json::json!({"failed": true, "changed": false, "msg": msg});
        out.failed = !ignore || status == TaskStatus::Unreachable;
        out.unreachable = status == TaskStatus::Unreachable;
    };
    if let Err(e) = super::escalation::apply(&env.escalation, &mut vars, env.templar, &env.name()) {
        let ig = env.ignore_errors(&vars);
        fail(&mut out, e.to_string(), TaskStatus::Failed, ig);
        return out;
    }
    let transport = match delegate_transport(env, &vars) {
        Ok(t) => t,
        Err(ModuleError::Unreachable(m)) => {
            fail(&mut out, m, TaskStatus::Unreachable, false);
            return out;
        }
        Err(ModuleError::Failed(m)) => {
            let ig = env.ignore_errors(&vars);
            fail(&mut out, m, TaskStatus::Failed, ig);
            return out;
        }
    };
    let items: Vec<Option<Value>> = match &task.loop_items {
        None => vec![None],
        Some(raw) => match env
            .templar
            .render_value(&format!("{} loop", env.name()), raw, &vars)
        {
            Ok(Value::Array(a)) => a.into_iter().map(Some).collect(),
            Ok(Value::Null) => vec![],
            Ok(other) => {
                let ig = env.ignore_errors(&vars);
                fail(
                    &mut out,
                    format!("loop must be a list, got {other}"),
                    TaskStatus::Failed,
                    ig,
                );
                return out;
            }
            Err(e) => {
                let ig = env.ignore_errors(&vars);
                fail(&mut out, e.0, TaskStatus::Failed, ig);
                return out;
            }
        },
    };
    let looped = task.loop_items.is_some();
    let mut results = Vec::new();
    let mut any_changed = false;
    let mut any_failed = false;
    for item in items {
        let mut ivars = vars.clone();
        if let Some(it) = &item {
            ivars.insert("item".into(), it.clone());
        }
        // Rendered per item (it may read `item`); a value that is no boolean fails the host.
        let ignore = match task.ignore_errors.eval(env.templar, &ivars) {
            Ok(b) => b,
            Err(m) => {
                fail(&mut out, m, TaskStatus::Failed, false);
                return out;
            }
        };
        let mut skip = false;
        for cond in &task.when {
            match env
                .templar
                .eval_bool(&format!("{} when", env.name()), cond, &ivars)
            {
                Ok(true) => {}
                Ok(false) => {
                    skip = true;
                    break;
                }
                Err(e) => {
                    fail(&mut out, e.0, TaskStatus::Failed, ignore);
                    return out;
                }
            }
        }
        if skip {
            let mut r = env.report(host, TaskStatus::Skipped, item.as_ref());
            r.msg = Some("conditional result was False".into());
            out.reports.push(r);
            let mut reg = Map::new();
            reg.insert("skipped".into(), Value::Bool(true));
            reg.insert("changed".into(), Value::Bool(false));
            if let Some(it) = &item {
                reg.insert("item".into(), it.clone());
            }
            results.push(Value::Object(reg));
            continue;
        }
        let res = run_item(env, host, &ivars, transport.as_ref(), no_log).await;
        let (status, mut registered) = match res {
            Ok(r) => {
                let reg = register_value(&r);
                (r.status, (Some(r), reg))
            }
            Err(ModuleError::Unreachable(m)) => {
                fail(&mut out, m, TaskStatus::Unreachable, false);
                return out;
            }
            Err(ModuleError::Failed(m)) => (
                TaskStatus::Failed,
                (
                    None,
                    serde_json::json!({"failed": true, "changed": false, "msg": m}),
                ),
            ),
        };
        if let (Some(it), Value::Object(m)) = (&item, &mut registered.1) {
            m.insert("item".into(), it.clone());
        }
        if no_log {
            env.redactor.add_no_log(&registered.1);
        }
        let mut report = env.report(host, status, item.as_ref());
        match &registered.0 {
            Some(r) => {
                report.msg = r.result.msg.clone();
                report.show_msg = modules::is_gate_result(&r.result);
                report.summary = r.summary.clone();
                report.diff = r.diff.clone();
            }
            None => report.msg = registered.1.get("msg").map(display),
        }
        // The plan says as whom the change runs (check mode shows it before anything runs).
        if let (Some(s), Some(u)) = (&mut report.summary, transport.become_user()) {
            s.push_str(&format!(" (become {u} via sudo)"));
        }
        if task.module == "debug" && status == TaskStatus::Ok {
            report.summary = Some("debug".into());
        }
        if no_log {
            report.msg = Some(NO_LOG_MSG.into());
            report.summary = None;
            report.diff = None;
        }
        if status == TaskStatus::Failed {
            report.ignored = ignore;
            if !ignore {
                any_failed = true;
            }
        }
        if status.is_change() {
            any_changed = true;
        }
        if let Some(f) = registered.0.as_ref().and_then(|r| r.result.facts.clone()) {
            out.facts.get_or_insert_with(Vars::new).extend(f);
        }
        out.reports.push(report);
        results.push(registered.1);
    }
    out.changed = any_changed;
    out.failed = any_failed;
    out.registered = if looped {
        serde_json::json!({
            "results": results,
            "changed": any_changed,
            "failed": any_failed,
            "skipped": results.iter().all(|r| r.get("skipped") == Some(&Value::Bool(true))),
        })
    } else {
        results
            .into_iter()
            .next()
            .unwrap_or_else(|| serde_json::json!({"skipped": true, "changed": false}))
    };
    out
}

fn register_value(r: &ItemResult) -> Value {
    let mut m = r.result.data.clone();
    m.insert("changed".into(), Value::Bool(r.status.is_change()));
    m.insert("failed".into(), Value::Bool(r.status == TaskStatus::Failed));
    m.insert("skipped".into(), Value::Bool(false));
    if let Some(msg) = &r.result.msg {
        m.entry("msg").or_insert(Value::String(msg.clone()));
    }
    Value::Object(m)
}

/// One query/apply round with `until` retries and `changed_when`/`failed_when`.
async fn run_item(
    env: &TaskEnv<'_>,
    host: &str,
    vars: &Vars,
    transport: &dyn Transport,
    no_log: bool,
) -> Result<ItemResult, ModuleError> {
    let task = env.task;
    let module = modules::module(&task.module).ok_or_else(|| {
        ModuleError::Failed(format!("module '{}' is not implemented", task.module))
    })?;
    let args =
        match env
            .templar
            .render_value(&env.name(), &Value::Object(task.args.clone()), vars)?
        {
            // An argument rendered to `omit` is left out, as in Ansible.
            Value::Object(mut m) => {
                m.retain(|_, v| v.as_str() != Some(crate::template::OMIT));
                m
            }
            _ => Map::new(),
        };
    if no_log {
        env.redactor.add_no_log(&Value::Object(args.clone()));
    }
    let check = match &task.check_mode {
        None => env.check,
        Some(f) => f.eval(env.templar, vars).map_err(ModuleError::Failed)?,
    };
    let ctx = ModuleCtx {
        host,
        transport,
        args: &args,
        vars,
        templar: env.templar,
        base_dir: &task.base_dir,
        redactor: env.redactor,
    };
    let retries = if task.until.is_empty() {
        0
    } else {
        number(&task.retries, env, vars)?.map_or(DEFAULT_RETRIES, |n| n.max(0.0) as u64)
    };
    let delay = number(&task.delay, env, vars)?
        .unwrap_or(DEFAULT_DELAY)
        .max(0.0);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let query = module.query(&ctx).await?;
        let mut predicted_run = false;
        let (mut status, result, summary, diff) = match query {
            Query::Done(r) => {
                let st = if r.failed {
                    TaskStatus::Failed
                } else if r.changed {
                    TaskStatus::Changed
                } else {
                    TaskStatus::Ok
                };
                let diff = r.diff.clone();
                (st, r, None, diff)
            }
            Query::Change(p) if check => (
                TaskStatus::WouldChange,
                ModResult {
                    changed: true,
                    ..Default::default()
                },
                Some(p.summary.clone()),
                p.diff.clone(),
            ),
            Query::Run(p) if check => {
                // A command whose changed_when does not depend on its result (typically
                // `changed_when: false`) will be reported as that says: the plan says so too,
                // so it matches the real run. Otherwise it is unpredictable: "would run".
                let changed = predict_changed_when(env, vars).unwrap_or(true);
                predicted_run = true;
                (
                    if changed {
                        TaskStatus::WouldRun
                    } else {
                        TaskStatus::Ok
                    },
                    ModResult {
                        changed,
                        ..Default::default()
                    },
                    Some(p.summary.clone()),
                    None,
                )
            }
            Query::Change(p) | Query::Run(p) => {
                let r = module.apply(&ctx, &p).await?;
                let st = if r.failed {
                    TaskStatus::Failed
                } else if r.changed {
                    TaskStatus::Changed
                } else {
                    TaskStatus::Ok
                };
                let diff = r.diff.clone().or(p.diff.clone());
                (st, r, Some(p.summary.clone()), diff)
            }
        };
        let predicted =
            predicted_run || matches!(status, TaskStatus::WouldChange | TaskStatus::WouldRun);
        let mut item = ItemResult {
            status,
            result,
            summary,
            diff,
        };
        // changed_when / failed_when / until see the result under the register name.
        let mut rvars = vars.clone();
        if let Some(reg) = &task.register {
            rvars.insert(reg.clone(), register_value(&item));
        }
        if !predicted {
            if !task.changed_when.is_empty() {
                let changed = changed_when_holds(env, &rvars)?;
                if item.status != TaskStatus::Failed {
                    item.status = if changed {
                        TaskStatus::Changed
                    } else {
                        TaskStatus::Ok
                    };
                }
                item.result.changed = changed;
            }
            if !task.failed_when.is_empty() {
                let mut failed = false;
                for cond in &task.failed_when {
                    failed |= env.templar.eval_bool(
                        &format!("{} failed_when", env.name()),
                        cond,
                        &rvars,
                    )?;
                }
                item.result.failed = failed;
                if failed {
                    item.status = TaskStatus::Failed;
                } else if item.status == TaskStatus::Failed {
                    item.status = if item.result.changed {
                        TaskStatus::Changed
                    } else {
                        TaskStatus::Ok
                    };
                }
            }
        }
        status = item.status;
        if task.until.is_empty() || predicted {
            return Ok(item);
        }
        if let Some(reg) = &task.register {
            rvars.insert(reg.clone(), register_value(&item));
        }
        let mut done = status != TaskStatus::Failed;
        for cond in &task.until {
            done &= env
                .templar
                .eval_bool(&format!("{} until", env.name()), cond, &rvars)
                .unwrap_or(false);
        }
        if done || attempt > retries {
            if !done {
                item.status = TaskStatus::Failed;
                item.result.failed = true;
                item.result.msg = Some(format!(
                    "condition not met after {attempt} attempt(s); last result: {}",
                    last_result(&item.result)
                ));
            }
            item.result
                .data
                .insert("attempts".into(), Value::from(attempt));
            return Ok(item);
        }
        if !no_log {
            env.out
                .retrying(host, &task.display_name(), retries + 1 - attempt);
        }
        tokio::time::sleep(Duration::from_secs_f64(delay)).await;
    }
}

/// The last attempt of an `until` loop that gave up, in words: its message, else what it
/// measured (a command's return code and output tail, a request's HTTP status), so the
/// operator sees why the condition never held.
fn last_result(r: &ModResult) -> String {
    let text = |k: &str| r.data.get(k).map(display).unwrap_or_default();
    let mut out = r.msg.clone().filter(|m| !m.is_empty()).unwrap_or_default();
    if out.is_empty() {
        if let Some(rc) = r.data.get("rc") {
            out = format!(
                "return code {}{}",
                display(rc),
                modules::command::output_tail(&text("stderr"), &text("stdout"))
            );
        } else if let Some(st) = r.data.get("status") {
            out = format!("status {}", display(st));
        } else if r.data.is_empty() {
            out = "no output".into();
        } else {
            out = serde_json::to_string(&r.data).unwrap_or_default();
        }
    }
    out
}

/// In check mode, what `changed_when` will say of a command that is not run: `Some` only
/// when every condition can be evaluated without the command's result (the registered
/// variable is not defined here, so a condition that reads it fails to evaluate and the
/// prediction is left to "would run").
fn predict_changed_when(env: &TaskEnv<'_>, vars: &Vars) -> Option<bool> {
    let task = env.task;
    if task.changed_when.is_empty() {
        return None;
    }
    let mut vars = vars.clone();
    if let Some(reg) = &task.register {
        if task.changed_when.iter().any(|c| c.contains(reg.as_str())) {
            return None;
        }
        vars.remove(reg);
    }
    changed_when_holds(env, &vars).ok()
}

/// Whether the task's `changed_when` holds: a list of conditions must all hold, as with `when`
/// (Ansible's rule).
fn changed_when_holds(
    env: &TaskEnv<'_>,
    vars: &Vars,
) -> Result<bool, crate::template::TemplateError> {
    let label = format!("{} changed_when", env.name());
    let mut changed = true;
    for cond in &env.task.changed_when {
        changed &= env.templar.eval_bool(&label, cond, vars)?;
    }
    Ok(changed)
}

fn number(v: &Value, env: &TaskEnv<'_>, vars: &Vars) -> Result<Option<f64>, ModuleError> {
    let rendered = env.templar.render_value(&env.name(), v, vars)?;
    Ok(match rendered {
        Value::Null => None,
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            Some(s.trim().parse().map_err(|_| {
                ModuleError::Failed(format!("{}: '{s}' is not a number", env.name()))
            })?)
        }
        other => {
            return Err(ModuleError::Failed(format!(
                "{}: {other} is not a number",
                env.name()
            )))
        }
    })
}
