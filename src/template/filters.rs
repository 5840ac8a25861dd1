//! Ansible's filters and tests, as far as our playbooks and templates need them.
//!
//! minijinja already provides `default`, `join`, `int`, `length`, `lower`, `upper`, ... ;
//! this file adds the Ansible-specific ones and overrides `bool` with Ansible's meaning
//! (`"no"` is false).

use base64::Engine as _;
use minijinja::value::{Kwargs, Rest};
use minijinja::{Environment, Error, ErrorKind, Value};
use sha2::Digest;

fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn to_json_value(v: &Value) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v).map_err(|e| err(format!("cannot convert value: {e}")))
}

pub(super) fn register(env: &mut Environment<'static>) {
    env.add_filter("mandatory", mandatory);
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_yaml);
    env.add_filter("to_json", to_json);
    env.add_filter("to_nice_json", to_nice_json);
    env.add_filter("from_json", from_json);
    env.add_filter("from_yaml", from_yaml);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("regex_replace", regex_replace);
    env.add_filter("combine", combine);
    env.add_filter("ternary", ternary);
    env.add_filter("basename", basename);
    env.add_filter("dirname", dirname);
    env.add_filter("hash", hash);
    env.add_filter("checksum", checksum);
    env.add_filter("quote", quote);
    env.add_filter("bool", to_bool);
    env.add_filter("resolve", super::resolve::resolve_filter);
    // zdm-proxy's settings, for the proxy config template and the check that refuses a
    // variable naming none (see `crate::proxy_settings`).
    env.add_global(
        "zdm_proxy_settings",
        Value::from_serialize(crate::proxy_settings::table()),
    );
    env.add_filter("zdm_refused_proxy_settings", refused_proxy_settings);
    env.add_test("failed", |v: Value| flag(&v, "failed"));
    env.add_test("changed", |v: Value| flag(&v, "changed"));
    env.add_test("skipped", |v: Value| flag(&v, "skipped"));
    env.add_test("succeeded", |v: Value| !flag(&v, "failed"));
    env.add_test("success", |v: Value| !flag(&v, "failed"));
}

/// `hostvars | zdm_refused_proxy_settings(hosts)`: every variable of those hosts that looks like
/// a zdm-proxy setting but names none, with the host and the reason.
fn refused_proxy_settings(hostvars: &Value, hosts: Vec<String>) -> Result<Vec<String>, Error> {
    Ok(crate::proxy_settings::refused_variables(
        &to_json_value(hostvars)?,
        &hosts,
    ))
}

fn flag(v: &Value, key: &str) -> bool {
    v.get_attr(key).map(|x| x.is_true()).unwrap_or(false)
}

/// `x | mandatory` fails when `x` is undefined, naming it in the custom message if given.
fn mandatory(v: &Value, msg: Option<String>) -> Result<Value, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            msg.unwrap_or_else(|| "mandatory variable not defined".into()),
        ));
    }
    Ok(v.clone())
}

fn to_yaml(v: &Value, _kwargs: Kwargs) -> Result<String, Error> {
    let j = to_json_value(v)?;
    serde_yaml_ng::to_string(&j).map_err(|e| err(format!("to_yaml: {e}")))
}

pub(super) fn to_json(v: &Value, _kwargs: Kwargs) -> Result<String, Error> {
    serde_json::to_string(&to_json_value(v)?).map_err(|e| err(format!("to_json: {e}")))
}

pub(super) fn to_nice_json(v: &Value, _kwargs: Kwargs) -> Result<String, Error> {
    serde_json::to_string_pretty(&to_json_value(v)?).map_err(|e| err(format!("to_json: {e}")))
}

fn from_json(s: String) -> Result<Value, Error> {
    let j: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| err(format!("from_json: {e}")))?;
    Ok(Value::from_serialize(&j))
}

fn from_yaml(s: String) -> Result<Value, Error> {
    let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&crate::yaml11::normalize(&s))
        .map_err(|e| err(format!("from_yaml: {e}")))?;
    Ok(Value::from_serialize(crate::vars::yaml_to_json(&y)))
}

pub(super) fn b64encode(s: String) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn b64decode(s: String) -> Result<String, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim().as_bytes())
        .map_err(|e| err(format!("b64decode: {e}")))?;
    String::from_utf8(bytes).map_err(|_| err("b64decode: result is not UTF-8 text"))
}

