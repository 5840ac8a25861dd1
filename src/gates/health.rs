//! The health gate: may the fleet of proxies move on to the next phase?
//!
//! It asks every proxy for `/health/readiness` (both clusters UP), then scrapes `/metrics` at
//! the start and the end of an observation window and judges what happened *inside* the window:
//! the share of writes and reads that failed and, when shadow reads are on (phase 3), how the
//! target's latency compares with the origin's. Counters from before the window (an incident
//! last week) do not count against today's transition.

use std::time::Duration;

use super::prometheus::{increase, window_quantile, Scrape};
use super::Check;

/// The gate's thresholds; every one is a playbook variable so a demo can shorten the window.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthThresholds {
    /// How long to watch (`zdm_observe_seconds`).
    pub observe: Duration,
    /// Largest allowed share of failed writes in the window (`zdm_max_failed_write_ratio`).
    pub max_failed_write_ratio: f64,
    /// Largest allowed share of failed reads (`zdm_max_failed_read_ratio`).
    pub max_failed_read_ratio: f64,
    /// Phase 3's checks (`zdm_check_target_latency`): target latency against origin's, and
    /// shadow reads on target judged apart from the clients' reads (which origin answers).
    pub check_target_latency: bool,
    /// Largest allowed share of shadow (async) reads that failed on target, phase 3
    /// (`zdm_max_async_read_error_ratio`).
    pub max_async_read_error_ratio: f64,
    /// Largest allowed share of compared shadow reads whose rows differed from origin's,
    /// phase 3 (`zdm_max_async_read_mismatch_ratio`). Not zero by default: a read racing a
    /// write can see the write on one cluster a moment before the other.
    pub max_async_read_mismatch_ratio: f64,
    /// Largest allowed target p99 / origin p99 (`zdm_max_target_p99_ratio`).
    pub max_target_p99_ratio: f64,
    /// Below this p99 (seconds) the target is fast enough whatever the ratio, so that a 1 ms
    /// vs 0.4 ms difference does not fail a gate (`zdm_target_p99_floor_seconds`).
    pub target_p99_floor: f64,
    /// Tables (`keyspace.table`) whose divergence the operator accepts
    /// (`zdm_accept_divergent_tables`): their unsafe writes are reported, not failed.
    pub accept_divergent_tables: Vec<String>,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            observe: Duration::from_secs(60),
            max_failed_write_ratio: 0.0,
            max_failed_read_ratio: 0.0,
            check_target_latency: false,
            max_async_read_error_ratio: 0.0,
            max_async_read_mismatch_ratio: 0.01,
            max_target_p99_ratio: 2.0,
            target_p99_floor: 0.05,
            accept_divergent_tables: Vec::new(),
        }
    }
}

/// What one proxy said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub proxy: String,
    /// HTTP status, or `None` when the endpoint could not be reached at all.
    pub status: Option<u16>,
    /// `OriginStatus.Status` / `TargetStatus.Status` from the body, when it had them.
    pub origin: Option<String>,
    pub target: Option<String>,
    pub error: Option<String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.status == Some(200)
    }

    /// One line an operator can act on: which cluster the proxy sees DOWN.
    pub fn describe(&self) -> String {
        match (self.status, &self.error) {
            (None, Some(e)) => format!("{}: readiness endpoint unreachable: {e}", self.proxy),
            (status, _) => {
                let mut down = Vec::new();
                if self.origin.as_deref() == Some("DOWN") {
                    down.push("ORIGIN");
                }
                if self.target.as_deref() == Some("DOWN") {
                    down.push("TARGET");
                }
                let status = status.map(|s| s.to_string()).unwrap_or_default();
                if down.is_empty() {
                    format!("{}: readiness {status}", self.proxy)
                } else {
                    format!(
                        "{}: readiness {status}, {} DOWN",
                        self.proxy,
                        down.join(" and ")
                    )
                }
            }
        }
    }
}

/// Parses a `/health/readiness` answer (the reference proxy's JSON shape).
pub fn readiness_from(proxy: &str, status: u16, body: &str) -> Readiness {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let cluster = |key: &str| {
        json.as_ref()
            .and_then(|j| j.get(key))
            .and_then(|c| c.get("Status"))
            .and_then(|s| s.as_str())
            .map(str::to_string)
    };
    Readiness {
        proxy: proxy.to_string(),
        status: Some(status),
        origin: cluster("OriginStatus"),
        target: cluster("TargetStatus"),
        error: None,
    }
}

