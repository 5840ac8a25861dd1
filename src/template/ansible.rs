//! More of Ansible's templating: the filters `regex_search`, `regex_findall`, `dict2items`,
//! `items2dict`, `flatten`, `difference`, `password_hash`; the tests `match`, `search` and
//! `version`; the functions `lookup('env'|'file', ...)` and `now()`; and `x.attr |
//! default(...)` when `x` itself is undefined.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use minijinja::value::{Kwargs, Object, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};

fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

pub(super) fn register(env: &mut Environment<'static>, search: Arc<RwLock<Vec<PathBuf>>>) {
    env.add_filter("regex_search", regex_search);
    env.add_filter("regex_findall", regex_findall);
    env.add_filter("dict2items", dict2items);
    env.add_filter("items2dict", items2dict);
    env.add_filter("flatten", flatten);
    env.add_filter("difference", difference);
    env.add_filter("password_hash", password_hash);
    env.add_filter(CHAIN_FILTER, chain);
    env.add_test("match", |s: String, p: String, kw: Kwargs| {
        re_test(&s, &p, kw, true)
    });
    env.add_test("search", |s: String, p: String, kw: Kwargs| {
        re_test(&s, &p, kw, false)
    });
    env.add_test("version", version_test);
    env.add_function("now", now);
    env.add_function(
        "lookup",
        move |state: &State, kind: String, terms: Rest<String>, kw: Kwargs| {
            lookup(state, &kind, &terms, kw, &search)
        },
    );
}

fn regex(
    pattern: &str,
    ignorecase: bool,
    multiline: bool,
) -> Result<regex_automata::meta::Regex, Error> {
    regex_automata::meta::Regex::builder()
        .syntax(
            regex_automata::util::syntax::Config::new()
                .case_insensitive(ignorecase)
                .multi_line(multiline),
        )
        .build(pattern)
        .map_err(|e| err(format!("bad regular expression '{pattern}': {e}")))
}

fn flags(kw: &Kwargs) -> Result<(bool, bool), Error> {
    Ok((
        kw.get::<Option<bool>>("ignorecase")?.unwrap_or(false),
        kw.get::<Option<bool>>("multiline")?.unwrap_or(false),
    ))
}

/// The first match (or, with `'\\1'`/`'\\g<name>'` arguments, those groups as a list); none
/// when nothing matches, as in Ansible.
fn regex_search(
    s: String,
    pattern: String,
    groups: Rest<String>,
    kw: Kwargs,
) -> Result<Value, Error> {
    let (i, m) = flags(&kw)?;
    kw.assert_all_used()?;
    let re = regex(&pattern, i, m)?;
    let Some(caps) = re.captures_iter(&s).next() else {
        return Ok(Value::from(()));
    };
    let whole = caps.get_match().map(|m| s[m.range()].to_string());
    if groups.is_empty() {
        return Ok(Value::from(whole));
    }
    let mut out = Vec::new();
    for g in groups.iter() {
        let span = if let Some(n) = g.strip_prefix('\\').and_then(|n| n.parse::<usize>().ok()) {
            caps.get_group(n)
        } else if let Some(name) = g.strip_prefix("\\g<").and_then(|n| n.strip_suffix('>')) {
            caps.get_group_by_name(name)
        } else {
            return Err(err(format!("regex_search: unknown group reference '{g}'")));
        };
        out.push(Value::from(span.map(|m| s[m.range()].to_string())));
    }
    Ok(Value::from(out))
}

/// Every match; with one group its values, with several a list per match (Python's
/// `re.findall`).
fn regex_findall(s: String, pattern: String, kw: Kwargs) -> Result<Value, Error> {
    let (i, m) = flags(&kw)?;
    kw.assert_all_used()?;
    let re = regex(&pattern, i, m)?;
    let groups = re.group_info().group_len(regex_automata::PatternID::ZERO);
    let mut out = Vec::new();
    for caps in re.captures_iter(&s) {
        let text = |n: usize| {
            caps.get_group(n)
                .map_or(String::new(), |m| s[m.range()].to_string())
        };
        out.push(match groups {
            1 => Value::from(text(0)),
            2 => Value::from(text(1)),
            n => Value::from((1..n).map(text).collect::<Vec<_>>()),
        });
    }
    Ok(Value::from(out))
}

