//! The disk formats kiln converts with `qemu-img` (the streamOptimized VMDK
//! has its own writer): which options each one needs.

use super::format::ExportFormat;
use crate::disk::img::{Compression, ConvertOptions, Format};

/// A VHD for Azure must be a whole number of MiB.
pub const VHD_ALIGN: u64 = 1 << 20;

/// `size` rounded up to a multiple of `align`.
pub fn round_up(size: u64, align: u64) -> u64 {
    size.div_ceil(align) * align
}

/// The `qemu-img convert` options that write `format` from a disk of
/// `virtual_size` bytes, or `None` for formats kiln writes itself.
pub fn convert_options(format: ExportFormat, virtual_size: u64) -> Option<ConvertOptions> {
    let with = |f: Format, options: &[&str]| ConvertOptions {
        options: options.iter().map(|o| o.to_string()).collect(),
        ..ConvertOptions::to(f)
    };
    Some(match format {
        ExportFormat::VmdkSparse => with(
            Format::Vmdk,
            &["subformat=monolithicSparse", "adapter_type=lsilogic"],
        ),
        ExportFormat::Vhdx => with(Format::Vhdx, &["subformat=dynamic"]),
        // force_size: keep the exact size instead of qemu's CHS rounding
        ExportFormat::Vhd => ConvertOptions {
            target_size: Some(round_up(virtual_size, VHD_ALIGN)),
            ..with(Format::Vpc, &["subformat=fixed", "force_size=on"])
        },
        ExportFormat::Raw => ConvertOptions::to(Format::Raw),
        ExportFormat::Qcow2 => ConvertOptions {
            compress: Some(Compression::Zstd),
            ..ConvertOptions::to(Format::Qcow2)
        },
        ExportFormat::Qcow2Zlib => ConvertOptions {
            compress: Some(Compression::Zlib),
            ..ConvertOptions::to(Format::Qcow2)
        },
        ExportFormat::Vmdk | ExportFormat::Gce | ExportFormat::Ovf | ExportFormat::Ova => {
            return None
        }
    })
}

/// The qemu-img format a disk export is read back as.
pub fn image_format(format: ExportFormat) -> Option<Format> {
    Some(match format {
        ExportFormat::Vmdk | ExportFormat::VmdkSparse => Format::Vmdk,
        ExportFormat::Vhdx => Format::Vhdx,
        ExportFormat::Vhd => Format::Vpc,
        ExportFormat::Raw => Format::Raw,
        ExportFormat::Qcow2 | ExportFormat::Qcow2Zlib => Format::Qcow2,
        ExportFormat::Gce | ExportFormat::Ovf | ExportFormat::Ova => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhd_is_fixed_and_mib_aligned() {
        let o = convert_options(ExportFormat::Vhd, (3 << 20) + 1).unwrap();
        assert_eq!(o.target_size, Some(4 << 20));
        assert!(o.options.contains(&"force_size=on".to_string()));
        assert_eq!(round_up(4 << 20, VHD_ALIGN), 4 << 20);
        assert_eq!(round_up(0, VHD_ALIGN), 0);
    }

    #[test]
    fn every_disk_format_has_one_writer() {
        for (f, _) in super::super::format::ALL {
            let by_qemu = convert_options(f, 1 << 20).is_some();
            let native = matches!(f, ExportFormat::Vmdk | ExportFormat::Gce);
            let package = matches!(f, ExportFormat::Ovf | ExportFormat::Ova);
            assert_eq!(
                [by_qemu, native, package].iter().filter(|b| **b).count(),
                1,
                "{f}"
            );
            if let Some(o) = convert_options(f, 1 << 20) {
                assert_eq!(image_format(f), Some(o.format), "{f}");
            }
        }
        assert_eq!(
            convert_options(ExportFormat::Qcow2Zlib, 1)
                .unwrap()
                .compress,
            Some(Compression::Zlib)
        );
    }
}
