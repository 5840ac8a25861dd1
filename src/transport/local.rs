//! The `local` connection: tasks act on the control machine itself.
//!
//! An optional *root* (`zdm_local_root` host variable) prefixes every absolute path, so that
//! several inventory hosts with `ansible_connection: local` can each own a private directory
//! tree on one machine (`/opt/zdm-proxy` of host h1 becomes `<root>/opt/zdm-proxy`). Commands
//! run with the root as working directory and `ZDMRUN_LOCAL_ROOT` in their environment.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use futures::future::BoxFuture;
use futures::FutureExt;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use super::{
    CommandOutput, CommandSpec, FileKind, FileStat, Ownership, TResult, Transport, TransportError,
};

/// Acts on this machine, optionally below a per-host root directory.
#[derive(Debug, Clone, Default)]
pub struct LocalTransport {
    root: Option<PathBuf>,
}

fn failed(what: &str, path: &Path, e: std::io::Error) -> TransportError {
    TransportError::Failed(format!("{what} {}: {e}", path.display()))
}

impl LocalTransport {
    pub fn new(root: Option<PathBuf>) -> LocalTransport {
        LocalTransport { root }
    }

    /// Maps a host path to the real path on this machine.
    pub fn real_path(&self, path: &str) -> PathBuf {
        match &self.root {
            Some(root) if path.starts_with('/') => root.join(path.trim_start_matches('/')),
            Some(root) => root.join(path),
            None => PathBuf::from(path),
        }
    }

    /// Maps a real path back to the host's view (the inverse of [`Self::real_path`]).
    fn host_path(&self, real: &Path) -> String {
        match &self.root {
            Some(root) => match real.strip_prefix(root) {
                Ok(rest) => format!("/{}", rest.display()),
                Err(_) => real.display().to_string(),
            },
            None => real.display().to_string(),
        }
    }

    fn stat_sync(&self, path: &str) -> TResult<Option<FileStat>> {
        let p = self.real_path(path);
        let md = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed("stat", &p, e)),
        };
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Directory
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        };
        let link_target = if ft.is_symlink() {
            std::fs::read_link(&p).ok().map(|t| self.host_path(&t))
        } else {
            None
        };
        Ok(Some(FileStat {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.len(),
            link_target,
        }))
    }

    fn write_sync(&self, path: &str, data: &[u8], mode: u32, owner: &Ownership) -> TResult<()> {
        let p = self.real_path(path);
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(TransportError::Failed(format!(
                "cannot write {path}: directory {} does not exist",
                dir.display()
            )));
        }
        // NamedTempFile deletes itself on drop, so any early return leaves no debris and the
        // old file untouched.
        let mut tmp = tempfile::Builder::new()
            .prefix(".zdm-tmp-")
            .tempfile_in(dir)
            .map_err(|e| failed("create temporary file in", dir, e))?;
        tmp.write_all(data)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| failed("write", tmp.path(), e))?;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| failed("chmod", tmp.path(), e))?;
        chown(tmp.path(), owner)?;
        tmp.persist(&p)
            .map_err(|e| failed("rename into place", &p, e.error))?;
        Ok(())
    }
}

/// Resolves user/group names (or numeric ids) and applies them. Only root may give files
/// away, so for other users a request for their own uid is a no-op and anything else fails.
fn chown(path: &Path, owner: &Ownership) -> TResult<()> {
    if owner.owner.is_none() && owner.group.is_none() {
        return Ok(());
    }
    let uid = owner.owner.as_deref().map(lookup_user).transpose()?;
    let gid = owner.group.as_deref().map(lookup_group).transpose()?;
    std::os::unix::fs::lchown(path, uid, gid).map_err(|e| failed("chown", path, e))
}

fn lookup_user(name: &str) -> TResult<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    lookup_in("/etc/passwd", name)
        .ok_or_else(|| TransportError::Failed(format!("unknown user '{name}'")))
}

fn lookup_group(name: &str) -> TResult<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    lookup_in("/etc/group", name)
        .ok_or_else(|| TransportError::Failed(format!("unknown group '{name}'")))
}

/// Looks a name up in a passwd-style file (name:x:id:...). Reading the file avoids unsafe
/// libc calls (getpwnam is not thread-safe) and is what an SSH transport would do remotely.
fn lookup_in(file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(2)?.parse().ok())
}

