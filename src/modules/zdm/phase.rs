//! `zdm_phase`: moves the recorded migration phase, refusing what would skip a gate.
//!
//! - `action: start, phase: phaseN`: the phase order check ([`MigrationState::check_start`]);
//!   a refusal fails the task unless `--force-phase` (or `-e zdm_force_phase=true`) turns it
//!   into a loud warning kept in the history. Records the start at once, so a crash leaves
//!   "started, not completed" and the next phase stays refused.
//! - `action: complete`: records the phase completed with every gate result measured since the
//!   start (each gate's latest measurement); refused when any of those gates failed.
//! - `action: fail`: records the failure (with `msg` as the reason) and the gates.
//! - `action: rollback`: refused after cutover; records that the rollback began (the following
//!   `complete` records the migration rolled back to phase1).
//!
//! Before `start` and `rollback` the recorded phase is compared with what the fleet runs, when
//! that is known: the `expected_proxy_settings` argument (`{host: {primary_cluster, read_mode}}`,
//! e.g. read from each proxy's configuration) or the facts `zdm_proxy_primary_cluster` /
//! `zdm_proxy_read_mode` of the `proxies` hosts. A disagreement stops the playbook: acting on a
//! wrong belief about the fleet is how a rollback turns into an outage.

use std::collections::BTreeMap;

use futures::FutureExt;
use serde_json::{Map, Value};

use crate::migration::run::{self as migration_run, MigrationRun};
use crate::migration::state::{entry, Event, MigrationState, Phase};
use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{
    arg_str, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query,
};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_phase",
    free_form: false,
    any_args: false,
    args: &[
        (
            "action",
            Kind::OneOf(&["start", "complete", "fail", "rollback"]),
        ),
        (
            "phase",
            Kind::OneOf(&[
                "preflight",
                "phase1",
                "phase2",
                "phase3",
                "phase4",
                "phase5",
            ]),
        ),
        ("expected_proxy_settings", Kind::Any),
        ("msg", Kind::Scalar),
    ],
    one_of_required: &[],
    required: &["action"],
};

pub struct ZdmPhase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Complete,
    Fail,
    Rollback,
}

fn action(args: &Map<String, Value>) -> Result<Action, ModuleError> {
    Ok(match arg_str(args, "action").unwrap_or_default().as_str() {
        "start" => Action::Start,
        "complete" => Action::Complete,
        "fail" => Action::Fail,
        "rollback" => Action::Rollback,
        other => {
            return Err(ModuleError::Failed(format!(
                "action '{other}': expected start, complete, fail or rollback"
            )))
        }
    })
}

fn phase_arg(args: &Map<String, Value>) -> Result<Option<Phase>, ModuleError> {
    match arg_str(args, "phase") {
        None => Ok(None),
        Some(p) => Phase::parse(&p).map(Some).ok_or_else(|| {
            ModuleError::Failed(format!(
                "phase '{p}': expected preflight, phase1, phase2, phase3, phase4 or phase5"
            ))
        }),
    }
}

fn run() -> Result<std::sync::Arc<MigrationRun>, ModuleError> {
    migration_run::current().ok_or_else(|| {
        ModuleError::Failed(
            "zdm_phase needs the migration state and its run lock, which zdm-run takes when a \
             playbook contains zdm_phase tasks; run this playbook with zdm-run"
                .into(),
        )
    })
}

fn load(run: &MigrationRun) -> Result<MigrationState, ModuleError> {
    run.store()
        .load()
        .map_err(|e| ModuleError::Failed(format!("{e:#}")))
}

/// What one proxy runs, as the fleet reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    pub primary_cluster: String,
    pub read_mode: String,
}

