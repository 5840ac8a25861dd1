//! Live reload: the settings that change between migration phases are swapped in while the
//! proxy runs, on SIGHUP or `POST /reload`, without touching client connections.
//!
//! Only a small set of settings is live ([`RELOADABLE`]): the ones read per request
//! (`primary_cluster`, `read_mode`, `proxy_request_timeout_ms`), per heartbeat
//! (`heartbeat_interval_ms`) or by the log filter (`log_level`). Everything else shapes
//! listeners, connections, caches or metric names that already exist, so changing it needs a
//! restart: a reload whose file changes such a setting is refused as a whole, naming the
//! settings, and the running settings stay. A file that does not load (bad YAML, bad value) is
//! refused the same way. Nothing is ever half-applied.
//!
//! Readers take one snapshot per request (`Shared::live()`), an `ArcSwap` load: no lock on the
//! hot path, and a request never sees half of one reload and half of the next.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::ops::config::{Cluster, Config, ReadMode};

/// Settings that a reload may change. Every other setting needs a restart.
pub const RELOADABLE: &[&str] = zdm_proxy_settings::RELOADABLE;

/// The live part of the settings; one immutable snapshot per reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSettings {
    pub primary_cluster: Cluster,
    pub read_mode: ReadMode,
    pub log_level: String,
    pub proxy_request_timeout_ms: u64,
    /// Per-cluster overrides of `proxy_request_timeout_ms` (runbook settings).
    pub origin_request_timeout_ms: Option<u64>,
    pub target_request_timeout_ms: Option<u64>,
    pub heartbeat_interval_ms: u64,
    /// Protocol code of the level forced on writes to target (read per request).
    pub target_consistency_level: Option<u16>,
}

impl LiveSettings {
    pub fn of(c: &Config) -> LiveSettings {
        LiveSettings {
            primary_cluster: c.primary_cluster,
            read_mode: c.read_mode,
            log_level: c.log_level.clone(),
            proxy_request_timeout_ms: c.proxy_request_timeout_ms,
            origin_request_timeout_ms: c.origin.request_timeout_ms,
            target_request_timeout_ms: c.target.request_timeout_ms,
            heartbeat_interval_ms: c.heartbeat_interval_ms,
            target_consistency_level: c.target_consistency_level,
        }
    }

    /// Timeout of one request to a cluster.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.proxy_request_timeout_ms)
    }

    /// Timeout of one request to cluster `c`: its `_request_timeout_ms`, else
    /// `proxy_request_timeout_ms`.
    pub fn request_timeout_for(&self, c: Cluster) -> Duration {
        let own = match c {
            Cluster::Origin => self.origin_request_timeout_ms,
            Cluster::Target => self.target_request_timeout_ms,
        };
        Duration::from_millis(own.unwrap_or(self.proxy_request_timeout_ms))
    }

    /// The longest any request may wait on a cluster: bounds for draining in-flight requests.
    pub fn longest_request_timeout(&self) -> Duration {
        self.request_timeout()
            .max(self.request_timeout_for(Cluster::Origin))
            .max(self.request_timeout_for(Cluster::Target))
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}

/// The setting names as the reference proxy spells their values.
pub fn cluster_name(c: Cluster) -> &'static str {
    match c {
        Cluster::Origin => "ORIGIN",
        Cluster::Target => "TARGET",
    }
}

pub fn read_mode_name(m: ReadMode) -> &'static str {
    match m {
        ReadMode::PrimaryOnly => "PRIMARY_ONLY",
        ReadMode::DualAsyncOnSecondary => "DUAL_ASYNC_ON_SECONDARY",
    }
}

