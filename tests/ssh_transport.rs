//! The SSH transport against the sandbox's real sshd hosts.

mod ssh_support;

use ssh_support::transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest;
use zdm_run::transport::ssh::{SshPool, SshTarget, SshTransport};
use zdm_run::transport::{CommandSpec, FileKind, Ownership, Transport, TransportError};
use zdm_testkit::{faults::FaultGuard, remote_dir::RemoteDir, Sandbox};

fn shell(script: &str) -> CommandSpec {
    CommandSpec {
        shell: Some(script.into()),
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    }
}

async fn sh(t: &SshTransport, script: &str) -> String {
    let out = t.run(shell(script)).await.expect("command runs");
    assert_eq!(out.rc, 0, "{script}: {}", out.stderr);
    out.stdout
}

#[tokio::test]
async fn every_transport_method_works_on_a_real_host() {
    let sb = Sandbox::load();
    let pool = Arc::new(SshPool::new());
    let t = transport(&sb, "zdm-h1", &pool);
    let cleanup = RemoteDir::new(&sb, &["zdm-h1"], "methods");
    let dir = cleanup.path.clone();
    let no_owner = Ownership::default();

    t.mkdir(&dir, 0o750).await.unwrap();
    let st = t.stat(&dir).await.unwrap().expect("dir exists");
    assert_eq!((st.kind, st.mode), (FileKind::Directory, 0o750));

    let file = format!("{dir}/secret.conf");
    let data = b"password: hunter2\nline two\n";
    t.write_file(&file, data, 0o600, &no_owner).await.unwrap();
    let st = t.stat(&file).await.unwrap().unwrap();
    assert_eq!(
        (st.kind, st.mode, st.size),
        (FileKind::File, 0o600, data.len() as u64)
    );
    assert_eq!(
        t.read_file(&file).await.unwrap().as_deref(),
        Some(&data[..])
    );
    assert_eq!(
        t.checksum(&file).await.unwrap(),
        Some(hex::encode(sha2::Sha256::digest(data)))
    );

    // Replacing keeps the new mode and content, and leaves no temporary file behind.
    t.write_file(
        &file,
        b"v2\n",
        0o644,
        &Ownership {
            owner: Some("root".into()),
            group: Some("root".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(t.read_file(&file).await.unwrap().unwrap(), b"v2\n");
    assert_eq!(t.stat(&file).await.unwrap().unwrap().mode, 0o644);
    assert_eq!(sh(&t, &format!("ls -A {dir}")).await.trim(), "secret.conf");

    // A failed write (the destination is a non-empty directory) keeps the old state.
    let blocker = format!("{dir}/blocker");
    t.mkdir(&format!("{blocker}/inner"), 0o755).await.unwrap();
    let e = t
        .write_file(&blocker, b"x", 0o644, &no_owner)
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Failed(_)), "{e:?}");
    assert_eq!(
        t.stat(&blocker).await.unwrap().unwrap().kind,
        FileKind::Directory
    );
    assert!(!sh(&t, &format!("ls -A {dir}")).await.contains(".zdm-tmp"));
    let e = t
        .write_file(&format!("{dir}/missing/f"), b"x", 0o644, &no_owner)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");

    let link = format!("{dir}/current");
    t.symlink(&file, &link).await.unwrap();
    t.symlink(&blocker, &link).await.unwrap();
    let st = t.stat(&link).await.unwrap().unwrap();
    assert_eq!(
        (st.kind, st.link_target.as_deref()),
        (FileKind::Symlink, Some(&blocker[..]))
    );

    t.set_attrs(&file, Some(0o640), &no_owner).await.unwrap();
    assert_eq!(t.stat(&file).await.unwrap().unwrap().mode, 0o640);
    let ids = t
        .owner_ids(&Ownership {
            owner: Some("root".into()),
            group: Some("root".into()),
        })
        .await
        .unwrap();
    assert_eq!(ids, (Some(0), Some(0)));
    assert!(t
        .owner_ids(&Ownership {
            owner: Some("no-such-user-zz".into()),
            group: None
        })
        .await
        .is_err());
    assert!(t.is_root());

    let copy = t.backup(&file).await.unwrap().expect("backup made");
    assert_eq!(t.read_file(&copy).await.unwrap().unwrap(), b"v2\n");

    // Commands: argv with quoting and chdir, a shell with stdin, a failing exit code.
    let out = t
        .run(CommandSpec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "pwd; echo \"$1\"".into(),
                "x".into(),
                "it's a b".into(),
            ],
            chdir: Some(dir.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(out.stdout, format!("{dir}\nit's a b\n"));
    let out = t
        .run(CommandSpec {
            shell: Some("tr a-z A-Z; echo err >&2; exit 7".into()),
            stdin: Some(b"hello".to_vec()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (out.rc, out.stdout.as_str(), out.stderr.as_str()),
        (7, "HELLO", "err\n")
    );

    let origin = sb.get("ZDM_ORIGIN_CONTACT_POINTS");
    assert!(t
        .tcp_probe(origin, 9042, Duration::from_secs(5))
        .await
        .unwrap());
    assert!(!t
        .tcp_probe("127.0.0.1", 1, Duration::from_secs(5))
        .await
        .unwrap());

    // Every operation went over one master: the host saw a single client connection.
    let a = sh(&t, "echo $SSH_CONNECTION").await;
    let b = sh(&t, "echo $SSH_CONNECTION").await;
    assert_eq!(a, b, "commands must share one multiplexed connection");
    assert_eq!(pool.open_count(), 1);

    t.remove(&dir).await.unwrap();
    assert_eq!(t.stat(&dir).await.unwrap(), None);
    assert_eq!(t.read_file(&file).await.unwrap(), None);
    assert_eq!(t.checksum(&file).await.unwrap(), None);
    t.remove(&dir).await.unwrap();
    pool.close_all();
}

#[tokio::test]
async fn a_write_on_one_host_is_invisible_on_another() {
    let sb = Sandbox::load();
    let pool = Arc::new(SshPool::new());
    let h1 = transport(&sb, "zdm-h1", &pool);
    let h2 = transport(&sb, "zdm-h2", &pool);
    let cleanup = RemoteDir::new(&sb, &["zdm-h1", "zdm-h2"], "isolation");
    let dir = cleanup.path.clone();
    h1.mkdir(&dir, 0o755).await.unwrap();
    h1.write_file(
        &format!("{dir}/only-h1"),
        b"1",
        0o644,
        &Ownership::default(),
    )
    .await
    .unwrap();
    assert!(h1.stat(&format!("{dir}/only-h1")).await.unwrap().is_some());
    assert_eq!(h2.stat(&dir).await.unwrap(), None);
    assert_eq!(pool.open_count(), 2);
    h1.remove(&dir).await.unwrap();
    pool.close_all();
}

#[tokio::test]
async fn a_command_that_overruns_is_killed_on_the_host() {
    let sb = Sandbox::load();
    let pool = Arc::new(SshPool::new());
    let t = transport(&sb, "zdm-h2", &pool);
    // A unique duration marks our sleep; the shell forks it as a grandchild of `timeout`.
    let marker = format!("86399.{:06}", rand::random::<u32>() % 1_000_000);
    let find = format!("pgrep -f 'slee[p] {marker}' || echo none");
    let started = Instant::now();
    let long = t.run(CommandSpec {
        shell: Some(format!("sleep {marker}; echo never")),
        timeout: Some(Duration::from_secs(2)),
        ..Default::default()
    });
    let probe = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        t.run(shell(&find)).await.unwrap()
    };
    let (result, during) = tokio::join!(long, probe);
    // The probe finds the sleep while it runs, so finding nothing afterwards means killed.
    assert_ne!(
        during.stdout.trim(),
        "none",
        "probe could not see the running sleep"
    );
    let e = result.unwrap_err();
    let took = started.elapsed();
    assert!(e.to_string().contains("timed out after 2s"), "{e}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let out = t.run(shell(&find)).await.unwrap();
    assert_eq!(
        out.stdout.trim(),
        "none",
        "the remote sleep survived the timeout"
    );
    pool.close_all();
}

fn with_timeout(sb: &Sandbox, host: &str, secs: u64) -> SshTarget {
    let mut v = sb.ssh_vars(host);
    v.insert("ansible_ssh_timeout".into(), secs.into());
    SshTarget::from_vars(host, &v).unwrap()
}

#[tokio::test]
async fn a_cut_host_is_unreachable_within_the_connect_timeout() {
    let sb = Sandbox::load();
    let mut guard = FaultGuard::new(&sb);
    guard.apply("cut", "restore", "zdm-h3");
    let pool = Arc::new(SshPool::new());
    let t = SshTransport::new(with_timeout(&sb, "zdm-h3", 3), pool.clone());
    let started = Instant::now();
    let e = t.run(shell("true")).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, TransportError::Unreachable(_)), "{e:?}");
    assert!(e.to_string().contains("zdm-h3"), "{e}");
    // ssh's ConnectTimeout=3 (plus process start); our own bound would be 2*3+5.
    assert!(took < Duration::from_secs(11), "took {took:?}");
    drop(guard);
    // Restored: the same pool reconnects.
    let out = t.run(shell("echo back")).await.unwrap();
    assert_eq!(out.stdout, "back\n");
    pool.close_all();
}

#[tokio::test]
async fn a_changed_host_key_is_refused_with_how_to_trust_it() {
    let sb = Sandbox::load();
    let mut guard = FaultGuard::new(&sb);
    guard.apply("rekey", "trust", "zdm-h3");
    // `rekey` restarts sshd without waiting for it: wait until it accepts connections.
    let addr = format!("{}:22", sb.address("zdm-h3"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd on zdm-h3 did not come back after rekey"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pool = Arc::new(SshPool::new());
    let t = transport(&sb, "zdm-h3", &pool);
    let e = t.run(shell("true")).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TransportError::Unreachable(_)), "{e:?}");
    assert!(msg.contains("host key verification failed"), "{msg}");
    assert!(
        msg.contains("ssh-keyscan") && msg.contains(sb.get("SANDBOX_KNOWN_HOSTS")),
        "{msg}"
    );
    assert!(msg.contains("ssh-keygen -R"), "{msg}");
    drop(guard);
    let out = t.run(shell("echo trusted")).await.unwrap();
    assert_eq!(out.stdout, "trusted\n");
    pool.close_all();
}

#[tokio::test]
async fn a_jump_host_and_an_ssh_config_file_are_honoured() {
    let sb = Sandbox::load();
    // Names from the sandbox's ssh config (HostName, key, known hosts come from there), and
    // zdm-h2 reached through zdm-h1.
    let vars = serde_json::json!({
        "ansible_host": "zdm-h2",
        "ansible_ssh_config_file": sb.get("SANDBOX_SSH_CONFIG"),
        "ansible_ssh_jump_hosts": "zdm-h1",
    });
    let target = SshTarget::from_vars("zdm-h2", vars.as_object().unwrap()).unwrap();
    let pool = Arc::new(SshPool::new());
    let t = SshTransport::new(target, pool.clone());
    let out = t
        .run(shell("echo $SSH_CONNECTION; hostname -I"))
        .await
        .unwrap();
    let client = out
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        client,
        sb.address("zdm-h1"),
        "zdm-h2 must see the jump host as its client: {}",
        out.stdout
    );
    assert!(out.stdout.contains(&sb.address("zdm-h2")), "{}", out.stdout);
    pool.close_all();
}

#[tokio::test]
async fn a_host_cut_during_a_command_is_unreachable_within_the_keepalive_window() {
    let sb = Sandbox::load();
    let pool = Arc::new(SshPool::new());
    let t = SshTransport::new(with_timeout(&sb, "zdm-h3", 3), pool.clone());
    // The lock first: another test may have zdm-h3 cut or rekeyed right now.
    let mut guard = FaultGuard::new(&sb);
    assert_eq!(t.run(shell("echo up")).await.unwrap().stdout, "up\n");
    let started = Instant::now();
    let long = t.run(CommandSpec {
        shell: Some("sleep 120".into()),
        timeout: Some(Duration::from_secs(300)),
        ..Default::default()
    });
    let cut = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        guard.apply("cut", "restore", "zdm-h3");
    };
    let (result, ()) = tokio::join!(long, cut);
    let took = started.elapsed();
    let e = result.unwrap_err();
    assert!(matches!(e, TransportError::Unreachable(_)), "{e:?}");
    // Keepalives every 5 s, three missed => about 15-20 s, far below the command's 300 s.
    assert!(took < Duration::from_secs(40), "took {took:?}");
    drop(guard);
    assert_eq!(t.run(shell("echo again")).await.unwrap().stdout, "again\n");
    pool.close_all();
}

