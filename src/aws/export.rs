//! ExportImage: AMI → S3 object → local file, checked with qemu-img and
//! published atomically; the S3 object is then deleted unless asked to keep
//! it.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_ec2::types::{DiskImageFormat, ExportTaskS3LocationRequest};

use super::poll::{self, parse_progress, PollOptions, TaskStatus};
use super::{sdk_message, AwsError};
use crate::ami::DiskFormat;
use crate::disk::img;
use crate::util::atomic::PendingFile;

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// The AMI.
    pub image_id: String,
    /// The bucket VM Export writes to (it must exist; not SSE-KMS).
    pub bucket: String,
    /// Key prefix, e.g. `exports/`.
    pub prefix: String,
    /// Output format.
    pub format: DiskFormat,
    /// The service role (`vmimport`).
    pub role_name: String,
    /// Keep the exported object in S3 once the download is verified.
    pub keep_object: bool,
}

/// A finished export.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Exported {
    /// The export task id.
    pub task_id: String,
    /// The S3 key written by VM Export.
    pub key: String,
    /// The local file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its virtual disk size.
    pub virtual_size: u64,
    /// Whether the S3 object was deleted after the verified download.
    pub object_deleted: bool,
}

/// The object VM Export writes: `<prefix><task id>.<ext>`.
pub fn export_key(prefix: &str, task_id: &str, format: DiskFormat) -> String {
    format!("{prefix}{task_id}.{}", format.extension())
}

fn sdk_format(f: DiskFormat) -> DiskImageFormat {
    match f {
        DiskFormat::Vmdk => DiskImageFormat::Vmdk,
        DiskFormat::Raw => DiskImageFormat::Raw,
        DiskFormat::Vhd => DiskImageFormat::Vhd,
    }
}

/// Starts ExportImage; returns the task id.
pub async fn start(ec2: &aws_sdk_ec2::Client, req: &ExportRequest) -> Result<String, AwsError> {
    let out = ec2
        .export_image()
        .image_id(&req.image_id)
        .disk_image_format(sdk_format(req.format))
        .s3_export_location(
            ExportTaskS3LocationRequest::builder()
                .s3_bucket(&req.bucket)
                .s3_prefix(&req.prefix)
                .build(),
        )
        .role_name(&req.role_name)
        .description(format!("kiln export of {}", req.image_id))
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!(
                "ExportImage of {} to s3://{}/{}",
                req.image_id, req.bucket, req.prefix
            ),
            message: sdk_message(&e),
        })?;
    out.export_image_task_id()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Unexpected("ExportImage returned no task id".into()))
}

/// One DescribeExportImageTasks observation (result: the task id).
pub async fn describe(ec2: &aws_sdk_ec2::Client, task_id: &str) -> Result<TaskStatus, AwsError> {
    let out = ec2
        .describe_export_image_tasks()
        .export_image_task_ids(task_id)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("DescribeExportImageTasks {task_id}"),
            message: sdk_message(&e),
        })?;
    let t = out
        .export_image_tasks()
        .iter()
        .find(|t| t.export_image_task_id() == Some(task_id))
        .ok_or_else(|| AwsError::Unexpected(format!("export task {task_id} not found")))?;
    Ok(TaskStatus {
        task_id: task_id.into(),
        status: t.status().unwrap_or("").into(),
        message: t.status_message().map(Into::into),
        progress: parse_progress(t.progress()),
        result_id: Some(task_id.into()),
    })
}

/// Downloads `s3://bucket/key` to `dest` atomically.
pub async fn download(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    dest: &Path,
) -> Result<(PendingFile, u64), AwsError> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("GetObject s3://{bucket}/{key}"),
            message: sdk_message(&e),
        })?;
    let mut pending = PendingFile::create(dest)?;
    let mut body = out.body;
    let mut bytes = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| AwsError::Api {
        what: format!("download of s3://{bucket}/{key}"),
        message: e.to_string(),
    })? {
        pending
            .file()
            .write_all(&chunk)
            .map_err(|source| AwsError::Io {
                what: "write",
                path: pending.tmp_path().to_path_buf(),
                source,
            })?;
        bytes += chunk.len() as u64;
    }
    Ok((pending, bytes))
}

/// Exports the AMI, waits, downloads the disk to `output`, checks that
/// qemu-img reads it in the requested format, publishes it, and deletes
/// the S3 object (unless `req.keep_object`). A failed delete is an error
/// that names the published file.
pub async fn export(
    ec2: &aws_sdk_ec2::Client,
    s3: &aws_sdk_s3::Client,
    req: &ExportRequest,
    output: &Path,
    opts: PollOptions,
    on_change: &(dyn Fn(&TaskStatus) + Sync),
) -> Result<Exported, AwsError> {
    let task_id = start(ec2, req).await?;
    poll::wait(opts, || describe(ec2, &task_id), on_change).await?;
    let key = export_key(&req.prefix, &task_id, req.format);
    let (pending, bytes) = download(s3, &req.bucket, &key, output).await?;
    let want = match req.format {
        DiskFormat::Vmdk => img::Format::Vmdk,
        DiskFormat::Raw => img::Format::Raw,
        DiskFormat::Vhd => img::Format::Vpc,
    };
    let got = img::detect_format(pending.tmp_path())?;
    if got != want {
        return Err(AwsError::Unexpected(format!(
            "s3://{}/{key} is {} but {} was asked for",
            req.bucket,
            got.qemu_name(),
            want.qemu_name()
        )));
    }
    // the file comes from S3: it must not name other host files
    let info = img::info_untrusted(pending.tmp_path()).await?;
    if req.format == DiskFormat::Vmdk && info.vmdk_create_type.as_deref() != Some("streamOptimized")
    {
        return Err(AwsError::Unexpected(format!(
            "s3://{}/{key} is a {:?} VMDK, not streamOptimized",
            req.bucket, info.vmdk_create_type
        )));
    }
    let path = pending.publish()?;
    let object_deleted = !req.keep_object;
    if object_deleted {
        s3.delete_object()
            .bucket(&req.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| AwsError::Api {
                what: format!(
                    "{} was written, but DeleteObject s3://{}/{key} failed (delete it by hand; --keep-export keeps it)",
                    path.display(),
                    req.bucket
                ),
                message: sdk_message(&e),
            })?;
    }
    Ok(Exported {
        task_id,
        key,
        path,
        bytes,
        virtual_size: info.virtual_size,
        object_deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        assert_eq!(
            export_key("exports/", "export-ami-0123", DiskFormat::Vmdk),
            "exports/export-ami-0123.vmdk"
        );
    }
}
