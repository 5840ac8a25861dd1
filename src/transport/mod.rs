//! How tasks reach a host.
//!
//! Every operation a module needs is a method here, so modules never touch the local
//! filesystem or spawn processes themselves: the same module code works over `local` now and
//! over SSH later. Methods are async and return boxed futures so the trait stays
//! object-safe (`Arc<dyn Transport>`), which an SSH session pool will need.

mod local;
mod pool;
pub mod ssh;

use std::time::Duration;

use futures::future::BoxFuture;

pub use local::LocalTransport;
pub use pool::Pool;
pub use ssh::SshTransport;

/// Quotes one word for `/bin/sh` as Python's `shlex.quote` does, which is what Ansible's `quote`
/// filter writes (a `'` becomes `'"'"'`). The `quote` filter, the `command`/`shell` modules and
/// the redactor (which masks this form of a secret) all use this one. The SSH transport quotes
/// its own command lines with [`ssh::shell_quote`] (a `'` becomes `'\''`): the same word to the
/// shell, other bytes.
pub fn shlex_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// A transport failure. `Unreachable` means the host could not be contacted at all (Ansible's
/// "unreachable", exit code 3); `Failed` is an operation that reached the host and failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("host unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Failed(String),
}

pub type TResult<T> = Result<T, TransportError>;

/// Output of a command.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct CommandSpec {
    /// Run through `/bin/sh -c` (shell) or as an argv (command).
    pub shell: Option<String>,
    pub argv: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    pub chdir: Option<String>,
    pub timeout: Option<Duration>,
}

/// File metadata as modules need it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStat {
    pub kind: FileKind,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Where a symlink points (`None` for other kinds).
    pub link_target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// Owner to set on a written file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ownership {
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// Operations on one host.
pub trait Transport: Send + Sync {
    /// A short description for messages (`local`, `ssh root@10.0.0.1:22`).
    fn describe(&self) -> String;

    /// Runs a command, waiting at most `spec.timeout`.
    fn run(&self, spec: CommandSpec) -> BoxFuture<'_, TResult<CommandOutput>>;

    /// Reads a whole file; `Ok(None)` if it does not exist.
    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<Vec<u8>>>>;

    /// Replaces `path` atomically: the bytes go to a temporary file in the same directory,
    /// get `mode` and ownership, and are renamed over `path`. A failure at any step leaves
    /// the old file untouched and removes the temporary file.
    fn write_file<'a>(
        &'a self,
        path: &'a str,
        data: &'a [u8],
        mode: u32,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, TResult<()>>;

    /// Metadata without following a final symlink; `Ok(None)` if nothing is there.
    fn stat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<FileStat>>>;

    /// sha256 of a file's content (hex); `Ok(None)` if it does not exist.
    fn checksum<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<String>>>;

    /// Creates a directory and its parents with `mode` (existing ones are kept).
    fn mkdir<'a>(&'a self, path: &'a str, mode: u32) -> BoxFuture<'a, TResult<()>>;

    /// Creates or replaces a symlink `path -> target`.
    fn symlink<'a>(&'a self, target: &'a str, path: &'a str) -> BoxFuture<'a, TResult<()>>;

    /// Removes a file, symlink or directory tree; absent is fine.
    fn remove<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<()>>;

    /// Sets permission bits and ownership of an existing path.
    fn set_attrs<'a>(
        &'a self,
        path: &'a str,
        mode: Option<u32>,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, TResult<()>>;

    /// How a command running on the host names `path` (the local transport with a root
    /// maps it below the root; a remote host uses it as is).
    fn path_for_command(&self, path: &str) -> String;

    /// Numeric uid/gid of the requested owner and group, as the host resolves them
    /// (`None` where not requested).
    fn owner_ids<'a>(
        &'a self,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, TResult<(Option<u32>, Option<u32>)>>;

    /// True when this connection acts as root (owner changes are only applied then).
    fn is_root(&self) -> bool;

    /// The user commands run as through privilege escalation (`become`), if any. The local
    /// connection runs everything as the user running zdm-run.
    fn become_user(&self) -> Option<&str> {
        None
    }

    /// Tries a TCP connection *from the host* to `host:port` (for `wait_for`).
    fn tcp_probe<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, TResult<bool>>;

    /// Copies `path` to `path.<timestamp>~` (the `backup: true` option); returns the copy.
    fn backup<'a>(&'a self, path: &'a str) -> BoxFuture<'a, TResult<Option<String>>>;
}
