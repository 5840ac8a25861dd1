//! The `become*` keywords of a task (over its play's) turned into the connection variables
//! `ansible_become`, `ansible_become_user` and `ansible_become_method`, which the transport
//! reads (the SSH transport then runs commands through `sudo -n -u <user>`).
//!
//! Precedence is Ansible's: a keyword fills a connection variable only where no variable of
//! the host sets it (inventory, play or task `vars:`, extra vars); the more specific keyword
//! was already chosen when the playbook was loaded (task over include over play).

use serde_json::Value;

use crate::modules::ModuleError;
use crate::playbook::Escalation;
use crate::template::{is_template, Templar};
use crate::vars::Vars;

/// A keyword's text, rendered when it is a template.
fn render(templar: &Templar, what: &str, raw: &str, vars: &Vars) -> Result<String, ModuleError> {
    if is_template(raw) {
        Ok(templar.render_str(what, raw, vars)?.trim().to_string())
    } else {
        Ok(raw.to_string())
    }
}

fn not_a_boolean(what: &str, v: &Value) -> ModuleError {
    ModuleError::Failed(format!(
        "{what}: become: {} is not a boolean",
        crate::vars::display(v)
    ))
}

/// Puts the keywords into `vars` as connection variables (see the module doc). `what` names
/// the task in error messages.
pub fn apply(
    esc: &Escalation,
    vars: &mut Vars,
    templar: &Templar,
    what: &str,
) -> Result<(), ModuleError> {
    if esc.is_empty() {
        return Ok(());
    }
    let unset = |vars: &Vars, names: &[&str]| {
        names
            .iter()
            .all(|n| vars.get(*n).is_none_or(Value::is_null))
    };
    if let Some(raw) = &esc.enabled {
        if unset(vars, &["ansible_become", "ansible_sudo"]) {
            let value = templar.render_value(&format!("{what} become"), raw, vars)?;
            let on = match &value {
                Value::Bool(b) => *b,
                Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "yes" | "true" | "on" | "1" => true,
                    "no" | "false" | "off" | "0" => false,
                    _ => None.ok_or_else(|| not_a_boolean(what, &value))?,
                },
                Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                    n.as_i64() == Some(1)
                }
                _ => None.ok_or_else(|| not_a_boolean(what, &value))?,
            };
            vars.insert("ansible_become".into(), Value::Bool(on));
        }
    }
    if let Some(raw) = &esc.user {
        if unset(vars, &["ansible_become_user"]) {
            let user = render(templar, &format!("{what} become_user"), raw, vars)?;
            if user.is_empty()
                || !user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-$".contains(c))
            {
                return Err(ModuleError::Failed(format!(
                    "{what}: become_user: '{user}' is not a user name"
                )));
            }
            vars.insert("ansible_become_user".into(), Value::String(user));
        }
    }
    if let Some(raw) = &esc.method {
        if unset(vars, &["ansible_become_method"]) {
            let method = render(templar, &format!("{what} become_method"), raw, vars)?;
            vars.insert("ansible_become_method".into(), Value::String(method));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn esc(enabled: Option<Value>, user: Option<&str>) -> Escalation {
        Escalation {
            enabled,
            user: user.map(String::from),
            method: None,
        }
    }

    fn vars(v: Value) -> Vars {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keywords_fill_the_connection_variables() {
        let t = Templar::new();
        let mut v = vars(json!({"want_root": true}));
        apply(
            &esc(Some(json!("{{ want_root }}")), Some("nobody")),
            &mut v,
            &t,
            "task 'x'",
        )
        .unwrap();
        assert_eq!(v["ansible_become"], json!(true));
        assert_eq!(v["ansible_become_user"], json!("nobody"));
    }

    #[test]
    fn a_connection_variable_wins_over_the_keyword() {
        let t = Templar::new();
        let mut v = vars(json!({"ansible_become": false, "ansible_become_user": "ops"}));
        apply(
            &esc(Some(json!(true)), Some("nobody")),
            &mut v,
            &t,
            "task 'x'",
        )
        .unwrap();
        assert_eq!(v["ansible_become"], json!(false));
        assert_eq!(v["ansible_become_user"], json!("ops"));
    }

    #[test]
    fn bad_rendered_values_name_the_task_and_keyword() {
        let t = Templar::new();
        let mut v = vars(json!({"u": "a b"}));
        let e = apply(&esc(None, Some("{{ u }}")), &mut v, &t, "task 'x'").unwrap_err();
        assert_eq!(
            e.to_string(),
            "task 'x': become_user: 'a b' is not a user name"
        );
        let mut v = vars(json!({"b": "perhaps"}));
        let e = apply(&esc(Some(json!("{{ b }}")), None), &mut v, &t, "task 'x'").unwrap_err();
        assert!(e.to_string().contains("become"), "{e}");
    }
}
