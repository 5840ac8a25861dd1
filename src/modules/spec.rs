//! The argument list of every module, checked when the playbook is loaded so that a typo
//! or a wrong type is refused with file, line and column before anything runs.

/// The shape a YAML value must have. Strings are always accepted where a number or boolean
/// is expected *if they are templates* (`"{{ port }}"`), since their type is only known later.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Anything.
    Any,
    /// A string, number or boolean.
    Scalar,
    /// A boolean (or yes/no/true/false text, or a template).
    Bool,
    /// An integer (or a template).
    Int,
    /// A number (or a template).
    Number,
    /// One scalar or a list of scalars.
    ScalarList,
    /// One integer or a list of integers (`status_code`).
    IntList,
    /// A mapping with any keys.
    Mapping,
    /// One of a fixed set of words (or a template).
    OneOf(&'static [&'static str]),
    /// A list of tasks.
    Tasks,
    /// A list of handlers (tasks that may also `listen`).
    Handlers,
    /// `serial`: an integer, a percentage like `"30%"`, or a list of those.
    Serial,
}

/// One module's arguments.
#[derive(Debug)]
pub struct ModuleSpec {
    pub name: &'static str,
    /// Accepts a bare string (`command: ls -l`) stored under `_raw`.
    pub free_form: bool,
    /// Accepts any argument name (`set_fact`).
    pub any_args: bool,
    pub args: &'static [(&'static str, Kind)],
    /// At least one of these must be present (empty: no requirement).
    pub one_of_required: &'static [&'static str],
    /// All of these must be present.
    pub required: &'static [&'static str],
}

const FILE_ATTRS: [(&str, Kind); 4] = [
    ("mode", Kind::Scalar),
    ("owner", Kind::Scalar),
    ("group", Kind::Scalar),
    ("backup", Kind::Bool),
];

macro_rules! spec {
    ($name:literal, free=$free:expr, any=$any:expr, args=[$($a:expr),* $(,)?], one_of=[$($o:literal),*], req=[$($r:literal),*]) => {
        ModuleSpec {
            name: $name,
            free_form: $free,
            any_args: $any,
            args: &[$($a),*],
            one_of_required: &[$($o),*],
            required: &[$($r),*],
        }
    };
}

const COMMAND_ARGS: [(&str, Kind); 7] = [
    ("cmd", Kind::Scalar),
    ("argv", Kind::ScalarList),
    ("creates", Kind::Scalar),
    ("removes", Kind::Scalar),
    ("chdir", Kind::Scalar),
    ("stdin", Kind::Scalar),
    ("timeout", Kind::Int),
];

/// Selection and tuning shared by `zdm_migrate` and `zdm_validate`.
const DATA_ARGS: [(&str, Kind); 8] = [
    ("keyspaces", Kind::ScalarList),
    ("tables", Kind::ScalarList),
    ("splits", Kind::Int),
    ("concurrency", Kind::Int),
    ("page_size", Kind::Int),
    ("origin_rate", Kind::Int),
    ("target_rate", Kind::Int),
    ("state_dir", Kind::Scalar),
];

