//! `playbooks/deploy.yml` against the sandbox fleet as generated (no extra variables): a new
//! fleet, an idempotent second run, a config the proxy refuses, and a `--check --diff` plan.

use scylla::client::session::Session;
use zdm_testkit::{
    fleet::{via, Fleet, HOSTS},
    unique_name,
    workload::{create_table, keys_on},
    KeyspaceGuard, Run,
};

const DEPLOY: &str = "playbooks/deploy.yml";

/// Writes key `k` through `host`'s proxy and reads it back through the same proxy.
async fn write_and_read_through(fleet: &Fleet, s: &Session, host: &str, ks: &str, k: i64) {
    s.query_unpaged(
        via(
            fleet,
            host,
            &format!("INSERT INTO {ks}.kv (k, v) VALUES ({k}, {})", k * 7),
        ),
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("write through {host}: {e}"));
    let row = s
        .query_unpaged(
            via(fleet, host, &format!("SELECT v FROM {ks}.kv WHERE k = {k}")),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("read through {host}: {e}"))
        .into_rows_result()
        .unwrap()
        .maybe_first_row::<(i64,)>()
        .unwrap();
    assert_eq!(row, Some((k * 7,)), "read back through {host}");
}

/// Pid and config of every host, to prove later that nothing was touched.
fn snapshot(fleet: &Fleet) -> Vec<(Option<u32>, String)> {
    HOSTS
        .iter()
        .map(|h| (fleet.proxy_pid(h), fleet.config(h)))
        .collect()
}

async fn assert_all_ready(fleet: &Fleet) {
    for h in HOSTS {
        assert_eq!(fleet.readiness(h).await, Some(200), "{h} readiness");
    }
}

/// The banner of deploy.yml's second, `serial: 1` play.
const ROLLING_PLAY: &str = "[Roll the change through the running proxies, one host at a time]";

