use serde_json::json;

use super::*;

fn ctx(v: serde_json::Value) -> Vars {
    v.as_object().unwrap().clone()
}

fn render(src: &str, v: serde_json::Value) -> Result<String, TemplateError> {
    Templar::new().render_str("t.j2", src, &ctx(v))
}

#[test]
fn undefined_variable_error_names_template_line_and_variable() {
    let err = render("a: 1\nb: {{ origin_port }}\n", json!({})).unwrap_err();
    assert_eq!(
        err.0,
        "template 't.j2' line 2: undefined variable 'origin_port'"
    );
}

#[test]
fn undefined_nested_attribute_is_named_with_its_path() {
    let err = render("x\n\ny={{ db.port }}", json!({"db": {"host": "h"}})).unwrap_err();
    assert_eq!(
        err.0,
        "template 't.j2' line 3: undefined variable 'db.port'"
    );
}

#[test]
fn trim_blocks_and_no_autoescape() {
    let out = render("{% if true %}\n<a & b>\n{% endif %}\n", json!({})).unwrap();
    assert_eq!(out, "<a & b>\n");
}

#[test]
fn ansible_filters() {
    let v = json!({"m": {"a": 1, "n": {"x": 1}}, "o": {"b": 2, "n": {"y": 2}}, "s": "yes", "p": "/opt/zdm/bin/proxy"});
    let r = |s: &str| render(s, v.clone()).unwrap();
    assert_eq!(r("{{ undefined_thing | default('d') }}"), "d");
    assert_eq!(
        r("{{ m | combine(o) | to_json }}"),
        r#"{"a":1,"b":2,"n":{"y":2}}"#
    );
    assert_eq!(
        r("{{ m | combine(o, recursive=true) | to_json }}"),
        r#"{"a":1,"b":2,"n":{"x":1,"y":2}}"#
    );
    assert_eq!(r("{{ m | to_yaml }}"), "a: 1\nn:\n  x: 1\n");
    assert_eq!(r("{{ m | to_nice_yaml }}"), "a: 1\nn:\n  x: 1\n");
    assert_eq!(
        r("{{ '{\"k\": [1,2]}' | from_json | to_json }}"),
        r#"{"k":[1,2]}"#
    );
    assert_eq!(r("{{ 'zdm' | b64encode }}"), "emRt");
    assert_eq!(r("{{ 'emRt' | b64decode }}"), "zdm");
    assert_eq!(
        r("{{ 'host-01.dc' | regex_replace('^host-(\\\\d+)\\\\..*$', 'h\\\\1') }}"),
        "h01"
    );
    assert_eq!(
        r("{{ 'aXbX' | regex_replace('x', '-', ignorecase=true) }}"),
        "a-b-"
    );
    assert_eq!(r("{{ (1 > 2) | ternary('y', 'n') }}"), "n");
    assert_eq!(r("{{ ['a','b'] | join(',') }}"), "a,b");
    assert_eq!(r("{{ p | basename }}"), "proxy");
    assert_eq!(r("{{ p | dirname }}"), "/opt/zdm/bin");
    assert_eq!(
        r("{{ 'abc' | hash('sha256') }}"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // Ansible's defaults: checksum and hash without an argument are sha1.
    let sha1_abc = "a9993e364706816aba3e25717850c26c9cd0d89d";
    assert_eq!(r("{{ 'abc' | checksum }}"), sha1_abc);
    assert_eq!(r("{{ 'abc' | hash('sha1') }}"), sha1_abc);
    assert_eq!(r("{{ 'abc' | hash }}"), sha1_abc);
    assert_eq!(
        r("{{ 'abc' | hash('md5') }}"),
        "900150983cd24fb0d6963f7d28e17f72"
    );
    assert_eq!(r("{{ \"it's\" | quote }}"), "'it'\"'\"'s'");
    assert_eq!(r("{{ 'plain' | quote }}"), "plain");
    // Booleans print as Python does (Ansible renders with Python): True / False.
    assert_eq!(r("{{ s | bool }}"), "True");
    assert_eq!(r("{{ 'no' | bool }}"), "False");
    assert_eq!(r("{{ 'on' | bool | ternary('y', 'n') }}"), "y");
    assert_eq!(r("{{ '42' | int + 1 }}"), "43");
}

#[test]
fn mandatory_fails_on_undefined_and_passes_defined() {
    assert!(render("{{ x | mandatory }}", json!({}))
        .unwrap_err()
        .0
        .contains("line 1"));
    assert_eq!(render("{{ x | mandatory }}", json!({"x": 3})).unwrap(), "3");
}

#[test]
fn single_expression_keeps_its_type_and_conditions_evaluate() {
    let t = Templar::new();
    let c = ctx(json!({"ports": [1, 2], "rc": 0, "flag": "no"}));
    assert_eq!(
        t.render_value("x", &json!("{{ ports }}"), &c).unwrap(),
        json!([1, 2])
    );
    assert_eq!(
        t.render_value("x", &json!("p{{ rc }}"), &c).unwrap(),
        json!("p0")
    );
    assert!(t.eval_bool("w", "rc == 0", &c).unwrap());
    assert!(!t.eval_bool("w", "flag | bool", &c).unwrap());
    assert!(t
        .eval_bool("w", "{{ missing is not defined }}", &c)
        .unwrap());
    let err = t
        .eval_bool("task 'x' when", "missing_var > 1", &c)
        .unwrap_err();
    assert!(err.0.contains("undefined variable 'missing_var'"), "{err}");
}

#[test]
fn missing_attribute_is_not_defined() {
    let t = Templar::new();
    let c = ctx(json!({"r": {"changed": true}}));
    assert!(!t.eval_bool("w", "(r.stdout) is defined", &c).unwrap());
    assert!(!t.eval_bool("w", "r.stdout is defined", &c).unwrap());
}

/// The runner keeps `hostvars` out of each host's variables and shares one copy with the
/// templar: a context without its own sees the shared one, with the same values and the same
/// error messages as when each host carried a copy; one with its own keeps it.
#[test]
fn shared_hostvars_stand_in_for_a_copy_in_each_context() {
    let hostvars = json!({"h1": {"port": 1}, "h2": {"port": 2}});
    let own = ctx(json!({"inventory_hostname": "h1"}));
    let mut carried = own.clone();
    carried.insert("hostvars".into(), hostvars.clone());
    let copied = Templar::new();
    let shared = Templar::new();
    shared.share_hostvars(Some(Arc::new(hostvars)));
    for src in [
        "{{ hostvars['h2'].port }}",
        "{{ hostvars[inventory_hostname]['port'] }}",
        "{{ hostvars.h2.nope }}",
        "{{ hostvars['h3'].port }}",
    ] {
        let want = copied.render_str("t.j2", src, &carried);
        let got = shared.render_str("t.j2", src, &own);
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{src}");
    }
    let mut other = own.clone();
    other.insert("hostvars".into(), json!({"h9": {"port": 9}}));
    assert_eq!(
        shared
            .render_str("t.j2", "{{ hostvars.h9.port }}", &other)
            .unwrap(),
        "9"
    );
    shared.share_hostvars(None);
    assert!(shared.render_str("t.j2", "{{ hostvars }}", &own).is_err());
}
