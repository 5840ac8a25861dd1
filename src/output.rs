//! Everything the run prints.
//!
//! Human output follows ansible-playbook (PLAY / TASK headers, `changed: [h1]`, PLAY RECAP),
//! with an indicatif spinner for the running task when stdout is a terminal and plain lines
//! otherwise. `--output json` prints one JSON document at the end with the same facts. All
//! text passes through the [`Redactor`] first, so no secret reaches the screen or a log.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use crate::plan::{Change, HostChanges, Recap, TaskReport, TaskStatus};
use crate::secrets::Redactor;

/// Output format chosen with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Default)]
struct JsonDoc {
    plays: Vec<Value>,
    summary: Vec<String>,
}

/// The tag that marks a task as bookkeeping (reading facts, recording state): its lines are
/// left out of the default output so a phase reads in a screen; `-v` shows them. A failure
/// or a retry of such a task is always shown, under its task header.
pub const BOOKKEEPING_TAG: &str = "bookkeeping";

/// The task being reported.
#[derive(Default)]
struct Current {
    name: String,
    /// A bookkeeping task: its results count towards nothing the operator reads.
    bookkeeping: bool,
    /// What the task's change is in the phase summary, from its change tag.
    change: Option<Change>,
    /// The task header not printed yet (a bookkeeping task whose lines are hidden until
    /// something about it must be shown).
    pending_banner: Option<String>,
}

/// Prints progress and results, and keeps the recap.
pub struct Reporter {
    format: Format,
    show_diff: bool,
    verbosity: u8,
    check: bool,
    redactor: Redactor,
    recap: Mutex<Recap>,
    doc: Mutex<JsonDoc>,
    /// One spinner per host working on the current task (terminal only).
    bars: Mutex<BTreeMap<String, indicatif::ProgressBar>>,
    multi: Option<indicatif::MultiProgress>,
    current: Mutex<Current>,
    /// Per host, what the tasks (not bookkeeping) changed on it: the phase summary.
    changes: Mutex<BTreeMap<String, HostChanges>>,
}

/// The progress display, shared with the tracing writer so log lines are printed above the
/// spinners instead of through them.
static PROGRESS: OnceLock<indicatif::MultiProgress> = OnceLock::new();

/// The redactor log lines pass through; set once the run knows its secrets (see
/// [`redact_logs_with`]). Before that, nothing secret has been read yet.
static LOG_REDACTOR: OnceLock<Redactor> = OnceLock::new();

/// Makes every later log line pass through `redactor` (it keeps learning secrets as the run
/// reads variables, so lines logged later are masked with what it knows then).
pub fn redact_logs_with(redactor: &Redactor) {
    let _ = LOG_REDACTOR.set(redactor.clone());
}

/// A `tracing` writer for stderr that masks secrets and suspends the progress display while
/// it writes.
pub struct LogWriter;