/// On a new fleet, the first play brought every proxy up: the rolling play passes each host
/// over with its first task, so none of the rolling steps (binary, config, peer checks,
/// restart) runs there.
fn assert_rolling_play_passed_over_every_host(run: &Run) {
    let (_, rolling) = run
        .out
        .split_once(ROLLING_PLAY)
        .unwrap_or_else(|| panic!("no rolling play in:\n{}", run.out));
    for h in HOSTS {
        assert!(
            rolling.contains(&format!("ok: [{h}] => ending the play for this host")),
            "{h} was not passed over:\n{}",
            run.out
        );
    }
    for step in [
        "TASK [Ship the zdm-proxy binary",
        "TASK [Write the proxy config",
        "TASK [Ask every other proxy whether it is ready",
        "TASK [Drain and restart the proxy",
    ] {
        assert!(
            !rolling.contains(step),
            "{step} ran in the rolling play:\n{}",
            run.out
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_fleet_is_deployed_each_proxy_serves_cql_and_a_second_run_changes_nothing() {
    let fleet = Fleet::take();
    for h in HOSTS {
        assert_eq!(fleet.proxy_pid(h), None, "{h} must start empty");
        assert_eq!(fleet.config(h), "", "{h} must start empty");
    }

    // A dry run plans each host's bring-up in the first play and passes the host over in the
    // rolling play, as the real run will; it starts nothing.
    let plan = fleet.run(DEPLOY, &["--check"]);
    plan.assert_ok("check run on a new fleet");
    assert_rolling_play_passed_over_every_host(&plan);
    let (bring_up, _) = plan.out.split_once(ROLLING_PLAY).unwrap();
    for h in HOSTS {
        assert!(
            bring_up.contains(&format!("would change: [{h}] => upload ")),
            "{h}: the plan must show the binary upload:\n{}",
            plan.out
        );
        assert_eq!(fleet.proxy_pid(h), None, "check mode started a proxy");
        assert_eq!(fleet.config(h), "", "check mode wrote a config");
    }

    let first = fleet.run(DEPLOY, &[]);
    first.assert_ok("deploy to a new fleet");
    assert_rolling_play_passed_over_every_host(&first);
    let addresses: Vec<String> = HOSTS.iter().map(|h| fleet.address(h)).collect();
    for (i, h) in HOSTS.iter().enumerate() {
        assert!(first.recap(h, "changed") > 0, "{h} was not deployed");
        assert!(fleet.proxy_pid(h).is_some(), "no proxy runs on {h}");
        assert_eq!(fleet.readiness(h).await, Some(200), "{h} readiness");
        let cfg = fleet.config(h);
        let get = |k: &str| zdm_testkit::fleet::setting_of(&cfg, k);
        assert_eq!(get("proxy_listen_address"), Some(fleet.address(h)));
        assert_eq!(get("proxy_listen_port").as_deref(), Some("9042"));
        assert_eq!(get("metrics_port").as_deref(), Some("14001"));
        assert_eq!(get("proxy_topology_addresses"), Some(addresses.join(",")));
        assert_eq!(get("proxy_topology_index"), Some(i.to_string()));
        assert_eq!(
            fleet
                .ssh(h, "stat -c %a /opt/zdm-proxy/zdm-proxy.yml")
                .trim(),
            "600",
            "the config holds passwords"
        );
    }

    // Each proxy answers CQL: a key written through it is read back through it, and the
    // write reached both clusters.
    let ks = unique_name("deploy_scratch");
    let _drop_ks = KeyspaceGuard::on(&fleet.sb, &ks);
    let session = fleet.proxy_session(&HOSTS).await;
    let mut seen: Vec<String> = session
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .map(|n| n.address.ip().to_string())
        .collect();
    seen.sort();
    assert_eq!(
        seen, addresses,
        "the driver sees the proxy fleet as the cluster"
    );
    create_table(&session, &ks).await;
    for (i, h) in HOSTS.iter().enumerate() {
        write_and_read_through(&fleet, &session, h, &ks, i as i64).await;
    }
    for cluster in ["origin", "target"] {
        let direct = fleet.direct_session(cluster).await;
        let mut keys: Vec<i64> = keys_on(&direct, &ks).await.into_iter().collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![0, 1, 2],
            "keys written through the proxies on {cluster}"
        );
    }

    // Second run: nothing to do, nothing uploaded, no proxy restarted.
    let before = snapshot(&fleet);
    let binary_ids: Vec<String> = HOSTS
        .iter()
        .map(|h| fleet.ssh(h, "stat -L -c '%i %Y' /opt/zdm-proxy/current/zdm-proxy"))
        .collect();
    let second = fleet.run(DEPLOY, &[]);
    second.assert_ok("second deploy");
    for h in HOSTS {
        assert_eq!(second.recap(h, "changed"), 0, "{h}:\n{}", second.out);
    }
    assert!(
        second.results("changed").is_empty() && !second.out.contains("=> upload"),
        "{}",
        second.out
    );
    assert_eq!(snapshot(&fleet), before, "a no-op run touched a proxy");
    let binary_ids_after: Vec<String> = HOSTS
        .iter()
        .map(|h| fleet.ssh(h, "stat -L -c '%i %Y' /opt/zdm-proxy/current/zdm-proxy"))
        .collect();
    assert_eq!(binary_ids_after, binary_ids, "a binary was uploaded again");
    assert_all_ready(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_the_proxy_rejects_keeps_the_old_config_running_and_stops_the_run() {
    let fleet = Fleet::take();
    fleet.run(DEPLOY, &[]).assert_ok("deploy");
    let before = snapshot(&fleet);

    let run = fleet.run(DEPLOY, &["-e", "read_mode=SOMETIMES"]);
    assert_eq!(run.code, 2, "a host failed:\n{}", run.out);
    // The proxy's own words: which setting, which value, what it accepts.
    let failed = run.results("failed");
    assert_eq!(failed.len(), 1, "{}", run.out);
    assert!(failed[0].starts_with("failed: [zdm-h1]"), "{}", failed[0]);
    for words in [
        "invalid value for setting `read_mode`",
        "SOMETIMES",
        "PRIMARY_ONLY",
    ] {
        assert!(failed[0].contains(words), "{words} not in: {}", failed[0]);
    }
    assert_eq!(run.recap("zdm-h1", "failed"), 1);
    for h in ["zdm-h2", "zdm-h3"] {
        assert_eq!(run.recap(h, "changed"), 0, "{h} must be untouched");
        assert_eq!(run.recap(h, "failed"), 0);
    }
    // Nothing replaced: same processes, same config files (also on zdm-h1), all serving.
    assert_eq!(snapshot(&fleet), before);
    assert_eq!(
        fleet.setting("zdm-h1", "read_mode").as_deref(),
        Some("PRIMARY_ONLY")
    );
    assert_all_ready(&fleet).await;
    let ks = unique_name("deploy_rejected");
    let _drop_ks = KeyspaceGuard::on(&fleet.sb, &ks);
    let session = fleet.proxy_session(&HOSTS).await;
    create_table(&session, &ks).await;
    for (i, h) in HOSTS.iter().enumerate() {
        write_and_read_through(&fleet, &session, h, &ks, i as i64).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_diff_shows_only_the_read_mode_lines_masks_passwords_and_changes_nothing() {
    let fleet = Fleet::take();
    fleet.run(DEPLOY, &[]).assert_ok("deploy");
    let before = snapshot(&fleet);

    let run = fleet.run(
        DEPLOY,
        &[
            "--check",
            "--diff",
            "-e",
            "read_mode=DUAL_ASYNC_ON_SECONDARY",
        ],
    );
    run.assert_ok("check run");
    let changed_lines: Vec<&str> = run
        .out
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .collect();
    let mut expected = Vec::new();
    for _ in HOSTS {
        expected.push("-read_mode: PRIMARY_ONLY");
        expected.push("+read_mode: DUAL_ASYNC_ON_SECONDARY");
    }
    assert_eq!(changed_lines, expected, "{}", run.out);
    for h in HOSTS {
        let would: Vec<&str> = run
            .results("would change")
            .into_iter()
            .filter(|l| l.contains(&format!("[{h}]")))
            .collect();
        assert_eq!(would.len(), 2, "{h}: config and reload:\n{}", run.out);
        assert!(would[0].contains("/opt/zdm-proxy/zdm-proxy.yml: update content"));
        // read_mode is a live setting: the plan reloads the proxy, it does not restart it.
        assert!(would[1].ends_with("reload zdm-proxy"), "{}", would[1]);
    }
    for pw in fleet.passwords() {
        assert!(!run.out.contains(&pw), "a password leaked into the plan");
    }
    // The full diff shows the password lines masked (a diff of a password change).
    let pw_run = fleet.run(
        DEPLOY,
        &[
            "--check",
            "--diff",
            "-e",
            "origin_password=changed-secret-42",
        ],
    );
    pw_run.assert_ok("check run of a password change");
    assert!(!pw_run.out.contains("changed-secret-42"), "{}", pw_run.out);
    for pw in fleet.passwords() {
        assert!(!pw_run.out.contains(&pw), "a password leaked into the diff");
    }
    assert!(
        pw_run.out.contains("+origin_password: \"********\"")
            || pw_run.out.contains("+origin_password: ********"),
        "{}",
        pw_run.out
    );
    assert_eq!(snapshot(&fleet), before, "check mode changed something");
    assert_all_ready(&fleet).await;
}

/// The sandbox inventory without `host`, written to `dir` (an operator's fleet before the
/// host was added).
fn inventory_without(fleet: &Fleet, host: &str, dir: &std::path::Path) -> String {
    let path = std::path::Path::new(fleet.sb.get("SANDBOX_INVENTORY")).join("hosts.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let hosts = doc["all"]["children"]["proxies"]["hosts"]
        .as_mapping_mut()
        .expect("proxies.hosts in the sandbox inventory");
    assert!(hosts.remove(host).is_some(), "{host} not in the inventory");
    let out = dir.join("hosts.yml");
    std::fs::write(&out, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    out.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_host_brings_it_up_and_rolls_the_new_topology_through_the_others_under_load() {
    let fleet = Fleet::take();
    let dir = tempfile::tempdir().unwrap();
    let two = inventory_without(&fleet, "zdm-h3", dir.path());
    fleet
        .run_with_inventory(&two, DEPLOY, &[])
        .assert_ok("deploy to zdm-h1, zdm-h2");
    let pair = format!("{},{}", fleet.address("zdm-h1"), fleet.address("zdm-h2"));
    for h in ["zdm-h1", "zdm-h2"] {
        assert_eq!(
            fleet.setting(h, "proxy_topology_addresses"),
            Some(pair.clone())
        );
    }
    assert_eq!(fleet.proxy_pid("zdm-h3"), None);
    let before = [fleet.proxy_pid("zdm-h1"), fleet.proxy_pid("zdm-h2")];

    // An application on the two-proxy fleet keeps writing while the fleet grows.
    let ks = unique_name("deploy_grow");
    let _drop_ks = KeyspaceGuard::on(&fleet.sb, &ks);
    let session = std::sync::Arc::new(fleet.proxy_session(&["zdm-h1", "zdm-h2"]).await);
    create_table(&session, &ks).await;
    let load = zdm_testkit::workload::Workload::start(
        session.clone(),
        &ks,
        2,
        std::time::Duration::from_millis(40),
    )
    .await;
    let inventory = fleet.sb.get("SANDBOX_INVENTORY");
    let grown = {
        let f = &fleet;
        tokio::task::block_in_place(|| f.run_with_inventory(inventory, DEPLOY, &[]))
    };
    grown.assert_ok("deploy after adding zdm-h3");
    let report = load.stop().await;

    // zdm-h3 came up first (it served nobody), then zdm-h1 and zdm-h2 took the new topology
    // one at a time.
    let order: Vec<&str> = grown
        .out
        .lines()
        .filter(|l| l.starts_with("changed: [") && l.contains(" zdm-proxy"))
        .collect();
    assert_eq!(order.len(), 3, "{}", grown.out);
    for (line, (h, action)) in order.iter().zip([
        ("zdm-h3", "start zdm-proxy"),
        ("zdm-h1", "restart zdm-proxy"),
        ("zdm-h2", "restart zdm-proxy"),
    ]) {
        assert!(
            line.contains(&format!("[{h}]")) && line.ends_with(action),
            "order: {order:?}"
        );
    }
    let all: Vec<String> = HOSTS.iter().map(|h| fleet.address(h)).collect();
    for (i, h) in HOSTS.iter().enumerate() {
        assert_eq!(
            fleet.setting(h, "proxy_topology_addresses"),
            Some(all.join(","))
        );
        assert_eq!(
            fleet.setting(h, "proxy_topology_index"),
            Some(i.to_string())
        );
        assert_eq!(fleet.readiness(h).await, Some(200), "{h}");
    }
    assert_ne!(fleet.proxy_pid("zdm-h1"), before[0]);
    assert_ne!(fleet.proxy_pid("zdm-h2"), before[1]);
    let fresh = fleet.proxy_session(&["zdm-h1"]).await;
    let mut seen: Vec<String> = fresh
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .map(|n| n.address.ip().to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, all, "a client now discovers all three proxies");

    assert!(
        report.failures.is_empty(),
        "{} failed client requests, e.g.:\n{}",
        report.failures.len(),
        report.failures[..report.failures.len().min(10)].join("\n")
    );
    assert!(report.acked.len() > 100, "{} writes", report.acked.len());
    let origin = fleet.direct_session("origin").await;
    let target = fleet.direct_session("target").await;
    zdm_testkit::workload::assert_on_both_clusters(&origin, &target, &ks, &report.acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_files_are_shipped_private_and_the_proxies_reach_both_clusters_over_tls() {
    let fleet = Fleet::take();
    let ca = fleet.sb.get("SANDBOX_TLS_CA");
    assert!(
        std::path::Path::new(&ca).is_file(),
        "the sandbox has no TLS CA at {ca}: run scripts/sandbox.sh up"
    );
    let bad = fleet.run(
        DEPLOY,
        &[
            "-e",
            r#"{"zdm_proxy_tls_files": {"origin_ca": "/nowhere.pem"}}"#,
        ],
    );
    assert_eq!(bad.code, 2, "{}", bad.out);
    assert!(
        bad.out.contains("origin_ca is not one of"),
        "a misspelt setting is named: {}",
        bad.out
    );

    let files = format!(
        r#"{{"zdm_proxy_tls_files": {{"origin_tls_server_ca_path": "{ca}", "target_tls_server_ca_path": "{ca}"}}}}"#
    );
    fleet
        .run(DEPLOY, &["-e", &files])
        .assert_ok("deploy with TLS to both clusters");
    for h in HOSTS {
        for setting in ["origin_tls_server_ca_path", "target_tls_server_ca_path"] {
            let shipped = format!("/opt/zdm-proxy/tls/{setting}.pem");
            let mode = fleet.ssh(h, &format!("stat -c %a {shipped}"));
            assert_eq!(mode.trim(), "600", "{h}: {shipped}");
            assert!(
                fleet
                    .config(h)
                    .contains(&format!("{setting}: \"{shipped}\"")),
                "{h}'s config points {setting} at the shipped file"
            );
        }
    }
    assert_all_ready(&fleet).await;

    // Each cluster itself reports every connection from a proxy host as encrypted.
    let hosts = fleet.sb.get("SANDBOX_HOSTS");
    for cluster in ["origin", "target"] {
        let session = fleet.direct_session(cluster).await;
        let rows: Vec<(std::net::IpAddr, Option<bool>)> = session
            .query_unpaged("SELECT address, ssl_enabled FROM system_views.clients", ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .rows::<(std::net::IpAddr, Option<bool>)>()
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        for ip in hosts.split_whitespace() {
            let from_host: Vec<_> = rows.iter().filter(|(a, _)| a.to_string() == ip).collect();
            assert!(!from_host.is_empty(), "{cluster}: no connection from {ip}");
            assert!(
                from_host.iter().all(|(_, ssl)| *ssl == Some(true)),
                "{cluster}: a plain connection from {ip}: {from_host:?}"
            );
        }
        assert!(
            rows.iter().any(|(_, ssl)| *ssl == Some(false)),
            "{cluster} lists this test's own plain session, so the check can tell"
        );
    }

    // Back to plain TCP, as the other tests expect the fleet.
    fleet.run(DEPLOY, &[]).assert_ok("deploy without TLS");
    assert_all_ready(&fleet).await;
}

/// Issue 13: every setting of proxy/README.md is an inventory variable of its own name. Values
/// other than the defaults (but that still serve the sandbox) reach every host's config file,
/// the running proxy takes them (readiness, `/config` for the live ones, `/metrics` for the
/// prefix), and a variable that looks like a setting but names none is refused before any
/// host is touched, naming the host and the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proxy_setting_is_reachable_by_its_own_variable_and_an_unknown_one_is_refused() {
    let fleet = Fleet::take();
    let bad = fleet.run(DEPLOY, &["-e", "proxy_max_stream_id=100"]);
    assert_eq!(bad.code, 2, "{}", bad.out);
    assert!(
        bad.out
            .contains("host zdm-h1: variable `proxy_max_stream_id` is no zdm-proxy setting")
            && bad.out.contains("did you mean `proxy_max_stream_ids`"),
        "the variable is named: {}",
        bad.out
    );
    for h in HOSTS {
        assert_eq!(fleet.proxy_pid(h), None, "{h} was touched");
        assert_eq!(fleet.config(h), "", "{h} was touched");
    }

    // Settings the template decides (addresses, ports, topology, contact points) and the
    // credentials the sandbox needs keep their inventory values; TLS has its own test above.
    let wanted: &[(&str, &str)] = &[
        ("log_level", "DEBUG"),
        ("origin_local_datacenter", "datacenter1"),
        ("target_local_datacenter", "datacenter1"),
        ("origin_connection_timeout_ms", "20000"),
        ("target_connection_timeout_ms", "21000"),
        ("origin_request_timeout_ms", "9000"),
        ("target_request_timeout_ms", "9500"),
        ("proxy_topology_num_tokens", "16"),
        ("proxy_request_timeout_ms", "8000"),
        ("proxy_max_client_connections", "500"),
        ("proxy_max_stream_ids", "1024"),
        ("proxy_max_prepared_statement_cache_size", "4000"),
        ("heartbeat_interval_ms", "20000"),
        ("metrics_enabled", "true"),
        ("metrics_prefix", "zdmx"),
        ("replace_cql_functions", "false"),
        ("target_consistency_level", "LOCAL_QUORUM"),
        ("async_handshake_timeout_ms", "3000"),
        ("forward_client_credentials_to_origin", "false"),
        ("forward_client_credentials_to_target", "true"),
    ];
    let mut extra = serde_json::Map::new();
    for (k, v) in wanted {
        let value = match serde_json::from_str::<serde_json::Value>(v) {
            Ok(n @ serde_json::Value::Number(_)) | Ok(n @ serde_json::Value::Bool(_)) => n,
            _ => serde_json::Value::from(*v),
        };
        extra.insert((*k).to_string(), value);
    }
    let extra = serde_json::Value::Object(extra).to_string();
    fleet
        .run(DEPLOY, &["-e", &extra])
        .assert_ok("deploy with every setting set");
    assert_all_ready(&fleet).await;
    let client = reqwest::Client::new();
    for h in HOSTS {
        for (k, v) in wanted {
            assert_eq!(fleet.setting(h, k).as_deref(), Some(*v), "{h}: {k}");
        }
        let base = format!(
            "http://{}:{}",
            fleet.address(h),
            zdm_testkit::fleet::METRICS_PORT
        );
        let live: serde_json::Value = client
            .get(format!("{base}/config"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for k in [
            "proxy_request_timeout_ms",
            "origin_request_timeout_ms",
            "target_request_timeout_ms",
            "heartbeat_interval_ms",
        ] {
            let want: u64 = wanted
                .iter()
                .find(|(n, _)| *n == k)
                .unwrap()
                .1
                .parse()
                .unwrap();
            assert_eq!(live[k].as_u64(), Some(want), "{h} /config {k}: {live}");
        }
        assert_eq!(live["log_level"], "DEBUG", "{h}: {live}");
        assert_eq!(
            live["target_consistency_level"], "LOCAL_QUORUM",
            "{h}: {live}"
        );
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("zdmx_proxy_"),
            "{h}: metrics_prefix not applied"
        );
    }
}
