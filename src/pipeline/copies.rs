//! A published build's further destinations: the pipeline's other output
//! directories (a copy published atomically, like the build itself) and an
//! S3 prefix (every file uploaded under `PREFIX/<name>/<version>/<build>/`).

use std::path::{Path, PathBuf};

use crate::aws::upload::{self, UploadRequest};
use crate::aws::{AwsError, Clients};
use crate::build::workspace::{sync_tree, WorkspaceError};
use crate::util::io::IoError;

/// Why a copy or an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Syncing the copy failed.
    #[error(transparent)]
    Sync(#[from] WorkspaceError),
    /// The destination exists already.
    #[error("{0} already exists; it is not replaced")]
    Exists(PathBuf),
    /// An upload failed.
    #[error("uploading {file} to s3://{bucket}/{key}")]
    Upload {
        /// The local file.
        file: PathBuf,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The cause.
        #[source]
        source: Box<AwsError>,
    },
}

/// Splits `s3://bucket/prefix` into the bucket and the prefix (no leading
/// or trailing `/`; empty for the bucket's root).
pub fn split_s3(location: &str) -> Option<(&str, &str)> {
    let rest = location.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket, prefix.trim_matches('/')))
}

/// The S3 key of `relative` (a path inside the published folder) under
/// `prefix` for `name/version/build`.
pub fn s3_key(prefix: &str, name: &str, version: &str, build: u64, relative: &str) -> String {
    let mut key = String::new();
    if !prefix.is_empty() {
        key.push_str(prefix);
        key.push('/');
    }
    key.push_str(&format!("{name}/{version}/{build}/{relative}"));
    key
}

/// Every regular file under `dir`, as paths relative to it, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>, IoError> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let here = dir.join(&rel);
        for e in std::fs::read_dir(&here).map_err(IoError::at("cannot read", &here))? {
            let e = e.map_err(IoError::at("cannot read", &here))?;
            let ft = e
                .file_type()
                .map_err(IoError::at("cannot stat", &e.path()))?;
            let child = rel.join(e.file_name());
            if ft.is_dir() {
                todo.push(child);
            } else if ft.is_file() {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies the published folder `src` to `dest` (which must not exist):
/// into a hidden folder beside `dest`, fsynced, then renamed. Nothing is
/// left at `dest` or beside it when it fails.
pub fn copy_published(src: &Path, dest: &Path) -> Result<(), CopyError> {
    if dest.exists() {
        return Err(CopyError::Exists(dest.to_path_buf()));
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(IoError::at("cannot create", parent))?;
    let tmp = parent.join(format!(
        ".kiln-copy-{}-{}",
        dest.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<(), CopyError> {
        for rel in files(src)? {
            let to = tmp.join(&rel);
            if let Some(d) = to.parent() {
                std::fs::create_dir_all(d).map_err(IoError::at("cannot create", d))?;
            }
            std::fs::copy(src.join(&rel), &to).map_err(IoError::at("cannot copy to", &to))?;
        }
        sync_tree(&tmp)?;
        std::fs::rename(&tmp, dest).map_err(IoError::at("cannot publish", dest))?;
        std::fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(IoError::at("cannot sync", parent))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Uploads every file of the published folder `dir` to `s3_prefix`
/// (`s3://bucket/prefix`) as `prefix/<name>/<version>/<build>/<file>`,
/// `manifest.json` last (its presence says the upload is whole). Returns
/// the `s3://` URLs written.
pub async fn upload_published(
    clients: &Clients,
    dir: &Path,
    s3_prefix: &str,
    image: (&str, &str, u64),
    work_dir: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<String>, CopyError> {
    let (bucket, prefix) = split_s3(s3_prefix).unwrap_or((s3_prefix, ""));
    let (name, version, build) = image;
    let mut all = files(dir)?;
    // the manifest goes last
    all.sort_by_key(|p| p == Path::new("manifest.json"));
    let mut urls = Vec::new();
    for rel in all {
        let relative = rel.to_string_lossy().replace('\\', "/");
        let key = s3_key(prefix, name, version, build, &relative);
        let req = UploadRequest {
            file: dir.join(&rel),
            bucket: bucket.to_string(),
            key: key.clone(),
            concurrency: 4,
            part_size: None,
            state_file: work_dir.join(format!("upload-{}.json", relative.replace('/', "_"))),
        };
        upload::upload(&clients.s3, &req, &|_| {})
            .await
            .map_err(|source| CopyError::Upload {
                file: req.file.clone(),
                bucket: bucket.to_string(),
                key: key.clone(),
                source: Box::new(source),
            })?;
        let url = format!("s3://{bucket}/{key}");
        progress(&format!("uploaded {url}"));
        urls.push(url);
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_and_keys() {
        assert_eq!(split_s3("s3://b/images/web/"), Some(("b", "images/web")));
        assert_eq!(split_s3("s3://b"), Some(("b", "")));
        assert_eq!(split_s3("s3:///x"), None);
        assert_eq!(split_s3("https://b/x"), None);
        assert_eq!(
            s3_key("images", "web", "1.2.3", 4, "logs/kiln.log"),
            "images/web/1.2.3/4/logs/kiln.log"
        );
        assert_eq!(
            s3_key("", "web", "1.2.3", 4, "image.qcow2"),
            "web/1.2.3/4/image.qcow2"
        );
    }

    #[test]
    fn a_copy_is_whole_or_absent() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("logs")).unwrap();
        std::fs::write(src.join("image.qcow2"), b"disk").unwrap();
        std::fs::write(src.join("logs/kiln.log"), b"log").unwrap();
        let dest = dir.path().join("other/web/1.0.0/3");
        copy_published(&src, &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("logs/kiln.log")).unwrap(), b"log");
        assert!(matches!(
            copy_published(&src, &dest),
            Err(CopyError::Exists(_))
        ));
        // a source that cannot be read leaves nothing behind
        let missing = dir.path().join("nope");
        let dest2 = dir.path().join("other/web/1.0.0/4");
        assert!(copy_published(&missing, &dest2).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("other/web/1.0.0"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["3"]);
    }
}
