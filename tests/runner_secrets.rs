//! Secrets never reach the output: passwords, `*_key` and `*secret*` variables are masked in
//! every output form, `no_log` (also templated, also on an include) hides a task's output, and a
//! file that holds a secret is made 0600. Masking after filters is `secret_forms.rs`. Local
//! fleet (`zdm_testkit::local_fleet`), no sandbox.

use std::os::unix::fs::PermissionsExt;

use zdm_testkit::local_fleet::{LocalFleet, DB_PASSWORD};

#[test]
fn secrets_never_appear_in_any_output() {
    let fleet = LocalFleet::new();
    let token = "tok-9f8e7d6c5b4a";
    let pb = fleet.write_playbook(
        "secrets.yml",
        r#"
- hosts: fleet
  vars:
    api_token: "{{ token_from_cli }}"
  tasks:
    - name: config with password
      copy:
        content: "user=app\npassword={{ db_password }}\n"
        dest: /secret.conf
    - name: echo the token (no_log)
      command: echo {{ api_token }} {{ db_password }}
      register: echoed
      no_log: true
    - name: show what was registered
      debug: {var: echoed.stdout}
    - name: fail with a secret in the message
      fail: {msg: "bad password {{ db_password }}"}
      ignore_errors: true
"#,
    );
    let pbs = pb.to_str().unwrap();
    let extra = format!("token_from_cli={token}");
    let runs = [
        fleet.run(&[pbs, "-e", &extra, "--check", "--diff", "-vv"]),
        fleet.run(&[pbs, "-e", &extra, "--check", "--diff", "--output", "json"]),
        fleet.run(&[pbs, "-e", &extra, "--diff", "-vv"]),
        fleet.run(&[pbs, "-e", &extra, "--diff", "--output", "json"]),
    ];
    for (i, r) in runs.iter().enumerate() {
        r.assert_code(0);
        let all = r.all();
        assert!(
            !all.contains(DB_PASSWORD),
            "run {i} leaked the password:\n{all}"
        );
        assert!(!all.contains(token), "run {i} leaked the token:\n{all}");
        assert!(all.contains("********"), "run {i} shows no mask:\n{all}");
    }
    assert!(runs[2].stdout.contains("no_log"), "{}", runs[2].stdout);
    // The file itself holds the real secret and is private.
    let f = fleet.host_file("h1", "/secret.conf");
    assert!(std::fs::read_to_string(&f).unwrap().contains(DB_PASSWORD));
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_file_that_gains_a_secret_becomes_private_and_backup_keeps_the_old_copy() {
    let fleet = LocalFleet::new();
    let f = fleet.host_file("h1", "/app.conf");
    std::fs::write(&f, "user=app\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pb = fleet.write_playbook(
        "gain.yml",
        r#"
- hosts: h1
  tasks:
    - copy:
        content: "user=app\npassword={{ db_password }}\n"
        dest: /app.conf
        backup: true
        validate: grep -q password= %s
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "--diff"]);
    run.assert_code(0);
    assert!(run.stdout.contains("+password=********"), "{}", run.stdout);
    assert!(run.stdout.contains("mode 0644 -> 0600"), "{}", run.stdout);
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let backups: Vec<_> = std::fs::read_dir(fleet.root("h1"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("app.conf.")
                && e.file_name().to_string_lossy().ends_with('~')
        })
        .collect();
    assert_eq!(backups.len(), 1, "one backup file");
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).unwrap(),
        "user=app\n"
    );
}

/// The message zdm-run shows instead of a `no_log` task's output.
const NO_LOG_SHOWN: &str = "the output has been hidden";

