//! VM Import: ImportImage, or ImportSnapshot + RegisterImage (for kernels
//! VM Import does not list), their Describe calls, and CancelImportTask.

use aws_sdk_ec2::types::{
    ArchitectureValues, BlockDeviceMapping, BootModeValues, EbsBlockDevice, ImageDiskContainer,
    ResourceType, SnapshotDiskContainer, Tag, TagSpecification, UserBucket,
};

use super::poll::{parse_progress, TaskStatus};
use super::{sdk_message, AwsError};
use crate::ami::{BootMode, DiskFormat};

/// The SDK's value for a boot mode.
fn boot_mode_value(mode: BootMode) -> BootModeValues {
    match mode {
        BootMode::LegacyBios => BootModeValues::LegacyBios,
        BootMode::Uefi => BootModeValues::Uefi,
    }
}

/// What to import, and how.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    /// Bucket holding the disk.
    pub bucket: String,
    /// Key of the disk.
    pub key: String,
    /// Its format.
    pub format: DiskFormat,
    /// `x86_64` or `i386`.
    pub architecture: String,
    /// Boot mode.
    pub boot_mode: BootMode,
    /// Encrypt the snapshots, with this KMS key (`None`: the default key).
    pub encrypt: Option<Option<String>>,
    /// The service role (`vmimport`).
    pub role_name: String,
    /// Tags of the import task.
    pub task_tags: Vec<(String, String)>,
    /// Description of the task and image.
    pub description: String,
}

fn tag_spec(kind: ResourceType, tags: &[(String, String)]) -> Option<TagSpecification> {
    if tags.is_empty() {
        return None;
    }
    let mut spec = TagSpecification::builder().resource_type(kind);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(k).value(v).build());
    }
    Some(spec.build())
}

fn user_bucket(req: &ImportRequest) -> UserBucket {
    UserBucket::builder()
        .s3_bucket(&req.bucket)
        .s3_key(&req.key)
        .build()
}

/// Starts ImportImage (Platform Linux, LicenseType BYOL); returns the task id.
pub async fn start_import_image(
    ec2: &aws_sdk_ec2::Client,
    req: &ImportRequest,
) -> Result<String, AwsError> {
    let disk = ImageDiskContainer::builder()
        .format(req.format.api_name())
        .user_bucket(user_bucket(req))
        .description(&req.description)
        .build();
    let mut call = ec2
        .import_image()
        .disk_containers(disk)
        .architecture(&req.architecture)
        .boot_mode(boot_mode_value(req.boot_mode))
        .platform("Linux")
        .license_type("BYOL")
        .role_name(&req.role_name)
        .description(&req.description)
        .set_tag_specifications(
            tag_spec(ResourceType::ImportImageTask, &req.task_tags).map(|t| vec![t]),
        );
    if let Some(key) = &req.encrypt {
        call = call.encrypted(true).set_kms_key_id(key.clone());
    }
    let out = call.send().await.map_err(|e| AwsError::Api {
        what: format!("ImportImage of s3://{}/{}", req.bucket, req.key),
        message: sdk_message(&e),
    })?;
    out.import_task_id()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Unexpected("ImportImage returned no task id".into()))
}

/// Starts ImportSnapshot; returns the task id.
pub async fn start_import_snapshot(
    ec2: &aws_sdk_ec2::Client,
    req: &ImportRequest,
) -> Result<String, AwsError> {
    let disk = SnapshotDiskContainer::builder()
        .format(req.format.api_name())
        .user_bucket(user_bucket(req))
        .description(&req.description)
        .build();
    let mut call = ec2
        .import_snapshot()
        .disk_container(disk)
        .role_name(&req.role_name)
        .description(&req.description)
        .set_tag_specifications(
            tag_spec(ResourceType::ImportSnapshotTask, &req.task_tags).map(|t| vec![t]),
        );
    if let Some(key) = &req.encrypt {
        call = call.encrypted(true).set_kms_key_id(key.clone());
    }
    let out = call.send().await.map_err(|e| AwsError::Api {
        what: format!("ImportSnapshot of s3://{}/{}", req.bucket, req.key),
        message: sdk_message(&e),
    })?;
    out.import_task_id()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Unexpected("ImportSnapshot returned no task id".into()))
}

