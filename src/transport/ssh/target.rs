//! Where and how to reach one SSH host, read from Ansible's connection variables.
//!
//! Only what the `openssh` crate's `SessionBuilder` cannot express directly goes into a
//! generated ssh config file (see [`SshTarget::extra_options`]); everything else maps onto the
//! builder so the master's command line stays readable in `ps`.

use std::time::Duration;

use serde_json::Value;

use crate::vars::{display, truthy, Vars};

/// Connect timeout when the inventory sets none (Ansible's default is 10 s as well).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for a remote command that does not set its own timeout: a hung command must
/// not hang the whole run.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1800);

/// How strictly the host key is checked (ssh's `StrictHostKeyChecking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKeyPolicy {
    /// Unknown or changed keys are refused (the default).
    Strict,
    /// Unknown keys are added, changed keys refused (`accept-new`).
    AcceptNew,
    /// Anything goes (`no`); only for throw-away labs.
    Off,
}

/// Everything needed to open (or find in the pool) the master connection of a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    /// Inventory name, for messages.
    pub name: String,
    /// Address or DNS name to connect to (`ansible_host`).
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_file: Option<String>,
    pub config_file: Option<String>,
    pub known_hosts_file: Option<String>,
    pub host_keys: HostKeyPolicy,
    pub jump_hosts: Vec<String>,
    pub connect_timeout: Duration,
    /// `-o Key=Value` options the builder has no setter for, passed via a generated config.
    pub extra_options: Vec<(String, String)>,
    /// `KexAlgorithms` for the master when no `-o KexAlgorithms` is given (see
    /// [`DEFAULT_KEX_PREFERENCE`]); `None` leaves ssh's defaults.
    pub kex_preference: Option<String>,
    /// Run commands through `sudo -u <user>` (`ansible_become`).
    pub become_user: Option<String>,
    pub command_timeout: Duration,
}

/// A connection variable with a bad value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("host {host}: {var}: {msg}")]
pub struct TargetError {
    pub host: String,
    pub var: String,
    pub msg: String,
}

fn first<'a>(vars: &'a Vars, names: &[&str]) -> Option<(&'a str, &'a Value)> {
    names.iter().find_map(|n| {
        vars.get_key_value(*n)
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.as_str(), v))
    })
}

fn text(vars: &Vars, names: &[&str]) -> Option<String> {
    first(vars, names)
        .map(|(_, v)| display(v))
        .filter(|s| !s.trim().is_empty())
}

