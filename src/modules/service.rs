//! `service`: start, stop, restart, reload or report the proxy (or any long-running program).
//!
//! With systemd on the host (`/run/systemd/system` exists, as `sd_booted` checks) it drives
//! `systemctl`; the unit comes from `templates/zdm-proxy.service.j2`. Elsewhere it uses a
//! built-in supervisor (`scripts/remote/zdm-supervisor.sh`, sent with each call so nothing
//! needs installing): a pidfile, an appended log file, `restart` = SIGTERM, wait for the drain
//! up to `drain_timeout`, then start. A start is confirmed only when the process is alive (and,
//! with `wait_for_port`, accepts TCP); a process that exits at once fails the task with the
//! last lines of its log.
//!
//! `state: reloaded` with `metrics_port` is the zdm-proxy's live reload: the proxy re-reads its
//! settings file on `POST /reload` (sent from the host itself to `metrics_host`, default the
//! host's address like `wait_for_host`) and answers with the settings now in force, or 400 and
//! why nothing changed; the task fails with that reason. Then `GET /config` must report the
//! values given in `expect` (e.g. `{primary_cluster: TARGET, read_mode: PRIMARY_ONLY}`), so a
//! task only succeeds once the proxy really serves the new settings. Only the settings of
//! `zdm_config_change::RELOADABLE` (`primary_cluster`, `read_mode`, `log_level`, the request
//! timeouts, `heartbeat_interval_ms`, ...) reload; a file that changes any other setting is refused by the proxy: use `state: restarted` for
//! those. Without `metrics_port`, `reloaded` only sends SIGHUP (systemd: `reload-or-restart`)
//! and cannot confirm the outcome.

use std::time::Duration;

use futures::FutureExt;
use serde_json::{Map, Value};

use super::spec::{Kind, ModuleSpec};
use super::zdm::proxy_binary::install_root;
use super::{
    arg_f64, arg_str, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query,
};
use crate::transport::ssh::shell_quote;
use crate::transport::CommandSpec;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "service",
    free_form: false,
    any_args: false,
    args: &[
        ("name", Kind::Scalar),
        (
            "state",
            Kind::OneOf(&["started", "stopped", "restarted", "reloaded", "status"]),
        ),
        ("use", Kind::OneOf(&["auto", "systemd", "supervisor"])),
        ("command", Kind::Scalar),
        ("install_root", Kind::Scalar),
        ("pidfile", Kind::Scalar),
        ("log_file", Kind::Scalar),
        ("chdir", Kind::Scalar),
        ("environment", Kind::Mapping),
        ("drain_timeout", Kind::Number),
        ("start_timeout", Kind::Number),
        ("wait_for_port", Kind::Int),
        ("wait_for_host", Kind::Scalar),
        ("metrics_port", Kind::Int),
        ("metrics_host", Kind::Scalar),
        ("expect", Kind::Mapping),
    ],
    one_of_required: &[],
    required: &["state"],
};

const SUPERVISOR: &str = include_str!("../../scripts/remote/zdm-supervisor.sh");
const DEFAULT_DRAIN_SECS: f64 = 60.0;
const DEFAULT_START_SECS: f64 = 30.0;
/// Without a port to wait for, a process must stay up this long to count as started.
const SETTLE_SECS: u32 = 1;

pub struct Service;

