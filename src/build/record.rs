//! The build's entry in the image catalog: a build number assigned when the
//! parent is known, the published files and test results when it is
//! published, the reason when it fails. See [`crate::catalog`].

use std::collections::BTreeMap;
use std::path::Path;

use super::inputs::{self, ComponentInput, Inputs, ParameterInput};
use super::manifest::AmiInfo;
use super::manifest::Manifest;
use super::parent::ResolvedParent;
use crate::catalog::{Ami, BuildNumber, Catalog, CatalogError, NewBuild, Parent};
use crate::export::format::ExportFormat;
use crate::recipe::{Recipe, ResolvedComponent};

/// Errors of recording a build in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The catalog could not be opened or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The test results could not be turned into JSON.
    #[error("recording the build's test results")]
    Json(#[from] serde_json::Error),
}

/// What went into a build, for its inputs digest (secret values left out).
pub fn inputs(
    recipe_sha256: &str,
    parent: &ResolvedParent,
    components: &[ResolvedComponent],
    formats: &[ExportFormat],
    ami_sha256: Option<String>,
) -> Inputs {
    Inputs {
        recipe_sha256: recipe_sha256.to_string(),
        parent_sha256: parent.sha256.clone(),
        components: components
            .iter()
            .map(|c| ComponentInput {
                source: c.loaded.id.clone(),
                sha256: c.text_sha256.clone(),
                parameters: c
                    .parameters
                    .iter()
                    .map(|(k, v)| {
                        let secret = c.secrets.iter().any(|s| s == v && !s.is_empty());
                        let value = if secret {
                            ParameterInput::Secret
                        } else {
                            ParameterInput::Value(v.clone())
                        };
                        (k.clone(), value)
                    })
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect(),
        mirror_index_sha256: parent.mirror_index_sha256.clone(),
        formats: formats.iter().map(|f| f.name().to_string()).collect(),
        ami_sha256,
    }
}

/// Who runs a build and where its events go, for its catalog entry.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// The pipeline, if a pipeline runs the build.
    pub pipeline: Option<String>,
    /// The build's event file.
    pub events: Option<std::path::PathBuf>,
}

/// A build's catalog entry from its start to its end. Dropped before the
/// build was settled (Ctrl-C, SIGTERM, a dropped future), it records the
/// build as failed, so no entry stays `building` after kiln is gone.
pub struct Recorder {
    catalog: Catalog,
    build: Option<BuildNumber>,
    settled: bool,
}

impl Recorder {
    /// Opens (or creates) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        Ok(Recorder {
            catalog: Catalog::open(path)?,
            build: None,
            settled: false,
        })
    }

    /// The build number, once [`Recorder::begin`] assigned it.
    pub fn build(&self) -> Option<BuildNumber> {
        self.build
    }

    /// Records the start of a build of `recipe` from `parent` and assigns
    /// its build number; a parent kiln built is linked by its disk digest.
    pub fn begin(
        &mut self,
        recipe: &Recipe,
        parent: &ResolvedParent,
        inputs: &Inputs,
        origin: &Origin,
    ) -> Result<BuildNumber, RecordError> {
        let parent_image = self.catalog.find_by_disk_digest(&parent.sha256)?;
        let build = self.catalog.begin_build(&NewBuild {
            name: recipe.name.clone(),
            version: recipe.version,
            inputs_digest: inputs::inputs_digest(inputs),
            inputs: Some(serde_json::to_value(inputs)?),
            events: origin.events.as_ref().map(|p| p.display().to_string()),
            parent: Some(Parent {
                image_id: parent_image.map(|i| i.id),
                sha256: parent.sha256.clone(),
                origin: parent.origin.clone(),
            }),
            pipeline: origin.pipeline.clone(),
        })?;
        self.build = Some(build);
        Ok(build)
    }

    /// Records the AMIs the build was imported as (kept even if the build
    /// fails later: they exist in AWS).
    pub fn amis(&mut self, amis: &[AmiInfo]) -> Result<(), RecordError> {
        let Some(build) = self.build else {
            return Ok(());
        };
        for a in amis {
            self.catalog.add_ami(
                build.id,
                &Ami {
                    region: a.region.clone(),
                    ami_id: a.ami_id.clone(),
                },
            )?;
        }
        Ok(())
    }

    /// Records the build as published in `dir` with `manifest`.
    pub fn published(&mut self, manifest: &Manifest, dir: &Path) -> Result<(), RecordError> {
        let Some(build) = self.build else {
            return Ok(());
        };
        self.settled = true;
        let done = manifest.finished_build(dir)?;
        Ok(self.catalog.finish_build(build.id, &done)?)
    }

    /// Records the build as failed with `reason`, its logs in `logs`.
    pub fn failed(&mut self, reason: &str, logs: Option<&Path>) -> Result<(), RecordError> {
        let Some(build) = self.build else {
            return Ok(());
        };
        self.settled = true;
        let logs = logs.map(|l| l.display().to_string());
        Ok(self.catalog.fail_build(build.id, reason, logs.as_deref())?)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.settled || self.build.is_none() {
            return;
        }
        if let Err(e) = self.failed("interrupted before it finished", None) {
            // nothing to return an error to while unwinding a dropped build
            eprintln!("warning: the interrupted build was not recorded as failed in the image catalog: {e}");
        }
    }
}
