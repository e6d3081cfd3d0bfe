//! `kiln ami import|export|setup-role`: a local image to an AMI (VM Import),
//! an AMI back to a local disk (VM Export), and the `vmimport` role.
//! Credentials, region and endpoints come from the AWS configuration chain.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::{print_json, CliError, EXIT_SUCCESS};
use crate::ami::{names, AmiSpec, BootMode, DiskFormat, Sharing};
use crate::aws::export::{self, ExportRequest};
use crate::aws::flow::{self, Event, LocalSettings};
use crate::aws::poll::PollOptions;
use crate::aws::{role, AwsError, Clients};

/// `kiln ami` subcommands.
#[derive(Debug, Subcommand)]
pub enum AmiCommand {
    /// Upload a local image to S3 and import it as an AMI (VM Import), then name, tag, copy and share it.
    Import(Box<ImportArgs>),
    /// Export an AMI to S3 (VM Export), download it and check it with qemu-img.
    Export(ExportArgs),
    /// Create the `vmimport` service role and its policy for a bucket, or print them.
    SetupRole(SetupRoleArgs),
}

/// How often and how long to poll tasks.
#[derive(Debug, Args)]
pub struct PollArgs {
    /// Seconds between Describe calls while a task runs.
    #[arg(long, default_value_t = 10.0)]
    pub poll_interval: f64,
    /// Give up when this many polls in a row show no change at all (a stalled task).
    #[arg(long, default_value_t = 720)]
    pub stall_polls: u32,
}

impl PollArgs {
    fn options(&self) -> Result<PollOptions, CliError> {
        if !(self.poll_interval.is_finite() && self.poll_interval >= 0.0) {
            return Err(CliError::Invalid(
                "error: --poll-interval must be a number of seconds ≥ 0".into(),
            ));
        }
        Ok(PollOptions {
            interval: Duration::from_secs_f64(self.poll_interval),
            stall_polls: self.stall_polls,
        })
    }
}