#[tokio::test]
async fn host_keys_are_checked_strictly_unless_the_inventory_says_otherwise() {
    let sb = Sandbox::load();
    let empty = tempfile::NamedTempFile::new().unwrap();
    let kh = empty.path().display().to_string();
    // Only the known-hosts file is given (an empty one): nothing says how strict to be.
    let mut vars = sb.ssh_vars("zdm-h1");
    vars.insert(
        "ansible_ssh_common_args".into(),
        format!("-o UserKnownHostsFile={kh}").into(),
    );
    let pool = Arc::new(SshPool::new());
    let t = SshTransport::new(SshTarget::from_vars("zdm-h1", &vars).unwrap(), pool.clone());
    let e = t.run(shell("true")).await.unwrap_err();
    assert!(matches!(e, TransportError::Unreachable(_)), "{e:?}");
    assert!(
        e.to_string().contains("host key verification failed"),
        "{e}"
    );
    assert!(e.to_string().contains(&format!(">> {kh}")), "{e}");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        "",
        "nothing may be trusted silently"
    );
    // accept-new is an explicit choice: then the key is recorded and the command runs.
    vars.insert(
        "ansible_ssh_common_args".into(),
        format!("-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=accept-new").into(),
    );
    let t = SshTransport::new(SshTarget::from_vars("zdm-h1", &vars).unwrap(), pool.clone());
    assert_eq!(t.run(shell("echo in")).await.unwrap().stdout, "in\n");
    assert!(!std::fs::read_to_string(&kh).unwrap().is_empty());
    pool.close_all();
}
