//! Cassandra Data Migrator (CDM) at scale: the settings file, the `spark-submit` command line,
//! and the gate that judges a run by CDM's own run-tracking tables on target.
//!
//! Why the tables and not the exit code: CDM's DiffData exits 0 whatever it found, and a
//! Spark driver can exit 0 after failing partitions. With `spark.cdm.trackRun` on and a run id
//! chosen by us (`spark.cdm.trackRun.runId`), CDM records the run in `<ks>.cdm_run_info`
//! (status, and the final counters as text) and each token range in `<ks>.cdm_run_details`.
//! Names, schema and status words follow CDM's `TargetUpsertRunDetailsStatement`, `TrackRun`
//! and `JobCounter`:
//!
//! ```text
//! cdm_run_info    (table_name text, run_id bigint, run_type text, prev_run_id bigint,
//!                  start_time timestamp, end_time timestamp, run_info text, status text,
//!                  PRIMARY KEY (table_name, run_id))
//! cdm_run_details (table_name text, run_id bigint, start_time timestamp, token_min bigint,
//!                  token_max bigint, status text, run_info text,
//!                  PRIMARY KEY ((table_name, run_id), token_min))
//! statuses: NOT_STARTED STARTED PASS FAIL DIFF DIFF_CORRECTED ENDED
//! run_info: "Read: 10; Valid: 8; Mismatch: 1; Corrected Mismatch: 0; Missing: 1; ..."
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use scylla::client::session::Session;
use serde::Serialize;

/// The settings template shipped with zdm-run (used when a task names no `src`).
pub const DEFAULT_TEMPLATE: &str = include_str!("../../templates/cdm.properties.j2");

/// Which CDM job to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CdmJob {
    Migrate,
    DiffData,
}

impl CdmJob {
    pub fn parse(s: &str) -> Result<CdmJob, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "migrate" => Ok(CdmJob::Migrate),
            "diffdata" | "diff" | "validate" => Ok(CdmJob::DiffData),
            other => Err(format!(
                "job '{other}' is not a CDM job: expected migrate or diffdata"
            )),
        }
    }

    /// The Spark main class.
    pub fn class(self) -> &'static str {
        match self {
            CdmJob::Migrate => "com.datastax.cdm.job.Migrate",
            CdmJob::DiffData => "com.datastax.cdm.job.DiffData",
        }
    }

    /// `run_type` CDM writes to `cdm_run_info` (its `JobType`).
    pub fn run_type(self) -> &'static str {
        match self {
            CdmJob::Migrate => "MIGRATE",
            CdmJob::DiffData => "VALIDATE",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CdmJob::Migrate => "migrate",
            CdmJob::DiffData => "diffdata",
        }
    }
}

/// Connection settings of one cluster as CDM takes them.
#[derive(Clone, Serialize)]
pub struct CdmCluster {
    /// Comma-separated contact points.
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for CdmCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdmCluster")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"********")
            .finish()
    }
}

/// Everything a CDM run needs; rendered into the properties file.
#[derive(Clone, Debug)]
pub struct CdmSettings {
    pub job: CdmJob,
    pub origin: CdmCluster,
    pub target: CdmCluster,
    /// `keyspace.table` on origin.
    pub keyspace_table: String,
    /// `keyspace.table` on target (CDM's default: the origin's).
    pub target_keyspace_table: String,
    pub autocorrect_missing: bool,
    pub autocorrect_mismatch: bool,
    pub run_id: i64,
    pub previous_run_id: Option<i64>,
    pub num_parts: u32,
    pub batch_size: u32,
    pub ratelimit_origin: u32,
    pub ratelimit_target: u32,
}

