//! `replace_cql_functions`: `now()` in a write is evaluated by the proxy, not by each cluster.
//!
//! Left alone, `now()` runs on origin and on target separately and the two clusters store two
//! different timeuuids for the same write: a row keyed by `now()` even becomes two different
//! rows. With the setting on, the proxy generates the value once and sends it to both.
//!
//! - Plain statements (QUERY frames and the text children of a BATCH): each `now()` is replaced
//!   by a timeuuid literal in the text.
//! - Prepared statements: a literal fixed at PREPARE would give every execution the same value,
//!   so each `now()` becomes a bind marker instead; the proxy hides those markers from the
//!   client (see `prepared_now`) and supplies a fresh timeuuid for them on every EXECUTE.
//!
//! Every `now()` occurrence gets its own value, as Cassandra does (two `now()` in one batch
//! give two rows, not one row overwritten); what is shared is each value between the clusters.
//! Only INSERT/UPDATE/DELETE (and BEGIN BATCH) texts are touched: in a SELECT, `now()` reads
//! from one cluster and needs no agreement.

use std::sync::OnceLock;

use uuid::Uuid;

use crate::cql_lex::{tokenize, Kind, Token};

/// Name prefix of the named bind markers the proxy injects into statements that use named
/// markers (`:name`); unlikely to collide with an application's own names.
pub const INJECTED_NAME_PREFIX: &str = "zdm_now_";

/// One `now()` call site in a statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NowSite {
    /// Byte span of the call, `system.` qualifier included.
    pub start: usize,
    pub end: usize,
    /// The call is an argument of another function (`toTimestamp(now())`): a bare bind marker
    /// there would leave the function overload ambiguous, so it gets a `(timeuuid)` type hint.
    pub in_function: bool,
    /// How many of the statement's own bind markers come before the call.
    pub markers_before: usize,
}

/// What a statement text holds that the replacement needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    pub sites: Vec<NowSite>,
    /// Number of the statement's own bind markers.
    pub markers: usize,
    /// The statement uses named markers (`:name`), so injected ones must be named too.
    pub named: bool,
}

/// Is this statement a data modification (INSERT/UPDATE/DELETE, or a BATCH of them)?
pub fn is_modification(src: &str, toks: &[Token]) -> bool {
    toks.first().is_some_and(|t| {
        ["insert", "update", "delete", "begin"]
            .iter()
            .any(|w| t.is_word(src, w))
    })
}

/// Keywords that open a parenthesis that is not a function call.
const NOT_A_FUNCTION: &[&str] = &[
    "values", "in", "where", "and", "if", "set", "contains", "key", "or", "not",
];

