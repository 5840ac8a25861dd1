//! Facts about hosts: what `gather_facts` learns on a host (the address resolution templates
//! use lives with the template filters, `crate::template::resolve_address`).

use futures::FutureExt;
use serde_json::{Map, Value};

use super::spec::{Kind, ModuleSpec};
use super::{ModFuture, ModResult, Module, ModuleCtx, ModuleError, Query};
use crate::transport::ssh::shell_quote;
use crate::transport::CommandSpec;
use crate::vars::Vars;

/// `gather_facts` (alias `setup`): what the host runs and what of the proxy is deployed.
pub static SPEC: ModuleSpec = ModuleSpec {
    name: "gather_facts",
    free_form: false,
    any_args: false,
    args: &[
        ("install_root", Kind::Scalar),
        ("service_name", Kind::Scalar),
    ],
    one_of_required: &[],
    required: &[],
};

/// `setup` is Ansible's name for the same module.
pub static SETUP_SPEC: ModuleSpec = ModuleSpec {
    name: "setup",
    ..SPEC
};

pub struct GatherFacts;

/// One round trip: `key=value` lines from a read-only script.
const PROBE: &str = r#"
os_id=; os_version=; os_name=
if [ -r /etc/os-release ]; then . /etc/os-release; os_id=$ID; os_version=$VERSION_ID; os_name=$PRETTY_NAME; fi
echo "system=$(uname -s)"
echo "kernel=$(uname -r)"
echo "architecture=$(uname -m)"
echo "hostname=$(hostname 2>/dev/null || uname -n)"
echo "distribution=$os_id"
echo "distribution_version=$os_version"
echo "distribution_name=$os_name"
if [ -d /run/systemd/system ]; then echo service_mgr=systemd; else echo service_mgr=none; fi
echo "current=$(readlink "$ROOT/current" 2>/dev/null)"
[ -f "$ROOT/current/zdm-proxy" ] && echo "binary_sha256=$(sha256sum < "$ROOT/current/zdm-proxy" | cut -d' ' -f1)"
[ -f "$ROOT/zdm-proxy.yml" ] && echo "config_sha256=$(sha256sum < "$ROOT/zdm-proxy.yml" | cut -d' ' -f1)"
pid=
if [ -d /run/systemd/system ] && systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
  pid=$(systemctl show -p MainPID --value "$SERVICE")
elif [ -f "$ROOT/run/$SERVICE.pid" ]; then
  p=$(cat "$ROOT/run/$SERVICE.pid")
  # The supervisor's own check (scripts/remote/zdm-supervisor.sh): a zombie, or a pid recycled
  # by another program, is not our proxy (a process it started carries its ZDMRUN_SUPERVISED
  # mark; one whose environment we may not read is taken on trust, as there).
  case $p in ''|*[!0-9]*) ;; *)
    pid=$p
    kill -0 "$p" 2>/dev/null || pid=
    grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null && pid=
    [ -r "/proc/$p/environ" ] && ! tr '\0' '\n' < "/proc/$p/environ" | grep -qx "ZDMRUN_SUPERVISED=$SERVICE" && pid= ;;
  esac
fi
echo "pid=$pid"
"#;

/// Turns the probe's output into facts: Ansible's names for the host, `zdm_proxy` for the
/// deployment.
pub fn facts_from_probe(out: &str) -> Vars {
    let kv: Map<String, Value> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), Value::from(v.trim())))
        .collect();
    let get = |k: &str| kv.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let opt = |k: &str| {
        let v = get(k);
        if v.is_empty() {
            Value::Null
        } else {
            Value::from(v)
        }
    };
    let current = get("current");
    let version = current
        .rsplit('/')
        .next()
        .filter(|v| !v.is_empty())
        .map(Value::from)
        .unwrap_or(Value::Null);
    let pid: Option<u64> = get("pid").parse().ok().filter(|p| *p > 0);
    let mut zdm = Map::new();
    zdm.insert("version".into(), version);
    zdm.insert("version_dir".into(), opt("current"));
    zdm.insert("binary_sha256".into(), opt("binary_sha256"));
    zdm.insert("config_sha256".into(), opt("config_sha256"));
    zdm.insert("running".into(), Value::Bool(pid.is_some()));
    zdm.insert("pid".into(), pid.map(Value::from).unwrap_or(Value::Null));
    let mut facts = Vars::new();
    for (fact, key) in [
        ("ansible_system", "system"),
        ("ansible_kernel", "kernel"),
        ("ansible_architecture", "architecture"),
        ("ansible_hostname", "hostname"),
        ("ansible_distribution", "distribution"),
        ("ansible_distribution_version", "distribution_version"),
        ("ansible_service_mgr", "service_mgr"),
    ] {
        facts.insert(fact.into(), Value::from(get(key)));
    }
    facts.insert("zdm_proxy".into(), Value::Object(zdm));
    let all = Value::Object(
        facts
            .iter()
            .map(|(k, v)| (k.trim_start_matches("ansible_").to_string(), v.clone()))
            .collect(),
    );
    facts.insert("ansible_facts".into(), all);
    facts
}

impl Module for GatherFacts {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let root = ctx
                .transport
                .path_for_command(&super::zdm::proxy_binary::install_root(ctx));
            let service = crate::modules::arg_str(ctx.args, "service_name")
                .unwrap_or_else(|| "zdm-proxy".into());
            let script = format!(
                "ROOT={}\nSERVICE={}\n{PROBE}",
                shell_quote(&root),
                shell_quote(&service)
            );
            let out = ctx
                .transport
                .run(CommandSpec {
                    shell: Some(script),
                    timeout: Some(std::time::Duration::from_secs(60)),
                    ..Default::default()
                })
                .await?;
            if out.rc != 0 {
                return Err(ModuleError::Failed(format!(
                    "gathering facts on {} failed (rc {}): {}",
                    ctx.host,
                    out.rc,
                    out.stderr.trim()
                )));
            }
            let facts = facts_from_probe(&out.stdout);
            let mut data = Map::new();
            data.insert(
                "ansible_facts".into(),
                facts.get("ansible_facts").cloned().unwrap_or(Value::Null),
            );
            Ok(Query::Done(ModResult {
                facts: Some(facts),
                data,
                ..Default::default()
            }))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_becomes_facts() {
        let f = facts_from_probe(
            "system=Linux\narchitecture=x86_64\ndistribution=debian\nservice_mgr=none\n\
             current=/opt/zdm-proxy/versions/0123456789abcdef\nbinary_sha256=aa\npid=77\n",
        );
        assert_eq!(f["ansible_architecture"], "x86_64");
        assert_eq!(f["zdm_proxy"]["version"], "0123456789abcdef");
        assert_eq!(f["zdm_proxy"]["running"], true);
        assert_eq!(f["zdm_proxy"]["config_sha256"], Value::Null);
        assert_eq!(f["ansible_facts"]["architecture"], "x86_64");
        let f = facts_from_probe("current=\npid=\n");
        assert_eq!(f["zdm_proxy"]["running"], false);
        assert_eq!(f["zdm_proxy"]["version"], Value::Null);
    }
}