/// The fleet's metrics at the two ends of the window (each proxy's scrapes, in the same order).
pub struct Window<'a> {
    pub before: &'a [Scrape],
    pub after: &'a [Scrape],
}

impl Window<'_> {
    /// The fleet-wide increase of a counter (or a histogram's `_count`) inside the window.
    /// `keyspace.table` of every series of `name` that grew inside the window (a few, sorted).
    fn tables_with_increase(&self, name: &str) -> Vec<String> {
        let mut tables = std::collections::BTreeSet::new();
        for (before, after) in self.before.iter().zip(self.after) {
            for sample in after.samples.iter().filter(|s| s.name == name) {
                let label = |k: &str| sample.labels.get(k).map_or("", String::as_str);
                let (ks, table) = (label("keyspace"), label("table"));
                let was = before.sum(name, &[("keyspace", ks), ("table", table)]);
                if increase(was, sample.value) > 0.0 {
                    tables.insert(format!("{ks}.{table}"));
                }
            }
        }
        let mut list: Vec<String> = tables.into_iter().collect();
        if list.len() > 5 {
            let more = list.len() - 5;
            list.truncate(5);
            list.push(format!("{more} more"));
        }
        list
    }

    fn increase(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.before
            .iter()
            .zip(self.after)
            .map(|(b, a)| increase(b.sum(name, labels), a.sum(name, labels)))
            .sum()
    }

    /// The fleet-wide `q` quantile of a histogram's observations inside the window.
    fn quantile(&self, q: f64, name: &str) -> Option<f64> {
        self.quantile_of(q, &[name])
    }

    /// The `q` quantile of several histograms with the same buckets taken together.
    fn quantile_of(&self, q: f64, names: &[&str]) -> Option<f64> {
        let merge = |scrapes: &[Scrape]| {
            let mut merged: Vec<(f64, f64)> = Vec::new();
            for scrape in scrapes {
                for (bound, count) in names.iter().flat_map(|n| scrape.buckets(n, &[])) {
                    match merged.iter_mut().find(|(b, _)| *b == bound) {
                        Some(slot) => slot.1 += count,
                        None => merged.push((bound, count)),
                    }
                }
            }
            merged.sort_by(|a, b| a.0.total_cmp(&b.0));
            merged
        };
        window_quantile(q, &merge(self.before), &merge(self.after))
    }
}

const DURATION: &str = "zdm_proxy_request_duration_seconds_count";

/// Judges a window against the thresholds. Readiness is judged separately (`readiness_checks`).
pub fn judge_window(window: &Window<'_>, limits: &HealthThresholds) -> Vec<Check> {
    let mut checks = Vec::new();
    let seconds = limits.observe.as_secs_f64();

    let writes = window.increase(DURATION, &[("type", "writes")]);
    let failed_writes = window.increase("zdm_proxy_failed_writes_total", &[]);
    checks.push(ratio_check(
        "failed writes",
        failed_writes,
        writes + failed_writes,
        limits.max_failed_write_ratio,
        seconds,
    ));

    let reads = window.increase(DURATION, &[("type", "reads_origin")])
        + window.increase(DURATION, &[("type", "reads_target")]);
    // With shadow reads on (phase 3) clients are answered by origin: a read that failed on
    // target failed no client, and is judged as a shadow-read error instead.
    let failed_reads = if limits.check_target_latency {
        window.increase("zdm_proxy_failed_reads_total", &[("cluster", "origin")])
    } else {
        window.increase("zdm_proxy_failed_reads_total", &[])
    };
    checks.push(ratio_check(
        "failed reads",
        failed_reads,
        reads + failed_reads,
        limits.max_failed_read_ratio,
        seconds,
    ));
    if limits.check_target_latency {
        checks.extend(shadow_read_checks(window, limits, seconds));
    }
    checks.push(unsafe_writes_check(
        window.after,
        &limits.accept_divergent_tables,
    ));

    if limits.check_target_latency {
        let origin = window.quantile(0.99, "zdm_origin_request_duration_seconds");
        // Target's side of phase 3 is the dual writes plus the shadow reads (its async
        // connections): both are what target will serve alone after phase 4.
        let target = window.quantile_of(
            0.99,
            &[
                "zdm_target_request_duration_seconds",
                "zdm_async_request_duration_seconds",
            ],
        );
        checks.push(match (origin, target) {
            (Some(origin), Some(target)) => {
                let ratio = if origin > 0.0 {
                    target / origin
                } else {
                    f64::INFINITY
                };
                let fast_enough = target <= limits.target_p99_floor;
                Check {
                    name: "target p99 latency".into(),
                    passed: fast_enough || ratio <= limits.max_target_p99_ratio,
                    measured: format!(
                        "target p99 {:.1} ms vs origin p99 {:.1} ms (x{ratio:.2})",
                        target * 1000.0,
                        origin * 1000.0
                    ),
                    threshold: format!(
                        "<= x{:.2} of origin, or <= {:.1} ms",
                        limits.max_target_p99_ratio,
                        limits.target_p99_floor * 1000.0
                    ),
                }
            }
            _ => Check {
                name: "target p99 latency".into(),
                passed: false,
                measured: "no requests reached both clusters in the window".into(),
                threshold: "traffic through the proxies during the observation window".into(),
            },
        });
    }
    checks
}

