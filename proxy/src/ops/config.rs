//! Proxy settings, with the reference ZDM proxy's names and defaults.
//!
//! Sources, later wins: built-in defaults, the YAML file given with `--config`, then `ZDM_<NAME>`
//! environment variables (the reference proxy's convention). Every key is checked: an unknown
//! key or an invalid value stops the proxy at start with a message naming the setting (and the
//! file and line, or the environment variable). Every problem of a load is reported at once
//! (see `config_problems`), with "did you mean" for a misspelt setting and no password in it.
//! Which setting a key names is decided here; how its value is read, in `config_values`; the
//! settings of one cluster (`origin_*`, `target_*`), in `config_cluster`.

use std::fmt;
use std::path::Path;

use crate::ops::config_cluster::ClusterConfig;
use crate::ops::config_problems::{did_you_mean, Problems};
use crate::ops::config_values::{
    consistency_level, log_level, metrics_prefix, port, primary_cluster, read_mode, Raw, RawValue,
};

/// Which cluster answers reads and whose answer the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    Origin,
    Target,
}

impl Cluster {
    pub fn name(self) -> &'static str {
        match self {
            Cluster::Origin => "origin",
            Cluster::Target => "target",
        }
    }

    /// The other cluster of the two.
    pub fn other(self) -> Cluster {
        match self {
            Cluster::Origin => Cluster::Target,
            Cluster::Target => Cluster::Origin,
        }
    }
}

/// How reads are served: by the primary only, or by the primary with a shadow copy of each read
/// sent to the secondary and compared (see `shadow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    PrimaryOnly,
    DualAsyncOnSecondary,
}

/// All proxy settings.
#[derive(Clone)]
pub struct Config {
    pub primary_cluster: Cluster,
    pub read_mode: ReadMode,
    pub origin: ClusterConfig,
    pub target: ClusterConfig,
    pub proxy_listen_address: String,
    pub proxy_listen_port: u16,
    pub proxy_topology_addresses: Vec<String>,
    pub proxy_topology_index: usize,
    pub proxy_topology_num_tokens: usize,
    pub proxy_request_timeout_ms: u64,
    pub proxy_max_client_connections: usize,
    pub proxy_max_stream_ids: usize,
    pub proxy_max_prepared_statement_cache_size: usize,
    pub heartbeat_interval_ms: u64,
    pub metrics_enabled: bool,
    pub metrics_address: String,
    pub metrics_port: u16,
    pub metrics_prefix: String,
    pub log_level: String,
    /// Replace `now()` in writes by a proxy-generated timeuuid (see `cql_functions`).
    pub replace_cql_functions: bool,
    /// Consistency level (protocol code) forced on writes sent to target (see `consistency`).
    pub target_consistency_level: Option<u16>,
    /// Client-facing and per-cluster TLS (see `tls`).
    pub tls: crate::ops::tls::TlsConfig,
    /// Bound on the handshake of a shadow-read (async) connection, as in the reference proxy:
    /// a secondary that is slow to authenticate must not hold shadow reads for long.
    pub async_handshake_timeout_ms: u64,
    /// The reference proxy's `forward_client_credentials_to_origin`: the client's credentials
    /// are checked by origin (and target gets the configured target credentials).
    pub forward_client_credentials_to_origin: bool,
    /// Our runbook's `forward_client_credentials_to_target`, as written (`None`: not set). See
    /// [`Config::client_credentials_cluster`] for how it combines with the reference setting.
    pub forward_client_credentials_to_target: Option<bool>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("primary_cluster", &self.primary_cluster)
            .field("read_mode", &self.read_mode)
            .field("origin", &self.origin)
            .field("target", &self.target)
            .field(
                "proxy_listen",
                &(&self.proxy_listen_address, self.proxy_listen_port),
            )
            .field("proxy_topology_addresses", &self.proxy_topology_addresses)
            .field("proxy_topology_index", &self.proxy_topology_index)
            .field("metrics", &(&self.metrics_address, self.metrics_port))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            primary_cluster: Cluster::Origin,
            read_mode: ReadMode::PrimaryOnly,
            origin: ClusterConfig::default(),
            target: ClusterConfig::default(),
            proxy_listen_address: "localhost".into(),
            proxy_listen_port: 14002,
            proxy_topology_addresses: Vec::new(),
            proxy_topology_index: 0,
            proxy_topology_num_tokens: 8,
            proxy_request_timeout_ms: 10_000,
            proxy_max_client_connections: 1000,
            proxy_max_stream_ids: 2048,
            proxy_max_prepared_statement_cache_size: 5000,
            heartbeat_interval_ms: 30_000,
            metrics_enabled: true,
            metrics_address: "localhost".into(),
            metrics_port: 14001,
            metrics_prefix: "zdm".into(),
            log_level: "INFO".into(),
            replace_cql_functions: false,
            target_consistency_level: None,
            tls: Default::default(),
            async_handshake_timeout_ms: 4000,
            forward_client_credentials_to_origin: false,
            forward_client_credentials_to_target: None,
        }
    }
}

