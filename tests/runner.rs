//! End-to-end tests of the zdm-run binary on a local fleet of three hosts.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use common::{statuses, Fleet, DB_PASSWORD, HOSTS};

fn stats(doc: &serde_json::Value, host: &str, key: &str) -> u64 {
    doc["stats"][host][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats.{host}.{key} in {doc}"))
}

#[test]
fn check_mode_changes_nothing_and_its_plan_matches_the_real_run() {
    let fleet = Fleet::new();
    let before = fleet.snapshot();
    let check = fleet.run(&[
        "playbooks/site.yml",
        "--check",
        "--diff",
        "--output",
        "json",
    ]);
    check.assert_code(0);
    assert_eq!(fleet.snapshot(), before, "check mode changed files");
    let plan = check.json();
    assert_eq!(plan["check_mode"], true);

    let real = fleet.run(&["playbooks/site.yml", "--output", "json"]);
    real.assert_code(0);
    let done = real.json();

    // Every task/host the plan announced is what the real run did.
    let planned = statuses(&plan);
    let actual = statuses(&done);
    assert_eq!(
        planned.len(),
        actual.len(),
        "plan {planned:?}\nreal {actual:?}"
    );
    for (p, a) in planned.iter().zip(&actual) {
        assert_eq!((&p.0, &p.1), (&a.0, &a.1), "same task order");
        let expected = match p.2.as_str() {
            "would_change" | "would_run" => "changed",
            other => other,
        };
        assert_eq!(
            a.2, expected,
            "task '{}' on {}: plan said {}",
            p.0, p.1, p.2
        );
    }
    // The plan carried a diff of the config that would be created, secret masked.
    let diff = plan.to_string();
    assert!(
        diff.contains("+host: h1"),
        "plan lacks the config diff: {diff}"
    );
    assert!(diff.contains("password: ********"), "{diff}");
    for h in HOSTS {
        assert!(stats(&done, h, "changed") >= 5, "{h} changed: {done}");
        assert_eq!(stats(&plan, h, "changed"), stats(&done, h, "changed"));
    }

    // The files are real, per host, and the config holding a secret is 0600.
    for h in HOSTS {
        let conf = std::fs::read_to_string(fleet.host_file(h, "/opt/app/app.conf")).unwrap();
        assert!(conf.contains(&format!("host: {h}\n")), "{conf}");
        assert!(conf.contains("peers: h1,h2,h3\n"), "{conf}");
        assert!(conf.contains("high_port: true\n"), "{conf}");
        let mode = std::fs::metadata(fleet.host_file(h, "/opt/app/app.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{h}: config with a secret must be 0600");
        assert_eq!(
            std::fs::read_to_string(fleet.host_file(h, "/opt/app/hello.txt")).unwrap(),
            format!("hello {h}\n")
        );
        assert_eq!(
            std::fs::read_link(fleet.host_file(h, "/opt/app/current")).unwrap(),
            fleet.host_file(h, "/opt/app/app.conf")
        );
        let restarts =
            std::fs::read_to_string(fleet.host_file(h, "/opt/app/restarts.log")).unwrap();
        assert_eq!(restarts, "restarted\n", "handler ran once on {h}");
    }

    // A second real run finds everything in place.
    let again = fleet.run(&["playbooks/site.yml", "--output", "json"]);
    again.assert_code(0);
    let doc = again.json();
    for h in HOSTS {
        assert_eq!(
            stats(&doc, h, "changed"),
            0,
            "second run changed something on {h}: {doc}"
        );
        assert_eq!(stats(&doc, h, "failed"), 0);
        let restarts =
            std::fs::read_to_string(fleet.host_file(h, "/opt/app/restarts.log")).unwrap();
        assert_eq!(
            restarts, "restarted\n",
            "handler must not run when nothing changed"
        );
    }
    // And a check run now predicts no change either.
    let check2 = fleet.run(&["playbooks/site.yml", "--check", "--output", "json"]);
    check2.assert_code(0);
    for h in HOSTS {
        assert_eq!(stats(&check2.json(), h, "changed"), 0);
    }
}

#[test]
fn failure_on_host2_of_serial_1_leaves_host3_untouched() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "fail.yml",
        r#"
- hosts: fleet
  serial: 1
  tasks:
    - copy: {content: "first\n", dest: /first.txt}
    - fail: {msg: "h2 is broken"}
      when: inventory_hostname == 'h2'
    - copy: {content: "second\n", dest: /second.txt}
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    run.assert_code(2);
    let doc = run.json();
    assert!(fleet.host_file("h1", "/first.txt").exists());
    assert!(fleet.host_file("h1", "/second.txt").exists());
    assert!(fleet.host_file("h2", "/first.txt").exists());
    assert!(!fleet.host_file("h2", "/second.txt").exists());
    assert!(
        !fleet.host_file("h3", "/first.txt").exists(),
        "h3 was touched"
    );
    assert!(
        !fleet.host_file("h3", "/second.txt").exists(),
        "h3 was touched"
    );
    assert_eq!(stats(&doc, "h2", "failed"), 1);
    assert_eq!(stats(&doc, "h3", "ok"), 0);
    assert_eq!(stats(&doc, "h3", "changed"), 0);
    let failed_msg = doc.to_string();
    assert!(failed_msg.contains("h2 is broken"));
}

#[test]
fn any_errors_fatal_stops_every_host_after_the_failing_task() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "fatal.yml",
        r#"
- hosts: fleet
  any_errors_fatal: true
  tasks:
    - command: "false"
      when: inventory_hostname == 'h3'
    - copy: {content: "x\n", dest: /after.txt}
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(2);
    for h in HOSTS {
        assert!(
            !fleet.host_file(h, "/after.txt").exists(),
            "{h} went on after a fatal error"
        );
    }
    assert!(run.stdout.contains("PLAY RECAP"), "{}", run.stdout);
    assert!(run.stdout.contains("failed: [h3]"), "{}", run.stdout);
}

#[test]
fn max_fail_percentage_allows_some_failures() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "pct.yml",
        r#"
