//! Pre-flight checks of an image against VM Import's requirements, before
//! any upload: partition table, root filesystem, bootloader (GRUB 2; BLS
//! warned), kernel against the supported list, fstab by UUID, storage and
//! network drivers, DHCP, cloud-init, boot mode against the ESP and the
//! fallback `\EFI\BOOT\BOOTX64.EFI`, and size limits.
//!
//! Reading needs no root: the image is converted to a sparse raw file in a
//! temporary folder (unless it is raw already), partitions are parsed
//! natively (MBR and GPT), ext2/3/4 files are read with `debugfs` at the
//! partition's offset (`disk.raw?offset=N`), the ESP with mtools' `mdir`.
//! The checks themselves are pure functions of [`DiskFacts`].
//!
//! Drivers: for each kernel, its initramfs (`/boot/initrd.img-V`,
//! `/boot/initramfs-V.img` or `/boot/initrd-V`) is streamed out of the
//! filesystem with `debugfs cat` and its member names listed
//! ([`super::initramfs`]); a driver is present when the initramfs carries
//! its module or `modules.builtin` lists it. When the initramfs cannot be
//! read (xz, lz4… compression) or is missing, the kernel's `modules.dep`
//! is checked instead, and a warning says so.

use std::path::{Path, PathBuf};

use std::collections::BTreeSet;

use super::initramfs::{self, Compression};
use super::AwsError;
use crate::ami::BootMode;
use crate::disk::img::{self, ConvertOptions, Format};
use crate::util::task::{read_tail, Task, TaskError, STDERR_TAIL};

const SECTOR: u64 = 512;
const TIB: u64 = 1 << 40;
const ESP_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const BIOS_BOOT_GUID: &str = "21686148-6449-6e6f-744e-656564454649";

/// A partition found in the partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// MBR type (`0x83`) as `mbr:83`, or the GPT type GUID (lower case).
    pub kind: String,
}

impl Partition {
    /// Whether this is an EFI system partition.
    pub fn is_esp(&self) -> bool {
        self.kind == "mbr:ef" || self.kind == ESP_GUID
    }
}

/// The partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Table {
    /// No valid MBR signature.
    None,
    /// MBR (primary partitions only).
    Mbr(Vec<Partition>),
    /// GPT.
    Gpt(Vec<Partition>),
}

fn le32(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4])) as u64
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// A GPT type GUID in its text form (mixed-endian, lower case).
fn guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    )
}

/// Parses the MBR in `head` (at least 512 bytes) and, when it is a
/// protective MBR, the GPT header and entries that follow in `head`
/// (`head` should hold the first 1 MiB or so).
pub fn parse_table(head: &[u8]) -> Table {
    if head.len() < 512 || head[510] != 0x55 || head[511] != 0xAA {
        return Table::None;
    }
    let mut parts = Vec::new();
    let mut protective = false;
    for i in 0..4 {
        let e = &head[446 + i * 16..462 + i * 16];
        let kind = e[4];
        let start = le32(e, 8);
        let count = le32(e, 12);
        if kind == 0xEE {
            protective = true;
        }
        if kind != 0 && count > 0 {
            parts.push(Partition {
                offset: start * SECTOR,
                size: count * SECTOR,
                kind: format!("mbr:{kind:02x}"),
            });
        }
    }
    if !protective {
        return Table::Mbr(parts);
    }
    let h = &head[512.min(head.len())..];
    if h.len() < 92 || &h[0..8] != b"EFI PART" {
        return Table::Gpt(Vec::new());
    }
    let count = le32(h, 80) as usize;
    let esize = le32(h, 84) as usize;
    // the header's numbers are the image's: checked, never trusted
    let Some(base) = le64(h, 72)
        .checked_mul(SECTOR)
        .and_then(|b| usize::try_from(b).ok())
    else {
        return Table::Gpt(Vec::new());
    };
    let mut out = Vec::new();
    for i in 0..count.min(256) {
        let Some(e) = i
            .checked_mul(esize)
            .and_then(|o| o.checked_add(base))
            .and_then(|at| head.get(at..at.checked_add(128)?))
        else {
            break;
        };
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let first = le64(e, 32);
        let last = le64(e, 40);
        out.push(Partition {
            offset: first.saturating_mul(SECTOR),
            size: last
                .saturating_add(1)
                .saturating_sub(first)
                .saturating_mul(SECTOR),
            kind: guid(&e[..16]),
        });
    }
    Table::Gpt(out)
}

/// What pre-flight learned about the disk (gathered by [`gather`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskFacts {
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// The partition table.
    pub table: Option<Table>,
    /// Whether an ext2/3/4 root filesystem (with /etc/fstab) was found.
    pub root_found: bool,
    /// /etc/fstab.
    pub fstab: Option<String>,
    /// /etc/os-release.
    pub os_release: Option<String>,
    /// File names in /boot.
    pub boot_files: Vec<String>,
    /// Whether /boot/grub/grub.cfg or /boot/grub2/grub.cfg exists.
    pub grub2: bool,
    /// Whether /boot/loader/entries holds BLS entries.
    pub bls: bool,
    /// What was read for each kernel in /boot.
    pub kernels: Vec<KernelFacts>,
    /// Network configuration texts (ifupdown, networkd, netplan, NetworkManager, ifcfg).
    pub network: Vec<String>,
    /// Whether cloud-init is installed.
    pub cloud_init: bool,
    /// Whether an ESP holds \EFI\BOOT\BOOTX64.EFI (`None`: no ESP).
    pub esp_fallback: Option<bool>,
}

