//! After the import: give the AMI its name (CopyImage, then deregister the
//! intermediate), tag the AMI and its snapshots, copy it to other regions
//! (encrypted with a per-region KMS key where given), and grant launch
//! permissions to accounts, organizations and OUs.

use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, Tag};

use super::client::Clients;
use super::poll::{self, PollOptions, TaskStatus};
use super::{sdk_message, AwsError};

/// A copy of the AMI to another region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionCopy {
    /// The destination region.
    pub region: String,
    /// Encrypt the copy with this KMS key (it must exist in that region).
    pub kms_key: Option<String>,
}

/// Parses `r1,r2=KEY,…` (a region, optionally `=` its KMS key).
pub fn parse_region_copies(s: &str) -> Result<Vec<RegionCopy>, AwsError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (region, key) = match p.split_once('=') {
                Some((r, k)) => (r.trim(), Some(k.trim().to_string())),
                None => (p, None),
            };
            if validate_region(region).is_err() {
                return Err(AwsError::Invalid(format!(
                    "`{p}` is not a region: use e.g. eu-west-1 or eu-west-1=KMS_KEY_ARN"
                )));
            }
            Ok(RegionCopy {
                region: region.into(),
                kms_key: key.filter(|k| !k.is_empty()),
            })
        })
        .collect()
}

/// Checks the shape of a region name: lowercase words joined by `-`, the
/// first two letters, the last a number (`us-east-1`, `us-gov-west-1`).
pub fn validate_region(region: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = region.split('-').collect();
    let word = |w: &&str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase());
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(word)
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(AwsError::Invalid(format!(
            "`{region}` is not an AWS region name, e.g. us-east-1 or eu-west-1"
        )))
    }
}

/// Checks a 12-digit AWS account id.
pub fn validate_account(account: &str) -> Result<(), AwsError> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AwsError::Invalid(format!(
            "`{account}` is not a 12-digit AWS account id"
        )));
    }
    Ok(())
}

/// What a launch permission ARN names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArnKind {
    /// `arn:aws:organizations::ACCOUNT:organization/o-…`.
    Organization,
    /// `arn:aws:organizations::ACCOUNT:ou/o-…/ou-…`.
    OrganizationalUnit,
}

/// Checks an organization or OU ARN (EC2 refuses bare ids).
pub fn validate_arn(arn: &str, kind: ArnKind) -> Result<(), AwsError> {
    let (what, example) = match kind {
        ArnKind::Organization => (
            "organization",
            "arn:aws:organizations::123456789012:organization/o-abc123",
        ),
        ArnKind::OrganizationalUnit => (
            "organizational unit",
            "arn:aws:organizations::123456789012:ou/o-abc123/ou-ab12-cdef3456",
        ),
    };
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let resource_ok = |r: &str| {
        let parts: Vec<&str> = r.split('/').collect();
        match kind {
            ArnKind::Organization => {
                parts.len() == 2 && parts[0] == "organization" && parts[1].starts_with("o-")
            }
            ArnKind::OrganizationalUnit => {
                parts.len() == 3
                    && parts[0] == "ou"
                    && parts[1].starts_with("o-")
                    && parts[2].starts_with("ou-")
            }
        }
    };
    let ok = fields.len() == 6
        && fields[0] == "arn"
        && fields[1].starts_with("aws")
        && fields[2] == "organizations"
        && fields[3].is_empty()
        && validate_account(fields[4]).is_ok()
        && resource_ok(fields[5]);
    if ok {
        Ok(())
    } else {
        Err(AwsError::Invalid(format!(
            "`{arn}` is not an {what} ARN (an id alone is refused by EC2), e.g. {example}"
        )))
    }
}

/// Parses `k=v,k2=v2` tags.
pub fn parse_tags(s: &str) -> Result<Vec<(String, String)>, AwsError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.trim().into())),
            _ => Err(AwsError::Invalid(format!("tag `{p}` is not KEY=VALUE"))),
        })
        .collect()
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
    pub fn validate(&self) -> Result<(), AwsError> {
        for a in &self.accounts {
            validate_account(a)?;
        }
        for a in &self.orgs {
            validate_arn(a, ArnKind::Organization)?;
        }
        for a in &self.ous {
            validate_arn(a, ArnKind::OrganizationalUnit)?;
        }
        Ok(())
    }

    fn permissions(&self) -> Vec<LaunchPermission> {
        let mut out: Vec<LaunchPermission> = Vec::new();
        out.extend(
            self.accounts
                .iter()
                .map(|a| LaunchPermission::builder().user_id(a).build()),
        );
        out.extend(
            self.orgs
                .iter()
                .map(|a| LaunchPermission::builder().organization_arn(a).build()),
        );
        out.extend(self.ous.iter().map(|a| {
            LaunchPermission::builder()
                .organizational_unit_arn(a)
                .build()
        }));
        out
    }
}

