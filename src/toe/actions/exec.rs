//! ExecuteBash and ExecuteBinary. A script's commands are joined into one
//! file run by bash, with no implicit `set -e`: only its exit status counts.
//! Exit 194 asks for a reboot after which the same step runs again.
//! The output streams to the console as it comes; the step's `stdout`
//! output is the last [`STDOUT_TAIL`](crate::util::tail::STDOUT_TAIL)
//! bytes of it (AWSTOE documents no limit; kiln needs one).

use crate::target::{ExecRequest, Stream};
use crate::util::redact;

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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stdout = if out.stdout_total > out.stdout.len() as u64 {
        ctx.log(&format!(
            "{program} printed {} bytes; the step's `stdout` output keeps the last {} from a line start (all of it is above)",
            out.stdout_total,
            out.stdout.len()
        ));
        // the cut may have left the end of a secret at the start, where no
        // redaction can recognise it
        redact::cut_start(&stdout)
    } else {
        &stdout
    };
    match out.code {
        Some(0) => Ok(ActionOutcome {
            outputs: [("stdout".to_string(), trim_newline(stdout))].into(),
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

/// The longest stderr line a failure message quotes (its end is kept).
const MAX_QUOTED_LINE: usize = 300;

/// The last three non-empty lines of `stderr`, for a failure message; a
/// longer line keeps its last [`MAX_QUOTED_LINE`] characters. Secrets are
/// masked before lines are cut, so no secret is cut in two; when the kept
/// tail may have been cut (it is as long as kiln keeps), its partial first
/// line is left out, as it may start with the end of a secret.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let whole = stderr.len() + 3 < crate::util::tail::STDERR_TAIL;
    let text = redact::text(if whole {
        &text
    } else {
        redact::cut_start(&text)
    });
    let last: Vec<String> = text
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .map(|l| match l.char_indices().rev().nth(MAX_QUOTED_LINE - 1) {
            Some((i, _)) if i > 0 => format!("…{}", &l[i..]),
            _ => l.to_string(),
        })
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
