//! Answers for system.local and system.peers that present the proxy fleet as the cluster.
//!
//! A driver connected to one proxy learns the other proxies from system.peers and balances and
//! fails over between them. Tokens are spread evenly over the Murmur3 ring, interleaved between
//! proxies, so token-aware drivers spread load too. Data center name, cluster name, release and
//! schema version come from the real origin cluster (refreshed by the control connection), so a
//! driver configured for the real DC keeps working and schema agreement is reached.
//! The columns are Cassandra 5's. system.peers_v2 is served too (the reference proxy refuses it):
//! drivers that read it first (Java 4.x, Python, Node) take each proxy's port from its
//! `native_port`, where system.peers has no port column and the Java driver warns "Unable to
//! determine broadcast RPC port" for every peer before falling back to the control port.

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::wire::{self, error_code, result_kind};
use crate::statements::routing::{SystemTable, TopologySelect};
use crate::statements::topology_where::{self, Bound, Term};

/// Facts about the real cluster, read from origin's system.local.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub cluster_name: String,
    pub data_center: String,
    pub rack: String,
    pub release_version: String,
    pub partitioner: String,
    pub cql_version: String,
    pub schema_version: [u8; 16],
}

/// A table row as (column name, value).
type Row = Vec<(&'static str, Cell)>;

/// A topology SELECT resolved against its table.
struct Resolved {
    table: &'static str,
    /// (alias, index into `template`) in the order asked.
    columns: Vec<(String, usize)>,
    /// A row giving each column's type.
    template: Row,
    rows: Vec<Row>,
    /// Bind markers of the WHERE clause: (variable name, index into `template`), in order.
    markers: Vec<(String, usize)>,
}

/// The proxy fleet as configured.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub addresses: Vec<IpAddr>,
    pub index: usize,
    pub num_tokens: usize,
    pub port: u16,
}

const VARCHAR: u16 = 0x000D;
const UUID: u16 = 0x000C;
const INET: u16 = 0x0010;
const INT: u16 = 0x0009;
const SET: u16 = 0x0022;

#[derive(Clone)]
enum Cell {
    Text(String),
    Uuid([u8; 16]),
    Inet(IpAddr),
    Int(i32),
    TextSet(Vec<String>),
}

impl Cell {
    fn type_id(&self) -> u16 {
        match self {
            Cell::Text(_) => VARCHAR,
            Cell::Uuid(_) => UUID,
            Cell::Inet(_) => INET,
            Cell::Int(_) => INT,
            Cell::TextSet(_) => SET,
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        wire::put_bytes(out, Some(&self.value()));
    }

    /// The cell's value as serialized in a row (and as a client binds it).
    fn value(&self) -> BytesMut {
        let mut v = BytesMut::new();
        match self {
            Cell::Text(s) => v.put_slice(s.as_bytes()),
            Cell::Uuid(u) => v.put_slice(u),
            Cell::Inet(IpAddr::V4(a)) => v.put_slice(&a.octets()),
            Cell::Inet(IpAddr::V6(a)) => v.put_slice(&a.octets()),
            Cell::Int(i) => v.put_i32(*i),
            Cell::TextSet(items) => {
                v.put_i32(items.len() as i32);
                for s in items {
                    v.put_i32(s.len() as i32);
                    v.put_slice(s.as_bytes());
                }
            }
        }
        v
    }

    /// A CQL literal of this cell's type, serialized; `None` when it is not a valid one.
    fn literal(&self, text: &str) -> Option<BytesMut> {
        let cell = match self {
            Cell::Text(_) => Cell::Text(text.to_string()),
            Cell::Inet(_) => Cell::Inet(text.parse().ok()?),
            Cell::Int(_) => Cell::Int(text.parse().ok()?),
            Cell::Uuid(_) => Cell::Uuid(uuid::Uuid::parse_str(text).ok()?.into_bytes()),
            Cell::TextSet(_) => return None,
        };
        Some(cell.value())
    }
}

impl Fleet {
    /// Tokens of the proxy at `index`: the ring is cut into `n * num_tokens` equal slices and
    /// proxies take every n-th slice, so each owns the same share spread around the ring.
    pub fn tokens(&self, index: usize) -> Vec<String> {
        let n = self.addresses.len().max(1) as i128;
        let slices = n * self.num_tokens as i128;
        let width = (1i128 << 64) / slices;
        (0..self.num_tokens as i128)
            .map(|j| (i64::MIN as i128 + (j * n + index as i128) * width).to_string())
            .collect()
    }