- hosts: fleet
  max_fail_percentage: 50
  tasks:
    - fail: {}
      when: inventory_hostname == 'h1'
    - copy: {content: "x\n", dest: /after.txt}
"#,
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(2);
    assert!(!fleet.host_file("h1", "/after.txt").exists());
    assert!(
        fleet.host_file("h2", "/after.txt").exists(),
        "1 of 3 failed (33%) is within 50%"
    );
    assert!(fleet.host_file("h3", "/after.txt").exists());
}

#[test]
fn handlers_run_once_at_section_end_in_definition_order() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "handlers.yml",
        r#"
- hosts: h1
  tasks:
    - copy: {content: "a\n", dest: /a.txt}
      notify: [second, first]
    - copy: {content: "b\n", dest: /b.txt}
      notify: second
    - copy: {content: "c\n", dest: /c.txt}
      notify: first
      when: false
    - shell: echo task >> "$ZDM_LOCAL_ROOT/log"
  handlers:
    - name: first
      shell: echo first >> "$ZDM_LOCAL_ROOT/log"
    - name: second
      shell: echo second >> "$ZDM_LOCAL_ROOT/log"
    - name: listener
      listen: second
      shell: echo listener >> "$ZDM_LOCAL_ROOT/log"
"#,
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    let log = std::fs::read_to_string(fleet.host_file("h1", "/log")).unwrap();
    assert_eq!(log, "task\nfirst\nsecond\nlistener\n");
}

#[test]
fn secrets_never_appear_in_any_output() {
    let fleet = Fleet::new();
    let token = "tok-9f8e7d6c5b4a";
    let pb = fleet.write_playbook(
        "secrets.yml",
        r#"
- hosts: fleet
  vars:
    api_token: "{{ token_from_cli }}"
  tasks:
    - name: config with password
      copy:
        content: "user=app\npassword={{ db_password }}\n"
        dest: /secret.conf
    - name: echo the token (no_log)
      command: echo {{ api_token }} {{ db_password }}
      register: echoed
      no_log: true
    - name: show what was registered
      debug: {var: echoed.stdout}
    - name: fail with a secret in the message
      fail: {msg: "bad password {{ db_password }}"}
      ignore_errors: true
"#,
    );
    let pbs = pb.to_str().unwrap();
    let extra = format!("token_from_cli={token}");
    let runs = [
        fleet.run(&[pbs, "-e", &extra, "--check", "--diff", "-vv"]),
        fleet.run(&[pbs, "-e", &extra, "--check", "--diff", "--output", "json"]),
        fleet.run(&[pbs, "-e", &extra, "--diff", "-vv"]),
        fleet.run(&[pbs, "-e", &extra, "--diff", "--output", "json"]),
    ];
    for (i, r) in runs.iter().enumerate() {
        r.assert_code(0);
        let all = r.all();
        assert!(
            !all.contains(DB_PASSWORD),
            "run {i} leaked the password:\n{all}"
        );
        assert!(!all.contains(token), "run {i} leaked the token:\n{all}");
        assert!(all.contains("********"), "run {i} shows no mask:\n{all}");
    }
    assert!(runs[2].stdout.contains("no_log"), "{}", runs[2].stdout);
    // The file itself holds the real secret and is private.
    let f = fleet.host_file("h1", "/secret.conf");
    assert!(std::fs::read_to_string(&f).unwrap().contains(DB_PASSWORD));
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn playbook_errors_exit_4_with_file_line_and_column_before_anything_runs() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "bad.yml",
        "- hosts: fleet\n  tasks:\n    - copy: {content: x, dest: /x}\n    - name: typo\n      coppy: {dest: /y}\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(4);
    assert!(
        run.stderr.contains(&format!("{}:5:7:", pb.display())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("unknown module or task keyword 'coppy'"),
        "{}",
        run.stderr
    );
    assert!(
        !fleet.host_file("h1", "/x").exists(),
        "a task ran despite the parse error"
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    run.assert_code(4);
    let doc = run.json();
    assert_eq!(doc["exit_code"], 4);
    assert!(doc["error"].as_str().unwrap().contains(":5:7: "), "{doc}");
}

#[test]
fn undefined_variable_in_a_template_fails_the_host_naming_template_line_and_variable() {
    let fleet = Fleet::new();
    std::fs::write(
        fleet.path("playbooks/templates/broken.j2"),
        "ok\nport={{ no_such_port }}\n",
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "undef.yml",
        "- hosts: h1\n  tasks:\n    - template: {src: broken.j2, dest: /b.conf}\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(2);
    assert!(
        run.stdout
            .contains("template 'broken.j2' line 2: undefined variable 'no_such_port'"),
        "{}",
        run.stdout
    );
    assert!(!fleet.host_file("h1", "/b.conf").exists());
}

#[test]
fn exit_codes_for_bad_options_unreachable_hosts_and_help() {
    let fleet = Fleet::new();
    // The option parser's usage errors exit 2, as ansible-playbook's argparse does.
    fleet
        .run(&["playbooks/site.yml", "--forks", "0"])
        .assert_code(2);
    fleet
        .run(&["playbooks/site.yml", "--no-such-flag"])
        .assert_code(2);
    fleet
        .run(&["playbooks/site.yml", "-e", "novalue"])
        .assert_code(5);
    fleet.run(&["--help"]).assert_code(0);
    let before = fleet.snapshot();
    let dry = fleet.run(&["playbooks/site.yml", "--dry-run"]);
    dry.assert_code(0);
    assert!(dry.stdout.contains("would change: [h1]"), "{}", dry.stdout);
    assert_eq!(fleet.snapshot(), before, "--dry-run changed files");
    let inv = fleet.path("ssh-inv.ini");
    std::fs::write(
        &inv,
        "[remote]\nfar ansible_host=192.0.2.1 ansible_ssh_timeout=2\n",
    )
    .unwrap();
    // `debug` never contacts the host (as in Ansible); a command must.
    let pb = fleet.write_playbook(
        "remote.yml",
        "- hosts: remote\n  tasks:\n    - command: \"true\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zdm-run"))
        .args(["-i", inv.to_str().unwrap(), pb.to_str().unwrap()])
        .output()
        .unwrap();
    // ansible-core 2.19 exits 4 for an unreachable host (its manual says 3).
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn list_hosts_tasks_limit_and_tags() {
    let fleet = Fleet::new();
    let run = fleet.run(&["playbooks/site.yml", "--list-hosts", "-l", "fleet:!h2"]);
    run.assert_code(0);
    assert!(run.stdout.contains("hosts (2):"), "{}", run.stdout);
    assert!(run.stdout.contains("h1") && run.stdout.contains("h3") && !run.stdout.contains("h2\n"));
    let run = fleet.run(&["playbooks/site.yml", "--list-tasks"]);
    run.assert_code(0);
    assert!(run.stdout.contains("render config"), "{}", run.stdout);
    // --output json: one JSON document with the same facts.
    let run = fleet.run(&[
        "playbooks/site.yml",
        "--list-hosts",
        "--list-tasks",
        "-l",
        "fleet:!h2",
        "--output",
        "json",
    ]);
    run.assert_code(0);
    let doc = run.json();
    let play = &doc["playbooks"][0]["plays"][0];
    assert_eq!(play["hosts"], serde_json::json!(["h1", "h3"]), "{doc}");
    let tasks: Vec<&str> = play["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(tasks.contains(&"render config"), "{doc}");

    let pb = fleet.write_playbook(
        "tags.yml",
        r#"
- hosts: fleet
  tasks:
    - copy: {content: "a\n", dest: /a.txt}
      tags: [config]
    - copy: {content: "b\n", dest: /b.txt}
      tags: [deploy]
    - copy: {content: "c\n", dest: /c.txt}
      tags: [always]
"#,
    );
    fleet
        .run(&[pb.to_str().unwrap(), "-t", "config", "-l", "h1"])
        .assert_code(0);
    let exists = |h: &str, f: &str| fleet.host_file(h, f).exists();
    assert!(exists("h1", "/a.txt") && !exists("h1", "/b.txt") && exists("h1", "/c.txt"));
    assert!(!exists("h2", "/a.txt"), "--limit h1 ran on h2");
    fleet
        .run(&[pb.to_str().unwrap(), "--skip-tags", "config", "-l", "h2"])
        .assert_code(0);
    assert!(!exists("h2", "/a.txt") && exists("h2", "/b.txt"));
}

#[test]
fn extra_vars_win_and_loops_register_results() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "vars.yml",
        r#"
- hosts: h1
  vars:
    who: play
  tasks:
    - copy: {content: "{{ who }} {{ item }}\n", dest: "/{{ item }}.txt"}
      loop: [one, two]
      register: written
    - assert:
        that:
          - written.results | length == 2
          - written.changed
          - hostvars['h2'].zdm_local_root is defined
    - set_fact: {who: fact}
    - copy: {content: "{{ who }}\n", dest: /who.txt}
"#,
    );
    fleet
        .run(&[pb.to_str().unwrap(), "-e", "{\"who\": \"cli\"}"])
        .assert_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/one.txt")).unwrap(),
        "cli one\n"
    );
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/two.txt")).unwrap(),
        "cli two\n"
    );
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/who.txt")).unwrap(),
        "cli\n"
    );
    // k=v words honour shell-style quotes, as with ansible-playbook.
    fleet
        .run(&[pb.to_str().unwrap(), "-e", "who='two words' other=x"])
        .assert_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/one.txt")).unwrap(),
        "two words one\n"
    );
    let _: BTreeMap<(), ()> = BTreeMap::new();
}

