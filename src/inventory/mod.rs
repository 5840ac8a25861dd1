//! The inventory: hosts, groups, and where each host's variables come from.
//!
//! Two file formats (INI and YAML, as Ansible reads them), `group_vars/` and `host_vars/`
//! directories beside the inventory and beside the playbook, and Ansible's precedence when
//! the same variable is set in several places.

mod ini;
mod pattern;
mod range;
mod vars_dirs;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::vars::{overlay, Vars};
pub use pattern::{check_pattern, glob, select_hosts, split_pattern, unknown_terms};
pub use range::expand_host_range;
pub use vars_dirs::read_vars_file;
use vars_dirs::VarsDir;

/// Environment variable that names the default inventory when `-i` is absent:
/// `ZDMRUN_INVENTORY` (the deprecated `ZDM_INVENTORY` is still read; see `own_env`).
pub const INVENTORY_ENV: &str = "INVENTORY";
/// Default inventory location, relative to the working directory.
pub const DEFAULT_INVENTORY: &str = "inventory";
/// The migration's state file, which zdm-run keeps beside the inventory: in an inventory
/// directory it sits among the sources, so reading the directory must pass over it. The name
/// is kept here, where it is skipped, and the migration's state store writes under it.
pub const STATE_FILE: &str = "zdm-state.json";

/// A problem with the inventory, naming the file (and line, where there is one).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InventoryError(pub String);

/// One group as declared in the inventory.
#[derive(Debug, Default, Clone)]
pub struct Group {
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vars,
}

/// The parsed inventory with its variable sources.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Hosts in the order they were first declared (the order plays run them in).
    hosts: Vec<String>,
    groups: BTreeMap<String, Group>,
    /// Variables set on the host line / host entry of the inventory file.
    host_inline_vars: BTreeMap<String, Vars>,
    /// `group_vars/`+`host_vars/` directories, lowest precedence first.
    vars_dirs: Vec<VarsDir>,
    /// Where the inventory came from (for messages); `None` for the implicit empty one.
    pub source: Option<PathBuf>,
    /// Connection defaults from the command line (`-u`, `-c`, `--private-key`): below every
    /// inventory variable, as ansible-playbook's options are.
    pub defaults: Vars,
}

impl Inventory {
    /// Loads `path` (a file or a directory). Without a path, uses `$ZDMRUN_INVENTORY`, then
    /// `./inventory` if it exists; otherwise an empty inventory (only implicit `localhost`).
    pub fn load(path: Option<&Path>) -> Result<Inventory, InventoryError> {
        match path {
            Some(p) => Inventory::load_all(&[p.to_path_buf()]),
            None => Inventory::load_all(&[]),
        }
    }

