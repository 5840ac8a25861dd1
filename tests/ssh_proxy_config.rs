//! `templates/zdm-proxy.yml.j2` deployed by `zdm-run` to the sandbox fleet with the generated
//! inventory as it is: each host gets its own topology index, secrets stay in 0600 files and
//! out of the output, and `--check --diff` of a `read_mode` change shows exactly that line.

mod ssh_support;

use ssh_support::transport;

use std::process::Command;
use std::sync::Arc;

use zdm_run::transport::ssh::SshPool;
use zdm_run::transport::Transport;
use zdm_testkit::{remote_dir::RemoteDir, Sandbox};

fn run(sb: &Sandbox, dir: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zdm-run"))
        .current_dir(dir)
        .args(["-i", sb.get("SANDBOX_INVENTORY"), "site.yml"])
        .args(extra)
        .output()
        .expect("run zdm-run");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn proxy_config_renders_per_host_topology_and_diffs_only_read_mode() {
    let sb = Sandbox::load();
    let work = tempfile::tempdir().unwrap();
    let cleanup = RemoteDir::new(&sb, &["zdm-h1", "zdm-h2", "zdm-h3"], "config");
    let root = cleanup.path.clone();
    let template =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/zdm-proxy.yml.j2");
    std::fs::write(
        work.path().join("site.yml"),
        format!(
            "- hosts: proxies\n  tasks:\n    - file: {{path: {root}, state: directory, mode: \"0755\"}}\n    \
             - template: {{src: {}, dest: {root}/zdm-proxy.yml, mode: \"0600\"}}\n",
            template.display()
        ),
    )
    .unwrap();
    let (code, out) = run(&sb, work.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let passwords = [sb.get("ZDM_ORIGIN_PASSWORD"), sb.get("ZDM_TARGET_PASSWORD")];
    let pool = Arc::new(SshPool::new());
    let addresses: Vec<String> = sb
        .get("SANDBOX_HOSTS")
        .split_whitespace()
        .map(String::from)
        .collect();
    for (i, h) in ["zdm-h1", "zdm-h2", "zdm-h3"].iter().enumerate() {
        let t = transport(&sb, h, &pool);
        let path = format!("{root}/zdm-proxy.yml");
        assert_eq!(t.stat(&path).await.unwrap().unwrap().mode, 0o600, "{h}");
        let text = String::from_utf8(t.read_file(&path).await.unwrap().unwrap()).unwrap();
        let cfg: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(&text).unwrap();
        let get = |k: &str| cfg.get(k).unwrap_or_else(|| panic!("{h}: no {k}"));
        assert_eq!(get("proxy_topology_index").as_u64(), Some(i as u64), "{h}");
        assert_eq!(
            get("proxy_topology_addresses").as_str(),
            Some(addresses.join(",").as_str())
        );
        assert_eq!(
            get("proxy_listen_address").as_str(),
            Some(addresses[i].as_str())
        );
        assert_eq!(get("proxy_listen_port").as_u64(), Some(9042));
        assert_eq!(get("metrics_port").as_u64(), Some(14001));
        assert_eq!(get("origin_password").as_str(), Some(passwords[0]));
        assert_eq!(get("target_password").as_str(), Some(passwords[1]));
        assert_eq!(
            get("origin_contact_points").as_str(),
            Some(sb.get("ZDM_ORIGIN_CONTACT_POINTS"))
        );
    }

    // Preview a read_mode change: only that line differs, nothing is written, no secrets.
    let before: Vec<Vec<u8>> =
        futures::future::join_all(["zdm-h1", "zdm-h2", "zdm-h3"].iter().map(|h| {
            let t = transport(&sb, h, &pool);
            let p = format!("{root}/zdm-proxy.yml");
            async move { t.read_file(&p).await.unwrap().unwrap() }
        }))
        .await;
    let (code, out) = run(
        &sb,
        work.path(),
        &[
            "--check",
            "--diff",
            "-e",
            "read_mode=DUAL_ASYNC_ON_SECONDARY",
        ],
    );
    assert_eq!(code, 0, "{out}");
    for p in &passwords {
        assert!(!out.contains(p), "a password leaked:\n{out}");
    }
    let changed: Vec<&str> = out
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .collect();
    assert_eq!(
        changed,
        [
            "-read_mode: PRIMARY_ONLY",
            "+read_mode: DUAL_ASYNC_ON_SECONDARY"
        ]
        .repeat(3),
        "{out}"
    );
    for (i, h) in ["zdm-h1", "zdm-h2", "zdm-h3"].iter().enumerate() {
        let t = transport(&sb, h, &pool);
        assert_eq!(
            t.read_file(&format!("{root}/zdm-proxy.yml"))
                .await
                .unwrap()
                .unwrap(),
            before[i],
            "{h} changed in check mode"
        );
        t.remove(&root).await.unwrap();
    }
    pool.close_all();
}
