//! Everything the run prints.
//!
//! Human output follows ansible-playbook (PLAY / TASK headers, `changed: [h1]`, PLAY RECAP),
//! with an indicatif spinner for the running task when stdout is a terminal and plain lines
//! otherwise. `--output json` prints one JSON document at the end with the same facts. All
//! text passes through the [`Redactor`] first, so no secret reaches the screen or a log.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::plan::{Recap, TaskReport, TaskStatus};
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
    spinner: Mutex<Option<indicatif::ProgressBar>>,
    tty: bool,
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
            spinner: Mutex::new(None),
            tty: std::io::stdout().is_terminal(),
        }
    }

    fn line(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.format == Format::Json {
            return;
        }
        let guard = self.spinner.lock().expect("spinner lock");
        match guard.as_ref() {
            Some(pb) => pb.println(text),
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

    pub fn task_start(&self, name: &str, handler: bool, hosts: usize) {
        self.line(&Self::banner(
            if handler { "RUNNING HANDLER" } else { "TASK" },
            name,
        ));
        if self.tty && self.format == Format::Human {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_message(format!("{} on {hosts} host(s)", self.redactor.redact(name)));
            pb.enable_steady_tick(Duration::from_millis(120));
            *self.spinner.lock().expect("spinner lock") = Some(pb);
        }
        let mut doc = self.doc.lock().expect("doc lock");
        if let Some(Value::Array(tasks)) = doc.plays.last_mut().and_then(|p| p.get_mut("tasks")) {
            tasks
                .push(json!({"name": self.redactor.redact(name), "handler": handler, "hosts": {}}));
        }
    }

    pub fn task_end(&self) {
        if let Some(pb) = self.spinner.lock().expect("spinner lock").take() {
            pb.finish_and_clear();
        }
    }

    /// Records and prints one host's result.
    pub fn result(&self, r: &TaskReport) {
        self.recap.lock().expect("recap lock").count(r);
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
            _ if self.verbosity > 0 || is_debug_msg(r) => r.msg.clone(),
            _ => None,
        };
        if let Some(d) = detail.filter(|d| !d.is_empty()) {
            text.push_str(&format!(" => {d}"));
        }
        self.line(&text);
        if self.show_diff {
            if let Some(d) = &r.diff {
                self.line(d.trim_end());
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
                let out = json!({
                    "check_mode": self.check,
                    "interrupted": interrupted,
                    "error": error,
                    "plays": doc.plays,
                    "stats": recap.hosts,
                });
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

/// `debug` output is the point of the task, so it is shown without `-v`.
fn is_debug_msg(r: &TaskReport) -> bool {
    r.status == TaskStatus::Ok && r.summary.as_deref() == Some("debug")
}
