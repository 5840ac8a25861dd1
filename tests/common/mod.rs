//! `tests/runner.rs`'s names for the local fleet, kept until that file is split by topic; new
//! tests use `zdm_testkit::local_fleet` directly.

pub use zdm_testkit::local_fleet::{LocalFleet as Fleet, DB_PASSWORD, HOSTS};
pub use zdm_testkit::run::{statuses, Run};