/// Escapes a value for a Java `.properties` file: backslashes and line breaks would otherwise
/// change the value (or start a new property), leading blanks would be dropped.
pub fn escape_property(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' ' | '\t' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn cluster_json(c: &CdmCluster) -> serde_json::Value {
    serde_json::json!({
        "host": escape_property(&c.host),
        "port": c.port,
        "username": escape_property(&c.username),
        "password": escape_property(&c.password),
    })
}

impl CdmSettings {
    /// Checks what CDM would only find out after Spark started.
    pub fn check(&self) -> Result<(), String> {
        for (what, kt) in [
            ("keyspace_table", &self.keyspace_table),
            ("target_keyspace_table", &self.target_keyspace_table),
        ] {
            split_keyspace_table(kt).map_err(|e| format!("{what}: {e}"))?;
        }
        for (name, c) in [("origin", &self.origin), ("target", &self.target)] {
            if c.host.trim().is_empty() {
                return Err(format!(
                    "no {name} contact points: set {name}_contact_points"
                ));
            }
        }
        if self.run_id <= 0 {
            return Err(format!(
                "run_id must be a positive number, got {}",
                self.run_id
            ));
        }
        Ok(())
    }

    /// Variables the properties template sees (values already escaped for `.properties`).
    pub fn template_vars(&self) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({
            "job": self.job.name(),
            "job_class": self.job.class(),
            "origin": cluster_json(&self.origin),
            "target": cluster_json(&self.target),
            "keyspace_table": self.keyspace_table,
            "target_keyspace_table": self.target_keyspace_table,
            "autocorrect_missing": self.autocorrect_missing.to_string(),
            "autocorrect_mismatch": self.autocorrect_mismatch.to_string(),
            "run_id": self.run_id,
            "previous_run_id": self.previous_run_id,
            "num_parts": self.num_parts,
            "batch_size": self.batch_size,
            "ratelimit_origin": self.ratelimit_origin,
            "ratelimit_target": self.ratelimit_target,
        });
        match v {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        }
    }

    /// The keyspace and table CDM keys its run-tracking rows by (target's).
    pub fn tracking_table(&self) -> (String, String) {
        split_keyspace_table(&self.target_keyspace_table)
            .map(|(k, t)| (k.to_string(), t.to_string()))
            .unwrap_or_default()
    }
}

/// `keyspace.table` -> (keyspace, table); both must be plain CQL identifiers.
pub fn split_keyspace_table(kt: &str) -> Result<(&str, &str), String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    match kt.split_once('.') {
        Some((k, t)) if ok(k) && ok(t) => Ok((k, t)),
        _ => Err(format!(
            "'{kt}' is not KEYSPACE.TABLE (letters, digits and _ only)"
        )),
    }
}

/// How `spark-submit` is invoked on the host.
#[derive(Clone, Debug)]
pub struct SparkSubmit {
    /// The `spark-submit` executable.
    pub program: String,
    /// CDM's jar on the host.
    pub jar: String,
    /// `--master` (CDM's docs: `local[*]` on one machine, `spark://...` on a cluster).
    pub master: String,
    pub driver_memory: String,
    pub executor_memory: String,
    /// More arguments placed before `--class` (`--conf k=v`, `--jars ...`).
    pub extra_args: Vec<String>,
}

/// The argv that runs `job` from the properties file at `properties` (as the host names it).
/// The origin table is also passed with `--conf`, the way CDM's documentation runs it, so
/// Spark's own logs name the table.
pub fn spark_submit_argv(s: &SparkSubmit, settings: &CdmSettings, properties: &str) -> Vec<String> {
    let mut argv = vec![
        s.program.clone(),
        "--properties-file".into(),
        properties.into(),
        "--conf".into(),
        format!(
            "spark.cdm.schema.origin.keyspaceTable={}",
            settings.keyspace_table
        ),
        "--master".into(),
        s.master.clone(),
        "--driver-memory".into(),
        s.driver_memory.clone(),
        "--executor-memory".into(),
        s.executor_memory.clone(),
    ];
    argv.extend(s.extra_args.iter().cloned());
    argv.extend(["--class".into(), settings.job.class().into(), s.jar.clone()]);
    argv
}

/// What CDM recorded about one run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CdmRun {
    pub run_id: i64,
    pub run_type: Option<String>,
    pub status: Option<String>,
    /// Final counters from `run_info` ("Read", "Missing", "Corrected Missing", ...).
    pub counters: BTreeMap<String, u64>,
    /// Token ranges per status from `cdm_run_details`.
    pub ranges: BTreeMap<String, u64>,
}

impl CdmRun {
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// Parses CDM's counter text: `Read: 10; Valid: 9; Corrected Missing: 0`.
pub fn parse_run_info(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once(':')
            .ok_or_else(|| format!("run_info part '{part}' is not 'Name: number'"))?;
        let n = value
            .trim()
            .parse()
            .map_err(|_| format!("run_info part '{part}': '{}' is not a count", value.trim()))?;
        out.insert(name.trim().to_string(), n);
    }
    Ok(out)
}

/// The keyspace as CDM names it in its tracking statements: quoted, so its case is kept
/// (CDM 5.6.3 and later write `"Ks".cdm_run_info`; unquoted, `Ks` would mean `ks`).
pub fn quoted_keyspace(keyspace: &str) -> String {
    format!("\"{}\"", keyspace.replace('"', "\"\""))
}

