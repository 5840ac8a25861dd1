//! WHERE clauses of the topology SELECTs the proxy answers itself (system.local, system.peers).
//!
//! Drivers ask for one peer (`SELECT * FROM system.peers WHERE peer = ?`, the Java driver's
//! `... WHERE peer = :address`) or for `key = 'local'`. Answering such a query with every row
//! would hand the driver proxies it did not ask for, so the conditions are honoured. Only what
//! drivers send is supported: `column = value` terms joined by AND, each value a literal or a
//! bind marker (`?` or `:name`), optionally followed by ALLOW FILTERING. Any other shape gets an
//! INVALID error naming that limitation rather than rows that ignore the clause.

use bytes::Bytes;

use crate::protocol::frame::FrameError;
use crate::protocol::wire::{query_flags, Reader};
use crate::statements::cql_lex::{tokenize, Kind, Token};

/// The right-hand side of one condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A literal as written, string literals unquoted (`'local'` is `local`).
    Literal(String),
    /// The `index`-th bind marker of the statement; `name` is `:name`'s, or the column's for
    /// `?` (the name Cassandra gives such a variable in the PREPARED metadata).
    Marker { index: usize, name: String },
}

/// `column = term`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub column: String,
    pub term: Term,
}

/// The conditions of the statement's WHERE clause (empty without one), or why the clause is
/// not one the proxy can answer.
pub fn parse(query: &str) -> Result<Vec<Condition>, String> {
    let toks = tokenize(query);
    let Some(at) = toks.iter().position(|t| t.is_word(query, "where")) else {
        if let Some(t) = toks.iter().find(|t| t.is_punct('?') || t.is_punct(':')) {
            return Err(format!(
                "bind marker outside a WHERE clause at `{}`",
                &query[t.start..]
            ));
        }
        return Ok(Vec::new());
    };
    if toks[..at].iter().any(|t| t.is_punct('?')) {
        return Err("bind markers before the WHERE clause".into());
    }
    let mut rest = &toks[at + 1..];
    let mut out = Vec::new();
    let mut markers = 0;
    loop {
        let column_tok = match rest {
            [c, e, ..] if e.is_punct('=') => c,
            _ => return Err(unsupported(query, rest)),
        };
        let column = column_tok
            .ident(query)
            .ok_or_else(|| unsupported(query, rest))?;
        rest = &rest[2..];
        // The value runs to the next AND / ALLOW / `;` / end.
        let end = rest
            .iter()
            .position(|t| t.is_word(query, "and") || t.is_word(query, "allow") || t.is_punct(';'))
            .unwrap_or(rest.len());
        let value = &rest[..end];
        let term = match value {
            [q] if q.is_punct('?') => {
                markers += 1;
                Term::Marker {
                    index: markers - 1,
                    name: column.clone(),
                }
            }
            [c, n] if c.is_punct(':') && c.end == n.start => {
                markers += 1;
                Term::Marker {
                    index: markers - 1,
                    name: n.ident(query).ok_or_else(|| unsupported(query, value))?,
                }
            }
            [s] if s.kind == Kind::Str => Term::Literal(unquote_str(s.text(query))),
            [first, .., last]
                if value
                    .iter()
                    .all(|t| t.kind == Kind::Word || t.is_punct('-') || t.is_punct('.')) =>
            {
                Term::Literal(query[first.start..last.end].to_string())
            }
            [only] if only.kind == Kind::Word => Term::Literal(only.text(query).to_string()),
            _ => return Err(unsupported(query, value)),
        };
        out.push(Condition { column, term });
        rest = &rest[end..];
        match rest {
            [] => return Ok(out),
            [a, more @ ..] if a.is_word(query, "and") => rest = more,
            [a, f, tail @ ..] if a.is_word(query, "allow") && f.is_word(query, "filtering") => {
                return match tail {
                    [] => Ok(out),
                    [s] if s.is_punct(';') => Ok(out),
                    _ => Err(unsupported(query, tail)),
                };
            }
            [s] if s.is_punct(';') => return Ok(out),
            _ => return Err(unsupported(query, rest)),
        }
    }
}

fn unsupported(query: &str, at: &[Token]) -> String {
    let from = at.first().map(|t| t.start).unwrap_or(query.len());
    format!(
        "zdm-proxy answers system.local/system.peers itself and supports only \
         `column = value` conditions joined by AND there; cannot answer `{}`",
        query[from..].trim()
    )
}

fn unquote_str(s: &str) -> String {
    if let Some(inner) = s.strip_prefix("$$").and_then(|r| r.strip_suffix("$$")) {
        return inner.to_string();
    }
    s.get(1..s.len().saturating_sub(1))
        .unwrap_or("")
        .replace("''", "'")
}