/// Finds the `now()` calls and bind markers of a modification statement (empty for others).
pub fn scan(src: &str) -> Scan {
    let toks = tokenize(src);
    let mut out = Scan::default();
    if !is_modification(src, &toks) {
        return out;
    }
    // For each open parenthesis: is it a function call's?
    let mut parens: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let prev = i.checked_sub(1).map(|p| toks[p]);
        if t.is_word(src, "now")
            && toks.get(i + 1).is_some_and(|n| n.is_punct('('))
            && toks.get(i + 2).is_some_and(|n| n.is_punct(')'))
        {
            // `ks.now()` is a user function of that name; only `system.now()` is the built-in.
            let qualified = prev.is_some_and(|p| p.is_punct('.'));
            let start = if qualified {
                match i.checked_sub(2).map(|q| toks[q]) {
                    Some(q) if q.is_word(src, "system") => Some(q.start),
                    _ => None,
                }
            } else {
                Some(t.start)
            };
            if let Some(start) = start {
                out.sites.push(NowSite {
                    start,
                    end: toks[i + 2].end,
                    in_function: parens.last().copied().unwrap_or(false),
                    markers_before: out.markers,
                });
                i += 3;
                continue;
            }
        }
        match t.kind {
            Kind::Punct('(') => {
                let call = prev.is_some_and(|p| match p.kind {
                    Kind::Word => !NOT_A_FUNCTION.iter().any(|w| p.is_word(src, w)),
                    Kind::QuotedIdent => true,
                    _ => false,
                });
                parens.push(call);
            }
            Kind::Punct(')') => {
                parens.pop();
            }
            Kind::Punct('?') => out.markers += 1,
            Kind::Punct(':') => {
                // `:name` with no space is a named marker; `:name(` (no space either) or
                // `:now ( )` is a map entry whose value is a function call.
                let word = toks
                    .get(i + 1)
                    .filter(|n| n.start == t.end)
                    .filter(|n| matches!(n.kind, Kind::Word | Kind::QuotedIdent));
                let named = word.is_some_and(|w| {
                    let call = toks
                        .get(i + 2)
                        .is_some_and(|p| p.is_punct('(') && p.start == w.end);
                    let now_call = w.is_word(src, "now")
                        && toks.get(i + 2).is_some_and(|p| p.is_punct('('))
                        && toks.get(i + 3).is_some_and(|p| p.is_punct(')'));
                    !call && !now_call
                });
                if named {
                    out.markers += 1;
                    out.named = true;
                    i += 2;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Replaces each `now()` of a modification statement by a fresh timeuuid literal.
/// `None` when there is nothing to replace (the text is then forwarded as it is).
pub fn replace_with_literals(src: &str, mut next: impl FnMut() -> Uuid) -> Option<String> {
    let scan = scan(src);
    if scan.sites.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(src.len() + 36 * scan.sites.len());
    let mut at = 0;
    for site in &scan.sites {
        out.push_str(&src[at..site.start]);
        out.push_str(&next().hyphenated().to_string());
        at = site.end;
    }
    out.push_str(&src[at..]);
    Some(out)
}

/// A statement prepared with its `now()` calls turned into bind markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRewrite {
    pub text: String,
    /// Positions, in the rewritten statement's variable list, of the injected markers
    /// (ascending).
    pub injected: Vec<usize>,
    /// Number of variables the rewritten statement has (the client's plus the injected).
    pub total: usize,
}

/// Rewrites a modification statement for PREPARE; `None` when it has no `now()`.
pub fn rewrite_for_prepare(src: &str) -> Option<PreparedRewrite> {
    let scan = scan(src);
    if scan.sites.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(src.len() + 24 * scan.sites.len());
    let mut injected = Vec::with_capacity(scan.sites.len());
    let mut at = 0;
    for (n, site) in scan.sites.iter().enumerate() {
        text.push_str(&src[at..site.start]);
        if site.in_function {
            text.push_str("(timeuuid)");
        }
        if scan.named {
            text.push(':');
            text.push_str(INJECTED_NAME_PREFIX);
            text.push_str(&n.to_string());
        } else {
            text.push('?');
        }
        injected.push(site.markers_before + n);
        at = site.end;
    }
    text.push_str(&src[at..]);
    Some(PreparedRewrite {
        text,
        injected,
        total: scan.markers + scan.sites.len(),
    })
}

/// The node id of this process's version-1 uuids: random, with the multicast bit set as RFC
/// 9562 asks of ids that are not a MAC address, so two proxies never share one.
fn node_id() -> &'static [u8; 6] {
    static NODE: OnceLock<[u8; 6]> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut n: [u8; 6] = rand::random();
        n[0] |= 0x01;
        n
    })
}

