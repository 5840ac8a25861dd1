//! The few lines that end a phase playbook: per proxy what changed, the gates and their
//! verdicts, and what to run next.
//!
//! A phase run prints dozens of task headers; the operator's questions at the end are always
//! the same three (did my proxies change, did the gates pass, what now?), so they are answered
//! in one block before the PLAY RECAP rather than left to be pieced together from the log.

use std::collections::BTreeMap;
use std::path::Path;

use crate::migration::run::MigrationRun;
use crate::migration::state::{GateResult, Phase};
use crate::plan::HostChanges;

/// What the summary is built from, gathered at the end of the run.
pub struct Facts<'a> {
    /// Per host, what changed on it.
    pub changes: &'a BTreeMap<String, HostChanges>,
    /// Every host the run touched (hosts with nothing changed are listed too).
    pub hosts: Vec<String>,
    pub gates: Vec<GateResult>,
    /// The phase playbook's path, to name the next one beside it.
    pub playbook: String,
    pub phase: Phase,
    pub rollback: bool,
    /// The phase (or rollback) is recorded completed in the state file.
    pub completed: bool,
    pub check: bool,
}

/// The summary's title and lines for a run that started a phase or a rollback (or, with
/// `--check`, would start one); `None` for a run that started none (nothing to summarize).
pub fn for_run(
    run: &MigrationRun,
    changes: &BTreeMap<String, HostChanges>,
    hosts: Vec<String>,
) -> Option<(String, Vec<String>)> {
    let t = run.started_or_planned()?;
    let completed = run
        .store()
        .load()
        .map(|s| s.phase == t.phase && s.completed)
        .unwrap_or(false);
    let facts = Facts {
        changes,
        hosts,
        gates: run.gates(),
        playbook: run.playbook(),
        phase: t.phase,
        rollback: t.rollback,
        completed,
        check: run.check_mode(),
    };
    Some(render(&facts))
}

/// The playbook that follows `phase`, with what it does, or `None` after the cutover.
fn next_phase(phase: Phase) -> Option<(&'static str, &'static str)> {
    use Phase::*;
    Some(match phase {
        NotStarted => ("preflight.yml", "check both clusters"),
        Preflight => ("phase1.yml", "deploy the proxies with dual writes"),
        Phase1 => ("phase2.yml", "backfill and validate the data"),
        Phase2 => ("phase3.yml", "shadow reads to the target"),
        Phase3 => ("phase4.yml", "route reads to the target"),
        Phase4 => ("phase5.yml", "cutover"),
        Phase5 => return None,
    })
}

/// `name` beside `playbook` (the playbooks are kept together).
fn sibling(playbook: &str, name: &str) -> String {
    match Path::new(playbook).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name).display().to_string(),
        _ => name.to_string(),
    }
}

/// Renders the summary: pure, so its wording is tested without a fleet.
pub fn render(f: &Facts<'_>) -> (String, Vec<String>) {
    let title = if f.rollback {
        format!("rollback from {}", f.phase)
    } else {
        f.phase.to_string()
    };
    let mut lines = vec!["proxies:".to_string()];
    let width = f.hosts.iter().map(String::len).max().unwrap_or(0);
    for h in &f.hosts {
        let what = match f.changes.get(h) {
            Some(changed) if !changed.is_empty() => {
                let verb = if f.check { "would change" } else { "changed" };
                format!("{verb}: {}", changed.describe())
            }
            _ => "unchanged".to_string(),
        };
        lines.push(format!("  {h:<width$}  {what}"));
    }
    lines.push(gates_line(f));
    let mut by_gate: BTreeMap<&str, Vec<&GateResult>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for g in &f.gates {
        let gate = g.name.split_once(": ").map_or(g.name.as_str(), |(n, _)| n);
        if !order.contains(&gate) {
            order.push(gate);
        }
        by_gate.entry(gate).or_default().push(g);
    }
    for gate in order {
        let checks = &by_gate[gate];
        let failed: Vec<&&GateResult> = checks.iter().filter(|c| !c.passed).collect();
        lines.push(format!(
            "  {gate}: {} ({} of {} checks passed)",
            if failed.is_empty() {
                "PASSED"
            } else {
                "FAILED"
            },
            checks.len() - failed.len(),
            checks.len()
        ));
        for c in failed {
            let name = c.name.split_once(": ").map_or(c.name.as_str(), |(_, n)| n);
            lines.push(format!(
                "    [FAIL] {name}: {} (threshold: {})",
                c.measured.replace('\n', " "),
                c.threshold
            ));
        }
    }
    lines.push(format!("next: {}", next_step(f)));
    (title, lines)
}

