//! Handling of one client request after the handshake: routing, dual writes, prepared-id
//! rewriting and the answer the client gets.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use crate::ops::config::{Cluster, ReadMode};
use crate::ops::metrics::RequestType;
use crate::protocol::frame::{opcode, Frame, FrameError};
use crate::protocol::wire::{self, error_code, result_kind, Reader};
use crate::shadow::{PreparedRef, Shadow, ShadowRead};
use crate::state::Shared;
use crate::statements::prepared::Prepared;
use crate::statements::routing::{self, Route, SystemTable};
use crate::statements::topology::Fleet;
use crate::statements::write_metrics::{self, TableRef};
use crate::statements::write_rewrite::{self, BatchError};
use crate::statements::{consistency, cql_functions, prepared_now, topology_where};
use crate::upstream::cluster::{ClusterConn, ClusterError};

/// One client connection's view after the handshake.
pub struct Session {
    pub shared: Arc<Shared>,
    pub origin: Arc<ClusterConn>,
    pub target: Arc<ClusterConn>,
    pub fleet: Fleet,
    /// The protocol version negotiated with the client (and spoken to the clusters).
    pub version: u8,
    keyspace: Mutex<Option<String>>,
    shadow: Shadow,
}

fn error_frame(code: i32, msg: &str) -> Frame {
    Frame::response(0, opcode::ERROR, wire::error_body(code, msg))
}

fn cluster_error_frame(c: Cluster, e: &ClusterError) -> Frame {
    match e {
        ClusterError::StreamIdsExhausted(_) => error_frame(
            error_code::OVERLOADED,
            &format!("zdm-proxy: no free stream id towards {}; retry", c.name()),
        ),
        other => error_frame(
            error_code::SERVER_ERROR,
            &format!("zdm-proxy: {}: {other}", c.name()),
        ),
    }
}

fn is_error(f: &Frame) -> bool {
    f.opcode == opcode::ERROR
}

fn error_code_of(f: &Frame) -> Option<i32> {
    is_error(f)
        .then(|| wire::parse_error(&f.body).map(|e| e.0))
        .flatten()
}

