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
    assert_eq!(play.max_fail_percentage, Some(Number::Fixed(0.0)));
    assert_eq!(play.any_errors_fatal, Flag::Fixed(true));
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

#[test]
fn import_playbook_beside_other_keys_is_refused_at_the_key() {
    let msg = err_of(
        "site.yml",
        "- hosts: all\n  tasks: []\n- import_playbook: other.yml\n  vars: {a: 1}\n",
    );
    assert_eq!(
        msg,
        "site.yml:4:3: 'vars' beside import_playbook: an import_playbook entry takes no other \
         keys than name (put them on the imported plays)"
    );
    let (_d, pb) = load_tree(&[
        ("other.yml", "- hosts: all\n  tasks: []\n"),
        (
            "site.yml",
            "- name: phase one\n  import_playbook: other.yml\n",
        ),
    ]);
    assert_eq!(
        pb.unwrap().plays.len(),
        1,
        "a name beside import_playbook is a label"
    );
}

#[test]
fn notify_naming_no_handler_is_refused_at_the_name() {
    let text = "\
- hosts: all
  tasks:
    - name: render
      debug: {msg: x}
      notify: [restart, reload]
  handlers:
    - name: restart
      debug: {msg: r}
      notify: resart
";
    let msg = err_of("p.yml", text);
    assert_eq!(
        msg,
        "p.yml:5:25: task 'render' notifies 'reload', which is no handler's name or listen topic"
    );
    // A handler notifying a misspelt handler is found too, at its value.
    let msg = err_of("p.yml", &text.replace("[restart, reload]", "restart"));
    assert_eq!(
        msg,
        "p.yml:9:15: task 'restart' notifies 'resart', which is no handler's name or listen topic"
    );
}

/// Writes `files` into a fresh directory and loads `site.yml`.
fn load_tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Playbook, PlaybookError>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let r = Playbook::load(&dir.path().join("site.yml"));
    (dir, r)
}

#[test]
fn include_passes_vars_and_execution_keywords_to_its_tasks() {
    let (_d, pb) = load_tree(&[
        (
            "shared.yml",
            "- debug: {msg: \"{{ who }}\"}\n  vars: {own: 2, who: inner}\n- command: id\n  no_log: false\n  notify: b\n",
        ),
        (
            "site.yml",
            "\
- hosts: all
  tasks:
    - import_tasks: shared.yml
      vars: {who: outer, from_include: 1}
      no_log: \"{{ hide }}\"
      ignore_errors: true
      run_once: yes
      check_mode: false
      delegate_to: localhost
      notify: a
  handlers:
    - {name: a, debug: {msg: a}}
    - {name: b, debug: {msg: b}}
",
        ),
    ]);
    let pb = pb.unwrap();
    let t = &pb.plays[0].tasks;
    assert_eq!(t.len(), 2);
    // The include's vars are under the task's own (both are task vars).
    assert_eq!(t[0].vars["who"], "inner");
    assert_eq!(t[0].vars["own"], 2);
    assert_eq!(t[0].vars["from_include"], 1);
    assert_eq!(t[1].vars["who"], "outer");
    match &t[0].no_log {
        Flag::Template(tpl) => {
            assert_eq!(tpl.expr, "{{ hide }}");
            assert_eq!(tpl.keyword, "no_log");
            assert!(tpl.at.ends_with("site.yml:5:15"), "{}", tpl.at);
        }
        other => panic!("no_log not inherited: {other:?}"),
    }
    assert_eq!(
        t[1].no_log,
        Flag::Fixed(false),
        "the task's own keyword wins"
    );
    for task in t {
        assert_eq!(task.ignore_errors, Flag::Fixed(true));
        assert_eq!(task.run_once, Flag::Fixed(true));
        assert_eq!(task.check_mode, Some(Flag::Fixed(false)));
        assert_eq!(task.delegate_to.as_deref(), Some("localhost"));
    }
    assert_eq!(t[0].notify, ["a"]);
    assert_eq!(t[1].notify, ["b", "a"]);
}

#[test]
fn keywords_without_meaning_on_an_include_are_refused_at_the_key() {
    for (key, line) in [
        ("register: out", "register"),
        ("loop: [1, 2]", "loop"),
        ("changed_when: false", "changed_when"),
    ] {
        let (d, r) = load_tree(&[
            ("shared.yml", "- debug: {msg: x}\n"),
            (
                "site.yml",
                &format!("- hosts: all\n  tasks:\n    - include_tasks: shared.yml\n      {key}\n"),
            ),
        ]);
        let msg = r.unwrap_err().0;
        let msg = msg.replace(&format!("{}/", d.path().display()), "");
        assert!(
            msg.starts_with(&format!("site.yml:4:7: '{line}' on include_tasks: ")),
            "{msg}"
        );
    }
}

#[test]
fn templated_policy_and_task_keywords_are_kept_with_their_position() {
    let text = "\
- hosts: all
  any_errors_fatal: \"{{ strict }}\"
  max_fail_percentage: \"{{ pct }}\"
  tasks:
    - command: id
      run_once: \"{{ once }}\"
      check_mode: \"{{ dry }}\"
";
    let (_d, pb) = load("p.yml", text);
    let play = &pb.unwrap().plays[0];
    let at = |f: &Flag| match f {
        Flag::Template(t) => t.at.rsplit('/').next().unwrap().to_string(),
        other => panic!("not kept as a template: {other:?}"),
    };
    assert_eq!(at(&play.any_errors_fatal), "p.yml:2:21");
    match &play.max_fail_percentage {
        Some(Number::Template(t)) => assert!(t.at.ends_with("p.yml:3:24"), "{}", t.at),
        other => panic!("{other:?}"),
    }
    assert_eq!(at(&play.tasks[0].run_once), "p.yml:6:17");
    assert_eq!(at(play.tasks[0].check_mode.as_ref().unwrap()), "p.yml:7:19");
}

#[test]
fn a_broken_templated_keyword_is_found_before_the_run_at_its_position() {
    let text = "\
- hosts: all
  any_errors_fatal: \"{{ strict }}\"
  tasks:
    - command: id
      no_log: \"{{ hide ) }}\"
";
    let (d, pb) = load("p.yml", text);
    let msg = preflight(&pb.unwrap(), &crate::template::Templar::new())
        .unwrap_err()
        .0;
    let msg = msg.replace(&format!("{}/", d.path().display()), "");
    assert!(msg.starts_with("p.yml:5:15: no_log: "), "{msg}");
    let (_d, pb) = load("q.yml", &text.replace("{{ hide ) }}", "{{ hide }}"));
    preflight(&pb.unwrap(), &crate::template::Templar::new()).unwrap();
}
