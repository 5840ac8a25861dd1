//! Pages through one token sub-range: retries with exponential backoff, a smaller page when the
//! server times out, is overloaded or fails the read (too many tombstones), and a per-cluster
//! rows/s limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use scylla::client::session::Session;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::Row;
use tokio::sync::Mutex;

use super::driver_errors::wants_smaller_page;
use super::ranges::TokenRange;
use super::schema::Table;
use super::value::ScanRow;

/// Smallest page the scanner shrinks to before giving up on a range.
const MIN_PAGE_SIZE: i32 = 10;

/// The `SELECT` that reads one sub-range: key columns, then for every other column its value and,
/// where Cassandra allows it, `writetime()` and `ttl()`.
pub fn select_cql(table: &Table, with_times: bool) -> String {
    let mut parts = Vec::new();
    for col in table.key_columns() {
        parts.push(col.quoted());
    }
    for col in table.value_columns() {
        parts.push(col.quoted());
        if with_times && col.has_writetime() {
            parts.push(format!("writetime({})", col.quoted()));
            parts.push(format!("ttl({})", col.quoted()));
        }
    }
    let token = table.token_expr();
    format!(
        "SELECT {} FROM {} WHERE {token} > ? AND {token} <= ?",
        parts.join(", "),
        table.qualified()
    )
}

/// The same columns as [`select_cql`], for one row: `WHERE` the first `key_columns` key columns.
pub fn select_by_key_cql(table: &Table, key_columns: usize) -> String {
    let range = select_cql(table, true);
    let head = range
        .split(" WHERE ")
        .next()
        .unwrap_or_default()
        .to_string();
    let cond: Vec<String> = table
        .key_columns()
        .take(key_columns)
        .map(|c| format!("{} = ?", c.quoted()))
        .collect();
    format!("{head} WHERE {} LIMIT 1", cond.join(" AND "))
}

/// Paces requests to at most `rate` rows per second. Shared by every task on one cluster.
///
/// Each acquisition reserves the time its rows take at the configured rate and sleeps until the
/// reservation starts; this spreads load evenly instead of bursting at the start of each second.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    next_free: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(rows_per_sec: u32) -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            rate: rows_per_sec.max(1) as f64,
            next_free: Mutex::new(Instant::now()),
        })
    }

    /// Waits until `rows` more rows may be processed.
    pub async fn acquire(&self, rows: usize) {
        if rows == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(rows as f64 / self.rate);
        let start = {
            let mut next = self.next_free.lock().await;
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + cost;
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

/// Retry and backoff settings for one range.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `n` (1-based retry count): backoff * 2^(n-1), capped at 10 s.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(6);
        (self.backoff * factor).min(Duration::from_secs(10))
    }
}

/// Reads one sub-range page by page.
pub struct RangeScanner<'a> {
    session: &'a Session,
    statement: PreparedStatement,
    range: TokenRange,
    paging: Option<PagingState>,
    page_size: i32,
    retry: RetryPolicy,
    limiter: Option<Arc<RateLimiter>>,
    /// Pages re-requested after an error, for the summary.
    pub retries: u64,
}

impl RangeScanner<'_> {
    /// The page size now asked for: smaller than configured once a page failed for its size.
    pub fn page_size(&self) -> i32 {
        self.page_size
    }
}

impl<'a> RangeScanner<'a> {
    pub fn new(
        session: &'a Session,
        statement: &PreparedStatement,
        range: TokenRange,
        page_size: i32,
        retry: RetryPolicy,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Self {
        RangeScanner {
            session,
            statement: statement.clone(),
            range,
            paging: Some(PagingState::start()),
            page_size: page_size.max(1),
            retry,
            limiter,
            retries: 0,
        }
    }

    /// The next page of rows, or `None` when the range is exhausted.
    pub async fn next_page(&mut self) -> anyhow::Result<Option<Vec<Row>>> {
        let Some(paging) = self.paging.clone() else {
            return Ok(None);
        };
        let mut attempt = 0;
        loop {
            self.statement.set_page_size(self.page_size);
            let result = self
                .session
                .execute_single_page(
                    &self.statement,
                    (self.range.start, self.range.end),
                    paging.clone(),
                )
                .await;
            match result {
                Ok((result, next)) => {
                    let rows_result = result
                        .into_rows_result()
                        .context("range scan did not return rows")?;
                    let mut rows = Vec::with_capacity(rows_result.rows_num());
                    for row in rows_result.rows::<ScanRow>()? {
                        rows.push(row?.0);
                    }
                    self.paging = match next {
                        PagingStateResponse::HasMorePages { state } => Some(state),
                        PagingStateResponse::NoMorePages => None,
                    };
                    if let Some(limiter) = &self.limiter {
                        limiter.acquire(rows.len()).await;
                    }
                    return Ok(Some(rows));
                }
                Err(err) => {
                    attempt += 1;
                    let message = err.to_string();
                    let smaller = wants_smaller_page(&err);
                    if attempt > self.retry.attempts {
                        return Err(anyhow::Error::new(err).context(format!(
                            "token range ({}, {}] failed after {} attempts",
                            self.range.start, self.range.end, attempt
                        )));
                    }
                    if smaller && self.page_size > MIN_PAGE_SIZE {
                        self.page_size = (self.page_size / 2).max(MIN_PAGE_SIZE);
                        tracing::warn!(
                            range = self.range.index,
                            page_size = self.page_size,
                            "page failed ({message}); retrying with a smaller page"
                        );
                    } else {
                        tracing::warn!(
                            range = self.range.index,
                            "page failed ({message}); retrying"
                        );
                    }
                    self.retries += 1;
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            attempts: 10,
            backoff: Duration::from_millis(100),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(400));
        assert_eq!(p.delay(20), Duration::from_millis(6400));
        let slow = RetryPolicy {
            attempts: 10,
            backoff: Duration::from_secs(1),
        };
        assert_eq!(slow.delay(20), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn rate_limiter_paces_rows() {
        let l = RateLimiter::new(1000);
        let start = Instant::now();
        for _ in 0..4 {
            l.acquire(100).await;
        }
        // 400 rows at 1000 rows/s: the 4th reservation starts after 300 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{:?}",
            start.elapsed()
        );
    }
}
