//! `group_vars/` and `host_vars/` directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::InventoryError;
use crate::vars::{overlay, yaml_to_json, Vars};

/// The variables found in one directory's `group_vars/` and `host_vars/`.
#[derive(Debug)]
pub(super) struct VarsDir {
    pub root: PathBuf,
    pub group_vars: BTreeMap<String, Vars>,
    pub host_vars: BTreeMap<String, Vars>,
}

impl VarsDir {
    /// Reads `root/group_vars` and `root/host_vars`; `None` when neither exists.
    pub fn load(root: &Path) -> Result<Option<VarsDir>, InventoryError> {
        let gv = root.join("group_vars");
        let hv = root.join("host_vars");
        if !gv.is_dir() && !hv.is_dir() {
            return Ok(None);
        }
        Ok(Some(VarsDir {
            root: root.to_path_buf(),
            group_vars: read_dir_vars(&gv)?,
            host_vars: read_dir_vars(&hv)?,
        }))
    }
}

/// `name.yml`, `name.yaml`, `name.json`, `name` (a file) or `name/` (a directory of files,
/// merged in name order) all define the variables of `name`.
fn read_dir_vars(dir: &Path) -> Result<BTreeMap<String, Vars>, InventoryError> {
    let mut out: BTreeMap<String, Vars> = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| InventoryError(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let fname = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if fname.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|e| InventoryError(format!("{}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_vars_file(f))
                .collect();
            files.sort();
            let entry = out.entry(fname.to_string()).or_default();
            for f in files {
                overlay(entry, &read_vars_file(&f)?);
            }
        } else if is_vars_file(&p) {
            let stem = p
                .file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let name = match p.extension().and_then(|e| e.to_str()) {
                Some("yml" | "yaml" | "json") => stem,
                _ => fname.to_string(),
            };
            overlay(out.entry(name).or_default(), &read_vars_file(&p)?);
        }
    }
    Ok(out)
}

fn is_vars_file(f: &Path) -> bool {
    matches!(
        f.extension().and_then(|e| e.to_str()),
        None | Some("yml" | "yaml" | "json")
    )
}

/// Reads one YAML/JSON file holding a mapping of variables (also used for `vars_files`).
pub fn read_vars_file(f: &Path) -> Result<Vars, InventoryError> {
    let text =
        std::fs::read_to_string(f).map_err(|e| InventoryError(format!("{}: {e}", f.display())))?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&crate::yaml11::normalize(&text))
        .map_err(|e| {
            let loc = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            InventoryError(format!("{}{loc}: {e}", f.display()))
        })?;
    match yaml_to_json(&doc) {
        serde_json::Value::Null => Ok(Vars::new()),
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(InventoryError(format!(
            "{}: a variables file must hold a mapping",
            f.display()
        ))),
    }
}
