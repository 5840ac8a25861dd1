//! The preflight gate: can a proxy send every request unchanged to both clusters?
//!
//! That holds only when both answer with the configured credentials, speak a common protocol
//! version, partition the same way, and hold the same keyspaces, tables, columns, types and
//! primary keys. Every difference is listed (not just the first), in words an operator can turn
//! into a `CREATE`/`ALTER` on target.

use std::collections::BTreeMap;

use crate::data::schema::{self, Role, Table};
use crate::data::{ClusterConfig, Selection};

use super::Check;

/// One way target differs from origin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaDifference {
    /// `keyspace.table` (or just the keyspace).
    pub object: String,
    pub what: String,
}

impl std::fmt::Display for SchemaDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.what)
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::PartitionKey => "partition key",
        Role::Clustering => "clustering column",
        Role::Static => "static column",
        Role::Regular => "regular column",
    }
}

/// Every difference between the two clusters' tables, in both directions.
pub fn diff_schemas(origin: &[Table], target: &[Table]) -> Vec<SchemaDifference> {
    let index = |tables: &[Table]| -> BTreeMap<(String, String), Table> {
        tables
            .iter()
            .map(|t| ((t.keyspace.clone(), t.name.clone()), t.clone()))
            .collect()
    };
    let (origin, target) = (index(origin), index(target));
    let mut out = Vec::new();
    let keyspaces = |m: &BTreeMap<(String, String), Table>| -> Vec<String> {
        let mut ks: Vec<String> = m.keys().map(|(k, _)| k.clone()).collect();
        ks.dedup();
        ks
    };
    let target_keyspaces = keyspaces(&target);
    for ks in keyspaces(&origin) {
        if !target_keyspaces.contains(&ks) {
            out.push(SchemaDifference {
                object: ks.clone(),
                what: "keyspace exists on origin only".into(),
            });
        }
    }
    for (key, o) in &origin {
        let object = format!("{}.{}", key.0, key.1);
        let Some(t) = target.get(key) else {
            if target_keyspaces.contains(&key.0) {
                out.push(SchemaDifference {
                    object,
                    what: "table exists on origin only".into(),
                });
            }
            continue;
        };
        for oc in &o.columns {
            match t.columns.iter().find(|c| c.name == oc.name) {
                None => out.push(SchemaDifference {
                    object: object.clone(),
                    what: format!(
                        "column {} {} ({}) exists on origin only",
                        oc.name,
                        oc.cql_type,
                        role_name(oc.role)
                    ),
                }),
                Some(tc) => {
                    if tc.cql_type != oc.cql_type {
                        out.push(SchemaDifference {
                            object: object.clone(),
                            what: format!(
                                "column {} is {} on origin but {} on target",
                                oc.name, oc.cql_type, tc.cql_type
                            ),
                        });
                    }
                    if tc.role != oc.role || (oc.is_key() && tc.position != oc.position) {
                        out.push(SchemaDifference {
                            object: object.clone(),
                            what: format!(
                                "column {} is {} #{} on origin but {} #{} on target (primary keys differ)",
                                oc.name,
                                role_name(oc.role),
                                oc.position,
                                role_name(tc.role),
                                tc.position
                            ),
                        });
                    }
                }
            }
        }
        for tc in &t.columns {
            if !o.columns.iter().any(|c| c.name == tc.name) {
                out.push(SchemaDifference {
                    object: object.clone(),
                    what: format!(
                        "column {} {} ({}) exists on target only",
                        tc.name,
                        tc.cql_type,
                        role_name(tc.role)
                    ),
                });
            }
        }
    }
    for key in target.keys() {
        if !origin.contains_key(key) && origin.keys().any(|(ks, _)| *ks == key.0) {
            out.push(SchemaDifference {
                object: format!("{}.{}", key.0, key.1),
                what: "table exists on target only".into(),
            });
        }
    }
    out.sort();
    out
}

/// What a cluster told us about itself.
#[derive(Debug, Clone)]
struct ClusterFacts {
    release: String,
    partitioner: String,
    tables: Vec<Table>,
}

async fn inspect(
    config: &ClusterConfig,
    name: &str,
    selection: &Selection,
) -> anyhow::Result<ClusterFacts> {
    let session = config.connect().await?;
    let (release, partitioner) = session
        .query_unpaged("SELECT release_version, partitioner FROM system.local", &[])
        .await?
        .into_rows_result()?
        .single_row::<(String, String)>()?;
    let tables = schema::load_tables(&session, name, selection).await?;
    Ok(ClusterFacts {
        release,
        partitioner,
        tables,
    })
}

/// Protocol versions a Cassandra release speaks (the proxy and drivers use the highest common).
fn protocol_versions(release: &str) -> &'static [u8] {
    let major: u32 = release
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    match major {
        0..=2 => &[3],
        3 => &[3, 4],
        _ => &[3, 4, 5],
    }
}

