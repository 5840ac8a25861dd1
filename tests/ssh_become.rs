//! `become`, `become_user` and `become_method` against the sandbox's real sshd and sudo: the
//! playbook logs in as the unprivileged operator account `zdmops` (created by
//! `scripts/sandbox.sh up`, or `users` on a sandbox started before it existed), and commands run
//! as whom the keywords say, through `sudo -n`.

use std::process::Command;
use zdm_testkit::{locks::FAULTS, run::zdm_run_in, Lock, Run, Sandbox};

const OPS_USER: &str = "zdmops";

/// The sandbox must have the operator account; say how to add it when it has not.
fn require_ops_user(sb: &Sandbox) {
    let out = Command::new("ssh")
        .args(["-F", sb.get("SANDBOX_SSH_CONFIG"), "-o", "BatchMode=yes"])
        .arg(format!("{OPS_USER}@zdm-h1"))
        .args(["sudo", "-n", "true"])
        .output()
        .expect("run ssh");
    assert!(
        out.status.success(),
        "the become tests log in as '{OPS_USER}' and need passwordless sudo on the sandbox hosts; \
         add the account with `scripts/sandbox.sh users` ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn zdm_run(sb: &Sandbox, dir: &std::path::Path, book: &str, extra: &[&str]) -> Run {
    std::fs::write(dir.join("site.yml"), book).unwrap();
    let args: Vec<&str> = std::iter::once("site.yml")
        .chain(extra.iter().copied())
        .collect();
    zdm_run_in(sb, dir, &args)
}

/// Every play logs in as the operator account (a play variable, like an inventory would).
const PLAYS: &str = r#"
- name: keywords on tasks
  hosts: zdm-h1
  vars: {ansible_user: zdmops}
  tasks:
    - {name: plain, command: id -un, register: plain}
    - {name: as root, command: id -un, become: true, register: as_root}
    - name: as nobody
      command: id -un
      become: true
      become_user: nobody
      become_method: sudo
      register: as_nobody
    - name: root can read what zdmops cannot
      command: head -c 0 /etc/sudoers
      become: "{{ 1 == 1 }}"
      register: sudoers
    - debug:
        msg: "RESULT plain={{ plain.stdout }} root={{ as_root.stdout }} nobody={{ as_nobody.stdout }} sudoers_rc={{ sudoers.rc }}"
      when: not ansible_check_mode

- name: keywords on the play
  hosts: zdm-h1
  become: true
  vars: {ansible_user: zdmops}
  tasks:
    - {name: play level, command: id -un, register: play_level}
    - {name: task turns it off, command: id -un, become: false, register: task_off}
    - {name: task picks the user, command: id -un, become_user: nobody, register: task_user}
    - debug:
        msg: "RESULT play={{ play_level.stdout }} off={{ task_off.stdout }} user={{ task_user.stdout }}"
      when: not ansible_check_mode

- name: a connection variable wins over the keyword, as in Ansible
  hosts: zdm-h1
  vars: {ansible_user: zdmops, ansible_become: false}
  tasks:
    - {name: keyword under a variable, command: id -un, become: true, register: var_wins}
    - debug:
        msg: "RESULT var_wins={{ var_wins.stdout }}"
      when: not ansible_check_mode
"#;

#[test]
fn become_keywords_run_commands_as_root_or_another_user_through_sudo() {
    let waited = std::time::Instant::now();
    // Shared: no host is cut while this runs.
    let _faults = Lock::shared(FAULTS);
    eprintln!("fault lock (shared) after {:.1?}", waited.elapsed());
    let started = std::time::Instant::now();
    let sb = Sandbox::load();
    require_ops_user(&sb);
    let work = tempfile::tempdir().unwrap();

    let run = zdm_run(&sb, work.path(), PLAYS, &[]);
    assert_eq!(run.code, 0, "{}", run.out);
    for want in [
        "RESULT plain=zdmops root=root nobody=nobody sudoers_rc=0",
        "RESULT play=root off=zdmops user=nobody",
        "RESULT var_wins=zdmops",
    ] {
        assert!(run.out.contains(want), "expected '{want}' in:\n{}", run.out);
    }

    // Without become the operator cannot read /etc/sudoers (0440 root): the escalation above
    // was real, not a command that works for anyone.
    let denied = zdm_run(
        &sb,
        work.path(),
        "- hosts: zdm-h1\n  vars: {ansible_user: zdmops}\n  tasks:\n\
         \x20   - {command: head -c 0 /etc/sudoers, register: r, failed_when: false}\n\
         \x20   - debug: {msg: \"RESULT denied_rc={{ r.rc }} {{ r.stderr }}\"}\n",
        &[],
    );
    assert_eq!(denied.code, 0, "{}", denied.out);
    assert!(
        denied.out.contains("RESULT denied_rc=1") && denied.out.contains("Permission denied"),
        "{}",
        denied.out
    );

    // The plan tells as whom each command would run, and runs nothing.
    let check = zdm_run(&sb, work.path(), PLAYS, &["--check"]);
    assert_eq!(check.code, 0, "{}", check.out);
    let plan: Vec<&str> = check
        .out
        .lines()
        .filter(|l| l.starts_with("would run: [zdm-h1]"))
        .collect();
    let with = |suffix: &str| plan.iter().filter(|l| l.ends_with(suffix)).count();
    assert_eq!(plan.len(), 8, "eight commands in the plan:\n{}", check.out);
    assert_eq!(
        with("run: id -un"),
        3,
        "plain, off, variable wins: {plan:#?}"
    );
    assert_eq!(with("(become root via sudo)"), 3, "{plan:#?}");
    assert_eq!(with("(become nobody via sudo)"), 2, "{plan:#?}");
    assert!(!check.out.contains("RESULT"), "{}", check.out);
    eprintln!("become test ran {:.1?}", started.elapsed());
}

#[test]
fn invalid_become_values_are_refused_with_file_line_and_column() {
    let sb = Sandbox::load();
    let work = tempfile::tempdir().unwrap();
    for (book, pos, reason) in [
        (
            "- hosts: zdm-h1\n  become: perhaps\n  tasks: []\n",
            "site.yml:2:11:",
            "invalid value",
        ),
        (
            "- hosts: zdm-h1\n  tasks:\n    - command: id\n      become_method: su\n",
            "site.yml:4:22:",
            "expected one of: sudo",
        ),
        (
            "- hosts: zdm-h1\n  tasks:\n    - command: id\n      become_user: [a, b]\n",
            "site.yml:4:20:",
            "invalid type",
        ),
        (
            "- hosts: zdm-h1\n  tasks:\n    - command: id\n      become_usr: root\n",
            "site.yml:4:7:",
            "unknown module or task keyword 'become_usr'",
        ),
    ] {
        let run = zdm_run(&sb, work.path(), book, &[]);
        assert_eq!(run.code, 4, "{book}\n{}", run.out);
        assert!(
            run.out.contains(pos) && run.out.contains(reason),
            "expected {pos} ... {reason} for:\n{book}\ngot:\n{}",
            run.out
        );
    }
}
