//! Secret masking.
//!
//! Masking works on *values*, not on field names alone: every string held by a variable whose
//! name says it is secret (password, secret, token, key) is collected, and every line of output
//! (plans, diffs, logs, recap, JSON) passes through [`Redactor::redact`]. That way a password
//! that flows through a template into a file diff or a command's stdout is still hidden.

use std::sync::{Arc, RwLock};

use serde_json::Value;

/// What a masked value looks like everywhere.
pub const MASK: &str = "********";

/// Words that mark a variable as secret (case-insensitive substring match, as the docs promise).
const SECRET_WORDS: [&str; 4] = ["password", "secret", "token", "key"];

/// Shortest value worth masking: masking one- or two-character values ("1", "no") would
/// shred unrelated output without protecting anything real.
const MIN_SECRET_LEN: usize = 3;

/// True when a variable name marks its value as secret.
///
/// "keyspace" is the one exception: in a Cassandra tool, keyspace names are everywhere and
/// are not secret; masking them would make plans unreadable without protecting anything.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase().replace("keyspace", "");
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// A shared, growing set of secret strings to hide from all output.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// Adds one secret string, and the forms the text-changing filters give it (`upper`,
    /// `lower`, `b64encode`, `urlencode`, `to_json`, `quote`), so a password that went
    /// through one of them on its way into a file, a command line or a URL is masked too.
    pub fn add(&self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        let mut guard = self.secrets.write().expect("redactor lock");
        if guard.iter().any(|s| s == secret) {
            return;
        }
        for form in std::iter::once(secret.to_string()).chain(encoded_forms(secret)) {
            if form.len() >= MIN_SECRET_LEN && !guard.contains(&form) {
                guard.push(form);
            }
        }
        // Longest first so a secret containing another is masked whole.
        guard.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Adds `output` of a filter when its `input` held a known secret that `output` no longer
    /// shows literally: a filter that changes the text in a way [`encoded_forms`] cannot
    /// foresee (`regex_replace`, `b64encode` of a longer string holding the secret) still
    /// leaves no readable trace of it.
    pub fn taint(&self, input: &str, output: &str) {
        if output == input || output.trim().is_empty() {
            return;
        }
        let knows_input = self.redact(input) != input;
        if knows_input && self.redact(output) == output {
            self.add(output);
            for line in output.lines() {
                self.add(line.trim());
            }
        }
    }

    /// Adds every string value found under secret-named keys of `vars` (at any depth).
    pub fn add_from_vars(&self, vars: &serde_json::Map<String, Value>) {
        for (k, v) in vars {
            if is_secret_name(k) {
                self.add_all_strings(v);
            } else if let Value::Object(inner) = v {
                self.add_from_vars(inner);
            } else if let Value::Array(items) = v {
                for item in items {
                    if let Value::Object(inner) = item {
                        self.add_from_vars(inner);
                    }
                }
            }
        }
    }

    /// Adds every string and number inside `v`: the value of a secret-named variable (a
    /// numeric PIN is a secret too).
    pub fn add_all_strings(&self, v: &Value) {
        self.add_values(v, true);
    }

    /// Adds the text inside a `no_log` task's arguments and result. Numbers and booleans are
    /// left out: return codes and HTTP statuses (0, 200) are not secrets, and masking them
    /// would blank every other result line.
    pub fn add_no_log(&self, v: &Value) {
        self.add_values(v, false);
    }

    fn add_values(&self, v: &Value, numbers: bool) {
        match v {
            Value::String(s) => {
                self.add(s);
                for line in s.lines() {
                    self.add(line.trim());
                }
            }
            Value::Number(n) if numbers => self.add(&n.to_string()),
            Value::Array(a) => a.iter().for_each(|x| self.add_values(x, numbers)),
            Value::Object(o) => o.values().for_each(|x| self.add_values(x, numbers)),
            _ => {}
        }
    }

    /// Replaces every known secret in `text` with [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let guard = self.secrets.read().expect("redactor lock");
        let mut out = text.to_string();
        for s in guard.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// Redacts all strings inside a JSON value (keys stay, values are masked).
    pub fn redact_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_value(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let masked = if is_secret_name(k) && !x.is_object() && !x.is_array() {
                            Value::String(MASK.to_string())
                        } else {
                            self.redact_value(x)
                        };
                        (k.clone(), masked)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// The forms a secret takes after the filters that re-encode a whole string. Kept in step
/// with the filters (`template::filters`, minijinja's `upper`/`lower`/`urlencode`).
fn encoded_forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let json = serde_json::to_string(secret).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    vec![
        secret.to_uppercase(),
        secret.to_lowercase(),
        b64.trim_end_matches('=').to_string(),
        b64,
        urlencode(secret),
        json.trim_matches('"').to_string(),
        crate::transport::shlex_quote(secret),
        // Inside a larger quoted shell word (a script passed to `sh -c`, an env file's value),
        // only each `'` changes, in the style of whichever quoting wrote it: the filters'
        // `'"'"'` or the SSH transport's `'\''`.
        secret.replace('\'', r#"'"'"'"#),
        secret.replace('\'', r"'\''"),
    ]
}

/// Percent-encoding as minijinja's `urlencode` does it (every byte but ASCII letters, digits
/// and `/ . - _`; a space becomes `%20`).
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/.-_".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_detected_case_insensitively() {
        assert!(is_secret_name("origin_password"));
        assert!(is_secret_name("API_TOKEN"));
        assert!(is_secret_name("ssh_key_file"));
        assert!(!is_secret_name("origin_port"));
        assert!(!is_secret_name("target_keyspace"));
        assert!(is_secret_name("keyspace_api_key"));
    }

    #[test]
    fn values_under_secret_names_are_masked_inside_text() {
        let r = Redactor::default();
        let vars = serde_json::json!({"db": {"admin_password": "hunter22"}, "port": 9042});
        r.add_from_vars(vars.as_object().unwrap());
        assert_eq!(r.redact("pw=hunter22;"), format!("pw={MASK};"));
        assert_eq!(r.redact("port 9042"), "port 9042");
    }

    #[test]
    fn re_encoded_forms_of_a_secret_are_masked() {
        let r = Redactor::default();
        r.add("Hunter 2\"x");
        for shown in [
            "HUNTER 2\"X",
            "hunter 2\"x",
            "SHVudGVyIDIieA==",
            "Hunter%202%22x",
            "Hunter 2\\\"x",
            "'Hunter 2\"x'",
        ] {
            assert_eq!(
                r.redact(&format!("a {shown} b")),
                format!("a {MASK} b"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_secret_with_a_quote_is_masked_inside_both_shell_quotings() {
        let r = Redactor::default();
        r.add("it's-s3cret");
        for shown in [
            r#"it'"'"'s-s3cret"#,
            r"it'\''s-s3cret",
            crate::transport::ssh::shell_quote("it's-s3cret").as_str(),
            crate::transport::shlex_quote("it's-s3cret").as_str(),
        ] {
            let redacted = r.redact(&format!("sh -c 'x={shown}; run' b"));
            assert!(redacted.contains(MASK), "{shown} -> {redacted}");
            assert!(!redacted.contains("s3cret"), "{shown} -> {redacted}");
        }
    }

    #[test]
    fn a_filter_output_that_hides_a_secret_becomes_one() {
        let r = Redactor::default();
        r.add("hunter22");
        r.taint("pw=hunter22", "pw=HUNTER-22");
        assert_eq!(r.redact("x pw=HUNTER-22"), format!("x {MASK}"));
        r.taint("no secret here", "NO SECRET");
        assert_eq!(r.redact("NO SECRET"), "NO SECRET");
    }
}
