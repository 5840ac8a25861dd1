//! Host patterns (`hosts:` and `--limit`): `all`, names, groups, `a:b` (union), `a:&b`
//! (intersection), `a:!b` (exclusion), `*` wildcards, `~regex` (matched from the start of
//! a host or group name, as Python's `re.match`), subscripts `group[0]`, `group[-1]`,
//! `group[1:3]` (inclusive, as Ansible's) and `group[2:]`, commas as separators.

use super::{Inventory, InventoryError};

/// Selects the hosts matching `pattern`, in inventory order. Unions are applied first, then
/// intersections, then exclusions, whatever their order in the pattern (as Ansible does).
pub fn select_hosts(inv: &Inventory, pattern: &str) -> Result<Vec<String>, InventoryError> {
    let mut union: Vec<String> = Vec::new();
    let mut intersections: Vec<Vec<String>> = Vec::new();
    let mut exclusions: Vec<String> = Vec::new();
    let terms = split_pattern(pattern);
    let mut any = false;
    for term in terms.iter().map(String::as_str) {
        any = true;
        if let Some(t) = term.strip_prefix('!') {
            exclusions.extend(match_term(inv, t));
        } else if let Some(t) = term.strip_prefix('&') {
            intersections.push(match_term(inv, t));
        } else {
            for h in match_term(inv, term) {
                if !union.contains(&h) {
                    union.push(h);
                }
            }
        }
    }
    if !any {
        return Err(InventoryError(format!("empty host pattern '{pattern}'")));
    }
    let mut out: Vec<String> = union
        .into_iter()
        .filter(|h| intersections.iter().all(|set| set.contains(h)))
        .filter(|h| !exclusions.contains(h))
        .collect();
    // Inventory order, so batches are predictable; the implicit localhost goes last.
    let order = |h: &String| {
        inv.hosts()
            .iter()
            .position(|x| x == h)
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(order);
    Ok(out)
}

/// Splits a pattern into its terms at commas and at colons outside `[...]` (a subscript's
/// colon belongs to its term).
pub fn split_pattern(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in pattern.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == ',' || (c == ':' && depth == 0) {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `group[i]`, `group[i:j]` or `group[i:]` split into the name and the subscript.
fn subscript(term: &str) -> Option<(&str, Subscript)> {
    let inner = term.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    let (name, idx) = (&inner[..open], &inner[open + 1..]);
    if name.is_empty() || name.starts_with('~') {
        return None;
    }
    let sub = match idx.split_once(':') {
        None => Subscript::One(idx.trim().parse().ok()?),
        Some((a, b)) => Subscript::Range(
            a.trim().parse().ok()?,
            if b.trim().is_empty() {
                None
            } else {
                Some(b.trim().parse().ok()?)
            },
        ),
    };
    Some((name, sub))
}

enum Subscript {
    /// One host; negative counts from the end.
    One(i64),
    /// From..=to (to the end when `None`).
    Range(usize, Option<usize>),
}

impl Subscript {
    fn apply(&self, hosts: Vec<String>) -> Vec<String> {
        match *self {
            Subscript::One(i) => {
                let i = if i < 0 { hosts.len() as i64 + i } else { i };
                usize::try_from(i)
                    .ok()
                    .and_then(|i| hosts.get(i).cloned())
                    .into_iter()
                    .collect()
            }
            Subscript::Range(from, to) => {
                let end = to.map_or(hosts.len(), |t| (t + 1).min(hosts.len()));
                hosts.get(from..end.max(from)).unwrap_or_default().to_vec()
            }
        }
    }
}

/// Hosts and groups whose name matches `re` from its start (Python's `re.match`).
fn match_regex(inv: &Inventory, re: &str) -> Vec<String> {
    let Ok(re) = regex_automata::meta::Regex::new(re) else {
        return Vec::new();
    };
    let hit = |s: &str| {
        re.is_match(regex_automata::Input::new(s).anchored(regex_automata::Anchored::Yes))
    };
    let mut out: Vec<String> = Vec::new();
    for g in inv.group_names().filter(|g| hit(g)) {
        out.extend(inv.group_hosts(g));
    }
    out.extend(inv.hosts().iter().filter(|h| hit(h)).cloned());
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|h| seen.insert(h.clone()));
    out
}

/// Checks a `~regex` term's syntax (a bad regex is a bad option, not an empty match).
pub fn check_pattern(pattern: &str) -> Result<(), InventoryError> {
    for t in split_pattern(pattern) {
        let t = t.trim_start_matches(['!', '&']);
        if let Some(re) = t.strip_prefix('~') {
            regex_automata::meta::Regex::new(re).map_err(|e| {
                InventoryError(format!("host pattern '{t}': bad regular expression: {e}"))
            })?;
        }
    }
    Ok(())
}

fn match_term(inv: &Inventory, term: &str) -> Vec<String> {
    if let Some(re) = term.strip_prefix('~') {
        return match_regex(inv, re);
    }
    if let Some((name, sub)) = subscript(term) {
        return sub.apply(match_term(inv, name));
    }
    if term == "all" || term == "*" {
        return inv.hosts().to_vec();
    }
    if term.contains('*') || term.contains('?') {
        let mut out = Vec::new();
        for g in inv.group_names() {
            if glob(term, g) {
                out.extend(inv.group_hosts(g));
            }
        }
        out.extend(inv.hosts().iter().filter(|h| glob(term, h)).cloned());
        out.dedup();
        return out;
    }
    if inv.has_group(term) {
        return inv.group_hosts(term);
    }
    if inv.hosts().iter().any(|h| h == term) {
        return vec![term.to_string()];
    }
    // Ansible's implicit localhost: usable by name even when not in the inventory.
    if term == "localhost" || term == "127.0.0.1" {
        return vec![term.to_string()];
    }
    Vec::new()
}

/// Shell-style glob with `*` and `?` (no character classes: host names do not need them).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Checks that a pattern names something: an unknown group or host in `hosts:` is worth a
/// warning, not a silent empty play.
pub fn unknown_terms(inv: &Inventory, pattern: &str) -> Vec<String> {
    split_pattern(pattern)
        .iter()
        .map(|t| t.trim_start_matches(['!', '&']))
        .filter(|t| {
            let name = subscript(t).map_or(*t, |(n, _)| n);
            !t.is_empty() && match_term(inv, name).is_empty() && !inv.has_group(name)
        })
        .map(str::to_string)
        .collect()
}