/// Resolves ownership names to ids for comparison with a stat (None: not requested).
pub fn resolve_ids(owner: &Ownership) -> TResult<(Option<u32>, Option<u32>)> {
    Ok((
        owner.owner.as_deref().map(lookup_user).transpose()?,
        owner.group.as_deref().map(lookup_group).transpose()?,
    ))
}

impl Transport for LocalTransport {
    fn describe(&self) -> String {
        match &self.root {
            Some(r) => format!("local (root {})", r.display()),
            None => "local".into(),
        }
    }

    fn run(&self, spec: CommandSpec) -> BoxFuture<'_, TResult<CommandOutput>> {
        async move {
            let mut cmd = if let Some(sh) = &spec.shell {
                let mut c = tokio::process::Command::new("/bin/sh");
                c.arg("-c").arg(sh);
                c
            } else {
                let (prog, args) = spec
                    .argv
                    .split_first()
                    .ok_or_else(|| TransportError::Failed("empty command".into()))?;
                let mut c = tokio::process::Command::new(prog);
                c.args(args);
                c
            };
            // zdm-run's own variables under their old ZDM_* names would be read by a
            // zdm-proxy the command starts (or checks) as unknown settings.
            for old in crate::own_env::legacy_names() {
                cmd.env_remove(old);
            }
            if let Some(root) = &self.root {
                cmd.env(crate::own_env::name("LOCAL_ROOT"), root);
                // The old name only for a shell line that still reads it, with a warning.
                if spec
                    .shell
                    .as_deref()
                    .is_some_and(|s| s.contains("ZDM_LOCAL_ROOT"))
                {
                    crate::own_env::deprecated("ZDM_LOCAL_ROOT", "ZDMRUN_LOCAL_ROOT");
                    cmd.env("ZDM_LOCAL_ROOT", root);
                }
                cmd.current_dir(root);
            }
            if let Some(dir) = &spec.chdir {
                cmd.current_dir(self.real_path(dir));
            }
            cmd.stdin(if spec.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
            let mut child = cmd
                .spawn()
                .map_err(|e| TransportError::Failed(format!("cannot start command: {e}")))?;
            if let (Some(data), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
                stdin
                    .write_all(&data)
                    .await
                    .map_err(|e| TransportError::Failed(format!("writing stdin: {e}")))?;
            }
            let wait = child.wait_with_output();
            let out = match spec.timeout {
                Some(t) => tokio::time::timeout(t, wait).await.map_err(|_| {
                    TransportError::Failed(format!("command timed out after {}s", t.as_secs_f64()))
                })?,
                None => wait.await,
            }
            .map_err(|e| TransportError::Failed(format!("command failed: {e}")))?;
            Ok(CommandOutput {
                rc: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
        .boxed()
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<Vec<u8>>>> {
        async move {
            let p = self.real_path(path);
            match std::fs::read(&p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(failed("read", &p, e)),
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
        // Synchronous on purpose: a write is never interrupted half-way by cancellation
        // (Ctrl-C drops futures only at await points).
        async move { self.write_sync(path, data, mode, owner) }.boxed()
    }

    fn stat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<FileStat>>> {
        async move { self.stat_sync(path) }.boxed()
    }

    fn checksum<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<String>>> {
        async move {
            let p = self.real_path(path);
            match std::fs::read(&p) {
                Ok(b) => Ok(Some(hex::encode(sha2::Sha256::digest(&b)))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(failed("read", &p, e)),
            }
        }
        .boxed()
    }

    fn mkdir<'a>(&'a self, path: &'a str, mode: u32) -> BoxFuture<'a, TResult<()>> {
        async move {
            let p = self.real_path(path);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&p)
                .map_err(|e| failed("mkdir", &p, e))
        }
        .boxed()
    }

    fn symlink<'a>(&'a self, target: &'a str, path: &'a str) -> BoxFuture<'a, TResult<()>> {
        async move {
            let p = self.real_path(path);
            let dir = p.parent().unwrap_or(Path::new("."));
            // Create beside, then rename over: replacing a link is atomic too.
            let tmp = dir.join(format!(".zdm-link-{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            let target_real = if target.starts_with('/') {
                self.real_path(target)
            } else {
                PathBuf::from(target)
            };
            std::os::unix::fs::symlink(&target_real, &tmp)
                .map_err(|e| failed("symlink", &tmp, e))?;
            std::fs::rename(&tmp, &p).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                failed("rename symlink into place", &p, e)
            })
        }
        .boxed()
    }

    fn remove<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<()>> {
        async move {
            let p = self.real_path(path);
            let res = match std::fs::symlink_metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => Err(e),
                Ok(md) if md.is_dir() => std::fs::remove_dir_all(&p),
                Ok(_) => std::fs::remove_file(&p),
            };
            res.map_err(|e| failed("remove", &p, e))
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
            let p = self.real_path(path);
            if let Some(m) = mode {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m))
                    .map_err(|e| failed("chmod", &p, e))?;
            }
            chown(&p, owner)
        }
        .boxed()
    }

