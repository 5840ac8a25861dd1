//! Task modules.
//!
//! Every module works in two steps, after jetporch: [`Module::query`] looks at the host and
//! answers "already so" ([`Query::Done`]), "this would change" ([`Query::Change`]), or "I
//! cannot know without running it" ([`Query::Run`]). Only then, and only outside check mode,
//! [`Module::apply`] carries out exactly what the query planned. Check mode stops after the
//! query, so a dry run and a real run cannot disagree about what would change.

pub mod command;
mod facts;
mod fetch;
mod file;
mod files_common;
mod info;
mod net;
mod package;
mod registry;
mod service;
pub mod spec;
mod zdm;

pub use registry::{module, module_spec};

use std::path::Path;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{Map, Value};

use crate::secrets::Redactor;
use crate::template::Templar;
use crate::transport::{Transport, TransportError};
use crate::vars::Vars;

/// Everything a module may look at while working on one host.
pub struct ModuleCtx<'a> {
    pub host: &'a str,
    pub transport: &'a dyn Transport,
    /// Arguments with templates already rendered for this host.
    pub args: &'a Map<String, Value>,
    /// The host's variables (for modules that render templates or evaluate conditions).
    pub vars: &'a Vars,
    /// Every host's variables (`hostvars`), one copy shared by all hosts of the task: `vars`
    /// does not carry it (templates still see it, from the templar).
    pub hostvars: &'a Value,
    pub templar: &'a Templar,
    /// Directory of the file the task came from (to find `src:` files and templates).
    pub base_dir: &'a Path,
    pub redactor: &'a Redactor,
}

/// What a module reports.
#[derive(Debug, Clone, Default)]
pub struct ModResult {
    pub changed: bool,
    pub failed: bool,
    pub msg: Option<String>,
    /// Module-specific fields (`rc`, `stdout`, `status`, `json`, ...), registered as-is.
    pub data: Map<String, Value>,
    /// Facts to set on the host (`set_fact`).
    pub facts: Option<Vars>,
    /// Unified diff of what changed or would change.
    pub diff: Option<String>,
}

impl ModResult {
    pub fn ok() -> ModResult {
        ModResult::default()
    }
    pub fn msg(msg: impl Into<String>) -> ModResult {
        ModResult {
            msg: Some(msg.into()),
            ..Default::default()
        }
    }
    pub fn failed(msg: impl Into<String>) -> ModResult {
        ModResult {
            failed: true,
            msg: Some(msg.into()),
            ..Default::default()
        }
    }
}

/// The state a query found, and what applying would do.
#[derive(Debug, Clone)]
pub enum Query {
    /// Nothing to apply: the host is already as wanted, or the module is informational.
    Done(ModResult),
    /// Applying changes the host as described; the plan carries what apply needs.
    Change(Planned),
    /// The effect cannot be predicted without running (a command without `creates`).
    Run(Planned),
}

/// What a query decided to do.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    /// One line for humans: "update content", "create directory", "run: systemctl ...".
    pub summary: String,
    pub diff: Option<String>,
    /// New file content, when the change writes one.
    pub content: Option<Vec<u8>>,
    /// Module-specific details computed by the query.
    pub detail: Map<String, Value>,
}

/// A module error: the task fails with this message, or the host is unreachable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModuleError {
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Unreachable(String),
}

impl From<TransportError> for ModuleError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Unreachable(m) => ModuleError::Unreachable(m),
            TransportError::Failed(m) => ModuleError::Failed(m),
        }
    }
}

impl From<crate::template::TemplateError> for ModuleError {
    fn from(e: crate::template::TemplateError) -> Self {
        ModuleError::Failed(e.0)
    }
}

pub type ModFuture<'a, T> = BoxFuture<'a, Result<T, ModuleError>>;

/// One task module.
pub trait Module: Send + Sync {
    /// Inspects the host; never changes it.
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query>;

    /// Carries out what `query` planned. Not called in check mode, nor for `Query::Done`.
    ///
    /// Modules that only look or decide (`debug`, `assert`, `wait_for`, `gather_facts`, ...) answer
    /// `Query::Done` and keep this default, which is never reached; a module that plans a
    /// change without implementing apply fails its task here rather than report success.
    fn apply<'a>(&'a self, _: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async {
            Err(ModuleError::Failed(
                "this module plans no change to apply".into(),
            ))
        }
        .boxed()
    }
}

pub use zdm::is_gate_result;

// ---- argument helpers shared by modules ----

pub(crate) use files_common::{find_src, render_template};

pub(crate) fn arg_str(args: &Map<String, Value>, k: &str) -> Option<String> {
    match args.get(k) {
        None | Some(Value::Null) => None,
        Some(v) => Some(crate::vars::display(v)),
    }
}

pub(crate) fn arg_bool(args: &Map<String, Value>, k: &str, default: bool) -> bool {
    args.get(k).map_or(default, crate::vars::truthy)
}

pub(crate) fn arg_f64(args: &Map<String, Value>, k: &str) -> Result<Option<f64>, ModuleError> {
    match args.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ModuleError::Failed(format!("argument '{k}': '{s}' is not a number"))),
        Some(other) => Err(ModuleError::Failed(format!(
            "argument '{k}': {other} is not a number"
        ))),
    }
}

/// Parses a file mode. Strings are octal (`"0644"`, `"600"`); integers written like octal
/// (`0644` or `644` in YAML, which YAML 1.2 reads as decimal 644) are read as octal too,
/// because nobody means mode 644 decimal.
pub(crate) fn parse_mode(v: &Value) -> Result<u32, ModuleError> {
    let bad = || ModuleError::Failed(format!("bad mode {v}: expected octal like \"0644\""));
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err(bad()),
    };
    let digits = text.trim_start_matches("0o");
    if digits.is_empty() || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(bad());
    }
    let m = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if m > 0o7777 {
        return Err(bad());
    }
    Ok(m)
}