/// What the fleet runs, per host, when the playbook made it known; empty when it did not.
fn fleet_settings(ctx: &ModuleCtx<'_>) -> Result<BTreeMap<String, FleetSettings>, ModuleError> {
    let read = |v: &Value, primary: &str, mode: &str| -> Option<FleetSettings> {
        let get = |k: &str| {
            v.get(k)
                .filter(|x| !x.is_null())
                .map(|x| crate::vars::display(x).trim().to_ascii_uppercase())
                .filter(|s| !s.is_empty())
        };
        match (get(primary), get(mode)) {
            (None, None) => None,
            (p, m) => Some(FleetSettings {
                primary_cluster: p.unwrap_or_else(|| "?".into()),
                read_mode: m.unwrap_or_else(|| "?".into()),
            }),
        }
    };
    let mut out = BTreeMap::new();
    match ctx.args.get("expected_proxy_settings") {
        Some(Value::Object(hosts)) => {
            for (h, v) in hosts {
                if !v.is_object() {
                    return Err(ModuleError::Failed(format!(
                        "expected_proxy_settings.{h}: expected {{primary_cluster, read_mode}}"
                    )));
                }
                if let Some(s) = read(v, "primary_cluster", "read_mode") {
                    out.insert(h.clone(), s);
                }
            }
            return Ok(out);
        }
        None | Some(Value::Null) => {}
        Some(other) => {
            return Err(ModuleError::Failed(format!(
                "expected_proxy_settings: expected a mapping of host to {{primary_cluster, \
                 read_mode}}, got {other}"
            )))
        }
    }
    let hosts = super::common::string_list(ctx.vars.get("groups").and_then(|g| g.get("proxies")));
    for h in hosts {
        if let Some(hv) = ctx.hostvars.get(&h) {
            if let Some(s) = read(hv, "zdm_proxy_primary_cluster", "zdm_proxy_read_mode") {
                out.insert(h, s);
            }
        }
    }
    Ok(out)
}

/// Settings the recorded state allows the fleet to run: the phase's own, and while a transition
/// is unfinished (a rolling change stopped half-way) also the ones it started from.
fn allowed_settings(state: &MigrationState) -> Vec<(&'static str, &'static str)> {
    let mut allowed: Vec<(&str, &str)> = state.phase.proxy_settings().into_iter().collect();
    if !state.completed {
        let before = state.phase.predecessor().and_then(Phase::proxy_settings);
        allowed.extend(before);
        allowed.extend(Phase::Phase1.proxy_settings());
    }
    allowed.dedup();
    allowed
}

/// Compares the recorded phase with the fleet; `Ok(note)` says what was compared.
pub fn fact_check(
    state: &MigrationState,
    fleet: &BTreeMap<String, FleetSettings>,
) -> Result<String, String> {
    if fleet.is_empty() {
        return Ok(
            "fleet settings not gathered; recorded phase not compared with the fleet".into(),
        );
    }
    let allowed = allowed_settings(state);
    if allowed.is_empty() {
        return Ok(format!(
            "no proxies are expected at {}; fleet not compared",
            state.phase
        ));
    }
    let wrong: Vec<String> = fleet
        .iter()
        .filter(|(_, s)| {
            !allowed
                .iter()
                .any(|(p, m)| s.primary_cluster == *p && s.read_mode == *m)
        })
        .map(|(h, s)| {
            format!(
                "{h} runs primary_cluster={} read_mode={}",
                s.primary_cluster, s.read_mode
            )
        })
        .collect();
    let expected: Vec<String> = allowed
        .iter()
        .map(|(p, m)| format!("primary_cluster={p} read_mode={m}"))
        .collect();
    if wrong.is_empty() {
        Ok(format!(
            "{} proxies run what {} expects ({})",
            fleet.len(),
            state.phase,
            expected.join(" or ")
        ))
    } else {
        Err(format!(
            "the recorded phase and the fleet disagree: the state file says {} ({}), which means \
             {}, but {}. Find out who changed the fleet (or the state file) before going on",
            state.phase,
            if state.completed {
                "completed"
            } else {
                "not completed"
            },
            expected.join(" or "),
            wrong.join("; ")
        ))
    }
}

/// What `apply` will do, decided from the recorded state (shared by query and apply, so that a
/// check run and a real run refuse the same things).
struct Decision {
    event: Event,
    phase: Phase,
    forced: Option<String>,
    summary: String,
}

/// `Some` when this run already recorded exactly this (the task ran on several hosts without
/// `run_once`): recording it again would clear the gates measured since the start.
fn already_recorded(act: Action, phase: Option<Phase>, run: &MigrationRun) -> Option<String> {
    let t = run.transition()?;
    let same = match act {
        Action::Start => !t.rollback && Some(t.phase) == phase && !t.finished,
        Action::Rollback => t.rollback && !t.finished,
        Action::Complete | Action::Fail => t.finished,
    };
    same.then(|| {
        format!(
            "already recorded by this run ({}{})",
            if t.rollback { "rollback from " } else { "" },
            t.phase
        )
    })
}

