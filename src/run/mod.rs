//! The run engine: plays, batches (`serial`), forks, handlers and the failure policy.
//!
//! Strategy is Ansible's `linear`: within a batch, each task runs on every live host (up to
//! `--forks` at once) before the next task starts. A host that fails leaves the play. After
//! each task the batch is checked against `any_errors_fatal` and `max_fail_percentage`
//! (and "every host of the batch failed"); when the policy trips, the play stops before the
//! next batch is touched.

mod context;
mod escalation;
mod task;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;

use crate::inventory::{select_hosts, Inventory};
use crate::output::Reporter;
use crate::plan::{TaskReport, TaskStatus};
use crate::playbook::{Play, Playbook, Serial, Task};
use crate::secrets::Redactor;
use crate::template::Templar;
use crate::vars::{overlay, Vars};
use context::{HostLayers, PlayVars};
pub use task::NO_LOG_MSG;
use task::{run_on_host, HostOutcome, TaskEnv};

/// Splits hosts into batches of the given sizes; the last size repeats until all hosts are
/// placed (`serial: [1, 2]` on 5 hosts gives 1, 2, 2). Sizes below 1 count as 1.
pub fn split_batches(hosts: &[String], sizes: &[usize]) -> Vec<Vec<String>> {
    if sizes.is_empty() {
        return vec![hosts.to_vec()];
    }
    let mut out = Vec::new();
    let mut rest = hosts;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes.get(i).or(sizes.last()).copied().unwrap_or(1).max(1);
        let n = size.min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// The task `gather_facts: true` runs on each batch before the play's tasks: the
/// `gather_facts` module with its defaults (the install root from `zdm_install_root`), so the
/// facts are variables of every later task. Tagged `always`, as in Ansible, so `--tags` does
/// not leave the play without its facts.
fn gathering_task(play: &Play) -> Task {
    Task {
        name: "Gathering Facts".into(),
        module: "gather_facts".into(),
        tags: vec!["always".into()],
        base_dir: play.base_dir.clone(),
        ..Default::default()
    }
}

/// Options from the command line that shape a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub check: bool,
    pub diff: bool,
    pub forks: usize,
    pub limit: Option<String>,
    /// `-b`/`--become-user`: below every play and task keyword.
    pub escalation: crate::playbook::Escalation,
    /// `--start-at-task`: tasks before the first one of this name (or `*` glob) are skipped.
    pub start_at_task: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub extra_vars: Vars,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            check: false,
            diff: false,
            forks: 5,
            limit: None,
            escalation: Default::default(),
            start_at_task: None,
            tags: vec![],
            skip_tags: vec![],
            extra_vars: Vars::new(),
        }
    }
}

/// A problem that stops the run before or between tasks (not a host failure).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

/// Runs a playbook against an inventory.
pub struct Runner<'a> {
    pub inventory: &'a Inventory,
    pub playbook: &'a Playbook,
    pub opts: &'a RunOptions,
    pub templar: &'a Templar,
    pub redactor: &'a Redactor,
    pub out: &'a Reporter,
    /// set_fact / register values per host; they outlive a play, as in Ansible.
    facts: BTreeMap<String, Vars>,
    /// Hosts that failed or were unreachable: later plays skip them.
    dead: BTreeSet<String>,
    /// Hosts that were unreachable (a block's `rescue` and `always` do not run for them).
    unreachable: BTreeSet<String>,
    /// Hosts a `meta: end_host` took out of the current play: done with it, not failed.
    ended: BTreeSet<String>,
    /// Connections, opened once per host and reused by every task.
    pool: crate::transport::Pool,
    /// False until `--start-at-task`'s task is reached (true without the option). Public so
    /// the search carries over from one playbook of the command line to the next.
    pub started: bool,
}

/// How a play ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PlayEnd {
    Completed,
    PolicyTripped,
}

/// The play's failure policy, rendered with the play's variables when it starts.
#[derive(Debug, Clone, Copy)]
struct Policy {
    any_errors_fatal: bool,
    max_fail_percentage: Option<f64>,
}

