//! The proxy's config and systemd unit templates, rendered with the real template engine.

use serde_json::{json, Value};
use zdm_run::template::Templar;
use zdm_run::vars::Vars;

fn template(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("templates")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Variables of host `me` in a three-proxy fleet; the second host is named by DNS.
fn fleet_vars(me: &str, extra: Value) -> Vars {
    let hosts = json!({
        "p1": {"ansible_host": "10.9.0.1"},
        "p2": {"ansible_host": "localhost"},
        "p3": {"ansible_host": "10.9.0.3", "zdm_proxy_address": "10.9.1.3"},
    });
    let mut v = json!({
        "inventory_hostname": me,
        "groups": {"all": ["p1", "p2", "p3"], "proxies": ["p1", "p2", "p3"]},
        "hostvars": hosts,
        "origin_contact_points": ["10.0.0.2", "10.0.0.4"],
        "origin_port": 9042,
        "origin_username": "origin_admin",
        "origin_password": "pa\"ss: #1",
        "target_contact_points": "10.0.0.3",
        "target_username": "target_admin",
        "target_password": "tgt",
    });
    let obj = v.as_object_mut().unwrap();
    for (k, val) in hosts[me].as_object().unwrap() {
        obj.insert(k.clone(), val.clone());
    }
    for (k, val) in extra.as_object().unwrap() {
        obj.insert(k.clone(), val.clone());
    }
    obj.clone()
}

fn render_config(me: &str, extra: Value) -> serde_yaml_ng::Mapping {
    let text = Templar::new()
        .render_str(
            "zdm-proxy.yml.j2",
            &template("zdm-proxy.yml.j2"),
            &fleet_vars(me, extra),
        )
        .unwrap_or_else(|e| panic!("render: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

fn get<'a>(m: &'a serde_yaml_ng::Mapping, k: &str) -> &'a serde_yaml_ng::Value {
    m.get(k).unwrap_or_else(|| panic!("no setting {k}"))
}

#[test]
fn proxy_config_has_reference_settings_with_defaults() {
    let c = render_config("p2", json!({}));
    let s = |k: &str| {
        get(&c, k)
            .as_str()
            .unwrap_or_else(|| panic!("{k} not a string"))
            .to_string()
    };
    let n = |k: &str| {
        get(&c, k)
            .as_u64()
            .unwrap_or_else(|| panic!("{k} not a number"))
    };
    assert_eq!(s("primary_cluster"), "ORIGIN");
    assert_eq!(s("read_mode"), "PRIMARY_ONLY");
    assert_eq!(s("origin_contact_points"), "10.0.0.2,10.0.0.4");
    assert_eq!(s("target_contact_points"), "10.0.0.3");
    assert_eq!(
        s("origin_password"),
        "pa\"ss: #1",
        "quoting must survive YAML"
    );
    assert_eq!((n("origin_port"), n("target_port")), (9042, 9042));
    assert_eq!(n("proxy_listen_port"), 9042);
    assert_eq!(n("metrics_port"), 14001);
    // p2's inventory address is a host name: resolved for listen, metrics and topology.
    assert_eq!(s("proxy_listen_address"), "127.0.0.1");
    assert_eq!(s("metrics_address"), "127.0.0.1");
    assert_eq!(s("proxy_topology_addresses"), "10.9.0.1,127.0.0.1,10.9.1.3");
    assert_eq!(n("proxy_topology_index"), 1);
    assert_eq!(get(&c, "metrics_enabled").as_bool(), Some(true));
    assert_eq!(s("log_level"), "INFO");
}

#[test]
fn proxy_config_follows_inventory_overrides_and_position() {
    let c = render_config(
        "p3",
        json!({"read_mode": "dual_async_on_secondary", "primary_cluster": "TARGET",
               "proxy_listen_address": "0.0.0.0", "metrics_port": 9100}),
    );
    assert_eq!(
        get(&c, "read_mode").as_str(),
        Some("DUAL_ASYNC_ON_SECONDARY")
    );
    assert_eq!(get(&c, "primary_cluster").as_str(), Some("TARGET"));
    assert_eq!(get(&c, "proxy_listen_address").as_str(), Some("0.0.0.0"));
    assert_eq!(get(&c, "metrics_address").as_str(), Some("10.9.1.3"));
    assert_eq!(get(&c, "metrics_port").as_u64(), Some(9100));
    assert_eq!(get(&c, "proxy_topology_index").as_u64(), Some(2));
}

#[test]
fn proxy_config_renders_tls_settings_only_when_the_inventory_defines_them() {
    let plain = render_config("p1", json!({}));
    let tls_keys: Vec<&str> = plain
        .keys()
        .filter_map(|k| k.as_str())
        .filter(|k| k.contains("_tls_"))
        .collect();
    assert!(tls_keys.is_empty(), "no TLS unless asked: {tls_keys:?}");

    let c = render_config(
        "p1",
        json!({"proxy_tls_cert_path": "/etc/zdm/proxy.pem", "proxy_tls_key_path": "/etc/zdm/proxy.key",
               "proxy_tls_ca_path": "/etc/zdm/ca.pem", "proxy_tls_require_client_auth": "yes",
               "origin_tls_server_ca_path": "/etc/zdm/origin-ca.pem",
               "origin_tls_verify_hostname": false,
               "target_tls_server_ca_path": "/etc/zdm/target ca.pem",
               "target_tls_client_cert_path": "/etc/zdm/client.pem",
               "target_tls_client_key_path": "/etc/zdm/client.key",
               "origin_tls_client_cert_path": ""}),
    );
    let s = |k: &str| {
        get(&c, k)
            .as_str()
            .unwrap_or_else(|| panic!("{k} not a string"))
    };
    assert_eq!(s("proxy_tls_cert_path"), "/etc/zdm/proxy.pem");
    assert_eq!(s("proxy_tls_key_path"), "/etc/zdm/proxy.key");
    assert_eq!(s("proxy_tls_ca_path"), "/etc/zdm/ca.pem");
    assert_eq!(
        get(&c, "proxy_tls_require_client_auth").as_bool(),
        Some(true)
    );
    assert_eq!(s("origin_tls_server_ca_path"), "/etc/zdm/origin-ca.pem");
    assert_eq!(get(&c, "origin_tls_verify_hostname").as_bool(), Some(false));
    assert_eq!(s("target_tls_server_ca_path"), "/etc/zdm/target ca.pem");
    assert_eq!(s("target_tls_client_cert_path"), "/etc/zdm/client.pem");
    assert_eq!(s("target_tls_client_key_path"), "/etc/zdm/client.key");
    assert!(
        c.get("origin_tls_client_cert_path").is_none(),
        "empty = unset"
    );
    assert!(c.get("target_tls_verify_hostname").is_none());
}

#[test]
fn shipped_tls_files_are_referenced_where_the_deploy_tasks_put_them() {
    let c = render_config(
        "p1",
        json!({"zdm_install_root": "/srv/zdm",
               "zdm_proxy_tls_files": {"origin_tls_server_ca_path": "/local/ca.pem",
                                       "target_tls_server_ca_path": "/local/ca.pem"},
               "target_tls_server_ca_path": "/etc/zdm/ignored.pem",
               "proxy_tls_ca_path": "/etc/zdm/clients-ca.pem"}),
    );
    assert_eq!(
        get(&c, "origin_tls_server_ca_path").as_str(),
        Some("/srv/zdm/tls/origin_tls_server_ca_path.pem")
    );
    assert_eq!(
        get(&c, "target_tls_server_ca_path").as_str(),
        Some("/srv/zdm/tls/target_tls_server_ca_path.pem"),
        "a shipped file wins over a path on the host"
    );
    assert_eq!(
        get(&c, "proxy_tls_ca_path").as_str(),
        Some("/etc/zdm/clients-ca.pem")
    );
}

#[test]
fn proxy_config_refuses_a_host_outside_the_proxy_group() {
    let mut v = fleet_vars("p1", json!({}));
    v.insert("inventory_hostname".into(), json!("stray"));
    let e = Templar::new()
        .render_str("zdm-proxy.yml.j2", &template("zdm-proxy.yml.j2"), &v)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("this_host_is_not_in_the_proxy_group"),
        "{e}"
    );
}

#[test]
fn systemd_unit_runs_the_current_binary_with_a_drain_timeout() {
    let vars = fleet_vars("p1", json!({"zdm_proxy_drain_timeout": 45}));
    let unit = Templar::new()
        .render_str(
            "zdm-proxy.service.j2",
            &template("zdm-proxy.service.j2"),
            &vars,
        )
        .unwrap();
    let lines: Vec<&str> = unit.lines().collect();
    let section = |name: &str| {
        lines
            .iter()
            .position(|l| *l == name)
            .unwrap_or_else(|| panic!("no {name}:\n{unit}"))
    };
    assert!(
        section("[Unit]") < section("[Service]") && section("[Service]") < section("[Install]")
    );
    for want in [
        "ExecStart=/opt/zdm-proxy/current/zdm-proxy --config /opt/zdm-proxy/zdm-proxy.yml",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=45",
        "Restart=on-failure",
        "StandardOutput=append:/opt/zdm-proxy/logs/zdm-proxy.log",
        "WantedBy=multi-user.target",
        "After=network-online.target",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{unit}");
    }
    // Every non-comment line of a section is Key=Value (systemd ignores what is not).
    for l in lines
        .iter()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
    {
        assert!(l.contains('='), "not a setting: {l:?}");
    }
}

/// Issue 13: every zdm-proxy setting the template does not decide itself is rendered from the
/// inventory variable of its own name, else with the proxy's default (settings without one are
/// left out); `replace_cql_functions` is on unless the inventory says otherwise.
#[test]
fn every_proxy_setting_renders_from_its_own_variable_else_the_proxy_default() {
    let defaults = render_config("p1", json!({}));
    assert_eq!(
        get(&defaults, "replace_cql_functions").as_bool(),
        Some(true)
    );
    assert_eq!(get(&defaults, "proxy_max_stream_ids").as_u64(), Some(2048));
    assert_eq!(
        get(&defaults, "async_handshake_timeout_ms").as_u64(),
        Some(4000)
    );
    assert_eq!(get(&defaults, "target_port").as_u64(), Some(9042));
    for unset in ["target_consistency_level", "origin_request_timeout_ms"] {
        assert!(defaults.get(unset).is_none(), "{unset} has no default");
    }

    let mut extra = serde_json::Map::new();
    let mut expected = Vec::new();
    for (i, (name, default)) in zdm_run::proxy_settings::DEFAULTS.iter().enumerate() {
        // Decided by the template from the host and group (tested above).
        if name.ends_with("_contact_points")
            || name.starts_with("proxy_topology_")
            || [
                "proxy_listen_address",
                "metrics_address",
                "primary_cluster",
                "read_mode",
            ]
            .contains(name)
        {
            continue;
        }
        let value = match *default {
            "true" => json!(false),
            "false" | "" if name.starts_with("forward_") || *name == "replace_cql_functions" => {
                json!(true)
            }
            _ if name.ends_with("_ms")
                || name.ends_with("_port")
                || default.parse::<u64>().is_ok() =>
            {
                json!(1000 + i)
            }
            _ if *name == "target_consistency_level" => json!("LOCAL_ONE"),
            _ if *name == "log_level" => json!("debug"),
            _ => json!(format!("v{i}")),
        };
        extra.insert(name.to_string(), value.clone());
        expected.push((*name, value));
    }
    assert!(expected.len() > 20, "{expected:?}");
    let c = render_config("p1", Value::Object(extra));
    for (name, value) in expected {
        let got = serde_json::to_value(get(&c, name)).unwrap();
        let want = if name == "log_level" {
            json!("DEBUG")
        } else {
            value
        };
        assert_eq!(got, want, "{name}");
    }
}
