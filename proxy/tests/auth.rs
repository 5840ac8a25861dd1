//! Credentials: the client's go to the target, the configured ones to the origin.
use scylla::client::session_builder::SessionBuilder;
use std::time::Duration;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

async fn connect(addr: &str, user: &str, pass: &str) -> Result<(), String> {
    let builder = SessionBuilder::new()
        .known_node(addr)
        .user(user, pass)
        .connection_timeout(Duration::from_secs(20));
    match tokio::time::timeout(Duration::from_secs(60), builder.build()).await {
        Err(_) => panic!("connecting with credentials {user} hung instead of failing"),
        Ok(r) => r.map(|_| ()).map_err(|e| e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_and_right_ones_work() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(&sb, "127.0.0.22", 19060, &[]);
    let (u, pw) = sb.creds("target");
    connect(&p.addr, &u, &pw)
        .await
        .expect("target credentials must be accepted");
    let err = connect(&p.addr, &u, "not-the-password")
        .await
        .expect_err("bad password must be refused");
    assert!(
        err.contains("incorrect") || err.to_lowercase().contains("auth"),
        "expected the cluster's authentication error, got {err}"
    );
    // Origin credentials are not the client's: the client presents the target's.
    let (ou, opw) = sb.creds("origin");
    if (ou.as_str(), opw.as_str()) != (u.as_str(), pw.as_str()) {
        connect(&p.addr, &ou, &opw)
            .await
            .expect_err("origin credentials are not target credentials");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_origin_credentials_keep_the_proxy_unready_without_logging_the_password() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    // The proxy authenticates to origin itself; with a wrong configured password it must refuse
    // to take clients, report origin DOWN in readiness and say why, never printing the password.
    let (ou, _) = sb.creds("origin");
    let mut env = sb.cluster_settings();
    env.retain(|(k, _)| k != "ZDM_ORIGIN_PASSWORD");
    env.push(("ZDM_ORIGIN_PASSWORD".into(), "wrong-origin-password".into()));
    env.push(("ZDM_PROXY_LISTEN_ADDRESS".into(), "127.0.0.22".into()));
    env.push(("ZDM_PROXY_LISTEN_PORT".into(), "19061".into()));
    env.push(("ZDM_METRICS_ADDRESS".into(), "127.0.0.22".into()));
    env.push(("ZDM_METRICS_PORT".into(), "20061".into()));
    env.push(("ZDM_HEARTBEAT_INTERVAL_MS".into(), "500".into()));
    let log = std::env::temp_dir().join("zdm-proxy-test-badorigin.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zdm-proxy"))
        .env_clear()
        .envs(env)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut body = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(r) = reqwest::get("http://127.0.0.22:20061/health/readiness").await {
            status = r.status().as_u16();
            body = r.text().await.unwrap();
            if body.contains("\"CurrentFailureCount\":2")
                || body.contains("\"CurrentFailureCount\":3")
            {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        status, 503,
        "readiness must be 503 while origin refuses the proxy: {body}"
    );
    assert!(
        body.contains("\"OriginStatus\"") && body.contains("\"DOWN\""),
        "{body}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&ou) || text.to_lowercase().contains("incorrect"),
        "log should give origin's reason:\n{text}"
    );
    assert!(
        !text.contains("wrong-origin-password"),
        "password leaked into the log"
    );
    assert!(
        std::net::TcpStream::connect("127.0.0.22:19061").is_err(),
        "must not take clients while origin refuses it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_client_credentials_to_origin_checks_the_client_against_origin() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(
        &sb,
        "127.0.0.22",
        19062,
        &[("ZDM_FORWARD_CLIENT_CREDENTIALS_TO_ORIGIN", "true")],
    );
    let (ou, opw) = sb.creds("origin");
    let (tu, tpw) = sb.creds("target");
    // Origin's credentials are now the client's; target gets the configured target ones.
    let s = SessionBuilder::new()
        .known_node(&p.addr)
        .user(&ou, &opw)
        .connection_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "origin's credentials must be accepted: {e}\n{}",
                p.log_text()
            )
        });
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_fwd");
    create_kv(&s, &ks).await;
    s.query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (1, 'fwd')"), ())
        .await
        .unwrap();
    assert_eq!(read_v(&origin, &ks, 1).await.as_deref(), Some("fwd"));
    assert_eq!(read_v(&target, &ks, 1).await.as_deref(), Some("fwd"));
    let err = connect(&p.addr, &ou, "not-the-password")
        .await
        .expect_err("a bad origin password must be refused");
    assert!(
        err.contains("incorrect") || err.to_lowercase().contains("auth"),
        "expected origin's authentication error, got {err}"
    );
    if (ou.as_str(), opw.as_str()) != (tu.as_str(), tpw.as_str()) {
        connect(&p.addr, &tu, &tpw)
            .await
            .expect_err("target's credentials are not the client's any more");
    }
    let log = p.log_text();
    assert!(
        log.contains("client credentials are checked by origin"),
        "the start-up log must say which cluster checks the client:\n{log}"
    );
    assert!(
        !log.contains(&opw) && !log.contains(&tpw),
        "password leaked"
    );
    drop_ks(&origin, &target, &ks).await;
}

/// The "Advanced Configuration" sample of our users' runbook (ZDM-APPROACH.md), verbatim but
/// for the contact points and credentials, which become the sandbox's.
const RUNBOOK_ADVANCED: &str = r#"# config.yml - Production settings
origin_contact_points: "dse-node1,dse-node2,dse-node3"
origin_port: 9042
origin_username: "cassandra"
origin_password: "cassandra"
origin_local_datacenter: "dc1"
origin_connection_timeout_ms: 5000
origin_request_timeout_ms: 12000

