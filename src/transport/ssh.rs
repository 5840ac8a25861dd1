//! The `ssh` connection: tasks act on a remote host through a pooled OpenSSH master.
//!
//! Files travel over SFTP (one channel per host, opened on first use). Everything else is a
//! small POSIX shell command, always run under the remote `timeout` so that a command that
//! overruns is killed *on the host* (with its whole process group), not merely abandoned by
//! us. With `ansible_become` the commands run through `sudo -n`, and file writes go through a
//! command too, because SFTP runs as the login user.

mod pool;
mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use openssh::Stdio;
use tokio::io::AsyncWriteExt;

pub use pool::SshPool;
pub use target::{shell_quote, HostKeyPolicy, SshTarget, TargetError};

use super::{
    CommandOutput, CommandSpec, FileKind, FileStat, Ownership, TResult, Transport, TransportError,
};

/// After the remote `timeout` sends SIGTERM, it waits this long before SIGKILL.
const KILL_GRACE_SECS: u64 = 5;
/// Housekeeping commands (stat, mkdir, checksum of a large binary) get this long.
const HOUSEKEEPING_TIMEOUT: Duration = Duration::from_secs(120);
/// How much longer than the remote timeout we wait for the answer before giving up locally.
const LOCAL_SLACK: Duration = Duration::from_secs(20);

/// Acts on one remote host.
pub struct SshTransport {
    target: SshTarget,
    pool: Arc<SshPool>,
}