    /// A stable host id per proxy address, so drivers recognise a proxy across reconnects.
    pub fn host_id(&self, index: usize) -> [u8; 16] {
        let addr = self.addresses[index].to_string();
        let mut id = hash128(&[addr.as_bytes(), &self.port.to_be_bytes()]);
        id[6] = (id[6] & 0x0f) | 0x40; // version 4 layout
        id[8] = (id[8] & 0x3f) | 0x80;
        id
    }

    fn local_row(&self, info: &ClusterInfo) -> Vec<(&'static str, Cell)> {
        let me = self.addresses[self.index];
        vec![
            ("key", Cell::Text("local".into())),
            ("bootstrapped", Cell::Text("COMPLETED".into())),
            ("broadcast_address", Cell::Inet(me)),
            ("broadcast_port", Cell::Int(7000)),
            ("cluster_name", Cell::Text(info.cluster_name.clone())),
            ("cql_version", Cell::Text(info.cql_version.clone())),
            ("data_center", Cell::Text(info.data_center.clone())),
            ("host_id", Cell::Uuid(self.host_id(self.index))),
            ("listen_address", Cell::Inet(me)),
            ("listen_port", Cell::Int(7000)),
            ("native_protocol_version", Cell::Text("4".into())),
            ("partitioner", Cell::Text(info.partitioner.clone())),
            ("rack", Cell::Text(info.rack.clone())),
            ("release_version", Cell::Text(info.release_version.clone())),
            ("rpc_address", Cell::Inet(me)),
            ("rpc_port", Cell::Int(self.port as i32)),
            ("schema_version", Cell::Uuid(info.schema_version)),
            ("tokens", Cell::TextSet(self.tokens(self.index))),
        ]
    }

    /// A system.peers_v2 row (Cassandra 4+): ports of its own, the native one being the
    /// proxies' listen port.
    fn peer_v2_row(&self, i: usize, info: &ClusterInfo) -> Vec<(&'static str, Cell)> {
        let addr = self.addresses[i];
        vec![
            ("peer", Cell::Inet(addr)),
            ("peer_port", Cell::Int(7000)),
            ("data_center", Cell::Text(info.data_center.clone())),
            ("host_id", Cell::Uuid(self.host_id(i))),
            ("native_address", Cell::Inet(addr)),
            ("native_port", Cell::Int(self.port as i32)),
            ("preferred_ip", Cell::Inet(addr)),
            ("preferred_port", Cell::Int(7000)),
            ("rack", Cell::Text(info.rack.clone())),
            ("release_version", Cell::Text(info.release_version.clone())),
            ("schema_version", Cell::Uuid(info.schema_version)),
            ("tokens", Cell::TextSet(self.tokens(i))),
        ]
    }

    fn peer_row(&self, i: usize, info: &ClusterInfo) -> Vec<(&'static str, Cell)> {
        let addr = self.addresses[i];
        vec![
            ("peer", Cell::Inet(addr)),
            ("data_center", Cell::Text(info.data_center.clone())),
            ("host_id", Cell::Uuid(self.host_id(i))),
            ("preferred_ip", Cell::Inet(addr)),
            ("rack", Cell::Text(info.rack.clone())),
            ("release_version", Cell::Text(info.release_version.clone())),
            ("rpc_address", Cell::Inet(addr)),
            ("schema_version", Cell::Uuid(info.schema_version)),
            ("tokens", Cell::TextSet(self.tokens(i))),
        ]
    }

