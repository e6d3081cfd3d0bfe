//! What to import as an AMI and how: the disk format, boot mode, name,
//! copies to other regions, sharing and tags. Plain data, free of the AWS
//! SDK, so recipes and `kiln ami` share it; `aws::flow` carries it out.

use super::names::InvalidSetting;

/// The VM Import service role kiln uses unless told otherwise.
pub const DEFAULT_ROLE: &str = "vmimport";

/// A copy of the AMI to another region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionCopy {
    /// The destination region.
    pub region: String,
    /// Encrypt the copy with this KMS key (it must exist in that region).
    pub kms_key: Option<String>,
}

/// The disk format of the uploaded object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    /// streamOptimized VMDK.
    Vmdk,
    /// Raw.
    Raw,
    /// VHD (fixed).
    Vhd,
}

impl DiskFormat {
    /// The name VM Import uses (`VMDK`, `RAW`, `VHD`).
    pub fn api_name(self) -> &'static str {
        match self {
            DiskFormat::Vmdk => "VMDK",
            DiskFormat::Raw => "RAW",
            DiskFormat::Vhd => "VHD",
        }
    }

    /// The file extension (`vmdk`, `raw`, `vhd`).
    pub fn extension(self) -> &'static str {
        match self {
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Raw => "raw",
            DiskFormat::Vhd => "vhd",
        }
    }

    /// Parses `vmdk`, `raw` or `vhd` (any case).
    pub fn parse(s: &str) -> Result<Self, InvalidSetting> {
        match s.to_ascii_lowercase().as_str() {
            "vmdk" => Ok(DiskFormat::Vmdk),
            "raw" => Ok(DiskFormat::Raw),
            "vhd" => Ok(DiskFormat::Vhd),
            other => Err(InvalidSetting(format!(
                "unknown disk format `{other}`: use vmdk, raw or vhd"
            ))),
        }
    }
}

/// The boot mode of the imported image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMode {
    /// BIOS.
    LegacyBios,
    /// UEFI (needs `\EFI\BOOT\BOOTX64.EFI` on the ESP).
    Uefi,
}

/// Who may launch the AMI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sharing {
    /// AWS account ids.
    pub accounts: Vec<String>,
    /// Organization ARNs.
    pub orgs: Vec<String>,
    /// Organizational unit ARNs.
    pub ous: Vec<String>,
}

impl Sharing {
    /// Whether nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.orgs.is_empty() && self.ous.is_empty()
    }

    /// Checks ids and ARNs (organizations and OUs must be full ARNs).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for a in &self.accounts {
            super::names::validate_account(a)?;
        }
        for a in &self.orgs {
            super::names::validate_arn(a, super::names::ArnKind::Organization)?;
        }
        for a in &self.ous {
            super::names::validate_arn(a, super::names::ArnKind::OrganizationalUnit)?;
        }
        Ok(())
    }
}

/// What to import and how, whoever asks (`kiln ami import`'s flags or a
/// recipe's `distribution.ami`); `aws::flow::request` adds the image and
/// the local settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmiSpec {
    /// The upload bucket (in the import region).
    pub bucket: String,
    /// The object key; `None`: `kiln/<name>/<disk file name>`.
    pub key: Option<String>,
    /// The import region; `None`: the AWS configuration's region.
    pub region: Option<String>,
    /// The AMI name; `None`: the caller's default.
    pub name: Option<String>,
    /// The AMI description.
    pub description: String,
    /// The disk format uploaded.
    pub format: DiskFormat,
    /// ImportSnapshot + RegisterImage instead of ImportImage.
    pub via_snapshot: bool,
    /// `x86_64` or `i386`.
    pub architecture: String,
    /// The boot mode.
    pub boot_mode: BootMode,
    /// Encrypt the snapshots with this KMS key.
    pub kms_key: Option<String>,
    /// Encrypt the snapshots with the default EBS key (when no `kms_key`).
    pub encrypted: bool,
    /// The VM Import service role.
    pub role_name: String,
    /// Copies to other regions.
    pub regions: Vec<RegionCopy>,
    /// Launch permissions.
    pub sharing: Sharing,
    /// Tags of the AMI, its snapshots and the import task.
    pub tags: Vec<(String, String)>,
    /// Keep the uploaded object after the import.
    pub keep_upload: bool,
    /// Import without the pre-flight checks.
    pub skip_preflight: bool,
}

/// The default AMI description.
pub const DEFAULT_DESCRIPTION: &str = "imported by kiln";

impl AmiSpec {
    /// An import to `bucket` with kiln's defaults: streamOptimized VMDK,
    /// ImportImage, x86_64, legacy BIOS, the `vmimport` role, no copies,
    /// no sharing, the upload deleted after the import.
    pub fn new(bucket: impl Into<String>) -> Self {
        AmiSpec {
            bucket: bucket.into(),
            key: None,
            region: None,
            name: None,
            description: DEFAULT_DESCRIPTION.into(),
            format: DiskFormat::Vmdk,
            via_snapshot: false,
            architecture: "x86_64".into(),
            boot_mode: BootMode::LegacyBios,
            kms_key: None,
            encrypted: false,
            role_name: DEFAULT_ROLE.into(),
            regions: Vec::new(),
            sharing: Sharing::default(),
            tags: Vec::new(),
            keep_upload: false,
            skip_preflight: false,
        }
    }

    /// The AMI name: the spec's, else `default_name`.
    pub fn name_or(&self, default_name: &str) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| default_name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(DiskFormat::parse("VMDK").unwrap(), DiskFormat::Vmdk);
        assert_eq!(DiskFormat::parse("raw").unwrap().api_name(), "RAW");
        assert_eq!(DiskFormat::Vhd.extension(), "vhd");
        assert!(DiskFormat::parse("ova").is_err());
    }
}