/// An AMI in one region.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RegionImage {
    /// The region.
    pub region: String,
    /// The AMI id.
    pub image_id: String,
    /// Its EBS snapshots.
    pub snapshot_ids: Vec<String>,
}

/// Everything to do after the import.
#[derive(Clone, Debug, Default)]
pub struct Distribution {
    /// The AMI's name (3–128 characters).
    pub name: String,
    /// Its description.
    pub description: String,
    /// Tags for the AMI and its snapshots, in every region.
    pub tags: Vec<(String, String)>,
    /// Copies to other regions.
    pub regions: Vec<RegionCopy>,
    /// Launch permissions, in every region.
    pub sharing: Sharing,
}

/// Checks an AMI name as CopyImage does (3–128 of `A-Za-z0-9()[] ./-'@_`).
pub fn validate_name(name: &str) -> Result<(), AwsError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c);
    if !(3..=128).contains(&name.len()) || !name.chars().all(ok_char) {
        return Err(AwsError::Invalid(format!(
            "AMI name `{name}` is invalid: it needs 3 to 128 characters from letters, digits and ()[] ./-'@_"
        )));
    }
    Ok(())
}

/// Waits until DescribeImages says `available` (fails on `failed`).
pub async fn wait_available(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
    opts: PollOptions,
) -> Result<(), AwsError> {
    poll::wait(
        opts,
        || async {
            let out = describe_image(ec2, image_id).await?;
            let img = out.images().first();
            let state = img.and_then(|i| i.state()).map(|s| s.as_str().to_string());
            let status = match state.as_deref() {
                Some("available") => "completed",
                Some("failed") | Some("deregistered") | None => "deleted",
                Some(other) => other,
            };
            Ok(TaskStatus {
                task_id: image_id.into(),
                status: status.into(),
                message: img
                    .and_then(|i| i.state_reason())
                    .and_then(|r| r.message())
                    .map(Into::into)
                    .or(state),
                progress: None,
                result_id: Some(image_id.into()),
            })
        },
        &|_| {},
    )
    .await
    .map(|_| ())
}

/// DescribeImages of one AMI.
async fn describe_image(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
) -> Result<aws_sdk_ec2::operation::describe_images::DescribeImagesOutput, AwsError> {
    ec2.describe_images()
        .image_ids(image_id)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("DescribeImages {image_id}"),
            message: sdk_message(&e),
        })
}

/// The EBS snapshot ids of an AMI's block device mappings.
pub async fn snapshots_of(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
) -> Result<Vec<String>, AwsError> {
    let out = describe_image(ec2, image_id).await?;
    Ok(out
        .images()
        .iter()
        .flat_map(|i| i.block_device_mappings())
        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
        .collect())
}

/// CreateTags on the given resources.
pub async fn tag(
    ec2: &aws_sdk_ec2::Client,
    resources: &[String],
    tags: &[(String, String)],
) -> Result<(), AwsError> {
    if tags.is_empty() || resources.is_empty() {
        return Ok(());
    }
    ec2.create_tags()
        .set_resources(Some(resources.to_vec()))
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("CreateTags on {}", resources.join(", ")),
            message: sdk_message(&e),
        })?;
    Ok(())
}

/// CopyImage of `source` (in `source_region`) into `dst`'s region, named
/// `name`; waits until the copy is available and returns its id.
pub async fn copy(
    dst: &Clients,
    source_region: &str,
    source: &str,
    name: &str,
    description: &str,
    kms_key: Option<&str>,
    opts: PollOptions,
) -> Result<String, AwsError> {
    let mut call = dst
        .ec2
        .copy_image()
        .source_region(source_region)
        .source_image_id(source)
        .name(name)
        .description(description);
    if let Some(k) = kms_key {
        call = call.encrypted(true).kms_key_id(k);
    }
    let out = call.send().await.map_err(|e| AwsError::Api {
        what: format!("CopyImage of {source} ({source_region}) to {}", dst.region),
        message: sdk_message(&e),
    })?;
    let id = out
        .image_id()
        .ok_or_else(|| AwsError::Unexpected("CopyImage returned no image id".into()))?
        .to_string();
    wait_available(&dst.ec2, &id, opts).await?;
    Ok(id)
}

/// DeregisterImage.
pub async fn deregister(ec2: &aws_sdk_ec2::Client, image_id: &str) -> Result<(), AwsError> {
    ec2.deregister_image()
        .image_id(image_id)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("DeregisterImage {image_id}"),
            message: sdk_message(&e),
        })?;
    Ok(())
}

