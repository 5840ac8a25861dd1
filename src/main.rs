//! The `zdm-run` binary: all logic lives in the library (`zdm_run::cli`).

fn main() -> std::process::ExitCode {
    zdm_run::cli::main()
}
