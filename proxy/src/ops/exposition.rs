//! Prometheus text exposition (format 0.0.4), written by hand: each family's `# HELP` and
//! `# TYPE` lines, then its samples.
//!
//! One writer for every registry of the proxy (`metrics`, the per-table write counters, the
//! shadow-read series, the readiness gauges), so they cannot drift apart in how a family is
//! introduced, how a name gets its prefix, or how a label value is escaped.

use std::fmt::{Display, Write};

/// The metric type a family declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Appends exposition text to a scrape body; every name gets the configured prefix
/// (`metrics_prefix`) and an underscore in front.
pub struct Exposition<'a> {
    out: &'a mut String,
    prefix: &'a str,
}

impl<'a> Exposition<'a> {
    pub fn new(out: &'a mut String, prefix: &'a str) -> Exposition<'a> {
        Exposition { out, prefix }
    }

    /// The `# HELP` and `# TYPE` lines of the family `name` (given without the prefix).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let p = self.prefix;
        // Writing to a String cannot fail.
        let _ = writeln!(
            self.out,
            "# HELP {p}_{name} {help}\n# TYPE {p}_{name} {}",
            kind.name()
        );
    }

    /// One sample of `name` (without the prefix). `labels` is the text between the braces
    /// (`cluster="origin",node="10.0.0.1:9042"`), with values escaped by [`label_value`]
    /// where they come from outside; empty for a sample without labels.
    pub fn sample(&mut self, name: &str, labels: &str, value: impl Display) {
        let p = self.prefix;
        let _ = if labels.is_empty() {
            writeln!(self.out, "{p}_{name} {value}")
        } else {
            writeln!(self.out, "{p}_{name}{{{labels}}} {value}")
        };
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }

    /// A family whose samples differ by one label: `label="value"` for each `(value, sample)`.
    /// The values are the proxy's own words (cluster, type, node), written as they are.
    pub fn by_label<'v, V: Display>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'v str, V)>,
    ) {
        self.family(name, kind, help);
        for (value, sample) in samples {
            self.sample(name, &format!("{label}=\"{value}\""), sample);
        }
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires: keyspace and table
/// names come from client text, and CQL quoted identifiers may hold any of them.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_introduced_then_sampled_with_or_without_labels() {
        let mut out = String::new();
        let mut x = Exposition::new(&mut out, "zdm");
        x.family("proxy_ready", Kind::Gauge, "1 when ready");
        x.sample("proxy_ready", "", 1);
        x.sample("proxy_ready", "cluster=\"origin\"", 0.5);
        assert_eq!(
            out,
            "# HELP zdm_proxy_ready 1 when ready\n# TYPE zdm_proxy_ready gauge\n\
             zdm_proxy_ready 1\nzdm_proxy_ready{cluster=\"origin\"} 0.5\n"
        );
    }

    #[test]
    fn one_label_families_and_single_samples() {
        let mut out = String::new();
        let mut x = Exposition::new(&mut out, "p");
        x.by_label(
            "up",
            Kind::Gauge,
            "Up",
            "cluster",
            [("origin", 1), ("target", 0)],
        );
        x.single("total", Kind::Counter, "Total", 7u64);
        assert_eq!(
            out,
            "# HELP p_up Up\n# TYPE p_up gauge\np_up{cluster=\"origin\"} 1\n\
             p_up{cluster=\"target\"} 0\n\
             # HELP p_total Total\n# TYPE p_total counter\np_total 7\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
