//! Playbooks: the typed model and its loader.
//!
//! Loading is all-or-nothing: every file (imported playbooks, included task files, vars
//! files) is read and checked before the first task runs, and any problem is reported as
//! `file:line:col: message`.

mod check;
mod preflight;

use std::path::{Path, PathBuf};

use serde::de::DeserializeSeed;
use serde_json::{Map, Value};

use crate::vars::Vars;
use check::{Shape, ARGS_FIELD, MODULE_FIELD};

/// A playbook that could not be loaded. The message starts with `file:line:col:`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlaybookError(pub String);

pub use preflight::preflight;

/// One step of `serial`.
#[derive(Debug, Clone, PartialEq)]
pub enum Serial {
    Count(usize),
    Percent(f64),
    /// A template, rendered when the play starts.
    Template(String),
}

/// The privilege escalation keywords `become`, `become_user` and `become_method` as written
/// on a play, an include or a task (`None` where not set; `enabled` may be a template).
///
/// WHY keywords and variables both: the keywords say what a playbook needs (this task must be
/// root), the `ansible_become*` connection variables say how a host is reached. As in Ansible,
/// the more specific keyword wins (task over include over play), and a connection variable set
/// for the host wins over every keyword.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Escalation {
    pub enabled: Option<Value>,
    pub user: Option<String>,
    pub method: Option<String>,
}

impl Escalation {
    fn read(obj: &Map<String, Value>) -> Escalation {
        Escalation {
            enabled: obj.get("become").cloned(),
            user: obj.get("become_user").map(crate::vars::display),
            method: obj.get("become_method").map(crate::vars::display),
        }
    }

    /// These keywords over `outer`'s: each one set here wins.
    pub fn over(&self, outer: &Escalation) -> Escalation {
        Escalation {
            enabled: self.enabled.clone().or_else(|| outer.enabled.clone()),
            user: self.user.clone().or_else(|| outer.user.clone()),
            method: self.method.clone().or_else(|| outer.method.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &Escalation::default()
    }
}

/// A play.
#[derive(Debug, Clone, Default)]
pub struct Play {
    pub name: String,
    pub hosts: String,
    /// Batch sizes; the last one repeats. Empty: all hosts in one batch.
    pub serial: Vec<Serial>,
    pub max_fail_percentage: Option<f64>,
    pub any_errors_fatal: bool,
    pub vars: Vars,
    /// Vars files, resolved against the playbook's directory.
    pub vars_files: Vec<PathBuf>,
    pub pre_tasks: Vec<Task>,
    pub tasks: Vec<Task>,
    pub post_tasks: Vec<Task>,
    pub handlers: Vec<Task>,
    /// Directory of the playbook file that defined this play (templates/files are found here).
    pub base_dir: PathBuf,
    /// `become*` keywords of the play (its tasks' own keywords win).
    pub escalation: Escalation,
    /// `gather_facts`: gather each host's facts before the play's first task. Unlike Ansible
    /// the default is off: the bundled playbooks gather facts with a task where they need them
    /// (with arguments, e.g. the install root), and a fact-gathering round trip per play and
    /// host would slow every run for nothing.
    pub gather_facts: bool,
}

/// A task (or handler).
#[derive(Debug, Clone, Default)]
pub struct Task {
    pub name: String,
    pub module: String,
    /// Module arguments as written (templates are rendered per host at run time).
    pub args: Map<String, Value>,
    /// All conditions must hold (`when` inherited from an include comes first).
    pub when: Vec<String>,
    pub register: Option<String>,
    pub until: Vec<String>,
    pub retries: Value,
    pub delay: Value,
    pub loop_items: Option<Value>,
    pub tags: Vec<String>,
    pub notify: Vec<String>,
    pub listen: Vec<String>,
    pub ignore_errors: Value,
    pub no_log: bool,
    pub run_once: bool,
    pub delegate_to: Option<String>,
    pub check_mode: Option<bool>,
    pub changed_when: Vec<String>,
    pub failed_when: Vec<String>,
    pub vars: Vars,
    /// Directory of the file the task came from (relative `src:` paths are found here).
    pub base_dir: PathBuf,
    /// `become*` keywords of the task over those of the includes it came through (the play's
    /// apply at run time, under these).
    pub escalation: Escalation,
}

impl Task {
    /// The name shown in output: the task's name, or `module` when it has none.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.module.clone()
        } else {
            self.name.clone()
        }
    }
}

/// A whole playbook with its imports resolved.
#[derive(Debug, Clone, Default)]
pub struct Playbook {
    pub path: PathBuf,
    pub plays: Vec<Play>,
}

