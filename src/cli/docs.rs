//! `zdm-run completions SHELL` and `zdm-run man`: generated from the clap definition at run
//! time, so they cannot drift from the flags the binary really takes.

use std::io::Write;

use clap::CommandFactory;

#[derive(clap::Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints the completion script; returns the exit code.
pub fn completions(args: &CompletionsArgs) -> u8 {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "zdm-run", &mut out);
    u8::from(out.flush().is_err())
}

/// Prints the man page in roff; returns the exit code.
pub fn man() -> u8 {
    let page = clap_mangen::Man::new(super::Cli::command());
    let mut buf = Vec::new();
    if let Err(e) = page.render(&mut buf) {
        eprintln!("ERROR: cannot render the man page: {e}");
        return 1;
    }
    u8::from(std::io::stdout().lock().write_all(&buf).is_err())
}
