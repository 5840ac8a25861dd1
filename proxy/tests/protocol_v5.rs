//! Protocol v5 end to end: a raw v5 client (the scylla driver speaks v4 only) through the proxy
//! to the sandbox's Cassandra 5 clusters, which speak v5 to the proxy in turn (so they check
//! the proxy's segments and CRCs). Uncompressed and LZ4 segments, a row larger than one
//! segment both ways, several requests in one segment, v5 QUERY/PREPARE/EXECUTE layouts, an
//! error answer that leaves the connection usable, and the protocol_version metric label.
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, Framed};
use zdm_proxy::protocol::frame::{opcode, Compression, Frame, FrameCodec, V5};
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::{unique_name, Sandbox};

type Client = Framed<TcpStream, FrameCodec>;

fn long_string(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn short_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u16(v.len() as u16);
    b.put_slice(v);
}

/// A v5 QUERY body: consistency QUORUM, [int] flags, positional values.
fn query(text: &str, values: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::new();
    long_string(&mut b, text);
    b.put_u16(0x0004);
    b.put_u32(if values.is_empty() { 0 } else { 0x01 });
    if !values.is_empty() {
        b.put_u16(values.len() as u16);
        for v in values {
            b.put_i32(v.len() as i32);
            b.put_slice(v);
        }
    }
    b.freeze()
}

async fn call(c: &mut Client, stream: i16, op: u8, body: Bytes) -> Frame {
    c.send(Frame::request(stream, op, body)).await.unwrap();
    let f = c
        .next()
        .await
        .expect("an answer")
        .expect("a readable answer");
    assert_eq!(f.stream, stream);
    assert_eq!(f.version, 0x85, "answers are v5");
    f
}

fn assert_not_error(f: &Frame, what: &str) {
    if f.opcode == opcode::ERROR {
        panic!("{what}: ERROR {}", String::from_utf8_lossy(&f.body[4..]));
    }
}

/// The single text cell of a ROWS answer (metadata present, one column).
fn single_blob(f: &Frame) -> Vec<u8> {
    let rows = zdm_proxy::protocol::wire::parse_rows(&f.body).expect("ROWS");
    assert_eq!(rows.len(), 1);
    rows[0][0].1.clone().expect("not null")
}

/// Opens a v5 connection through the proxy and authenticates (segments from AUTHENTICATE on).
async fn connect_v5(addr: &str, sb: &Sandbox, lz4: bool) -> Client {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut c = Framed::new(tcp, FrameCodec::cluster_side(V5));
    let mut startup = vec![("CQL_VERSION", "3.0.0")];
    if lz4 {
        startup.push(("COMPRESSION", "lz4"));
    }
    let mut b = BytesMut::new();
    b.put_u16(startup.len() as u16);
    for (k, v) in startup {
        for s in [k, v] {
            b.put_u16(s.len() as u16);
            b.put_slice(s.as_bytes());
        }
    }
    let f = call(&mut c, 0, opcode::STARTUP, b.freeze()).await;
    assert_eq!(
        f.opcode,
        opcode::AUTHENTICATE,
        "v5 accepted, authentication asked"
    );
    c.codec_mut()
        .set_compression(lz4.then_some(Compression::Lz4));
    c.codec_mut().start_segments();
    let (u, p) = sb.creds("target");
    let token = format!("\0{u}\0{p}");
    let mut b = BytesMut::new();
    b.put_i32(token.len() as i32);
    b.put_slice(token.as_bytes());
    let f = call(&mut c, 1, opcode::AUTH_RESPONSE, b.freeze()).await;
    assert_eq!(
        f.opcode,
        opcode::AUTH_SUCCESS,
        "authenticated in v5 segments"
    );
    c
}

