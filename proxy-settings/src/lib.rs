//! The names of zdm-proxy's settings (and the defaults of all but TLS), in the one place both
//! programs read them from: the proxy, which accepts exactly these, and zdm-run, which renders
//! every one the inventory sets and decides between a live reload and a restart.
//!
//! WHY a crate of its own: zdm-run does not link the proxy (it ships it as a binary), yet the
//! two must never disagree. A second list kept by hand in zdm-run would drift, and a new proxy
//! setting would then be refused by the orchestrator that ships it.
//!
//! Both programs also suggest the setting a misspelt name meant, with the one [`edit_distance`].

pub mod edit_distance;

/// Every setting except TLS ([`TLS`]), with its default as YAML text (`""` when it has none:
/// unset, or required). The proxy's unit test (`config`) proves each default is what
/// `Config::default()` holds; zdm-run renders these where the inventory sets nothing.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("primary_cluster", "ORIGIN"),
    ("read_mode", "PRIMARY_ONLY"),
    ("origin_contact_points", ""),
    ("origin_port", "9042"),
    ("origin_username", ""),
    ("origin_password", ""),
    ("origin_local_datacenter", ""),
    ("origin_connection_timeout_ms", "30000"),
    ("origin_request_timeout_ms", ""),
    ("target_contact_points", ""),
    ("target_port", "9042"),
    ("target_username", ""),
    ("target_password", ""),
    ("target_local_datacenter", ""),
    ("target_connection_timeout_ms", "30000"),
    ("target_request_timeout_ms", ""),
    ("proxy_listen_address", "localhost"),
    ("proxy_listen_port", "14002"),
    ("proxy_topology_addresses", ""),
    ("proxy_topology_index", "0"),
    ("proxy_topology_num_tokens", "8"),
    ("proxy_request_timeout_ms", "10000"),
    ("proxy_max_client_connections", "1000"),
    ("proxy_max_stream_ids", "2048"),
    ("proxy_max_prepared_statement_cache_size", "5000"),
    ("heartbeat_interval_ms", "30000"),
    ("metrics_enabled", "true"),
    ("metrics_address", "localhost"),
    ("metrics_port", "14001"),
    ("metrics_prefix", "zdm"),
    ("log_level", "INFO"),
    ("replace_cql_functions", "false"),
    ("target_consistency_level", ""),
    ("async_handshake_timeout_ms", "4000"),
    ("forward_client_credentials_to_origin", "false"),
    ("forward_client_credentials_to_target", ""),
];

/// Every TLS setting: the reference proxy's names, plus our `*_tls_verify_hostname`. None has a
/// value to render when unset (no TLS).
pub const TLS: &[&str] = &[
    "proxy_tls_ca_path",
    "proxy_tls_cert_path",
    "proxy_tls_key_path",
    "proxy_tls_require_client_auth",
    "origin_tls_server_ca_path",
    "origin_tls_client_cert_path",
    "origin_tls_client_key_path",
    "origin_tls_verify_hostname",
    "target_tls_server_ca_path",
    "target_tls_client_cert_path",
    "target_tls_client_key_path",
    "target_tls_verify_hostname",
];

/// Settings of the reference ZDM proxy that zdm-proxy does not implement: both programs refuse
/// them saying so rather than "unknown", so an operator knows the name is not misspelt.
pub const UNSUPPORTED: &[&str] = &[
    "control_conn_max_protocol_version",
    "blocked_protocol_versions",
    "tracing_enabled",
    "tracing_rate_limit",
    "tracing_request_id_key",
    "origin_secure_connect_bundle_path",
    "target_secure_connect_bundle_path",
    "origin_enable_host_assignment",
    "target_enable_host_assignment",
    "heartbeat_retry_interval_min_ms",
    "heartbeat_retry_interval_max_ms",
    "heartbeat_retry_backoff_factor",
    "heartbeat_failure_threshold",
    "system_queries_mode",
    "metrics_origin_latency_buckets_ms",
    "metrics_target_latency_buckets_ms",
    "metrics_async_read_latency_buckets_ms",
];

/// The settings zdm-proxy applies on a live reload (`POST /reload`, SIGHUP); a change of any
/// other setting needs a restart.
pub const RELOADABLE: &[&str] = &[
    "primary_cluster",
    "read_mode",
    "log_level",
    "proxy_request_timeout_ms",
    "origin_request_timeout_ms",
    "target_request_timeout_ms",
    "heartbeat_interval_ms",
    "target_consistency_level",
];
