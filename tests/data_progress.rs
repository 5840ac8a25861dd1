//! What a run shows while it works: progress bars with rows/s and ETA when stderr is a
//! terminal (a real pseudo-terminal from `script`), plain lines when it is not.

mod data_support;

use data_support::*;

use std::process::Command;
use zdm_testkit::{keyspace::*, unique_name, KeyspaceGuard, Sandbox};

fn validate_args(table: &str, state: &std::path::Path) -> Vec<String> {
    let env = Sandbox::load();
    let mut a: Vec<String> = ["validate", "--table", table, "--splits", "16", "--fresh"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (flag, key) in [
        ("--origin-contact-points", "ZDM_ORIGIN_CONTACT_POINTS"),
        ("--origin-port", "ZDM_ORIGIN_PORT"),
        ("--origin-username", "ZDM_ORIGIN_USERNAME"),
        ("--target-contact-points", "ZDM_TARGET_CONTACT_POINTS"),
        ("--target-port", "ZDM_TARGET_PORT"),
        ("--target-username", "ZDM_TARGET_USERNAME"),
    ] {
        a.push(flag.into());
        a.push(env.get(key).to_string());
    }
    // Slow enough (about 2 s) for the bar to be drawn while ranges finish.
    a.extend(["--origin-rate".into(), "2000".into(), "--state-dir".into()]);
    a.push(state.display().to_string());
    a
}

fn with_passwords(cmd: &mut Command) -> &mut Command {
    let env = Sandbox::load();
    cmd.env("ZDM_DATA_ORIGIN_PASSWORD", env.get("ZDM_ORIGIN_PASSWORD"))
        .env("ZDM_DATA_TARGET_PASSWORD", env.get("ZDM_TARGET_PASSWORD"))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_on_a_terminal_plain_lines_otherwise() {
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_progress");
    let _guard = KeyspaceGuard::new(&ks);
    let table = format!("{ks}.kv");
    create_schema(
        &c,
        &ks,
        &[format!("CREATE TABLE {table} (k int PRIMARY KEY, v text)")],
    )
    .await;
    load_kv(&c.origin, &table, 4000, 1_000_000).await;
    load_kv(&c.target, &table, 4000, 1_000_000).await;
    let state = tempfile::tempdir().unwrap();
    let args = validate_args(&table, state.path());

    // Not a terminal: plain lines on stderr, one per table at the end at least.
    let out = with_passwords(&mut Command::new(env!("CARGO_BIN_EXE_zdm-run")))
        .args(&args)
        .output()
        .expect("run zdm-run validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with(&format!("{table}: ")))
        .unwrap_or_else(|| panic!("no plain progress line:\n{stderr}"));
    assert!(
        last.contains("16/16 ranges, 4000 rows, ")
            && last.contains(" rows/s, ETA ")
            && last.contains("done in"),
        "{last}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal escapes in a log:\n{stderr}"
    );

    // A terminal: `script` gives the binary a pseudo-terminal; the bar redraws with escapes.
    let line = std::iter::once(env!("CARGO_BIN_EXE_zdm-run").to_string())
        .chain(args.iter().cloned())
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let out = with_passwords(&mut Command::new("script"))
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("run script (util-linux) to get a pseudo-terminal");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{tty}");
    assert!(tty.contains('\u{1b}'), "no bar drawn on a terminal:\n{tty}");
    assert!(
        tty.contains("rows/s") && tty.contains("ETA") && tty.contains("16/16 ranges"),
        "{tty}"
    );
    assert!(
        !tty.contains(&format!("{table}: 16/16 ranges")),
        "plain lines on a terminal:\n{tty}"
    );
}