#[test]
fn failed_validation_keeps_the_old_file() {
    let fleet = Fleet::new();
    std::fs::write(fleet.host_file("h1", "/app.conf"), "old\n").unwrap();
    let pb = fleet.write_playbook(
        "validate.yml",
        r#"
- hosts: h1
  tasks:
    - copy:
        content: "new but invalid\n"
        dest: /app.conf
        validate: grep -q valid-marker %s
        backup: true
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(2);
    assert!(
        run.stdout.contains("validation of /app.conf failed"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/app.conf")).unwrap(),
        "old\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(fleet.root("h1"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("zdm"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn broken_template_or_condition_in_a_later_play_stops_the_run_before_any_task() {
    let fleet = Fleet::new();
    std::fs::write(
        fleet.path("playbooks/templates/syntax.j2"),
        "a\n{% if x %}\nno endif\n",
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "later.yml",
        "- hosts: fleet\n  tasks:\n    - copy: {content: x, dest: /first}\n\
         - name: second play\n  hosts: fleet\n  tasks:\n    - name: render\n      template: {src: syntax.j2, dest: /x}\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(4);
    assert!(run.stderr.contains("task 'render'"), "{}", run.stderr);
    assert!(
        run.stderr.contains("template 'syntax.j2'"),
        "{}",
        run.stderr
    );
    assert!(!fleet.host_file("h1", "/first").exists());

    let pb = fleet.write_playbook(
        "cond.yml",
        "- hosts: fleet\n  tasks:\n    - copy: {content: x, dest: /first}\n    - name: odd\n      debug: {msg: x}\n      when: x ==== 1\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(4);
    assert!(
        run.stderr.contains("task 'odd'") && run.stderr.contains("when 'x ==== 1'"),
        "{}",
        run.stderr
    );
    assert!(!fleet.host_file("h1", "/first").exists());

    let pb = fleet.write_playbook(
        "missing.yml",
        "- hosts: fleet\n  tasks:\n    - template: {src: nope.j2, dest: /x}\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(4);
    assert!(
        run.stderr.contains("src 'nope.j2' not found"),
        "{}",
        run.stderr
    );
}

#[test]
fn variables_built_from_templates_resolve_and_registered_output_is_never_templated() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "lazy.yml",
        r#"
- hosts: h1
  vars:
    port: 9042
    url: "http://{{ inventory_hostname }}:{{ port }}/"
    broken: "http://{{ missing_host }}/"
  tasks:
    - command: echo '{{ "{{" }} not a template }}'
      register: out
    - copy: {content: "{{ url }} {{ out.stdout }}\n", dest: /lazy.txt}
    - copy: {content: "{{ broken }}\n", dest: /broken.txt}
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(2);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/lazy.txt")).unwrap(),
        "http://h1:9042/ {{ not a template }}\n"
    );
    assert!(
        run.stdout
            .contains("variable 'broken' has no value because its template failed")
            && run.stdout.contains("undefined variable 'missing_host'"),
        "{}",
        run.stdout
    );
    assert!(!fleet.host_file("h1", "/broken.txt").exists());
}

#[test]
fn a_file_that_gains_a_secret_becomes_private_and_backup_keeps_the_old_copy() {
    let fleet = Fleet::new();
    let f = fleet.host_file("h1", "/app.conf");
    std::fs::write(&f, "user=app\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pb = fleet.write_playbook(
        "gain.yml",
        r#"
- hosts: h1
  tasks:
    - copy:
        content: "user=app\npassword={{ db_password }}\n"
        dest: /app.conf
        backup: true
        validate: grep -q password= %s
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "--diff"]);
    run.assert_code(0);
    assert!(run.stdout.contains("+password=********"), "{}", run.stdout);
    assert!(run.stdout.contains("mode 0644 -> 0600"), "{}", run.stdout);
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let backups: Vec<_> = std::fs::read_dir(fleet.root("h1"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("app.conf.")
                && e.file_name().to_string_lossy().ends_with('~')
        })
        .collect();
    assert_eq!(backups.len(), 1, "one backup file");
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).unwrap(),
        "user=app\n"
    );
}

#[test]
fn default_inventory_is_dot_inventory_unless_zdm_inventory_is_set_and_hosts_may_be_templated() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "which.yml",
        "- hosts: \"{{ targets }}\"\n  tasks:\n    - copy: {content: x, dest: /picked}\n",
    );
    let run = |env: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zdm-run"));
        cmd.current_dir(fleet.dir.path())
            .env_remove("ZDM_INVENTORY")
            .args([pb.to_str().unwrap(), "-e", "targets=fleet:!h1"]);
        if let Some(p) = env {
            cmd.env("ZDM_INVENTORY", p);
        }
        common::Run::from(cmd.output().unwrap())
    };
    // ./inventory (the fleet's) is found without -i.
    run(None).assert_code(0);
    assert!(!fleet.host_file("h1", "/picked").exists());
    assert!(fleet.host_file("h2", "/picked").exists());
    // $ZDM_INVENTORY wins over ./inventory: in an inventory without the fleet, `fleet`
    // names nothing, which is an error (not a silent empty run).
    let other = fleet.path("other.ini");
    std::fs::write(&other, "[elsewhere]\nnobody ansible_connection=local\n").unwrap();
    let r = run(Some(&other));
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("('fleet', 'h1': no such host or group in the inventory)"),
        "{}",
        r.all()
    );
}