/// `regex_replace(pattern, replacement, ignorecase=false)`. The replacement uses Python's
/// `\1` / `\g<name>` group syntax as in Ansible.
pub(super) fn regex_replace(
    s: String,
    pattern: String,
    replacement: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let ignorecase: bool = kwargs.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline: bool = kwargs.get::<Option<bool>>("multiline")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let re = regex_automata::meta::Regex::builder()
        .syntax(
            regex_automata::util::syntax::Config::new()
                .case_insensitive(ignorecase)
                .multi_line(multiline),
        )
        .build(&pattern)
        .map_err(|e| err(format!("regex_replace: bad pattern '{pattern}': {e}")))?;
    let template = python_to_dollar(&replacement.unwrap_or_default());
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(&s) {
        let Some(m) = caps.get_match() else { continue };
        out.push_str(&s[last..m.start()]);
        caps.interpolate_string_into(&s, &template, &mut out);
        last = m.end();
    }
    out.push_str(&s[last..]);
    Ok(out)
}

/// Converts `\1`, `\g<1>`, `\g<name>` to `${1}` / `${name}`; a literal `$` becomes `$$`.
fn python_to_dollar(r: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = r.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            out.push_str("$$");
        } else if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            if n.is_ascii_digit() {
                let mut j = i + 1;
                let mut num = String::new();
                while j < chars.len() && chars[j].is_ascii_digit() {
                    num.push(chars[j]);
                    j += 1;
                }
                out.push_str(&format!("${{{num}}}"));
                i = j;
                continue;
            } else if n == 'g' && chars.get(i + 2) == Some(&'<') {
                if let Some(end) = chars[i + 3..].iter().position(|c| *c == '>') {
                    let name: String = chars[i + 3..i + 3 + end].iter().collect();
                    out.push_str(&format!("${{{name}}}"));
                    i = i + 4 + end;
                    continue;
                }
            } else if n == '\\' {
                out.push('\\');
                i += 2;
                continue;
            }
            out.push(c);
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// `a | combine(b, c, recursive=true)`: later mappings win.
fn combine(base: Value, others: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let recursive: bool = kwargs.get::<Option<bool>>("recursive")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let mut acc = to_json_value(&base)?;
    if !acc.is_object() {
        return Err(err("combine: the input is not a mapping"));
    }
    for o in others.iter() {
        let j = to_json_value(o)?;
        let serde_json::Value::Object(top) = &j else {
            return Err(err("combine: every argument must be a mapping"));
        };
        if recursive {
            crate::vars::deep_merge(&mut acc, &j);
        } else if let serde_json::Value::Object(a) = &mut acc {
            crate::vars::overlay(a, top);
        }
    }
    Ok(Value::from_serialize(&acc))
}

fn ternary(cond: &Value, yes: Value, no: Value, none: Option<Value>) -> Value {
    if cond.is_none() {
        if let Some(n) = none {
            return n;
        }
    }
    if cond.is_true() {
        yes
    } else {
        no
    }
}

fn basename(s: String) -> String {
    s.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn dirname(s: String) -> String {
    match s.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => s[..i].to_string(),
        None => String::new(),
    }
}

fn digest(s: &str, algo: &str) -> Result<String, Error> {
    match algo {
        "sha256" => Ok(hex::encode(sha2::Sha256::digest(s.as_bytes()))),
        "sha512" => Ok(hex::encode(sha2::Sha512::digest(s.as_bytes()))),
        "sha384" => Ok(hex::encode(sha2::Sha384::digest(s.as_bytes()))),
        "sha224" => Ok(hex::encode(sha2::Sha224::digest(s.as_bytes()))),
        "sha1" => Ok(hex::encode(sha1::Sha1::digest(s.as_bytes()))),
        "md5" => Ok(hex::encode(md5::Md5::digest(s.as_bytes()))),
        other => Err(err(format!(
            "hash: unsupported algorithm '{other}' (supported: md5, sha1, sha224, sha256, sha384, sha512)"
        ))),
    }
}

/// `hash('sha256')`, `hash('md5')`...; without an argument sha1, as in Ansible, so a
/// template written for Ansible renders the same value here.
fn hash(s: String, algo: Option<String>) -> Result<String, Error> {
    digest(&s, algo.as_deref().unwrap_or("sha1"))
}

/// `checksum`: the sha1 of the text, as Ansible's (use `hash('sha256')` for sha256).
fn checksum(s: String) -> Result<String, Error> {
    digest(&s, "sha1")
}

/// Shell-quotes a value so it is one word for `/bin/sh`.
pub(super) fn quote(s: String) -> String {
    crate::transport::shlex_quote(&s)
}

/// Ansible's `bool`: "yes"/"on"/"true"/"1" are true, everything else false.
fn to_bool(v: Value) -> bool {
    if let Some(s) = v.as_str() {
        return crate::vars::truthy(&serde_json::Value::String(s.to_string()));
    }
    v.is_true()
}