fn dict2items(v: Value, kw: Kwargs) -> Result<Value, Error> {
    let key: String = kw
        .get::<Option<String>>("key_name")?
        .unwrap_or("key".into());
    let value: String = kw
        .get::<Option<String>>("value_name")?
        .unwrap_or("value".into());
    kw.assert_all_used()?;
    let mut out = Vec::new();
    for k in v
        .try_iter()
        .map_err(|_| err("dict2items: expects a mapping"))?
    {
        let item = v.get_item(&k)?;
        out.push(Value::from_iter([(key.clone(), k), (value.clone(), item)]));
    }
    Ok(Value::from(out))
}

fn items2dict(v: Value, kw: Kwargs) -> Result<Value, Error> {
    let key: String = kw
        .get::<Option<String>>("key_name")?
        .unwrap_or("key".into());
    let value: String = kw
        .get::<Option<String>>("value_name")?
        .unwrap_or("value".into());
    kw.assert_all_used()?;
    let mut out: Vec<(Value, Value)> = Vec::new();
    for item in v
        .try_iter()
        .map_err(|_| err("items2dict: expects a list"))?
    {
        let k = item.get_attr(&key)?;
        if k.is_undefined() {
            return Err(err(format!("items2dict: an item has no '{key}'")));
        }
        out.push((k, item.get_attr(&value)?));
    }
    Ok(Value::from_iter(out))
}

