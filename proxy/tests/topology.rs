//! The driver sees the proxy fleet as the cluster.
mod common;
use common::*;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_given_one_proxy_discovers_all_three() {
    let _lock = ClusterLock::shared();
    let sb = Sandbox::load();
    let ips = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];
    let port = 19070;
    let addresses = ips.join(",");
    let proxies: Vec<Proxy> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            Proxy::start(
                &sb,
                ip,
                port,
                &[
                    ("ZDM_PROXY_TOPOLOGY_ADDRESSES", &addresses),
                    ("ZDM_PROXY_TOPOLOGY_INDEX", &i.to_string()),
                ],
            )
        })
        .collect();
    let s = proxies[1].session(&sb).await;
    let state = s.get_cluster_state();
    let seen: BTreeSet<String> = state
        .get_nodes_info()
        .iter()
        .map(|n| n.address.to_string())
        .collect();
    let want: BTreeSet<String> = ips.iter().map(|ip| format!("{ip}:{port}")).collect();
    assert_eq!(seen, want, "driver should know exactly the three proxies");

    // Real data center and schema version, tokens spread over the ring.
    let origin = sb.direct("origin").await;
    let (real_dc, real_schema): (String, uuid::Uuid) = origin
        .query_unpaged(
            "SELECT data_center, schema_version FROM system.local WHERE key='local'",
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .first_row()
        .unwrap();
    for n in state.get_nodes_info() {
        assert_eq!(
            n.datacenter.as_deref(),
            Some(real_dc.as_str()),
            "node {}",
            n.address
        );
    }
    let (dc, schema, tokens): (String, uuid::Uuid, Vec<String>) = s
        .query_unpaged(
            "SELECT data_center, schema_version, tokens FROM system.local WHERE key='local'",
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .first_row()
        .unwrap();
    assert_eq!(dc, real_dc);
    assert_eq!(schema, real_schema);
    assert_eq!(tokens.len(), 8, "proxy_topology_num_tokens default is 8");
    let mut all_tokens = BTreeSet::new();
    let (u, pw) = sb.creds("target");
    for p in &proxies {
        // Only this proxy may serve the session, so the answer is this proxy's own view.
        let only_p =
            scylla::policies::host_filter::AllowListHostFilter::new([p.addr.as_str()]).unwrap();
        let ps = scylla::client::session_builder::SessionBuilder::new()
            .known_node(&p.addr)
            .user(&u, &pw)
            .host_filter(std::sync::Arc::new(only_p))
            .build()
            .await
            .unwrap();
        let (t,): (Vec<String>,) = ps
            .query_unpaged("SELECT tokens FROM system.local", ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .first_row()
            .unwrap();
        all_tokens.extend(t);
    }
    assert_eq!(all_tokens.len(), 24, "each proxy must own distinct tokens");

    let err = s
        .query_unpaged("SELECT * FROM system.peers_v2", ())
        .await
        .expect_err("peers_v2 is not served");
    assert!(err.to_string().contains("peers_v2"), "{err}");
}