/// The whole preflight gate: reachability with credentials, a common protocol version, the
/// same partitioner, and compatible schemas for the selected keyspaces (all non-system ones by
/// default).
pub async fn run_preflight(
    origin: &ClusterConfig,
    target: &ClusterConfig,
    selection: &Selection,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let o = inspect(origin, "origin", selection).await;
    let t = inspect(target, "target", selection).await;
    for (name, result) in [("origin", &o), ("target", &t)] {
        checks.push(Check {
            name: format!("{name} reachable"),
            passed: result.is_ok(),
            measured: match result {
                Ok(facts) => format!(
                    "connected as the configured user; Cassandra {}",
                    facts.release
                ),
                Err(e) => format!("{e:#}"),
            },
            threshold: "a CQL session with the configured credentials".into(),
        });
    }
    let (Ok(o), Ok(t)) = (o, t) else {
        return checks;
    };
    let common: Vec<u8> = protocol_versions(&o.release)
        .iter()
        .copied()
        .filter(|v| protocol_versions(&t.release).contains(v))
        .collect();
    checks.push(Check {
        name: "common protocol version".into(),
        passed: common.contains(&4),
        measured: match common.last() {
            Some(v) => format!("v{v} (origin {} / target {})", o.release, t.release),
            None => format!("none (origin {} / target {})", o.release, t.release),
        },
        threshold: "both speak v4, the proxy's protocol".into(),
    });
    checks.push(Check {
        name: "same partitioner".into(),
        passed: o.partitioner == t.partitioner,
        measured: format!(
            "origin {} / target {}",
            short(&o.partitioner),
            short(&t.partitioner)
        ),
        threshold: "identical".into(),
    });
    let differences = diff_schemas(&o.tables, &t.tables);
    // DESIGN.md's rule is "the same", not "compatible enough": even a column that exists on
    // target only changes what `SELECT *` returns once reads move to target, so it blocks too.
    checks.push(Check {
        name: "schemas compatible".into(),
        passed: differences.is_empty(),
        measured: if differences.is_empty() {
            format!("{} tables identical", o.tables.len())
        } else {
            let lines: Vec<String> = differences.iter().map(|d| format!("  - {d}")).collect();
            format!("{} difference(s):\n{}", differences.len(), lines.join("\n"))
        },
        threshold: "same keyspaces, tables, columns, types and primary keys".into(),
    });
    checks
}

fn short(partitioner: &str) -> &str {
    partitioner.rsplit('.').next().unwrap_or(partitioner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::schema::{CellKind, Column};

    fn col(name: &str, ty: &str, role: Role, position: i32) -> Column {
        Column {
            name: name.into(),
            cql_type: ty.into(),
            role,
            kind: CellKind::Single,
            position,
        }
    }

    fn table(ks: &str, name: &str, columns: Vec<Column>) -> Table {
        Table {
            keyspace: ks.into(),
            name: name.into(),
            columns,
        }
    }

    fn users() -> Table {
        table(
            "app",
            "users",
            vec![
                col("id", "uuid", Role::PartitionKey, 0),
                col("ts", "timestamp", Role::Clustering, 0),
                col("name", "text", Role::Regular, -1),
            ],
        )
    }

    #[test]
    fn identical_schemas_have_no_differences() {
        assert!(diff_schemas(&[users()], &[users()]).is_empty());
    }

    #[test]
    fn every_difference_is_named() {
        let mut target_users = users();
        target_users.columns[2].cql_type = "varchar".into();
        target_users
            .columns
            .push(col("email", "text", Role::Regular, -1));
        target_users.columns[1] = col("ts", "timestamp", Role::PartitionKey, 1);
        let origin = vec![
            users(),
            table(
                "app",
                "orders",
                vec![col("id", "int", Role::PartitionKey, 0)],
            ),
            table("only_origin", "t", vec![]),
        ];
        let target = vec![
            target_users,
            table(
                "app",
                "audit",
                vec![col("id", "int", Role::PartitionKey, 0)],
            ),
        ];
        let lines: Vec<String> = diff_schemas(&origin, &target)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            lines,
            vec![
                "app.audit: table exists on target only",
                "app.orders: table exists on origin only",
                "app.users: column email text (regular column) exists on target only",
                "app.users: column name is text on origin but varchar on target",
                "app.users: column ts is clustering column #0 on origin but partition key #1 on target (primary keys differ)",
                "only_origin: keyspace exists on origin only",
            ]
        );
    }

    #[test]
    fn protocol_versions_follow_the_release() {
        assert!(protocol_versions("5.0.6").contains(&5));
        assert!(!protocol_versions("3.11.17").contains(&5));
        assert!(protocol_versions("3.11.17").contains(&4));
    }
}