    /// Loads several sources into one inventory, as repeated `-i` do: each a file, a
    /// directory, or a comma-separated host list (`h1,h2,` — a word with a comma that is no
    /// existing path). Without sources, as [`Inventory::load`] without a path.
    pub fn load_all(paths: &[PathBuf]) -> Result<Inventory, InventoryError> {
        let mut inv = Inventory::default();
        inv.ensure_group("all");
        inv.ensure_group("ungrouped");
        if paths.is_empty() {
            if let Some(p) = Inventory::default_source() {
                inv.load_source(&p)?;
            }
        }
        for p in paths {
            let text = p.to_string_lossy();
            if !p.exists() && text.contains(',') {
                for h in text.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                    inv.add_host(h, "ungrouped", Vars::new());
                }
            } else {
                inv.load_source(p)?;
            }
        }
        inv.finish();
        Ok(inv)
    }

    /// `$ZDMRUN_INVENTORY`, else `./inventory` if it exists.
    fn default_source() -> Option<PathBuf> {
        match crate::own_env::var(INVENTORY_ENV) {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => {
                let d = PathBuf::from(DEFAULT_INVENTORY);
                d.exists().then_some(d)
            }
        }
    }

    /// Reads one inventory file or directory into `self`; the first one read is the
    /// inventory's `source` (the migration state lives beside it).
    fn load_source(&mut self, p: &Path) -> Result<(), InventoryError> {
        let inv = self;
        if !p.exists() {
            return Err(InventoryError(format!(
                "inventory {} does not exist",
                p.display()
            )));
        }
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| InventoryError(format!("{}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_inventory_file(f))
                .collect();
            files.sort();
            for f in files {
                inv.parse_file(&f)?;
            }
            inv.add_vars_dir(p)?;
        } else {
            inv.parse_file(p)?;
            if let Some(parent) = p.parent() {
                inv.add_vars_dir(if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                })?;
            }
        }
        if inv.source.is_none() {
            inv.source = Some(p.to_path_buf());
        }
        Ok(())
    }

    /// Parses an inventory from text (used by tests and by `load`).
    pub fn from_str(text: &str, name: &Path) -> Result<Inventory, InventoryError> {
        let mut inv = Inventory::default();
        inv.ensure_group("all");
        inv.ensure_group("ungrouped");
        inv.parse_text(text, name)?;
        inv.finish();
        Ok(inv)
    }

    fn parse_file(&mut self, file: &Path) -> Result<(), InventoryError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| InventoryError(format!("{}: {e}", file.display())))?;
        self.parse_text(&text, file)
    }

    fn parse_text(&mut self, text: &str, file: &Path) -> Result<(), InventoryError> {
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let looks_yaml = matches!(ext, "yml" | "yaml" | "json")
            || text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .is_some_and(|l| l.ends_with(':') && !l.starts_with('['));
        if looks_yaml {
            yaml::parse(self, text, file)
        } else {
            ini::parse(self, text, file)
        }
    }

    /// Adds `group_vars/` and `host_vars/` found in `dir` with a higher precedence than the
    /// ones added before (the playbook's directory is added after the inventory's).
    pub fn add_vars_dir(&mut self, dir: &Path) -> Result<(), InventoryError> {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if self.vars_dirs.iter().any(|d| d.root == canonical) {
            return Ok(());
        }
        if let Some(vd) = VarsDir::load(&canonical)? {
            self.vars_dirs.push(vd);
        }
        Ok(())
    }

    pub(crate) fn ensure_group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_default()
    }

    pub(crate) fn add_host(&mut self, host: &str, group: &str, vars: Vars) {
        if !self.hosts.iter().any(|h| h == host) {
            self.hosts.push(host.to_string());
        }
        let g = self.ensure_group(group);
        if !g.hosts.iter().any(|h| h == host) {
            g.hosts.push(host.to_string());
        }
        overlay(
            self.host_inline_vars.entry(host.to_string()).or_default(),
            &vars,
        );
    }

    pub(crate) fn add_child(&mut self, parent: &str, child: &str) {
        self.ensure_group(child);
        let g = self.ensure_group(parent);
        if !g.children.iter().any(|c| c == child) {
            g.children.push(child.to_string());
        }
    }

    /// Makes every top-level group a child of `all`, and hosts without a group members of
    /// `ungrouped`, as Ansible does.
    fn finish(&mut self) {
        let child_names: BTreeSet<String> = self
            .groups
            .values()
            .flat_map(|g| g.children.iter().cloned())
            .collect();
        let tops: Vec<String> = self
            .groups
            .keys()
            .filter(|n| *n != "all" && !child_names.contains(*n))
            .cloned()
            .collect();
        for t in tops {
            self.add_child("all", &t);
        }
        let grouped: BTreeSet<String> = self
            .groups
            .iter()
            .filter(|(n, _)| *n != "all" && *n != "ungrouped")
            .flat_map(|(_, g)| g.hosts.iter().cloned())
            .collect();
        let loose: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| !grouped.contains(*h))
            .cloned()
            .collect();
        let ung = self.ensure_group("ungrouped");
        for h in loose {
            if !ung.hosts.contains(&h) {
                ung.hosts.push(h);
            }
        }
        self.ensure_group("all").hosts.clear();
    }

    /// All hosts, in declaration order.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// True if `name` is a group.
    pub fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// Group names.
    pub fn group_names(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }

    /// Hosts of a group including its descendants, in inventory order.
    pub fn group_hosts(&self, name: &str) -> Vec<String> {
        if name == "all" {
            return self.hosts.clone();
        }
        let mut set = BTreeSet::new();
        let mut stack = vec![name.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(g) = stack.pop() {
            if !seen.insert(g.clone()) {
                continue;
            }
            if let Some(group) = self.groups.get(&g) {
                set.extend(group.hosts.iter().cloned());
                stack.extend(group.children.iter().cloned());
            }
        }
        self.hosts
            .iter()
            .filter(|h| set.contains(*h))
            .cloned()
            .collect()
    }

    /// Groups a host belongs to (directly or through children), excluding `all`.
    pub fn groups_of(&self, host: &str) -> Vec<String> {
        self.groups
            .keys()
            .filter(|g| *g != "all" && self.group_hosts(g).iter().any(|h| h == host))
            .cloned()
            .collect()
    }

    /// Depth of each group below `all` (longest path), used to order group precedence:
    /// a child group's variables override its parent's.
    fn group_depths(&self) -> BTreeMap<String, usize> {
        let mut depth: BTreeMap<String, usize> = BTreeMap::new();
        depth.insert("all".into(), 0);
        // Bounded relaxation; cycles (invalid anyway) cannot loop forever.
        for _ in 0..=self.groups.len() {
            let mut changed = false;
            for (name, g) in &self.groups {
                let Some(&d) = depth.get(name) else { continue };
                for c in &g.children {
                    let nd = d + 1;
                    if depth.get(c).is_none_or(|&old| old < nd) && nd <= self.groups.len() {
                        depth.insert(c.clone(), nd);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        depth
    }

    /// The `{group: [hosts]}` map exposed to templates as `groups`.
    pub fn groups_var(&self) -> Value {
        let mut m = serde_json::Map::new();
        for g in self.groups.keys() {
            m.insert(g.clone(), Value::from(self.group_hosts(g)));
        }
        Value::Object(m)
    }

    /// Variables of one host from the inventory side, merged in Ansible's order:
    /// inventory-file group vars (all, then parents before children) < `group_vars/all` <
    /// other `group_vars/*` (parents before children; inventory dir before playbook dir) <
    /// inventory-file host vars < `host_vars/*`.
    pub fn host_vars(&self, host: &str) -> Vars {
        let depths = self.group_depths();
        let mut groups: Vec<String> = self.groups_of(host);
        groups.push("all".into());
        groups.sort_by(|a, b| {
            let da = depths.get(a).copied().unwrap_or(1);
            let db = depths.get(b).copied().unwrap_or(1);
            da.cmp(&db).then(a.cmp(b))
        });
        let mut out = self.defaults.clone();
        for g in &groups {
            if let Some(group) = self.groups.get(g) {
                overlay(&mut out, &group.vars);
            }
        }
        for d in &self.vars_dirs {
            if let Some(v) = d.group_vars.get("all") {
                overlay(&mut out, v);
            }
        }
        for g in groups.iter().filter(|g| *g != "all") {
            for d in &self.vars_dirs {
                if let Some(v) = d.group_vars.get(g) {
                    overlay(&mut out, v);
                }
            }
        }
        if let Some(v) = self.host_inline_vars.get(host) {
            overlay(&mut out, v);
        }
        for d in &self.vars_dirs {
            if let Some(v) = d.host_vars.get(host) {
                overlay(&mut out, v);
            }
        }
        out
    }
}

fn is_inventory_file(f: &Path) -> bool {
    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // The migration state lives beside the inventory (see `STATE_FILE`); it is not one.
    if name.starts_with('.') || name.ends_with('~') || name == STATE_FILE {
        return false;
    }
    let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
    matches!(ext, "" | "yml" | "yaml" | "json" | "ini" | "cfg" | "hosts")
}

#[cfg(test)]
mod tests;
