//! `zdm_health_gate` against a real `zdm-proxy` (the bundled proxy, built from this workspace)
//! connected to the sandbox's two Cassandra clusters, with driver traffic through it during the
//! observation window.

mod data_support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zdm_testkit::{
    binaries::proxy_binary, locks::CLUSTERS, run::task_result, unique_name, workdir::Workdir,
    KeyspaceGuard, Lock, Sandbox,
};

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of a plain HTTP GET (None when nothing answers).
fn http_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut conn = std::net::TcpStream::connect(hostport).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = conn.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the proxy on `ip` with the sandbox's cluster settings (`overrides` win); returns the
/// process, its CQL port and its metrics base URL.
fn start_proxy(
    bin: &PathBuf,
    ip: &str,
    env: &Sandbox,
    overrides: &[(&str, String)],
) -> (KillOnDrop, u16, String) {
    let (port, metrics) = (free_port(ip), free_port(ip));
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ZDM_PROXY_LISTEN_ADDRESS", ip)
        .env("ZDM_PROXY_LISTEN_PORT", port.to_string())
        .env("ZDM_METRICS_ADDRESS", ip)
        .env("ZDM_METRICS_PORT", metrics.to_string())
        .env("ZDM_HEARTBEAT_INTERVAL_MS", "1000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for c in ["ORIGIN", "TARGET"] {
        for k in ["CONTACT_POINTS", "PORT", "USERNAME", "PASSWORD"] {
            let key = format!("ZDM_{c}_{k}");
            cmd.env(&key, env.get(&key));
        }
    }
    for (k, v) in overrides {
        cmd.env(k, v);
    }
    let child = KillOnDrop(cmd.spawn().expect("start zdm-proxy"));
    (child, port, format!("http://{ip}:{metrics}"))
}

#[test]
fn the_gate_refuses_a_proxy_that_cannot_reach_target_and_names_it() {
    let env = Sandbox::load();
    // Never while a test has a cluster stopped.
    let _lock = Lock::shared(CLUSTERS);
    let bin = proxy_binary();
    // Target at an address where nothing listens: the proxy's target control connection fails
    // exactly as when target Cassandra is down, without stopping the shared sandbox cluster.
    let nowhere = free_port("127.0.0.1");
    let (_proxy, _, base) = start_proxy(
        &bin,
        "127.0.0.42",
        &env,
        &[
            ("ZDM_TARGET_CONTACT_POINTS", "127.0.0.1".into()),
            ("ZDM_TARGET_PORT", nowhere.to_string()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while http_status(&format!("{base}/health/liveness")).is_none() {
        assert!(
            Instant::now() < deadline,
            "the proxy's HTTP endpoint never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let w = Workdir::new("all:\n  hosts: {}\n");
    w.write(
        "gate.yml",
        &format!(
            "- hosts: localhost\n  tasks:\n    - name: health\n      zdm_health_gate: {{proxies: [\"{base}\"], observe_seconds: 1}}\n"
        ),
    );
    let run = w.run(&["gate.yml", "--output", "json"]);
    run.assert_code(2);
    let msg = task_result(&run.json(), "health")["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.starts_with("health gate FAILED"), "{msg}");
    assert!(
        msg.contains(&format!("[FAIL] {base} ready: {base}: readiness 503"))
            && msg.contains("TARGET DOWN"),
        "{msg}"
    );
}

#[test]
fn the_gate_passes_on_a_real_proxy_carrying_traffic() {
    let env = Sandbox::load();
    let _lock = Lock::shared(CLUSTERS);
    let bin = proxy_binary();
    let ip = "127.0.0.41";
    let (_proxy, port, base) = start_proxy(&bin, ip, &env, &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = http_status(&format!("{base}/health/readiness"));
        if ready == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never became ready ({ready:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A client writing and reading through the proxy during the window.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = data_support::config();
    let ks = unique_name("zdm_data_gateproxy");
    let _guard = KeyspaceGuard::new(&ks);
    let clusters = rt.block_on(data_support::connect(&cfg));
    rt.block_on(zdm_testkit::keyspace::create_schema(
        &clusters,
        &ks,
        &[format!("CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)")],
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, done, ks) = (stop.clone(), done.clone(), ks.clone());
        let (user, password) = (
            env.get("ZDM_TARGET_USERNAME").to_string(),
            env.get("ZDM_TARGET_PASSWORD").to_string(),
        );
        let addr = format!("{ip}:{port}");
        rt.spawn(async move {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_node(addr)
                .user(user, password)
                .build()
                .await
                .expect("connect through the proxy");
            let mut k = 0i32;
            while !stop.load(Ordering::SeqCst) {
                session
                    .query_unpaged(format!("INSERT INTO {ks}.kv (k, v) VALUES ({k}, 'v')"), &[])
                    .await
                    .expect("write through the proxy");
                session
                    .query_unpaged(format!("SELECT v FROM {ks}.kv WHERE k = {k}"), &[])
                    .await
                    .expect("read through the proxy");
                done.fetch_add(1, Ordering::SeqCst);
                k += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "no request went through the proxy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let w = Workdir::new("all:\n  hosts: {}\n");
    w.write(
        "gate.yml",
        &format!(
            "- hosts: localhost\n  tasks:\n    - name: health\n      zdm_health_gate: {{proxies: [\"{base}\"], observe_seconds: 3}}\n"
        ),
    );
    let run = w.run(&["gate.yml", "--output", "json"]);
    stop.store(true, Ordering::SeqCst);
    rt.block_on(client).expect("client task");
    run.assert_code(0);
    let r = task_result(&run.json(), "health");
    let msg = r["msg"].as_str().unwrap();
    assert!(msg.starts_with("health gate PASSED"), "{msg}");
    assert!(
        msg.contains(&format!("[PASS] {base} ready: {base}: readiness 200")),
        "{msg}"
    );
    // Writes really flowed inside the window and none failed.
    let writes = msg
        .lines()
        .find(|l| l.contains("failed writes:"))
        .expect("a failed-writes line")
        .to_string();
    let total: u64 = writes
        .split(" of ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the write count from {writes}"));
    assert!(writes.contains("[PASS] failed writes: 0 of "), "{writes}");
    assert!(total > 0, "no writes counted in the window: {writes}");
}