const UNSAFE: &str = "zdm_proxy_unsafe_writes_total";

/// Writes dual writing cannot keep equal, counted by the proxies per table and cause since they
/// started (not only in the window: every one of them is a row apart today). A function left to
/// each cluster, an LWT applied on one cluster only, or a counter update that failed on one
/// cluster certainly leaves the table apart: the check fails unless the operator accepts the
/// table (`zdm_accept_divergent_tables`). Counter updates that succeeded on both are reported
/// only (equal while every increment reaches both clusters).
pub fn unsafe_writes_check(after: &[Scrape], accepted: &[String]) -> Check {
    // (keyspace.table) -> [(cause, count)], summed over the fleet.
    let mut by_table: std::collections::BTreeMap<String, Vec<(String, f64)>> = Default::default();
    for scrape in after {
        for s in scrape
            .samples
            .iter()
            .filter(|s| s.name == UNSAFE && s.value > 0.0)
        {
            let label = |k: &str| s.labels.get(k).map_or("", String::as_str).to_string();
            let causes = by_table
                .entry(format!("{}.{}", label("keyspace"), label("table")))
                .or_default();
            let cause = label("cause");
            match causes.iter_mut().find(|(c, _)| *c == cause) {
                Some(slot) => slot.1 += s.value,
                None => causes.push((cause, s.value)),
            }
        }
    }
    let mut failing = Vec::new();
    let mut parts = Vec::new();
    let mut advice = std::collections::BTreeSet::new();
    for (table, causes) in &by_table {
        let mut certain = false;
        let words: Vec<String> = causes
            .iter()
            .map(|(cause, n)| match cause.as_str() {
                "counter" => format!("{n:.0} counter updates"),
                "counter_failed_on_one" => {
                    certain = true;
                    advice.insert("counter updates that failed on one cluster: counters cannot be made safe by the proxy; phase2.yml -e zdm_autocorrect=true adds the difference origin - target to target's counters (validate names the rows)");
                    format!("{n:.0} counter updates failed on one cluster")
                }
                "lwt_outcome" => {
                    certain = true;
                    advice.insert("LWTs applied on one cluster only: run phase2.yml -e zdm_autocorrect=true to copy origin's rows");
                    format!("{n:.0} LWTs applied on one cluster only")
                }
                function => {
                    certain = true;
                    advice.insert("functions left to each cluster: set replace_cql_functions: true (the default) and run deploy.yml, then phase2.yml -e zdm_autocorrect=true repairs the rows already apart");
                    format!("{n:.0} writes with {function} evaluated by each cluster")
                }
            })
            .collect();
        let accepted_here = accepted.iter().any(|a| a == table);
        if certain && !accepted_here {
            failing.push(table.clone());
        }
        parts.push(format!(
            "{table}: {}{}",
            words.join(", "),
            if certain && accepted_here {
                " (accepted)"
            } else {
                ""
            }
        ));
    }
    let mut measured = if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join("; ")
    };
    if !failing.is_empty() {
        measured.push_str(&format!(
            ". Tables that will differ: {}. To do: {}; or accept them with -e \
             '{{\"zdm_accept_divergent_tables\": [{}]}}'",
            failing.join(", "),
            advice.into_iter().collect::<Vec<_>>().join("; "),
            failing
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Check {
        name: "writes the clusters cannot keep equal".into(),
        passed: failing.is_empty(),
        measured,
        threshold: "no function left to each cluster, LWT applied on one cluster only or counter \
                    update failed on one cluster, except in tables named in \
                    zdm_accept_divergent_tables"
            .into(),
    }
}

/// Phase 3: the shadow reads on target. Failed ones (errors, timeouts) against all sent, and
/// mismatches against all compared. Shadow reads dropped to protect the clients (queue or
/// memory full, target not connected) are neither: they are reported beside the mismatches,
/// and a window where nothing could be compared at all fails, since it proves nothing.
fn shadow_read_checks(window: &Window<'_>, limits: &HealthThresholds, seconds: f64) -> Vec<Check> {
    let sent = window.increase("zdm_async_request_duration_seconds_count", &[]);
    let failed = window.increase("zdm_async_requests_failed_total", &[]);
    let mut checks = vec![ratio_check(
        "failed shadow reads on target",
        failed,
        sent.max(failed),
        limits.max_async_read_error_ratio,
        seconds,
    )];
    let matches = window.increase("zdm_async_read_matches_total", &[]);
    let mismatches = window.increase("zdm_async_read_mismatches_total", &[]);
    let dropped = window.increase("zdm_async_requests_dropped_total", &[]);
    let compared = matches + mismatches;
    let mut check = ratio_check(
        "shadow reads that differ from origin",
        mismatches,
        compared,
        limits.max_async_read_mismatch_ratio,
        seconds,
    );
    check.measured.push_str(&format!(
        "; {dropped:.0} shadow reads dropped to spare the clients"
    ));
    if compared == 0.0 {
        check.passed = false;
        check.measured = format!(
            "no shadow read was compared in {seconds:.0} s ({dropped:.0} dropped): is \
             read_mode DUAL_ASYNC_ON_SECONDARY, and do clients read?"
        );
    } else if mismatches > 0.0 {
        let tables = window.tables_with_increase("zdm_async_read_mismatches_total");
        if !tables.is_empty() {
            check
                .measured
                .push_str(&format!("; differing in {}", tables.join(", ")));
        }
    }
    checks.push(check);
    checks
}

fn ratio_check(name: &str, failed: f64, total: f64, max_ratio: f64, seconds: f64) -> Check {
    let ratio = if total > 0.0 { failed / total } else { 0.0 };
    Check {
        name: name.into(),
        passed: ratio <= max_ratio,
        measured: format!(
            "{failed:.0} of {total:.0} in {seconds:.0} s ({:.3}%)",
            ratio * 100.0
        ),
        threshold: format!("<= {:.3}%", max_ratio * 100.0),
    }
}

/// One check per proxy: ready, or why not.
pub fn readiness_checks(readiness: &[Readiness]) -> Vec<Check> {
    readiness
        .iter()
        .map(|r| Check {
            name: format!("{} ready", r.proxy),
            passed: r.ready(),
            measured: r.describe(),
            threshold: "readiness 200 (origin and target UP)".into(),
        })
        .collect()
}

/// Asks one proxy's readiness endpoint.
pub async fn fetch_readiness(client: &reqwest::Client, proxy: &str, base_url: &str) -> Readiness {
    match client
        .get(format!("{base_url}/health/readiness"))
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            readiness_from(proxy, status, &body)
        }
        Err(e) => Readiness {
            proxy: proxy.to_string(),
            status: None,
            origin: None,
            target: None,
            error: Some(e.to_string()),
        },
    }
}

