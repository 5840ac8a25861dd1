//! The sandbox is what every other test stands on, so these prove its parts are real: the
//! clusters speak CQL with their own credentials, every proxy host answers ssh and keeps its own
//! files, and the fault switches really cut a host off and bring it back.

use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};
use openssh_sftp_client::{Sftp, SftpOptions};
use scylla::client::session::Session as CqlSession;
use scylla::client::session_builder::SessionBuilder as CqlSessionBuilder;
use zdm_testkit::{locks::FAULTS, unique_name, Lock, Sandbox};

async fn cql_session(
    sb: &Sandbox,
    cluster: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<CqlSession> {
    Ok(CqlSessionBuilder::new()
        .known_node(sb.node(cluster))
        .user(user, password)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .await?)
}

async fn ssh_session(sb: &Sandbox, host: &str) -> Result<Session, openssh::Error> {
    SessionBuilder::default()
        .config_file(sb.get("SANDBOX_SSH_CONFIG"))
        .known_hosts_check(KnownHosts::Strict)
        .connect_timeout(Duration::from_secs(5))
        .connect_mux(host)
        .await
}

async fn remote(session: &Session, script: &str) -> (bool, String) {
    let out = session
        .command("sh")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("run remote command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test]
async fn each_cluster_accepts_its_own_credentials_and_stores_rows() {
    let sb = Sandbox::load();
    for cluster in ["ORIGIN", "TARGET"] {
        let session = cql_session(&sb, cluster, &sb.creds(cluster).0, &sb.creds(cluster).1)
            .await
            .unwrap_or_else(|e| panic!("{cluster}: connect with the sandbox credentials: {e}"));
        let ks = unique_name("smoke");
        session
            .query_unpaged(
                format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
                (),
            )
            .await
            .unwrap();
        session
            .query_unpaged(
                format!("CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)"),
                (),
            )
            .await
            .unwrap();
        let value = format!("written to {cluster}");
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"),
                (7, value.as_str()),
            )
            .await
            .unwrap();
        let row: (String,) = session
            .query_unpaged(format!("SELECT v FROM {ks}.kv WHERE k = 7"), ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .single_row::<(String,)>()
            .unwrap();
        assert_eq!(row.0, value);
        session
            .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn clusters_refuse_wrong_and_each_others_credentials() {
    let sb = Sandbox::load();
    for cluster in ["ORIGIN", "TARGET"] {
        let wrong = cql_session(&sb, cluster, &sb.creds(cluster).0, "not-the-password").await;
        let err = wrong
            .err()
            .unwrap_or_else(|| panic!("{cluster} accepted a wrong password"));
        let text = format!("{err:?}");
        assert!(
            text.contains("Authentication")
                || text.contains("authentication")
                || text.contains("credentials"),
            "{cluster}: expected an authentication error, got {text}"
        );
        // The default superuser is locked on both, so only the cluster's own role gets in.
        assert!(cql_session(&sb, cluster, "cassandra", "cassandra")
            .await
            .is_err());
    }
    // Each cluster has its own role: origin's credentials do not open target.
    assert!(
        cql_session(&sb, "TARGET", &sb.creds("ORIGIN").0, &sb.creds("ORIGIN").1)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn every_host_answers_ssh_and_keeps_its_own_files() {
    let sb = Sandbox::load();
    let _fleet = Lock::shared(FAULTS);
    let hosts = sb.host_names();
    assert!(
        hosts.len() >= 3,
        "the default fleet has 3 hosts, found {hosts:?}"
    );
    let file_name = unique_name("smoke");
    let path = format!("/opt/zdm-proxy/{file_name}");

    // Every host writes its own file over SFTP, with its own content, at the same path.
    for (i, host) in hosts.iter().enumerate() {
        let session = ssh_session(&sb, host)
            .await
            .unwrap_or_else(|e| panic!("ssh {host}: {e}"));
        let (ok, address) =
            remote(&session, "ip -4 -o addr show dev eth0 | awk '{print $4}'").await;
        assert!(ok, "{host}: ip addr failed");
        assert!(
            address.starts_with(&format!("{}/", sb.host_addresses()[i])),
            "{host} has address {address}, expected {}",
            sb.host_addresses()[i]
        );
        let sftp =
            Sftp::from_clonable_session(std::sync::Arc::new(session), SftpOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{host}: sftp subsystem: {e}"));
        let mut fs = sftp.fs();
        fs.write(&path, format!("written on {host}").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{host}: sftp write: {e}"));
        drop(fs);
        sftp.close().await.unwrap();
    }

    // Each sees only its own content, and reaches both clusters' CQL port from its namespace.
    let clusters = [sb.node("ORIGIN"), sb.node("TARGET")];
    for host in &hosts {
        let session = ssh_session(&sb, host)
            .await
            .unwrap_or_else(|e| panic!("ssh {host}: {e}"));
        let (ok, content) = remote(&session, &format!("cat {path} && rm {path}")).await;
        assert!(ok, "{host}: its own file is gone");
        assert_eq!(
            content,
            format!("written on {host}"),
            "{host} sees another host's file"
        );
        for cluster in &clusters {
            let (ip, port) = cluster.rsplit_once(':').expect("contact point is ip:port");
            let (reachable, _) = remote(
                &session,
                &format!("timeout 5 bash -c '</dev/tcp/{ip}/{port}'"),
            )
            .await;
            assert!(reachable, "{host} cannot reach the cluster at {cluster}");
        }
        session.close().await.unwrap();
    }
    assert!(
        !std::path::Path::new(&path).exists(),
        "the control side must not see a host's install root"
    );
}

/// Puts the host back on the network and its sshd back up even when an assertion fails.
struct Restore<'a> {
    sb: &'a Sandbox,
    host: String,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.sb.switch("restore", &self.host);
        self.sb.switch("sshd-start", &self.host);
    }
}

#[tokio::test]
async fn fault_switches_cut_a_host_off_and_bring_it_back() {
    let sb = Sandbox::load();
    let _fleet = Lock::exclusive(FAULTS);
    let host = sb.host_names()[1].clone();
    let _restore = Restore {
        sb: &sb,
        host: host.clone(),
    };

    sb.switch("cut", &host);
    let cut = ssh_session(&sb, &host).await;
    assert!(
        cut.is_err(),
        "{host} answered ssh while cut off the network"
    );
    sb.switch("restore", &host);
    let back = ssh_session(&sb, &host).await.expect("ssh after restore");
    assert!(remote(&back, "true").await.0);
    back.close().await.unwrap();

    sb.switch("sshd-stop", &host);
    let stopped = ssh_session(&sb, &host).await;
    assert!(
        stopped.is_err(),
        "{host} answered ssh with its sshd stopped"
    );
    sb.switch("sshd-start", &host);
    let again = ssh_session(&sb, &host).await.expect("ssh after sshd-start");
    assert!(remote(&again, "true").await.0);
    again.close().await.unwrap();
}
