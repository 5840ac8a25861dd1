use std::path::Path;

use serde_json::json;

use super::*;

const INI: &str = r#"
# proxies and their parents
[proxies]
zdm-h[1:3] ansible_user=root
lone ansible_host=10.0.0.9 port_note="a b"

[proxies:vars]
role=proxy
level=group

[east]
zdm-h1 level=host

[east:vars]
level=child

[dc:children]
east

[dc:vars]
level=parent
"#;

fn ini() -> Inventory {
    Inventory::from_str(INI, Path::new("hosts.ini")).unwrap()
}

#[test]
fn ini_ranges_groups_and_implicit_groups() {
    let inv = ini();
    assert_eq!(inv.hosts(), ["zdm-h1", "zdm-h2", "zdm-h3", "lone"]);
    assert_eq!(
        inv.group_hosts("proxies"),
        ["zdm-h1", "zdm-h2", "zdm-h3", "lone"]
    );
    assert_eq!(inv.group_hosts("dc"), ["zdm-h1"]);
    assert_eq!(inv.group_hosts("all").len(), 4);
    assert!(inv.group_hosts("ungrouped").is_empty());
    assert_eq!(inv.host_vars("lone")["port_note"], json!("a b"));
    assert_eq!(inv.host_vars("lone")["ansible_host"], json!("10.0.0.9"));
}

#[test]
fn host_vars_beat_child_groups_which_beat_parents() {
    let inv = ini();
    // zdm-h1: in proxies (depth 1), dc (depth 1) and east (depth 2) and has a host var.
    assert_eq!(inv.host_vars("zdm-h1")["level"], json!("host"));
    // zdm-h2: only in proxies.
    assert_eq!(inv.host_vars("zdm-h2")["level"], json!("group"));
}

#[test]
fn child_group_beats_parent_group() {
    let text =
        "[east]\nh1\n[east:vars]\nlevel=child\n[dc:children]\neast\n[dc:vars]\nlevel=parent\n";
    let inv = Inventory::from_str(text, Path::new("x.ini")).unwrap();
    assert_eq!(inv.host_vars("h1")["level"], json!("child"));
}

#[test]
fn yaml_inventory_with_children_and_vars() {
    let text = r#"
all:
  vars:
    origin_port: 9042
    level: all
  children:
    proxies:
      vars:
        level: proxies
      hosts:
        p[01:02]:
          ansible_connection: local
        p03:
    monitoring:
      hosts:
        mon1:
"#;
    let inv = Inventory::from_str(text, Path::new("hosts.yml")).unwrap();
    assert_eq!(inv.hosts(), ["p01", "p02", "p03", "mon1"]);
    assert_eq!(inv.host_vars("p01")["ansible_connection"], json!("local"));
    assert_eq!(inv.host_vars("p03")["level"], json!("proxies"));
    assert_eq!(inv.host_vars("mon1")["level"], json!("all"));
    assert_eq!(inv.host_vars("mon1")["origin_port"], json!(9042));
}

#[test]
fn yaml_inventory_rejects_unknown_group_keys() {
    let err = Inventory::from_str("all:\n  hostz:\n    a:\n", Path::new("bad.yml")).unwrap_err();
    assert_eq!(
        err.0,
        "bad.yml:2:3: all: unknown group key 'hostz' (expected hosts, vars, children)"
    );
    let err = Inventory::from_str("all:\n  hosts:\n    - h1\n", Path::new("list.yml")).unwrap_err();
    assert!(err.0.starts_with("list.yml:3:5: "), "{err}");
    assert!(err.0.contains("expected a mapping of host names"), "{err}");
    let err = Inventory::from_str("g:\n  hosts:\n    p[3:1]:\n", Path::new("r.yml")).unwrap_err();
    assert!(err.0.starts_with("r.yml:3:5: "), "{err}");
    assert!(err.0.contains("ends before it starts"), "{err}");
}

#[test]
fn ini_errors_name_file_and_line() {
    let err = Inventory::from_str("[g]\nh1\nh2 novalue\n", Path::new("inv.ini")).unwrap_err();
    assert!(err.0.starts_with("inv.ini:3:"), "{err}");
}

