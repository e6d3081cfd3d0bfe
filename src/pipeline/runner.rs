//! Running a pipeline once (`kiln pipeline run`, and each scheduled run of
//! `kiln serve`): take the pipeline's lock, load its recipe with the
//! pipeline's infrastructure and distribution applied, decide from the
//! start condition whether to build (and say why), build, copy the image to
//! the other output directories and S3, notify, and apply retention.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::copies::{self, CopyError};
use super::file::{Pipeline, RecipeSource, StartCondition};
use super::notify::{self, BuildEvent};
use super::retention::{self, Decision, Plan, RetentionPolicy};
use crate::build::cache::Cache;
use crate::build::inputs::{self, Inputs};
use crate::build::lock::{FileLock, LockError};
use crate::build::parent::{self, ParentError, ResolvedParent};
use crate::build::progress::Reporter;
use crate::build::record;
use crate::build::run::{Build, BuildError, BuildOptions, OnError};
use crate::catalog::{self, Catalog, CatalogError};
use crate::recipe::{self, Recipe, RecipeError, ResolvedComponent};
use crate::util::diag::Diagnostic;
use crate::vm::accel::AccelChoice;

/// How a run was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// On demand (`kiln pipeline run`).
    Manual,
    /// By the schedule, for the occurrence at `scheduled`; `missed` earlier
    /// occurrences were coalesced into it.
    Schedule {
        /// The occurrence.
        scheduled: DateTime<Utc>,
        /// Occurrences coalesced into this run.
        missed: u32,
    },
}

/// Settings of a run that do not come from the pipeline file.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// The image catalog.
    pub catalog: PathBuf,
    /// The parent image cache.
    pub cache: Cache,
    /// The QEMU system emulator.
    pub qemu: String,
    /// Where images go when the pipeline names no output directory.
    pub output: PathBuf,
    /// Build only if the inputs changed, whatever the start condition says.
    pub if_changed: bool,
    /// Overrides the pipeline's accelerator.
    pub accel: Option<AccelChoice>,
    /// What a failure does to a running VM.
    pub on_error: OnError,
    /// Progress as JSON lines.
    pub json: bool,
    /// Print the components' step output.
    pub echo: bool,
    /// Print nothing (the build still writes its log and events).
    pub quiet: bool,
    /// Why the run started.
    pub trigger: Trigger,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// A new image was published.
    Built {
        /// `NAME/x.y.z/n`.
        image: String,
        /// Its folder.
        dir: PathBuf,
        /// Why it was built.
        reasons: Vec<String>,
        /// Copies in other output directories and S3.
        copies: Vec<String>,
        /// Images retention deleted afterwards.
        pruned: Vec<String>,
    },
    /// Nothing was built: the inputs are those of the last successful build.
    Skipped {
        /// Why, naming that build.
        reason: String,
    },
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Another kiln process is running this pipeline.
    #[error("pipeline {pipeline} is already running (lock {})", lock.display())]
    Busy {
        /// The pipeline.
        pipeline: String,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The lock folder could not be created.
    #[error("cannot create the lock folder {}", path.display())]
    LockDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The recipe file could not be read.
    #[error(transparent)]
    Recipe(RecipeError),
    /// The recipe or its components are invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// The parent image could not be resolved (to compute the inputs).
    #[error("resolving the parent image")]
    Parent(#[source] ParentError),
    /// Hashing the recipe failed.
    #[error("hashing the recipe {}", path.display())]
    RecipeDigest {
        /// The recipe file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::util::io::IoError,
    },
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The build failed (nothing was published).
    #[error(transparent)]
    Build(Box<BuildError>),
    /// The image was published but a copy or an upload failed.
    #[error("{image} was published in {}, but a copy failed", dir.display())]
    Copy {
        /// `NAME/x.y.z/n`.
        image: String,
        /// The published folder.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: Box<CopyError>,
    },
}

impl RunError {
    /// Whether the error is the user's input (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            RunError::Recipe(_) | RunError::Invalid(_) => true,
            RunError::Build(e) => e.is_invalid_input(),
            RunError::Parent(e) => e.is_invalid_input(),
            _ => false,
        }
    }
}

/// The lock file of pipeline `name` for the catalog at `catalog`.
pub fn lock_path(catalog: &Path, name: &str) -> PathBuf {
    catalog::events_dir(catalog)
        .with_file_name("locks")
        .join(format!("pipeline-{name}.lock"))
}

