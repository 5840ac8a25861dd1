//! One setting's raw value, from the YAML file or a `ZDM_*` environment variable, turned into
//! the type of its setting: strings, lists, numbers in a range, booleans (with YAML 1.1's
//! words), ports, and the settings whose values are names (cluster, read mode, consistency
//! level, log level, metrics prefix).
//!
//! Every error names the setting and where the value came from (file and line, or the
//! environment variable); `config` decides which setting a key is and which parser it takes.

use std::fmt;

use crate::ops::config::{Cluster, ConfigError, ReadMode};

/// One raw setting value and where it came from, for error messages.
pub(super) struct Raw<'a> {
    pub(super) value: RawValue,
    pub(super) origin: &'a str,
}

/// Where a raw value was read: a YAML value keeps its type, an environment variable is text.
pub(super) enum RawValue {
    Yaml(serde_yaml_ng::Value),
    Env(String),
}

impl Raw<'_> {
    fn err(&self, key: &str, why: impl fmt::Display) -> ConfigError {
        ConfigError(format!(
            "{}: invalid value for setting `{key}`: {why}",
            self.origin
        ))
    }

    pub(super) fn string(&self, key: &str) -> Result<String, ConfigError> {
        match &self.value {
            RawValue::Env(s) => Ok(s.clone()),
            RawValue::Yaml(serde_yaml_ng::Value::String(s)) => Ok(s.clone()),
            RawValue::Yaml(serde_yaml_ng::Value::Number(n)) => Ok(n.to_string()),
            RawValue::Yaml(serde_yaml_ng::Value::Null) => Ok(String::new()),
            RawValue::Yaml(_) => Err(self.err(key, "expected a string")),
        }
    }

    pub(super) fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = match &self.value {
            RawValue::Yaml(serde_yaml_ng::Value::Sequence(seq)) => seq
                .iter()
                .map(|v| match v {
                    serde_yaml_ng::Value::String(s) => Ok(s.clone()),
                    _ => Err(self.err(key, "list items must be strings")),
                })
                .collect::<Result<_, _>>()?,
            _ => self
                .string(key)?
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
        };
        Ok(items.into_iter().filter(|s| !s.is_empty()).collect())
    }

    pub(super) fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T, ConfigError> {
        let s = match &self.value {
            RawValue::Yaml(serde_yaml_ng::Value::Number(n)) => n.to_string(),
            RawValue::Yaml(serde_yaml_ng::Value::String(s)) | RawValue::Env(s) => s.clone(),
            _ => return Err(self.err(key, "expected a number")),
        };
        s.trim()
            .parse()
            .map_err(|_| self.err(key, format!("`{s}` is not a valid non-negative integer")))
    }

    /// A number within `lo..=hi`.
    pub(super) fn number_in<T>(&self, key: &str, lo: T, hi: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let v: T = self.number(key)?;
        if v < lo || v > hi {
            return Err(self.err(key, format!("{v} is outside {lo}..={hi}")));
        }
        Ok(v)
    }

    pub(super) fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        match &self.value {
            RawValue::Yaml(serde_yaml_ng::Value::Bool(b)) => Ok(*b),
            RawValue::Yaml(serde_yaml_ng::Value::String(s)) | RawValue::Env(s) => {
                // YAML 1.1's words too (`yes`/`no`/`on`/`off`): config files written for
                // Ansible-era tools use them, and YAML 1.2 parsers read them as strings.
                match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "y" => Ok(true),
                    "false" | "no" | "off" | "n" => Ok(false),
                    _ => Err(self.err(
                        key,
                        format!("`{s}` is not true or false (nor yes/no, on/off)"),
                    )),
                }
            }
            _ => Err(self.err(key, "expected true or false")),
        }
    }
}

/// A TCP port setting: a number in 1..=65535, and a value outside that range is called a port
/// out of range (not "not a valid integer", which is what parsing 70000 as a u16 would say).
pub(super) fn port(raw: &Raw<'_>, key: &str) -> Result<u16, ConfigError> {
    let v: i64 = raw.number(key)?;
    u16::try_from(v)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| raw.err(key, format!("port {v} is out of range (1-65535)")))
}

/// `target_consistency_level`: a level's name, or empty for the client's own level.
pub(super) fn consistency_level(raw: &Raw<'_>, key: &str) -> Result<Option<u16>, ConfigError> {
    let v = raw.string(key)?;
    if v.trim().is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = crate::statements::consistency::LEVELS
        .iter()
        .map(|l| l.0)
        .collect();
    crate::statements::consistency::parse(&v)
        .map(Some)
        .ok_or_else(|| raw.err(key, format!("`{v}` is not one of {}", names.join(", "))))
}

