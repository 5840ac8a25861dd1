//! The data engine's view of the sandbox: its settings and sessions, and rows and ranges read
//! the way the engine reads them. Keyspaces, locks and CQL helpers are `zdm_testkit`'s; these
//! few need the engine's own types.

use scylla::client::session::Session;
use scylla::value::Row;
use zdm_run::data::value::ScanRow;
use zdm_run::data::{ClusterConfig, DataConfig};
use zdm_testkit::{Clusters, Sandbox};

fn cluster(sb: &Sandbox, name: &str) -> ClusterConfig {
    let get = |k: &str| {
        sb.get(&format!("ZDM_{}_{k}", name.to_uppercase()))
            .to_string()
    };
    ClusterConfig {
        name: name.into(),
        contact_points: get("CONTACT_POINTS")
            .split(',')
            .map(str::to_string)
            .collect(),
        port: get("PORT").parse().expect("port"),
        username: Some(get("USERNAME")),
        password: Some(get("PASSWORD")),
        rate_limit: None,
    }
}

/// Engine settings pointing at the sandbox, with splits small enough for test tables.
pub fn config() -> DataConfig {
    let sb = Sandbox::load();
    DataConfig {
        origin: cluster(&sb, "origin"),
        target: cluster(&sb, "target"),
        splits: Some(32),
        concurrency: 4,
        ..DataConfig::default()
    }
}

/// Both clusters, connected as the engine connects, with the clusters lock held shared.
pub async fn connect(cfg: &DataConfig) -> Clusters {
    Clusters::hold(async {
        (
            cfg.origin.connect().await.expect("connect origin"),
            cfg.target.connect().await.expect("connect target"),
        )
    })
    .await
}

/// All rows of a query, through the driver's pager (lists with null elements, as `ttl()` of a
/// collection returns them, are read as the engine reads them).
#[allow(dead_code, reason = "only the tests that read rows back call it")]
pub async fn rows(session: &Session, cql: &str) -> Vec<Row> {
    use futures::TryStreamExt;
    session
        .query_iter(cql, &[])
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
        .rows_stream::<ScanRow>()
        .expect("rows")
        .map_ok(|r| r.0)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
}

/// Index of the range `(start, end]` of `split_ring(splits)` holding `token`.
#[allow(dead_code, reason = "only the tests that look at token ranges call it")]
pub fn range_of(token: i64, splits: u32) -> u32 {
    zdm_run::data::ranges::split_ring(splits)
        .iter()
        .find(|r| token > r.start && token <= r.end)
        .expect("every token is in a range")
        .index
}
