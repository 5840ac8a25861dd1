//! ansible-playbook's command line: several `-i` and host lists, the default inventory and
//! `ZDM_INVENTORY`, `--limit` forms and the error when it (or `hosts:`) selects nothing,
//! `--list-hosts`/`--list-tasks`, `--tags`/`--skip-tags`, connection and escalation flags,
//! `--start-at-task`, and a misspelt subcommand. Local fleet (`zdm_testkit::local_fleet`), no sandbox.

use zdm_testkit::{local_fleet::LocalFleet, run::statuses, Run};

/// The hosts `--list-hosts` prints for the one play of `site.yml`.
fn listed(run: &Run) -> Vec<String> {
    run.assert_code(0);
    let doc = run.json();
    doc["playbooks"][0]["plays"][0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

fn list(fleet: &LocalFleet, extra: &[&str]) -> Run {
    let mut args = vec!["playbooks/site.yml", "--list-hosts", "--output", "json"];
    args.extend_from_slice(extra);
    fleet.run(&args)
}

#[test]
fn a_limit_or_hosts_pattern_that_matches_nothing_is_an_error_and_runs_nothing() {
    let fleet = LocalFleet::new();
    let before = fleet.snapshot();
    let typo = fleet.run(&["playbooks/site.yml", "-l", "h9"]);
    typo.assert_code(1);
    assert!(
        typo.stderr.contains("leaves us with no hosts to target"),
        "{}",
        typo.all()
    );
    assert_eq!(
        fleet.snapshot(),
        before,
        "a limit matching nothing ran something"
    );
    // A limit with one unknown term still runs the hosts the others select (as Ansible).
    let partial = list(&fleet, &["-l", "h1:h9"]);
    assert_eq!(listed(&partial), vec!["h1"]);
    assert!(partial.stderr.contains("ignoring: h9"), "{}", partial.all());

    fleet.write_playbook("typo.yml", "- hosts: flet\n  tasks:\n    - debug: msg=x\n");
    let run = fleet.run(&["playbooks/typo.yml"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("('flet': no such host or group in the inventory)"),
        "{}",
        run.all()
    );
    // A group that exists but is empty is skipped, as in Ansible.
    std::fs::write(fleet.path("inventory/empty.ini"), "[spare]\n").unwrap();
    fleet.write_playbook(
        "empty.yml",
        "- hosts: spare\n  tasks:\n    - debug: msg=x\n",
    );
    let run = fleet.run(&["playbooks/empty.yml"]);
    run.assert_code(0);
    assert!(run.all().contains("no hosts matched"), "{}", run.all());
}

#[test]
fn limit_from_a_file_a_regex_and_subscripts() {
    let fleet = LocalFleet::new();
    std::fs::write(fleet.path("retry.txt"), "h3\n# a comment\nh1\n").unwrap();
    assert_eq!(
        listed(&list(&fleet, &["-l", "@retry.txt"])),
        vec!["h1", "h3"]
    );
    assert_eq!(listed(&list(&fleet, &["-l", "~h[23]"])), vec!["h2", "h3"]);
    assert_eq!(
        listed(&list(&fleet, &["-l", "~fle"])),
        vec!["h1", "h2", "h3"]
    );
    assert_eq!(
        listed(&list(&fleet, &["-l", "fleet[0:1]"])),
        vec!["h1", "h2"]
    );
    assert_eq!(
        listed(&list(&fleet, &["-l", "fleet[1:]"])),
        vec!["h2", "h3"]
    );
    assert_eq!(listed(&list(&fleet, &["-l", "fleet[-1]"])), vec!["h3"]);
    assert_eq!(
        listed(&list(&fleet, &["-l", "fleet[0]:h3"])),
        vec!["h1", "h3"]
    );
    let missing = fleet.run(&["playbooks/site.yml", "-l", "@no-such-file"]);
    missing.assert_code(1);
    assert!(
        missing.stderr.contains("--limit @no-such-file"),
        "{}",
        missing.all()
    );
    let bad = fleet.run(&["playbooks/site.yml", "-l", "~h[2"]);
    bad.assert_code(1);
    assert!(
        bad.stderr.contains("bad regular expression"),
        "{}",
        bad.all()
    );
}

#[test]
fn several_inventories_host_lists_and_connection_flags() {
    let fleet = LocalFleet::new();
    fleet.write_playbook(
        "conn.yml",
        r#"
- hosts: all
  tasks:
    - name: show
      debug:
        msg: "{{ ansible_user | default('-') }} {{ ansible_connection }} {{ ansible_ssh_private_key_file | default('-') }} {{ ansible_become | default('-') }} {{ ansible_become_user | default('-') }}"
"#,
    );
    let run = fleet.run(&[
        "playbooks/conn.yml",
        "-i",
        "extra1,extra2,",
        "-c",
        "local",
        "-u",
        "deploy",
        "--private-key",
        "/keys/id",
        "-b",
        "--become-user",
        "zdm",
        "--output",
        "json",
    ]);
    run.assert_code(0);
    let doc = run.json();
    let task = &doc["plays"][0]["tasks"][0]["hosts"];
    let hosts: Vec<&String> = task.as_object().unwrap().keys().collect();
    assert_eq!(
        hosts,
        ["extra1", "extra2", "h1", "h2", "h3"],
        "both inventories: {doc}"
    );
    // The key file's variable name holds "key": its value is masked like a secret.
    for h in ["extra1", "h1"] {
        assert_eq!(
            task[h]["msg"], "deploy local ******** True zdm",
            "flags as connection variables on {h}"
        );
    }
    // Inventory variables win over the command line's connection flags, as in Ansible.
    std::fs::write(
        fleet.path("inventory/user.ini"),
        "[fleet:vars]\nansible_user=fromfile\n",
    )
    .unwrap();
    let run = fleet.run(&[
        "playbooks/conn.yml",
        "-l",
        "h1",
        "-u",
        "deploy",
        "--output",
        "json",
    ]);
    run.assert_code(0);
    let msg = run.json()["plays"][0]["tasks"][0]["hosts"]["h1"]["msg"].clone();
    assert!(msg.as_str().unwrap().starts_with("fromfile local"), "{msg}");
}

#[test]
fn start_at_task_and_misspelt_subcommands() {
    let fleet = LocalFleet::new();
    fleet.write_playbook(
        "steps.yml",
        "- hosts: h1\n  tasks:\n    - {name: first step, debug: {msg: one}}\n    - {name: second step, debug: {msg: two}}\n",
    );
    let run = fleet.run(&[
        "playbooks/steps.yml",
        "--start-at-task",
        "second step",
        "--output",
        "json",
    ]);
    run.assert_code(0);
    let names: Vec<String> = statuses(&run.json()).into_iter().map(|s| s.0).collect();
    assert_eq!(names, ["second step"]);
    let glob = fleet.run(&[
        "playbooks/steps.yml",
        "--start-at-task",
        "sec*",
        "--output",
        "json",
    ]);
    glob.assert_code(0);
    assert_eq!(statuses(&glob.json()).len(), 1);
    let none = fleet.run(&["playbooks/steps.yml", "--start-at-task", "third step"]);
    none.assert_code(1);
    assert!(
        none.stderr.contains("no task named 'third step'"),
        "{}",
        none.all()
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zdm-run"))
        .arg("valdate")
        .output()
        .unwrap();
    let run = Run::from(out);
    run.assert_code(1);
    assert!(
        run.stderr.contains("commands: migrate, validate, status")
            && run.stderr.contains("did you mean 'validate'?"),
        "{}",
        run.all()
    );
}

#[test]
fn list_hosts_tasks_limit_and_tags() {
    let fleet = LocalFleet::new();
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
fn default_inventory_is_dot_inventory_unless_zdm_inventory_is_set_and_hosts_may_be_templated() {
    let fleet = LocalFleet::new();
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
        Run::from(cmd.output().unwrap())
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
