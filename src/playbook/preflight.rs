//! Checks that need more than the YAML: template files exist and parse, conditions are valid
//! Jinja, vars files load. Run before the first task so that a typo in a file used by the
//! last play cannot stop a run half-way through.

use serde_json::Value;

use super::{Playbook, PlaybookError, Task};
use crate::template::{is_template, Templar};

/// Checks every play of `book`; the error names the playbook, play and task.
pub fn preflight(book: &Playbook, templar: &Templar) -> Result<(), PlaybookError> {
    for play in &book.plays {
        let at = |t: &Task, msg: String| {
            PlaybookError(format!(
                "{}: play '{}': task '{}': {msg}",
                book.path.display(),
                play.name,
                t.display_name()
            ))
        };
        let play_keywords = play
            .any_errors_fatal
            .template()
            .into_iter()
            .chain(play.max_fail_percentage.as_ref().and_then(|n| n.template()));
        for tpl in play_keywords {
            tpl.check_syntax(templar).map_err(PlaybookError)?;
        }
        for f in &play.vars_files {
            if !is_template(&f.display().to_string()) {
                crate::inventory::read_vars_file(f).map_err(|e| {
                    PlaybookError(format!(
                        "{}: play '{}': vars_files: {}",
                        book.path.display(),
                        play.name,
                        e.0
                    ))
                })?;
            }
        }
        for t in play.all_tasks(true) {
            for d in [
                t.base_dir.join("templates"),
                t.base_dir.clone(),
                t.base_dir.join("..").join("templates"),
            ] {
                templar.add_search_dir(&d);
            }
            let keywords = [&t.no_log, &t.run_once, &t.ignore_errors]
                .into_iter()
                .chain(t.check_mode.as_ref())
                .filter_map(|f| f.template());
            for tpl in keywords {
                tpl.check_syntax(templar).map_err(PlaybookError)?;
            }
            let conditions = t
                .when
                .iter()
                .map(|c| ("when", c))
                .chain(t.until.iter().map(|c| ("until", c)))
                .chain(t.changed_when.iter().map(|c| ("changed_when", c)))
                .chain(t.failed_when.iter().map(|c| ("failed_when", c)));
            for (kind, c) in conditions {
                templar
                    .check_condition(&format!("{kind} '{c}'"), c)
                    .map_err(|e| at(t, e.0))?;
            }
            if t.module == "meta" {
                let action = t
                    .args
                    .get("_raw")
                    .map(crate::vars::display)
                    .unwrap_or_default();
                if !matches!(action.as_str(), "flush_handlers" | "end_host" | "noop") {
                    return Err(at(
                        t,
                        format!(
                            "meta: '{action}' is not supported (flush_handlers, end_host, noop)"
                        ),
                    ));
                }
            }
            if t.module == "assert" {
                let that: Vec<String> = match t.args.get("that") {
                    Some(Value::Array(a)) => a.iter().map(crate::vars::display).collect(),
                    Some(v) => vec![crate::vars::display(v)],
                    None => vec![],
                };
                for c in &that {
                    templar
                        .check_condition(&format!("that '{c}'"), c)
                        .map_err(|e| at(t, e.0))?;
                }
            }
            check_strings(templar, &Value::Object(t.args.clone())).map_err(|e| at(t, e))?;
            if t.module == "template" {
                let src = t
                    .args
                    .get("src")
                    .map(crate::vars::display)
                    .unwrap_or_default();
                if !is_template(&src) {
                    let path = crate::modules::find_src(&t.base_dir, "templates", &src)
                        .map_err(|e| at(t, e.to_string()))?;
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        at(t, format!("cannot read template {}: {e}", path.display()))
                    })?;
                    templar.check_syntax(&src, &text).map_err(|e| at(t, e.0))?;
                }
            }
            if t.module == "copy" && !t.args.contains_key("content") {
                let src = t
                    .args
                    .get("src")
                    .map(crate::vars::display)
                    .unwrap_or_default();
                if !is_template(&src) {
                    crate::modules::find_src(&t.base_dir, "files", &src)
                        .map_err(|e| at(t, e.to_string()))?;
                }
            }
        }
    }
    Ok(())
}

/// Every templated argument string must at least parse.
fn check_strings(templar: &Templar, v: &Value) -> Result<(), String> {
    match v {
        Value::String(s) if is_template(s) => templar
            .check_syntax(&format!("argument '{s}'"), s)
            .map_err(|e| e.0),
        Value::Array(a) => a.iter().try_for_each(|x| check_strings(templar, x)),
        Value::Object(o) => o.values().try_for_each(|x| check_strings(templar, x)),
        _ => Ok(()),
    }
}
