//! The playbook language as ansible-playbook reads it: `key=value` arguments, free-form
//! `command`/`shell` options, `block`/`rescue`/`always`, YAML 1.1 booleans, Ansible's
//! filters, tests and lookups, and roles. Local fleet (`zdm_testkit::local_fleet`), no sandbox needed.

use zdm_testkit::{local_fleet::LocalFleet, run::recap_stat, run::statuses};

/// The `msg` each host's result of task `name` carried, from a `--output json` document.
fn msg(doc: &serde_json::Value, task: &str, host: &str) -> String {
    for play in doc["plays"].as_array().unwrap() {
        for t in play["tasks"].as_array().unwrap() {
            if t["name"] == task {
                return t["hosts"][host]["msg"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no msg for {task} on {host}: {t}"))
                    .to_string();
            }
        }
    }
    panic!("no task '{task}' in {doc}");
}

#[test]
fn key_value_arguments_and_free_form_command_options() {
    let fleet = LocalFleet::new();
    fleet.write_playbook(
        "kv.yml",
        r#"
- hosts: h1
  tasks:
    - file: path=/work state=directory mode=0750
    - name: touch once
      command: touch made chdir=/work creates=/work/made
    - name: quoted words stay whole
      shell: printf '%s' "a  b" > out.txt chdir=/work
    - name: say
      debug: msg="hello {{ 'x y' | upper }}"
"#,
    );
    let first = fleet.run(&["playbooks/kv.yml", "--output", "json"]);
    first.assert_code(0);
    let doc = first.json();
    assert_eq!(msg(&doc, "say", "h1"), "hello X Y");
    let dir = fleet.host_file("h1", "/work");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o750
    );
    assert!(dir.join("made").exists(), "chdir= was not applied");
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        "a  b"
    );
    // creates= is honoured: the second run does not run the command.
    let second = fleet.run(&["playbooks/kv.yml", "--output", "json"]);
    second.assert_code(0);
    let statuses = statuses(&second.json());
    let touch = statuses.iter().find(|s| s.0 == "touch once").unwrap();
    assert_eq!(touch.2, "ok", "{statuses:?}");
    // The key=value form is checked like the mapping form, before anything runs.
    fleet.write_playbook(
        "bad.yml",
        "- hosts: h1\n  tasks:\n    - file: path=/x bogus=1\n",
    );
    let bad = fleet.run(&["playbooks/bad.yml"]);
    bad.assert_code(4);
    assert!(
        bad.stderr.contains("bad.yml:3:") && bad.stderr.contains("unknown argument 'bogus'"),
        "{}",
        bad.all()
    );
    fleet.write_playbook(
        "bad2.yml",
        "- hosts: h1\n  tasks:\n    - debug: msg=hi stray\n",
    );
    let bad = fleet.run(&["playbooks/bad2.yml"]);
    bad.assert_code(4);
    assert!(
        bad.stderr.contains("'stray' is not key=value"),
        "{}",
        bad.all()
    );
}

