//! ansible-playbook's command line: several `-i` and host lists, `--limit` forms and the
//! error when it (or `hosts:`) selects nothing, connection and escalation flags,
//! `--start-at-task`, and a misspelt subcommand. Local fleet (tests/common), no sandbox.

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
