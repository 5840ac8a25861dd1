//! Playbooks: the typed model and its loader.
//!
//! Loading is all-or-nothing: every file (imported playbooks, included task files, vars
//! files) is read and checked before the first task runs, and any problem is reported as
//! `file:line:col: message`.

mod check;
pub mod keyword;
pub mod kv;
mod locate;
mod preflight;
pub mod roles;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeSeed;
use serde_json::{Map, Value};

use crate::vars::Vars;
use check::{Shape, ARGS_FIELD, MODULE_FIELD};
pub use keyword::{Flag, Number, Templated};
use locate::Seg;

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
    /// Rendered with the play's variables when the play starts (it may be a template).
    pub max_fail_percentage: Option<Number>,
    pub any_errors_fatal: Flag,
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
    /// Rendered per host (and loop item) with the task's variables (it may be a template).
    pub ignore_errors: Flag,
    /// Rendered per host with the task's variables (it may be a template).
    pub no_log: Flag,
    /// Rendered with the first host's variables.
    pub run_once: Flag,
    pub delegate_to: Option<String>,
    /// Rendered per host; `None`: the run's mode (`--check` or not).
    pub check_mode: Option<Flag>,
    pub changed_when: Vec<String>,
    pub failed_when: Vec<String>,
    pub vars: Vars,
    /// Directory of the file the task came from (relative `src:` paths are found here).
    pub base_dir: PathBuf,
    /// `become*` keywords of the task over those of the includes it came through (the play's
    /// apply at run time, under these).
    pub escalation: Escalation,
    /// A `block` (module `block`): its tasks, with the block's keywords already applied.
    pub block: Option<Box<Block>>,
    /// `defaults/main.yml` of the role the task came from: below every other variable.
    pub role_defaults: Vars,
}

/// `block` / `rescue` / `always`: the block's tasks run in order; on a host where one fails,
/// `rescue` runs (and a rescue that succeeds clears the failure, as in Ansible); `always`
/// runs afterwards on every host that entered the block and is still reachable.
#[derive(Debug, Clone, Default)]
pub struct Block {
    pub block: Vec<Task>,
    pub rescue: Vec<Task>,
    pub always: Vec<Task>,
}

impl Task {
    /// This task, or for a block every task inside it (blocks in blocks too), in order.
    pub fn flatten(&self) -> Vec<&Task> {
        match &self.block {
            None => vec![self],
            Some(b) => b
                .block
                .iter()
                .chain(&b.rescue)
                .chain(&b.always)
                .flat_map(Task::flatten)
                .collect(),
        }
    }

    /// The name shown in output: the task's name, or `module` when it has none.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.module.clone()
        } else {
            self.name.clone()
        }
    }
}

