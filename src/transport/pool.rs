//! Opening transports from host variables, once per host.
//!
//! A task asks the pool for the transport of a host; the pool opens it on first use and
//! hands out the same `Arc` afterwards, so a remote connection (SSH, next) is set up once per
//! run rather than once per task.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{LocalTransport, Transport, TransportError};
use crate::vars::{display, Vars};

/// The connection settings that identify one transport.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Local { root: Option<PathBuf> },
}

/// Transports by connection settings.
#[derive(Default)]
pub struct Pool {
    open: Mutex<HashMap<Key, Arc<dyn Transport>>>,
    ssh: Arc<super::ssh::SshPool>,
}

impl Pool {
    /// The transport for a host described by its variables (`ansible_connection`,
    /// `zdm_local_root`, later `ansible_host`/`ansible_user`/...).
    pub fn connect(&self, vars: &Vars) -> Result<Arc<dyn Transport>, TransportError> {
        let conn = vars
            .get("ansible_connection")
            .map(display)
            .unwrap_or_else(|| "ssh".into());
        let key = match conn.as_str() {
            "local" => Key::Local {
                root: vars
                    .get("zdm_local_root")
                    .map(display)
                    .filter(|r| !r.is_empty())
                    .map(PathBuf::from),
            },
            "ssh" | "smart" | "paramiko" => return super::ssh::connect(vars, &self.ssh),
            other => {
                return Err(TransportError::Unreachable(format!(
                    "connection '{other}' is not available in this build (use ansible_connection: local)"
                )))
            }
        };
        let mut open = self.open.lock().expect("pool lock");
        let t = open.entry(key.clone()).or_insert_with(|| match key {
            Key::Local { root } => Arc::new(LocalTransport::new(root)),
        });
        Ok(t.clone())
    }

    /// The control machine itself (`delegate_to: localhost`), without any per-host root.
    pub fn control_machine(&self) -> Arc<dyn Transport> {
        let mut open = self.open.lock().expect("pool lock");
        open.entry(Key::Local { root: None })
            .or_insert_with(|| Arc::new(LocalTransport::new(None)))
            .clone()
    }
}