/// Whether CDM has created its tracking tables in `keyspace` on target (it creates them when
/// a run starts; a run that failed before, e.g. origin unreachable, leaves none).
pub async fn tracking_tables_exist(session: &Session, keyspace: &str) -> anyhow::Result<bool> {
    let rows = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? \
             AND table_name = 'cdm_run_info'",
            (keyspace,),
        )
        .await
        .context("reading system_schema.tables on target")?
        .into_rows_result()?;
    Ok(rows.rows_num() > 0)
}

/// Reads run `run_id` of `table` from the tracking tables in `keyspace` on target.
pub async fn read_run(
    session: &Session,
    keyspace: &str,
    table: &str,
    run_id: i64,
) -> anyhow::Result<Option<CdmRun>> {
    let ks = quoted_keyspace(keyspace);
    let info = session
        .query_unpaged(
            format!(
                "SELECT run_type, status, run_info FROM {ks}.cdm_run_info \
                 WHERE table_name = ? AND run_id = ?"
            ),
            (table, run_id),
        )
        .await
        .with_context(|| format!("reading {keyspace}.cdm_run_info on target"))?
        .into_rows_result()?;
    let Some(row) = info
        .rows::<(Option<String>, Option<String>, Option<String>)>()?
        .next()
        .transpose()?
    else {
        return Ok(None);
    };
    let (run_type, status, run_info) = row;
    let counters = match &run_info {
        Some(t) => parse_run_info(t)
            .map_err(|e| anyhow::anyhow!("{keyspace}.cdm_run_info run {run_id}: {e}"))?,
        None => BTreeMap::new(),
    };
    let details = session
        .query_unpaged(
            format!(
                "SELECT status FROM {ks}.cdm_run_details \
                 WHERE table_name = ? AND run_id = ?"
            ),
            (table, run_id),
        )
        .await
        .with_context(|| format!("reading {keyspace}.cdm_run_details on target"))?
        .into_rows_result()?;
    let mut ranges = BTreeMap::new();
    for r in details.rows::<(Option<String>,)>()? {
        let (s,) = r?;
        *ranges
            .entry(s.unwrap_or_else(|| "NULL".into()))
            .or_insert(0) += 1;
    }
    Ok(Some(CdmRun {
        run_id,
        run_type,
        status,
        counters,
        ranges,
    }))
}

/// Limits a DiffData run must stay within; the defaults allow nothing.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct CdmThresholds {
    pub missing: u64,
    pub mismatched: u64,
}

/// The verdict on a run, with a one-line summary naming the run id and the counts.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CdmVerdict {
    pub ok: bool,
    pub summary: String,
    /// Missing rows left after autocorrection (DiffData).
    pub missing: u64,
    /// Mismatched rows left after autocorrection (DiffData).
    pub mismatched: u64,
}

