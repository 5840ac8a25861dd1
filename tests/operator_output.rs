//! What the operator sees (issue 15, item 3): a failed command's return code and output, one
//! line per `until` retry, a gate's checks under its task, the phase summary with bookkeeping
//! tasks out of the default output and out of `--check`'s plan, and `status` on a fresh
//! inventory.
//!
//! The command and retry checks run on the local three-host fleet; the phase check runs the
//! real `playbooks/preflight.yml` against the sandbox's clusters and SSH hosts.

mod data_support;

use data_support::{config, connect};
use zdm_testkit::{
    keyspace::create_schema, local_fleet::LocalFleet, locks::FAULTS, unique_name, workdir::Workdir,
    KeyspaceGuard, Lock, Sandbox,
};

#[test]
fn a_failed_command_shows_its_return_code_and_output_and_until_prints_each_retry() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook(
        "fails.yml",
        r#"
- hosts: h1
  tasks:
    - name: wait for a word that never comes
      shell: "echo attempt-output"
      register: waited
      until: "'ready' in waited.stdout"
      retries: 2
      delay: 0
      ignore_errors: true
    - name: a command that fails
      shell: "for i in $(seq 1 30); do echo out-$i; done; echo first-err >&2; echo last-err >&2; exit 3"
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(2);
    let out = &run.stdout;
    // One line per failed attempt, counting down as ansible-playbook does.
    assert!(
        out.contains("FAILED - RETRYING: [h1]: wait for a word that never comes (2 retries left).")
            && out.contains(
                "FAILED - RETRYING: [h1]: wait for a word that never comes (1 retries left)."
            ),
        "{out}"
    );
    assert!(!out.contains("(0 retries left)"), "{out}");
    // Giving up shows the last result: what the command returned and printed.
    assert!(
        out.contains("condition not met after 3 attempt(s); last result: return code 0\n  stdout:\n    attempt-output"),
        "{out}"
    );
    // The failure: return code, the whole (short) stderr, the tail of the long stdout.
    assert!(
        out.contains("failed: [h1] => non-zero return code 3\n  stderr:\n    first-err\n    last-err\n  stdout (last 10 of 30 lines):\n    out-21\n"),
        "{out}"
    );
    assert!(
        out.contains("    out-30\n") && !out.contains("out-20\n"),
        "{out}"
    );
}

/// `--check`'s PLAN leaves bookkeeping tasks out as the run's output does (shown with `-v`),
/// except a bookkeeping task that failed; a host whose only lines are hidden was still reached.
#[test]
fn the_check_plan_hides_bookkeeping_tasks_unless_verbose_but_not_their_failures() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook(
        "plan.yml",
        r#"
- name: plan play
  hosts: h1:h2
  tasks:
    - name: note a fact
      tags: [bookkeeping]
      set_fact: {noted: 1}
    - name: write the file
      copy: {content: "w\n", dest: /w.txt}
      when: inventory_hostname == 'h1'
    - name: a bookkeeping check that fails
      tags: [bookkeeping]
      fail: {msg: "bookkeeping went wrong"}
      when: inventory_hostname == 'h1'
- name: quiet play
  hosts: h2
  tasks:
    - name: note another fact
      tags: [bookkeeping]
      set_fact: {noted: 2}
"#,
    );
    let pb = pb.to_str().unwrap();
    let plan_of = |out: &str| {
        out.split("PLAN [plan play]")
            .nth(1)
            .unwrap_or_else(|| panic!("no plan:\n{out}"))
            .split("PLAY RECAP")
            .next()
            .unwrap()
            .to_string()
    };

    let quiet = fleet.run(&[pb, "--check"]);
    quiet.assert_code(2);
    let plan = plan_of(&quiet.stdout);
    assert!(
        !plan.contains("note a fact") && !plan.contains("note another fact"),
        "{plan}"
    );
    assert!(plan.contains("would change write the file"), "{plan}");
    assert!(
        plan.contains("failed       a bookkeeping check that fails: bookkeeping went wrong"),
        "a failure is shown even for a bookkeeping task:\n{plan}"
    );
    let quiet_play = plan.split("PLAN [quiet play]").nth(1).unwrap_or_default();
    assert!(
        quiet_play.contains("h2:") && !quiet_play.contains("(not reached)"),
        "h2 ran only a hidden task there, and was reached:\n{plan}"
    );

    let verbose = fleet.run(&[pb, "--check", "-v"]);
    verbose.assert_code(2);
    let plan = plan_of(&verbose.stdout);
    assert!(
        plan.contains("ok           note a fact")
            && plan.contains("ok           note another fact"),
        "-v shows bookkeeping:\n{plan}"
    );
}

