//! Idle memory per client connection: what a proxy holds for each authenticated client that
//! connects, asks one question and then stays idle (the common case of a driver pool sized for
//! peaks). The figure is the growth of the proxy's resident set (VmRSS) between 0 and N such
//! connections, divided by N: the fixed part of the process (code, runtime threads, control
//! connections, metrics) is the same at both points and so drops out, which the total RSS would
//! not allow. Each client connection also makes the proxy open one connection to origin and one
//! to target, so their cost is in the figure too, as it is for a real deployment.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zdm_testkit::raw_cql as raw;
use zdm_testkit::Sandbox;

/// Client threads opening connections in parallel: enough to keep both clusters' authenticators
/// busy, few enough not to time out handshakes on a loaded 2-core machine.
const OPENERS: usize = 8;

/// Attempts per connection: a cluster too busy to authenticate in time answers with an error
/// ("timed out before it could start"); that is the cluster's load, not what is measured here.
const ATTEMPTS: usize = 5;

/// How long the connections stay idle before RSS is read, so whatever a connection does after
/// its first request (timers, heartbeats, buffer release) has happened.
const IDLE_FOR: Duration = Duration::from_secs(5);

pub struct IdleMemory {
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_after_close_kib: u64,
    pub threads: u64,
    pub open_seconds: f64,
    /// Handshakes refused by a busy cluster and tried again.
    pub retried: usize,
}

impl IdleMemory {
    pub fn kib_per_connection(&self) -> f64 {
        (self.rss_idle_kib as f64 - self.rss_before_kib as f64) / self.connections as f64
    }
}

/// A field of /proc/PID/status, as a number (kB for sizes).
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {field}"))
}

/// Raises this process's open-file limit to its hard limit: the bench holds `connections`
/// sockets and the proxy it spawns (which inherits the limit) three times as many.
pub fn raise_fd_limit(needed: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max;
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    assert!(
        lim.rlim_cur >= needed,
        "open-file hard limit {} is below the {needed} the idle measurement needs",
        lim.rlim_max
    );
}

/// One trivial request that goes to a cluster (not answered by the proxy itself), so the
/// connection has carried a real request and its answer before it goes idle.
fn query(sock: &mut TcpStream) {
    let cql = "SELECT keyspace_name FROM system_schema.keyspaces LIMIT 1";
    let mut body = (cql.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(cql.as_bytes());
    body.extend_from_slice(&1u16.to_be_bytes()); // consistency ONE
    body.push(0); // no flags
    sock.write_all(&raw::frame(4, 1, 0x07, &body)).unwrap();
    let (_, stream, op, body) = raw::read_frame(sock).expect("answer to the query");
    assert_eq!(
        (stream, op),
        (1, 0x08),
        "RESULT expected: {}",
        String::from_utf8_lossy(&body)
    );
}

/// Opens `n` authenticated connections to the proxy at `addr` (pid `pid`), each asking one
/// query, leaves them idle for a while and reads the proxy's RSS before, during and after.
pub fn measure(sb: &Sandbox, addr: &str, pid: u32, n: usize) -> IdleMemory {
    // Warm-up: a few connections opened and closed, so one-time costs (lazily built metric
    // series, the runtime's threads touching their stacks) land in the baseline, not in the
    // per-connection figure.
    for _ in 0..8 {
        let mut s = raw::authenticated(addr, sb);
        query(&mut s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_before_kib = status_field(pid, "VmRSS");

    let started = Instant::now();
    let held = Mutex::new((Vec::with_capacity(n), 0usize));
    std::thread::scope(|scope| {
        for t in 0..OPENERS {
            let held = &held;
            scope.spawn(move || {
                let mine = (t..n).step_by(OPENERS).count();
                let mut socks = Vec::with_capacity(mine);
                let mut retried = 0;
                for _ in 0..mine {
                    let mut s = open_with_retries(addr, sb, &mut retried);
                    query(&mut s);
                    socks.push(s);
                }
                let mut held = held.lock().unwrap();
                held.0.extend(socks);
                held.1 += retried;
            });
        }
    });
    let open_seconds = started.elapsed().as_secs_f64();
    let (held, retried) = held.into_inner().unwrap();
    assert_eq!(held.len(), n);
    std::thread::sleep(IDLE_FOR);
    let rss_idle_kib = status_field(pid, "VmRSS");
    let threads = status_field(pid, "Threads");

    // Still served after the idle time: every connection answers a query.
    let mut held = held;
    for s in &mut held {
        query(s);
    }
    drop(held);
    std::thread::sleep(Duration::from_secs(2));
    let rss_after_close_kib = status_field(pid, "VmRSS");
    IdleMemory {
        connections: n,
        rss_before_kib,
        rss_idle_kib,
        rss_after_close_kib,
        threads,
        open_seconds,
        retried,
    }
}

/// An authenticated connection, retried (after a pause) when a cluster refuses the handshake.
fn open_with_retries(addr: &str, sb: &Sandbox, retried: &mut usize) -> TcpStream {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        match raw::try_authenticated(addr, sb) {
            Ok(s) => return s,
            Err(e) => last = e,
        }
        *retried += 1;
        std::thread::sleep(Duration::from_secs(1 + attempt as u64));
    }
    panic!("no authenticated connection after {ATTEMPTS} attempts: {last}");
}

/// The report's section on idle memory.
pub fn report(m: &IdleMemory) -> String {
    format!(
        "\n## idle memory per client connection\n\n\
         {n} authenticated client connections (v4, each STARTUP, AUTH_RESPONSE and one query to origin, \
         then idle {idle} s) to a fresh PRIMARY_ONLY proxy; each makes the proxy hold one connection to \
         origin and one to target ({upstream} cluster connections in all).\n\n\
         | proxy VmRSS | KiB |\n|---|---|\n\
         | before (0 client connections, after 8 opened and closed) | {before} |\n\
         | with {n} idle connections | {idle_rss} |\n\
         | after they closed | {after} |\n\n\
         - **Idle memory: {per:.1} KiB per client connection** (VmRSS with {n} minus VmRSS with 0, over {n}: \
         the difference leaves out what the process holds whatever the number of clients, code, runtime \
         threads, control connections, metrics, which the total would spread over the connections).\n\
         - Proxy threads: {threads}. Opening the {n} connections took {open:.1} s ({OPENERS} client threads; {retried} handshakes refused by a busy cluster and retried).\n",
        n = m.connections,
        idle = IDLE_FOR.as_secs(),
        upstream = 2 * m.connections,
        before = m.rss_before_kib,
        idle_rss = m.rss_idle_kib,
        after = m.rss_after_close_kib,
        per = m.kib_per_connection(),
        threads = m.threads,
        open = m.open_seconds,
        retried = m.retried,
    )
}