/// Arguments of `kiln ami import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The image to import (qcow2, raw, vmdk, vhdx, vhd).
    pub image: PathBuf,
    /// S3 bucket for the upload (in the import region; the vmimport role must read it).
    #[arg(long)]
    pub bucket: String,
    /// Object key of the upload (default: kiln/NAME/<disk file>).
    #[arg(long)]
    pub key: Option<String>,
    /// The import region (default: the AWS configuration's region).
    #[arg(long)]
    pub region: Option<String>,
    /// The AMI name (3–128 characters; default: the image file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// The AMI description.
    #[arg(long, default_value = crate::ami::DEFAULT_DESCRIPTION)]
    pub description: String,
    /// Disk format uploaded: vmdk (streamOptimized), raw, or vhd (fixed).
    #[arg(long, default_value = "vmdk", value_parser = parse_disk_format)]
    pub format: DiskFormat,
    /// ImportSnapshot + RegisterImage instead of ImportImage (for kernels VM Import does not list; skips its OS checks).
    #[arg(long)]
    pub via_snapshot: bool,
    /// Architecture: x86_64 or i386.
    #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "i386"])]
    pub architecture: String,
    /// Boot mode: legacy-bios or uefi (uefi needs \EFI\BOOT\BOOTX64.EFI on the ESP).
    #[arg(long, default_value = "legacy-bios", value_parser = parse_boot_mode)]
    pub boot_mode: BootMode,
    /// Encrypt the snapshots with this KMS key (id, alias or ARN).
    #[arg(long)]
    pub kms_key: Option<String>,
    /// Encrypt the snapshots with the account's default EBS key.
    #[arg(long)]
    pub encrypted: bool,
    /// The VM Import service role.
    #[arg(long, default_value = role::DEFAULT_ROLE)]
    pub role_name: String,
    /// Copy the AMI to these regions: r1,r2=KMS_KEY_ARN,… (a key encrypts that region's copy).
    #[arg(long, default_value = "")]
    pub copy_to_regions: String,
    /// Grant launch permission to these 12-digit account ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub share_accounts: Vec<String>,
    /// Grant launch permission to these organization ARNs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub share_orgs: Vec<String>,
    /// Grant launch permission to these organizational unit ARNs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub share_ous: Vec<String>,
    /// Tags for the AMI, its snapshots and the import task: k=v,k2=v2.
    #[arg(long, default_value = "")]
    pub tags: String,
    /// Keep the uploaded object in S3 after the import.
    #[arg(long)]
    pub keep_upload: bool,
    /// Do not run the pre-flight checks of the image against VM Import's requirements.
    #[arg(long)]
    pub skip_preflight: bool,
    /// Folder for converted disks and upload resume state (default: the kiln cache's ami-uploads/).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Upload part size in MiB (5–5120; default: max(8, size/10000) rounded up).
    #[arg(long, value_parser = clap::value_parser!(u64).range(5..=5120))]
    pub part_size_mib: Option<u64>,
    /// Upload parts in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub upload_concurrency: u16,
    /// Polling.
    #[command(flatten)]
    pub poll: PollArgs,
    /// Print the result (every AMI id per region) as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `kiln ami export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The AMI id (ami-…).
    pub ami: String,
    /// S3 bucket VM Export writes to (must exist; not SSE-KMS).
    #[arg(long)]
    pub bucket: String,
    /// Key prefix of the exported object.
    #[arg(long, default_value = "kiln-exports/")]
    pub prefix: String,
    /// Format: vmdk (streamOptimized), vhd or raw.
    #[arg(long, value_parser = parse_disk_format)]
    pub format: DiskFormat,
    /// The local file to write (published atomically).
    #[arg(long)]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// The region of the AMI (default: the AWS configuration's region).
    #[arg(long)]
    pub region: Option<String>,
    /// The VM Export service role.
    #[arg(long, default_value = role::DEFAULT_ROLE)]
    pub role_name: String,
    /// Keep the exported object in S3 (by default it is deleted once the download is verified).
    #[arg(long)]
    pub keep_export: bool,
    /// Polling.
    #[command(flatten)]
    pub poll: PollArgs,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `kiln ami setup-role`.
#[derive(Debug, Args)]
pub struct SetupRoleArgs {
    /// The bucket the role may read (imports) and write (exports).
    #[arg(long)]
    pub bucket: String,
    /// The role name.
    #[arg(long, default_value = role::DEFAULT_ROLE)]
    pub role_name: String,
    /// Print the trust policy and the role policy instead of creating anything.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_disk_format(s: &str) -> Result<DiskFormat, String> {
    DiskFormat::parse(s).map_err(|e| e.to_string())
}

fn parse_boot_mode(s: &str) -> Result<BootMode, String> {
    match s {
        "legacy-bios" => Ok(BootMode::LegacyBios),
        "uefi" => Ok(BootMode::Uefi),
        _ => Err("use legacy-bios or uefi (uefi-preferred is not supported for import)".into()),
    }
}

fn fail(e: AwsError) -> CliError {
    if e.is_invalid_input() {
        CliError::Invalid(format!("error: {e}"))
    } else {
        CliError::Failed(anyhow::Error::new(e))
    }
}

/// Runs `kiln ami …`.
pub async fn run(cmd: AmiCommand) -> Result<u8, CliError> {
    match cmd {
        AmiCommand::Import(args) => import(*args).await,
        AmiCommand::Export(args) => export(args).await,
        AmiCommand::SetupRole(args) => setup_role(args).await,
    }
}

fn progress_printer(started: Instant) -> impl Fn(Event<'_>) + Sync {
    move |e| eprintln!("[{:>5}s] {}", started.elapsed().as_secs(), e.line())
}

