//! kiln's AWS side: S3 multipart upload of a disk image, VM Import
//! (ImportImage, or ImportSnapshot + RegisterImage), task polling, naming,
//! copying and sharing the AMI, and ExportImage back to a local file.
//!
//! Credentials, region and endpoints come from the standard AWS
//! configuration chain (environment, profiles), including
//! `AWS_ENDPOINT_URL`, so the same code talks to a local test peer.

pub mod client;
pub mod distribute;
pub mod export;
pub mod flow;
pub mod import;
pub mod initramfs;
pub mod poll;
pub mod preflight;
pub mod role;
pub mod upload;

pub use client::Clients;

/// Errors of the AWS side.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An AWS API call failed.
    #[error("{what}: {message}")]
    Api {
        /// What was attempted, e.g. `ImportImage of s3://b/k`.
        what: String,
        /// The service's error code and message (never credentials).
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A VM Import/Export task ended in `deleting`/`deleted`.
    #[error("task {task_id} failed ({status}): {message}")]
    TaskFailed {
        /// The import or export task id.
        task_id: String,
        /// Its final status.
        status: String,
        /// Its status message, verbatim.
        message: String,
    },
    /// A task made no progress for too many polls.
    #[error("task {task_id} made no progress in {polls} polls (last: {last}); it may be stuck")]
    Stalled {
        /// The task id.
        task_id: String,
        /// How many polls saw no change.
        polls: u32,
        /// The last status seen.
        last: String,
    },
    /// The service answered something kiln cannot use.
    #[error("{0}")]
    Unexpected(String),
    /// A `qemu-img` step failed.
    #[error(transparent)]
    Img(#[from] crate::disk::img::ImgError),
    /// A tool (debugfs, mtools) could not run or failed: not a finding
    /// about the image.
    #[error(transparent)]
    Tool(#[from] crate::util::task::TaskError),
    /// Pre-flight found problems VM Import would fail on.
    #[error("pre-flight found {} problem(s) VM Import would fail on (--skip-preflight to import anyway):{}", .0.len(), preflight_list(.0))]
    Preflight(Vec<preflight::Finding>),
    /// kiln's VMDK writer failed.
    #[error("writing the streamOptimized VMDK")]
    Vmdk(#[from] crate::export::vmdk::VmdkError),
    /// Bad user input (exit code 2).
    #[error("{0}")]
    Invalid(String),
}

fn preflight_list(f: &[preflight::Finding]) -> String {
    f.iter()
        .map(|x| format!("\n  {}: {}\n    fix: {}", x.check, x.message, x.fix))
        .collect()
}

impl AwsError {
    /// Builds an [`AwsError::Api`] from an SDK error, with its code and message.
    pub fn api<E, R>(what: impl Into<String>, err: &aws_sdk_ec2::error::SdkError<E, R>) -> Self
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        AwsError::Api {
            what: what.into(),
            message: sdk_message(err),
        }
    }

    /// True when the error is the user's to fix (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            AwsError::Invalid(_) => true,
            // an image that would read other host files
            AwsError::Img(e) => e.is_invalid_input(),
            _ => false,
        }
    }
}

/// `Code: message` of an SDK error, or its display chain for transport errors.
pub fn sdk_message<E, R>(err: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let aws_sdk_ec2::error::SdkError::ServiceError(s) = err {
        let e = s.err();
        if let (Some(code), msg) = (e.code(), e.message()) {
            return format!("{code}: {}", msg.unwrap_or(""));
        }
    }
    aws_sdk_ec2::error::DisplayErrorContext(err).to_string()
}

impl From<crate::ami::InvalidSetting> for AwsError {
    fn from(e: crate::ami::InvalidSetting) -> Self {
        AwsError::Invalid(e.0)
    }
}

impl From<crate::util::io::IoError> for AwsError {
    fn from(e: crate::util::io::IoError) -> Self {
        AwsError::Io {
            what: e.what,
            path: e.path,
            source: e.source,
        }
    }
}
