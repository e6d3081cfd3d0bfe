//! The export formats by name, and the files each one writes.

use std::fmt;
use std::str::FromStr;

/// An output format for on-prem hypervisors and clouds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExportFormat {
    /// streamOptimized VMDK, version-3 header, written by kiln's parallel
    /// writer: what AWS VM Import, vSphere OVF deploys and VirtualBox take.
    Vmdk,
    /// monolithicSparse VMDK: VMware Workstation, plain ESXi datastore uploads.
    VmdkSparse,
    /// Dynamic VHDX: Hyper-V.
    Vhdx,
    /// Fixed VHD, its size rounded up to a whole MiB: what Azure requires.
    Vhd,
    /// A raw disk (sparse on the host).
    Raw,
    /// Compressed qcow2 with zstd clusters (QEMU 5.1 or later reads them).
    Qcow2,
    /// Compressed qcow2 with zlib clusters, for older qcow2 readers.
    Qcow2Zlib,
    /// `disk.raw` in a gzip'd tar, as Google Compute Engine imports.
    Gce,
    /// An OVF package: descriptor, streamOptimized disk and `.mf`, side by side.
    Ovf,
    /// An OVA: one tar of the `.ovf`, the `.mf` and the disk, in that order.
    Ova,
}

/// Every format with its name, in the order `--help` lists them.
pub const ALL: [(ExportFormat, &str); 10] = [
    (ExportFormat::Vmdk, "vmdk"),
    (ExportFormat::VmdkSparse, "vmdk-sparse"),
    (ExportFormat::Vhdx, "vhdx"),
    (ExportFormat::Vhd, "vhd"),
    (ExportFormat::Raw, "raw"),
    (ExportFormat::Qcow2, "qcow2"),
    (ExportFormat::Qcow2Zlib, "qcow2-zlib"),
    (ExportFormat::Gce, "gce"),
    (ExportFormat::Ovf, "ovf"),
    (ExportFormat::Ova, "ova"),
];

/// The format names, comma-separated, for hints.
pub fn names() -> String {
    ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
}

impl ExportFormat {
    /// The name used in recipes and on the command line.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(f, _)| *f == self)
            .map(|(_, n)| *n)
            .expect("every format is listed in ALL")
    }

    /// The file (relative to an output folder) this format writes for an
    /// image called `base`; an OVF package's disk and `.mf` go beside it.
    pub fn file_name(self, base: &str) -> String {
        match self {
            ExportFormat::Vmdk => format!("{base}.vmdk"),
            ExportFormat::VmdkSparse => format!("{base}-sparse.vmdk"),
            ExportFormat::Vhdx => format!("{base}.vhdx"),
            ExportFormat::Vhd => format!("{base}.vhd"),
            ExportFormat::Raw => format!("{base}.raw"),
            ExportFormat::Qcow2 => format!("{base}.qcow2"),
            ExportFormat::Qcow2Zlib => format!("{base}-zlib.qcow2"),
            ExportFormat::Gce => format!("{base}-gce.tar.gz"),
            ExportFormat::Ovf => format!("ovf/{base}.ovf"),
            ExportFormat::Ova => format!("{base}.ova"),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not an export format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format `{0}` (known: {known})", known = names())]
pub struct UnknownFormat(pub String);

impl FromStr for ExportFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        ALL.iter()
            .find(|(_, n)| *n == s)
            .map(|(f, _)| *f)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// Parses a comma-separated list (`vmdk,ova`), keeping the first of any
/// repeated name; empty items are errors.
pub fn parse_list(s: &str) -> Result<Vec<ExportFormat>, UnknownFormat> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim) {
        let f: ExportFormat = item.parse()?;
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_files_differ() {
        let mut files = std::collections::BTreeSet::new();
        for (f, n) in ALL {
            assert_eq!(n.parse::<ExportFormat>().unwrap(), f);
            assert_eq!(f.to_string(), n);
            assert!(files.insert(f.file_name("image")), "{n}");
        }
        assert_eq!(ExportFormat::Ovf.file_name("web"), "ovf/web.ovf");
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list("vmdk, ova,vmdk").unwrap(),
            vec![ExportFormat::Vmdk, ExportFormat::Ova]
        );
        let e = parse_list("vmdk,vdi").unwrap_err();
        assert_eq!(e.0, "vdi");
        assert!(e.to_string().contains("vmdk-sparse"), "{e}");
        assert!(parse_list("vmdk,").is_err());
    }
}
