//! `-l`/`--limit`: the pattern (`@file` read as Ansible's retry files), checked against the
//! inventory before anything runs.

use crate::cli::exit;
use crate::inventory::Inventory;

/// The `--limit` pattern: `@file` is read (one pattern a line, as Ansible's retry files).
pub(super) fn limit_pattern(limit: &str) -> Result<String, String> {
    let Some(file) = limit.strip_prefix('@') else {
        return Ok(limit.to_string());
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("--limit @{file}: cannot read: {e}"))?;
    let terms: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if terms.is_empty() {
        return Err(format!("--limit @{file}: the file names no host"));
    }
    Ok(terms.join(","))
}

/// Checks `--limit` before anything runs: a limit that selects no host of the inventory is
/// an error (as ansible-playbook's "leaves us with no hosts to target"), so a typo in `-l`
/// cannot run nothing and report success. Terms that match nothing are warned about.
pub(super) fn check_limit(inventory: &Inventory, limit: &str) -> Result<(), (u8, String)> {
    crate::inventory::check_pattern(limit).map_err(|e| (exit::ERROR, format!("--limit: {e}")))?;
    for t in crate::inventory::unknown_terms(inventory, limit) {
        eprintln!("[WARNING]: Could not match supplied host pattern, ignoring: {t}");
    }
    let hosts = crate::inventory::select_hosts(inventory, limit)
        .map_err(|e| (exit::ERROR, format!("--limit: {e}")))?;
    if hosts.is_empty() {
        return Err((
            exit::ERROR,
            format!(
                "--limit '{limit}': specified inventory, host pattern and/or --limit leaves us \
                 with no hosts to target"
            ),
        ));
    }
    Ok(())
}
