//! Catalog records for tests: a started build and a finished one.

use kiln::catalog::{Artifact, FinishedBuild, NewBuild};

/// A build of `name` `version` (by `pipeline`), its digest named after it.
pub fn new_build(name: &str, version: &str, pipeline: Option<&str>) -> NewBuild {
    NewBuild {
        name: name.into(),
        version: version.parse().unwrap(),
        inputs_digest: format!("digest-of-{name}-{version}"),
        inputs: None,
        events: None,
        parent: None,
        pipeline: pipeline.map(str::to_string),
    }
}

/// A build published in `dir`: its qcow2 (`size` bytes), logs and folder.
pub fn published(dir: &str, size: u64) -> FinishedBuild {
    FinishedBuild {
        artifacts: vec![Artifact {
            path: format!("{dir}/image.qcow2"),
            format: "qcow2".into(),
            sha256: "ab".repeat(32),
            size,
        }],
        log_location: Some(format!("{dir}/logs")),
        location: Some(dir.into()),
        ..FinishedBuild::default()
    }
}