/// Depth limit for `import_playbook`/`include_tasks` chains (a cycle would never end).
const MAX_INCLUDE_DEPTH: usize = 16;

impl Playbook {
    /// Loads and checks a playbook file and everything it imports.
    pub fn load(path: &Path) -> Result<Playbook, PlaybookError> {
        let mut plays = Vec::new();
        load_plays(path, 0, &mut plays)?;
        Ok(Playbook {
            path: path.to_path_buf(),
            plays,
        })
    }
}

/// Parses `text` (named `file` in messages) with `shape`, turning serde_yaml_ng's error into
/// `file:line:col: message`.
fn parse_checked(text: &str, file: &Path, shape: Shape) -> Result<Value, PlaybookError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    shape.deserialize(de).map_err(|e| located(file, &e))
}

/// Formats a YAML error as `file:line:col: message` (dropping serde_yaml_ng's own
/// "at line N column M" suffix, which would repeat the position).
pub fn located(file: &Path, e: &serde_yaml_ng::Error) -> PlaybookError {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    // serde_yaml_ng writes the node path as `.[0].tasks[1]`; the dot adds nothing.
    let msg = msg.strip_prefix('.').map(str::to_string).unwrap_or(msg);
    match e.location() {
        Some(l) => PlaybookError(format!(
            "{}:{}:{}: {msg}",
            file.display(),
            l.line(),
            l.column()
        )),
        None => PlaybookError(format!("{}: {msg}", file.display())),
    }
}

fn read(file: &Path) -> Result<String, PlaybookError> {
    std::fs::read_to_string(file).map_err(|e| PlaybookError(format!("{}: {e}", file.display())))
}

fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn load_plays(file: &Path, depth: usize, out: &mut Vec<Play>) -> Result<(), PlaybookError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(PlaybookError(format!(
            "{}: import_playbook nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)",
            file.display()
        )));
    }
    let text = read(file)?;
    let doc = parse_checked(&text, file, Shape::Plays)?;
    let dir = base_dir(file);
    for (i, raw) in doc.as_array().into_iter().flatten().enumerate() {
        let obj = raw.as_object().expect("checked: play is a mapping");
        if let Some(target) = obj.get("import_playbook") {
            if obj.len() > 1 {
                return Err(PlaybookError(format!(
                    "{}: play #{}: import_playbook takes no other keys (except none)",
                    file.display(),
                    i + 1
                )));
            }
            let target = dir.join(crate::vars::display(target));
            load_plays(&target, depth + 1, out)?;
            continue;
        }
        out.push(build_play(obj, file, &dir)?);
    }
    Ok(())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.iter().map(crate::vars::display).collect(),
        Some(other) => vec![crate::vars::display(other)],
    }
}

fn build_play(obj: &Map<String, Value>, file: &Path, dir: &Path) -> Result<Play, PlaybookError> {
    let serial = match obj.get("serial") {
        None => vec![],
        Some(Value::Array(a)) => a.iter().map(serial_step).collect(),
        Some(v) => vec![serial_step(v)],
    };
    let tasks = |key: &str| -> Result<Vec<Task>, PlaybookError> {
        let mut out = Vec::new();
        if let Some(Value::Array(items)) = obj.get(key) {
            for t in items {
                let outer = Inherited::default();
                expand_task(t, file, dir, &outer, 0, &mut out)?;
            }
        }
        Ok(out)
    };
    let hosts = strings(obj.get("hosts")).join(":");
    let play = Play {
        name: obj
            .get("name")
            .map(crate::vars::display)
            .unwrap_or_else(|| hosts.clone()),
        hosts,
        serial,
        max_fail_percentage: obj.get("max_fail_percentage").and_then(number),
        any_errors_fatal: obj.get("any_errors_fatal").is_some_and(crate::vars::truthy),
        vars: obj
            .get("vars")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        vars_files: strings(obj.get("vars_files"))
            .iter()
            .map(|f| dir.join(f))
            .collect(),
        pre_tasks: tasks("pre_tasks")?,
        tasks: tasks("tasks")?,
        post_tasks: tasks("post_tasks")?,
        handlers: tasks("handlers")?,
        base_dir: dir.to_path_buf(),
        escalation: Escalation::read(obj),
        gather_facts: obj.get("gather_facts").is_some_and(crate::vars::truthy),
    };
    check_notify(&play, file)?;
    Ok(play)
}