#[test]
fn templated_no_log_is_rendered_per_host_and_masks_when_true() {
    let fleet = LocalFleet::new();
    // `payload` is no secret-named variable: only no_log can hide it.
    let pb = fleet.write_playbook(
        "nolog.yml",
        r#"
- hosts: fleet
  vars:
    payload: "visible-payload-4711"
  tasks:
    - name: echo the payload
      command: echo {{ payload }}
      no_log: "{{ hide }}"
    - name: fail showing the payload
      fail: {msg: "failing with {{ payload }}"}
      no_log: "{{ hide }}"
      ignore_errors: true
"#,
    );
    let pbs = pb.to_str().unwrap();
    for args in [
        vec![pbs, "-e", "hide=true", "-vv"],
        vec![pbs, "-e", "hide=yes", "--output", "json"],
    ] {
        let run = fleet.run(&args);
        run.assert_code(0);
        let all = run.all();
        assert!(!all.contains("visible-payload-4711"), "leaked:\n{all}");
        assert!(all.contains(NO_LOG_SHOWN), "{all}");
    }
    // The same playbook with the template false shows the output: the check above can fail.
    let shown = fleet.run(&[pbs, "-e", "hide=false", "-vv"]);
    shown.assert_code(0);
    assert!(
        shown.stdout.contains("failing with visible-payload-4711"),
        "{}",
        shown.stdout
    );
    // A value that is no boolean fails the task, naming file, line, column and keyword, and
    // still shows nothing of the task.
    let bad = fleet.run(&[pbs, "-e", "hide=maybe", "-vv"]);
    bad.assert_code(2);
    assert!(
        bad.stdout
            .contains("nolog.yml:8:15: no_log: 'maybe' is not a boolean"),
        "{}",
        bad.stdout
    );
    assert!(!bad.all().contains("visible-payload-4711"), "{}", bad.all());
}

#[test]
fn include_vars_parameterise_a_shared_file_and_include_no_log_masks_its_tasks() {
    let fleet = LocalFleet::new();
    std::fs::write(
        fleet.path("playbooks/greet.yml"),
        "- copy: {content: \"{{ greeting }} {{ inventory_hostname }}\\n\", dest: \"/{{ file_name }}\"}\n\
         - command: echo {{ greeting }}\n",
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "inc.yml",
        r#"
- hosts: h1
  vars:
    greeting: play-level
  tasks:
    - include_tasks: greet.yml
      vars: {greeting: hello-included, file_name: hello.txt}
    - import_tasks: greet.yml
      vars: {greeting: quiet-included-4242, file_name: quiet.txt}
      no_log: true
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap(), "-vv"]);
    run.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/hello.txt")).unwrap(),
        "hello-included h1\n",
        "the include's vars win over play vars"
    );
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/quiet.txt")).unwrap(),
        "quiet-included-4242 h1\n"
    );
    assert!(run.stdout.contains("hello-included"), "{}", run.stdout);
    assert!(!run.all().contains("quiet-included-4242"), "{}", run.all());
    assert!(run.stdout.contains(NO_LOG_SHOWN), "{}", run.stdout);
}

#[test]
fn secrets_named_key_or_secret_are_masked_but_keyspace_names_are_not() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook(
        "keys.yml",
        r#"
- hosts: h1
  vars:
    ssh_private_key: "KEYVAL-abc123"
    client_secret_value: "SECVAL-xyz789"
    app_keyspace: "ks_visible_name"
  tasks:
    - debug: {msg: "{{ ssh_private_key }} {{ client_secret_value }} {{ app_keyspace }}"}
    - copy:
        content: "k={{ ssh_private_key }} s={{ client_secret_value }} ks={{ app_keyspace }}\n"
        dest: /keys.conf
"#,
    );
    let pbs = pb.to_str().unwrap();
    for args in [
        vec![pbs, "--check", "--diff", "-vv"],
        vec![pbs, "--diff", "--output", "json"],
    ] {
        let run = fleet.run(&args);
        run.assert_code(0);
        let all = run.all();
        assert!(!all.contains("KEYVAL-abc123"), "*_key leaked:\n{all}");
        assert!(!all.contains("SECVAL-xyz789"), "*secret* leaked:\n{all}");
        assert!(
            all.contains("ks_visible_name"),
            "keyspace names stay visible:\n{all}"
        );
        assert!(all.contains("********"), "{all}");
    }
}
