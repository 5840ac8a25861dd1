//! `playbooks/monitoring.yml` and `playbooks/collect-logs.yml` on the sandbox.
//!
//! The real Prometheus (Debian's package) is deployed on the monitoring host `zdm-mon` and
//! scrapes the three proxies `deploy.yml` put on the fleet (shadow reads on, so the phase-3
//! series exist) and the migration state `zdm-run metrics` serves. With the driver workload
//! running through the proxies, every query of every dashboard panel and every alert rule must
//! evaluate without error, and every panel query must return at least one series. A proxy
//! whose host loses its route to the target cluster (a blackhole route in that host's network
//! namespace: the shared target cluster keeps running for the other tests) must make
//! `ZdmProxyNotReady` fire for that proxy alone. Then `collect-logs.yml` must produce one
//! archive with each proxy's log and config, the status and the state, and no password in any
//! encoding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use zdm_run::migration::state::{entry, Event, GateResult, MigrationState, Phase, StateStore};
use zdm_testkit::{
    fleet::{Fleet, HOSTS},
    unique_name,
    workload::{create_table, Workload},
    KeyspaceGuard,
};

const MON: &str = "zdm-mon";
/// The host whose route to target is cut for the readiness alert.
const UNREADY: &str = "zdm-h3";

/// The monitoring host's Prometheus, stopped and wiped before the test and after it (also on
/// panic), so every run starts from an empty configuration and no Prometheus stays behind.
struct Monitoring<'a> {
    fleet: &'a Fleet,
    url: String,
    http: reqwest::Client,
}

const WIPE_PROMETHEUS: &str = "p=$(cat /var/lib/prometheus/run/prometheus.pid 2>/dev/null)\n\
    case $p in ''|*[!0-9]*) ;; *) kill -TERM \"$p\" 2>/dev/null\n\
      i=0; while kill -0 \"$p\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
      kill -KILL \"$p\" 2>/dev/null ;; esac\n\
    rm -rf /etc/prometheus/* /var/lib/prometheus/*\n";

impl<'a> Monitoring<'a> {
    fn take(fleet: &'a Fleet) -> Monitoring<'a> {
        let host = fleet
            .sb
            .var("SANDBOX_MONITORING_HOST")
            .map(str::to_string)
            .unwrap_or_else(|| {
                panic!(
                    "the sandbox has no monitoring host (SANDBOX_MONITORING_HOST): run \
                 scripts/sandbox.sh up (or scripts/sandbox.sh monitoring on a running sandbox)"
                )
            });
        fleet.ssh(MON, WIPE_PROMETHEUS);
        Monitoring {
            fleet,
            url: format!("http://{host}:9090"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} from Prometheus: {e}"));
        r.json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// The series an expression returns now, or Prometheus's error.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.api("/api/v1/query", &[("query", expr)]).await;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Monitoring<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.fleet.ssh_output(MON, WIPE_PROMETHEUS) {
            eprintln!("wiping {MON} failed: {e}");
        }
    }
}

/// `zdm-run metrics` serving the test inventory's state, stopped on drop.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Undoes the blackhole route on drop, also on panic.
struct RouteCut {
    netns: String,
    to: String,
}

impl RouteCut {
    fn new(netns: &str, to: &str) -> RouteCut {
        let cut = RouteCut {
            netns: netns.into(),
            to: to.into(),
        };
        let out = Command::new("ip")
            .args([
                "-n",
                netns,
                "route",
                "add",
                "blackhole",
                &format!("{to}/32"),
            ])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip route add blackhole {to} in {netns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cut
    }
}

impl Drop for RouteCut {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-n", &self.netns, "route", "del", "blackhole"])
            .arg(format!("{}/32", self.to))
            .output();
    }
}

/// Every `expr` of every panel of the dashboards, with where it comes from.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/dashboards");
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for f in files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for p in d["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("expr").to_string();
                let name = format!(
                    "{} / {} / {}",
                    f.file_name().unwrap().to_string_lossy(),
                    p["title"].as_str().unwrap_or("?"),
                    t["refId"].as_str().unwrap_or("?")
                );
                out.push((name, expr));
            }
        }
    }
    assert!(out.len() >= 20, "too few panel queries: {out:?}");
    out
}