/// Judges a recorded run: it must have ENDED with no failed or unfinished range and no
/// errors, and for DiffData the rows still missing or mismatched after autocorrection must
/// be within the thresholds. `None` (no row for the run id) fails: CDM never started it.
pub fn judge(run: Option<&CdmRun>, run_id: i64, job: CdmJob, t: &CdmThresholds) -> CdmVerdict {
    let Some(run) = run else {
        return CdmVerdict {
            ok: false,
            summary: format!(
                "CDM run {run_id} is not recorded in cdm_run_info on target: the job never \
                 started (see spark-submit's output)"
            ),
            missing: 0,
            mismatched: 0,
        };
    };
    let mut problems = Vec::new();
    let status = run.status.as_deref().unwrap_or("NULL");
    if status != "ENDED" {
        problems.push(format!("status {status}, not ENDED"));
    }
    if let Some(rt) = &run.run_type {
        if rt != job.run_type() {
            problems.push(format!("run type {rt}, expected {}", job.run_type()));
        }
    }
    let unfinished: u64 = run
        .ranges
        .iter()
        .filter(|(s, _)| !matches!(s.as_str(), "PASS" | "DIFF" | "DIFF_CORRECTED"))
        .map(|(_, n)| n)
        .sum();
    if unfinished > 0 {
        let list: Vec<String> = run
            .ranges
            .iter()
            .filter(|(s, _)| !matches!(s.as_str(), "PASS" | "DIFF" | "DIFF_CORRECTED"))
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        problems.push(format!("token ranges not done: {}", list.join(", ")));
    }
    for c in ["Error", "Partitions Failed"] {
        if run.counter(c) > 0 {
            problems.push(format!("{c}: {}", run.counter(c)));
        }
    }
    // CDM's "Corrected" counters count the writes it sent, not rows that now match: it writes
    // with origin's writetime, so a row changed or deleted on target later stays different.
    // Only a DiffData run that finds the differences gone proves them gone.
    let missing = run.counter("Missing");
    let mismatched = run.counter("Mismatch");
    let corrected = run.counter("Corrected Missing") + run.counter("Corrected Mismatch");
    if job == CdmJob::DiffData {
        if missing > t.missing {
            problems.push(format!("{missing} missing (allowed {})", t.missing));
        }
        if mismatched > t.mismatched {
            problems.push(format!(
                "{mismatched} mismatched (allowed {})",
                t.mismatched
            ));
        }
        if corrected > 0 && (missing > t.missing || mismatched > t.mismatched) {
            problems.push(format!(
                "CDM wrote {corrected} corrections, which do not prove the rows now match \
                 (its writes carry origin's writetime): run DiffData again with a new run id \
                 to confirm"
            ));
        }
    }
    let mut summary = format!("CDM {} run {run_id}: status {status}", job.name());
    let counts: Vec<String> = run
        .counters
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !counts.is_empty() {
        let _ = write!(summary, "; {}", counts.join(" "));
    }
    if !problems.is_empty() {
        let _ = write!(summary, "; FAILED: {}", problems.join("; "));
    }
    CdmVerdict {
        ok: problems.is_empty(),
        summary,
        missing,
        mismatched,
    }
}

/// Token-range statuses CDM picks up again when a run resumes a previous one
/// (`TargetUpsertRunDetailsStatement.getPendingPartitions`).
pub const PENDING_STATUSES: [&str; 4] = ["NOT_STARTED", "STARTED", "FAIL", "DIFF"];

