use std::path::{Path, PathBuf};

use super::*;

/// Writes `text` as `name` in a fresh directory and loads it.
fn load(name: &str, text: &str) -> (tempfile::TempDir, Result<Playbook, PlaybookError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let r = Playbook::load(&path);
    (dir, r)
}

/// The error message with the temp directory stripped, so tests can compare it exactly.
fn err_of(name: &str, text: &str) -> String {
    let (dir, r) = load(name, text);
    let msg = r.unwrap_err().0;
    msg.replace(&format!("{}/", dir.path().display()), "")
}

#[test]
fn unknown_module_is_reported_at_its_key() {
    let text = "\
- hosts: all
  tasks:
    - name: ok
      debug:
        msg: hi
    - name: bad
      templte:
        src: a
";
    assert_eq!(
        err_of("site.yml", text),
        "site.yml:7:7: [0].tasks[1]: unknown module or task keyword 'templte'"
    );
}

#[test]
fn unknown_module_argument_is_reported_at_its_key() {
    let text = "\
- hosts: all
  tasks:
    - copy:
        dest: /x
        content: y
        mdoe: \"0644\"
";
    let msg = err_of("p.yml", text);
    assert!(msg.starts_with("p.yml:6:9: "), "{msg}");
    assert!(
        msg.contains("unknown argument 'mdoe' for module 'copy'"),
        "{msg}"
    );
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    let text = "\
- hosts: all
  tasks:
    - command: ls
      retries: many
";
    let msg = err_of("p.yml", text);
    assert!(msg.starts_with("p.yml:4:16: "), "{msg}");
    assert!(msg.contains("expected an integer"), "{msg}");
}

#[test]
fn wrong_argument_type_is_reported_at_the_value() {
    let text = "\
- hosts: all
  tasks:
    - wait_for:
        port: [1, 2]
";
    let msg = err_of("p.yml", text);
    assert!(msg.starts_with("p.yml:4:15: "), "{msg}");
    assert!(msg.contains("expected an integer"), "{msg}");
}

#[test]
fn unknown_play_key_is_reported() {
    let msg = err_of("p.yml", "- hosts: all\n  serail: 1\n");
    assert!(msg.starts_with("p.yml:2:3: "), "{msg}");
    assert!(msg.contains("unknown play key 'serail'"), "{msg}");
}

#[test]
fn bad_choice_and_missing_required_argument() {
    let msg = err_of(
        "p.yml",
        "- hosts: all\n  tasks:\n    - file:\n        path: /x\n        state: gone\n",
    );
    assert!(msg.starts_with("p.yml:5:16: "), "{msg}");
    assert!(
        msg.contains("expected one of: file, directory, absent, link, touch"),
        "{msg}"
    );
    let msg = err_of(
        "p.yml",
        "- hosts: all\n  tasks:\n    - template:\n        src: a.j2\n",
    );
    assert!(msg.starts_with("p.yml:4:9: "), "{msg}");
    assert!(msg.contains("requires argument 'dest'"), "{msg}");
}

#[test]
fn two_modules_or_none_are_refused() {
    let msg = err_of(
        "p.yml",
        "- hosts: all\n  tasks:\n    - debug: {msg: a}\n      fail: {msg: b}\n",
    );
    assert!(msg.starts_with("p.yml:4:7: "), "{msg}");
    assert!(msg.contains("two modules"), "{msg}");
    let msg = err_of(
        "p.yml",
        "- hosts: all\n  tasks:\n    - name: nothing\n      when: true\n",
    );
    assert!(msg.starts_with("p.yml:3:7: "), "{msg}");
    assert!(msg.contains("task has no module"), "{msg}");
}

#[test]
fn serial_forms_and_full_model() {
    let text = r#"
- name: rolling
  hosts: proxies:!zdm-h3
  serial: [1, "50%"]
  max_fail_percentage: 0
  any_errors_fatal: true
  vars: {a: 1}
  tasks:
    - name: render
      template: {src: x.j2, dest: /tmp/x, mode: "0600"}
      notify: restart
      tags: [config]
      when: a == 1
    - command: echo hi
      args: {creates: /tmp/y}
      register: out
      until: out.rc == 0
      retries: 2
      delay: 0
      changed_when: false
  handlers:
    - name: restart
      listen: config changed
      debug: {msg: restarting}
"#;
    let (_d, r) = load("p.yml", text);
    let pb = r.unwrap();
    let play = &pb.plays[0];
    assert_eq!(play.hosts, "proxies:!zdm-h3");
    assert_eq!(play.serial, vec![Serial::Count(1), Serial::Percent(50.0)]);
    assert_eq!(play.max_fail_percentage, Some(0.0));
    assert!(play.any_errors_fatal);
    assert_eq!(play.tasks[0].module, "template");
    assert_eq!(play.tasks[0].notify, ["restart"]);
    assert_eq!(play.tasks[1].args["_raw"], "echo hi");
    assert_eq!(play.tasks[1].args["creates"], "/tmp/y");
    assert_eq!(play.tasks[1].changed_when, ["false"]);
    assert_eq!(play.handlers[0].listen, ["config changed"]);
}