/// A test inventory directory: the sandbox's inventory and a migration state written through
/// zdm-run's own state store (phase 2 completed with its gates, phase 3 started).
fn test_inventory(fleet: &Fleet) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("zdm-monitoring-")
        .tempdir()
        .unwrap();
    let src = Path::new(fleet.sb.get("SANDBOX_INVENTORY")).join("hosts.yml");
    std::fs::copy(&src, dir.path().join("hosts.yml")).unwrap();
    let mut state = MigrationState::default();
    state.record(entry("phase2.yml", Phase::Phase2, Event::Started));
    let mut done = entry("phase2.yml", Phase::Phase2, Event::Completed);
    done.gates = vec![
        GateResult {
            name: "consistency: missing rows".into(),
            passed: true,
            measured: "0".into(),
            threshold: "0".into(),
        },
        GateResult {
            name: "consistency: mismatched rows".into(),
            passed: true,
            measured: "0".into(),
            threshold: "0".into(),
        },
    ];
    state.record(done);
    state.record(entry("phase3.yml", Phase::Phase3, Event::Started));
    StateStore::beside_inventory(dir.path())
        .save(&state)
        .unwrap();
    dir
}

/// A free port on the control side's sandbox address.
fn free_port(addr: &str) -> u16 {
    std::net::TcpListener::bind((addr, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The ways a password could be written into a file.
fn encodings(secret: &str) -> Vec<String> {
    let b = secret.as_bytes();
    let e = base64::engine::general_purpose::STANDARD.encode(b);
    let e_nopad = base64::engine::general_purpose::STANDARD_NO_PAD.encode(b);
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let percent: String = b.iter().map(|c| format!("%{c:02X}")).collect();
    vec![
        secret.to_string(),
        hex::encode(b),
        hex::encode_upper(b),
        e,
        e_nopad,
        url,
        percent,
        serde_json::to_string(secret).unwrap(),
        secret.chars().rev().collect(),
    ]
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_the_fleet_every_panel_and_alert_evaluates_and_logs_are_collected() {
    let started = Instant::now();
    let fleet = Fleet::take();
    let mon = Monitoring::take(&fleet);
    let inv = test_inventory(&fleet);
    let inv_file = inv.path().join("hosts.yml");
    let inv_file = inv_file.to_str().unwrap();

    // The migration's state, served the way an operator runs it on the control machine.
    let control = "10.213.0.1";
    let port = free_port(control);
    let listen = format!("{control}:{port}");
    let _exporter = Exporter(
        Command::new(env!("CARGO_BIN_EXE_zdm-run"))
            .args(["metrics", "-i", inv_file, "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zdm-run metrics"),
    );

    // Proxies with shadow reads (phase 3's read mode) and a short heartbeat, so a cluster that
    // becomes unreachable is seen within seconds.
    fleet
        .run(
            "playbooks/deploy.yml",
            &[
                "-e",
                "read_mode=DUAL_ASYNC_ON_SECONDARY",
                "-e",
                "heartbeat_interval_ms=2000",
            ],
        )
        .assert_ok("deploy.yml");
    let deployed = started.elapsed();

    let ks = unique_name("deploy_mon");
    let _ks_guard = KeyspaceGuard::on(&fleet.sb, &ks);
    let session = Arc::new(fleet.proxy_session(&HOSTS).await);
    create_table(&session, &ks).await;
    let workload = Workload::start(session.clone(), &ks, 4, Duration::from_millis(25)).await;

    let extra = serde_json::json!({
        "zdm_migration_metrics_targets": [listen],
        "prometheus_scrape_interval": "5s",
        "prometheus_evaluation_interval": "5s",
        "zdm_alert_not_ready_for": "10s",
    })
    .to_string();
    let args = ["-e", extra.as_str()];
    let first = fleet.run_with_inventory(inv_file, "playbooks/monitoring.yml", &args);
    first.assert_ok("monitoring.yml");
    assert!(
        first.recap(MON, "changed") >= 3,
        "the first run writes rules, config and starts Prometheus:\n{}",
        first.out
    );
    let again = fleet.run_with_inventory(inv_file, "playbooks/monitoring.yml", &args);
    again.assert_ok("monitoring.yml again");
    assert_eq!(
        again.recap(MON, "changed"),
        0,
        "a second run must change nothing:\n{}",
        again.out
    );
    for r in [&first, &again] {
        for p in fleet.passwords() {
            assert!(!r.out.contains(&p), "a password in the output:\n{}", r.out);
        }
    }

    // A proxy added to the inventory becomes a scrape target (shown by the plan; the real
    // host does not exist, so nothing is applied).
    let grown = inv.path().join("grown");
    std::fs::create_dir(&grown).unwrap();
    let hosts = std::fs::read_to_string(inv_file).unwrap();
    let last = format!("          ansible_host: \"{}\"\n", fleet.address("zdm-h3"));
    assert!(hosts.contains(&last), "{hosts}");
    std::fs::write(
        grown.join("hosts.yml"),
        hosts.replacen(
            &last,
            &format!("{last}        zdm-h4:\n          ansible_host: \"10.213.0.14\"\n"),
            1,
        ),
    )
    .unwrap();
    let plan = fleet.run_with_inventory(
        grown.join("hosts.yml").to_str().unwrap(),
        "playbooks/monitoring.yml",
        &["--check", "--diff", "-e", extra.as_str()],
    );
    plan.assert_ok("monitoring.yml --check --diff with a fourth proxy");
    assert!(
        plan.out
            .lines()
            .any(|l| l.starts_with('+') && l.contains("10.213.0.14:14001")),
        "the plan must add zdm-h4's metrics endpoint to the scrape targets:\n{}",
        plan.out
    );
    let config = fleet.ssh(MON, "cat /etc/prometheus/prometheus.yml");
    assert!(
        !config.contains("10.213.0.14"),
        "check mode changed the config"
    );
    for h in HOSTS {
        assert!(
            config.contains(&format!("\"{}:14001\"", fleet.address(h))),
            "{h} missing from the scrape config:\n{config}"
        );
    }

    // Every target up, as Prometheus's HTTP API reports it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let targets = loop {
        let v = mon.api("/api/v1/targets", &[("state", "active")]).await;
        let active = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let up: Vec<String> = active
            .iter()
            .filter(|t| t["health"] == "up")
            .map(|t| {
                format!(
                    "{} {}",
                    t["labels"]["job"].as_str().unwrap_or(""),
                    t["scrapeUrl"].as_str().unwrap_or("")
                )
            })
            .collect();
        if up.len() == 4 {
            break up;
        }
        assert!(
            Instant::now() < deadline,
            "targets not all up after 60 s: {active:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for h in HOSTS {
        let url = format!("zdm-proxy http://{}:14001/metrics", fleet.address(h));
        assert!(targets.contains(&url), "{url} not up: {targets:?}");
    }
    assert!(
        targets.contains(&format!("zdm-migration http://{listen}/metrics")),
        "{targets:?}"
    );

    // Every panel query evaluates and returns data (rates need two scrapes of the workload).
    let queries = dashboard_queries();
    let deadline = Instant::now() + Duration::from_secs(90);
    let counts: BTreeMap<String, usize> = loop {
        let mut counts = BTreeMap::new();
        let mut empty = Vec::new();
        for (name, expr) in &queries {
            match mon.query(expr).await {
                Ok(series) if series.is_empty() => empty.push(format!("{name}: {expr}")),
                Ok(series) => {
                    counts.insert(name.clone(), series.len());
                }
                Err(e) => panic!("panel query {name} does not evaluate: {expr}: {e}"),
            }
        }
        if empty.is_empty() {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "panel queries without data after 90 s of load:\n{}",
            empty.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    eprintln!("panel queries and their series: {counts:#?}");
    let rate = mon
        .query("sum(rate(zdm_proxy_request_duration_seconds_count[1m]))")
        .await
        .unwrap();
    let rate: f64 = rate[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        rate > 10.0,
        "the workload's requests must show: {rate} req/s"
    );
    let phase = mon.query("zdm_migration_phase == 1").await.unwrap();
    assert_eq!(phase.len(), 1, "{phase:?}");
    assert_eq!(phase[0]["metric"]["phase"], "phase3", "{phase:?}");
    let gates = mon.query("zdm_migration_gate_passed").await.unwrap();
    assert_eq!(gates.len(), 2, "{gates:?}");

    // Every alert rule evaluated without error; none fires on a healthy fleet for readiness.
    let promtool = fleet.ssh(
        MON,
        "promtool check rules /etc/prometheus/rules/zdm-alerts.yml 2>&1",
    );
    assert!(promtool.contains("SUCCESS"), "{promtool}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let v = mon.api("/api/v1/rules", &[]).await;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.iter().all(|r| {
            !r["lastEvaluation"]
                .as_str()
                .unwrap_or("0001")
                .starts_with("0001")
        });
        if rules.len() >= 6 && evaluated {
            break rules;
        }
        assert!(Instant::now() < deadline, "rules not evaluated: {v:#}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut alert_names = Vec::new();
    for r in &rules {
        let name = r["name"].as_str().unwrap_or("?").to_string();
        assert_eq!(r["health"], "ok", "rule {name}: {r:#}");
        let expr = r["query"].as_str().unwrap();
        mon.query(expr)
            .await
            .unwrap_or_else(|e| panic!("rule {name} does not evaluate: {expr}: {e}"));
        alert_names.push(name);
    }
    for want in [
        "ZdmProxyDown",
        "ZdmProxyNotReady",
        "ZdmProxyFailedWrites",
        "ZdmStreamIdsNearlyExhausted",
        "ZdmShadowReadMismatches",
        "ZdmTargetLatencyFarAboveOrigin",
    ] {
        assert!(
            alert_names.iter().any(|n| n == want),
            "{want} missing: {alert_names:?}"
        );
    }
    let before = mon
        .query("ALERTS{alertname=\"ZdmProxyNotReady\"}")
        .await
        .unwrap();
    assert!(
        before.is_empty(),
        "readiness alert on a healthy fleet: {before:?}"
    );

    let report = workload.stop().await;
    assert!(
        report.acked.len() > 100,
        "the workload barely ran: {}",
        report.acked.len()
    );
    drop(session);

    // zdm-h3 loses its route to target: its proxy turns unready and the alert fires for it.
    let target_ip = fleet.sb.get("ZDM_TARGET_CONTACT_POINTS");
    let cut_at = Instant::now();
    let cut = RouteCut::new(UNREADY, target_ip);
    let deadline = Instant::now() + Duration::from_secs(120);
    let firing = loop {
        let v = mon.api("/api/v1/alerts", &[]).await;
        let firing: Vec<Value> = v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "ZdmProxyNotReady" && a["state"] == "firing")
            .collect();
        if !firing.is_empty() {
            break firing;
        }
        assert!(
            Instant::now() < deadline,
            "ZdmProxyNotReady never fired for {UNREADY}: {v:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let fired_after = cut_at.elapsed();
    assert_eq!(firing.len(), 1, "only {UNREADY} is unready: {firing:#?}");
    assert_eq!(firing[0]["labels"]["proxy"], UNREADY, "{firing:#?}");
    let down = mon
        .query(&format!(
            "zdm_proxy_cluster_up{{proxy=\"{UNREADY}\",cluster=\"target\"}} == 0"
        ))
        .await
        .unwrap();
    assert_eq!(down.len(), 1, "{UNREADY} must see target DOWN: {down:?}");
    assert_eq!(
        fleet.readiness(UNREADY).await,
        Some(503),
        "{UNREADY}'s readiness endpoint"
    );
    drop(cut);
    eprintln!("ZdmProxyNotReady fired {fired_after:.1?} after the route to target was cut");

    // The support archive.
    let support = inv.path().join("support");
    let collect = fleet.run_with_inventory(
        inv_file,
        "playbooks/collect-logs.yml",
        &["-e", &format!("zdm_collect_dest={}", support.display())],
    );
    collect.assert_ok("collect-logs.yml");
    let archives: Vec<PathBuf> = std::fs::read_dir(&support)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        archives.len(),
        1,
        "one archive and nothing else: {archives:?}"
    );
    let archive = &archives[0];
    let name = archive.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("zdm-support-20") && name.ends_with("Z.tar.gz"),
        "dated archive name: {name}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(archive).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let unpacked = inv.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let root = unpacked.join(name.trim_end_matches(".tar.gz"));
    for h in HOSTS {
        let dir = root.join("proxies").join(h);
        let log = std::fs::read_to_string(dir.join("zdm-proxy.log"))
            .unwrap_or_else(|e| panic!("{h}'s log: {e}"));
        assert!(
            log.contains("zdm-run starts zdm-proxy"),
            "{h}'s log:\n{log}"
        );
        let config = std::fs::read_to_string(dir.join("zdm-proxy.yml"))
            .unwrap_or_else(|e| panic!("{h}'s config: {e}"));
        assert!(
            config.contains("read_mode: DUAL_ASYNC_ON_SECONDARY"),
            "{h}'s config:\n{config}"
        );
        for key in ["origin_password", "target_password"] {
            assert!(
                config.contains(&format!("{key}: \"<redacted>\"")),
                "{h}'s config must keep {key} redacted:\n{config}"
            );
        }
    }
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("status.json")).unwrap())
            .expect("status.json is zdm-run status --output json");
    assert_eq!(status["phase"], "phase3", "{status:#}");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("zdm-state.json")).unwrap())
            .unwrap();
    assert_eq!(state["phase"], "phase3", "{state:#}");
    let files = files_under(&unpacked);
    assert!(files.len() >= 3 * 3 + 2, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for p in fleet.passwords() {
            for form in encodings(&p) {
                assert!(
                    !text.contains(&form),
                    "{} holds a password (as {form:?})",
                    f.display()
                );
            }
        }
    }
    for p in fleet.passwords() {
        assert!(!collect.out.contains(&p), "a password in the output");
    }
    eprintln!(
        "deploy {deployed:.1?}; whole test {:.1?}",
        started.elapsed()
    );
}