#[test]
fn block_rescue_always_with_keywords_on_the_block() {
    let fleet = LocalFleet::new();
    fleet.write_playbook(
        "block.yml",
        r#"
- hosts: fleet
  tasks:
    - name: guarded
      when: inventory_hostname != 'h3'
      vars: {word: from-block}
      block:
        - name: may fail
          command: "false"
          when: inventory_hostname == 'h1'
        - name: after
          debug: msg="{{ word }}"
      rescue:
        - name: rescue it
          debug: msg=rescued
      always:
        - name: always runs
          debug: msg=always
    - name: unrescued
      block:
        - name: boom
          fail: msg=boom
          when: inventory_hostname == 'h2'
      always:
        - name: always two
          debug: msg=always2
    - name: last
      debug: msg=end
"#,
    );
    let run = fleet.run(&["playbooks/block.yml", "--output", "json"]);
    // h2's failure was not rescued: the run reports a failed host.
    run.assert_code(2);
    let doc = run.json();
    assert_eq!(
        msg(&doc, "after", "h2"),
        "from-block",
        "block vars reach its tasks"
    );
    assert_eq!(msg(&doc, "rescue it", "h1"), "rescued");
    assert!(doc["plays"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "rescue it")
        .unwrap()["hosts"]
        .get("h2")
        .is_none());
    for h in ["h1", "h2"] {
        assert_eq!(msg(&doc, "always runs", h), "always");
        assert_eq!(
            msg(&doc, "always two", h),
            "always2",
            "always runs after a failure too"
        );
    }
    // h3 skipped the guarded block (its `when`), then went on.
    assert_eq!(msg(&doc, "last", "h3"), "end");
    assert_eq!(msg(&doc, "last", "h1"), "end", "a rescued host goes on");
    let last = doc["plays"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "last")
        .unwrap();
    assert!(last["hosts"].get("h2").is_none(), "a failed host stops");
    // The recap as ansible-playbook's: rescued, not failed.
    assert_eq!(recap_stat(&doc, "h1", "failed"), 0);
    assert_eq!(recap_stat(&doc, "h1", "rescued"), 1);
    assert_eq!(recap_stat(&doc, "h2", "failed"), 1);
    assert_eq!(recap_stat(&doc, "h2", "rescued"), 0);
    // A keyword that makes no sense on a block is refused at load time.
    fleet.write_playbook(
        "badblock.yml",
        "- hosts: h1\n  tasks:\n    - block:\n        - debug: msg=x\n      register: r\n",
    );
    let bad = fleet.run(&["playbooks/badblock.yml"]);
    bad.assert_code(4);
    assert!(
        bad.stderr.contains("'register' on a block"),
        "{}",
        bad.all()
    );
}

#[test]
fn yaml_1_1_booleans_in_playbooks_inventories_and_vars_files() {
    let fleet = LocalFleet::new();
    std::fs::write(
        fleet.path("inventory/flags.yml"),
        "fleet:\n  vars:\n    from_inventory: yes\n    quoted_inventory: \"no\"\n",
    )
    .unwrap();
    std::fs::write(fleet.path("playbooks/flags_vars.yml"), "from_file: Off\n").unwrap();
    fleet.write_playbook(
        "flags.yml",
        r#"
- hosts: h1
  gather_facts: no
  vars_files: [flags_vars.yml]
  vars:
    from_play: on
    quoted: "yes"
  tasks:
    - name: show
      debug:
        msg: "{{ from_inventory is sameas true }} {{ quoted_inventory }} {{ from_file is sameas false }} {{ from_play is sameas true }} {{ quoted }}"
    - name: never
      debug: msg=x
      when: NO
"#,
    );
    let run = fleet.run(&["playbooks/flags.yml", "--output", "json"]);
    run.assert_code(0);
    let doc = run.json();
    assert_eq!(msg(&doc, "show", "h1"), "True no True True yes");
    let st = statuses(&doc);
    assert!(
        st.iter().any(|s| s.0 == "never" && s.2 == "skipped"),
        "{st:?}"
    );
}