/// A `notify` naming no handler would silently never run: refuse it at load time.
fn check_notify(play: &Play, file: &Path) -> Result<(), PlaybookError> {
    let known = |n: &String| {
        play.handlers
            .iter()
            .any(|h| &h.name == n || h.listen.contains(n))
    };
    let all = play
        .pre_tasks
        .iter()
        .chain(&play.tasks)
        .chain(&play.post_tasks)
        .chain(&play.handlers);
    for t in all {
        if let Some(n) = t.notify.iter().find(|n| !known(n)) {
            return Err(PlaybookError(format!(
                "{}: play '{}': task '{}' notifies '{n}', which is no handler's name or listen topic",
                file.display(),
                play.name,
                t.display_name()
            )));
        }
    }
    Ok(())
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn serial_step(v: &Value) -> Serial {
    match v {
        Value::Number(n) => Serial::Count(n.as_u64().unwrap_or(1) as usize),
        Value::String(s) => {
            let t = s.trim();
            if let Some(p) = t.strip_suffix('%').and_then(|p| p.trim().parse().ok()) {
                Serial::Percent(p)
            } else if let Ok(n) = t.parse() {
                Serial::Count(n)
            } else {
                Serial::Template(t.to_string())
            }
        }
        _ => Serial::Count(1),
    }
}

/// What an include passes on to every task it includes.
#[derive(Default)]
struct Inherited {
    when: Vec<String>,
    tags: Vec<String>,
    escalation: Escalation,
}

/// Turns one checked task into model tasks, inlining `include_tasks`/`import_tasks` (their
/// `when`, `tags` and `become*` apply to every included task, as with Ansible's static import).
fn expand_task(
    raw: &Value,
    file: &Path,
    dir: &Path,
    inherited: &Inherited,
    depth: usize,
    out: &mut Vec<Task>,
) -> Result<(), PlaybookError> {
    let obj = raw.as_object().expect("checked: task is a mapping");
    let module = obj
        .get(MODULE_FIELD)
        .map(crate::vars::display)
        .unwrap_or_default();
    let mut args = obj
        .get(ARGS_FIELD)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(Value::Object(extra)) = obj.get("args") {
        for (k, v) in extra {
            args.insert(k.clone(), v.clone());
        }
    }
    let mut when: Vec<String> = inherited.when.clone();
    when.extend(strings(obj.get("when")));
    let mut tags: Vec<String> = inherited.tags.clone();
    tags.extend(strings(obj.get("tags")));
    let escalation = Escalation::read(obj).over(&inherited.escalation);

    if module == "include_tasks" || module == "import_tasks" {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(PlaybookError(format!(
                "{}: {module} nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)",
                file.display()
            )));
        }
        let target = args
            .get("file")
            .or_else(|| args.get("_raw"))
            .map(crate::vars::display)
            .unwrap_or_default();
        if target.contains("{{") {
            return Err(PlaybookError(format!(
                "{}: {module} '{target}': templated file names are not supported (tasks are \
                 loaded and checked before the run starts)",
                file.display()
            )));
        }
        let inc = dir.join(&target);
        let text = read(&inc)?;
        let doc = parse_checked(&text, &inc, Shape::Kind(crate::modules::spec::Kind::Tasks))?;
        let inc_dir = base_dir(&inc);
        let passed = Inherited {
            when,
            tags,
            escalation,
        };
        for t in doc.as_array().into_iter().flatten() {
            expand_task(t, &inc, &inc_dir, &passed, depth + 1, out)?;
        }
        return Ok(());
    }

    let bool_of = |k: &str| obj.get(k).is_some_and(crate::vars::truthy);
    out.push(Task {
        name: obj
            .get("name")
            .map(crate::vars::display)
            .unwrap_or_default(),
        module,
        args,
        when,
        register: obj.get("register").map(crate::vars::display),
        until: strings(obj.get("until")),
        retries: obj.get("retries").cloned().unwrap_or(Value::Null),
        delay: obj.get("delay").cloned().unwrap_or(Value::Null),
        loop_items: obj.get("loop").or_else(|| obj.get("with_items")).cloned(),
        tags,
        notify: strings(obj.get("notify")),
        listen: strings(obj.get("listen")),
        ignore_errors: obj
            .get("ignore_errors")
            .cloned()
            .unwrap_or(Value::Bool(false)),
        no_log: bool_of("no_log"),
        run_once: bool_of("run_once"),
        delegate_to: obj.get("delegate_to").map(crate::vars::display),
        check_mode: obj.get("check_mode").map(crate::vars::truthy),
        changed_when: strings(obj.get("changed_when")),
        failed_when: strings(obj.get("failed_when")),
        vars: obj
            .get("vars")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        base_dir: dir.to_path_buf(),
        escalation,
    });
    Ok(())
}

#[cfg(test)]
mod tests;