#[test]
fn meta_flush_handlers_runs_notified_handlers_at_that_point() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "flush.yml",
        r#"
- hosts: h1
  tasks:
    - copy: {content: "a\n", dest: /a.txt}
      notify: restart
    - meta: flush_handlers
    - shell: echo after-flush >> "$ZDM_LOCAL_ROOT/log"
  handlers:
    - name: restart
      shell: echo restart >> "$ZDM_LOCAL_ROOT/log"
"#,
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    let log = std::fs::read_to_string(fleet.host_file("h1", "/log")).unwrap();
    assert_eq!(log, "restart\nafter-flush\n");
    let bad = fleet.write_playbook(
        "meta.yml",
        "- hosts: h1\n  tasks:\n    - meta: end_universe\n",
    );
    let run = fleet.run(&[bad.to_str().unwrap()]);
    run.assert_code(4);
    assert!(
        run.stderr.contains("meta: 'end_universe' is not supported"),
        "{}",
        run.stderr
    );
}

#[test]
fn owner_is_applied_when_root_and_is_idempotent() {
    use std::os::unix::fs::MetadataExt;
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "owner.yml",
        r#"
- hosts: h1
  tasks:
    - copy: {content: "x\n", dest: /owned, owner: nobody, group: "0", mode: "0640"}
    - file: {path: /owned-dir, state: directory, owner: nobody, mode: "0750"}
"#,
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let nobody: u32 = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .and_then(|l| l.split(':').nth(2)?.parse().ok())
        .expect("a 'nobody' user");
    let me = unsafe { libc::geteuid() };
    for f in ["/owned", "/owned-dir"] {
        let md = std::fs::metadata(fleet.host_file("h1", f)).unwrap();
        let expected = if root { nobody } else { me };
        assert_eq!(md.uid(), expected, "{f}: owner applied only as root");
    }
    let again = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    again.assert_code(0);
    assert_eq!(
        again.json()["stats"]["h1"]["changed"],
        0,
        "{}",
        again.stdout
    );
}