/// What pre-flight read for one kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// The version (`vmlinuz-VERSION`).
    pub version: String,
    /// `/lib/modules/VERSION/modules.dep` (empty when missing).
    pub modules_dep: String,
    /// `/lib/modules/VERSION/modules.builtin` (empty when missing).
    pub modules_builtin: String,
    /// Its initramfs.
    pub initrd: Initrd,
}

/// The initramfs of a kernel, as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Initrd {
    /// No initramfs file in /boot for the kernel.
    #[default]
    Missing,
    /// Listed.
    Read {
        /// Its file name in /boot.
        file: String,
        /// How each segment is stored (e.g. `[None, Zstd]`: microcode, then main).
        segments: Vec<Compression>,
        /// The kernel modules it carries ([`initramfs::module_name`] form).
        modules: BTreeSet<String>,
    },
    /// Compressed with something kiln does not decompress.
    Unsupported {
        /// Its file name in /boot.
        file: String,
        /// The compression.
        compression: Compression,
    },
    /// Damaged (truncated, bad magic, bad compressed data).
    Damaged {
        /// Its file name in /boot.
        file: String,
        /// What is wrong, with the position.
        reason: String,
    },
    /// `debugfs` could not read the file out of the filesystem.
    Unreadable {
        /// Its file name in /boot.
        file: String,
        /// debugfs's message.
        reason: String,
    },
}

/// Severity of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// VM Import would fail: stops the import (unless --skip-preflight).
    Error,
    /// May fail or boot badly.
    Warning,
}

/// One problem, with how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The check, e.g. `fstab`.
    pub check: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

fn finding(check: &'static str, severity: Severity, message: String, fix: &str) -> Finding {
    Finding {
        check,
        severity,
        message,
        fix: fix.into(),
    }
}

/// `KEY=value` of os-release (quotes removed).
fn os_field(os: &str, key: &str) -> Option<String> {
    os.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Kernel versions VM Import lists for an OS (`ID`, major `VERSION_ID`) as
/// version prefixes; `None` when the OS is not in kiln's table.
pub fn supported_kernels(id: &str, version: &str) -> Option<&'static [&'static str]> {
    let major = version.split('.').next().unwrap_or("");
    Some(match (id, major) {
        ("debian", "12") => &["6.1."],
        ("debian", "11") => &["5.10."],
        ("debian", "10") => &["4.19."],
        ("amzn", "2023") => &["6.1."],
        ("amzn", "2") => &["4.14.", "4.19.", "5.4.", "5.10."],
        ("ubuntu", _) | ("rhel", _) | ("centos", _) | ("rocky", _) | ("ol", _) | ("fedora", _) => {
            &[""]
        }
        _ => return None,
    })
}