impl SshTransport {
    pub fn new(target: SshTarget, pool: Arc<SshPool>) -> SshTransport {
        SshTransport { target, pool }
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Runs a shell script on the host (through sudo with become) and returns its output.
    /// The remote `timeout` kills the script's process group when `limit` passes.
    pub async fn exec(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> TResult<CommandOutput> {
        let conn = self.pool.conn(&self.target).await?;
        let line = remote_line(script, self.target.become_user.as_deref(), limit);
        let started = Instant::now();
        let work = async {
            let mut cmd = conn.session.raw_command(&line);
            cmd.stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            let mut child = cmd.spawn().await?;
            if let (Some(data), Some(mut w)) = (stdin, child.stdin().take()) {
                w.write_all(data).await.map_err(openssh::Error::ChildIo)?;
                w.shutdown().await.map_err(openssh::Error::ChildIo)?;
                drop(w);
            }
            child.wait_with_output().await
        };
        let local_bound = limit + Duration::from_secs(KILL_GRACE_SECS) + LOCAL_SLACK;
        let out = match tokio::time::timeout(local_bound, work).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(self.channel_error(e).await),
            Err(_) => {
                self.pool.evict(&self.target).await;
                return Err(TransportError::Unreachable(format!(
                    "{}: no answer within {}s",
                    self.target.name,
                    local_bound.as_secs()
                )));
            }
        };
        let rc = out.status.code().unwrap_or(-1);
        // 124: timeout's TERM worked; 137: it had to KILL. A command that itself exits 124
        // early is not a timeout, hence the elapsed-time check.
        if (rc == 124 || rc == 137) && started.elapsed() + Duration::from_millis(50) >= limit {
            return Err(TransportError::Failed(format!(
                "command timed out after {}s on {} (the remote process group was killed)",
                limit.as_secs_f64(),
                self.target.name
            )));
        }
        Ok(CommandOutput {
            rc,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// An error of the channel itself (not of the remote command): if the master is gone,
    /// the host is unreachable and the pool forgets it.
    async fn channel_error(&self, e: openssh::Error) -> TransportError {
        let alive = match self.pool.conn_if_alive(&self.target).await {
            Some(c) => c.session.check().await.is_ok(),
            None => false,
        };
        if alive {
            TransportError::Failed(format!("{}: ssh: {e}", self.target.name))
        } else {
            self.pool.evict(&self.target).await;
            TransportError::Unreachable(format!("{}: ssh connection lost: {e}", self.target.name))
        }
    }

    /// Runs a housekeeping script and fails unless it exits 0.
    async fn sh_ok(&self, what: &str, script: &str) -> TResult<String> {
        let out = self.exec(script, None, HOUSEKEEPING_TIMEOUT).await?;
        if out.rc != 0 {
            return Err(TransportError::Failed(format!(
                "{what} on {}: {}",
                self.target.name,
                first_nonempty(&out.stderr, &out.stdout, out.rc)
            )));
        }
        Ok(out.stdout)
    }

    fn sftp_error(&self, what: &str, path: &str, e: openssh_sftp_client::Error) -> TransportError {
        TransportError::Failed(format!("{what} {path} on {}: {e}", self.target.name))
    }

    async fn chown_script(&self, owner: &Ownership) -> Option<String> {
        match (&owner.owner, &owner.group) {
            (None, None) => None,
            (Some(u), None) => Some(shell_quote(u)),
            (None, Some(g)) => Some(format!(":{}", shell_quote(g))),
            (Some(u), Some(g)) => Some(format!("{}:{}", shell_quote(u), shell_quote(g))),
        }
    }

    /// Atomic write through a command: used with become (SFTP would write as the login
    /// user). The temporary file is created 0600 and removed by the trap on any failure.
    async fn write_via_command(
        &self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: &Ownership,
    ) -> TResult<()> {
        let dir = parent_dir(path);
        let chown = match self.chown_script(owner).await {
            Some(o) => format!("chown {o} \"$t\"\n"),
            None => String::new(),
        };
        let script = format!(
            "set -e\n[ -d {d} ] || {{ echo \"directory {d} does not exist\" >&2; exit 3; }}\n\
             t=$(umask 077; mktemp {d}/.zdm-tmp-XXXXXX)\ntrap 'rm -f \"$t\"' EXIT\n\
             cat > \"$t\"\nchmod {mode:o} \"$t\"\n{chown}mv -f \"$t\" {p}\ntrap - EXIT\n",
            d = shell_quote(&dir),
            p = shell_quote(path),
        );
        let out = self.exec(&script, Some(data), HOUSEKEEPING_TIMEOUT).await?;
        if out.rc != 0 {
            return Err(TransportError::Failed(format!(
                "cannot write {path} on {}: {}",
                self.target.name,
                first_nonempty(&out.stderr, &out.stdout, out.rc)
            )));
        }
        Ok(())
    }

    /// Atomic write over SFTP: a 0600 temporary file beside `path`, then mode, owner and a
    /// POSIX rename over the old file. A failure removes the temporary file and leaves the
    /// old one as it was.
    async fn write_via_sftp(
        &self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: &Ownership,
    ) -> TResult<()> {
        let conn = self.pool.conn(&self.target).await?;
        let sftp = conn.sftp(&self.target).await?;
        let dir = parent_dir(path);
        let mut fs = sftp.fs();
        match fs.metadata(&dir).await {
            Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => {}
            _ => {
                return Err(TransportError::Failed(format!(
                    "cannot write {path} on {}: directory {dir} does not exist",
                    self.target.name
                )))
            }
        }
        let tmp = format!(
            "{}/.zdm-tmp-{:016x}",
            dir.trim_end_matches('/'),
            rand::random::<u64>()
        );
        let result = async {
            let mut f = sftp
                .options()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await
                .map_err(|e| self.sftp_error("create", &tmp, e))?;
            // Restrict before any byte lands: the content may be a secret.
            f.set_permissions(0o600u16.into())
                .await
                .map_err(|e| self.sftp_error("chmod", &tmp, e))?;
            f.write_all(data)
                .await
                .map_err(|e| self.sftp_error("write", &tmp, e))?;
            if sftp.support_fsync() {
                f.sync_all()
                    .await
                    .map_err(|e| self.sftp_error("fsync", &tmp, e))?;
            }
            f.set_permissions(((mode & 0o7777) as u16).into())
                .await
                .map_err(|e| self.sftp_error("chmod", &tmp, e))?;
            f.close()
                .await
                .map_err(|e| self.sftp_error("close", &tmp, e))?;
            if let Some(o) = self.chown_script(owner).await {
                self.sh_ok("chown", &format!("chown {o} {}", shell_quote(&tmp)))
                    .await?;
            }
            let mut fs = sftp.fs();
            fs.rename(&tmp, path)
                .await
                .map_err(|e| self.sftp_error("rename into place", path, e))
        }
        .await;
        if result.is_err() {
            let _ = sftp.fs().remove_file(&tmp).await;
        }
        result
    }

    fn is_missing(e: &openssh_sftp_client::Error) -> bool {
        matches!(
            e,
            openssh_sftp_client::Error::SftpError(
                openssh_sftp_client::error::SftpErrorKind::NoSuchFile,
                _
            )
        )
    }

    /// Ids of a user or group name as the host knows them (numbers pass through).
    async fn remote_id(&self, kind: &str, name: &str) -> TResult<u32> {
        if let Ok(n) = name.parse() {
            return Ok(n);
        }
        let script = match kind {
            "user" => format!("id -u {}", shell_quote(name)),
            _ => format!("getent group {} | cut -d: -f3", shell_quote(name)),
        };
        let out = self.exec(&script, None, HOUSEKEEPING_TIMEOUT).await?;
        out.stdout.trim().parse().map_err(|_| {
            TransportError::Failed(format!("unknown {kind} '{name}' on {}", self.target.name))
        })
    }
}

impl SshPool {
    /// The pooled connection if one is open, without opening one.
    async fn conn_if_alive(&self, target: &SshTarget) -> Option<Arc<pool::HostConn>> {
        self.peek(target).await
    }
}

/// The transport for a host whose connection is ssh, sharing `pool`'s masters.
pub fn connect(vars: &crate::vars::Vars, pool: &Arc<SshPool>) -> TResult<Arc<dyn Transport>> {
    let name = vars
        .get("inventory_hostname")
        .map(crate::vars::display)
        .unwrap_or_default();
    let target =
        SshTarget::from_vars(&name, vars).map_err(|e| TransportError::Failed(e.to_string()))?;
    Ok(Arc::new(SshTransport::new(target, pool.clone())))
}

/// The command line the remote login shell runs: the script under `timeout` (which kills
/// its whole process group when `limit` passes, SIGKILL after a grace period), through
/// `sudo -n` (never prompt: a password prompt would hang) when becoming another user.
pub fn remote_line(script: &str, become_user: Option<&str>, limit: Duration) -> String {
    let secs = format!("{:.3}", limit.as_secs_f64().max(0.001));
    let body = match become_user {
        Some(u) => format!(
            "sudo -n -H -u {} -- /bin/sh -c {}",
            shell_quote(u),
            shell_quote(script)
        ),
        None => format!("/bin/sh -c {}", shell_quote(script)),
    };
    format!("exec timeout -k {KILL_GRACE_SECS} {secs} {body}")
}

fn parent_dir(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((d, _)) => d.into(),
        None => ".".into(),
    }
}

fn first_nonempty(stderr: &str, stdout: &str, rc: i32) -> String {
    let s = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    if s.is_empty() {
        format!("exit code {rc}")
    } else {
        s.to_string()
    }
}

/// The remote command line for a task's command: argv words are quoted, a shell string is
/// passed as is, `chdir` becomes a `cd` that must succeed.
pub fn command_script(spec: &CommandSpec) -> TResult<String> {
    let body = match &spec.shell {
        Some(sh) => sh.clone(),
        None => {
            if spec.argv.is_empty() {
                return Err(TransportError::Failed("empty command".into()));
            }
            format!(
                "exec {}",
                spec.argv
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    };
    Ok(match &spec.chdir {
        Some(d) => format!("cd {} || exit 1\n{body}", shell_quote(d)),
        None => body,
    })
}

impl Transport for SshTransport {
    fn describe(&self) -> String {
        self.target.describe()
    }

    fn run(&self, spec: CommandSpec) -> BoxFuture<'_, TResult<CommandOutput>> {
        async move {
            let script = command_script(&spec)?;
            let limit = spec.timeout.unwrap_or(self.target.command_timeout);
            self.exec(&script, spec.stdin.as_deref(), limit).await
        }
        .boxed()
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<Vec<u8>>>> {
        async move {
            if self.target.become_user.is_some() {
                let script = format!(
                    "if [ -e {p} ]; then cat {p}; else exit 66; fi",
                    p = shell_quote(path)
                );
                let out = self.exec(&script, None, HOUSEKEEPING_TIMEOUT).await?;
                return match out.rc {
                    0 => Ok(Some(out.stdout.into_bytes())),
                    66 => Ok(None),
                    rc => Err(TransportError::Failed(format!(
                        "read {path} on {}: {}",
                        self.target.name,
                        first_nonempty(&out.stderr, "", rc)
                    ))),
                };
            }
            let conn = self.pool.conn(&self.target).await?;
            let sftp = conn.sftp(&self.target).await?;
            match sftp.fs().read(path).await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) if Self::is_missing(&e) => Ok(None),
                Err(e) => Err(self.sftp_error("read", path, e)),
            }
        }
        .boxed()
    }

    fn write_file<'a>(
        &'a self,
        path: &'a str,
        data: &'a [u8],
        mode: u32,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, TResult<()>> {
        async move {
            if self.target.become_user.is_some() {
                self.write_via_command(path, data, mode, owner).await
            } else {
                self.write_via_sftp(path, data, mode, owner).await
            }
        }
        .boxed()
    }

    fn stat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<FileStat>>> {
        async move {
            // stat(1) works the same with and without become and gets the link target in
            // the same round trip.
            let script = format!(
                "if [ -e {p} ] || [ -L {p} ]; then stat -c '%F|%a|%u|%g|%s' {p} || exit 1; readlink {p}; exit 0; else exit 66; fi",
                p = shell_quote(path)
            );
            let out = self.exec(&script, None, HOUSEKEEPING_TIMEOUT).await?;
            if out.rc == 66 {
                return Ok(None);
            }
            if out.rc != 0 {
                return Err(TransportError::Failed(format!(
                    "stat {path} on {}: {}",
                    self.target.name,
                    first_nonempty(&out.stderr, &out.stdout, out.rc)
                )));
            }
            parse_stat(&out.stdout).ok_or_else(|| {
                TransportError::Failed(format!(
                    "stat {path} on {}: unexpected output {:?}",
                    self.target.name, out.stdout
                ))
            })
            .map(Some)
        }
        .boxed()
    }

    fn checksum<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<String>>> {
        async move {
            let script = format!(
                "if [ -e {p} ]; then sha256sum < {p}; else exit 66; fi",
                p = shell_quote(path)
            );
            let out = self.exec(&script, None, HOUSEKEEPING_TIMEOUT).await?;
            match out.rc {
                66 => Ok(None),
                0 => {
                    let sum = out.stdout.split_whitespace().next().unwrap_or("");
                    if sum.len() == 64 && sum.chars().all(|c| c.is_ascii_hexdigit()) {
                        Ok(Some(sum.to_string()))
                    } else {
                        Err(TransportError::Failed(format!(
                            "sha256sum {path} on {}: unexpected output",
                            self.target.name
                        )))
                    }
                }
                rc => Err(TransportError::Failed(format!(
                    "sha256sum {path} on {}: {}",
                    self.target.name,
                    first_nonempty(&out.stderr, &out.stdout, rc)
                ))),
            }
        }
        .boxed()
    }

    fn mkdir<'a>(&'a self, path: &'a str, mode: u32) -> BoxFuture<'a, TResult<()>> {
        async move {
            let script = format!(
                "[ -d {p} ] || mkdir -p -m {mode:o} {p}",
                p = shell_quote(path)
            );
            self.sh_ok(&format!("mkdir {path}"), &script)
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn symlink<'a>(&'a self, target: &'a str, path: &'a str) -> BoxFuture<'a, TResult<()>> {
        async move {
            // A link under a temporary name renamed over the old one: readers see either the
            // old or the new target, never no link (mv -T: replace a link to a directory
            // instead of moving into it).
            let tmp = format!(
                "{}/.zdm-link-{:016x}",
                parent_dir(path).trim_end_matches('/'),
                rand::random::<u64>()
            );
            let script = format!(
                "ln -s {t} {tmp} && mv -Tf {tmp} {p} || {{ rc=$?; rm -f {tmp}; exit $rc; }}",
                t = shell_quote(target),
                tmp = shell_quote(&tmp),
                p = shell_quote(path)
            );
            self.sh_ok(&format!("symlink {path}"), &script)
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn remove<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<()>> {
        async move {
            self.sh_ok(
                &format!("remove {path}"),
                &format!("rm -rf -- {}", shell_quote(path)),
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn set_attrs<'a>(
        &'a self,
        path: &'a str,
        mode: Option<u32>,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, TResult<()>> {
        async move {
            let p = shell_quote(path);
            let mut script = String::from("set -e\n");
            if let Some(m) = mode {
                script.push_str(&format!("chmod {m:o} {p}\n"));
            }
            if let Some(o) = self.chown_script(owner).await {
                script.push_str(&format!("chown -h {o} {p}\n"));
            }
            self.sh_ok(&format!("set attributes of {path}"), &script)
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn path_for_command(&self, path: &str) -> String {
        path.to_string()
    }

    fn owner_ids<'a>(
        &'a self,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, TResult<(Option<u32>, Option<u32>)>> {
        async move {
            let uid = match &owner.owner {
                Some(u) => Some(self.remote_id("user", u).await?),
                None => None,
            };
            let gid = match &owner.group {
                Some(g) => Some(self.remote_id("group", g).await?),
                None => None,
            };
            Ok((uid, gid))
        }
        .boxed()
    }

    fn become_user(&self) -> Option<&str> {
        self.target.become_user.as_deref()
    }

    fn is_root(&self) -> bool {
        match &self.target.become_user {
            Some(u) => u == "root" || u == "0",
            None => self.target.user.as_deref() == Some("root"),
        }
    }

    fn tcp_probe<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, TResult<bool>> {
        async move {
            // bash's /dev/tcp needs nothing installed on the host; `timeout` bounds a
            // connect to a black-holed address.
            let script = format!(
                "timeout {:.3} bash -c 'exec 3<>/dev/tcp/{}/{port}' 2>/dev/null",
                timeout.as_secs_f64().max(0.1),
                host.replace(
                    |c: char| !(c.is_ascii_alphanumeric() || ".-:_".contains(c)),
                    ""
                )
            );
            let out = self
                .exec(&script, None, timeout + Duration::from_secs(10))
                .await?;
            Ok(out.rc == 0)
        }
        .boxed()
    }

    fn backup<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<String>>> {
        async move {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let name = format!("{path}.{stamp}~");
            let script = format!(
                "if [ -f {p} ]; then cp -p {p} {n}; else exit 66; fi",
                p = shell_quote(path),
                n = shell_quote(&name)
            );
            let out = self.exec(&script, None, HOUSEKEEPING_TIMEOUT).await?;
            match out.rc {
                0 => Ok(Some(name)),
                66 => Ok(None),
                rc => Err(TransportError::Failed(format!(
                    "backup {path} on {}: {}",
                    self.target.name,
                    first_nonempty(&out.stderr, &out.stdout, rc)
                ))),
            }
        }
        .boxed()
    }
}

/// Parses `stat -c '%F|%a|%u|%g|%s'` plus an optional `readlink` line.
fn parse_stat(out: &str) -> Option<FileStat> {
    let mut lines = out.lines();
    let f: Vec<&str> = lines.next()?.split('|').collect();
    if f.len() != 5 {
        return None;
    }
    let kind = match f[0] {
        "regular file" | "regular empty file" => FileKind::File,
        "directory" => FileKind::Directory,
        "symbolic link" => FileKind::Symlink,
        _ => FileKind::Other,
    };
    let link_target = if kind == FileKind::Symlink {
        lines.next().map(str::to_string)
    } else {
        None
    };
    Some(FileStat {
        kind,
        mode: u32::from_str_radix(f[1], 8).ok()?,
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        size: f[4].parse().ok()?,
        link_target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_output_parses() {
        let s = parse_stat("symbolic link|777|0|0|12\n/opt/x/versions/ab\n").unwrap();
        assert_eq!(s.kind, FileKind::Symlink);
        assert_eq!(s.link_target.as_deref(), Some("/opt/x/versions/ab"));
        let s = parse_stat("regular file|600|1000|100|5\n").unwrap();
        assert_eq!(
            (s.kind, s.mode, s.uid, s.gid, s.size),
            (FileKind::File, 0o600, 1000, 100, 5)
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn command_script_quotes_argv_and_changes_dir() {
        let spec = CommandSpec {
            argv: vec!["echo".into(), "a b".into(), "it's".into()],
            chdir: Some("/tmp/x y".into()),
            ..Default::default()
        };
        assert_eq!(
            command_script(&spec).unwrap(),
            "cd '/tmp/x y' || exit 1\nexec echo 'a b' 'it'\\''s'"
        );
        assert!(command_script(&CommandSpec::default()).is_err());
    }

    #[test]
    fn remote_lines_run_under_timeout_and_sudo() {
        let plain = remote_line("echo 'x'", None, Duration::from_millis(2500));
        assert_eq!(
            plain,
            r"exec timeout -k 5 2.500 /bin/sh -c 'echo '\''x'\'''"
        );
        let sudo = remote_line("id -u", Some("postgres"), Duration::from_secs(3));
        assert_eq!(
            sudo,
            "exec timeout -k 5 3.000 sudo -n -H -u postgres -- /bin/sh -c 'id -u'"
        );
    }

    #[test]
    fn parent_of_paths() {
        assert_eq!(parent_dir("/a/b"), "/a");
        assert_eq!(parent_dir("/a"), "/");
        assert_eq!(parent_dir("a"), ".");
    }
}
