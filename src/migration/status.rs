//! `zdm-run status`: where the migration stands, at a glance.
//!
//! Prints the recorded phase, who holds the run lock, every proxy of the `proxies` group with
//! its readiness, the settings it really runs (`GET /config`: `primary_cluster`, `read_mode`,
//! flagged when they are not what the recorded phase means) and how many clients are connected
//! to it (`zdm_client_connections_total`), then the last gate results and the tail of the
//! history. Every proxy is asked with a short timeout: one that does not answer is shown as
//! such, it does not stop the report. Reads only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::gates::health::{fetch_readiness, Readiness};
use crate::inventory::Inventory;
use crate::migration::state::{
    Event, GateResult, HistoryEntry, LockOwner, MigrationState, Phase, StateStore,
};
use crate::output::Format;

/// How many history entries the report shows.
const HISTORY_TAIL: usize = 10;

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Inventory file or directory [default: $ZDMRUN_INVENTORY, else ./inventory].
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    pub inventory: Option<PathBuf>,

    /// Output format.
    #[arg(long = "output", value_enum, default_value = "human")]
    pub output: Format,

    /// Seconds to wait for each proxy's readiness answer.
    #[arg(long = "timeout", default_value_t = 2.0)]
    pub timeout: f64,
}

/// One proxy as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub name: String,
    pub url: String,
    pub ready: bool,
    /// HTTP status of `/health/readiness`; absent when it could not be reached.
    pub http_status: Option<u16>,
    pub origin: Option<String>,
    pub target: Option<String>,
    pub error: Option<String>,
    /// The line shown to humans.
    pub description: String,
    /// What the proxy says it runs (`GET /config`); absent when it could not be asked.
    pub running: Option<RunningSettings>,
    /// `zdm_client_connections_total` from its `/metrics`; absent when it could not be read.
    pub client_connections: Option<f64>,
}

/// The live settings a proxy reports on `GET /config` that tell which phase it serves.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunningSettings {
    pub primary_cluster: String,
    pub read_mode: String,
}

impl RunningSettings {
    /// Reads the two settings out of a `/config` answer.
    pub fn from_config_json(body: &str) -> Option<RunningSettings> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        Some(RunningSettings {
            primary_cluster: v.get("primary_cluster")?.as_str()?.to_string(),
            read_mode: v.get("read_mode")?.as_str()?.to_string(),
        })
    }

    fn matches(&self, expected: &ExpectedSettings) -> bool {
        self.primary_cluster == expected.primary_cluster && self.read_mode == expected.read_mode
    }
}

impl From<(&str, Readiness)> for ProxyStatus {
    fn from((url, r): (&str, Readiness)) -> Self {
        ProxyStatus {
            running: None,
            client_connections: None,
            name: r.proxy.clone(),
            url: url.to_string(),
            ready: r.ready(),
            http_status: r.status,
            origin: r.origin.clone(),
            target: r.target.clone(),
            error: r.error.clone(),
            description: r.describe(),
        }
    }
}

/// The whole report (`--output json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub state_file: String,
    pub phase: Phase,
    pub completed: bool,
    /// `primary_cluster`/`read_mode` the recorded phase means for the proxies.
    pub expected_proxy_settings: Option<ExpectedSettings>,
    pub lock: Option<LockOwner>,
    pub proxies: Vec<ProxyStatus>,
    pub last_gates: Vec<GateResult>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExpectedSettings {
    pub primary_cluster: &'static str,
    pub read_mode: &'static str,
}

/// The `proxies` group as (name, readiness base URL), from `ansible_host` and `metrics_port`.
pub fn proxies(inventory: &Inventory) -> Vec<(String, String)> {
    inventory
        .group_hosts("proxies")
        .into_iter()
        .map(|h| {
            let vars = inventory.host_vars(&h);
            let addr = vars
                .get("ansible_host")
                .map(crate::vars::display)
                .unwrap_or_else(|| h.clone());
            let port = vars
                .get("metrics_port")
                .map(crate::vars::display)
                .unwrap_or_else(|| crate::gates::DEFAULT_METRICS_PORT.to_string());
            (h, format!("http://{addr}:{port}"))
        })
        .collect()
}

