//! How a run shows its progress: bars with rows/s and ETA on a terminal, plain periodic lines
//! otherwise (CI logs, `nohup`, a pipe), where redrawn bars would be noise or invisible.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::engine::Progress;

/// How often a plain progress line is printed at most.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

struct TableState {
    bar: ProgressBar,
    started: Instant,
    total: u64,
    /// Ranges an interrupted run had finished: not counted in rates or ETA.
    resumed: u64,
    done: u64,
    rows: u64,
}

impl TableState {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    /// Remaining time from this run's pace (resumed ranges took no time now).
    fn eta(&self) -> Option<Duration> {
        let run_done = self.done.saturating_sub(self.resumed);
        if run_done == 0 {
            return None;
        }
        let per_range = self.started.elapsed().as_secs_f64() / run_done as f64;
        Some(Duration::from_secs_f64(
            per_range * self.total.saturating_sub(self.done) as f64,
        ))
    }

    fn line(&self, table: &str) -> String {
        let eta = match self.eta() {
            Some(d) => format!("{}s", d.as_secs()),
            None => "?".into(),
        };
        format!(
            "{table}: {}/{} ranges, {} rows, {:.0} rows/s, ETA {eta}",
            self.done,
            self.total,
            self.rows,
            self.rate()
        )
    }
}

struct PlainLines {
    out: Mutex<Box<dyn Write + Send>>,
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl PlainLines {
    fn emit(&self, line: &str, force: bool) {
        let mut last = self.last.lock().expect("progress lock");
        if !force && last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        *last = Some(Instant::now());
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// The CLI's progress display. One bar (or line series) per table.
pub struct RunProgress {
    multi: MultiProgress,
    tables: Mutex<BTreeMap<String, TableState>>,
    plain: Option<PlainLines>,
}

impl RunProgress {
    /// Bars when stderr is a terminal, plain lines on stderr every [`PLAIN_EVERY`] otherwise.
    pub fn for_stderr() -> RunProgress {
        if std::io::stderr().is_terminal() {
            RunProgress {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                tables: Mutex::new(BTreeMap::new()),
                plain: None,
            }
        } else {
            RunProgress::plain(Box::new(std::io::stderr()), PLAIN_EVERY)
        }
    }

    /// Plain lines to `out`, at most one per `every` (plus one when a table finishes).
    pub fn plain(out: Box<dyn Write + Send>, every: Duration) -> RunProgress {
        RunProgress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            tables: Mutex::new(BTreeMap::new()),
            plain: Some(PlainLines {
                out: Mutex::new(out),
                every,
                last: Mutex::new(None),
            }),
        }
    }
}

impl Progress for RunProgress {
    fn table_started(&self, table: &str, ranges: u32) {
        let bar = self.multi.add(ProgressBar::new(ranges as u64));
        if self.plain.is_none() {
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:30} [{bar:30}] {pos}/{len} ranges {msg} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(table.to_string());
            bar.enable_steady_tick(Duration::from_millis(500));
        }
        let state = TableState {
            bar,
            started: Instant::now(),
            total: ranges as u64,
            resumed: 0,
            done: 0,
            rows: 0,
        };
        if let Ok(mut t) = self.tables.lock() {
            t.insert(table.to_string(), state);
        }
    }

    fn ranges_resumed(&self, table: &str, ranges: u32) {
        if let Ok(mut t) = self.tables.lock() {
            if let Some(s) = t.get_mut(table) {
                s.resumed += ranges as u64;
                s.done += ranges as u64;
                s.bar.set_position(s.done);
                // indicatif's ETA would count the jump as speed.
                s.bar.reset_eta();
            }
        }
    }

    fn range_finished(&self, table: &str, rows: u64) {
        let Ok(mut t) = self.tables.lock() else {
            return;
        };
        let Some(s) = t.get_mut(table) else { return };
        s.done += 1;
        s.rows += rows;
        s.bar.inc(1);
        if s.rows > 0 {
            s.bar
                .set_message(format!("{} rows {:.0} rows/s", s.rows, s.rate()));
        }
        if let Some(p) = &self.plain {
            p.emit(&s.line(table), false);
        }
    }

    fn table_finished(&self, table: &str) {
        let Ok(t) = self.tables.lock() else { return };
        let Some(s) = t.get(table) else { return };
        s.bar.finish();
        if let Some(p) = &self.plain {
            p.emit(
                &format!(
                    "{} (done in {:.1}s)",
                    s.line(table),
                    s.started.elapsed().as_secs_f64()
                ),
                true,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_lines_show_ranges_rows_rate_and_eta() {
        let out = Shared::default();
        let p = RunProgress::plain(Box::new(out.clone()), Duration::ZERO);
        p.table_started("ks.t", 4);
        p.ranges_resumed("ks.t", 1);
        std::thread::sleep(Duration::from_millis(20));
        p.range_finished("ks.t", 100);
        p.range_finished("ks.t", 50);
        p.table_finished("ks.t");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("ks.t: 2/4 ranges, 100 rows, "),
            "{text}"
        );
        assert!(lines[0].contains(" rows/s, ETA ") && !lines[0].contains("ETA ?"));
        assert!(lines[1].starts_with("ks.t: 3/4 ranges, 150 rows"), "{text}");
        assert!(lines[2].contains("done in"), "{text}");
    }

    #[test]
    fn plain_lines_are_rate_limited() {
        let out = Shared::default();
        let p = RunProgress::plain(Box::new(out.clone()), Duration::from_secs(3600));
        p.table_started("ks.t", 100);
        for _ in 0..50 {
            p.range_finished("ks.t", 1);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        p.table_finished("ks.t");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.lines().count(),
            2,
            "the final line is always printed: {text}"
        );
        assert!(text
            .lines()
            .last()
            .unwrap()
            .starts_with("ks.t: 50/100 ranges, 50 rows"));
    }
}