/// The pipeline's recipe with its infrastructure and distribution applied,
/// and the recipe's components resolved.
pub fn recipe_of(p: &Pipeline) -> Result<(Recipe, Vec<ResolvedComponent>), RunError> {
    let (mut recipe, components) = match &p.recipe {
        RecipeSource::Path(path) => recipe::load_resolved(path).map_err(|e| match e {
            RecipeError::Invalid(d) => RunError::Invalid(d),
            e => RunError::Recipe(e),
        })?,
        RecipeSource::Inline(r) => {
            let components = recipe::resolve_components(r).map_err(RunError::Invalid)?;
            ((**r).clone(), components)
        }
    };
    let infra = &p.infrastructure;
    let b = &mut recipe.build;
    b.cpus = infra.cpus.or(b.cpus);
    b.memory_mib = infra.memory_mib.or(b.memory_mib);
    b.accelerator = infra.accelerator.or(b.accelerator);
    b.network = infra.network.or(b.network);
    let (t, given) = (&mut b.timeouts, &infra.timeouts);
    t.boot_seconds = given.boot_seconds.or(t.boot_seconds);
    t.build_seconds = given.build_seconds.or(t.build_seconds);
    t.test_seconds = given.test_seconds.or(t.test_seconds);
    t.shutdown_seconds = given.shutdown_seconds.or(t.shutdown_seconds);
    if let Some(formats) = &p.distribution.formats {
        recipe.distribution.formats = formats.clone();
    }
    if let Some(ami) = &p.distribution.ami {
        recipe.distribution.ami = Some(ami.clone());
    }
    Ok((recipe, components))
}

