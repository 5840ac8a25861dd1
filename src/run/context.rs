//! Building each host's variables for a task, in Ansible's precedence order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hasher;
use std::sync::Mutex;

use serde_json::Value;

use crate::inventory::Inventory;
use crate::template::Templar;
use crate::vars::{overlay, Vars};

pub use crate::template::UNRESOLVED;

/// Passes of the template pre-resolution (a variable defined from a variable defined from a
/// variable ...). Deeper chains stay unrendered; four levels cover real configs.
const RESOLVE_PASSES: usize = 4;

/// The variable layers that do not change while a play runs.
pub struct PlayVars {
    /// Inventory variables per host (group_vars/host_vars merged).
    pub inventory: BTreeMap<String, Vars>,
    /// `vars:` then `vars_files:` of the play.
    pub play: Vars,
    pub extra: Vars,
    pub groups: Value,
    pub group_names: BTreeMap<String, Vec<String>>,
    pub playbook_dir: String,
    /// Ansible's `inventory_file` and `inventory_dir` (absolute), when an inventory was
    /// loaded from a path: playbooks find the state file beside it (`collect-logs.yml`).
    pub inventory_file: Option<String>,
    pub inventory_dir: Option<String>,
    pub check: bool,
    pub diff: bool,
    /// Each host's last variables with the fingerprint of the layers they were built from.
    /// Every task needs every host's variables (`hostvars`), and resolving their templates is
    /// most of a task's own cost: on 100 hosts rolled one at a time, rebuilding them all for
    /// each of the ~1200 tasks kept the runner busy ~2 s per task. Only a host whose layers
    /// changed (its facts, the task's vars) is built again.
    bases: Mutex<HashMap<String, (u64, Vars)>>,
}

/// Feeds serialised JSON into a hasher without building the string.
struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The layers of one host's variables that change while a play runs (the play's own layers are
/// [`PlayVars`]'s): what [`PlayVars::host_base`] builds on, and what its cache fingerprints.
#[derive(Clone, Copy)]
pub struct HostLayers<'a> {
    pub task_vars: &'a Vars,
    pub role_defaults: &'a Vars,
    /// Registered results and facts of the host.
    pub facts: &'a Vars,
    pub play_hosts: &'a [String],
}

impl HostLayers<'_> {
    /// A fingerprint of the layers, to tell whether a host's cached variables still hold.
    fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for l in [self.task_vars, self.role_defaults, self.facts] {
            // Serialising a map of JSON values cannot fail.
            let _ = serde_json::to_writer(HashWriter(&mut h), l);
            h.write_u8(0xff);
        }
        for p in self.play_hosts {
            h.write(p.as_bytes());
            h.write_u8(0);
        }
        h.finish()
    }
}

