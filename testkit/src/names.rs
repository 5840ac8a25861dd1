//! Names no other test run uses, so tests sharing the sandbox never meet each other's
//! keyspaces, files or directories.

/// `<prefix>_<8 random hex digits>`: short enough for a keyspace name (48 characters at most)
/// with a prefix that says which test made it.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}
