//! A small HTTP server standing in for proxies' health and metrics endpoints, for the gate and
//! `status` tests (they only speak HTTP to a proxy).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What a stand-in proxy answers.
pub struct ProxyBehaviour {
    /// `/health/readiness` status and the two clusters' status words.
    pub ready: bool,
    pub target_down: bool,
    /// Added to the writes counter on every `/metrics` scrape.
    pub writes_per_scrape: u64,
    /// Added to the failed-writes counter on every scrape.
    pub failed_writes_per_scrape: u64,
}

/// A real HTTP server on 127.0.0.1 serving `/health/readiness` and `/metrics` the way the
/// proxy does. It stands in for a proxy because the gate and `status` only speak HTTP to it.
pub struct FakeProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub behaviour: Arc<Mutex<ProxyBehaviour>>,
}

impl FakeProxy {
    pub fn start(behaviour: ProxyBehaviour) -> FakeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (s, b) = (stop.clone(), behaviour.clone());
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(conn, &b, &scrapes);
                }
            }
        });
        FakeProxy {
            port,
            stop,
            handle: Some(handle),
            behaviour,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(conn: TcpStream, behaviour: &Mutex<ProxyBehaviour>, scrapes: &AtomicU64) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let b = behaviour.lock().unwrap();
    let (status, body) = match path.as_str() {
        "/health/readiness" => {
            let target = if b.target_down { "DOWN" } else { "UP" };
            let overall = if b.ready && !b.target_down {
                "UP"
            } else {
                "DOWN"
            };
            let code = if overall == "UP" { 200 } else { 503 };
            (
                code,
                format!(
                    r#"{{"OriginStatus":{{"Addr":"10.0.0.1:9042","CurrentFailureCount":0,"FailureCountThreshold":1,"Status":"UP"}},"TargetStatus":{{"Addr":"10.0.0.2:9042","CurrentFailureCount":0,"FailureCountThreshold":1,"Status":"{target}"}},"Status":"{overall}"}}"#
                ),
            )
        }
        "/metrics" => {
            let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
            (
                200,
                format!(
                    "# TYPE zdm_proxy_request_duration_seconds histogram\n\
                     zdm_proxy_request_duration_seconds_count{{type=\"writes\"}} {}\n\
                     zdm_proxy_request_duration_seconds_count{{type=\"reads_origin\"}} {}\n\
                     zdm_proxy_request_duration_seconds_count{{type=\"reads_target\"}} 0\n\
                     zdm_proxy_failed_writes_total{{failed_on=\"origin\"}} 0\n\
                     zdm_proxy_failed_writes_total{{failed_on=\"target\"}} {}\n\
                     zdm_proxy_failed_writes_total{{failed_on=\"both\"}} 0\n\
                     zdm_proxy_failed_reads_total{{cluster=\"origin\"}} 0\n",
                    n * b.writes_per_scrape,
                    n * b.writes_per_scrape,
                    n * b.failed_writes_per_scrape
                ),
            )
        }
        _ => (404, "not found".to_string()),
    };
    let reason = match status {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
