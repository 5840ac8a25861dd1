//! Reads table definitions from `system_schema` and classifies each column by how its cells can
//! be read (does `writetime()` work on it, one value or one per element?) and written back.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use scylla::client::session::Session;

use super::config::Selection;

/// Keyspaces that belong to Cassandra itself and are never migrated.
pub const SYSTEM_KEYSPACES: &[&str] = &[
    "system",
    "system_auth",
    "system_schema",
    "system_distributed",
    "system_traces",
    "system_views",
    "system_virtual_schema",
    "dse_system",
    "dse_security",
    "dse_leases",
    "dse_perf",
    "dse_insights",
    "dse_insights_local",
    "dse_system_local",
    "solr_admin",
    "OpsCenter",
    "cdm",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    PartitionKey,
    Clustering,
    Static,
    Regular,
}

/// How a column's cells are stored, which decides how they are read and copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// One cell (scalars, frozen collections, frozen UDTs, tuples): one writetime, one TTL.
    Single,
    /// A non-frozen set or map: one cell per element, each with its own writetime and TTL.
    /// Copied element-wise with `c = c + ?`, which is idempotent.
    ElementWise,
    /// A non-frozen list: one cell per element, but appends are not idempotent (each append
    /// gets a fresh cell path), so it is copied whole with the newest element's writetime.
    WholeList,
    /// A non-frozen UDT: one cell per field; copied whole with the newest field's writetime.
    WholeUdt,
    /// A counter: no writetime, cannot be written with a timestamp.
    Counter,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub cql_type: String,
    pub role: Role,
    pub kind: CellKind,
    /// Position within the partition key or clustering key.
    pub position: i32,
}

impl Column {
    /// The column name quoted for CQL, so mixed-case and reserved names work.
    pub fn quoted(&self) -> String {
        quote_ident(&self.name)
    }

    pub fn is_key(&self) -> bool {
        matches!(self.role, Role::PartitionKey | Role::Clustering)
    }

    /// Whether `writetime()`/`ttl()` can be selected for this column.
    pub fn has_writetime(&self) -> bool {
        !self.is_key() && self.kind != CellKind::Counter
    }
}

#[derive(Clone, Debug)]
pub struct Table {
    pub keyspace: String,
    pub name: String,
    /// Partition key columns in order, then clustering columns in order, then static and
    /// regular columns by name.
    pub columns: Vec<Column>,
}

impl Table {
    /// `ks.table` with both parts quoted.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.keyspace),
            quote_ident(&self.name)
        )
    }

    /// `ks.table` for humans and reports.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.keyspace, self.name)
    }

    pub fn partition_key(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.role == Role::PartitionKey)
    }

    pub fn clustering(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.role == Role::Clustering)
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.is_key())
    }

    pub fn value_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !c.is_key())
    }

    pub fn key_len(&self) -> usize {
        self.key_columns().count()
    }

    pub fn is_counter_table(&self) -> bool {
        self.columns.iter().any(|c| c.kind == CellKind::Counter)
    }

    /// `token("a", "b")` over the partition key.
    pub fn token_expr(&self) -> String {
        let pk: Vec<String> = self.partition_key().map(Column::quoted).collect();
        format!("token({})", pk.join(", "))
    }
}

/// Quotes an identifier. Always quoting is simplest and safe: a quoted lower-case name is the
/// same name, and it keeps reserved words (`key`, `token`, ...) and mixed case working.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Classifies a `system_schema.columns.type` string. `udts` holds the user types of the keyspace,
/// because a non-frozen UDT appears there as its bare name.
pub fn classify(cql_type: &str, udts: &BTreeSet<String>) -> CellKind {
    let t = cql_type.trim();
    if t == "counter" {
        CellKind::Counter
    } else if t.starts_with("set<") || t.starts_with("map<") {
        CellKind::ElementWise
    } else if t.starts_with("list<") {
        CellKind::WholeList
    } else if udts.contains(t) || udts.contains(t.trim_matches('"')) {
        CellKind::WholeUdt
    } else {
        CellKind::Single
    }
}

