//! The YAML inventory format (`all: {hosts, vars, children}`).

use std::path::Path;

use serde_yaml_ng::Value as Y;

use super::{expand_host_range, Inventory, InventoryError};
use crate::vars::{yaml_to_json, Vars};

pub(super) fn parse(inv: &mut Inventory, text: &str, file: &Path) -> Result<(), InventoryError> {
    let doc: Y = serde_yaml_ng::from_str(text).map_err(|e| located(file, &e))?;
    let top = match doc {
        Y::Null => return Ok(()),
        Y::Mapping(m) => m,
        _ => {
            return Err(InventoryError(format!(
                "{}: an inventory must be a mapping of group names",
                file.display()
            )))
        }
    };
    for (name, body) in &top {
        let name = key(name, file)?;
        group(inv, &name, body, file)?;
    }
    Ok(())
}

fn located(file: &Path, e: &serde_yaml_ng::Error) -> InventoryError {
    match e.location() {
        Some(l) => InventoryError(format!(
            "{}:{}:{}: {e}",
            file.display(),
            l.line(),
            l.column()
        )),
        None => InventoryError(format!("{}: {e}", file.display())),
    }
}

fn key(k: &Y, file: &Path) -> Result<String, InventoryError> {
    match k {
        Y::String(s) => Ok(s.clone()),
        Y::Number(n) => Ok(n.to_string()),
        other => Err(InventoryError(format!(
            "{}: names must be strings, found {other:?}",
            file.display()
        ))),
    }
}

fn vars_of(v: &Y, what: &str, file: &Path) -> Result<Vars, InventoryError> {
    match yaml_to_json(v) {
        serde_json::Value::Null => Ok(Vars::new()),
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(InventoryError(format!(
            "{}: {what} must be a mapping",
            file.display()
        ))),
    }
}

fn group(inv: &mut Inventory, name: &str, body: &Y, file: &Path) -> Result<(), InventoryError> {
    inv.ensure_group(name);
    let map = match body {
        Y::Null => return Ok(()),
        Y::Mapping(m) => m,
        _ => {
            return Err(InventoryError(format!(
                "{}: group '{name}' must be a mapping with hosts, vars or children",
                file.display()
            )))
        }
    };
    for (k, v) in map {
        match key(k, file)?.as_str() {
            "hosts" => match v {
                Y::Null => {}
                Y::Mapping(hosts) => {
                    for (h, hv) in hosts {
                        let hname = key(h, file)?;
                        let vars = vars_of(hv, &format!("host '{hname}' in group '{name}'"), file)?;
                        for expanded in expand_host_range(&hname)
                            .map_err(|e| InventoryError(format!("{}: {}", file.display(), e.0)))?
                        {
                            inv.add_host(&expanded, name, vars.clone());
                        }
                    }
                }
                _ => {
                    return Err(InventoryError(format!(
                        "{}: group '{name}': 'hosts' must be a mapping of host names",
                        file.display()
                    )))
                }
            },
            "vars" => {
                let vars = vars_of(v, &format!("group '{name}' vars"), file)?;
                crate::vars::overlay(&mut inv.ensure_group(name).vars, &vars);
            }
            "children" => match v {
                Y::Null => {}
                Y::Mapping(children) => {
                    for (c, cv) in children {
                        let cname = key(c, file)?;
                        inv.add_child(name, &cname);
                        group(inv, &cname, cv, file)?;
                    }
                }
                _ => {
                    return Err(InventoryError(format!(
                        "{}: group '{name}': 'children' must be a mapping of group names",
                        file.display()
                    )))
                }
            },
            other => {
                return Err(InventoryError(format!(
                    "{}: group '{name}': unknown key '{other}' (expected hosts, vars, children)",
                    file.display()
                )))
            }
        }
    }
    Ok(())
}
