//! The INI inventory format (`[group]`, `[group:vars]`, `[group:children]`).

use std::path::Path;

use serde_json::Value;

use super::{expand_host_range, Inventory, InventoryError};
use crate::vars::Vars;

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

pub(super) fn parse(inv: &mut Inventory, text: &str, file: &Path) -> Result<(), InventoryError> {
    let mut section = Section::Hosts("ungrouped".into());
    for (idx, raw) in text.lines().enumerate() {
        let at = |msg: String| InventoryError(format!("{}:{}: {msg}", file.display(), idx + 1));
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_prefix('[') {
            let head = head
                .strip_suffix(']')
                .ok_or_else(|| at(format!("section header '{line}' lacks ']'")))?;
            section = match head.split_once(':') {
                None => Section::Hosts(head.to_string()),
                Some((g, "vars")) => Section::Vars(g.to_string()),
                Some((g, "children")) => Section::Children(g.to_string()),
                Some((_, other)) => {
                    return Err(at(format!(
                        "unknown section kind ':{other}' (expected :vars or :children)"
                    )))
                }
            };
            let name = match &section {
                Section::Hosts(g) | Section::Vars(g) | Section::Children(g) => g.clone(),
            };
            inv.ensure_group(&name);
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let tokens = split_words(line).map_err(&at)?;
                let (name, rest) = tokens.split_first().expect("non-empty line");
                let mut vars = Vars::new();
                for t in rest {
                    let (k, v) = t
                        .split_once('=')
                        .ok_or_else(|| at(format!("expected key=value, found '{t}'")))?;
                    vars.insert(k.to_string(), literal(v));
                }
                let (name, port) = split_port(name);
                if let Some(p) = port {
                    vars.entry("ansible_port").or_insert(Value::from(p));
                }
                for h in expand_host_range(name).map_err(|e| at(e.0))? {
                    inv.add_host(&h, group, vars.clone());
                }
            }
            Section::Vars(group) => {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| at(format!("expected key=value in [{group}:vars]")))?;
                let v = split_words(v.trim()).map_err(&at)?.join(" ");
                inv.ensure_group(group)
                    .vars
                    .insert(k.trim().to_string(), literal(&v));
            }
            Section::Children(group) => {
                if line.contains(char::is_whitespace) {
                    return Err(at(format!("child group name '{line}' contains spaces")));
                }
                inv.add_child(group, line);
            }
        }
    }
    Ok(())
}

fn split_port(name: &str) -> (&str, Option<u16>) {
    if let Some((h, p)) = name.rsplit_once(':') {
        if !h.contains(':') && !h.contains('[') {
            if let Ok(port) = p.parse() {
                return (h, Some(port));
            }
        }
    }
    (name, None)
}

/// INI values are literals: integers and booleans become typed, the rest stays text.
fn literal(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    match v {
        "true" | "True" => Value::Bool(true),
        "false" | "False" => Value::Bool(false),
        _ => Value::String(v.to_string()),
    }
}

/// Splits on whitespace, keeping quoted parts together (`a="b c"` is one word `a=b c`).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == '#' && !in_word => break,
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}
