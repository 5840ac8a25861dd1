//! What the migration modules share: cluster settings read from the host's variables (named as
//! the proxy's settings), the keyspace selection, thresholds that may come from an argument or a
//! playbook variable, and the way a gate reports what it measured against what.

use serde_json::{Map, Value};

use crate::data::{ClusterConfig, Selection};
use crate::gates::Check;
use crate::vars::Vars;

use crate::modules::{arg_f64, ModResult, ModuleError};

/// Connection settings of `name` ("origin" or "target") from the variables the proxy's
/// configuration uses: `<name>_contact_points` (a list or comma-separated text), `_port`
/// (default 9042), `_username`, `_password`.
pub fn cluster_from_vars(vars: &Vars, name: &str) -> Result<ClusterConfig, ModuleError> {
    let var = |suffix: &str| {
        vars.get(&format!("{name}_{suffix}"))
            .filter(|v| !v.is_null())
    };
    let points: Vec<String> = match var("contact_points") {
        None => {
            return Err(ModuleError::Failed(format!(
                "variable {name}_contact_points is not set (the {name} cluster's addresses, as in \
                 the proxy's configuration)"
            )))
        }
        Some(Value::Array(items)) => items.iter().map(crate::vars::display).collect(),
        Some(v) => crate::vars::display(v)
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    };
    let points: Vec<String> = points.into_iter().filter(|p| !p.is_empty()).collect();
    let port = match var("port") {
        None => 9042,
        Some(v) => crate::vars::display(v).trim().parse().map_err(|_| {
            ModuleError::Failed(format!("variable {name}_port: {v} is not a port number"))
        })?,
    };
    Ok(ClusterConfig {
        name: name.to_string(),
        contact_points: points,
        port,
        username: var("username").map(crate::vars::display),
        password: var("password").map(crate::vars::display),
        rate_limit: None,
    })
}

/// A list argument given as a list or as comma-separated text.
pub fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .map(crate::vars::display)
            .filter(|s| !s.trim().is_empty())
            .collect(),
        Some(v) => crate::vars::display(v)
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    }
}

/// The keyspaces/tables to work on: the `keyspaces`/`tables` arguments, else the
/// `zdm_keyspaces` variable, else every non-system keyspace.
pub fn selection(args: &Map<String, Value>, vars: &Vars) -> Result<Selection, ModuleError> {
    let mut keyspaces = string_list(args.get("keyspaces"));
    let tables = string_list(args.get("tables"));
    if keyspaces.is_empty() && tables.is_empty() {
        keyspaces = string_list(vars.get("zdm_keyspaces"));
    }
    Selection::parse(&keyspaces, &tables).map_err(|e| ModuleError::Failed(format!("{e:#}")))
}

/// Describes a selection for plans and messages.
pub fn describe_selection(sel: &Selection) -> String {
    if sel.is_everything() {
        return "every non-system keyspace".into();
    }
    let mut parts: Vec<String> = sel.keyspaces.clone();
    parts.extend(sel.tables.iter().map(|(k, t)| format!("{k}.{t}")));
    parts.join(", ")
}

/// A number from the argument `arg`, else the variable `var`, else `default`.
pub fn number(
    args: &Map<String, Value>,
    vars: &Vars,
    arg: &str,
    var: &str,
    default: f64,
) -> Result<f64, ModuleError> {
    if let Some(n) = arg_f64(args, arg)? {
        return Ok(n);
    }
    arg_f64(vars, var)
        .map_err(|e| ModuleError::Failed(format!("variable {var}: {e}")))
        .map(|n| n.unwrap_or(default))
}

/// A boolean from the argument `arg`, else the variable `var`, else `default`.
pub fn flag(args: &Map<String, Value>, vars: &Vars, arg: &str, var: &str, default: bool) -> bool {
    match args.get(arg).filter(|v| !v.is_null()) {
        Some(v) => crate::vars::truthy(v),
        None => vars.get(var).map_or(default, crate::vars::truthy),
    }
}

