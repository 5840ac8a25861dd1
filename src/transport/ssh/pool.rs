//! One multiplexed ssh master per host, shared by every task of a run.
//!
//! Opening an ssh connection costs a TCP and key exchange round trip plus authentication;
//! a playbook runs dozens of commands per host, so each host gets one master process
//! (`ssh -M`, OpenSSH's ControlMaster) and every command or SFTP channel is multiplexed over
//! it. Masters live in a short private directory (`/tmp/zdm-ssh-XXXXXX`): the control socket
//! path must stay under the ~100 byte `sun_path` limit, which deep home directories break.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use openssh_sftp_client::{Sftp, SftpOptions};
use tokio::sync::Mutex as AsyncMutex;

use super::target::{HostKeyPolicy, SshTarget};
use crate::transport::{TResult, TransportError};

/// A master that nobody uses for this long exits by itself: a safety net so that a crashed
/// run never leaves ssh processes behind for long.
const IDLE_EXIT_SECS: usize = 300;
/// Keepalive probes; with ssh's default count of 3 a dead network is noticed in ~15 s.
const SERVER_ALIVE: Duration = Duration::from_secs(5);

/// The live connection to one host.
pub struct HostConn {
    pub session: Arc<Session>,
    /// Opened on first use: most hosts in a read-only run never need it.
    sftp: tokio::sync::OnceCell<Sftp>,
}

impl HostConn {
    /// The host's SFTP channel (opened once, then shared).
    pub async fn sftp(&self, target: &SshTarget) -> TResult<&Sftp> {
        self.sftp
            .get_or_try_init(|| async {
                Sftp::from_clonable_session(self.session.clone(), SftpOptions::default())
                    .await
                    .map_err(|e| {
                        TransportError::Failed(format!(
                            "{}: cannot open SFTP channel: {e}",
                            target.name
                        ))
                    })
            })
            .await
    }
}

