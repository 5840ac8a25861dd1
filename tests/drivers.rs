//! The driver suite: the clients applications really run (Java driver 4.x, gocql, the Node.js
//! and Python `cassandra-driver`, cqlsh) each run their conformance program from
//! `tests/drivers/` (through `scripts/drivers.sh run NAME`) against the fleet
//! `playbooks/deploy.yml` deploys on the sandbox. One deploy serves all five programs, which
//! run at the same time, each in its own keyspace.
//!
//! Each program prints `STEP name: ok|FAIL reason` per step, the protocol version it
//! negotiated through the proxies and the one it negotiated with origin directly; this test
//! asserts every step of every program, and that each driver gets through the proxies the
//! highest version both it and the proxy speak: min(what the proxy advertises in SUPPORTED,
//! what the same driver negotiates with the real cluster).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zdm_testkit::{
    fleet::{Fleet, CQL_PORT, HOSTS},
    unique_name, KeyspaceGuard,
};

const DRIVERS: [&str; 5] = ["java", "go", "node", "python", "cqlsh"];

/// The steps every program reports.
const COMMON_STEPS: [&str; 14] = [
    "connect",
    "ddl",
    "use",
    "simple_write",
    "batch_logged",
    "batch_unlogged",
    "ttl",
    "delete",
    "paging",
    "lwt",
    "counter",
    "read_back",
    "missing_table_error",
    "direct_check",
];

/// The steps of one driver beyond the common ones: cqlsh has no prepared statements (its
/// second write form is INSERT JSON) and no second session listening for schema events.
fn extra_steps(driver: &str) -> &'static [&'static str] {
    match driver {
        "cqlsh" => &["json_write"],
        _ => &["prepared_write", "schema_event"],
    }
}

/// A limit per program, far above its normal run (10-60 s on a loaded machine); a program
/// that hangs is killed and fails.
const PROGRAM_LIMIT: Duration = Duration::from_secs(240);

