//! Module behaviour through the binary: uri against a real local HTTP server, wait_for on
//! real ports and paths, until/retries, run_once, delegate_to, forks, Ctrl-C.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fleet, HOSTS};

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
    let fleet = Fleet::new();
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
    let fleet = Fleet::new();
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
    let fleet = Fleet::new();
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
    let fleet = Fleet::new();
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
    fleet: &Fleet,
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
fn zdm_leftovers(fleet: &Fleet) -> Vec<String> {
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
    let fleet = Fleet::new();
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
    let fleet = Fleet::new();
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
    let fleet = Fleet::new();
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
