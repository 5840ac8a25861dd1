//! The settings of one cluster, origin or target: the `origin_*` and `target_*` settings
//! without their prefix, applied and checked the same way for both.

use std::fmt;

use crate::ops::config::{unknown_setting, ConfigError};
use crate::ops::config_problems::Problems;
use crate::ops::config_values::{port, Raw};

/// Settings of one cluster (origin or target).
#[derive(Clone)]
pub struct ClusterConfig {
    pub contact_points: Vec<String>,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub local_datacenter: String,
    pub connection_timeout_ms: u64,
    /// `origin_|target_request_timeout_ms` (our runbook's names): the request timeout towards
    /// this cluster; `None` falls back to `proxy_request_timeout_ms`.
    pub request_timeout_ms: Option<u64>,
}

impl fmt::Debug for ClusterConfig {
    /// Passwords never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("contact_points", &self.contact_points)
            .field("port", &self.port)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("local_datacenter", &self.local_datacenter)
            .field("connection_timeout_ms", &self.connection_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            contact_points: Vec::new(),
            port: 9042,
            username: String::new(),
            password: String::new(),
            local_datacenter: String::new(),
            connection_timeout_ms: 30_000,
            request_timeout_ms: None,
        }
    }
}

impl ClusterConfig {
    /// Applies one `origin_*` or `target_*` setting; `rest` is the name without that prefix.
    pub(super) fn apply(
        &mut self,
        rest: &str,
        key: &str,
        raw: &Raw<'_>,
    ) -> Result<(), ConfigError> {
        match rest {
            "contact_points" => self.contact_points = raw.list(key)?,
            "port" => self.port = port(raw, key)?,
            "username" => self.username = raw.string(key)?,
            "password" => self.password = raw.string(key)?,
            "local_datacenter" => self.local_datacenter = raw.string(key)?,
            "connection_timeout_ms" => {
                self.connection_timeout_ms = raw.number_in(key, 1, 3_600_000)?
            }
            "request_timeout_ms" => {
                self.request_timeout_ms = Some(raw.number_in(key, 1, 3_600_000)?)
            }
            _ => return Err(unknown_setting(raw.origin, key)),
        }
        Ok(())
    }

    /// The checks of one cluster's settings once every layer is in; `name` is `origin` or
    /// `target`.
    pub(super) fn validate(&self, name: &str, problems: &mut Problems) {
        if self.contact_points.is_empty() {
            problems.push(ConfigError(format!(
                "setting `{name}_contact_points` is required (YAML key or ZDM_{}_CONTACT_POINTS)",
                name.to_ascii_uppercase()
            )));
        }
        if self.username.is_empty() != self.password.is_empty() {
            problems.push(ConfigError(format!(
                "settings `{name}_username` and `{name}_password` must be set together"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::config::test_support::{env, MIN};
    use crate::ops::config::{Cluster, Config};

    #[test]
    fn per_cluster_request_timeouts_override_the_proxy_one() {
        let c = Config::load(
            None,
            env(&[
                MIN[0],
                MIN[1],
                ("ZDM_PROXY_REQUEST_TIMEOUT_MS", "7000"),
                ("ZDM_TARGET_REQUEST_TIMEOUT_MS", "12000"),
            ]),
        )
        .unwrap();
        let live = crate::ops::reload::LiveSettings::of(&c);
        assert_eq!(
            live.request_timeout_for(Cluster::Origin),
            std::time::Duration::from_millis(7000)
        );
        assert_eq!(
            live.request_timeout_for(Cluster::Target),
            std::time::Duration::from_millis(12000)
        );
        assert_eq!(
            live.longest_request_timeout(),
            std::time::Duration::from_millis(12000)
        );
        let e = Config::load(
            None,
            env(&[MIN[0], MIN[1], ("ZDM_ORIGIN_REQUEST_TIMEOUT_MS", "0")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("origin_request_timeout_ms"), "{e}");
    }

    #[test]
    fn debug_output_hides_passwords() {
        let c = Config::load(
            None,
            env(&[
                MIN[0],
                MIN[1],
                ("ZDM_ORIGIN_USERNAME", "u"),
                ("ZDM_ORIGIN_PASSWORD", "s3cret"),
            ]),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
