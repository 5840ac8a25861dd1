//! The driver sees the proxy fleet as the cluster.
use std::collections::BTreeSet;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::Sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_given_one_proxy_discovers_all_three() {
    let _lock = Lock::shared(CLUSTERS);
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
        // The port columns drivers read (Java 4.x warns "Unable to determine broadcast RPC port"
        // without them): system.local's rpc_port, system.peers_v2's native_address/native_port, as
        // Cassandra 5 has them, each the proxy's own address and listen port.
        let (rpc_address, rpc_port): (std::net::IpAddr, i32) = ps
            .query_unpaged(
                "SELECT rpc_address, rpc_port FROM system.local WHERE key='local'",
                (),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .first_row()
            .unwrap();
        assert_eq!(rpc_address.to_string(), p.ip);
        assert_eq!(rpc_port, port as i32);
        let v2: BTreeSet<(String, i32, String, i32, i32)> = ps
            .query_unpaged(
                "SELECT peer, peer_port, native_address, native_port, preferred_port FROM system.peers_v2",
                (),
            )
            .await
            .unwrap_or_else(|e| panic!("peers_v2: {e}"))
            .into_rows_result()
            .unwrap()
            .rows::<(std::net::IpAddr, i32, std::net::IpAddr, i32, i32)>()
            .unwrap()
            .map(|r| {
                let (peer, peer_port, native, native_port, preferred_port) = r.unwrap();
                (peer.to_string(), peer_port, native.to_string(), native_port, preferred_port)
            })
            .collect();
        let want: BTreeSet<(String, i32, String, i32, i32)> = ips
            .iter()
            .filter(|ip| **ip != rpc_address.to_string())
            .map(|ip| (ip.to_string(), 7000, ip.to_string(), port as i32, 7000))
            .collect();
        assert_eq!(
            v2, want,
            "peers_v2: the other two proxies at their native port"
        );
    }
    assert_eq!(all_tokens.len(), 24, "each proxy must own distinct tokens");
}

/// Prepared topology queries with bind markers are answered by the proxy from its fleet view,
/// their WHERE clause honoured: never the real cluster's rows, never every peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_topology_queries_with_bind_markers_honour_their_where_clause() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let ips = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];
    let port = 19071;
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
    let (u, pw) = sb.creds("target");
    let me = &proxies[1];
    // Only proxy 1 serves this session, so every answer is its own view.
    let only_me =
        scylla::policies::host_filter::AllowListHostFilter::new([me.addr.as_str()]).unwrap();
    let s = scylla::client::session_builder::SessionBuilder::new()
        .known_node(&me.addr)
        .user(&u, &pw)
        .host_filter(std::sync::Arc::new(only_me))
        .build()
        .await
        .unwrap();
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };

    let peers = s
        .prepare("SELECT * FROM system.peers WHERE peer = ?")
        .await
        .unwrap_or_else(|e| panic!("prepare peers: {e}\n{}", me.log_text()));
    let peer_rows = |addr: std::net::IpAddr| {
        let (s, peers) = (&s, &peers);
        async move {
            let rows = s
                .execute_unpaged(peers, (addr,))
                .await
                .unwrap_or_else(|e| panic!("execute peers {addr}: {e}"))
                .into_rows_result()
                .unwrap();
            let col = rows
                .column_specs()
                .iter()
                .position(|c| c.name() == "peer")
                .expect("peer column");
            assert_eq!(col, 0, "SELECT * lists peer first");
            rows.rows::<scylla::value::Row>()
                .unwrap()
                .map(|r| match &r.unwrap().columns[0] {
                    Some(scylla::value::CqlValue::Inet(a)) => *a,
                    other => panic!("peer is not an inet: {other:?}"),
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(peer_rows(ip(ips[0])).await, vec![ip(ips[0])]);
    assert_eq!(peer_rows(ip(ips[2])).await, vec![ip(ips[2])]);
    assert!(
        peer_rows(ip(ips[1])).await.is_empty(),
        "a proxy is not its own peer"
    );
    let origin_ip = ip(sb
        .get("ZDM_ORIGIN_CONTACT_POINTS")
        .split(',')
        .next()
        .unwrap());
    assert!(
        peer_rows(origin_ip).await.is_empty(),
        "the real cluster's nodes are not peers"
    );

    let local = s
        .prepare("SELECT key, rpc_address, rpc_port, tokens FROM system.local WHERE key = ?")
        .await
        .unwrap_or_else(|e| panic!("prepare local: {e}\n{}", me.log_text()));
    let rows: Vec<(String, std::net::IpAddr, i32, Vec<String>)> = s
        .execute_unpaged(&local, ("local",))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "local");
    assert_eq!(
        rows[0].1,
        ip(ips[1]),
        "system.local must describe this proxy"
    );
    assert_eq!(rows[0].2, port as i32);
    assert_eq!(rows[0].3.len(), 8);
    let none = s
        .execute_unpaged(&local, ("elsewhere",))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(none.rows_num(), 0);

    // The same statements as unprepared queries with values (the driver prepares them) and
    // with literals.
    let n = s
        .query_unpaged(
            format!("SELECT peer FROM system.peers WHERE peer = '{}'", ips[2]),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows_num();
    assert_eq!(n, 1);
    let all = s
        .query_unpaged("SELECT peer FROM system.peers", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows_num();
    assert_eq!(all, 2);
    // A clause the proxy cannot answer is refused, not answered with every row.
    let err = s
        .query_unpaged(
            format!("SELECT peer FROM system.peers WHERE peer IN ('{}')", ips[0]),
            (),
        )
        .await
        .expect_err("IN is not supported on the proxy's topology tables");
    assert!(err.to_string().contains("zdm-proxy"), "{err}");
}
