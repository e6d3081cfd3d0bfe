//! `kiln export SOURCE --format F --output PATH`: one image in one format,
//! checked, then published atomically.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, EXIT_SUCCESS};
use crate::disk::img::Format;
use crate::export::format::{self, ExportFormat};
use crate::export::ovf::{Firmware, GuestOs, NicModel, OvfError, Profile, VmSettings};
use crate::export::write::{self, ExportError, ExportJob};
use crate::util::atomic as publish;
use crate::util::cancel::Cancel;
use crate::util::digest;

/// Arguments of `kiln export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image: a disk file (qcow2, raw, vmdk, vhdx, vhd) or a folder kiln published (OUTPUT/<name>/<version>/, whose image.qcow2 is exported).
    pub source: PathBuf,
    /// The source's format (raw, qcow2, vmdk, vhdx, vhd), when it must be that one; `raw` also takes a source that looks like text as a raw disk. Default: by its first bytes.
    #[arg(long, value_parser = parse_source_format)]
    pub source_format: Option<Format>,
    /// The format: vmdk (streamOptimized, for AWS, vSphere, VirtualBox), vmdk-sparse (monolithicSparse, Workstation), vhdx (Hyper-V), vhd (fixed, whole MiB: Azure), raw, qcow2 (zstd-compressed, QEMU 5.1+), qcow2-zlib (for older qcow2 readers), gce (disk.raw in a .tar.gz), ovf (descriptor + disk + .mf), ova.
    #[arg(short, long, value_parser = parse_format)]
    pub format: ExportFormat,
    /// The file to write; for ovf the .ovf, with NAME-disk1.vmdk and NAME.mf beside it.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace output files that exist.
    #[arg(long)]
    pub force: bool,
    /// Compression threads of kiln's own writers (vmdk, ovf, ova, gce); default: every core.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Print the result as JSON (the files with their sha256 and the checks).
    #[arg(long)]
    pub json: bool,
    /// ovf/ova: the hypervisor family the descriptor is for: vsphere, workstation, virtualbox.
    #[arg(long, default_value = "vsphere", value_parser = parse_named::<Profile>)]
    pub profile: Profile,
    /// ovf/ova: the virtual machine's name (default: the output's base name); no control characters.
    #[arg(long, value_parser = parse_name)]
    pub name: Option<String>,
    /// ovf/ova: virtual CPUs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=768))]
    pub cpus: u32,
    /// ovf/ova: memory in MiB.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(4..=24_000_000))]
    pub memory: u64,
    /// ovf/ova: VMware virtual hardware version (default 13: vSphere/ESXi 6.5 and later, Workstation 14+).
    #[arg(long, value_parser = clap::value_parser!(u32).range(4..=30))]
    pub hw_version: Option<u32>,
    /// ovf/ova: firmware: bios or efi.
    #[arg(long, default_value = "bios", value_parser = parse_named::<Firmware>)]
    pub firmware: Firmware,
    /// ovf/ova: guest OS: debian, ubuntu, rhel, linux.
    #[arg(long, default_value = "debian", value_parser = parse_named::<GuestOs>)]
    pub os: GuestOs,
    /// ovf/ova: NIC model: vmxnet3 or e1000 (default: vmxnet3 for vsphere, e1000 otherwise).
    #[arg(long, value_parser = parse_named::<NicModel>)]
    pub nic: Option<NicModel>,
}

/// Parses a profile, firmware, guest OS or NIC name for clap.
fn parse_named<T: std::str::FromStr<Err = OvfError>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: OvfError| e.to_string())
}

/// Parses a source image format name for clap.
fn parse_source_format(s: &str) -> Result<Format, String> {
    s.parse()
        .map_err(|e: crate::disk::img::ImgError| e.to_string())
}

