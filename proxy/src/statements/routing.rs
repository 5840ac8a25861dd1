//! Classifies a CQL statement to decide where it goes.
//!
//! Only the statement's first keyword and, for SELECTs, the table after FROM are looked at:
//! that is all routing needs, and a full CQL parser on the hot path would cost more than the
//! request itself. Anything not recognised is treated as a write (sent to both clusters), which is
//! the safe side: a missed write would lose data, a duplicated read costs nothing.

/// Where a statement goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// INSERT/UPDATE/DELETE/BATCH/DDL/USE/unknown: both clusters; the primary answers.
    Both,
    /// SELECT of user data: the primary cluster.
    Primary,
    /// Reads of other `system*` keyspaces: origin.
    Origin,
    /// system.local / system.peers / system.peers_v2: answered by the proxy itself.
    Topology(SystemTable),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemTable {
    Local,
    Peers,
    PeersV2,
}

/// The parts of a SELECT on a topology table the proxy needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySelect {
    pub table: SystemTable,
    /// Selected column names (`None` for `*`), with their aliases.
    pub columns: Option<Vec<(String, String)>>,
    /// The WHERE clause's conditions, or why the proxy cannot answer it (see `topology_where`).
    pub conditions: Result<Vec<crate::statements::topology_where::Condition>, String>,
}

/// Strips leading whitespace and `--`, `//`, `/* */` comments.
fn skip_noise(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        if let Some(rest) = t.strip_prefix("--").or_else(|| t.strip_prefix("//")) {
            s = rest.split_once('\n').map(|x| x.1).unwrap_or("");
        } else if let Some(rest) = t.strip_prefix("/*") {
            s = rest.split_once("*/").map(|x| x.1).unwrap_or("");
        } else {
            return t;
        }
    }
}

fn first_word(s: &str) -> (&str, &str) {
    let s = skip_noise(s);
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '"' || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_ascii_lowercase()
    }
}

/// Finds the table name after the top-level FROM of a SELECT: (keyspace, table).
fn select_from(query: &str) -> Option<(Option<String>, String)> {
    let lower = query.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut i = 0;
    let mut in_quote: Option<u8> = None;
    while i + 4 <= bytes.len() {
        let b = bytes[i];
        if let Some(q) = in_quote {
            if b == q {
                in_quote = None;
            }
            i += 1;
            continue;
        }
        if b == b'\'' || b == b'"' {
            in_quote = Some(b);
            i += 1;
            continue;
        }
        let boundary_before =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary_before
            && &bytes[i..i + 4] == b"from"
            && bytes
                .get(i + 4)
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        {
            let (name, _) = first_word(&query[i + 4..]);
            if name.is_empty() {
                return None;
            }
            return Some(match name.split_once('.') {
                Some((ks, t)) => (Some(unquote(ks)), unquote(t)),
                None => (None, unquote(name)),
            });
        }
        i += 1;
    }
    None
}

/// Classifies a statement. `keyspace` is the connection's current keyspace (after USE).
pub fn classify(query: &str, keyspace: Option<&str>) -> Route {
    let (word, _) = first_word(query);
    if !word.eq_ignore_ascii_case("select") {
        return Route::Both;
    }
    let Some((ks, table)) = select_from(query) else {
        return Route::Primary;
    };
    let ks = ks.or_else(|| keyspace.map(str::to_string));
    match ks.as_deref() {
        Some("system") => match table.as_str() {
            "local" => Route::Topology(SystemTable::Local),
            "peers" => Route::Topology(SystemTable::Peers),
            "peers_v2" => Route::Topology(SystemTable::PeersV2),
            _ => Route::Origin,
        },
        Some(k) if k.starts_with("system") => Route::Origin,
        _ => Route::Primary,
    }
}

/// The (keyspace, table) a SELECT reads, the keyspace defaulting to the connection's; `None`
/// when the statement is not a SELECT with a recognisable FROM or no keyspace is known.
pub fn select_table(query: &str, keyspace: Option<&str>) -> Option<(String, String)> {
    let (ks, table) = select_from(query)?;
    Some((ks.or_else(|| keyspace.map(str::to_string))?, table))
}