/// Every module this build knows.
pub static MODULES: &[ModuleSpec] = &[
    spec!(
        "template",
        free = false,
        any = false,
        args = [
            ("src", Kind::Scalar),
            ("dest", Kind::Scalar),
            FILE_ATTRS[0],
            FILE_ATTRS[1],
            FILE_ATTRS[2],
            FILE_ATTRS[3],
            ("validate", Kind::Scalar),
            ("force", Kind::Bool),
        ],
        one_of = [],
        req = ["src", "dest"]
    ),
    spec!(
        "copy",
        free = false,
        any = false,
        args = [
            ("src", Kind::Scalar),
            ("content", Kind::Any),
            ("dest", Kind::Scalar),
            FILE_ATTRS[0],
            FILE_ATTRS[1],
            FILE_ATTRS[2],
            FILE_ATTRS[3],
            ("validate", Kind::Scalar),
            ("force", Kind::Bool),
        ],
        one_of = ["src", "content"],
        req = ["dest"]
    ),
    spec!(
        "file",
        free = false,
        any = false,
        args = [
            ("path", Kind::Scalar),
            ("dest", Kind::Scalar),
            ("name", Kind::Scalar),
            (
                "state",
                Kind::OneOf(&["file", "directory", "absent", "link", "touch"])
            ),
            ("src", Kind::Scalar),
            FILE_ATTRS[0],
            FILE_ATTRS[1],
            FILE_ATTRS[2],
            ("force", Kind::Bool),
        ],
        one_of = ["path", "dest", "name"],
        req = []
    ),
    ModuleSpec {
        name: "command",
        free_form: true,
        any_args: false,
        args: &COMMAND_ARGS,
        one_of_required: &["cmd", "argv", "_raw"],
        required: &[],
    },
    ModuleSpec {
        name: "shell",
        free_form: true,
        any_args: false,
        args: &COMMAND_ARGS,
        one_of_required: &["cmd", "_raw"],
        required: &[],
    },
    spec!(
        "set_fact",
        free = false,
        any = true,
        args = [],
        one_of = [],
        req = []
    ),
    spec!(
        "debug",
        free = false,
        any = false,
        args = [
            ("msg", Kind::Any),
            ("var", Kind::Scalar),
            ("verbosity", Kind::Int),
        ],
        one_of = [],
        req = []
    ),
    spec!(
        "assert",
        free = false,
        any = false,
        args = [
            ("that", Kind::ScalarList),
            ("fail_msg", Kind::Scalar),
            ("msg", Kind::Scalar),
            ("success_msg", Kind::Scalar),
            ("quiet", Kind::Bool),
        ],
        one_of = [],
        req = ["that"]
    ),
    spec!(
        "fail",
        free = false,
        any = false,
        args = [("msg", Kind::Scalar)],
        one_of = [],
        req = []
    ),
    spec!(
        "pause",
        free = false,
        any = false,
        args = [
            ("seconds", Kind::Number),
            ("minutes", Kind::Number),
            ("prompt", Kind::Scalar),
        ],
        one_of = [],
        req = []
    ),
    spec!(
        "uri",
        free = false,
        any = false,
        args = [
            ("url", Kind::Scalar),
            (
                "method",
                Kind::OneOf(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
            ),
            ("body", Kind::Any),
            ("body_format", Kind::OneOf(&["json", "raw"])),
            ("headers", Kind::Mapping),
            ("status_code", Kind::IntList),
            ("return_content", Kind::Bool),
            ("timeout", Kind::Number),
            ("validate_certs", Kind::Bool),
        ],
        one_of = [],
        req = ["url"]
    ),
    spec!(
        "wait_for",
        free = false,
        any = false,
        args = [
            ("host", Kind::Scalar),
            ("port", Kind::Int),
            ("path", Kind::Scalar),
            (
                "state",
                Kind::OneOf(&["started", "stopped", "present", "absent"])
            ),
            ("timeout", Kind::Number),
            ("delay", Kind::Number),
            ("sleep", Kind::Number),
            ("connect_timeout", Kind::Number),
            ("msg", Kind::Scalar),
        ],
        one_of = ["port", "path"],
        req = []
    ),
    spec!(
        "zdm_preflight",
        free = false,
        any = false,
        args = [
            ("keyspaces", Kind::ScalarList),
            ("tables", Kind::ScalarList)
        ],
        one_of = [],
        req = []
    ),
    spec!(
        "zdm_health_gate",
        free = false,
        any = false,
        args = [
            ("proxies", Kind::ScalarList),
            ("observe_seconds", Kind::Number),
            ("max_failed_write_ratio", Kind::Number),
            ("max_failed_read_ratio", Kind::Number),
            ("check_target_latency", Kind::Bool),
            ("max_async_read_error_ratio", Kind::Number),
            ("max_async_read_mismatch_ratio", Kind::Number),
            ("max_target_p99_ratio", Kind::Number),
            ("target_p99_floor_seconds", Kind::Number),
            ("accept_divergent_tables", Kind::ScalarList),
            ("readiness_only", Kind::Bool),
        ],
        one_of = [],
        req = []
    ),
    spec!(
        "zdm_client_gate",
        free = false,
        any = false,
        args = [
            ("proxies", Kind::ScalarList),
            ("wait_seconds", Kind::Number),
            ("max_client_connections", Kind::Number),
        ],
        one_of = [],
        req = []
    ),
    spec!(
        "zdm_migrate",
        free = false,
        any = false,
        args = [
            DATA_ARGS[0],
            DATA_ARGS[1],
            DATA_ARGS[2],
            DATA_ARGS[3],
            DATA_ARGS[4],
            DATA_ARGS[5],
            DATA_ARGS[6],
            DATA_ARGS[7],
            ("fresh", Kind::Bool),
        ],
        one_of = [],
        req = []
    ),
    spec!(
        "zdm_validate",
        free = false,
        any = false,
        args = [
            DATA_ARGS[0],
            DATA_ARGS[1],
            DATA_ARGS[2],
            DATA_ARGS[3],
            DATA_ARGS[4],
            DATA_ARGS[5],
            DATA_ARGS[6],
            DATA_ARGS[7],
            ("max_missing", Kind::Int),
            ("max_mismatched", Kind::Int),
            ("max_extra", Kind::Int),
            ("autocorrect", Kind::Bool),
            ("autocorrect_extra", Kind::Bool),
            ("compare_writetime", Kind::Bool),
            ("sample_percent", Kind::Number),
            ("max_examples", Kind::Int),
            ("report", Kind::Scalar),
            ("fresh", Kind::Bool),
        ],
        one_of = [],
        req = []
    ),
    spec!(
        "zdm_phase",
        free = false,
        any = false,
        args = [
            (
                "action",
                Kind::OneOf(&["start", "complete", "fail", "rollback"])
            ),
            (
                "phase",
                Kind::OneOf(&[
                    "preflight",
                    "phase1",
                    "phase2",
                    "phase3",
                    "phase4",
                    "phase5"
                ])
            ),
            ("expected_proxy_settings", Kind::Any),
            ("msg", Kind::Scalar),
        ],
        one_of = [],
        req = ["action"]
    ),
    ModuleSpec {
        name: "include_tasks",
        free_form: true,
        any_args: false,
        args: &[("file", Kind::Scalar)],
        one_of_required: &["file", "_raw"],
        required: &[],
    },
    // Roles, expanded when the playbook is loaded (both are static here).
    ModuleSpec {
        name: "include_role",
        free_form: false,
        any_args: false,
        args: &[("name", Kind::Scalar), ("tasks_from", Kind::Scalar)],
        one_of_required: &[],
        required: &["name"],
    },
    ModuleSpec {
        name: "import_role",
        free_form: false,
        any_args: false,
        args: &[("name", Kind::Scalar), ("tasks_from", Kind::Scalar)],
        one_of_required: &[],
        required: &["name"],
    },
    // `meta: flush_handlers` / `end_host` / `noop`: handled by the run engine itself.
    ModuleSpec {
        name: "meta",
        free_form: true,
        any_args: false,
        args: &[],
        one_of_required: &["_raw"],
        required: &[],
    },
    ModuleSpec {
        name: "import_tasks",
        free_form: true,
        any_args: false,
        args: &[("file", Kind::Scalar)],
        one_of_required: &["file", "_raw"],
        required: &[],
    },
];

/// Looks a module up by name (also accepting the `ansible.builtin.` prefix).
pub fn module_spec(name: &str) -> Option<&'static ModuleSpec> {
    let short = name.strip_prefix("ansible.builtin.").unwrap_or(name);
    MODULES
        .iter()
        .chain(super::FLEET_SPECS.iter().copied())
        .find(|m| m.name == short)
}
