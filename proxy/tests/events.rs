//! Cluster events through the proxy: a client that REGISTERed gets each SCHEMA_CHANGE made by
//! another session exactly once; one that did not register gets nothing.
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::raw_cql::*;
use zdm_testkit::{unique_name, Sandbox};

/// REGISTER for every event type (the proxy must drop the status and topology ones).
fn register_body() -> Vec<u8> {
    let kinds = ["SCHEMA_CHANGE", "STATUS_CHANGE", "TOPOLOGY_CHANGE"];
    let mut b = (kinds.len() as u16).to_be_bytes().to_vec();
    for k in kinds {
        b.extend_from_slice(&(k.len() as u16).to_be_bytes());
        b.extend_from_slice(k.as_bytes());
    }
    b
}

/// The [string]s at the start of an EVENT body.
fn strings(body: &[u8], n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = 0;
    for _ in 0..n {
        if pos + 2 > body.len() {
            break;
        }
        let len = u16::from_be_bytes([body[pos], body[pos + 1]]) as usize;
        pos += 2;
        let Some(s) = body.get(pos..pos + len) else {
            break;
        };
        out.push(String::from_utf8_lossy(s).into_owned());
        pos += len;
    }
    out
}

/// Every frame `sock` receives within `window`, as (version, stream, opcode, body).
fn frames_within(sock: &mut TcpStream, window: Duration) -> Vec<(u8, i16, u8, Vec<u8>)> {
    let end = Instant::now() + window;
    let mut got = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match read_frame(sock) {
            Some(f) => got.push(f),
            None => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_reach_each_registered_client_once() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(&sb, "127.0.0.24", 19500, &[]);
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let writer = p.session(&sb).await;
    let ks = unique_name("events");
    create_kv(&writer, &ks).await;

    // Two registered raw clients (REGISTER sent twice on the first: still one event each) and
    // one that never registers.
    let mut registered: Vec<TcpStream> = (0..2).map(|_| authenticated(&p.addr, &sb)).collect();
    for (i, sock) in registered.iter_mut().enumerate() {
        for _ in 0..(2 - i) {
            sock.write_all(&frame(4, 5, 0x0B, &register_body()))
                .unwrap();
            let (_, stream, op, body) = read_frame(sock).expect("answer to REGISTER");
            assert_eq!(
                (stream, op),
                (5, 0x02),
                "READY expected: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    let mut silent = authenticated(&p.addr, &sb);

    writer
        .query_unpaged(format!("ALTER TABLE {ks}.kv ADD extra int"), ())
        .await
        .expect("ALTER TABLE through the proxy");

    let want = vec![
        "SCHEMA_CHANGE".to_string(),
        "UPDATED".into(),
        "TABLE".into(),
        ks.clone(),
        "kv".into(),
    ];
    for (i, sock) in registered.iter_mut().enumerate() {
        let frames = frames_within(sock, Duration::from_secs(3));
        // Other tests may change other keyspaces meanwhile: count only ours.
        let ours: Vec<_> = frames
            .iter()
            .filter(|f| strings(&f.3, 5).get(3) == Some(&ks))
            .collect();
        assert_eq!(ours.len(), 1, "client {i}: events for {ks}: {frames:?}");
        let (version, stream, op, body) = ours[0];
        assert_eq!((*version, *stream, *op), (0x84, -1, 0x0C), "client {i}");
        assert_eq!(strings(body, 5), want, "client {i}");
        for f in &frames {
            assert_eq!(f.2, 0x0C, "client {i}: only events expected: {f:?}");
            assert_eq!(
                strings(&f.3, 1),
                ["SCHEMA_CHANGE"],
                "client {i}: status/topology events must not be relayed"
            );
        }
    }
    let frames = frames_within(&mut silent, Duration::from_millis(500));
    assert!(frames.is_empty(), "unregistered client got {frames:?}");

    // The registered connections still answer requests.
    let sock = &mut registered[0];
    sock.write_all(&frame(4, 9, 0x05, &[])).unwrap();
    let f = frames_within(sock, Duration::from_secs(2))
        .into_iter()
        .find(|f| f.1 == 9)
        .expect("answer to OPTIONS");
    assert_eq!(f.2, 0x06, "SUPPORTED");
    drop_ks(&origin, &target, &ks).await;
}
