//! Multi-node clusters behind the deployed fleet, on the multi-node sandbox of
//! `scripts/sandbox-nodes.sh` (a second instance beside the shared one: origin 3 nodes in
//! `datacenter1`, target 2 nodes in `dc1` and `dc2`, proxy hosts `zmn-h1..3`; `scripts/test.sh`
//! brings it up and down). Without it these tests fail, naming the command that starts it.
//!
//! - Node loss under load: a real-driver workload at QUORUM (RF 3 on origin) runs through the
//!   three proxies while origin's node 1 (the contact point, so also the node every proxy's
//!   control connection is on) is stopped and started again: every proxy stays ready, at most
//!   the requests in flight at the loss fail, no acknowledged write is missing on either
//!   cluster, and new client connections land on the node again once it is back.
//! - Data-center selection: with `target_local_datacenter: dc2` every proxy's target
//!   connections go to dc2's node only and LOCAL_ONE writes succeed; a data center the cluster
//!   does not have is refused with the setting named.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;
use zdm_testkit::{
    fleet::{Fleet, CQL_PORT},
    unique_name,
    workload::{assert_on_both_clusters, create_kv, Workload},
    KeyspaceGuard, Sandbox,
};

/// Four workers, each one write and one read every 40 ms (about 100 of each a second).
const WORKERS: usize = 4;
const PERIOD: Duration = Duration::from_millis(40);

/// The multi-node sandbox's env file.
fn nodes_sandbox() -> Sandbox {
    let path = std::env::var("ZDM_NODES_SANDBOX_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".sandbox-nodes/env"));
    assert!(
        path.exists(),
        "the multi-node tests need the multi-node sandbox: {} is missing; run \
         scripts/sandbox-nodes.sh up (scripts/test.sh does) or set ZDM_NODES_SANDBOX_ENV",
        path.display()
    );
    Sandbox::load_from(&path)
}

/// `SANDBOX_ORIGIN_NODES` / `..._DCS` of the env file: (address, data center) per node.
fn nodes_of(sb: &Sandbox, cluster: &str) -> Vec<(String, String)> {
    let up = cluster.to_uppercase();
    let addrs = sb.get(&format!("SANDBOX_{up}_NODES"));
    let dcs = sb.get(&format!("SANDBOX_{up}_DCS"));
    addrs
        .split_whitespace()
        .map(String::from)
        .zip(dcs.split_whitespace().map(String::from))
        .collect()
}

/// NetworkTopologyStrategy with, per data center, as many replicas as it has nodes (at most 3).
fn replication(nodes: &[(String, String)]) -> String {
    let mut per_dc: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, dc) in nodes {
        *per_dc.entry(dc).or_default() += 1;
    }
    let dcs: Vec<String> = per_dc
        .iter()
        .map(|(dc, n)| format!("'{dc}': {}", (*n).min(3)))
        .collect();
    format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
}

async fn session(nodes: Vec<String>, user: String, password: String, cl: Consistency) -> Session {
    let profile = ExecutionProfile::builder().consistency(cl).build();
    SessionBuilder::new()
        .known_nodes(&nodes)
        .user(user, password)
        .default_execution_profile_handle(profile.into_handle())
        .connection_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {nodes:?}: {e}"))
}

/// A driver session through every proxy of the fleet, at `cl`.
async fn proxy_session(fleet: &Fleet, cl: Consistency) -> Session {
    let nodes = fleet
        .hosts()
        .iter()
        .map(|h| format!("{}:{CQL_PORT}", fleet.address(h)))
        .collect();
    session(
        nodes,
        fleet.sb.get("ZDM_TARGET_USERNAME").to_string(),
        fleet.sb.get("ZDM_TARGET_PASSWORD").to_string(),
        cl,
    )
    .await
}

/// A driver session straight to every node of `cluster`, at `cl`.
async fn direct_session(fleet: &Fleet, cluster: &str, cl: Consistency) -> Session {
    let up = cluster.to_uppercase();
    let nodes = nodes_of(&fleet.sb, cluster)
        .into_iter()
        .map(|(a, _)| format!("{a}:{CQL_PORT}"))
        .collect();
    session(
        nodes,
        fleet.sb.get(&format!("ZDM_{up}_USERNAME")).to_string(),
        fleet.sb.get(&format!("ZDM_{up}_PASSWORD")).to_string(),
        cl,
    )
    .await
}

