//! An [`Api`] that answers builds and images from the image catalog and
//! takes health and pipelines from the scheduler ([`Pipelines`]).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};

use super::route::{Api, BuildQuery};
use super::HttpError;
use crate::catalog::{Catalog, CatalogError, Image, ImageId, ImageRef};

/// The scheduler's part of the API: what only it knows.
pub trait Pipelines: Send + Sync {
    /// `GET /health`: a JSON object (e.g. `{"status": "ok", ...}`).
    fn health(&self) -> Result<Value, HttpError>;
    /// `GET /v1/pipelines`: one JSON object per pipeline.
    fn pipelines(&self) -> Result<Vec<Value>, HttpError>;
    /// `GET /v1/pipelines/{name}`, `None` for no such pipeline.
    fn pipeline(&self, name: &str) -> Result<Option<Value>, HttpError>;
}

/// Builds and images from one open catalog (behind a mutex: each request
/// holds it for its queries), pipelines and health from `P`.
///
/// A build is a catalog image row: `building` while it runs, then
/// `available` or `failed` (`deprecated` later). Its id is the image id.
pub struct CatalogApi<P> {
    catalog: Mutex<Catalog>,
    pipelines: P,
}

impl<P: Pipelines> CatalogApi<P> {
    /// Serves `catalog` and `pipelines`.
    pub fn new(catalog: Catalog, pipelines: P) -> Self {
        CatalogApi {
            catalog: Mutex::new(catalog),
            pipelines,
        }
    }

    /// Opens the catalog at `path` (see [`Catalog::open`]) and serves it.
    pub fn open(path: &Path, pipelines: P) -> Result<Self, HttpError> {
        Ok(Self::new(Catalog::open(path)?, pipelines))
    }

    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        // A panic while holding the lock leaves no half-done state: every
        // catalog write is one transaction, and this API only reads.
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The JSON of a build: who, what, and how it went.
pub fn build_json(i: &Image) -> Value {
    json!({
        "id": i.id,
        "image": i.full_name(),
        "name": i.name,
        "version": i.version.to_string(),
        "build": i.build,
        "pipeline": i.pipeline,
        "status": i.status,
        "createdAt": i.created_at,
        "finishedAt": i.finished_at,
        "failure": i.failure,
        "logLocation": i.log_location,
        "events": i.events,
        "location": i.location,
    })
}

/// The JSON of an image: its catalog record plus `ref`, `NAME/x.y.z/n`.
pub fn image_json(i: &Image) -> Result<Value, HttpError> {
    let mut v = serde_json::to_value(i).map_err(|source| HttpError::Json {
        what: format!("image {}", i.full_name()),
        source,
    })?;
    if let Value::Object(map) = &mut v {
        map.insert("ref".into(), Value::String(i.full_name()));
    }
    Ok(v)
}

/// `Ok(None)` for the catalog's `NotFound`.
fn optional(r: Result<Image, CatalogError>) -> Result<Option<Image>, HttpError> {
    match r {
        Ok(i) => Ok(Some(i)),
        Err(CatalogError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A decimal catalog id, or `None` for other text.
fn as_id(text: &str) -> Option<ImageId> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

impl<P: Pipelines> Api for CatalogApi<P> {
    fn health(&self) -> Result<Value, HttpError> {
        self.pipelines.health()
    }

    fn pipelines(&self) -> Result<Vec<Value>, HttpError> {
        self.pipelines.pipelines()
    }

    fn pipeline(&self, name: &str) -> Result<Option<Value>, HttpError> {
        self.pipelines.pipeline(name)
    }

    fn builds(&self, query: &BuildQuery) -> Result<Vec<Value>, HttpError> {
        let images = self
            .catalog()
            .recent(query.pipeline.as_deref(), query.limit as u64)?;
        Ok(images.iter().map(build_json).collect())
    }

    fn build(&self, id: &str) -> Result<Option<Value>, HttpError> {
        let Some(id) = as_id(id) else {
            return Ok(None);
        };
        Ok(optional(self.catalog().get(id))?.as_ref().map(build_json))
    }

    fn images(&self, name: Option<&str>) -> Result<Vec<Value>, HttpError> {
        let images = self.catalog().list(name)?;
        images.iter().map(image_json).collect()
    }

    /// A decimal id, or a reference `NAME/x.y.z/n` (or a wildcard
    /// `NAME/1.x.x`, resolved as recipes resolve it: newest available).
    fn image(&self, reference: &str) -> Result<Option<Value>, HttpError> {
        let found = match as_id(reference) {
            Some(id) => self.catalog().get(id),
            None => {
                let r = ImageRef::parse(reference)?;
                self.catalog().find(&r)
            }
        };
        optional(found)?.as_ref().map(image_json).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_decimal_only() {
        assert_eq!(as_id("42"), Some(42));
        assert_eq!(as_id("+42"), None);
        assert_eq!(as_id("-1"), None);
        assert_eq!(as_id("web/1.0.0/1"), None);
        assert_eq!(as_id("99999999999999999999"), None);
    }
}
