//! The migration state through the zdm-run binary: phase order, --force-phase, the run lock,
//! the fact check against the fleet, a run that dies mid-phase, and `zdm-run status`.
//!
//! These need no cluster: `zdm_phase` only reads and writes the state file beside the
//! inventory, and `status` asks the proxies' readiness over HTTP (a small real HTTP server
//! stands in for a proxy, one closed port for a proxy that is down).

use std::time::{Duration, Instant};
use zdm_testkit::{
    fake_proxy::{closed_port, FakeProxy, ProxyBehaviour},
    run::task_result,
    workdir::Workdir,
};

const PHASE: &str = r#"
- name: move the migration
  hosts: localhost
  tasks:
    - name: start
      zdm_phase:
        action: start
        phase: "{{ phase }}"
    - name: complete
      zdm_phase:
        action: complete
"#;

fn local_inventory(metrics_ports: &[u16]) -> String {
    let mut inv = String::from("all:\n  children:\n    proxies:\n      hosts:\n");
    for (i, port) in metrics_ports.iter().enumerate() {
        inv.push_str(&format!(
            "        p{}:\n          ansible_connection: local\n          ansible_host: 127.0.0.1\n          metrics_port: {port}\n",
            i + 1
        ));
    }
    inv
}

fn events(state: &serde_json::Value) -> Vec<(String, String)> {
    state["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["phase"].as_str().unwrap().to_string(),
                e["event"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_phase_out_of_order_is_refused_and_force_phase_runs_it_with_a_recorded_warning() {
    let w = Workdir::new(&local_inventory(&[closed_port()]));
    w.write("phase.yml", PHASE);

    let refused = w.run(&["phase.yml", "-e", "phase=phase4"]);
    refused.assert_code(2);
    assert!(
        refused
            .out
            .contains("phase4 needs phase3 completed with its gate passed first"),
        "{}",
        refused.out
    );
    assert!(
        !w.path("inventory/zdm-state.json").exists(),
        "a refused start must not write the state"
    );
    assert!(
        !w.path("inventory/zdm-state.lock").exists(),
        "lock released"
    );

    w.run(&["phase.yml", "-e", "phase=preflight"])
        .assert_code(0);
    assert_eq!(w.state()["phase"], "preflight");
    assert_eq!(w.state()["completed"], true);

    // Check mode shows the refusal too, and writes nothing.
    let before = w.state();
    let check = w.run(&["phase.yml", "-e", "phase=phase4", "--check"]);
    check.assert_code(2);
    assert!(check.out.contains("phase4 needs phase3"), "{}", check.out);
    assert_eq!(w.state(), before);

    let forced = w.run(&["phase.yml", "-e", "phase=phase4", "--force-phase"]);
    forced.assert_code(0);
    let out = forced.out;
    assert!(out.contains("WARNING: --force-phase"), "{out}");
    assert!(
        out.matches("--force-phase").count() >= 2,
        "warned at the task and again at the end: {out}"
    );
    let state = w.state();
    assert_eq!(state["phase"], "phase4");
    assert_eq!(state["completed"], true);
    let started = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == "phase4" && e["event"] == "started")
        .expect("phase4 start recorded");
    let forced_note = started["forced"]
        .as_str()
        .expect("the override is recorded");
    assert!(
        forced_note.contains("phase4 needs phase3 completed"),
        "{forced_note}"
    );
    assert_eq!(started["playbook"], "phase.yml");

    // -e zdm_force_phase=true is the same switch (phase5 after phase4 needs no force, so ask
    // for phase2 from a fresh migration instead).
    let w2 = Workdir::new(&local_inventory(&[closed_port()]));
    w2.write("phase.yml", PHASE);
    w2.run(&[
        "phase.yml",
        "-e",
        "phase=phase2",
        "-e",
        "zdm_force_phase=true",
    ])
    .assert_code(0);
    assert!(w2.state()["history"][0]["forced"].is_string());
}

#[test]
fn a_second_concurrent_run_is_refused_by_the_lock_naming_the_holder() {
    let w = Workdir::new(&local_inventory(&[closed_port()]));
    w.write(
        "slow.yml",
        r#"
- hosts: localhost
  tasks:
    - zdm_phase: {action: start, phase: preflight}
    - pause: {seconds: 15}
    - zdm_phase: {action: complete}
"#,
    );
    w.write("phase.yml", PHASE);
    let mut first = w.command(&["slow.yml", "-i", "inventory"]);
    let mut first = first
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the first run");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let first_pid = first.id();
    let guard = Kill(&mut first);
    let lock = w.path("inventory/zdm-state.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lock.exists() {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let second = w.run(&["phase.yml", "-e", "phase=preflight"]);
    second.assert_code(1);
    let err = second.stderr;
    assert!(
        err.contains("another zdm-run holds the migration lock"),
        "{err}"
    );
    assert!(err.contains(&format!("(pid {first_pid})")), "{err}");
    assert!(err.contains("running slow.yml"), "{err}");

    // A playbook without zdm_phase tasks that asks for the lock (a rolling restart) waits its
    // turn too, and status shows who holds the lock.
    w.write(
        "restart.yml",
        "- hosts: localhost\n  vars: {zdm_lock: true}\n  tasks:\n    - debug: {msg: restart}\n",
    );
    let third = w.run(&["restart.yml"]);
    third.assert_code(1);
    assert!(
        third.stderr.contains("running slow.yml"),
        "{}",
        third.stderr
    );
    let status = w.command(&["status", "-i", "inventory"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("(pid {first_pid}) running slow.yml")),
        "{text}"
    );

    let status = guard.0.wait().expect("first run finishes");
    drop(guard);
    assert!(status.success(), "the first run was not disturbed");
    assert!(!lock.exists(), "the lock is released at exit");
    // Only the first run wrote history.
    assert_eq!(
        events(&w.state()),
        [
            ("preflight".to_string(), "started".to_string()),
            ("preflight".to_string(), "completed".to_string())
        ]
    );
}

#[test]
fn the_recorded_phase_is_compared_with_what_the_fleet_runs() {
    let w = Workdir::new(&local_inventory(&[closed_port(), closed_port()]));
    std::fs::write(
        w.path("inventory/zdm-state.json"),
        r#"{"phase": "phase1", "completed": true, "history": []}"#,
    )
    .unwrap();
    // What each proxy runs, as a prior task would read it from the proxy's configuration.
    w.write(
        "phase2.yml",
        r#"
- hosts: proxies
  tasks:
    - set_fact:
        zdm_proxy_primary_cluster: "{{ 'TARGET' if inventory_hostname == 'p2' else 'ORIGIN' }}"
        zdm_proxy_read_mode: PRIMARY_ONLY
- hosts: localhost
  tasks:
    - name: start
      zdm_phase: {action: start, phase: phase2}
"#,
    );
    let run = w.run(&["phase2.yml", "--output", "json"]);
    run.assert_code(2);
    let msg = task_result(&run.json(), "start")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("the recorded phase and the fleet disagree")
            && msg.contains("state file says phase1 (completed)")
            && msg.contains("p2 runs primary_cluster=TARGET read_mode=PRIMARY_ONLY")
            && !msg.contains("p1 runs"),
        "{msg}"
    );
    assert_eq!(w.state()["history"].as_array().unwrap().len(), 0);

    // The same through the argument, agreeing this time.
    w.write(
        "agree.yml",
        r#"
- hosts: localhost
  tasks:
    - name: start
      zdm_phase:
        action: start
        phase: phase2
        expected_proxy_settings:
          p1: {primary_cluster: ORIGIN, read_mode: PRIMARY_ONLY}
          p2: {primary_cluster: origin, read_mode: primary_only}
"#,
    );
    let run = w.run(&["agree.yml", "--output", "json"]);
    run.assert_code(0);
    let msg = task_result(&run.json(), "start")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("2 proxies run what phase1 expects"), "{msg}");
}

#[test]
fn a_run_that_fails_mid_phase_is_recorded_and_status_reports_it() {
    let ready = FakeProxy::start(ProxyBehaviour {
        ready: true,
        target_down: false,
        writes_per_scrape: 0,
        failed_writes_per_scrape: 0,
    });
    let down_port = closed_port();
    let w = Workdir::new(&local_inventory(&[ready.port, down_port]));
    w.write("phase.yml", PHASE);
    w.run(&["phase.yml", "-e", "phase=preflight"])
        .assert_code(0);
    w.write(
        "dies.yml",
        r#"
- hosts: localhost
  tasks:
    - zdm_phase: {action: start, phase: phase1}
    - fail: {msg: deployment broke}
    - zdm_phase: {action: complete}
"#,
    );
    w.run(&["dies.yml"]).assert_code(2);
    let state = w.state();
    assert_eq!(state["phase"], "phase1");
    assert_eq!(state["completed"], false);
    let last = state["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "failed");
    assert!(
        last["note"]
            .as_str()
            .unwrap()
            .contains("the run ended before phase1 completed"),
        "{last}"
    );
    // phase2 is refused now.
    let refused = w.run(&["phase.yml", "-e", "phase=phase2"]);
    refused.assert_code(2);
    assert!(
        refused.out.contains("phase1 (not completed)"),
        "{}",
        refused.out
    );

    let json = w
        .command(&["status", "-i", "inventory", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    assert_eq!(doc["phase"], "phase1");
    assert_eq!(doc["completed"], false);
    assert_eq!(doc["expected_proxy_settings"]["primary_cluster"], "ORIGIN");
    assert!(doc["lock"].is_null());
    let proxies = doc["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 2);
    assert_eq!(proxies[0]["name"], "p1");
    assert_eq!(proxies[0]["ready"], true);
    assert_eq!(proxies[0]["http_status"], 200);
    assert_eq!(proxies[0]["target"], "UP");
    assert_eq!(proxies[1]["ready"], false);
    assert!(proxies[1]["http_status"].is_null());
    assert!(proxies[1]["error"].is_string());
    let history = doc["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["event"], "failed");

    let human = w.command(&["status", "-i", "inventory"]).output().unwrap();
    assert!(human.status.success());
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("phase:      phase1 (NOT completed)"),
        "{text}"
    );
    assert!(text.contains("lock:       free"), "{text}");
    let p1 = text
        .lines()
        .find(|l| l.trim_start().starts_with("p1 "))
        .expect("a line for p1");
    assert!(
        p1.contains(&format!("http://127.0.0.1:{}", ready.port))
            && p1.contains(" READY ")
            && p1.contains("readiness 200"),
        "{text}"
    );
    assert!(
        text.contains("NOT READY") && text.contains("readiness endpoint unreachable"),
        "{text}"
    );
    assert!(text.contains("phase1 FAILED  dies.yml"), "{text}");
    assert!(
        text.contains("note: the run ended before phase1 completed"),
        "{text}"
    );
}

#[test]
fn zdm_phase_on_several_hosts_without_run_once_records_each_event_once() {
    let w = Workdir::new(&local_inventory(&[
        closed_port(),
        closed_port(),
        closed_port(),
    ]));
    w.write(
        "fleet.yml",
        r#"
- hosts: proxies
  tasks:
    - zdm_phase: {action: start, phase: preflight}
    - zdm_phase: {action: complete}
"#,
    );
    w.run(&["fleet.yml", "-f", "3"]).assert_code(0);
    assert_eq!(
        events(&w.state()),
        [
            ("preflight".to_string(), "started".to_string()),
            ("preflight".to_string(), "completed".to_string())
        ]
    );
}

#[test]
fn a_rollback_returns_the_record_to_phase1_and_is_refused_after_cutover() {
    let w = Workdir::new(&local_inventory(&[closed_port()]));
    std::fs::write(
        w.path("inventory/zdm-state.json"),
        r#"{"phase": "phase4", "completed": true, "history": []}"#,
    )
    .unwrap();
    w.write(
        "rollback.yml",
        r#"
- hosts: localhost
  tasks:
    - name: begin
      zdm_phase: {action: rollback}
    - zdm_phase: {action: complete}
"#,
    );
    let check = w.run(&["rollback.yml", "--check", "--output", "json"]);
    check.assert_code(0);
    let planned = task_result(&check.json(), "begin");
    assert!(
        planned["summary"]
            .as_str()
            .unwrap()
            .contains("record a rollback from phase4 to phase1"),
        "{planned}"
    );
    w.run(&["rollback.yml"]).assert_code(0);
    let state = w.state();
    assert_eq!(
        (state["phase"].as_str(), state["completed"].as_bool()),
        (Some("phase1"), Some(true))
    );
    assert_eq!(
        events(&state),
        [
            ("phase4".to_string(), "rollback_started".to_string()),
            ("phase1".to_string(), "rolled_back".to_string())
        ]
    );
    // Forward again: phase2 may start after the rollback.
    w.write("phase.yml", PHASE);
    w.run(&["phase.yml", "-e", "phase=phase2"]).assert_code(0);

    std::fs::write(
        w.path("inventory/zdm-state.json"),
        r#"{"phase": "phase5", "completed": true, "history": []}"#,
    )
    .unwrap();
    let refused = w.run(&["rollback.yml"]);
    refused.assert_code(2);
    assert!(
        refused.out.contains("the migration was cut over"),
        "{}",
        refused.out
    );
}

/// The shared task files fleet-facts.yml + phase-start.yml read what each proxy's deployed
/// configuration says and stop a phase whose recorded predecessor disagrees with the fleet.
#[test]
fn the_phase_start_task_file_reads_the_fleet_and_refuses_on_disagreement() {
    let w = Workdir::new("");
    let mut inv = String::from("all:\n  children:\n    proxies:\n      hosts:\n");
    for (h, primary) in [("p1", "ORIGIN"), ("p2", "TARGET")] {
        let root = w.path(&format!("hosts/{h}"));
        std::fs::create_dir_all(root.join("opt/zdm-proxy")).unwrap();
        std::fs::write(
            root.join("opt/zdm-proxy/zdm-proxy.yml"),
            format!("primary_cluster: {primary}\nread_mode: PRIMARY_ONLY\norigin_password: \"s3cret\"\n"),
        )
        .unwrap();
        inv.push_str(&format!(
            "        {h}:\n          ansible_connection: local\n          zdm_local_root: {}\n",
            root.display()
        ));
    }
    std::fs::write(w.path("inventory/hosts.yml"), inv).unwrap();
    std::fs::write(
        w.path("inventory/zdm-state.json"),
        r#"{"phase": "phase1", "completed": true, "history": []}"#,
    )
    .unwrap();
    let tasks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/tasks");
    w.write(
        "phase2.yml",
        &format!(
            r#"
- hosts: proxies
  vars:
    zdm_phase_name: phase2
    zdm_proxy_config: opt/zdm-proxy/zdm-proxy.yml
  tasks:
    - import_tasks: {tasks}/phase-start.yml
    - import_tasks: {tasks}/phase-complete.yml
"#,
            tasks = tasks.display()
        ),
    );
    let run = w.run(&["phase2.yml", "--output", "json"]);
    run.assert_code(2);
    let msg = task_result(&run.json(), "record the phase start")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("p2 runs primary_cluster=TARGET read_mode=PRIMARY_ONLY")
            && !msg.contains("p1 runs"),
        "{msg}"
    );
    assert!(
        !run.out.contains("s3cret"),
        "only the two settings are read"
    );

    // Once the fleet agrees, the phase runs.
    std::fs::write(
        w.path("hosts/p2/opt/zdm-proxy/zdm-proxy.yml"),
        "primary_cluster: ORIGIN\nread_mode: PRIMARY_ONLY\n",
    )
    .unwrap();
    let run = w.run(&["phase2.yml", "--output", "json"]);
    run.assert_code(0);
    let msg = task_result(&run.json(), "record the phase start")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("2 proxies run what phase1 expects"), "{msg}");
    assert_eq!(w.state()["phase"], "phase2");
    assert_eq!(w.state()["completed"], true);
}
