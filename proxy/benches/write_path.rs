//! CPU cost of the per-write work added by `replace_cql_functions` and the write metrics
//! (statement scan, `now()` replacement, EXECUTE value injection, BATCH rewriting), in-process,
//! no clusters. Writes `bench-results/proxy-write-path.md`.
//!
//! Run: `cargo bench -p zdm-proxy --bench write_path`

use std::hint::black_box;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use zdm_proxy::protocol::wire;
use zdm_proxy::statements::cql_functions::{
    new_timeuuid, replace_with_literals, rewrite_for_prepare,
};
use zdm_proxy::statements::prepared::Prepared;
use zdm_proxy::statements::prepared_now::{fresh_values, inject_execute, NowMarkers};
use zdm_proxy::statements::routing::Route;
use zdm_proxy::statements::write_metrics::{tables_of, TableRef, WriteMetrics};
use zdm_proxy::statements::write_rewrite::{query_with_now_replaced, rewrite_batch};

const INSERT: &str =
    "INSERT INTO shop.orders (id, customer, total, note, created) VALUES (?, ?, ?, 'no now() here', ?)";
const INSERT_NOW: &str =
    "INSERT INTO shop.orders (id, customer, total, note, created) VALUES (?, ?, ?, 'x', now())";

/// Nanoseconds per call of `f`, best of 5 rounds of `n` calls (the machine is shared).
fn ns_per_op(n: u32, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn query_body(q: &str) -> Bytes {
    let mut b = BytesMut::new();
    wire::put_long_string(&mut b, q);
    b.put_u16(0x0006);
    b.put_u8(0);
    b.freeze()
}

fn main() {
    let markers = NowMarkers {
        positions: vec![4],
        names: vec!["created".into()],
        kinds: vec![zdm_proxy::statements::cql_functions::Func::TimeUuid],
    };
    let mut exec = BytesMut::new();
    wire::put_short_bytes(&mut exec, &[7u8; 16]);
    exec.put_u16(0x0006);
    exec.put_u8(0x01);
    exec.put_u16(4);
    for v in [
        &b"0123456789abcdef"[..],
        b"customer-42",
        b"\0\0\0\x10",
        b"note",
    ] {
        wire::put_bytes(&mut exec, Some(v));
    }
    let exec = exec.freeze();

    let entry = Prepared {
        origin_id: None,
        target_id: Bytes::from_static(&[9u8; 16]),
        route: Route::Both,
        query: None,
        writes: vec![TableRef {
            keyspace: "shop".into(),
            table: "orders".into(),
        }]
        .into(),
        now: Some(markers.clone().into()),
        risks: Default::default(),
    };
    let mut batch = BytesMut::new();
    batch.put_u8(0);
    batch.put_u16(10);
    for i in 0..10 {
        if i % 2 == 0 {
            batch.put_u8(0);
            wire::put_long_string(&mut batch, INSERT_NOW);
        } else {
            batch.put_u8(1);
            wire::put_short_bytes(&mut batch, &[7u8; 16]);
        }
        batch.put_u16(4);
        for v in [&b"0123456789abcdef"[..], b"c", b"\0\0\0\x10", b"n"] {
            wire::put_bytes(&mut batch, Some(v));
        }
    }
    batch.put_u16(0x0006);
    batch.put_u8(0);
    let batch = batch.freeze();

    let plain = query_body(INSERT);
    let with_now = query_body(INSERT_NOW);
    let metrics = WriteMetrics::default();
    let table = tables_of(INSERT, None);

    let rows = [
        (
            "tables_of (write metrics), 98-char INSERT",
            ns_per_op(200_000, || {
                black_box(tables_of(black_box(INSERT), Some("ks")));
            }),
        ),
        (
            "count one write (both clusters)",
            ns_per_op(200_000, || {
                metrics.record(
                    black_box(&table),
                    zdm_proxy::ops::config::Cluster::Origin,
                    true,
                );
                metrics.record(
                    black_box(&table),
                    zdm_proxy::ops::config::Cluster::Target,
                    true,
                );
            }),
        ),
        (
            "QUERY without now(), setting on (scan only)",
            ns_per_op(200_000, || {
                black_box(query_with_now_replaced(black_box(&plain), 0).unwrap());
            }),
        ),
        (
            "QUERY with one now() replaced",
            ns_per_op(100_000, || {
                black_box(query_with_now_replaced(black_box(&with_now), 0).unwrap());
            }),
        ),
        (
            "replace_with_literals on the text alone",
            ns_per_op(100_000, || {
                black_box(replace_with_literals(black_box(INSERT_NOW), new_timeuuid));
            }),
        ),
        (
            "rewrite_for_prepare (once per PREPARE)",
            ns_per_op(100_000, || {
                black_box(rewrite_for_prepare(black_box(INSERT_NOW)));
            }),
        ),
        (
            "new_timeuuid",
            ns_per_op(1_000_000, || {
                black_box(new_timeuuid());
            }),
        ),
        (
            "EXECUTE value injection (4 client values + 1 timeuuid)",
            ns_per_op(200_000, || {
                let u = fresh_values(&markers);
                black_box(inject_execute(black_box(&exec), 18, &markers, &u, 4).unwrap());
            }),
        ),
        (
            "BATCH of 10 children (5 text with now(), 5 prepared with now())",
            ns_per_op(20_000, || {
                black_box(
                    rewrite_batch(black_box(&batch), 0, Some("ks"), true, |_| {
                        Some(entry.clone())
                    })
                    .ok(),
                );
            }),
        ),
    ];

    let build = if cfg!(debug_assertions) {
        "a dev-profile build with the proxy crate optimised \
         (`CARGO_PROFILE_TEST_OPT_LEVEL=3 cargo bench --profile test ...`: dependencies at the \
         workspace's opt-level 1, debug assertions on), so release figures are lower"
    } else {
        "release profile"
    };
    let mut md = format!(
        "# zdm-proxy write path: CPU cost per operation\n\n\
         In-process, no network (`cargo bench -p zdm-proxy --bench write_path`); best of 5 rounds \
         on the shared development machine. For scale: one proxied write costs a network round \
         trip to each cluster (hundreds of microseconds). Build: {}.\n\n\
         | operation | ns/op |\n|---|---:|\n",
        build
    );
    for (name, ns) in rows {
        println!("{name:<70} {ns:>10.0} ns");
        md.push_str(&format!("| {name} | {ns:.0} |\n"));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy-write-path.md");
    std::fs::write(&path, md).unwrap();
    println!("wrote {}", path.display());
}
