//! The shape of a module's arguments, checked when the playbook is loaded so that a typo or a
//! wrong type is refused with file, line and column before anything runs. Each module file
//! declares its own [`ModuleSpec`]; `registry` lists them.

/// The shape a YAML value must have. Strings are always accepted where a number or boolean
/// is expected *if they are templates* (`"{{ port }}"`), since their type is only known later.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Anything.
    Any,
    /// A string, number or boolean.
    Scalar,
    /// A boolean (or yes/no/true/false text, or a template).
    Bool,
    /// An integer (or a template).
    Int,
    /// A number (or a template).
    Number,
    /// One scalar or a list of scalars.
    ScalarList,
    /// One integer or a list of integers (`status_code`).
    IntList,
    /// A mapping with any keys.
    Mapping,
    /// One of a fixed set of words (or a template).
    OneOf(&'static [&'static str]),
    /// A list of tasks.
    Tasks,
    /// A list of handlers (tasks that may also `listen`).
    Handlers,
    /// `serial`: an integer, a percentage like `"30%"`, or a list of those.
    Serial,
}

/// One module's arguments.
#[derive(Debug)]
pub struct ModuleSpec {
    pub name: &'static str,
    /// Accepts a bare string (`command: ls -l`) stored under `_raw`.
    pub free_form: bool,
    /// Accepts any argument name (`set_fact`).
    pub any_args: bool,
    pub args: &'static [(&'static str, Kind)],
    /// At least one of these must be present (empty: no requirement).
    pub one_of_required: &'static [&'static str],
    /// All of these must be present.
    pub required: &'static [&'static str],
}
