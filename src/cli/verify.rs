//! `kiln verify PATH…`: checks disk images, OVF packages, OVAs and GCE
//! tarballs the way kiln checks its own outputs right after writing them.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, EXIT_FAILED, EXIT_SUCCESS};
use crate::disk::img::ImgError;
use crate::export::verify;

/// Arguments of `kiln verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Files to check: disk images (qcow2, raw, vmdk, vhdx, vhd), .ovf descriptors (with their files beside them), .ova, GCE .tar.gz.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print the reports as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// Runs `kiln verify`: exit 0 when every file is good, 1 when a check found
/// problems, 2 when a file cannot be read at all.
pub async fn run(args: VerifyArgs) -> Result<u8, CliError> {
    let mut reports = Vec::new();
    for path in &args.paths {
        if !path.is_file() {
            return Err(CliError::Invalid(format!(
                "error: {}: {}\n  hint: give the path of an image, .ovf, .ova or .tar.gz file",
                path.display(),
                if path.exists() {
                    "not a regular file"
                } else {
                    "no such file"
                }
            )));
        }
        let report = verify::verify_path(path).await.map_err(|e| {
            CliError::Invalid(match e {
                verify::VerifyError::Img(e @ ImgError::Refused { .. }) => format!(
                    "error: {e}\n  hint: kiln opens no other file an image names; verify the image it was flattened into"
                ),
                e => format!("error: {}: {e}", path.display()),
            })
        })?;
        reports.push(report);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).map_err(anyhow::Error::from)?
        );
    } else {
        for r in &reports {
            let verdict = if r.is_ok() { "ok" } else { "FAILED" };
            println!("{}: {} ({verdict})", r.path.display(), r.kind);
            for c in &r.checked {
                println!("  ok: {c}");
            }
            for p in &r.problems {
                println!("  problem: {p}");
            }
        }
    }
    Ok(if reports.iter().all(|r| r.is_ok()) {
        EXIT_SUCCESS
    } else {
        EXIT_FAILED
    })
}
