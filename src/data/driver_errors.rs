//! What a failed request to a cluster means for the data engine, read from the scylla driver's
//! error types (never from their text: the wording of a message changes between driver and
//! server versions, the protocol's error codes do not).
//!
//! Two questions are asked:
//! - did a page fail because of its size (so the same range is worth reading with a smaller
//!   page)? See [`wants_smaller_page`];
//! - did the server refuse a batch as a whole (so its writes are worth sending one by one)?
//!   See [`batch_refused_as_a_whole`].

use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

/// The server's error code from the last attempt of a request, if the server answered with one.
fn db_error(err: &ExecutionError) -> Option<&DbError> {
    match err {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => Some(db),
        _ => None,
    }
}

/// Whether a page request failed in a way a smaller page is likely to avoid: the server (or the
/// driver's client timeout) gave up on the time it took, the coordinator was overloaded, or a
/// replica failed the read. The last one is how Cassandra refuses a page that crosses more than
/// `tombstone_failure_threshold` tombstones (`READ_FAILURE`, reason READ_TOO_MANY_TOMBSTONES):
/// the limit is per request, so a smaller page reads fewer of them. Any other failure (a
/// refused login, a syntax error, a node down) is retried at the same size.
pub fn wants_smaller_page(err: &ExecutionError) -> bool {
    if matches!(err, ExecutionError::RequestTimeout(_)) {
        return true;
    }
    matches!(
        db_error(err),
        Some(
            DbError::ReadTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::Overloaded
                | DbError::RateLimitReached { .. }
        )
    )
}

/// Whether the server refused a batch as a whole (`INVALID`): Cassandra answers so when the
/// batch is larger than `batch_size_fail_threshold` ("Batch too large"). Each statement of the
/// batch is a prepared write that is valid on its own, so the writes are sent one by one; one
/// that really is invalid then fails on its own, named, after its retries; nothing is lost.
pub fn batch_refused_as_a_whole(err: &ExecutionError) -> bool {
    matches!(db_error(err), Some(DbError::Invalid))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scylla::errors::{BadQuery, DbError, ExecutionError, RequestAttemptError, WriteType};
    use scylla::statement::Consistency;

    use super::*;

    /// The error the session returns when the server answered the last attempt with `db`.
    fn from_server(db: DbError, message: &str) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, message.into()))
    }

    #[test]
    fn a_page_is_shrunk_for_timeouts_overload_and_failed_reads() {
        let shrink = [
            ExecutionError::RequestTimeout(Duration::from_secs(12)),
            from_server(
                DbError::ReadTimeout {
                    consistency: Consistency::LocalQuorum,
                    received: 0,
                    required: 1,
                    data_present: false,
                },
                "Operation timed out",
            ),
            // What Cassandra sends for READ_TOO_MANY_TOMBSTONES; the message is irrelevant.
            from_server(
                DbError::ReadFailure {
                    consistency: Consistency::One,
                    received: 0,
                    required: 1,
                    numfailures: 1,
                    data_present: false,
                },
                "",
            ),
            from_server(DbError::Overloaded, ""),
        ];
        for err in &shrink {
            assert!(wants_smaller_page(err), "{err:?}");
        }
    }

    #[test]
    fn other_failures_keep_the_page_size_whatever_their_message_says() {
        let keep = [
            // A message naming timeouts or sizes does not make an error a size problem.
            from_server(DbError::Unauthorized, "timed out: page too large"),
            from_server(DbError::Invalid, "tombstone"),
            from_server(
                DbError::Unavailable {
                    consistency: Consistency::One,
                    required: 1,
                    alive: 0,
                },
                "",
            ),
            from_server(
                DbError::WriteTimeout {
                    consistency: Consistency::One,
                    received: 0,
                    required: 1,
                    write_type: WriteType::Simple,
                },
                "",
            ),
            ExecutionError::BadQuery(BadQuery::PartitionKeyExtraction),
            ExecutionError::EmptyPlan,
        ];
        for err in &keep {
            assert!(!wants_smaller_page(err), "{err:?}");
        }
    }

    #[test]
    fn only_an_invalid_answer_refuses_a_batch_as_a_whole() {
        assert!(batch_refused_as_a_whole(&from_server(
            DbError::Invalid,
            "Batch too large"
        )));
        assert!(!batch_refused_as_a_whole(&from_server(
            DbError::Overloaded,
            "Batch too large"
        )));
        assert!(!batch_refused_as_a_whole(&ExecutionError::RequestTimeout(
            Duration::from_secs(1)
        )));
    }
}