#[test]
fn copy_from_files_dir_and_file_states() {
    let fleet = Fleet::new();
    std::fs::write(fleet.host_file("h1", "/old"), "bye").unwrap();
    let pb = fleet.write_playbook(
        "files.yml",
        r#"
- hosts: h1
  tasks:
    - copy: {src: payload.txt, dest: /payload.txt}
    - file: {path: /old, state: absent}
    - file: {path: /marker, state: touch, mode: "0600"}
    - file: {path: /payload.txt, mode: "0640"}
"#,
    );
    let first = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    first.assert_code(0);
    assert_eq!(first.json()["stats"]["h1"]["changed"], 4);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/payload.txt")).unwrap(),
        "static payload\n"
    );
    assert!(!fleet.host_file("h1", "/old").exists());
    let mode = |f: &str| {
        std::fs::metadata(fleet.host_file("h1", f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("/marker"), 0o600);
    assert_eq!(mode("/payload.txt"), 0o640);
    // Idempotent: the copy keeps the mode the later file task set.
    let second = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    second.assert_code(0);
    assert_eq!(
        second.json()["stats"]["h1"]["changed"],
        0,
        "{}",
        second.stdout
    );
}

#[test]
fn templates_can_include_other_templates_from_the_templates_dir() {
    let fleet = Fleet::new();
    std::fs::write(
        fleet.path("playbooks/templates/part.j2"),
        "part for {{ inventory_hostname }}\n",
    )
    .unwrap();
    std::fs::write(
        fleet.path("playbooks/templates/main.j2"),
        "main\n{% include 'part.j2' %}end\n",
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "inc.yml",
        "- hosts: h2\n  tasks:\n    - template: {src: main.j2, dest: /main.conf}\n",
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h2", "/main.conf")).unwrap(),
        "main\npart for h2\nend\n"
    );
}

#[test]
fn play_level_gather_facts_makes_facts_variables_before_the_first_task() {
    let fleet = Fleet::new();
    let arch = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-m")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "facts.yml",
        "\
- name: no facts unless asked
  hosts: h1
  tasks:
    - debug: {msg: \"BEFORE defined={{ ansible_architecture is defined }}\"}
- name: facts first
  hosts: h1
  gather_facts: true
  tasks:
    - debug: {msg: \"AFTER arch={{ ansible_architecture }} also={{ ansible_facts.architecture }} running={{ zdm_proxy.running }}\"}
",
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("BEFORE defined=False"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "AFTER arch={0} also={0} running=False",
            arch.trim()
        )),
        "{}",
        run.stdout
    );
    let gathering: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("Gathering Facts"))
        .collect();
    assert_eq!(gathering.len(), 1, "{}", run.stdout);
    // Check mode gathers too (it only reads), so the plan can use the facts; --tags does not
    // skip it either.
    let check = fleet.run(&[pb.to_str().unwrap(), "--check", "--tags", "nothing"]);
    check.assert_code(0);
    assert!(check.stdout.contains("Gathering Facts"), "{}", check.stdout);
}

/// The message zdm-run shows instead of a `no_log` task's output.
const NO_LOG_SHOWN: &str = "the output has been hidden";

#[test]
fn templated_no_log_is_rendered_per_host_and_masks_when_true() {
    let fleet = Fleet::new();
    // `payload` is no secret-named variable: only no_log can hide it.
    let pb = fleet.write_playbook(
        "nolog.yml",
        r#"
- hosts: fleet
  vars:
    payload: "visible-payload-4711"
  tasks:
    - name: echo the payload
      command: echo {{ payload }}
      no_log: "{{ hide }}"
    - name: fail showing the payload
      fail: {msg: "failing with {{ payload }}"}
      no_log: "{{ hide }}"
      ignore_errors: true
"#,
    );
    let pbs = pb.to_str().unwrap();
    for args in [
        vec![pbs, "-e", "hide=true", "-vv"],
        vec![pbs, "-e", "hide=yes", "--output", "json"],
    ] {
        let run = fleet.run(&args);
        run.assert_code(0);
        let all = run.all();
        assert!(!all.contains("visible-payload-4711"), "leaked:\n{all}");
        assert!(all.contains(NO_LOG_SHOWN), "{all}");
    }
    // The same playbook with the template false shows the output: the check above can fail.
    let shown = fleet.run(&[pbs, "-e", "hide=false", "-vv"]);
    shown.assert_code(0);
    assert!(
        shown.stdout.contains("failing with visible-payload-4711"),
        "{}",
        shown.stdout
    );
    // A value that is no boolean fails the task, naming file, line, column and keyword, and
    // still shows nothing of the task.
    let bad = fleet.run(&[pbs, "-e", "hide=maybe", "-vv"]);
    bad.assert_code(2);
    assert!(
        bad.stdout
            .contains("nolog.yml:8:15: no_log: 'maybe' is not a boolean"),
        "{}",
        bad.stdout
    );
    assert!(!bad.all().contains("visible-payload-4711"), "{}", bad.all());
}

#[test]
fn templated_failure_policy_is_rendered_when_the_play_starts() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "policy.yml",
        r#"
- hosts: fleet
  any_errors_fatal: "{{ strict }}"
  tasks:
    - fail: {msg: broken}
      when: inventory_hostname == 'h2'
    - copy: {content: "x\n", dest: /after.txt}
"#,
    );
    let pbs = pb.to_str().unwrap();
    fleet.run(&[pbs, "-e", "strict=true"]).assert_code(2);
    for h in HOSTS {
        assert!(
            !fleet.host_file(h, "/after.txt").exists(),
            "{h} went on although any_errors_fatal rendered true"
        );
    }
    // Rendered false: the other hosts go on (so the check above is about the template).
    fleet.run(&[pbs, "-e", "strict=false"]).assert_code(2);
    assert!(fleet.host_file("h1", "/after.txt").exists());
    assert!(fleet.host_file("h3", "/after.txt").exists());
    assert!(!fleet.host_file("h2", "/after.txt").exists());
    // Not a boolean: the run stops before any task, naming where the keyword is.
    let bad = fleet.run(&[pbs, "-e", "strict=sometimes"]);
    bad.assert_code(1);
    assert!(
        bad.stderr
            .contains("policy.yml:3:21: any_errors_fatal: 'sometimes' is not a boolean"),
        "{}",
        bad.stderr
    );

    let pct = fleet.write_playbook(
        "pct_tpl.yml",
        r#"
- hosts: fleet
  max_fail_percentage: "{{ allowed }}"
  tasks:
    - fail: {}
      when: inventory_hostname == 'h1'
    - copy: {content: "y\n", dest: /pct.txt}
"#,
    );
    let pcts = pct.to_str().unwrap();
    fleet.run(&[pcts, "-e", "allowed=10"]).assert_code(2);
    assert!(
        !fleet.host_file("h2", "/pct.txt").exists(),
        "33% failed > 10% allowed: the play stops"
    );
    fleet.run(&[pcts, "-e", "allowed=50"]).assert_code(2);
    assert!(fleet.host_file("h2", "/pct.txt").exists());
    let bad = fleet.run(&[pcts, "-e", "allowed=lots"]);
    bad.assert_code(1);
    assert!(
        bad.stderr
            .contains("pct_tpl.yml:3:24: max_fail_percentage: 'lots' is not a number"),
        "{}",
        bad.stderr
    );
}

