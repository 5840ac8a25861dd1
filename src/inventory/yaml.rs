//! The YAML inventory format (`all: {hosts, vars, children}`).
//!
//! Read with the same technique as playbooks: the shape is checked while deserializing, so
//! an unknown key, a bad host range or a list where a mapping belongs is reported with the
//! file, line and column of the offending node.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::Value;

use super::{expand_host_range, Inventory, InventoryError};
use crate::vars::Vars;

/// One group as written.
#[derive(Default)]
struct GroupDef {
    hosts: Vec<(String, Vars)>,
    vars: Vars,
    children: Vec<(String, GroupDef)>,
}

pub(super) fn parse(inv: &mut Inventory, text: &str, file: &Path) -> Result<(), InventoryError> {
    let normalized = crate::yaml11::normalize(text);
    let de = serde_yaml_ng::Deserializer::from_str(&normalized);
    let groups = TOP_GROUPS.deserialize(de).map_err(|e| located(file, &e))?;
    for (name, def) in groups {
        add_group(inv, &name, def);
    }
    Ok(())
}

fn add_group(inv: &mut Inventory, name: &str, def: GroupDef) {
    inv.ensure_group(name);
    for (h, vars) in def.hosts {
        inv.add_host(&h, name, vars);
    }
    crate::vars::overlay(&mut inv.ensure_group(name).vars, &def.vars);
    for (child, cdef) in def.children {
        inv.add_child(name, &child);
        add_group(inv, &child, cdef);
    }
}

fn located(file: &Path, e: &serde_yaml_ng::Error) -> InventoryError {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    let msg = msg.strip_prefix('.').map(str::to_string).unwrap_or(msg);
    match e.location() {
        Some(l) => InventoryError(format!(
            "{}:{}:{}: {msg}",
            file.display(),
            l.line(),
            l.column()
        )),
        None => InventoryError(format!("{}: {msg}", file.display())),
    }
}

/// A mapping of group names to group bodies: the document itself (top-level groups) and every
/// `children:` block; only the wording of a type error differs. Empty (null) is allowed.
struct GroupMapSeed {
    expecting: &'static str,
}

/// The document: top-level group names.
const TOP_GROUPS: GroupMapSeed = GroupMapSeed {
    expecting: "a mapping of group names (e.g. all:)",
};

/// `children:` — child group names.
const CHILD_GROUPS: GroupMapSeed = GroupMapSeed {
    expecting: "a mapping of child group names",
};

impl<'de> DeserializeSeed<'de> for GroupMapSeed {
    type Value = Vec<(String, GroupDef)>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for GroupMapSeed {
    type Value = Vec<(String, GroupDef)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(vec![])
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            out.push((name, map.next_value_seed(GroupSeed)?));
        }
        Ok(out)
    }
}

/// A group body: `hosts`, `vars`, `children` (or nothing).
struct GroupSeed;

impl<'de> DeserializeSeed<'de> for GroupSeed {
    type Value = GroupDef;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<GroupDef, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for GroupSeed {
    type Value = GroupDef;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a group (a mapping with hosts, vars or children)")
    }
    fn visit_unit<E: de::Error>(self) -> Result<GroupDef, E> {
        Ok(GroupDef::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GroupDef, A::Error> {
        let mut def = GroupDef::default();
        while let Some(k) = map.next_key_seed(GroupKey)? {
            match k {
                GroupField::Hosts => def.hosts = map.next_value_seed(HostsSeed)?,
                GroupField::Vars => def.vars = map.next_value_seed(VarsSeed("group vars"))?,
                GroupField::Children => def.children = map.next_value_seed(CHILD_GROUPS)?,
            }
        }
        Ok(def)
    }
}

enum GroupField {
    Hosts,
    Vars,
    Children,
}

/// A group key, refused on the spot if unknown so the error points at it.
struct GroupKey;

impl<'de> DeserializeSeed<'de> for GroupKey {
    type Value = GroupField;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<GroupField, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for GroupKey {
    type Value = GroupField;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("hosts, vars or children")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<GroupField, E> {
        match k {
            "hosts" => Ok(GroupField::Hosts),
            "vars" => Ok(GroupField::Vars),
            "children" => Ok(GroupField::Children),
            other => Err(E::custom(format!(
                "unknown group key '{other}' (expected hosts, vars, children)"
            ))),
        }
    }
}

/// `hosts:` — host names (ranges allowed) to their variables.
struct HostsSeed;

impl<'de> DeserializeSeed<'de> for HostsSeed {
    type Value = Vec<(String, Vars)>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HostsSeed {
    type Value = Vec<(String, Vars)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of host names (host: or host: {vars})")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(vec![])
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(names) = map.next_key_seed(HostName)? {
            let vars = map.next_value_seed(VarsSeed("host vars"))?;
            for n in names {
                out.push((n, vars.clone()));
            }
        }
        Ok(out)
    }
}

/// A host name key, expanded if it is a range; a bad range fails at the key.
struct HostName;

impl<'de> DeserializeSeed<'de> for HostName {
    type Value = Vec<String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for HostName {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a host name")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<Vec<String>, E> {
        expand_host_range(k).map_err(|e| E::custom(e.0))
    }
}

/// `vars:` / host variables: a mapping (or nothing).
struct VarsSeed(&'static str);

impl<'de> DeserializeSeed<'de> for VarsSeed {
    type Value = Vars;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vars, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for VarsSeed {
    type Value = Vars;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} (a mapping of variable names)", self.0)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vars, E> {
        Ok(Vars::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vars, A::Error> {
        let mut out = Vars::new();
        while let Some(k) = map.next_key::<String>()? {
            out.insert(k, map.next_value::<Value>()?);
        }
        Ok(out)
    }
}