/// Checks a machine name for clap.
fn parse_name(s: &str) -> Result<String, String> {
    crate::export::ovf::check_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// Parses a format name for clap, with the known names in the error.
pub(crate) fn parse_format(s: &str) -> Result<ExportFormat, String> {
    s.parse().map_err(|e: format::UnknownFormat| e.to_string())
}

/// A published output file.
#[derive(Debug, serde::Serialize)]
struct Published {
    path: PathBuf,
    size: u64,
    sha256: String,
}

/// Runs `kiln export`.
pub async fn run(args: ExportArgs) -> Result<u8, CliError> {
    let source = source_image(&args.source)?;
    let (dir, main_name) = split_output(&args.output)?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-export-")
        .tempdir_in(dir)
        .map_err(|e| {
            CliError::Invalid(format!(
                "error: cannot write in {}: {e}\n  hint: give --output in a folder you can write to",
                dir.display()
            ))
        })?;
    let job = ExportJob {
        source: &source,
        format: args.format,
        dir: staging.path(),
        file_name: &main_name,
        threads: args.threads.map(usize::from),
        machine: VmSettings {
            name: args.name.clone(),
            cpus: args.cpus,
            memory_mib: args.memory,
            profile: args.profile,
            hw_version: args.hw_version,
            firmware: args.firmware,
            os: args.os,
            nic: args.nic,
        },
        source_format: args.source_format,
    };
    let planned = write::planned_files(&job);
    if !args.force {
        if let Some(existing) = planned.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
            return Err(CliError::Invalid(format!(
                "error: {} exists\n  hint: pass --force to replace it",
                existing.display()
            )));
        }
    }
    // the cancel flag is set when this future is dropped (Ctrl-C,
    // SIGTERM): the writer threads stop and the staging folder goes
    let cancel = Cancel::new();
    let _stop = cancel.on_drop();
    let quiet = args.json;
    let progress = move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let exported = write::export(&job, &cancel, &progress)
        .await
        .map_err(export_error)?;
    let mut published = Vec::new();
    for file in &exported.files {
        let from = staging.path().join(file);
        let to = dir.join(file);
        let sha256 = digest::sha256_file(&from)
            .await
            .map_err(|e| CliError::Failed(anyhow::Error::new(e)))?;
        let size = std::fs::metadata(&from)
            .map_err(|e| CliError::Failed(anyhow::Error::new(e)))?
            .len();
        std::fs::rename(&from, &to).map_err(|e| {
            CliError::Failed(
                anyhow::Error::new(e).context(format!("renaming into {}", to.display())),
            )
        })?;
        published.push(Published {
            path: to,
            size,
            sha256,
        });
    }
    publish::sync_dir(dir).map_err(|e| CliError::Failed(e.into()))?;
    if args.json {
        let out = serde_json::json!({ "files": published, "check": exported.report });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(anyhow::Error::from)?
        );
    } else {
        for p in &published {
            println!("{}  {} ({} bytes)", p.sha256, p.path.display(), p.size);
        }
        for line in &exported.report.checked {
            eprintln!("  checked: {line}");
        }
    }
    Ok(EXIT_SUCCESS)
}

fn export_error(e: ExportError) -> CliError {
    if e.is_invalid_input() {
        CliError::Invalid(format!(
            "error: {e}\n  hint: give a qcow2, raw, vmdk, vhdx or vhd image that `qemu-img check` finds whole"
        ))
    } else if matches!(e, ExportError::Cancelled(_)) {
        CliError::Interrupted("a signal")
    } else {
        CliError::Failed(anyhow::Error::new(e))
    }
}

/// The disk to export: the file itself, or `image.qcow2` of a published build folder.
fn source_image(source: &Path) -> Result<PathBuf, CliError> {
    if source.is_dir() {
        let image = source.join("image.qcow2");
        if source.join("manifest.json").is_file() && image.is_file() {
            return Ok(image);
        }
        return Err(CliError::Invalid(format!(
            "error: {} is a folder without a kiln build in it (manifest.json and image.qcow2)\n  hint: give a disk image file, or OUTPUT/<name>/<version>/ of `kiln build`",
            source.display()
        )));
    }
    Ok(source.to_path_buf())
}

/// The output's folder and file name; the folder must exist.
fn split_output(output: &Path) -> Result<(&Path, String), CliError> {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            CliError::Invalid(format!(
                "error: --output {} has no file name\n  hint: give a file path, e.g. --output web.vmdk",
                output.display()
            ))
        })?;
    let dir = publish::parent_dir(output);
    if !dir.is_dir() {
        return Err(CliError::Invalid(format!(
            "error: the folder {} does not exist\n  hint: create it first",
            dir.display()
        )));
    }
    Ok((dir, name))
}