#[test]
fn templated_run_once_and_check_mode_are_rendered() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "once.yml",
        r#"
- hosts: fleet
  tasks:
    - shell: echo ran >> "$ZDM_LOCAL_ROOT/once.log"
      run_once: "{{ once }}"
    - copy: {content: "z\n", dest: /dry.txt}
      check_mode: "{{ once }}"
"#,
    );
    let pbs = pb.to_str().unwrap();
    fleet.run(&[pbs, "-e", "once=true"]).assert_code(0);
    assert!(fleet.host_file("h1", "/once.log").exists());
    assert!(!fleet.host_file("h2", "/once.log").exists());
    assert!(!fleet.host_file("h3", "/once.log").exists());
    for h in HOSTS {
        assert!(
            !fleet.host_file(h, "/dry.txt").exists(),
            "check_mode rendered true must not write on {h}"
        );
    }
    fleet.run(&[pbs, "-e", "once=false"]).assert_code(0);
    for h in HOSTS {
        assert!(fleet.host_file(h, "/once.log").exists());
        assert!(fleet.host_file(h, "/dry.txt").exists());
    }
    let bad = fleet.run(&[pbs, "-e", "once=perhaps"]);
    bad.assert_code(2);
    assert!(
        bad.stdout
            .contains("once.yml:5:17: run_once: 'perhaps' is not a boolean"),
        "{}",
        bad.stdout
    );
}

#[test]
fn include_vars_parameterise_a_shared_file_and_include_no_log_masks_its_tasks() {
    let fleet = Fleet::new();
    std::fs::write(
        fleet.path("playbooks/greet.yml"),
        "- copy: {content: \"{{ greeting }} {{ inventory_hostname }}\\n\", dest: \"/{{ file_name }}\"}\n\
         - command: echo {{ greeting }}\n",
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "inc.yml",
        r#"
- hosts: h1
  vars:
    greeting: play-level
  tasks:
    - include_tasks: greet.yml
      vars: {greeting: hello-included, file_name: hello.txt}
    - import_tasks: greet.yml
      vars: {greeting: quiet-included-4242, file_name: quiet.txt}
      no_log: true
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "-vv"]);
    run.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/hello.txt")).unwrap(),
        "hello-included h1\n",
        "the include's vars win over play vars"
    );
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/quiet.txt")).unwrap(),
        "quiet-included-4242 h1\n"
    );
    assert!(run.stdout.contains("hello-included"), "{}", run.stdout);
    assert!(!run.all().contains("quiet-included-4242"), "{}", run.all());
    assert!(run.stdout.contains(NO_LOG_SHOWN), "{}", run.stdout);
}

#[test]
fn plan_covers_run_once_hosts_and_reports_a_quiet_command_as_the_real_run_does() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "plan.yml",
        r#"
- name: plan play
  hosts: fleet
  tasks:
    - name: once
      shell: echo once >> "$ZDM_LOCAL_ROOT/once.log"
      run_once: true
    - name: quiet probe
      command: echo probing
      changed_when: false
    - name: probe judged by its output
      command: echo x
      register: judged
      changed_when: "'x' in judged.stdout"
    - name: write
      copy: {content: "w\n", dest: /w.txt}
"#,
    );
    let pbs = pb.to_str().unwrap();
    // Human plan, no sandbox needed: a PLAN section per play with a line per host and task.
    let human = fleet.run(&[pbs, "--check"]);
    human.assert_code(0);
    let out = &human.stdout;
    assert!(out.contains("PLAN [plan play]"), "{out}");
    let plan = &out[out.find("PLAN [plan play]").unwrap()..];
    let h2 = &plan[plan.find("h2:").unwrap()..plan.find("h3:").unwrap()];
    assert!(h2.contains("skipped      once (run_once on h1)"), "{h2}");
    assert!(
        h2.contains("ok           quiet probe: run: echo probing"),
        "{h2}"
    );
    assert!(
        h2.contains("would run    probe judged by its output"),
        "{h2}"
    );
    assert!(h2.contains("would change write"), "{h2}");
    let h1 = &plan[plan.find("h1:").unwrap()..plan.find("h2:").unwrap()];
    assert!(h1.contains("would run    once"), "{h1}");
    for h in HOSTS {
        assert!(!fleet.host_file(h, "/once.log").exists());
    }

    // JSON plan vs real run: the same (task, host) lines; `would_change` becomes `changed`,
    // and `would_run` (a command whose report depends on its output) `changed` or `ok`.
    let plan = fleet.run(&[pbs, "--check", "--output", "json"]);
    plan.assert_code(0);
    let real = fleet.run(&[pbs, "--output", "json"]);
    real.assert_code(0);
    let (p, r) = (statuses(&plan.json()), statuses(&real.json()));
    assert_eq!(p.len(), r.len(), "plan {p:?}\nreal {r:?}");
    for (p, r) in p.iter().zip(&r) {
        assert_eq!((&p.0, &p.1), (&r.0, &r.1));
        let allowed: &[&str] = match p.2.as_str() {
            "would_change" => &["changed"],
            "would_run" => &["changed", "ok"],
            other => &[other],
        };
        assert!(
            allowed.contains(&r.2.as_str()),
            "{} on {}: plan {} real {}",
            p.0,
            p.1,
            p.2,
            r.2
        );
    }
    assert!(p.contains(&("quiet probe".into(), "h1".into(), "ok".into())));
    // The run_once hosts are kept apart from the results, alike in plan and real run.
    for doc in [plan.json(), real.json()] {
        let once = &doc["plays"][0]["tasks"][0];
        assert_eq!(once["name"], "once");
        assert_eq!(
            once["run_once"],
            serde_json::json!({"ran_on": "h1", "covered": ["h2", "h3"]}),
            "{doc}"
        );
        assert_eq!(once["hosts"].as_object().unwrap().len(), 1);
    }
    // The run_once lines are not counted: the recap is Ansible's.
    let doc = real.json();
    assert_eq!(stats(&doc, "h2", "skipped"), 0, "{doc}");
    assert_eq!(stats(&plan.json(), "h1", "changed"), 3);
    assert_eq!(stats(&doc, "h1", "changed"), 3);
    assert_eq!(stats(&doc, "h2", "changed"), 2);
    assert!(fleet.host_file("h1", "/once.log").exists());
    assert!(!fleet.host_file("h2", "/once.log").exists());
}