/// A configuration error; the message names the setting and where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Every setting except TLS with its default as YAML text ("" when it has none), shared with
/// zdm-run, which renders these defaults where the inventory sets nothing.
pub const SETTING_DEFAULTS: &[(&str, &str)] = zdm_proxy_settings::DEFAULTS;

/// Every setting name the proxy knows except TLS (`tls::SETTINGS`), as in the reference proxy.
pub const SETTINGS: &[&str] = &names::<{ SETTING_DEFAULTS.len() }>(SETTING_DEFAULTS);

/// The names of [`SETTING_DEFAULTS`], computed at compile time so there is one list.
const fn names<const N: usize>(table: &[(&'static str, &'static str)]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = table[i].0;
        i += 1;
    }
    out
}

/// Reference proxy settings this proxy does not implement:
/// refused with a message that says so rather than "unknown", so an operator knows the file is
/// not misspelt, just asking for something this proxy lacks.
const REFERENCE_UNSUPPORTED: &[&str] = zdm_proxy_settings::UNSUPPORTED;

/// "unknown setting", with the known setting it most likely meant.
pub(super) fn unknown_setting(origin: &str, key: &str) -> ConfigError {
    let known = SETTINGS.iter().chain(crate::ops::tls::SETTINGS).copied();
    let hint = did_you_mean(key, known)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    ConfigError(format!("{origin}: unknown setting `{key}`{hint}"))
}

/// Whether two listen addresses can be the same socket: equal (with `localhost` read as
/// 127.0.0.1), or either one a wildcard that binds every address.
fn addresses_overlap(a: &str, b: &str) -> bool {
    let norm = |s: &str| match s.trim() {
        "localhost" => "127.0.0.1".to_string(),
        other => other.trim_matches(|c| c == '[' || c == ']').to_string(),
    };
    let (a, b) = (norm(a), norm(b));
    let wildcard = |s: &str| s.is_empty() || s == "0.0.0.0" || s == "::";
    a == b || wildcard(&a) || wildcard(&b)
}

/// One load in progress: the settings so far, each layer applied over the ones before, and
/// every problem found on the way.
#[derive(Default)]
struct Loading {
    cfg: Config,
    /// Whether `primary_cluster` was given, in any layer.
    primary_set: bool,
    /// Where `read_mode: TARGET_ONLY` was given, if it was.
    read_mode_target_only: Option<String>,
    problems: Problems,
}

