//! Roles: `roles:` on a play and `include_role`/`import_role` tasks, with the standard
//! layout (`tasks/main.yml`, `handlers/main.yml`, `defaults/main.yml`, `vars/main.yml`,
//! `templates/`, `files/`).
//!
//! A role is found in `roles/` beside the playbook, beside the playbook, then in the roles
//! path: `$ANSIBLE_ROLES_PATH`, else `roles_path` of `./ansible.cfg`, else Ansible's default
//! (`~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles`). Roles are expanded
//! when the playbook is loaded (as `import_role`), so they are checked before the run.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::vars::Vars;

/// A role found on disk, with its variables read.
pub struct Role {
    pub name: String,
    pub dir: PathBuf,
    /// `defaults/main.yml`: below every other variable.
    pub defaults: Vars,
    /// `vars/main.yml`: task-level variables of the role's tasks.
    pub vars: Vars,
}

/// The directories searched for roles, in order, for a playbook in `dir`.
pub fn search_path(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.join("roles"), dir.to_path_buf()];
    let configured = std::env::var("ANSIBLE_ROLES_PATH")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(cfg_roles_path)
        .unwrap_or_else(|| "~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles".into());
    let home = std::env::var("HOME").unwrap_or_default();
    for p in configured.split(':').filter(|p| !p.is_empty()) {
        let p = match p.strip_prefix("~/") {
            Some(rest) => Path::new(&home).join(rest),
            None => PathBuf::from(p),
        };
        out.push(p);
    }
    out
}

/// `roles_path` from the `[defaults]` section of `./ansible.cfg`.
fn cfg_roles_path() -> Option<String> {
    let text = std::fs::read_to_string("ansible.cfg").ok()?;
    let mut in_defaults = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_defaults = line == "[defaults]";
        } else if in_defaults {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "roles_path" {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// Finds role `name` (a name or a path) for a playbook in `dir` and reads its variables.
pub fn find(name: &str, dir: &Path) -> Result<Role, String> {
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![dir.join(name)]
    } else {
        search_path(dir).iter().map(|d| d.join(name)).collect()
    };
    let found = candidates.iter().find(|c| c.is_dir()).ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        format!("role '{name}' not found (looked in: {})", looked.join(", "))
    })?;
    let read = |sub: &str| -> Result<Vars, String> {
        match main_file(&found.join(sub)) {
            Some(f) => crate::inventory::read_vars_file(&f).map_err(|e| e.0),
            None => Ok(Vars::new()),
        }
    };
    Ok(Role {
        name: name.to_string(),
        dir: found.clone(),
        defaults: read("defaults")?,
        vars: read("vars")?,
    })
}

/// `main.yml`, `main.yaml` or `main` in `dir`, if there is one.
pub fn main_file(dir: &Path) -> Option<PathBuf> {
    ["main.yml", "main.yaml", "main"]
        .iter()
        .map(|f| dir.join(f))
        .find(|f| f.is_file())
}

/// A role's task file: `tasks/main.yml`, or `tasks/<tasks_from>` (with or without `.yml`).
pub fn tasks_file(role: &Role, tasks_from: Option<&str>) -> Option<PathBuf> {
    let dir = role.dir.join("tasks");
    match tasks_from {
        None => main_file(&dir),
        Some(f) => [f.to_string(), format!("{f}.yml"), format!("{f}.yaml")]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file()),
    }
}

/// Keywords of a `roles:` entry; any other key is a role parameter (a variable).
pub const ENTRY_KEYWORDS: &[&str] = &[
    "role",
    "name",
    "when",
    "tags",
    "vars",
    "become",
    "become_user",
    "become_method",
    "no_log",
    "ignore_errors",
    "check_mode",
    "delegate_to",
    "run_once",
];

/// A `roles:` entry as a mapping (`- common` is `{role: common}`).
pub fn entry(v: &Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("role".into(), Value::String(crate::vars::display(other)));
            m
        }
    }
}