/// Grants launch permissions (one ModifyImageAttribute call).
pub async fn share(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
    sharing: &Sharing,
) -> Result<(), AwsError> {
    if sharing.is_empty() {
        return Ok(());
    }
    ec2.modify_image_attribute()
        .image_id(image_id)
        .launch_permission(
            LaunchPermissionModifications::builder()
                .set_add(Some(sharing.permissions()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("ModifyImageAttribute launchPermission on {image_id}"),
            message: sdk_message(&e),
        })?;
    Ok(())
}

/// Tags and shares the AMI in its region, and returns it with its snapshots.
async fn finish_in_region(
    clients: &Clients,
    image_id: &str,
    dist: &Distribution,
) -> Result<RegionImage, AwsError> {
    let snapshot_ids = snapshots_of(&clients.ec2, image_id).await?;
    let mut resources = vec![image_id.to_string()];
    resources.extend(snapshot_ids.iter().cloned());
    tag(&clients.ec2, &resources, &dist.tags).await?;
    share(&clients.ec2, image_id, &dist.sharing).await?;
    Ok(RegionImage {
        region: clients.region.clone(),
        image_id: image_id.into(),
        snapshot_ids,
    })
}

/// Renames the imported AMI (copy, then deregister `imported`) unless it
/// is `already_named` (RegisterImage gave it the name), tags and shares it,
/// then copies it to every region of `dist`. Returns every AMI, the home
/// region's first. `progress` gets one line per step.
pub async fn distribute(
    home: &Clients,
    imported: &str,
    already_named: bool,
    dist: &Distribution,
    opts: PollOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<RegionImage>, AwsError> {
    let named = if already_named {
        imported.to_string()
    } else {
        progress(&format!("naming {imported} `{}` (CopyImage)", dist.name));
        let named = copy(
            home,
            &home.region,
            imported,
            &dist.name,
            &dist.description,
            None,
            opts,
        )
        .await?;
        deregister(&home.ec2, imported).await?;
        progress(&format!(
            "{named} in {}; deregistered {imported}",
            home.region
        ));
        named
    };
    let mut out = vec![finish_in_region(home, &named, dist).await?];
    for rc in &dist.regions {
        progress(&format!("copying {named} to {}", rc.region));
        let dst = home.for_region(&rc.region).await;
        let id = copy(
            &dst,
            &home.region,
            &named,
            &dist.name,
            &dist.description,
            rc.kms_key.as_deref(),
            opts,
        )
        .await?;
        progress(&format!("{id} in {}", rc.region));
        out.push(finish_in_region(&dst, &id, dist).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_copies_with_optional_keys() {
        assert_eq!(
            parse_region_copies("eu-west-1, us-west-2=arn:aws:kms:us-west-2:1:key/x").unwrap(),
            vec![
                RegionCopy {
                    region: "eu-west-1".into(),
                    kms_key: None
                },
                RegionCopy {
                    region: "us-west-2".into(),
                    kms_key: Some("arn:aws:kms:us-west-2:1:key/x".into())
                },
            ]
        );
        assert!(parse_region_copies("eu west")
            .unwrap_err()
            .is_invalid_input());
    }

    #[test]
    fn tags_and_names_and_sharing() {
        assert_eq!(
            parse_tags("a=1,b=").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "".into())]
        );
        assert!(parse_tags("novalue").is_err());
        assert!(validate_name("web-1.0 (x)").is_ok());
        assert!(validate_name("ab").is_err());
        assert!(validate_name("a*b").is_err());
        let mut s = Sharing {
            accounts: vec!["111122223333".into()],
            ..Default::default()
        };
        assert!(s.validate().is_ok());
        s.orgs.push("o-abc".into());
        assert!(s.validate().unwrap_err().to_string().contains("ARN"));
        s.orgs.clear();
        s.accounts.push("12".into());
        assert!(s.validate().is_err());
    }

    #[test]
    fn regions_and_arns() {
        for r in ["us-east-1", "eu-west-1", "us-gov-west-1", "ap-southeast-2"] {
            assert!(validate_region(r).is_ok(), "{r}");
        }
        for r in ["us-east", "US-east-1", "useast1", "u-east-1", "us--1", ""] {
            assert!(validate_region(r).is_err(), "{r}");
        }
        let org = "arn:aws:organizations::123456789012:organization/o-abc123def4";
        let ou = "arn:aws:organizations::123456789012:ou/o-abc123def4/ou-ab12-cdef3456";
        assert!(validate_arn(org, ArnKind::Organization).is_ok());
        assert!(validate_arn(ou, ArnKind::OrganizationalUnit).is_ok());
        assert!(validate_arn(ou, ArnKind::Organization).is_err());
        assert!(validate_arn(org, ArnKind::OrganizationalUnit).is_err());
        assert!(validate_arn(
            "arn:aws:organizations::12:organization/o-a",
            ArnKind::Organization
        )
        .is_err());
        assert!(validate_arn(
            "arn:aws:iam::123456789012:organization/o-a",
            ArnKind::Organization
        )
        .is_err());
    }
}