/// The inputs a build of `recipe` would have now, and its parent (resolved:
/// downloaded or bootstrapped into the cache if it is not there yet).
pub async fn current_inputs(
    p: &Pipeline,
    recipe: &Recipe,
    components: &[ResolvedComponent],
    cache: &Cache,
    catalog: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(Inputs, ResolvedParent), RunError> {
    let parent = parent::resolve(&recipe.parent, cache, catalog, progress)
        .await
        .map_err(RunError::Parent)?;
    let recipe_sha256 = crate::recipe::digest::sha256_file(&recipe.file)
        .await
        .map_err(|source| RunError::RecipeDigest {
            path: recipe.file.clone(),
            source,
        })?;
    let inputs = record::inputs(
        &recipe_sha256,
        &parent,
        components,
        &recipe.distribution.formats,
        p.distribution.ami_sha256.clone(),
    );
    Ok((inputs, parent))
}

/// Whether to build, given the last successful build of the pipeline:
/// `Ok(reasons)` to build, `Err(reason)` to skip. Pure.
pub fn decide(
    condition_if_changed: bool,
    inputs: Option<&Inputs>,
    last: Option<&catalog::Image>,
) -> Result<Vec<String>, String> {
    let (Some(inputs), true) = (inputs, condition_if_changed) else {
        return Ok(vec!["the start condition is `always`".into()]);
    };
    let Some(last) = last else {
        return Ok(vec!["no successful build of this pipeline yet".into()]);
    };
    let digest = inputs::inputs_digest(inputs);
    if last.inputs_digest == digest {
        return Err(format!(
            "inputs unchanged since {} (inputs digest {})",
            last.full_name(),
            &digest[..16]
        ));
    }
    let old: Option<Inputs> = last
        .inputs
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let changes = old
        .map(|old| inputs::changes(&old, inputs))
        .unwrap_or_default();
    Ok(if changes.is_empty() {
        vec![format!(
            "the inputs digest differs from {}'s",
            last.full_name()
        )]
    } else {
        changes
            .into_iter()
            .map(|c| format!("{c} since {}", last.full_name()))
            .collect()
    })
}

/// What [`apply_retention`] did.
#[derive(Clone, Debug, Default)]
pub struct Pruned {
    /// Deleted images.
    pub deleted: Vec<Decision>,
    /// Images whose deletion failed, with the error.
    pub failed: Vec<(String, String)>,
}

/// Deletes what `plan` says from the catalog (and, unless `keep_files`,
/// their published folders).
pub fn apply_retention(cat: &mut Catalog, plan: &Plan, keep_files: bool) -> Pruned {
    let mut out = Pruned::default();
    for d in &plan.delete {
        let result = cat.delete(d.id).and_then(|gone| {
            if keep_files {
                Ok(())
            } else {
                catalog::files::remove_published(&gone).map(|_| ())
            }
        });
        match result {
            Ok(()) => out.deleted.push(d.clone()),
            Err(e) => out.failed.push((d.image.clone(), e.to_string())),
        }
    }
    out
}

/// Runs pipeline `p` once (see the module docs). Every failure but
/// [`RunError::Busy`] is notified.
pub async fn run(p: &Pipeline, s: &RunSettings) -> Result<RunOutcome, RunError> {
    let lock = lock_path(&s.catalog, &p.name);
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RunError::LockDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let Some(_held) = FileLock::try_exclusive(&lock)? else {
        return Err(RunError::Busy {
            pipeline: p.name.clone(),
            lock,
        });
    };
    let mut notified = false;
    let result = run_locked(p, s, &mut notified).await;
    if let (Err(e), false) = (&result, notified) {
        let (name, version) = match &p.recipe {
            RecipeSource::Inline(r) => (r.name.clone(), r.version.to_string()),
            RecipeSource::Path(path) => (path.display().to_string(), String::new()),
        };
        let mut event = BuildEvent::new(notify::Outcome::Failure, &p.name, &name, &version);
        event.failure = Some(error_chain(e));
        let reporter = if s.quiet {
            Reporter::quiet()
        } else {
            Reporter::new(s.json, Default::default())
        };
        notify_all(p, &event, &reporter).await;
    }
    result
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    crate::util::display::chain(e)
}

async fn run_locked(
    p: &Pipeline,
    s: &RunSettings,
    notified: &mut bool,
) -> Result<RunOutcome, RunError> {
    let (recipe, components) = recipe_of(p)?;
    let mut reporter = if s.quiet {
        Reporter::quiet()
    } else {
        Reporter::new(s.json, Build::secrets(&components))
    };
    reporter.set_redactor(Build::secrets(&components));
    let say = |line: &str| reporter.info(None, &format!("pipeline {}: {line}", p.name));
    if let Trigger::Schedule { scheduled, missed } = s.trigger {
        say(&format!(
            "scheduled run for {}{}",
            scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            if missed > 0 {
                format!(" ({missed} earlier missed occurrence(s) coalesced into it)")
            } else {
                String::new()
            }
        ));
    }
    let if_changed = s.if_changed || p.start_condition == StartCondition::IfChanged;
    let (inputs, parent) = if if_changed {
        let (i, parent) =
            current_inputs(p, &recipe, &components, &s.cache, &s.catalog, &say).await?;
        (Some(i), Some(parent))
    } else {
        (None, None)
    };
    let last = Catalog::open(&s.catalog)?.last_successful_of_pipeline(&p.name)?;
    let reasons = match decide(if_changed, inputs.as_ref(), last.as_ref()) {
        Ok(reasons) => reasons,
        Err(reason) => {
            say(&format!("skipped: {reason}"));
            return Ok(RunOutcome::Skipped { reason });
        }
    };
    say(&format!("building: {}", reasons.join("; ")));

    let output = p
        .distribution
        .output_directories
        .first()
        .cloned()
        .unwrap_or_else(|| s.output.clone());
    let opts = BuildOptions {
        output,
        accel: s.accel,
        cpus: None,
        memory_mib: None,
        boot_timeout: None,
        network: None,
        on_error: s.on_error,
        replace: false,
        echo: s.echo && !s.quiet,
        qemu: s.qemu.clone(),
        cache: s.cache.clone(),
        formats: None,
        events_dir: catalog::events_dir(&s.catalog),
        catalog: s.catalog.clone(),
        pipeline: Some(p.name.clone()),
        ami_sha256: p.distribution.ami_sha256.clone(),
        parent,
        no_cache: false,
    };
    let built = Build::new(&recipe, &opts, &reporter).run(components).await;
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            let mut event = BuildEvent::new(
                notify::Outcome::Failure,
                &p.name,
                &recipe.name,
                &recipe.version.to_string(),
            );
            event.failure = Some(reporter.redactor().redact(&error_chain(&e)));
            notify_all(p, &event, &reporter).await;
            *notified = true;
            return Err(RunError::Build(Box::new(e)));
        }
    };
    let build = built.manifest.image.build.unwrap_or_default();
    let image = format!("{}/{}/{build}", recipe.name, recipe.version);
    let copied = distribute_copies(p, &built.dir, &recipe, build, &reporter).await;
    let mut event = BuildEvent::new(
        notify::Outcome::Success,
        &p.name,
        &recipe.name,
        &format!("{}/{build}", recipe.version),
    );
    event.manifest = serde_json::to_value(&built.manifest).ok();
    notify_all(p, &event, &reporter).await;
    *notified = true;
    let copies = copied.map_err(|source| RunError::Copy {
        image: image.clone(),
        dir: built.dir.clone(),
        source: Box::new(source),
    })?;
    let pruned = prune(p, &s.catalog, &reporter)?;
    Ok(RunOutcome::Built {
        image,
        dir: built.dir,
        reasons,
        copies,
        pruned,
    })
}

