//! The file modules on local files: `copy` (also from `files/`) with `validate` keeping the old
//! file on failure, `file` states and modes, `owner`/`group` (applied as root), and templates
//! that include others. Local fleet (`zdm_testkit::local_fleet`), no sandbox.

use std::os::unix::fs::PermissionsExt;

use zdm_testkit::local_fleet::LocalFleet;

#[test]
fn failed_validation_keeps_the_old_file() {
    let fleet = LocalFleet::new();
    std::fs::write(fleet.host_file("h1", "/app.conf"), "old\n").unwrap();
    let pb = fleet.write_playbook(
        "validate.yml",
        r#"
- hosts: h1
  tasks:
    - copy:
        content: "new but invalid\n"
        dest: /app.conf
        validate: grep -q valid-marker %s
        backup: true
"#,
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(2);
    assert!(
        run.stdout.contains("validation of /app.conf failed"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/app.conf")).unwrap(),
        "old\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(fleet.root("h1"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("zdm"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn owner_is_applied_when_root_and_is_idempotent() {
    use std::os::unix::fs::MetadataExt;
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook(
        "owner.yml",
        r#"
- hosts: h1
  tasks:
    - copy: {content: "x\n", dest: /owned, owner: nobody, group: "0", mode: "0640"}
    - file: {path: /owned-dir, state: directory, owner: nobody, mode: "0750"}
"#,
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let nobody: u32 = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .and_then(|l| l.split(':').nth(2)?.parse().ok())
        .expect("a 'nobody' user");
    let me = unsafe { libc::geteuid() };
    for f in ["/owned", "/owned-dir"] {
        let md = std::fs::metadata(fleet.host_file("h1", f)).unwrap();
        let expected = if root { nobody } else { me };
        assert_eq!(md.uid(), expected, "{f}: owner applied only as root");
    }
    let again = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    again.assert_code(0);
    assert_eq!(
        again.json()["stats"]["h1"]["changed"],
        0,
        "{}",
        again.stdout
    );
}

#[test]
fn copy_from_files_dir_and_file_states() {
    let fleet = LocalFleet::new();
    std::fs::write(fleet.host_file("h1", "/old"), "bye").unwrap();
    let pb = fleet.write_playbook(
        "files.yml",
        r#"
- hosts: h1
  tasks:
    - copy: {src: payload.txt, dest: /payload.txt}
    - file: {path: /old, state: absent}
    - file: {path: /marker, state: touch, mode: "0600"}
    - file: {path: /payload.txt, mode: "0640"}
"#,
    );
    let first = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    first.assert_code(0);
    assert_eq!(first.json()["stats"]["h1"]["changed"], 4);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h1", "/payload.txt")).unwrap(),
        "static payload\n"
    );
    assert!(!fleet.host_file("h1", "/old").exists());
    let mode = |f: &str| {
        std::fs::metadata(fleet.host_file("h1", f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("/marker"), 0o600);
    assert_eq!(mode("/payload.txt"), 0o640);
    // Idempotent: the copy keeps the mode the later file task set.
    let second = fleet.run(&[pb.to_str().unwrap(), "--output", "json"]);
    second.assert_code(0);
    assert_eq!(
        second.json()["stats"]["h1"]["changed"],
        0,
        "{}",
        second.stdout
    );
}

#[test]
fn templates_can_include_other_templates_from_the_templates_dir() {
    let fleet = LocalFleet::new();
    std::fs::write(
        fleet.path("playbooks/templates/part.j2"),
        "part for {{ inventory_hostname }}\n",
    )
    .unwrap();
    std::fs::write(
        fleet.path("playbooks/templates/main.j2"),
        "main\n{% include 'part.j2' %}end\n",
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "inc.yml",
        "- hosts: h2\n  tasks:\n    - template: {src: main.j2, dest: /main.conf}\n",
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.host_file("h2", "/main.conf")).unwrap(),
        "main\npart for h2\nend\n"
    );
}