/// Scrapes one proxy's `/metrics`.
pub async fn fetch_metrics(client: &reqwest::Client, base_url: &str) -> anyhow::Result<Scrape> {
    let response = client
        .get(format!("{base_url}/metrics"))
        .send()
        .await?
        .error_for_status()?;
    Ok(Scrape::parse(&response.text().await?)?)
}

/// The gates' HTTP client: every request to a proxy is bounded by 10 s.
fn gate_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// Readiness of every proxy, one check each.
async fn readiness_of(client: &reqwest::Client, proxies: &[(String, String)]) -> Vec<Check> {
    let mut answers = Vec::new();
    for (name, url) in proxies {
        answers.push(fetch_readiness(client, name, url).await);
    }
    readiness_checks(&answers)
}

/// The readiness-only gate (`zdm_health_gate: {readiness_only: true}`): only the first step of
/// [`run_health_gate`], with no observation window.
pub async fn run_readiness_gate(proxies: &[(String, String)]) -> anyhow::Result<Vec<Check>> {
    Ok(readiness_of(&gate_client()?, proxies).await)
}

/// The whole gate over a fleet given as (name, `http://host:port`) pairs: readiness first
/// (no point watching a fleet that is not ready), then the window, then readiness again.
pub async fn run_health_gate(
    proxies: &[(String, String)],
    limits: &HealthThresholds,
) -> anyhow::Result<Vec<Check>> {
    let client = gate_client()?;
    let mut checks = readiness_of(&client, proxies).await;
    if checks.iter().any(|c| !c.passed) {
        return Ok(checks);
    }
    let mut before = Vec::new();
    for (_, url) in proxies {
        before.push(fetch_metrics(&client, url).await?);
    }
    tokio::time::sleep(limits.observe).await;
    let mut after = Vec::new();
    let mut still_ready = Vec::new();
    for (name, url) in proxies {
        after.push(fetch_metrics(&client, url).await?);
        still_ready.push(fetch_readiness(&client, name, url).await);
    }
    checks = readiness_checks(&still_ready);
    checks.extend(judge_window(
        &Window {
            before: &before,
            after: &after,
        },
        limits,
    ));
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(writes: u64, failed_writes: u64, reads: u64, failed_reads: u64) -> Scrape {
        Scrape::parse(&format!(
            "zdm_proxy_request_duration_seconds_count{{type=\"writes\"}} {writes}\n\
             zdm_proxy_request_duration_seconds_count{{type=\"reads_origin\"}} {reads}\n\
             zdm_proxy_request_duration_seconds_count{{type=\"reads_target\"}} 0\n\
             zdm_proxy_failed_writes_total{{failed_on=\"origin\"}} 0\n\
             zdm_proxy_failed_writes_total{{failed_on=\"target\"}} {failed_writes}\n\
             zdm_proxy_failed_writes_total{{failed_on=\"both\"}} 0\n\
             zdm_proxy_failed_reads_total{{cluster=\"origin\"}} {failed_reads}\n"
        ))
        .unwrap()
    }

    fn limits() -> HealthThresholds {
        HealthThresholds {
            observe: Duration::from_secs(10),
            ..Default::default()
        }
    }

    #[test]
    fn failures_before_the_window_do_not_count() {
        let before = [scrape(1000, 50, 1000, 7), scrape(10, 0, 10, 0)];
        let after = [scrape(1500, 50, 1600, 7), scrape(20, 0, 30, 0)];
        let checks = judge_window(
            &Window {
                before: &before,
                after: &after,
            },
            &limits(),
        );
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
        assert_eq!(checks[0].measured, "0 of 510 in 10 s (0.000%)");
    }

    #[test]
    fn failed_writes_in_the_window_fail_the_gate_with_the_measurement() {
        let before = [scrape(1000, 0, 1000, 0)];
        let after = [scrape(1090, 10, 1100, 0)];
        let checks = judge_window(
            &Window {
                before: &before,
                after: &after,
            },
            &limits(),
        );
        let writes = &checks[0];
        assert!(!writes.passed);
        assert_eq!(writes.measured, "10 of 100 in 10 s (10.000%)");
        assert_eq!(writes.threshold, "<= 0.000%");
        let tolerant = HealthThresholds {
            max_failed_write_ratio: 0.2,
            ..limits()
        };
        assert!(
            judge_window(
                &Window {
                    before: &before,
                    after: &after
                },
                &tolerant
            )[0]
            .passed
        );
    }

    #[test]
    fn a_proxy_restart_inside_the_window_is_a_counter_reset_not_a_negative_rate() {
        let before = [scrape(1000, 3, 1000, 0)];
        let after = [scrape(40, 0, 40, 0)];
        let checks = judge_window(
            &Window {
                before: &before,
                after: &after,
            },
            &limits(),
        );
        assert!(checks[0].passed, "{:?}", checks[0]);
        assert_eq!(checks[0].measured, "0 of 40 in 10 s (0.000%)");
    }

    fn latency(name: &str, fast: u64, slow: u64) -> String {
        format!(
            "{name}_bucket{{node=\"n\",le=\"0.01\"}} {fast}\n{name}_bucket{{node=\"n\",le=\"1\"}} {}\n{name}_bucket{{node=\"n\",le=\"+Inf\"}} {}\n",
            fast + slow,
            fast + slow
        )
    }

    #[test]
    fn target_latency_is_judged_relative_to_origin_with_a_floor() {
        let latency_limits = HealthThresholds {
            check_target_latency: true,
            target_p99_floor: 0.005,
            ..limits()
        };
        let base = "zdm_proxy_request_duration_seconds_count{type=\"writes\"} 0\n";
        let before = [Scrape::parse(&format!(
            "{base}{}{}",
            latency("zdm_origin_request_duration_seconds", 0, 0),
            latency("zdm_target_request_duration_seconds", 0, 0)
        ))
        .unwrap()];
        let slow_target = [Scrape::parse(&format!(
            "{base}{}{}",
            latency("zdm_origin_request_duration_seconds", 100, 0),
            latency("zdm_target_request_duration_seconds", 50, 50)
        ))
        .unwrap()];
        let checks = judge_window(
            &Window {
                before: &before,
                after: &slow_target,
            },
            &latency_limits,
        );
        let check = checks
            .iter()
            .find(|c| c.name == "target p99 latency")
            .unwrap();
        assert!(!check.passed, "{check:?}");
        assert!(
            check.measured.starts_with("target p99 "),
            "{}",
            check.measured
        );

        let same = [Scrape::parse(&format!(
            "{base}{}{}",
            latency("zdm_origin_request_duration_seconds", 100, 0),
            latency("zdm_target_request_duration_seconds", 100, 0)
        ))
        .unwrap()];
        let checks = judge_window(
            &Window {
                before: &before,
                after: &same,
            },
            &latency_limits,
        );
        let check = checks
            .iter()
            .find(|c| c.name == "target p99 latency")
            .unwrap();
        assert!(check.passed, "{check:?}");

        // No traffic at all: the latency check cannot pass on no evidence.
        let checks = judge_window(
            &Window {
                before: &before,
                after: &before,
            },
            &latency_limits,
        );
        assert!(
            !checks
                .iter()
                .find(|c| c.name == "target p99 latency")
                .unwrap()
                .passed
        );
    }

    #[test]
    fn in_phase_3_target_read_failures_are_shadow_errors_not_client_failures() {
        let text = |reads: u64, origin_failed: u64, shadow_failed: u64| {
            Scrape::parse(&format!(
                "zdm_proxy_request_duration_seconds_count{{type=\"writes\"}} 0\n\
                 zdm_proxy_request_duration_seconds_count{{type=\"reads_origin\"}} {reads}\n\
                 zdm_proxy_failed_reads_total{{cluster=\"origin\"}} {origin_failed}\n\
                 zdm_proxy_failed_reads_total{{cluster=\"target\"}} 0\n\
                 zdm_async_request_duration_seconds_count{{node=\"10.0.0.2:9042\"}} {reads}\n\
                 zdm_async_requests_failed_total{{error=\"read_timeout\",node=\"10.0.0.2:9042\"}} {shadow_failed}\n\
                 zdm_async_read_matches_total{{keyspace=\"ks\",table=\"t\"}} {}\n",
                reads - shadow_failed
            ))
            .unwrap()
        };
        let before = [text(0, 0, 0)];
        let after = [text(200, 0, 4)];
        let window = Window {
            before: &before,
            after: &after,
        };
        let phase3 = HealthThresholds {
            check_target_latency: true,
            max_async_read_error_ratio: 0.01,
            ..limits()
        };
        let checks = judge_window(&window, &phase3);
        assert!(
            checks[1].passed,
            "clients' reads did not fail: {:?}",
            checks[1]
        );
        let shadow = &checks[2];
        assert_eq!(shadow.name, "failed shadow reads on target");
        assert_eq!(shadow.measured, "4 of 200 in 10 s (2.000%)");
        assert!(!shadow.passed);
        let tolerant = HealthThresholds {
            max_async_read_error_ratio: 0.05,
            ..phase3
        };
        assert!(judge_window(&window, &tolerant)[2].passed);
    }

    #[test]
    fn in_phase_3_shadow_mismatches_are_judged_and_name_their_tables() {
        let text = |matches: u64, mismatches: u64, dropped: u64| {
            Scrape::parse(&format!(
                "zdm_proxy_request_duration_seconds_count{{type=\"reads_origin\"}} 100\n\
                 zdm_async_read_matches_total{{keyspace=\"ks\",table=\"kv\"}} {matches}\n\
                 zdm_async_read_mismatches_total{{keyspace=\"ks\",table=\"kv\"}} {mismatches}\n\
                 zdm_async_read_mismatches_total{{keyspace=\"ks\",table=\"other\"}} 7\n\
                 zdm_async_requests_dropped_total{{reason=\"queue_full\"}} {dropped}\n"
            ))
            .unwrap()
        };
        let phase3 = HealthThresholds {
            check_target_latency: true,
            max_async_read_mismatch_ratio: 0.01,
            ..limits()
        };
        let judge = |before: Scrape, after: Scrape| {
            let (b, a) = ([before], [after]);
            judge_window(
                &Window {
                    before: &b,
                    after: &a,
                },
                &phase3,
            )
            .into_iter()
            .find(|c| c.name == "shadow reads that differ from origin")
            .unwrap()
        };
        // 5 of 100 compared differ, all in ks.kv (ks.other did not grow in the window).
        let check = judge(text(0, 0, 0), text(95, 5, 30));
        assert!(!check.passed);
        assert_eq!(
            check.measured,
            "5 of 100 in 10 s (5.000%); 30 shadow reads dropped to spare the clients; \
             differing in ks.kv"
        );
        assert!(judge(text(0, 0, 0), text(100, 0, 0)).passed);
        // Nothing compared: nothing proven.
        let check = judge(text(0, 0, 0), text(0, 0, 40));
        assert!(!check.passed);
        assert!(
            check.measured.starts_with("no shadow read was compared"),
            "{}",
            check.measured
        );
    }

    #[test]
    fn unsafe_writes_name_table_cause_and_remedy_and_fail_unless_accepted() {
        let text = "zdm_proxy_unsafe_writes_total{keyspace=\"app\",table=\"events\",cause=\"now()\"} 12\n\
                    zdm_proxy_unsafe_writes_total{keyspace=\"app\",table=\"hits\",cause=\"counter\"} 40\n";
        let scrapes = vec![Scrape::parse(text).unwrap(), Scrape::parse(text).unwrap()];
        let c = unsafe_writes_check(&scrapes, &[]);
        assert!(!c.passed, "{c:?}");
        assert!(
            c.measured
                .contains("app.events: 24 writes with now() evaluated by each cluster"),
            "{}",
            c.measured
        );
        assert!(
            c.measured.contains("app.hits: 80 counter updates"),
            "{}",
            c.measured
        );
        assert!(
            c.measured.contains("Tables that will differ: app.events."),
            "{}",
            c.measured
        );
        assert!(
            c.measured.contains("replace_cql_functions: true"),
            "{}",
            c.measured
        );
        assert!(
            c.measured.contains("zdm_autocorrect=true"),
            "{}",
            c.measured
        );
        let accepted = unsafe_writes_check(&scrapes, &["app.events".to_string()]);
        assert!(accepted.passed, "{accepted:?}");
        assert!(
            accepted.measured.contains("(accepted)"),
            "{}",
            accepted.measured
        );
        let none = unsafe_writes_check(&[Scrape::parse("").unwrap()], &[]);
        assert!(none.passed && none.measured == "none", "{none:?}");
    }

    #[test]
    fn readiness_names_the_cluster_that_is_down() {
        let body =
            r#"{"OriginStatus":{"Status":"UP"},"TargetStatus":{"Status":"DOWN"},"Status":"DOWN"}"#;
        let r = readiness_from("zdm-h1", 503, body);
        assert!(!r.ready());
        assert_eq!(r.describe(), "zdm-h1: readiness 503, TARGET DOWN");
        let checks = readiness_checks(&[r, readiness_from("zdm-h2", 200, "{}")]);
        assert!(!checks[0].passed);
        assert!(checks[1].passed);
    }
}
