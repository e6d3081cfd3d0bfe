//! The staged build: parent → plan → build VM (build, validate) → seal →
//! flatten → test VM (boot test, test phases, reboot test) → publish.
//! Every stage is timed, logged and cleaned up; nothing is published unless
//! every stage passed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cache::Cache;
use super::distribute;
use super::guest::{Guest, GuestError, GuestSpec, BUILD_USER};
use super::manifest::{self, Manifest};
use super::parent::{self, ResolvedParent};
use super::phases::{PhaseError, PhaseResult, PhaseRun};
use super::progress::{human, BuildFacts, Reporter, Stage};
use super::record::{self, RecordError, Recorder};
use super::seal;
use super::workspace::{Workspace, WorkspaceError};
use crate::export::format::ExportFormat;
use crate::export::write::ExportError;
use crate::recipe::{Recipe, ResolvedComponent};
use crate::toe::console::Redactor;
use crate::toe::diag::Diagnostic;
use crate::toe::runner::DocumentRun;
use crate::vm::accel::{self, AccelChoice, Selected};
use crate::vm::img::{self, Compression, ConvertOptions};
use crate::vm::net::Network;
use crate::vm::qemu::Accel;

/// What to do when a stage fails while its VM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Stop the VM, remove temporary files, keep the logs.
    Cleanup,
    /// Keep the VM running and print how to get in; clean up on Ctrl-C.
    Abort,
}

/// How to build, beyond the recipe.
pub struct BuildOptions {
    /// Output folder; the image goes to `OUTPUT/<name>/<version>/`.
    pub output: PathBuf,
    /// Accelerator (overrides the recipe).
    pub accel: Option<AccelChoice>,
    /// vCPUs (overrides the recipe).
    pub cpus: Option<u32>,
    /// Memory in MiB (overrides the recipe).
    pub memory_mib: Option<u32>,
    /// Boot timeout in seconds (overrides the recipe).
    pub boot_timeout: Option<u64>,
    /// What the VMs' network reaches (overrides the recipe).
    pub network: Option<Network>,
    /// Failure handling.
    pub on_error: OnError,
    /// Replace an already published version.
    pub replace: bool,
    /// Print the steps' output while they run.
    pub echo: bool,
    /// The QEMU binary.
    pub qemu: String,
    /// The cache for parent images.
    pub cache: Cache,
    /// Export formats (overrides the recipe's `distribution.formats`).
    pub formats: Option<Vec<ExportFormat>>,
    /// The image catalog the build is recorded in.
    pub catalog: PathBuf,
    /// The pipeline running the build, if any: recorded in the catalog, and
    /// the image is published per build, as `OUTPUT/<name>/<version>/<build>/`.
    pub pipeline: Option<String>,
    /// sha256 of AMI settings that come from outside the recipe (a
    /// pipeline's), for the inputs digest.
    pub ami_sha256: Option<String>,
    /// The folder of the build's event file, `<build id>.jsonl`.
    pub events_dir: PathBuf,
    /// The recipe's parent, when the caller resolved it already (a pipeline
    /// run does, to decide whether to build): used as is.
    pub parent: Option<ResolvedParent>,
}

