//! The built `zdm-run` binary running a playbook over SSH against the sandbox inventory.

mod ssh_support;

use ssh_support::transport;

use std::sync::Arc;

use zdm_run::transport::ssh::SshPool;
use zdm_run::transport::Transport;
use zdm_testkit::{faults::FaultGuard, remote_dir::RemoteDir, run::zdm_run_in, Run, Sandbox};

fn zdm_run(sb: &Sandbox, dir: &std::path::Path, extra: &[&str]) -> Run {
    let args: Vec<&str> = std::iter::once("site.yml")
        .chain(extra.iter().copied())
        .collect();
    zdm_run_in(sb, dir, &args)
}

/// The recap line of `host`, e.g. `ok=4 changed=2 unreachable=0 failed=0 ...`.
fn recap(run: &Run, host: &str) -> String {
    run.out
        .lines()
        .skip_while(|l| !l.contains("PLAY RECAP"))
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no recap line for {host} in:\n{}", run.out))
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn count(line: &str, key: &str) -> u32 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[tokio::test]
async fn a_playbook_configures_the_fleet_over_ssh_and_reports_a_cut_host_unreachable() {
    let sb = Sandbox::load();
    let work = tempfile::tempdir().unwrap();
    let cleanup = RemoteDir::new(&sb, &["zdm-h1", "zdm-h2", "zdm-h3"], "playbook");
    let root = cleanup.path.clone();
    std::fs::create_dir_all(work.path().join("templates")).unwrap();
    std::fs::write(
        work.path().join("templates/app.conf.j2"),
        "host: {{ inventory_hostname }}\norigin: {{ origin_contact_points }}:{{ origin_port }}\n\
         password: {{ origin_password }}\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("site.yml"),
        format!(
            r#"- name: configure proxies over ssh
  hosts: proxies
  tasks:
    - name: directory
      file: {{path: {root}, state: directory, mode: "0755"}}
    - name: config with a secret
      template: {{src: app.conf.j2, dest: {root}/app.conf, mode: "0600"}}
    - name: greeting
      copy: {{content: "hello {{{{ inventory_hostname }}}}\n", dest: {root}/hello.txt}}
    - name: read back
      command: cat {root}/hello.txt
      register: greeting
      changed_when: false
    - name: check it
      assert:
        that: greeting.stdout == "hello " + inventory_hostname
"#
        ),
    )
    .unwrap();

    let first = zdm_run(&sb, work.path(), &[]);
    assert_eq!(first.code, 0, "{}", first.out);
    for h in ["zdm-h1", "zdm-h2", "zdm-h3"] {
        let r = recap(&first, h);
        assert_eq!(
            (
                count(&r, "changed"),
                count(&r, "failed"),
                count(&r, "unreachable")
            ),
            (3, 0, 0),
            "{h}: {r}"
        );
    }
    assert!(
        !first.out.contains(sb.get("ZDM_ORIGIN_PASSWORD")),
        "the password leaked into the output"
    );
    // The files really are on the hosts, secret file 0600.
    let pool = Arc::new(SshPool::new());
    let h2 = transport(&sb, "zdm-h2", &pool);
    let conf = h2
        .read_file(&format!("{root}/app.conf"))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8(conf)
        .unwrap()
        .starts_with("host: zdm-h2\norigin: "));
    assert_eq!(
        h2.stat(&format!("{root}/app.conf"))
            .await
            .unwrap()
            .unwrap()
            .mode,
        0o600
    );

    let second = zdm_run(&sb, work.path(), &[]);
    assert_eq!(second.code, 0, "{}", second.out);
    for h in ["zdm-h1", "zdm-h2", "zdm-h3"] {
        assert_eq!(count(&recap(&second, h), "changed"), 0, "{}", second.out);
    }

    {
        let mut guard = FaultGuard::new(&sb);
        guard.apply("cut", "restore", "zdm-h3");
        let cut = zdm_run(&sb, work.path(), &["-e", "ansible_ssh_timeout=3"]);
        assert_eq!(cut.code, 4, "unreachable exits 4: {}", cut.out);
        let r3 = recap(&cut, "zdm-h3");
        assert_eq!(count(&r3, "unreachable"), 1, "{r3}");
        assert_eq!(count(&r3, "failed"), 0, "{r3}");
        for h in ["zdm-h1", "zdm-h2"] {
            let r = recap(&cut, h);
            assert_eq!(
                (count(&r, "ok"), count(&r, "unreachable")),
                (5, 0),
                "{h}: {r}"
            );
        }
        assert!(cut.out.contains("unreachable: [zdm-h3]"), "{}", cut.out);
    }

    for h in ["zdm-h1", "zdm-h2", "zdm-h3"] {
        transport(&sb, h, &pool).remove(&root).await.unwrap();
    }
    pool.close_all();
}