/// Judges a run that resumed `prev_id` and left no row of its own: CDM writes nothing and exits
/// 0 when the previous run has no pending token range. That is a pass only when the previous
/// run is recorded with every range done (and, for DiffData, every range PASS: a corrected
/// range was written to, not shown to match).
pub fn judge_resume(prev: Option<&CdmRun>, run_id: i64, prev_id: i64, job: CdmJob) -> CdmVerdict {
    let verdict = |ok: bool, summary: String| CdmVerdict {
        ok,
        summary,
        missing: 0,
        mismatched: 0,
    };
    let Some(prev) = prev else {
        return verdict(
            false,
            format!(
                "CDM run {run_id} (resuming run {prev_id}) is not recorded in cdm_run_info on \
                 target, nor is run {prev_id}: the job never started (see spark-submit's output)"
            ),
        );
    };
    let total: u64 = prev.ranges.values().sum();
    let pending: u64 = prev
        .ranges
        .iter()
        .filter(|(s, _)| PENDING_STATUSES.contains(&s.as_str()))
        .map(|(_, n)| n)
        .sum();
    let ranges: Vec<String> = prev
        .ranges
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let head = format!(
        "CDM {} run {run_id} resumed run {prev_id}, which has {} token ranges ({})",
        job.name(),
        total,
        ranges.join(", ")
    );
    if prev
        .run_type
        .as_deref()
        .is_some_and(|rt| rt != job.run_type())
    {
        return verdict(
            false,
            format!(
                "{head}; FAILED: run {prev_id} is a {} run, not {}",
                prev.run_type.as_deref().unwrap_or_default(),
                job.run_type()
            ),
        );
    }
    if total == 0 || pending > 0 {
        return verdict(
            false,
            format!(
                "{head}; FAILED: CDM recorded no run {run_id} although {} ranges of run \
                 {prev_id} are pending (see spark-submit's output)",
                pending
            ),
        );
    }
    let unproven = prev.ranges.get("DIFF_CORRECTED").copied().unwrap_or(0);
    if job == CdmJob::DiffData && unproven > 0 {
        return verdict(
            false,
            format!(
                "{head}; FAILED: nothing left to resume, but {unproven} ranges were only \
                 corrected, not shown to match: run DiffData with a new run id and no \
                 previous_run_id to confirm"
            ),
        );
    }
    verdict(
        true,
        format!("{head}: nothing was pending, so CDM had nothing to do (no new run recorded)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(job: CdmJob) -> CdmSettings {
        CdmSettings {
            job,
            origin: CdmCluster {
                host: "10.0.0.1,10.0.0.2".into(),
                port: 9042,
                username: "ou".into(),
                password: "o\\pw".into(),
            },
            target: CdmCluster {
                host: "10.0.0.3".into(),
                port: 9043,
                username: "tu".into(),
                password: "tpw".into(),
            },
            keyspace_table: "ks.t".into(),
            target_keyspace_table: "ks2.t".into(),
            autocorrect_missing: true,
            autocorrect_mismatch: false,
            run_id: 42,
            previous_run_id: None,
            num_parts: 100,
            batch_size: 5,
            ratelimit_origin: 1000,
            ratelimit_target: 2000,
        }
    }

    fn props(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.split_once(char::is_whitespace).expect("key value");
                (k.to_string(), v.trim().to_string())
            })
            .collect()
    }

    fn render(s: &CdmSettings) -> String {
        crate::template::Templar::new()
            .render_str("cdm.properties.j2", DEFAULT_TEMPLATE, &s.template_vars())
            .unwrap()
    }

    #[test]
    fn diffdata_properties_use_cdm_names() {
        let p = props(&render(&settings(CdmJob::DiffData)));
        let want = [
            ("spark.cdm.connect.origin.host", "10.0.0.1,10.0.0.2"),
            ("spark.cdm.connect.origin.port", "9042"),
            ("spark.cdm.connect.origin.username", "ou"),
            ("spark.cdm.connect.origin.password", "o\\\\pw"),
            ("spark.cdm.connect.target.host", "10.0.0.3"),
            ("spark.cdm.connect.target.port", "9043"),
            ("spark.cdm.connect.target.username", "tu"),
            ("spark.cdm.connect.target.password", "tpw"),
            ("spark.cdm.schema.origin.keyspaceTable", "ks.t"),
            ("spark.cdm.schema.target.keyspaceTable", "ks2.t"),
            ("spark.cdm.autocorrect.missing", "true"),
            ("spark.cdm.autocorrect.mismatch", "false"),
            ("spark.cdm.trackRun", "true"),
            ("spark.cdm.trackRun.runId", "42"),
            ("spark.cdm.perfops.numParts", "100"),
            ("spark.cdm.perfops.batchSize", "5"),
            ("spark.cdm.perfops.ratelimit.origin", "1000"),
            ("spark.cdm.perfops.ratelimit.target", "2000"),
        ];
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(p, want);
    }

    #[test]
    fn migrate_properties_leave_out_autocorrect_and_resume_a_previous_run() {
        let mut s = settings(CdmJob::Migrate);
        s.previous_run_id = Some(7);
        let p = props(&render(&s));
        assert!(!p.keys().any(|k| k.starts_with("spark.cdm.autocorrect")));
        assert_eq!(p["spark.cdm.trackRun.previousRunId"], "7");
    }

    #[test]
    fn spark_submit_command_line() {
        let s = settings(CdmJob::DiffData);
        let argv = spark_submit_argv(
            &SparkSubmit {
                program: "/opt/spark/bin/spark-submit".into(),
                jar: "/opt/cdm/cdm.jar".into(),
                master: "local[*]".into(),
                driver_memory: "25G".into(),
                executor_memory: "25G".into(),
                extra_args: vec!["--conf".into(), "spark.x=y".into()],
            },
            &s,
            "/opt/cdm/run.properties",
        );
        assert_eq!(
            argv.join(" "),
            "/opt/spark/bin/spark-submit --properties-file /opt/cdm/run.properties \
             --conf spark.cdm.schema.origin.keyspaceTable=ks.t --master local[*] \
             --driver-memory 25G --executor-memory 25G --conf spark.x=y \
             --class com.datastax.cdm.job.DiffData /opt/cdm/cdm.jar"
        );
        assert!(
            !argv.iter().any(|a| a.contains("tpw")),
            "no password on argv"
        );
    }

    #[test]
    fn settings_are_checked() {
        let mut s = settings(CdmJob::Migrate);
        assert!(s.check().is_ok());
        s.keyspace_table = "ks".into();
        assert!(s.check().unwrap_err().contains("keyspace_table"));
        let mut s = settings(CdmJob::Migrate);
        s.target.host = " ".into();
        assert!(s.check().unwrap_err().contains("target_contact_points"));
        assert!(!format!("{s:?}").contains("tpw"));
        assert_eq!(escape_property(" a\nb"), "\\ a\\nb");
    }

    #[test]
    fn run_info_parses_and_rejects_garbage() {
        let m = parse_run_info("Read: 10; Valid: 8; Corrected Missing: 1").unwrap();
        assert_eq!(m["Read"], 10);
        assert_eq!(m["Corrected Missing"], 1);
        assert!(parse_run_info("Read: ten").is_err());
        assert!(parse_run_info("").unwrap().is_empty());
    }

    #[test]
    fn verdicts() {
        let t = CdmThresholds::default();
        assert!(!judge(None, 5, CdmJob::Migrate, &t).ok);
        let mut run = CdmRun {
            run_id: 5,
            run_type: Some("VALIDATE".into()),
            status: Some("ENDED".into()),
            counters: parse_run_info(
                "Read: 10; Valid: 8; Mismatch: 1; Corrected Mismatch: 0; Missing: 1; \
                 Corrected Missing: 1; Skipped: 0; Error: 0; Partitions Passed: 4; \
                 Partitions Failed: 0",
            )
            .unwrap(),
            ranges: [("PASS".to_string(), 3), ("DIFF".to_string(), 1)].into(),
        };
        let v = judge(Some(&run), 5, CdmJob::DiffData, &t);
        assert!(!v.ok);
        // The corrected missing row still counts: a correction is a write, not a match.
        assert_eq!((v.missing, v.mismatched), (1, 1));
        assert!(
            v.summary.contains("run 5")
                && v.summary.contains("1 missing")
                && v.summary.contains("1 mismatched")
                && v.summary.contains("CDM wrote 1 corrections"),
            "{}",
            v.summary
        );
        let v = judge(
            Some(&run),
            5,
            CdmJob::DiffData,
            &CdmThresholds {
                missing: 0,
                mismatched: 1,
            },
        );
        assert!(!v.ok, "{}", v.summary);
        let v = judge(
            Some(&run),
            5,
            CdmJob::DiffData,
            &CdmThresholds {
                missing: 1,
                mismatched: 1,
            },
        );
        assert!(v.ok, "{}", v.summary);
        run.status = Some("STARTED".into());
        run.ranges.insert("FAIL".into(), 2);
        let v = judge(
            Some(&run),
            5,
            CdmJob::DiffData,
            &CdmThresholds {
                missing: 1,
                mismatched: 1,
            },
        );
        assert!(!v.ok);
        assert!(
            v.summary.contains("status STARTED") && v.summary.contains("2 FAIL"),
            "{}",
            v.summary
        );
    }

    fn finished(run_type: &str, ranges: &[(&str, u64)]) -> CdmRun {
        CdmRun {
            run_id: 7,
            run_type: Some(run_type.into()),
            status: Some("ENDED".into()),
            counters: BTreeMap::new(),
            ranges: ranges.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn a_resume_with_nothing_pending_is_judged_by_the_previous_run() {
        let done = finished("MIGRATE", &[("PASS", 8)]);
        let v = judge_resume(Some(&done), 8, 7, CdmJob::Migrate);
        assert!(v.ok, "{}", v.summary);
        assert!(
            v.summary.contains("resumed run 7") && v.summary.contains("nothing was pending"),
            "{}",
            v.summary
        );
        let pending = finished("MIGRATE", &[("PASS", 6), ("FAIL", 2)]);
        let v = judge_resume(Some(&pending), 8, 7, CdmJob::Migrate);
        assert!(
            !v.ok && v.summary.contains("2 ranges of run 7 are pending"),
            "{}",
            v.summary
        );
        assert!(!judge_resume(None, 8, 7, CdmJob::Migrate).ok);
        let other = finished("VALIDATE", &[("PASS", 8)]);
        assert!(!judge_resume(Some(&other), 8, 7, CdmJob::Migrate).ok);
        let corrected = finished("VALIDATE", &[("PASS", 6), ("DIFF_CORRECTED", 2)]);
        let v = judge_resume(Some(&corrected), 8, 7, CdmJob::DiffData);
        assert!(
            !v.ok && v.summary.contains("only corrected"),
            "{}",
            v.summary
        );
        assert!(judge_resume(Some(&other), 8, 7, CdmJob::DiffData).ok);
    }

    #[test]
    fn tracking_keyspace_is_quoted_like_cdm_quotes_it() {
        assert_eq!(quoted_keyspace("Shop"), "\"Shop\"");
        assert_eq!(quoted_keyspace("a\"b"), "\"a\"\"b\"");
    }
}
