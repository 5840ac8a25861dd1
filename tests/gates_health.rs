//! The `zdm_health_gate` module through the zdm-run binary.
//!
//! The proxies are stood in for by small real HTTP servers started by the test (see
//! `zdm_testkit::fake_proxy::FakeProxy`), serving `/health/readiness` JSON and `/metrics` text in the
//! proxy's format. That is a faithful stand-in because the gate only speaks HTTP to the
//! proxies; the maths of the window is unit-tested in `gates::health`.

use zdm_testkit::{
    fake_proxy::{FakeProxy, ProxyBehaviour},
    run::task_result,
    workdir::Workdir,
};

const GATE: &str = r#"
- hosts: proxies
  tasks:
    - name: health
      zdm_health_gate: {observe_seconds: 1}
      run_once: true
      delegate_to: localhost
"#;

fn healthy() -> ProxyBehaviour {
    ProxyBehaviour {
        ready: true,
        target_down: false,
        writes_per_scrape: 50,
        failed_writes_per_scrape: 0,
    }
}

fn fleet(proxies: &[&FakeProxy]) -> Workdir {
    let mut inv = String::from("all:\n  children:\n    proxies:\n      hosts:\n");
    for (i, p) in proxies.iter().enumerate() {
        inv.push_str(&format!(
            "        p{}:\n          ansible_connection: local\n          ansible_host: 127.0.0.1\n          metrics_port: {}\n",
            i + 1,
            p.port
        ));
    }
    let w = Workdir::new(&inv);
    w.write("gate.yml", GATE);
    w
}

fn gate_msg(w: &Workdir, args: &[&str], code: i32) -> (String, serde_json::Value) {
    let mut all = vec!["gate.yml", "--output", "json"];
    all.extend_from_slice(args);
    let run = w.run(&all);
    run.assert_code(code);
    let r = task_result(&run.json(), "health");
    (r["msg"].as_str().unwrap_or_default().to_string(), r)
}

#[test]
fn a_healthy_fleet_passes_and_the_message_shows_measurements_and_thresholds() {
    let (a, b) = (FakeProxy::start(healthy()), FakeProxy::start(healthy()));
    let w = fleet(&[&a, &b]);
    let (msg, r) = gate_msg(&w, &[], 0);
    assert_eq!(r["status"], "ok", "a gate reads only: {r}");
    assert!(
        msg.starts_with("health gate PASSED: 5 of 5 checks passed"),
        "{msg}"
    );
    // Issue 13: the proxies counted no write the clusters cannot keep equal.
    assert!(
        msg.contains("[PASS] writes the clusters cannot keep equal: none"),
        "{msg}"
    );
    assert!(msg.contains("[PASS] p1 ready: p1: readiness 200"), "{msg}");
    assert!(msg.contains("[PASS] p2 ready"), "{msg}");
    // 50 writes per proxy inside the window, none failed.
    assert!(
        msg.contains(
            "[PASS] failed writes: 0 of 100 in 1 s (0.000%)\n         threshold: <= 0.000%"
        ),
        "{msg}"
    );
}

#[test]
fn failed_writes_in_the_window_fail_the_gate_with_the_figures() {
    let a = FakeProxy::start(healthy());
    let b = FakeProxy::start(ProxyBehaviour {
        failed_writes_per_scrape: 5,
        ..healthy()
    });
    let w = fleet(&[&a, &b]);
    let (msg, r) = gate_msg(&w, &[], 2);
    assert_eq!(r["status"], "failed");
    assert!(msg.starts_with("health gate FAILED"), "{msg}");
    assert!(
        msg.contains("[FAIL] failed writes: 5 of 105 in 1 s (4.762%)"),
        "{msg}"
    );

    // A threshold given as a variable lets it through.
    let (msg, _) = gate_msg(&w, &["-e", "zdm_max_failed_write_ratio=0.05"], 0);
    assert!(msg.contains("threshold: <= 5.000%"), "{msg}");
}

#[test]
fn a_proxy_that_sees_target_down_fails_the_gate_naming_the_cluster() {
    let a = FakeProxy::start(healthy());
    let b = FakeProxy::start(ProxyBehaviour {
        target_down: true,
        ..healthy()
    });
    let w = fleet(&[&a, &b]);
    let (msg, _) = gate_msg(&w, &[], 2);
    assert!(
        msg.contains("[FAIL] p2 ready: p2: readiness 503, TARGET DOWN"),
        "{msg}"
    );
    assert!(msg.contains("[PASS] p1 ready"), "{msg}");
}

#[test]
fn check_mode_says_what_would_be_checked_against_which_thresholds() {
    let a = FakeProxy::start(healthy());
    let w = fleet(&[&a]);
    w.write(
        "gate.yml",
        r#"
- hosts: proxies
  tasks:
    - name: health
      zdm_health_gate: {check_target_latency: true}
      run_once: true
      delegate_to: localhost
"#,
    );
    let started = std::time::Instant::now();
    let run = w.run(&[
        "gate.yml",
        "--check",
        "--output",
        "json",
        "-e",
        "zdm_observe_seconds=600 zdm_max_failed_read_ratio=0.001",
    ]);
    run.assert_code(0);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(300),
        "check mode must not watch the window"
    );
    let r = task_result(&run.json(), "health");
    assert_eq!(r["status"], "would_run", "{r}");
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.contains("check 1 proxies (p1)")
            && summary.contains("over 600 s of /metrics")
            && summary.contains("failed writes <= 0.000%")
            && summary.contains("failed reads <= 0.100%")
            && summary.contains("target p99 <= x2.00 of origin p99 (or <= 50.0 ms)"),
        "{summary}"
    );
}

#[test]
fn gate_results_since_the_phase_started_are_recorded_in_the_state() {
    let a = FakeProxy::start(healthy());
    let w = fleet(&[&a]);
    std::fs::write(
        w.path("inventory/zdm-state.json"),
        r#"{"phase": "preflight", "completed": true, "history": []}"#,
    )
    .unwrap();
    w.write(
        "phase1.yml",
        r#"
- hosts: localhost
  tasks:
    - zdm_phase: {action: start, phase: phase1}
    - name: health
      zdm_health_gate: {observe_seconds: 1, proxies: ["{{ proxy_url }}"]}
    - zdm_phase: {action: complete}
"#,
    );
    let url = format!("proxy_url={}", a.url());
    w.run(&["phase1.yml", "-e", &url]).assert_code(0);
    let state = w.state();
    assert_eq!(state["phase"], "phase1");
    assert_eq!(state["completed"], true);
    let done = &state["history"][1];
    assert_eq!(done["event"], "completed");
    let names: Vec<&str> = done["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"health: failed writes"), "{names:?}");

    // Now the fleet fails writes: the gate fails, the phase is recorded failed with the figures,
    // and the next phase is refused.
    a.behaviour.lock().unwrap().failed_writes_per_scrape = 3;
    w.run(&["phase1.yml", "-e", &url]).assert_code(2);
    let state = w.state();
    assert_eq!(state["completed"], false);
    let failed = state["history"].as_array().unwrap().last().unwrap();
    assert_eq!(failed["event"], "failed");
    let gate = failed["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "health: failed writes")
        .expect("the failed gate is recorded");
    assert_eq!(gate["passed"], false);
    assert!(
        gate["measured"].as_str().unwrap().starts_with("3 of 53"),
        "{gate}"
    );
    let status = w
        .command(&["status", "-i", "inventory"])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("[FAIL] health: failed writes: 3 of 53"),
        "{text}"
    );
}