/// The kernel versions of `vmlinuz-VERSION` files.
pub fn kernels(boot_files: &[String]) -> Vec<String> {
    let mut v: Vec<String> = boot_files
        .iter()
        .filter_map(|f| f.strip_prefix("vmlinuz-").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// fstab lines that name a device by kernel name (`/dev/sda1`, `/dev/vda1`,
/// `/dev/nvme0n1p1`, `/dev/xvda1`): those change on EC2.
pub fn fstab_by_device(fstab: &str) -> Vec<String> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            let dev = l.split_whitespace().next().unwrap_or("");
            ["/dev/sd", "/dev/vd", "/dev/hd", "/dev/xvd", "/dev/nvme"]
                .iter()
                .any(|p| dev.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

/// Whether any network configuration asks for DHCP.
pub fn has_dhcp(network: &[String]) -> bool {
    network.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("inet dhcp")
            || t.contains("dhcp=yes")
            || t.contains("dhcp=ipv4")
            || t.contains("dhcp4: true")
            || t.contains("dhcp4: yes")
            || t.contains("bootproto=dhcp")
            || t.contains("method=auto")
    })
}

/// Drivers an EC2 instance needs the kernel to have (module file stems).
pub const DRIVERS: [(&str, &str); 4] = [
    ("nvme", "NVMe EBS volumes on Nitro instances"),
    ("ena", "the ENA network adapter on Nitro instances"),
    ("xen-blkfront", "disks on Xen instances"),
    ("virtio_blk", "virtio disks"),
];

/// Whether modules.dep/modules.builtin text names `driver` (`-` and `_`
/// are the same in module names).
pub fn has_driver(modules: &str, driver: &str) -> bool {
    let want = driver.replace('-', "_");
    modules.lines().any(|l| {
        let path = l.split(':').next().unwrap_or("").trim();
        initramfs::module_name(path).is_some_and(|m| m == want)
    })
}

/// The file names an initramfs of kernel `version` has in /boot:
/// initramfs-tools (Debian, Ubuntu), dracut (RHEL-likes, Fedora, Amazon
/// Linux), and SUSE's.
pub fn initrd_names(version: &str) -> [String; 3] {
    [
        format!("initrd.img-{version}"),
        format!("initramfs-{version}.img"),
        format!("initrd-{version}"),
    ]
}

/// How to put `driver` into the initramfs `file` of kernel `version`
/// (initramfs-tools for `initrd.img-*`, dracut otherwise).
fn add_driver_fix(file: &str, driver: &str, version: &str) -> String {
    if file.starts_with("initrd.img-") {
        format!("add `{driver}` to /etc/initramfs-tools/modules and run `update-initramfs -u -k {version}`")
    } else {
        format!("add `add_drivers+=\" {driver} \"` to /etc/dracut.conf.d/ec2.conf and run `dracut -f --kver {version}`")
    }
}

/// How to write the initramfs of kernel `version` again.
fn rebuild_fix(version: &str) -> String {
    format!("rebuild it: `update-initramfs -c -k {version}` (Debian, Ubuntu) or `dracut -f --kver {version}` (RHEL-likes, Amazon Linux)")
}

/// The driver findings of one kernel: each of [`DRIVERS`] must be built
/// in or carried by the initramfs; when the initramfs cannot be listed,
/// `modules.dep` stands in (and a finding says so).
pub fn driver_findings(k: &KernelFacts) -> Vec<Finding> {
    use Severity::{Error, Warning};
    let v = &k.version;
    let mut out = Vec::new();
    let listed = match &k.initrd {
        Initrd::Read { file, modules, .. } => Some((file.as_str(), modules)),
        Initrd::Missing => {
            let [deb, rhel, _] = initrd_names(v);
            out.push(finding("initramfs", Warning, format!("kernel {v} has no initramfs (/boot/{deb} or /boot/{rhel}); checked modules.dep instead"), &rebuild_fix(v)));
            None
        }
        Initrd::Unsupported { file, compression } => {
            out.push(finding("initramfs", Warning, format!("cannot read compression {compression} of /boot/{file} (kiln reads gzip and zstd); checked modules.dep instead"), &format!("recompress it with zstd or gzip (COMPRESS=zstd in /etc/initramfs-tools/initramfs.conf, or compress=\"zstd\" for dracut), or check by hand that it carries {}", driver_list())));
            None
        }
        Initrd::Damaged { file, reason } => {
            out.push(finding("initramfs", Error, format!("the initramfs /boot/{file} of kernel {v} is damaged: {reason}; checked modules.dep instead"), &rebuild_fix(v)));
            None
        }
        Initrd::Unreadable { file, reason } => {
            out.push(finding("initramfs", Warning, format!("could not read /boot/{file} out of the image ({reason}); checked modules.dep instead"), "check the filesystem with `e2fsck -fn`, or use --skip-preflight"));
            None
        }
    };
    for (drv, why) in DRIVERS {
        if has_driver(&k.modules_builtin, drv) {
            continue;
        }
        let severity = if drv == "virtio_blk" { Warning } else { Error };
        let module = has_driver(&k.modules_dep, drv);
        match listed {
            Some((_, m)) if m.contains(&drv.replace('-', "_")) => {}
            Some((file, _)) if module => out.push(finding("drivers", severity, format!("the initramfs /boot/{file} does not carry `{drv}` (needed for {why}); kernel {v} has it as a module"), &add_driver_fix(file, drv, v))),
            None if module => {}
            _ => {
                let file = listed.map(|(f, _)| f.to_string()).unwrap_or_else(|| initrd_names(v)[0].clone());
                out.push(finding("drivers", severity, format!("kernel {v} has no `{drv}` module or built-in (needed for {why})"), &format!("install a kernel with the driver, then {}", add_driver_fix(&file, drv, v))));
            }
        }
    }
    out
}

/// `nvme, ena, …` for messages.
fn driver_list() -> String {
    DRIVERS.map(|(d, _)| d).join(", ")
}

/// The checks, as pure functions of what was gathered.
pub fn check(f: &DiskFacts, boot_mode: BootMode) -> Vec<Finding> {
    use Severity::{Error, Warning};
    let mut out = Vec::new();
    if f.virtual_size >= 16 * TIB {
        out.push(finding(
            "size",
            Error,
            format!(
                "the disk is {} bytes; VM Import takes disks under 16 TiB",
                f.virtual_size
            ),
            "shrink the disk (qemu-img resize --shrink after shrinking the filesystem)",
        ));
    } else if f.virtual_size > 8 * TIB {
        out.push(finding(
            "size",
            Warning,
            "the disk is over 8 TiB: VM Import needs a manifest file".into(),
            "keep the disk under 8 TiB",
        ));
    }
    let parts = match &f.table {
        None | Some(Table::None) => {
            out.push(finding("partitions", Error, "no MBR or GPT partition table (VM Import: \"No valid partitions. Not a valid volume.\")".into(), "partition the disk (sfdisk) with the root filesystem on a partition"));
            return out;
        }
        Some(Table::Mbr(p)) | Some(Table::Gpt(p)) => p,
    };
    if parts.is_empty() {
        out.push(finding(
            "partitions",
            Error,
            "the partition table has no partitions".into(),
            "create a partition for the root filesystem",
        ));
        return out;
    }
    let gpt = matches!(f.table, Some(Table::Gpt(_)));
    match boot_mode {
        BootMode::Uefi => match f.esp_fallback {
            None => out.push(finding("boot-mode", Error, "--boot-mode uefi but the disk has no EFI system partition".into(), "add an ESP with \\EFI\\BOOT\\BOOTX64.EFI, or import with --boot-mode legacy-bios")),
            Some(false) => out.push(finding("boot-mode", Error, "the ESP has no fallback \\EFI\\BOOT\\BOOTX64.EFI, which VM Import requires for Linux UEFI".into(), "install the boot loader as removable (grub-install --removable) so it lands in \\EFI\\BOOT\\BOOTX64.EFI")),
            Some(true) => {}
        },
        BootMode::LegacyBios => {
            if gpt && !parts.iter().any(|p| p.kind == BIOS_BOOT_GUID) {
                out.push(finding("boot-mode", Warning, "GPT disk without a BIOS boot partition: GRUB cannot boot it in legacy-bios mode".into(), "add a 1 MiB BIOS boot partition (type 21686148-…) and re-run grub-install, or import with --boot-mode uefi"));
            }
        }
    }
    if !f.root_found {
        out.push(finding("root-filesystem", Error, "no ext2/3/4 partition with /etc/fstab was found (VM Import: \"Unknown OS / Missing OS files.\")".into(), "put the root filesystem (ext4, xfs, btrfs without subvolumes) on a partition of this disk; kiln's pre-flight reads ext2/3/4 only (use --skip-preflight for others)"));
        return out;
    }
    match &f.fstab {
        Some(t) => {
            for l in fstab_by_device(t) {
                out.push(finding("fstab", Error, format!("/etc/fstab names a device by kernel name: `{l}`; device names change on EC2"), "mount by UUID= or LABEL= (blkid shows them)"));
            }
        }
        None => out.push(finding(
            "fstab",
            Error,
            "/etc/fstab is missing (VM Import: \"Could not read fstab\")".into(),
            "write /etc/fstab with UUID= entries",
        )),
    }
    if f.bls {
        out.push(finding("bootloader", Warning, "BLS entries in /boot/loader/entries: VM Import may fail with \"BLSC-style GRUB found, but unable to detect default kernel\"".into(), "use a classic grub.cfg (GRUB_ENABLE_BLSCFG=false), or --via-snapshot"));
    }
    if !f.grub2 {
        out.push(finding("bootloader", Error, "no /boot/grub/grub.cfg or /boot/grub2/grub.cfg: VM Import supports GRUB legacy and GRUB 2 only".into(), "install GRUB 2 (grub-pc or grub-efi) and run update-grub, or use --via-snapshot (the image then boots as it is)"));
    }
    let ks = kernels(&f.boot_files);
    if ks.is_empty() {
        out.push(finding(
            "kernel",
            Error,
            "no /boot/vmlinuz-* kernel (VM Import: \"Unable to determine kernel version\")".into(),
            "install the distribution's default kernel package",
        ));
    }
    let os = f.os_release.as_deref().unwrap_or("");
    let (id, ver) = (
        os_field(os, "ID").unwrap_or_default(),
        os_field(os, "VERSION_ID").unwrap_or_default(),
    );
    match supported_kernels(&id, &ver) {
        None => out.push(finding(
            "kernel",
            Warning,
            format!("OS `{id} {ver}` is not in kiln's copy of VM Import's supported list"),
            "check the VM Import requirements page, or use --via-snapshot",
        )),
        Some(prefixes) => {
            for k in &ks {
                if !prefixes.iter().any(|p| k.starts_with(p)) {
                    out.push(finding("kernel", Error, format!("kernel {k} is not listed by VM Import for {id} {ver} (expected {})", prefixes.join(" or ")), "install the distribution's default kernel, or use --via-snapshot (ImportSnapshot + RegisterImage skips the kernel check)"));
                }
            }
        }
    }
    for k in &ks {
        match f.kernels.iter().find(|x| &x.version == k) {
            Some(facts) => out.extend(driver_findings(facts)),
            None => out.extend(driver_findings(&KernelFacts {
                version: k.clone(),
                ..Default::default()
            })),
        }
    }
    if !has_dhcp(&f.network) {
        out.push(finding("network", Warning, "no DHCP network configuration found (ifupdown, systemd-networkd, netplan, NetworkManager, ifcfg); EC2 needs a DHCP client".into(), "configure the first interface with DHCP, e.g. `iface eth0 inet dhcp` (cloud-init can also write it)"));
    }
    if !f.cloud_init {
        out.push(finding(
            "cloud-init",
            Warning,
            "cloud-init is not installed: key pairs and user data will not work".into(),
            "install cloud-init with the Ec2 datasource in datasource_list",
        ));
    }
    out
}

/// The most bytes of a file read out of a guest filesystem with
/// `debugfs cat` (fstab, os-release, modules.dep, network files).
const MAX_GUEST_FILE: u64 = 16 << 20;
/// How long one `debugfs` request may take.
const DEBUGFS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs `debugfs -R CMD` on the ext filesystem at `offset` of `disk`;
/// `None` when it fails, finds nothing, prints more than
/// [`MAX_GUEST_FILE`] bytes or takes longer than [`DEBUGFS_TIMEOUT`] (the
/// filesystem is the guest's: bounded in size and time). A debugfs that
/// cannot run (not installed) is an error, never "nothing found".
async fn debugfs(disk: &Path, offset: u64, cmd: &str) -> Result<Option<String>, AwsError> {
    let out = Task::new(
        format!("reading the guest's filesystem with debugfs ({cmd})"),
        "debugfs",
    )
    .arg("-R")
    .arg(cmd)
    .arg(format!("{}?offset={offset}", disk.display()))
    .stdout_limit(MAX_GUEST_FILE as usize)
    .timeout(DEBUGFS_TIMEOUT)
    .output()
    .await;
    let out = match out {
        Ok(out) => out,
        // the guest's filesystem is at fault: nothing read
        Err(
            TaskError::Failed { .. } | TaskError::Timeout { .. } | TaskError::TooMuchOutput { .. },
        ) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if out.stderr.contains("File not found") || out.stderr.contains("Bad magic") {
        return Ok(None);
    }
    Ok(Some(out.stdout_text()))
}

async fn cat(disk: &Path, offset: u64, path: &str) -> Result<Option<String>, AwsError> {
    debugfs(disk, offset, &format!("cat {path}")).await
}

/// Names in a directory (`ls -p` output: `/ino/mode/uid/gid/name/size/`).
async fn ls(disk: &Path, offset: u64, dir: &str) -> Result<Vec<String>, AwsError> {
    Ok(debugfs(disk, offset, &format!("ls -p {dir}"))
        .await?
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split('/').nth(5).map(str::to_string))
                .filter(|n| !n.is_empty() && n != "." && n != "..")
                .collect()
        })
        .unwrap_or_default())
}

