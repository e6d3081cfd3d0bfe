//! `manifest.json`: what a published image is, what went into it, how it
//! was tested, and the sha256 of every file beside it. Secret parameter
//! values never reach it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::distribute::Distributed;
use super::parent::ResolvedParent;
use crate::recipe::{Recipe, ResolvedComponent};
use crate::toe::report::RunReport;
use crate::util::digest::sha256_file;
use crate::util::io::IoError;

/// The manifest format's version.
pub const MANIFEST_VERSION: u32 = 1;

/// What replaces a secret value.
pub const REDACTED: &str = "<redacted>";

/// The whole manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub manifest_version: u32,
    /// kiln's version.
    pub kiln_version: String,
    /// This build's id.
    pub build_id: String,
    /// The image's name and version.
    pub image: ImageInfo,
    /// The recipe.
    pub recipe: RecipeInfo,
    /// The parent image.
    pub parent: ParentInfo,
    /// The components, in recipe order.
    pub components: Vec<ComponentInfo>,
    /// The VMs' settings.
    pub machine: MachineInfo,
    /// Each stage's duration.
    pub stages: Vec<StageTiming>,
    /// What the test stage found.
    pub tests: TestResults,
    /// Every file published beside the manifest, with its digest.
    pub artifacts: Vec<Artifact>,
    /// The AMI in every region (`distribution.ami`), empty when none.
    #[serde(default)]
    pub amis: Vec<AmiInfo>,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
}

/// An AMI the build was imported as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmiInfo {
    /// The AWS region.
    pub region: String,
    /// `ami-…`.
    pub ami_id: String,
}

/// The image's identity.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// Recipe name.
    pub name: String,
    /// Semantic version `x.y.z`.
    pub version: String,
    /// The catalog's build number (`x.y.z/n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<u64>,
    /// Description, if any.
    pub description: Option<String>,
}

/// The recipe that made the image.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipeInfo {
    /// Its path as given.
    pub file: String,
    /// The recipe digest: sha256 of its text, or of its redacted form when
    /// it holds a secret ([`crate::recipe::digest`]).
    pub sha256: String,
    /// The root volume size asked for, GiB.
    pub root_volume_gib: Option<u64>,
    /// The working directory in the guest.
    pub working_directory: String,
}

/// The parent image.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentInfo {
    /// Where it came from.
    pub origin: String,
    /// The local file used.
    pub path: String,
    /// Its format.
    pub format: String,
    /// sha256 of the file.
    pub sha256: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
}

/// One component of the recipe.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentInfo {
    /// The reference written in the recipe.
    pub reference: String,
    /// The document's `name`.
    pub name: String,
    /// The document's identity (`builtin:NAME` or its path).
    pub source: String,
    /// sha256 of the document text.
    pub sha256: String,
    /// Parameter values given by the recipe; secret ones as [`REDACTED`].
    pub parameters: std::collections::BTreeMap<String, String>,
    /// Whether it is a test component (only a `test` phase).
    pub test_only: bool,
}

/// The VMs' settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineInfo {
    /// `kvm` or `tcg`.
    pub accelerator: String,
    /// Why it was chosen.
    pub accelerator_reason: String,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// The image's virtual disk size in bytes.
    pub disk_bytes: u64,
    /// What the build and test VMs' network reached: `none`, `outbound`
    /// or `host` (empty in manifests written before the setting existed).
    #[serde(default)]
    pub network: String,
    /// Effective timeouts, seconds.
    pub timeouts: TimeoutInfo,
}

/// Effective timeouts in seconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutInfo {
    /// Boot to SSH and cloud-init done.
    pub boot: u64,
    /// Build and validate phases.
    pub build: u64,
    /// Test phases.
    pub test: u64,
    /// ACPI shutdown.
    pub shutdown: u64,
}

/// A stage's duration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageTiming {
    /// Stage name.
    pub stage: String,
    /// Seconds.
    pub seconds: f64,
}

/// The test stage's results.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResults {
    /// Seconds from power-on to SSH on the fresh VM.
    pub boot_to_ssh_seconds: f64,
    /// `cloud-init status` on the fresh VM (`done`).
    pub cloud_init_status: String,
    /// The test phases' run: status per component.
    pub components: Vec<ComponentTest>,
    /// Whether the VM came back after a reboot, with a new boot id.
    pub reboot_test: String,
}

/// One component's test phase.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentTest {
    /// The document's name.
    pub name: String,
    /// `success`, `failed`, … (awstoe's statuses); `none` without a test phase.
    pub status: String,
    /// Steps that ran.
    pub steps: usize,
}

/// A published file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Path relative to the manifest's folder.
    pub path: String,
    /// `qcow2` for disk images, `log`/`json`/`yaml`… for the rest.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256, hex.
    pub sha256: String,
}