impl Loading {
    /// The YAML file's layer. Only a file that cannot be read stops the load here; whatever is
    /// wrong inside it is noted and the load goes on, so every problem is reported at once.
    fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        self.problems.note_text(&text);
        for (k, v) in self.file_settings(path, &text) {
            let Some(key) = k.as_str() else {
                self.problems.push(ConfigError(format!(
                    "{}: setting names must be strings",
                    path.display()
                )));
                continue;
            };
            let origin = format!("{} line {}", path.display(), line_of(&text, key));
            let raw = Raw {
                value: RawValue::Yaml(v),
                origin: &origin,
            };
            self.set(key, &raw);
        }
        Ok(())
    }

    /// The file's mapping of setting names to values; a document of another shape is a
    /// problem, and reads as no settings.
    fn file_settings(&mut self, path: &Path, text: &str) -> serde_yaml_ng::Mapping {
        let doc: Result<serde_yaml_ng::Value, _> = serde_yaml_ng::from_str(text);
        match doc {
            Ok(serde_yaml_ng::Value::Mapping(m)) => m,
            Ok(serde_yaml_ng::Value::Null) => Default::default(),
            Ok(_) => {
                self.problems.push(ConfigError(format!(
                    "{}: expected a mapping of setting names to values",
                    path.display()
                )));
                Default::default()
            }
            Err(e) => {
                self.problems.push(ConfigError(format!(
                    "{}: not valid YAML: {e}",
                    path.display()
                )));
                Default::default()
            }
        }
    }

    /// The `ZDM_*` environment variables' layer, in name order; other variables are not ours.
    fn read_env(&mut self, env: impl IntoIterator<Item = (String, String)>) {
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("ZDM_"))
            .collect();
        env.sort();
        for (name, value) in env {
            let key = name["ZDM_".len()..].to_ascii_lowercase();
            self.problems.note_value(&key, &value);
            let origin = format!("environment variable {name}");
            let raw = Raw {
                value: RawValue::Env(value),
                origin: &origin,
            };
            self.set(&key, &raw);
        }
    }

    /// Applies one setting over what the layers before set; its error is noted, not returned.
    fn set(&mut self, key: &str, raw: &Raw<'_>) {
        let applied = self.cfg.apply(
            key,
            raw,
            &mut self.primary_set,
            &mut self.read_mode_target_only,
        );
        self.problems.keep(applied);
    }

    /// Once every layer is in: the settings are checked together, and the TLS files read.
    fn finish(mut self) -> Result<Config, ConfigError> {
        self.resolve_target_only();
        self.cfg.validate(&mut self.problems);
        // TLS files are read only once everything else is valid.
        if self.problems.is_empty() {
            self.problems.keep(self.cfg.build_tls());
        }
        self.problems.finish()?;
        Ok(self.cfg)
    }

    /// `read_mode: TARGET_ONLY` makes target the primary, which an explicit
    /// `primary_cluster: ORIGIN` in any layer contradicts.
    fn resolve_target_only(&mut self) {
        if let Some(origin) = &self.read_mode_target_only {
            if self.primary_set && self.cfg.primary_cluster == Cluster::Origin {
                self.problems.push(ConfigError(format!(
                    "`read_mode: TARGET_ONLY` ({origin}) contradicts `primary_cluster: ORIGIN`"
                )));
            }
            self.cfg.primary_cluster = Cluster::Target;
        }
    }
}

/// The line (from 1) of the file's text where `key` is set, for error messages; 0 when no line
/// starts with `key:` (a flow mapping, say).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(&format!("{key}:")))
        .map(|i| i + 1)
        .unwrap_or(0)
}