async fn exercise(p: &Proxy, sb: &Sandbox, ks: &str, lz4: bool, k: i32) {
    let mut c = connect_v5(&p.addr, sb, lz4).await;
    let label = format!("lz4={lz4}");

    // A value of 300 000 bytes: the request and the answer each span three segments.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let f = call(
        &mut c,
        2,
        opcode::QUERY,
        query(
            &format!("INSERT INTO {ks}.blobs (k, v) VALUES (?, ?)"),
            &[&k.to_be_bytes(), &big],
        ),
    )
    .await;
    assert_not_error(&f, &label);
    let f = call(
        &mut c,
        3,
        opcode::QUERY,
        query(
            &format!("SELECT v FROM {ks}.blobs WHERE k = ?"),
            &[&k.to_be_bytes()],
        ),
    )
    .await;
    assert_not_error(&f, &label);
    assert!(
        single_blob(&f) == big,
        "{label}: large value read back differs"
    );

    // Two requests in one self-contained segment: both answered.
    let mut envelopes = BytesMut::new();
    let mut plain = FrameCodec::cluster_side(V5);
    for stream in [10i16, 11] {
        let q = query(
            &format!("SELECT k FROM {ks}.blobs WHERE k = ?"),
            &[&k.to_be_bytes()],
        );
        plain
            .encode(Frame::request(stream, opcode::QUERY, q), &mut envelopes)
            .unwrap();
    }
    let mut segment = BytesMut::new();
    zdm_proxy::protocol::segment::encode(&envelopes, lz4, &mut segment);
    c.get_mut().write_all(&segment).await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let f = c.next().await.unwrap().unwrap();
        assert_not_error(&f, &label);
        streams.push(f.stream);
    }
    streams.sort();
    assert_eq!(streams, [10, 11], "{label}");

    // PREPARE ([int] flags) and EXECUTE (id, result metadata id, [int] flags) of a write.
    let mut b = BytesMut::new();
    long_string(
        &mut b,
        &format!("INSERT INTO {ks}.blobs (k, v) VALUES (?, ?)"),
    );
    b.put_u32(0);
    let f = call(&mut c, 4, opcode::PREPARE, b.freeze()).await;
    assert_not_error(&f, &label);
    let mut r = zdm_proxy::protocol::wire::Reader::new(&f.body);
    assert_eq!(r.int().unwrap(), 0x0004, "PREPARED");
    let id = r.short_bytes().unwrap().to_vec();
    let meta_id = r.short_bytes().unwrap().to_vec();
    let mut b = BytesMut::new();
    short_bytes(&mut b, &id);
    short_bytes(&mut b, &meta_id);
    b.put_u16(0x0004);
    b.put_u32(0x01);
    b.put_u16(2);
    for v in [&(k + 1).to_be_bytes()[..], b"prepared-v5"] {
        b.put_i32(v.len() as i32);
        b.put_slice(v);
    }
    let f = call(&mut c, 5, opcode::EXECUTE, b.freeze()).await;
    assert_not_error(&f, &label);

    // A prepared write with now() (replace_cql_functions is on): the proxy hides its injected
    // marker in the v5 PREPARED answer and fills it into the v5 EXECUTE (4-byte flags after the
    // result metadata id), so both clusters store the same timeuuid (checked by the caller).
    let mut b = BytesMut::new();
    long_string(
        &mut b,
        &format!("INSERT INTO {ks}.stamps (k, t) VALUES (?, now())"),
    );
    b.put_u32(0);
    let f = call(&mut c, 8, opcode::PREPARE, b.freeze()).await;
    assert_not_error(&f, &label);
    let mut r = zdm_proxy::protocol::wire::Reader::new(&f.body);
    assert_eq!(r.int().unwrap(), 0x0004, "PREPARED");
    let id = r.short_bytes().unwrap().to_vec();
    let meta_id = r.short_bytes().unwrap().to_vec();
    r.int().unwrap(); // flags
    assert_eq!(
        r.int().unwrap(),
        1,
        "{label}: the client sees only its own variable"
    );
    let mut b = BytesMut::new();
    short_bytes(&mut b, &id);
    short_bytes(&mut b, &meta_id);
    b.put_u16(0x0004);
    b.put_u32(0x01);
    b.put_u16(1);
    b.put_i32(4);
    b.put_slice(&k.to_be_bytes());
    let f = call(&mut c, 9, opcode::EXECUTE, b.freeze()).await;
    assert_not_error(&f, &label);

    // An error answer in v5, then the connection still serves.
    let f = call(
        &mut c,
        6,
        opcode::QUERY,
        query(&format!("SELECT * FROM {ks}.no_such_table"), &[]),
    )
    .await;
    assert_eq!(f.opcode, opcode::ERROR, "{label}");
    assert_eq!(&f.body[..4], &0x2200i32.to_be_bytes(), "{label}: INVALID");
    let f = call(&mut c, 7, opcode::OPTIONS, Bytes::new()).await;
    assert_eq!(f.opcode, opcode::SUPPORTED, "{label}");

    // The connection is counted under its version.
    let v5 = p
        .metric("zdm_client_connections_by_protocol_version{protocol_version=\"5\"}")
        .await;
    assert!(v5 >= 1.0, "{label}: v5 connections {v5}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_clients_are_served_in_segments_plain_and_lz4() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(
        &sb,
        "127.0.0.25",
        19510,
        &[("ZDM_REPLACE_CQL_FUNCTIONS", "true")],
    );
    p.wait_ready().await;
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let writer = p.session(&sb).await;
    let ks = unique_name("v5");
    create_kv(&writer, &ks).await;
    writer
        .query_unpaged(
            format!("CREATE TABLE IF NOT EXISTS {ks}.blobs (k int PRIMARY KEY, v blob)"),
            (),
        )
        .await
        .unwrap();

    writer
        .query_unpaged(
            format!("CREATE TABLE IF NOT EXISTS {ks}.stamps (k int PRIMARY KEY, t timeuuid)"),
            (),
        )
        .await
        .unwrap();

    exercise(&p, &sb, &ks, false, 1).await;
    exercise(&p, &sb, &ks, true, 3).await;

    // Both clusters hold what the v5 clients wrote, the large rows and the prepared ones.
    for (name, s) in [("origin", &origin), ("target", &target)] {
        for k in [1i32, 2, 3, 4] {
            let (v,): (Vec<u8>,) = s
                .query_unpaged(format!("SELECT v FROM {ks}.blobs WHERE k = ?"), (k,))
                .await
                .unwrap()
                .into_rows_result()
                .unwrap()
                .first_row()
                .unwrap_or_else(|e| panic!("{name}: row {k} missing: {e}"));
            let want = if k % 2 == 1 { 300_000 } else { 11 };
            assert_eq!(v.len(), want, "{name} k={k}");
        }
    }
    // The prepared now() rows: one timeuuid per row, the same on both clusters.
    for k in [1i32, 3] {
        let mut seen = Vec::new();
        for (name, s) in [("origin", &origin), ("target", &target)] {
            let (t,): (scylla::value::CqlTimeuuid,) = s
                .query_unpaged(format!("SELECT t FROM {ks}.stamps WHERE k = ?"), (k,))
                .await
                .unwrap()
                .into_rows_result()
                .unwrap()
                .first_row()
                .unwrap_or_else(|e| panic!("{name}: stamp {k} missing: {e}"));
            seen.push(t);
        }
        assert_eq!(
            seen[0], seen[1],
            "k={k}: origin and target stored different now()"
        );
    }
    drop_ks(&origin, &target, &ks).await;
}
