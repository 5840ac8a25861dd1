//! Variables: `-e` wins, loops register their results, variables built from templates resolve
//! (registered output is never templated again), `group_vars`/`host_vars` beside the playbook,
//! the precedence chain from the inventory to extra vars, and gathered facts. Local fleet
//! (`zdm_testkit::local_fleet`), no sandbox.

use std::collections::BTreeMap;

use zdm_testkit::local_fleet::LocalFleet;

#[test]
fn extra_vars_win_and_loops_register_results() {
    let fleet = LocalFleet::new();
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
fn variables_built_from_templates_resolve_and_registered_output_is_never_templated() {
    let fleet = LocalFleet::new();
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
fn play_level_gather_facts_makes_facts_variables_before_the_first_task() {
    let fleet = LocalFleet::new();
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

#[test]
fn group_vars_and_host_vars_beside_the_playbook_are_read() {
    let fleet = LocalFleet::new();
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
    let fleet = LocalFleet::new();
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