impl Config {
    /// Loads defaults, then the file (if any), then `ZDM_*` variables from `env`. Every
    /// problem found is reported in the one error returned.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut loading = Loading::default();
        if let Some(path) = file {
            loading.read_file(path)?;
        }
        loading.read_env(env);
        loading.finish()
    }

    /// Applies one setting. TLS, refused reference settings and the per-cluster `origin_*` /
    /// `target_*` settings each have their own step; the rest are proxy-wide.
    fn apply(
        &mut self,
        key: &str,
        raw: &Raw<'_>,
        primary_set: &mut bool,
        target_only: &mut Option<String>,
    ) -> Result<(), ConfigError> {
        if crate::ops::tls::SETTINGS.contains(&key) {
            return self.apply_tls(key, raw);
        }
        if REFERENCE_UNSUPPORTED.contains(&key) {
            return Err(ConfigError(format!(
                "{}: setting `{key}` of the reference zdm-proxy is not supported by this proxy",
                raw.origin
            )));
        }
        // Before the `target_` prefix: a proxy-wide setting despite its name.
        if key == "target_consistency_level" {
            self.target_consistency_level = consistency_level(raw, key)?;
            return Ok(());
        }
        if let Some(rest) = key.strip_prefix("origin_") {
            return self.origin.apply(rest, key, raw);
        }
        if let Some(rest) = key.strip_prefix("target_") {
            return self.target.apply(rest, key, raw);
        }
        self.apply_proxy_wide(key, raw, primary_set, target_only)
    }

    fn apply_tls(&mut self, key: &str, raw: &Raw<'_>) -> Result<(), ConfigError> {
        let set = if crate::ops::tls::is_bool_setting(key) {
            self.tls.set_bool(key, raw.bool(key)?)
        } else {
            self.tls.set_path(key, raw.string(key)?)
        };
        set.map_err(|e| ConfigError(format!("{}: {e}", raw.origin)))
    }

    /// A setting that is neither TLS nor one cluster's. `primary_set` records that
    /// `primary_cluster` was given and `target_only` where `read_mode: TARGET_ONLY` was, so
    /// [`Config::load`] can refuse the two when they contradict each other.
    fn apply_proxy_wide(
        &mut self,
        key: &str,
        raw: &Raw<'_>,
        primary_set: &mut bool,
        target_only: &mut Option<String>,
    ) -> Result<(), ConfigError> {
        match key {
            "primary_cluster" => {
                *primary_set = true;
                self.primary_cluster = primary_cluster(raw, key)?;
            }
            "read_mode" => self.read_mode = read_mode(raw, key, target_only)?,
            "proxy_listen_address" => self.proxy_listen_address = raw.string(key)?,
            "proxy_listen_port" => self.proxy_listen_port = port(raw, key)?,
            "proxy_topology_addresses" => self.proxy_topology_addresses = raw.list(key)?,
            "proxy_topology_index" => self.proxy_topology_index = raw.number(key)?,
            "proxy_topology_num_tokens" => {
                self.proxy_topology_num_tokens = raw.number_in(key, 1, 256)?
            }
            "proxy_request_timeout_ms" => {
                self.proxy_request_timeout_ms = raw.number_in(key, 1, 3_600_000)?
            }
            "proxy_max_client_connections" => {
                self.proxy_max_client_connections = raw.number_in(key, 1, 1_000_000)?
            }
            "proxy_max_stream_ids" => self.proxy_max_stream_ids = raw.number_in(key, 1, 32768)?,
            "proxy_max_prepared_statement_cache_size" => {
                self.proxy_max_prepared_statement_cache_size = raw.number_in(key, 1, 10_000_000)?
            }
            "heartbeat_interval_ms" => {
                self.heartbeat_interval_ms = raw.number_in(key, 50, 3_600_000)?
            }
            "metrics_enabled" => self.metrics_enabled = raw.bool(key)?,
            "async_handshake_timeout_ms" => {
                self.async_handshake_timeout_ms = raw.number_in(key, 1, 3_600_000)?
            }
            "forward_client_credentials_to_origin" => {
                self.forward_client_credentials_to_origin = raw.bool(key)?
            }
            "forward_client_credentials_to_target" => {
                self.forward_client_credentials_to_target = Some(raw.bool(key)?)
            }
            "replace_cql_functions" => self.replace_cql_functions = raw.bool(key)?,
            "metrics_address" => self.metrics_address = raw.string(key)?,
            "metrics_port" => self.metrics_port = port(raw, key)?,
            "metrics_prefix" => self.metrics_prefix = metrics_prefix(raw, key)?,
            "log_level" => self.log_level = log_level(raw, key)?,
            _ => return Err(unknown_setting(raw.origin, key)),
        }
        Ok(())
    }

    fn validate(&self, problems: &mut Problems) {
        self.origin.validate("origin", problems);
        self.target.validate("target", problems);
        if !self.proxy_topology_addresses.is_empty()
            && self.proxy_topology_index >= self.proxy_topology_addresses.len()
        {
            problems.push(ConfigError(format!(
                "setting `proxy_topology_index` is {} but `proxy_topology_addresses` has only {} entries",
                self.proxy_topology_index,
                self.proxy_topology_addresses.len()
            )));
        }
        if self.forward_client_credentials_to_origin
            && self.forward_client_credentials_to_target == Some(true)
        {
            problems.push(ConfigError(
                "settings `forward_client_credentials_to_origin: true` and \
                 `forward_client_credentials_to_target: true` contradict each other: the \
                 client's credentials can be checked by one cluster only (the other gets its \
                 configured username/password); set one of them to false"
                    .into(),
            ));
        }
        for a in &self.proxy_topology_addresses {
            if a.parse::<std::net::IpAddr>().is_err() {
                problems.push(ConfigError(format!(
                    "setting `proxy_topology_addresses`: `{a}` is not an IP address"
                )));
            }
        }
        if self.metrics_enabled
            && self.metrics_port == self.proxy_listen_port
            && addresses_overlap(&self.metrics_address, &self.proxy_listen_address)
        {
            problems.push(ConfigError(format!(
                "settings `proxy_listen_port` and `metrics_port` are both {} on {} and {}: the \
                 CQL listener and the metrics/health endpoint cannot share a port",
                self.metrics_port, self.proxy_listen_address, self.metrics_address
            )));
        }
    }

    /// Reads the TLS files and builds what they configure; last, once everything else is valid.
    fn build_tls(&mut self) -> Result<(), ConfigError> {
        self.tls.build()
    }

    /// Timeout of one request to a cluster.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.proxy_request_timeout_ms)
    }

    /// The cluster that checks the client's own credentials (its AUTHENTICATE exchange is
    /// relayed there); the other cluster gets the proxy's configured credentials.
    ///
    /// `forward_client_credentials_to_origin: true` (the reference setting) moves the check to
    /// origin. Our runbook's `forward_client_credentials_to_target` can only confirm the
    /// default: `true` is the default itself (with `..._to_origin: true` it is refused, see
    /// `validate`), and `false` does not move the check anywhere, since the client must be
    /// checked by some cluster: the runbook's sample `false`/`false` therefore means the
    /// reference default (target checks), which [`Config::credentials_note`] says at start.
    pub fn client_credentials_cluster(&self) -> Cluster {
        if self.forward_client_credentials_to_origin {
            Cluster::Origin
        } else {
            Cluster::Target
        }
    }

    /// One line for the start-up log: which cluster checks the client's credentials, and why
    /// when the two settings could be read otherwise.
    pub fn credentials_note(&self) -> String {
        let checker = self.client_credentials_cluster();
        let other = checker.other();
        let others = if self.cluster(other).username.is_empty() {
            format!("none are configured for {}", other.name())
        } else {
            format!(
                "{} gets the configured {}_username",
                other.name(),
                other.name()
            )
        };
        let mut note = format!(
            "client credentials are checked by {}; {others}",
            checker.name()
        );
        if !self.forward_client_credentials_to_origin
            && self.forward_client_credentials_to_target == Some(false)
        {
            note.push_str(
                " (forward_client_credentials_to_origin and forward_client_credentials_to_target \
                 are both false: a client must be checked by one cluster, so the reference \
                 default applies)",
            );
        }
        note
    }

    pub fn cluster(&self, c: Cluster) -> &ClusterConfig {
        match c {
            Cluster::Origin => &self.origin,
            Cluster::Target => &self.target,
        }
    }
}

