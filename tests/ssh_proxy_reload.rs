//! `service: {state: reloaded, metrics_port, expect}` against the real zdm-proxy on a sandbox
//! host: the phase change ORIGIN → TARGET is a reload (same pid), confirmed by the proxy's
//! `/config`; a file that changes a restart-only setting fails the task with the proxy's reason.

use std::path::Path;
use std::process::Command;
use zdm_testkit::{
    binaries::proxy_binary,
    locks::{CLUSTERS, FAULTS},
    remote_dir::RemoteDir,
    run::zdm_run_in,
    Lock, Sandbox,
};

fn run_playbook(sb: &Sandbox, dir: &Path, text: &str) -> (i32, String) {
    std::fs::write(dir.join("site.yml"), text).unwrap();
    let run = zdm_run_in(sb, dir, &["-l", "zdm-h2", "site.yml"]);
    (run.code, run.out)
}

fn changed(out: &str) -> u32 {
    out.lines()
        .skip_while(|l| !l.contains("PLAY RECAP"))
        .find(|l| l.starts_with("zdm-h2"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("changed="))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no recap:\n{out}"))
}

/// Stops the proxy by its pidfile when the test ends, also on failure.
struct StopOnDrop {
    config: String,
    pidfile: String,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .args(["-F", &self.config, "zdm-h2"])
            .arg(format!(
                "[ -f {p} ] && kill -KILL $(cat {p}) 2>/dev/null; true",
                p = self.pidfile
            ))
            .stdin(std::process::Stdio::null())
            .output();
    }
}

#[test]
fn reloaded_switches_the_real_proxy_to_target_without_a_restart() {
    // No cluster stop (proxy tests) and no fault switch (fleet) while this runs.
    let _clusters = Lock::shared(CLUSTERS);
    let _fleet = Lock::shared(FAULTS);
    let sb = Sandbox::load();
    let binary = proxy_binary();
    let work = tempfile::tempdir().unwrap();
    let cleanup = RemoteDir::new(&sb, &["zdm-h2"], "reload");
    let root = cleanup.path.clone();
    let addr = sb.address("zdm-h2");
    let port = 19200 + rand::random::<u16>() % 700;
    let metrics_port = port + 1;
    let _stop = StopOnDrop {
        config: sb.get("SANDBOX_SSH_CONFIG").to_string(),
        pidfile: format!("{root}/run/zdm-proxy.pid"),
    };

    let settings = |primary: &str, extra: &str| {
        let mut s = format!(
            "primary_cluster: {primary}\nread_mode: PRIMARY_ONLY\nproxy_listen_address: {addr}\n\
             proxy_listen_port: {port}\nmetrics_address: {addr}\nmetrics_port: {metrics_port}\n\
             heartbeat_interval_ms: 1000\n{extra}"
        );
        for c in ["origin", "target"] {
            let up = c.to_uppercase();
            for k in ["contact_points", "port", "username", "password"] {
                let v = sb.get(&format!("ZDM_{up}_{}", k.to_uppercase()));
                s.push_str(&format!("{c}_{k}: \"{v}\"\n"));
            }
        }
        s
    };
    let book = |primary: &str, extra: &str, service: &str| {
        let content = serde_json::to_string(&settings(primary, extra)).unwrap();
        format!(
            "- hosts: proxies\n  tasks:\n\
             \x20   - file: {{path: {root}, state: directory}}\n\
             \x20   - copy: {{content: {content}, dest: {root}/zdm-proxy.yml, mode: \"0600\"}}\n\
             \x20   - service: {{install_root: {root}, use: supervisor, wait_for_port: {port}, \
             metrics_port: {metrics_port}, \
             command: \"{} --config {root}/zdm-proxy.yml\", {service}}}\n",
            binary.display()
        )
    };
    let pid = || {
        let out = Command::new("ssh")
            .args(["-F", sb.get("SANDBOX_SSH_CONFIG"), "zdm-h2"])
            .arg(format!("cat {root}/run/zdm-proxy.pid"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    // Phase 1: started on ORIGIN.
    let (rc, out) = run_playbook(
        &sb,
        work.path(),
        &book("ORIGIN", "", "state: started, start_timeout: 120"),
    );
    assert_eq!(rc, 0, "{out}");
    let pid1 = pid();
    assert!(!pid1.is_empty());

    // Phase change: the file says TARGET; reloaded confirms TARGET from /config, same process.
    let expect_target =
        "state: reloaded, expect: {primary_cluster: TARGET, read_mode: PRIMARY_ONLY}";
    let (rc, out) = run_playbook(&sb, work.path(), &book("TARGET", "", expect_target));
    assert_eq!(rc, 0, "{out}");
    assert_eq!(changed(&out), 2, "file and reload changed: {out}");
    assert_eq!(pid(), pid1, "a reload must not restart the proxy");
    assert!(
        !out.contains(sb.get("ZDM_TARGET_PASSWORD")),
        "secret in output: {out}"
    );

    // Same settings again: nothing changes.
    let (rc, out) = run_playbook(&sb, work.path(), &book("TARGET", "", expect_target));
    assert_eq!((rc, changed(&out)), (0, 0), "{out}");

    // A restart-only setting in the file: the proxy refuses, the task fails and names it.
    let (rc, out) = run_playbook(
        &sb,
        work.path(),
        &book("TARGET", "proxy_max_stream_ids: 100\n", expect_target),
    );
    assert_ne!(rc, 0, "{out}");
    assert!(
        out.contains("reload refused") && out.contains("proxy_max_stream_ids"),
        "{out}"
    );

    // A file the proxy accepts but that is not what the phase expects: the task fails.
    let (rc, out) = run_playbook(&sb, work.path(), &book("ORIGIN", "", expect_target));
    assert_ne!(rc, 0, "{out}");
    assert!(
        out.contains("primary_cluster: wanted TARGET, active ORIGIN"),
        "{out}"
    );
    assert_eq!(pid(), pid1, "still the same process");

    let (rc, out) = run_playbook(&sb, work.path(), &book("ORIGIN", "", "state: stopped"));
    assert_eq!(rc, 0, "{out}");
}