impl SshTarget {
    /// Reads the target of inventory host `name` from its variables.
    pub fn from_vars(name: &str, vars: &Vars) -> Result<SshTarget, TargetError> {
        let err = |var: &str, msg: String| TargetError {
            host: name.to_string(),
            var: var.to_string(),
            msg,
        };
        let address = text(vars, &["ansible_host", "ansible_ssh_host"]).unwrap_or(name.into());
        let mut t = SshTarget {
            name: name.to_string(),
            address,
            port: None,
            user: text(vars, &["ansible_user", "ansible_ssh_user"]),
            key_file: text(
                vars,
                &["ansible_ssh_private_key_file", "ansible_private_key_file"],
            ),
            config_file: text(vars, &["ansible_ssh_config_file", "zdm_ssh_config_file"]),
            known_hosts_file: None,
            host_keys: HostKeyPolicy::Strict,
            jump_hosts: vec![],
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            extra_options: vec![],
            // ssh's own key exchange list unless `zdm_ssh_kex_algorithms` says otherwise.
            // OpenSSH 9.x prefers the post-quantum hybrid `sntrup761x25519`, whose key
            // generation costs the client ~100 ms of CPU per connection (2.0 s of CPU for 20
            // connections against 0.24 s with curve25519 on the sandbox), 10 s for 100 hosts
            // opened at once; giving the hybrid up for speed is the operator's choice.
            kex_preference: None,
            become_user: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        };
        if let Some((var, v)) = first(vars, &["ansible_port", "ansible_ssh_port"]) {
            let s = display(v);
            t.port = Some(
                s.trim()
                    .parse()
                    .map_err(|_| err(var, format!("'{s}' is not a port number")))?,
            );
        }
        if let Some((var, v)) = first(vars, &["ansible_ssh_timeout", "ansible_timeout"]) {
            t.connect_timeout = seconds(v).ok_or_else(|| err(var, "not a number".into()))?;
        }
        if let Some((var, v)) = first(vars, &["zdm_ssh_command_timeout"]) {
            t.command_timeout = seconds(v).ok_or_else(|| err(var, "not a number".into()))?;
        }
        if let Some((_, v)) = first(
            vars,
            &["ansible_ssh_host_key_checking", "ansible_host_key_checking"],
        ) {
            if !truthy(v) {
                t.host_keys = HostKeyPolicy::Off;
            }
        }
        if let Some((var, v)) = first(vars, &["ansible_ssh_jump_hosts", "zdm_ssh_jump_hosts"]) {
            t.jump_hosts = match v {
                Value::Array(a) => a.iter().map(display).collect(),
                other => display(other)
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            };
            if t.jump_hosts.is_empty() {
                return Err(err(var, "empty list of jump hosts".into()));
            }
        }
        for var in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
            if let Some(args) = text(vars, &[var]) {
                t.apply_ssh_args(&args).map_err(|m| err(var, m))?;
            }
        }
        if let Some((_, v)) = first(vars, &["zdm_ssh_kex_algorithms"]) {
            let pref = display(v).trim().to_string();
            if pref.contains(['\n', '\r', ' ']) {
                return Err(err(
                    "zdm_ssh_kex_algorithms",
                    "a comma-separated list without blanks is expected".into(),
                ));
            }
            t.kex_preference = Some(pref).filter(|p| !p.is_empty());
        }
        if t.extra_options
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("kexalgorithms"))
        {
            t.kex_preference = None;
        }
        let become_on =
            first(vars, &["ansible_become", "ansible_sudo"]).is_some_and(|(_, v)| truthy(v));
        if become_on {
            if let Some(method) = text(vars, &["ansible_become_method"]) {
                if method != "sudo" {
                    return Err(err(
                        "ansible_become_method",
                        format!("'{method}' is not supported (only sudo)"),
                    ));
                }
            }
            t.become_user = Some(text(vars, &["ansible_become_user"]).unwrap_or("root".into()));
        }
        Ok(t)
    }

    /// Applies ssh command-line arguments (`-o K=V`, `-J`, `-F`, `-i`, `-p`, `-l`).
    fn apply_ssh_args(&mut self, args: &str) -> Result<(), String> {
        let words = split_words(args)?;
        let mut it = words.into_iter();
        while let Some(w) = it.next() {
            let (flag, inline) = if w.len() > 2 && w.starts_with('-') && !w.starts_with("--") {
                (w[..2].to_string(), Some(w[2..].to_string()))
            } else {
                (w.clone(), None)
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("'{flag}' needs a value"))
            };
            match flag.as_str() {
                "-o" => {
                    let opt = value()?;
                    let (k, v) = opt
                        .split_once('=')
                        .or_else(|| opt.split_once(' '))
                        .ok_or_else(|| format!("option '{opt}' is not Key=Value"))?;
                    self.apply_option(k.trim(), v.trim())?;
                }
                "-J" => self
                    .jump_hosts
                    .extend(value()?.split(',').map(String::from)),
                "-F" => self.config_file = Some(value()?),
                "-i" => self.key_file = Some(value()?),
                "-p" => {
                    let p = value()?;
                    self.port = Some(p.parse().map_err(|_| format!("'{p}' is not a port"))?);
                }
                "-l" => self.user = Some(value()?),
                "-C" => self
                    .extra_options
                    .push(("Compression".into(), "yes".into())),
                _ => return Err(format!("unsupported ssh argument '{w}'")),
            }
        }
        Ok(())
    }

    fn apply_option(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key.to_ascii_lowercase().as_str() {
            "userknownhostsfile" => self.known_hosts_file = Some(value.to_string()),
            "stricthostkeychecking" => {
                self.host_keys = match value.to_ascii_lowercase().as_str() {
                    "yes" | "true" => HostKeyPolicy::Strict,
                    "accept-new" => HostKeyPolicy::AcceptNew,
                    "no" | "off" | "false" => HostKeyPolicy::Off,
                    other => return Err(format!("StrictHostKeyChecking={other} is not known")),
                }
            }
            "connecttimeout" => {
                let s: f64 = value
                    .parse()
                    .map_err(|_| format!("ConnectTimeout={value} is not a number"))?;
                self.connect_timeout = Duration::from_secs_f64(s.max(1.0));
            }
            "proxyjump" => self.jump_hosts.extend(value.split(',').map(String::from)),
            "identityfile" => self.key_file = Some(value.to_string()),
            "port" => self.port = Some(value.parse().map_err(|_| format!("Port={value}"))?),
            "user" => self.user = Some(value.to_string()),
            // The master's own options; letting a user override them would break pooling.
            "controlmaster" | "controlpath" | "controlpersist" | "batchmode" => {}
            _ => self
                .extra_options
                .push((key.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// The pool key: one master per user@host:port (and per distinct way of getting there).
    pub fn pool_key(&self) -> String {
        format!(
            "{}@{}:{}{}",
            self.user.as_deref().unwrap_or(""),
            self.address,
            self.port.unwrap_or(22),
            if self.jump_hosts.is_empty() {
                String::new()
            } else {
                format!(" via {}", self.jump_hosts.join(","))
            }
        )
    }

    /// `ssh root@10.0.0.1:22` for messages.
    pub fn describe(&self) -> String {
        format!("ssh {}", self.pool_key())
    }

    /// What an operator runs to trust this host's current key, after checking its
    /// fingerprint out of band.
    pub fn trust_hint(&self) -> String {
        let kh = self
            .known_hosts_file
            .clone()
            .unwrap_or_else(|| "~/.ssh/known_hosts".into());
        let port = match self.port {
            Some(p) if p != 22 => format!("-p {p} "),
            _ => String::new(),
        };
        format!(
            "to trust host {} ({}), verify its key fingerprint out of band (on the host: \
             ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run: \
             ssh-keyscan {port}-H {} >> {kh}  (for a changed key first remove the old one: \
             ssh-keygen -R {} -f {kh})",
            self.name, self.address, self.address, self.address
        )
    }
}

fn seconds(v: &Value) -> Option<Duration> {
    let s: f64 = match v {
        Value::Number(n) => n.as_f64()?,
        other => display(other).trim().parse().ok()?,
    };
    (s > 0.0 && s.is_finite()).then(|| Duration::from_secs_f64(s))
}

/// Splits a command line into words the way a POSIX shell would for plain quoting
/// (`'...'`, `"..."`, backslash). No expansion: ssh arguments do not need it.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed ' in: {s}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => return Err(format!("trailing \\ in: {s}")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed \" in: {s}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Quotes a word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Vars {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_the_sandbox_style_variables() {
        let t = SshTarget::from_vars(
            "zdm-h1",
            &vars(json!({
                "ansible_host": "10.0.0.11",
                "ansible_user": "root",
                "ansible_port": "2222",
                "ansible_ssh_private_key_file": "/k/id",
                "ansible_ssh_common_args":
                    "-o UserKnownHostsFile=/k/known_hosts -o StrictHostKeyChecking=yes -o ServerAliveCountMax=2 -J bastion"
            })),
        )
        .unwrap();
        assert_eq!(t.address, "10.0.0.11");
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.key_file.as_deref(), Some("/k/id"));
        assert_eq!(t.known_hosts_file.as_deref(), Some("/k/known_hosts"));
        assert_eq!(t.host_keys, HostKeyPolicy::Strict);
        assert_eq!(t.jump_hosts, vec!["bastion".to_string()]);
        assert_eq!(
            t.extra_options,
            vec![("ServerAliveCountMax".into(), "2".into())]
        );
        assert_eq!(t.pool_key(), "root@10.0.0.11:2222 via bastion");
    }

    #[test]
    fn strict_host_keys_unless_turned_off() {
        let t = SshTarget::from_vars("h", &Vars::new()).unwrap();
        assert_eq!(t.host_keys, HostKeyPolicy::Strict);
        assert_eq!(t.address, "h");
        let t = SshTarget::from_vars(
            "h",
            &vars(json!({"ansible_ssh_common_args": "-oStrictHostKeyChecking=accept-new"})),
        )
        .unwrap();
        assert_eq!(t.host_keys, HostKeyPolicy::AcceptNew);
    }

    #[test]
    fn bad_values_name_host_and_variable() {
        let e = SshTarget::from_vars("h9", &vars(json!({"ansible_port": "ssh"}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "host h9: ansible_port: 'ssh' is not a port number"
        );
        let e = SshTarget::from_vars("h9", &vars(json!({"ansible_ssh_common_args": "-o 'Foo=1"})))
            .unwrap_err();
        assert!(e.to_string().contains("ansible_ssh_common_args"), "{e}");
        let e = SshTarget::from_vars(
            "h9",
            &vars(json!({"ansible_become": true, "ansible_become_method": "su"})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("only sudo"), "{e}");
    }

    #[test]
    fn ssh_s_own_key_exchange_unless_the_inventory_asks_for_another() {
        const FAST_KEX_PREFERENCE: &str = "^curve25519-sha256,curve25519-sha256@libssh.org";
        let t = SshTarget::from_vars("h", &Vars::new()).unwrap();
        assert_eq!(t.kex_preference, None);
        let fast = json!({"zdm_ssh_kex_algorithms": FAST_KEX_PREFERENCE});
        let t = SshTarget::from_vars("h", &vars(fast)).unwrap();
        assert_eq!(t.kex_preference.as_deref(), Some(FAST_KEX_PREFERENCE));
        let t = SshTarget::from_vars("h", &vars(json!({"zdm_ssh_kex_algorithms": ""}))).unwrap();
        assert_eq!(t.kex_preference, None);
        let t = SshTarget::from_vars(
            "h",
            &vars(json!({"ansible_ssh_common_args": "-o KexAlgorithms=ecdh-sha2-nistp256"})),
        )
        .unwrap();
        assert_eq!(t.kex_preference, None);
        let e = SshTarget::from_vars("h", &vars(json!({"zdm_ssh_kex_algorithms": "a, b"})))
            .unwrap_err();
        assert!(e.to_string().contains("zdm_ssh_kex_algorithms"), "{e}");
    }

    #[test]
    fn become_defaults_to_root() {
        let t = SshTarget::from_vars("h", &vars(json!({"ansible_become": "yes"}))).unwrap();
        assert_eq!(t.become_user.as_deref(), Some("root"));
    }

    #[test]
    fn quoting_round_trips_through_split() {
        for s in ["plain", "a b", "it's", "", "$HOME `x` \"q\""] {
            assert_eq!(split_words(&shell_quote(s)).unwrap(), vec![s.to_string()]);
        }
    }
}