/// What the config tests (of `config`, `config_cluster`, `config_values`) share: the environment as `Config::load`
/// takes it, the least of it that loads, and a config file to write.
#[cfg(test)]
pub(super) mod test_support {
    pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) const MIN: &[(&str, &str)] = &[
        ("ZDM_ORIGIN_CONTACT_POINTS", "10.0.0.1"),
        ("ZDM_TARGET_CONTACT_POINTS", "10.0.0.2"),
    ];

    pub(crate) fn tempfile_in_target() -> (std::path::PathBuf, std::fs::File) {
        let dir = std::env::temp_dir().join(format!("zdm-proxy-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:?}.yml", std::thread::current().id()));
        let f = std::fs::File::create(&path).unwrap();
        (path, f)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{env, tempfile_in_target, MIN};
    use super::*;
    use std::io::Write;

    /// The defaults zdm-run renders (`zdm_proxy_settings::DEFAULTS`) are the ones the proxy applies: setting
    /// every one of them explicitly changes nothing, restart-only or live.
    #[test]
    fn shared_defaults_table_is_what_the_proxy_applies() {
        let plain = Config::load(None, env(MIN)).unwrap();
        let mut all = env(MIN);
        for (name, default) in SETTING_DEFAULTS {
            if !default.is_empty() && !name.ends_with("_contact_points") {
                all.push((
                    format!("ZDM_{}", name.to_ascii_uppercase()),
                    default.to_string(),
                ));
            }
        }
        assert!(all.len() > MIN.len() + 20, "{all:?}");
        let explicit = Config::load(None, all).unwrap();
        assert_eq!(
            crate::ops::reload::restart_only_changes(&plain, &explicit),
            Vec::<&str>::new()
        );
        assert_eq!(
            crate::ops::reload::LiveSettings::of(&plain),
            crate::ops::reload::LiveSettings::of(&explicit)
        );
        assert_eq!(SETTINGS.len(), SETTING_DEFAULTS.len());
    }

    /// Every default checked against the reference proxy's `proxy/pkg/config/config.go`
    /// (`default:` struct tags; the prepared cache size from its ZDM-133 branch, the version
    /// that introduced `proxy_max_prepared_statement_cache_size`).
    #[test]
    fn defaults_match_the_reference_proxy() {
        let c = Config::load(None, env(MIN)).unwrap();
        assert_eq!(c.primary_cluster, Cluster::Origin);
        assert_eq!(c.read_mode, ReadMode::PrimaryOnly);
        assert!(!c.replace_cql_functions);
        assert_eq!(c.async_handshake_timeout_ms, 4000);
        assert_eq!(c.log_level, "INFO");
        assert_eq!(c.proxy_topology_index, 0);
        assert!(c.proxy_topology_addresses.is_empty());
        assert_eq!(c.proxy_topology_num_tokens, 8);
        for cluster in [&c.origin, &c.target] {
            assert_eq!(cluster.port, 9042);
            assert_eq!(cluster.connection_timeout_ms, 30_000);
            assert_eq!(cluster.local_datacenter, "");
            assert_eq!(cluster.username, "");
            assert_eq!(cluster.password, "");
            // Ours (runbook): unset, so proxy_request_timeout_ms applies.
            assert_eq!(cluster.request_timeout_ms, None);
        }
        assert_eq!(c.proxy_listen_address, "localhost");
        assert_eq!(c.proxy_listen_port, 14002);
        assert_eq!(c.proxy_request_timeout_ms, 10_000);
        assert_eq!(c.proxy_max_client_connections, 1000);
        assert_eq!(c.proxy_max_stream_ids, 2048);
        assert_eq!(c.proxy_max_prepared_statement_cache_size, 5000);
        assert!(c.metrics_enabled);
        assert_eq!(c.metrics_address, "localhost");
        assert_eq!(c.metrics_port, 14001);
        assert_eq!(c.metrics_prefix, "zdm");
        assert_eq!(c.heartbeat_interval_ms, 30_000);
        assert!(!c.forward_client_credentials_to_origin);
        assert_eq!(c.forward_client_credentials_to_target, None);
        assert_eq!(c.client_credentials_cluster(), Cluster::Target);
        assert_eq!(c.target_consistency_level, None);
        // Every TLS setting is unset by default, as in the reference (no CA, no certificate).
        assert!(c.tls == crate::ops::tls::TlsConfig::default());
        assert!(
            c.tls.cluster(Cluster::Origin).is_none() && c.tls.cluster(Cluster::Target).is_none()
        );
    }

    #[test]
    fn client_credentials_settings_combine_as_documented() {
        let with = |o: Option<&str>, t: Option<&str>| {
            let mut e = env(MIN);
            if let Some(o) = o {
                e.push(("ZDM_FORWARD_CLIENT_CREDENTIALS_TO_ORIGIN".into(), o.into()));
            }
            if let Some(t) = t {
                e.push(("ZDM_FORWARD_CLIENT_CREDENTIALS_TO_TARGET".into(), t.into()));
            }
            Config::load(None, e)
        };
        let checker = |o, t| with(o, t).unwrap().client_credentials_cluster();
        assert_eq!(checker(None, None), Cluster::Target);
        assert_eq!(checker(Some("true"), None), Cluster::Origin);
        assert_eq!(checker(Some("true"), Some("false")), Cluster::Origin);
        assert_eq!(checker(Some("false"), Some("true")), Cluster::Target);
        assert_eq!(checker(None, Some("true")), Cluster::Target);
        // The runbook's sample: both false is the reference default, and says so at start.
        let c = with(Some("false"), Some("false")).unwrap();
        assert_eq!(c.client_credentials_cluster(), Cluster::Target);
        let note = c.credentials_note();
        assert!(
            note.contains("checked by target") && note.contains("both false"),
            "{note}"
        );
        assert!(!with(None, None)
            .unwrap()
            .credentials_note()
            .contains("both false"));
        let e = with(Some("true"), Some("true")).unwrap_err().to_string();
        assert!(
            e.contains("forward_client_credentials_to_origin")
                && e.contains("forward_client_credentials_to_target"),
            "{e}"
        );
        let e = with(Some("maybe"), None).unwrap_err().to_string();
        assert!(e.contains("forward_client_credentials_to_origin"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_unknown_keys_are_named() {
        let mut f = tempfile_in_target();
        writeln!(f.1, "origin_contact_points: [10.0.0.1]\ntarget_contact_points: 10.0.0.2\nproxy_listen_port: 9000").unwrap();
        let c = Config::load(Some(&f.0), env(&[("ZDM_PROXY_LISTEN_PORT", "9001")])).unwrap();
        assert_eq!(c.proxy_listen_port, 9001);

        writeln!(f.1, "proxy_listen_prot: 1").unwrap();
        let e = Config::load(Some(&f.0), vec![]).unwrap_err().to_string();
        assert!(
            e.contains("proxy_listen_prot") && e.contains("line 4"),
            "{e}"
        );

        let e = Config::load(None, env(&[MIN[0], MIN[1], ("ZDM_BOGUS", "1")])).unwrap_err();
        assert!(e.to_string().contains("unknown setting `bogus`"), "{e}");
        let e = Config::load(
            None,
            env(&[MIN[0], MIN[1], ("ZDM_TRACING_ENABLED", "true")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_a_suggestion_for_a_misspelt_setting() {
        let e = Config::load(
            None,
            env(&[
                MIN[0],
                ("ZDM_METRICS_PORT", "70000"),
                ("ZDM_PROXY_LISTEN_PROT", "9042"),
                ("ZDM_READ_MODE", "SOMETIMES"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("4 errors:\n"), "{e}");
        assert!(
            e.contains("`metrics_port`: port 70000 is out of range (1-65535)"),
            "{e}"
        );
        assert!(
            e.contains("unknown setting `proxy_listen_prot`; did you mean `proxy_listen_port`?"),
            "{e}"
        );
        assert!(
            e.contains("`read_mode`") && e.contains("target_contact_points"),
            "{e}"
        );
    }

    #[test]
    fn listen_and_metrics_ports_may_not_clash() {
        let clash = |extra: &[(&str, &str)]| {
            let mut e = env(MIN);
            e.extend(env(extra));
            Config::load(None, e)
        };
        let e = clash(&[("ZDM_PROXY_LISTEN_PORT", "14001")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`proxy_listen_port` and `metrics_port` are both 14001"),
            "{e}"
        );
        assert!(clash(&[
            ("ZDM_PROXY_LISTEN_PORT", "14001"),
            ("ZDM_METRICS_ENABLED", "false")
        ])
        .is_ok());
        assert!(clash(&[
            ("ZDM_PROXY_LISTEN_PORT", "14001"),
            ("ZDM_PROXY_LISTEN_ADDRESS", "10.0.0.5"),
            ("ZDM_METRICS_ADDRESS", "10.0.0.6")
        ])
        .is_ok());
        assert!(clash(&[
            ("ZDM_PROXY_LISTEN_PORT", "14001"),
            ("ZDM_PROXY_LISTEN_ADDRESS", "0.0.0.0"),
            ("ZDM_METRICS_ADDRESS", "10.0.0.6")
        ])
        .is_err());
    }

    #[test]
    fn errors_never_show_a_password_even_under_a_misspelt_key() {
        let mut f = tempfile_in_target();
        writeln!(
            f.1,
            "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\norigin_username: u\norigin_password: Pa55-hunter\ntarget_pasword: Tg7-secret\norigin_port: Pa55-hunter"
        )
        .unwrap();
        let e = Config::load(Some(&f.0), env(&[("ZDM_TARGET_PASSWD", "Env-pw-77")]))
            .unwrap_err()
            .to_string();
        for pw in ["Pa55-hunter", "Tg7-secret", "Env-pw-77"] {
            assert!(!e.contains(pw), "{pw} in: {e}");
        }
        assert!(
            e.contains("`origin_port`") && e.contains("<redacted>"),
            "{e}"
        );
        assert!(e.contains("did you mean `target_password`?"), "{e}");
    }
}