/// Replaces the [short bytes] id at `at` in `body` by `id`.
fn replace_id(body: &[u8], at: usize, old_len: usize, id: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + id.len());
    b.put_slice(&body[..at]);
    wire::put_short_bytes(&mut b, id);
    b.put_slice(&body[at + 2 + old_len..]);
    b.freeze()
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        origin: Arc<ClusterConn>,
        target: Arc<ClusterConn>,
        local_ip: IpAddr,
        version: u8,
    ) -> Session {
        let cfg = &shared.config;
        let fleet = if cfg.proxy_topology_addresses.is_empty() {
            Fleet {
                addresses: vec![local_ip],
                index: 0,
                num_tokens: cfg.proxy_topology_num_tokens,
                port: cfg.proxy_listen_port,
            }
        } else {
            Fleet {
                addresses: cfg
                    .proxy_topology_addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect(),
                index: cfg.proxy_topology_index,
                num_tokens: cfg.proxy_topology_num_tokens,
                port: cfg.proxy_listen_port,
            }
        };
        Session {
            shadow: Shadow::new(shared.clone(), version),
            version,
            shared,
            origin,
            target,
            fleet,
            keyspace: Mutex::new(None),
        }
    }

    fn conn(&self, c: Cluster) -> &ClusterConn {
        match c {
            Cluster::Origin => &self.origin,
            Cluster::Target => &self.target,
        }
    }

    fn primary(&self) -> Cluster {
        self.shared.live().primary_cluster
    }

    /// Answers one request; the returned frame already carries the client's stream id.
    pub async fn handle(&self, req: Frame) -> Frame {
        let started = Instant::now();
        let m = &self.shared.metrics;
        m.requests_total.inc();
        let mut resp = match self.dispatch(&req).await {
            Ok(f) => f,
            Err(e) => error_frame(error_code::PROTOCOL_ERROR, &e.to_string()),
        };
        m.requests_duration.observe(started.elapsed());
        if is_error(&resp) {
            m.errors_total.inc();
        }
        resp.version = self.version | crate::protocol::frame::RESPONSE;
        resp.stream = req.stream;
        resp
    }

    async fn dispatch(&self, req: &Frame) -> Result<Frame, FrameError> {
        match req.opcode {
            opcode::QUERY => self.query(req).await,
            opcode::PREPARE => self.prepare(req).await,
            opcode::EXECUTE => self.execute(req).await,
            opcode::BATCH => self.batch(req).await,
            opcode::OPTIONS => Ok(Frame::response(
                0,
                opcode::SUPPORTED,
                wire::supported_body(self.shared.health.max_client_version()),
            )),
            opcode::REGISTER => Ok(self.register(req).await),
            opcode::STARTUP | opcode::AUTH_RESPONSE => Ok(error_frame(
                error_code::PROTOCOL_ERROR,
                "connection is already authenticated",
            )),
            other => Ok(error_frame(
                error_code::PROTOCOL_ERROR,
                &format!("unknown or unexpected request opcode {other:#04x}"),
            )),
        }
    }

    /// REGISTER goes to both clusters, as the reference proxy does; the client gets origin's
    /// answer, since only origin's events are relayed (`events`). Target's refusal is only
    /// logged: it cannot change what the client receives. Drivers send REGISTER while setting
    /// up a connection, so it is bounded by the connection timeouts, as the handshake is, not
    /// by the request timeout.
    async fn register(&self, req: &Frame) -> Frame {
        let send = |c: Cluster| {
            let timeout = std::time::Duration::from_millis(
                self.shared.config.cluster(c).connection_timeout_ms,
            );
            self.conn(c)
                .request(req.opcode, req.flags, req.body.clone(), timeout)
        };
        let (o, t) = tokio::join!(send(Cluster::Origin), send(Cluster::Target));
        match t {
            Ok(f) if is_error(&f) => tracing::debug!(
                "target refused REGISTER: {}",
                wire::parse_error(&f.body).map(|e| e.1).unwrap_or_default()
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!("REGISTER on target: {e}"),
        }
        o.unwrap_or_else(|e| cluster_error_frame(Cluster::Origin, &e))
    }

    async fn query(&self, req: &Frame) -> Result<Frame, FrameError> {
        let off = req.message_offset()?;
        let query = Reader::at(&req.body, off).long_string()?;
        let keyspace = self.keyspace.lock().unwrap().clone();
        match routing::classify(query, keyspace.as_deref()) {
            Route::Topology(table) => {
                let mut r = Reader::at(&req.body, off);
                r.long_string()?;
                let (no_metadata, bound) = topology_where::read_parameters(&mut r, self.version)?;
                Ok(self.topology(query, table, no_metadata, &bound))
            }
            Route::Origin => Ok(self.read(Cluster::Origin, req, req.body.clone()).await),
            Route::Primary => {
                let body = |_: Cluster| req.body.clone();
                Ok(self.primary_read(req, body, Some(query), None).await)
            }
            Route::Both => {
                let use_ks = routing::use_keyspace(query);
                let writes = write_metrics::tables_of(query, keyspace.as_deref());
                let body = match self.shared.config.replace_cql_functions {
                    true => write_rewrite::query_with_now_replaced(&req.body, off)?,
                    false => None,
                }
                .unwrap_or_else(|| req.body.clone());
                let target = self.for_target(req.opcode, body.clone(), off);
                let risks = crate::statements::unsafe_writes::risks(
                    &writes,
                    query,
                    self.shared.config.replace_cql_functions,
                );
                let resp = self.write(req, body, target, &writes, &risks).await;
                if let Some(ks) = use_ks {
                    if !is_error(&resp) {
                        *self.keyspace.lock().unwrap() = Some(ks);
                    }
                }
                Ok(resp)
            }
        }
    }

    /// Answers a SELECT of system.local / system.peers(_v2) from the proxy's own view.
    /// `bound`: the request's values, for the bind markers of its WHERE clause.
    fn topology(
        &self,
        query: &str,
        table: SystemTable,
        no_metadata: bool,
        bound: &topology_where::Bound,
    ) -> Frame {
        let select = routing::topology_select(query, table);
        let info = self.shared.info.read().unwrap().clone();
        let Some(info) = info else {
            return error_frame(
                error_code::SERVER_ERROR,
                "zdm-proxy: origin facts not yet known",
            );
        };
        let (op, body) = self.fleet.answer(&select, &info, no_metadata, bound);
        Frame::response(0, op, body)
    }

    async fn send(&self, c: Cluster, req: &Frame, body: Bytes) -> Result<Frame, ClusterError> {
        let m = &self.shared.metrics;
        match c {
            Cluster::Origin => m.origin_requests_total.inc(),
            Cluster::Target => m.target_requests_total.inc(),
        }
        self.conn(c)
            .request(
                req.opcode,
                req.flags,
                body,
                self.shared.live().request_timeout_for(c),
            )
            .await
    }

    /// A read: one cluster answers.
    async fn read(&self, c: Cluster, req: &Frame, body: Bytes) -> Frame {
        let m = &self.shared.metrics;
        let t = match c {
            Cluster::Origin => RequestType::ReadsOrigin,
            Cluster::Target => RequestType::ReadsTarget,
        };
        m.inflight(t).add(1);
        let started = Instant::now();
        let result = self.send(c, req, body).await;
        m.inflight(t).add(-1);
        m.duration(t).observe(started.elapsed());
        match result {
            Ok(f) => {
                if is_error(&f) {
                    m.failed_read(c);
                }
                f
            }
            Err(e) => {
                m.failed_read(c);
                cluster_error_frame(c, &e)
            }
        }
    }

    /// A read of user data: the primary answers. In DUAL_ASYNC_ON_SECONDARY (read per request,
    /// so a reload applies to open connections) the secondary gets the same read in the
    /// background, queued before the primary's is sent; the client never waits for it.
    async fn primary_read(
        &self,
        req: &Frame,
        body_for: impl Fn(Cluster) -> Bytes,
        statement: Option<&str>,
        prepared: Option<PreparedRef>,
    ) -> Frame {
        let (primary, mode) = {
            let live = self.shared.live();
            (live.primary_cluster, live.read_mode)
        };
        let secondary = primary.other();
        let shadow = (mode == ReadMode::DualAsyncOnSecondary)
            .then(|| {
                let keyspace = self.keyspace.lock().unwrap().clone();
                self.shadow.submit(ShadowRead {
                    cluster: secondary,
                    opcode: req.opcode,
                    flags: req.flags,
                    body: body_for(secondary),
                    table: statement.and_then(|q| routing::select_table(q, keyspace.as_deref())),
                    keyspace,
                    prepared,
                })
            })
            .flatten();
        let resp = self.read(primary, req, body_for(primary)).await;
        if let Some(s) = shadow {
            s.deliver(&resp);
        }
        resp
    }

    /// `body` as target gets it: with `target_consistency_level`, if set, as its consistency.
    fn for_target(&self, op: u8, body: Bytes, off: usize) -> Bytes {
        match self.shared.live().target_consistency_level {
            Some(level) => consistency::override_level(op, body, off, level, self.version),
            None => body,
        }
    }

    /// A write: both clusters; the client gets the primary's answer, or the error if either
    /// failed (both failed: the primary's error). `writes` are the tables it writes (metrics).
    async fn write(
        &self,
        req: &Frame,
        origin_body: Bytes,
        target_body: Bytes,
        writes: &[TableRef],
        risks: &[(TableRef, &'static str)],
    ) -> Frame {
        let m = &self.shared.metrics;
        m.inflight(RequestType::Writes).add(1);
        let started = Instant::now();
        let (o, t) = tokio::join!(
            self.send(Cluster::Origin, req, origin_body),
            self.send(Cluster::Target, req, target_body)
        );
        m.inflight(RequestType::Writes).add(-1);
        m.duration(RequestType::Writes).observe(started.elapsed());
        let o = o.unwrap_or_else(|e| cluster_error_frame(Cluster::Origin, &e));
        let t = t.unwrap_or_else(|e| cluster_error_frame(Cluster::Target, &e));
        for (c, f) in [(Cluster::Origin, &o), (Cluster::Target, &t)] {
            if error_code_of(f) != Some(error_code::UNPREPARED) {
                m.writes.record(writes, c, !is_error(f));
            }
        }
        self.count_unsafe(risks, writes, &o, &t);
        let primary_cluster = self.primary();
        let (primary, secondary) = match primary_cluster {
            Cluster::Origin => (o, t),
            Cluster::Target => (t, o),
        };
        match (is_error(&primary), is_error(&secondary)) {
            (false, false) => primary,
            (true, true) => {
                m.failed_writes_both.inc();
                primary
            }
            (true, false) => {
                self.count_failed_write(primary_cluster);
                primary
            }
            (false, true) => {
                self.count_failed_write(primary_cluster.other());
                secondary
            }
        }
    }

    /// Counts what dual writing cannot keep equal (see `unsafe_writes`), once both answers
    /// are in: nothing when the write failed on both clusters (neither changed).
    fn count_unsafe(
        &self,
        risks: &[(TableRef, &'static str)],
        writes: &[TableRef],
        o: &Frame,
        t: &Frame,
    ) {
        let m = &self.shared.metrics.unsafe_writes;
        let (o_err, t_err) = (is_error(o), is_error(t));
        if o_err && t_err {
            return;
        }
        for (table, cause) in risks {
            m.record_one(table, cause);
            if *cause == crate::statements::unsafe_writes::COUNTER && o_err != t_err {
                m.record_one(
                    table,
                    crate::statements::unsafe_writes::COUNTER_FAILED_ON_ONE,
                );
            }
        }
        if !o_err && !t_err && crate::statements::unsafe_writes::lwt_outcomes_differ(o, t) {
            m.record(writes, crate::statements::unsafe_writes::LWT_OUTCOME);
        }
    }

    fn count_failed_write(&self, c: Cluster) {
        let m = &self.shared.metrics;
        match c {
            Cluster::Origin => m.failed_writes_origin.inc(),
            Cluster::Target => m.failed_writes_target.inc(),
        }
    }

    async fn prepare(&self, req: &Frame) -> Result<Frame, FrameError> {
        let off = req.message_offset()?;
        let query = Reader::at(&req.body, off).long_string()?;
        let keyspace = self.keyspace.lock().unwrap().clone();
        let route = routing::classify(query, keyspace.as_deref());
        // Topology statements (with or without bind markers) are the proxy's to answer: origin
        // would describe the real cluster.
        if let Route::Topology(table) = route {
            return Ok(self.prepare_topology(query, table));
        }
        let mut writes = write_metrics::tables_of(query, keyspace.as_deref());
        let mut now_not_replaced = None;
        if route == Route::Both && self.shared.config.replace_cql_functions {
            if let Some(rw) = cql_functions::rewrite_for_prepare(query) {
                let end = off + 4 + query.len();
                let body = write_rewrite::with_statement(&req.body, off, end, &rw.text);
                match self.prepare_with_now(req, body, &rw, &mut writes).await {
                    Ok(resp) => return Ok(resp),
                    Err(why) => now_not_replaced = Some(why),
                }
            }
        }
        let (o, t) = tokio::join!(
            self.send(Cluster::Origin, req, req.body.clone()),
            self.send(Cluster::Target, req, req.body.clone())
        );
        let o = o.unwrap_or_else(|e| cluster_error_frame(Cluster::Origin, &e));
        let t = t.unwrap_or_else(|e| cluster_error_frame(Cluster::Target, &e));
        if is_error(&o) {
            return Ok(o);
        }
        if is_error(&t) {
            return Ok(t);
        }
        let (Some(origin_id), Some(target_id)) = (prepared_id(&o), prepared_id(&t)) else {
            return Ok(error_frame(
                error_code::SERVER_ERROR,
                "zdm-proxy: PREPARE answer without an id",
            ));
        };
        let functions_rewritten = now_not_replaced.is_none();
        if let Some(why) = now_not_replaced {
            tracing::warn!(
                "replace_cql_functions: now() left to the clusters in a prepared statement \
                 ({why}); origin and target will store different values"
            );
        }
        use_prepared_table(&mut writes, &o, self.version);
        let replaced = self.shared.config.replace_cql_functions && functions_rewritten;
        let risks = crate::statements::unsafe_writes::risks(&writes, query, replaced).into();
        let n = self.shared.prepared.insert(
            origin_id,
            Prepared {
                origin_id: None,
                target_id,
                route,
                // Kept to re-prepare it on a shadow-read connection that lost it.
                query: Some(query.into()),
                writes: writes.into(),
                now: None,
                risks,
            },
        );
        self.shared.metrics.pscache_entries.set(n as i64);
        Ok(o)
    }

    /// PREPARE of a write whose `now()` calls became bind markers (`body`): the client gets
    /// origin's answer without the injected variables. `Err` (nothing cached, the caller
    /// prepares the statement as the client wrote it) when either cluster's answer does not
    /// have the variables the proxy expects, or refuses the rewritten text as invalid (the
    /// statement as written then decides: the client hears its own statement's error, if any).
    /// Other ERROR answers (overloaded, timeouts) are the client's answer: retried, they will
    /// be rewritten again rather than silently left unreplaced.
    async fn prepare_with_now(
        &self,
        req: &Frame,
        body: Bytes,
        rw: &cql_functions::PreparedRewrite,
        writes: &mut Vec<TableRef>,
    ) -> Result<Frame, String> {
        let (o, t) = tokio::join!(
            self.send(Cluster::Origin, req, body.clone()),
            self.send(Cluster::Target, req, body)
        );
        let o = o.unwrap_or_else(|e| cluster_error_frame(Cluster::Origin, &e));
        let t = t.unwrap_or_else(|e| cluster_error_frame(Cluster::Target, &e));
        for (c, f) in [(Cluster::Origin, &o), (Cluster::Target, &t)] {
            if let Some((code, msg)) = is_error(f).then(|| wire::parse_error(&f.body)).flatten() {
                if code == error_code::SYNTAX_ERROR || code == error_code::INVALID {
                    return Err(format!("{} refused the rewritten text: {msg}", c.name()));
                }
            }
        }
        if is_error(&o) {
            return Ok(o);
        }
        if is_error(&t) {
            return Ok(t);
        }
        let (Some(origin_id), Some(target_id)) = (prepared_id(&o), prepared_id(&t)) else {
            return Err("PREPARE answer without an id".into());
        };
        let (client_body, markers) = prepared_now::hide_injected(
            o.flags,
            &o.body,
            &rw.injected,
            &rw.kinds,
            rw.total,
            self.version,
        )
        .map_err(|e| format!("origin: {e}"))?;
        let (_, target_markers) = prepared_now::hide_injected(
            t.flags,
            &t.body,
            &rw.injected,
            &rw.kinds,
            rw.total,
            self.version,
        )
        .map_err(|e| format!("target: {e}"))?;
        if target_markers.names != markers.names {
            return Err("origin and target name the injected variables differently".into());
        }
        use_prepared_table(writes, &o, self.version);
        let client_id = self.id_of_client_text(req).await.unwrap_or_else(|why| {
            tracing::warn!(
                "replace_cql_functions: the client gets the rewritten statement's id ({why}); \
                 a driver that prepared it with replacement off will refuse the new id"
            );
            origin_id.clone()
        });
        let client_body = with_prepared_id(o.flags, &client_body, &client_id)
            .map_err(|e| format!("origin: {e}"))?;
        let n = self.shared.prepared.insert(
            client_id.clone(),
            Prepared {
                origin_id: (client_id != origin_id).then_some(origin_id),
                target_id,
                route: Route::Both,
                query: None,
                // The functions are the proxy's now; increments stay unsafe.
                risks: crate::statements::unsafe_writes::risks(writes, &rw.text, true).into(),
                writes: std::mem::take(writes).into(),
                now: Some(Arc::new(markers)),
            },
        );
        self.shared.metrics.pscache_entries.set(n as i64);
        let mut resp = o;
        resp.body = client_body;
        Ok(resp)
    }

    /// The id origin gives the statement exactly as the client wrote it (origin prepares that
    /// text too, which executes nothing): what the client would have got with
    /// `replace_cql_functions` off, so switching the setting never changes a statement's id
    /// under a driver, which refuses an id that changes on re-prepare. Computing it instead
    /// would copy Cassandra's hashing rules, which differ between versions.
    async fn id_of_client_text(&self, req: &Frame) -> Result<Bytes, String> {
        let answer = self
            .send(Cluster::Origin, req, req.body.clone())
            .await
            .map_err(|e| e.to_string())?;
        if is_error(&answer) {
            let why = wire::parse_error(&answer.body).map(|(_, msg)| msg);
            return Err(why.unwrap_or_else(|| "an error".into()));
        }
        prepared_id(&answer).ok_or_else(|| "PREPARE answer without an id".into())
    }

    /// PREPARE of a topology query: answered by the proxy with its own stable id, so the
    /// EXECUTEs come back here too.
    fn prepare_topology(&self, query: &str, table: SystemTable) -> Frame {
        let info = self.shared.info.read().unwrap().clone();
        let Some(info) = info else {
            return error_frame(
                error_code::SERVER_ERROR,
                "zdm-proxy: origin facts not yet known",
            );
        };
        let mut id =
            crate::statements::topology::hash128(&[b"zdm-proxy-topology", query.as_bytes()])
                .to_vec();
        id.truncate(16);
        let select = routing::topology_select(query, table);
        let (op, body) = self.fleet.prepared(&select, &info, &id, self.version);
        if op == opcode::RESULT {
            let entry = Prepared {
                origin_id: None,
                target_id: Bytes::new(),
                route: Route::Topology(table),
                query: Some(query.into()),
                writes: Vec::new().into(),
                now: None,
                risks: Default::default(),
            };
            let n = self.shared.prepared.insert(Bytes::from(id), entry);
            self.shared.metrics.pscache_entries.set(n as i64);
        }
        Frame::response(0, op, body)
    }

    fn unprepared(&self, id: &[u8]) -> Frame {
        self.shared.metrics.pscache_miss.inc();
        Frame::response(0, opcode::ERROR, wire::unprepared_body(id))
    }

    async fn execute(&self, req: &Frame) -> Result<Frame, FrameError> {
        let off = req.message_offset()?;
        let id = Bytes::copy_from_slice(Reader::at(&req.body, off).short_bytes()?);
        let Some(entry) = self.shared.prepared.get(&id) else {
            return Ok(self.unprepared(&id));
        };
        if let (Route::Topology(table), Some(query)) = (&entry.route, &entry.query) {
            let mut r = Reader::at(&req.body, off);
            r.short_bytes()?;
            if self.version >= crate::protocol::frame::V5 {
                r.short_bytes()?; // result metadata id
            }
            let (no_metadata, bound) = topology_where::read_parameters(&mut r, self.version)?;
            return Ok(self.topology(query, *table, no_metadata, &bound));
        }
        let resp = match entry.route {
            Route::Both => {
                let origin_body = match &entry.now {
                    Some(markers) => {
                        let uuids = prepared_now::fresh_values(markers);
                        // The query parameters follow the id (and, in v5, the result
                        // metadata id).
                        let mut r = Reader::at(&req.body, off);
                        r.short_bytes()?;
                        if self.version >= crate::protocol::frame::V5 {
                            r.short_bytes()?;
                        }
                        let params = r.pos();
                        prepared_now::inject_execute(
                            &req.body,
                            params,
                            markers,
                            &uuids,
                            self.version,
                        )?
                    }
                    _ => req.body.clone(),
                };
                let target = execute_body_for(Cluster::Target, &origin_body, off, &id, &entry);
                let target = self.for_target(req.opcode, target, off);
                let origin_body = execute_body_for(Cluster::Origin, &origin_body, off, &id, &entry);
                self.write(req, origin_body, target, &entry.writes, &entry.risks)
                    .await
            }
            Route::Primary => {
                let body = |c: Cluster| execute_body_for(c, &req.body, off, &id, &entry);
                let prepared = entry.query.clone().map(|query| PreparedRef {
                    id_offset: off,
                    query,
                });
                self.primary_read(req, body, entry.query.as_deref(), prepared)
                    .await
            }
            _ => self.read(Cluster::Origin, req, req.body.clone()).await,
        };
        // A cluster that lost the statement (restart, eviction) says UNPREPARED with its own id;
        // the client must hear the id it knows.
        if error_code_of(&resp) == Some(error_code::UNPREPARED) {
            return Ok(self.unprepared(&id));
        }
        Ok(resp)
    }

    async fn batch(&self, req: &Frame) -> Result<Frame, FrameError> {
        let off = req.message_offset()?;
        let keyspace = self.keyspace.lock().unwrap().clone();
        let bodies = match write_rewrite::rewrite_batch(
            &req.body,
            off,
            keyspace.as_deref(),
            self.shared.config.replace_cql_functions,
            |id| self.shared.prepared.get(id),
        ) {
            Ok(b) => b,
            Err(BatchError::Unprepared(id)) => return Ok(self.unprepared(&id)),
            Err(BatchError::Frame(e)) => return Err(e),
        };
        let ids = bodies.ids;
        let target = self.for_target(req.opcode, bodies.target, off);
        let resp = self
            .write(req, bodies.origin, target, &bodies.writes, &bodies.risks)
            .await;
        if error_code_of(&resp) == Some(error_code::UNPREPARED) {
            return Ok(self.unprepared(&client_id_of_unprepared(&resp.body, &ids)));
        }
        Ok(resp)
    }
}

/// The EXECUTE body cluster `c` gets: the client's own, with that cluster's id in place of the
/// client's where they differ (target's always may; origin's when the proxy rewrote the
/// statement). `id` is the id in `body` at `off`.
fn execute_body_for(c: Cluster, body: &Bytes, off: usize, id: &[u8], entry: &Prepared) -> Bytes {
    match (c, &entry.origin_id) {
        (Cluster::Origin, None) => body.clone(),
        (Cluster::Origin, Some(origin_id)) => replace_id(body, off, id.len(), origin_id),
        (Cluster::Target, _) => replace_id(body, off, id.len(), &entry.target_id),
    }
}

/// A PREPARED answer's body with `id` as the statement id.
fn with_prepared_id(flags: u8, body: &Bytes, id: &[u8]) -> Result<Bytes, FrameError> {
    let at = crate::protocol::frame::response_message_offset(flags, body)? + 4; // after the result kind
    let old = Reader::at(body, at).short_bytes()?.len();
    Ok(replace_id(body, at, old, id))
}

/// The id the client must re-prepare, from a cluster's UNPREPARED answer to a BATCH: the
/// client's id of the child whose origin or target id the cluster names.
fn client_id_of_unprepared(error_body: &[u8], ids: &[write_rewrite::ChildIds]) -> Bytes {
    let mut er = Reader::new(error_body);
    let _ = er.int();
    let _ = er.string();
    let unknown = er.short_bytes().unwrap_or_default();
    ids.iter()
        .find(|c| c.origin.as_ref() == unknown || c.target.as_ref() == unknown)
        .or_else(|| ids.first())
        .map(|c| c.client.clone())
        .unwrap_or_default()
}

/// Replaces a single parsed write table by the one the cluster's PREPARED answer names: the
/// cluster resolved the keyspace and the identifiers' case, the proxy's parse only guessed.
fn use_prepared_table(writes: &mut [TableRef], answer: &Frame, version: u8) {
    if let [only] = writes {
        if let Some((keyspace, table)) =
            prepared_now::prepared_table(answer.flags, &answer.body, version)
        {
            *only = TableRef { keyspace, table };
        }
    }
}

/// The id of a RESULT Prepared answer (after its tracing id / warnings, if flagged).
fn prepared_id(f: &Frame) -> Option<Bytes> {
    let at = f.response_message_offset().ok()?;
    let mut r = Reader::at(&f.body, at);
    if r.int().ok()? != result_kind::PREPARED {
        return None;
    }
    Some(Bytes::copy_from_slice(r.short_bytes().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_short_bytes_id_in_place() {
        let mut b = BytesMut::new();
        b.put_slice(b"pp");
        wire::put_short_bytes(&mut b, b"old");
        b.put_slice(b"tail");
        let out = replace_id(&b, 2, 3, b"newid");
        let mut r = Reader::at(&out, 2);
        assert_eq!(r.short_bytes().unwrap(), b"newid");
        assert_eq!(&out[..2], b"pp");
        assert_eq!(&out[out.len() - 4..], b"tail");
    }

    /// A RESULT Prepared answer carrying `id` (what a cluster answers a PREPARE with).
    fn prepared_answer(id: &[u8]) -> Frame {
        let mut b = BytesMut::new();
        b.put_i32(result_kind::PREPARED);
        wire::put_short_bytes(&mut b, id);
        b.put_i32(0x0001); // bind metadata: global spec, 2 variables, no pk
        b.put_i32(2);
        b.put_i32(0);
        Frame::response(0, opcode::RESULT, b.freeze())
    }

    fn values(b: &mut BytesMut, vals: &[&[u8]]) {
        b.put_u16(vals.len() as u16);
        for v in vals {
            wire::put_bytes(b, Some(v));
        }
    }

    /// The prepared ids of a BATCH body's prepared children, in order.
    fn batch_child_ids(body: &[u8]) -> Vec<Vec<u8>> {
        let mut r = Reader::new(body);
        r.byte().unwrap();
        let n = r.short().unwrap();
        let mut ids = Vec::new();
        for _ in 0..n {
            match r.byte().unwrap() {
                0 => {
                    r.long_string().unwrap();
                }
                _ => ids.push(r.short_bytes().unwrap().to_vec()),
            }
            for _ in 0..r.short().unwrap() {
                r.bytes().unwrap();
            }
        }
        ids
    }

    /// Origin and target computing different ids for the same statements (as clusters of
    /// different versions or with different keyspace names in the hash do): every EXECUTE and
    /// BATCH child must reach each cluster with that cluster's id, and a cluster's UNPREPARED
    /// must come back to the client with the id it knows.
    #[test]
    fn each_cluster_gets_its_own_prepared_id_and_unprepared_maps_back_to_the_client_s() {
        let cache = crate::statements::prepared::PreparedCache::new(16);
        let statements = [
            (&b"origin-id-insert"[..], &b"TARGET-ID-INSERT-0123"[..]),
            (&b"origin-id-update"[..], &b"TARGET-ID-UPDATE-4567"[..]),
        ];
        // The second statement's functions were replaced: origin knows the rewrite by another
        // id than the one of the client's text, which the client holds.
        const REWRITE_ID: &[u8] = b"origin-id-of-the-rewrite";
        for (i, (o, t)) in statements.into_iter().enumerate() {
            // What `prepare` does with the two answers.
            let (oid, tid) = (
                prepared_id(&prepared_answer(o)).unwrap(),
                prepared_id(&prepared_answer(t)).unwrap(),
            );
            assert_eq!((oid.as_ref(), tid.as_ref()), (o, t));
            cache.insert(
                oid,
                Prepared {
                    origin_id: (i == 1).then(|| Bytes::from_static(REWRITE_ID)),
                    target_id: tid,
                    route: Route::Both,
                    query: None,
                    writes: Vec::new().into(),
                    now: None,
                    risks: Default::default(),
                },
            );
        }

        // EXECUTE, as the client sends it: origin's id.
        let (oid, tid) = statements[0];
        let mut b = BytesMut::new();
        wire::put_short_bytes(&mut b, oid);
        b.put_u16(0x000A); // LOCAL_ONE
        b.put_u8(0x01);
        values(&mut b, &[b"k1", b"v1"]);
        let req = Frame::request(5, opcode::EXECUTE, b.freeze());
        let off = req.message_offset().unwrap();
        let id = Reader::at(&req.body, off).short_bytes().unwrap().to_vec();
        let entry = cache.get(&id).unwrap();
        let to_origin = execute_body_for(Cluster::Origin, &req.body, off, &id, &entry);
        let to_target = execute_body_for(Cluster::Target, &req.body, off, &id, &entry);
        let mut ro = Reader::at(&to_origin, off);
        let mut rt = Reader::at(&to_target, off);
        assert_eq!(ro.short_bytes().unwrap(), oid);
        assert_eq!(rt.short_bytes().unwrap(), tid);
        assert_eq!(
            &to_origin[ro.pos()..],
            &to_target[rt.pos()..],
            "parameters unchanged"
        );
        // The rewritten statement reaches origin with origin's id for the rewrite.
        let cid = statements[1].0;
        let mut b = BytesMut::new();
        wire::put_short_bytes(&mut b, cid);
        b.put_u16(0x000A);
        b.put_u8(0x01);
        values(&mut b, &[b"k1"]);
        let req = Frame::request(6, opcode::EXECUTE, b.freeze());
        let entry = cache.get(cid).unwrap();
        let to_origin = execute_body_for(Cluster::Origin, &req.body, off, cid, &entry);
        assert_eq!(
            Reader::at(&to_origin, off).short_bytes().unwrap(),
            REWRITE_ID
        );

        // BATCH: a simple statement between two prepared children.
        let mut b = BytesMut::new();
        b.put_u8(0);
        b.put_u16(3);
        b.put_u8(1);
        wire::put_short_bytes(&mut b, statements[0].0);
        values(&mut b, &[b"k2", b"v2"]);
        b.put_u8(0);
        wire::put_long_string(&mut b, "INSERT INTO ks.t (k) VALUES (1)");
        values(&mut b, &[]);
        b.put_u8(1);
        wire::put_short_bytes(&mut b, statements[1].0);
        values(&mut b, &[b"v3", b"k3"]);
        b.put_u16(0x0001);
        b.put_u8(0);
        let body = b.freeze();
        let out = write_rewrite::rewrite_batch(&body, 0, None, false, |id| cache.get(id)).unwrap();
        assert_eq!(
            batch_child_ids(&out.origin),
            vec![statements[0].0.to_vec(), REWRITE_ID.to_vec()]
        );
        assert_eq!(
            batch_child_ids(&out.target),
            vec![statements[0].1.to_vec(), statements[1].1.to_vec()]
        );

        // UNPREPARED from either cluster, for the second child: the client hears its own id.
        for unknown in [statements[1].1, REWRITE_ID] {
            let answer = wire::unprepared_body(unknown);
            assert_eq!(
                client_id_of_unprepared(&answer, &out.ids).as_ref(),
                statements[1].0
            );
        }
    }
}
