//! The staged build: parent → plan → build VM (build, validate) → seal →
//! flatten → test VM (boot test, test phases, reboot test) → publish.
//! Every stage is timed, logged and cleaned up; nothing is published unless
//! every stage passed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cache::Cache;
use super::distribute;
use super::guest::{Guest, GuestError, GuestSpec, BUILD_USER, SEED_FORMAT};
use super::layers::{self, BootedInputs, Layer, LayerDraft, LayerKind, LayerStore, Miss};
use super::manifest::{self, Manifest};
use super::parent::{self, ResolvedParent};
use super::phases::{PhaseError, PhaseResult, PhaseRun};
use super::progress::{human, BuildFacts, Reporter, Stage, StageGuard, StageLog};
use super::record::{self, RecordError, Recorder};
use super::seal;
use super::workspace::{Workspace, WorkspaceError};
use crate::disk::img::{self, Compression, ConvertOptions};
use crate::export::format::ExportFormat;
use crate::export::write::ExportError;
use crate::recipe::{Accelerator, Recipe, ResolvedComponent};
use crate::toe::console::Redactor;
use crate::toe::runner::DocumentRun;
use crate::util::diag::Diagnostic;
use crate::vm::accel::{self, AccelChoice, Selected};
use crate::vm::net::Network;
use crate::vm::qemu::Accel;

/// What to do when a stage fails while its VM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Boot cold and run every component, ignoring saved build VMs (the
    /// ones this build saves replace them).
    pub no_cache: bool,
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
        stage: Stage,
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
        stage: Stage,
        /// The cause.
        #[source]
        source: Box<GuestError>,
    },
    /// A phase run could not complete.
    #[error("{stage} stage")]
    Phases {
        /// The stage.
        stage: Stage,
        /// The cause.
        #[source]
        source: PhaseError,
    },
    /// Steps failed.
    #[error("{stage} stage: {count} step(s) failed (toe logs: {logs})\n{details}")]
    StepsFailed {
        /// The stage.
        stage: Stage,
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
            || matches!(self, BuildError::Parent(e) if e.is_invalid_input())
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

impl Machine {
    /// The machine as the manifest records it.
    fn info(&self) -> manifest::MachineInfo {
        manifest::MachineInfo {
            accelerator: self.selected.accel.name().to_string(),
            accelerator_reason: self.selected.reason.clone(),
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            disk_bytes: self.disk_bytes,
            network: self.network.name().to_string(),
            timeouts: manifest::TimeoutInfo {
                boot: self.boot.as_secs(),
                build: self.build.as_secs(),
                test: self.test.as_secs(),
                shutdown: self.shutdown.as_secs(),
            },
        }
    }
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
        network: opts
            .network
            .or(recipe.build.network.map(vm_network))
            .unwrap_or_default(),
        boot: pick(opts.boot_timeout.or(t.boot_seconds), DEFAULT_BOOT),
        build: pick(t.build_seconds, DEFAULT_BUILD),
        test: pick(t.test_seconds, DEFAULT_TEST),
        shutdown: pick(t.shutdown_seconds, DEFAULT_SHUTDOWN),
    })
}

/// Masks the secrets in the logs that QEMU, not kiln, wrote (the serial
/// consoles, `*-serial.log`, in `dir`): what a guest printed there is
/// published with the image. A log that cannot be rewritten is a warning.
fn mask_guest_logs(dir: &Path, reporter: &Reporter) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let serial = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("-serial.log"));
        if serial && e.file_type().is_ok_and(|t| t.is_file()) {
            if let Err(err) = crate::util::redact::file_in_place(&path) {
                reporter.warn(None, &crate::util::display::chain(&err));
            }
        }
    }
}

/// The VM network a recipe's `build.network` names.
fn vm_network(n: crate::recipe::Network) -> Network {
    match n {
        crate::recipe::Network::None => Network::None,
        crate::recipe::Network::Outbound => Network::Outbound,
        crate::recipe::Network::Host => Network::Host,
    }
}

