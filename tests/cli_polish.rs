//! What users expect of a command-line tool (issue 15, item 4): `--version` names the commit
//! and the build date (both binaries), shell completions and a man page from the real flags.

use std::process::Command;
use zdm_testkit::binaries::proxy_binary;

fn stdout_of(c: &mut Command) -> String {
    let out = c.output().expect("run");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `NAME VERSION (commit HEX, built YYYY-MM-DD)`, and the commit is this checkout's HEAD.
fn assert_version_line(name: &str, line: &str) {
    let rest = line
        .trim()
        .strip_prefix(&format!("{name} {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, date) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{line}"));
    let date = date.strip_suffix(')').unwrap_or_else(|| panic!("{line}"));
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    assert_eq!(
        commit,
        String::from_utf8_lossy(&head.stdout).trim(),
        "{line}"
    );
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
        "{line}"
    );
    assert!(date.starts_with("20"), "{line}");
}

#[test]
fn both_binaries_print_version_commit_and_build_date() {
    let run = stdout_of(Command::new(env!("CARGO_BIN_EXE_zdm-run")).arg("--version"));
    assert_version_line("zdm-run", &run);
    let proxy = stdout_of(Command::new(proxy_binary()).arg("--version"));
    assert_version_line("zdm-proxy", &proxy);
}

#[test]
fn completions_for_bash_zsh_fish_and_a_man_page_list_the_real_flags() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef zdm-run"),
        ("fish", "complete -c zdm-run"),
    ] {
        let script =
            stdout_of(Command::new(env!("CARGO_BIN_EXE_zdm-run")).args(["completions", shell]));
        assert!(script.contains(marker), "{shell}:\n{script}");
        // fish writes long options as `-l check`, the others as `--check`.
        let long = |f: &str| match shell {
            "fish" => format!("-l {f}"),
            _ => format!("--{f}"),
        };
        for flag in [
            long("check"),
            long("limit"),
            "status".into(),
            "completions".into(),
        ] {
            assert!(script.contains(&flag), "{shell} completion lacks {flag}");
        }
    }
    let man = stdout_of(Command::new(env!("CARGO_BIN_EXE_zdm-run")).arg("man"));
    assert!(man.contains(".TH zdm-run"), "{man}");
    assert!(
        man.contains("\\-\\-check") && man.contains("completions"),
        "{man}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_zdm-run"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    // A value the option parser rejects: a usage error, 2, as ansible-core returns for one.
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a bad option"
    );
}
