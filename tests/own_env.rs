//! zdm-run's own environment variables do not reach zdm-proxy (issue 15, item 5): they are
//! named `ZDMRUN_*`, the old `ZDM_*` names still work with a deprecation warning and are kept
//! out of the commands zdm-run starts, so `validate: zdm-proxy --check-config %s` works on a
//! local fleet, while zdm-proxy itself still refuses a `ZDM_*` variable it does not know.

use zdm_testkit::{binaries::proxy_binary, local_fleet::LocalFleet};

/// zdm-run in the fleet's directory with no `ZDM_*`/`ZDMRUN_*` variable but `env` (a developer's
/// shell may export some, e.g. `ZDM_TEST_THREADS`, which a proxy would rightly refuse).
fn zdm_run(fleet: &LocalFleet, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_zdm-run"));
    c.current_dir(fleet.dir.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("ZDM_") || k.starts_with("ZDMRUN_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run zdm-run")
}

fn validate_playbook(proxy: &str, extra_setting: &str) -> String {
    format!(
        r#"
- hosts: h1
  tasks:
    - name: write a proxy config checked by the proxy
      copy:
        content: |
          origin_contact_points: 10.0.0.1
          target_contact_points: 10.0.0.2
          {extra_setting}
        dest: /zdm-proxy.yml
        mode: "0600"
        validate: "{proxy} --check-config --config %s"
    - name: the command environment has the new name only
      shell: 'test -n "$ZDMRUN_LOCAL_ROOT" && test -z "$ZDM_INVENTORY$ZDM_LOG"'
"#
    )
}

#[test]
fn a_local_fleet_validates_a_proxy_config_with_zdm_proxy_despite_zdm_runs_own_variables() {
    let fleet = LocalFleet::new();
    let proxy = proxy_binary();
    let proxy = proxy.to_str().unwrap();
    let pb = fleet.write_playbook("validate.yml", &validate_playbook(proxy, "log_level: INFO"));
    // The old names set in zdm-run's environment, as an operator's shell may still have them.
    let run = zdm_run(
        &fleet,
        &[pb.to_str().unwrap()],
        &[("ZDM_INVENTORY", "inventory"), ("ZDM_LOG", "zdm_run=warn")],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        std::fs::read_to_string(fleet.host_file("h1", "/zdm-proxy.yml"))
            .unwrap()
            .contains("log_level: INFO")
    );
    for old in ["ZDM_INVENTORY", "ZDM_LOG"] {
        assert!(
            stderr.contains(&format!(
                "[DEPRECATION WARNING]: the environment variable {old} is deprecated"
            )) && stderr.contains(&format!("use ZDMRUN_{}", &old[4..])),
            "{stderr}"
        );
    }

    // The validation really runs the proxy: a misspelt setting is refused, named, and the
    // file is not written.
    let pb = fleet.write_playbook("bad.yml", &validate_playbook(proxy, "log_levl: INFO"));
    let run = zdm_run(&fleet, &["-i", "inventory", pb.to_str().unwrap()], &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("unknown setting `log_levl`; did you mean `log_level`?"),
        "{stdout}"
    );
    assert!(
        !std::fs::read_to_string(fleet.host_file("h1", "/zdm-proxy.yml"))
            .unwrap()
            .contains("log_levl")
    );
}

#[test]
fn the_new_inventory_variable_needs_no_warning_and_zdm_proxy_refuses_unknown_zdm_variables() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook("hi.yml", "- hosts: h1\n  tasks:\n    - debug: {msg: hi}\n");
    let run = zdm_run(
        &fleet,
        &[pb.to_str().unwrap()],
        &[("ZDMRUN_INVENTORY", "inventory")],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok: [h1] => hi"), "{stdout}");
    assert!(!String::from_utf8_lossy(&run.stderr).contains("DEPRECATION"));

    let mut proxy = std::process::Command::new(proxy_binary());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ZDM_")) {
        proxy.env_remove(k);
    }
    let out = proxy
        .arg("--check-config")
        .env("ZDM_ORIGIN_CONTACT_POINTS", "10.0.0.1")
        .env("ZDM_TARGET_CONTACT_POINTS", "10.0.0.2")
        .env("ZDM_LOCAL_ROOT", "/tmp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable ZDM_LOCAL_ROOT: unknown setting `local_root`"),
        "{err}"
    );
}