/// The keyspace named by a `USE` statement, if the statement is one.
pub fn use_keyspace(query: &str) -> Option<String> {
    let (word, rest) = first_word(query);
    if !word.eq_ignore_ascii_case("use") {
        return None;
    }
    let (name, _) = first_word(rest);
    (!name.is_empty()).then(|| unquote(name))
}

/// Parses the selection list of a SELECT on a topology table.
pub fn topology_select(query: &str, table: SystemTable) -> TopologySelect {
    let (_, rest) = first_word(query);
    let lower = rest.to_ascii_lowercase();
    let from = lower
        .find(" from")
        .or_else(|| lower.find("\nfrom"))
        .unwrap_or(lower.len());
    let list = rest[..from].trim();
    let list = list
        .strip_prefix("JSON ")
        .or_else(|| list.strip_prefix("json "))
        .unwrap_or(list)
        .trim();
    let conditions = crate::statements::topology_where::parse(query);
    if list == "*" {
        return TopologySelect {
            table,
            columns: None,
            conditions,
        };
    }
    let columns = list
        .split(',')
        .map(|c| {
            let c = c.trim();
            let lower = c.to_ascii_lowercase();
            match lower.find(" as ") {
                Some(i) => (unquote(c[..i].trim()), unquote(c[i + 4..].trim())),
                None => (unquote(c), unquote(c)),
            }
        })
        .collect();
    TopologySelect {
        table,
        columns: Some(columns),
        conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_ddl_and_unknown_go_to_both() {
        for q in [
            "INSERT INTO ks.t (a) VALUES (1)",
            "  update t set a=1 where k=2",
            "DELETE FROM t WHERE k=1",
            "CREATE TABLE x (a int primary key)",
            "USE ks",
            "TRUNCATE t",
            "GRANT SELECT ON ks.t TO r",
            "BEGIN BATCH INSERT INTO t (a) VALUES (1) APPLY BATCH",
            "something new",
        ] {
            assert_eq!(classify(q, None), Route::Both, "{q}");
        }
    }

    #[test]
    fn selects_go_to_primary_and_system_reads_to_origin() {
        assert_eq!(
            classify("SELECT * FROM ks.t WHERE k=1", None),
            Route::Primary
        );
        assert_eq!(
            classify("/* c */ select a from \"Ks\".t", None),
            Route::Primary
        );
        assert_eq!(
            classify("SELECT * FROM system_schema.tables", None),
            Route::Origin
        );
        assert_eq!(
            classify("SELECT * FROM system.size_estimates", None),
            Route::Origin
        );
        assert_eq!(
            classify("SELECT * FROM peers", Some("system")),
            Route::Topology(SystemTable::Peers)
        );
        assert_eq!(
            classify("SELECT 'from system.local' FROM t", None),
            Route::Primary
        );
        assert_eq!(
            classify(
                "SELECT host_id, rpc_address FROM system.local WHERE key='local'",
                None
            ),
            Route::Topology(SystemTable::Local)
        );
        assert_eq!(
            classify("select * from system.peers_v2", None),
            Route::Topology(SystemTable::PeersV2)
        );
    }

    #[test]
    fn use_and_selection_lists() {
        assert_eq!(use_keyspace("USE \"MyKs\""), Some("MyKs".into()));
        assert_eq!(use_keyspace("use ks;"), Some("ks".into()));
        assert_eq!(use_keyspace("SELECT 1"), None);
        let s = topology_select(
            "SELECT host_id, rpc_address AS a FROM system.local",
            SystemTable::Local,
        );
        assert_eq!(
            s.columns,
            Some(vec![
                ("host_id".into(), "host_id".into()),
                ("rpc_address".into(), "a".into())
            ])
        );
        assert_eq!(
            topology_select("SELECT * FROM system.peers", SystemTable::Peers).columns,
            None
        );
    }
}