impl PlayVars {
    pub fn new(
        inv: &Inventory,
        hosts: &[String],
        play: Vars,
        extra: Vars,
        playbook_dir: String,
        check: bool,
        diff: bool,
    ) -> PlayVars {
        let mut inventory = BTreeMap::new();
        let mut group_names = BTreeMap::new();
        for h in inv.hosts().iter().chain(hosts.iter()) {
            let mut v = inv.host_vars(h);
            if !inv.hosts().contains(h) && (h == "localhost" || h == "127.0.0.1") {
                // Ansible's implicit localhost always uses the local connection.
                v.entry("ansible_connection")
                    .or_insert(Value::from("local"));
            }
            inventory.insert(h.clone(), v);
            group_names.insert(
                h.clone(),
                inv.groups_of(h)
                    .into_iter()
                    .filter(|g| g != "ungrouped")
                    .collect(),
            );
        }
        let source = inv
            .source
            .as_deref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
        let inventory_dir = source.as_deref().map(|p| {
            if p.is_dir() {
                p.display().to_string()
            } else {
                p.parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| ".".into())
            }
        });
        PlayVars {
            inventory,
            play,
            extra,
            groups: inv.groups_var(),
            group_names,
            playbook_dir,
            inventory_file: source.map(|p| p.display().to_string()),
            inventory_dir,
            check,
            diff,
            bases: Mutex::new(HashMap::new()),
        }
    }

    /// [`PlayVars::host_base`], reused while the layers it was built from stay the same (the
    /// play's own layers are fixed for the life of `self`).
    pub fn host_base_cached(&self, host: &str, layers: &HostLayers<'_>, templar: &Templar) -> Vars {
        let key = layers.fingerprint();
        if let Some((k, v)) = self.bases.lock().expect("bases lock").get(host) {
            if *k == key {
                return v.clone();
            }
        }
        let v = self.host_base(host, layers, templar);
        self.bases
            .lock()
            .expect("bases lock")
            .insert(host.to_string(), (key, v.clone()));
        v
    }

    /// One host's variables without `hostvars` (lowest to highest precedence: inventory,
    /// play vars and vars files, task vars, registered vars and facts, extra vars), with
    /// the magic variables added and templates in values resolved.
    pub fn host_base(&self, host: &str, layers: &HostLayers<'_>, templar: &Templar) -> Vars {
        let HostLayers {
            task_vars,
            role_defaults,
            facts,
            play_hosts,
        } = *layers;
        let mut v = role_defaults.clone();
        if let Some(inv) = self.inventory.get(host) {
            overlay(&mut v, inv);
        }
        overlay(&mut v, &self.play);
        overlay(&mut v, task_vars);
        overlay(&mut v, facts);
        overlay(&mut v, &self.extra);
        v.entry("ansible_host").or_insert(Value::from(host));
        v.insert("inventory_hostname".into(), Value::from(host));
        v.insert(
            "inventory_hostname_short".into(),
            Value::from(host.split('.').next().unwrap_or(host)),
        );
        v.insert("groups".into(), self.groups.clone());
        v.insert(
            "group_names".into(),
            Value::from(self.group_names.get(host).cloned().unwrap_or_default()),
        );
        v.insert("play_hosts".into(), Value::from(play_hosts.to_vec()));
        v.insert(
            "ansible_play_hosts".into(),
            Value::from(play_hosts.to_vec()),
        );
        v.insert("omit".into(), Value::from(crate::template::OMIT));
        v.insert("ansible_check_mode".into(), Value::Bool(self.check));
        for (k, val) in [
            ("inventory_file", &self.inventory_file),
            ("inventory_dir", &self.inventory_dir),
        ] {
            if let Some(val) = val {
                v.insert(k.into(), Value::from(val.clone()));
            }
        }
        // The running zdm-run itself, so a playbook can call `zdm-run status` (collect-logs.yml)
        // with the very build that runs it.
        if let Ok(exe) = std::env::current_exe() {
            v.insert(
                "zdm_run_executable".into(),
                Value::from(exe.display().to_string()),
            );
        }
        v.insert("ansible_diff_mode".into(), Value::Bool(self.diff));
        v.insert(
            "playbook_dir".into(),
            Value::from(self.playbook_dir.clone()),
        );
        // Registered results and facts are data, never templates (a command's stdout may
        // contain "{{"): only the other layers are rendered.
        let protected: BTreeSet<&String> = facts.keys().collect();
        resolve(&mut v, &protected, templar);
        v
    }
}

/// Renders variable values that are themselves templates (`url: "http://{{ host }}:{{ port }}"`)
/// so that templates using them see final values. A value that still cannot be rendered
/// is removed and its reason recorded under [`UNRESOLVED`], so a template using it fails
/// with that reason instead of writing `{{ ... }}` literally into a file.
fn resolve(vars: &mut Vars, protected: &BTreeSet<&String>, templar: &Templar) {
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    // The filters mask what they make of a secret only if the secret is known before they
    // run: `b64: "{{ db_password | b64encode }}"` is rendered right here.
    let secrets = templar.redactor();
    for _ in 0..RESOLVE_PASSES {
        secrets.add_from_vars(vars);
        let pending: Vec<String> = vars
            .iter()
            .filter(|(k, v)| !protected.contains(k) && has_template(v))
            .map(|(k, _)| k.clone())
            .collect();
        if pending.is_empty() {
            return;
        }
        failures.clear();
        let mut changed = false;
        for k in pending {
            let raw = vars[&k].clone();
            match templar.render_value(&format!("variable '{k}'"), &raw, vars) {
                Ok(rendered) if rendered != raw => {
                    vars.insert(k, rendered);
                    changed = true;
                }
                Ok(_) => {}
                Err(e) => {
                    failures.insert(k, e.0);
                }
            }
        }
        if !changed {
            break;
        }
    }
    if failures.is_empty() {
        return;
    }
    let mut reasons = serde_json::Map::new();
    for (k, reason) in failures {
        vars.remove(&k);
        reasons.insert(k, Value::String(reason));
    }
    vars.insert(UNRESOLVED.into(), Value::Object(reasons));
}

fn has_template(v: &Value) -> bool {
    match v {
        Value::String(s) => crate::template::is_template(s),
        Value::Array(a) => a.iter().any(has_template),
        Value::Object(o) => o.values().any(has_template),
        _ => false,
    }
}