/// `Ok(Err(note))` when there is nothing left to record.
fn decide(
    ctx: &ModuleCtx<'_>,
    run: &MigrationRun,
    state: &MigrationState,
) -> Result<Result<Decision, String>, ModuleError> {
    let act = action(ctx.args)?;
    if let Some(done) = already_recorded(act, phase_arg(ctx.args)?, run) {
        return Ok(Err(done));
    }
    decide_new(ctx, act, run, state).map(Ok)
}

fn decide_new(
    ctx: &ModuleCtx<'_>,
    act: Action,
    run: &MigrationRun,
    state: &MigrationState,
) -> Result<Decision, ModuleError> {
    let transition = run.transition();
    match act {
        Action::Start => {
            let phase = phase_arg(ctx.args)?.ok_or_else(|| {
                ModuleError::Failed(
                    "action start needs a phase (preflight, phase1 … phase5)".into(),
                )
            })?;
            let force =
                crate::vars::truthy(ctx.vars.get("zdm_force_phase").unwrap_or(&Value::Null));
            let forced = state
                .check_start(phase, force)
                .map_err(|e| ModuleError::Failed(e.to_string()))?;
            let facts = fact_check(state, &fleet_settings(ctx)?).map_err(ModuleError::Failed)?;
            Ok(Decision {
                event: Event::Started,
                phase,
                summary: format!(
                    "record {phase} started (recorded: {} {}); {facts}",
                    state.phase,
                    if state.completed {
                        "completed"
                    } else {
                        "not completed"
                    }
                ),
                forced,
            })
        }
        Action::Rollback => {
            state
                .check_rollback()
                .map_err(|e| ModuleError::Failed(e.to_string()))?;
            let facts = fact_check(state, &fleet_settings(ctx)?).map_err(ModuleError::Failed)?;
            Ok(Decision {
                event: Event::RollbackStarted,
                phase: state.phase,
                forced: None,
                summary: format!(
                    "record a rollback from {} to phase1 (primary ORIGIN, PRIMARY_ONLY) begun; {facts}",
                    state.phase
                ),
            })
        }
        Action::Complete | Action::Fail => {
            let Some(t) = transition else {
                // In check mode the start was only planned; say what would be recorded.
                if run.check_mode() {
                    let phase = phase_arg(ctx.args)?.unwrap_or(state.phase);
                    return Ok(Decision {
                        event: if act == Action::Complete {
                            Event::Completed
                        } else {
                            Event::Failed
                        },
                        phase,
                        forced: None,
                        summary: format!(
                            "record {phase} {} with the results of the gates run before it",
                            if act == Action::Complete {
                                "completed"
                            } else {
                                "failed"
                            }
                        ),
                    });
                }
                return Err(ModuleError::Failed(format!(
                    "nothing to {}: no zdm_phase start (or rollback) ran earlier in this run",
                    if act == Action::Complete {
                        "complete"
                    } else {
                        "fail"
                    }
                )));
            };
            let expected = if t.rollback { Phase::Phase1 } else { t.phase };
            if let Some(p) = phase_arg(ctx.args)? {
                if p != expected && !t.rollback {
                    return Err(ModuleError::Failed(format!(
                        "this run started {}, not {p}",
                        t.phase
                    )));
                }
            }
            let gates = run.gates();
            let failed: Vec<&str> = gates
                .iter()
                .filter(|g| !g.passed)
                .map(|g| g.name.as_str())
                .collect();
            if act == Action::Complete && !failed.is_empty() {
                return Err(ModuleError::Failed(format!(
                    "{expected} cannot complete: gate check(s) failed in this run: {}",
                    failed.join(", ")
                )));
            }
            let event = match (act, t.rollback) {
                (Action::Complete, true) => Event::RolledBack,
                (Action::Complete, false) => Event::Completed,
                _ => Event::Failed,
            };
            Ok(Decision {
                event,
                phase: if event == Event::Failed {
                    t.phase
                } else {
                    expected
                },
                forced: None,
                summary: format!(
                    "record {} {} with {} gate result(s) ({} failed)",
                    expected,
                    match event {
                        Event::RolledBack => "reached by rollback",
                        Event::Completed => "completed",
                        _ => "failed",
                    },
                    gates.len(),
                    failed.len()
                ),
            })
        }
    }
}