/// Errors of a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The recipe or a component is invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// A setting is impossible.
    #[error("{0}")]
    Setting(String),
    /// The output folder.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The parent image.
    #[error("parent image")]
    Parent(#[from] parent::ParentError),
    /// qemu-img.
    #[error("{stage} stage: qemu-img")]
    Image {
        /// The stage.
        stage: &'static str,
        /// The cause.
        #[source]
        source: img::ImgError,
    },
    /// The accelerator probe.
    #[error("choosing the accelerator")]
    Accel(#[source] crate::vm::VmError),
    /// A VM.
    #[error("{stage} stage")]
    Guest {
        /// The stage.
        stage: &'static str,
        /// The cause.
        #[source]
        source: Box<GuestError>,
    },
    /// A phase run could not complete.
    #[error("{stage} stage")]
    Phases {
        /// The stage.
        stage: &'static str,
        /// The cause.
        #[source]
        source: PhaseError,
    },
    /// Steps failed.
    #[error("{stage} stage: {count} step(s) failed (toe logs: {logs})\n{details}")]
    StepsFailed {
        /// The stage.
        stage: &'static str,
        /// How many.
        count: usize,
        /// The host log folder.
        logs: String,
        /// Each failure with its output.
        details: String,
    },
    /// The seal script failed.
    #[error("seal: the cleanup script ended with status {code:?}:\n{output}")]
    Seal {
        /// Its exit code.
        code: Option<i32>,
        /// Its output.
        output: String,
    },
    /// The image catalog could not record the build.
    #[error("image catalog")]
    Catalog(#[from] RecordError),
    /// An export of the tested image failed.
    #[error("distribute stage")]
    Distribute(#[source] ExportError),
    /// The AMI import of the tested image failed.
    #[error("distribute stage: AMI import")]
    Ami(#[source] crate::aws::AwsError),
    /// The reboot test failed.
    #[error("test stage: reboot test: {0}")]
    RebootTest(String),
    /// The manifest.
    #[error("writing the manifest")]
    Manifest(#[from] manifest::ManifestError),
    /// A log file.
    #[error("cannot write the log {path}")]
    Log {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// Whether the error is the user's input (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            BuildError::Invalid(_)
                | BuildError::Setting(_)
                | BuildError::Workspace(WorkspaceError::Exists(_))
        ) || matches!(self, BuildError::Ami(e) if e.is_invalid_input())
    }
}

/// A published build.
pub struct Built {
    /// `OUTPUT/<name>/<version>`.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Effective settings after recipe, flags and accelerator scaling.
struct Machine {
    selected: Selected,
    cpus: u32,
    memory_mib: u32,
    disk_bytes: u64,
    network: Network,
    boot: Duration,
    build: Duration,
    test: Duration,
    shutdown: Duration,
}

/// Defaults for a KVM host; under TCG the defaults are multiplied by
/// [`TCG_SCALE`]. Values set in the recipe or by flags are used as given.
const DEFAULT_BOOT: u64 = 300;
const DEFAULT_BUILD: u64 = 3600;
const DEFAULT_TEST: u64 = 1800;
const DEFAULT_SHUTDOWN: u64 = 120;
/// How much slower TCG is taken to be than KVM.
pub const TCG_SCALE: u64 = 3;
const GIB: u64 = 1 << 30;

fn machine(
    recipe: &Recipe,
    opts: &BuildOptions,
    selected: Selected,
    parent: &ResolvedParent,
) -> Result<Machine, BuildError> {
    let scale = if selected.accel == Accel::Tcg {
        TCG_SCALE
    } else {
        1
    };
    let t = &recipe.build.timeouts;
    let pick =
        |given: Option<u64>, default: u64| Duration::from_secs(given.unwrap_or(default * scale));
    let disk_bytes = match recipe.root_volume_gib {
        Some(g) if g * GIB < parent.virtual_size => {
            return Err(BuildError::Setting(format!(
                "{}: blockDeviceMappings asks for a {g} GiB root volume, but the parent image is {:.1} GiB\n  hint: give at least {} GiB, or leave the size out to keep the parent's",
                recipe.file.display(),
                parent.virtual_size as f64 / GIB as f64,
                parent.virtual_size.div_ceil(GIB)
            )))
        }
        Some(g) => g * GIB,
        None => parent.virtual_size,
    };
    Ok(Machine {
        selected,
        cpus: opts.cpus.or(recipe.build.cpus).unwrap_or(2),
        memory_mib: opts.memory_mib.or(recipe.build.memory_mib).unwrap_or(2048),
        disk_bytes,
        network: opts.network.or(recipe.build.network).unwrap_or_default(),
        boot: pick(opts.boot_timeout.or(t.boot_seconds), DEFAULT_BOOT),
        build: pick(t.build_seconds, DEFAULT_BUILD),
        test: pick(t.test_seconds, DEFAULT_TEST),
        shutdown: pick(t.shutdown_seconds, DEFAULT_SHUTDOWN),
    })
}

/// The values of a component's parameters as the manifest shows them.
fn shown_parameters(c: &ResolvedComponent) -> BTreeMap<String, String> {
    c.parameters
        .iter()
        .map(|(k, v)| {
            let shown = if c.secrets.iter().any(|s| s == v && !s.is_empty()) {
                manifest::REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

fn doc_runs(components: &[ResolvedComponent], test_stage: bool) -> Vec<DocumentRun> {
    components
        .iter()
        .filter(|c| test_stage || !c.is_test_only)
        .map(|c| DocumentRun {
            loaded: c.loaded.clone(),
            parameters: c.parameters.clone(),
        })
        .collect()
}

/// One build, start to publish.
pub struct Build<'a> {
    recipe: &'a Recipe,
    opts: &'a BuildOptions,
    reporter: &'a Reporter,
    id: String,
    timings: Vec<manifest::StageTiming>,
    current: Option<(Stage, Instant)>,
}

impl<'a> Build<'a> {
    /// Prepares a build of `recipe`.
    pub fn new(recipe: &'a Recipe, opts: &'a BuildOptions, reporter: &'a Reporter) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        Build {
            recipe,
            opts,
            reporter,
            id,
            timings: Vec::new(),
            current: None,
        }
    }

    fn begin(&mut self, stage: Stage, message: &str) -> Instant {
        self.reporter.stage_start(stage, message);
        let now = Instant::now();
        self.current = Some((stage, now));
        now
    }

    fn timed(&mut self, stage: Stage, started: Instant, message: &str) {
        let took = started.elapsed();
        self.reporter.stage_end(stage, took, message);
        self.timings.push(manifest::StageTiming {
            stage: stage.name().to_string(),
            seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
        });
    }

    /// The secrets of every component, for redaction.
    pub fn secrets(components: &[ResolvedComponent]) -> Redactor {
        Redactor::new(components.iter().flat_map(|c| c.secrets.iter().cloned()))
    }

    /// Runs every stage. On failure nothing is published and the error says
    /// where the logs are.
    pub async fn run(mut self, components: Vec<ResolvedComponent>) -> Result<Built, BuildError> {
        let started_at = chrono::Utc::now().to_rfc3339();
        let recipe = self.recipe;
        let opts = self.opts;
        let mut facts = BuildFacts {
            id: self.id.clone(),
            name: recipe.name.clone(),
            version: recipe.version.to_string(),
            pipeline: opts.pipeline.clone(),
            ..BuildFacts::default()
        };
        let events = opts.events_dir.join(format!("{}.jsonl", self.id));
        self.reporter
            .events_to(&events)
            .map_err(|source| BuildError::Log {
                path: events.clone(),
                source,
            })?;
        self.reporter.build_start(&facts);
        let mut ws = Workspace::create(
            &opts.output,
            &recipe.name,
            &recipe.version.to_string(),
            &self.id,
            opts.replace,
            opts.pipeline.is_some(),
        )
        .inspect_err(|e| {
            facts.outcome = Some("failure");
            facts.failure = Some(self.reporter.redactor().redact(&e.to_string()));
            self.reporter.build_finished(&facts);
        })?;
        let kiln_log = ws.logs().join("kiln.log");
        self.reporter
            .log_to(&kiln_log)
            .map_err(|source| BuildError::Log {
                path: kiln_log.clone(),
                source,
            })?;
        let mut catalog = Recorder::open(&opts.catalog)?;
        let origin = record::Origin {
            pipeline: opts.pipeline.clone(),
            events: Some(events),
        };
        let staged = self
            .stages(&mut ws, &components, started_at, &mut catalog, &origin)
            .await;
        facts.build = catalog.build().map(|b| b.build);
        match staged {
            Ok(manifest) => {
                let dir = ws.publish()?;
                catalog.published(&manifest, &dir)?;
                facts.outcome = Some("success");
                facts.published = Some(dir.display().to_string());
                facts.logs = Some(dir.join("logs").display().to_string());
                self.reporter.result(&format!(
                    "published {} {}{} in {} ({})",
                    recipe.name,
                    recipe.version,
                    catalog
                        .build()
                        .map(|b| format!("/{}", b.build))
                        .unwrap_or_default(),
                    dir.display(),
                    human(self.reporter.elapsed())
                ));
                self.reporter.build_finished(&facts);
                Ok(Built { dir, manifest })
            }
            Err(e) => {
                if let Some((stage, since)) = self.current {
                    let first = e.to_string();
                    let first = first.lines().next().unwrap_or_default();
                    self.reporter.stage_failed(stage, since.elapsed(), first);
                }
                let logs = ws.fail();
                if let Err(c) = catalog.failed(&e.to_string(), Some(&logs)) {
                    self.reporter.warn(
                        None,
                        &format!("the failure was not recorded in the image catalog: {c}"),
                    );
                }
                self.reporter.result(&format!(
                    "build failed; nothing was published; logs: {}",
                    logs.display()
                ));
                facts.outcome = Some("failure");
                facts.logs = Some(logs.display().to_string());
                facts.failure = Some(self.reporter.redactor().redact(&e.to_string()));
                self.reporter.build_finished(&facts);
                Err(e)
            }
        }
    }

    async fn stages(
        &mut self,
        ws: &mut Workspace,
        components: &[ResolvedComponent],
        started_at: String,
        catalog: &mut Recorder,
        origin: &record::Origin,
    ) -> Result<Manifest, BuildError> {
        let recipe = self.recipe;
        let opts = self.opts;
        let rep = self.reporter;

        // parent
        let t = self.begin(Stage::Parent, "resolving the parent image");
        let progress = |line: &str| rep.info(Some(Stage::Parent), line);
        let parent = match &opts.parent {
            Some(p) => p.clone(),
            None => parent::resolve(&recipe.parent, &opts.cache, &opts.catalog, &progress).await?,
        };
        let formats = opts
            .formats
            .as_ref()
            .unwrap_or(&recipe.distribution.formats);
        let recipe_sha256 = super::digest::sha256_file(&recipe.file)
            .await
            .map_err(manifest::ManifestError::from)?;
        let inputs = record::inputs(
            &recipe_sha256,
            &parent,
            components,
            formats,
            opts.ami_sha256.clone(),
        );
        let build = catalog.begin(recipe, &parent, &inputs, origin)?;
        ws.place(build.build)?;
        let ws = &*ws;
        self.timed(
            Stage::Parent,
            t,
            &format!(
                "{} (sha256 {}); catalog build {}/{}/{}",
                parent.origin,
                &parent.sha256[..16],
                recipe.name,
                recipe.version,
                build.build
            ),
        );

        // plan
        let t = self.begin(
            Stage::Plan,
            &format!("{} {} (build {})", recipe.name, recipe.version, self.id),
        );
        let choice = opts
            .accel
            .or(recipe.build.accelerator)
            .unwrap_or(AccelChoice::Auto);
        let selected = accel::select(choice, &opts.qemu, ws.vm())
            .await
            .map_err(BuildError::Accel)?;
        if selected.accel == Accel::Tcg && choice == AccelChoice::Auto {
            rep.warn(Some(Stage::Plan), &selected.reason);
        }
        let m = machine(recipe, opts, selected, &parent)?;
        self.print_plan(components, &parent, &m, ws);
        self.timed(Stage::Plan, t, "ready");

        // build VM
        let t = self.begin(
            Stage::Build,
            "booting the build VM from an overlay on the parent",
        );
        let overlay = ws.vm().join("build.qcow2");
        img::create_overlay(
            &parent.path,
            parent.format.qemu_name(),
            &overlay,
            Some(m.disk_bytes),
        )
        .await
        .map_err(|source| BuildError::Image {
            stage: "build",
            source,
        })?;
        let guest = self.boot("build", &overlay, &m, ws).await?;
        rep.info(
            Some(Stage::Build),
            &format!(
                "SSH up after {:.0} s; cloud-init {}",
                guest.boot_to_ssh, guest.cloud_init
            ),
        );
        let build_docs = doc_runs(components, false);
        let result = self
            .phases(
                &guest,
                &build_docs,
                &["build", "validate"],
                ws,
                m.build,
                components,
            )
            .await;
        let (_, guest) = self.check(result, guest, Stage::Build).await?;
        self.timed(Stage::Build, t, "build and validate phases passed");

        // seal
        let t = self.begin(
            Stage::Seal,
            "Image Builder cleanup, new-machine identity, trim",
        );
        let sealed = guest
            .shell(&seal::script(&recipe.working_directory, BUILD_USER))
            .await;
        let sealed = match sealed {
            Ok((Some(0), out)) => Ok(out),
            Ok((code, output)) => Err(BuildError::Seal { code, output }),
            Err(source) => Err(BuildError::Guest {
                stage: "seal",
                source: Box::new(source),
            }),
        };
        let (seal_output, guest) = self.check(sealed, guest, Stage::Seal).await?;
        let seal_log = ws.logs().join("seal.log");
        std::fs::write(&seal_log, seal_output).map_err(|source| BuildError::Log {
            path: seal_log.clone(),
            source,
        })?;
        guest
            .power_off(m.shutdown)
            .await
            .map_err(|source| BuildError::Guest {
                stage: "seal",
                source: Box::new(source),
            })?;
        self.timed(Stage::Seal, t, "sealed and powered off");

        // flatten
        let t = self.begin(
            Stage::Flatten,
            "writing a standalone qcow2 (zstd-compressed clusters)",
        );
        let image = ws.stage().join("image.qcow2");
        let flatten = ConvertOptions {
            format: img::Format::Qcow2,
            compress: Some(Compression::Zstd),
            ..ConvertOptions::to(img::Format::Qcow2)
        };
        img::convert(&overlay, Some("qcow2"), &image, &flatten)
            .await
            .map_err(|source| BuildError::Image {
                stage: "flatten",
                source,
            })?;
        let _ = std::fs::remove_file(&overlay);
        let info = img::info(&image)
            .await
            .map_err(|source| BuildError::Image {
                stage: "flatten",
                source,
            })?;
        self.timed(
            Stage::Flatten,
            t,
            &format!(
                "image.qcow2: {:.0} MiB on disk, {} GiB virtual",
                info.actual_size as f64 / (1 << 20) as f64,
                info.virtual_size / GIB
            ),
        );

        // test VM
        let t = self.begin(Stage::Test, "booting a fresh VM from the new image");
        let test_disk = ws.vm().join("test.qcow2");
        img::create_overlay(&image, "qcow2", &test_disk, None)
            .await
            .map_err(|source| BuildError::Image {
                stage: "test",
                source,
            })?;
        let guest = self.boot("test", &test_disk, &m, ws).await?;
        rep.info(
            Some(Stage::Test),
            &format!(
                "boot test passed: SSH after {:.0} s; cloud-init {}",
                guest.boot_to_ssh, guest.cloud_init
            ),
        );
        let test_docs = doc_runs(components, true);
        let result = self
            .phases(&guest, &test_docs, &["test"], ws, m.test, components)
            .await;
        let (tested, guest) = self.check(result, guest, Stage::Test).await?;
        let reboot = self.reboot_test(&guest, m.boot).await;
        let (reboot_text, guest) = self.check(reboot, guest, Stage::Test).await?;
        rep.info(
            Some(Stage::Test),
            &format!("reboot test passed: {reboot_text}"),
        );
        let mut tests = manifest::TestResults {
            boot_to_ssh_seconds: (guest.boot_to_ssh * 10.0).round() / 10.0,
            cloud_init_status: guest.cloud_init.clone(),
            components: Vec::new(),
            reboot_test: reboot_text,
        };
        for c in components {
            let name = c.loaded.doc.name.clone().unwrap_or_default();
            let report = tested.report.documents.iter().find(|d| d.name == name);
            let test_phase = report.and_then(|d| d.phases.iter().find(|p| p.name == "test"));
            tests.components.push(manifest::ComponentTest {
                name,
                status: test_phase.map_or("none".into(), |p| {
                    serde_json::to_value(p.status)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                }),
                steps: test_phase.map_or(0, |p| p.steps.len()),
            });
        }
        drop(guest);
        let _ = std::fs::remove_file(&test_disk);
        self.timed(Stage::Test, t, "boot, component and reboot tests passed");

        // distribute
        let exports = if formats.is_empty() {
            "no export formats (recipe distribution.formats or --format)".to_string()
        } else {
            format!(
                "exporting to {}",
                formats
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let ami = match &recipe.distribution.ami {
            Some(spec) => format!("; then an AMI import through s3://{}", spec.bucket),
            None => String::new(),
        };
        let t = self.begin(Stage::Distribute, &format!("{exports}{ami}"));
        let progress = |line: &str| rep.info(Some(Stage::Distribute), line);
        let distributed = distribute::distribute(&image, ws.stage(), formats, &progress)
            .await
            .map_err(BuildError::Distribute)?;
        let amis = match &recipe.distribution.ami {
            Some(spec) => {
                let home = crate::aws::Clients::new(spec.region.as_deref()).await;
                let default_name =
                    distribute::default_ami_name(&recipe.name, &recipe.version.to_string());
                let images = distribute::import_ami(
                    &home,
                    &image,
                    spec,
                    &default_name,
                    &ws.vm().join("ami"),
                    crate::aws::flow::LocalSettings::default(),
                    &progress,
                )
                .await
                .map_err(BuildError::Ami)?;
                let amis: Vec<manifest::AmiInfo> = images
                    .into_iter()
                    .map(|i| manifest::AmiInfo {
                        region: i.region,
                        ami_id: i.image_id,
                    })
                    .collect();
                catalog.amis(&amis)?;
                amis
            }
            None => Vec::new(),
        };
        self.timed(
            Stage::Distribute,
            t,
            &format!(
                "{} format(s) written and checked{}",
                distributed.len(),
                if amis.is_empty() {
                    String::new()
                } else {
                    format!("; {} AMI(s)", amis.len())
                }
            ),
        );

        // publish
        let t = self.begin(
            Stage::Publish,
            &format!("to {}", ws.destination().display()),
        );
        let mut manifest = Manifest {
            manifest_version: manifest::MANIFEST_VERSION,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            build_id: self.id.clone(),
            image: manifest::ImageInfo {
                name: recipe.name.clone(),
                version: recipe.version.to_string(),
                build: Some(build.build),
                description: recipe.description.clone(),
            },
            recipe: manifest::RecipeInfo {
                file: recipe.file.display().to_string(),
                sha256: recipe_sha256,
                root_volume_gib: recipe.root_volume_gib,
                working_directory: recipe.working_directory.clone(),
            },
            parent: manifest::ParentInfo {
                origin: parent.origin.clone(),
                path: parent.path.display().to_string(),
                format: parent.format.qemu_name().to_string(),
                sha256: parent.sha256.clone(),
                virtual_size: parent.virtual_size,
            },
            components: components
                .iter()
                .map(|c| manifest::ComponentInfo {
                    reference: c.reference.clone(),
                    name: c.loaded.doc.name.clone().unwrap_or_default(),
                    source: c.loaded.id.clone(),
                    sha256: c.text_sha256.clone(),
                    parameters: shown_parameters(c),
                    test_only: c.is_test_only,
                })
                .collect(),
            machine: manifest::MachineInfo {
                accelerator: m.selected.accel.name().to_string(),
                accelerator_reason: m.selected.reason.clone(),
                cpus: m.cpus,
                memory_mib: m.memory_mib,
                disk_bytes: m.disk_bytes,
                network: m.network.name().to_string(),
                timeouts: manifest::TimeoutInfo {
                    boot: m.boot.as_secs(),
                    build: m.build.as_secs(),
                    test: m.test.as_secs(),
                    shutdown: m.shutdown.as_secs(),
                },
            },
            stages: Vec::new(),
            tests,
            artifacts: Vec::new(),
            amis,
            started_at,
            finished_at: String::new(),
        };
        self.timed(
            Stage::Publish,
            t,
            "stages done; writing digests and the manifest",
        );
        // kiln.log is an artifact too: it ends here, before the digests
        self.reporter.close_log();
        manifest.stages = self.timings.clone();
        manifest.finished_at = chrono::Utc::now().to_rfc3339();
        manifest.artifacts = manifest::artifacts(ws.stage()).await?;
        for d in &distributed {
            let rel = d.path.to_string_lossy();
            if let Some(a) = manifest.artifacts.iter_mut().find(|a| a.path == rel) {
                a.kind = d.format.name().to_string();
            }
        }
        crate::toe::logs::write_json(&ws.stage().join("manifest.json"), &manifest).map_err(
            |e| BuildError::Log {
                path: ws.stage().join("manifest.json"),
                source: std::io::Error::other(e.to_string()),
            },
        )?;
        Ok(manifest)
    }

    fn print_plan(
        &self,
        components: &[ResolvedComponent],
        parent: &ResolvedParent,
        m: &Machine,
        ws: &Workspace,
    ) {
        let rep = self.reporter;
        let p = Some(Stage::Plan);
        rep.info(
            p,
            &format!(
                "parent: {} ({}, {} GiB virtual, sha256 {})",
                parent.origin,
                parent.format.qemu_name(),
                parent.virtual_size.div_ceil(GIB),
                parent.sha256
            ),
        );
        for (i, c) in components.iter().enumerate() {
            let params: Vec<String> = shown_parameters(c)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            rep.info(
                p,
                &format!(
                    "component {}: {} ({}{}, sha256 {}){}",
                    i + 1,
                    c.loaded.doc.name.clone().unwrap_or_default(),
                    c.loaded.id,
                    if c.is_test_only { ", test" } else { "" },
                    &c.text_sha256[..16],
                    if params.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", params.join(" "))
                    }
                ),
            );
        }
        rep.info(
            p,
            &format!(
                "machine: {} ({}), {} vCPUs, {} MiB, {} GiB disk, network {}; timeouts: boot {} s, build {} s, test {} s, shutdown {} s",
                m.selected.accel.name(),
                m.selected.reason,
                m.cpus,
                m.memory_mib,
                m.disk_bytes / GIB,
                m.network.name(),
                m.boot.as_secs(),
                m.build.as_secs(),
                m.test.as_secs(),
                m.shutdown.as_secs()
            ),
        );
        rep.info(p, &format!("output: {}", ws.destination().display()));
    }

    async fn boot(
        &self,
        name: &'static str,
        disk: &Path,
        m: &Machine,
        ws: &Workspace,
    ) -> Result<Guest, BuildError> {
        Guest::boot(GuestSpec {
            name,
            disk,
            accel: m.selected.accel,
            cpus: m.cpus,
            memory_mib: m.memory_mib,
            network: m.network,
            boot_timeout: m.boot,
            vm_dir: ws.vm(),
            log_dir: &ws.logs(),
            socket_dir: ws.sockets(),
            qemu: &self.opts.qemu,
            build_id: &self.id,
        })
        .await
        .map_err(|source| BuildError::Guest {
            stage: name,
            source: Box::new(source),
        })
    }

    async fn phases(
        &self,
        guest: &Guest,
        docs: &[DocumentRun],
        phases: &[&str],
        ws: &Workspace,
        timeout: Duration,
        components: &[ResolvedComponent],
    ) -> Result<PhaseResult, BuildError> {
        let stage = if phases.contains(&"test") {
            "test"
        } else {
            "build"
        };
        let log_dir = ws.logs().join(format!("toe-{stage}"));
        std::fs::create_dir_all(&log_dir).map_err(|source| BuildError::Log {
            path: log_dir.clone(),
            source,
        })?;
        let result = PhaseRun {
            target: &guest.target,
            docs,
            phases,
            log_dir: &log_dir,
            working_directory: &self.recipe.working_directory,
            redactor: Self::secrets(components),
            echo: self.opts.echo,
            timeout,
        }
        .run()
        .await
        .map_err(|source| BuildError::Phases { stage, source })?;
        if result.failed() {
            return Err(BuildError::StepsFailed {
                stage,
                count: result.failures.len(),
                logs: result.log_folder.display().to_string(),
                details: result.failures.join("\n"),
            });
        }
        Ok(result)
    }

    /// The reboot test: the guest reboots, comes back over SSH with a new
    /// boot id (the SSH target checks it), and cloud-init reports `done`.
    async fn reboot_test(&self, guest: &Guest, limit: Duration) -> Result<String, BuildError> {
        let t = Instant::now();
        let outcome = crate::target::Target::reboot(&guest.target, 0)
            .await
            .map_err(|e| BuildError::RebootTest(format!("the VM did not come back: {e}")))?;
        if outcome != crate::target::RebootOutcome::Rebooted {
            return Err(BuildError::RebootTest(
                "the SSH target could not reboot the VM".into(),
            ));
        }
        let status = guest
            .wait_cloud_init(limit)
            .await
            .map_err(|e| BuildError::RebootTest(e.to_string()))?;
        Ok(format!(
            "back over SSH with a new boot id after {:.0} s; cloud-init {status}",
            t.elapsed().as_secs_f64()
        ))
    }

    /// Passes `result` through with the guest; on an error with
    /// `--on-error abort`, first keeps the VM running and waits: Ctrl-C ends
    /// the command (its signal handler drops this future, which kills QEMU
    /// and cleans up), as does powering the VM off.
    async fn check<T>(
        &self,
        result: Result<T, BuildError>,
        mut guest: Guest,
        stage: Stage,
    ) -> Result<(T, Guest), BuildError> {
        let e = match result {
            Ok(v) => return Ok((v, guest)),
            Err(e) => e,
        };
        if self.opts.on_error == OnError::Abort {
            let rep = self.reporter;
            rep.warn(Some(stage), &e.to_string());
            rep.warn(
                Some(stage),
                &format!(
                    "--on-error abort: the {} VM is still running. Get in with:\n    {}\n  serial console: {}\n  Press Ctrl-C to stop it and clean up.",
                    guest.name,
                    guest.ssh_command(),
                    guest.serial_log.display()
                ),
            );
            while guest.vm.exited().is_none() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Err(e)
    }
}