    fn path_for_command(&self, path: &str) -> String {
        self.real_path(path).display().to_string()
    }

    fn owner_ids<'a>(
        &'a self,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, TResult<(Option<u32>, Option<u32>)>> {
        async move { resolve_ids(owner) }.boxed()
    }

    fn is_root(&self) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn tcp_probe<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, TResult<bool>> {
        async move {
            let connect = tokio::net::TcpStream::connect((host, port));
            Ok(matches!(
                tokio::time::timeout(timeout, connect).await,
                Ok(Ok(_))
            ))
        }
        .boxed()
    }

    fn backup<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<String>>> {
        async move {
            let p = self.real_path(path);
            if !p.is_file() {
                return Ok(None);
            }
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let name = format!("{path}.{stamp}~");
            let dest = self.real_path(&name);
            std::fs::copy(&p, &dest).map_err(|e| failed("backup", &p, e))?;
            Ok(Some(name))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn paths_live_below_the_root_and_stat_reports_host_paths() {
        let dir = tempfile::tempdir().unwrap();
        let t = LocalTransport::new(Some(dir.path().to_path_buf()));
        rt().block_on(async {
            t.mkdir("/opt/app", 0o750).await.unwrap();
            assert!(dir.path().join("opt/app").is_dir());
            let owner = Ownership::default();
            t.write_file("/opt/app/a.conf", b"x=1\n", 0o640, &owner)
                .await
                .unwrap();
            let st = t.stat("/opt/app/a.conf").await.unwrap().unwrap();
            assert_eq!((st.kind, st.mode, st.size), (FileKind::File, 0o640, 4));
            t.symlink("/opt/app/a.conf", "/opt/app/current")
                .await
                .unwrap();
            let link = t.stat("/opt/app/current").await.unwrap().unwrap();
            assert_eq!(link.kind, FileKind::Symlink);
            assert_eq!(link.link_target.as_deref(), Some("/opt/app/a.conf"));
            assert_eq!(
                t.read_file("/opt/app/current").await.unwrap().unwrap(),
                b"x=1\n"
            );
            t.remove("/opt/app").await.unwrap();
            t.remove("/opt/app").await.unwrap();
            assert!(t.stat("/opt/app").await.unwrap().is_none());
        });
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = LocalTransport::new(Some(dir.path().to_path_buf()));
        std::fs::write(dir.path().join("f"), "old").unwrap();
        let bad_owner = Ownership {
            owner: Some("no-such-user-zdm".into()),
            group: None,
        };
        rt().block_on(async {
            let err = t.write_file("/f", b"new", 0o644, &bad_owner).await;
            assert!(err.is_err());
            let err = t
                .write_file("/missing/dir/f", b"new", 0o644, &Ownership::default())
                .await
                .unwrap_err();
            assert!(err.to_string().contains("does not exist"), "{err}");
        });
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f")).unwrap(),
            "old"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn commands_get_stdin_rc_output_and_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let t = LocalTransport::new(Some(dir.path().to_path_buf()));
        rt().block_on(async {
            let out = t
                .run(CommandSpec {
                    shell: Some("cat; echo err >&2; pwd; exit 3".into()),
                    stdin: Some(b"in\n".to_vec()),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(out.rc, 3);
            let pwd = dir.path().canonicalize().unwrap();
            assert_eq!(out.stdout, format!("in\n{}\n", pwd.display()));
            assert_eq!(out.stderr, "err\n");
            let err = t
                .run(CommandSpec {
                    argv: vec!["sleep".into(), "5".into()],
                    timeout: Some(Duration::from_millis(200)),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert!(err.to_string().contains("timed out"), "{err}");
            assert_eq!(
                t.checksum("/nothing").await.unwrap(),
                None,
                "checksum of a missing file"
            );
        });
    }
}
