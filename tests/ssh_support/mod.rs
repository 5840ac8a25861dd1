//! The orchestrator's own SSH transport to a sandbox host, as the generated inventory
//! configures it (the rest of the sandbox is `zdm_testkit`'s).

use std::sync::Arc;

use zdm_run::transport::ssh::{SshPool, SshTarget, SshTransport};
use zdm_testkit::Sandbox;

pub fn transport(sb: &Sandbox, host: &str, pool: &Arc<SshPool>) -> SshTransport {
    let target = SshTarget::from_vars(host, &sb.ssh_vars(host)).expect("sandbox vars are valid");
    SshTransport::new(target, pool.clone())
}