    /// Resolves the selection against the table, or gives the ERROR body Cassandra would.
    /// `bound`: the request's values, to filter the rows by the WHERE clause (`None` when
    /// preparing: no rows are needed, only the metadata).
    fn resolve(
        &self,
        select: &TopologySelect,
        info: &ClusterInfo,
        bound: Option<&Bound>,
    ) -> Result<Resolved, Bytes> {
        let peers = |row: fn(&Fleet, usize, &ClusterInfo) -> Row| -> Vec<Row> {
            (0..self.addresses.len())
                .filter(|i| *i != self.index)
                .map(|i| row(self, i, info))
                .collect()
        };
        let (table, rows): (&'static str, Vec<Row>) = match select.table {
            SystemTable::Local => ("local", vec![self.local_row(info)]),
            SystemTable::PeersV2 => ("peers_v2", peers(Fleet::peer_v2_row)),
            SystemTable::Peers => ("peers", peers(Fleet::peer_row)),
        };
        let template = match select.table {
            SystemTable::Local => self.local_row(info),
            SystemTable::Peers => self.peer_row(self.index, info),
            SystemTable::PeersV2 => self.peer_v2_row(self.index, info),
        };
        let wanted: Vec<(String, String)> = match &select.columns {
            None => template
                .iter()
                .map(|(n, _)| (n.to_string(), n.to_string()))
                .collect(),
            Some(cols) => cols.clone(),
        };
        let conditions = select
            .conditions
            .as_ref()
            .map_err(|why| wire::error_body(error_code::INVALID, why))?;
        let column_of = |name: &str| {
            template
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| {
                    wire::error_body(
                        error_code::INVALID,
                        &format!("Undefined column name {name} in table system.{table}"),
                    )
                })
        };
        let mut markers = Vec::new();
        // (column, literal value) for a literal term, (column, None) for a bind marker.
        let mut filters = Vec::new();
        for c in conditions {
            let p = column_of(&c.column)?;
            match &c.term {
                Term::Marker { name, .. } => {
                    markers.push((name.clone(), p));
                    filters.push((p, &c.term, None));
                }
                Term::Literal(text) => {
                    let value = template[p].1.literal(text).ok_or_else(|| {
                        wire::error_body(
                            error_code::INVALID,
                            &format!("Invalid literal `{text}` for column {}", c.column),
                        )
                    })?;
                    filters.push((p, &c.term, Some(value.freeze())));
                }
            }
        }
        let mut rows = rows;
        if let Some(bound) = bound {
            for (p, term, literal) in filters {
                let wanted = match term {
                    Term::Literal(_) => literal,
                    Term::Marker { index, name } => {
                        topology_where::bound_value(bound, *index, name)
                            .map_err(|why| wire::error_body(error_code::INVALID, &why))?
                            .cloned()
                    }
                };
                // A null never equals anything, as in CQL.
                rows.retain(|row| wanted.as_deref() == Some(&row[p].1.value()[..]));
            }
        }
        let mut columns = Vec::with_capacity(wanted.len());
        for (name, alias) in wanted {
            columns.push((alias, column_of(&name)?));
        }
        Ok(Resolved {
            table,
            columns,
            template,
            rows,
            markers,
        })
    }