#[test]
fn include_tasks_and_import_playbook_are_inlined_and_errors_name_the_included_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| -> PathBuf { dir.path().join(n) };
    std::fs::write(p("common.yml"), "- debug: {msg: shared}\n  tags: [c]\n").unwrap();
    std::fs::write(
        p("phase.yml"),
        "- hosts: all\n  tasks:\n    - include_tasks: common.yml\n      when: x is defined\n      tags: [inc]\n",
    )
    .unwrap();
    std::fs::write(
        p("site.yml"),
        "- import_playbook: phase.yml\n- hosts: all\n  tasks: []\n",
    )
    .unwrap();
    let pb = Playbook::load(&p("site.yml")).unwrap();
    assert_eq!(pb.plays.len(), 2);
    let t = &pb.plays[0].tasks[0];
    assert_eq!(t.module, "debug");
    assert_eq!(t.when, ["x is defined"]);
    assert_eq!(t.tags, ["inc", "c"]);

    std::fs::write(p("common.yml"), "- debug: {msg: shared}\n  bogus: 1\n").unwrap();
    let msg = Playbook::load(&p("site.yml")).unwrap_err().0;
    let expected_file = p("common.yml");
    assert!(
        msg.starts_with(&format!("{}:2:3: ", expected_file.display())),
        "{msg}"
    );
    let _ = Path::new("");
}

#[test]
fn unknown_names_under_args_are_refused_at_the_task() {
    let text = "- hosts: all\n  tasks:\n    - name: init\n      args: {creats: /x}\n      shell: touch /x\n";
    let msg = err_of("p.yml", text);
    assert!(msg.starts_with("p.yml:3:7: "), "{msg}");
    assert!(
        msg.contains("unknown argument 'creats' in args for module 'shell'"),
        "{msg}"
    );
}

#[test]
fn become_keywords_are_read_at_play_include_and_task_level() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inc.yml"),
        "- {command: id}\n- {command: id, become: false}\n",
    )
    .unwrap();
    let text = "\
- hosts: all
  become: true
  become_user: ops
  gather_facts: yes
  tasks:
    - command: id
    - command: id
      become_user: nobody
      become_method: sudo
    - import_tasks: inc.yml
      become_user: \"{{ who }}\"
";
    let path = dir.path().join("site.yml");
    std::fs::write(&path, text).unwrap();
    let pb = Playbook::load(&path).unwrap();
    let play = &pb.plays[0];
    assert!(play.gather_facts);
    assert_eq!(play.escalation.enabled, Some(Value::Bool(true)));
    assert_eq!(play.escalation.user.as_deref(), Some("ops"));
    let t = &play.tasks;
    assert!(t[0].escalation.is_empty());
    assert_eq!(t[1].escalation.user.as_deref(), Some("nobody"));
    assert_eq!(t[1].escalation.method.as_deref(), Some("sudo"));
    // The include's keyword reaches its tasks; a task's own keyword wins.
    assert_eq!(t[2].escalation.user.as_deref(), Some("{{ who }}"));
    assert_eq!(t[3].escalation.enabled, Some(Value::Bool(false)));
    assert_eq!(t[3].escalation.user.as_deref(), Some("{{ who }}"));
    let effective = t[3].escalation.over(&play.escalation);
    assert_eq!(effective.enabled, Some(Value::Bool(false)));
    assert_eq!(effective.user.as_deref(), Some("{{ who }}"));
    assert_eq!(
        t[0].escalation.over(&play.escalation).user.as_deref(),
        Some("ops")
    );
}

#[test]
fn gather_facts_is_off_unless_asked() {
    let (_d, pb) = load("a.yml", "- hosts: all\n  tasks: []\n");
    assert!(!pb.unwrap().plays[0].gather_facts);
    let (_d, pb) = load(
        "b.yml",
        "- hosts: all\n  gather_facts: false\n  tasks: []\n",
    );
    assert!(!pb.unwrap().plays[0].gather_facts);
}

#[test]
fn bad_become_values_are_reported_where_they_are() {
    let msg = err_of("p.yml", "- hosts: all\n  become: sometimes\n  tasks: []\n");
    assert!(msg.starts_with("p.yml:2:11: "), "{msg}");
    let msg = err_of(
        "p.yml",
        "- hosts: all\n  tasks:\n    - command: id\n      become_method: su\n",
    );
    assert!(
        msg.starts_with("p.yml:4:22: ") && msg.contains("expected one of: sudo"),
        "{msg}"
    );
    let msg = err_of(
        "p.yml",
        "- hosts: all\n  become_user: {name: x}\n  tasks: []\n",
    );
    assert!(msg.starts_with("p.yml:2:16: "), "{msg}");
}
