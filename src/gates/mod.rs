//! The checks that stand between one migration phase and the next.
//!
//! Each gate measures something real (the clusters' schemas, the proxies' health and metrics,
//! the data itself) and compares it with a threshold; the playbook modules that wrap them print
//! both, so an operator sees why a transition was allowed or refused.

pub mod prometheus;
