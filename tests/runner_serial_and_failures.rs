//! How a play walks its hosts and what a failure stops: `serial` batches (number, percentage,
//! list), `any_errors_fatal`, `max_fail_percentage` and `ignore_errors`, also as templates
//! rendered when the play starts. Local fleet (`zdm_testkit::local_fleet`), no sandbox.

use zdm_testkit::{
    local_fleet::{LocalFleet, HOSTS},
    run::recap_stat,
};

#[test]
fn failure_on_host2_of_serial_1_leaves_host3_untouched() {
    let fleet = LocalFleet::new();
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
    assert_eq!(recap_stat(&doc, "h2", "failed"), 1);
    assert_eq!(recap_stat(&doc, "h3", "ok"), 0);
    assert_eq!(recap_stat(&doc, "h3", "changed"), 0);
    let failed_msg = doc.to_string();
    assert!(failed_msg.contains("h2 is broken"));
}

#[test]
fn any_errors_fatal_stops_every_host_after_the_failing_task() {
    let fleet = LocalFleet::new();
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
    let fleet = LocalFleet::new();
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
fn templated_failure_policy_is_rendered_when_the_play_starts() {
    let fleet = LocalFleet::new();
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

/// Runs a two-task play with `serial` on the fleet; returns the shared log's lines.
fn serial_order(fleet: &LocalFleet, name: &str, serial: &str) -> Vec<String> {
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
    let fleet = LocalFleet::new();
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
fn templated_ignore_errors_is_rendered_and_a_non_boolean_is_not_read_as_false() {
    let fleet = LocalFleet::new();
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
