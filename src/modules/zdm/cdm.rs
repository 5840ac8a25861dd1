//! `zdm_cdm`: runs Cassandra Data Migrator's Migrate or DiffData job with `spark-submit` on the
//! task's host (through its transport: over SSH on a real host), from a rendered
//! `cdm.properties`, and gates on the outcome CDM records in its run-tracking tables on target
//! rather than on the exit code (see [`crate::data::cdm`] for why).
//!
//! Query renders the properties and plans "write the file (0600) and run spark-submit ...";
//! check mode stops there and shows the diff with passwords masked. Apply first makes sure the
//! run id is new (CDM refuses one it has recorded, and the gate would read the old run), then
//! writes the file, runs the job, and reads `cdm_run_info`/`cdm_run_details` for the run id it
//! chose. A run that resumed `previous_run_id` and recorded nothing is judged by that previous
//! run (CDM's answer when nothing is pending); a failure shows spark-submit's own error lines.
//!
//! Tested against the sandbox: `tests/cdm_module.rs` with a stand-in `spark-submit` (the file,
//! its mode, the masking, the command line, the gate and CDM's five pitfalls on real tracking
//! tables) and `tests/cdm_spark.rs` with the real CDM 5.8.1 jar on the sandbox's Spark cluster.
//!
//! ```yaml
//! - zdm_cdm:
//!     job: diffdata
//!     keyspace_table: shop.orders
//!     jar: /opt/cdm/cassandra-data-migrator-5.5.1.jar
//!     max_mismatched: 0
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use serde_json::{Map, Value};

use crate::data::cdm::{
    self, judge, judge_resume, spark_submit_argv, CdmCluster, CdmJob, CdmSettings, CdmThresholds,
    SparkSubmit,
};
use crate::data::ClusterConfig;
use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{
    arg_bool, arg_str, find_src, ModFuture, ModResult, Module, ModuleCtx, ModuleError,
};
use crate::modules::{Planned, Query};
use crate::transport::{CommandSpec, Ownership};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_cdm",
    free_form: false,
    any_args: false,
    args: &[
        ("job", Kind::OneOf(&["migrate", "diffdata"])),
        ("keyspace_table", Kind::Scalar),
        ("target_keyspace_table", Kind::Scalar),
        ("jar", Kind::Scalar),
        ("spark_submit", Kind::Scalar),
        ("master", Kind::Scalar),
        ("driver_memory", Kind::Scalar),
        ("executor_memory", Kind::Scalar),
        ("spark_args", Kind::ScalarList),
        ("properties_dest", Kind::Scalar),
        ("src", Kind::Scalar),
        ("run_id", Kind::Int),
        ("previous_run_id", Kind::Int),
        ("autocorrect_missing", Kind::Bool),
        ("autocorrect_mismatch", Kind::Bool),
        ("num_parts", Kind::Int),
        ("batch_size", Kind::Int),
        ("ratelimit_origin", Kind::Int),
        ("ratelimit_target", Kind::Int),
        ("max_missing", Kind::Int),
        ("max_mismatched", Kind::Int),
        ("timeout", Kind::Int),
        ("origin_contact_points", Kind::ScalarList),
        ("origin_port", Kind::Int),
        ("origin_username", Kind::Scalar),
        ("origin_password", Kind::Scalar),
        ("target_contact_points", Kind::ScalarList),
        ("target_port", Kind::Int),
        ("target_username", Kind::Scalar),
        ("target_password", Kind::Scalar),
    ],
    one_of_required: &[],
    required: &["job", "keyspace_table"],
};

/// Where CDM's jar and the rendered properties live on the host by default.
pub const DEFAULT_DIR: &str = "/opt/cdm";
pub const DEFAULT_JAR: &str = "/opt/cdm/cassandra-data-migrator.jar";

pub struct ZdmCdm;

fn failed(msg: impl Into<String>) -> ModuleError {
    ModuleError::Failed(msg.into())
}

/// A task argument; for the connection settings (`origin_*`, `target_*`) else the host variable
/// of the same name, as the proxy's settings are named in the inventory (rendered if it is a
/// template). Other arguments never come from host variables: a stray `job` or `timeout`
/// variable must not steer a migration.
fn setting(ctx: &ModuleCtx<'_>, name: &str) -> Result<Option<String>, ModuleError> {
    let from_vars = name.starts_with("origin_")
        || name.starts_with("target_contact")
        || name.starts_with("target_port")
        || name.starts_with("target_username")
        || name.starts_with("target_password");
    let v = match ctx.args.get(name) {
        Some(v) if !v.is_null() => v.clone(),
        _ => match ctx.vars.get(name).filter(|_| from_vars) {
            Some(v) if !v.is_null() => v.clone(),
            _ => return Ok(None),
        },
    };
    let text = match &v {
        Value::Array(items) => items
            .iter()
            .map(crate::vars::display)
            .collect::<Vec<_>>()
            .join(","),
        other => crate::vars::display(other),
    };
    if crate::template::is_template(&text) {
        return Ok(Some(ctx.templar.render_str(
            &format!("variable {name}"),
            &text,
            ctx.vars,
        )?));
    }
    Ok(Some(text))
}