/// Errors of reading files for the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A folder could not be listed.
    #[error("cannot list {path}")]
    List {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be hashed or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

fn kind_of(rel: &str) -> String {
    match Path::new(rel).extension().and_then(|e| e.to_str()) {
        Some(ext) => ext.to_string(),
        None => "file".to_string(),
    }
}

/// Every regular file under `dir` except `manifest.json`, sorted, with its
/// size and sha256.
pub async fn artifacts(dir: &Path) -> Result<Vec<Artifact>, ManifestError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| ManifestError::List {
            path: d.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| ManifestError::List {
                path: d.clone(),
                source,
            })?;
            let path = e.path();
            let ft = e.file_type().map_err(|source| ManifestError::List {
                path: path.clone(),
                source,
            })?;
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if !ft.is_file() || rel == "manifest.json" {
                continue;
            }
            let size = e
                .metadata()
                .map_err(|source| ManifestError::List {
                    path: path.clone(),
                    source,
                })?
                .len();
            out.push(Artifact {
                kind: kind_of(&rel),
                sha256: sha256_file(&path).await?,
                path: rel,
                size,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

impl Manifest {
    /// The catalog's record of a build published in `dir` with this
    /// manifest: every artifact (paths joined to `dir`), the tests, and
    /// `dir/logs`.
    pub fn finished_build(
        &self,
        dir: &Path,
    ) -> Result<crate::catalog::FinishedBuild, serde_json::Error> {
        Ok(crate::catalog::FinishedBuild {
            artifacts: self
                .artifacts
                .iter()
                .map(|a| crate::catalog::Artifact {
                    path: dir.join(&a.path).display().to_string(),
                    format: a.kind.clone(),
                    sha256: a.sha256.clone(),
                    size: a.size,
                })
                .collect(),
            amis: Vec::new(),
            test_results: Some(serde_json::to_value(&self.tests)?),
            log_location: Some(dir.join("logs").display().to_string()),
            location: Some(dir.display().to_string()),
        })
    }
}

/// The values of a component's parameters as the manifest shows them.
pub fn shown_parameters(c: &ResolvedComponent) -> BTreeMap<String, String> {
    c.parameters
        .iter()
        .map(|(k, v)| {
            let shown = if c.secrets.iter().any(|s| s == v && !s.is_empty()) {
                REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// What a build knows when it writes its manifest.
#[derive(Debug)]
pub struct Facts<'a> {
    /// The build's id.
    pub build_id: &'a str,
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Its file's sha256.
    pub recipe_sha256: &'a str,
    /// The build number in the catalog.
    pub build: u64,
    /// The parent image.
    pub parent: &'a ResolvedParent,
    /// The components, in order.
    pub components: &'a [ResolvedComponent],
    /// The machine.
    pub machine: MachineInfo,
    /// The test stage's results.
    pub tests: TestResults,
    /// The AMIs made.
    pub amis: Vec<AmiInfo>,
    /// When the build started (RFC 3339).
    pub started_at: String,
}

impl Manifest {
    /// The manifest of a build from its facts, before the stage timings,
    /// the end time and the artifacts are known (see [`Manifest::finish`]).
    pub fn assemble(f: Facts<'_>) -> Manifest {
        let (recipe, parent) = (f.recipe, f.parent);
        Manifest {
            manifest_version: MANIFEST_VERSION,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            build_id: f.build_id.to_string(),
            image: ImageInfo {
                name: recipe.name.clone(),
                version: recipe.version.to_string(),
                build: Some(f.build),
                description: recipe.description.clone(),
            },
            recipe: RecipeInfo {
                file: recipe.file.display().to_string(),
                sha256: f.recipe_sha256.to_string(),
                root_volume_gib: recipe.root_volume_gib,
                working_directory: recipe.working_directory.clone(),
            },
            parent: ParentInfo {
                origin: parent.origin.clone(),
                path: parent.path.display().to_string(),
                format: parent.format.qemu_name().to_string(),
                sha256: parent.sha256.clone(),
                virtual_size: parent.virtual_size,
            },
            components: f
                .components
                .iter()
                .map(|c| ComponentInfo {
                    reference: c.reference.clone(),
                    name: c.loaded.doc.name.clone().unwrap_or_default(),
                    source: c.loaded.id.clone(),
                    sha256: c.text_sha256.clone(),
                    parameters: shown_parameters(c),
                    test_only: c.is_test_only,
                })
                .collect(),
            machine: f.machine,
            stages: Vec::new(),
            tests: f.tests,
            artifacts: Vec::new(),
            amis: f.amis,
            started_at: f.started_at,
            finished_at: String::new(),
        }
    }

    /// Stamps the end time, lists every file of `dir` with its digest (the
    /// exports named by their format) and writes `dir/manifest.json`
    /// atomically.
    pub async fn finish(
        &mut self,
        dir: &Path,
        exports: &[Distributed],
    ) -> Result<(), ManifestError> {
        self.finished_at = chrono::Utc::now().to_rfc3339();
        self.artifacts = artifacts(dir).await?;
        for d in exports {
            let rel = d.path.to_string_lossy();
            if let Some(a) = self.artifacts.iter_mut().find(|a| a.path == rel) {
                a.kind = d.format.name().to_string();
            }
        }
        // every secret in its strings masked (a URL parent's credentials)
        let shown = crate::util::redact::to_json(&*self);
        crate::util::atomic::write_json(&dir.join("manifest.json"), &shown)?;
        Ok(())
    }
}

/// Each component's test phase as the test run's report says it went.
pub fn component_tests(components: &[ResolvedComponent], report: &RunReport) -> Vec<ComponentTest> {
    components
        .iter()
        .map(|c| {
            let name = c.loaded.doc.name.clone().unwrap_or_default();
            let doc = report.documents.iter().find(|d| d.name == name);
            let test_phase = doc.and_then(|d| d.phases.iter().find(|p| p.name == "test"));
            ComponentTest {
                name,
                status: test_phase.map_or("none".into(), |p| {
                    serde_json::to_value(p.status)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                }),
                steps: test_phase.map_or(0, |p| p.steps.len()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn artifacts_list_every_file_but_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs/toe")).unwrap();
        std::fs::write(dir.path().join("image.qcow2"), b"abc").unwrap();
        std::fs::write(dir.path().join("logs/toe/console.log"), b"").unwrap();
        std::fs::write(dir.path().join("manifest.json"), b"{}").unwrap();
        let a = artifacts(dir.path()).await.unwrap();
        let paths: Vec<&str> = a.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["image.qcow2", "logs/toe/console.log"]);
        assert_eq!(
            a[0].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(a[0].size, 3);
        assert_eq!(a[0].kind, "qcow2");
        assert_eq!(
            a[1].sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
