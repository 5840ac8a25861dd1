//! Finding where a node of a YAML file is, for messages about things the checker could not
//! refuse while reading (an `import_playbook` with other keys, a `notify` naming no handler,
//! a templated keyword whose rendered value has the wrong type).
//!
//! WHY a second walk instead of keeping positions: serde_yaml_ng exposes a position only on
//! an error raised while a node is read. So to find a node, the file is read again with a
//! seed that walks down `path` and raises an error on the node itself; that error's position
//! is the answer. These walks happen only on error paths and for the few templated keywords,
//! so their cost does not matter.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step from a node to one of its children.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

/// The marker the walk raises on the node it looks for.
const FOUND: &str = "\u{0}zdm-locate-found";

/// `file:line:col` of the node at `path` in `text` (the key itself when `at_key` and the
/// path ends with a key), or just `file` if the node is not there.
pub fn position(file: &Path, text: &str, path: &[Seg], at_key: bool) -> String {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Walk { path, at_key }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => match e.location() {
            Some(l) => format!("{}:{}:{}", file.display(), l.line(), l.column()),
            None => file.display().to_string(),
        },
        _ => file.display().to_string(),
    }
}

#[derive(Clone, Copy)]
struct Walk<'a> {
    path: &'a [Seg],
    at_key: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn found<E: de::Error>() -> Result<(), E> {
    Err(E::custom(FOUND))
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return found();
        };
        let Seg::Index(want) = first else {
            return Ok(());
        };
        let mut i = 0;
        while i < *want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
        let inner = Walk {
            path: rest,
            at_key: self.at_key,
        };
        seq.next_element_seed(inner)?;
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return found();
        };
        let Seg::Key(want) = first else {
            return Ok(());
        };
        let stop_at_key = self.at_key && rest.is_empty();
        while let Some(k) = map.next_key_seed(KeySeed {
            want,
            stop: stop_at_key,
        })? {
            if &k == want {
                map.next_value_seed(Walk {
                    path: rest,
                    at_key: self.at_key,
                })?;
                return Ok(());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

impl Walk<'_> {
    fn leaf<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            found()
        } else {
            Ok(())
        }
    }
}

/// Reads a key, raising the marker on it when it is the wanted one and the walk ends there.
struct KeySeed<'a> {
    want: &'a str,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<String, E> {
        if self.stop && k == self.want {
            return Err(E::custom(FOUND));
        }
        Ok(k.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
- hosts: all
  tasks:
    - name: a
      debug: {msg: hi}
    - name: b
      no_log: \"{{ x }}\"
      notify: [h1, h2]
";

    fn at(path: &[Seg], at_key: bool) -> String {
        position(Path::new("p.yml"), TEXT, path, at_key)
    }

    #[test]
    fn finds_values_keys_and_list_items() {
        let task = [Seg::Index(0), Seg::key("tasks"), Seg::Index(1)];
        let mut p = task.to_vec();
        p.push(Seg::key("no_log"));
        assert_eq!(at(&p, false), "p.yml:6:15");
        assert_eq!(at(&p, true), "p.yml:6:7");
        let mut n = task.to_vec();
        n.extend([Seg::key("notify"), Seg::Index(1)]);
        assert_eq!(at(&n, false), "p.yml:7:20");
        assert_eq!(at(&task, false), "p.yml:5:7");
    }

    #[test]
    fn a_missing_node_gives_the_file_alone() {
        assert_eq!(at(&[Seg::Index(3)], false), "p.yml");
        assert_eq!(at(&[Seg::Index(0), Seg::key("nope")], true), "p.yml");
    }
}
