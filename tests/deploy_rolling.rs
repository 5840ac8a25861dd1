//! Rolling restarts under load: an application (the real driver, knowing all three proxies)
//! writes and reads at a steady rate while `rolling-restart.yml` restarts every proxy, while
//! `deploy.yml` rolls a restart-only config change through the fleet, and while it applies a
//! change of live settings only (`read_mode`, as a phase change does), which is a reload: same
//! processes, no connection drained, and `/config` shows the new values. No client request may
//! fail, and every acknowledged write must be on both clusters.

use std::sync::Arc;
use std::time::Duration;
use zdm_testkit::{
    fleet::{Fleet, HOSTS},
    unique_name,
    workload::{assert_on_both_clusters, create_table, Workload},
    KeyspaceGuard, Run,
};

/// Four workers, each one write + one read every 40 ms: about 100 writes and 100 reads a
/// second, steady, on a machine shared with two Cassandra JVMs.
const WORKERS: usize = 4;
const PERIOD: Duration = Duration::from_millis(40);

fn pids(fleet: &Fleet) -> Vec<u32> {
    HOSTS
        .iter()
        .map(|h| {
            fleet
                .proxy_pid(h)
                .unwrap_or_else(|| panic!("no proxy runs on {h}"))
        })
        .collect()
}

/// Per host, the number of "client connection drained" lines in its proxy's log.
fn drained_lines(fleet: &Fleet) -> Vec<usize> {
    HOSTS
        .iter()
        .map(|h| {
            fleet
                .ssh(h, "cat /opt/zdm-proxy/logs/zdm-proxy.log")
                .lines()
                .filter(|l| l.contains("client connection drained"))
                .count()
        })
        .collect()
}