/// Flattens nested lists (`levels` deep, all by default); `none` items are dropped unless
/// `skip_nulls=false`, as in Ansible.
fn flatten(v: Value, levels: Option<usize>, kw: Kwargs) -> Result<Value, Error> {
    let skip_nulls = kw.get::<Option<bool>>("skip_nulls")?.unwrap_or(true);
    kw.assert_all_used()?;
    fn walk(
        v: &Value,
        depth: Option<usize>,
        skip: bool,
        out: &mut Vec<Value>,
    ) -> Result<(), Error> {
        for item in v.try_iter()? {
            let nested = matches!(item.kind(), minijinja::value::ValueKind::Seq);
            if nested && depth != Some(0) {
                walk(&item, depth.map(|d| d - 1), skip, out)?;
            } else if !(skip && item.is_none()) {
                out.push(item);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&v, levels, skip_nulls, &mut out)?;
    Ok(Value::from(out))
}

/// Items of the first list that are not in the second, without duplicates.
fn difference(a: Value, b: Value) -> Result<Value, Error> {
    let other: Vec<Value> = b.try_iter()?.collect();
    let mut out: Vec<Value> = Vec::new();
    for x in a.try_iter()? {
        if !other.contains(&x) && !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(Value::from(out))
}

/// `password_hash('sha512'|'sha256', salt=None, rounds=None)`: crypt(3) strings as Ansible
/// (passlib) makes them, `$6$salt$...`; a random 16-character salt when none is given.
fn password_hash(
    password: String,
    scheme: Option<String>,
    salt: Option<String>,
    kw: Kwargs,
) -> Result<String, Error> {
    let rounds: Option<u32> = kw.get("rounds")?;
    let salt = match kw.get::<Option<String>>("salt")? {
        Some(s) => Some(s),
        None => salt,
    };
    kw.assert_all_used()?;
    let salt = salt.unwrap_or_else(|| {
        use rand::Rng;
        const SALT: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut rng = rand::rng();
        (0..16)
            .map(|_| SALT[rng.random_range(0..SALT.len())] as char)
            .collect()
    });
    let salt: String = salt.chars().take(16).collect();
    let scheme = scheme.unwrap_or_else(|| "sha512".into());
    // Ansible's implicit rounds (656000, 535000), shown in the string unless crypt's own
    // default of 5000.
    let rounds_prefix = |r: u32| {
        if r == 5000 {
            String::new()
        } else {
            format!("rounds={r}$")
        }
    };
    match scheme.as_str() {
        "sha512" | "sha512_crypt" => {
            let rounds = rounds.unwrap_or(656_000);
            let params = sha_crypt::Sha512Params::new(rounds as usize)
                .map_err(|_| err("password_hash: bad rounds"))?;
            let h = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
                .map_err(|_| err("password_hash: cannot hash"))?;
            Ok(format!("$6${}{salt}${h}", rounds_prefix(rounds)))
        }
        "sha256" | "sha256_crypt" => {
            let rounds = rounds.unwrap_or(535_000);
            let params = sha_crypt::Sha256Params::new(rounds as usize)
                .map_err(|_| err("password_hash: bad rounds"))?;
            let h = sha_crypt::sha256_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
                .map_err(|_| err("password_hash: cannot hash"))?;
            Ok(format!("$5${}{salt}${h}", rounds_prefix(rounds)))
        }
        other => Err(err(format!(
            "password_hash: scheme '{other}' is not supported (sha512, sha256)"
        ))),
    }
}

/// `match` (from the start of the string, Python's `re.match`) and `search` (anywhere).
fn re_test(s: &str, pattern: &str, kw: Kwargs, anchored: bool) -> Result<bool, Error> {
    let (i, m) = flags(&kw)?;
    kw.assert_all_used()?;
    let re = regex(pattern, i, m)?;
    let mut input = regex_automata::Input::new(s);
    if anchored {
        input = input.anchored(regex_automata::Anchored::Yes);
    }
    Ok(re.is_match(input))
}

/// `v is version('2.0', '>=')`: compares dotted versions part by part, numbers as numbers
/// (Ansible's default loose comparison); operators `<`, `lt`, `<=`, `le`, `>`, `gt`, `>=`,
/// `ge`, `==`, `=`, `eq`, `!=`, `<>`, `ne` (default `eq`).
fn version_test(v: String, other: String, op: Option<String>, kw: Kwargs) -> Result<bool, Error> {
    let op = match kw.get::<Option<String>>("operator")? {
        Some(o) => o,
        None => op.unwrap_or_else(|| "eq".into()),
    };
    let _strict: Option<bool> = kw.get("strict")?;
    kw.assert_all_used()?;
    let ord = compare_versions(&v, &other);
    use std::cmp::Ordering::*;
    Ok(match op.as_str() {
        "<" | "lt" => ord == Less,
        "<=" | "le" => ord != Greater,
        ">" | "gt" => ord == Greater,
        ">=" | "ge" => ord != Less,
        "==" | "=" | "eq" => ord == Equal,
        "!=" | "<>" | "ne" => ord != Equal,
        o => return Err(err(format!("version: unknown operator '{o}'"))),
    })
}

fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    // Parts: runs of digits (compared as numbers) and runs of letters (compared as text).
    fn parts(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let flush = |cur: &mut String, out: &mut Vec<Result<u64, String>>| {
            if !cur.is_empty() {
                let p = std::mem::take(cur);
                out.push(p.parse::<u64>().map_err(|_| p));
            }
        };
        for c in s.chars() {
            let switch = cur
                .chars()
                .last()
                .is_some_and(|l| l.is_ascii_digit() != c.is_ascii_digit());
            if !c.is_ascii_alphanumeric() || switch {
                flush(&mut cur, &mut out);
            }
            if c.is_ascii_alphanumeric() {
                cur.push(c);
            }
        }
        flush(&mut cur, &mut out);
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let ord = match (pa.get(i), pb.get(i)) {
            (Some(Ok(x)), Some(Ok(y))) => x.cmp(y),
            (Some(Err(x)), Some(Err(y))) => x.cmp(y),
            // As LooseVersion: a number sorts before text.
            (Some(Ok(_)), Some(Err(_))) => std::cmp::Ordering::Less,
            (Some(Err(_)), Some(Ok(_))) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (None, None) => std::cmp::Ordering::Equal,
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    std::cmp::Ordering::Equal
}

/// `now(utc=false, fmt=None)`: the time as Python's `datetime` prints it, or formatted
/// with `fmt` (strftime); the value also has `.strftime(fmt)`, as in Ansible.
fn now(kw: Kwargs) -> Result<Value, Error> {
    let utc = kw.get::<Option<bool>>("utc")?.unwrap_or(false);
    let fmt: Option<String> = kw.get("fmt")?;
    kw.assert_all_used()?;
    let t = if utc {
        chrono::Utc::now().naive_utc()
    } else {
        chrono::Local::now().naive_local()
    };
    match fmt {
        Some(f) => Ok(Value::from(strftime(&t, &f)?)),
        None => Ok(Value::from_object(Now(t))),
    }
}

fn strftime(t: &chrono::NaiveDateTime, fmt: &str) -> Result<String, Error> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", t.format(fmt)).map_err(|_| err(format!("now: bad format '{fmt}'")))?;
    Ok(out)
}

#[derive(Debug)]
struct Now(chrono::NaiveDateTime);

impl Object for Now {
    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match (method, args) {
            ("strftime", [f]) => Ok(Value::from(strftime(&self.0, &f.to_string())?)),
            ("isoformat", []) => Ok(Value::from(
                self.0.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            )),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("now() has no method {method}"),
            )),
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::{Datelike, Timelike};
        let t = &self.0;
        Some(Value::from(match key.as_str()? {
            "year" => t.year() as i64,
            "month" => t.month() as i64,
            "day" => t.day() as i64,
            "hour" => t.hour() as i64,
            "minute" => t.minute() as i64,
            "second" => t.second() as i64,
            _ => return None,
        }))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.6f"))
    }
}

/// `lookup('env', 'NAME', ...)` (empty when unset, as in Ansible), `lookup('file',
/// 'path', ...)` (trailing newline removed; a relative path is found in the working
/// directory, then beside the templates and in `files/` beside the playbook) and
/// `lookup('vars', name, default=...)` (see [`lookup_var`]).
fn lookup(
    state: &State,
    kind: &str,
    terms: &[String],
    kw: Kwargs,
    search: &Arc<RwLock<Vec<PathBuf>>>,
) -> Result<Value, Error> {
    if kind == "vars" {
        return lookup_var(state, terms, kw);
    }
    let _wantlist: Option<bool> = kw.get("wantlist")?;
    kw.assert_all_used()?;
    let values: Vec<String> = match kind {
        "env" => terms
            .iter()
            .map(|t| std::env::var(t).unwrap_or_default())
            .collect(),
        "file" => {
            let dirs = search.read().expect("template search lock").clone();
            terms
                .iter()
                .map(|t| read_lookup_file(t, &dirs))
                .collect::<Result<_, _>>()?
        }
        other => {
            return Err(err(format!(
                "lookup('{other}'): unknown lookup (this build has env, file and vars)"
            )))
        }
    };
    Ok(Value::from(values.join(",")))
}

fn read_lookup_file(term: &str, dirs: &[PathBuf]) -> Result<String, Error> {
    let p = Path::new(term);
    let mut candidates = vec![p.to_path_buf()];
    if p.is_relative() {
        for d in dirs {
            candidates.push(d.join("files").join(p));
            candidates.push(d.join(p));
            candidates.push(d.join("..").join("files").join(p));
        }
    }
    let found = candidates
        .iter()
        .find(|c| c.is_file())
        .ok_or_else(|| err(format!("lookup('file', '{term}'): file not found")))?;
    let text = std::fs::read_to_string(found).map_err(|e| {
        err(format!(
            "lookup('file', '{term}'): {}: {e}",
            found.display()
        ))
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// The filter `x.a.b | default(...)` is rewritten to use when `x` may be undefined.
const CHAIN_FILTER: &str = "__zdm_chain";

/// `x | __zdm_chain('a', 'b')`: `x.a.b`, or undefined when `x` or any step is missing.
fn chain(v: Value, keys: Rest<Value>) -> Result<Value, Error> {
    let mut cur = v;
    for k in keys.iter() {
        if cur.is_undefined() || cur.is_none() {
            return Ok(Value::UNDEFINED);
        }
        cur = cur.get_item(k).unwrap_or(Value::UNDEFINED);
    }
    Ok(cur)
}

/// Rewrites `x.a['b'].c | default(` (and `| d(`) into `x | __zdm_chain('a', 'b', 'c') |
/// default(`, so that an undefined `x` gives the default as in Ansible, where strict
/// undefined would otherwise fail on the first attribute. Other uses of undefined values
/// stay errors.
pub(super) fn chain_defaults(source: &str) -> Cow<'_, str> {
    if !source.contains("default") && !source.contains("| d(") && !source.contains("|d(") {
        return Cow::Borrowed(source);
    }
    static RE: std::sync::OnceLock<regex_automata::meta::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex_automata::meta::Regex::new(
            r#"([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:'[^']*'|"[^"]*"|[0-9]+)\s*\])+)(\s*\|\s*(?:default|d)\s*\()"#,
        )
        .expect("chain pattern")
    });
    let mut out = String::new();
    let mut last = 0;
    let mut changed = false;
    for caps in re.captures_iter(source) {
        let (Some(all), Some(base), Some(path), Some(tail)) = (
            caps.get_match(),
            caps.get_group(1),
            caps.get_group(2),
            caps.get_group(3),
        ) else {
            continue;
        };
        // Not the tail of a longer name (`a.b` inside `x.a.b` is found from `x`).
        if source[..all.start()].ends_with(['.', '_']) {
            continue;
        }
        out.push_str(&source[last..all.start()]);
        out.push_str(&source[base.range()]);
        out.push_str(&format!(
            " | {CHAIN_FILTER}({})",
            chain_keys(&source[path.range()])
        ));
        out.push_str(&source[tail.range()]);
        last = all.end();
        changed = true;
    }
    if !changed {
        return Cow::Borrowed(source);
    }
    out.push_str(&source[last..]);
    Cow::Owned(out)
}

/// `.a['b'][0]` as the argument list `'a', 'b', 0`.
fn chain_keys(path: &str) -> String {
    let mut keys = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            keys.push(format!("'{}'", &r[..end]));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            keys.push(r[..end].trim().to_string());
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            break;
        }
    }
    keys.join(", ")
}

