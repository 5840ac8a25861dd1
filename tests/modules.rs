//! Module behaviour through the binary: uri against a real local HTTP server, wait_for on
//! real ports and paths, until/retries, run_once, delegate_to, forks, Ctrl-C.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zdm_testkit::local_fleet::{LocalFleet, HOSTS};

/// A tiny HTTP server on 127.0.0.1: `/health` answers 200 with JSON after `fail_first`
/// requests answered 503; it counts requests. Runs until the test process ends.
fn http_server(fail_first: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let seen = counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if !req.starts_with("GET /health") && !req.starts_with("POST /") {
                ("404 Not Found", "{}".to_string())
            } else if seen < fail_first {
                (
                    "503 Service Unavailable",
                    "{\"Status\":\"DOWN\"}".to_string(),
                )
            } else if req.starts_with("POST /") {
                (
                    "201 Created",
                    format!(
                        "{{\"echo\":{}}}",
                        req.split("\r\n\r\n").nth(1).unwrap_or("null")
                    ),
                )
            } else {
                (
                    "200 OK",
                    "{\"Status\":\"UP\",\"OriginStatus\":{\"Status\":\"UP\"}}".to_string(),
                )
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

#[test]
fn uri_retries_until_healthy_and_reads_json() {
    let fleet = LocalFleet::new();
    let (port, hits) = http_server(2);
    let pb = fleet.write_playbook(
        "uri.yml",
        &format!(
            r#"
- hosts: h1
  tasks:
    - name: wait for readiness
      uri:
        url: "http://127.0.0.1:{port}/health"
        return_content: true
      register: health
      until: health.status == 200
      retries: 5
      delay: 0
    - assert:
        that:
          - health.json.Status == 'UP'
          - health.attempts == (1 if ansible_check_mode else 3)
          - "'OriginStatus' in health.content"
    - name: post in check mode would run
      uri:
        url: "http://127.0.0.1:{port}/things"
        method: POST
        body: {{name: x}}
        body_format: json
        status_code: [200, 201]
      register: posted
    - assert:
        that: posted.json.echo.name == 'x'
      when: not ansible_check_mode
"#
        ),
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "3 GETs (2 failing) and 1 POST"
    );

    // Check mode: the GET runs (read-only), the POST does not.
    let before = hits.load(Ordering::SeqCst);
    let run = fleet.run(&[pb.to_str().unwrap(), "--check"]);
    run.assert_code(0);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before + 1,
        "check mode sent a POST"
    );
    assert!(
        run.stdout.contains("would run: [h1] => POST"),
        "{}",
        run.stdout
    );
}

#[test]
fn uri_unexpected_status_fails_the_host() {
    let fleet = LocalFleet::new();
    let (port, _) = http_server(100);
    let pb = fleet.write_playbook(
        "uri-fail.yml",
        &format!("- hosts: h1\n  tasks:\n    - uri: {{url: \"http://127.0.0.1:{port}/health\"}}\n"),
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(2);
    assert!(run.stdout.contains("status code was 503"), "{}", run.stdout);
}

#[test]
fn wait_for_ports_and_paths() {
    let fleet = LocalFleet::new();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(fleet.host_file("h1", "/ready"), "").unwrap();
    let pb = fleet.write_playbook(
        "wait.yml",
        &format!(
            r#"
- hosts: h1
  tasks:
    - wait_for: {{port: {open_port}, timeout: 10}}
    - wait_for: {{port: {closed_port}, state: stopped, timeout: 10}}
    - wait_for: {{path: /ready, timeout: 10}}
    - wait_for: {{path: /not-there, state: absent, timeout: 10}}
    - wait_for: {{port: {closed_port}, timeout: 1, sleep: 0.2}}
      register: timed_out
      ignore_errors: true
    - assert:
        that: timed_out.failed
"#
        ),
    );
    let run = fleet.run(&[pb.to_str().unwrap()]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("Timeout when waiting for 127.0.0.1"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("ignored=1"), "{}", run.stdout);
    drop(open);
}

#[test]
fn run_once_delegate_to_and_forks_run_hosts_in_parallel() {
    let fleet = LocalFleet::new();
    let shared = fleet.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let pb = fleet.write_playbook(
        "once.yml",
        &format!(
            r#"
- hosts: fleet
  tasks:
    - name: counted once
      shell: echo once >> {shared}/once.log
      run_once: true
      register: once
    - name: every host sees the run_once result
      assert:
        that: once.changed
    - name: on the control machine
      copy: {{content: "{{{{ inventory_hostname }}}}\n", dest: "{shared}/delegated-{{{{ inventory_hostname }}}}"}}
      delegate_to: localhost
    - name: all three hosts must be inside this task at the same time
      shell: |
        touch {shared}/in-$(basename "$ZDM_LOCAL_ROOT")
        for i in $(seq 1 50); do
          [ "$(ls {shared} | grep -c '^in-')" -ge 3 ] && exit 0
          sleep 0.1
        done
        exit 1
"#,
            shared = shared.display()
        ),
    );
    fleet.run(&[pb.to_str().unwrap(), "-f", "3"]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(shared.join("once.log")).unwrap(),
        "once\n"
    );
    for h in HOSTS {
        assert_eq!(
            std::fs::read_to_string(shared.join(format!("delegated-{h}"))).unwrap(),
            format!("{h}\n")
        );
    }

    // With one fork the hosts run one after the other, so the rendezvous times out.
    for f in std::fs::read_dir(&shared).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    let run = fleet.run(&[pb.to_str().unwrap(), "-f", "1"]);
    run.assert_code(2);
}

/// Runs `pb` on the fleet, sends Ctrl-C (SIGINT) once `ready` holds, and returns the exit
/// code and stdout.
fn interrupt_when(
    fleet: &LocalFleet,
    pb: &std::path::Path,
    ready: impl Fn() -> bool,
) -> (Option<i32>, String) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_zdm-run"))
        .current_dir(fleet.dir.path())
        .args(["-i", "inventory", pb.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut out = String::new();
            let _ = child.0.stdout.take().unwrap().read_to_string(&mut out);
            panic!("the run ended ({status}) before it could be interrupted:\n{out}");
        }
        if Instant::now() > deadline {
            let files: Vec<String> = HOSTS
                .iter()
                .flat_map(|h| std::fs::read_dir(fleet.root(h)).unwrap().flatten())
                .map(|e| e.path().display().to_string())
                .collect();
            panic!("the run never got ready to interrupt; files: {files:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.0.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "zdm-run ignored Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.code(), out)
}

/// Names of zdm-run's temporary files (`.zdm-...`, and any other name holding `zdm-`)
/// directly under each host's root.
fn zdm_leftovers(fleet: &LocalFleet) -> Vec<String> {
    let mut found = Vec::new();
    for h in HOSTS {
        for e in std::fs::read_dir(fleet.root(h)).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains("zdm-") {
                found.push(format!("{h}: {n}"));
            }
        }
    }
    found
}

#[test]
fn ctrl_c_stops_with_exit_99_and_leaves_no_temporary_files() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook(
        "long.yml",
        "- hosts: fleet\n  tasks:\n    - copy: {content: \"a\\n\", dest: /started}\n    - pause: {seconds: 60}\n    - copy: {content: \"b\\n\", dest: /never}\n",
    );
    let (code, out) = interrupt_when(&fleet, &pb, || {
        HOSTS
            .iter()
            .all(|h| fleet.host_file(h, "/started").exists())
    });
    assert_eq!(code, Some(99), "{out}");
    assert!(out.contains("interrupted"), "{out}");
    assert!(out.contains("PLAY RECAP"), "{out}");
    for h in HOSTS {
        assert!(!fleet.host_file(h, "/never").exists());
    }
    assert_eq!(zdm_leftovers(&fleet), Vec::<String>::new());
}

#[test]
fn ctrl_c_during_a_validate_command_removes_the_copy_it_was_checking() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook(
        "validate.yml",
        r#"
- hosts: fleet
  tasks:
    - copy:
        content: "password={{ db_password }}\n"
        dest: /app.conf
        validate: 'touch "$ZDM_LOCAL_ROOT/validating"; sleep 60; test -s %s'
"#,
    );
    // The copy is written before the command starts.
    let (code, out) = interrupt_when(&fleet, &pb, || {
        HOSTS
            .iter()
            .all(|h| fleet.host_file(h, "/validating").exists())
    });
    assert_eq!(code, Some(99), "{out}");
    assert_eq!(
        zdm_leftovers(&fleet),
        Vec::<String>::new(),
        "the copy under validation (holding the password) was left behind"
    );
    for h in HOSTS {
        assert!(
            !fleet.host_file(h, "/app.conf").exists(),
            "{h}: half-applied"
        );
    }
}

#[test]
fn delegate_to_another_inventory_host_acts_there_with_the_callers_variables() {
    let fleet = LocalFleet::new();
    let pb = fleet.write_playbook(
        "delegate.yml",
        r#"
- hosts: h1:h2
  tasks:
    - copy: {content: "from {{ inventory_hostname }}\n", dest: "/from-{{ inventory_hostname }}"}
      delegate_to: "{{ groups['fleet'][2] }}"
    - copy: {content: x, dest: /y}
      delegate_to: nowhere
      ignore_errors: true
      register: bad
    - assert: {that: "bad.failed and 'not an inventory host' in bad.msg"}
"#,
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    for h in ["h1", "h2"] {
        let f = fleet.host_file("h3", &format!("/from-{h}"));
        assert_eq!(std::fs::read_to_string(f).unwrap(), format!("from {h}\n"));
        assert!(!fleet.host_file(h, &format!("/from-{h}")).exists());
    }
}

/// An HTTP server on 127.0.0.1 for `zdm_peers_ready`: `/<host>/ready` answers 200, except for
/// the hosts in `not_ready` (503). Each answer is held back 300 ms so that requests sent at
/// the same time overlap; it records which hosts were asked and the most requests it ever
/// had in hand at once.
struct PeerServer {
    port: u16,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
    max_in_flight: Arc<AtomicUsize>,
}

fn peer_server(not_ready: &'static [&'static str]) -> PeerServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (a, m) = (asked.clone(), max_in_flight.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let (asked, max, now) = (a.clone(), m.clone(), in_flight.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let host = req
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.split('/').nth(1))
                    .unwrap_or_default()
                    .to_string();
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(current, Ordering::SeqCst);
                asked.lock().unwrap().push(host.clone());
                std::thread::sleep(Duration::from_millis(300));
                now.fetch_sub(1, Ordering::SeqCst);
                let status = if not_ready.contains(&host.as_str()) {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            });
        }
    });
    PeerServer {
        port,
        asked,
        max_in_flight,
    }
}

