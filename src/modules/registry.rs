//! Every name a task may use as its module: the module's argument spec (checked when the
//! playbook is loaded) and its implementation (run by the run engine), in one table.
//!
//! WHY one table: the loader and the runner look names up here both, so a name cannot be
//! accepted by the one and unknown to the other. Each module file declares its own spec; this
//! file only lists them.

use super::spec::{Kind, ModuleSpec};
use super::zdm::{
    cdm, client_gate, config_change, data, health_gate, peers_ready, phase, preflight, proxy_binary,
};
use super::{command, facts, fetch, file, files_common, info, net, package, service, Module};

/// One name a task may use.
struct Entry {
    spec: &'static ModuleSpec,
    /// What runs the task. Modules keep no state between tasks, so one shared value serves
    /// every task. `None` for the task keywords written like modules (below), which the
    /// playbook loader expands or the run engine handles itself.
    module: Option<&'static dyn Module>,
}

impl Entry {
    const fn module(spec: &'static ModuleSpec, module: &'static dyn Module) -> Entry {
        Entry {
            spec,
            module: Some(module),
        }
    }

    const fn keyword(spec: &'static ModuleSpec) -> Entry {
        Entry { spec, module: None }
    }
}

static REGISTRY: &[Entry] = &[
    // Files and commands.
    Entry::module(&files_common::TEMPLATE_SPEC, &files_common::Template),
    Entry::module(&files_common::COPY_SPEC, &files_common::Copy),
    Entry::module(&file::SPEC, &file::File),
    Entry::module(&command::SPEC, &command::Command { shell: false }),
    Entry::module(&command::SHELL_SPEC, &command::Command { shell: true }),
    Entry::module(&fetch::SPEC, &fetch::Fetch),
    // Modules that only look or decide.
    Entry::module(&info::SET_FACT_SPEC, &info::SetFact),
    Entry::module(&info::DEBUG_SPEC, &info::Debug),
    Entry::module(&info::ASSERT_SPEC, &info::Assert),
    Entry::module(&info::FAIL_SPEC, &info::Fail),
    Entry::module(&info::PAUSE_SPEC, &info::Pause),
    Entry::module(&net::URI_SPEC, &net::Uri),
    Entry::module(&net::WAIT_FOR_SPEC, &net::WaitFor),
    Entry::module(&facts::SPEC, &facts::GatherFacts),
    Entry::module(&facts::SETUP_SPEC, &facts::GatherFacts),
    // The fleet: packages, services, the proxy binary.
    Entry::module(&package::SPEC, &package::Package),
    Entry::module(&package::APT_SPEC, &package::Package),
    Entry::module(&service::SPEC, &service::Service),
    Entry::module(&proxy_binary::SPEC, &proxy_binary::ZdmProxyBinary),
    // The migration's own modules: gates, data, the phase record, live settings.
    Entry::module(&preflight::SPEC, &preflight::ZdmPreflight),
    Entry::module(&health_gate::SPEC, &health_gate::ZdmHealthGate),
    Entry::module(&client_gate::SPEC, &client_gate::ZdmClientGate),
    Entry::module(&peers_ready::SPEC, &peers_ready::ZdmPeersReady),
    Entry::module(&data::MIGRATE_SPEC, &data::ZdmMigrate),
    Entry::module(&data::VALIDATE_SPEC, &data::ZdmValidate),
    Entry::module(&cdm::SPEC, &cdm::ZdmCdm),
    Entry::module(&phase::SPEC, &phase::ZdmPhase),
    Entry::module(&config_change::SPEC, &config_change::ZdmConfigChange),
    // Task keywords written like modules.
    Entry::keyword(&INCLUDE_TASKS),
    Entry::keyword(&IMPORT_TASKS),
    Entry::keyword(&INCLUDE_ROLE),
    Entry::keyword(&IMPORT_ROLE),
    Entry::keyword(&META),
];

fn entry(name: &str) -> Option<&'static Entry> {
    let short = name.strip_prefix("ansible.builtin.").unwrap_or(name);
    REGISTRY.iter().find(|e| e.spec.name == short)
}

/// Looks a module's spec up by name (also accepting the `ansible.builtin.` prefix).
pub fn module_spec(name: &str) -> Option<&'static ModuleSpec> {
    entry(name).map(|e| e.spec)
}

/// The module implementing `name` (names were checked when the playbook was loaded); `None`
/// for a task keyword.
pub fn module(name: &str) -> Option<&'static dyn Module> {
    entry(name).and_then(|e| e.module)
}

// `include_tasks`/`import_tasks` and the role keywords are expanded when the playbook is
// loaded (all static here).
static INCLUDE_TASKS: ModuleSpec = ModuleSpec {
    name: "include_tasks",
    free_form: true,
    any_args: false,
    args: &[("file", Kind::Scalar)],
    one_of_required: &["file", "_raw"],
    required: &[],
};

static IMPORT_TASKS: ModuleSpec = ModuleSpec {
    name: "import_tasks",
    ..INCLUDE_TASKS
};

static INCLUDE_ROLE: ModuleSpec = ModuleSpec {
    name: "include_role",
    free_form: false,
    any_args: false,
    args: &[("name", Kind::Scalar), ("tasks_from", Kind::Scalar)],
    one_of_required: &[],
    required: &["name"],
};

static IMPORT_ROLE: ModuleSpec = ModuleSpec {
    name: "import_role",
    ..INCLUDE_ROLE
};

/// `meta: flush_handlers` / `end_host` / `noop`: handled by the run engine itself.
static META: ModuleSpec = ModuleSpec {
    name: "meta",
    free_form: true,
    any_args: false,
    args: &[],
    one_of_required: &["_raw"],
    required: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_listed_once() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|e| e.spec.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a name is listed twice: {names:?}");
    }

    #[test]
    fn names_resolve_with_and_without_the_builtin_prefix() {
        assert_eq!(module_spec("ansible.builtin.copy").unwrap().name, "copy");
        assert!(module("ansible.builtin.command").is_some());
        assert!(module("setup").is_some());
        assert!(module_spec("meta").is_some());
        assert!(module("meta").is_none(), "meta is the run engine's");
        assert!(module_spec("no_such_module").is_none());
    }
}