/// Streams `/boot/FILE` out of the ext filesystem at `offset` with
/// `debugfs cat` and lists it (only module names are kept). A debugfs
/// that cannot run is an error; what it or the scan finds wrong with the
/// file is a fact about the image.
async fn read_initrd(disk: &Path, offset: u64, file: String) -> Result<Initrd, AwsError> {
    let mut running = Task::new(format!("reading /boot/{file} with debugfs"), "debugfs")
        .arg("-R")
        .arg(format!("cat /boot/{file}"))
        .arg(format!("{}?offset={offset}", disk.display()))
        .spawn()?;
    let unreadable = |reason: String| Initrd::Unreadable {
        file: file.clone(),
        reason,
    };
    let (Some(stdout), Some(stderr)) = (running.take_stdout(), running.take_stderr()) else {
        return Ok(unreadable("debugfs's output was not captured".into()));
    };
    // the scan reads a blocking descriptor on a thread of its own
    let stdout = match stdout.into_owned_fd() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => return Ok(unreadable(format!("reading debugfs's output: {e}"))),
    };
    let scan = tokio::task::spawn_blocking(move || {
        let mut modules = BTreeSet::new();
        // scan takes stdout and drops it when done: an early stop ends debugfs with EPIPE
        let scanned = initramfs::scan(stdout, |name| {
            if let Some(m) = initramfs::module_name(name) {
                modules.insert(m);
            }
        });
        (scanned, modules)
    });
    let messages = read_tail(stderr, STDERR_TAIL);
    let (scanned, messages) = tokio::join!(scan, messages);
    let status = running.wait().await;
    let (scanned, modules) = match scanned {
        Ok(r) => r,
        Err(e) => return Ok(unreadable(format!("the reading thread failed: {e}"))),
    };
    let messages = match messages {
        Ok(m) => debugfs_errors(&String::from_utf8_lossy(&m)),
        Err(e) => format!("reading debugfs's messages: {e}"),
    };
    Ok(initrd_outcome(file, status, scanned, modules, messages))
}