#[test]
fn group_vars_and_host_vars_beside_the_playbook_are_read() {
    let fleet = Fleet::new();
    std::fs::create_dir_all(fleet.path("playbooks/group_vars")).unwrap();
    std::fs::create_dir_all(fleet.path("playbooks/host_vars")).unwrap();
    std::fs::write(
        fleet.path("playbooks/group_vars/fleet.yml"),
        "where_from: group-vars-dir\n",
    )
    .unwrap();
    std::fs::write(
        fleet.path("playbooks/host_vars/h2.yml"),
        "where_from: host-vars-dir\n",
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "dirs.yml",
        "- hosts: fleet\n  tasks:\n    - copy: {content: \"{{ where_from }}\\n\", dest: /from.txt}\n",
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    let read = |h: &str| std::fs::read_to_string(fleet.host_file(h, "/from.txt")).unwrap();
    assert_eq!(read("h1"), "group-vars-dir\n");
    assert_eq!(read("h2"), "host-vars-dir\n");
    assert_eq!(read("h3"), "group-vars-dir\n");
}

#[test]
fn variable_precedence_chain_from_inventory_to_extra_vars() {
    let fleet = Fleet::new();
    std::fs::create_dir_all(fleet.path("playbooks/group_vars")).unwrap();
    std::fs::write(
        fleet.path("playbooks/group_vars/fleet.yml"),
        "a: group\nb: group\n",
    )
    .unwrap();
    std::fs::write(fleet.path("playbooks/vf.yml"), "b: vars-file\n").unwrap();
    let pb = fleet.write_playbook(
        "prec.yml",
        r#"
- hosts: h1
  vars: {a: play, b: play, c: play, d: play, e: play}
  vars_files: [vf.yml]
  tasks:
    - command: echo registered
      register: d
    - command: echo registered-e
      register: e
    - copy:
        content: "a={{ a }} b={{ b }} c={{ c }} d={{ d.stdout | default('task-vars-won') }} e={{ e }}\n"
        dest: /prec.txt
      vars: {c: task, d: task}
"#,
    );
    fleet
        .run(&[pb.to_str().unwrap(), "-e", "e=cli"])
        .assert_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/prec.txt")).unwrap(),
        // play > group_vars, vars_files > play, task > play, registered > task, -e > registered
        "a=play b=vars-file c=task d=registered e=cli\n"
    );
}

#[test]
fn handlers_flush_at_the_end_of_pre_tasks_tasks_and_post_tasks() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "sections.yml",
        r#"
- hosts: h1
  post_tasks:
    - shell: echo post >> "$ZDM_LOCAL_ROOT/log"
      notify: h
  tasks:
    - shell: echo task >> "$ZDM_LOCAL_ROOT/log"
      notify: h
  pre_tasks:
    - shell: echo pre >> "$ZDM_LOCAL_ROOT/log"
      notify: h
  handlers:
    - name: h
      shell: echo handler >> "$ZDM_LOCAL_ROOT/log"
"#,
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/log")).unwrap(),
        "pre\nhandler\ntask\nhandler\npost\nhandler\n"
    );
}

/// Runs a two-task play with `serial` on the fleet; returns the shared log's lines.
fn serial_order(fleet: &Fleet, name: &str, serial: &str) -> Vec<String> {
    let log = fleet.path(&format!("{name}.log"));
    let pb = fleet.write_playbook(
        &format!("{name}.yml"),
        &format!(
            "- hosts: fleet\n  serial: {serial}\n  tasks:\n    - shell: echo t1 {{{{ inventory_hostname }}}} >> {log}\n    - shell: echo t2 {{{{ inventory_hostname }}}} >> {log}\n",
            log = log.display()
        ),
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn serial_percent_and_list_forms_batch_the_hosts() {
    let fleet = Fleet::new();
    // 30% of 3 hosts rounds down to 0, which counts as 1: one host at a time.
    assert_eq!(
        serial_order(&fleet, "pct", "\"30%\""),
        ["t1 h1", "t2 h1", "t1 h2", "t2 h2", "t1 h3", "t2 h3"]
    );
    // [1, 2]: h1 alone, then h2 and h3 together (in either order within the batch).
    let lines = serial_order(&fleet, "list", "[1, 2]");
    assert_eq!(&lines[..2], ["t1 h1", "t2 h1"]);
    let mut second: Vec<&str> = lines[2..4].iter().map(String::as_str).collect();
    second.sort();
    assert_eq!(second, ["t1 h2", "t1 h3"]);
    let mut third: Vec<&str> = lines[4..].iter().map(String::as_str).collect();
    third.sort();
    assert_eq!(third, ["t2 h2", "t2 h3"]);
    // Without serial every host does t1 before any does t2 (so the checks above can fail).
    let lines = serial_order(&fleet, "none", "\"100%\"");
    assert!(lines[..3].iter().all(|l| l.starts_with("t1")), "{lines:?}");
}

#[test]
fn a_check_mode_true_task_changes_nothing_in_a_real_run() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "cm.yml",
        r#"
- hosts: h1
  tasks:
    - copy: {content: "x\n", dest: /cm.txt}
      check_mode: true
      register: planned
    - command: touch "$ZDM_LOCAL_ROOT/ran"
      check_mode: true
    - assert: {that: planned.changed}
    - copy: {content: "y\n", dest: /real.txt}
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    run.assert_code(0);
    assert!(!fleet.host_file("h1", "/cm.txt").exists());
    assert!(!fleet.host_file("h1", "/ran").exists());
    assert!(
        fleet.host_file("h1", "/real.txt").exists(),
        "the run itself was real"
    );
    let st: Vec<String> = statuses(&run.json()).into_iter().map(|s| s.2).collect();
    assert_eq!(st, ["would_change", "would_run", "ok", "changed"]);
}

#[test]
fn exit_code_1_when_the_run_itself_cannot_go_on() {
    let fleet = Fleet::new();
    // serial is rendered when the play starts: a value that is no size stops the run (1).
    let pb = fleet.write_playbook(
        "badserial.yml",
        "- hosts: fleet\n  serial: \"{{ batch }}\"\n  tasks:\n    - copy: {content: x, dest: /x}\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "-e", "batch=several"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("serial 'several' is not a number"),
        "{}",
        run.stderr
    );
    for h in HOSTS {
        assert!(!fleet.host_file(h, "/x").exists());
    }
    // A missing vars file is found before the run: a playbook error (4), not 1.
    let pb = fleet.write_playbook(
        "novf.yml",
        "- hosts: fleet\n  vars_files: [missing-vars.yml]\n  tasks:\n    - copy: {content: x, dest: /x}\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(4);
    assert!(run.stderr.contains("missing-vars.yml"), "{}", run.stderr);
}

#[test]
fn secrets_named_key_or_secret_are_masked_but_keyspace_names_are_not() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "keys.yml",
        r#"
- hosts: h1
  vars:
    ssh_private_key: "KEYVAL-abc123"
    client_secret_value: "SECVAL-xyz789"
    app_keyspace: "ks_visible_name"
  tasks:
    - debug: {msg: "{{ ssh_private_key }} {{ client_secret_value }} {{ app_keyspace }}"}
    - copy:
        content: "k={{ ssh_private_key }} s={{ client_secret_value }} ks={{ app_keyspace }}\n"
        dest: /keys.conf
"#,
    );
    let pbs = pb.to_str().unwrap();
    for args in [
        vec![pbs, "--check", "--diff", "-vv"],
        vec![pbs, "--diff", "--output", "json"],
    ] {
        let run = fleet.run(&args);
        run.assert_code(0);
        let all = run.all();
        assert!(!all.contains("KEYVAL-abc123"), "*_key leaked:\n{all}");
        assert!(!all.contains("SECVAL-xyz789"), "*secret* leaked:\n{all}");
        assert!(
            all.contains("ks_visible_name"),
            "keyspace names stay visible:\n{all}"
        );
        assert!(all.contains("********"), "{all}");
    }
}

