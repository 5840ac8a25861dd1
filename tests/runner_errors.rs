//! Bad input and exit codes: a playbook, template or condition error stops the run before any
//! task and names file, line and column (or template line, task and variable); bad options,
//! unreachable hosts and a run that cannot go on each get ansible-playbook's exit code. Local
//! fleet (`zdm_testkit::local_fleet`), no sandbox.

use zdm_testkit::local_fleet::{LocalFleet, HOSTS};

#[test]
fn playbook_errors_exit_4_with_file_line_and_column_before_anything_runs() {
    let fleet = LocalFleet::new();
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
    let fleet = LocalFleet::new();
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
    let fleet = LocalFleet::new();
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
fn broken_template_or_condition_in_a_later_play_stops_the_run_before_any_task() {
    let fleet = LocalFleet::new();
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
fn exit_code_1_when_the_run_itself_cannot_go_on() {
    let fleet = LocalFleet::new();
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
