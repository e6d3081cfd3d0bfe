//! The VHD footer (Virtual Hard Disk Image Format Specification, the
//! "hard disk footer"): decoded and checked, for verifying fixed VHDs, which
//! Azure requires with a size that is a whole number of MiB.

/// The size of the footer at the end of a VHD.
pub const FOOTER_BYTES: usize = 512;

/// A VHD disk type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskType {
    /// The data is stored as is, followed by the footer.
    Fixed,
    /// Blocks allocated on write (BAT).
    Dynamic,
    /// A differencing disk on a parent.
    Differencing,
}

/// What the footer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    /// The disk type.
    pub disk_type: DiskType,
    /// The virtual disk size in bytes ("current size").
    pub current_size: u64,
}

/// Why a footer is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FooterError {
    /// Not a VHD footer at all.
    #[error("no VHD footer (the last 512 bytes do not start with `conectix`)")]
    NoCookie,
    /// The checksum does not match the footer's bytes.
    #[error("footer checksum {stored:#010x} does not match its bytes ({computed:#010x})")]
    Checksum {
        /// The checksum in the footer.
        stored: u32,
        /// The checksum of the footer's bytes.
        computed: u32,
    },
    /// An unknown disk type.
    #[error("unknown disk type {0}")]
    DiskType(u32),
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Decodes a 512-byte footer; the checksum is the one's complement of the
/// byte sum with the checksum field taken as zero.
pub fn parse_footer(b: &[u8; FOOTER_BYTES]) -> Result<Footer, FooterError> {
    if &b[..8] != b"conectix" {
        return Err(FooterError::NoCookie);
    }
    let stored = be32(b, 64);
    let sum: u32 = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .map(|(_, &v)| u32::from(v))
        .fold(0u32, u32::wrapping_add);
    let computed = !sum;
    if stored != computed {
        return Err(FooterError::Checksum { stored, computed });
    }
    let disk_type = match be32(b, 60) {
        2 => DiskType::Fixed,
        3 => DiskType::Dynamic,
        4 => DiskType::Differencing,
        other => return Err(FooterError::DiskType(other)),
    };
    let current_size = u64::from_be_bytes(b[48..56].try_into().expect("8 bytes"));
    Ok(Footer {
        disk_type,
        current_size,
    })
}

/// What is wrong with a fixed VHD of `file_len` bytes for Azure (nothing
/// when the list is empty): fixed type, a whole number of MiB, and the
/// file exactly the data plus the footer.
pub fn azure_problems(footer: &Footer, file_len: u64) -> Vec<String> {
    let mut out = Vec::new();
    if footer.disk_type != DiskType::Fixed {
        out.push(format!(
            "the disk type is {:?}; Azure takes fixed VHDs only",
            footer.disk_type
        ));
    }
    if !footer.current_size.is_multiple_of(1 << 20) {
        out.push(format!(
            "the virtual size {} is not a whole number of MiB, which Azure requires",
            footer.current_size
        ));
    }
    if footer.disk_type == DiskType::Fixed && file_len != footer.current_size + FOOTER_BYTES as u64
    {
        out.push(format!(
            "the file is {file_len} bytes; a fixed VHD of {} bytes must be {} (data and footer): truncated or padded",
            footer.current_size,
            footer.current_size + FOOTER_BYTES as u64
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer(disk_type: u32, size: u64) -> [u8; FOOTER_BYTES] {
        let mut b = [0u8; FOOTER_BYTES];
        b[..8].copy_from_slice(b"conectix");
        b[40..48].copy_from_slice(&size.to_be_bytes());
        b[48..56].copy_from_slice(&size.to_be_bytes());
        b[60..64].copy_from_slice(&disk_type.to_be_bytes());
        let sum = b
            .iter()
            .map(|&v| u32::from(v))
            .fold(0u32, u32::wrapping_add);
        b[64..68].copy_from_slice(&(!sum).to_be_bytes());
        b
    }

    #[test]
    fn fixed_footer_decodes_and_checks() {
        let f = parse_footer(&footer(2, 4 << 20)).unwrap();
        assert_eq!(f.disk_type, DiskType::Fixed);
        assert_eq!(f.current_size, 4 << 20);
        assert!(azure_problems(&f, (4 << 20) + 512).is_empty());
        let p = azure_problems(&f, 4 << 20);
        assert!(p[0].contains("truncated"), "{p:?}");
    }

    #[test]
    fn bad_footers() {
        let mut b = footer(2, 1 << 20);
        b[100] ^= 1;
        assert!(matches!(
            parse_footer(&b),
            Err(FooterError::Checksum { .. })
        ));
        assert_eq!(parse_footer(&[0; 512]), Err(FooterError::NoCookie));
        assert_eq!(
            parse_footer(&footer(9, 1 << 20)),
            Err(FooterError::DiskType(9))
        );
        let odd = parse_footer(&footer(3, (1 << 20) + 512)).unwrap();
        let p = azure_problems(&odd, 0);
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