/// The settings a proxy runs now, from its admin port's `/config`.
async fn live_config(fleet: &Fleet, host: &str) -> serde_json::Value {
    let (url, response) = fleet.proxy_get(host, "/config").await;
    response
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// Runs a playbook off the test's runtime (the workload keeps running on it).
async fn run_blocking(fleet: &Arc<Fleet>, playbook: &'static str, args: &[&'static str]) -> Run {
    let f = fleet.clone();
    let args = args.to_vec();
    tokio::task::spawn_blocking(move || f.run(playbook, &args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_and_rolling_config_change_under_load_fail_no_request_and_lose_no_write() {
    let fleet = Arc::new(Fleet::take());
    fleet.run("playbooks/deploy.yml", &[]).assert_ok("deploy");
    let ks = unique_name("deploy_rolling");
    let _drop_ks = KeyspaceGuard::on(&fleet.sb, &ks);
    let session = Arc::new(fleet.proxy_session(&HOSTS).await);
    assert_eq!(session.get_cluster_state().get_nodes_info().len(), 3);
    create_table(&session, &ks).await;

    let load = Workload::start(session.clone(), &ks, WORKERS, PERIOD).await;
    // Step boundaries on the workload's clock, so a failure's `t=` tells the step it fell in.
    let clock = std::time::Instant::now();
    let mark = |what: &str| eprintln!("t={:.1}s {what}", clock.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let warm = load.acked();
    assert!(warm > 0, "the workload writes nothing before the restarts");

    // 1. Rolling restart of every proxy.
    let before = pids(&fleet);
    mark("rolling restart starts");
    let restart = run_blocking(&fleet, "playbooks/rolling-restart.yml", &[]).await;
    mark("rolling restart done");
    restart.assert_ok("rolling restart");
    let after_restart = pids(&fleet);
    for (i, h) in HOSTS.iter().enumerate() {
        assert_ne!(before[i], after_restart[i], "{h} was not restarted");
        assert!(restart.recap(h, "changed") > 0);
    }
    // One host at a time: each host's drain happens after the previous one is ready again.
    let order: Vec<&str> = restart
        .out
        .lines()
        .filter(|l| l.starts_with("changed: [") && l.contains("restart zdm-proxy"))
        .collect();
    assert_eq!(order.len(), 3, "{}", restart.out);
    for (line, h) in order.iter().zip(HOSTS) {
        assert!(line.contains(&format!("[{h}]")), "restart order: {order:?}");
    }
    let mid = load.acked();
    assert!(
        mid > warm + 100,
        "the load must go on during the restarts ({warm} -> {mid})"
    );

    mark("restart-only config change starts");
    // 2. A rolling config change with a setting the proxy cannot reload (and a live one with
    // it): every proxy restarts, one at a time.
    let change = run_blocking(
        &fleet,
        "playbooks/deploy.yml",
        &["-e", "proxy_max_client_connections=900 log_level=DEBUG"],
    )
    .await;
    mark("restart-only config change done");
    change.assert_ok("rolling config change");
    let after_change = pids(&fleet);
    for (i, h) in HOSTS.iter().enumerate() {
        assert_ne!(after_restart[i], after_change[i], "{h} was not restarted");
        assert_eq!(
            fleet.setting(h, "proxy_max_client_connections").as_deref(),
            Some("900")
        );
        assert_eq!(fleet.setting(h, "log_level").as_deref(), Some("DEBUG"));
    }
    let drained_before_reload = drained_lines(&fleet);

    // 3. Live settings only (what a phase change alters): reloaded in place, same processes.
    mark("live settings change starts");
    let reload = run_blocking(
        &fleet,
        "playbooks/deploy.yml",
        &[
            "-e",
            "proxy_max_client_connections=900 log_level=DEBUG",
            "-e",
            "read_mode=DUAL_ASYNC_ON_SECONDARY proxy_request_timeout_ms=9000",
        ],
    )
    .await;
    mark("live settings change done");
    reload.assert_ok("live settings change");
    assert_eq!(pids(&fleet), after_change, "a reload restarts no proxy");
    let reloads: Vec<&str> = reload
        .out
        .lines()
        .filter(|l| l.starts_with("changed: [") && l.ends_with("reload zdm-proxy"))
        .collect();
    assert_eq!(reloads.len(), 3, "one reload per host:\n{}", reload.out);
    for (line, h) in reloads.iter().zip(HOSTS) {
        assert!(
            line.contains(&format!("[{h}]")),
            "reload order: {reloads:?}"
        );
    }
    assert!(
        !reload.out.contains("restart zdm-proxy"),
        "nothing restarted:\n{}",
        reload.out
    );
    for h in HOSTS {
        assert_eq!(
            fleet.setting(h, "read_mode").as_deref(),
            Some("DUAL_ASYNC_ON_SECONDARY")
        );
        let live = live_config(&fleet, h).await;
        assert_eq!(live["read_mode"], "DUAL_ASYNC_ON_SECONDARY", "{h}: {live}");
        assert_eq!(live["proxy_request_timeout_ms"], 9000, "{h}: {live}");
        assert_eq!(live["primary_cluster"], "ORIGIN", "{h}: {live}");
    }
    assert_eq!(
        drained_lines(&fleet),
        drained_before_reload,
        "a reload drains no client connection"
    );
    // Applying the same settings again changes nothing.
    let again = run_blocking(
        &fleet,
        "playbooks/deploy.yml",
        &[
            "-e",
            "proxy_max_client_connections=900 log_level=DEBUG",
            "-e",
            "read_mode=DUAL_ASYNC_ON_SECONDARY proxy_request_timeout_ms=9000",
        ],
    )
    .await;
    again.assert_ok("same settings again");
    for h in HOSTS {
        assert_eq!(again.recap(h, "changed"), 0, "{h}:\n{}", again.out);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;
    eprintln!(
        "workload: {} acknowledged writes, {} reads in {:.1}s; longest gap between acks {:?}; \
         rolling restart {:.1}s, config change {:.1}s, live reload {:.1}s",
        report.acked.len(),
        report.reads_ok,
        report.ran.as_secs_f64(),
        report.longest_gap,
        restart.took.as_secs_f64(),
        change.took.as_secs_f64(),
        reload.took.as_secs_f64()
    );
    assert!(
        report.failures.is_empty(),
        "{} failed client requests, e.g.:\n{}",
        report.failures.len(),
        report.failures[..report.failures.len().min(10)].join("\n")
    );
    assert!(
        report.acked.len() > mid + 100,
        "the load must go on during the config change"
    );
    assert_eq!(
        report.reads_ok as usize,
        report.acked.len(),
        "every write read back"
    );
    assert!(
        report.longest_gap < Duration::from_secs(5),
        "the clients stalled for {:?}",
        report.longest_gap
    );
    // The proxies really drained the driver's connections (twice each: restart, config
    // change), with nothing left unfinished.
    let mut refused = 0u64;
    for h in HOSTS {
        let log = fleet.ssh(h, "cat /opt/zdm-proxy/logs/zdm-proxy.log");
        let drained: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("client connection drained"))
            .collect();
        assert!(
            drained.len() >= 2,
            "{h} drained no client connection:\n{log}"
        );
        assert!(
            drained.iter().all(|l| l.contains("unfinished=0"))
                && !log.contains("drain did not finish"),
            "{h} left requests unfinished:\n{log}"
        );
        refused += drained
            .iter()
            .filter_map(|l| l.split("refused_while_draining=").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    eprintln!("requests refused with OVERLOADED while draining (retried by the driver): {refused}");
    let origin = fleet.direct_session("origin").await;
    let target = fleet.direct_session("target").await;
    assert_on_both_clusters(&origin, &target, &ks, &report.acked).await;
}