/// Whether a module's result is a gate's verdict (made by [`gate_result`]): its message lists
/// the checks and is shown without `-v`.
pub fn is_gate_result(r: &ModResult) -> bool {
    r.data.contains_key("gate") && r.data.contains_key("checks")
}

/// The gate's verdict as a task result: a multi-line `msg` with every check (what was measured,
/// against which threshold), structured `data.checks`, failed when any check failed. The checks
/// are also handed to the migration run so `zdm_phase complete` records them.
pub fn gate_result(gate: &str, checks: &[Check]) -> ModResult {
    crate::migration::run::record_gate(gate, checks);
    let failed = checks.iter().filter(|c| !c.passed).count();
    let mut msg = format!(
        "{gate} gate {}: {} of {} checks passed",
        if failed == 0 { "PASSED" } else { "FAILED" },
        checks.len() - failed,
        checks.len()
    );
    for c in checks {
        let measured = c.measured.replace('\n', "\n      ");
        msg.push_str(&format!(
            "\n  [{}] {}: {measured}\n         threshold: {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.threshold
        ));
    }
    let mut data = Map::new();
    data.insert("gate".into(), Value::from(gate));
    data.insert("passed".into(), Value::Bool(failed == 0));
    data.insert(
        "checks".into(),
        serde_json::to_value(checks).unwrap_or(Value::Null),
    );
    ModResult {
        failed: failed > 0 || checks.is_empty(),
        msg: Some(msg),
        data,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Vars {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn cluster_settings_accept_lists_text_and_string_ports() {
        let v = vars(json!({
            "origin_contact_points": ["10.0.0.1", "10.0.0.2"],
            "origin_port": "9043",
            "origin_username": "u",
            "origin_password": "p",
            "target_contact_points": "10.0.0.3, 10.0.0.4",
        }));
        let o = cluster_from_vars(&v, "origin").unwrap();
        assert_eq!(o.contact_points, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(o.port, 9043);
        assert_eq!(o.password.as_deref(), Some("p"));
        let t = cluster_from_vars(&v, "target").unwrap();
        assert_eq!(t.contact_points, ["10.0.0.3", "10.0.0.4"]);
        assert_eq!(t.port, 9042);
        assert_eq!(t.username, None);
        let missing = cluster_from_vars(&Vars::new(), "target").unwrap_err();
        assert!(missing.to_string().contains("target_contact_points"));
        let bad = vars(json!({"origin_contact_points": "h", "origin_port": "x"}));
        assert!(cluster_from_vars(&bad, "origin")
            .unwrap_err()
            .to_string()
            .contains("origin_port"));
    }

    #[test]
    fn selection_falls_back_to_zdm_keyspaces() {
        let v = vars(json!({"zdm_keyspaces": "shop, app"}));
        let s = selection(&Map::new(), &v).unwrap();
        assert_eq!(s.keyspaces, ["shop", "app"]);
        let args = vars(json!({"tables": ["shop.orders"]}));
        let s = selection(&args, &v).unwrap();
        assert!(s.keyspaces.is_empty());
        assert_eq!(describe_selection(&s), "shop.orders");
        assert_eq!(
            describe_selection(&selection(&Map::new(), &Vars::new()).unwrap()),
            "every non-system keyspace"
        );
    }

    #[test]
    fn a_gate_result_lists_every_check_and_fails_on_any_failure() {
        let checks = vec![
            Check {
                name: "a".into(),
                passed: true,
                measured: "1".into(),
                threshold: "<= 1".into(),
            },
            Check {
                name: "b".into(),
                passed: false,
                measured: "2 differences:\n  - x\n  - y".into(),
                threshold: "0".into(),
            },
        ];
        let r = gate_result("demo", &checks);
        assert!(r.failed);
        let msg = r.msg.unwrap();
        assert!(
            msg.starts_with("demo gate FAILED: 1 of 2 checks passed"),
            "{msg}"
        );
        assert!(
            msg.contains("[FAIL] b: 2 differences:\n        - x"),
            "{msg}"
        );
        assert_eq!(r.data["checks"][1]["name"], "b");
        assert!(gate_result("empty", &[]).failed, "no evidence is no pass");
    }
}
