//! Variable values and the helpers every layer shares.
//!
//! Variables are kept as `serde_json::Value` because YAML, JSON extra-vars, registered module
//! results and minijinja all convert to and from it losslessly enough for configuration work.

use serde_json::{Map, Value};

/// One variable scope (a mapping from names to values).
pub type Vars = Map<String, Value>;

/// Converts parsed YAML into a variable value. YAML keys that are not strings (`1: x`) become
/// their string form, because variable names and Jinja lookups are strings.
pub fn yaml_to_json(v: &serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(seq) => Value::Array(seq.iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(scalar_key(k), yaml_to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(&t.value),
    }
}

fn scalar_key(k: &serde_yaml_ng::Value) -> String {
    match k {
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Overlays `top` onto `base` key by key (Ansible's default `hash_behaviour=replace`: a
/// mapping defined at a higher level replaces the lower one as a whole).
pub fn overlay(base: &mut Vars, top: &Vars) {
    for (k, v) in top {
        base.insert(k.clone(), v.clone());
    }
}

/// Deep merge used by the `combine(recursive=true)` filter.
pub fn deep_merge(base: &mut Value, top: &Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, t) => *b = t.clone(),
    }
}

/// Ansible truthiness for strings coming from templates ("yes", "True", "1", "on").
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "yes" | "y" | "true" | "1" | "on"
        ),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Renders a value for humans: strings without quotes, everything else as compact JSON.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
