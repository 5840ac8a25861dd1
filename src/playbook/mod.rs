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
                expand_task(t, file, dir, &[], &[], 0, &mut out)?;
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

/// Turns one checked task into model tasks, inlining `include_tasks`/`import_tasks` (their
/// `when` and `tags` apply to every included task, as with Ansible's static import).
fn expand_task(
    raw: &Value,
    file: &Path,
    dir: &Path,
    inherited_when: &[String],
    inherited_tags: &[String],
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
    let mut when: Vec<String> = inherited_when.to_vec();
    when.extend(strings(obj.get("when")));
    let mut tags: Vec<String> = inherited_tags.to_vec();
    tags.extend(strings(obj.get("tags")));

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
        for t in doc.as_array().into_iter().flatten() {
            expand_task(t, &inc, &inc_dir, &when, &tags, depth + 1, out)?;
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
    });
    Ok(())
}

#[cfg(test)]
mod tests;