#[test]
fn status_on_a_fresh_inventory_says_not_started_and_nothing_more() {
    let w =
        Workdir::new("proxies:\n  hosts:\n    p1: {ansible_host: 127.0.0.1, metrics_port: 1}\n");
    let out = w
        .command(&["status", "-i", "inventory"])
        .output()
        .expect("status");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("not started (nothing recorded in "),
        "{text}"
    );
}

/// The real preflight playbook: its bookkeeping tasks are out of the default output (shown
/// with `-v`), the gate's checks are printed under the gate task, and the run ends with the
/// summary naming the gate's verdict and the next playbook (`--check` ends with one too).
#[test]
fn a_phase_playbook_shows_gate_checks_and_a_summary_and_hides_bookkeeping_unless_verbose() {
    // Every proxy host must answer: a test that cuts one off holds this lock exclusively.
    let _fleet = Lock::shared(FAULTS);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config();
    let clusters = rt.block_on(connect(&cfg));
    let ks = unique_name("zdm_data_summary");
    let _guard = KeyspaceGuard::new(&ks);
    rt.block_on(create_schema(
        &clusters,
        &ks,
        &[format!("CREATE TABLE {ks}.t (id int PRIMARY KEY, v text)")],
    ));
    let w = Workdir::new(&Sandbox::load().inventory_yaml());
    let playbook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/preflight.yml");
    let pb = playbook.to_str().unwrap();
    let keyspaces = format!("zdm_keyspaces={ks}");

    // --check first (nothing is recorded): the summary says what the phase would do.
    let check = w.run(&[pb, "-e", &keyspaces, "--check"]);
    check.assert_code(0);
    let out = check.stdout;
    let summary = out
        .split("SUMMARY [preflight]")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in check mode:\n{out}"));
    assert!(
        summary.contains("  zdm-h1  unchanged")
            && summary.contains("gates: not measured (check mode)")
            && summary.contains("without --check to apply this plan"),
        "{summary}"
    );

    let run = w.run(&[pb, "-e", &keyspaces]);
    run.assert_code(0);
    let out = run.stdout;
    for hidden in [
        "read what the proxy runs",
        "record the phase start",
        "record the phase completed",
    ] {
        assert!(
            !out.contains(hidden),
            "bookkeeping task '{hidden}' shown:\n{out}"
        );
    }
    let gate = out
        .split("TASK [preflight gate (clusters and schemas)]")
        .nth(1)
        .unwrap_or_else(|| panic!("no gate task:\n{out}"));
    let under_gate = gate.split("\nTASK [").next().unwrap_or(gate);
    assert!(
        under_gate.contains("preflight gate PASSED")
            && under_gate.contains("[PASS] schemas compatible: 1 tables identical")
            && under_gate.contains("threshold:"),
        "the gate's checks are not under its task:\n{out}"
    );
    let summary = out
        .split("SUMMARY [preflight]")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    assert!(summary.contains("proxies:\n  zdm-h1"), "{summary}");
    assert!(summary.contains("  preflight: PASSED ("), "{summary}");
    let next = playbook.with_file_name("phase1.yml");
    assert!(
        summary.contains(&format!(
            "next: {} (deploy the proxies with dual writes)",
            next.display()
        )),
        "{summary}"
    );
    let lines = out.lines().count();
    assert!(
        lines < 45,
        "a phase should read in a screen, got {lines} lines:\n{out}"
    );

    let verbose = w.run(&[pb, "-e", &keyspaces, "-v"]);
    verbose.assert_code(0);
    let vout = verbose.stdout;
    assert!(
        vout.contains("TASK [read what the proxy runs]")
            && vout.contains("TASK [record the phase start]"),
        "-v shows bookkeeping tasks:\n{vout}"
    );
}