#[test]
fn group_vars_and_host_vars_files_override_inventory_vars() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hosts.ini"),
        "[proxies]\nh1 x=inline\nh2\n[proxies:vars]\ny=inline\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("group_vars")).unwrap();
    std::fs::create_dir(dir.path().join("host_vars")).unwrap();
    std::fs::write(dir.path().join("group_vars/all.yml"), "y: all\nz: all\n").unwrap();
    std::fs::write(
        dir.path().join("group_vars/proxies.yml"),
        "y: from_group_vars\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("host_vars/h1.yml"), "x: from_host_vars\n").unwrap();
    let inv = Inventory::load(Some(&dir.path().join("hosts.ini"))).unwrap();
    let h1 = inv.host_vars("h1");
    assert_eq!(h1["x"], json!("from_host_vars"));
    assert_eq!(h1["y"], json!("from_group_vars"));
    assert_eq!(h1["z"], json!("all"));
    assert_eq!(inv.host_vars("h2")["y"], json!("from_group_vars"));

    // A playbook directory's group_vars win over the inventory's.
    let pb = tempfile::tempdir().unwrap();
    std::fs::create_dir(pb.path().join("group_vars")).unwrap();
    std::fs::write(
        pb.path().join("group_vars/proxies.yml"),
        "y: from_playbook_dir\n",
    )
    .unwrap();
    let mut inv = inv;
    inv.add_vars_dir(pb.path()).unwrap();
    assert_eq!(inv.host_vars("h1")["y"], json!("from_playbook_dir"));
}

#[test]
fn host_patterns() {
    let inv = ini();
    let sel = |p: &str| select_hosts(&inv, p).unwrap();
    assert_eq!(sel("all").len(), 4);
    assert_eq!(sel("zdm-h2"), ["zdm-h2"]);
    assert_eq!(sel("east:zdm-h3"), ["zdm-h1", "zdm-h3"]);
    assert_eq!(sel("proxies:!east"), ["zdm-h2", "zdm-h3", "lone"]);
    assert_eq!(sel("proxies:&dc"), ["zdm-h1"]);
    assert_eq!(sel("zdm-*"), ["zdm-h1", "zdm-h2", "zdm-h3"]);
    assert_eq!(sel("zdm-h?:!zdm-h1"), ["zdm-h2", "zdm-h3"]);
    assert_eq!(sel("zdm-h3,zdm-h1"), ["zdm-h1", "zdm-h3"]);
    assert!(sel("nothing").is_empty());
    assert_eq!(sel("localhost"), ["localhost"]);
}

#[test]
fn host_ranges() {
    assert_eq!(expand_host_range("p[1:3]").unwrap(), ["p1", "p2", "p3"]);
    assert_eq!(
        expand_host_range("p[08:10]").unwrap(),
        ["p08", "p09", "p10"]
    );
    assert_eq!(expand_host_range("p[0:6:3]").unwrap(), ["p0", "p3", "p6"]);
    assert_eq!(
        expand_host_range("db-[a:c].x").unwrap(),
        ["db-a.x", "db-b.x", "db-c.x"]
    );
    assert!(expand_host_range("p[3:1]").is_err());
}

#[test]
fn a_loose_host_is_in_ungrouped_and_all_in_both_formats() {
    let ini = "loose1 ansible_connection=local\n[g]\nmember\n";
    let inv = Inventory::from_str(ini, Path::new("h.ini")).unwrap();
    assert_eq!(inv.group_hosts("ungrouped"), ["loose1"]);
    assert_eq!(inv.group_hosts("all"), ["loose1", "member"]);
    assert!(!inv.groups_of("member").contains(&"ungrouped".to_string()));
    let yaml = "all:\n  hosts:\n    loose2:\n  children:\n    g:\n      hosts:\n        member:\n";
    let inv = Inventory::from_str(yaml, Path::new("h.yml")).unwrap();
    assert_eq!(inv.group_hosts("ungrouped"), ["loose2"]);
    assert!(!inv.group_hosts("ungrouped").contains(&"member".to_string()));
    assert_eq!(
        crate::inventory::select_hosts(&inv, "ungrouped").unwrap(),
        ["loose2"]
    );
}