#[test]
fn ansible_filters_tests_lookups_omit_and_defaults_of_undefined_parents() {
    let fleet = LocalFleet::new();
    std::fs::write(fleet.path("playbooks/files/note.txt"), "from a file\n").unwrap();
    fleet.write_playbook(
        "filters.yml",
        r#"
- hosts: h1
  vars:
    d: {a: 1, b: 2}
  tasks:
    - {name: chain, debug: {msg: "{{ nothere.attr.deeper | default('dflt') }}"}}
    - {name: env, debug: {msg: "{{ lookup('env', 'HOME') }}|{{ lookup('env', 'ZDM_TEST_NEVER_SET') }}"}}
    - {name: file, debug: {msg: "{{ lookup('file', 'note.txt') }}"}}
    - {name: search, debug: {msg: "{{ 'abc123def45' | regex_search('[0-9]+') }}"}}
    - {name: findall, debug: {msg: "{{ 'abc123def45' | regex_findall('[0-9]+') | join(',') }}"}}
    - {name: items, debug: {msg: "{{ d | dict2items | map(attribute='key') | join(',') }}={{ (d | dict2items | items2dict)['b'] }}"}}
    - {name: lists, debug: {msg: "{{ [1, [2, [3, none]]] | flatten | join(',') }} {{ [3, 1, 3] | unique | join(',') }} {{ [1, 2, 3] | difference([2]) | join(',') }} {{ [1, 2] | zip(['a', 'b']) | map('join', '') | join(',') }}"}}
    - {name: hash, debug: {msg: "{{ 'pw' | password_hash('sha512', 'saltsalt', rounds=5000) }}"}}
    - {name: tests, debug: {msg: "{{ 'abc' is match('ab') }} {{ 'abc' is match('bc') }} {{ 'abc' is search('bc') }} {{ '2.10' is version('2.9', '>') }}"}}
    - {name: now, debug: {msg: "{{ now().year >= 2024 }} {{ now(fmt='%Y') | int >= 2024 }}"}}
    - name: omitted mode
      copy: {content: "x\n", dest: /omit.txt, mode: "{{ no_such_mode | default(omit) }}"}
"#,
    );
    let run = fleet.run(&["playbooks/filters.yml", "--output", "json"]);
    run.assert_code(0);
    let doc = run.json();
    let m = |t: &str| msg(&doc, t, "h1");
    assert_eq!(m("chain"), "dflt");
    assert_eq!(m("env"), format!("{}|", std::env::var("HOME").unwrap()));
    assert_eq!(m("file"), "from a file");
    assert_eq!(m("search"), "123");
    assert_eq!(m("findall"), "123,45");
    assert_eq!(m("items"), "a,b=2");
    assert_eq!(m("lists"), "1,2,3 3,1 1,3 1a,2b");
    // The same string passlib (ansible-core's password_hash) gives.
    assert_eq!(
        m("hash"),
        "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/"
    );
    assert_eq!(m("tests"), "True False True True");
    assert_eq!(m("now"), "True True");
    assert!(fleet.host_file("h1", "/omit.txt").exists());
    // Strictness is kept elsewhere: an undefined parent without default is an error.
    fleet.write_playbook(
        "strict.yml",
        "- hosts: h1\n  tasks:\n    - debug: {msg: \"{{ nothere.attr }}\"}\n",
    );
    fleet.run(&["playbooks/strict.yml"]).assert_code(2);
}

#[test]
fn roles_with_the_standard_layout_beside_the_playbook_and_in_roles_path() {
    let fleet = LocalFleet::new();
    let role = fleet.path("playbooks/roles/web");
    for d in ["tasks", "handlers", "defaults", "vars", "templates"] {
        std::fs::create_dir_all(role.join(d)).unwrap();
    }
    std::fs::write(
        role.join("tasks/main.yml"),
        "- name: web task\n  debug: msg=\"port={{ web_port }} color={{ color }} param={{ param }}\"\n\
         - name: render\n  template: src=page.j2 dest=/page.txt\n  notify: web handler\n",
    )
    .unwrap();
    std::fs::write(
        role.join("tasks/other.yml"),
        "- name: other task\n  debug: msg=other-{{ color }}\n",
    )
    .unwrap();
    std::fs::write(
        role.join("handlers/main.yml"),
        "- name: web handler\n  debug: msg=handled\n",
    )
    .unwrap();
    std::fs::write(role.join("defaults/main.yml"), "web_port: 80\ncolor: red\n").unwrap();
    std::fs::write(role.join("vars/main.yml"), "color: blue\n").unwrap();
    std::fs::write(role.join("templates/page.j2"), "page {{ web_port }}\n").unwrap();
    // A second role in a roles_path directory named by ./ansible.cfg.
    let shared = fleet.path("shared-roles/shared/tasks");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(
        shared.join("main.yml"),
        "- name: shared task\n  command: \"true\"\n  notify: shared handler\n",
    )
    .unwrap();
    let shared_handlers = fleet.path("shared-roles/shared/handlers");
    std::fs::create_dir_all(&shared_handlers).unwrap();
    std::fs::write(
        shared_handlers.join("main.yml"),
        "- name: shared handler\n  debug: msg=shared-handled\n",
    )
    .unwrap();
    std::fs::write(
        fleet.path("ansible.cfg"),
        "[defaults]\nroles_path = shared-roles\n",
    )
    .unwrap();
    fleet.write_playbook(
        "roles.yml",
        r#"
- hosts: h1
  vars:
    web_port: 8080
  roles:
    - role: web
      param: p1
  tasks:
    - include_role: name=web tasks_from=other
    - import_role:
        name: shared
"#,
    );
    let run = fleet.run(&["playbooks/roles.yml", "--output", "json"]);
    run.assert_code(0);
    let doc = run.json();
    // Play vars over role defaults, role vars over both, role parameters reach the tasks.
    assert_eq!(msg(&doc, "web task", "h1"), "port=8080 color=blue param=p1");
    assert_eq!(msg(&doc, "other task", "h1"), "other-blue");
    // import_role brings the role's handlers into the play.
    assert_eq!(msg(&doc, "shared handler", "h1"), "shared-handled");
    assert_eq!(msg(&doc, "web handler", "h1"), "handled");
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/page.txt")).unwrap(),
        "page 8080\n"
    );
    fleet.write_playbook("norole.yml", "- hosts: h1\n  roles: [nosuch]\n");
    let bad = fleet.run(&["playbooks/norole.yml"]);
    bad.assert_code(4);
    assert!(
        bad.stderr.contains("role 'nosuch' not found"),
        "{}",
        bad.all()
    );
}

