//! Just enough of the Prometheus text exposition format to judge a proxy from its `/metrics`.
//!
//! The health gate scrapes every proxy twice, an observation window apart, and compares the
//! two: counters become rates over the window and histograms become quantiles of the requests
//! that happened inside it, exactly what `rate()` and `histogram_quantile()` give an operator
//! on a dashboard, without needing a Prometheus server next to the migration.

use std::collections::BTreeMap;

/// One sample line: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

/// A line the parser could not read, with its 1-based number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("metrics line {line}: {reason}: {text}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

impl Scrape {
    pub fn parse(text: &str) -> Result<Scrape, ParseError> {
        let mut samples = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason| ParseError {
                line: index + 1,
                reason,
                text: raw.to_string(),
            };
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').ok_or_else(|| error("unclosed label set"))?;
                    let labels = parse_labels(&line[open + 1..close])
                        .ok_or_else(|| error("bad label set"))?;
                    (&line[..open], labels, &line[close + 1..])
                }
                None => {
                    let split = line
                        .find(char::is_whitespace)
                        .ok_or_else(|| error("no value"))?;
                    (&line[..split], BTreeMap::new(), &line[split..])
                }
            };
            // A timestamp may follow the value; we only need the value.
            let value_text = rest
                .split_whitespace()
                .next()
                .ok_or_else(|| error("no value"))?;
            let value = parse_value(value_text).ok_or_else(|| error("bad value"))?;
            samples.push(Sample {
                name: name.trim().to_string(),
                labels,
                value,
            });
        }
        Ok(Scrape { samples })
    }

    /// Sum of every sample of `name` whose labels include all of `matching`.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.matching(name, matching).map(|s| s.value).sum()
    }

    /// Whether any sample of `name` exists (to tell "0" from "not exported").
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        matching: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && matching
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Cumulative bucket counts of histogram `name` (summed over other labels), by upper bound.
    pub fn buckets(&self, name: &str, matching: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket_name = format!("{name}_bucket");
        let mut by_bound: BTreeMap<OrderedBound, f64> = BTreeMap::new();
        for sample in self.matching(&bucket_name, matching) {
            if let Some(bound) = sample.labels.get("le").and_then(|le| parse_value(le)) {
                *by_bound.entry(OrderedBound(bound)).or_default() += sample.value;
            }
        }
        by_bound.into_iter().map(|(b, c)| (b.0, c)).collect()
    }
}

/// The increase of a counter between two scrapes; a counter that went down was reset (the
/// proxy restarted), so its whole later value is the increase, as Prometheus's `increase()` has it.
pub fn increase(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

/// The `q` quantile (0..1) of the observations that fell between two scrapes of a histogram,
/// interpolated linearly inside the bucket like `histogram_quantile`. `None` when nothing was
/// observed in between.
pub fn window_quantile(q: f64, before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let window: Vec<(f64, f64)> = after
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            (bound, increase(earlier, count))
        })
        .collect();
    quantile(q, &window)
}

/// `histogram_quantile` over cumulative `(upper bound, count)` buckets sorted by bound.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                // Above the highest finite bucket we only know it is at least that bound.
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            if in_bucket <= 0.0 {
                return Some(bound);
            }
            return Some(lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket);
        }
        lower_bound = bound;
        lower_count = count;
    }
    Some(lower_bound)
}

/// A bucket bound usable as a map key (bounds are never NaN; `total_cmp` orders them anyway).
#[derive(Debug, Clone, Copy)]
struct OrderedBound(f64);
impl PartialEq for OrderedBound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for OrderedBound {}
impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// `a="x",b="y \"quoted\""` into a map; `None` on malformed input.
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || chars.next() != Some('"') || key.is_empty() {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP zdm_proxy_failed_writes_total Failed writes
# TYPE zdm_proxy_failed_writes_total counter
zdm_proxy_failed_writes_total{failed_on="origin"} 1
zdm_proxy_failed_writes_total{failed_on="target"} 4
zdm_proxy_failed_writes_total{failed_on="both"} 0
zdm_proxy_request_duration_seconds_bucket{type="writes",le="0.01"} 10
zdm_proxy_request_duration_seconds_bucket{type="writes",le="0.1"} 90
zdm_proxy_request_duration_seconds_bucket{type="writes",le="+Inf"} 100
zdm_proxy_request_duration_seconds_count{type="writes"} 100
weird_label{msg="a \"quoted\", comma"} 2 1700000000000
plain 3.5
"#;

    #[test]
    fn parses_names_labels_values_and_escapes() {
        let scrape = Scrape::parse(TEXT).unwrap();
        assert_eq!(scrape.sum("zdm_proxy_failed_writes_total", &[]), 5.0);
        assert_eq!(
            scrape.sum("zdm_proxy_failed_writes_total", &[("failed_on", "target")]),
            4.0
        );
        assert_eq!(scrape.sum("plain", &[]), 3.5);
        let weird = scrape
            .samples
            .iter()
            .find(|s| s.name == "weird_label")
            .unwrap();
        assert_eq!(weird.labels["msg"], "a \"quoted\", comma");
        assert_eq!(weird.value, 2.0);
        assert!(!scrape.has("zdm_missing"));
    }

    #[test]
    fn reports_the_line_it_cannot_read() {
        let err = Scrape::parse("ok 1\nbroken{le=\"1\" 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(
            Scrape::parse("x{a=1} 2").unwrap_err().reason,
            "bad label set"
        );
        assert_eq!(Scrape::parse("x abc").unwrap_err().reason, "bad value");
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let scrape = Scrape::parse(TEXT).unwrap();
        let buckets = scrape.buckets("zdm_proxy_request_duration_seconds", &[("type", "writes")]);
        assert_eq!(
            buckets,
            vec![(0.01, 10.0), (0.1, 90.0), (f64::INFINITY, 100.0)]
        );
        // The median (rank 50) lies half-way through the second bucket's 80 observations.
        let median = quantile(0.5, &buckets).unwrap();
        assert!((median - 0.055).abs() < 1e-9, "{median}");
        // p99 lies above the last finite bound: report that bound, not infinity.
        assert_eq!(quantile(0.99, &buckets), Some(0.1));
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
    }

    #[test]
    fn window_quantile_sees_only_the_window() {
        // Before the window: 1000 fast requests. In it: 10 slow ones.
        let before = [(0.01, 1000.0), (1.0, 1000.0), (f64::INFINITY, 1000.0)];
        let after = [(0.01, 1000.0), (1.0, 1010.0), (f64::INFINITY, 1010.0)];
        let p50 = window_quantile(0.5, &before, &after).unwrap();
        assert!(p50 > 0.01, "the window's requests were all slow, got {p50}");
        assert_eq!(window_quantile(0.5, &after, &after), None);
    }

    #[test]
    fn a_counter_reset_counts_from_zero() {
        assert_eq!(increase(10.0, 15.0), 5.0);
        assert_eq!(increase(10.0, 3.0), 3.0);
    }
}