target_contact_points: "hcd-node1,hcd-node2,hcd-node3"
target_port: 9042
target_username: "cassandra"
target_password: "cassandra"
target_local_datacenter: "datacenter1"
target_connection_timeout_ms: 5000
target_request_timeout_ms: 12000

proxy_listen_port: 9042
proxy_listen_address: "0.0.0.0"
proxy_max_client_connections: 1000
proxy_max_stream_ids: 2048

# Read routing configuration
read_mode: "PRIMARY_ONLY"  # Options: PRIMARY_ONLY, DUAL, TARGET_ONLY
primary_cluster: "ORIGIN"  # Options: ORIGIN, TARGET

# Write configuration
async_handshake_timeout_ms: 4000
forward_client_credentials_to_origin: false
forward_client_credentials_to_target: false

# Metrics and monitoring
metrics_enabled: true
metrics_port: 14001
metrics_prefix: "zdm"

# Logging
log_level: "INFO"  # Options: TRACE, DEBUG, INFO, WARN, ERROR
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbooks_advanced_configuration_is_accepted_and_runs() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let (ou, opw) = sb.creds("origin");
    let (tu, tpw) = sb.creds("target");
    let origin_host = sb.get("ZDM_ORIGIN_CONTACT_POINTS").to_string();
    let target_host = sb.get("ZDM_TARGET_CONTACT_POINTS").to_string();
    let text = RUNBOOK_ADVANCED
        .replace("dse-node1,dse-node2,dse-node3", &origin_host)
        .replace("hcd-node1,hcd-node2,hcd-node3", &target_host)
        // The runbook's origin is in data center `dc1`; the sandbox's nodes are in
        // `datacenter1`, and a data center without nodes is refused at start (tested in local_dc).
        .replace(
            "origin_local_datacenter: \"dc1\"",
            "origin_local_datacenter: \"datacenter1\"",
        )
        .replace(
            "origin_username: \"cassandra\"\norigin_password: \"cassandra\"",
            &format!("origin_username: \"{ou}\"\norigin_password: \"{opw}\""),
        )
        .replace(
            "target_username: \"cassandra\"\ntarget_password: \"cassandra\"",
            &format!("target_username: \"{tu}\"\ntarget_password: \"{tpw}\""),
        );
    assert!(
        text.contains(&origin_host)
            && text.contains(&format!("\"{tu}\""))
            && !text.contains("\"dc1\"")
    );
    let dir = std::env::temp_dir().join(format!("zdm-proxy-runbook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yml");
    std::fs::write(&file, &text).unwrap();
    let out = check_config(Some(&file), &[]);
    assert!(
        out.status.success(),
        "the runbook's sample must pass --check-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And it runs: the same file, with only the listen and metrics addresses moved (by the
    // environment) to where tests may listen.
    let p = Proxy::start_with_file(&sb, "127.0.0.22", 19063, &file);
    let s = p.session(&sb).await;
    s.query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
        .unwrap();
    let log = p.log_text();
    assert!(
        log.contains("client credentials are checked by target") && log.contains("both false"),
        "false/false must be logged as the reference default:\n{log}"
    );
    let (_, config) = p.http_get("/config").await;
    assert!(
        config.contains("\"origin_request_timeout_ms\":12000")
            && config.contains("\"target_request_timeout_ms\":12000"),
        "{config}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn forwarding_client_credentials_to_both_clusters_is_refused_naming_both_settings() {
    let out = check_config(
        None,
        &[
            ("ZDM_ORIGIN_CONTACT_POINTS", "10.0.0.1"),
            ("ZDM_TARGET_CONTACT_POINTS", "10.0.0.2"),
            ("ZDM_FORWARD_CLIENT_CREDENTIALS_TO_ORIGIN", "true"),
            ("ZDM_FORWARD_CLIENT_CREDENTIALS_TO_TARGET", "true"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forward_client_credentials_to_origin")
            && err.contains("forward_client_credentials_to_target"),
        "{err}"
    );
}

/// `async_handshake_timeout_ms` bounds the handshake of the shadow-read (async) connection.
/// 1 ms is less than any password check takes (Cassandra hashes the password with bcrypt on
/// every login), so every async connection fails its handshake: the log says it timed out, the
/// shadow reads are dropped as not connected, and the client's reads never notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handshake_timeout_ms_bounds_the_shadow_read_handshake() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(
        &sb,
        "127.0.0.22",
        19064,
        &[
            ("ZDM_READ_MODE", "DUAL_ASYNC_ON_SECONDARY"),
            ("ZDM_ASYNC_HANDSHAKE_TIMEOUT_MS", "1"),
        ],
    );
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_aht");
    let s = p.session(&sb).await;
    create_kv(&s, &ks).await;
    s.query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES (1, 'x')"), ())
        .await
        .unwrap();
    // Reads over ~3 s: the async connector retries after 0.5 s and 1.5 s meanwhile.
    let started = std::time::Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(read_v(&s, &ks, 1).await.as_deref(), Some("x"));
        reads += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = p.log_text();
    assert!(
        log.contains("async connection for shadow reads failed") && log.contains("within 1 ms"),
        "the async handshake must time out after 1 ms:\n{log}"
    );
    let dropped = p
        .metric("zdm_async_requests_dropped_total{reason=\"not_connected\"}")
        .await;
    assert!(
        dropped >= 1.0,
        "shadow reads must be dropped while the async connection cannot be opened ({reads} reads)"
    );
    drop_ks(&origin, &target, &ks).await;
}
