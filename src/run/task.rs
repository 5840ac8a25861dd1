//! Running one task on one host: conditions, loop, query/apply, retries, registration.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::modules::{self, ModResult, Module, ModuleCtx, ModuleError, Query};
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
    /// Every host's variables for this task (`hostvars`): one copy for all hosts, which their
    /// own variables do not carry (the templar supplies it to templates, see
    /// [`Templar::share_hostvars`]).
    pub hostvars: &'a Value,
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
    let inventory_vars = env.hostvars.get(target).and_then(Value::as_object);
    match (target, inventory_vars) {
        (_, Some(hv)) => Ok(env.pool.connect(hv)?),
        ("localhost" | "127.0.0.1", None) => Ok(env.pool.control_machine()),
        (other, None) => Err(ModuleError::Failed(format!(
            "delegate_to: '{other}' is not an inventory host"
        ))),
    }
}

/// Why a task stopped on a host before all its items ran: privilege escalation, connection or
/// loop failed, a condition or keyword could not be rendered, or the host became unreachable.
struct Stop {
    msg: String,
    status: TaskStatus,
    /// The task's `ignore_errors` held (an unreachable host is never ignored).
    ignore: bool,
}

impl Stop {
    fn failed(msg: String, ignore: bool) -> Stop {
        Stop {
            msg,
            status: TaskStatus::Failed,
            ignore,
        }
    }

    fn unreachable(msg: String) -> Stop {
        Stop {
            msg,
            status: TaskStatus::Unreachable,
            ignore: false,
        }
    }

    /// Ends the host's outcome with this stop: one more report (the reports of the items that
    /// ran before it stay), and the failure as the registered value.
    fn record(self, env: &TaskEnv<'_>, host: &str, no_log: bool, out: &mut HostOutcome) {
        let Stop {
            msg,
            status,
            ignore,
        } = self;
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
    }
}

/// Runs `env.task` on `host` with the host's variables.
pub async fn run_on_host(env: &TaskEnv<'_>, host: &str, vars: Vars) -> HostOutcome {
    // no_log is rendered first: until it is known, nothing about the task may be shown.
    let no_log = match env.task.no_log.eval(env.templar, &vars) {
        Ok(b) => b,
        Err(msg) => return keyword_failure(env, host, &msg),
    };
    let mut out = HostOutcome {
        host: host.to_string(),
        ..Default::default()
    };
    if let Err(stop) = run_items(env, host, vars, no_log, &mut out).await {
        stop.record(env, host, no_log, &mut out);
    }
    out
}

/// Connects, then runs every item of the task's loop (one without `loop`), adding each item's
/// report and facts to `out`; the registered value and verdicts are set once all items ran.
async fn run_items(
    env: &TaskEnv<'_>,
    host: &str,
    mut vars: Vars,
    no_log: bool,
    out: &mut HostOutcome,
) -> Result<(), Stop> {
    let task = env.task;
    let transport = connect(env, &mut vars)?;
    let items = loop_items(env, &vars)?;
    let mut results = Vec::new();
    let mut any_changed = false;
    let mut any_failed = false;
    for item in items {
        let mut ivars = vars.clone();
        if let Some(it) = &item {
            ivars.insert("item".into(), it.clone());
        }
        // Rendered per item (it may read `item`); a value that is no boolean fails the host.
        let ignore = task
            .ignore_errors
            .eval(env.templar, &ivars)
            .map_err(|m| Stop::failed(m, false))?;
        if !when_holds(env.templar, env.task, &ivars).map_err(|e| Stop::failed(e.0, ignore))? {
            let (report, registered) = skipped(env, host, item.as_ref());
            out.reports.push(report);
            results.push(registered);
            continue;
        }
        let (ran, mut registered) =
            match run_item(env, host, &ivars, transport.as_ref(), no_log).await {
                Ok(r) => {
                    let reg = register_value(&r);
                    (Some(r), reg)
                }
                Err(ModuleError::Unreachable(m)) => return Err(Stop::unreachable(m)),
                Err(ModuleError::Failed(m)) => (
                    None,
                    serde_json::json!({"failed": true, "changed": false, "msg": m}),
                ),
            };
        if let (Some(it), Value::Object(m)) = (&item, &mut registered) {
            m.insert("item".into(), it.clone());
        }
        if no_log {
            env.redactor.add_no_log(&registered);
        }
        let status = ran.as_ref().map_or(TaskStatus::Failed, |r| r.status);
        let mut report = item_report(
            env,
            host,
            item.as_ref(),
            ran.as_ref(),
            &registered,
            transport.as_ref(),
            no_log,
        );
        if status == TaskStatus::Failed {
            report.ignored = ignore;
            if !ignore {
                any_failed = true;
            }
        }
        if status.is_change() {
            any_changed = true;
        }
        if let Some(f) = ran.as_ref().and_then(|r| r.result.facts.clone()) {
            out.facts.get_or_insert_with(Vars::new).extend(f);
        }
        out.reports.push(report);
        results.push(registered);
    }
    out.changed = any_changed;
    out.failed = any_failed;
    out.registered = task_registered(task.loop_items.is_some(), results, any_changed, any_failed);
    Ok(())
}