/// A new version-1 (time-based) uuid, what Cassandra's `now()` returns. The uuid crate's
/// shared context advances the clock sequence on every call, so two calls within one clock
/// tick still differ.
pub fn new_timeuuid() -> Uuid {
    Uuid::now_v1(node_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> impl FnMut() -> Uuid {
        let mut n = 0u128;
        move || {
            n += 1;
            Uuid::from_u128(n)
        }
    }

    const U1: &str = "00000000-0000-0000-0000-000000000001";
    const U2: &str = "00000000-0000-0000-0000-000000000002";

    #[test]
    fn replaces_now_in_writes_whatever_the_case_and_spacing() {
        assert_eq!(
            replace_with_literals("INSERT INTO t (k, ts) VALUES (1, now())", fixed()).unwrap(),
            format!("INSERT INTO t (k, ts) VALUES (1, {U1})")
        );
        assert_eq!(
            replace_with_literals("update t set ts = NOW ( ) where k = 1", fixed()).unwrap(),
            format!("update t set ts = {U1} where k = 1")
        );
        assert_eq!(
            replace_with_literals("DELETE FROM t WHERE k = 1 AND c = Now()", fixed()).unwrap(),
            format!("DELETE FROM t WHERE k = 1 AND c = {U1}")
        );
        assert_eq!(
            replace_with_literals(
                "INSERT INTO t (a, b) VALUES (system.now(), toTimestamp(now()))",
                fixed()
            )
            .unwrap(),
            format!("INSERT INTO t (a, b) VALUES ({U1}, toTimestamp({U2}))")
        );
    }

    #[test]
    fn leaves_strings_comments_identifiers_and_reads_alone() {
        for q in [
            "INSERT INTO t (k, v) VALUES (1, 'now()')",
            "INSERT INTO t (k, v) VALUES (1, 'it''s now()')",
            "INSERT INTO t (k, v) VALUES (1, $$now()$$)",
            "INSERT INTO t (k, v) VALUES (1, 2) -- now()",
            "INSERT INTO t (k, v) /* now() */ VALUES (1, 2)",
            "INSERT INTO t (k, \"now()\") VALUES (1, 2)",
            "INSERT INTO t (k, now) VALUES (1, 2)",
            "INSERT INTO t (k, v) VALUES (1, snow())",
            "INSERT INTO t (k, v) VALUES (1, myks.now())",
            "SELECT now() FROM t",
            "select * from t where ts < now()",
            "CREATE TABLE now (k int PRIMARY KEY)",
        ] {
            assert_eq!(replace_with_literals(q, fixed()), None, "{q}");
        }
    }

    #[test]
    fn each_call_in_a_batch_gets_its_own_value() {
        let q = "BEGIN BATCH INSERT INTO t (k, ts) VALUES (1, now()); \
                 UPDATE t SET ts = now() WHERE k = 2; APPLY BATCH";
        let out = replace_with_literals(q, fixed()).unwrap();
        assert!(out.contains(&format!("VALUES (1, {U1})")), "{out}");
        assert!(out.contains(&format!("SET ts = {U2} WHERE")), "{out}");
    }

    #[test]
    fn prepared_positional_markers_are_counted_in_text_order() {
        let r = rewrite_for_prepare("INSERT INTO t (k, ts, v) VALUES (?, now(), ?) USING TTL ?")
            .unwrap();
        assert_eq!(
            r.text,
            "INSERT INTO t (k, ts, v) VALUES (?, ?, ?) USING TTL ?"
        );
        assert_eq!((r.injected, r.total), (vec![1], 4));

        let r = rewrite_for_prepare("UPDATE t SET a = now(), b = toTimestamp(now()) WHERE k = ?")
            .unwrap();
        assert_eq!(
            r.text,
            "UPDATE t SET a = ?, b = toTimestamp((timeuuid)?) WHERE k = ?"
        );
        assert_eq!((r.injected, r.total), (vec![0, 1], 3));
        assert_eq!(rewrite_for_prepare("INSERT INTO t (k) VALUES (?)"), None);
        assert_eq!(rewrite_for_prepare("SELECT now() FROM t WHERE k = ?"), None);
    }

    #[test]
    fn prepared_named_markers_get_named_injections() {
        let r = rewrite_for_prepare("UPDATE t SET ts = now(), v = :v WHERE k = :k").unwrap();
        assert_eq!(r.text, "UPDATE t SET ts = :zdm_now_0, v = :v WHERE k = :k");
        assert_eq!((r.injected, r.total), (vec![0], 3));
        // A map entry `{1: now()}` is not a named marker.
        for q in [
            "UPDATE t SET m = {1:now()} WHERE k = ?",
            "UPDATE t SET m = {1:now ( )} WHERE k = ?",
        ] {
            let s = scan(q);
            assert_eq!((s.markers, s.named, s.sites.len()), (1, false, 1), "{q}");
        }
        let s = scan("UPDATE t SET m = {1:toTimestamp(now())} WHERE k = ?");
        assert_eq!((s.markers, s.named, s.sites.len()), (1, false, 1));
    }

    use proptest::prelude::*;

    /// CQL-ish text: words, literals, comments, markers, and `now()` calls in any mix.
    fn cqlish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("now()".to_string()),
            Just("NOW ( )".to_string()),
            Just("system.now()".to_string()),
            Just("?".to_string()),
            Just(":name".to_string()),
            "[a-zA-Z0-9_ '\"$/*?:.(),;{}=\n-]{0,12}",
        ];
        (
            prop_oneof![Just("INSERT "), Just("update "), Just("SELECT "), Just("")],
            proptest::collection::vec(piece, 0..12),
        )
            .prop_map(|(head, parts)| format!("{head}{}", parts.join(" ")))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any text: no panic; after replacement no `now()` call is left, and the prepared
        /// rewrite has exactly the markers it claims (a wrong count would bind values to the
        /// wrong variables, which is why the proxy also checks the cluster's count).
        #[test]
        fn replacement_is_complete_and_marker_counts_agree(q in cqlish()) {
            let found = scan(&q).sites.len();
            match replace_with_literals(&q, new_timeuuid) {
                Some(out) => {
                    prop_assert!(found > 0);
                    prop_assert!(scan(&out).sites.is_empty(), "{out}");
                }
                None => prop_assert_eq!(found, 0),
            }
            if let Some(rw) = rewrite_for_prepare(&q) {
                let again = scan(&rw.text);
                prop_assert!(again.sites.is_empty(), "{}", rw.text);
                prop_assert_eq!(again.markers, rw.total, "{}", rw.text);
            }
        }

        #[test]
        fn arbitrary_unicode_never_panics(q in "\\PC{0,200}") {
            let _ = replace_with_literals(&q, new_timeuuid);
            let _ = rewrite_for_prepare(&q);
            let _ = crate::write_metrics::tables_of(&q, Some("ks"));
        }
    }

    #[test]
    fn timeuuids_are_version_1_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let u = new_timeuuid();
            assert_eq!(u.get_version_num(), 1);
            assert!(seen.insert(u), "duplicate timeuuid {u}");
        }
    }
}
