//! The lower half of the layering stated in the Layout section of `lib.rs`, checked: a lower module
//! that names a higher one would bring an import cycle back, and nothing else would notice.
//!
//! The check reads the source files and collects the modules named as `crate::NAME` in code
//! (comments may mention anything): that is how this crate reaches another module, in a `use`
//! or in a path. `super::` never leaves the module, so it needs no rule.

use std::path::{Path, PathBuf};

/// Each lower module (a folder or a file under `src/`) with the higher modules it must not name.
const RULES: &[(&str, &[&str])] = &[
    ("inventory", &["migration", "gates", "data"]),
    ("output.rs", &["migration", "gates", "data"]),
    ("plan.rs", &["migration", "gates", "data"]),
    ("gates", &["migration"]),
    (
        "data",
        &["migration", "gates", "output", "inventory", "cli"],
    ),
];

/// The `.rs` files of `path`: the file itself, or every file under the folder.
fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
        let p = entry.expect("directory entry").path();
        if p.is_dir() {
            files.extend(sources(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            files.push(p);
        }
    }
    files
}

/// The modules `code` names as `crate::NAME`, leaving out what follows `//` on each line.
fn named_modules(code: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for line in code.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(&rest[..end]);
        }
    }
    names
}

#[test]
fn lower_modules_do_not_name_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut breaks = Vec::new();
    for (lower, higher) in RULES {
        for file in sources(&src.join(lower)) {
            let relative = file.strip_prefix(&src).expect("under src/");
            let code = std::fs::read_to_string(&file).expect("source file");
            for name in named_modules(&code) {
                if higher.contains(&name) {
                    breaks.push(format!("{} names crate::{name}", relative.display()));
                }
            }
        }
    }
    assert!(breaks.is_empty(), "{}", breaks.join("\n"));
}

#[test]
fn a_module_is_named_by_its_path_in_code_only() {
    let code = "use crate::gates::Check;\n\
                let dir = crate::migration_dir(); // see crate::data\n\
                // crate::output\n";
    assert_eq!(named_modules(code), ["gates", "migration_dir"]);
}