fn gates_line(f: &Facts<'_>) -> String {
    match (f.gates.is_empty(), f.check) {
        (false, _) => "gates:".into(),
        (true, true) => "gates: not measured (check mode)".into(),
        (true, false) => "gates: none measured".into(),
    }
}

fn next_step(f: &Facts<'_>) -> String {
    let again = format!("zdm-run {}", f.playbook);
    if f.check {
        return format!("run `{again}` without --check to apply this plan");
    }
    if !f.completed {
        return format!(
            "the {} is NOT completed: fix what failed above, then run `{again}` again (or {} to go back to origin)",
            if f.rollback { "rollback" } else { "phase" },
            sibling(&f.playbook, "rollback.yml")
        );
    }
    if f.rollback {
        return "the fleet is back on origin; run the phase playbook again when ready".into();
    }
    match next_phase(f.phase) {
        Some((book, what)) => format!("{} ({what})", sibling(&f.playbook, book)),
        None => "nothing: the migration is complete; the proxies can be retired".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Change;

    fn gate(name: &str, passed: bool) -> GateResult {
        GateResult {
            name: name.into(),
            passed,
            measured: "3 of 100 (3.000%)".into(),
            threshold: "<= 0.100%".into(),
        }
    }

    #[test]
    fn a_completed_phase_names_the_changes_the_gates_and_the_next_playbook() {
        let mut changes = BTreeMap::new();
        let h1: &mut HostChanges = changes.entry("h1".to_string()).or_default();
        // Recorded in the order a rollout meets them; listed in the fixed order.
        h1.record(Some(Change::Restart), "Drain and restart the proxy");
        h1.record(Some(Change::Binary), "Ship the zdm-proxy binary");
        h1.record(Some(Change::Config), "Write the proxy config");
        h1.record(Some(Change::Config), "Ship the TLS files");
        let h3: &mut HostChanges = changes.entry("h3".to_string()).or_default();
        h3.record(Some(Change::Reload), "Reload the live settings");
        h3.record(None, "my own task");
        let f = Facts {
            changes: &changes,
            hosts: vec!["h1".into(), "h2".into(), "h3".into()],
            gates: vec![
                gate("health: failed writes", true),
                gate("health: h1 ready", true),
            ],
            playbook: "playbooks/phase1.yml".into(),
            phase: Phase::Phase1,
            rollback: false,
            completed: true,
            check: false,
        };
        let (title, lines) = render(&f);
        assert_eq!(title, "phase1");
        assert_eq!(
            lines,
            [
                "proxies:",
                "  h1  changed: binary, config, restart",
                "  h2  unchanged",
                "  h3  changed: reload, 1 other task",
                "gates:",
                "  health: PASSED (2 of 2 checks passed)",
                "next: playbooks/phase2.yml (backfill and validate the data)",
            ]
        );
    }

    #[test]
    fn check_mode_says_what_would_change() {
        let mut changes = BTreeMap::new();
        let h1: &mut HostChanges = changes.entry("h1".to_string()).or_default();
        h1.record(None, "a");
        h1.record(None, "b");
        h1.record(None, "a");
        let f = Facts {
            changes: &changes,
            hosts: vec!["h1".into()],
            gates: vec![],
            playbook: "phase1.yml".into(),
            phase: Phase::Phase1,
            rollback: false,
            completed: false,
            check: true,
        };
        let (_, lines) = render(&f);
        assert_eq!(lines[1], "  h1  would change: 2 other tasks");
        assert_eq!(lines[2], "gates: not measured (check mode)");
    }

    #[test]
    fn a_failed_gate_shows_its_failed_checks_and_the_way_back() {
        let changes = BTreeMap::new();
        let f = Facts {
            changes: &changes,
            hosts: vec!["h1".into()],
            gates: vec![
                gate("health: failed writes", false),
                gate("health: h1 ready", true),
            ],
            playbook: "phase3.yml".into(),
            phase: Phase::Phase3,
            rollback: false,
            completed: false,
            check: false,
        };
        let (_, lines) = render(&f);
        assert!(lines.contains(&"  health: FAILED (1 of 2 checks passed)".to_string()));
        assert!(lines.contains(
            &"    [FAIL] failed writes: 3 of 100 (3.000%) (threshold: <= 0.100%)".to_string()
        ));
        let next = lines.last().unwrap();
        assert!(
            next.contains("NOT completed") && next.contains("rollback.yml"),
            "{next}"
        );
    }
}