fn number<T: std::str::FromStr>(
    ctx: &ModuleCtx<'_>,
    name: &str,
    default: T,
) -> Result<T, ModuleError> {
    match setting(ctx, name)? {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| failed(format!("argument '{name}': '{s}' is not a valid number"))),
    }
}

fn cluster(ctx: &ModuleCtx<'_>, name: &str) -> Result<CdmCluster, ModuleError> {
    let c = CdmCluster {
        host: setting(ctx, &format!("{name}_contact_points"))?.unwrap_or_default(),
        port: number(ctx, &format!("{name}_port"), 9042u16)?,
        username: setting(ctx, &format!("{name}_username"))?.unwrap_or_default(),
        password: setting(ctx, &format!("{name}_password"))?.unwrap_or_default(),
    };
    // Whatever its variable is called, this password never reaches output.
    ctx.redactor.add(&c.password);
    Ok(c)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(1)
}

/// Everything query and apply agree on.
struct Job {
    settings: CdmSettings,
    spark: SparkSubmit,
    dest: String,
    thresholds: CdmThresholds,
}

fn job(ctx: &ModuleCtx<'_>, run_id: Option<i64>) -> Result<Job, ModuleError> {
    let kind = CdmJob::parse(&setting(ctx, "job")?.unwrap_or_default()).map_err(failed)?;
    let keyspace_table = setting(ctx, "keyspace_table")?.unwrap_or_default();
    let target_keyspace_table =
        setting(ctx, "target_keyspace_table")?.unwrap_or_else(|| keyspace_table.clone());
    let run_id = match run_id {
        Some(id) => id,
        None => number(ctx, "run_id", now_millis())?,
    };
    let previous_run_id = match setting(ctx, "previous_run_id")? {
        Some(_) => Some(number(ctx, "previous_run_id", 0i64)?).filter(|id| *id > 0),
        None => None,
    };
    let settings = CdmSettings {
        job: kind,
        origin: cluster(ctx, "origin")?,
        target: cluster(ctx, "target")?,
        keyspace_table: keyspace_table.clone(),
        target_keyspace_table,
        autocorrect_missing: arg_bool(ctx.args, "autocorrect_missing", false),
        autocorrect_mismatch: arg_bool(ctx.args, "autocorrect_mismatch", false),
        run_id,
        previous_run_id,
        num_parts: number(ctx, "num_parts", 5000)?,
        batch_size: number(ctx, "batch_size", 5)?,
        ratelimit_origin: number(ctx, "ratelimit_origin", 20000)?,
        ratelimit_target: number(ctx, "ratelimit_target", 20000)?,
    };
    settings.check().map_err(failed)?;
    let spark_args = match ctx.args.get("spark_args") {
        Some(Value::Array(a)) => a.iter().map(crate::vars::display).collect(),
        Some(v) if !v.is_null() => vec![crate::vars::display(v)],
        _ => vec![],
    };
    let spark = SparkSubmit {
        program: arg_str(ctx.args, "spark_submit").unwrap_or_else(|| "spark-submit".into()),
        jar: arg_str(ctx.args, "jar").unwrap_or_else(|| DEFAULT_JAR.into()),
        master: arg_str(ctx.args, "master").unwrap_or_else(|| "local[*]".into()),
        driver_memory: arg_str(ctx.args, "driver_memory").unwrap_or_else(|| "25G".into()),
        executor_memory: arg_str(ctx.args, "executor_memory").unwrap_or_else(|| "25G".into()),
        extra_args: spark_args,
    };
    let dest = arg_str(ctx.args, "properties_dest")
        .unwrap_or_else(|| format!("{DEFAULT_DIR}/{keyspace_table}.{}.properties", kind.name()));
    Ok(Job {
        settings,
        spark,
        dest,
        thresholds: CdmThresholds {
            missing: number(ctx, "max_missing", 0)?,
            mismatched: number(ctx, "max_mismatched", 0)?,
        },
    })
}