/// Reads the partitioner of the cluster; the engine only knows Murmur3 token ranges.
pub async fn check_partitioner(session: &Session, cluster: &str) -> anyhow::Result<()> {
    let rows = session
        .query_unpaged("SELECT partitioner FROM system.local", &[])
        .await
        .with_context(|| format!("reading system.local on the {cluster} cluster"))?
        .into_rows_result()?;
    let (partitioner,): (Option<String>,) = rows.first_row()?;
    let partitioner = partitioner.unwrap_or_default();
    anyhow::ensure!(
        partitioner.ends_with("Murmur3Partitioner"),
        "the {cluster} cluster uses {partitioner}; only Murmur3Partitioner token ranges are supported"
    );
    Ok(())
}

/// Lists the tables a selection names, read from one cluster's `system_schema`.
/// A named keyspace or table that does not exist is an error naming it.
pub async fn load_tables(
    session: &Session,
    cluster: &str,
    selection: &Selection,
) -> anyhow::Result<Vec<Table>> {
    let ks_rows = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", &[])
        .await
        .with_context(|| format!("reading system_schema.keyspaces on the {cluster} cluster"))?
        .into_rows_result()?;
    let mut keyspaces = BTreeSet::new();
    for row in ks_rows.rows::<(String,)>()? {
        keyspaces.insert(row?.0);
    }
    for ks in &selection.keyspaces {
        anyhow::ensure!(
            keyspaces.contains(ks),
            "keyspace {ks:?} does not exist on the {cluster} cluster"
        );
    }

    let mut wanted: Vec<(String, Option<String>)> = Vec::new();
    if selection.is_everything() {
        for ks in &keyspaces {
            if !SYSTEM_KEYSPACES.contains(&ks.as_str()) {
                wanted.push((ks.clone(), None));
            }
        }
    } else {
        for ks in &selection.keyspaces {
            wanted.push((ks.clone(), None));
        }
        for (ks, t) in &selection.tables {
            anyhow::ensure!(
                keyspaces.contains(ks),
                "table {ks}.{t}: keyspace {ks:?} does not exist on the {cluster} cluster"
            );
            wanted.push((ks.clone(), Some(t.clone())));
        }
    }

    let mut tables: BTreeMap<(String, String), Table> = BTreeMap::new();
    for (ks, only) in wanted {
        for table in load_keyspace(session, cluster, &ks).await? {
            if only.as_ref().is_none_or(|t| *t == table.name) {
                tables.insert((table.keyspace.clone(), table.name.clone()), table);
            }
        }
        if let Some(t) = only {
            anyhow::ensure!(
                tables.contains_key(&(ks.clone(), t.clone())),
                "table {ks}.{t} does not exist on the {cluster} cluster"
            );
        }
    }
    Ok(tables.into_values().collect())
}

