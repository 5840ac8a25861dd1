//! A secret stays masked after the filters that change its text (issue 15, item 6): each of
//! `b64encode`, `upper`, `lower`, `to_json`, `quote`, `urlencode` and `regex_replace` is fed the
//! secret, and its output goes into every kind of output (debug messages, a command's stdout,
//! a file diff, a failure message; human with -vv and JSON; check mode and a real run).

use base64::Engine as _;
use zdm_testkit::{binaries::proxy_binary, local_fleet::LocalFleet};

/// Has a space, quotes, a slash and a plus, so every filter changes its text.
const SECRET: &str = r#"Pw "q" /x y+z"#;

fn forms() -> Vec<(&'static str, String)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        ("literal", SECRET.to_string()),
        ("b64encode", b64(SECRET)),
        ("b64encode of a longer text", b64(&format!("user:{SECRET}"))),
        ("upper", SECRET.to_uppercase()),
        ("lower", SECRET.to_lowercase()),
        ("to_json", r#"Pw \"q\" /x y+z"#.to_string()),
        ("quote", r#"'Pw "q" /x y+z'"#.to_string()),
        ("urlencode", "Pw%20%22q%22%20/x%20y%2Bz".to_string()),
        ("regex_replace", r#"Pw_"q"_/x_y+z"#.to_string()),
        ("regex_replace (partial)", r#"PW "q" /x y+z"#.to_string()),
    ]
}

const PLAYBOOK: &str = r#"
- hosts: h1
  vars:
    api_password: 'Pw "q" /x y+z'
    shown:
      - "{{ api_password | b64encode }}"
      - "{{ ('user:' ~ api_password) | b64encode }}"
      - "{{ api_password | upper }}"
      - "{{ api_password | lower }}"
      - "{{ {'pw': api_password} | to_json }}"
      - "{{ api_password | quote }}"
      - "{{ api_password | urlencode }}"
      - "{{ api_password | regex_replace(' ', '_') }}"
      - "{{ api_password | regex_replace('^Pw', 'PW') }}"
  tasks:
    - name: show every form
      debug: {msg: "{{ item }}"}
      loop: "{{ shown }}"
    - name: print every form from a command
      shell: "echo {{ shown | map('quote') | join(' ') }}"
      changed_when: false
    - name: write every form to a file
      copy:
        content: "{{ shown | join('\n') }}\n"
        dest: /forms.txt
        mode: "0600"
    - name: fail naming a form
      fail: {msg: "bad credentials {{ api_password | urlencode }} / {{ api_password | regex_replace(' ', '_') }}"}
      ignore_errors: true
"#;

/// Every string in a JSON document (the JSON text escapes quotes, so it is read back).
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

#[test]
fn a_secret_is_masked_after_every_filter_that_changes_its_text_in_every_output() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook("forms.yml", PLAYBOOK);
    let pbs = pb.to_str().unwrap();
    let runs = [
        ("check human", fleet.run(&[pbs, "--check", "--diff", "-vv"])),
        (
            "check json",
            fleet.run(&[pbs, "--check", "--diff", "--output", "json"]),
        ),
        ("real human", fleet.run(&[pbs, "--diff", "-vv"])),
        ("real json", fleet.run(&[pbs, "--diff", "--output", "json"])),
    ];
    for (what, run) in &runs {
        run.assert_code(0);
        let mut texts = vec![run.all()];
        if what.ends_with("json") {
            strings(&run.json(), &mut texts);
        }
        for (filter, form) in forms() {
            for t in &texts {
                assert!(
                    !t.contains(&form),
                    "{what}: the {filter} form {form:?} leaked:\n{t}"
                );
            }
        }
        assert!(
            run.all().contains("********"),
            "{what}: no mask shown:\n{}",
            run.all()
        );
    }
    // The file holds what the filters produced (masking is for output only).
    let written = std::fs::read_to_string(fleet.host_file("h1", "/forms.txt")).unwrap();
    assert!(written.contains("Pw%20%22q%22%20/x%20y%2Bz") && written.contains(r#"Pw_"q"_/x_y+z"#));
}

/// `zdm-proxy --check-config` lists every problem of a config holding passwords, including a
/// password written under a misspelt key and one put in a numeric setting, and prints none of
/// them in any form.
#[test]
fn zdm_proxy_check_config_lists_every_problem_and_never_prints_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zdm-proxy.yml");
    std::fs::write(
        &cfg,
        "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\n\
         origin_username: app\norigin_password: Orig-Pa55word\n\
         target_pasword: Targ-Pa55word\norigin_port: Orig-Pa55word\nmetrics_port: 70000\n",
    )
    .unwrap();
    let mut proxy = std::process::Command::new(proxy_binary());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ZDM_")) {
        proxy.env_remove(k);
    }
    let out = proxy
        .args(["--check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 errors:"), "{text}");
    assert!(
        text.contains("did you mean `target_password`?")
            && text.contains("port 70000 is out of range")
            && text.contains("`origin_port`"),
        "{text}"
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for pw in ["Orig-Pa55word", "Targ-Pa55word"] {
        for form in [
            pw.to_string(),
            b64(pw),
            pw.to_uppercase(),
            pw.to_lowercase(),
        ] {
            assert!(!text.contains(&form), "{form} printed:\n{text}");
        }
    }
}
