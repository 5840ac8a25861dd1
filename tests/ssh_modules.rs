//! `zdm_proxy_binary`, `service` (built-in supervisor), `fetch` and `gather_facts` over SSH,
//! run by the built `zdm-run` against the sandbox inventory. A small Python TCP server stands
//! in for the proxy (the real one is built elsewhere): it listens, and on SIGTERM logs
//! `draining`, waits a second, logs `drained` and exits, like a proxy draining connections.

mod ssh_support;

use ssh_support::transport;

use std::path::Path;
use std::sync::Arc;

use sha2::Digest;
use zdm_run::transport::ssh::{SshPool, SshTransport};
use zdm_run::transport::{CommandSpec, Transport};
use zdm_testkit::{remote_dir::RemoteDir, run::zdm_run_in, Run, Sandbox};

const FAKE_PROXY: &str = r#"#!/usr/bin/env python3
import os, signal, socket, sys, time
VERSION = "@VERSION@"
port = int(os.environ.get("FAKE_PORT", "19042"))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
def term(*_):
    print("draining", flush=True)
    time.sleep(1)
    print("drained", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("listening", VERSION, port, flush=True)
while True:
    c, _ = s.accept()
    c.close()
"#;

fn run_playbook(sb: &Sandbox, dir: &Path, host: &str, text: &str) -> Run {
    std::fs::write(dir.join("site.yml"), text).unwrap();
    zdm_run_in(sb, dir, &["-l", host, "site.yml"])
}

fn changed(run: &Run, host: &str) -> u32 {
    let line = run
        .out
        .lines()
        .skip_while(|l| !l.contains("PLAY RECAP"))
        .find(|l| l.starts_with(host))
        .unwrap_or_else(|| panic!("no recap for {host}:\n{}", run.out));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("changed="))
        .and_then(|v| v.parse().ok())
        .expect("changed=")
}