/// The service's settings, read once from the task.
struct Settings {
    name: String,
    state: String,
    manager: Manager,
    command: String,
    pidfile: String,
    log_file: String,
    chdir: String,
    env: Vec<(String, String)>,
    drain: f64,
    start: f64,
    wait_port: Option<u16>,
    wait_host: String,
    /// The proxy's admin port for a verified reload.
    metrics_port: Option<u16>,
    metrics_host: String,
    /// Settings `/config` must report after a reload.
    expect: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Manager {
    Auto,
    Systemd,
    Supervisor,
}

fn settings(ctx: &ModuleCtx<'_>) -> Result<Settings, ModuleError> {
    let root = install_root(ctx);
    let name = arg_str(ctx.args, "name").unwrap_or_else(|| "zdm-proxy".into());
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(ModuleError::Failed(format!(
            "service name '{name}' is not a plain name"
        )));
    }
    let manager = match arg_str(ctx.args, "use").as_deref() {
        None | Some("auto") => Manager::Auto,
        Some("systemd") => Manager::Systemd,
        Some("supervisor") => Manager::Supervisor,
        Some(other) => {
            return Err(ModuleError::Failed(format!(
                "use: unknown manager '{other}'"
            )))
        }
    };
    let env = match ctx.args.get("environment") {
        None | Some(Value::Null) => vec![],
        Some(Value::Object(m)) => {
            let mut out = vec![];
            for (k, v) in m {
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(ModuleError::Failed(format!(
                        "environment: '{k}' is not a variable name"
                    )));
                }
                out.push((k.clone(), crate::vars::display(v)));
            }
            out
        }
        Some(other) => {
            return Err(ModuleError::Failed(format!(
                "environment must be a mapping, got {other}"
            )))
        }
    };
    let wait_port = match arg_str(ctx.args, "wait_for_port") {
        None => None,
        Some(p) => Some(
            p.trim()
                .parse()
                .map_err(|_| ModuleError::Failed(format!("wait_for_port: '{p}' is not a port")))?,
        ),
    };
    let wait_host = match arg_str(ctx.args, "wait_for_host") {
        Some(h) => h,
        None => {
            let h = ctx
                .vars
                .get("ansible_host")
                .map(crate::vars::display)
                .unwrap_or_else(|| "127.0.0.1".into());
            crate::template::resolve_address(&h).unwrap_or(h)
        }
    };
    let metrics_port = match arg_str(ctx.args, "metrics_port") {
        None => None,
        Some(p) => Some(
            p.trim()
                .parse()
                .map_err(|_| ModuleError::Failed(format!("metrics_port: '{p}' is not a port")))?,
        ),
    };
    let expect = match ctx.args.get("expect") {
        None | Some(Value::Null) => vec![],
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), crate::vars::display(v)))
            .collect(),
        Some(other) => {
            return Err(ModuleError::Failed(format!(
                "expect must be a mapping of setting to value, got {other}"
            )))
        }
    };
    if !expect.is_empty() && metrics_port.is_none() {
        return Err(ModuleError::Failed(
            "expect needs metrics_port: the settings in force are read from the proxy's /config"
                .into(),
        ));
    }
    let metrics_host = arg_str(ctx.args, "metrics_host").unwrap_or_else(|| wait_host.clone());
    // Scripts see the host's paths as commands do (a local host with a root maps them).
    let host_path = |p: String| ctx.transport.path_for_command(&p);
    let root = host_path(root);
    Ok(Settings {
        state: arg_str(ctx.args, "state").unwrap_or_default(),
        manager,
        command: arg_str(ctx.args, "command")
            .unwrap_or_else(|| format!("{root}/current/zdm-proxy --config {root}/zdm-proxy.yml")),
        pidfile: arg_str(ctx.args, "pidfile")
            .map(host_path)
            .unwrap_or_else(|| format!("{root}/run/{name}.pid")),
        log_file: arg_str(ctx.args, "log_file")
            .map(host_path)
            .unwrap_or_else(|| format!("{root}/logs/{name}.log")),
        chdir: arg_str(ctx.args, "chdir")
            .map(host_path)
            .unwrap_or_else(|| root.clone()),
        env,
        drain: arg_f64(ctx.args, "drain_timeout")?.unwrap_or(DEFAULT_DRAIN_SECS),
        start: arg_f64(ctx.args, "start_timeout")?.unwrap_or(DEFAULT_START_SECS),
        wait_port,
        wait_host,
        metrics_port,
        metrics_host,
        expect,
        name,
    })
}

/// What one supervisor or systemctl call reported.
#[derive(Debug, Default)]
struct Report {
    running: bool,
    pid: Option<u64>,
    changed: bool,
    note: String,
    /// Everything after the report line (the log tail on failure).
    rest: String,
}

fn parse_report(stdout: &str) -> Option<Report> {
    let mut lines = stdout.lines();
    let first = lines.find(|l| l.starts_with("state="))?;
    let mut r = Report::default();
    let note_at = first.find(" note=")?;
    for kv in first[..note_at].split_whitespace() {
        match kv.split_once('=')? {
            ("state", s) => r.running = s == "running",
            ("pid", p) => r.pid = p.parse().ok(),
            ("changed", c) => r.changed = c == "yes",
            _ => {}
        }
    }
    r.note = first[note_at + 6..].trim().to_string();
    r.rest = lines.collect::<Vec<_>>().join("\n");
    Some(r)
}

