//! Credentials: the client's go to the target, the configured ones to the origin.
mod common;
use common::*;
use scylla::client::session_builder::SessionBuilder;
use std::time::Duration;

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
    let _lock = ClusterLock::shared();
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
    let _lock = ClusterLock::shared();
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