/// Gathers the report: state file beside the inventory, readiness of every proxy in parallel.
pub async fn gather(inventory: &Inventory, timeout: Duration) -> anyhow::Result<StatusReport> {
    let store = StateStore::beside_inventory(inventory.source.as_deref().unwrap_or(Path::new(".")));
    let state: MigrationState = store.load()?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()?;
    // Nothing recorded yet: no proxy has been deployed by a phase, so asking the fleet would
    // only print a column of NOT READY (and wait for timeouts) on a fresh inventory.
    let fleet = if is_fresh(&state) {
        vec![]
    } else {
        proxies(inventory)
    };
    let answers = futures::future::join_all(fleet.iter().map(|(name, url)| {
        let client = &client;
        async move {
            let (readiness, running, clients) = tokio::join!(
                fetch_readiness(client, name, url),
                fetch_running(client, url),
                fetch_client_connections(client, url)
            );
            let mut status = ProxyStatus::from((url.as_str(), readiness));
            status.running = running;
            status.client_connections = clients;
            status
        }
    }))
    .await;
    let tail = state.history.len().saturating_sub(HISTORY_TAIL);
    Ok(StatusReport {
        state_file: store.path().display().to_string(),
        phase: state.phase,
        completed: state.completed,
        expected_proxy_settings: state.phase.proxy_settings().map(|(p, m)| ExpectedSettings {
            primary_cluster: p,
            read_mode: m,
        }),
        lock: store.lock_holder(),
        proxies: answers,
        last_gates: state.last_gates().to_vec(),
        history: state.history[tail..].to_vec(),
    })
}

/// Asks a proxy which `primary_cluster`/`read_mode` it runs; `None` when it cannot tell
/// (down, or a proxy too old to have `/config`).
async fn fetch_running(client: &reqwest::Client, base_url: &str) -> Option<RunningSettings> {
    let response = client.get(format!("{base_url}/config")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    RunningSettings::from_config_json(&response.text().await.ok()?)
}

async fn fetch_client_connections(client: &reqwest::Client, base_url: &str) -> Option<f64> {
    let scrape = crate::gates::health::fetch_metrics(client, base_url)
        .await
        .ok()?;
    scrape
        .has("zdm_client_connections_total")
        .then(|| scrape.sum("zdm_client_connections_total", &[]))
}

/// The settings and client count part of a proxy's line, with a loud flag when the proxy
/// runs something other than what the recorded phase means.
fn running_words(p: &ProxyStatus, expected: Option<&ExpectedSettings>) -> String {
    let mut words = match &p.running {
        Some(run) => {
            let mut w = format!(
                "primary_cluster={} read_mode={}",
                run.primary_cluster, run.read_mode
            );
            if expected.is_some_and(|e| !run.matches(e)) {
                w.push_str(" (DIFFERS from the recorded phase)");
            }
            w
        }
        None => "settings unknown".to_string(),
    };
    if let Some(n) = p.client_connections {
        words.push_str(&format!(
            ", {n} client connection{}",
            if n == 1.0 { "" } else { "s" }
        ));
    }
    words
}

fn event_word(e: Event) -> &'static str {
    match e {
        Event::Started => "started",
        Event::Completed => "completed",
        Event::Failed => "FAILED",
        Event::RollbackStarted => "rollback started",
        Event::RolledBack => "rolled back",
    }
}

/// No phase has been recorded for this inventory.
fn is_fresh(state: &MigrationState) -> bool {
    state.phase == crate::migration::state::Phase::NotStarted && state.history.is_empty()
}