/// What reading an initramfs found, from debugfs's status and messages
/// and the scan of its output.
fn initrd_outcome(
    file: String,
    status: Result<std::process::ExitStatus, TaskError>,
    scanned: Result<Vec<Compression>, initramfs::InitramfsError>,
    modules: BTreeSet<String>,
    messages: String,
) -> Initrd {
    if !messages.is_empty() {
        return Initrd::Unreadable {
            file,
            reason: messages,
        };
    }
    // when the scan stops early, debugfs dies of SIGPIPE writing the rest
    let debugfs_ok = status.as_ref().is_ok_and(|s| {
        use std::os::unix::process::ExitStatusExt;
        s.success() || (scanned.is_err() && s.signal() == Some(SIGPIPE))
    });
    match scanned {
        Err(e) if !debugfs_ok => Initrd::Unreadable {
            file,
            reason: format!("debugfs ended with {status:?}; {e}"),
        },
        Ok(segments) => Initrd::Read {
            file,
            segments,
            modules,
        },
        Err(initramfs::InitramfsError::Unsupported { compression, .. }) => {
            Initrd::Unsupported { file, compression }
        }
        Err(e @ initramfs::InitramfsError::Io(_)) => Initrd::Unreadable {
            file,
            reason: e.to_string(),
        },
        Err(e) => Initrd::Damaged {
            file,
            reason: e.to_string(),
        },
    }
}

/// The signal a process gets writing to a closed pipe.
const SIGPIPE: i32 = 13;

/// debugfs's error lines (its `debugfs 1.47.0 (…)` banner left out).
fn debugfs_errors(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("debugfs "))
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_ext(disk: &Path, offset: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut b = [0u8; 2];
    std::fs::File::open(disk)
        .and_then(|mut f| {
            let at = offset
                .checked_add(1024 + 56)
                .ok_or_else(|| std::io::Error::other("beyond any file"))?;
            f.seek(SeekFrom::Start(at))?;
            f.read_exact(&mut b)
        })
        .is_ok()
        && b == [0x53, 0xEF]
}