/// The hosts that have a result for task `name` in play `play` (a `serial` play repeats the
/// task once per batch), with their status.
fn results_of(doc: &serde_json::Value, play: usize, name: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in doc["plays"][play]["tasks"].as_array().unwrap() {
        if t["name"] == name {
            for (h, r) in t["hosts"].as_object().unwrap() {
                out.push((h.clone(), r["status"].as_str().unwrap().to_string()));
            }
        }
    }
    out
}

#[test]
fn meta_end_host_takes_a_host_out_of_the_play_without_failing_it() {
    let fleet = LocalFleet::new();
    fleet.write_playbook(
        "end.yml",
        r#"
- hosts: fleet
  serial: 1
  max_fail_percentage: 0
  any_errors_fatal: true
  tasks:
    - name: guarded
      block:
        - name: pass over h2
          meta: end_host
          when: inventory_hostname == 'h2'
      rescue:
        - name: rescue it
          debug: msg=rescued
    - name: rest of the play
      debug: msg=rest
- hosts: fleet
  tasks:
    - name: next play
      debug: msg=next
"#,
    );
    let run = fleet.run(&["playbooks/end.yml", "--output", "json"]);
    run.assert_code(0);
    let doc = run.json();
    let own = |s: &[(&str, &str)]| -> Vec<(String, String)> {
        s.iter()
            .map(|(h, st)| (h.to_string(), st.to_string()))
            .collect()
    };
    assert_eq!(
        results_of(&doc, 0, "pass over h2"),
        own(&[("h1", "skipped"), ("h2", "ok"), ("h3", "skipped")])
    );
    // h2 left the play: no later task of it ran there, no rescue ran for it, and neither the
    // zero-failure policy nor any_errors_fatal tripped (h3's batch still ran).
    assert_eq!(
        results_of(&doc, 0, "rest of the play"),
        own(&[("h1", "ok"), ("h3", "ok")])
    );
    assert!(results_of(&doc, 0, "rescue it").is_empty(), "{doc}");
    // The next play has it again.
    assert_eq!(
        results_of(&doc, 1, "next play"),
        own(&[("h1", "ok"), ("h2", "ok"), ("h3", "ok")])
    );
    assert_eq!(recap_stat(&doc, "h2", "failed"), 0);
    // An unknown meta action is still refused before anything runs.
    fleet.write_playbook(
        "badmeta.yml",
        "- hosts: h1\n  tasks:\n    - meta: end_everything\n",
    );
    let bad = fleet.run(&["playbooks/badmeta.yml"]);
    bad.assert_code(4);
    assert!(bad.all().contains("end_host"), "{}", bad.all());
}