fn render(ctx: &ModuleCtx<'_>, settings: &CdmSettings) -> Result<String, ModuleError> {
    let (name, source) = match arg_str(ctx.args, "src") {
        Some(src) => {
            let path = find_src(ctx.base_dir, "templates", &src)?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| failed(format!("cannot read template {}: {e}", path.display())))?;
            (src, text)
        }
        None => (
            "cdm.properties.j2 (built in)".to_string(),
            cdm::DEFAULT_TEMPLATE.to_string(),
        ),
    };
    // Host variables underneath, the run's settings on top.
    let mut vars = ctx.vars.clone();
    for (k, v) in settings.template_vars() {
        vars.insert(k, v);
    }
    Ok(ctx.templar.render_str(&name, &source, &vars)?)
}

/// The command line as shown to humans (already free of secrets: passwords are only in the
/// properties file).
fn shown(argv: &[String]) -> String {
    argv.iter()
        .map(|a| crate::transport::shlex_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Module for ZdmCdm {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let job = job(ctx, None)?;
            let content = render(ctx, &job.settings)?;
            let command = ctx.transport.path_for_command(&job.dest);
            let argv = spark_submit_argv(&job.spark, &job.settings, &command);
            let old = ctx.transport.read_file(&job.dest).await?;
            let old_text = old.as_deref().map(String::from_utf8_lossy);
            let diff = (old_text.as_deref() != Some(content.as_str())).then(|| {
                ctx.redactor.redact(&crate::diff::unified(
                    &job.dest,
                    old_text.as_deref(),
                    Some(&content),
                ))
            });
            let mut detail = Map::new();
            detail.insert("run_id".into(), Value::from(job.settings.run_id));
            let summary = format!(
                "write {} (0600) and run spark-submit: {} (CDM {} of {}, run id {})",
                job.dest,
                ctx.redactor.redact(&shown(&argv)),
                job.settings.job.class(),
                job.settings.keyspace_table,
                job.settings.run_id
            );
            let planned = Planned {
                summary,
                diff: diff.clone(),
                content: Some(content.into_bytes()),
                detail,
            };
            // A changed file shows its diff in check mode; either way the job would run.
            Ok(if diff.is_some() {
                Query::Change(planned)
            } else {
                Query::Run(planned)
            })
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, plan: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let run_id = plan.detail.get("run_id").and_then(Value::as_i64);
            let job = job(ctx, run_id)?;
            let content = plan.content.as_deref().unwrap_or_default();
            let (keyspace, table) = job.settings.tracking_table();
            // Before anything is written: CDM refuses a run id it has recorded already (exits 1
            // and writes nothing), and the gate would then read the old run's result.
            let tracking = Tracking::connect(&job.settings).await.map_err(|e| {
                failed(ctx.redactor.redact(&format!(
                    "cannot read CDM's run-tracking tables on target before the run: {e:#}"
                )))
            })?;
            let before = tracking.read(job.settings.run_id).await.map_err(|e| {
                failed(ctx.redactor.redact(&format!(
                    "cannot read CDM's run-tracking tables on target before the run: {e:#}"
                )))
            })?;
            if let Some(old) = before {
                return Err(failed(format!(
                    "CDM run id {} is already recorded for {table} in {keyspace}.cdm_run_info on \
                     target (run type {}, status {}): CDM refuses a run id it has seen, so this \
                     run would not happen; leave run_id unset or choose a new one",
                    job.settings.run_id,
                    old.run_type.as_deref().unwrap_or("NULL"),
                    old.status.as_deref().unwrap_or("NULL"),
                )));
            }
            if let Some((dir, _)) = job.dest.rsplit_once('/') {
                if !dir.is_empty() {
                    ctx.transport.mkdir(dir, 0o700).await?;
                }
            }
            ctx.transport
                .write_file(&job.dest, content, 0o600, &Ownership::default())
                .await?;
            // write_file keeps the mode of a replaced file on some transports: insist.
            ctx.transport
                .set_attrs(&job.dest, Some(0o600), &Ownership::default())
                .await?;

            let argv = spark_submit_argv(
                &job.spark,
                &job.settings,
                &ctx.transport.path_for_command(&job.dest),
            );
            let timeout = match setting(ctx, "timeout")? {
                Some(_) => Some(Duration::from_secs(number(ctx, "timeout", 0u64)?)),
                None => None,
            };
            let out = ctx
                .transport
                .run(CommandSpec {
                    argv: argv.clone(),
                    timeout,
                    ..Default::default()
                })
                .await?;
            // CDM's own words when it failed before it could record anything.
            let cdm_said = || {
                ctx.redactor
                    .redact(&error_excerpt(&out.stdout, &out.stderr))
            };

            let run = match tracking.read(job.settings.run_id).await {
                Ok(run) => run,
                Err(e) => {
                    return Err(failed(ctx.redactor.redact(&format!(
                        "spark-submit exited {}; cannot read CDM's run-tracking tables on \
                         target: {e:#}; spark-submit said: {}",
                        out.rc,
                        cdm_said()
                    ))))
                }
            };
            let mut verdict = match (&run, job.settings.previous_run_id) {
                (None, Some(prev_id)) if out.rc == 0 => {
                    let prev = tracking.read(prev_id).await.map_err(|e| {
                        failed(ctx.redactor.redact(&format!(
                            "cannot read previous CDM run {prev_id} on target: {e:#}"
                        )))
                    })?;
                    judge_resume(
                        prev.as_ref(),
                        job.settings.run_id,
                        prev_id,
                        job.settings.job,
                    )
                }
                _ => judge(
                    run.as_ref(),
                    job.settings.run_id,
                    job.settings.job,
                    &job.thresholds,
                ),
            };
            if !verdict.ok && (run.is_none() || out.rc != 0) {
                verdict.summary = format!(
                    "{}; spark-submit exited {}: {}",
                    verdict.summary,
                    out.rc,
                    cdm_said()
                );
            }
            let tail = |s: &str| -> Value {
                let lines: Vec<&str> = s.lines().collect();
                let start = lines.len().saturating_sub(20);
                Value::from(
                    lines[start..]
                        .iter()
                        .map(|l| ctx.redactor.redact(l))
                        .collect::<Vec<_>>(),
                )
            };
            let mut r = ModResult {
                changed: true,
                failed: !verdict.ok,
                msg: Some(ctx.redactor.redact(&if out.rc != 0 && verdict.ok {
                    format!(
                        "{} (spark-submit exited {}, but CDM recorded the run as complete)",
                        verdict.summary, out.rc
                    )
                } else {
                    verdict.summary.clone()
                })),
                diff: plan.diff.clone(),
                ..Default::default()
            };
            r.data
                .insert("run_id".into(), Value::from(job.settings.run_id));
            r.data.insert("rc".into(), Value::from(out.rc));
            r.data.insert(
                "cmd".into(),
                Value::String(ctx.redactor.redact(&shown(&argv))),
            );
            r.data
                .insert("properties".into(), Value::String(job.dest.clone()));
            r.data
                .insert("missing".into(), Value::from(verdict.missing));
            r.data
                .insert("mismatched".into(), Value::from(verdict.mismatched));
            if let Some(run) = &run {
                r.data.insert(
                    "status".into(),
                    Value::from(run.status.clone().unwrap_or_default()),
                );
                r.data.insert(
                    "counters".into(),
                    serde_json::to_value(&run.counters).unwrap_or_default(),
                );
                r.data.insert(
                    "ranges".into(),
                    serde_json::to_value(&run.ranges).unwrap_or_default(),
                );
            }
            r.data.insert("stdout_tail".into(), tail(&out.stdout));
            r.data.insert("stderr_tail".into(), tail(&out.stderr));
            Ok(r)
        }
        .boxed()
    }
}

