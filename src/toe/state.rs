//! The saved state of a run stopped for a reboot, so that running the same
//! command again resumes it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::actions::spec::OsPlatform;
use super::load::{self, LoadError, LoadedDocument};
use super::runner::{DocumentRun, Progress};

const STATE_FILE: &str = "executionstate.json";
const FORMAT: u32 = 1;

/// A document as saved: its text, so the resumed run uses exactly what ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedDocument {
    /// Identity (canonical path or `builtin:NAME`).
    pub id: String,
    /// The path as the user gave it.
    pub display: String,
    /// Folder for relative ExecuteDocument paths.
    pub base_dir: Option<PathBuf>,
    /// The document text.
    pub text: String,
    /// Final parameter values.
    pub parameters: BTreeMap<String, String>,
}

/// A run stopped for a reboot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedRun {
    /// State file format version.
    pub format: u32,
    /// The log folder of the run.
    pub log_folder: PathBuf,
    /// The `--phases` filter.
    pub phases: Option<Vec<String>>,
    /// The documents.
    pub documents: Vec<SavedDocument>,
    /// What has run so far, and where to continue.
    pub progress: Progress,
    /// The parameters whose values are secrets (`--secret-parameters`),
    /// registered for redaction again when the run resumes. The state file
    /// holds their values, as a resumed run needs them: it is written with
    /// mode 0600 and removed when the run finishes.
    #[serde(default)]
    pub secret_parameters: Vec<String>,
}

impl SavedRun {
    /// Saves a run's state.
    pub fn new(
        log_folder: &Path,
        phases: Option<Vec<String>>,
        docs: &[DocumentRun],
        progress: Progress,
    ) -> Self {
        SavedRun {
            format: FORMAT,
            log_folder: log_folder.to_path_buf(),
            phases,
            documents: docs
                .iter()
                .map(|d| SavedDocument {
                    id: d.loaded.id.clone(),
                    display: d.loaded.doc.file.clone(),
                    base_dir: d.loaded.base_dir.clone(),
                    text: d.loaded.doc.text.clone(),
                    parameters: d.parameters.clone(),
                })
                .collect(),
            progress,
            secret_parameters: Vec::new(),
        }
    }

    /// Parses the saved documents again.
    pub fn documents(&self, os: OsPlatform) -> Result<Vec<DocumentRun>, LoadError> {
        self.documents
            .iter()
            .map(|s| {
                let loaded: LoadedDocument =
                    load::from_text(s.id.clone(), &s.display, &s.text, s.base_dir.clone(), os)?;
                Ok(DocumentRun {
                    loaded,
                    parameters: s.parameters.clone(),
                })
            })
            .collect()
    }

    /// The state file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Writes the state atomically, readable only by its owner (it may hold parameter values).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, Self::path(dir))
    }

    /// Reads the state in `dir`, if there is one.
    pub fn load(dir: &Path) -> std::io::Result<Option<SavedRun>> {
        let path = Self::path(dir);
        // it holds every document's text: a few times the limit of one
        match crate::util::read::read_bounded(&path, 4 * crate::util::read::MAX_DOCUMENT_BYTES) {
            Ok(bytes) => {
                let saved: SavedRun = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::other(format!("{}: not a kiln run state: {e}", path.display()))
                })?;
                if saved.format != FORMAT {
                    return Err(std::io::Error::other(format!(
                        "{}: state format {} is not supported",
                        path.display(),
                        saved.format
                    )));
                }
                Ok(Some(saved))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(std::io::Error::other(format!(
                "{}: {}",
                crate::util::display::Escaped(&path.display().to_string()),
                crate::util::display::chain(&e)
            ))),
        }
    }

    /// Removes the state in `dir` (after the run finished).
    pub fn clear(dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(Self::path(dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