/// One proxy's open connections per node of `cluster`, from its
/// `zdm_<cluster>_connections_total{node="addr:port"}` gauges.
async fn proxy_connections(fleet: &Fleet, host: &str, cluster: &str) -> BTreeMap<String, u64> {
    let (_, response) = fleet.proxy_get(host, "/metrics").await;
    let text = response.text().await.unwrap();
    let prefix = format!("zdm_{cluster}_connections_total{{node=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (node, value) = rest.split_once("\"} ")?;
            let addr = node.rsplit_once(':').map_or(node, |(a, _)| a);
            Some((addr.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The client addresses node `n` of `cluster` serves now (its `system_views.clients`), read
/// with the sandbox's own cqlsh on that node alone.
fn clients_on_node(sb: &Sandbox, cluster: &str, n: usize) -> Vec<String> {
    let out = Command::new("bash")
        .arg(sb.get("SANDBOX_SCRIPT"))
        .args([
            "cqlsh",
            cluster,
            &n.to_string(),
            "-e",
            "SELECT address FROM system_views.clients",
        ])
        .env("ZDM_SANDBOX_DIR", sb.get("SANDBOX_DIR"))
        .output()
        .expect("run sandbox.sh cqlsh");
    assert!(
        out.status.success(),
        "cqlsh on {cluster} node {n}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.parse::<std::net::IpAddr>().is_ok())
        .map(String::from)
        .collect()
}

/// The node (address, no port) one proxy's target control connection is on, from the
/// `TargetStatus.Addr` of its readiness report.
async fn target_control_node(fleet: &Fleet, host: &str) -> String {
    let (url, response) = fleet.proxy_get(host, "/health/readiness").await;
    let report: serde_json::Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"));
    let addr = report["TargetStatus"]["Addr"].as_str().unwrap_or_default();
    addr.rsplit_once(':').map_or(addr, |(a, _)| a).to_string()
}

/// Readiness of every proxy, polled every 200 ms until stopped: each answer that was not 200.
struct ReadinessWatch {
    stop: Arc<AtomicBool>,
    polls: Arc<Mutex<u64>>,
    bad: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadinessWatch {
    fn start(fleet: Arc<Fleet>, clock: Instant) -> ReadinessWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(Mutex::new(0u64));
        let bad = Arc::new(Mutex::new(Vec::<String>::new()));
        let task = {
            let (stop, polls, bad) = (stop.clone(), polls.clone(), bad.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    for h in fleet.hosts() {
                        let code = fleet.readiness(&h).await;
                        *polls.lock().unwrap() += 1;
                        if code != Some(200) {
                            bad.lock().unwrap().push(format!(
                                "t={:.1}s {h}: {code:?}",
                                clock.elapsed().as_secs_f64()
                            ));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        ReadinessWatch {
            stop,
            polls,
            bad,
            task,
        }
    }

    /// Stops polling: (polls made, answers that were not 200).
    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("readiness watch panicked");
        let polls = *self.polls.lock().unwrap();
        let bad = self.bad.lock().unwrap().clone();
        (polls, bad)
    }
}

/// Waits until a read at ALL of `<ks>.kv` succeeds through `session` (after a restart, the
/// other nodes need a moment of gossip to see the node UP again).
async fn until_all_replicas_answer(session: &Session, ks: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match session
            .query_unpaged(format!("SELECT k FROM {ks}.kv LIMIT 1"), &[])
            .await
        {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("read at ALL not yet possible: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("a read at ALL never succeeded after the node came back: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_an_origin_node_under_load_fails_at_most_the_requests_in_flight_and_loses_no_write()
{
    let fleet = Arc::new(Fleet::take_in(nodes_sandbox()));
    let hosts = fleet.hosts();
    let origin_nodes = nodes_of(&fleet.sb, "origin");
    assert_eq!(origin_nodes.len(), 3, "origin must have three nodes");
    let lost = origin_nodes[0].0.clone();
    fleet.run("playbooks/deploy.yml", &[]).assert_ok("deploy");

    let ks = unique_name("deploy_nodeloss");
    let _drop_ks = KeyspaceGuard::on(&fleet.sb, &ks);
    // Each cluster gets its keyspace directly: their data centers differ, so one replication
    // map cannot serve both (a real migration creates target's schema on its own too).
    let origin = direct_session(&fleet, "origin", Consistency::All).await;
    let target = direct_session(&fleet, "target", Consistency::All).await;
    create_kv(&origin, &ks, &replication(&origin_nodes)).await;
    create_kv(&target, &ks, &replication(&nodes_of(&fleet.sb, "target"))).await;

    let session = Arc::new(proxy_session(&fleet, Consistency::Quorum).await);
    let load = Workload::start(session.clone(), &ks, WORKERS, PERIOD).await;
    let clock = Instant::now();
    let mark = |what: &str| eprintln!("t={:.1}s {what}", clock.elapsed().as_secs_f64());
    let watch = ReadinessWatch::start(fleet.clone(), clock);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        load.acked() > 0,
        "the workload writes nothing before the loss"
    );
    for h in &hosts {
        let conns = proxy_connections(&fleet, h, "origin").await;
        assert!(
            conns.get(&lost).copied().unwrap_or(0) > 0,
            "{h} has no connection to {lost} before the loss: {conns:?}"
        );
    }

    // The loss: origin's node 1, a graceful stop (the switch sends SIGTERM, as a node's
    // shutdown or a rolling restart of the cluster does).
    mark("stopping origin node 1");
    let acked_at_loss = load.acked();
    let down = tokio::task::block_in_place(|| fleet.stop_node("origin", "1"));
    mark("origin node 1 stopped");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let acked_during = load.acked() - acked_at_loss;
    // 10 s at ~100 writes/s; half of that shows the load went on rather than stalled.
    assert!(
        acked_during > 500,
        "the load must go on while the node is down ({acked_during} writes acknowledged in 10 s)"
    );
    for h in &hosts {
        let conns = proxy_connections(&fleet, h, "origin").await;
        assert_eq!(
            conns.get(&lost).copied().unwrap_or(0),
            0,
            "{h} still counts connections to the stopped node: {conns:?}"
        );
        let live: u64 = conns
            .iter()
            .filter(|(n, _)| **n != lost)
            .map(|(_, v)| v)
            .sum();
        assert!(
            live > 0,
            "{h} has no connection to a surviving node: {conns:?}"
        );
        // Its control connection was on the lost node (the first contact point): it moved to
        // another node without marking origin DOWN (health.rs `control_loop`).
        let log = fleet.ssh(h, "cat /opt/zdm-proxy/logs/zdm-proxy.log");
        assert!(
            log.lines()
                .any(|l| l.contains("moved to another node") && l.contains(&lost)),
            "{h}'s control connection did not move off {lost}:\n{log}"
        );
    }

    mark("starting origin node 1 again");
    tokio::task::block_in_place(|| down.start());
    mark("origin node 1 answers CQL");
    // New client connections (three more sessions: each opens one connection to every proxy
    // and a control connection) take the nodes round-robin, the returned one among them.
    let mut fresh = Vec::new();
    for _ in 0..3 {
        fresh.push(proxy_session(&fleet, Consistency::Quorum).await);
    }
    let on_node: Vec<String> = clients_on_node(&fleet.sb, "origin", 1);
    for h in &hosts {
        let addr = fleet.address(h);
        assert!(
            on_node.contains(&addr),
            "origin node 1 serves no connection from proxy {h} ({addr}) after its return; its \
             clients: {on_node:?}"
        );
        let conns = proxy_connections(&fleet, h, "origin").await;
        assert!(
            conns.get(&lost).copied().unwrap_or(0) > 0,
            "{h} counts no connection to {lost} after its return: {conns:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    mark("load stopped");
    let (polls, not_ready) = watch.stop().await;
    drop(fresh);

    eprintln!(
        "{} writes acknowledged, {} reads ok, {} failed requests, longest gap {:?}; {polls} \
         readiness polls",
        report.acked.len(),
        report.reads_ok,
        report.failures.len(),
        report.longest_gap
    );
    for f in &report.failures {
        eprintln!("failed: {f}");
    }
    assert!(
        not_ready.is_empty(),
        "every proxy must stay ready while a quorum of origin is up: {not_ready:?}"
    );
    assert!(polls > 3 * 20, "readiness was polled only {polls} times");
    // The bound: each worker awaits its request before it sends the next, so at most WORKERS
    // requests are in flight at any instant. Only those can meet the loss (their cluster
    // connection closes under them, or their coordinator loses a replica mid-request); a request
    // sent afterwards is routed by the proxies to a live node, and the driver retries on
    // another proxy connection a (idempotent) request whose connection broke.
    assert!(
        report.failures.len() <= WORKERS,
        "{} failed requests, more than the {WORKERS} that can be in flight: {:?}",
        report.failures.len(),
        report.failures
    );

    until_all_replicas_answer(&origin, &ks).await;
    until_all_replicas_answer(&target, &ks).await;
    // At ALL every replica answers: a write that reached any of them is seen (read repair
    // merges), so a key missing here is on no replica at all.
    assert_on_both_clusters(&origin, &target, &ks, &report.acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_local_datacenter_keeps_the_proxies_in_that_data_center_and_a_wrong_one_is_refused()
{
    let fleet = Arc::new(Fleet::take_in(nodes_sandbox()));
    let hosts = fleet.hosts();
    let target_nodes = nodes_of(&fleet.sb, "target");
    let (dc1_node, dc2_node) = (target_nodes[0].clone(), target_nodes[1].clone());
    assert_eq!(
        (dc1_node.1.as_str(), dc2_node.1.as_str()),
        ("dc1", "dc2"),
        "target must have one node in dc1 and one in dc2"
    );
    fleet
        .run(
            "playbooks/deploy.yml",
            &["-e", "target_local_datacenter=dc2"],
        )
        .assert_ok("deploy with target_local_datacenter=dc2");
    for h in &hosts {
        assert_eq!(
            fleet.setting(h, "target_local_datacenter").as_deref(),
            Some("dc2")
        );
    }

    let ks = unique_name("deploy_localdc");
    let _drop_ks = KeyspaceGuard::on(&fleet.sb, &ks);
    let origin = direct_session(&fleet, "origin", Consistency::All).await;
    let target = direct_session(&fleet, "target", Consistency::All).await;
    // Origin with one replica: the workload reads back each write from origin (the primary)
    // at LOCAL_ONE too, which only a single replica makes sure to see.
    create_kv(
        &origin,
        &ks,
        "{'class': 'NetworkTopologyStrategy', 'datacenter1': 1}",
    )
    .await;
    create_kv(&target, &ks, &replication(&target_nodes)).await;

    let session = Arc::new(proxy_session(&fleet, Consistency::LocalOne).await);
    let load = Workload::start(session.clone(), &ks, WORKERS, PERIOD).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "LOCAL_ONE writes through the proxies failed: {:?}",
        report.failures
    );
    assert!(report.acked.len() > 50, "{} writes", report.acked.len());

    // Client traffic goes to dc2's node only. The one connection a proxy may keep to dc1's
    // node is its control connection, which goes to the first contact point (health checks and
    // discovery, no client request): readiness names the node it is on.
    for h in &hosts {
        let conns = proxy_connections(&fleet, h, "target").await;
        let control = target_control_node(&fleet, h).await;
        let control_on_dc1 = u64::from(control == dc1_node.0);
        assert!(
            conns.get(&dc2_node.0).copied().unwrap_or(0) > u64::from(control == dc2_node.0),
            "{h} has no client connection to dc2's node {}: {conns:?}",
            dc2_node.0
        );
        assert_eq!(
            conns.get(&dc1_node.0).copied().unwrap_or(0),
            control_on_dc1,
            "{h} connects to dc1's node {} beyond its control connection (on {control}) though \
             target_local_datacenter is dc2: {conns:?}",
            dc1_node.0
        );
    }
    // The nodes' own view: dc2's node serves every proxy; dc1's node at most each proxy's
    // control connection.
    let (on_dc1, on_dc2) = (
        clients_on_node(&fleet.sb, "target", 1),
        clients_on_node(&fleet.sb, "target", 2),
    );
    for h in &hosts {
        let addr = fleet.address(h);
        assert!(
            on_dc2.contains(&addr),
            "dc2's node has no client {addr}: {on_dc2:?}"
        );
        let on_dc1_from_h = on_dc1.iter().filter(|a| **a == addr).count();
        assert!(
            on_dc1_from_h <= 1,
            "dc1's node serves {on_dc1_from_h} connections of proxy {h}: {on_dc1:?}"
        );
    }
    until_all_replicas_answer(&target, &ks).await;
    assert_on_both_clusters(&origin, &target, &ks, &report.acked).await;
    drop(session);

    // A data center the cluster does not have: the proxy refuses to start and says why.
    // The playbook would wait two minutes for a readiness that cannot come; 30 s are plenty
    // for the proxy to start, reach target and refuse.
    let wrong = fleet.run(
        "playbooks/deploy.yml",
        &["-e", "target_local_datacenter=dc9 zdm_readiness_retries=15"],
    );
    assert_ne!(wrong.code, 0, "deploy with dc9 must fail:\n{}", wrong.out);
    let log = fleet.ssh(
        &hosts[0],
        "cat /opt/zdm-proxy/logs/zdm-proxy.log 2>/dev/null || true",
    );
    let named = |text: &str| {
        text.lines().any(|l| {
            l.contains("target_local_datacenter") && l.contains("'dc9'") && l.contains("dc2")
        })
    };
    assert!(
        named(&wrong.out) || named(&log),
        "the refusal must name target_local_datacenter, 'dc9' and the cluster's data centers; \
         deploy output:\n{}\nproxy log of {}:\n{log}",
        wrong.out,
        hosts[0]
    );
}
