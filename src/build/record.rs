//! The build's entry in the image catalog: a build number assigned when the
//! parent is known, the published files and test results when it is
//! published, the reason when it fails. See [`crate::catalog`].

use std::collections::BTreeMap;
use std::path::Path;

use super::manifest::Manifest;
use super::parent::ResolvedParent;
use crate::catalog::{BuildNumber, Catalog, CatalogError, FinishedBuild, NewBuild, Parent};
use crate::export::format::ExportFormat;
use crate::pipeline::digest::{self, ComponentInput, Inputs, ParameterInput};
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
        mirror_index_sha256: None,
        formats: formats.iter().map(|f| f.name().to_string()).collect(),
    }
}

/// Records the start of a build of `recipe` from `parent`; returns its
/// catalog id and build number.
pub fn begin(
    catalog: &mut Catalog,
    recipe: &Recipe,
    parent: &ResolvedParent,
    inputs: &Inputs,
) -> Result<BuildNumber, CatalogError> {
    // a parent kiln built is linked by its disk digest (ancestry)
    let parent_image = catalog.find_by_disk_digest(&parent.sha256)?;
    catalog.begin_build(&NewBuild {
        name: recipe.name.clone(),
        version: recipe.version.clone(),
        inputs_digest: digest::inputs_digest(inputs),
        parent: Some(Parent {
            image_id: parent_image.map(|i| i.id),
            sha256: parent.sha256.clone(),
            origin: parent.origin.clone(),
        }),
        pipeline: None,
    })
}

/// Records a build published in `dir` with `manifest`.
pub fn published(
    catalog: &mut Catalog,
    build: BuildNumber,
    manifest: &Manifest,
    dir: &Path,
) -> Result<(), RecordError> {
    let done = FinishedBuild::from_manifest(manifest, dir)?;
    Ok(catalog.finish_build(build.id, &done)?)
}