async fn sh(t: &SshTransport, script: &str) -> String {
    let out = t
        .run(CommandSpec {
            shell: Some(script.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(out.rc, 0, "{script}: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// "alive" or "gone" for a pid; an exited process that nobody reaped (a zombie: the sandbox's
/// pid 1 does not reap orphans) counts as gone.
fn alive(pid: &str) -> String {
    format!(
        "if [ -d /proc/{pid} ] && ! grep -q '^State:[[:space:]]*Z' /proc/{pid}/status; then echo alive; else echo gone; fi"
    )
}

fn fake_binary(dir: &Path, version: &str) -> (String, String) {
    let text = FAKE_PROXY.replace("@VERSION@", version);
    let p = dir.join(format!("zdm-proxy-{version}"));
    std::fs::write(&p, &text).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    (p.display().to_string(), sha)
}

#[tokio::test]
async fn binary_is_versioned_by_checksum_uploaded_once_and_switched_atomically() {
    let sb = Sandbox::load();
    let work = tempfile::tempdir().unwrap();
    let cleanup = RemoteDir::new(&sb, &["zdm-h1"], "binary");
    let root = cleanup.path.clone();
    let (v1, sha1) = fake_binary(work.path(), "v1");
    let (v2, sha2) = fake_binary(work.path(), "v2");
    let book = |src: &str| {
        format!(
            "- hosts: proxies\n  tasks:\n    - name: ship\n      zdm_proxy_binary: {{src: \"{src}\", install_root: {root}}}\n"
        )
    };
    let pool = Arc::new(SshPool::new());
    let h1 = transport(&sb, "zdm-h1", &pool);
    let dir1 = format!("{root}/versions/{}", &sha1[..16]);
    let dir2 = format!("{root}/versions/{}", &sha2[..16]);

    let r = run_playbook(&sb, work.path(), "zdm-h1", &book(&v1));
    assert_eq!((r.code, changed(&r, "zdm-h1")), (0, 1), "{}", r.out);
    assert!(r.out.contains("upload"), "{}", r.out);
    assert_eq!(
        h1.stat(&format!("{root}/current"))
            .await
            .unwrap()
            .unwrap()
            .link_target,
        Some(dir1.clone())
    );
    assert_eq!(
        h1.checksum(&format!("{dir1}/zdm-proxy")).await.unwrap(),
        Some(sha1.clone())
    );
    let ident = format!("stat -c '%i %Y' {dir1}/zdm-proxy");
    let before = sh(&h1, &ident).await;

    // Same build again: nothing changes, nothing is uploaded (same inode, same mtime).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = run_playbook(&sb, work.path(), "zdm-h1", &book(&v1));
    assert_eq!((r.code, changed(&r, "zdm-h1")), (0, 0), "{}", r.out);
    assert_eq!(sh(&h1, &ident).await, before);

    // A new build: uploaded beside the old one, `current` switched, the old one kept.
    let r = run_playbook(&sb, work.path(), "zdm-h1", &book(&v2));
    assert_eq!((r.code, changed(&r, "zdm-h1")), (0, 1), "{}", r.out);
    assert_eq!(
        h1.stat(&format!("{root}/current"))
            .await
            .unwrap()
            .unwrap()
            .link_target,
        Some(dir2.clone())
    );
    assert_eq!(
        h1.checksum(&format!("{dir1}/zdm-proxy")).await.unwrap(),
        Some(sha1.clone())
    );

    // Rolling back to v1 is a link swap: the host already has it, nothing is uploaded.
    let r = run_playbook(&sb, work.path(), "zdm-h1", &book(&v1));
    assert_eq!((r.code, changed(&r, "zdm-h1")), (0, 1), "{}", r.out);
    assert!(r.out.contains("already on host"), "{}", r.out);
    assert_eq!(sh(&h1, &ident).await, before);
    assert_eq!(
        h1.stat(&format!("{root}/current"))
            .await
            .unwrap()
            .unwrap()
            .link_target,
        Some(dir1)
    );
    // No temporary links or files were left behind.
    assert_eq!(sh(&h1, &format!("ls -A {root}")).await, "current\nversions");

    // Only zdm-h1 was touched.
    assert_eq!(
        transport(&sb, "zdm-h2", &pool).stat(&root).await.unwrap(),
        None
    );
    h1.remove(&root).await.unwrap();
    pool.close_all();
}

#[tokio::test]
async fn supervisor_starts_restarts_with_drain_stops_and_reports_a_crash() {
    let sb = Sandbox::load();
    let work = tempfile::tempdir().unwrap();
    let cleanup = RemoteDir::new(&sb, &["zdm-h2"], "service");
    let root = cleanup.path.clone();
    let (v1, _) = fake_binary(work.path(), "v1");
    let pool = Arc::new(SshPool::new());
    let h2 = transport(&sb, "zdm-h2", &pool);
    let pidfile = format!("{root}/run/zdm-proxy.pid");
    let log = format!("{root}/logs/zdm-proxy.log");
    let port = 19000 + rand::random::<u16>() % 900;
    let service = |state: &str| {
        format!(
            "    - name: service {state}\n      service: {{state: {state}, install_root: {root}, wait_for_port: {port}, \
             drain_timeout: 10, environment: {{FAKE_PORT: \"{port}\"}}}}\n"
        )
    };
    let book = |tasks: &str| format!("- hosts: proxies\n  tasks:\n{tasks}");

    // Ship and start: running, listening, pidfile written.
    let tasks = format!(
        "    - name: ship\n      zdm_proxy_binary: {{src: \"{v1}\", install_root: {root}}}\n{}",
        service("started")
    );
    let r = run_playbook(&sb, work.path(), "zdm-h2", &book(&tasks));
    assert_eq!((r.code, changed(&r, "zdm-h2")), (0, 2), "{}", r.out);
    let pid1 = sh(&h2, &format!("cat {pidfile}")).await;
    assert!(h2
        .tcp_probe(
            &sb.address("zdm-h2"),
            port,
            std::time::Duration::from_secs(5)
        )
        .await
        .unwrap());
    let guard = KillOnDrop {
        t: &h2,
        pidfile: pidfile.clone(),
    };

    // Started again: nothing to do.
    let r = run_playbook(&sb, work.path(), "zdm-h2", &book(&service("started")));
    assert_eq!((r.code, changed(&r, "zdm-h2")), (0, 0), "{}", r.out);
    assert_eq!(sh(&h2, &format!("cat {pidfile}")).await, pid1);

    // Restart: SIGTERM, the old process drains and exits, a new one listens.
    let r = run_playbook(&sb, work.path(), "zdm-h2", &book(&service("restarted")));
    assert_eq!((r.code, changed(&r, "zdm-h2")), (0, 1), "{}", r.out);
    let pid2 = sh(&h2, &format!("cat {pidfile}")).await;
    assert_ne!(pid1, pid2);
    assert_eq!(sh(&h2, &alive(&pid1)).await, "gone");
    let logtext = sh(&h2, &format!("cat {log}")).await;
    let drained = logtext.find("drained").expect("old process drained");
    let restarted = logtext.rfind("listening v1").unwrap();
    assert!(
        drained < restarted,
        "the new process started before the old one drained:\n{logtext}"
    );

    // Facts see the running proxy and the deployed version.
    let r = run_playbook(
        &sb,
        work.path(),
        "zdm-h2",
        &book(&format!(
            "    - gather_facts: {{install_root: {root}}}\n    - debug: {{msg: \"arch={{{{ ansible_architecture }}}} running={{{{ zdm_proxy.running }}}} pid={{{{ zdm_proxy.pid }}}} os={{{{ ansible_distribution }}}}\"}}\n"
        )),
    );
    assert_eq!(r.code, 0, "{}", r.out);
    let arch = sh(&h2, "uname -m").await;
    assert!(
        r.out
            .contains(&format!("arch={arch} running=True pid={pid2} os=debian")),
        "{}",
        r.out
    );

    // Fetch the log into a per-host directory.
    let r = run_playbook(
        &sb,
        work.path(),
        "zdm-h2",
        &book(&format!("    - fetch: {{src: {log}, dest: logs}}\n")),
    );
    assert_eq!((r.code, changed(&r, "zdm-h2")), (0, 1), "{}", r.out);
    let fetched = work
        .path()
        .join("logs/zdm-h2")
        .join(log.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(&fetched).unwrap().trim(), logtext);

    // Stop: the process is gone, the pidfile removed.
    let r = run_playbook(&sb, work.path(), "zdm-h2", &book(&service("stopped")));
    assert_eq!((r.code, changed(&r, "zdm-h2")), (0, 1), "{}", r.out);
    assert_eq!(sh(&h2, &alive(&pid2)).await, "gone");
    assert_eq!(h2.stat(&pidfile).await.unwrap(), None);
    let r = run_playbook(&sb, work.path(), "zdm-h2", &book(&service("stopped")));
    assert_eq!((r.code, changed(&r, "zdm-h2")), (0, 0), "{}", r.out);

    // A pidfile left behind whose pid now belongs to another program is not a running proxy,
    // for the facts as for the service module (which must not signal that program).
    let other = sh(&h2, "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!").await;
    sh(&h2, &format!("echo {other} > {pidfile}")).await;
    let r = run_playbook(
        &sb,
        work.path(),
        "zdm-h2",
        &book(&format!(
            "    - gather_facts: {{install_root: {root}}}\n    - debug: {{msg: \"running={{{{ zdm_proxy.running }}}}\"}}\n"
        )),
    );
    assert!(r.out.contains("running=False"), "{}", r.out);
    let r = run_playbook(&sb, work.path(), "zdm-h2", &book(&service("stopped")));
    assert_eq!((r.code, changed(&r, "zdm-h2")), (0, 0), "{}", r.out);
    assert_eq!(sh(&h2, &alive(&other)).await, "alive");
    sh(&h2, &format!("kill {other}; rm -f {pidfile}")).await;

    // A program that exits at once fails the task, with the end of its log.
    let crash = format!(
        "    - service: {{state: started, install_root: {root}, command: \"sh -c 'echo crash-marker-$$ >&2; exit 1'\"}}\n"
    );
    let r = run_playbook(&sb, work.path(), "zdm-h2", &book(&crash));
    assert_eq!(r.code, 2, "{}", r.out);
    assert!(r.out.contains("exited right after starting"), "{}", r.out);
    assert!(r.out.contains("crash-marker-"), "{}", r.out);
    assert_eq!(h2.stat(&pidfile).await.unwrap(), None);

    drop(guard);
    h2.remove(&root).await.unwrap();
    pool.close_all();
}

/// Kills whatever the pidfile names if the test fails half-way (no stray servers).
struct KillOnDrop<'a> {
    t: &'a SshTransport,
    pidfile: String,
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let script = format!(
            "[ -f {p} ] && kill -KILL $(cat {p}) 2>/dev/null; true",
            p = self.pidfile
        );
        let t = self.t;
        let fut = t.run(CommandSpec {
            shell: Some(script),
            ..Default::default()
        });
        // Drop runs inside the test's runtime: finish the kill on a helper thread.
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(fut))
            })
            .join()
        });
    }
}