/// The report for humans. A migration that has not started is one line: there is nothing
/// else to report.
pub fn human(r: &StatusReport) -> String {
    if r.phase == crate::migration::state::Phase::NotStarted
        && r.history.is_empty()
        && r.lock.is_none()
    {
        return format!("not started (nothing recorded in {})\n", r.state_file);
    }
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("state file: {}", r.state_file));
    line(format!(
        "phase:      {} ({})",
        r.phase,
        if r.completed {
            "completed"
        } else {
            "NOT completed"
        }
    ));
    line(match &r.lock {
        None => "lock:       free".into(),
        Some(o) => format!(
            "lock:       held by {} on {} (pid {}) running {} since {}",
            o.user, o.host, o.pid, o.playbook, o.since
        ),
    });
    match &r.expected_proxy_settings {
        Some(s) => line(format!(
            "proxies:    {} (this phase means primary_cluster={} read_mode={})",
            r.proxies.len(),
            s.primary_cluster,
            s.read_mode
        )),
        None => line(format!(
            "proxies:    {} (none expected in this phase)",
            r.proxies.len()
        )),
    }
    for p in &r.proxies {
        let verdict = if p.ready { "READY" } else { "NOT READY" };
        line(format!(
            "  {:<10} {:<28} {verdict:<9} {}",
            p.name, p.url, p.description
        ));
        line(format!(
            "  {:<10} {:<28} {:<9} {}",
            "",
            "",
            "",
            running_words(p, r.expected_proxy_settings.as_ref())
        ));
    }
    if r.last_gates.is_empty() {
        line("last gates: none recorded".into());
    } else {
        line("last gates:".into());
        for g in &r.last_gates {
            line(format!(
                "  [{}] {}: {} (threshold: {})",
                if g.passed { "PASS" } else { "FAIL" },
                g.name,
                g.measured.replace('\n', "\n      "),
                g.threshold
            ));
        }
    }
    if r.history.is_empty() {
        line("history:    empty".into());
    } else {
        line(format!("history (last {}):", r.history.len()));
        for e in &r.history {
            let mut s = format!(
                "  {}  {}@{}  {} {}  {}",
                e.at,
                e.user,
                e.host,
                e.phase,
                event_word(e.event),
                e.playbook
            );
            if let Some(f) = &e.forced {
                s.push_str(&format!("\n      FORCED: {f}"));
            }
            if let Some(n) = &e.note {
                s.push_str(&format!("\n      note: {n}"));
            }
            line(s);
        }
    }
    out
}

/// Runs `zdm-run status`; returns the exit code.
pub fn run(args: StatusArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(args.inventory.as_deref()).map_err(|e| anyhow::anyhow!(e.0))?;
    anyhow::ensure!(
        args.timeout > 0.0 && args.timeout <= 60.0,
        "--timeout must be between 0 and 60 seconds"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(gather(&inventory, Duration::from_secs_f64(args.timeout)))?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => print!("{}", human(&report)),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(running: Option<RunningSettings>, clients: Option<f64>) -> ProxyStatus {
        ProxyStatus {
            name: "h1".into(),
            url: "http://10.0.0.1:14001".into(),
            ready: true,
            http_status: Some(200),
            origin: None,
            target: None,
            error: None,
            description: String::new(),
            running,
            client_connections: clients,
        }
    }

    #[test]
    fn config_answer_gives_the_running_settings() {
        let body = r#"{"primary_cluster":"TARGET","read_mode":"DUAL_ASYNC_ON_SECONDARY","log_level":"info"}"#;
        assert_eq!(
            RunningSettings::from_config_json(body),
            Some(RunningSettings {
                primary_cluster: "TARGET".into(),
                read_mode: "DUAL_ASYNC_ON_SECONDARY".into()
            })
        );
        assert_eq!(RunningSettings::from_config_json("not json"), None);
        assert_eq!(
            RunningSettings::from_config_json(r#"{"read_mode":"PRIMARY_ONLY"}"#),
            None
        );
    }

    #[test]
    fn a_proxy_running_another_phase_is_flagged() {
        let expected = ExpectedSettings {
            primary_cluster: "ORIGIN",
            read_mode: "PRIMARY_ONLY",
        };
        let same = proxy(
            Some(RunningSettings {
                primary_cluster: "ORIGIN".into(),
                read_mode: "PRIMARY_ONLY".into(),
            }),
            Some(2.0),
        );
        let words = running_words(&same, Some(&expected));
        assert_eq!(
            words,
            "primary_cluster=ORIGIN read_mode=PRIMARY_ONLY, 2 client connections"
        );
        let other = proxy(
            Some(RunningSettings {
                primary_cluster: "TARGET".into(),
                read_mode: "PRIMARY_ONLY".into(),
            }),
            Some(1.0),
        );
        let words = running_words(&other, Some(&expected));
        assert!(words.contains("DIFFERS from the recorded phase"), "{words}");
        assert!(words.ends_with("1 client connection"), "{words}");
        assert_eq!(running_words(&proxy(None, None), None), "settings unknown");
    }
}
