//! Everything the playbook mode loads and checks before the first task runs: `-e`, the
//! inventory with the connection flags below it, the playbooks and their `group_vars`/
//! `host_vars`, and the templates' preflight. Each refusal carries its exit code.

use super::args::PlaybookArgs;
use super::extra_vars::parse_extra_vars;
use crate::cli::exit;
use crate::inventory::Inventory;
use crate::playbook::Playbook;
use crate::template::Templar;
use crate::vars::Vars;

/// Everything loaded and checked before the first task runs.
pub(super) struct Prepared {
    pub(super) extra: Vars,
    pub(super) inventory: Inventory,
    pub(super) books: Vec<Playbook>,
    pub(super) templar: Templar,
}

/// Loads options, inventory and playbooks; an error carries its exit code.
pub(super) fn prepare(args: &PlaybookArgs) -> Result<Prepared, (u8, String)> {
    if args.playbooks.is_empty() {
        return Err((
            exit::BAD_OPTIONS,
            "no playbook given (usage: zdm-run [OPTIONS] PLAYBOOK...)".into(),
        ));
    }
    let extra = parse_extra_vars(&args.extra_vars).map_err(|e| (exit::BAD_OPTIONS, e))?;
    let parse_err = |e: String| (exit::PARSE_ERROR, e);
    let mut inventory =
        Inventory::load_all(&args.inventory).map_err(|e| parse_err(e.to_string()))?;
    inventory.defaults = connection_defaults(args);
    for p in &args.playbooks {
        if !p.exists() {
            return Err((exit::ERROR, missing_playbook(p)));
        }
    }
    let mut books = Vec::new();
    for p in &args.playbooks {
        books.push(Playbook::load(p).map_err(|e| parse_err(e.to_string()))?);
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        inventory
            .add_vars_dir(dir)
            .map_err(|e| parse_err(e.to_string()))?;
    }
    let templar = Templar::new();
    for b in &books {
        crate::playbook::preflight(b, &templar).map_err(|e| parse_err(e.to_string()))?;
    }
    Ok(Prepared {
        extra,
        inventory,
        books,
        templar,
    })
}

/// The message for a playbook that does not exist. A bare word (no `/`, no extension) was
/// most likely meant as a subcommand (`zdm-run valdate`): the commands are listed, with the
/// closest one.
fn missing_playbook(p: &std::path::Path) -> String {
    let word = p.display().to_string();
    let mut msg = format!("the playbook: {word} could not be found");
    if word.contains('/') || p.extension().is_some() {
        return msg;
    }
    use clap::CommandFactory;
    let names: Vec<String> = crate::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    msg.push_str(&format!(
        "; '{word}' is no command either (commands: {})",
        names.join(", ")
    ));
    let closest = names
        .iter()
        .map(|n| (crate::edit_distance::edit_distance(&word, n), n))
        .min()
        .filter(|(d, n)| *d <= n.len() / 2);
    if let Some((_, n)) = closest {
        msg.push_str(&format!("; did you mean '{n}'?"));
    }
    msg
}

/// `-u`, `-c` and `--private-key` as connection variables below every inventory variable.
fn connection_defaults(args: &PlaybookArgs) -> Vars {
    let mut out = Vars::new();
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.insert(k.into(), serde_json::Value::String(v));
        }
    };
    set("ansible_user", args.user.clone());
    set("ansible_connection", args.connection.clone());
    set(
        "ansible_ssh_private_key_file",
        args.private_key.as_ref().map(|p| p.display().to_string()),
    );
    out
}