#[test]
fn zdm_peers_ready_asks_every_peer_at_once_and_check_mode_skips_peers_this_run_starts() {
    let fleet = LocalFleet::new();
    let server = peer_server(&["h3"]);
    let port = server.port;
    let pb = fleet.write_playbook(
        "peers.yml",
        &format!(
            r#"
- hosts: all
  tasks:
    - name: h3 served no client when the run began (deploy.yml's first play starts it)
      set_fact:
        was_serving: "{{{{ inventory_hostname != 'h3' }}}}"
- hosts: h1
  vars:
    peer_ready_url: "http://127.0.0.1:{port}/{{{{ inventory_hostname }}}}/ready"
  tasks:
    - name: ask the others
      zdm_peers_ready:
        peers: "{{{{ groups['all'] | reject('equalto', inventory_hostname) | list }}}}"
        url_var: peer_ready_url
        serving_var: was_serving
        retries: 1
        delay: 0
      register: peers
    - assert:
        that:
          - "peers.not_ready == ([] if ansible_check_mode else ['h3'])"
          - "peers.not_asked == (['h3'] if ansible_check_mode else [])"
          - "peers.results | map(attribute='item') | list == (['h2'] if ansible_check_mode else ['h2', 'h3'])"
          - not peers.changed
"#
        ),
    );
    fleet.run(&[pb.to_str().unwrap()]).assert_code(0);
    let mut asked = server.asked.lock().unwrap().clone();
    asked.sort();
    assert_eq!(
        asked,
        ["h2", "h3", "h3"],
        "h2 is ready at once; h3 is asked again once (retries: 1)"
    );
    assert_eq!(
        server.max_in_flight.load(Ordering::SeqCst),
        2,
        "both peers must be asked at the same time"
    );

    server.asked.lock().unwrap().clear();
    fleet.run(&[pb.to_str().unwrap(), "--check"]).assert_code(0);
    assert_eq!(
        *server.asked.lock().unwrap(),
        ["h2"],
        "check mode asks no peer that this run would start"
    );
}
