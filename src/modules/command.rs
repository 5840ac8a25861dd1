//! `command` and `shell`: run something on the host.
//!
//! Their effect cannot be known in advance, so the query only checks `creates`/`removes`
//! (which *can* say "nothing to do") and otherwise answers "would run".

use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;

use super::spec::{Kind, ModuleSpec};
use super::{arg_str, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query};
use crate::transport::{shlex_quote, CommandSpec};

const ARGS: &[(&str, Kind)] = &[
    ("cmd", Kind::Scalar),
    ("argv", Kind::ScalarList),
    ("creates", Kind::Scalar),
    ("removes", Kind::Scalar),
    ("chdir", Kind::Scalar),
    ("stdin", Kind::Scalar),
    ("timeout", Kind::Int),
];

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "command",
    free_form: true,
    any_args: false,
    args: ARGS,
    one_of_required: &["cmd", "argv", "_raw"],
    required: &[],
};

pub static SHELL_SPEC: ModuleSpec = ModuleSpec {
    name: "shell",
    free_form: true,
    any_args: false,
    args: ARGS,
    one_of_required: &["cmd", "_raw"],
    required: &[],
};

pub struct Command {
    /// `shell` runs through /bin/sh; `command` splits the line into an argv itself.
    pub shell: bool,
}

/// Splits a command line into words the way a shell would for plain quoting (no expansion),
/// which is what `command` promises: no pipes, redirections or variables.
fn split_argv(line: &str) -> Result<Vec<String>, ModuleError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(ModuleError::Failed(format!(
            "unterminated quote in '{line}'"
        )));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

impl Command {
    fn spec(&self, ctx: &ModuleCtx<'_>) -> Result<(CommandSpec, String), ModuleError> {
        let line = arg_str(ctx.args, "cmd").or_else(|| arg_str(ctx.args, "_raw"));
        let argv: Vec<String> = match ctx.args.get("argv") {
            Some(Value::Array(a)) => a.iter().map(crate::vars::display).collect(),
            _ => vec![],
        };
        let timeout = super::arg_f64(ctx.args, "timeout")?.map(Duration::from_secs_f64);
        let mut spec = CommandSpec {
            stdin: arg_str(ctx.args, "stdin").map(|s| format!("{s}\n").into_bytes()),
            chdir: arg_str(ctx.args, "chdir"),
            timeout,
            ..Default::default()
        };
        let shown;
        if self.shell {
            let line = line.ok_or_else(|| ModuleError::Failed("shell needs a command".into()))?;
            shown = line.clone();
            spec.shell = Some(line);
        } else if !argv.is_empty() {
            shown = argv
                .iter()
                .map(|a| shlex_quote(a))
                .collect::<Vec<_>>()
                .join(" ");
            spec.argv = argv;
        } else {
            let line = line.ok_or_else(|| ModuleError::Failed("command needs a command".into()))?;
            spec.argv = split_argv(&line)?;
            shown = line;
        }
        Ok((spec, shown))
    }
}

impl Module for Command {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let (_, shown) = self.spec(ctx)?;
            if let Some(creates) = arg_str(ctx.args, "creates") {
                if ctx.transport.stat(&creates).await?.is_some() {
                    return Ok(Query::Done(ModResult::msg(format!(
                        "skipped, since {creates} exists"
                    ))));
                }
            }
            if let Some(removes) = arg_str(ctx.args, "removes") {
                if ctx.transport.stat(&removes).await?.is_none() {
                    return Ok(Query::Done(ModResult::msg(format!(
                        "skipped, since {removes} does not exist"
                    ))));
                }
            }
            Ok(Query::Run(Planned {
                summary: format!("run: {shown}"),
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, _plan: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let (spec, shown) = self.spec(ctx)?;
            let out = ctx.transport.run(spec).await?;
            let mut r = ModResult {
                changed: true,
                failed: out.rc != 0,
                ..Default::default()
            };
            let lines = |s: &str| Value::from(s.lines().map(str::to_string).collect::<Vec<_>>());
            let stdout = out.stdout.trim_end_matches('\n').to_string();
            let stderr = out.stderr.trim_end_matches('\n').to_string();
            if out.rc != 0 {
                r.msg = Some(failure_message(out.rc, &stderr, &stdout));
            }
            r.data.insert("cmd".into(), Value::String(shown));
            r.data.insert("rc".into(), Value::from(out.rc));
            r.data.insert("stdout_lines".into(), lines(&stdout));
            r.data.insert("stderr_lines".into(), lines(&stderr));
            r.data.insert("stdout".into(), Value::String(stdout));
            r.data.insert("stderr".into(), Value::String(stderr));
            Ok(r)
        }
        .boxed()
    }
}

/// Lines of each stream a failure message shows: enough for the error an operator needs
/// (the last lines are where programs print why they stopped), short enough to read.
const TAIL_LINES: usize = 10;

/// What a failed command says: its return code, then the tail of stderr and of stdout
/// (Ansible shows both whole in its result; the full text stays in the registered result).
pub fn failure_message(rc: i32, stderr: &str, stdout: &str) -> String {
    format!("non-zero return code {rc}{}", output_tail(stderr, stdout))
}

/// The last lines of stderr and stdout, each under its name on lines of their own (empty
/// when both are empty).
pub fn output_tail(stderr: &str, stdout: &str) -> String {
    let mut msg = String::new();
    for (name, text) in [("stderr", stderr), ("stdout", stdout)] {
        let all: Vec<&str> = text.lines().collect();
        if all.iter().all(|l| l.trim().is_empty()) {
            continue;
        }
        let tail = &all[all.len().saturating_sub(TAIL_LINES)..];
        let head = if tail.len() < all.len() {
            format!("{name} (last {} of {} lines)", tail.len(), all.len())
        } else {
            name.to_string()
        };
        msg.push_str(&format!("\n  {head}:"));
        for l in tail {
            msg.push_str(&format!("\n    {l}"));
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_a_shell_without_expansion() {
        assert_eq!(
            split_argv(r#"echo "a b" 'c d' e\ f $HOME"#).unwrap(),
            vec!["echo", "a b", "c d", "e f", "$HOME"]
        );
        assert!(split_argv("echo 'open").is_err());
    }

    #[test]
    fn a_failure_shows_the_return_code_and_the_tail_of_both_streams() {
        let long: String = (1..=25).map(|i| format!("line {i}\n")).collect();
        let m = failure_message(3, "boom", &long);
        assert!(
            m.starts_with("non-zero return code 3\n  stderr:\n    boom\n"),
            "{m}"
        );
        assert!(
            m.contains("stdout (last 10 of 25 lines):\n    line 16\n"),
            "{m}"
        );
        assert!(m.ends_with("    line 25"), "{m}");
        assert!(!m.contains("line 15\n"), "{m}");
        assert_eq!(failure_message(1, "", " \n"), "non-zero return code 1");
    }
}