/// One DescribeImportImageTasks observation (result: the AMI id).
pub async fn describe_image_task(
    ec2: &aws_sdk_ec2::Client,
    task_id: &str,
) -> Result<TaskStatus, AwsError> {
    let out = ec2
        .describe_import_image_tasks()
        .import_task_ids(task_id)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("DescribeImportImageTasks {task_id}"),
            message: sdk_message(&e),
        })?;
    let t = out
        .import_image_tasks()
        .iter()
        .find(|t| t.import_task_id() == Some(task_id))
        .ok_or_else(|| AwsError::Unexpected(format!("import task {task_id} not found")))?;
    Ok(TaskStatus {
        task_id: task_id.into(),
        status: t.status().unwrap_or("").into(),
        message: t.status_message().map(Into::into),
        progress: parse_progress(t.progress()),
        result_id: t.image_id().map(Into::into),
    })
}

/// One DescribeImportSnapshotTasks observation (result: the snapshot id).
pub async fn describe_snapshot_task(
    ec2: &aws_sdk_ec2::Client,
    task_id: &str,
) -> Result<TaskStatus, AwsError> {
    let out = ec2
        .describe_import_snapshot_tasks()
        .import_task_ids(task_id)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("DescribeImportSnapshotTasks {task_id}"),
            message: sdk_message(&e),
        })?;
    let d = out
        .import_snapshot_tasks()
        .iter()
        .find(|t| t.import_task_id() == Some(task_id))
        .and_then(|t| t.snapshot_task_detail())
        .ok_or_else(|| AwsError::Unexpected(format!("import task {task_id} not found")))?;
    Ok(TaskStatus {
        task_id: task_id.into(),
        status: d.status().unwrap_or("").into(),
        message: d.status_message().map(Into::into),
        progress: parse_progress(d.progress()),
        result_id: d.snapshot_id().map(Into::into),
    })
}

/// Registers an AMI from an imported snapshot: HVM, ENA, the architecture
/// and boot mode given, root device `/dev/sda1`.
pub async fn register_from_snapshot(
    ec2: &aws_sdk_ec2::Client,
    snapshot_id: &str,
    name: &str,
    req: &ImportRequest,
) -> Result<String, AwsError> {
    let arch = ArchitectureValues::from(req.architecture.as_str());
    let out = ec2
        .register_image()
        .name(name)
        .description(&req.description)
        .architecture(arch)
        .virtualization_type("hvm")
        .ena_support(true)
        .boot_mode(boot_mode_value(req.boot_mode))
        .root_device_name("/dev/sda1")
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(
                    EbsBlockDevice::builder()
                        .snapshot_id(snapshot_id)
                        .delete_on_termination(true)
                        .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("RegisterImage from snapshot {snapshot_id}"),
            message: sdk_message(&e),
        })?;
    out.image_id()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Unexpected("RegisterImage returned no image id".into()))
}

/// CancelImportTask.
pub async fn cancel(
    ec2: &aws_sdk_ec2::Client,
    task_id: &str,
    reason: &str,
) -> Result<(), AwsError> {
    ec2.cancel_import_task()
        .import_task_id(task_id)
        .cancel_reason(reason)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("CancelImportTask {task_id}"),
            message: sdk_message(&e),
        })?;
    Ok(())
}

/// Cancels an import task when dropped unarmed (e.g. on Ctrl-C, which drops
/// the running future). Needs a multi-threaded tokio runtime.
#[derive(Debug)]
pub struct CancelOnDrop {
    ec2: aws_sdk_ec2::Client,
    task_id: Option<String>,
}

impl CancelOnDrop {
    /// Guards `task_id`.
    pub fn new(ec2: &aws_sdk_ec2::Client, task_id: &str) -> Self {
        CancelOnDrop {
            ec2: ec2.clone(),
            task_id: Some(task_id.into()),
        }
    }

    /// The task ended (completed or failed): nothing to cancel.
    pub fn disarm(&mut self) {
        self.task_id = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(task_id) = self.task_id.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            eprintln!("kiln: import task {task_id} left running (no runtime to cancel it)");
            return;
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            eprintln!("kiln: import task {task_id} left running; cancel it with `aws ec2 cancel-import-task`");
            return;
        }
        let ec2 = self.ec2.clone();
        let result = tokio::task::block_in_place(|| {
            handle.block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    cancel(&ec2, &task_id, "cancelled by kiln (interrupted)"),
                )
                .await
            })
        });
        match result {
            Ok(Ok(())) => eprintln!("kiln: cancelled import task {task_id}"),
            Ok(Err(e)) => eprintln!("kiln: could not cancel import task {task_id}: {e}"),
            Err(_) => eprintln!("kiln: cancelling import task {task_id} timed out"),
        }
    }
}
