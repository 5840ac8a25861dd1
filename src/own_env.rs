//! zdm-run's own environment variables: `ZDMRUN_*`.
//!
//! WHY a prefix of its own: zdm-proxy reads every `ZDM_*` variable as a setting and refuses
//! the ones it does not know. zdm-run used to read `ZDM_INVENTORY`, `ZDM_LOG`, ... and set
//! `ZDM_LOCAL_ROOT` for the commands of a local fleet, so a `validate: zdm-proxy
//! --check-config %s` on such a fleet failed on zdm-run's own variables. The old names are
//! still read (with a deprecation warning), and are removed from the environment of every
//! command zdm-run starts locally, so a proxy started or checked by a task never sees them.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The prefix of zdm-run's own variables.
pub const PREFIX: &str = "ZDMRUN_";
/// The prefix they had before (the proxy's).
const LEGACY_PREFIX: &str = "ZDM_";

/// zdm-run's own variables, by their name after the prefix.
pub const OWN: &[&str] = &[
    "INVENTORY",
    "LOG",
    "LOCAL_ROOT",
    "DATA_ORIGIN_PASSWORD",
    "DATA_TARGET_PASSWORD",
];

/// Old names already warned about (one warning per name and process).
static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// `ZDMRUN_<name>`.
pub fn name(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// `ZDM_<name>`, the deprecated spelling.
pub fn legacy_name(name: &str) -> String {
    format!("{LEGACY_PREFIX}{name}")
}

/// The value of `ZDMRUN_<name>`, else of the deprecated `ZDM_<name>` (with a warning on
/// stderr saying what to rename). Empty values count as unset.
pub fn var(name: &str) -> Option<String> {
    let get = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let Some(v) = get(&self::name(name)) {
        return Some(v);
    }
    let old = legacy_name(name);
    let v = get(&old)?;
    deprecated(&old, &self::name(name));
    Some(v)
}

/// Warns once that `old` is deprecated in favour of `new`.
pub fn deprecated(old: &str, new: &str) {
    let first = WARNED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(old.to_string());
    if first {
        eprintln!(
            "[DEPRECATION WARNING]: the environment variable {old} is deprecated (zdm-proxy reads \
             ZDM_* as its own settings); use {new}"
        );
    }
}

/// The deprecated names of zdm-run's own variables: never passed to a command it starts.
pub fn legacy_names() -> impl Iterator<Item = String> {
    OWN.iter().map(|n| legacy_name(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_name_wins_and_the_old_one_still_works() {
        // Names of this test only, so parallel tests see no change.
        std::env::set_var("ZDMRUN_TEST_OWN_ENV_A", "new");
        std::env::set_var("ZDM_TEST_OWN_ENV_A", "old");
        std::env::set_var("ZDM_TEST_OWN_ENV_B", "old");
        assert_eq!(var("TEST_OWN_ENV_A").as_deref(), Some("new"));
        assert_eq!(var("TEST_OWN_ENV_B").as_deref(), Some("old"));
        assert_eq!(var("TEST_OWN_ENV_C"), None);
        assert!(legacy_names().any(|n| n == "ZDM_LOCAL_ROOT"));
    }
}
