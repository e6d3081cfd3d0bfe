//! The recipe's `distribution.ami:` block: import the tested image as an
//! AMI (VM Import), name, tag, copy and share it. Read into the same
//! [`AmiSpec`] `kiln ami import` builds from its flags.

use super::fields::{optional, Field, Obj};
use crate::ami::names::{self, ArnKind, InvalidSetting};
use crate::ami::{AmiSpec, BootMode, DiskFormat, RegionCopy, Sharing};
use crate::util::diag::Diagnostics;

const KEYS: &[&str] = &[
    "bucket",
    "region",
    "name",
    "format",
    "viaSnapshot",
    "bootMode",
    "kmsKey",
    "encrypted",
    "copyToRegions",
    "shareAccounts",
    "shareOrgs",
    "shareOus",
    "tags",
    "keepUpload",
    "skipPreflight",
];

const COPY_KEYS: &[&str] = &["region", "kmsKey"];

/// Records `err` (a rejected value) on `f` with `hint`; `None` when rejected.
fn checked<T>(
    f: &Field<'_>,
    d: &mut Diagnostics,
    code: &'static str,
    hint: &str,
    value: T,
    check: Result<(), InvalidSetting>,
) -> Option<T> {
    match check {
        Ok(()) => Some(value),
        Err(e) => {
            f.error(d, code, e.to_string(), Some(hint.to_string()));
            None
        }
    }
}

fn region(f: &Field<'_>, d: &mut Diagnostics) -> Option<String> {
    let r = f.str(d)?;
    checked(
        f,
        d,
        "invalid-region",
        "write the region's code, e.g. us-east-1",
        r.to_string(),
        names::validate_region(r),
    )
}

fn bool_or(obj: &Obj<'_>, key: &str, d: &mut Diagnostics) -> Option<bool> {
    Some(optional(obj.get(key).map(|f| f.boolean(d)))?.unwrap_or(false))
}

/// A list of strings, each passing `check`.
fn checked_list(
    obj: &Obj<'_>,
    key: &str,
    d: &mut Diagnostics,
    code: &'static str,
    hint: &str,
    check: impl Fn(&str) -> Result<(), InvalidSetting>,
) -> Option<Vec<String>> {
    let Some(list) = obj.get(key) else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in list.seq(d)? {
        match item.str(d) {
            Some(s) => match checked(&item, d, code, hint, s.to_string(), check(s)) {
                Some(v) => out.push(v),
                None => ok = false,
            },
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn copies(f: &Field<'_>, d: &mut Diagnostics) -> Option<Vec<RegionCopy>> {
    let mut out: Vec<RegionCopy> = Vec::new();
    let mut ok = true;
    for item in f.seq(d)? {
        let Some(obj) = item.obj(d) else {
            ok = false;
            continue;
        };
        obj.check_keys(COPY_KEYS, d);
        let region = obj
            .require("region", d, "add `region: eu-west-1`")
            .and_then(|r| region(&r, d));
        let kms_key = optional(obj.get("kmsKey").map(|k| k.str(d).map(String::from)));
        match (region, kms_key) {
            (Some(region), Some(_)) if out.iter().any(|c| c.region == region) => {
                ok = false;
                item.error(
                    d,
                    "duplicate-region",
                    format!("the region `{region}` is listed twice"),
                    Some("list each region once".into()),
                );
            }
            (Some(region), Some(kms_key)) => out.push(RegionCopy { region, kms_key }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn tags(f: &Field<'_>, d: &mut Diagnostics) -> Option<Vec<(String, String)>> {
    let obj = f.obj(d)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (k, _) in obj.node.as_map().unwrap_or_default() {
        let key = k.as_str().unwrap_or_default();
        match obj.get(key).and_then(|v| v.str(d)) {
            Some(v) => out.push((key.to_string(), v.to_string())),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Reads `distribution.ami`.
pub(crate) fn parse(f: &Field<'_>, d: &mut Diagnostics) -> Option<AmiSpec> {
    let obj = f.obj(d)?;
    obj.check_keys(KEYS, d);
    let bucket = obj
        .require(
            "bucket",
            d,
            "add `bucket: NAME`, the S3 bucket the disk is uploaded to",
        )
        .and_then(|b| b.str(d).map(String::from));
    let region = optional(obj.get("region").map(|r| region(&r, d)));
    let name = optional(obj.get("name").map(|n| {
        let text = n.str(d)?;
        checked(
            &n,
            d,
            "invalid-ami-name",
            "or leave `name` out: the AMI is named `<recipe name>-<version>`",
            text.to_string(),
            names::validate_name(text),
        )
    }));
    let format = optional(obj.get("format").map(|f| {
        f.one_of(
            d,
            &["vmdk", "raw", "vhd"],
            "unknown-disk-format",
            "uploading",
        )
        .and_then(|s| DiskFormat::parse(s).ok())
    }));
    let boot_mode = optional(obj.get("bootMode").map(|f| {
        f.one_of(
            d,
            &["legacy-bios", "uefi"],
            "unknown-boot-mode",
            "the boot mode",
        )
        .map(|s| match s {
            "uefi" => BootMode::Uefi,
            _ => BootMode::LegacyBios,
        })
    }));
    let kms_key = optional(obj.get("kmsKey").map(|k| k.str(d).map(String::from)));
    // ImportImage Encrypted without KmsKeyId: the account's default EBS key
    let encrypted = bool_or(&obj, "encrypted", d);
    let regions = optional(obj.get("copyToRegions").map(|c| copies(&c, d)));
    let accounts = checked_list(
        &obj,
        "shareAccounts",
        d,
        "invalid-account",
        "an account id is 12 digits, e.g. 111122223333",
        names::validate_account,
    );
    let orgs = checked_list(
        &obj,
        "shareOrgs",
        d,
        "invalid-arn",
        "write the organization's full ARN",
        |a| names::validate_arn(a, ArnKind::Organization),
    );
    let ous = checked_list(
        &obj,
        "shareOus",
        d,
        "invalid-arn",
        "write the organizational unit's full ARN",
        |a| names::validate_arn(a, ArnKind::OrganizationalUnit),
    );
    let tags = optional(obj.get("tags").map(|t| tags(&t, d)));
    let via_snapshot = bool_or(&obj, "viaSnapshot", d);
    let keep_upload = bool_or(&obj, "keepUpload", d);
    let skip_preflight = bool_or(&obj, "skipPreflight", d);
    let defaults = AmiSpec::new(bucket?);
    Some(AmiSpec {
        region: region?,
        name: name?,
        format: format?.unwrap_or(defaults.format),
        via_snapshot: via_snapshot?,
        boot_mode: boot_mode?.unwrap_or(defaults.boot_mode),
        encrypted: encrypted?,
        kms_key: kms_key?,
        regions: regions?.unwrap_or_default(),
        sharing: Sharing {
            accounts: accounts?,
            orgs: orgs?,
            ous: ous?,
        },
        tags: tags?.unwrap_or_default(),
        keep_upload: keep_upload?,
        skip_preflight: skip_preflight?,
        ..defaults
    })
}
