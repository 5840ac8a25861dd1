//! Templating: one minijinja environment configured like Ansible's.
//!
//! Strict undefined (a missing variable is an error naming template, line and variable),
//! `trim_blocks` as in Ansible, no auto-escaping (we render config files, not HTML), the
//! Ansible filters our playbooks use, and conditions (`when:`, `until:`, ...) evaluated as
//! Jinja expressions.

mod ansible;
mod filters;
mod resolve;
mod secret_filters;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::vars::Vars;

pub use resolve::resolve_address;

/// Context key listing variables whose own template could not be rendered, with the reason
/// (set by the run engine; read here to explain the resulting "undefined" errors).
/// Whether `s` holds Jinja syntax (an expression or a statement) and so needs rendering.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

pub const UNRESOLVED: &str = "__zdm_unresolved";

/// The value of the variable `omit`: a module argument rendered to it is left out (`mode:
/// "{{ m | default(omit) }}"`), as in Ansible.
pub const OMIT: &str = "__omit_place_holder__zdm_run";

/// A template or expression that failed, with a message that says where and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// The shared template engine.
pub struct Templar {
    env: Environment<'static>,
    /// Directories `{% include %}` / `{% import %}` / `{% extends %}` search, in order.
    search: Arc<RwLock<Vec<PathBuf>>>,
    /// The secrets the text-changing filters report their outputs to (see
    /// `secret_filters`); the run masks its output with this same set.
    redactor: crate::secrets::Redactor,
    /// `hostvars` of the task now running, converted for the engine once per task rather than
    /// once per rendering (see [`Templar::share_hostvars`]).
    shared_hostvars: RwLock<Option<SharedHostvars>>,
}

/// A task's `hostvars`: the runner's one copy (error messages look names up in it) and the
/// engine's conversion of it.
struct SharedHostvars {
    json: Arc<Value>,
    value: minijinja::Value,
}

impl Default for Templar {
    fn default() -> Self {
        Self::new()
    }
}

