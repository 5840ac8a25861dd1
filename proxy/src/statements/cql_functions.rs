//! `replace_cql_functions`: the functions whose value differs per call (`now()`, `uuid()`,
//! `currentTimestamp()`, ...) are evaluated by the proxy in a write, not by each cluster.
//!
//! Left alone, `now()` runs on origin and on target separately and the two clusters store two
//! different timeuuids for the same write: a row keyed by `now()` even becomes two different
//! rows. With the setting on, the proxy generates the value once and sends it to both. The
//! same holds for every function in [`Func`]: `now()` and `currentTimeUUID()` (timeuuid),
//! `uuid()`, `currentTimestamp()`, `currentDate()` and `currentTime()` (UTC, as Cassandra).
//!
//! - Plain statements (QUERY frames and the text children of a BATCH): each call is replaced
//!   by a literal in the text (with a type hint inside another function's arguments, so the
//!   overload stays the one the call chose).
//! - Prepared statements: a literal fixed at PREPARE would give every execution the same value,
//!   so each call becomes a bind marker instead; the proxy hides those markers from the
//!   client (see `prepared_now`) and supplies a fresh value for them on every EXECUTE.
//!
//! Every call gets its own value, as Cassandra does (two `now()` in one batch give two rows,
//! not one row overwritten); what is shared is each value between the clusters. Only
//! INSERT/UPDATE/DELETE (and BEGIN BATCH) texts are touched, LWT conditions (`IF ...`)
//! included: in a SELECT the function reads from one cluster and needs no agreement.

use std::sync::OnceLock;

use uuid::Uuid;

use crate::statements::cql_lex::{tokenize, Kind, Token};

/// Name prefix of the named bind markers the proxy injects into statements that use named
/// markers (`:name`); unlikely to collide with an application's own names.
pub const INJECTED_NAME_PREFIX: &str = "zdm_now_";

/// A built-in function whose value differs per call, which the proxy evaluates once for both
/// clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `now()`, `currentTimeUUID()`: a version-1 uuid.
    TimeUuid,
    /// `uuid()`: a random (version-4) uuid.
    Uuid,
    /// `currentTimestamp()`: milliseconds since the epoch.
    Timestamp,
    /// `currentDate()`: today (UTC).
    Date,
    /// `currentTime()`: nanoseconds since midnight (UTC).
    Time,
}

/// The functions by their lower-case CQL names.
const FUNCS: &[(&str, Func)] = &[
    ("now", Func::TimeUuid),
    ("currenttimeuuid", Func::TimeUuid),
    ("uuid", Func::Uuid),
    ("currenttimestamp", Func::Timestamp),
    ("currentdate", Func::Date),
    ("currenttime", Func::Time),
];

/// One value the proxy generated for an injected marker, in its CQL type's encoding: 16 bytes
/// for the uuids, 8 for a timestamp or time, 4 for a date. Fixed size, so no allocation per
/// write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    buf: [u8; 16],
    len: u8,
}

impl Generated {
    fn of(bytes: &[u8]) -> Generated {
        let mut buf = [0u8; 16];
        buf[..bytes.len()].copy_from_slice(bytes);
        Generated {
            buf,
            len: bytes.len() as u8,
        }
    }

    pub fn from_uuid(u: Uuid) -> Generated {
        Generated::of(u.as_bytes())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl Func {
    fn named(name: &str) -> Option<Func> {
        FUNCS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }

    /// The function's name as written in CQL (for `now()` and `currentTimeUUID()`, the first).
    pub fn call_name(self) -> &'static str {
        match self {
            Func::TimeUuid => "now()",
            Func::Uuid => "uuid()",
            Func::Timestamp => "currentTimestamp()",
            Func::Date => "currentDate()",
            Func::Time => "currentTime()",
        }
    }

    /// The CQL type, for type hints.
    pub fn cql_type(self) -> &'static str {
        match self {
            Func::TimeUuid => "timeuuid",
            Func::Uuid => "uuid",
            Func::Timestamp => "timestamp",
            Func::Date => "date",
            Func::Time => "time",
        }
    }

    /// A fresh value, encoded for a bound variable.
    pub fn generate(self) -> Generated {
        match self {
            Func::TimeUuid => Generated::from_uuid(new_timeuuid()),
            Func::Uuid => Generated::from_uuid(Uuid::new_v4()),
            Func::Timestamp => Generated::of(&((now_nanos() / 1_000_000) as i64).to_be_bytes()),
            Func::Date => {
                // Days since the epoch, centred on 2^31 as CQL's `date` is.
                let days = now_nanos().div_euclid(86_400_000_000_000) as i64;
                Generated::of(&((days + (1i64 << 31)) as u32).to_be_bytes())
            }
            Func::Time => {
                Generated::of(&(now_nanos().rem_euclid(86_400_000_000_000) as i64).to_be_bytes())
            }
        }
    }