async fn distribute_copies(
    p: &Pipeline,
    dir: &Path,
    recipe: &Recipe,
    build: u64,
    reporter: &Reporter,
) -> Result<Vec<String>, CopyError> {
    let version = recipe.version.to_string();
    let mut out = Vec::new();
    for root in p.distribution.output_directories.iter().skip(1) {
        let dest = root
            .join(&recipe.name)
            .join(&version)
            .join(build.to_string());
        copies::copy_published(dir, &dest)?;
        reporter.info(None, &format!("copied to {}", dest.display()));
        out.push(dest.display().to_string());
    }
    if let Some(prefix) = &p.distribution.s3_prefix {
        let clients = crate::aws::Clients::new(None).await;
        let work = tempfile::tempdir().map_err(crate::util::io::IoError::at(
            "cannot create a folder in",
            &std::env::temp_dir(),
        ))?;
        let progress = |line: &str| reporter.info(None, line);
        let urls = copies::upload_published(
            &clients,
            dir,
            prefix,
            (&recipe.name, &version, build),
            work.path(),
            &progress,
        )
        .await?;
        out.extend(urls);
    }
    Ok(out)
}

async fn notify_all(p: &Pipeline, event: &BuildEvent, reporter: &Reporter) {
    for target in &p.notifications {
        match notify::send(target, event).await {
            Ok(()) => reporter.info(None, &format!("notified {}", describe(target))),
            // a notification that does not arrive must not undo a build
            Err(e) => reporter.warn(None, &format!("notification not delivered: {e}")),
        }
    }
}

fn describe(target: &super::Notification) -> String {
    match target {
        super::Notification::Webhook(url) => notify::redact_url(url),
        super::Notification::Command(argv) => format!("command {}", argv[0]),
    }
}

fn prune(p: &Pipeline, catalog: &Path, reporter: &Reporter) -> Result<Vec<String>, RunError> {
    if p.retention == RetentionPolicy::default() {
        return Ok(Vec::new());
    }
    let mut cat = Catalog::open(catalog)?;
    let all = cat.list(None)?;
    let plan = retention::plan(&p.name, &all, &p.retention, Utc::now());
    let done = apply_retention(&mut cat, &plan, false);
    for d in &done.deleted {
        reporter.info(
            None,
            &format!("retention deleted {}: {}", d.image, d.reason),
        );
    }
    for (image, e) in &done.failed {
        reporter.warn(None, &format!("retention could not delete {image}: {e}"));
    }
    Ok(done.deleted.into_iter().map(|d| d.image).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(recipe: &str) -> Inputs {
        Inputs {
            recipe_sha256: recipe.into(),
            parent_sha256: "p".into(),
            components: vec![],
            mirror_index_sha256: None,
            formats: vec![],
            ami_sha256: None,
        }
    }

    fn last(i: &Inputs) -> catalog::Image {
        catalog::Image {
            pipeline: Some("nightly".into()),
            inputs_digest: inputs::inputs_digest(i),
            inputs: Some(serde_json::to_value(i).unwrap()),
            ..catalog::Image::sample(7, "web", "1.2.3", 4)
        }
    }

    #[test]
    fn decisions_say_why() {
        let a = inputs("r1");
        assert_eq!(
            decide(false, None, None).unwrap(),
            ["the start condition is `always`"]
        );
        assert_eq!(
            decide(true, Some(&a), None).unwrap(),
            ["no successful build of this pipeline yet"]
        );
        let skipped = decide(true, Some(&a), Some(&last(&a))).unwrap_err();
        assert!(
            skipped.starts_with("inputs unchanged since web/1.2.3/4"),
            "{skipped}"
        );
        let b = inputs("r2");
        assert_eq!(
            decide(true, Some(&b), Some(&last(&a))).unwrap(),
            ["the recipe changed since web/1.2.3/4"]
        );
        let mut unknown = last(&a);
        unknown.inputs = None;
        assert_eq!(
            decide(true, Some(&b), Some(&unknown)).unwrap(),
            ["the inputs digest differs from web/1.2.3/4's"]
        );
    }

    #[test]
    fn lock_files_live_beside_the_catalog() {
        assert_eq!(
            lock_path(Path::new("/data/kiln/catalog.sqlite"), "nightly"),
            Path::new("/data/kiln/locks/pipeline-nightly.lock")
        );
    }
}