/// Whether the FAT filesystem at `offset` holds `\EFI\BOOT\BOOTX64.EFI`
/// (mdir fails when it does not, or cannot read the filesystem). An mdir
/// that cannot run, or that the guest's filesystem holds past its bounds,
/// is an error, never a finding.
async fn esp_has_fallback(disk: &Path, offset: u64) -> Result<bool, AwsError> {
    let listed = Task::new(
        "looking for \\EFI\\BOOT\\BOOTX64.EFI in the ESP with mdir",
        "mdir",
    )
    .arg("-b")
    .arg("-i")
    .arg(format!("{}@@{offset}", disk.display()))
    .arg("::/EFI/BOOT/BOOTX64.EFI")
    .env("MTOOLS_SKIP_CHECK", "1")
    .stdout_limit(1 << 20)
    .timeout(DEBUGFS_TIMEOUT)
    .output()
    .await;
    match listed {
        Ok(_) => Ok(true),
        Err(TaskError::Failed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Reads the facts from a raw disk file.
async fn gather_raw(disk: &Path, virtual_size: u64) -> Result<DiskFacts, AwsError> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(disk)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
        .map_err(|source| AwsError::Io {
            what: "read",
            path: disk.to_path_buf(),
            source,
        })?;
    let table = parse_table(&head);
    let mut f = DiskFacts {
        virtual_size,
        table: Some(table.clone()),
        ..Default::default()
    };
    let parts = match &table {
        Table::Mbr(p) | Table::Gpt(p) => p.clone(),
        Table::None => return Ok(f),
    };
    for p in parts.iter().filter(|p| p.is_esp()) {
        let found = esp_has_fallback(disk, p.offset).await?;
        f.esp_fallback = Some(f.esp_fallback.unwrap_or(false) || found);
    }
    let mut root = None;
    for p in &parts {
        if is_ext(disk, p.offset) {
            if let Some(fstab) = cat(disk, p.offset, "/etc/fstab").await? {
                f.fstab = Some(fstab);
                root = Some(p.offset);
                break;
            }
        }
    }
    let Some(off) = root else { return Ok(f) };
    f.root_found = true;
    f.os_release = match cat(disk, off, "/etc/os-release").await? {
        Some(t) if !t.is_empty() => Some(t),
        _ => cat(disk, off, "/usr/lib/os-release").await?,
    };
    f.boot_files = ls(disk, off, "/boot").await?;
    f.grub2 = ls(disk, off, "/boot/grub")
        .await?
        .iter()
        .any(|n| n == "grub.cfg")
        || ls(disk, off, "/boot/grub2")
            .await?
            .iter()
            .any(|n| n == "grub.cfg");
    f.bls = !ls(disk, off, "/boot/loader/entries").await?.is_empty();
    for version in kernels(&f.boot_files) {
        let module_file = |name: &str| format!("/lib/modules/{version}/{name}");
        let modules_dep = cat(disk, off, &module_file("modules.dep"))
            .await?
            .unwrap_or_default();
        let modules_builtin = cat(disk, off, &module_file("modules.builtin"))
            .await?
            .unwrap_or_default();
        let initrd = match initrd_names(&version)
            .into_iter()
            .find(|n| f.boot_files.contains(n))
        {
            Some(file) => read_initrd(disk, off, file).await?,
            None => Initrd::Missing,
        };
        f.kernels.push(KernelFacts {
            version,
            modules_dep,
            modules_builtin,
            initrd,
        });
    }
    for path in [
        "/etc/network/interfaces",
        "/etc/sysconfig/network-scripts/ifcfg-eth0",
    ] {
        if let Some(t) = cat(disk, off, path).await? {
            f.network.push(t);
        }
    }
    for dir in [
        "/etc/network/interfaces.d",
        "/etc/systemd/network",
        "/etc/netplan",
        "/etc/NetworkManager/system-connections",
    ] {
        for name in ls(disk, off, dir).await? {
            if let Some(t) = cat(disk, off, &format!("{dir}/{name}")).await? {
                f.network.push(t);
            }
        }
    }
    f.cloud_init = cat(disk, off, "/etc/cloud/cloud.cfg").await?.is_some()
        || ls(disk, off, "/usr/bin")
            .await?
            .iter()
            .any(|n| n == "cloud-init");
    Ok(f)
}

/// Gathers the facts of any image qemu-img reads: raw images are read in
/// place, others converted to a sparse raw file in a temporary folder
/// (inside `work_dir`), removed afterwards.
pub async fn gather(image: &Path, work_dir: &Path) -> Result<DiskFacts, AwsError> {
    // refused before anything reads a backing file or an extent elsewhere
    let info = img::info_untrusted(image).await?;
    let format = img::detect_format(image)?;
    if format == Format::Raw {
        return gather_raw(image, info.virtual_size).await;
    }
    std::fs::create_dir_all(work_dir).map_err(|source| AwsError::Io {
        what: "create the folder",
        path: work_dir.to_path_buf(),
        source,
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-preflight-")
        .tempdir_in(work_dir)
        .map_err(|source| AwsError::Io {
            what: "create a temporary folder in",
            path: work_dir.to_path_buf(),
            source,
        })?;
    let raw: PathBuf = tmp.path().join("disk.raw");
    img::convert(
        image,
        Some(format.qemu_name()),
        &raw,
        &ConvertOptions::to(Format::Raw),
    )
    .await?;
    gather_raw(&raw, info.virtual_size).await
}

/// Gathers and checks.
pub async fn run(
    image: &Path,
    work_dir: &Path,
    boot_mode: BootMode,
) -> Result<Vec<Finding>, AwsError> {
    Ok(check(&gather(image, work_dir).await?, boot_mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> DiskFacts {
        DiskFacts {
            virtual_size: 1 << 30,
            table: Some(Table::Mbr(vec![Partition {
                offset: 1 << 20,
                size: 1 << 29,
                kind: "mbr:83".into(),
            }])),
            root_found: true,
            fstab: Some("UUID=abc / ext4 defaults 0 1\n".into()),
            os_release: Some("ID=debian\nVERSION_ID=\"12\"\n".into()),
            boot_files: vec!["vmlinuz-6.1.0-13-amd64".into(), "grub".into()],
            grub2: true,
            bls: false,
            kernels: vec![kernel(
                &["nvme", "ena", "xen-blkfront", "virtio_blk"],
                "",
                Initrd::Read {
                    file: "initrd.img-6.1.0-13-amd64".into(),
                    segments: vec![Compression::Zstd],
                    modules: ["nvme", "ena", "xen_blkfront", "virtio_blk"]
                        .map(String::from)
                        .into(),
                },
            )],
            network: vec!["auto eth0\niface eth0 inet dhcp\n".into()],
            cloud_init: true,
            esp_fallback: None,
        }
    }

    /// Kernel 6.1.0-13-amd64 with `dep` modules in modules.dep and `builtin` in modules.builtin.
    fn kernel(dep: &[&str], builtin: &str, initrd: Initrd) -> KernelFacts {
        KernelFacts {
            version: "6.1.0-13-amd64".into(),
            modules_dep: dep
                .iter()
                .map(|m| format!("kernel/drivers/x/{m}.ko: kernel/drivers/x/dep.ko\n"))
                .collect(),
            modules_builtin: builtin.into(),
            initrd,
        }
    }

    fn read(file: &str, modules: &[&str]) -> Initrd {
        Initrd::Read {
            file: file.into(),
            segments: vec![Compression::None, Compression::Gzip],
            modules: modules.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn summary(f: &[Finding]) -> Vec<(&'static str, Severity, &str, &str)> {
        f.iter()
            .map(|x| (x.check, x.severity, x.message.as_str(), x.fix.as_str()))
            .collect()
    }

    const ALL: [&str; 4] = ["nvme", "ena", "xen-blkfront", "virtio_blk"];

    #[test]
    fn drivers_must_be_in_the_initramfs_or_built_in() {
        // all in the initramfs, `-`/`_` alike
        let k = kernel(
            &ALL,
            "",
            read(
                "initrd.img-6.1.0-13-amd64",
                &["nvme", "ena", "xen_blkfront", "virtio_blk"],
            ),
        );
        assert_eq!(driver_findings(&k), vec![]);
        // modules the initramfs lacks; virtio_blk built in instead
        let k = kernel(
            &ALL,
            "kernel/drivers/block/virtio_blk.ko\n",
            read("initrd.img-6.1.0-13-amd64", &["ena"]),
        );
        let got = driver_findings(&k);
        assert_eq!(summary(&got), vec![
            ("drivers", Severity::Error, "the initramfs /boot/initrd.img-6.1.0-13-amd64 does not carry `nvme` (needed for NVMe EBS volumes on Nitro instances); kernel 6.1.0-13-amd64 has it as a module", "add `nvme` to /etc/initramfs-tools/modules and run `update-initramfs -u -k 6.1.0-13-amd64`"),
            ("drivers", Severity::Error, "the initramfs /boot/initrd.img-6.1.0-13-amd64 does not carry `xen-blkfront` (needed for disks on Xen instances); kernel 6.1.0-13-amd64 has it as a module", "add `xen-blkfront` to /etc/initramfs-tools/modules and run `update-initramfs -u -k 6.1.0-13-amd64`"),
        ]);
        // dracut's file name → dracut's fix; a module the kernel lacks altogether
        let k = kernel(
            &["nvme", "ena", "virtio_blk"],
            "",
            read(
                "initramfs-6.1.0-13-amd64.img",
                &["nvme", "ena", "virtio_blk"],
            ),
        );
        let got = driver_findings(&k);
        assert_eq!(summary(&got), vec![(
            "drivers",
            Severity::Error,
            "kernel 6.1.0-13-amd64 has no `xen-blkfront` module or built-in (needed for disks on Xen instances)",
            "install a kernel with the driver, then add `add_drivers+=\" xen-blkfront \"` to /etc/dracut.conf.d/ec2.conf and run `dracut -f --kver 6.1.0-13-amd64`",
        )]);
    }

    #[test]
    fn an_unlisted_initramfs_falls_back_to_modules_dep_and_says_so() {
        let unsupported = Initrd::Unsupported {
            file: "initramfs-6.1.0-13-amd64.img".into(),
            compression: Compression::Xz,
        };
        let got = driver_findings(&kernel(&ALL, "", unsupported.clone()));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(
            (got[0].check, got[0].severity),
            ("initramfs", Severity::Warning)
        );
        assert!(
            got[0]
                .message
                .starts_with("cannot read compression xz of /boot/initramfs-6.1.0-13-amd64.img"),
            "{}",
            got[0].message
        );
        assert!(got[0].message.ends_with("checked modules.dep instead"));
        // the fallback still finds what modules.dep lacks
        let got = driver_findings(&kernel(
            &["ena", "xen-blkfront", "virtio_blk"],
            "",
            unsupported,
        ));
        assert_eq!(got.iter().filter(|f| f.check == "drivers").count(), 1);
        let damaged = Initrd::Damaged {
            file: "initrd.img-6.1.0-13-amd64".into(),
            reason: "truncated at byte 9: a member name".into(),
        };
        let got = driver_findings(&kernel(&ALL, "", damaged));
        assert_eq!(summary(&got), vec![(
            "initramfs",
            Severity::Error,
            "the initramfs /boot/initrd.img-6.1.0-13-amd64 of kernel 6.1.0-13-amd64 is damaged: truncated at byte 9: a member name; checked modules.dep instead",
            "rebuild it: `update-initramfs -c -k 6.1.0-13-amd64` (Debian, Ubuntu) or `dracut -f --kver 6.1.0-13-amd64` (RHEL-likes, Amazon Linux)",
        )]);
        let got = driver_findings(&kernel(&ALL, "", Initrd::Missing));
        assert_eq!(summary(&got).len(), 1);
        assert_eq!(
            (got[0].check, got[0].severity),
            ("initramfs", Severity::Warning)
        );
        assert!(got[0].message.contains(
            "no initramfs (/boot/initrd.img-6.1.0-13-amd64 or /boot/initramfs-6.1.0-13-amd64.img)"
        ));
    }

    #[test]
    fn a_good_image_has_no_findings() {
        assert_eq!(check(&good(), BootMode::LegacyBios), vec![]);
    }

    #[test]
    fn every_problem_is_reported_with_a_fix() {
        let mut f = good();
        f.fstab = Some("/dev/sda1 / ext4 defaults 0 1\n# /dev/sdb1 ignored\n".into());
        f.boot_files = vec!["vmlinuz-4.15.0-1021-aws".into()];
        f.kernels = vec![KernelFacts {
            version: "4.15.0-1021-aws".into(),
            ..kernel(&["virtio_blk"], "", Initrd::Missing)
        }];
        f.grub2 = false;
        f.bls = true;
        f.network = vec!["iface eth0 inet static\n".into()];
        f.cloud_init = false;
        let got = check(&f, BootMode::Uefi);
        let checks: Vec<_> = got.iter().map(|x| x.check).collect();
        for c in [
            "boot-mode",
            "fstab",
            "bootloader",
            "kernel",
            "drivers",
            "network",
            "cloud-init",
        ] {
            assert!(checks.contains(&c), "{c} missing from {got:#?}");
        }
        assert!(got.iter().all(|x| !x.fix.is_empty()));
        assert_eq!(got.iter().filter(|x| x.check == "fstab").count(), 1);
        assert_eq!(got.iter().filter(|x| x.check == "drivers").count(), 3);
        assert_eq!(got.iter().filter(|x| x.check == "initramfs").count(), 1);
    }

    #[tokio::test]
    async fn guest_files_are_read_within_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree/etc");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("fstab"), "/dev/sda1 / ext4 defaults 0 1\n").unwrap();
        // a guest's os-release past the bound: not read into memory
        let mut big = b"ID=debian\n".to_vec();
        big.resize(MAX_GUEST_FILE as usize + 1, b'#');
        std::fs::write(tree.join("os-release"), big).unwrap();
        let part = dir.path().join("part.img");
        let out = std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(dir.path().join("tree"))
            .arg(&part)
            .arg("40M")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let fstab = cat(&part, 0, "/etc/fstab").await.unwrap();
        assert_eq!(fstab.as_deref(), Some("/dev/sda1 / ext4 defaults 0 1\n"));
        assert_eq!(cat(&part, 0, "/etc/os-release").await.unwrap(), None);
    }

    #[test]
    fn mbr_and_gpt_tables() {
        let mut d = vec![0u8; 1 << 20];
        d[510] = 0x55;
        d[511] = 0xAA;
        d[446 + 4] = 0x83;
        d[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        d[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(
            parse_table(&d),
            Table::Mbr(vec![Partition {
                offset: 1 << 20,
                size: 2 << 20,
                kind: "mbr:83".into()
            }])
        );
        // protective MBR + GPT with one ESP entry at LBA 2
        d[446 + 4] = 0xEE;
        d[512..520].copy_from_slice(b"EFI PART");
        d[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        d[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        d[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let esp = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        d[1024..1040].copy_from_slice(&esp);
        d[1024 + 32..1024 + 40].copy_from_slice(&2048u64.to_le_bytes());
        d[1024 + 40..1024 + 48].copy_from_slice(&4095u64.to_le_bytes());
        match parse_table(&d) {
            Table::Gpt(p) => {
                assert_eq!(p.len(), 1);
                assert!(p[0].is_esp(), "{p:?}");
                assert_eq!((p[0].offset, p[0].size), (1 << 20, 1 << 20));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_table(&[0u8; 512]), Table::None);
        // hostile numbers: no overflow, no panic
        let mut h = d.clone();
        h[1024 + 32..1024 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        h[1024 + 40..1024 + 48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse_table(&h), Table::Gpt(p) if p[0].offset == u64::MAX));
        h[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_table(&h), Table::Gpt(Vec::new()));
        h[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        h[512 + 84..512 + 88].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse_table(&h), Table::Gpt(_)));
    }

    #[test]
    fn helpers() {
        assert!(has_driver(
            "kernel/drivers/block/xen-blkfront.ko.xz: x",
            "xen-blkfront"
        ));
        assert!(has_driver("kernel/drivers/nvme/host/nvme.ko\n", "nvme"));
        assert!(!has_driver(
            "kernel/drivers/nvme/host/nvme-core.ko\n",
            "nvme"
        ));
        assert!(has_dhcp(&["[Network]\nDHCP=yes\n".into()]));
        assert!(!has_dhcp(&["iface eth0 inet static".into()]));
        assert_eq!(
            fstab_by_device("UUID=a / ext4\n/dev/vda2 /data ext4\n"),
            vec!["/dev/vda2 /data ext4"]
        );
    }
}
