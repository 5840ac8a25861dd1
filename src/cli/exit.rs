//! ansible-core's exit codes as it actually returns them (2.19's `ExitCode`), which differ
//! from its manual in two places: an unreachable host gives 4 (the manual says 3; 4 is
//! also the parse error, a clash ansible-core itself notes), and a command line the
//! option parser rejects gives 2 (argparse's usage error), not 5.

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const HOST_FAILED: u8 = 2;
pub const HOST_UNREACHABLE: u8 = 4;
pub const PARSE_ERROR: u8 = 4;
/// A value zdm-run's own checks refuse (`-e novalue`); ansible's INVALID_CLI_OPTION.
pub const BAD_OPTIONS: u8 = 5;
/// The option parser's usage error (unknown flag, bad number), as argparse exits.
pub const USAGE: u8 = 2;
pub const INTERRUPTED: u8 = 99;