#[test]
fn templated_ignore_errors_is_rendered_and_a_non_boolean_is_not_read_as_false() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "tolerate.yml",
        "- hosts: h1\n  tasks:\n    - fail: {msg: expected}\n      ignore_errors: \"{{ tolerate }}\"\n    - copy: {content: x, dest: /after.txt}\n",
    );
    let pbs = pb.to_str().unwrap();
    fleet.run(&[pbs, "-e", "tolerate=yes"]).assert_code(0);
    assert!(fleet.host_file("h1", "/after.txt").exists());
    std::fs::remove_file(fleet.host_file("h1", "/after.txt")).unwrap();
    let bad = fleet.run(&[pbs, "-e", "tolerate=maybe"]);
    bad.assert_code(2);
    assert!(
        bad.stdout
            .contains("tolerate.yml:4:22: ignore_errors: 'maybe' is not a boolean"),
        "{}",
        bad.stdout
    );
    assert!(!fleet.host_file("h1", "/after.txt").exists());
}

#[test]
fn changed_when_lists_must_hold_as_a_whole() {
    let fleet = Fleet::new();
    let pb = fleet.write_playbook(
        "cw.yml",
        "- hosts: h1\n  tasks:\n    - command: echo a\n      changed_when: [true, false]\n    - command: echo b\n      changed_when: [true, true]\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    run.assert_code(0);
    let st: Vec<String> = statuses(&run.json()).into_iter().map(|s| s.2).collect();
    assert_eq!(st, ["ok", "changed"]);
}

/// On a terminal every host gets a spinner (indicatif, redrawn with escape sequences) while its
/// task runs; in a log the same run is plain lines only. Masking holds on both.
#[test]
fn spinners_per_host_on_a_terminal_plain_lines_otherwise() {
    let fleet = Fleet::new();
    fleet.write_playbook(
        "progress.yml",
        r#"
- hosts: fleet
  tasks:
    - name: a slow step
      command: sleep 1
      changed_when: false
    - name: show the password
      debug: {msg: "password is {{ db_password }}"}
"#,
    );

    let plain = fleet.run(&["playbooks/progress.yml"]);
    plain.assert_code(0);
    assert!(
        !plain.stdout.contains('\u{1b}'),
        "terminal escapes in a log:\n{}",
        plain.stdout
    );
    for h in HOSTS {
        assert!(
            plain.stdout.contains(&format!("ok: [{h}]")),
            "{}",
            plain.stdout
        );
    }
    assert!(plain.stdout.contains("PLAY RECAP"), "{}", plain.stdout);

    // `script` (util-linux/bsdutils) runs zdm-run on a real pseudo-terminal.
    let out = std::process::Command::new("script")
        .current_dir(fleet.dir.path())
        .env_remove("ZDM_INVENTORY")
        .args([
            "-qec",
            &format!(
                "{} -i inventory playbooks/progress.yml",
                env!("CARGO_BIN_EXE_zdm-run")
            ),
            "/dev/null",
        ])
        .output()
        .expect("run script (util-linux) to get a pseudo-terminal");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{tty}");
    assert!(
        tty.contains('\u{1b}'),
        "no spinner drawn on a terminal:\n{tty}"
    );
    for h in HOSTS {
        assert!(
            tty.contains(&format!("{h}: a slow step")),
            "no spinner line for {h}:\n{tty}"
        );
    }
    assert!(tty.contains("PLAY RECAP"), "{tty}");
    assert!(
        !tty.contains(DB_PASSWORD),
        "the password reached the terminal:\n{tty}"
    );
    assert!(tty.contains("password is ********"), "{tty}");
}