impl Templar {
    pub fn new() -> Templar {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        filters::register(&mut env);
        let redactor = crate::secrets::Redactor::default();
        secret_filters::register(&mut env, &redactor);
        let search: Arc<RwLock<Vec<PathBuf>>> = Arc::default();
        ansible::register(&mut env, search.clone());
        let dirs = search.clone();
        env.set_loader(move |name| {
            if name.contains("..") || Path::new(name).is_absolute() {
                return Ok(None);
            }
            let dirs = dirs.read().expect("template search lock");
            for d in dirs.iter() {
                let p = d.join(name);
                if p.is_file() {
                    return std::fs::read_to_string(&p).map(Some).map_err(|e| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("cannot read {}: {e}", p.display()),
                        )
                    });
                }
            }
            Ok(None)
        });
        Templar {
            env,
            search,
            redactor,
            shared_hostvars: RwLock::new(None),
        }
    }

    /// Supplies a task's `hostvars` to every rendering until the next call; the runner shares
    /// them when a task starts and clears them (`None`) when it ends. No host's variables carry
    /// `hostvars` themselves: a copy in each made a task cost O(hosts² x variables) in copies
    /// and memory (1000 hosts could not run), and converting each copy with every rendering
    /// cost as much again (on 100 hosts a `set_fact` task took 30 s). So they are converted for
    /// the engine once here, and a context without its own `hostvars` sees these.
    pub fn share_hostvars(&self, hostvars: Option<Arc<Value>>) {
        let shared = hostvars.map(|json| SharedHostvars {
            value: minijinja::Value::from_serialize(&*json),
            json,
        });
        *self.shared_hostvars.write().expect("hostvars lock") = shared;
    }

    /// The engine's view of `ctx`, with the shared `hostvars` when `ctx` has none of its own.
    fn context(&self, ctx: &Vars) -> minijinja::Value {
        let own = minijinja::Value::from_serialize(ctx);
        if ctx.contains_key("hostvars") {
            return own;
        }
        match self.shared_hostvars.read().expect("hostvars lock").as_ref() {
            Some(s) => minijinja::value::merge_maps([
                minijinja::context! { hostvars => s.value.clone() },
                own,
            ]),
            None => own,
        }
    }

    /// The shared `hostvars` (see [`Templar::share_hostvars`]), for lookups outside the engine.
    fn shared_hostvars(&self) -> Option<Arc<Value>> {
        let shared = self.shared_hostvars.read().expect("hostvars lock");
        shared.as_ref().map(|s| s.json.clone())
    }

    /// The secret set this engine's filters add to: the run's redactor.
    pub fn redactor(&self) -> crate::secrets::Redactor {
        self.redactor.clone()
    }

    /// Adds a directory where included templates are looked for (the playbook's
    /// `templates/`, registered before the run).
    pub fn add_search_dir(&self, dir: &Path) {
        let mut dirs = self.search.write().expect("template search lock");
        if dir.is_dir() && !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_path_buf());
        }
    }

    /// Renders template text. `name` is what errors call it (a file path or `task 'x'`).
    pub fn render_str(
        &self,
        name: &str,
        source: &str,
        ctx: &Vars,
    ) -> Result<String, TemplateError> {
        let rewritten = ansible::chain_defaults(source);
        let tmpl = self
            .env
            .template_from_named_str(name, &rewritten)
            .map_err(|e| self.explain(name, source, &e, ctx, None))?;
        tmpl.render(self.context(ctx)).map_err(|e| {
            let names = tmpl.undeclared_variables(true);
            self.explain(name, source, &e, ctx, Some(names))
        })
    }

    /// Renders every string inside `v`. A string that is exactly one `{{ expression }}`
    /// keeps the expression's type (a list stays a list, a number a number), like Ansible.
    pub fn render_value(&self, name: &str, v: &Value, ctx: &Vars) -> Result<Value, TemplateError> {
        match v {
            Value::String(s) => {
                if !is_template(s) {
                    return Ok(v.clone());
                }
                if let Some(expr) = single_expression(s) {
                    return self.eval(name, expr, ctx);
                }
                Ok(Value::String(self.render_str(name, s, ctx)?))
            }
            Value::Array(a) => a
                .iter()
                .map(|x| self.render_value(name, x, ctx))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(o) => {
                let mut out = serde_json::Map::new();
                for (k, x) in o {
                    out.insert(k.clone(), self.render_value(name, x, ctx)?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    /// Evaluates a Jinja expression (`port + 1`, `result.rc == 0`) to a value.
    pub fn eval(&self, name: &str, expr: &str, ctx: &Vars) -> Result<Value, TemplateError> {
        let rewritten = ansible::chain_defaults(expr);
        let compiled = self
            .env
            .compile_expression(&rewritten)
            .map_err(|e| self.explain(name, expr, &e, ctx, None))?;
        let out = compiled.eval(self.context(ctx)).map_err(|e| {
            let names = compiled.undeclared_variables(true);
            self.explain(name, expr, &e, ctx, Some(names))
        })?;
        if out.is_undefined() {
            let names = compiled.undeclared_variables(true);
            return Err(self.explain(
                name,
                expr,
                &minijinja::Error::from(minijinja::ErrorKind::UndefinedError),
                ctx,
                Some(names),
            ));
        }
        serde_json::to_value(&out).map_err(|e| TemplateError(format!("{name}: {e}")))
    }

    /// Checks template text for syntax errors without rendering it (used before a run, so a
    /// broken template stops the run before any host is touched).
    pub fn check_syntax(&self, name: &str, source: &str) -> Result<(), TemplateError> {
        self.env
            .template_from_named_str(name, &ansible::chain_defaults(source))
            .map(|_| ())
            .map_err(|e| self.explain(name, source, &e, &Vars::new(), None))
    }

    /// Checks a condition's syntax without evaluating it.
    pub fn check_condition(&self, name: &str, cond: &str) -> Result<(), TemplateError> {
        let expr = single_expression(cond.trim()).unwrap_or(cond);
        self.env
            .compile_expression(&ansible::chain_defaults(expr))
            .map(|_| ())
            .map_err(|e| self.explain(name, expr, &e, &Vars::new(), None))
    }

    /// Evaluates a condition (`when:`, `until:`, `failed_when:`). The text may be a bare
    /// expression or a `{{ }}` template, as Ansible tolerates both.
    pub fn eval_bool(&self, name: &str, cond: &str, ctx: &Vars) -> Result<bool, TemplateError> {
        let expr = single_expression(cond.trim()).unwrap_or(cond);
        let v = self.eval(name, expr, ctx)?;
        Ok(crate::vars::truthy(&v))
    }

    /// Builds a message for a failed template: where (name, line) and, for undefined
    /// variables, which one.
    fn explain(
        &self,
        name: &str,
        source: &str,
        e: &minijinja::Error,
        ctx: &Vars,
        referenced: Option<std::collections::HashSet<String>>,
    ) -> TemplateError {
        let line = e.line();
        let where_ = match line {
            Some(l) => format!("template '{name}' line {l}"),
            None => format!("template '{name}'"),
        };
        if e.kind() == minijinja::ErrorKind::UndefinedError {
            let shared = self.shared_hostvars();
            let hostvars = ctx.get("hostvars").or(shared.as_deref());
            let missing = undefined_names(referenced.unwrap_or_default(), ctx, hostvars);
            let line_text = line
                .and_then(|l| source.lines().nth(l.saturating_sub(1)))
                .unwrap_or(source);
            let on_line: Vec<&String> = missing
                .iter()
                .filter(|m| line_text.contains(m.split('.').next().unwrap_or(m)))
                .collect();
            let chosen: Vec<&String> = if on_line.is_empty() {
                missing.iter().collect()
            } else {
                on_line
            };
            let unresolved = chosen.iter().find_map(|n| {
                let first = n.split('.').next().unwrap_or(n);
                ctx.get(UNRESOLVED)?
                    .get(first)?
                    .as_str()
                    .map(|r| (first, r))
            });
            if let Some((var, reason)) = unresolved {
                return TemplateError(format!(
                    "{where_}: variable '{var}' has no value because its template failed: {reason}"
                ));
            }
            if !chosen.is_empty() {
                let names: Vec<String> = chosen.iter().map(|n| format!("'{n}'")).collect();
                return TemplateError(format!("{where_}: undefined variable {}", names.join(", ")));
            }
            return TemplateError(format!("{where_}: undefined value"));
        }
        let detail = e
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| e.kind().to_string());
        TemplateError(format!("{where_}: {detail}"))
    }
}

/// Of the (possibly dotted) names a template references, those the context (with `hostvars`,
/// its own or the shared ones) cannot resolve.
fn undefined_names(
    referenced: std::collections::HashSet<String>,
    ctx: &Vars,
    hostvars: Option<&Value>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in referenced {
        let mut parts = name.split('.');
        let first = parts.next().unwrap_or_default();
        let found = match first {
            "hostvars" => hostvars,
            _ => ctx.get(first),
        };
        let Some(mut cur) = found else {
            out.insert(first.to_string());
            continue;
        };
        let mut path = first.to_string();
        for p in parts {
            path.push('.');
            path.push_str(p);
            match cur.get(p) {
                Some(next) => cur = next,
                None => {
                    out.insert(path.clone());
                    break;
                }
            }
        }
    }
    // Keep the shortest missing prefix only (`a` rather than `a` and `a.b`).
    let all: Vec<String> = out.iter().cloned().collect();
    out.retain(|n| {
        !all.iter()
            .any(|o| o != n && n.starts_with(&format!("{o}.")))
    });
    out
}

/// If `s` is exactly `{{ expr }}` (with optional spaces), returns `expr`.
fn single_expression(s: &str) -> Option<&str> {
    // No trimming: "{{ x }}\n" is text with a newline, not a bare expression.
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

#[cfg(test)]
mod tests;