/// Applies the task's privilege escalation to the host's variables, then connects to the
/// host (or to whom `delegate_to` names).
fn connect(env: &TaskEnv<'_>, vars: &mut Vars) -> Result<Arc<dyn Transport>, Stop> {
    if let Err(e) = super::escalation::apply(&env.escalation, vars, env.templar, &env.name()) {
        return Err(Stop::failed(e.to_string(), env.ignore_errors(vars)));
    }
    match delegate_transport(env, vars) {
        Ok(t) => Ok(t),
        Err(ModuleError::Unreachable(m)) => Err(Stop::unreachable(m)),
        Err(ModuleError::Failed(m)) => Err(Stop::failed(m, env.ignore_errors(vars))),
    }
}

/// The task's items: one (`None`) without `loop`, else the rendered list (`null`: no items).
fn loop_items(env: &TaskEnv<'_>, vars: &Vars) -> Result<Vec<Option<Value>>, Stop> {
    let Some(raw) = &env.task.loop_items else {
        return Ok(vec![None]);
    };
    match env
        .templar
        .render_value(&format!("{} loop", env.name()), raw, vars)
    {
        Ok(Value::Array(a)) => Ok(a.into_iter().map(Some).collect()),
        Ok(Value::Null) => Ok(vec![]),
        Ok(other) => Err(Stop::failed(
            format!("loop must be a list, got {other}"),
            env.ignore_errors(vars),
        )),
        Err(e) => Err(Stop::failed(e.0, env.ignore_errors(vars))),
    }
}

