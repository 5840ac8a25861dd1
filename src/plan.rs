//! What happened (or, in check mode, what would happen) to each host for each task.
//!
//! The same records serve the live output, the dry-run plan, the JSON document and the
//! recap, so `--check` and a real run describe their work in the same terms and can be
//! compared line by line. Per host, [`HostChanges`] sums up what the tasks changed, in the
//! operator's words ([`Change`]): the output keeps it as results arrive, and the summary that
//! ends a phase playbook is written from it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// Outcome of one task on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Already in the wanted state (or an informational task).
    Ok,
    /// Changed the host.
    Changed,
    /// Check mode: applying would change the host.
    WouldChange,
    /// Check mode: the module cannot predict its effect (a command) and would run.
    WouldRun,
    /// `when` was false, or the tags excluded it.
    Skipped,
    Failed,
    Unreachable,
}

impl TaskStatus {
    /// The word printed before the host name (Ansible's `ok: [h1]`).
    pub fn label(self) -> &'static str {
        match self {
            TaskStatus::Ok => "ok",
            TaskStatus::Changed => "changed",
            TaskStatus::WouldChange => "would change",
            TaskStatus::WouldRun => "would run",
            TaskStatus::Skipped => "skipping",
            TaskStatus::Failed => "failed",
            TaskStatus::Unreachable => "unreachable",
        }
    }

    /// Counted as "changed" in the recap (check mode counts what would change, as Ansible).
    pub fn is_change(self) -> bool {
        matches!(
            self,
            TaskStatus::Changed | TaskStatus::WouldChange | TaskStatus::WouldRun
        )
    }
}

/// One task's outcome on one host, already redacted for display.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub play: String,
    pub task: String,
    pub host: String,
    pub status: TaskStatus,
    /// A failure whose task had `ignore_errors`: the host goes on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub handler: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// What the change is ("update content", "run: ...").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Set for a loop item's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// `msg` is the point of the task and is shown without `-v` (a gate's checks with what
    /// was measured, the threshold and PASS/FAIL).
    #[serde(skip)]
    pub show_msg: bool,
}

/// Per-host counters of the PLAY RECAP.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HostStats {
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failed: u32,
    pub skipped: u32,
    pub rescued: u32,
    pub ignored: u32,
}

/// The recap for all hosts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recap {
    pub hosts: BTreeMap<String, HostStats>,
}

impl Recap {
    /// Counts one report the way ansible-playbook does: `ok` includes changed tasks.
    pub fn count(&mut self, r: &TaskReport) {
        let s = self.hosts.entry(r.host.clone()).or_default();
        match r.status {
            TaskStatus::Ok => s.ok += 1,
            st if st.is_change() => {
                s.ok += 1;
                s.changed += 1;
            }
            TaskStatus::Skipped => s.skipped += 1,
            TaskStatus::Failed if r.ignored => {
                s.ok += 1;
                s.ignored += 1;
            }
            TaskStatus::Failed => s.failed += 1,
            TaskStatus::Unreachable => s.unreachable += 1,
            _ => {}
        }
    }

    /// Makes sure a host appears even if no task ran on it.
    pub fn touch(&mut self, host: &str) {
        self.hosts.entry(host.to_string()).or_default();
    }

    pub fn any_failed(&self) -> bool {
        self.hosts.values().any(|s| s.failed > 0)
    }

    pub fn any_unreachable(&self) -> bool {
        self.hosts.values().any(|s| s.unreachable > 0)
    }
}

/// What a change to a proxy amounts to, in the operator's words. A playbook task says which
/// one its change is by carrying the tag [`Change::tag`] (`tags: [change_binary]`): tags are
/// plain Ansible syntax, so the playbooks still read (and run) as ansible-playbook reads them.
/// The order is the order a rollout applies them in, and the order the summary lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Binary,
    Config,
    Reload,
    Restart,
    /// The proxy was stopped for good (the cutover retires the fleet).
    Stop,
}

impl Change {
    const ALL: [Change; 5] = [
        Change::Binary,
        Change::Config,
        Change::Reload,
        Change::Restart,
        Change::Stop,
    ];

    /// The word the summary prints.
    pub fn label(self) -> &'static str {
        match self {
            Change::Binary => "binary",
            Change::Config => "config",
            Change::Reload => "reload",
            Change::Restart => "restart",
            Change::Stop => "stop",
        }
    }

    /// The tag that marks a task whose change is this one.
    pub fn tag(self) -> String {
        format!("change_{}", self.label())
    }

    /// The change a task with these tags makes, if it carries one of the change tags.
    pub fn of_task(tags: &[String]) -> Option<Change> {
        Change::ALL
            .into_iter()
            .find(|c| tags.iter().any(|t| *t == c.tag()))
    }
}

/// What changed on one host during the run (bookkeeping tasks left out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostChanges {
    /// The changes of tasks that carry a change tag.
    pub kinds: BTreeSet<Change>,
    /// Other tasks that changed the host (a playbook's own tasks), by name: counted in the
    /// summary, so a change is never hidden, but not listed (their lines are above).
    pub other_tasks: BTreeSet<String>,
}

impl HostChanges {
    /// Records one changed (or would-change) task.
    pub fn record(&mut self, kind: Option<Change>, task: &str) {
        match kind {
            Some(k) => {
                self.kinds.insert(k);
            }
            None => {
                self.other_tasks.insert(task.to_string());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.other_tasks.is_empty()
    }

    /// `binary, config, restart`, then `2 other tasks` when some changed task carries no tag.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.kinds.iter().map(|k| k.label().to_string()).collect();
        match self.other_tasks.len() {
            0 => {}
            1 => parts.push("1 other task".into()),
            n => parts.push(format!("{n} other tasks")),
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, status: TaskStatus, ignored: bool) -> TaskReport {
        TaskReport {
            play: "p".into(),
            task: "t".into(),
            host: host.into(),
            status,
            ignored,
            handler: false,
            msg: None,
            summary: None,
            diff: None,
            item: None,
            show_msg: false,
        }
    }

    #[test]
    fn recap_counts_like_ansible_playbook() {
        let mut r = Recap::default();
        r.count(&report("h", TaskStatus::Ok, false));
        r.count(&report("h", TaskStatus::Changed, false));
        r.count(&report("h", TaskStatus::WouldRun, false));
        r.count(&report("h", TaskStatus::Skipped, false));
        r.count(&report("h", TaskStatus::Failed, true));
        r.count(&report("h", TaskStatus::Failed, false));
        r.count(&report("u", TaskStatus::Unreachable, false));
        let h = &r.hosts["h"];
        assert_eq!(
            (h.ok, h.changed, h.skipped, h.failed, h.ignored),
            (4, 2, 1, 1, 1)
        );
        assert!(r.any_failed() && r.any_unreachable());
    }

    #[test]
    fn a_task_names_its_change_with_a_tag() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Change::of_task(&tags(&["always", "change_config"])),
            Some(Change::Config)
        );
        assert_eq!(
            Change::of_task(&tags(&["change_restart"])),
            Some(Change::Restart)
        );
        assert_eq!(Change::of_task(&tags(&["bookkeeping", "config"])), None);
    }
}
