//! Times kiln's native writers on one disk image, for scripts/bench-vmdk.sh:
//! `bench_vmdk SOURCE DEST [--threads N] [--level L] [--gce]`. Prints one
//! line: `seconds=… bytes=… grains_written=… grains_skipped=…`.

use std::path::PathBuf;
use std::time::Instant;

use kiln::export::{gce, vmdk};
use kiln::util::cancel::Cancel;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_vmdk SOURCE DEST [--threads N] [--level L] [--gce]";
    let source = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let dest = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let mut options = vmdk::VmdkOptions::default();
    let mut as_gce = false;
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!(usage));
        match a.as_str() {
            "--threads" => options.threads = Some(value()?.parse()?),
            "--level" => options.level = value()?.parse()?,
            "--gce" => as_gce = true,
            _ => anyhow::bail!(usage),
        }
    }
    let cancel = Cancel::new();
    let start = Instant::now();
    if as_gce {
        let s = gce::write(&source, &dest, options.threads, &cancel, None).await?;
        println!(
            "seconds={:.2} bytes={} raw_bytes={}",
            start.elapsed().as_secs_f64(),
            s.file_bytes,
            s.raw_bytes
        );
    } else {
        let s = vmdk::write_with(&source, &dest, options, &cancel, None).await?;
        println!(
            "seconds={:.2} bytes={} grains_written={} grains_skipped={}",
            start.elapsed().as_secs_f64(),
            s.file_bytes,
            s.grains_written,
            s.grains_skipped
        );
    }
    Ok(())
}
