//! Connection and tuning settings of the data engine, and what to copy.
//!
//! The engine takes plain values (no inventory, no CLI) so a playbook module and the CLI are
//! thin wrappers that only fill these structs.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// How to reach one cluster. The password is kept out of `Debug` output so it never reaches logs.
#[derive(Clone, Default)]
pub struct ClusterConfig {
    /// Which cluster this is ("origin" or "target"), used in messages.
    pub name: String,
    pub contact_points: Vec<String>,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Maximum rows per second read from (origin) or written to (target) this cluster; `None`
    /// is unlimited. Protects a production cluster from the backfill. Rows, not statements:
    /// migrate charges target for each origin row it copies (however many statements the row
    /// takes), validate for each target row it reads.
    pub rate_limit: Option<u32>,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("name", &self.name)
            .field("contact_points", &self.contact_points)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl ClusterConfig {
    /// Opens a driver session; errors name the cluster and its contact points (never the password).
    pub async fn connect(&self) -> anyhow::Result<Session> {
        anyhow::ensure!(
            !self.contact_points.is_empty(),
            "no contact points for the {} cluster (set {}_contact_points)",
            self.name,
            self.name
        );
        let mut builder = SessionBuilder::new().connection_timeout(Duration::from_secs(15));
        for point in &self.contact_points {
            let point = point.trim();
            if point.contains(':') && !point.starts_with('[') && point.matches(':').count() == 1 {
                builder = builder.known_node(point);
            } else {
                builder = builder.known_node(format!("{}:{}", point, self.port));
            }
        }
        if let Some(user) = &self.username {
            builder = builder.user(user.clone(), self.password.clone().unwrap_or_default());
        }
        builder.build().await.with_context(|| {
            format!(
                "cannot connect to the {} cluster at {} (port {})",
                self.name,
                self.contact_points.join(","),
                self.port
            )
        })
    }
}

/// Tuning shared by migrate and validate.
#[derive(Clone, Debug)]
pub struct DataConfig {
    pub origin: ClusterConfig,
    pub target: ClusterConfig,
    /// Number of token sub-ranges per table. More ranges mean finer resume, better balance and
    /// less memory per range in validate. `None`: the count of an interrupted run's checkpoint
    /// when resuming, else derived from origin's size estimates (see [`super::sizing`]).
    pub splits: Option<u32>,
    /// Sub-ranges processed at the same time.
    pub concurrency: usize,
    /// Rows per page when scanning.
    pub page_size: i32,
    /// Writes in flight per sub-range.
    pub write_concurrency: usize,
    /// Attempts per page or write before a sub-range is marked failed.
    pub retries: u32,
    /// First backoff delay; doubles per attempt.
    pub backoff: Duration,
    /// Checkpoint file for migrate; `None` disables resume.
    pub checkpoint: Option<PathBuf>,
    /// Ignore an existing checkpoint and start over.
    pub fresh: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            origin: ClusterConfig {
                name: "origin".into(),
                port: 9042,
                ..Default::default()
            },
            target: ClusterConfig {
                name: "target".into(),
                port: 9042,
                ..Default::default()
            },
            splits: None,
            concurrency: 8,
            page_size: 1000,
            write_concurrency: 32,
            retries: 5,
            backoff: Duration::from_millis(200),
            checkpoint: None,
            fresh: false,
        }
    }
}

/// Which tables to work on. Empty means every table of every non-system keyspace.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub keyspaces: Vec<String>,
    /// `(keyspace, table)` pairs.
    pub tables: Vec<(String, String)>,
}

impl Selection {
    /// Parses `ks.table` strings; an entry without a dot is an error that names it.
    pub fn parse(keyspaces: &[String], tables: &[String]) -> anyhow::Result<Selection> {
        let mut parsed = Vec::new();
        for t in tables {
            let (ks, name) = t.split_once('.').with_context(|| {
                format!("--table {t:?}: expected KEYSPACE.TABLE (for example shop.orders)")
            })?;
            anyhow::ensure!(
                !ks.is_empty() && !name.is_empty(),
                "--table {t:?}: expected KEYSPACE.TABLE"
            );
            parsed.push((ks.to_string(), name.to_string()));
        }
        Ok(Selection {
            keyspaces: keyspaces.to_vec(),
            tables: parsed,
        })
    }

    pub fn is_everything(&self) -> bool {
        self.keyspaces.is_empty() && self.tables.is_empty()
    }
}
