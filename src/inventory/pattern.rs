//! Host patterns (`hosts:` and `--limit`): `all`, names, groups, `a:b` (union), `a:&b`
//! (intersection), `a:!b` (exclusion), `*` wildcards, commas as separators.

use super::{Inventory, InventoryError};

/// Selects the hosts matching `pattern`, in inventory order. Unions are applied first, then
/// intersections, then exclusions, whatever their order in the pattern (as Ansible does).
pub fn select_hosts(inv: &Inventory, pattern: &str) -> Result<Vec<String>, InventoryError> {
    let mut union: Vec<String> = Vec::new();
    let mut intersections: Vec<Vec<String>> = Vec::new();
    let mut exclusions: Vec<String> = Vec::new();
    let terms = pattern
        .split([':', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let mut any = false;
    for term in terms {
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

fn match_term(inv: &Inventory, term: &str) -> Vec<String> {
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
    pattern
        .split([':', ','])
        .map(|t| t.trim().trim_start_matches(['!', '&']))
        .filter(|t| !t.is_empty() && match_term(inv, t).is_empty() && !inv.has_group(t))
        .map(str::to_string)
        .collect()
}