    /// A fresh value as a CQL literal (timeuuids come from `next_timeuuid`).
    fn literal(self, next_timeuuid: &mut impl FnMut() -> Uuid) -> String {
        let nanos = now_nanos();
        match self {
            Func::TimeUuid => next_timeuuid().hyphenated().to_string(),
            Func::Uuid => Uuid::new_v4().hyphenated().to_string(),
            Func::Timestamp => (nanos / 1_000_000).to_string(),
            Func::Date => {
                let (y, m, d) = civil_from_days(nanos.div_euclid(86_400_000_000_000) as i64);
                format!("'{y:04}-{m:02}-{d:02}'")
            }
            Func::Time => {
                let t = nanos.rem_euclid(86_400_000_000_000);
                let s = t / 1_000_000_000;
                format!(
                    "'{:02}:{:02}:{:02}.{:09}'",
                    s / 3600,
                    s / 60 % 60,
                    s % 60,
                    t % 1_000_000_000
                )
            }
        }
    }
}

/// Nanoseconds since the epoch (UTC).
fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's civil calendar
/// algorithm, proleptic Gregorian as CQL's `date`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One call site of a [`Func`] in a statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NowSite {
    /// Which function is called.
    pub func: Func,
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
        let func = match t.kind {
            Kind::Word => Func::named(&src[t.start..t.end]),
            _ => None,
        };
        if let Some(func) = func.filter(|_| {
            toks.get(i + 1).is_some_and(|n| n.is_punct('('))
                && toks.get(i + 2).is_some_and(|n| n.is_punct(')'))
        }) {
            // `ks.now()` is a user function of that name; only `system.now()` is the built-in.
            // The same for each of the functions.
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
                    func,
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
                    let now_call = Func::named(&src[w.start..w.end]).is_some()
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

/// Replaces each [`Func`] call of a modification statement by a fresh literal (timeuuids from
/// `next`). `None` when there is nothing to replace (the text is then forwarded as it is).
pub fn replace_with_literals(src: &str, mut next: impl FnMut() -> Uuid) -> Option<String> {
    let scan = scan(src);
    if scan.sites.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(src.len() + 36 * scan.sites.len());
    let mut at = 0;
    for site in &scan.sites {
        out.push_str(&src[at..site.start]);
        // A uuid literal has one type; a number or a string could fit several overloads of the
        // enclosing function.
        if site.in_function && !matches!(site.func, Func::TimeUuid | Func::Uuid) {
            out.push('(');
            out.push_str(site.func.cql_type());
            out.push(')');
        }
        out.push_str(&site.func.literal(&mut next));
        at = site.end;
    }
    out.push_str(&src[at..]);
    Some(out)
}

/// A statement prepared with its [`Func`] calls turned into bind markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRewrite {
    pub text: String,
    /// Positions, in the rewritten statement's variable list, of the injected markers
    /// (ascending).
    pub injected: Vec<usize>,
    /// The function each injected marker stands for (same order as `injected`).
    pub kinds: Vec<Func>,
    /// Number of variables the rewritten statement has (the client's plus the injected).
    pub total: usize,
}

/// Rewrites a modification statement for PREPARE; `None` when it calls no [`Func`].
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
        // The marker gets the function's own type, so the value the proxy binds is what the
        // call would have returned (a bare `now()` marker takes the column's type, timeuuid or
        // uuid, which the same 16 bytes fit).
        if site.in_function || site.func != Func::TimeUuid {
            text.push('(');
            text.push_str(site.func.cql_type());
            text.push(')');
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
        kinds: scan.sites.iter().map(|s| s.func).collect(),
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
    fn every_per_call_function_is_replaced_with_a_literal_of_its_type() {
        let q = "INSERT INTO t (k, a, b, c, d, e, f) VALUES (uuid(), currentTimeUUID(), \
                 currentTimestamp(), currentDate(), currentTime(), toDate(currentTimestamp()), \
                 system.UUID())";
        let out = replace_with_literals(q, fixed()).unwrap();
        assert!(scan(&out).sites.is_empty(), "{out}");
        let values = &out[out.find("VALUES (").unwrap() + 8..out.len() - 1];
        let v: Vec<&str> = values.split(", ").collect();
        assert_eq!(v.len(), 7, "{out}");
        assert!(
            Uuid::parse_str(v[0]).unwrap().get_version_num() == 4,
            "{out}"
        );
        assert_eq!(v[1], U1);
        let ms: i64 = v[2].parse().unwrap();
        assert!(ms > 1_700_000_000_000, "{out}");
        assert!(v[3].len() == 12 && v[3].starts_with("'20"), "{out}");
        assert!(v[4].len() == 20 && v[4].as_bytes()[3] == b':', "{out}");
        assert!(v[5].starts_with("toDate((timestamp)1"), "{out}");
        assert!(Uuid::parse_str(v[6]).is_ok(), "{out}");
        let r = rewrite_for_prepare(
            "UPDATE t SET a = uuid(), b = currentDate() WHERE k = ? IF c < currentTimestamp()",
        )
        .unwrap();
        assert_eq!(
            r.text,
            "UPDATE t SET a = (uuid)?, b = (date)? WHERE k = ? IF c < (timestamp)?"
        );
        assert_eq!(r.injected, vec![0, 1, 3]);
        assert_eq!(r.kinds, vec![Func::Uuid, Func::Date, Func::Timestamp]);
        assert_eq!(Func::Date.generate().bytes().len(), 4);
        assert_eq!(Func::Time.generate().bytes().len(), 8);
        assert_eq!(Func::Timestamp.generate().bytes().len(), 8);
        assert_eq!(Func::Uuid.generate().bytes().len(), 16);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_793), (2026, 12, 6));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
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
            let _ = crate::statements::write_metrics::tables_of(&q, Some("ks"));
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