async fn import(args: ImportArgs) -> Result<u8, CliError> {
    let poll = args.poll.options()?;
    let default_name = args
        .image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tags = names::parse_tags(&args.tags).map_err(|e| fail(e.into()))?;
    let regions = names::parse_region_copies(&args.copy_to_regions).map_err(|e| fail(e.into()))?;
    let work_dir = match args.work_dir {
        Some(d) => d,
        None => crate::build::cache::Cache::from_env()
            .map_err(|e| CliError::Invalid(format!("error: {e}\n  hint: or pass --work-dir")))?
            .root
            .join("ami-uploads"),
    };
    let spec = AmiSpec {
        bucket: args.bucket,
        key: args.key,
        region: args.region,
        name: args.name,
        description: args.description,
        format: args.format,
        via_snapshot: args.via_snapshot,
        architecture: args.architecture,
        boot_mode: args.boot_mode,
        kms_key: args.kms_key,
        encrypted: args.encrypted,
        role_name: args.role_name,
        regions,
        sharing: Sharing {
            accounts: args.share_accounts,
            orgs: args.share_orgs,
            ous: args.share_ous,
        },
        tags,
        keep_upload: args.keep_upload,
        skip_preflight: args.skip_preflight,
    };
    let req = flow::request(
        &spec,
        args.image,
        &default_name,
        work_dir,
        LocalSettings {
            part_size: args.part_size_mib.map(|m| m << 20),
            concurrency: usize::from(args.upload_concurrency),
            poll,
        },
    );
    let clients = Clients::new(spec.region.as_deref()).await;
    let done = flow::import(&clients, &req, &progress_printer(Instant::now()))
        .await
        .map_err(fail)?;
    if args.json {
        print_json(&done)?;
    } else {
        for i in &done.images {
            println!("{}\t{}", i.region, i.image_id);
        }
    }
    Ok(EXIT_SUCCESS)
}

async fn export(args: ExportArgs) -> Result<u8, CliError> {
    let poll = args.poll.options()?;
    if args.output.exists() && !args.force {
        return Err(CliError::Invalid(format!(
            "error: {} exists\n  hint: pass --force to replace it",
            args.output.display()
        )));
    }
    let clients = Clients::new(args.region.as_deref()).await;
    let bucket = args.bucket;
    let started = Instant::now();
    let printer = progress_printer(started);
    let done = export::export(
        &clients.ec2,
        &clients.s3,
        &ExportRequest {
            image_id: args.ami,
            bucket: bucket.clone(),
            prefix: args.prefix,
            format: args.format,
            role_name: args.role_name,
            keep_object: args.keep_export,
        },
        &args.output,
        poll,
        &|s| printer(Event::Task(s)),
    )
    .await
    .map_err(fail)?;
    let object = format!("s3://{}/{}", bucket, done.key);
    printer(Event::Step(&if done.object_deleted {
        format!("deleted {object} (--keep-export keeps it)")
    } else {
        format!("kept {object}")
    }));
    if args.json {
        print_json(&done)?;
    } else {
        println!("{}", done.path.display());
    }
    Ok(EXIT_SUCCESS)
}

async fn setup_role(args: SetupRoleArgs) -> Result<u8, CliError> {
    if args.dry_run {
        println!("# trust policy of role {}", args.role_name);
        println!("{:#}", role::trust_policy());
        println!(
            "# inline policy {} of role {}",
            role::POLICY_NAME,
            args.role_name
        );
        println!("{:#}", role::role_policy(&args.bucket));
        return Ok(EXIT_SUCCESS);
    }
    let clients = Clients::new(None).await;
    let done = role::setup(&clients.iam, &args.role_name, &args.bucket)
        .await
        .map_err(fail)?;
    println!(
        "{} role {} with policy {} for bucket {}",
        if done.created { "created" } else { "updated" },
        done.role,
        role::POLICY_NAME,
        args.bucket
    );
    Ok(EXIT_SUCCESS)
}