/// Reads every table of one keyspace.
pub async fn load_keyspace(
    session: &Session,
    cluster: &str,
    keyspace: &str,
) -> anyhow::Result<Vec<Table>> {
    let types = session
        .query_unpaged(
            "SELECT type_name FROM system_schema.types WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .with_context(|| format!("reading system_schema.types on the {cluster} cluster"))?
        .into_rows_result()?;
    let mut udts = BTreeSet::new();
    for row in types.rows::<(String,)>()? {
        udts.insert(row?.0);
    }

    let cols = session
        .query_unpaged(
            "SELECT table_name, column_name, kind, position, type \
             FROM system_schema.columns WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .with_context(|| format!("reading system_schema.columns on the {cluster} cluster"))?
        .into_rows_result()?;
    let mut by_table: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for row in cols.rows::<(String, String, String, i32, String)>()? {
        let (table, name, kind, position, cql_type) = row?;
        let role = match kind.as_str() {
            "partition_key" => Role::PartitionKey,
            "clustering" => Role::Clustering,
            "static" => Role::Static,
            _ => Role::Regular,
        };
        let cell = classify(&cql_type, &udts);
        by_table.entry(table).or_default().push(Column {
            name,
            cql_type,
            role,
            kind: cell,
            position,
        });
    }

    // Views are listed in system_schema.columns too; they are maintained by Cassandra and
    // must never be written directly.
    let views = session
        .query_unpaged(
            "SELECT view_name FROM system_schema.views WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .with_context(|| format!("reading system_schema.views on the {cluster} cluster"))?
        .into_rows_result()?;
    for row in views.rows::<(String,)>()? {
        by_table.remove(&row?.0);
    }

    Ok(by_table
        .into_iter()
        .map(|(name, mut columns)| {
            columns.sort_by(|a, b| {
                let rank = |c: &Column| match c.role {
                    Role::PartitionKey => 0,
                    Role::Clustering => 1,
                    Role::Static => 2,
                    Role::Regular => 2,
                };
                rank(a)
                    .cmp(&rank(b))
                    .then(a.position.cmp(&b.position))
                    .then(a.name.cmp(&b.name))
            });
            Table {
                keyspace: keyspace.to_string(),
                name,
                columns,
            }
        })
        .collect())
}

/// Checks that target has every column origin has, with the same type and role, so a copy
/// cannot silently drop or reinterpret data.
pub fn check_compatible(origin: &Table, target: Option<&Table>) -> anyhow::Result<()> {
    let Some(target) = target else {
        anyhow::bail!(
            "table {} exists on origin but not on target; create the schema on target first",
            origin.display_name()
        );
    };
    for col in &origin.columns {
        let Some(t) = target.columns.iter().find(|c| c.name == col.name) else {
            anyhow::bail!(
                "table {}: column {:?} exists on origin but not on target",
                origin.display_name(),
                col.name
            );
        };
        anyhow::ensure!(
            t.cql_type == col.cql_type && t.role == col.role,
            "table {}: column {:?} is {} ({:?}) on origin but {} ({:?}) on target",
            origin.display_name(),
            col.name,
            col.cql_type,
            col.role,
            t.cql_type,
            t.role
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_cell_kinds() {
        let udts: BTreeSet<String> = ["address".to_string()].into();
        assert_eq!(classify("int", &udts), CellKind::Single);
        assert_eq!(classify("frozen<list<int>>", &udts), CellKind::Single);
        assert_eq!(classify("frozen<address>", &udts), CellKind::Single);
        assert_eq!(classify("set<text>", &udts), CellKind::ElementWise);
        assert_eq!(classify("map<text, int>", &udts), CellKind::ElementWise);
        assert_eq!(classify("list<int>", &udts), CellKind::WholeList);
        assert_eq!(classify("address", &udts), CellKind::WholeUdt);
        assert_eq!(classify("counter", &udts), CellKind::Counter);
    }

    #[test]
    fn target_must_have_every_origin_column_with_the_same_type() {
        let udts = BTreeSet::new();
        let col = |n: &str, t: &str, role| Column {
            name: n.into(),
            cql_type: t.into(),
            role,
            kind: classify(t, &udts),
            position: 0,
        };
        let origin = Table {
            keyspace: "ks".into(),
            name: "t".into(),
            columns: vec![
                col("k", "int", Role::PartitionKey),
                col("v", "text", Role::Regular),
            ],
        };
        let mut target = origin.clone();
        target.columns.push(col("extra", "int", Role::Regular));
        assert!(check_compatible(&origin, Some(&target)).is_ok());

        let err = check_compatible(&origin, None).unwrap_err().to_string();
        assert!(
            err.contains("ks.t") && err.contains("not on target"),
            "{err}"
        );

        let mut wrong = origin.clone();
        wrong.columns[1].cql_type = "int".into();
        let err = check_compatible(&origin, Some(&wrong))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"v\"") && err.contains("text") && err.contains("int"),
            "{err}"
        );

        let mut missing = origin.clone();
        missing.columns.pop();
        let err = check_compatible(&origin, Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"v\" exists on origin but not on target"),
            "{err}"
        );
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("has\"quote"), "\"has\"\"quote\"");
    }
}