/// Values bound by a QUERY or EXECUTE: (name if the request named them, value; `None` for
/// null or unset).
pub type Bound = Vec<(Option<String>, Option<Bytes>)>;

/// Reads the query parameters at `r` (<consistency><flags>[values]...): whether the client asked
/// to skip result metadata, and the bound values.
pub fn read_parameters(r: &mut Reader<'_>, version: u8) -> Result<(bool, Bound), FrameError> {
    r.short()?;
    let flags = crate::protocol::wire::query_flags(r, version)? as u8;
    let mut bound = Vec::new();
    if flags & query_flags::VALUES != 0 {
        let n = r.short()?;
        for _ in 0..n {
            let name = if flags & query_flags::NAMES_FOR_VALUES != 0 {
                Some(r.string()?.to_ascii_lowercase())
            } else {
                None
            };
            let value = r.bytes()?.map(Bytes::copy_from_slice);
            bound.push((name, value));
        }
    }
    Ok((flags & query_flags::SKIP_METADATA != 0, bound))
}

/// The value bound to `marker`: by name when the request named its values, else by position.
/// `Err` names the missing variable.
pub fn bound_value<'a>(
    bound: &'a Bound,
    index: usize,
    name: &str,
) -> Result<Option<&'a Bytes>, String> {
    let named = bound.iter().any(|(n, _)| n.is_some());
    let hit = if named {
        bound.iter().find(|(n, _)| n.as_deref() == Some(name))
    } else {
        bound.get(index)
    };
    hit.map(|(_, v)| v.as_ref())
        .ok_or_else(|| format!("no value bound for variable {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(c: &str, v: &str) -> Condition {
        Condition {
            column: c.into(),
            term: Term::Literal(v.into()),
        }
    }

    #[test]
    fn equality_conditions_with_literals_and_markers() {
        assert_eq!(parse("SELECT * FROM system.peers").unwrap(), vec![]);
        assert_eq!(
            parse("SELECT * FROM system.local WHERE key='local'").unwrap(),
            vec![lit("key", "local")]
        );
        assert_eq!(
            parse("select * from system.peers where peer = ? ALLOW FILTERING;").unwrap(),
            vec![Condition {
                column: "peer".into(),
                term: Term::Marker {
                    index: 0,
                    name: "peer".into()
                }
            }]
        );
        assert_eq!(
            parse("SELECT * FROM system.peers WHERE peer = :address AND rack = 'r''1'").unwrap(),
            vec![
                Condition {
                    column: "peer".into(),
                    term: Term::Marker {
                        index: 0,
                        name: "address".into()
                    }
                },
                lit("rack", "r'1")
            ]
        );
        assert_eq!(
            parse(
                "SELECT * FROM system.peers WHERE host_id = 5c0e4d4e-1111-4222-8333-444455556666"
            )
            .unwrap(),
            vec![lit("host_id", "5c0e4d4e-1111-4222-8333-444455556666")]
        );
    }

    #[test]
    fn other_shapes_are_refused_with_the_reason() {
        for q in [
            "SELECT * FROM system.peers WHERE peer IN ('10.0.0.1', '10.0.0.2')",
            "SELECT * FROM system.peers WHERE peer > '10.0.0.1'",
            "SELECT * FROM system.peers WHERE peer = ? OR rack = 'r'",
            "SELECT * FROM system.peers LIMIT ?",
            "SELECT * FROM system.peers WHERE token(peer) = 5",
        ] {
            let e = parse(q).unwrap_err();
            assert!(
                e.contains("zdm-proxy") || e.contains("bind marker"),
                "{q}: {e}"
            );
        }
    }

    #[test]
    fn bound_values_by_position_or_name() {
        let mut b = bytes::BytesMut::new();
        use bytes::BufMut;
        b.put_u16(1); // consistency
        b.put_u8(0x01 | 0x02 | 0x40);
        b.put_u16(2);
        crate::protocol::wire::put_string(&mut b, "Rack");
        crate::protocol::wire::put_bytes(&mut b, Some(b"r1"));
        crate::protocol::wire::put_string(&mut b, "peer");
        crate::protocol::wire::put_bytes(&mut b, None);
        let (skip, bound) = read_parameters(&mut Reader::new(&b), 4).unwrap();
        assert!(skip);
        assert_eq!(
            bound_value(&bound, 0, "rack").unwrap().map(|b| &b[..]),
            Some(&b"r1"[..])
        );
        assert_eq!(bound_value(&bound, 1, "peer").unwrap(), None);
        assert!(bound_value(&bound, 0, "nope").is_err());
    }
}