/// Names the settings outside [`RELOADABLE`] whose values differ between `running` and `new`.
///
/// Written out field by field so a new setting cannot silently become "reloadable": the unit
/// test walks [`crate::ops::config::SETTINGS`] and fails for any setting this function misses.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    for (prefix, a, b) in [
        ("origin", &running.origin, &new.origin),
        ("target", &running.target, &new.target),
    ] {
        let n = |s: &'static str| -> &'static str {
            match (prefix, s) {
                ("origin", "contact_points") => "origin_contact_points",
                ("origin", "port") => "origin_port",
                ("origin", "username") => "origin_username",
                ("origin", "password") => "origin_password",
                ("origin", "local_datacenter") => "origin_local_datacenter",
                ("origin", "connection_timeout_ms") => "origin_connection_timeout_ms",
                ("target", "contact_points") => "target_contact_points",
                ("target", "port") => "target_port",
                ("target", "username") => "target_username",
                ("target", "password") => "target_password",
                ("target", "local_datacenter") => "target_local_datacenter",
                _ => "target_connection_timeout_ms",
            }
        };
        check(n("contact_points"), a.contact_points != b.contact_points);
        check(n("port"), a.port != b.port);
        check(n("username"), a.username != b.username);
        check(n("password"), a.password != b.password);
        check(
            n("local_datacenter"),
            a.local_datacenter != b.local_datacenter,
        );
        check(
            n("connection_timeout_ms"),
            a.connection_timeout_ms != b.connection_timeout_ms,
        );
    }
    check(
        "proxy_listen_address",
        running.proxy_listen_address != new.proxy_listen_address,
    );
    check(
        "proxy_listen_port",
        running.proxy_listen_port != new.proxy_listen_port,
    );
    check(
        "proxy_topology_addresses",
        running.proxy_topology_addresses != new.proxy_topology_addresses,
    );
    check(
        "proxy_topology_index",
        running.proxy_topology_index != new.proxy_topology_index,
    );
    check(
        "proxy_topology_num_tokens",
        running.proxy_topology_num_tokens != new.proxy_topology_num_tokens,
    );
    check(
        "proxy_max_client_connections",
        running.proxy_max_client_connections != new.proxy_max_client_connections,
    );
    check(
        "proxy_max_stream_ids",
        running.proxy_max_stream_ids != new.proxy_max_stream_ids,
    );
    check(
        "proxy_max_prepared_statement_cache_size",
        running.proxy_max_prepared_statement_cache_size
            != new.proxy_max_prepared_statement_cache_size,
    );
    check(
        "metrics_enabled",
        running.metrics_enabled != new.metrics_enabled,
    );
    check(
        "metrics_address",
        running.metrics_address != new.metrics_address,
    );
    check("metrics_port", running.metrics_port != new.metrics_port);
    check(
        "metrics_prefix",
        running.metrics_prefix != new.metrics_prefix,
    );
    // Restart-only: the prepared-statement cache holds statements rewritten (or not) under
    // the setting in force when they were prepared.
    check(
        "replace_cql_functions",
        running.replace_cql_functions != new.replace_cql_functions,
    );
    check(
        "async_handshake_timeout_ms",
        running.async_handshake_timeout_ms != new.async_handshake_timeout_ms,
    );
    // Restart-only: a client's credentials were checked by one cluster when it connected.
    check(
        "forward_client_credentials_to_origin",
        running.forward_client_credentials_to_origin != new.forward_client_credentials_to_origin,
    );
    check(
        "forward_client_credentials_to_target",
        running.forward_client_credentials_to_target != new.forward_client_credentials_to_target,
    );
    // Certificates are loaded once, into listeners and connectors that already exist.
    out.extend(running.tls.changed_settings(&new.tls));
    out
}

/// Applies a new log level to the process's log filter.
pub type LogLevelHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where reloads read their settings from, and what they did so far.
#[derive(Default)]
pub struct Reloader {
    /// The `--config` file (None: environment only; a reload then re-reads the environment,
    /// which cannot change, so it can only confirm the running settings).
    source: Mutex<Option<PathBuf>>,
    /// The process's environment at start (it cannot change later; a snapshot keeps reloads
    /// independent of whoever else reads the process environment).
    env: Mutex<Vec<(String, String)>>,
    log_hook: Mutex<Option<LogLevelHook>>,
    /// Serializes reloads (SIGHUP and HTTP may race).
    busy: tokio::sync::Mutex<()>,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Why a reload was refused; the running settings are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reload refused, running settings kept: {0}")]
pub struct ReloadRefused(pub String);

impl Reloader {
    pub fn set_source(
        &self,
        file: Option<PathBuf>,
        env: Vec<(String, String)>,
        log_hook: Option<LogLevelHook>,
    ) {
        *self.source.lock().unwrap() = file;
        *self.env.lock().unwrap() = env;
        *self.log_hook.lock().unwrap() = log_hook;
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }

