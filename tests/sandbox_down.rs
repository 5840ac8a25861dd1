//! `scripts/sandbox.sh down` stops every host whatever the fleet size (it once stopped only
//! hosts 1 to 64). The test brings up a second, fleet-only sandbox of 65 hosts beside the
//! running one (its own directory, its own /24 and its own names: `zdt-h1..zdt-h65`, so the
//! shared sandbox's `zdm-h*` hosts are never touched), takes it down, and checks that no sshd,
//! no namespace and no network interface of it is left.

use std::path::Path;
use std::process::{Command, Output};

const HOSTS: usize = 65;
const PREFIX: &str = "zdt";
const NET: &str = "10.213.1";

fn sandbox(dir: &Path, args: &[&str]) -> Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh"))
        .args(args)
        .env("ZDM_SANDBOX_DIR", dir)
        .env("ZDM_SANDBOX_HOSTS", HOSTS.to_string())
        .env("ZDM_SANDBOX_PREFIX", PREFIX)
        .env("ZDM_SANDBOX_NET", NET)
        .output()
        .expect("run scripts/sandbox.sh")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Takes the test fleet down however the test ends.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = sandbox(self.0, &["down"]);
    }
}

fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(String::from)
        .collect()
}

fn links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .collect()
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

#[test]
fn down_stops_every_host_of_a_65_host_fleet() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sb = dir.path().join("sandbox");
    let _down = Down(&sb);

    let up = sandbox(&sb, &["up", "--fleet-only"]);
    assert!(up.status.success(), "up --fleet-only:\n{}", text(&up));
    let pids: Vec<String> = (1..=HOSTS)
        .map(|i| {
            std::fs::read_to_string(sb.join(format!("hosts/{PREFIX}-h{i}/sshd.pid")))
                .unwrap_or_else(|e| panic!("{PREFIX}-h{i} has no sshd pid: {e}"))
        })
        .collect();
    assert!(pids.iter().all(|p| alive(p)), "every host's sshd runs");
    assert_eq!(namespaces().len(), HOSTS, "{:?}", namespaces());
    // The last host answers over ssh, as the fleet's tests would reach it.
    let ssh = Command::new("ssh")
        .args([
            "-F",
            sb.join("ssh/config").to_str().unwrap(),
            &format!("{PREFIX}-h{HOSTS}"),
            "echo here",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ssh.stdout).trim(),
        "here",
        "{}",
        text(&ssh)
    );

    let down = sandbox(&sb, &["down"]);
    assert!(down.status.success(), "down:\n{}", text(&down));
    let left: Vec<(usize, &String)> = pids
        .iter()
        .enumerate()
        .filter(|(_, p)| alive(p))
        .map(|(i, p)| (i + 1, p))
        .collect();
    assert!(
        left.is_empty(),
        "sshd still running on hosts (index, pid): {left:?}"
    );
    assert!(
        namespaces().is_empty(),
        "namespaces left: {:?}",
        namespaces()
    );
    assert!(links().is_empty(), "interfaces left: {:?}", links());
    let pgrep = Command::new("pgrep")
        .args(["-f", sb.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        pgrep.stdout.is_empty(),
        "processes of the test fleet left: {}",
        String::from_utf8_lossy(&pgrep.stdout)
    );
}
