//! `-e`/`--extra-vars`, read as ansible-playbook reads it: `key=value` words with shell
//! quoting, an inline JSON/YAML mapping, or `@file`; later values win.

use crate::vars::{yaml_to_json, Vars};

/// Parses `-e` values: `@file`, a JSON/YAML mapping, or `k=v` words.
pub fn parse_extra_vars(items: &[String]) -> Result<Vars, String> {
    let mut out = Vars::new();
    for item in items {
        let item = item.trim();
        let parsed: Vars = if let Some(file) = item.strip_prefix('@') {
            let text = std::fs::read_to_string(file).map_err(|e| format!("-e @{file}: {e}"))?;
            mapping(&text).map_err(|e| format!("-e @{file}: {e}"))?
        } else if item.starts_with('{') {
            mapping(item).map_err(|e| format!("-e '{item}': {e}"))?
        } else {
            let mut m = Vars::new();
            // Shell-style words, as ansible-playbook reads them: `k='a b'` is one value.
            let words =
                shlex::split(item).ok_or_else(|| format!("-e '{item}': unbalanced quotes"))?;
            for word in &words {
                let (k, v) = word
                    .split_once('=')
                    .ok_or_else(|| format!("-e '{word}': expected key=value, JSON, or @file"))?;
                if k.is_empty() {
                    return Err(format!("-e '{word}': empty variable name"));
                }
                m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            m
        };
        crate::vars::overlay(&mut out, &parsed);
    }
    Ok(out)
}

fn mapping(text: &str) -> Result<Vars, String> {
    let y: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&crate::yaml11::normalize(text)).map_err(|e| e.to_string())?;
    match yaml_to_json(&y) {
        serde_json::Value::Object(m) => Ok(m),
        serde_json::Value::Null => Ok(Vars::new()),
        _ => Err("must be a mapping of variables".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn extra_vars_accept_pairs_json_and_files_later_ones_winning() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vars.yml");
        std::fs::write(&f, "from_file: 1\nshared: file\n").unwrap();
        let v = parse_extra_vars(&[
            "a=1 b=two".into(),
            r#"{"c": [1, 2], "shared": "json"}"#.into(),
            format!("@{}", f.display()),
        ])
        .unwrap();
        assert_eq!(v["a"], json!("1"));
        assert_eq!(v["b"], json!("two"));
        assert_eq!(v["c"], json!([1, 2]));
        assert_eq!(v["from_file"], json!(1));
        assert_eq!(v["shared"], json!("file"));
        assert!(parse_extra_vars(&["novalue".into()]).is_err());
        assert!(parse_extra_vars(&["=x".into()]).is_err());
        assert!(parse_extra_vars(&["@/no/such/file".into()]).is_err());
        assert!(parse_extra_vars(&["[1, 2]".into()]).is_err());
    }

    #[test]
    fn extra_vars_words_honour_shell_quotes_like_ansible() {
        let v =
            parse_extra_vars(&["k='a b' plain=x dq=\"c  d\" esc=e\\ f empty=''".into()]).unwrap();
        assert_eq!(v["k"], json!("a b"));
        assert_eq!(v["plain"], json!("x"));
        assert_eq!(v["dq"], json!("c  d"));
        assert_eq!(v["esc"], json!("e f"));
        assert_eq!(v["empty"], json!(""));
        let e = parse_extra_vars(&["k='unterminated".into()]).unwrap_err();
        assert!(e.contains("unbalanced quotes"), "{e}");
    }
}
