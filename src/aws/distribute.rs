//! After the import: give the AMI its name (CopyImage, then deregister the
//! intermediate), tag the AMI and its snapshots, copy it to other regions
//! (encrypted with a per-region KMS key where given), and grant launch
//! permissions to accounts, organizations and OUs.

use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, Tag};

use super::client::Clients;
use super::poll::{self, PollOptions, TaskStatus};
use super::{sdk_message, AwsError};
use crate::ami::{RegionCopy, Sharing};

/// The launch permissions that grant `sharing`.
fn permissions(sharing: &Sharing) -> Vec<LaunchPermission> {
    let mut out: Vec<LaunchPermission> = Vec::new();
    out.extend(
        sharing
            .accounts
            .iter()
            .map(|a| LaunchPermission::builder().user_id(a).build()),
    );
    out.extend(
        sharing
            .orgs
            .iter()
            .map(|a| LaunchPermission::builder().organization_arn(a).build()),
    );
    out.extend(sharing.ous.iter().map(|a| {
        LaunchPermission::builder()
            .organizational_unit_arn(a)
            .build()
    }));
    out
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
                .set_add(Some(permissions(sharing)))
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
