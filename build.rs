// The commit and build date for `--version` (see build-support/version.rs).
include!("build-support/version.rs");
