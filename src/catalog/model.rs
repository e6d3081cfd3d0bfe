//! What the catalog records about an image.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::recipe::Version;

/// A row id of the `images` table.
pub type ImageId = i64;

/// Where an image is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A build was started and has not finished.
    Building,
    /// Built, tested and published.
    Available,
    /// The build failed; nothing was published.
    Failed,
    /// Published, then deprecated: wildcards no longer resolve to it.
    Deprecated,
}

impl Status {
    /// The name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Building => "building",
            Status::Available => "available",
            Status::Failed => "failed",
            Status::Deprecated => "deprecated",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "building" => Ok(Status::Building),
            "available" => Ok(Status::Available),
            "failed" => Ok(Status::Failed),
            "deprecated" => Ok(Status::Deprecated),
            other => Err(format!("unknown image status `{other}`")),
        }
    }
}

/// The image a build started from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Parent {
    /// The catalog image, when the parent is one (`kiln:NAME/…`).
    pub image_id: Option<ImageId>,
    /// sha256 of the parent disk file.
    pub sha256: String,
    /// Where it came from, e.g. `file ./base.qcow2` or `kiln:base/1.2.3/4`.
    pub origin: String,
}

/// A published file of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// Absolute (or as given) path of the file.
    pub path: String,
    /// `qcow2`, `vmdk`, `ova`, `log`, …
    pub format: String,
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// An AMI made from an image in one region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ami {
    /// The AWS region.
    pub region: String,
    /// `ami-…`.
    pub ami_id: String,
}

/// One image (one build) in the catalog.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Catalog id.
    pub id: ImageId,
    /// The recipe's name.
    pub name: String,
    /// The recipe's semantic version.
    #[serde(serialize_with = "display")]
    pub version: Version,
    /// The build number kiln assigned (1, 2, … per name and version).
    pub build: u64,
    /// Where it is in its life.
    pub status: Status,
    /// Marked to be kept: retention and `delete` leave it alone.
    pub keep: bool,
    /// The pipeline that built it, if any.
    pub pipeline: Option<String>,
    /// The digest of everything that went into the build.
    pub inputs_digest: String,
    /// What went into the build ([`crate::build::inputs::Inputs`] as
    /// JSON), to say what changed since.
    pub inputs: Option<serde_json::Value>,
    /// The build's event file (JSON lines).
    pub events: Option<String>,
    /// The parent image.
    pub parent: Option<Parent>,
    /// Its files.
    pub artifacts: Vec<Artifact>,
    /// Its AMIs.
    pub amis: Vec<Ami>,
    /// The test stage's results (the manifest's `tests`).
    pub test_results: Option<serde_json::Value>,
    /// Where its logs are.
    pub log_location: Option<String>,
    /// The folder it was published in (`OUTPUT/NAME/VERSION`).
    pub location: Option<String>,
    /// Why the build failed.
    pub failure: Option<String>,
    /// When the build started (RFC 3339, UTC).
    pub created_at: String,
    /// When it finished or failed (RFC 3339, UTC).
    pub finished_at: Option<String>,
}

fn display<S: serde::Serializer>(v: &Version, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Image {
    /// A record with every optional field empty, for tests.
    #[cfg(test)]
    pub(crate) fn sample(id: ImageId, name: &str, version: &str, build: u64) -> Image {
        Image {
            id,
            name: name.into(),
            version: version.parse().expect("a test version"),
            build,
            status: Status::Available,
            keep: false,
            pipeline: None,
            inputs_digest: String::new(),
            inputs: None,
            events: None,
            parent: None,
            artifacts: vec![],
            amis: vec![],
            test_results: None,
            log_location: None,
            location: None,
            failure: None,
            created_at: String::new(),
            finished_at: None,
        }
    }

    /// `NAME/x.y.z/n`, the image's full version name.
    pub fn full_name(&self) -> String {
        format!("{}/{}/{}", self.name, self.version, self.build)
    }

    /// The first artifact of format `qcow2`, the image itself.
    pub fn disk(&self) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.format == "qcow2")
    }
}

/// What [`crate::catalog::Catalog::begin_build`] records.
#[derive(Clone, Debug)]
pub struct NewBuild {
    /// The recipe's name.
    pub name: String,
    /// The recipe's version.
    pub version: Version,
    /// The inputs digest.
    pub inputs_digest: String,
    /// The inputs the digest is of (JSON).
    pub inputs: Option<serde_json::Value>,
    /// The build's event file.
    pub events: Option<String>,
    /// The parent image.
    pub parent: Option<Parent>,
    /// The pipeline building it, if any.
    pub pipeline: Option<String>,
}

/// What [`crate::catalog::Catalog::finish_build`] records.
#[derive(Clone, Debug, Default)]
pub struct FinishedBuild {
    /// The published files.
    pub artifacts: Vec<Artifact>,
    /// AMIs made.
    pub amis: Vec<Ami>,
    /// Test results.
    pub test_results: Option<serde_json::Value>,
    /// The log folder.
    pub log_location: Option<String>,
    /// The folder the build was published in.
    pub location: Option<String>,
}

/// The number a build was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildNumber {
    /// The catalog id of the new image.
    pub id: ImageId,
    /// The build number (1, 2, … per name and version).
    pub build: u64,
}
