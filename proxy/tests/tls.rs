//! TLS against the sandbox's real clusters (client encryption on, optional) with the real
//! driver speaking TLS (OpenSSL) to the proxy (rustls): end to end, hostname verification,
//! client-certificate authentication, and settings refused at start.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::ssl::{SslContext, SslContextBuilder, SslFiletype, SslMethod, SslVerifyMode};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

/// The sandbox's TLS files (written by `scripts/sandbox.sh up` or `tls-apply`).
struct TlsFiles {
    ca: String,
    proxy_cert: String,
    proxy_key: String,
    client_cert: String,
    client_key: String,
}

impl TlsFiles {
    fn of(sb: &Sandbox) -> TlsFiles {
        let get = |k: &str| {
            let v = sb.require(k).unwrap_or_else(|_| {
                panic!(
                    "sandbox env lacks {k}: the sandbox has no TLS yet; run scripts/sandbox.sh up \
                     (or tls-apply on a running sandbox)"
                )
            });
            assert!(
                std::path::Path::new(v).is_file(),
                "{k}={v} is not a file: re-run scripts/sandbox.sh tls-apply"
            );
            v.to_string()
        };
        TlsFiles {
            ca: get("SANDBOX_TLS_CA"),
            proxy_cert: get("SANDBOX_TLS_PROXY_CERT"),
            proxy_key: get("SANDBOX_TLS_PROXY_KEY"),
            client_cert: get("SANDBOX_TLS_CLIENT_CERT"),
            client_key: get("SANDBOX_TLS_CLIENT_KEY"),
        }
    }

    /// Client-facing TLS with required client certificates, and TLS to both clusters.
    fn full_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ZDM_PROXY_TLS_CERT_PATH", self.proxy_cert.clone()),
            ("ZDM_PROXY_TLS_KEY_PATH", self.proxy_key.clone()),
            ("ZDM_PROXY_TLS_CA_PATH", self.ca.clone()),
            ("ZDM_PROXY_TLS_REQUIRE_CLIENT_AUTH", "true".into()),
            ("ZDM_ORIGIN_TLS_SERVER_CA_PATH", self.ca.clone()),
            ("ZDM_TARGET_TLS_SERVER_CA_PATH", self.ca.clone()),
            // The sandbox nodes do not ask for one; this proves the proxy loads and offers it.
            ("ZDM_TARGET_TLS_CLIENT_CERT_PATH", self.client_cert.clone()),
            ("ZDM_TARGET_TLS_CLIENT_KEY_PATH", self.client_key.clone()),
        ]
    }

    /// The driver's TLS: trusts the sandbox CA; with or without the client certificate.
    fn driver_context(&self, with_client_cert: bool) -> SslContext {
        let mut b = SslContextBuilder::new(SslMethod::tls()).unwrap();
        b.set_ca_file(&self.ca).unwrap();
        b.set_verify(SslVerifyMode::PEER);
        if with_client_cert {
            b.set_certificate_file(&self.client_cert, SslFiletype::PEM)
                .unwrap();
            b.set_private_key_file(&self.client_key, SslFiletype::PEM)
                .unwrap();
        }
        b.build()
    }
}

/// Fails with the likely cause when a sandbox node does not answer TLS: a node restarted by a
/// `sandbox.sh` without TLS support comes back plain-only.
fn assert_node_serves_tls(sb: &Sandbox, files: &TlsFiles, cluster: &str) {
    let node = sb.node(cluster);
    let (ip, _) = node.split_once(':').unwrap();
    let mut b = openssl::ssl::SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_ca_file(&files.ca).unwrap();
    let connector = b.build();
    let tcp = std::net::TcpStream::connect_timeout(&node.parse().unwrap(), Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!("{cluster} ({node}) unreachable: {e}; see scripts/sandbox.sh status")
        });
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    if let Err(e) = connector.connect(ip, tcp) {
        panic!(
            "{cluster} ({node}) does not serve TLS with the sandbox certificate ({e}): the node \
             was probably restarted by a scripts/sandbox.sh without TLS; run \
             scripts/sandbox.sh tls-apply"
        );
    }
}

fn with_env<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn tls_session(p: &Proxy, sb: &Sandbox, ctx: Option<SslContext>) -> Result<Session, String> {
    let (u, pw) = sb.creds("target");
    SessionBuilder::new()
        .known_node(&p.addr)
        .user(u, pw)
        .tls_context(ctx)
        .connection_timeout(Duration::from_secs(20))
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// The local ports of `pid`'s TCP connections to `node` ("a.b.c.d:port"), from /proc.
fn connection_ports(pid: u32, node: &str) -> Vec<u16> {
    let (ip, port) = node.split_once(':').unwrap();
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        port.parse::<u16>().unwrap()
    );
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.display().to_string();
            l.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(String::from)
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[2] == want && inodes.iter().any(|i| i == f[9]))
                .then(|| u16::from_str_radix(f[1].split(':').nth(1).unwrap(), 16).unwrap())
        })
        .collect()
}