impl Module for ZdmPhase {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let run = run()?;
            let state = load(&run)?;
            let d = match decide(ctx, &run, &state)? {
                Ok(d) => d,
                Err(done) => return Ok(Query::Done(ModResult::msg(done))),
            };
            if run.check_mode() {
                match d.event {
                    Event::Started => run.plan_begin(d.phase, false),
                    Event::RollbackStarted => run.plan_begin(d.phase, true),
                    _ => {}
                }
            }
            let mut summary = d.summary;
            if let Some(w) = &d.forced {
                summary = format!("{w}\n{summary}");
            }
            Ok(Query::Run(Planned {
                summary,
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let run = run()?;
            // One recording at a time within the run (hosts of a task run in parallel); no
            // await happens while the guard is held.
            let _serial = run.serialize();
            // Decided again on the state as it is now (this process holds the lock, so only
            // this run could have changed it since the query).
            let mut state = load(&run)?;
            let d = match decide(ctx, &run, &state)? {
                Ok(d) => d,
                Err(done) => return Ok(ModResult::msg(done)),
            };
            let mut e = entry(&run.playbook(), d.phase, d.event);
            e.forced = d.forced.clone();
            e.note = arg_str(ctx.args, "msg");
            match d.event {
                Event::Started | Event::RollbackStarted => {}
                _ => e.gates = run.gates(),
            }
            if let Some(w) = &d.forced {
                tracing::warn!("{w}");
            }
            state.record(e);
            run.store()
                .save(&state)
                .map_err(|e| ModuleError::Failed(format!("{e:#}")))?;
            match d.event {
                Event::Started => run.begin(d.phase, false, d.forced.clone()),
                Event::RollbackStarted => run.begin(d.phase, true, None),
                _ => run.mark_finished(),
            }
            let mut msg = d.summary.replacen("record ", "recorded ", 1);
            if let Some(w) = &d.forced {
                msg = format!("{w}\n{msg}");
            }
            let mut data = Map::new();
            data.insert(
                "phase".into(),
                serde_json::to_value(state.phase).unwrap_or(Value::Null),
            );
            data.insert("completed".into(), Value::Bool(state.completed));
            data.insert("forced".into(), Value::Bool(d.forced.is_some()));
            data.insert(
                "state_file".into(),
                Value::from(run.store().path().display().to_string()),
            );
            Ok(ModResult {
                changed: true,
                failed: d.event == Event::Failed,
                msg: Some(msg),
                data,
                ..Default::default()
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(p: &str, m: &str) -> BTreeMap<String, FleetSettings> {
        BTreeMap::from([
            (
                "zdm-h1".to_string(),
                FleetSettings {
                    primary_cluster: "ORIGIN".into(),
                    read_mode: "PRIMARY_ONLY".into(),
                },
            ),
            (
                "zdm-h2".to_string(),
                FleetSettings {
                    primary_cluster: p.into(),
                    read_mode: m.into(),
                },
            ),
        ])
    }

    fn at(phase: Phase, completed: bool) -> MigrationState {
        MigrationState {
            phase,
            completed,
            history: vec![],
        }
    }

    #[test]
    fn the_fleet_must_run_what_the_recorded_phase_says() {
        let ok = fact_check(&at(Phase::Phase2, true), &fleet("ORIGIN", "PRIMARY_ONLY")).unwrap();
        assert!(ok.contains("2 proxies run what phase2 expects"), "{ok}");
        let err =
            fact_check(&at(Phase::Phase2, true), &fleet("TARGET", "PRIMARY_ONLY")).unwrap_err();
        assert!(
            err.contains("state file says phase2 (completed)")
                && err.contains("zdm-h2 runs primary_cluster=TARGET read_mode=PRIMARY_ONLY")
                && !err.contains("zdm-h1 runs"),
            "{err}"
        );
        // Half-way through phase 4's rolling change both settings are legitimate.
        assert!(fact_check(&at(Phase::Phase4, false), &fleet("TARGET", "PRIMARY_ONLY")).is_ok());
        assert!(fact_check(&at(Phase::Phase4, true), &fleet("TARGET", "PRIMARY_ONLY")).is_err());
        // Nothing gathered: nothing to compare, and it says so.
        assert!(fact_check(&at(Phase::Phase3, true), &BTreeMap::new())
            .unwrap()
            .contains("not compared"));
    }
}