/// Ansible's `lookup('vars', name, default=...)`: a variable chosen by a computed name (the
/// proxy template walks the setting names). Without `default`, a missing variable is an error
/// naming it, as in Ansible.
fn lookup_var(state: &State, terms: &[String], kwargs: Kwargs) -> Result<Value, Error> {
    let [name] = terms else {
        return Err(err(
            "lookup('vars', ...) takes one variable name".to_string()
        ));
    };
    let default: Option<Value> = kwargs.get("default")?;
    let has_default = kwargs.has("default");
    kwargs.assert_all_used()?;
    match state.lookup(name) {
        Some(v) if !v.is_undefined() => Ok(v),
        _ if has_default => Ok(default.unwrap_or(Value::from(()))),
        _ => Err(Error::new(
            ErrorKind::UndefinedError,
            format!("lookup('vars', '{name}'): no variable named '{name}'"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_lookups_before_default_are_rewritten_and_nothing_else() {
        assert_eq!(
            chain_defaults("{{ x.a['b'][0] | default('z') }}"),
            "{{ x | __zdm_chain('a', 'b', 0) | default('z') }}"
        );
        assert_eq!(
            chain_defaults("{{ x.a|d(1) }}"),
            "{{ x | __zdm_chain('a')|d(1) }}"
        );
        assert_eq!(
            chain_defaults("{{ x | default(1) }}"),
            "{{ x | default(1) }}"
        );
        assert_eq!(chain_defaults("{{ x.a }}"), "{{ x.a }}");
    }

    #[test]
    fn versions_compare_part_by_part() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("2.10", "2.9"), Greater);
        assert_eq!(compare_versions("5.0.1", "5.0"), Greater);
        assert_eq!(compare_versions("1.0", "1.0"), Equal);
        assert_eq!(compare_versions("1.0a", "1.0b"), Less);
    }
}