impl Play {
    /// Every task of `pre_tasks`, `tasks` and `post_tasks` (and `handlers` if asked), the
    /// tasks inside blocks included, in order.
    pub fn all_tasks(&self, handlers: bool) -> Vec<&Task> {
        let hs: &[Task] = if handlers { &self.handlers } else { &[] };
        self.pre_tasks
            .iter()
            .chain(&self.tasks)
            .chain(&self.post_tasks)
            .chain(hs)
            .flat_map(Task::flatten)
            .collect()
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
    let normalized = crate::yaml11::normalize(text);
    let de = serde_yaml_ng::Deserializer::from_str(&normalized);
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

/// A file being loaded: its path and text, so positions can be looked up for messages.
#[derive(Clone, Copy)]
struct Src<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    /// `file:line:col` of the value at `path`.
    fn at(&self, path: &[Seg]) -> String {
        locate::position(self.file, self.text, path, false)
    }

    /// `file:line:col` of the key that ends `path`.
    fn at_key(&self, path: &[Seg]) -> String {
        locate::position(self.file, self.text, path, true)
    }
}

fn child(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
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
    let src = Src { file, text: &text };
    let dir = base_dir(file);
    for (i, raw) in doc.as_array().into_iter().flatten().enumerate() {
        let obj = raw.as_object().expect("checked: play is a mapping");
        let here = [Seg::Index(i)];
        if let Some(target) = obj.get("import_playbook") {
            // `name` is a label only (as in Ansible); anything else would be dropped.
            let other = obj
                .keys()
                .find(|k| !matches!(k.as_str(), "import_playbook" | "name"));
            if let Some(other) = other {
                return Err(PlaybookError(format!(
                    "{}: '{other}' beside import_playbook: an import_playbook entry takes no \
                     other keys than name (put them on the imported plays)",
                    src.at_key(&child(&here, Seg::key(other)))
                )));
            }
            let target = dir.join(crate::vars::display(target));
            load_plays(&target, depth + 1, out)?;
            continue;
        }
        out.push(build_play(obj, src, &here, &dir)?);
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

/// A boolean keyword of `obj` (at `path` in `src`): fixed, or kept as a template with its
/// position for the run to render.
fn flag(obj: &Map<String, Value>, key: &str, src: Src, path: &[Seg]) -> Option<Flag> {
    let v = obj.get(key)?;
    Some(if keyword::is_template(v) {
        Flag::Template(templated(v, key, src, path))
    } else {
        Flag::Fixed(keyword::boolean(v).unwrap_or_else(|| crate::vars::truthy(v)))
    })
}

fn templated(v: &Value, key: &str, src: Src, path: &[Seg]) -> Templated {
    Templated {
        keyword: key.to_string(),
        expr: crate::vars::display(v),
        at: src.at(&child(path, Seg::key(key))),
    }
}

fn build_play(
    obj: &Map<String, Value>,
    src: Src,
    at: &[Seg],
    dir: &Path,
) -> Result<Play, PlaybookError> {
    let serial = match obj.get("serial") {
        None => vec![],
        Some(Value::Array(a)) => a.iter().map(serial_step).collect(),
        Some(v) => vec![serial_step(v)],
    };
    let section = |key: &str, handlers: Option<&BTreeSet<String>>| {
        let mut out = Vec::new();
        if let Some(Value::Array(items)) = obj.get(key) {
            let ctx = Expand {
                handlers,
                depth: 0,
                play_dir: dir,
            };
            for (j, t) in items.iter().enumerate() {
                let path = child(&child(at, Seg::key(key)), Seg::Index(j));
                expand_task(t, src, &path, dir, &Inherited::default(), &ctx, &mut out)?;
            }
        }
        Ok::<_, PlaybookError>(out)
    };
    // Roles: found and read first, their handlers go before the play's own.
    let mut roles_loaded = Vec::new();
    if let Some(Value::Array(entries)) = obj.get("roles") {
        for (j, raw) in entries.iter().enumerate() {
            let here = child(&child(at, Seg::key("roles")), Seg::Index(j));
            let e = roles::entry(raw);
            let name = e
                .get("role")
                .or_else(|| e.get("name"))
                .map(crate::vars::display)
                .ok_or_else(|| {
                    PlaybookError(format!("{}: a roles entry needs 'role'", src.at(&here)))
                })?;
            let role = roles::find(&name, dir)
                .map_err(|m| PlaybookError(format!("{}: {m}", src.at(&here))))?;
            let passed = role_inherited(&e, &role, src, &here);
            roles_loaded.push((role, passed));
        }
    }
    // Roles brought in by include_role/import_role add their handlers to the play too (as
    // Ansible's import_role does); their tasks are expanded where the task stands.
    let mut handler_roles: Vec<(roles::Role, Inherited)> = Vec::new();
    for key in ["pre_tasks", "tasks", "post_tasks"] {
        if let Some(Value::Array(items)) = obj.get(key) {
            for name in role_includes(items) {
                let Ok(role) = roles::find(&name, dir) else {
                    continue; // reported at the task's position when it is expanded
                };
                let known = roles_loaded
                    .iter()
                    .chain(&handler_roles)
                    .any(|(r, _)| r.dir == role.dir);
                if !known {
                    let passed = Inherited {
                        vars: role.vars.clone(),
                        defaults: role.defaults.clone(),
                        ..Default::default()
                    };
                    handler_roles.push((role, passed));
                }
            }
        }
    }
    let expand_roles = |handlers: Option<&BTreeSet<String>>, part: &str| {
        let mut out = Vec::new();
        let ctx = Expand {
            handlers,
            depth: 0,
            play_dir: dir,
        };
        let extra = if part == "handlers" {
            handler_roles.as_slice()
        } else {
            &[]
        };
        for (role, passed) in roles_loaded.iter().chain(extra) {
            let file = if part == "handlers" {
                roles::main_file(&role.dir.join("handlers"))
            } else {
                roles::tasks_file(role, None)
            };
            if let Some(f) = file {
                expand_file(&f, passed, &ctx, &mut out)?;
            }
        }
        Ok::<_, PlaybookError>(out)
    };
    // Handlers first: `notify` in every section (handlers too) is checked against their
    // names and listen topics, at the position of the offending name.
    let mut handlers = expand_roles(None, "handlers")?;
    handlers.extend(section("handlers", None)?);
    let known: BTreeSet<String> = handlers
        .iter()
        .flat_map(|h| std::iter::once(h.name.clone()).chain(h.listen.iter().cloned()))
        .collect();
    // In section order, so the first wrong notify reported is the first in the play.
    let pre_tasks = section("pre_tasks", Some(&known))?;
    let mut tasks = expand_roles(Some(&known), "tasks")?;
    tasks.extend(section("tasks", Some(&known))?);
    let post_tasks = section("post_tasks", Some(&known))?;
    // Handlers notify handlers too. Expanding them again (re-reading their included files) is
    // only needed to name the position of a notify that no handler answers.
    let handlers = if handlers
        .iter()
        .flat_map(|h| &h.notify)
        .all(|n| known.contains(n))
    {
        handlers
    } else {
        let mut checked = expand_roles(Some(&known), "handlers")?;
        checked.extend(section("handlers", Some(&known))?);
        checked
    };
    let hosts = strings(obj.get("hosts")).join(":");
    let max_fail_percentage = match obj.get("max_fail_percentage") {
        None => None,
        Some(v) if keyword::is_template(v) => Some(keyword::Number::Template(templated(
            v,
            "max_fail_percentage",
            src,
            at,
        ))),
        Some(v) => keyword::number(v).map(keyword::Number::Fixed),
    };
    Ok(Play {
        name: obj
            .get("name")
            .map(crate::vars::display)
            .unwrap_or_else(|| hosts.clone()),
        hosts,
        serial,
        max_fail_percentage,
        any_errors_fatal: flag(obj, "any_errors_fatal", src, at).unwrap_or_default(),
        vars: obj
            .get("vars")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        vars_files: strings(obj.get("vars_files"))
            .iter()
            .map(|f| dir.join(f))
            .collect(),
        pre_tasks,
        tasks,
        post_tasks,
        handlers,
        base_dir: dir.to_path_buf(),
        escalation: Escalation::read(obj),
        gather_facts: obj.get("gather_facts").is_some_and(crate::vars::truthy),
    })
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

/// What an include passes on to every task it includes (a keyword the included task sets
/// itself wins, as the more specific one does in Ansible).
#[derive(Default, Clone)]
struct Inherited {
    /// Conditions that all must hold (the include's first).
    when: Vec<String>,
    tags: Vec<String>,
    escalation: Escalation,
    /// The include's `vars:`, under the included task's own `vars:` (both are task vars).
    vars: Vars,
    /// Handlers the include notifies: notified by each included task that changes.
    notify: Vec<String>,
    no_log: Option<Flag>,
    run_once: Option<Flag>,
    check_mode: Option<Flag>,
    ignore_errors: Option<Flag>,
    delegate_to: Option<String>,
    /// Role defaults of the role being expanded (lowest precedence).
    defaults: Vars,
}

/// Keywords refused on `include_tasks`/`import_tasks`, with why: they describe one task's
/// own result or execution, and an include has neither (it is expanded when the playbook is
/// loaded). Dropping them silently would run something other than what was written.
const NOT_ON_INCLUDE: &[(&str, &str)] = &[
    (
        "register",
        "an include has no result of its own; register the included tasks",
    ),
    (
        "loop",
        "includes are expanded when the playbook is loaded, so they cannot loop",
    ),
    (
        "with_items",
        "includes are expanded when the playbook is loaded, so they cannot loop",
    ),
    (
        "until",
        "an include is not retried; put until on the included tasks",
    ),
    (
        "retries",
        "an include is not retried; put retries on the included tasks",
    ),
    (
        "delay",
        "an include is not retried; put delay on the included tasks",
    ),
    (
        "changed_when",
        "an include has no result; put changed_when on the included tasks",
    ),
    (
        "failed_when",
        "an include has no result; put failed_when on the included tasks",
    ),
    ("listen", "put listen on the included handlers"),
];

/// What stays the same while one section's tasks are expanded.
struct Expand<'a> {
    /// Handler names and listen topics `notify` may name (`None`: not checked yet).
    handlers: Option<&'a BTreeSet<String>>,
    depth: usize,
    /// Directory of the playbook: roles are looked up from here.
    play_dir: &'a Path,
}

/// A `notify` naming no handler would silently never run: refused at load time, at the
/// position of the name.
fn check_notify(
    obj: &Map<String, Value>,
    src: Src,
    at: &[Seg],
    ctx: &Expand,
    task_name: &str,
) -> Result<(), PlaybookError> {
    let Some(known) = ctx.handlers else {
        return Ok(());
    };
    for (j, n) in strings(obj.get("notify")).iter().enumerate() {
        if known.contains(n) {
            continue;
        }
        let mut path = child(at, Seg::key("notify"));
        if matches!(obj.get("notify"), Some(Value::Array(_))) {
            path.push(Seg::Index(j));
        }
        return Err(PlaybookError(format!(
            "{}: task '{task_name}' notifies '{n}', which is no handler's name or listen topic",
            src.at(&path)
        )));
    }
    Ok(())
}

/// Expands every task of a task file (an include's or a role's) with what is passed on.
fn expand_file(
    file: &Path,
    passed: &Inherited,
    ctx: &Expand,
    out: &mut Vec<Task>,
) -> Result<(), PlaybookError> {
    if ctx.depth > MAX_INCLUDE_DEPTH {
        return Err(PlaybookError(format!(
            "{}: includes nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)",
            file.display()
        )));
    }
    let text = read(file)?;
    let doc = parse_checked(&text, file, Shape::Kind(crate::modules::spec::Kind::Tasks))?;
    let inc_src = Src { file, text: &text };
    let inc_dir = base_dir(file);
    let inner = Expand {
        handlers: ctx.handlers,
        depth: ctx.depth + 1,
        play_dir: ctx.play_dir,
    };
    for (j, t) in doc.as_array().into_iter().flatten().enumerate() {
        expand_task(t, inc_src, &[Seg::Index(j)], &inc_dir, passed, &inner, out)?;
    }
    Ok(())
}

/// Names of the roles that `include_role`/`import_role` tasks of a checked task list (and
/// of its blocks) bring in.
fn role_includes(items: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for t in items {
        let Some(obj) = t.as_object() else { continue };
        let module = obj.get(MODULE_FIELD).and_then(Value::as_str).unwrap_or("");
        let module = module.strip_prefix("ansible.builtin.").unwrap_or(module);
        if matches!(module, "include_role" | "import_role") {
            if let Some(n) = obj.get(ARGS_FIELD).and_then(|a| a.get("name")) {
                out.push(crate::vars::display(n));
            }
        }
        for part in check::BLOCK_KEYS {
            if let Some(Value::Array(inner)) = obj.get(*part) {
                out.extend(role_includes(inner));
            }
        }
    }
    out
}

/// What a `roles:` entry passes on to the role's tasks: its keywords, and its `vars:` and
/// other keys (role parameters) over the role's `vars/main.yml`.
fn role_inherited(e: &Map<String, Value>, role: &roles::Role, src: Src, at: &[Seg]) -> Inherited {
    let mut vars = role.vars.clone();
    let params: Map<String, Value> = e
        .iter()
        .filter(|(k, _)| !roles::ENTRY_KEYWORDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    crate::vars::overlay(&mut vars, &params);
    if let Some(own) = e.get("vars").and_then(Value::as_object) {
        crate::vars::overlay(&mut vars, own);
    }
    Inherited {
        when: strings(e.get("when")),
        tags: strings(e.get("tags")),
        escalation: Escalation::read(e),
        vars,
        notify: vec![],
        no_log: flag(e, "no_log", src, at),
        run_once: flag(e, "run_once", src, at),
        check_mode: flag(e, "check_mode", src, at),
        ignore_errors: flag(e, "ignore_errors", src, at),
        delegate_to: e.get("delegate_to").map(crate::vars::display),
        defaults: role.defaults.clone(),
    }
}

/// Turns one checked task into model tasks, inlining `include_tasks`/`import_tasks`: their
/// `when`, `tags`, `vars`, `notify` and execution keywords (`become*`, `no_log`,
/// `ignore_errors`, `run_once`, `check_mode`, `delegate_to`) apply to every included task,
/// as with Ansible's static import.
fn expand_task(
    raw: &Value,
    src: Src,
    at: &[Seg],
    dir: &Path,
    inherited: &Inherited,
    ctx: &Expand,
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
    let name = obj
        .get("name")
        .map(crate::vars::display)
        .unwrap_or_default();
    check_notify(
        obj,
        src,
        at,
        ctx,
        if name.is_empty() { &module } else { &name },
    )?;
    let mut when: Vec<String> = inherited.when.clone();
    when.extend(strings(obj.get("when")));
    let mut tags: Vec<String> = inherited.tags.clone();
    tags.extend(strings(obj.get("tags")));
    let mut notify: Vec<String> = strings(obj.get("notify"));
    for n in &inherited.notify {
        if !notify.contains(n) {
            notify.push(n.clone());
        }
    }
    let mut vars = inherited.vars.clone();
    if let Some(own) = obj.get("vars").and_then(Value::as_object) {
        crate::vars::overlay(&mut vars, own);
    }
    let escalation = Escalation::read(obj).over(&inherited.escalation);
    let no_log = flag(obj, "no_log", src, at).or_else(|| inherited.no_log.clone());
    let run_once = flag(obj, "run_once", src, at).or_else(|| inherited.run_once.clone());
    let check_mode = flag(obj, "check_mode", src, at).or_else(|| inherited.check_mode.clone());
    let ignore_errors =
        flag(obj, "ignore_errors", src, at).or_else(|| inherited.ignore_errors.clone());
    let delegate_to = obj
        .get("delegate_to")
        .map(crate::vars::display)
        .or_else(|| inherited.delegate_to.clone());

    if obj.contains_key("block") {
        let passed = Inherited {
            when,
            tags: tags.clone(),
            escalation,
            vars,
            notify,
            no_log,
            run_once,
            check_mode,
            ignore_errors,
            delegate_to,
            defaults: inherited.defaults.clone(),
        };
        let mut parts: [Vec<Task>; 3] = Default::default();
        for (part, key) in parts.iter_mut().zip(check::BLOCK_KEYS) {
            let Some(Value::Array(items)) = obj.get(*key) else {
                continue;
            };
            for (j, t) in items.iter().enumerate() {
                let path = child(&child(at, Seg::key(key)), Seg::Index(j));
                expand_task(t, src, &path, dir, &passed, ctx, part)?;
            }
        }
        let [block, rescue, always] = parts;
        out.push(Task {
            name,
            module: "block".into(),
            tags,
            base_dir: dir.to_path_buf(),
            block: Some(Box::new(Block {
                block,
                rescue,
                always,
            })),
            ..Default::default()
        });
        return Ok(());
    }

    if module == "include_role" || module == "import_role" {
        if let Some((k, why)) = NOT_ON_INCLUDE.iter().find(|(k, _)| obj.contains_key(*k)) {
            return Err(PlaybookError(format!(
                "{}: '{k}' on {module}: {why}",
                src.at_key(&child(at, Seg::key(k)))
            )));
        }
        let role_name = args
            .get("name")
            .map(crate::vars::display)
            .unwrap_or_default();
        let here = src.at(&child(at, Seg::key(&module)));
        let role = roles::find(&role_name, ctx.play_dir)
            .map_err(|e| PlaybookError(format!("{here}: {module}: {e}")))?;
        let tasks_from = args.get("tasks_from").map(crate::vars::display);
        let mut role_vars = role.vars.clone();
        crate::vars::overlay(&mut role_vars, &vars);
        let mut defaults = inherited.defaults.clone();
        crate::vars::overlay(&mut defaults, &role.defaults);
        let passed = Inherited {
            when,
            tags,
            escalation,
            vars: role_vars,
            notify,
            no_log,
            run_once,
            check_mode,
            ignore_errors,
            delegate_to,
            defaults,
        };
        let Some(file) = roles::tasks_file(&role, tasks_from.as_deref()) else {
            if let Some(f) = tasks_from {
                return Err(PlaybookError(format!(
                    "{here}: {module}: role '{role_name}' has no tasks file '{f}'"
                )));
            }
            return Ok(());
        };
        return expand_file(&file, &passed, ctx, out);
    }

    if module == "include_tasks" || module == "import_tasks" {
        if let Some((k, why)) = NOT_ON_INCLUDE.iter().find(|(k, _)| obj.contains_key(*k)) {
            return Err(PlaybookError(format!(
                "{}: '{k}' on {module}: {why}",
                src.at_key(&child(at, Seg::key(k)))
            )));
        }
        if ctx.depth > MAX_INCLUDE_DEPTH {
            return Err(PlaybookError(format!(
                "{}: {module} nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)",
                src.at(at)
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
                src.at(&child(at, Seg::key(&module)))
            )));
        }
        let inc = dir.join(&target);
        let text = read(&inc)?;
        let doc = parse_checked(&text, &inc, Shape::Kind(crate::modules::spec::Kind::Tasks))?;
        let inc_src = Src {
            file: &inc,
            text: &text,
        };
        let inc_dir = base_dir(&inc);
        let passed = Inherited {
            when,
            tags,
            escalation,
            vars,
            notify,
            no_log,
            run_once,
            check_mode,
            ignore_errors,
            delegate_to,
            defaults: inherited.defaults.clone(),
        };
        let inner = Expand {
            handlers: ctx.handlers,
            depth: ctx.depth + 1,
            play_dir: ctx.play_dir,
        };
        for (j, t) in doc.as_array().into_iter().flatten().enumerate() {
            expand_task(t, inc_src, &[Seg::Index(j)], &inc_dir, &passed, &inner, out)?;
        }
        return Ok(());
    }

    out.push(Task {
        name,
        module,
        args,
        when,
        register: obj.get("register").map(crate::vars::display),
        until: strings(obj.get("until")),
        retries: obj.get("retries").cloned().unwrap_or(Value::Null),
        delay: obj.get("delay").cloned().unwrap_or(Value::Null),
        loop_items: obj.get("loop").or_else(|| obj.get("with_items")).cloned(),
        tags,
        notify,
        listen: strings(obj.get("listen")),
        ignore_errors: ignore_errors.unwrap_or_default(),
        no_log: no_log.unwrap_or_default(),
        run_once: run_once.unwrap_or_default(),
        delegate_to,
        check_mode,
        changed_when: strings(obj.get("changed_when")),
        failed_when: strings(obj.get("failed_when")),
        vars,
        base_dir: dir.to_path_buf(),
        escalation,
        block: None,
        role_defaults: inherited.defaults.clone(),
    });
    Ok(())
}

#[cfg(test)]
mod tests;