    fn put_column_specs(
        b: &mut BytesMut,
        table: &str,
        columns: &[(String, usize)],
        template: &[(&'static str, Cell)],
    ) {
        wire::put_string(b, "system");
        wire::put_string(b, table);
        for (alias, p) in columns {
            wire::put_string(b, alias);
            let cell = &template[*p].1;
            b.put_u16(cell.type_id());
            if cell.type_id() == SET {
                b.put_u16(VARCHAR);
            }
        }
    }

    /// Builds the RESULT (or ERROR) body answering a topology SELECT: (opcode, body).
    /// `no_metadata` mirrors the request's Skip_metadata flag.
    pub fn answer(
        &self,
        select: &TopologySelect,
        info: &ClusterInfo,
        no_metadata: bool,
        bound: &Bound,
    ) -> (u8, Bytes) {
        use crate::protocol::frame::opcode;
        let Resolved {
            table,
            columns,
            template,
            rows,
            ..
        } = match self.resolve(select, info, Some(bound)) {
            Ok(r) => r,
            Err(body) => return (opcode::ERROR, body),
        };
        let mut b = BytesMut::new();
        b.put_i32(result_kind::ROWS);
        if no_metadata {
            b.put_i32(0x0004);
            b.put_i32(columns.len() as i32);
        } else {
            b.put_i32(0x0001); // global table spec
            b.put_i32(columns.len() as i32);
            Self::put_column_specs(&mut b, table, &columns, &template);
        }
        b.put_i32(rows.len() as i32);
        for row in &rows {
            for (_, p) in &columns {
                row[*p].1.encode(&mut b);
            }
        }
        (opcode::RESULT, b.freeze())
    }

    /// Builds the RESULT Prepared body for a topology SELECT prepared by a driver (the scylla
    /// driver prepares its control queries). Bind markers of its WHERE clause are described
    /// with their column's type; `id` is the proxy's own, stable for the same query text so
    /// re-preparing yields the same id.
    /// `version` 5 adds the result metadata id (derived from `id`: the result columns of one
    /// statement never change).
    pub fn prepared(
        &self,
        select: &TopologySelect,
        info: &ClusterInfo,
        id: &[u8],
        version: u8,
    ) -> (u8, Bytes) {
        use crate::protocol::frame::opcode;
        let Resolved {
            table,
            columns,
            template,
            markers,
            ..
        } = match self.resolve(select, info, None) {
            Ok(r) => r,
            Err(body) => return (opcode::ERROR, body),
        };
        let mut b = BytesMut::new();
        b.put_i32(result_kind::PREPARED);
        wire::put_short_bytes(&mut b, id);
        if version >= crate::protocol::frame::V5 {
            wire::put_short_bytes(&mut b, &hash128(&[b"zdm-proxy-result-metadata", id]));
        }
        // Bind-variable metadata: one variable per marker, no partition-key indexes (token
        // routing between proxies would gain nothing: every proxy answers these itself).
        b.put_i32(0x0001);
        b.put_i32(markers.len() as i32);
        b.put_i32(0);
        Self::put_column_specs(&mut b, table, &markers, &template);
        // Result metadata.
        b.put_i32(0x0001);
        b.put_i32(columns.len() as i32);
        Self::put_column_specs(&mut b, table, &columns, &template);
        (opcode::RESULT, b.freeze())
    }
}

/// A 16-byte FNV-1a hash: stable ids for proxy-made prepared statements and host ids.
pub fn hash128(parts: &[&[u8]]) -> [u8; 16] {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for part in parts {
        for b in part.iter() {
            h ^= *b as u128;
            h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B);
        }
    }
    h.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::routing::topology_select;

    fn fleet() -> Fleet {
        Fleet {
            addresses: vec![
                "127.0.0.21".parse().unwrap(),
                "127.0.0.22".parse().unwrap(),
                "127.0.0.23".parse().unwrap(),
            ],
            index: 1,
            num_tokens: 4,
            port: 9042,
        }
    }

    fn info() -> ClusterInfo {
        ClusterInfo {
            cluster_name: "c".into(),
            data_center: "dc9".into(),
            rack: "r".into(),
            release_version: "5.0.6".into(),
            partitioner: "org.apache.cassandra.dht.Murmur3Partitioner".into(),
            cql_version: "3.4.7".into(),
            schema_version: [7; 16],
        }
    }

    #[test]
    fn tokens_are_distinct_and_interleaved() {
        let f = fleet();
        let mut all: Vec<i128> = (0..3)
            .flat_map(|i| f.tokens(i))
            .map(|t| t.parse().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(f.tokens(0)[0], i64::MIN.to_string());
        assert_ne!(f.host_id(0), f.host_id(1));
    }

    #[test]
    fn peers_lists_the_other_proxies_with_requested_columns() {
        let f = fleet();
        let sel = topology_select(
            "SELECT host_id, rpc_address, data_center, rack, tokens FROM system.peers",
            SystemTable::Peers,
        );
        let (op, body) = f.answer(&sel, &info(), false, &Vec::new());
        assert_eq!(op, crate::protocol::frame::opcode::RESULT);
        let rows = wire::parse_rows(&body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1].1.as_deref(), Some(&[127u8, 0, 0, 21][..]));
        assert_eq!(rows[1][2].1.as_deref(), Some(&b"dc9"[..]));
        let bad = topology_select("SELECT nope FROM system.local", SystemTable::Local);
        assert_eq!(
            f.answer(&bad, &info(), false, &Vec::new()).0,
            crate::protocol::frame::opcode::ERROR
        );
    }

    /// Cassandra 5's columns and the values the drivers take the proxies' ports from.
    #[test]
    fn rows_have_cassandra_5_columns_and_the_proxy_port() {
        let f = fleet();
        let columns = |q: &str, t| {
            let (op, body) = f.answer(&topology_select(q, t), &info(), false, &Vec::new());
            assert_eq!(op, crate::protocol::frame::opcode::RESULT, "{q}");
            let rows = wire::parse_rows(&body).unwrap();
            let names: Vec<String> = rows[0].iter().map(|(n, _)| n.to_string()).collect();
            (names, rows)
        };
        let (local, rows) = columns("SELECT * FROM system.local", SystemTable::Local);
        for c in [
            "rpc_address",
            "rpc_port",
            "broadcast_port",
            "listen_port",
            "native_protocol_version",
        ] {
            assert!(local.iter().any(|n| n == c), "system.local lacks {c}");
        }
        let port = rows[0].iter().find(|(n, _)| n == "rpc_port").unwrap();
        assert_eq!(port.1.as_deref(), Some(&9042i32.to_be_bytes()[..]));
        let (v2, rows) = columns("SELECT * FROM system.peers_v2", SystemTable::PeersV2);
        assert_eq!(
            v2,
            [
                "peer",
                "peer_port",
                "data_center",
                "host_id",
                "native_address",
                "native_port",
                "preferred_ip",
                "preferred_port",
                "rack",
                "release_version",
                "schema_version",
                "tokens"
            ]
        );
        assert_eq!(rows.len(), 2, "the other two proxies");
        let native =
            |r: &wire::Row, c: &str| r.iter().find(|(n, _)| n == c).unwrap().1.clone().unwrap();
        assert_eq!(&native(&rows[0], "native_address")[..], &[127, 0, 0, 21]);
        assert_eq!(&native(&rows[1], "native_port")[..], &9042i32.to_be_bytes());
        let one = wire::parse_rows(
            &f.answer(
                &topology_select(
                    "SELECT native_port FROM system.peers_v2 WHERE peer = '127.0.0.23' AND peer_port = 7000",
                    SystemTable::PeersV2,
                ),
                &info(),
                false,
                &Vec::new(),
            )
            .1,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn where_clauses_filter_rows_by_literal_or_bound_value() {
        let f = fleet();
        let rows = |q: &str, table, bound: Bound| {
            let (op, body) = f.answer(&topology_select(q, table), &info(), false, &bound);
            assert_eq!(op, crate::protocol::frame::opcode::RESULT, "{q}");
            wire::parse_rows(&body).unwrap()
        };
        let peers = SystemTable::Peers;
        let one = rows(
            "SELECT peer FROM system.peers WHERE peer = '127.0.0.23'",
            peers,
            vec![],
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0][0].1.as_deref(), Some(&[127u8, 0, 0, 23][..]));
        let bound = |b: &[u8]| vec![(None, Some(Bytes::copy_from_slice(b)))];
        let one = rows(
            "SELECT peer FROM system.peers WHERE peer = ?",
            peers,
            bound(&[127, 0, 0, 21]),
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0][0].1.as_deref(), Some(&[127u8, 0, 0, 21][..]));
        // This proxy is not its own peer; an unknown address matches nothing; null neither.
        for b in [vec![127u8, 0, 0, 22], vec![10, 0, 0, 1]] {
            let none = rows(
                "SELECT * FROM system.peers WHERE peer = ?",
                peers,
                bound(&b),
            );
            assert!(none.is_empty());
        }
        assert!(rows(
            "SELECT * FROM system.peers WHERE peer = ?",
            peers,
            vec![(None, None)]
        )
        .is_empty());
        let local = SystemTable::Local;
        assert_eq!(
            rows(
                "SELECT key FROM system.local WHERE key = ?",
                local,
                bound(b"local")
            )
            .len(),
            1
        );
        assert!(rows(
            "SELECT key FROM system.local WHERE key = 'nope'",
            local,
            vec![]
        )
        .is_empty());
        // Errors Cassandra would give too, and the proxy's own limitation.
        for (q, t) in [
            ("SELECT * FROM system.peers WHERE nope = 1", peers),
            ("SELECT * FROM system.peers WHERE peer = 'not-an-ip'", peers),
            (
                "SELECT * FROM system.peers WHERE peer IN ('127.0.0.21')",
                peers,
            ),
            ("SELECT * FROM system.peers WHERE peer = ?", peers),
        ] {
            let (op, body) = f.answer(&topology_select(q, t), &info(), false, &vec![]);
            assert_eq!(op, crate::protocol::frame::opcode::ERROR, "{q}");
            assert_eq!(
                wire::parse_error(&body).unwrap().0,
                error_code::INVALID,
                "{q}"
            );
        }
    }

    #[test]
    fn prepared_topology_statements_describe_their_bind_markers() {
        let f = fleet();
        let sel = topology_select(
            "SELECT rpc_address FROM system.peers WHERE peer = :address",
            SystemTable::Peers,
        );
        let (op, body) = f.prepared(&sel, &info(), b"id", 4);
        assert_eq!(op, crate::protocol::frame::opcode::RESULT);
        let mut r = wire::Reader::new(&body);
        assert_eq!(r.int().unwrap(), result_kind::PREPARED);
        assert_eq!(r.short_bytes().unwrap(), b"id");
        assert_eq!(r.int().unwrap(), 0x0001);
        assert_eq!(r.int().unwrap(), 1, "one bind variable");
        assert_eq!(r.int().unwrap(), 0, "no partition-key indexes");
        assert_eq!(
            (r.string().unwrap(), r.string().unwrap()),
            ("system", "peers")
        );
        assert_eq!(r.string().unwrap(), "address");
        assert_eq!(r.short().unwrap(), INET);
    }
}
