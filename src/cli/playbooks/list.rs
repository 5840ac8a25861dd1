//! `--list-hosts` and `--list-tasks`: what each play would run on and run, without running it.

use super::args::PlaybookArgs;
use super::fail_with_json;
use crate::cli::exit;
use crate::inventory::Inventory;
use crate::output::{Format, Reporter};
use crate::playbook::Playbook;
use crate::run::{RunOptions, Runner};
use crate::secrets::Redactor;
use crate::template::Templar;

/// `--list-hosts` / `--list-tasks`, formatted like ansible-playbook, or as one JSON
/// document with `--output json` (machines reading stdout always get JSON).
pub(super) fn list(
    args: &PlaybookArgs,
    inventory: &Inventory,
    books: &[Playbook],
    opts: &RunOptions,
    templar: &Templar,
    redactor: &Redactor,
) -> u8 {
    let reporter = Reporter::new(Format::Human, false, 0, false, redactor.clone());
    let mut doc = Vec::new();
    for book in books {
        let runner = Runner::new(inventory, book, opts, templar, redactor, &reporter);
        let mut plays = Vec::new();
        for play in &book.plays {
            let mut entry = serde_json::json!({"name": play.name, "pattern": play.hosts});
            if args.list_hosts {
                match runner.play_hosts(play) {
                    Ok(hosts) => entry["hosts"] = serde_json::json!(hosts),
                    Err(e) => {
                        let msg = redactor.redact(&e.to_string());
                        return fail_with_json(
                            args,
                            exit::PARSE_ERROR,
                            &msg,
                            serde_json::json!({}),
                        );
                    }
                }
            }
            if args.list_tasks {
                let tasks: Vec<serde_json::Value> = play
                    .all_tasks(false)
                    .into_iter()
                    .filter(|t| runner.tags_select(t))
                    .map(|t| serde_json::json!({"name": t.display_name(), "tags": t.tags}))
                    .collect();
                entry["tasks"] = serde_json::Value::Array(tasks);
            }
            plays.push(entry);
        }
        doc.push(serde_json::json!({"playbook": book.path.display().to_string(), "plays": plays}));
    }
    match args.output {
        Format::Json => {
            let out = serde_json::json!({"playbooks": doc});
            println!(
                "{}",
                redactor.redact(&serde_json::to_string_pretty(&out).unwrap_or_default())
            );
        }
        Format::Human => print_list(&doc),
    }
    exit::OK
}

/// The human form of [`list`]'s document, laid out as ansible-playbook prints it.
fn print_list(doc: &[serde_json::Value]) {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    for book in doc {
        println!("\nplaybook: {}", s(&book["playbook"]));
        for (i, play) in book["plays"].as_array().into_iter().flatten().enumerate() {
            println!(
                "\n  play #{} ({}): {}",
                i + 1,
                s(&play["pattern"]),
                s(&play["name"])
            );
            if let Some(hosts) = play["hosts"].as_array() {
                println!("    pattern: ['{}']", s(&play["pattern"]));
                println!("    hosts ({}):", hosts.len());
                for h in hosts {
                    println!("      {}", s(h));
                }
            }
            if let Some(tasks) = play["tasks"].as_array() {
                println!("    tasks:");
                for t in tasks {
                    let tags: Vec<String> =
                        t["tags"].as_array().into_iter().flatten().map(&s).collect();
                    println!("      {}\tTAGS: [{}]", s(&t["name"]), tags.join(", "));
                }
            }
        }
    }
}
