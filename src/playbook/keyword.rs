//! Boolean and number keywords (`no_log`, `run_once`, `check_mode`, `any_errors_fatal`,
//! `max_fail_percentage`) that may be written as templates.
//!
//! WHY a type instead of a `bool`: the checker accepts `no_log: "{{ hide }}"`, so the loader
//! must keep the template and the run must render it with the task's (or play's) variables.
//! Reading the raw string as a boolean would silently turn it into `false`, and a `no_log`
//! that is silently off leaks secrets. A rendered value of the wrong type is an error that
//! names the file, line, column and keyword, never a guess.

use serde_json::Value;

use crate::template::Templar;
use crate::vars::Vars;

/// A keyword written as a template, with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Templated {
    pub keyword: String,
    pub expr: String,
    /// `file:line:col` of the value.
    pub at: String,
}

impl Templated {
    /// Checks the template's syntax before the run (the message names where it is).
    pub fn check_syntax(&self, templar: &Templar) -> Result<(), String> {
        templar
            .check_syntax(&self.keyword, &self.expr)
            .map_err(|e| format!("{}: {}: {e}", self.at, self.keyword))
    }

    fn render(&self, templar: &Templar, vars: &Vars) -> Result<Value, String> {
        templar
            .render_value(&self.keyword, &Value::String(self.expr.clone()), vars)
            .map_err(|e| format!("{}: {}: {e}", self.at, self.keyword))
    }

    fn wrong(&self, what: &str, got: &Value) -> String {
        format!(
            "{}: {}: '{}' is not {what}",
            self.at,
            self.keyword,
            crate::vars::display(got)
        )
    }
}

/// A boolean keyword.
#[derive(Debug, Clone, PartialEq)]
pub enum Flag {
    Fixed(bool),
    Template(Templated),
}

impl Default for Flag {
    fn default() -> Self {
        Flag::Fixed(false)
    }
}

impl Flag {
    /// The value; a template is rendered with `vars` and must give a boolean (Ansible's
    /// spellings: true/false, yes/no, on/off, 1/0).
    pub fn eval(&self, templar: &Templar, vars: &Vars) -> Result<bool, String> {
        match self {
            Flag::Fixed(b) => Ok(*b),
            Flag::Template(t) => {
                let v = t.render(templar, vars)?;
                boolean(&v).ok_or_else(|| t.wrong("a boolean", &v))
            }
        }
    }

    /// The template, when the value is only known once rendered.
    pub fn template(&self) -> Option<&Templated> {
        match self {
            Flag::Template(t) => Some(t),
            Flag::Fixed(_) => None,
        }
    }
}

/// A number keyword.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    Fixed(f64),
    Template(Templated),
}

impl Number {
    /// The template, when the value is only known once rendered.
    pub fn template(&self) -> Option<&Templated> {
        match self {
            Number::Template(t) => Some(t),
            Number::Fixed(_) => None,
        }
    }

    pub fn eval(&self, templar: &Templar, vars: &Vars) -> Result<f64, String> {
        match self {
            Number::Fixed(n) => Ok(*n),
            Number::Template(t) => {
                let v = t.render(templar, vars)?;
                number(&v).ok_or_else(|| t.wrong("a number", &v))
            }
        }
    }
}

/// Ansible's reading of a boolean value; `None` when it is not one.
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "y" | "t" => Some(true),
            "false" | "no" | "off" | "0" | "n" | "f" | "" => Some(false),
            _ => None,
        },
        Value::Null => Some(false),
        _ => None,
    }
}

/// A number, or a string holding one.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn is_template(v: &Value) -> bool {
    matches!(v, Value::String(s) if crate::template::is_template(s))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn templated(expr: &str) -> Templated {
        Templated {
            keyword: "no_log".into(),
            expr: expr.into(),
            at: "p.yml:3:15".into(),
        }
    }

    #[test]
    fn templated_flags_render_to_booleans_or_fail_naming_the_place() {
        let t = Templar::new();
        let mut vars = Vars::new();
        vars.insert("hide".into(), json!(true));
        vars.insert("word".into(), json!("yes"));
        vars.insert("junk".into(), json!("maybe"));
        assert!(Flag::Template(templated("{{ hide }}"))
            .eval(&t, &vars)
            .unwrap());
        assert!(Flag::Template(templated("{{ word }}"))
            .eval(&t, &vars)
            .unwrap());
        assert!(!Flag::Template(templated("{{ not hide }}"))
            .eval(&t, &vars)
            .unwrap());
        assert_eq!(
            Flag::Template(templated("{{ junk }}"))
                .eval(&t, &vars)
                .unwrap_err(),
            "p.yml:3:15: no_log: 'maybe' is not a boolean"
        );
        let undefined = Flag::Template(templated("{{ nothing }}"))
            .eval(&t, &vars)
            .unwrap_err();
        assert!(undefined.starts_with("p.yml:3:15: no_log: "), "{undefined}");
    }

    #[test]
    fn templated_numbers_render_or_fail_naming_the_place() {
        let t = Templar::new();
        let mut vars = Vars::new();
        vars.insert("pct".into(), json!("25"));
        let mut tpl = templated("{{ pct }}");
        tpl.keyword = "max_fail_percentage".into();
        assert_eq!(Number::Template(tpl.clone()).eval(&t, &vars).unwrap(), 25.0);
        tpl.expr = "{{ 'lots' }}".into();
        assert_eq!(
            Number::Template(tpl).eval(&t, &vars).unwrap_err(),
            "p.yml:3:15: max_fail_percentage: 'lots' is not a number"
        );
    }
}