/// CDM's run-tracking tables on target, read from the control machine with the same settings
/// CDM was given.
struct Tracking {
    session: scylla::client::session::Session,
    keyspace: String,
    table: String,
}

impl Tracking {
    async fn connect(s: &CdmSettings) -> anyhow::Result<Tracking> {
        let target = ClusterConfig {
            name: "target".into(),
            contact_points: s
                .target
                .host
                .split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            port: s.target.port,
            username: Some(s.target.username.clone()).filter(|u| !u.is_empty()),
            password: Some(s.target.password.clone()).filter(|p| !p.is_empty()),
            rate_limit: None,
        };
        let (keyspace, table) = s.tracking_table();
        Ok(Tracking {
            session: target.connect().await?,
            keyspace,
            table,
        })
    }

    /// The run, or `None` when it is not recorded (also when CDM never created its tables).
    async fn read(&self, run_id: i64) -> anyhow::Result<Option<cdm::CdmRun>> {
        if !cdm::tracking_tables_exist(&self.session, &self.keyspace).await? {
            return Ok(None);
        }
        cdm::read_run(&self.session, &self.keyspace, &self.table, run_id).await
    }
}

/// What spark-submit printed that says why it failed: its error and exception lines (the last
/// few), else its last lines. Spark logs at INFO to stderr, so the tail alone is mostly noise.
fn error_excerpt(stdout: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            l.contains(" ERROR ")
                || l.starts_with("Exception")
                || l.starts_with("Caused by")
                || l.contains("Exception:")
                || l.starts_with("Error")
        })
        .collect();
    let pick = if errors.is_empty() { &lines } else { &errors };
    let start = pick.len().saturating_sub(6);
    if pick.is_empty() {
        "(no output)".into()
    } else {
        pick[start..].join(" | ")
    }
}
