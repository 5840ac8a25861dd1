//! `playbooks/deploy.yml` meeting faults of the fleet: a host cut off in the middle of a
//! rolling change, and a host whose SSH host key changed. Fault switches are taken under the
//! SSH tests' fault lock and undone by guards, also when an assertion fails.

use std::process::Command;
use std::time::{Duration, Instant};
use zdm_testkit::fleet::{Fleet, HOSTS};

const DEPLOY: &str = "playbooks/deploy.yml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_mid_run_stops_the_run_there_and_a_rerun_after_restore_finishes_the_job() {
    let fleet = Fleet::take_for_faults();
    fleet.run(DEPLOY, &[]).assert_ok("deploy");
    let pid = |h: &str| {
        fleet
            .proxy_pid(h)
            .unwrap_or_else(|| panic!("no proxy on {h}"))
    };
    let (h1_before, h3_before) = (pid("zdm-h1"), pid("zdm-h3"));

    // A config change that needs a restart (a live setting like log_level would be reloaded,
    // with no restart and no pause) rolls through; zdm-h1 pauses after its restart, and while
    // it pauses zdm-h2 drops off the network.
    // `-v`: the pause is a bookkeeping task, whose header only shows with it.
    let mut running = fleet.spawn(
        DEPLOY,
        &[
            "-v",
            "-e",
            "proxy_max_client_connections=900 zdm_restart_pause_seconds=15",
        ],
    );
    // (The first play has a pause task too, skipped: wait for the rolling play's.)
    running.wait_for_line("PLAY [Roll the change", Duration::from_secs(300));
    running.wait_for_line(
        "TASK [Pause before the next host]",
        Duration::from_secs(300),
    );
    let cut = fleet.fault("cut", "restore", "zdm-h2");
    let run = running.finish(Duration::from_secs(300));

    assert_eq!(
        run.code, 4,
        "exit code for an unreachable host (4, as ansible-core 2.19):\n{}",
        run.out
    );
    let unreachable = run.results("unreachable");
    assert_eq!(unreachable.len(), 1, "{}", run.out);
    assert!(
        unreachable[0].starts_with("unreachable: [zdm-h2]"),
        "{}",
        unreachable[0]
    );
    assert_eq!(run.recap("zdm-h2", "unreachable"), 1);
    assert_eq!(run.recap("zdm-h2", "changed"), 0);
    // zdm-h1 got the change; zdm-h3 was never touched and keeps serving its old config.
    assert_ne!(pid("zdm-h1"), h1_before);
    assert_eq!(
        fleet
            .setting("zdm-h1", "proxy_max_client_connections")
            .as_deref(),
        Some("900")
    );
    assert_eq!(run.recap("zdm-h3", "changed"), 0, "{}", run.out);
    assert_eq!(pid("zdm-h3"), h3_before, "zdm-h3 was restarted");
    assert_eq!(
        fleet
            .setting("zdm-h3", "proxy_max_client_connections")
            .as_deref(),
        Some("1000")
    );
    for h in ["zdm-h1", "zdm-h3"] {
        assert_eq!(fleet.readiness(h).await, Some(200), "{h} must still serve");
    }
    let session = fleet.proxy_session(&["zdm-h3"]).await;
    session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .expect("zdm-h3 answers CQL while zdm-h2 is cut off");

    // Back on the network, the same command finishes the job: zdm-h1 is already done.
    cut.undo();
    let rerun = fleet.run(DEPLOY, &["-e", "proxy_max_client_connections=900"]);
    rerun.assert_ok("re-run after restore");
    assert_eq!(rerun.recap("zdm-h1", "changed"), 0, "{}", rerun.out);
    for h in ["zdm-h2", "zdm-h3"] {
        assert!(
            rerun.recap(h, "changed") > 0,
            "{h} not updated:\n{}",
            rerun.out
        );
    }
    for h in HOSTS {
        assert_eq!(
            fleet.setting(h, "proxy_max_client_connections").as_deref(),
            Some("900"),
            "{h}"
        );
        assert_eq!(fleet.readiness(h).await, Some(200), "{h}");
    }
    assert_ne!(
        pid("zdm-h3"),
        h3_before,
        "zdm-h3 must run the new config now"
    );
}

/// The ed25519 key blob `ssh-keyscan` gets from `address` now, if sshd answers.
fn scanned_key(address: &str) -> Option<String> {
    let out = Command::new("ssh-keyscan")
        .args(["-T", "3", "-t", "ed25519", address])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().nth(2))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_run_refuses_a_host_whose_key_changed_and_touches_no_host() {
    let fleet = Fleet::take_for_faults();
    let address = fleet.address("zdm-h2");
    let known = std::fs::read_to_string(fleet.sb.get("SANDBOX_KNOWN_HOSTS")).unwrap();
    let rekey = fleet.fault("rekey", "trust", "zdm-h2");
    // `rekey` restarts sshd without waiting: wait until it serves a key we do not trust.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(k) = scanned_key(&address) {
            if !known.contains(&k) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "zdm-h2 never offered its new key"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let run = fleet.run(DEPLOY, &[]);
    assert_eq!(run.code, 4, "unreachable exits 4: {}", run.out);
    let unreachable = run.results("unreachable");
    assert_eq!(unreachable.len(), 1, "{}", run.out);
    let msg = unreachable[0];
    assert!(msg.starts_with("unreachable: [zdm-h2]"), "{msg}");
    assert!(msg.contains("host key verification failed"), "{msg}");
    assert!(
        msg.contains("ssh-keyscan"),
        "says how to trust the host: {msg}"
    );
    // Every host is met before any is changed: nothing was deployed anywhere.
    for h in HOSTS {
        assert_eq!(run.recap(h, "changed"), 0, "{}", run.out);
    }
    for h in ["zdm-h1", "zdm-h3"] {
        assert_eq!(fleet.config(h), "", "{h} was touched");
        assert_eq!(fleet.proxy_pid(h), None, "{h} was touched");
    }
    rekey.undo();
}
