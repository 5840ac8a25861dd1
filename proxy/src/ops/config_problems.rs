//! Every problem of one configuration load, reported at once and without a password in it.
//!
//! WHY: an operator fixing a config file one error per start (or per `--check-config`) goes
//! round the loop once per typo; listing them all ends it in one pass. And since an error
//! message quotes the value it refuses, a password typed under the wrong key (or a value
//! quoted by the YAML parser) could be printed: every value of a setting whose name says
//! password is masked in the final text, whatever key it ended up under.

use zdm_proxy_settings::edit_distance::edit_distance;

use crate::ops::config::ConfigError;

/// What a masked value is shown as.
const MASK: &str = "<redacted>";

/// Shortest value worth masking (masking "1" would shred the message).
const MIN_SECRET_LEN: usize = 3;

/// Collects the errors and the secret values of one load.
#[derive(Default)]
pub struct Problems {
    errors: Vec<String>,
    secrets: Vec<String>,
}

impl Problems {
    pub fn push(&mut self, e: ConfigError) {
        if !self.errors.contains(&e.0) {
            self.errors.push(e.0);
        }
    }

    /// Records the result of one step, keeping its error and going on.
    pub fn keep<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.push(e)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Notes the value of a setting `key` if its name says it is a password or a secret.
    pub fn note_value(&mut self, key: &str, value: &str) {
        if is_secret_name(key) {
            let v = value.trim().trim_matches(|c| c == '"' || c == '\'');
            for s in [value.trim(), v] {
                if s.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|x| x == s) {
                    self.secrets.push(s.to_string());
                }
            }
        }
    }

    /// Notes the values of `key: value` lines whose key names a secret, read from the file's
    /// raw text: they must be masked even when the file does not parse as YAML.
    pub fn note_text(&mut self, text: &str) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':') {
                self.note_value(k.trim(), v);
            }
        }
    }

    /// `Ok` when nothing was wrong, else one error listing every problem, masked.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        // Longest first, so a secret containing another is masked whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mask = |text: &str| {
            self.secrets
                .iter()
                .fold(text.to_string(), |t, s| t.replace(s.as_str(), MASK))
        };
        match self.errors.len() {
            0 => Ok(()),
            1 => Err(ConfigError(mask(&self.errors[0]))),
            n => {
                let mut text = format!("{n} errors:");
                for e in &self.errors {
                    text.push_str(&format!("\n  - {}", mask(e)));
                }
                Err(ConfigError(text))
            }
        }
    }
}

fn is_secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    // "pass"/"pasw"/"pwd" also catch a misspelt password key (`origin_pasword`).
    ["pass", "pasw", "pwd", "secret", "token"]
        .iter()
        .any(|w| k.contains(w))
}

/// The known setting closest to a misspelt `key`, when one is close enough to be the intent
/// (at most a third of its letters differ).
pub fn did_you_mean<'a>(key: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (key.len() / 3).clamp(1, 4);
    known
        .into_iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_setting_finds_its_neighbour_and_nonsense_finds_none() {
        let known = ["proxy_listen_port", "metrics_port", "origin_password"];
        assert_eq!(
            did_you_mean("proxy_listen_prot", known),
            Some("proxy_listen_port")
        );
        assert_eq!(
            did_you_mean("orgin_password", known),
            Some("origin_password")
        );
        assert_eq!(did_you_mean("bogus", known), None);
    }

    #[test]
    fn all_errors_are_listed_and_passwords_masked() {
        let mut p = Problems::default();
        p.note_text("origin_pasword: hunter22\n");
        p.push(ConfigError("a: `hunter22` is wrong".into()));
        p.push(ConfigError("b: also wrong".into()));
        let e = p.finish().unwrap_err().0;
        assert_eq!(
            e,
            "2 errors:\n  - a: `<redacted>` is wrong\n  - b: also wrong"
        );
    }
}