impl Settings {
    /// The supervisor script with its settings prepended.
    fn supervisor_script(&self, action: &str) -> String {
        let env_lines: String = self
            .env
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
            .collect();
        let secs = |f: f64| (f.ceil().max(1.0)) as u64;
        let vars = [
            ("ACTION", action.to_string()),
            ("NAME", self.name.clone()),
            ("COMMAND", self.command.clone()),
            ("PIDFILE", self.pidfile.clone()),
            ("LOGFILE", self.log_file.clone()),
            ("WORKDIR", self.chdir.clone()),
            ("DRAIN", secs(self.drain).to_string()),
            ("START_TIMEOUT", secs(self.start).to_string()),
            ("SETTLE", SETTLE_SECS.to_string()),
            ("WAIT_HOST", self.wait_host.clone()),
            (
                "WAIT_PORT",
                self.wait_port.map(|p| p.to_string()).unwrap_or_default(),
            ),
            ("ENV_LINES", env_lines),
        ];
        let mut s: String = vars
            .iter()
            .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
            .collect();
        s.push_str(SUPERVISOR);
        s
    }

    /// The systemctl call for an action, reporting in the supervisor's format.
    fn systemd_script(&self, action: &str) -> String {
        let n = shell_quote(&self.name);
        let report = format!(
            "if systemctl is-active --quiet {n}; then s=running; else s=stopped; fi\n\
             p=$(systemctl show -p MainPID --value {n} 2>/dev/null); [ \"$p\" = 0 ] && p=\n"
        );
        match action {
            "status" => format!("{report}echo \"state=$s pid=$p changed=no note=\"\n"),
            "start" | "stop" | "restart" | "reload" => {
                let verb = if action == "reload" {
                    "reload-or-restart"
                } else {
                    action
                };
                format!(
                    "systemctl daemon-reload\nif ! systemctl {verb} {n}; then\n  echo \"state=stopped pid= changed=yes note=systemctl {verb} {} failed\"\n  journalctl -u {n} -n 20 --no-pager 2>/dev/null\n  exit 3\nfi\n{report}echo \"state=$s pid=$p changed=yes note={action}\"\n",
                    self.name
                )
            }
            _ => unreachable!("actions are fixed"),
        }
    }
}

async fn uses_systemd(ctx: &ModuleCtx<'_>, s: &Settings) -> Result<bool, ModuleError> {
    Ok(match s.manager {
        Manager::Systemd => true,
        Manager::Supervisor => false,
        Manager::Auto => ctx.transport.stat("/run/systemd/system").await?.is_some(),
    })
}

async fn call(
    ctx: &ModuleCtx<'_>,
    s: &Settings,
    action: &str,
) -> Result<(Report, i32), ModuleError> {
    let systemd = uses_systemd(ctx, s).await?;
    let script = if systemd {
        s.systemd_script(action)
    } else {
        s.supervisor_script(action)
    };
    let limit = Duration::from_secs_f64(s.drain + s.start + 30.0);
    let out = ctx
        .transport
        .run(CommandSpec {
            shell: Some(script),
            timeout: Some(limit),
            ..Default::default()
        })
        .await?;
    let report = parse_report(&out.stdout).ok_or_else(|| {
        ModuleError::Failed(format!(
            "service {}: {action} gave no report (rc {}): {}{}",
            s.name,
            out.rc,
            out.stdout.trim(),
            out.stderr.trim()
        ))
    })?;
    Ok((report, out.rc))
}

/// One HTTP/1.0 request to the proxy's admin port, sent from the host (bash's `/dev/tcp`, so
/// the host needs no curl); prints the raw response.
fn http_script(host: &str, port: u16, method: &str, path: &str) -> String {
    format!(
        "exec bash -c 'exec 3<>\"/dev/tcp/$0/$1\" || exit 7; \
         printf \"%s %s HTTP/1.0\\r\\nHost: %s\\r\\nContent-Length: 0\\r\\n\\r\\n\" \"$2\" \"$3\" \"$0\" >&3; \
         timeout 30 cat <&3' {} {port} {method} {}\n",
        shell_quote(host),
        shell_quote(path)
    )
}

/// (status, body) of a raw HTTP response.
fn parse_http(raw: &str) -> Option<(u16, String)> {
    let status = raw
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Some((status, body.to_string()))
}