pub(super) fn primary_cluster(raw: &Raw<'_>, key: &str) -> Result<Cluster, ConfigError> {
    match raw.string(key)?.to_ascii_uppercase().as_str() {
        "ORIGIN" => Ok(Cluster::Origin),
        "TARGET" => Ok(Cluster::Target),
        other => Err(raw.err(key, format!("`{other}` is not ORIGIN or TARGET"))),
    }
}

/// `read_mode`, with our runbook's aliases: `DUAL`, and `TARGET_ONLY`, which means primary-only
/// reads from target (where it was set is noted in `target_only`:
/// [`Config::load`](crate::ops::config::Config::load) makes target the primary).
pub(super) fn read_mode(
    raw: &Raw<'_>,
    key: &str,
    target_only: &mut Option<String>,
) -> Result<ReadMode, ConfigError> {
    match raw.string(key)?.to_ascii_uppercase().as_str() {
        "PRIMARY_ONLY" => Ok(ReadMode::PrimaryOnly),
        "DUAL_ASYNC_ON_SECONDARY" | "DUAL" => Ok(ReadMode::DualAsyncOnSecondary),
        "TARGET_ONLY" => {
            *target_only = Some(raw.origin.to_string());
            Ok(ReadMode::PrimaryOnly)
        }
        other => Err(raw.err(
            key,
            format!(
                "`{other}` is not PRIMARY_ONLY, DUAL_ASYNC_ON_SECONDARY, DUAL or \
                 TARGET_ONLY"
            ),
        )),
    }
}

pub(super) fn metrics_prefix(raw: &Raw<'_>, key: &str) -> Result<String, ConfigError> {
    let p = raw.string(key)?;
    if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(raw.err(key, "must be letters, digits and underscores"));
    }
    Ok(p)
}

pub(super) fn log_level(raw: &Raw<'_>, key: &str) -> Result<String, ConfigError> {
    let l = raw.string(key)?.to_ascii_uppercase();
    if !["TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR"].contains(&l.as_str()) {
        return Err(raw.err(
            key,
            format!("`{l}` is not TRACE, DEBUG, INFO, WARN or ERROR"),
        ));
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use crate::ops::config::test_support::{env, tempfile_in_target, MIN};
    use crate::ops::config::{Cluster, Config, ReadMode};
    use std::io::Write;

    #[test]
    fn invalid_values_are_refused_naming_the_setting() {
        for (k, v) in [
            ("ZDM_PRIMARY_CLUSTER", "BOTH"),
            ("ZDM_METRICS_PORT", "70000"),
            ("ZDM_PROXY_MAX_STREAM_IDS", "abc"),
            ("ZDM_READ_MODE", "SOMETIMES"),
            ("ZDM_METRICS_ENABLED", "yes please"),
            ("ZDM_REPLACE_CQL_FUNCTIONS", "sometimes"),
            ("ZDM_TARGET_CONSISTENCY_LEVEL", "SERIAL"),
            ("ZDM_TARGET_CONSISTENCY_LEVEL", "QUORUMS"),
        ] {
            let e = Config::load(None, env(&[MIN[0], MIN[1], (k, v)]))
                .unwrap_err()
                .to_string();
            let setting = k.trim_start_matches("ZDM_").to_ascii_lowercase();
            assert!(e.contains(&setting), "{k}: {e}");
        }
        let e = Config::load(None, env(&MIN[..1])).unwrap_err().to_string();
        assert!(e.contains("target_contact_points"), "{e}");
    }

    #[test]
    fn runbook_read_mode_aliases() {
        let c = Config::load(
            None,
            env(&[MIN[0], MIN[1], ("ZDM_READ_MODE", "TARGET_ONLY")]),
        )
        .unwrap();
        assert_eq!(
            (c.primary_cluster, c.read_mode),
            (Cluster::Target, ReadMode::PrimaryOnly)
        );
        let c = Config::load(None, env(&[MIN[0], MIN[1], ("ZDM_READ_MODE", "DUAL")])).unwrap();
        assert_eq!(c.read_mode, ReadMode::DualAsyncOnSecondary);
        let e = Config::load(
            None,
            env(&[
                MIN[0],
                MIN[1],
                ("ZDM_READ_MODE", "TARGET_ONLY"),
                ("ZDM_PRIMARY_CLUSTER", "ORIGIN"),
            ]),
        );
        assert!(e.is_err());
    }

    #[test]
    fn yaml_1_1_booleans_are_accepted() {
        let mut f = tempfile_in_target();
        writeln!(
            f.1,
            "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\nmetrics_enabled: no\nreplace_cql_functions: yes\nforward_client_credentials_to_origin: on"
        )
        .unwrap();
        let c = Config::load(Some(&f.0), vec![]).unwrap();
        assert!(
            !c.metrics_enabled && c.replace_cql_functions && c.forward_client_credentials_to_origin
        );
        let c = Config::load(None, env(&[MIN[0], MIN[1], ("ZDM_METRICS_ENABLED", "On")])).unwrap();
        assert!(c.metrics_enabled);
    }
}