/// Asserts that every connection of the proxy process to `cluster` is encrypted, as the node
/// itself reports it (`system_views.clients`).
async fn assert_cluster_connections_encrypted(sb: &Sandbox, p: &Proxy, cluster: &str) {
    let pid = p.child.as_ref().unwrap().id();
    let node = sb.node(cluster);
    let ports = connection_ports(pid, &node);
    assert!(
        !ports.is_empty(),
        "the proxy has no connection to {cluster} ({node})"
    );
    let direct = sb.direct(cluster).await;
    let rows = direct
        .query_unpaged(
            "SELECT port, ssl_enabled, ssl_protocol FROM system_views.clients",
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let seen: Vec<(i32, Option<bool>, Option<String>)> = rows
        .rows::<(i32, Option<bool>, Option<String>)>()
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    // The check can tell: this test's own direct session to the node is plain.
    assert!(
        seen.iter().any(|(_, ssl, _)| *ssl == Some(false)),
        "{cluster} lists no plain connection, not even this test's own: {seen:?}"
    );
    for port in ports {
        let row = seen
            .iter()
            .find(|(p, _, _)| *p == i32::from(port))
            .unwrap_or_else(|| {
                panic!("{cluster} does not list the proxy's connection from port {port}")
            });
        assert_eq!(
            row.1,
            Some(true),
            "{cluster} reports the proxy's connection from port {port} as not encrypted: {row:?}"
        );
        assert!(row.2.as_deref().unwrap_or("").starts_with("TLS"), "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_end_to_end_driver_to_proxy_to_both_clusters() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let files = TlsFiles::of(&sb);
    assert_node_serves_tls(&sb, &files, "origin");
    assert_node_serves_tls(&sb, &files, "target");
    let settings = files.full_settings();
    let p = Proxy::start(&sb, "127.0.0.81", 19401, &with_env(&settings));

    let s = tls_session(&p, &sb, Some(files.driver_context(true)))
        .await
        .unwrap_or_else(|e| panic!("TLS session through the proxy: {e}\n{}", p.log_text()));
    let ks = unique_name("tls_e2e");
    create_kv(&s, &ks).await;
    for k in 0..20 {
        s.query_unpaged(
            format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"),
            (k, format!("tls-{k}")),
        )
        .await
        .unwrap_or_else(|e| panic!("write {k} over TLS: {e}"));
    }
    for k in 0..20 {
        assert_eq!(
            read_v(&s, &ks, k).await.as_deref(),
            Some(&*format!("tls-{k}"))
        );
    }

    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    for k in 0..20 {
        let want = format!("tls-{k}");
        assert_eq!(
            read_v(&origin, &ks, k).await.as_deref(),
            Some(&*want),
            "origin k={k}"
        );
        assert_eq!(
            read_v(&target, &ks, k).await.as_deref(),
            Some(&*want),
            "target k={k}"
        );
    }
    // Every proxy connection (client sessions and the control connections with their
    // heartbeats) is encrypted, as each node reports it.
    assert_cluster_connections_encrypted(&sb, &p, "origin").await;
    assert_cluster_connections_encrypted(&sb, &p, "target").await;
    drop_ks(&origin, &target, &ks).await;
}

/// A proxy child that is not expected to start listening (`Proxy::start` would wait for it).
struct Unready {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Unready {
    fn spawn(sb: &Sandbox, ip: &str, port: u16, extra: &[(&str, String)]) -> Unready {
        let log = Proxy::log_path(ip, port);
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let env = Proxy::env_for(sb, ip, port, &extra);
        let child = Command::new(env!("CARGO_BIN_EXE_zdm-proxy"))
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn zdm-proxy");
        Unready {
            child,
            log,
            metrics: format!("http://{ip}:{}", port + 1000),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`.
    async fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return text;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("zdm-proxy exited ({status}) before logging `{needle}`:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in the proxy log within 90 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Unready {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay from a local address to a cluster node: the node's real certificate arrives
/// under a name it does not carry (the relay's address), with no DNS or hosts-file tricks.
async fn relay_to(node: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.83:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let node = node.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&node).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_is_refused_unless_verification_is_turned_off() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let files = TlsFiles::of(&sb);
    assert_node_serves_tls(&sb, &files, "origin");
    assert_node_serves_tls(&sb, &files, "target");
    let (relay, relay_task) = relay_to(sb.node("origin")).await;
    let (relay_ip, relay_port) = relay.split_once(':').unwrap();
    let origin_via_relay = vec![
        ("ZDM_ORIGIN_CONTACT_POINTS", relay_ip.to_string()),
        ("ZDM_ORIGIN_PORT", relay_port.to_string()),
        ("ZDM_ORIGIN_TLS_SERVER_CA_PATH", files.ca.clone()),
        ("ZDM_TARGET_TLS_SERVER_CA_PATH", files.ca.clone()),
    ];

    // Verification on (the default): origin's certificate names origin.zdm.test and
    // 10.213.0.2, not the relay's address: the proxy never becomes ready and says why.
    let mut refused = Unready::spawn(&sb, "127.0.0.82", 19411, &origin_via_relay);
    let log = refused.wait_log("not valid for name").await;
    let line = log
        .lines()
        .find(|l| l.contains("not valid for name"))
        .unwrap();
    assert!(
        line.contains("TLS handshake with origin failed")
            && line.contains(relay_ip)
            && line.contains("origin_tls_verify_hostname"),
        "the error names the cluster, the name and the switch: {line}"
    );
    let resp = reqwest::get(format!("{}/health/readiness", refused.metrics))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let report: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(report["OriginStatus"]["Status"], "DOWN", "{report}");
    assert!(
        std::net::TcpStream::connect("127.0.0.82:19411").is_err(),
        "a proxy that cannot verify origin must not take clients"
    );
    drop(refused);

    // Verification off: the same route connects (the chain is still checked).
    let mut off = origin_via_relay.clone();
    off.push(("ZDM_ORIGIN_TLS_VERIFY_HOSTNAME", "false".into()));
    let p = Proxy::start(&sb, "127.0.0.82", 19412, &with_env(&off));
    let s = p.session(&sb).await;
    let rows = s
        .query_unpaged("SELECT cluster_name FROM system.local", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(rows.rows_num(), 1);
    drop(s);
    drop(p);

    // Verification off still verifies the chain: an unrelated CA is refused.
    let other_ca =
        std::env::temp_dir().join(format!("zdm-tls-other-ca-{}.pem", std::process::id()));
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();
    let mut wrong_ca = off.clone();
    wrong_ca.retain(|(k, _)| *k != "ZDM_ORIGIN_TLS_SERVER_CA_PATH");
    wrong_ca.push((
        "ZDM_ORIGIN_TLS_SERVER_CA_PATH",
        other_ca.display().to_string(),
    ));
    let mut refused = Unready::spawn(&sb, "127.0.0.82", 19413, &wrong_ca);
    let log = refused.wait_log("TLS handshake with origin failed").await;
    assert!(log.contains("UnknownIssuer"), "{log}");
    drop(refused);
    let _ = std::fs::remove_file(other_ca);
    relay_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_is_required_when_configured() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let files = TlsFiles::of(&sb);
    assert_node_serves_tls(&sb, &files, "origin");
    assert_node_serves_tls(&sb, &files, "target");
    let settings = files.full_settings();
    let p = Proxy::start(&sb, "127.0.0.84", 19421, &with_env(&settings));

    let no_cert = tls_session(&p, &sb, Some(files.driver_context(false))).await;
    assert!(
        no_cert.is_err(),
        "a TLS client without a certificate got in"
    );
    let plain = tls_session(&p, &sb, None).await;
    assert!(plain.is_err(), "a plain client got into a TLS-only proxy");
    // Both refusals are logged with their reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = p.log_text();
        let refused = |why: &str| {
            log.lines()
                .any(|l| l.contains("client TLS handshake refused") && l.contains(why))
        };
        if refused("peer sent no certificates") && refused("InvalidContentType") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refusals are not logged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let with_cert = tls_session(&p, &sb, Some(files.driver_context(true)))
        .await
        .unwrap_or_else(|e| panic!("client with certificate refused: {e}\n{}", p.log_text()));
    with_cert
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .unwrap();
}

#[test]
fn a_missing_or_wrong_tls_file_stops_the_proxy_at_start_naming_the_setting() {
    let sb = Sandbox::load();
    let files = TlsFiles::of(&sb);
    for (setting, value, why) in [
        (
            "ZDM_ORIGIN_TLS_SERVER_CA_PATH",
            "/nonexistent/ca.pem".to_string(),
            "cannot read /nonexistent/ca.pem",
        ),
        (
            "ZDM_TARGET_TLS_SERVER_CA_PATH",
            files.proxy_key.clone(),
            "holds no PEM certificate",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_zdm-proxy"))
            .env_clear()
            .envs(sb.cluster_settings())
            .env(setting, &value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = setting.trim_start_matches("ZDM_").to_ascii_lowercase();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("`{name}`")) && stderr.contains(why),
            "{stderr}"
        );
        // A key file given in the wrong place is named, never printed.
        let key = std::fs::read_to_string(&files.proxy_key).unwrap();
        assert!(!stderr.contains(key.lines().nth(1).unwrap()), "{stderr}");
    }
}

/// The sandbox keeps its private keys (and key stores) readable by their owner only.
#[test]
fn sandbox_tls_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::load();
    let files = TlsFiles::of(&sb);
    let dir = PathBuf::from(sb.get("SANDBOX_TLS_DIR"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    let mut secrets = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".key") || name.ends_with(".p12") || name == "store-password" {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            secrets += 1;
        }
    }
    // ca, origin, target, proxy, client keys; two key stores and a trust store; the password.
    assert!(
        secrets >= 9,
        "only {secrets} secret files in {}",
        dir.display()
    );
    assert_eq!(mode(std::path::Path::new(&files.proxy_key)), 0o600);
}