async fn http(
    ctx: &ModuleCtx<'_>,
    s: &Settings,
    port: u16,
    method: &str,
    path: &str,
) -> Result<(u16, String), ModuleError> {
    let out = ctx
        .transport
        .run(CommandSpec {
            shell: Some(http_script(&s.metrics_host, port, method, path)),
            timeout: Some(Duration::from_secs(40)),
            ..Default::default()
        })
        .await?;
    parse_http(&out.stdout).ok_or_else(|| {
        ModuleError::Failed(format!(
            "service {}: {method} {path} on {}:{port} got no HTTP answer (rc {}): {}",
            s.name,
            s.metrics_host,
            out.rc,
            out.stderr.trim()
        ))
    })
}

/// The live settings `/config` reports (counters left out, so before/after compare).
fn live_settings(body: &str) -> Option<Map<String, Value>> {
    let Value::Object(mut m) = serde_json::from_str(body).ok()? else {
        return None;
    };
    m.retain(|k, _| !k.starts_with("reloads_") && k != "last_reload_error");
    Some(m)
}

/// Settings in `expect` that `/config` does not report as given: "name: wanted X, active Y".
fn unmet(expect: &[(String, String)], active: &Map<String, Value>) -> Vec<String> {
    expect
        .iter()
        .filter_map(|(k, want)| {
            let got = active.get(k).map(crate::vars::display);
            (got.as_deref().map(str::to_ascii_uppercase) != Some(want.to_ascii_uppercase())).then(
                || {
                    format!(
                        "{k}: wanted {want}, active {}",
                        got.unwrap_or("(not reported)".into())
                    )
                },
            )
        })
        .collect()
}

/// `reloaded` through the proxy's admin port: POST /reload, then GET /config must show `expect`.
async fn verified_reload(
    ctx: &ModuleCtx<'_>,
    s: &Settings,
    port: u16,
) -> Result<ModResult, ModuleError> {
    let systemd = uses_systemd(ctx, s).await?;
    let (now, _) = call(ctx, s, "status").await?;
    let mut data = result_data(&now, systemd);
    let fail = |msg: String, data: Map<String, Value>, changed: bool| ModResult {
        failed: true,
        changed,
        msg: Some(msg),
        data,
        ..Default::default()
    };
    let (before, changed, note) = if now.running {
        let (_, before) = http(ctx, s, port, "GET", "/config").await?;
        let (status, body) = http(ctx, s, port, "POST", "/reload").await?;
        if status != 200 {
            return Ok(fail(
                format!(
                    "service {}: reload refused (HTTP {status}): {}",
                    s.name,
                    body.trim()
                ),
                data,
                false,
            ));
        }
        (live_settings(&before), true, "reloaded")
    } else {
        // Not running: start it (it reads the new settings at start).
        let (r, rc) = call(ctx, s, "start").await?;
        data = result_data(&r, systemd);
        if rc != 0 {
            return Ok(fail(
                format!("service {}: {}\n{}", s.name, r.note, r.rest),
                data,
                r.changed,
            ));
        }
        (None, true, "started")
    };
    let (status, body) = http(ctx, s, port, "GET", "/config").await?;
    let active = (status == 200)
        .then(|| live_settings(&body))
        .flatten()
        .ok_or_else(|| {
            ModuleError::Failed(format!(
                "service {}: /config answered {status}: {body}",
                s.name
            ))
        })?;
    let changed = changed && before.as_ref() != Some(&active);
    data.insert("active".into(), Value::Object(active.clone()));
    let missing = unmet(&s.expect, &active);
    if !missing.is_empty() {
        return Ok(fail(
            format!(
                "service {}: after the reload the proxy does not serve the expected settings: {}",
                s.name,
                missing.join("; ")
            ),
            data,
            changed,
        ));
    }
    Ok(ModResult {
        changed,
        msg: Some(format!("{}: {note}", s.name)),
        data,
        ..Default::default()
    })
}

fn result_data(r: &Report, systemd: bool) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert(
        "state".into(),
        Value::from(if r.running { "running" } else { "stopped" }),
    );
    d.insert("pid".into(), r.pid.map(Value::from).unwrap_or(Value::Null));
    d.insert(
        "manager".into(),
        Value::from(if systemd { "systemd" } else { "supervisor" }),
    );
    d
}

