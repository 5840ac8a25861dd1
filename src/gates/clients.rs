//! The cutover's last check: no client is still connected to a proxy.
//!
//! Phase 5 stops the proxies for good. A client still connected to one then loses its
//! connection and, if it was never repointed, has nowhere to reconnect: that is an outage the
//! migration promised not to cause. So before the proxies stop, every proxy's
//! `zdm_client_connections_total` must fall to the allowed number (0 by default) within a wait
//! that gives the clients' rollout time to finish.

use std::time::{Duration, Instant};

use super::health::fetch_metrics;
use super::Check;

const CLIENTS_METRIC: &str = "zdm_client_connections_total";

/// What one proxy said (or why it said nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCount {
    Connected(f64),
    Unknown(String),
}

/// One look at the fleet: each proxy's client connections.
pub async fn count_clients(
    client: &reqwest::Client,
    proxies: &[(String, String)],
) -> Vec<(String, ClientCount)> {
    futures::future::join_all(proxies.iter().map(|(name, url)| async move {
        let count = match fetch_metrics(client, url).await {
            Ok(scrape) if scrape.has(CLIENTS_METRIC) => {
                ClientCount::Connected(scrape.sum(CLIENTS_METRIC, &[]))
            }
            Ok(_) => ClientCount::Unknown(format!("no {CLIENTS_METRIC} in /metrics")),
            Err(e) => ClientCount::Unknown(format!("{e:#}")),
        };
        (name.clone(), count)
    }))
    .await
}

/// The verdict on one look: passed when every proxy answered with at most `max` connections.
pub fn judge(counts: &[(String, ClientCount)], max: f64, waited: Duration) -> Check {
    let passed = counts
        .iter()
        .all(|(_, c)| matches!(c, ClientCount::Connected(n) if *n <= max));
    let listed: Vec<String> = counts
        .iter()
        .map(|(name, c)| match c {
            ClientCount::Connected(n) => format!("{name}: {n}"),
            ClientCount::Unknown(why) => format!("{name}: unknown ({why})"),
        })
        .collect();
    let measured = if passed {
        format!("client connections {}", listed.join(", "))
    } else {
        format!(
            "still connected after {:.0} s: {} (move those clients to target first, then re-run)",
            waited.as_secs_f64(),
            listed.join(", ")
        )
    };
    Check {
        name: "clients left the proxies".into(),
        passed,
        measured,
        threshold: format!("<= {max} client connections on every proxy"),
    }
}

/// Looks every `poll` until every proxy has at most `max` clients, or `wait` has passed.
pub async fn wait_for_clients_to_leave(
    proxies: &[(String, String)],
    max: f64,
    wait: Duration,
    poll: Duration,
) -> anyhow::Result<Check> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let started = Instant::now();
    loop {
        let counts = count_clients(&client, proxies).await;
        let check = judge(&counts, max, started.elapsed());
        if check.passed || started.elapsed() >= wait {
            return Ok(check);
        }
        tokio::time::sleep(poll.min(wait.saturating_sub(started.elapsed()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(list: &[(&str, ClientCount)]) -> Vec<(String, ClientCount)> {
        list.iter()
            .map(|(n, c)| (n.to_string(), c.clone()))
            .collect()
    }

    #[test]
    fn passes_only_when_every_proxy_is_at_or_below_the_limit() {
        let all_gone = counts(&[
            ("h1", ClientCount::Connected(0.0)),
            ("h2", ClientCount::Connected(0.0)),
        ]);
        let check = judge(&all_gone, 0.0, Duration::from_secs(1));
        assert!(check.passed, "{check:?}");
        assert_eq!(check.measured, "client connections h1: 0, h2: 0");

        let one_left = counts(&[
            ("h1", ClientCount::Connected(0.0)),
            ("h2", ClientCount::Connected(3.0)),
        ]);
        let check = judge(&one_left, 0.0, Duration::from_secs(30));
        assert!(!check.passed);
        assert!(
            check
                .measured
                .starts_with("still connected after 30 s: h1: 0, h2: 3"),
            "{}",
            check.measured
        );
        assert!(judge(&one_left, 3.0, Duration::ZERO).passed);
    }

    #[test]
    fn a_proxy_that_cannot_be_asked_fails_the_check() {
        let silent = counts(&[
            ("h1", ClientCount::Connected(0.0)),
            ("h2", ClientCount::Unknown("connection refused".into())),
        ]);
        let check = judge(&silent, 0.0, Duration::from_secs(5));
        assert!(!check.passed);
        assert!(check.measured.contains("h2: unknown (connection refused)"));
    }
}
