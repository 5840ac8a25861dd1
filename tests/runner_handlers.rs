//! Handlers: notified by name or `listen`, run once in definition order at the end of each of
//! `pre_tasks`, `tasks` and `post_tasks`, or where `meta: flush_handlers` says. Local fleet
//! (`zdm_testkit::local_fleet`), no sandbox.

use zdm_testkit::local_fleet::LocalFleet;

#[test]
fn handlers_run_once_at_section_end_in_definition_order() {
    let fleet = LocalFleet::new();
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
fn meta_flush_handlers_runs_notified_handlers_at_that_point() {
    let fleet = LocalFleet::new();
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
fn handlers_flush_at_the_end_of_pre_tasks_tasks_and_post_tasks() {
    let fleet = LocalFleet::new();
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
