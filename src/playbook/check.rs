//! A validating YAML reader.
//!
//! serde_yaml_ng attaches the position of the YAML node being read to any error raised while
//! reading it. So instead of loading a `Value` (which forgets positions) and checking it
//! afterwards, the checks run *inside* deserialization: an unknown key fails while its key is
//! read (the error points at the key), a wrong type fails while its value is read (the error
//! points at the value), a missing argument fails at the mapping that lacks it. The output is
//! plain JSON that the loader turns into the typed model without further checks.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::{Map, Value};

use crate::modules::module_spec;
use crate::modules::spec::{Kind, ModuleSpec};
use crate::template::is_template;

/// Keys a play may have.
pub const PLAY_KEYS: &[(&str, Kind)] = &[
    ("name", Kind::Scalar),
    ("hosts", Kind::ScalarList),
    ("serial", Kind::Serial),
    ("max_fail_percentage", Kind::Number),
    ("any_errors_fatal", Kind::Bool),
    ("vars", Kind::Mapping),
    ("vars_files", Kind::ScalarList),
    ("pre_tasks", Kind::Tasks),
    ("tasks", Kind::Tasks),
    ("post_tasks", Kind::Tasks),
    ("handlers", Kind::Handlers),
    ("gather_facts", Kind::Bool),
    ("become", Kind::Bool),
    ("become_user", Kind::Scalar),
    ("become_method", Kind::OneOf(BECOME_METHODS)),
    ("roles", Kind::Any),
];

/// Privilege escalation methods zdm-run implements.
pub const BECOME_METHODS: &[&str] = &["sudo"];

/// Keywords a task may have besides its one module.
pub const TASK_KEYS: &[(&str, Kind)] = &[
    ("name", Kind::Scalar),
    ("when", Kind::ScalarList),
    ("register", Kind::Scalar),
    ("until", Kind::ScalarList),
    ("retries", Kind::Int),
    ("delay", Kind::Number),
    ("loop", Kind::Any),
    ("with_items", Kind::Any),
    ("tags", Kind::ScalarList),
    ("notify", Kind::ScalarList),
    ("ignore_errors", Kind::Bool),
    ("no_log", Kind::Bool),
    ("run_once", Kind::Bool),
    ("delegate_to", Kind::Scalar),
    ("check_mode", Kind::Bool),
    ("changed_when", Kind::ScalarList),
    ("failed_when", Kind::ScalarList),
    ("vars", Kind::Mapping),
    ("args", Kind::Mapping),
    ("become", Kind::Bool),
    ("become_user", Kind::Scalar),
    ("become_method", Kind::OneOf(BECOME_METHODS)),
];

/// The keys of a block; a task with `block` has no module.
pub const BLOCK_KEYS: &[&str] = &["block", "rescue", "always"];

/// Task keywords that make no sense on a block (they describe one task's own result or
/// execution), with why: refused at load time rather than silently dropped.
const NOT_ON_BLOCK: &[(&str, &str)] = &[
    (
        "register",
        "a block has no result of its own; register its tasks",
    ),
    ("loop", "a block cannot loop; loop its tasks"),
    ("with_items", "a block cannot loop; loop its tasks"),
    ("until", "a block is not retried; put until on its tasks"),
    (
        "retries",
        "a block is not retried; put retries on its tasks",
    ),
    ("delay", "a block is not retried; put delay on its tasks"),
    (
        "changed_when",
        "a block has no result; put changed_when on its tasks",
    ),
    (
        "failed_when",
        "a block has no result; put failed_when on its tasks",
    ),
    ("args", "a block has no module arguments"),
    ("listen", "put listen on the block's handlers"),
];

/// The key under which the loader finds a task's module name.
pub const MODULE_FIELD: &str = "__module";
/// The key under which the loader finds a task's module arguments.
pub const ARGS_FIELD: &str = "__args";

/// What a node must look like.
#[derive(Clone, Copy)]
pub enum Shape {
    Kind(Kind),
    /// The top-level list of plays.
    Plays,
    Play,
    Task {
        handler: bool,
    },
    Args(&'static ModuleSpec),
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Shape::Kind(k) => f.write_str(describe(*k)),
            Shape::Plays => f.write_str("a list of plays"),
            Shape::Play => f.write_str("a play (a mapping)"),
            Shape::Task { .. } => f.write_str("a task (a mapping)"),
            Shape::Args(m) if m.free_form => {
                write!(f, "arguments of {} (a string or a mapping)", m.name)
            }
            Shape::Args(m) => write!(f, "arguments of {} (a mapping)", m.name),
        }
    }
}

