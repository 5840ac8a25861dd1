//! `origin_local_datacenter` / `target_local_datacenter` against the sandbox's clusters (one
//! node each, data center `datacenter1`): a data center without nodes refuses the start with the
//! setting named; the right one works, and the proxy's own system.local reports it.
use std::time::Duration;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

/// The data center every sandbox node is in (scripts/sandbox.sh leaves Cassandra's default).
const SANDBOX_DC: &str = "datacenter1";

#[test]
fn a_local_datacenter_without_nodes_refuses_the_start_naming_the_setting() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    for (i, setting) in ["origin_local_datacenter", "target_local_datacenter"]
        .iter()
        .enumerate()
    {
        let env_key = format!("ZDM_{}", setting.to_ascii_uppercase());
        let (status, log) = Proxy::run_expecting_exit(
            &sb,
            "127.0.0.91",
            19490 + i as u16,
            &[(env_key.as_str(), "dc_nowhere")],
            Duration::from_secs(90),
        );
        assert!(!status.success(), "{setting}: exit {status}; log:\n{log}");
        let named = log
            .lines()
            .any(|l| l.contains(setting) && l.contains("'dc_nowhere'") && l.contains(SANDBOX_DC));
        assert!(
            named,
            "{setting}: the refusal names the setting, the value and the cluster's data \
             centers; log:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_local_datacenter_is_used_and_reported() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(
        &sb,
        "127.0.0.92",
        19492,
        &[
            ("ZDM_ORIGIN_LOCAL_DATACENTER", SANDBOX_DC),
            ("ZDM_TARGET_LOCAL_DATACENTER", SANDBOX_DC),
        ],
    );
    assert_eq!(p.http_get("/health/readiness").await.0, 200);
    let s = p.session(&sb).await;

    // The proxy answers system.local itself: with the configured data center.
    let rows = s
        .query_unpaged("SELECT data_center FROM system.local", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (dc,): (String,) = rows.single_row().unwrap();
    assert_eq!(dc, SANDBOX_DC);

    // Traffic flows, and each cluster's per-node series carries the node actually used.
    let ks = unique_name("proxy_dc");
    create_kv(&s, &ks).await;
    s.query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (1, 'dc')"), ())
        .await
        .unwrap();
    assert_eq!(read_v(&s, &ks, 1).await.as_deref(), Some("dc"));
    for cluster in ["origin", "target"] {
        let series = format!(
            "zdm_{cluster}_connections_total{{node=\"{}\"}}",
            sb.node(cluster)
        );
        // The control connection plus this client's connection.
        assert!(p.metric(&series).await >= 2.0, "{series}");
    }
    // Each control connection discovered its cluster's nodes in the configured data center.
    let log = p.log_text();
    for cluster in ["origin", "target"] {
        let host = sb.node(cluster).rsplit_once(':').unwrap().0.to_string();
        let discovered = log.lines().any(|l| {
            l.contains("local data center nodes")
                && l.contains(&format!("cluster=\"{cluster}\""))
                && l.contains(&format!("data_center={SANDBOX_DC}"))
                && l.contains(&format!("nodes=[\"{host}\"]"))
        });
        assert!(discovered, "{cluster}: no discovery line; log:\n{log}");
    }
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    assert_eq!(read_v(&target, &ks, 1).await.as_deref(), Some("dc"));
    drop_ks(&origin, &target, &ks).await;
}
