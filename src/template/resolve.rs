//! The `resolve` filter: `{{ ansible_host | resolve }}` turns an inventory hostname into the
//! address clients see (proxy topologies list addresses, not the names the inventory uses).
//!
//! WHY here and not with the host facts: it runs on the control machine, from a template,
//! and needs nothing of a module; keeping it in the template layer lets `modules` depend on
//! `template` without `template` reaching back into `modules`.

use std::net::{IpAddr, ToSocketAddrs};

/// Resolves a hostname to an address on the control machine (literal addresses pass
/// through). IPv4 is preferred because proxy topologies are compared as written and most
/// fleets are addressed over IPv4; a name with only IPv6 addresses gets its first one.
pub fn resolve_address(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.parse::<IpAddr>().is_ok() {
        return Ok(name.to_string());
    }
    let addrs: Vec<IpAddr> = (name, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host name '{name}': {e}"))?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| a.to_string())
        .ok_or_else(|| format!("host name '{name}' has no address"))
}

/// The `resolve` template filter: `{{ ansible_host | resolve }}`.
pub(super) fn resolve_filter(name: String) -> Result<String, minijinja::Error> {
    resolve_address(&name)
        .map_err(|m| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_pass_and_names_resolve() {
        assert_eq!(resolve_address("10.1.2.3").unwrap(), "10.1.2.3");
        assert_eq!(resolve_address("::1").unwrap(), "::1");
        assert_eq!(resolve_address("localhost").unwrap(), "127.0.0.1");
        let e = resolve_address("no-such-host.invalid").unwrap_err();
        assert!(e.contains("no-such-host.invalid"), "{e}");
    }
}
