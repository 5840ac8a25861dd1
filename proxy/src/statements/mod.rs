//! What a client's statement says and what the proxy does with it: the CQL tokenizer, where a
//! statement goes (routing), prepared-id mapping, the rewrites of a write (target's prepared
//! ids, functions evaluated once, target's consistency level), the per-table write metrics
//! that read the statement, and the system.local/system.peers answers the proxy makes itself.

pub mod consistency;
pub mod cql_functions;
pub mod cql_lex;
pub mod prepared;
pub mod prepared_now;
pub mod routing;
pub mod topology;
pub mod topology_where;
pub mod unsafe_writes;
pub mod write_metrics;
pub mod write_rewrite;