/// Whether `task`'s `when` conditions all hold for one host or item (the first that does not
/// decides; the rest are not evaluated). `meta: end_host` asks it too.
pub fn when_holds(
    templar: &Templar,
    task: &Task,
    vars: &Vars,
) -> Result<bool, crate::template::TemplateError> {
    let label = format!("task '{}' when", task.display_name());
    for cond in &task.when {
        if !templar.eval_bool(&label, cond, vars)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The report and registered value of an item whose `when` did not hold.
fn skipped(env: &TaskEnv<'_>, host: &str, item: Option<&Value>) -> (TaskReport, Value) {
    let mut r = env.report(host, TaskStatus::Skipped, item);
    r.msg = Some("conditional result was False".into());
    let mut reg = Map::new();
    reg.insert("skipped".into(), Value::Bool(true));
    reg.insert("changed".into(), Value::Bool(false));
    if let Some(it) = item {
        reg.insert("item".into(), it.clone());
    }
    (r, Value::Object(reg))
}

/// The report of an item that ran (`ran` is `None` when the module failed with an error; its
/// message is then the registered one). Under `no_log` only the verdict is shown.
fn item_report(
    env: &TaskEnv<'_>,
    host: &str,
    item: Option<&Value>,
    ran: Option<&ItemResult>,
    registered: &Value,
    transport: &dyn Transport,
    no_log: bool,
) -> TaskReport {
    let status = ran.map_or(TaskStatus::Failed, |r| r.status);
    let mut report = env.report(host, status, item);
    match ran {
        Some(r) => {
            report.msg = r.result.msg.clone();
            report.show_msg = modules::is_gate_result(&r.result);
            report.summary = r.summary.clone();
            report.diff = r.diff.clone();
        }
        None => report.msg = registered.get("msg").map(display),
    }
    // The plan says as whom the change runs (check mode shows it before anything runs).
    if let (Some(s), Some(u)) = (&mut report.summary, transport.become_user()) {
        s.push_str(&format!(" (become {u} via sudo)"));
    }
    if env.task.module == "debug" && status == TaskStatus::Ok {
        report.summary = Some("debug".into());
    }
    if no_log {
        report.msg = Some(NO_LOG_MSG.into());
        report.summary = None;
        report.diff = None;
    }
    report
}

/// What `register:` stores for the task on one host: the item's value, or with `loop` all of
/// them under `results` with the task's verdicts.
fn task_registered(looped: bool, results: Vec<Value>, changed: bool, failed: bool) -> Value {
    if looped {
        serde_json::json!({
            "results": results,
            "changed": changed,
            "failed": failed,
            "skipped": results.iter().all(|r| r.get("skipped") == Some(&Value::Bool(true))),
        })
    } else {
        results
            .into_iter()
            .next()
            .unwrap_or_else(|| serde_json::json!({"skipped": true, "changed": false}))
    }
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
    let args = module_args(env, vars)?;
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
        hostvars: env.hostvars,
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
        let (mut item, predicted) = query_and_apply(env, module, &ctx, check).await?;
        // changed_when / failed_when / until see the result under the register name.
        let mut rvars = vars.clone();
        if let Some(reg) = &task.register {
            rvars.insert(reg.clone(), register_value(&item));
        }
        if !predicted {
            judge(env, &mut item, &rvars)?;
        }
        if task.until.is_empty() || predicted {
            return Ok(item);
        }
        if let Some(reg) = &task.register {
            rvars.insert(reg.clone(), register_value(&item));
        }
        let done = until_holds(env, item.status, &rvars);
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

/// The task's arguments rendered for this host; an argument rendered to `omit` is left out,
/// as in Ansible.
fn module_args(env: &TaskEnv<'_>, vars: &Vars) -> Result<Map<String, Value>, ModuleError> {
    let rendered =
        env.templar
            .render_value(&env.name(), &Value::Object(env.task.args.clone()), vars)?;
    Ok(match rendered {
        Value::Object(mut m) => {
            m.retain(|_, v| v.as_str() != Some(crate::template::OMIT));
            m
        }
        _ => Map::new(),
    })
}

/// A module's own verdict on a result.
fn status_of(r: &ModResult) -> TaskStatus {
    if r.failed {
        TaskStatus::Failed
    } else if r.changed {
        TaskStatus::Changed
    } else {
        TaskStatus::Ok
    }
}

/// One query and, outside check mode, the apply it planned. The flag says the result is a
/// prediction (nothing ran), which `changed_when`, `failed_when` and `until` do not judge.
async fn query_and_apply(
    env: &TaskEnv<'_>,
    module: &dyn Module,
    ctx: &ModuleCtx<'_>,
    check: bool,
) -> Result<(ItemResult, bool), ModuleError> {
    let mut predicted_run = false;
    let (status, result, summary, diff) = match module.query(ctx).await? {
        Query::Done(r) => {
            let diff = r.diff.clone();
            (status_of(&r), r, None, diff)
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
            let changed = predict_changed_when(env, ctx.vars).unwrap_or(true);
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
            let r = module.apply(ctx, &p).await?;
            let diff = r.diff.clone().or(p.diff.clone());
            (status_of(&r), r, Some(p.summary.clone()), diff)
        }
    };
    let predicted =
        predicted_run || matches!(status, TaskStatus::WouldChange | TaskStatus::WouldRun);
    let item = ItemResult {
        status,
        result,
        summary,
        diff,
    };
    Ok((item, predicted))
}

/// Applies `changed_when` and `failed_when` to a result that really ran (`vars` hold it under
/// the register name).
fn judge(env: &TaskEnv<'_>, item: &mut ItemResult, vars: &Vars) -> Result<(), ModuleError> {
    let task = env.task;
    if !task.changed_when.is_empty() {
        let changed = changed_when_holds(env, vars)?;
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
            failed |= env
                .templar
                .eval_bool(&format!("{} failed_when", env.name()), cond, vars)?;
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
    Ok(())
}

/// Whether an `until` loop may stop: the item did not fail and every condition holds (one
/// that cannot be rendered does not; all are evaluated).
fn until_holds(env: &TaskEnv<'_>, status: TaskStatus, vars: &Vars) -> bool {
    let mut done = status != TaskStatus::Failed;
    for cond in &env.task.until {
        done &= env
            .templar
            .eval_bool(&format!("{} until", env.name()), cond, vars)
            .unwrap_or(false);
    }
    done
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
