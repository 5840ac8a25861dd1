//! zdm-proxy's settings as the inventory sees them: every setting is an inventory (or group, or
//! play, or `-e`) variable of the same name, as in the reference automation.
//!
//! WHY the lists come from the crate both programs share (`zdm_proxy_settings`) rather than
//! being written here: the config
//! template renders every setting the inventory sets, and a variable that looks like a proxy
//! setting but names none (a typo, a setting of another proxy) is refused before any host is
//! touched. A second list kept by hand would drift from the proxy's, and a new proxy setting
//! would be refused by the orchestrator that ships it.

use serde_json::Value;

/// Every setting except TLS, with its default as YAML text (`""`: none).
pub const DEFAULTS: &[(&str, &str)] = zdm_proxy_settings::DEFAULTS;

/// Every TLS setting (rendered only when the inventory sets one).
pub const TLS: &[&str] = zdm_proxy_settings::TLS;

/// Settings of the reference ZDM proxy that zdm-proxy does not implement.
pub const UNSUPPORTED: &[&str] = zdm_proxy_settings::UNSUPPORTED;

/// A variable starting with one of these is taken to mean a proxy setting, so one the proxy
/// does not know is a mistake, not some other variable. These are the words every proxy
/// setting but a few (`primary_cluster`, `read_mode`, `log_level`, `replace_cql_functions`)
/// begins with; `zdm_*` and `ansible_*` are never settings.
const SETTING_PREFIXES: &[&str] = &[
    "origin_",
    "target_",
    "proxy_",
    "metrics_",
    "heartbeat_",
    "async_",
    "forward_client_credentials_",
];

/// Whether `name` is a setting zdm-proxy knows.
pub fn is_setting(name: &str) -> bool {
    DEFAULTS.iter().any(|(n, _)| *n == name) || TLS.contains(&name)
}

/// Every setting with the default the template renders when the inventory sets nothing
/// (`null`: render nothing, the proxy's own default applies) and whether it takes true/false
/// (the template writes those with Ansible's `bool`, so `yes` works as in Ansible).
pub fn table() -> Vec<(&'static str, Value, bool)> {
    let plain = DEFAULTS.iter().map(|(name, default)| {
        let v = if default.is_empty() {
            Value::Null
        } else {
            serde_yaml_ng::from_str(default).unwrap_or_else(|_| Value::from(*default))
        };
        // `forward_client_credentials_to_target` has no default (unset is not `false`).
        let is_bool = v.is_boolean() || name.starts_with("forward_client_credentials_");
        (*name, v, is_bool)
    });
    // The proxy's `tls::is_bool_setting`: the others name files.
    let tls = TLS.iter().map(|n| {
        let is_bool = n.ends_with("_require_client_auth") || n.ends_with("_verify_hostname");
        (*n, Value::Null, is_bool)
    });
    plain.chain(tls).collect()
}

/// Why the variable `name` is refused, or `None` when it is a setting or no setting-like name.
pub fn refusal(name: &str) -> Option<String> {
    if is_setting(name) {
        return None;
    }
    if UNSUPPORTED.contains(&name) {
        return Some(format!(
            "`{name}` is a setting of the reference ZDM proxy that zdm-proxy does not support"
        ));
    }
    if !SETTING_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let hint = closest(name)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    Some(format!("`{name}` is no zdm-proxy setting{hint}"))
}

/// The known setting nearest to a misspelt name, if one is close (edit distance at most 3).
fn closest(name: &str) -> Option<&'static str> {
    DEFAULTS
        .iter()
        .map(|(n, _)| *n)
        .chain(TLS.iter().copied())
        .map(|n| (crate::edit_distance::edit_distance(name, n), n))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| n)
}

/// Every refused variable of the given hosts, as `host: variable ... reason`, in host order.
/// `hostvars` is the run's `hostvars` (each host's variables at the task's precedence).
pub fn refused_variables(hostvars: &Value, hosts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts {
        let Some(vars) = hostvars.get(h).and_then(Value::as_object) else {
            continue;
        };
        for name in vars.keys() {
            if let Some(why) = refusal(name) {
                out.push(format!("host {h}: variable {why}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_pass_and_setting_like_typos_are_refused_with_a_hint() {
        assert_eq!(refusal("replace_cql_functions"), None);
        assert_eq!(refusal("origin_tls_server_ca_path"), None);
        assert_eq!(refusal("zdm_observe_seconds"), None);
        assert_eq!(refusal("ansible_host"), None);
        let typo = refusal("proxy_max_stream_id").unwrap();
        assert!(
            typo.contains("did you mean `proxy_max_stream_ids`"),
            "{typo}"
        );
        let other = refusal("tracing_enabled").unwrap();
        assert!(other.contains("does not support"), "{other}");
    }

    #[test]
    fn table_holds_every_setting_with_typed_defaults() {
        let t = table();
        assert_eq!(t.len(), DEFAULTS.len() + TLS.len());
        let get = |n: &str| t.iter().find(|(k, _, _)| *k == n).unwrap().1.clone();
        let is_bool = |n: &str| t.iter().find(|(k, _, _)| *k == n).unwrap().2;
        assert!(is_bool("metrics_enabled") && is_bool("origin_tls_verify_hostname"));
        assert!(is_bool("forward_client_credentials_to_target") && !is_bool("origin_port"));
        assert_eq!(get("origin_port"), Value::from(9042));
        assert_eq!(get("metrics_enabled"), Value::from(true));
        assert_eq!(get("read_mode"), Value::from("PRIMARY_ONLY"));
        assert_eq!(get("target_consistency_level"), Value::Null);
        assert_eq!(get("proxy_tls_ca_path"), Value::Null);
    }
}