/// `buf` with the secrets `redactor` knows masked. The fmt layer hands one whole event per
/// write, so a secret is never split across two calls.
fn redact_bytes(redactor: Option<&Redactor>, buf: &[u8]) -> Vec<u8> {
    match redactor {
        Some(r) => r.redact(&String::from_utf8_lossy(buf)).into_bytes(),
        None => buf.to_vec(),
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = redact_bytes(LOG_REDACTOR.get(), buf);
        match PROGRESS.get() {
            Some(m) => m.suspend(|| std::io::stderr().write_all(&text))?,
            None => std::io::stderr().write_all(&text)?,
        }
        // The caller's bytes are all consumed (the masked text may be longer or shorter).
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl Reporter {
    pub fn new(
        format: Format,
        show_diff: bool,
        verbosity: u8,
        check: bool,
        redactor: Redactor,
    ) -> Reporter {
        Reporter {
            format,
            show_diff,
            verbosity,
            check,
            redactor,
            recap: Mutex::new(Recap::default()),
            doc: Mutex::new(JsonDoc::default()),
            bars: Mutex::new(BTreeMap::new()),
            current: Mutex::new(Current::default()),
            changes: Mutex::new(BTreeMap::new()),
            multi: (format == Format::Human && std::io::stdout().is_terminal()).then(|| {
                PROGRESS
                    .get_or_init(|| {
                        indicatif::MultiProgress::with_draw_target(
                            indicatif::ProgressDrawTarget::stdout(),
                        )
                    })
                    .clone()
            }),
        }
    }

    fn line(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.format == Format::Json {
            return;
        }
        match &self.multi {
            // suspend (rather than println) also prints when no spinner is alive.
            Some(m) => m.suspend(|| {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    fn banner(kind: &str, name: &str) -> String {
        let head = format!("{kind} [{name}] ");
        let stars = 79usize.saturating_sub(head.chars().count()).max(3);
        format!("\n{head}{}", "*".repeat(stars))
    }

    /// A warning that is not tied to a task (unknown host pattern, empty play).
    pub fn warn(&self, msg: &str) {
        let msg = self.redactor.redact(msg);
        if self.format == Format::Json {
            eprintln!("[WARNING]: {msg}");
        } else {
            self.line(&format!("[WARNING]: {msg}"));
        }
    }

    pub fn play_start(&self, name: &str, hosts: &[String]) {
        self.line(&Self::banner(
            if self.check {
                "PLAY (check mode)"
            } else {
                "PLAY"
            },
            name,
        ));
        self.doc.lock().expect("doc lock").plays.push(json!({
            "name": self.redactor.redact(name),
            "hosts": hosts,
            "tasks": [],
        }));
        let mut recap = self.recap.lock().expect("recap lock");
        for h in hosts {
            recap.touch(h);
        }
    }

    /// A line about the current task: prints the task header first if it was held back.
    fn task_line(&self, text: &str) {
        let pending = self
            .current
            .lock()
            .expect("current lock")
            .pending_banner
            .take();
        if let Some(b) = pending {
            self.line(&b);
        }
        self.line(text);
    }

    /// Whether the current task's ordinary lines are left out (a bookkeeping task without `-v`).
    fn quiet(&self) -> bool {
        self.verbosity == 0 && self.current.lock().expect("current lock").bookkeeping
    }

    /// Announces a task; on a terminal, shows a spinner per host until its result arrives.
    /// A task tagged [`BOOKKEEPING_TAG`] has its header wait until one of its lines must be
    /// shown; a task with a change tag ([`Change::tag`]) is reported by that word in the
    /// phase summary.
    pub fn task_start(&self, name: &str, handler: bool, hosts: &[String], tags: &[String]) {
        let banner = Self::banner(if handler { "RUNNING HANDLER" } else { "TASK" }, name);
        let bookkeeping = tags.iter().any(|t| t == BOOKKEEPING_TAG);
        let quiet = bookkeeping && self.verbosity == 0;
        *self.current.lock().expect("current lock") = Current {
            name: name.to_string(),
            bookkeeping,
            change: Change::of_task(tags),
            pending_banner: quiet.then(|| banner.clone()),
        };
        if !quiet {
            self.line(&banner);
        }
        if let Some(m) = &self.multi {
            let style =
                indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            let mut bars = self.bars.lock().expect("bars lock");
            for h in hosts {
                let pb = m.add(indicatif::ProgressBar::new_spinner());
                pb.set_style(style.clone());
                pb.set_prefix(h.clone());
                pb.set_message(self.redactor.redact(name));
                pb.enable_steady_tick(Duration::from_millis(120));
                bars.insert(h.clone(), pb);
            }
        }
        let mut doc = self.doc.lock().expect("doc lock");
        if let Some(Value::Array(tasks)) = doc.plays.last_mut().and_then(|p| p.get_mut("tasks")) {
            tasks.push(json!({
                "name": self.redactor.redact(name),
                "handler": handler,
                "bookkeeping": bookkeeping,
                "hosts": {},
            }));
        }
    }

    /// Clears any spinners left (hosts that produced no result).
    pub fn task_end(&self) {
        let mut bars = self.bars.lock().expect("bars lock");
        for (_, pb) in std::mem::take(&mut *bars) {
            pb.finish_and_clear();
        }
    }

    /// Records and prints one host's result.
    pub fn result(&self, r: &TaskReport) {
        self.recap.lock().expect("recap lock").count(r);
        if r.item.is_none() {
            if let Some(pb) = self.bars.lock().expect("bars lock").remove(&r.host) {
                pb.finish_and_clear();
            }
        }
        let status = if r.ignored {
            "failed (ignored)"
        } else {
            r.status.label()
        };
        let mut text = format!("{status}: [{}]", r.host);
        if let Some(item) = &r.item {
            text.push_str(&format!(" => (item={item})"));
        }
        let detail = match r.status {
            TaskStatus::Failed | TaskStatus::Unreachable => r.msg.clone(),
            TaskStatus::WouldChange | TaskStatus::WouldRun | TaskStatus::Changed => {
                r.summary.clone().or_else(|| r.msg.clone())
            }
            _ if self.verbosity > 0 || is_debug_msg(r) || r.show_msg => r.msg.clone(),
            _ => None,
        };
        if let Some(d) = detail.filter(|d| !d.is_empty()) {
            text.push_str(&format!(" => {d}"));
        }
        let shown =
            !self.quiet() || matches!(r.status, TaskStatus::Failed | TaskStatus::Unreachable);
        if shown {
            self.task_line(&text);
            if self.show_diff {
                if let Some(d) = &r.diff {
                    self.line(d.trim_end());
                }
            }
        }
        if r.status.is_change() {
            let current = self.current.lock().expect("current lock");
            // A planned `would run` (a gate, a command judged by its output) may change
            // nothing: only the real run knows, so the check summary counts it only when its
            // change tag says what it would be.
            let uncertain = r.status == TaskStatus::WouldRun && current.change.is_none();
            if !current.bookkeeping && !uncertain {
                let (kind, name) = (current.change, current.name.clone());
                drop(current);
                let mut changes = self.changes.lock().expect("changes lock");
                changes
                    .entry(r.host.clone())
                    .or_default()
                    .record(kind, &name);
            }
        }
        let value = self
            .redactor
            .redact_value(&serde_json::to_value(r).unwrap_or(Value::Null));
        let mut doc = self.doc.lock().expect("doc lock");
        if let Some(task) = doc
            .plays
            .last_mut()
            .and_then(|p| p.get_mut("tasks"))
            .and_then(Value::as_array_mut)
            .and_then(|t| t.last_mut())
        {
            if let Some(Value::Object(hosts)) = task.get_mut("hosts") {
                let mut v = value;
                if let Value::Object(m) = &mut v {
                    m.remove("play");
                    m.remove("task");
                    m.remove("host");
                    if !self.show_diff && !self.check {
                        m.remove("diff");
                    }
                }
                match hosts.get_mut(&r.host) {
                    // Loop items: keep every item's report under the host.
                    Some(Value::Array(items)) => items.push(v),
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Value::Array(vec![first, v]);
                    }
                    None => {
                        hosts.insert(r.host.clone(), v);
                    }
                }
            }
        }
    }

    /// One failed attempt of an `until` loop, printed as it happens (as ansible-playbook
    /// does), so a wait that takes minutes is visibly alive: `left` attempts remain.
    pub fn retrying(&self, host: &str, task: &str, left: u64) {
        self.task_line(&format!(
            "FAILED - RETRYING: [{host}]: {task} ({left} retries left)."
        ));
    }

    /// A host of a `run_once` task that did not run it because `first` ran it for the batch.
    /// Shown (and in the plan) so every host has a line for every task, but not counted in
    /// the recap, as ansible-playbook does not count it either. In JSON it is kept apart from
    /// the task's `hosts` (which hold results), as `run_once: {ran_on, covered: [...]}`.
    pub fn run_once_elsewhere(&self, host: &str, first: &str) {
        if !self.quiet() {
            self.line(&format!("skipping: [{host}] => run_once on {first}"));
        }
        let mut doc = self.doc.lock().expect("doc lock");
        if let Some(Value::Object(task)) = doc
            .plays
            .last_mut()
            .and_then(|p| p.get_mut("tasks"))
            .and_then(Value::as_array_mut)
            .and_then(|t| t.last_mut())
        {
            let entry = task
                .entry("run_once")
                .or_insert_with(|| json!({"ran_on": first, "covered": []}));
            if let Some(Value::Array(covered)) = entry.get_mut("covered") {
                covered.push(Value::from(host));
            }
        }
    }

    /// Per host, what the tasks changed on it (or would, in check mode), leaving out
    /// bookkeeping tasks: what the phase summary reports.
    pub fn changes(&self) -> BTreeMap<String, HostChanges> {
        self.changes.lock().expect("changes lock").clone()
    }

    /// Prints a titled block of lines (the phase summary) before the recap; in JSON the
    /// same lines go into the document as `summary`.
    pub fn summary(&self, title: &str, lines: &[String]) {
        self.line(&Self::banner("SUMMARY", title));
        for l in lines {
            self.line(l);
        }
        self.doc.lock().expect("doc lock").summary = lines.to_vec();
    }

    /// A host whose failure in a block was cleared by the block's `rescue`: counted as
    /// rescued instead of failed, as ansible-playbook's recap does (so the run's exit code
    /// does not report a failure that was handled).
    pub fn rescued(&self, host: &str) {
        let mut recap = self.recap.lock().expect("recap lock");
        let s = recap.hosts.entry(host.to_string()).or_default();
        s.failed = s.failed.saturating_sub(1);
        s.rescued += 1;
    }

    /// A copy of the recap so far (also used after Ctrl-C).
    pub fn recap(&self) -> Recap {
        self.recap.lock().expect("recap lock").clone()
    }

    /// Prints the PLAY RECAP (human) or the whole JSON document.
    pub fn finish(&self, interrupted: bool, error: Option<&str>) {
        self.task_end();
        let recap = self.recap();
        match self.format {
            Format::Human => {
                if interrupted {
                    self.line(
                        "\n[ERROR]: interrupted by user (Ctrl-C); no file was left half-written",
                    );
                }
                if self.check {
                    self.print_plan();
                }
                self.line(&Self::banner("PLAY RECAP", "").replace(" [] ", " "));
                let width = recap
                    .hosts
                    .keys()
                    .map(|h| h.len())
                    .max()
                    .unwrap_or(0)
                    .max(20);
                for (h, s) in &recap.hosts {
                    self.line(&format!(
                        "{h:<width$} : ok={:<4} changed={:<4} unreachable={:<4} failed={:<4} skipped={:<4} rescued={:<4} ignored={}",
                        s.ok, s.changed, s.unreachable, s.failed, s.skipped, s.rescued, s.ignored
                    ));
                }
            }
            Format::Json => {
                let doc = self.doc.lock().expect("doc lock");
                let mut out = json!({
                    "check_mode": self.check,
                    "interrupted": interrupted,
                    "error": error,
                    "plays": doc.plays,
                    "stats": recap.hosts,
                });
                if !doc.summary.is_empty() {
                    out["summary"] = json!(doc.summary);
                }
                let text = self.redactor.redact(
                    &serde_json::to_string_pretty(&self.redactor.redact_value(&out))
                        .unwrap_or_default(),
                );
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{text}");
            }
        }
    }
}

impl Reporter {
    /// The dry-run plan: per play and host, every task with what would happen to it.
    fn print_plan(&self) {
        let doc = self.doc.lock().expect("doc lock");
        for play in &doc.plays {
            let name = play["name"].as_str().unwrap_or_default();
            self.line(&Self::banner("PLAN", name));
            let mut per_host: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for task in play["tasks"].as_array().into_iter().flatten() {
                // As in the run's output: bookkeeping tasks only with -v, unless they failed.
                let hidden = self.verbosity == 0 && task["bookkeeping"] == true;
                let tname = task["name"].as_str().unwrap_or_default();
                let handler = if task["handler"] == true {
                    " (handler)"
                } else {
                    ""
                };
                for (host, r) in task["hosts"].as_object().into_iter().flatten() {
                    let reports = match r {
                        Value::Array(items) => items.clone(),
                        one => vec![one.clone()],
                    };
                    // A host with only hidden lines was still reached.
                    let lines = per_host.entry(host.clone()).or_default();
                    for rep in reports {
                        let failed =
                            matches!(rep["status"].as_str(), Some("failed" | "unreachable"));
                        if hidden && !failed {
                            continue;
                        }
                        let status = rep["status"].as_str().unwrap_or("?").replace('_', " ");
                        let mut line = format!("  {status:<13}{tname}{handler}");
                        if let Some(item) = rep["item"].as_str() {
                            line.push_str(&format!(" (item={item})"));
                        }
                        let changing = matches!(
                            rep["status"].as_str(),
                            Some("would_change" | "would_run" | "changed")
                        );
                        // "ok" with a summary: a command that runs but is reported ok
                        // (changed_when: false).
                        if let Some(s) = rep["summary"]
                            .as_str()
                            .filter(|_| changing || rep["status"] == "ok")
                        {
                            line.push_str(&format!(": {s}"));
                        } else if rep["status"] == "failed" {
                            if let Some(m) = rep["msg"].as_str() {
                                line.push_str(&format!(": {m}"));
                            }
                        }
                        lines.push(line);
                    }
                }
                let ran_on = task["run_once"]["ran_on"].as_str().unwrap_or_default();
                let covered = task["run_once"]["covered"].as_array().into_iter().flatten();
                for host in covered.filter(|_| !hidden) {
                    let line =
                        format!("  {:<13}{tname}{handler} (run_once on {ran_on})", "skipped");
                    per_host
                        .entry(host.as_str().unwrap_or_default().to_string())
                        .or_default()
                        .push(line);
                }
            }
            for host in play["hosts"].as_array().into_iter().flatten() {
                let host = host.as_str().unwrap_or_default();
                self.line(&format!("{host}:"));
                match per_host.get(host) {
                    Some(lines) => lines.iter().for_each(|l| self.line(l)),
                    None => self.line("  (not reached)"),
                }
            }
        }
    }
}

/// `debug` output is the point of the task, so it is shown without `-v`.
fn is_debug_msg(r: &TaskReport) -> bool {
    r.status == TaskStatus::Ok && r.summary.as_deref() == Some("debug")
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn log_lines_are_masked_with_the_secrets_the_redactor_knows() {
        let r = Redactor::default();
        r.add("hunter2-secret");
        let line = b"DEBUG connecting with hunter2-secret to h1\n";
        let out = String::from_utf8(redact_bytes(Some(&r), line)).unwrap();
        assert_eq!(out, "DEBUG connecting with ******** to h1\n");
        assert_eq!(redact_bytes(None, line), line.to_vec());
    }
}
