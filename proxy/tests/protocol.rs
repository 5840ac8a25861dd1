//! Protocol edges: version negotiation, malformed input, stream-id exhaustion, the HTTP
//! endpoints and the configuration checks of the binary.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use zdm_testkit::locks::{Lock, CLUSTERS};
use zdm_testkit::proxy::*;
use zdm_testkit::raw_cql::*;
use zdm_testkit::{unique_name, Sandbox};

/// The proxy answers with a PROTOCOL_ERROR or closes; it never hangs.
fn error_or_closed(sock: &mut TcpStream) {
    match read_frame(sock) {
        None => {}
        Some((_, _, op, body)) => {
            assert_eq!(op, 0, "expected ERROR");
            assert_eq!(&body[..4], &[0, 0, 0, 0x0A], "expected PROTOCOL_ERROR");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_and_older_protocol_versions_get_a_negotiable_protocol_error() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(&sb, "127.0.0.23", 19100, &[]);
    // Ready: the proxy knows both clusters speak v5 (Cassandra 5), so v6 is answered in v5.
    p.wait_ready().await;
    // Above what the proxy speaks the answer is on stream 0, as Cassandra answers it (gocql
    // downgrades only then); below, on the request's stream.
    for (version, answer_version, answer_stream) in
        [(6u8, 0x85u8, 0i16), (7, 0x85, 0), (3, 0x83, 3)]
    {
        let mut sock = connect(&p.addr);
        sock.write_all(&frame(version, 3, 0x01, &startup_body()))
            .unwrap();
        let (v, stream, op, body) = read_frame(&mut sock).expect("an answer, not a close");
        assert_eq!(
            (v, stream, op),
            (answer_version, answer_stream, 0x00),
            "v{version}"
        );
        assert_eq!(&body[..4], &[0, 0, 0, 0x0A]);
        let msg = String::from_utf8_lossy(&body[6..]);
        assert!(
            msg.contains("Invalid or unsupported protocol version") && msg.contains("5/v5"),
            "{msg}"
        );
    }
    // v4 OPTIONS is answered with SUPPORTED listing both compressions.
    let mut sock = connect(&p.addr);
    sock.write_all(&frame(4, 1, 0x05, &[])).unwrap();
    let (_, _, op, body) = read_frame(&mut sock).unwrap();
    assert_eq!(op, 0x06);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("lz4") && text.contains("snappy"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_refused_and_other_clients_keep_working() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(&sb, "127.0.0.23", 19101, &[]);
    let good = p.session(&sb).await;

    // Garbage (an HTTP request on the CQL port).
    let mut sock = connect(&p.addr);
    sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    error_or_closed(&mut sock);
    // Negative body length.
    let mut sock = connect(&p.addr);
    let mut f = frame(4, 1, 0x05, &[]);
    f[5..9].copy_from_slice(&(-5i32).to_be_bytes());
    sock.write_all(&f).unwrap();
    error_or_closed(&mut sock);
    // Over the 256MB limit.
    let mut sock = connect(&p.addr);
    let mut f = frame(4, 1, 0x05, &[]);
    f[5..9].copy_from_slice(&(300u32 * 1024 * 1024).to_be_bytes());
    sock.write_all(&f).unwrap();
    error_or_closed(&mut sock);
    // Truncated: the header promises 100 bytes, 10 arrive, then the client stops sending.
    let mut sock = connect(&p.addr);
    let mut f = frame(4, 1, 0x01, &[0; 10]);
    f[5..9].copy_from_slice(&100u32.to_be_bytes());
    sock.write_all(&f).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        read_frame(&mut sock).is_none(),
        "a truncated frame must end in a close"
    );
    // Unknown opcode: a protocol error, and the connection stays usable.
    let mut sock = connect(&p.addr);
    sock.write_all(&frame(4, 7, 0x04, &[])).unwrap();
    let (_, stream, op, body) = read_frame(&mut sock).unwrap();
    assert_eq!((stream, op, &body[..4]), (7, 0x00, &[0u8, 0, 0, 0x0A][..]));
    sock.write_all(&frame(4, 8, 0x05, &[])).unwrap();
    assert_eq!(
        read_frame(&mut sock).unwrap().2,
        0x06,
        "OPTIONS after the error must still work"
    );
    // Malformed messages after a completed handshake: see
    // `malformed_messages_on_an_authenticated_connection_get_a_protocol_error`.

    // The driver's session, opened before all that, still works; so does a new one.
    good.query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .unwrap();
    let fresh = p.session(&sb).await;
    fresh
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
        .unwrap();
}

/// Reads frames until the proxy closes or stays silent: every frame must be a PROTOCOL_ERROR
/// and there must be at least one frame or a close (the proxy may not hang or answer data).
fn errors_then_close_or_silence(sock: &mut TcpStream) -> usize {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut errors = 0;
    let mut closed = false;
    loop {
        let mut h = [0u8; 9];
        match sock.read_exact(&mut h) {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
        let len = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
        let mut body = vec![0; len];
        sock.read_exact(&mut body).unwrap();
        assert_eq!(h[4], 0x00, "expected ERROR, got opcode {:#x}", h[4]);
        assert_eq!(&body[..4], &[0, 0, 0, 0x0A], "expected PROTOCOL_ERROR");
        errors += 1;
    }
    assert!(errors > 0 || closed, "no protocol error and no close");
    errors
}

/// Sends `request` on an authenticated connection and expects a PROTOCOL_ERROR for its stream,
/// after which the same connection still serves a request.
fn protocol_error_and_still_usable(sock: &mut TcpStream, stream: i16, op: u8, body: &[u8]) {
    sock.write_all(&frame(4, stream, op, body)).unwrap();
    let (_, s, rop, rbody) = read_frame(sock).expect("an answer, not a close");
    assert_eq!((s, rop), (stream, 0x00), "ERROR for stream {stream}");
    assert_eq!(
        &rbody[..4],
        &[0, 0, 0, 0x0A],
        "PROTOCOL_ERROR for stream {stream}"
    );
    sock.write_all(&frame(4, stream + 1, 0x05, &[])).unwrap();
    let (_, s, rop, _) = read_frame(sock).expect("the connection must stay usable");
    assert_eq!((s, rop), (stream + 1, 0x06));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_on_an_authenticated_connection_get_a_protocol_error() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(&sb, "127.0.0.23", 19105, &[]);
    let other = p.session(&sb).await;
    let other_works = || async {
        other
            .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
            .await
            .unwrap_or_else(|e| panic!("the other client must keep working: {e}"));
    };
    let mut sock = authenticated(&p.addr, &sb);

    // QUERY whose [long string] says 100 bytes and has 10.
    let mut q = 100i32.to_be_bytes().to_vec();
    q.extend_from_slice(b"SELECT * F");
    protocol_error_and_still_usable(&mut sock, 10, 0x07, &q);
    other_works().await;

    // EXECUTE whose [short bytes] id says 16 bytes and has 4.
    let mut e = 16u16.to_be_bytes().to_vec();
    e.extend_from_slice(&[1, 2, 3, 4]);
    protocol_error_and_still_usable(&mut sock, 20, 0x0A, &e);
    other_works().await;

    // BATCH announcing 3 children and carrying 1 (a simple statement with no values).
    let mut b = vec![0u8];
    b.extend_from_slice(&3u16.to_be_bytes());
    b.push(0);
    let stmt = "INSERT INTO nowhere.t (k) VALUES (1)";
    b.extend_from_slice(&(stmt.len() as i32).to_be_bytes());
    b.extend_from_slice(stmt.as_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes()); // consistency
    b.push(0); // flags
    protocol_error_and_still_usable(&mut sock, 30, 0x0D, &b);
    other_works().await;

    // A header declaring fewer bytes than follow: the declared part is a truncated QUERY, the
    // rest cannot be a valid header. Errors then a close (or silence), never data.
    let mut sock = authenticated(&p.addr, &sb);
    let mut body = 40i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"SELECT release_version FROM system.local");
    body.extend_from_slice(&[0, 1, 0]);
    let mut f = frame(4, 40, 0x07, &body);
    f[5..9].copy_from_slice(&12u32.to_be_bytes());
    sock.write_all(&f).unwrap();
    errors_then_close_or_silence(&mut sock);
    other_works().await;

    // A header declaring more bytes than follow, then the client stops sending: a close.
    let mut sock = authenticated(&p.addr, &sb);
    let mut f = frame(4, 50, 0x07, &body);
    f[5..9].copy_from_slice(&((body.len() + 100) as u32).to_be_bytes());
    sock.write_all(&f).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        read_frame(&mut sock).is_none(),
        "a frame cut short must end in a close, not an answer"
    );
    other_works().await;

    // The proxy survived all of it, and said nothing about panicking.
    let fresh = p.session(&sb).await;
    fresh
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .unwrap();
    let log = p.log_text();
    assert!(!log.contains("panicked"), "the proxy panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_stream_ids_give_overloaded_never_a_crossed_answer() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let origin = sb.direct("origin").await;
    let target = sb.direct("target").await;
    let ks = unique_name("proxy_sid");
    let p = Proxy::start(
        &sb,
        "127.0.0.23",
        19102,
        &[("ZDM_PROXY_MAX_STREAM_IDS", "2")],
    );
    let s = std::sync::Arc::new(p.session(&sb).await);
    create_kv(&s, &ks).await;
    for k in 0..64 {
        s.query_unpaged(
            format!("INSERT INTO {ks}.kv (k, v) VALUES ({k}, 'v{k}')"),
            (),
        )
        .await
        .unwrap();
    }
    let select = s
        .prepare(format!("SELECT v FROM {ks}.kv WHERE k = ?"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for round in 0..4 {
        for k in 0..64i32 {
            let (s, select) = (s.clone(), select.clone());
            tasks.push(tokio::spawn(async move {
                let r = s.execute_unpaged(&select, (k,)).await;
                (
                    round,
                    k,
                    r.map(|r| {
                        r.into_rows_result()
                            .unwrap()
                            .first_row::<(String,)>()
                            .unwrap()
                            .0
                    })
                    .map_err(|e| e.to_string()),
                )
            }));
        }
    }
    let (mut ok, mut overloaded) = (0, 0);
    for t in tasks {
        let (_, k, r) = t.await.unwrap();
        match r {
            Ok(v) => {
                assert_eq!(v, format!("v{k}"), "crossed answer for k={k}");
                ok += 1;
            }
            Err(e) => {
                assert!(
                    e.to_lowercase().contains("overloaded"),
                    "unexpected error: {e}"
                );
                overloaded += 1;
            }
        }
    }
    assert!(ok > 0, "some requests must succeed");
    assert!(
        overloaded > 0,
        "2 stream ids under 256 concurrent requests must overflow"
    );
    drop_ks(&origin, &target, &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints_use_the_reference_names() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(&sb, "127.0.0.23", 19103, &[]);
    let (code, body) = p.http_get("/health/liveness").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = p.http_get("/health/readiness").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for k in ["OriginStatus", "TargetStatus"] {
        assert_eq!(v[k]["Status"], "UP", "{body}");
        assert!(v[k]["Addr"].as_str().unwrap().ends_with(":9042"), "{body}");
    }
    assert_eq!(v["Status"], "UP");
    // `spawn` knew the proxy was up by opening (and closing) a CQL connection; the gauge
    // counts it until the proxy has seen the close, so wait for that before reading zeros.
    let settle = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.metric("zdm_client_connections_total").await != 0.0 {
        assert!(
            std::time::Instant::now() < settle,
            "the readiness probe's connection was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (code, metrics) = p.http_get("/metrics").await;
    assert_eq!(code, 200);
    let origin = sb.node("origin");
    let target = sb.node("target");
    for series in [
        "zdm_proxy_failed_writes_total{failed_on=\"origin\"} 0".to_string(),
        "zdm_proxy_failed_writes_total{failed_on=\"target\"} 0".into(),
        "zdm_proxy_failed_writes_total{failed_on=\"both\"} 0".into(),
        "zdm_proxy_failed_reads_total{cluster=\"origin\"} 0".into(),
        "zdm_proxy_failed_connections_total{cluster=\"target\"} 0".into(),
        "zdm_proxy_inflight_requests_total{type=\"writes\"} 0".into(),
        "zdm_proxy_request_duration_seconds_bucket{type=\"reads_target\",le=\"+Inf\"} 0".into(),
        "zdm_pscache_entries_total 0".into(),
        "zdm_pscache_miss_total 0".into(),
        "zdm_client_connections_total 0".into(),
        format!("zdm_origin_requests_failed_total{{error=\"write_timeout\",node=\"{origin}\"}} 0"),
        format!("zdm_target_requests_failed_total{{error=\"client_timeout\",node=\"{target}\"}} 0"),
        format!("zdm_target_used_stream_ids_total{{node=\"{target}\"}}"),
        format!("zdm_origin_connections_total{{node=\"{origin}\"}}"),
        format!("zdm_origin_request_duration_seconds_count{{node=\"{origin}\"}}"),
        "zdm_proxy_requests_total 0".into(),
        "zdm_proxy_requests_duration_seconds_count 0".into(),
        "zdm_proxy_errors_total 0".into(),
        "zdm_proxy_origin_requests_total 0".into(),
        "zdm_proxy_target_requests_total 0".into(),
    ] {
        assert!(metrics.contains(&series), "missing `{series}` in /metrics");
    }
    let s = p.session(&sb).await;
    s.query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
        .unwrap();
    assert!(p.metric("zdm_client_connections_total").await >= 1.0);
    assert!(p.metric("zdm_proxy_origin_requests_total").await >= 1.0);
}

#[test]
fn help_prints_the_usage_and_the_settings_sources() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zdm-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let usage = String::from_utf8_lossy(&out.stdout);
    for expected in ["Usage: zdm-proxy", "--config", "--check-config"] {
        assert!(
            usage.contains(expected),
            "`{expected}` missing from:\n{usage}"
        );
    }
}

#[test]
fn check_config_validates_and_names_bad_settings() {
    let min = [
        ("ZDM_ORIGIN_CONTACT_POINTS", "10.0.0.1"),
        ("ZDM_TARGET_CONTACT_POINTS", "10.0.0.2"),
    ];
    let ok = check_config(None, &min);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = check_config(None, &[min[0], min[1], ("ZDM_PROXY_LISTEN_PORT", "99999")]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("proxy_listen_port"));

    let dir = std::env::temp_dir().join(format!("zdm-proxy-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.yml");
    std::fs::write(&file, "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\nread_mode: DUAL\nprimary_clutser: TARGET\n").unwrap();
    let bad = check_config(Some(&file), &[]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("primary_clutser") && err.contains("line 4"),
        "{err}"
    );

    std::fs::write(&file, "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\nread_mode: TARGET_ONLY\n").unwrap();
    let ok = check_config(Some(&file), &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_proxy_max_client_connections_are_refused() {
    let _lock = Lock::shared(CLUSTERS);
    let sb = Sandbox::load();
    let p = Proxy::start(
        &sb,
        "127.0.0.23",
        19104,
        &[("ZDM_PROXY_MAX_CLIENT_CONNECTIONS", "1")],
    );
    // `Proxy::start` probed the port with a connection that is closed by now; give the proxy a
    // moment to notice so the slot is free again.
    let options_answered = |sock: &mut TcpStream| {
        sock.write_all(&frame(4, 1, 0x05, &[])).is_ok()
            && read_frame(sock).map(|f| f.2) == Some(0x06)
    };
    let mut first = connect(&p.addr);
    let mut ok = false;
    for _ in 0..50 {
        if options_answered(&mut first) {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        first = connect(&p.addr);
    }
    assert!(ok, "the first client must be served");
    let mut second = connect(&p.addr);
    assert!(
        !options_answered(&mut second),
        "a client over the limit must be refused"
    );
    drop(first);
    let mut served = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let mut third = connect(&p.addr);
        if options_answered(&mut third) {
            served = true;
            break;
        }
    }
    assert!(served, "a slot freed by a closed client must be reusable");
}
