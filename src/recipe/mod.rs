//! Image recipes: a parent image and an ordered list of AWSTOE components,
//! in kiln's YAML form or as the JSON `aws imagebuilder get-image-recipe`
//! prints; and resolving the components they name into loaded documents.

pub(crate) mod ami;
mod component_ref;
pub mod digest;
pub mod distribution;
pub(crate) mod fields;
pub mod model;
pub mod parent;
pub(crate) mod parse;
pub mod resolve;
pub mod version;

use std::path::{Path, PathBuf};

pub use model::{
    Accelerator, BootstrapSpec, BuildSettings, ComponentRef, ComponentSource, Distribution,
    Network, ParentImage, Recipe, RecipeForm, RecipeParameter, ResolvedComponent, Timeouts,
};
pub use resolve::resolve_components;
pub use version::{Version, VersionError, VersionFilter, VersionFilterError};

use crate::util::diag::Diagnostic;

/// Why a recipe could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The recipe file could not be read.
    #[error("cannot read recipe {}", crate::util::display::Escaped(&path.display().to_string()))]
    Io {
        /// The recipe file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::util::read::ReadError,
    },
    /// The recipe, or a component it names, is invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// Parses a recipe's text. `display` names the file in diagnostics and
/// becomes [`Recipe::file`]; relative paths resolve against `dir`. Reads no
/// file: component documents and the parent image are not checked here.
pub fn parse(display: &str, text: &str, dir: &Path) -> Result<Recipe, Vec<Diagnostic>> {
    let (draft, d) = parse::read(display, text, dir);
    match draft.into_recipe(display, dir) {
        Some(recipe) if d.is_empty() => Ok(recipe),
        _ => Err(d.into_vec()),
    }
}

/// The folder of a recipe file (`.` for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read(path: &Path) -> Result<String, RecipeError> {
    crate::util::read::read_document(path).map_err(|source| RecipeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses the recipe file at `path`.
pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
    let text = read(path)?;
    parse(&path.display().to_string(), &text, &folder_of(path)).map_err(RecipeError::Invalid)
}

/// Reads the recipe at `path` and checks everything it names: every
/// component document (loaded, validated, nesting and parameters) and a
/// local parent image file. Reports every problem found, the recipe's
/// first (sorted by position), then each component document's; the
/// components of an otherwise invalid recipe are checked too.
pub fn load_resolved(path: &Path) -> Result<(Recipe, Vec<ResolvedComponent>), RecipeError> {
    let text = read(path)?;
    let display = path.display().to_string();
    let dir = folder_of(path);
    let (draft, mut d) = parse::read(&display, &text, &dir);
    let (resolved, others) = resolve::resolve_into(&draft.components, &mut d);
    if let Some(parent) = &draft.parent {
        let field = draft.form.field("parentImage");
        d.extend(
            parent::check_file(parent, &display, draft.parent_pos, field)
                .into_iter()
                .collect(),
        );
    }
    let all = resolve::ordered(d, others);
    match draft.into_recipe(&display, &dir) {
        Some(recipe) if all.is_empty() => Ok((recipe, resolved)),
        _ => Err(RecipeError::Invalid(all)),
    }
}