fn describe(k: Kind) -> &'static str {
    match k {
        Kind::Any => "any value",
        Kind::Scalar => "a string, number or boolean",
        Kind::Bool => "a boolean",
        Kind::Int => "an integer",
        Kind::Number => "a number",
        Kind::ScalarList => "a string or a list of strings",
        Kind::IntList => "an integer or a list of integers",
        Kind::Mapping => "a mapping",
        Kind::OneOf(_) => "one of the allowed words",
        Kind::Tasks => "a list of tasks",
        Kind::Handlers => "a list of handlers",
        Kind::Serial => "an integer, a percentage like \"30%\", or a list of those",
    }
}

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Shape {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        match self {
            Shape::Kind(Kind::Any | Kind::Scalar | Kind::Bool | Kind::ScalarList) => {
                Ok(Value::Bool(v))
            }
            _ => Err(E::invalid_type(Unexpected::Bool(v), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        match self {
            Shape::Kind(
                Kind::Any
                | Kind::Scalar
                | Kind::Int
                | Kind::Number
                | Kind::ScalarList
                | Kind::IntList
                | Kind::Serial,
            ) => Ok(Value::from(v)),
            _ => Err(E::invalid_type(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => self.visit_i64(i),
            Err(_) => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        match self {
            Shape::Kind(Kind::Any | Kind::Scalar | Kind::Number | Kind::ScalarList) => {
                Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
            }
            _ => Err(E::invalid_type(Unexpected::Float(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        let ok = Value::String(v.to_string());
        match self {
            Shape::Kind(Kind::Any | Kind::Scalar | Kind::ScalarList) => Ok(ok),
            Shape::Kind(Kind::Bool) => {
                let lower = v.to_ascii_lowercase();
                if is_template(v)
                    || matches!(
                        lower.as_str(),
                        "yes" | "no" | "true" | "false" | "on" | "off"
                    )
                {
                    Ok(ok)
                } else {
                    Err(E::invalid_value(Unexpected::Str(v), &self))
                }
            }
            Shape::Kind(Kind::Int | Kind::IntList) => {
                if is_template(v) || v.trim().parse::<i64>().is_ok() {
                    Ok(ok)
                } else {
                    Err(E::invalid_value(Unexpected::Str(v), &self))
                }
            }
            Shape::Kind(Kind::Number) => {
                if is_template(v) || v.trim().parse::<f64>().is_ok() {
                    Ok(ok)
                } else {
                    Err(E::invalid_value(Unexpected::Str(v), &self))
                }
            }
            Shape::Kind(Kind::Serial) => {
                let t = v.trim();
                let valid = is_template(t)
                    || t.parse::<u64>().is_ok()
                    || t.strip_suffix('%')
                        .is_some_and(|p| p.trim().parse::<f64>().is_ok());
                if valid {
                    Ok(ok)
                } else {
                    Err(E::invalid_value(Unexpected::Str(v), &self))
                }
            }
            Shape::Kind(Kind::OneOf(words)) => {
                if is_template(v) || words.contains(&v) {
                    Ok(ok)
                } else {
                    Err(E::custom(format!(
                        "invalid value '{v}', expected one of: {}",
                        words.join(", ")
                    )))
                }
            }
            Shape::Args(m) if m.free_form && matches!(m.name, "command" | "shell") => {
                let args = super::kv::parse_free_form(v, super::kv::COMMAND_KEYS)
                    .map_err(|e| E::custom(format!("{}: {e}", m.name)))?;
                finish_args(m, args)
            }
            Shape::Args(m) if m.free_form => {
                let mut args = Map::new();
                args.insert("_raw".into(), ok);
                Ok(Value::Object(args))
            }
            Shape::Args(m) => {
                // `debug: msg=hi`: the same checks as the mapping form, word by word.
                let pairs =
                    super::kv::parse_pairs(v).map_err(|e| E::custom(format!("{}: {e}", m.name)))?;
                let mut args = Map::new();
                for (k, val) in pairs {
                    let k: String = KeyCheck::Args(m).visit_str(&k)?;
                    let text = crate::vars::display(&val);
                    let val = Shape::Kind(arg_kind(m, &k)).visit_str::<E>(&text)?;
                    args.insert(k, val);
                }
                finish_args(m, args)
            }
            _ => Err(E::invalid_type(Unexpected::Str(v), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        match self {
            Shape::Kind(Kind::Tasks | Kind::Handlers) => Ok(Value::Array(vec![])),
            Shape::Kind(Kind::Mapping) => Ok(Value::Object(Map::new())),
            Shape::Kind(Kind::Any | Kind::Scalar) => Ok(Value::Null),
            Shape::Plays => Ok(Value::Array(vec![])),
            Shape::Args(m) => finish_args(m, Map::new()),
            _ => Err(E::invalid_type(Unexpected::Unit, &self)),
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let element = match self {
            Shape::Kind(Kind::Any) => Shape::Kind(Kind::Any),
            Shape::Kind(Kind::ScalarList) => Shape::Kind(Kind::Scalar),
            Shape::Kind(Kind::IntList) => Shape::Kind(Kind::Int),
            Shape::Kind(Kind::Serial) => Shape::Kind(Kind::Serial),
            Shape::Kind(Kind::Tasks) => Shape::Task { handler: false },
            Shape::Kind(Kind::Handlers) => Shape::Task { handler: true },
            Shape::Plays => Shape::Play,
            _ => return Err(de::Error::invalid_type(Unexpected::Seq, &self)),
        };
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(element)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        match self {
            Shape::Kind(Kind::Any | Kind::Mapping) => {
                let mut out = Map::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v = map.next_value_seed(Shape::Kind(Kind::Any))?;
                    out.insert(k, v);
                }
                Ok(Value::Object(out))
            }
            Shape::Play => read_play(map),
            Shape::Task { handler } => read_task(map, handler),
            Shape::Args(m) => {
                let mut out = Map::new();
                while let Some(k) = map.next_key_seed(KeyCheck::Args(m))? {
                    let kind = arg_kind(m, &k);
                    let v = map.next_value_seed(Shape::Kind(kind))?;
                    out.insert(k, v);
                }
                finish_args(m, out)
            }
            _ => Err(de::Error::invalid_type(Unexpected::Map, &self)),
        }
    }
}

fn arg_kind(m: &ModuleSpec, key: &str) -> Kind {
    m.args
        .iter()
        .find(|(n, _)| *n == key)
        .map_or(Kind::Any, |(_, k)| *k)
}

fn finish_args<E: de::Error>(m: &ModuleSpec, args: Map<String, Value>) -> Result<Value, E> {
    for r in m.required {
        if !args.contains_key(*r) {
            return Err(E::custom(format!(
                "module '{}' requires argument '{r}'",
                m.name
            )));
        }
    }
    if !m.one_of_required.is_empty() && !m.one_of_required.iter().any(|k| args.contains_key(*k)) {
        let names: Vec<&str> = m
            .one_of_required
            .iter()
            .copied()
            .filter(|n| *n != "_raw")
            .collect();
        return Err(E::custom(format!(
            "module '{}' needs one of: {}",
            m.name,
            names.join(", ")
        )));
    }
    Ok(Value::Object(args))
}

fn read_play<'de, A: MapAccess<'de>>(mut map: A) -> Result<Value, A::Error> {
    let mut out = Map::new();
    while let Some(k) = map.next_key_seed(KeyCheck::Play)? {
        let kind = if k == "import_playbook" {
            Kind::Scalar
        } else {
            PLAY_KEYS
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(Kind::Any, |(_, kind)| *kind)
        };
        let v = map.next_value_seed(Shape::Kind(kind))?;
        out.insert(k, v);
    }
    if !out.contains_key("hosts") && !out.contains_key("import_playbook") {
        return Err(de::Error::custom(
            "a play needs 'hosts' (or is an 'import_playbook')",
        ));
    }
    Ok(Value::Object(out))
}

fn read_task<'de, A: MapAccess<'de>>(mut map: A, handler: bool) -> Result<Value, A::Error> {
    let module: RefCell<Option<&'static ModuleSpec>> = RefCell::new(None);
    let mut out = Map::new();
    while let Some(k) = map.next_key_seed(KeyCheck::Task {
        handler,
        module: &module,
    })? {
        if k == "listen" {
            let v = map.next_value_seed(Shape::Kind(Kind::ScalarList))?;
            out.insert(k, v);
        } else if BLOCK_KEYS.contains(&k.as_str()) {
            let kind = if handler { Kind::Handlers } else { Kind::Tasks };
            let v = map.next_value_seed(Shape::Kind(kind))?;
            out.insert(k, v);
        } else if let Some((_, kind)) = TASK_KEYS.iter().find(|(n, _)| *n == k) {
            let v = map.next_value_seed(Shape::Kind(*kind))?;
            out.insert(k, v);
        } else {
            let spec = module_spec(&k).expect("key check accepted a module");
            let v = map.next_value_seed(Shape::Args(spec))?;
            out.insert(MODULE_FIELD.into(), Value::String(spec.name.into()));
            out.insert(ARGS_FIELD.into(), v);
        }
    }
    if out.contains_key("block") {
        if let Some(spec) = *module.borrow() {
            return Err(de::Error::custom(format!(
                "a block has no module, but this one has '{}' (put it in a task of the block)",
                spec.name
            )));
        }
        if let Some((k, why)) = NOT_ON_BLOCK.iter().find(|(k, _)| out.contains_key(*k)) {
            return Err(de::Error::custom(format!("'{k}' on a block: {why}")));
        }
        return Ok(Value::Object(out));
    }
    if let Some(k) = ["rescue", "always"].iter().find(|k| out.contains_key(**k)) {
        return Err(de::Error::custom(format!(
            "'{k}' without 'block' (rescue and always belong to a block)"
        )));
    }
    if module.borrow().is_none() {
        return Err(de::Error::custom(
            "task has no module (expected one of: template, copy, file, command, shell, \
             set_fact, debug, assert, fail, pause, uri, wait_for, include_tasks, import_tasks, meta)",
        ));
    }
    // `args:` may come before the module key, so its names are checked once both are read
    // (the error then points at the task).
    if let (Some(spec), Some(Value::Object(args))) = (*module.borrow(), out.get("args")) {
        for k in args.keys() {
            if !spec.any_args && !spec.args.iter().any(|(n, _)| n == k) {
                let names: Vec<&str> = spec.args.iter().map(|(n, _)| *n).collect();
                return Err(de::Error::custom(format!(
                    "unknown argument '{k}' in args for module '{}' (expected one of: {})",
                    spec.name,
                    names.join(", ")
                )));
            }
        }
    }
    Ok(Value::Object(out))
}

/// Reads a mapping key and refuses it on the spot if it is unknown, so the error points at
/// the key itself.
#[derive(Clone, Copy)]
enum KeyCheck<'a> {
    Play,
    Task {
        handler: bool,
        module: &'a RefCell<Option<&'static ModuleSpec>>,
    },
    Args(&'static ModuleSpec),
}

impl<'de> DeserializeSeed<'de> for KeyCheck<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyCheck<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key name")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<String, E> {
        match self {
            KeyCheck::Play => {
                if k == "import_playbook" || PLAY_KEYS.iter().any(|(n, _)| *n == k) {
                    Ok(k.to_string())
                } else {
                    let names: Vec<&str> = PLAY_KEYS.iter().map(|(n, _)| *n).collect();
                    Err(E::custom(format!(
                        "unknown play key '{k}' (expected one of: {}, import_playbook)",
                        names.join(", ")
                    )))
                }
            }
            KeyCheck::Task { handler, module } => {
                if TASK_KEYS.iter().any(|(n, _)| *n == k)
                    || (handler && k == "listen")
                    || BLOCK_KEYS.contains(&k)
                {
                    return Ok(k.to_string());
                }
                match module_spec(k) {
                    Some(spec) => {
                        let mut slot = module.borrow_mut();
                        if let Some(prev) = *slot {
                            return Err(E::custom(format!(
                                "task has two modules: '{}' and '{k}'",
                                prev.name
                            )));
                        }
                        *slot = Some(spec);
                        Ok(k.to_string())
                    }
                    None => Err(E::custom(format!("unknown module or task keyword '{k}'"))),
                }
            }
            KeyCheck::Args(m) => {
                if m.any_args || m.args.iter().any(|(n, _)| *n == k) {
                    if m.any_args && !is_identifier(k) {
                        return Err(E::custom(format!("'{k}' is not a valid variable name")));
                    }
                    Ok(k.to_string())
                } else {
                    let names: Vec<&str> = m.args.iter().map(|(n, _)| *n).collect();
                    Err(E::custom(format!(
                        "unknown argument '{k}' for module '{}' (expected one of: {})",
                        m.name,
                        names.join(", ")
                    )))
                }
            }
        }
    }
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
