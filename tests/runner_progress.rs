//! What a run shows while it works: a spinner per host on a terminal (a real pseudo-terminal
//! from `script`), plain lines in a log, secrets masked on both. Local fleet (`zdm_testkit::local_fleet`), no
//! sandbox.

use zdm_testkit::local_fleet::{LocalFleet, DB_PASSWORD, HOSTS};

/// On a terminal every host gets a spinner (indicatif, redrawn with escape sequences) while its
/// task runs; in a log the same run is plain lines only. Masking holds on both.
#[test]
fn spinners_per_host_on_a_terminal_plain_lines_otherwise() {
    let fleet = LocalFleet::new();
    fleet.write_playbook(
        "progress.yml",
        r#"
- hosts: fleet
  tasks:
    - name: a slow step
      command: sleep 1
      changed_when: false
    - name: show the password
      debug: {msg: "password is {{ db_password }}"}
"#,
    );

    let plain = fleet.run(&["playbooks/progress.yml"]);
    plain.assert_code(0);
    assert!(
        !plain.stdout.contains('\u{1b}'),
        "terminal escapes in a log:\n{}",
        plain.stdout
    );
    for h in HOSTS {
        assert!(
            plain.stdout.contains(&format!("ok: [{h}]")),
            "{}",
            plain.stdout
        );
    }
    assert!(plain.stdout.contains("PLAY RECAP"), "{}", plain.stdout);

    // `script` (util-linux/bsdutils) runs zdm-run on a real pseudo-terminal.
    let out = std::process::Command::new("script")
        .current_dir(fleet.dir.path())
        .env_remove("ZDM_INVENTORY")
        .args([
            "-qec",
            &format!(
                "{} -i inventory playbooks/progress.yml",
                env!("CARGO_BIN_EXE_zdm-run")
            ),
            "/dev/null",
        ])
        .output()
        .expect("run script (util-linux) to get a pseudo-terminal");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{tty}");
    assert!(
        tty.contains('\u{1b}'),
        "no spinner drawn on a terminal:\n{tty}"
    );
    for h in HOSTS {
        assert!(
            tty.contains(&format!("{h}: a slow step")),
            "no spinner line for {h}:\n{tty}"
        );
    }
    assert!(tty.contains("PLAY RECAP"), "{tty}");
    assert!(
        !tty.contains(DB_PASSWORD),
        "the password reached the terminal:\n{tty}"
    );
    assert!(tty.contains("password is ********"), "{tty}");
}