/// What the manifest records when the recipe did not ask for kiln's reboot
/// test (as in Image Builder, a reboot test is something a recipe asks for).
const NO_REBOOT_TEST: &str =
    "not requested (set build.tests.reboot: true, or list the reboot-test-linux component)";

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

/// What the parent stage resolved.
struct Resolved {
    parent: ResolvedParent,
    recipe_sha256: String,
    build: crate::catalog::BuildNumber,
}

/// One build, start to publish.
pub struct Build<'a> {
    recipe: &'a Recipe,
    opts: &'a BuildOptions,
    reporter: &'a Reporter,
    id: String,
    stages: StageLog,
    /// The layers this build's disks are backed by, locked until it ends.
    held: std::sync::Mutex<Vec<Layer>>,
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
            stages: StageLog::default(),
            held: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Starts `stage`; the guard ends it.
    fn stage(&self, stage: Stage, message: &str) -> StageGuard<'_> {
        self.reporter.stage(&self.stages, stage, message)
    }

    /// The secrets of every component, for redaction.
    pub fn secrets(components: &[ResolvedComponent]) -> Redactor {
        Redactor::new(components.iter().flat_map(|c| c.secrets.iter().cloned()))
    }

    /// The export formats: the flags', else the recipe's.
    fn formats(&self) -> &'a [ExportFormat] {
        self.opts
            .formats
            .as_deref()
            .unwrap_or(&self.recipe.distribution.formats)
    }
    /// Runs every stage. On failure nothing is published and the error says
    /// where the logs are.
    pub async fn run(self, components: Vec<ResolvedComponent>) -> Result<Built, BuildError> {
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
        if let Some(line) = super::leftovers::summary(&opts.output, ws.reconciled()) {
            self.reporter.warn(None, &line);
        }
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
            Ok(manifest) => self.published(ws, &mut catalog, manifest, facts).await,
            Err(e) => Err(self.failed(ws, &mut catalog, e, facts)),
        }
    }

    /// Publishes the staged folder in one rename and records it; with
    /// `--force`, first waits for another build of the same version to end.
    async fn published(
        &self,
        mut ws: Workspace,
        catalog: &mut Recorder,
        manifest: Manifest,
        mut facts: BuildFacts,
    ) -> Result<Built, BuildError> {
        let recipe = self.recipe;
        let waiting = |pid: Option<u32>| {
            let by = pid.map_or("another kiln process".into(), |p| format!("pid {p}"));
            self.reporter.info(
                None,
                &format!(
                    "{} {} is being built by {by}: waiting for it to end before publishing",
                    recipe.name, recipe.version
                ),
            );
        };
        ws.hold_version(&waiting).await?;
        let dir = ws.publish()?;
        catalog.published(&manifest, &dir)?;
        facts.outcome = Some("success");
        facts.published = Some(dir.display().to_string());
        facts.logs = Some(dir.join("logs").display().to_string());
        self.reporter.result(&format!(
            "published {} {}{} in {} ({})",
            self.recipe.name,
            self.recipe.version,
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

    /// Names the failed stage, removes the temporary files, keeps the logs
    /// (moved where the user can find them) and records the failure.
    fn failed(
        &self,
        ws: Workspace,
        catalog: &mut Recorder,
        e: BuildError,
        mut facts: BuildFacts,
    ) -> BuildError {
        if let Some((stage, since)) = self.stages.failed() {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default();
            self.reporter.stage_failed(stage, since.elapsed(), first);
        }
        mask_guest_logs(&ws.logs(), self.reporter);
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
        e
    }

    /// The stages, in DESIGN.md's order. Each stage method owns its
    /// timeout, its logs and its cleanup; a stage that fails leaves its
    /// guard unfinished, which names it in the failure.
    async fn stages(
        &self,
        ws: &mut Workspace,
        components: &[ResolvedComponent],
        started_at: String,
        catalog: &mut Recorder,
        origin: &record::Origin,
    ) -> Result<Manifest, BuildError> {
        let resolved = self.parent_stage(ws, components, catalog, origin).await?;
        let ws = &*ws;
        let m = self.plan_stage(&resolved.parent, ws, components).await?;
        let (guest, overlay) = self
            .build_stage(&resolved.parent, &m, ws, components)
            .await?;
        self.seal_stage(guest, &m, ws).await?;
        let image = self.flatten_stage(&overlay, ws).await?;
        let tests = self.test_stage(&image, &m, ws, components).await?;
        let (distributed, amis) = self.distribute_stage(&image, ws, catalog).await?;
        let publish = self.stage(
            Stage::Publish,
            &format!("to {}", ws.destination().display()),
        );
        let mut manifest = Manifest::assemble(manifest::Facts {
            build_id: &self.id,
            recipe: self.recipe,
            recipe_sha256: &resolved.recipe_sha256,
            build: resolved.build.build,
            parent: &resolved.parent,
            components,
            machine: m.info(),
            tests,
            amis,
            restored_from: self.restored_from(),
            started_at,
        });
        publish.done("stages done; writing digests and the manifest");
        // kiln.log is an artifact too: it ends here, before the digests
        self.reporter.close_log();
        mask_guest_logs(&ws.logs(), self.reporter);
        manifest.stages = self.stages.timings();
        manifest.finish(ws.stage(), &distributed).await?;
        Ok(manifest)
    }

    /// Resolves the parent image (cached, downloaded or bootstrapped) and
    /// records the build in the catalog, which gives it its number.
    async fn parent_stage(
        &self,
        ws: &mut Workspace,
        components: &[ResolvedComponent],
        catalog: &mut Recorder,
        origin: &record::Origin,
    ) -> Result<Resolved, BuildError> {
        let (recipe, opts) = (self.recipe, self.opts);
        let g = self.stage(Stage::Parent, "resolving the parent image");
        let progress = |line: &str| g.info(line);
        let parent = match &opts.parent {
            Some(p) => p.clone(),
            None => parent::resolve(&recipe.parent, &opts.cache, &opts.catalog, &progress).await?,
        };
        let recipe_sha256 = crate::recipe::digest::sha256_file(&recipe.file)
            .await
            .map_err(manifest::ManifestError::from)?;
        let inputs = record::inputs(
            &recipe_sha256,
            &parent,
            components,
            self.formats(),
            opts.ami_sha256.clone(),
        );
        let build = catalog.begin(recipe, &parent, &inputs, origin)?;
        ws.place(build.build)?;
        g.done(&format!(
            "{} (sha256 {}); catalog build {}/{}/{}",
            parent.origin,
            &parent.sha256[..16],
            recipe.name,
            recipe.version,
            build.build
        ));
        Ok(Resolved {
            parent,
            recipe_sha256,
            build,
        })
    }

    /// Chooses the accelerator (a probe boot for KVM), scales the timeouts
    /// and prints the plan.
    async fn plan_stage(
        &self,
        parent: &ResolvedParent,
        ws: &Workspace,
        components: &[ResolvedComponent],
    ) -> Result<Machine, BuildError> {
        let (recipe, opts) = (self.recipe, self.opts);
        let g = self.stage(
            Stage::Plan,
            &format!("{} {} (build {})", recipe.name, recipe.version, self.id),
        );
        let choice = opts
            .accel
            .or(recipe.build.accelerator.map(|a| match a {
                Accelerator::Auto => AccelChoice::Auto,
                Accelerator::Kvm => AccelChoice::Kvm,
                Accelerator::Tcg => AccelChoice::Tcg,
            }))
            .unwrap_or(AccelChoice::Auto);
        let selected = accel::select(choice, &opts.qemu, ws.vm())
            .await
            .map_err(BuildError::Accel)?;
        if selected.accel == Accel::Tcg && choice == AccelChoice::Auto {
            g.warn(&selected.reason);
        }
        let m = machine(recipe, opts, selected, parent)?;
        self.print_plan(components, parent, &m, ws);
        g.done("ready");
        Ok(m)
    }

    /// VM #1: boots an overlay on the parent and runs the build and
    /// validate phases within the build timeout. Returns the running guest
    /// and its overlay (the VM is killed if this fails or is dropped).
    async fn build_stage(
        &self,
        parent: &ResolvedParent,
        m: &Machine,
        ws: &Workspace,
        components: &[ResolvedComponent],
    ) -> Result<(Guest, PathBuf), BuildError> {
        let g = self.stage(Stage::Build, "starting the build VM on the parent");
        let overlay = ws.vm().join("build.qcow2");
        let guest = self.booted_guest(&g, parent, m, ws, &overlay).await?;
        g.info(&format!(
            "SSH up after {:.0} s; cloud-init {}",
            guest.boot_to_ssh, guest.cloud_init
        ));
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
        g.done("build and validate phases passed");
        Ok((guest, overlay))
    }

    /// The build VM with the parent booted: restored in seconds from the
    /// saved booted parent when one is valid for this parent and machine,
    /// else booted cold and saved for the next build. A saved VM that does
    /// not restore is replaced; saving never fails the build.
    async fn booted_guest(
        &self,
        g: &StageGuard<'_>,
        parent: &ResolvedParent,
        m: &Machine,
        ws: &Workspace,
        overlay: &Path,
    ) -> Result<Guest, BuildError> {
        let store = LayerStore::new(self.opts.cache.layers());
        let key = match self.booted_key(parent, m).await {
            Ok(k) => Some(k),
            Err(e) => {
                g.warn(&format!("saved build VMs are not used: {e}"));
                None
            }
        };
        if let (Some(key), false) = (&key, self.opts.no_cache) {
            match store.open(key, Some(self.layer_max_age()), chrono::Utc::now()) {
                Ok(Ok(layer)) => {
                    match self.restore_vm(Stage::Build, &layer, overlay, m, ws).await {
                        Ok(guest) => {
                            g.info(&format!(
                            "restored the booted parent (saved {}, layer {}) instead of booting",
                            layer.meta.created_at,
                            &key[..12]
                        ));
                            self.hold(layer);
                            return Ok(guest);
                        }
                        Err(e) => {
                            g.warn(&format!(
                            "the saved booted parent did not restore ({}); booting cold, it is saved again",
                            first_line(&crate::util::display::chain(&e))
                        ));
                            drop(layer);
                            let _ = store.remove(key);
                            let _ = std::fs::remove_file(overlay);
                        }
                    }
                }
                Ok(Err(Miss::Absent)) => {
                    g.info("no saved booted parent for this parent and machine: booting cold")
                }
                Ok(Err(miss)) => g.info(&format!(
                    "saved booted parent not used: {miss}; booting cold"
                )),
                Err(e) => g.warn(&format!("saved build VMs are not used: {e}")),
            }
        }
        let mut guest = self
            .boot_vm(
                Stage::Build,
                (&parent.path, parent.format.qemu_name()),
                overlay,
                Some(m.disk_bytes),
                m,
                ws,
            )
            .await?;
        if let Some(key) = key {
            let meta = LayerDraft {
                key: &key,
                kind: LayerKind::Booted,
                component: None,
                below: None,
                backing: &parent.path,
                parent_sha256: &parent.sha256,
            };
            self.save_layer(g, &store, meta, &mut guest, overlay, m)
                .await?;
        }
        Ok(guest)
    }

    /// The key of the booted parent's layer for this parent and machine.
    async fn booted_key(&self, parent: &ResolvedParent, m: &Machine) -> Result<String, BuildError> {
        let qemu_version = crate::vm::snapshot::qemu_version(&self.opts.qemu)
            .await
            .map_err(BuildError::Accel)?;
        Ok(layers::booted_key(&BootedInputs {
            parent_sha256: parent.sha256.clone(),
            parent_path: std::fs::canonicalize(&parent.path).unwrap_or(parent.path.clone()),
            cpus: m.cpus,
            memory_mib: m.memory_mib,
            machine: "q35".into(),
            accel: m.selected.accel.name().into(),
            disk_bytes: m.disk_bytes,
            // a state saved with one network card and backend cannot be
            // loaded into another, nor may a guest keep what it reached
            network: m.network.name().into(),
            qemu_version,
            seed_format: SEED_FORMAT,
        }))
    }

    /// Saves the running `guest` as the layer `draft` describes, unless
    /// another kiln is writing it. A layer that cannot be written is a
    /// warning; a guest lost while saving is the build's error.
    async fn save_layer(
        &self,
        g: &StageGuard<'_>,
        store: &LayerStore,
        draft: LayerDraft<'_>,
        guest: &mut Guest,
        overlay: &Path,
        m: &Machine,
    ) -> Result<(), BuildError> {
        let writer = match store.writer(draft.key) {
            Ok(Some(w)) => w,
            Ok(None) => {
                g.info("another kiln is saving or using this build VM: not saved");
                return Ok(());
            }
            Err(e) => {
                g.warn(&format!("the build VM is not saved: {e}"));
                return Ok(());
            }
        };
        let guest_lost = |source| BuildError::Guest {
            stage: Stage::Build,
            source: Box::new(source),
        };
        let saved = guest
            .save(overlay, &writer, m.boot)
            .await
            .map_err(guest_lost)?;
        let committed = saved
            .map_err(|e| crate::util::display::chain(&e))
            .and_then(|s| {
                let meta = draft.meta(&s, &writer);
                writer
                    .commit(&meta)
                    .map(|_| s)
                    .map_err(|e| crate::util::display::chain(&e))
            });
        match committed {
            Ok(s) => g.info(&format!(
                "saved the {} for the next builds in {:.1} s ({:.0} MiB state for {:.0} MiB of RAM)",
                draft.what(),
                s.seconds,
                s.file_bytes as f64 / f64::from(1 << 20),
                s.guest_ram_bytes as f64 / f64::from(1 << 20),
            )),
            Err(e) => g.warn(&format!("the {} was not saved: {e}", draft.what())),
        }
        Ok(())
    }

    /// How old a saved build VM may be to be used (`build.cache.maxAgeHours`).
    fn layer_max_age(&self) -> Duration {
        self.recipe
            .build
            .layer_max_age_hours
            .map_or(layers::DEFAULT_MAX_AGE, |h| Duration::from_secs(h * 3600))
    }

    /// The layers this build was restored from, for the manifest.
    fn restored_from(&self) -> Vec<manifest::RestoredLayer> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .map(|l| manifest::RestoredLayer {
                kind: l.meta.kind.clone(),
                key: l.meta.key.clone(),
                saved_at: l.meta.created_at.clone(),
            })
            .collect()
    }

    /// Keeps `layer` locked until the build ends: the build's disk chain
    /// reads it.
    fn hold(&self, layer: Layer) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(layer);
    }

    /// A VM from a saved layer: a new overlay on the layer's disk, the
    /// saved state loaded, fresh credentials. Timeout: the boot timeout.
    async fn restore_vm(
        &self,
        stage: Stage,
        layer: &Layer,
        overlay: &Path,
        m: &Machine,
        ws: &Workspace,
    ) -> Result<Guest, BuildError> {
        img::create_overlay(&layer.file(layers::DISK_FILE), "qcow2", overlay, None)
            .await
            .map_err(|source| BuildError::Image { stage, source })?;
        Guest::restore(self.guest_spec(stage, overlay, m, ws), layer)
            .await
            .map_err(|source| BuildError::Guest {
                stage,
                source: Box::new(source),
            })
    }

    /// Image Builder's cleanup and kiln's new-machine identity (the seal
    /// script, its output in `logs/seal.log`), then an ACPI power-off within
    /// the shutdown timeout.
    async fn seal_stage(
        &self,
        guest: Guest,
        m: &Machine,
        ws: &Workspace,
    ) -> Result<(), BuildError> {
        let g = self.stage(
            Stage::Seal,
            "Image Builder cleanup, new-machine identity, trim",
        );
        let guest_err = |source| BuildError::Guest {
            stage: Stage::Seal,
            source: Box::new(source),
        };
        let sealed = match guest
            .shell(&seal::script(&self.recipe.working_directory, BUILD_USER))
            .await
        {
            Ok((Some(0), out)) => Ok(out),
            Ok((code, output)) => Err(BuildError::Seal { code, output }),
            Err(source) => Err(guest_err(source)),
        };
        let (seal_output, guest) = self.check(sealed, guest, Stage::Seal).await?;
        let seal_log = ws.logs().join("seal.log");
        std::fs::write(&seal_log, seal_output).map_err(|source| BuildError::Log {
            path: seal_log.clone(),
            source,
        })?;
        guest.power_off(m.shutdown).await.map_err(guest_err)?;
        g.done("sealed and powered off");
        Ok(())
    }

    /// Writes the sealed overlay as a standalone qcow2 with zstd clusters
    /// in the stage folder, and removes the overlay.
    async fn flatten_stage(&self, overlay: &Path, ws: &Workspace) -> Result<PathBuf, BuildError> {
        let g = self.stage(
            Stage::Flatten,
            "writing a standalone qcow2 (zstd-compressed clusters)",
        );
        let image_err = |source| BuildError::Image {
            stage: Stage::Flatten,
            source,
        };
        let image = ws.stage().join("image.qcow2");
        let flatten = ConvertOptions {
            format: img::Format::Qcow2,
            compress: Some(Compression::Zstd),
            ..ConvertOptions::to(img::Format::Qcow2)
        };
        img::convert(overlay, Some("qcow2"), &image, &flatten)
            .await
            .map_err(image_err)?;
        let _ = std::fs::remove_file(overlay);
        let info = img::info(&image).await.map_err(image_err)?;
        g.done(&format!(
            "image.qcow2: {:.0} MiB on disk, {} GiB virtual",
            info.actual_size as f64 / (1 << 20) as f64,
            info.virtual_size / GIB
        ));
        Ok(image)
    }

    /// VM #2, fresh from the new image with a new identity: the boot test,
    /// every component's test phase within the test timeout, and the reboot
    /// test when the recipe asks for it (`build.tests.reboot`). The VM and
    /// its overlay are gone when this returns.
    async fn test_stage(
        &self,
        image: &Path,
        m: &Machine,
        ws: &Workspace,
        components: &[ResolvedComponent],
    ) -> Result<manifest::TestResults, BuildError> {
        let g = self.stage(Stage::Test, "booting a fresh VM from the new image");
        let test_disk = ws.vm().join("test.qcow2");
        let guest = self
            .boot_vm(Stage::Test, (image, "qcow2"), &test_disk, None, m, ws)
            .await?;
        g.info(&format!(
            "boot test passed: SSH after {:.0} s; cloud-init {}",
            guest.boot_to_ssh, guest.cloud_init
        ));
        let test_docs = doc_runs(components, true);
        let result = self
            .phases(&guest, &test_docs, &["test"], ws, m.test, components)
            .await;
        let (tested, guest) = self.check(result, guest, Stage::Test).await?;
        let (reboot_text, guest) = if self.recipe.build.reboot_test == Some(true) {
            let reboot = self.reboot_test(&guest, m.boot).await;
            let (text, guest) = self.check(reboot, guest, Stage::Test).await?;
            g.info(&format!("reboot test passed: {text}"));
            (text, guest)
        } else {
            (NO_REBOOT_TEST.to_string(), guest)
        };
        let tests = manifest::TestResults {
            boot_to_ssh_seconds: (guest.boot_to_ssh * 10.0).round() / 10.0,
            cloud_init_status: guest.cloud_init.clone(),
            components: manifest::component_tests(components, &tested.report),
            reboot_test: reboot_text,
        };
        drop(guest);
        let _ = std::fs::remove_file(&test_disk);
        g.done("boot and component tests passed");
        Ok(tests)
    }

    /// Exports the tested image to every format into the stage folder, then
    /// imports it as an AMI when the recipe asks (recorded in the catalog).
    async fn distribute_stage(
        &self,
        image: &Path,
        ws: &Workspace,
        catalog: &mut Recorder,
    ) -> Result<(Vec<distribute::Distributed>, Vec<manifest::AmiInfo>), BuildError> {
        let g = self.stage(Stage::Distribute, &self.distribute_plan());
        let progress = |line: &str| g.info(line);
        let distributed = distribute::distribute(image, ws.stage(), self.formats(), &progress)
            .await
            .map_err(BuildError::Distribute)?;
        let mut amis = Vec::new();
        if let Some(spec) = &self.recipe.distribution.ami {
            amis = self.import_ami(image, spec, ws, &progress).await?;
            catalog.amis(&amis)?;
        }
        g.done(&format!(
            "{} format(s) written and checked{}",
            distributed.len(),
            if amis.is_empty() {
                String::new()
            } else {
                format!("; {} AMI(s)", amis.len())
            }
        ));
        Ok((distributed, amis))
    }

    /// What the distribute stage will do, for its first line.
    fn distribute_plan(&self) -> String {
        let formats = self.formats();
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
        let ami = match &self.recipe.distribution.ami {
            Some(spec) => format!("; then an AMI import through s3://{}", spec.bucket),
            None => String::new(),
        };
        format!("{exports}{ami}")
    }

    /// Imports the tested image as an AMI (VM Import), copies and shares it
    /// as `spec` says; the AMI in every region.
    async fn import_ami(
        &self,
        image: &Path,
        spec: &crate::ami::AmiSpec,
        ws: &Workspace,
        progress: crate::util::io::ProgressFn<'_>,
    ) -> Result<Vec<manifest::AmiInfo>, BuildError> {
        let recipe = self.recipe;
        let home = crate::aws::Clients::new(spec.region.as_deref()).await;
        let default_name = distribute::default_ami_name(&recipe.name, &recipe.version.to_string());
        let images = distribute::import_ami(
            &home,
            image,
            spec,
            &default_name,
            &ws.vm().join("ami"),
            crate::aws::flow::LocalSettings::default(),
            progress,
        )
        .await
        .map_err(BuildError::Ami)?;
        Ok(images
            .into_iter()
            .map(|i| manifest::AmiInfo {
                region: i.region,
                ami_id: i.image_id,
            })
            .collect())
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
            let params: Vec<String> = manifest::shown_parameters(c)
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

    /// Creates `overlay` on `backing` (grown to `size` when given) and boots
    /// a VM from it with a new identity; the build and the test VM both
    /// start here. Timeout: the boot timeout, to SSH and cloud-init done.
    async fn boot_vm(
        &self,
        stage: Stage,
        (backing, format): (&Path, &str),
        overlay: &Path,
        size: Option<u64>,
        m: &Machine,
        ws: &Workspace,
    ) -> Result<Guest, BuildError> {
        img::create_overlay(backing, format, overlay, size)
            .await
            .map_err(|source| BuildError::Image { stage, source })?;
        Guest::boot(self.guest_spec(stage, overlay, m, ws))
            .await
            .map_err(|source| BuildError::Guest {
                stage,
                source: Box::new(source),
            })
    }

    /// How a VM of `stage` runs on `disk`.
    fn guest_spec<'s>(
        &'s self,
        stage: Stage,
        disk: &'s Path,
        m: &Machine,
        ws: &'s Workspace,
    ) -> GuestSpec<'s> {
        GuestSpec {
            name: stage.name(),
            disk,
            accel: m.selected.accel,
            cpus: m.cpus,
            memory_mib: m.memory_mib,
            network: m.network,
            boot_timeout: m.boot,
            vm_dir: ws.vm(),
            log_dir: ws.logs(),
            socket_dir: ws.sockets(),
            qemu: &self.opts.qemu,
            build_id: &self.id,
        }
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
            Stage::Test
        } else {
            Stage::Build
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

/// The first line of a text.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
