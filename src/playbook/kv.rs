//! Module arguments written inline as `key=value` words (`file: path=/x state=directory`),
//! as ansible-playbook reads them.
//!
//! WHY a splitter of our own instead of shell words: a value may hold a template with
//! spaces and quotes (`msg={{ x | default('a b') }}`), which must stay one word, and the
//! free-form text of `command`/`shell` must keep its quotes exactly as written once the
//! `chdir=`/`creates=`/`removes=` words are taken out of it.

use serde_json::{Map, Value};

/// Keys taken out of `command`/`shell` free-form text (the rest is the command), among
/// those Ansible takes out.
pub const COMMAND_KEYS: &[&str] = &["chdir", "creates", "removes", "stdin"];

/// Splits at whitespace outside quotes and outside `{{ }}` / `{% %}` / `{# #}`, keeping each
/// word's text as written (quotes included).
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    Ok(word_spans(text)?
        .into_iter()
        .map(|(s, e)| text[s..e].to_string())
        .collect())
}

/// The byte spans of the words [`split_words`] finds.
fn word_spans(text: &str) -> Result<Vec<(usize, usize)>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    let mut jinja = 0usize;
    let indexed: Vec<(usize, char)> = text.char_indices().collect();
    let chars: Vec<char> = indexed.iter().map(|(_, c)| *c).collect();
    let at = |i: usize| indexed.get(i).map_or(text.len(), |(b, _)| *b);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if cur.is_empty() && !c.is_whitespace() {
            start = at(i);
        }
        match quote {
            Some(q) => {
                if c == '\\' && next.is_some() {
                    cur.push(c);
                    cur.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                if c == q {
                    quote = None;
                }
                cur.push(c);
            }
            None => {
                if c == '{' && matches!(next, Some('{' | '%' | '#')) {
                    jinja += 1;
                    cur.push(c);
                    cur.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                if jinja > 0 && matches!(c, '}' | '%' | '#') && next == Some('}') {
                    jinja -= 1;
                    cur.push(c);
                    cur.push('}');
                    i += 2;
                    continue;
                }
                if (c == '"' || c == '\'') && (jinja > 0 || cur.is_empty() || cur.contains('=')) {
                    quote = Some(c);
                    cur.push(c);
                } else if c.is_whitespace() && jinja == 0 {
                    if !cur.is_empty() {
                        cur.clear();
                        words.push((start, at(i)));
                    }
                } else {
                    cur.push(c);
                }
            }
        }
        i += 1;
    }
    if quote.is_some() {
        return Err(format!("unbalanced quotes in '{text}'"));
    }
    if !cur.is_empty() {
        words.push((start, text.len()));
    }
    Ok(words)
}

/// A value without the quotes around it (`"a b"` -> `a b`), escapes inside resolved.
pub fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        let inner = &v[1..v.len() - 1];
        let q = b[0] as char;
        return inner
            .replace(&format!("\\{q}"), &q.to_string())
            .replace("\\\\", "\\");
    }
    v.to_string()
}

/// A `key=value` word: `Some((key, value))` when it starts with an identifier and `=`.
fn pair(word: &str) -> Option<(String, String)> {
    let (k, v) = word.split_once('=')?;
    let ident = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    ident.then(|| (k.to_string(), unquote(v)))
}

/// Every word must be `key=value` (modules without free-form text).
pub fn parse_pairs(text: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for w in split_words(text)? {
        let (k, v) = pair(&w).ok_or_else(|| {
            format!("'{w}' is not key=value (arguments written inline are key=value words)")
        })?;
        out.insert(k, Value::String(v));
    }
    Ok(out)
}

/// Free-form text: the words `key=value` whose key is in `keys` become arguments, the
/// rest is `_raw`, exactly as written (newlines, spacing and quoting of a multi-line
/// `shell: |` script included): only the taken words and the blanks after them are cut out.
pub fn parse_free_form(text: &str, keys: &[&str]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    // Text that names none of the keys is the command as it stands, never split: our word
    // rules are not a shell's, and a script must reach the shell untouched.
    if !keys.iter().any(|k| text.contains(&format!("{k}="))) {
        if !text.trim().is_empty() {
            out.insert("_raw".into(), Value::String(text.to_string()));
        }
        return Ok(out);
    }
    let mut raw = String::with_capacity(text.len());
    let mut kept_from = 0;
    for (s, e) in word_spans(text)? {
        if let Some((k, v)) = pair(&text[s..e]).filter(|(k, _)| keys.contains(&k.as_str())) {
            out.insert(k, Value::String(v));
            raw.push_str(&text[kept_from..s]);
            let rest = &text[e..];
            kept_from = e + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
        }
    }
    raw.push_str(&text[kept_from..]);
    let raw = raw.trim_end_matches([' ', '\t']);
    if !raw.trim().is_empty() {
        out.insert("_raw".into(), Value::String(raw.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pairs_keep_templates_and_quoted_values_whole() {
        let m = parse_pairs(r#"msg="a b" var={{ x | default('c d') }} n=1"#).unwrap();
        assert_eq!(m["msg"], json!("a b"));
        assert_eq!(m["var"], json!("{{ x | default('c d') }}"));
        assert_eq!(m["n"], json!("1"));
        let e = parse_pairs("path=/x directory").unwrap_err();
        assert!(e.contains("'directory' is not key=value"), "{e}");
        assert!(parse_pairs("msg='open").is_err());
    }

    #[test]
    fn free_form_takes_out_only_the_known_keys_and_keeps_the_command_as_written() {
        let m = parse_free_form(
            r#"echo "x=1 y" 'q' creates=/tmp/f chdir="/a b" FOO=bar"#,
            COMMAND_KEYS,
        )
        .unwrap();
        assert_eq!(m["_raw"], json!(r#"echo "x=1 y" 'q' FOO=bar"#));
        assert_eq!(m["creates"], json!("/tmp/f"));
        assert_eq!(m["chdir"], json!("/a b"));
        let m = parse_free_form("creates=/x", COMMAND_KEYS).unwrap();
        assert!(m.get("_raw").is_none());
    }

    #[test]
    fn a_multi_line_script_reaches_the_shell_as_written() {
        let script = "touch a\nfor i in 1 2; do\n  [ -f a ] && exit 0\ndone\nexit 1\n";
        let m = parse_free_form(script, COMMAND_KEYS).unwrap();
        assert_eq!(m["_raw"], json!(script));
        let m = parse_free_form(&format!("chdir=/tmp {script}"), COMMAND_KEYS).unwrap();
        assert_eq!(m["_raw"], json!(script));
        assert_eq!(m["chdir"], json!("/tmp"));
        let m = parse_free_form("echo  'don''t'  x   creates=/f", COMMAND_KEYS).unwrap();
        assert_eq!(m["_raw"], json!("echo  'don''t'  x"));
    }
}