/// Per-play mutable state.
#[derive(Default)]
struct PlayState {
    /// Handler name or listen topic -> hosts that notified it.
    notified: BTreeMap<String, BTreeSet<String>>,
}

impl<'a> Runner<'a> {
    pub fn new(
        inventory: &'a Inventory,
        playbook: &'a Playbook,
        opts: &'a RunOptions,
        templar: &'a Templar,
        redactor: &'a Redactor,
        out: &'a Reporter,
    ) -> Runner<'a> {
        Runner {
            inventory,
            playbook,
            opts,
            templar,
            redactor,
            out,
            facts: BTreeMap::new(),
            dead: BTreeSet::new(),
            unreachable: BTreeSet::new(),
            ended: BTreeSet::new(),
            pool: crate::transport::Pool::default(),
            started: opts.start_at_task.is_none(),
        }
    }

    /// Refuses, before anything runs, a play whose `hosts:` selects no host because it
    /// names no host or group of the inventory (a typo would otherwise run nothing and
    /// report success). A known group that happens to be empty is skipped, as in Ansible.
    /// Templated patterns are checked when their play starts.
    pub fn check_play_hosts(&self) -> Result<(), RunError> {
        for play in &self.playbook.plays {
            if !play.hosts.contains("{{") {
                self.refuse_unknown_hosts(play, &play.hosts)?;
            }
        }
        Ok(())
    }

    fn refuse_unknown_hosts(&self, play: &Play, pattern: &str) -> Result<(), RunError> {
        crate::inventory::check_pattern(pattern)
            .map_err(|e| RunError(format!("play '{}': {e}", play.name)))?;
        let unknown = crate::inventory::unknown_terms(self.inventory, pattern);
        if unknown.is_empty() {
            return Ok(());
        }
        let hosts = select_hosts(self.inventory, pattern).map_err(|e| RunError(e.0))?;
        if hosts.is_empty() {
            return Err(RunError(format!(
                "play '{}': hosts '{pattern}' matches no host ('{}': no such host or group in \
                 the inventory)",
                play.name,
                unknown.join("', '")
            )));
        }
        Ok(())
    }

    /// Whether `--start-at-task` lets this task run; the first task it names starts the run.
    fn reached(&mut self, task: &Task) -> bool {
        if self.started {
            return true;
        }
        let want = self.opts.start_at_task.as_deref().unwrap_or_default();
        let name = task.display_name();
        if name == want || crate::inventory::glob(want, &name) {
            self.started = true;
        }
        self.started
    }

    /// Hosts a play targets after `--limit`.
    pub fn play_hosts(&self, play: &Play) -> Result<Vec<String>, RunError> {
        let pattern = self.play_pattern(play)?;
        let mut hosts = select_hosts(self.inventory, &pattern).map_err(|e| RunError(e.0))?;
        if let Some(limit) = &self.opts.limit {
            let allowed = select_hosts(self.inventory, limit).map_err(|e| RunError(e.0))?;
            hosts.retain(|h| allowed.contains(h));
        }
        Ok(hosts)
    }

    /// The play's host pattern, rendered if it is a template (`hosts: "{{ targets }}"`, with
    /// play vars and extra vars, as Ansible allows).
    fn play_pattern(&self, play: &Play) -> Result<String, RunError> {
        if !play.hosts.contains("{{") {
            return Ok(play.hosts.clone());
        }
        let mut ctx = play.vars.clone();
        overlay(&mut ctx, &self.opts.extra_vars);
        self.templar
            .render_str(&format!("play '{}' hosts", play.name), &play.hosts, &ctx)
            .map_err(|e| RunError(e.0))
    }

    /// True if the task is selected by `--tags` / `--skip-tags`.
    pub fn tags_select(&self, task: &Task) -> bool {
        let has = |t: &str| task.tags.iter().any(|x| x == t);
        if self.opts.skip_tags.iter().any(|s| has(s)) {
            return false;
        }
        if has("always") {
            return true;
        }
        if has("never") && !self.opts.tags.iter().any(|t| has(t)) {
            return false;
        }
        self.opts.tags.is_empty()
            || self.opts.tags.iter().any(|t| t == "all")
            || self.opts.tags.iter().any(|t| has(t))
    }

    /// Runs every play. Host failures are in the recap; `Err` is for problems that stop
    /// the whole run (a vars file that cannot be read, ...).
    ///
    /// A play whose failure policy trips (`any_errors_fatal`, `max_fail_percentage`, a whole
    /// batch failed) ends the run, as in Ansible: later plays must not go on with the hosts
    /// that are left, e.g. a rolling restart after its fact-gathering play lost a host.
    pub async fn run(&mut self) -> Result<(), RunError> {
        for play in &self.playbook.plays {
            if self.run_play(play).await? == PlayEnd::PolicyTripped {
                self.out.warn(&format!(
                    "run stopped after play '{}': later plays untouched",
                    play.name
                ));
                break;
            }
        }
        Ok(())
    }

    /// Runs one play; tells whether it ran to its end or its failure policy stopped it.
    async fn run_play(&mut self, play: &Play) -> Result<PlayEnd, RunError> {
        let pattern = self.play_pattern(play)?;
        self.refuse_unknown_hosts(play, &pattern)?;
        let mut hosts = self.play_hosts(play)?;
        for unknown in crate::inventory::unknown_terms(self.inventory, &pattern) {
            self.out.warn(&format!(
                "host pattern '{unknown}' matched no host or group"
            ));
        }
        hosts.retain(|h| !self.dead.contains(h));
        self.ended.clear();
        self.out.play_start(&play.name, &hosts);
        if hosts.is_empty() {
            self.out
                .warn(&format!("play '{}': no hosts matched, skipping", play.name));
            return Ok(PlayEnd::Completed);
        }
        let mut play_vars = play.vars.clone();
        for f in &play.vars_files {
            let v = crate::inventory::read_vars_file(f).map_err(|e| RunError(e.0))?;
            overlay(&mut play_vars, &v);
        }
        let pv = PlayVars::new(
            self.inventory,
            &hosts,
            play_vars,
            self.opts.extra_vars.clone(),
            play.base_dir.display().to_string(),
            self.opts.check,
            self.opts.diff,
        );
        for v in pv.inventory.values() {
            self.redactor.add_from_vars(v);
        }
        self.redactor.add_from_vars(&pv.play);
        self.redactor.add_from_vars(&pv.extra);

        let policy = self.policy(play, &pv)?;
        let gather = play.gather_facts.then(|| gathering_task(play));
        for batch in self.batches(play, &hosts, &pv)? {
            let mut state = PlayState::default();
            let mut live: Vec<String> = batch.clone();
            let mut stop = false;
            if let Some(task) = &gather {
                self.run_task(play, task, &mut live, &hosts, &pv, &mut state, false)
                    .await;
                stop = self.policy_trips(&policy, &batch, &live);
            }
            for section in [&play.pre_tasks, &play.tasks, &play.post_tasks] {
                if stop {
                    break;
                }
                let tripped = self
                    .run_tasks(
                        play,
                        section,
                        &mut live,
                        &hosts,
                        &pv,
                        &mut state,
                        Some((&policy, &batch)),
                    )
                    .await;
                if tripped {
                    stop = true;
                    break;
                }
                self.flush_handlers(play, &mut live, &hosts, &pv, &mut state)
                    .await;
                if self.policy_trips(&policy, &batch, &live) {
                    stop = true;
                    break;
                }
            }
            if stop {
                self.out.warn(&format!(
                    "play '{}' stopped: failure policy tripped in batch [{}]; later batches untouched",
                    play.name,
                    batch.join(", ")
                ));
                return Ok(PlayEnd::PolicyTripped);
            }
        }
        Ok(PlayEnd::Completed)
    }

    /// Runs `tasks` in order on the live hosts; true when the failure policy tripped. The
    /// policy is checked after each task when `policy` is given; inside a block it is
    /// checked only once the block is over, since its `rescue` may clear a failure.
    #[allow(clippy::too_many_arguments)]
    fn run_tasks<'s>(
        &'s mut self,
        play: &'s Play,
        tasks: &'s [Task],
        live: &'s mut Vec<String>,
        play_hosts: &'s [String],
        pv: &'s PlayVars,
        state: &'s mut PlayState,
        policy: Option<(&'s Policy, &'s [String])>,
    ) -> futures::future::LocalBoxFuture<'s, bool> {
        // Boxed: blocks nest, so this future contains itself.
        Box::pin(async move {
            for task in tasks {
                if let Some(block) = &task.block {
                    self.run_block(play, block, live, play_hosts, pv, state)
                        .await;
                } else if !self.tags_select(task) || !self.reached(task) {
                    continue;
                } else if task.module == "meta" {
                    match task.args.get("_raw").and_then(Value::as_str) {
                        Some("flush_handlers") => {
                            self.flush_handlers(play, live, play_hosts, pv, state).await
                        }
                        Some("end_host") => self.end_hosts(play, task, live, play_hosts, pv),
                        _ => {}
                    }
                } else {
                    self.run_task(play, task, live, play_hosts, pv, state, false)
                        .await;
                }
                if let Some((policy, batch)) = policy {
                    if self.policy_trips(policy, batch, live) {
                        return true;
                    }
                }
            }
            false
        })
    }

    /// Runs a block on the live hosts: its tasks; `rescue` on the hosts where one failed
    /// (those it gets through are back in the play, counted as rescued); then `always` on
    /// every host that entered the block and is reachable. A host whose failure was not
    /// rescued stays failed, whatever `always` does.
    async fn run_block(
        &mut self,
        play: &Play,
        block: &crate::playbook::Block,
        live: &mut Vec<String>,
        play_hosts: &[String],
        pv: &PlayVars,
        state: &mut PlayState,
    ) {
        let entered = live.clone();
        let mut ok = live.clone();
        self.run_tasks(play, &block.block, &mut ok, play_hosts, pv, state, None)
            .await;
        let mut failed: Vec<String> = entered
            .iter()
            .filter(|h| {
                !ok.contains(h) && !self.unreachable.contains(*h) && !self.ended.contains(*h)
            })
            .cloned()
            .collect();
        if !failed.is_empty() && !block.rescue.is_empty() {
            for h in &failed {
                self.dead.remove(h);
            }
            let mut rescued = failed.clone();
            self.run_tasks(
                play,
                &block.rescue,
                &mut rescued,
                play_hosts,
                pv,
                state,
                None,
            )
            .await;
            for h in &rescued {
                self.out.rescued(h);
            }
            failed.retain(|h| !rescued.contains(h));
            ok.extend(rescued);
        }
        if !block.always.is_empty() {
            for h in &failed {
                self.dead.remove(h);
            }
            let mut always: Vec<String> = entered
                .iter()
                .filter(|h| ok.contains(h) || failed.contains(h))
                .cloned()
                .collect();
            self.run_tasks(
                play,
                &block.always,
                &mut always,
                play_hosts,
                pv,
                state,
                None,
            )
            .await;
            ok.retain(|h| always.contains(h));
            for h in &failed {
                self.dead.insert(h.clone());
            }
        }
        live.retain(|h| ok.contains(h));
    }

    /// Splits the play's hosts into `serial` batches (the last size repeats).
    fn batches(
        &self,
        play: &Play,
        hosts: &[String],
        pv: &PlayVars,
    ) -> Result<Vec<Vec<String>>, RunError> {
        if play.serial.is_empty() {
            return Ok(vec![hosts.to_vec()]);
        }
        let mut ctx = pv.play.clone();
        overlay(&mut ctx, &pv.extra);
        let size_of = |s: &Serial| -> Result<usize, RunError> {
            Ok(match s {
                Serial::Count(n) => *n,
                Serial::Percent(p) => ((hosts.len() as f64) * p / 100.0).floor() as usize,
                Serial::Template(t) => {
                    let v = self
                        .templar
                        .render_str("serial", t, &ctx)
                        .map_err(|e| RunError(format!("play '{}': serial: {e}", play.name)))?;
                    let v = v.trim();
                    if let Some(p) = v.strip_suffix('%') {
                        let p: f64 = p.trim().parse().map_err(|_| {
                            RunError(format!(
                                "play '{}': serial '{v}' is not a percentage",
                                play.name
                            ))
                        })?;
                        ((hosts.len() as f64) * p / 100.0).floor() as usize
                    } else {
                        v.parse().map_err(|_| {
                            RunError(format!(
                                "play '{}': serial '{v}' is not a number",
                                play.name
                            ))
                        })?
                    }
                }
            }
            .max(1))
        };
        let sizes = play
            .serial
            .iter()
            .map(size_of)
            .collect::<Result<Vec<usize>, RunError>>()?;
        Ok(split_batches(hosts, &sizes))
    }

    /// Renders `any_errors_fatal` and `max_fail_percentage` with the play's variables and
    /// the extra vars (as `serial` is): a value of the wrong type stops the run, naming the
    /// file, line, column and keyword.
    fn policy(&self, play: &Play, pv: &PlayVars) -> Result<Policy, RunError> {
        let mut ctx = pv.play.clone();
        overlay(&mut ctx, &pv.extra);
        let any_errors_fatal = play
            .any_errors_fatal
            .eval(self.templar, &ctx)
            .map_err(|e| RunError(format!("play '{}': {e}", play.name)))?;
        let max_fail_percentage = match &play.max_fail_percentage {
            None => None,
            Some(n) => Some(
                n.eval(self.templar, &ctx)
                    .map_err(|e| RunError(format!("play '{}': {e}", play.name)))?,
            ),
        };
        Ok(Policy {
            any_errors_fatal,
            max_fail_percentage,
        })
    }

    /// Whether the batch's failures end the play.
    fn policy_trips(&self, policy: &Policy, batch: &[String], live: &[String]) -> bool {
        let failed = batch
            .iter()
            .filter(|h| !live.contains(h) && !self.ended.contains(*h))
            .count();
        if failed == 0 {
            return false;
        }
        if policy.any_errors_fatal || live.is_empty() {
            return true;
        }
        match policy.max_fail_percentage {
            Some(pct) => (failed as f64) * 100.0 / (batch.len() as f64) > pct,
            None => false,
        }
    }

    /// Every host's variables for `task`, and the `hostvars` built from them (each host sees
    /// the others through it). `hostvars` is built once per task and shared by every host
    /// (through [`TaskEnv`] and the templar), never copied into a host's own variables: a copy
    /// per host made a task cost O(hosts² x variables).
    fn task_vars(
        &self,
        task: &Task,
        play_hosts: &[String],
        pv: &PlayVars,
    ) -> (BTreeMap<String, Vars>, Arc<Value>) {
        let live_play_hosts: Vec<String> = play_hosts
            .iter()
            .filter(|h| !self.dead.contains(*h))
            .cloned()
            .collect();
        let empty = Vars::new();
        let mut bases: BTreeMap<String, Vars> = BTreeMap::new();
        // Variables of every host first, so each can see the others through `hostvars`.
        for h in &pv.inventory.keys().cloned().collect::<Vec<_>>() {
            let layers = HostLayers {
                task_vars: &task.vars,
                role_defaults: &task.role_defaults,
                facts: self.facts.get(h).unwrap_or(&empty),
                play_hosts: &live_play_hosts,
            };
            bases.insert(h.clone(), pv.host_base_cached(h, &layers, self.templar));
        }
        let hostvars = Value::Object(
            bases
                .iter()
                .map(|(h, v)| (h.clone(), Value::Object(v.clone())))
                .collect(),
        );
        (bases, Arc::new(hostvars))
    }

    /// `meta: end_host`, as in Ansible: each live host where the task's `when` holds leaves
    /// the play now, done rather than failed (the failure policy does not count it; later
    /// plays still run on it). A `serial` play uses it to pass over a host with nothing to
    /// do at the cost of one condition, instead of every task of its batch being skipped one
    /// by one. A condition that cannot be evaluated fails the host.
    fn end_hosts(
        &mut self,
        play: &Play,
        task: &Task,
        live: &mut Vec<String>,
        play_hosts: &[String],
        pv: &PlayVars,
    ) {
        let (bases, hostvars) = self.task_vars(task, play_hosts, pv);
        let name = task.display_name();
        self.out.task_start(&name, false, live, &task.tags);
        self.templar.share_hostvars(Some(hostvars));
        let no_vars = Vars::new();
        for host in live.clone() {
            let vars = bases.get(&host).unwrap_or(&no_vars);
            let verdict = task::when_holds(self.templar, task, vars).map_err(|e| e.0);
            let (status, msg) = match &verdict {
                Ok(true) => (TaskStatus::Ok, "ending the play for this host"),
                Ok(false) => (TaskStatus::Skipped, "conditional result was False"),
                Err(e) => (TaskStatus::Failed, e.as_str()),
            };
            self.out.result(&TaskReport {
                play: play.name.clone(),
                task: name.clone(),
                host: host.clone(),
                status,
                ignored: false,
                handler: false,
                msg: Some(msg.to_string()),
                summary: None,
                diff: None,
                item: None,
                show_msg: status == TaskStatus::Ok,
            });
            match verdict {
                Ok(true) => {
                    live.retain(|h| h != &host);
                    self.ended.insert(host);
                }
                Ok(false) => {}
                Err(_) => {
                    live.retain(|h| h != &host);
                    self.dead.insert(host);
                }
            }
        }
        self.templar.share_hostvars(None);
        self.out.task_end();
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_task(
        &mut self,
        play: &Play,
        task: &Task,
        live: &mut Vec<String>,
        play_hosts: &[String],
        pv: &PlayVars,
        state: &mut PlayState,
        handler: bool,
    ) {
        self.run_task_on(
            play,
            task,
            live.clone(),
            live,
            play_hosts,
            pv,
            state,
            handler,
        )
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_task_on(
        &mut self,
        play: &Play,
        task: &Task,
        targets: Vec<String>,
        live: &mut Vec<String>,
        play_hosts: &[String],
        pv: &PlayVars,
        state: &mut PlayState,
        handler: bool,
    ) {
        if targets.is_empty() {
            return;
        }
        let (bases, hostvars) = self.task_vars(task, play_hosts, pv);
        // run_once is rendered with the first host's variables, as in Ansible.
        let run_once = bases
            .get(&targets[0])
            .map_or(Ok(false), |v| task.run_once.eval(self.templar, v));
        let run_hosts: Vec<String> = match run_once {
            Ok(true) => targets.iter().take(1).cloned().collect(),
            _ => targets.clone(),
        };
        self.out
            .task_start(&task.display_name(), handler, &run_hosts, &task.tags);
        let env = TaskEnv {
            task,
            play: &play.name,
            escalation: task
                .escalation
                .over(&play.escalation)
                .over(&self.opts.escalation),
            handler,
            check: self.opts.check,
            hostvars: &hostvars,
            templar: self.templar,
            redactor: self.redactor,
            pool: &self.pool,
            out: self.out,
        };
        self.templar.share_hostvars(Some(hostvars.clone()));
        let mut outcomes: Vec<HostOutcome> = Vec::new();
        if let Err(msg) = &run_once {
            // Not knowing whether to run once is a failure of the task on every host, not
            // a guess (running everywhere might repeat a once-only action).
            for h in &run_hosts {
                let o = task::keyword_failure(&env, h, msg);
                for r in &o.reports {
                    self.out.result(r);
                }
                outcomes.push(o);
            }
        } else {
            let jobs = run_hosts.iter().map(|h| {
                let vars = bases.get(h).cloned().unwrap_or_default();
                self.redactor.add_from_vars(&vars);
                let env = &env;
                async move { run_on_host(env, h, vars).await }
            });
            let mut stream = futures::stream::iter(jobs).buffer_unordered(self.opts.forks.max(1));
            while let Some(o) = stream.next().await {
                for r in &o.reports {
                    self.out.result(r);
                }
                outcomes.push(o);
            }
        }
        self.templar.share_hostvars(None);
        self.out.task_end();
        // run_once: the one result counts for every host of the batch, and the plan (and
        // the real run's output alike) says so for each of them.
        if run_once == Ok(true) {
            if let Some(first) = outcomes.first() {
                let template = (first.registered.clone(), first.facts.clone(), first.changed);
                let ran_on = first.host.clone();
                for h in targets.iter().skip(1) {
                    self.out.run_once_elsewhere(h, &ran_on);
                    outcomes.push(HostOutcome {
                        host: h.clone(),
                        registered: template.0.clone(),
                        facts: template.1.clone(),
                        changed: template.2,
                        ..Default::default()
                    });
                }
            }
        }
        for o in outcomes {
            let facts = self.facts.entry(o.host.clone()).or_default();
            if let Some(f) = &o.facts {
                self.redactor.add_from_vars(f);
                overlay(facts, f);
            }
            if let Some(reg) = &task.register {
                facts.insert(reg.clone(), o.registered.clone());
            }
            if o.changed && !o.failed {
                for n in &task.notify {
                    state
                        .notified
                        .entry(n.clone())
                        .or_default()
                        .insert(o.host.clone());
                }
            }
            if o.unreachable {
                self.unreachable.insert(o.host.clone());
            }
            if o.failed || o.unreachable {
                live.retain(|h| h != &o.host);
                self.dead.insert(o.host.clone());
            }
        }
    }

    /// Runs notified handlers in the order they are defined, on the hosts that notified them.
    async fn flush_handlers(
        &mut self,
        play: &Play,
        live: &mut Vec<String>,
        play_hosts: &[String],
        pv: &PlayVars,
        state: &mut PlayState,
    ) {
        if state.notified.is_empty() {
            return;
        }
        let notified = std::mem::take(&mut state.notified);
        for h in &play.handlers {
            let mut hosts: BTreeSet<String> = BTreeSet::new();
            for key in std::iter::once(&h.name).chain(h.listen.iter()) {
                if let Some(set) = notified.get(key) {
                    hosts.extend(set.iter().cloned());
                }
            }
            let targets: Vec<String> = live
                .iter()
                .filter(|x| hosts.contains(*x))
                .cloned()
                .collect();
            self.run_task_on(play, h, targets, live, play_hosts, pv, state, true)
                .await;
        }
        for name in notified.keys() {
            let known = play
                .handlers
                .iter()
                .any(|h| &h.name == name || h.listen.contains(name));
            if !known {
                self.out
                    .warn(&format!("notified handler '{name}' does not exist"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("h{i}")).collect()
    }

    #[test]
    fn serial_steps_repeat_the_last_size() {
        let b = split_batches(&hosts(5), &[1, 2]);
        assert_eq!(b, vec![vec!["h1"], vec!["h2", "h3"], vec!["h4", "h5"]]);
        let b = split_batches(&hosts(3), &[]);
        assert_eq!(b, vec![vec!["h1", "h2", "h3"]]);
        let b = split_batches(&hosts(3), &[0]);
        assert_eq!(b.len(), 3, "a 0% batch still takes one host");
        let b = split_batches(&hosts(2), &[5]);
        assert_eq!(b, vec![vec!["h1", "h2"]]);
    }
}