impl Drop for HostConn {
    /// Ends the master process itself. The crate's own drop only asks the master to stop
    /// listening, which with ControlPersist leaves it running until the idle timeout;
    /// `ssh -O exit` is OpenSSH's way to end it now.
    fn drop(&mut self) {
        let _ = std::process::Command::new("ssh")
            .arg("-S")
            .arg(self.session.control_socket())
            .args(["-O", "exit", "zdm-run-master"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

type Slot = Arc<AsyncMutex<Option<Arc<HostConn>>>>;

/// Masters keyed by `user@host:port`.
#[derive(Default)]
pub struct SshPool {
    slots: Mutex<HashMap<String, Slot>>,
    dir: Mutex<Option<tempfile::TempDir>>,
}

impl SshPool {
    pub fn new() -> SshPool {
        SshPool::default()
    }

    /// Number of masters currently open (for tests and `-v` output).
    pub fn open_count(&self) -> usize {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .expect("pool lock")
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter(|s| s.try_lock().map(|g| g.is_some()).unwrap_or(true))
            .count()
    }

    /// Drops every master (each one's drop asks the ssh master process to exit) and the
    /// control directory.
    pub fn close_all(&self) {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .expect("pool lock")
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in slots {
            if let Ok(mut g) = s.try_lock() {
                g.take();
            }
        }
        self.dir.lock().expect("pool lock").take();
    }

    fn control_dir(&self) -> TResult<PathBuf> {
        let mut dir = self.dir.lock().expect("pool lock");
        if dir.is_none() {
            use std::os::unix::fs::PermissionsExt;
            let d = tempfile::Builder::new()
                .prefix("zdm-ssh-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir_in("/tmp")
                .map_err(|e| {
                    TransportError::Failed(format!("cannot create ssh control directory: {e}"))
                })?;
            *dir = Some(d);
        }
        Ok(dir.as_ref().expect("just set").path().to_path_buf())
    }

    /// The live master for `target`, opening one if there is none or the old one died
    /// (an idle exit, a network cut the keepalives noticed).
    pub async fn conn(&self, target: &SshTarget) -> TResult<Arc<HostConn>> {
        let slot = self
            .slots
            .lock()
            .expect("pool lock")
            .entry(target.pool_key())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.session.check().await.is_ok() {
                return Ok(c.clone());
            }
            guard.take();
        }
        let dir = self.control_dir()?;
        let session = open_master(target, &dir).await?;
        let conn = Arc::new(HostConn {
            session: Arc::new(session),
            sftp: tokio::sync::OnceCell::new(),
        });
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// The open master for `target`, if any, without opening one.
    pub async fn peek(&self, target: &SshTarget) -> Option<Arc<HostConn>> {
        let slot = self
            .slots
            .lock()
            .expect("pool lock")
            .get(&target.pool_key())
            .cloned()?;
        let g = slot.lock().await;
        g.clone()
    }

    /// Forgets a master that failed mid-operation so the next task reconnects.
    pub async fn evict(&self, target: &SshTarget) {
        let slot = self
            .slots
            .lock()
            .expect("pool lock")
            .get(&target.pool_key())
            .cloned();
        if let Some(s) = slot {
            s.lock().await.take();
        }
    }
}

/// Starts the master process for `target`.
async fn open_master(target: &SshTarget, dir: &Path) -> TResult<Session> {
    let mut b = SessionBuilder::default();
    b.control_directory(dir)
        .control_persist(ControlPersist::IdleFor(
            NonZeroUsize::new(IDLE_EXIT_SECS).expect("non-zero"),
        ))
        .server_alive_interval(SERVER_ALIVE)
        .connect_timeout(target.connect_timeout)
        .known_hosts_check(match target.host_keys {
            HostKeyPolicy::Strict => KnownHosts::Strict,
            HostKeyPolicy::AcceptNew => KnownHosts::Add,
            HostKeyPolicy::Off => KnownHosts::Accept,
        });
    if let Some(u) = &target.user {
        b.user(u.clone());
    }
    if let Some(p) = target.port {
        b.port(p);
    }
    if let Some(k) = &target.key_file {
        b.keyfile(k);
    }
    if let Some(k) = &target.known_hosts_file {
        b.user_known_hosts_file(k);
    }
    if !target.jump_hosts.is_empty() {
        b.jump_hosts(&target.jump_hosts);
    }
    if let Some(cfg) = config_file(target, dir)? {
        b.config_file(cfg);
    }
    // ssh's own ConnectTimeout covers the TCP connect; this bound also covers a peer that
    // accepts TCP but never finishes the handshake, and every jump host on the way.
    let hops = 1 + target.jump_hosts.len() as u32;
    let bound = target.connect_timeout * (2 * hops) + Duration::from_secs(5);
    match tokio::time::timeout(bound, b.connect_mux(&target.address)).await {
        Err(_) => Err(TransportError::Unreachable(format!(
            "{}: no ssh connection to {} within {}s",
            target.name,
            target.pool_key(),
            bound.as_secs()
        ))),
        Ok(Err(e)) => Err(connect_error(target, &e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// The ssh config file to pass with `-F`: the user's own, or, when there are `-o` options the
/// builder cannot set (or a key exchange preference), a generated one that sets them and then includes the user's (or the
/// default) configuration. ssh takes the first value it reads for an option.
fn config_file(target: &SshTarget, dir: &Path) -> TResult<Option<PathBuf>> {
    if target.extra_options.is_empty() && target.kex_preference.is_none() {
        return Ok(target.config_file.as_ref().map(PathBuf::from));
    }
    let kex = target
        .kex_preference
        .iter()
        .map(|k| ("KexAlgorithms".to_string(), k.clone()));
    let mut text = String::from("# generated by zdm-run for one connection\n");
    for (k, v) in target.extra_options.iter().cloned().chain(kex) {
        if k.contains(['\n', '\r']) || v.contains(['\n', '\r']) {
            return Err(TransportError::Failed(format!(
                "{}: ssh option {k:?} contains a line break",
                target.name
            )));
        }
        text.push_str(&format!("{k} {v}\n"));
    }
    match &target.config_file {
        Some(c) => text.push_str(&format!("Include {c}\n")),
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                text.push_str(&format!(
                    "Include {}/.ssh/config\n",
                    Path::new(&home).display()
                ));
            }
            text.push_str("Include /etc/ssh/ssh_config\n");
        }
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(target.pool_key().as_bytes());
    let name = format!("cfg-{}", hex::encode(&digest[..6]));
    let path = dir.join(name);
    std::fs::write(&path, text)
        .map_err(|e| TransportError::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(path))
}

/// Classifies a failed connection: every one is UNREACHABLE (Ansible's meaning: the task
/// never ran); a host key problem says how to trust the host.
fn connect_error(target: &SshTarget, e: &openssh::Error) -> TransportError {
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    let key_problem = detail.contains("Host key verification failed")
        || detail.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || detail.contains("host key is known")
        || detail.contains("Host key for");
    // ssh's log holds banners of '@' lines and advice for its own users; keep the gist.
    let gist: Vec<&str> = detail
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@'))
        .filter(|l| !l.starts_with("Please contact") && !l.starts_with("It is also possible"))
        .filter(|l| !l.starts_with("Someone could be") && !l.starts_with("Add correct host key"))
        .filter(|l| !l.starts_with("Offending") && !l.starts_with("Password authentication"))
        .filter(|l| !l.starts_with("Keyboard-interactive") && !l.starts_with("UpdateHostkeys"))
        .collect();
    let gist = gist.join("; ");
    if key_problem {
        TransportError::Unreachable(format!(
            "{}: host key verification failed for {} ({gist}); {}",
            target.name,
            target.pool_key(),
            target.trust_hint()
        ))
    } else {
        TransportError::Unreachable(format!(
            "{}: cannot connect to {}: {gist}",
            target.name,
            target.pool_key()
        ))
    }
}
