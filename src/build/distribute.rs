//! The distribute stage of a build: the tested image exported to the
//! recipe's formats inside the build's private stage folder, so they are
//! published (or not) together with the image, and imported as an AMI
//! when the recipe has `distribution.ami`.

use std::path::{Path, PathBuf};

use crate::ami::AmiSpec;
use crate::aws::distribute::RegionImage;
use crate::aws::flow::{self, LocalSettings};
use crate::aws::{AwsError, Clients};
use crate::export::format::ExportFormat;
use crate::export::ovf::VmSettings;
use crate::export::write::{self, ExportError, ExportJob};
use crate::util::cancel::Cancel;
use crate::util::io::ProgressFn;

/// The base name of a build's files (`image.qcow2`, `image.vmdk`, …).
pub const IMAGE_BASE: &str = "image";

/// A file the distribute stage wrote, relative to the stage folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distributed {
    /// The main file of the export.
    pub path: PathBuf,
    /// Its format.
    pub format: ExportFormat,
}

/// Exports `image` (the flattened qcow2 in `stage`) to each format; the
/// `qcow2` format is the image itself (already zstd-compressed).
pub async fn distribute(
    image: &Path,
    stage: &Path,
    formats: &[ExportFormat],
    progress: ProgressFn<'_>,
) -> Result<Vec<Distributed>, ExportError> {
    let cancel = Cancel::new();
    let mut out = Vec::new();
    for &format in formats {
        let file_name = format.file_name(IMAGE_BASE);
        if stage.join(&file_name) == image {
            progress(&format!("{file_name}: the built image is already {format}"));
            out.push(Distributed {
                path: PathBuf::from(file_name),
                format,
            });
            continue;
        }
        let job = ExportJob {
            source: image,
            format,
            dir: stage,
            file_name: &file_name,
            threads: None,
            // recipes carry no machine settings yet: OVF/OVA get the defaults
            machine: VmSettings::default(),
            source_format: None,
        };
        let exported = write::export(&job, &cancel, progress).await?;
        progress(&format!(
            "{file_name}: written and checked ({})",
            exported.report.checked.join("; ")
        ));
        out.push(Distributed {
            path: PathBuf::from(file_name),
            format,
        });
    }
    Ok(out)
}

/// The AMI name of a build when the recipe gives none: `<name>-<version>`.
pub fn default_ami_name(name: &str, version: &str) -> String {
    format!("{name}-{version}")
}

/// Imports the tested `image` as an AMI per `spec` (VM Import, then name,
/// tag, copy and share), with `home`'s clients (the import region);
/// converted disks and upload state go to `work_dir`, which is never
/// published. Returns the AMI in every region, the import region's first.
pub async fn import_ami(
    home: &Clients,
    image: &Path,
    spec: &AmiSpec,
    default_name: &str,
    work_dir: &Path,
    local: LocalSettings,
    progress: ProgressFn<'_>,
) -> Result<Vec<RegionImage>, AwsError> {
    let req = flow::request(
        spec,
        image.to_path_buf(),
        default_name,
        work_dir.to_path_buf(),
        local,
    );
    let done = flow::import(home, &req, &|e| progress(&format!("ami: {}", e.line()))).await?;
    for i in &done.images {
        progress(&format!("ami: {} in {}", i.image_id, i.region));
    }
    Ok(done.images)
}