    /// Re-reads the settings and swaps in the live ones. `startup` is the configuration the
    /// process started with (its restart-only settings are the ones in force).
    pub async fn reload(
        &self,
        startup: &Config,
        live: &ArcSwap<LiveSettings>,
    ) -> Result<Arc<LiveSettings>, ReloadRefused> {
        let _one_at_a_time = self.busy.lock().await;
        let outcome = self.try_reload(startup, live);
        match &outcome {
            Ok(_) => {
                self.succeeded.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap() = None;
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap() = Some(e.0.clone());
            }
        }
        outcome
    }

    fn try_reload(
        &self,
        startup: &Config,
        live: &ArcSwap<LiveSettings>,
    ) -> Result<Arc<LiveSettings>, ReloadRefused> {
        let source = self.source.lock().unwrap().clone();
        let env = self.env.lock().unwrap().clone();
        let new = Config::load(source.as_deref(), env).map_err(|e| ReloadRefused(e.to_string()))?;
        let changed = restart_only_changes(startup, &new);
        if !changed.is_empty() {
            return Err(ReloadRefused(format!(
                "these settings differ from the running ones and need a restart: {} \
                 (reloadable: {})",
                changed.join(", "),
                RELOADABLE.join(", ")
            )));
        }
        let next = LiveSettings::of(&new);
        let before = live.load_full();
        if next.log_level != before.log_level {
            if let Some(hook) = self.log_hook.lock().unwrap().as_ref() {
                hook(&next.log_level).map_err(|e| {
                    ReloadRefused(format!("cannot apply log_level {}: {e}", next.log_level))
                })?;
            }
        }
        let next = Arc::new(next);
        live.store(next.clone());
        if *before != *next {
            tracing::info!(
                primary_cluster = cluster_name(next.primary_cluster),
                read_mode = read_mode_name(next.read_mode),
                log_level = %next.log_level,
                proxy_request_timeout_ms = next.proxy_request_timeout_ms,
                heartbeat_interval_ms = next.heartbeat_interval_ms,
                "settings reloaded (was primary_cluster={} read_mode={})",
                cluster_name(before.primary_cluster),
                read_mode_name(before.read_mode),
            );
        } else {
            tracing::info!("settings reloaded: nothing changed");
        }
        Ok(next)
    }
}

/// The running settings as JSON for `/config` and `/reload`: live values, reload counters and
/// which settings a reload can change. No contact points, users or passwords.
pub fn report(live: &LiveSettings, reloader: &Reloader) -> serde_json::Value {
    serde_json::json!({
        "primary_cluster": cluster_name(live.primary_cluster),
        "read_mode": read_mode_name(live.read_mode),
        "log_level": live.log_level,
        "proxy_request_timeout_ms": live.proxy_request_timeout_ms,
        "origin_request_timeout_ms": live.origin_request_timeout_ms,
        "target_request_timeout_ms": live.target_request_timeout_ms,
        "heartbeat_interval_ms": live.heartbeat_interval_ms,
        "target_consistency_level": live.target_consistency_level.map(crate::statements::consistency::name),
        "reloadable_settings": RELOADABLE,
        "reloads_succeeded": reloader.succeeded.load(Ordering::Relaxed),
        "reloads_failed": reloader.failed.load(Ordering::Relaxed),
        "last_reload_error": reloader.last_error(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::config::SETTINGS;

    fn base() -> Vec<(String, String)> {
        vec![
            ("ZDM_ORIGIN_CONTACT_POINTS".into(), "10.0.0.1".into()),
            ("ZDM_TARGET_CONTACT_POINTS".into(), "10.0.0.2".into()),
        ]
    }

    /// A valid value different from the default (and from `base`) for every setting.
    fn other_value(setting: &str) -> Option<&'static str> {
        Some(match setting {
            "primary_cluster" => "TARGET",
            "read_mode" => "DUAL_ASYNC_ON_SECONDARY",
            "log_level" => "DEBUG",
            "proxy_request_timeout_ms"
            | "heartbeat_interval_ms"
            | "origin_request_timeout_ms"
            | "target_request_timeout_ms" => "1234",
            "async_handshake_timeout_ms" => "777",
            "forward_client_credentials_to_origin" => "true",
            "forward_client_credentials_to_target" => "false",
            "origin_contact_points" | "target_contact_points" => "10.9.9.9",
            "origin_port" | "target_port" | "proxy_listen_port" | "metrics_port" => "4321",
            "origin_username" | "target_username" | "origin_password" | "target_password" => {
                "someone"
            }
            "origin_local_datacenter" | "target_local_datacenter" => "dc9",
            "origin_connection_timeout_ms" | "target_connection_timeout_ms" => "777",
            "proxy_listen_address" | "metrics_address" => "10.1.1.1",
            "proxy_topology_addresses" => "10.1.1.1,10.1.1.2",
            "proxy_topology_index" => "1",
            "proxy_topology_num_tokens" => "16",
            "proxy_max_client_connections"
            | "proxy_max_stream_ids"
            | "proxy_max_prepared_statement_cache_size" => "99",
            "metrics_enabled" => "false",
            "metrics_prefix" => "other",
            "replace_cql_functions" => "true",
            "target_consistency_level" => "ALL",
            _ => return None,
        })
    }

    #[test]
    fn every_setting_is_either_reloadable_or_named_as_needing_a_restart() {
        let running = Config::load(None, base()).unwrap();
        for &setting in SETTINGS {
            let value = other_value(setting)
                .unwrap_or_else(|| panic!("no test value for setting {setting}: classify it"));
            let mut env = base();
            let var = format!("ZDM_{}", setting.to_ascii_uppercase());
            env.retain(|(k, _)| *k != var);
            env.push((var, value.into()));
            if setting == "proxy_topology_index" {
                env.push((
                    "ZDM_PROXY_TOPOLOGY_ADDRESSES".into(),
                    "10.1.1.1,10.1.1.2".into(),
                ));
            }
            if setting.ends_with("_username") {
                let pw = format!(
                    "ZDM_{}",
                    setting.replace("username", "password").to_uppercase()
                );
                env.push((pw, "pw".into()));
            }
            if setting.ends_with("_password") {
                let user = format!(
                    "ZDM_{}",
                    setting.replace("password", "username").to_uppercase()
                );
                env.push((user, "someone".into()));
            }
            let new = Config::load(None, env).unwrap_or_else(|e| panic!("{setting}: {e}"));
            let changed = restart_only_changes(&running, &new);
            if RELOADABLE.contains(&setting) {
                assert!(changed.is_empty(), "{setting}: {changed:?}");
                assert_ne!(
                    LiveSettings::of(&running),
                    LiveSettings::of(&new),
                    "{setting}"
                );
            } else {
                assert!(
                    changed.contains(&setting),
                    "{setting} not named: {changed:?}"
                );
            }
        }
    }

    fn write(path: &std::path::Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[tokio::test]
    async fn reload_swaps_live_settings_and_refuses_bad_or_restart_only_files() {
        let dir = std::env::temp_dir().join(format!("zdm-reload-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("proxy.yml");
        let common = "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\n";
        write(&file, &format!("{common}primary_cluster: ORIGIN\n"));
        let startup = Config::load(Some(&file), Vec::new()).unwrap();
        let live = ArcSwap::from_pointee(LiveSettings::of(&startup));
        let r = Reloader::default();
        r.set_source(Some(file.clone()), Vec::new(), None);

        write(
            &file,
            &format!("{common}primary_cluster: TARGET\nproxy_request_timeout_ms: 500\n"),
        );
        let got = r.reload(&startup, &live).await.unwrap();
        assert_eq!(got.primary_cluster, Cluster::Target);
        assert_eq!(live.load().proxy_request_timeout_ms, 500);

        write(&file, &format!("{common}primary_cluster: SIDEWAYS\n"));
        let e = r.reload(&startup, &live).await.unwrap_err();
        assert!(
            e.0.contains("primary_cluster") && e.0.contains("line 3"),
            "{e}"
        );
        assert_eq!(live.load().primary_cluster, Cluster::Target);

        write(
            &file,
            &format!("{common}primary_cluster: ORIGIN\nproxy_listen_port: 1\nmetrics_port: 2\n"),
        );
        let e = r.reload(&startup, &live).await.unwrap_err();
        assert!(
            e.0.contains("proxy_listen_port, metrics_port"),
            "restart-only settings named: {e}"
        );
        assert_eq!(
            live.load().primary_cluster,
            Cluster::Target,
            "nothing half-applied"
        );
        assert_eq!(r.succeeded.load(Ordering::Relaxed), 1);
        assert_eq!(r.failed.load(Ordering::Relaxed), 2);
        let json = report(&live.load(), &r);
        assert_eq!(json["primary_cluster"], "TARGET");
        assert!(json["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("metrics_port"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
