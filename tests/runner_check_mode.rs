//! Check mode and what a run reports for each task: `--check --diff` changes nothing and its plan
//! (the human PLAN and the JSON document) is what the real run then does, `run_once` hosts are
//! covered alike in plan and run, the `check_mode` and `run_once` keywords (also templated), and
//! `changed_when`. Local fleet (`zdm_testkit::local_fleet`), no sandbox.

use std::os::unix::fs::PermissionsExt;

use zdm_testkit::{
    local_fleet::{LocalFleet, HOSTS},
    run::{recap_stat, statuses},
};

#[test]
fn check_mode_changes_nothing_and_its_plan_matches_the_real_run() {
    let fleet = LocalFleet::new();
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
        assert!(recap_stat(&done, h, "changed") >= 5, "{h} changed: {done}");
        assert_eq!(
            recap_stat(&plan, h, "changed"),
            recap_stat(&done, h, "changed")
        );
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
            recap_stat(&doc, h, "changed"),
            0,
            "second run changed something on {h}: {doc}"
        );
        assert_eq!(recap_stat(&doc, h, "failed"), 0);
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
        assert_eq!(recap_stat(&check2.json(), h, "changed"), 0);
    }
}

#[test]
fn templated_run_once_and_check_mode_are_rendered() {
    let fleet = LocalFleet::new();
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
fn plan_covers_run_once_hosts_and_reports_a_quiet_command_as_the_real_run_does() {
    let fleet = LocalFleet::new();
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
    assert_eq!(recap_stat(&doc, "h2", "skipped"), 0, "{doc}");
    assert_eq!(recap_stat(&plan.json(), "h1", "changed"), 3);
    assert_eq!(recap_stat(&doc, "h1", "changed"), 3);
    assert_eq!(recap_stat(&doc, "h2", "changed"), 2);
    assert!(fleet.host_file("h1", "/once.log").exists());
    assert!(!fleet.host_file("h2", "/once.log").exists());
}

#[test]
fn a_check_mode_true_task_changes_nothing_in_a_real_run() {
    let fleet = LocalFleet::new();
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
fn changed_when_lists_must_hold_as_a_whole() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook(
        "cw.yml",
        "- hosts: h1\n  tasks:\n    - command: echo a\n      changed_when: [true, false]\n    - command: echo b\n      changed_when: [true, true]\n",
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    run.assert_code(0);
    let st: Vec<String> = statuses(&run.json()).into_iter().map(|s| s.2).collect();
    assert_eq!(st, ["ok", "changed"]);
}