impl Module for Service {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let s = settings(ctx)?;
            let systemd = uses_systemd(ctx, &s).await?;
            let (now, _) = call(ctx, &s, "status").await?;
            let data = result_data(&now, systemd);
            let action = match (s.state.as_str(), now.running) {
                ("status", _) | ("started", true) | ("stopped", false) => {
                    return Ok(Query::Done(ModResult {
                        msg: Some(format!(
                            "{} is {}",
                            s.name,
                            if now.running { "running" } else { "stopped" }
                        )),
                        data,
                        ..Default::default()
                    }))
                }
                ("started", false) => "start",
                ("stopped", true) => "stop",
                ("restarted", _) => "restart",
                ("reloaded", _) => "reload",
                (other, _) => {
                    return Err(ModuleError::Failed(format!(
                        "state: unknown state '{other}'"
                    )))
                }
            };
            let mut detail = data;
            detail.insert("action".into(), Value::from(action));
            Ok(Query::Change(Planned {
                summary: format!("{action} {}", s.name),
                detail,
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, plan: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let s = settings(ctx)?;
            let action = plan
                .detail
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("status");
            if let (Some(port), "reload") = (s.metrics_port, action) {
                return verified_reload(ctx, &s, port).await;
            }
            let systemd = uses_systemd(ctx, &s).await?;
            let (r, rc) = call(ctx, &s, action).await?;
            let mut data = result_data(&r, systemd);
            if !r.rest.is_empty() {
                data.insert("log_tail".into(), Value::from(r.rest.clone()));
            }
            if rc != 0 {
                let mut msg = format!("service {}: {}", s.name, r.note);
                if !r.rest.is_empty() {
                    msg.push('\n');
                    msg.push_str(&r.rest);
                }
                return Ok(ModResult {
                    failed: true,
                    changed: r.changed,
                    msg: Some(msg),
                    data,
                    ..Default::default()
                });
            }
            Ok(ModResult {
                changed: r.changed,
                msg: Some(format!("{}: {}", s.name, r.note.trim())),
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

    #[test]
    fn reports_parse_with_notes_and_log_tails() {
        let r =
            parse_report("noise\nstate=running pid=42 changed=yes note=restarted killed after x\n")
                .unwrap();
        assert!(r.running && r.changed);
        assert_eq!(
            (r.pid, r.note.as_str()),
            (Some(42), "restarted killed after x")
        );
        let r = parse_report("state=stopped pid= changed=yes note=exited\n--- last lines\nboom\n")
            .unwrap();
        assert!(!r.running);
        assert_eq!(r.pid, None);
        assert_eq!(r.rest, "--- last lines\nboom");
        assert!(parse_report("nothing here").is_none());
    }

    #[test]
    fn http_answers_and_expectations() {
        let raw = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nreload refused: x\n";
        assert_eq!(
            parse_http(raw),
            Some((400, "reload refused: x\n".to_string()))
        );
        assert_eq!(parse_http(""), None);
        let active = live_settings(
            r#"{"primary_cluster":"TARGET","read_mode":"PRIMARY_ONLY","reloads_succeeded":3}"#,
        )
        .unwrap();
        assert!(!active.contains_key("reloads_succeeded"));
        let want = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(unmet(&want("primary_cluster", "target"), &active).is_empty());
        assert_eq!(
            unmet(&want("primary_cluster", "ORIGIN"), &active),
            vec!["primary_cluster: wanted ORIGIN, active TARGET"]
        );
        assert_eq!(
            unmet(&want("log_level", "INFO"), &active),
            vec!["log_level: wanted INFO, active (not reported)"]
        );
    }

    #[test]
    fn http_script_talks_http_to_a_real_listener() {
        // A one-shot local listener stands in for the proxy's admin port: the script's bytes
        // must be a request line the proxy's parser reads.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut c, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.ends_with(b"\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "request ended early: {head:?}");
                head.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            head
        });
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(http_script("127.0.0.1", port, "POST", "/reload"))
            .output()
            .unwrap();
        let head = server.join().unwrap();
        assert!(head.starts_with("POST /reload HTTP/1.0\r\n"), "{head:?}");
        assert!(head.ends_with("\r\n\r\n"), "{head:?}");
        assert_eq!(
            parse_http(&String::from_utf8_lossy(&out.stdout)),
            Some((200, "ok".to_string()))
        );
    }
}
