//! ExecuteBash and ExecuteBinary. A script's commands are joined into one
//! file run by bash, with no implicit `set -e`: only its exit status counts.
//! Exit 194 asks for a reboot after which the same step runs again.

use crate::target::{ExecRequest, Stream};

use super::{fail, ActionContext, ActionError, ActionOutcome, Inputs, RebootRequest};

/// The exit code with which a step asks for a reboot and to be run again.
pub const REBOOT_EXIT_CODE: i32 = 194;

/// Runs ExecuteBash or ExecuteBinary.
pub async fn run(
    action: &str,
    inputs: &Inputs,
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    if action != "ExecuteBash" {
        let program = inputs.required("path")?;
        return run_process(program, &inputs.list("arguments"), ctx).await;
    }
    let script = inputs.list("commands").join("\n");
    let path = format!(
        "{}/script-{}.sh",
        ctx.scratch_dir,
        uuid::Uuid::new_v4().simple()
    );
    ctx.target
        .write(&path, format!("{script}\n").as_bytes(), Some(0o700))
        .await?;
    let result = run_process("bash", std::slice::from_ref(&path), ctx).await;
    // the script holds the step's resolved commands, secrets included (and
    // `kiln toe run` keeps its scratch folder in the log folder): it goes
    // as soon as it ran; a target that is gone (rebooting) keeps it
    let _ = ctx.target.remove_file(&path).await;
    result
}

/// Runs a process on the target and maps its exit status to a step result.
pub async fn run_process(
    program: &str,
    args: &[String],
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    let sink = |stream: Stream, chunk: &[u8]| {
        if !ctx.quiet {
            ctx.console.output(stream, chunk);
        }
    };
    let out = ctx
        .target
        .exec(ExecRequest {
            program,
            args,
            env: ctx.env,
            cwd: None,
            on_output: Some(&sink),
        })
        .await;
    // what the streams held back (a possible start of a secret) is shown
    // now that they ended, even when the process could not be run to the end
    ctx.console.end_output();
    let out = out?;
    match out.code {
        Some(0) => Ok(ActionOutcome {
            outputs: [(
                "stdout".to_string(),
                trim_newline(&String::from_utf8_lossy(&out.stdout)),
            )]
            .into(),
            reboot: None,
        }),
        Some(REBOOT_EXIT_CODE) => Ok(ActionOutcome {
            outputs: Default::default(),
            reboot: Some(RebootRequest::RerunStep),
        }),
        Some(code) => fail(format!(
            "{program} exited with status {code}{}",
            stderr_tail(&out.stderr)
        )),
        None => fail(format!(
            "{program} was killed by a signal{}",
            stderr_tail(&out.stderr)
        )),
    }
}

/// The last lines of a failed process's standard error, for its failure
/// message, with its secrets masked (the whole output is masked before it
/// is cut, so no secret is cut in two).
fn stderr_tail(stderr: &[u8]) -> String {
    let text = crate::util::redact::text(&String::from_utf8_lossy(stderr));
    let last: Vec<&str> = text
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    if last.is_empty() {
        String::new()
    } else {
        format!(
            ": {}",
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
    }
}

/// Removes one trailing newline (`\n` or `\r\n`), as AWSTOE does for `stdout`.
pub fn trim_newline(s: &str) -> String {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
        .to_string()
}