/// What one program printed and returned.
struct Outcome {
    driver: &'static str,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Outcome {
    fn value(&self, key: &str) -> Option<u8> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// `Some(None)` for a step that passed, `Some(Some(reason))` for one that failed.
    fn step(&self, name: &str) -> Option<Option<String>> {
        let prefix = format!("STEP {name}: ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|r| (r != "ok").then(|| r.to_string()))
    }
}

#[test]
fn every_driver_passes_its_conformance_program_through_the_deployed_fleet() {
    // Installing is a no-op when scripts/test.sh already did it; done before taking the fleet
    // so a first compile never holds the other tests' locks.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let install = Command::new(root.join("scripts/drivers.sh"))
        .arg("install")
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/drivers.sh install");
    assert!(
        install.status.success(),
        "scripts/drivers.sh install failed:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );

    let fleet = Fleet::take();
    let started = Instant::now();
    fleet
        .run("playbooks/deploy.yml", &[])
        .assert_ok("deploy the fleet");
    let deployed = started.elapsed();
    let proxy_max = HOSTS
        .iter()
        .map(|h| highest_advertised_version(&fleet.address(h)))
        .min()
        .unwrap();

    // The five programs run side by side (each in a keyspace of its own), as five
    // applications of one fleet would: the suite's wall time is the slowest program's.
    let proxies: Vec<String> = HOSTS.iter().map(|h| fleet.address(h)).collect();
    let mut keyspace_guards = Vec::new();
    let mut running = Vec::new();
    for driver in DRIVERS {
        let ks = unique_name(&format!("deploy_drv_{driver}"));
        keyspace_guards.push(KeyspaceGuard::on(&fleet.sb, &ks));
        let mut cmd = Command::new(root.join("scripts/drivers.sh"));
        cmd.args(["run", driver])
            .current_dir(root)
            .env("ZDM_DRIVER_PROXIES", proxies.join(","))
            .env("ZDM_DRIVER_USERNAME", fleet.sb.get("ZDM_TARGET_USERNAME"))
            .env("ZDM_DRIVER_PASSWORD", fleet.sb.get("ZDM_TARGET_PASSWORD"))
            .env("ZDM_DRIVER_KEYSPACE", &ks);
        for cluster in ["ORIGIN", "TARGET"] {
            for key in ["CONTACT_POINTS", "PORT", "USERNAME", "PASSWORD"] {
                let var = format!("ZDM_{cluster}_{key}");
                cmd.env(&var, fleet.sb.get(&var));
            }
        }
        running.push(std::thread::spawn(move || run_program(driver, cmd)));
    }
    let programs_started = Instant::now();
    let outcomes: Vec<Outcome> = running
        .into_iter()
        .map(|t| t.join().expect("a program's runner thread panicked"))
        .collect();
    let programs_took = programs_started.elapsed();
    for outcome in &outcomes {
        eprintln!(
            "== {}: exit {:?} after {:.1?}\n{}\n-- stderr (last lines):\n{}",
            outcome.driver,
            outcome.code,
            outcome.took,
            outcome.stdout.trim_end(),
            tail(&outcome.stderr, 15)
        );
    }

    // One summary, then every failure at once: a run shows the whole state of the suite.
    eprintln!(
        "driver suite: fleet deployed in {deployed:.1?}, the five programs ran in \
         {programs_took:.1?}; the proxies advertise protocol v{proxy_max} at most"
    );
    let mut failures = Vec::new();
    for o in &outcomes {
        let (through, direct) = (
            o.value("PROTOCOL_VERSION"),
            o.value("DIRECT_PROTOCOL_VERSION"),
        );
        eprintln!(
            "  {:<7} protocol through the proxies v{} (with origin directly v{}), {:.1?}, exit {:?}",
            o.driver,
            through.map_or("?".into(), |v| v.to_string()),
            direct.map_or("?".into(), |v| v.to_string()),
            o.took,
            o.code
        );
        let mut steps: Vec<&str> = COMMON_STEPS.to_vec();
        steps.extend_from_slice(extra_steps(o.driver));
        for step in steps {
            match o.step(step) {
                Some(None) => {}
                Some(Some(reason)) => failures.push(format!("{} {step}: {reason}", o.driver)),
                None => failures.push(format!("{} {step}: never reported", o.driver)),
            }
        }
        match (through, direct) {
            (Some(t), Some(d)) if t == d.min(proxy_max) => {}
            _ => failures.push(format!(
                "{}: negotiated v{through:?} through the proxies, want min(proxy v{proxy_max}, \
                 direct v{direct:?})",
                o.driver
            )),
        }
        // Issue 12 item 3: the proxies' topology rows must be complete enough that no
        // driver warns about them (the Java driver reads broadcast ports from them).
        if o.stderr.contains("Unable to determine broadcast RPC port") {
            failures.push(format!(
                "{}: warns 'Unable to determine broadcast RPC port' (topology rows incomplete)",
                o.driver
            ));
        }
        if o.code != Some(0) {
            failures.push(format!("{}: exit {:?}", o.driver, o.code));
        }
    }
    assert!(
        failures.is_empty(),
        "driver suite failures:\n  {}",
        failures.join("\n  ")
    );
}

/// Runs one program to its end (killed after [`PROGRAM_LIMIT`]).
fn run_program(driver: &'static str, mut cmd: Command) -> Outcome {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start scripts/drivers.sh run {driver}: {e}"));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    })
    .collect();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break status.code();
        }
        if started.elapsed() > PROGRAM_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = readers.into_iter().map(|r| r.join().unwrap_or_default());
    Outcome {
        driver,
        code,
        stdout: out.next().unwrap(),
        stderr: out.next().unwrap(),
        took: started.elapsed(),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The highest non-beta protocol version a proxy lists in its SUPPORTED answer to OPTIONS
/// (`PROTOCOL_VERSIONS`: `4/v4`, `5/v5`, `6/v6-beta`, ...), asked in v4 framing as drivers do
/// before they choose.
fn highest_advertised_version(addr: &str) -> u8 {
    let mut s = TcpStream::connect((addr, CQL_PORT))
        .unwrap_or_else(|e| panic!("connect to the proxy at {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Version 4 request, no flags, stream 1, opcode OPTIONS (0x05), empty body.
    s.write_all(&[0x04, 0, 0, 1, 0x05, 0, 0, 0, 0]).unwrap();
    let mut header = [0u8; 9];
    s.read_exact(&mut header)
        .unwrap_or_else(|e| panic!("read SUPPORTED from {addr}: {e}"));
    assert_eq!(
        header[4], 0x06,
        "{addr} answered OPTIONS with opcode {}",
        header[4]
    );
    let len = u32::from_be_bytes(header[5..9].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let versions = string_multimap(&body)
        .into_iter()
        .find(|(k, _)| k == "PROTOCOL_VERSIONS")
        .unwrap_or_else(|| panic!("{addr}'s SUPPORTED lists no PROTOCOL_VERSIONS"))
        .1;
    versions
        .iter()
        .filter(|v| !v.contains("beta"))
        .filter_map(|v| v.split('/').next()?.parse().ok())
        .max()
        .unwrap_or_else(|| panic!("{addr} advertises no usable version: {versions:?}"))
}

/// A CQL `[string multimap]`: a count, then per entry a `[string]` key and a `[string list]`.
fn string_multimap(body: &[u8]) -> Vec<(String, Vec<String>)> {
    let mut at = 0;
    let short = |at: &mut usize| {
        let v = u16::from_be_bytes([body[*at], body[*at + 1]]) as usize;
        *at += 2;
        v
    };
    let string = |at: &mut usize, n: usize| {
        let s = String::from_utf8_lossy(&body[*at..*at + n]).into_owned();
        *at += n;
        s
    };
    let entries = short(&mut at);
    (0..entries)
        .map(|_| {
            let n = short(&mut at);
            let key = string(&mut at, n);
            let count = short(&mut at);
            let values = (0..count)
                .map(|_| {
                    let n = short(&mut at);
                    string(&mut at, n)
                })
                .collect();
            (key, values)
        })
        .collect()
}
