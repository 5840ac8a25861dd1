//! The data engine's configuration for `migrate`/`validate`, from the flags and the inventory:
//! each connection setting comes from its flag, else from the inventory's variable of the same
//! name, and every error names the inventory and host it read.

use std::path::Path;

use anyhow::Context;

use super::args::CommonArgs;
use crate::data::config::{ClusterConfig, DataConfig, Selection};

/// The connection variables of one inventory host, and where they came from (for messages).
pub struct InventoryVars {
    vars: crate::vars::Vars,
    /// "inventory PATH, host NAME": named by every error about a variable.
    source: String,
}

impl InventoryVars {
    /// No inventory: every setting must come from flags.
    pub fn empty() -> InventoryVars {
        InventoryVars {
            vars: crate::vars::Vars::new(),
            source: "no inventory".into(),
        }
    }
}

/// Reads the connection variables through the core's inventory, loaded the way the playbook
/// mode loads it (YAML or INI, a file or a directory, `group_vars/` and `host_vars/`, Ansible's
/// precedence): the variables of the `proxies` group's first host, since that is where the proxy
/// settings (`origin_contact_points`, ...) are meant to live; without a `proxies` group, the
/// variables every host gets from `all`.
pub fn read_inventory_vars(path: &Path) -> anyhow::Result<InventoryVars> {
    let inv = crate::inventory::Inventory::load(Some(path)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let host = inv.group_hosts("proxies").into_iter().next();
    let (vars, source) = match host {
        Some(h) => (
            inv.host_vars(&h),
            format!("inventory {}, host {h}", path.display()),
        ),
        // A name no inventory declares gets exactly the `all` layers.
        None => (
            inv.host_vars("\u{0}zdm-no-host"),
            format!("inventory {}, group all", path.display()),
        ),
    };
    Ok(InventoryVars { vars, source })
}

fn scalar(vars: &InventoryVars, name: &str) -> anyhow::Result<Option<String>> {
    use serde_json::Value;
    let Some(v) = vars.vars.get(name) else {
        return Ok(None);
    };
    let src = &vars.source;
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => anyhow::bail!("{src}: variable {name}: list items must be strings"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        _ => anyhow::bail!("{src}: variable {name} must be a string"),
    };
    anyhow::ensure!(
        !s.contains("{{"),
        "{src}: variable {name} is a template; pass --{} instead",
        name.replace('_', "-")
    );
    Ok(Some(s))
}

fn cluster_config(
    name: &str,
    vars: &InventoryVars,
    points: &Option<String>,
    port: Option<u16>,
    user: &Option<String>,
    password: &Option<String>,
    rate: Option<u32>,
) -> anyhow::Result<ClusterConfig> {
    let points = match points {
        Some(p) => Some(p.clone()),
        None => scalar(vars, &format!("{name}_contact_points"))?,
    }
    .with_context(|| {
        format!("no contact points for {name}: set {name}_contact_points in the inventory or pass --{name}-contact-points")
    })?;
    let port = match port {
        Some(p) => p,
        None => match scalar(vars, &format!("{name}_port"))? {
            Some(p) => p.parse().with_context(|| {
                format!(
                    "{}: variable {name}_port: {p:?} is not a port number",
                    vars.source
                )
            })?,
            None => 9042,
        },
    };
    let username = match user {
        Some(u) => Some(u.clone()),
        None => scalar(vars, &format!("{name}_username"))?,
    };
    let password = match password {
        Some(p) => Some(p.clone()),
        None => scalar(vars, &format!("{name}_password"))?,
    };
    Ok(ClusterConfig {
        name: name.into(),
        contact_points: points
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        port,
        username,
        password,
        rate_limit: rate,
    })
}

/// Builds the engine configuration from flags and the inventory.
pub fn data_config(common: &CommonArgs) -> anyhow::Result<(DataConfig, Selection)> {
    let vars = match &common.inventory {
        Some(p) => read_inventory_vars(p)?,
        None => InventoryVars::empty(),
    };
    let c = &common.connection;
    // The deprecated ZDM_DATA_* names still work (clap reads only the ZDMRUN_* ones).
    let origin_password = c
        .origin_password
        .clone()
        .or_else(|| crate::own_env::var("DATA_ORIGIN_PASSWORD"));
    let target_password = c
        .target_password
        .clone()
        .or_else(|| crate::own_env::var("DATA_TARGET_PASSWORD"));
    let origin = cluster_config(
        "origin",
        &vars,
        &c.origin_contact_points,
        c.origin_port,
        &c.origin_username,
        &origin_password,
        common.origin_rate,
    )?;
    let target = cluster_config(
        "target",
        &vars,
        &c.target_contact_points,
        c.target_port,
        &c.target_username,
        &target_password,
        common.target_rate,
    )?;
    anyhow::ensure!(common.page_size >= 1, "--page-size must be at least 1");
    mask_passwords_in_logs(&origin, &target);
    let selection = Selection::parse(&common.keyspaces, &common.tables)?;
    Ok((
        DataConfig {
            origin,
            target,
            splits: common.splits,
            concurrency: common.concurrency.max(1),
            page_size: common.page_size,
            write_concurrency: common.write_concurrency.max(1),
            retries: common.retries,
            ..DataConfig::default()
        },
        selection,
    ))
}

/// Log lines of a migrate or validate run (`-v`, `ZDMRUN_LOG`: a driver error may quote what it
/// was given) pass through the same masking as a playbook run's, knowing both passwords.
fn mask_passwords_in_logs(origin: &ClusterConfig, target: &ClusterConfig) {
    let redactor = crate::secrets::Redactor::default();
    for password in [&origin.password, &target.password].into_iter().flatten() {
        redactor.add(password);
    }
    crate::output::redact_logs_with(&redactor);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_vars_follow_ansible_precedence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hosts.yml"),
            "all:\n  vars:\n    origin_port: 9000\n    origin_username: a\n  children:\n    proxies:\n      hosts:\n        h1: {}\n        h2: {}\n      vars:\n        origin_contact_points: [10.0.0.1, 10.0.0.2]\n        origin_username: inv_proxies\n        target_contact_points: 10.0.0.9\n        target_password: secret\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("group_vars")).unwrap();
        std::fs::write(dir.path().join("group_vars/all.yml"), "origin_port: 9100\n").unwrap();
        std::fs::write(
            dir.path().join("group_vars/proxies.yml"),
            "origin_username: gv_proxies\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("host_vars")).unwrap();
        // host_vars of the first proxies host win over every group layer.
        std::fs::write(dir.path().join("host_vars/h1.yml"), "target_port: 9300\n").unwrap();
        std::fs::write(dir.path().join("host_vars/h2.yml"), "target_port: 1111\n").unwrap();
        let vars = read_inventory_vars(dir.path()).unwrap();
        let c = cluster_config("origin", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(c.contact_points, vec!["10.0.0.1", "10.0.0.2"]);
        assert_eq!(c.port, 9100);
        assert_eq!(c.username.as_deref(), Some("gv_proxies"));
        let t = cluster_config("target", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(t.port, 9300);
        // Flags override the inventory.
        let t = cluster_config(
            "target",
            &vars,
            &None,
            Some(1),
            &Some("u".into()),
            &None,
            None,
        )
        .unwrap();
        assert_eq!(t.port, 1);
        assert_eq!(t.username.as_deref(), Some("u"));
        assert_eq!(t.password.as_deref(), Some("secret"));
        assert!(
            !format!("{t:?}").contains("secret"),
            "password must not appear in Debug"
        );
    }

    #[test]
    fn ini_inventory_and_all_group_without_proxies() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("hosts.ini");
        std::fs::write(
            &ini,
            "[proxies]\nh1 target_port=9400\n\n[proxies:vars]\norigin_contact_points=10.1.1.1\ntarget_contact_points=10.1.1.2\n",
        )
        .unwrap();
        let vars = read_inventory_vars(&ini).unwrap();
        let o = cluster_config("origin", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(o.contact_points, vec!["10.1.1.1"]);
        let t = cluster_config("target", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(t.port, 9400);

        // No proxies group: the `all` variables.
        let yml = dir.path().join("other.yml");
        std::fs::write(
            &yml,
            "all:\n  hosts:\n    x: {}\n  vars:\n    origin_contact_points: 10.2.2.2\n",
        )
        .unwrap();
        let vars = read_inventory_vars(&yml).unwrap();
        let o = cluster_config("origin", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(o.contact_points, vec!["10.2.2.2"]);
    }

    #[test]
    fn bad_port_names_the_inventory_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("inv.yml");
        std::fs::write(
            &f,
            "all:\n  children:\n    proxies:\n      hosts:\n        h9: {}\n  vars:\n    origin_contact_points: h\n    origin_port: nine\n",
        )
        .unwrap();
        let vars = read_inventory_vars(&f).unwrap();
        let err = cluster_config("origin", &vars, &None, None, &None, &None, None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("inv.yml") && msg.contains("h9") && msg.contains("origin_port"),
            "{msg}"
        );
        let err = cluster_config("target", &vars, &None, None, &None, &None, None).unwrap_err();
        assert!(format!("{err:#}").contains("target_contact_points"));
        let Err(err) = read_inventory_vars(&dir.path().join("nope.yml")) else {
            panic!("a missing inventory must be an error");
        };
        assert!(format!("{err:#}").contains("nope.yml"), "{err:#}");
    }
}
