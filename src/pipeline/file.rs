//! The pipeline file: a recipe (a path or inline) plus how, when and where
//! it is built. YAML, with every problem reported at file:line:column like
//! recipes. Pure: [`parse`] reads no file.

use std::path::{Path, PathBuf};

use chrono::Duration;
use sha2::{Digest, Sha256};

use super::retention::RetentionPolicy;
use super::schedule::{parse_time_zone, Schedule};
use crate::ami::AmiSpec;
use crate::export::format::ExportFormat;
use crate::recipe::fields::{optional, Field, Keys, Obj};
use crate::recipe::parent::is_http_url;
use crate::recipe::{BuildSettings, Recipe};
use crate::util::diag::{record_yaml_issues, Diagnostic, Diagnostics};
use crate::util::display::chain;
use crate::util::yaml::{self, Pos, YamlIssueKind};

const KEYS: &[&str] = &[
    "name",
    "description",
    "recipe",
    "infrastructure",
    "distribution",
    "schedule",
    "startCondition",
    "notifications",
    "retention",
];
const DISTRIBUTION_KEYS: &[&str] = &["formats", "outputDirectories", "s3Prefix", "ami"];
const SCHEDULE_KEYS: &[&str] = &["expression", "timezone"];
const NOTIFICATION_KEYS: &[&str] = &["webhook", "command"];
const RETENTION_KEYS: &[&str] = &["keepLast", "maxAgeDays"];
const START_CONDITIONS: &[&str] = &["always", "ifChanged"];
const PIPELINE_HINT: &str = "a pipeline is a map with `name` and `recipe` (a path or an inline recipe), and optionally infrastructure, distribution, schedule, startCondition, notifications and retention";

/// The most builds `retention.keepLast` may keep.
pub const MAX_KEEP_LAST: u64 = 100_000;
/// The longest `retention.maxAgeDays` (100 years).
pub const MAX_AGE_DAYS: u64 = 36_500;

/// Where the pipeline's recipe is.
#[derive(Clone, Debug)]
pub enum RecipeSource {
    /// A recipe file, resolved against the pipeline file's folder.
    Path(PathBuf),
    /// A recipe written inside the pipeline file.
    Inline(Box<Recipe>),
}

/// When a scheduled or on-demand run builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartCondition {
    /// Every run builds.
    Always,
    /// A run builds only when the inputs digest differs from the last
    /// successful build's.
    IfChanged,
}

/// Who hears about a finished build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// POST a JSON body to this `http(s)://` URL.
    Webhook(String),
    /// Run this program with these arguments, the JSON on standard input.
    Command(Vec<String>),
}

/// Where the pipeline's images go.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineDistribution {
    /// Export formats (replace the recipe's when given).
    pub formats: Option<Vec<ExportFormat>>,
    /// Folders the build is published to, resolved against the pipeline's folder.
    pub output_directories: Vec<PathBuf>,
    /// `s3://bucket/prefix` to upload to.
    pub s3_prefix: Option<String>,
    /// AMI settings (replace the recipe's `distribution.ami`).
    pub ami: Option<AmiSpec>,
    /// sha256 of the AMI settings as written (their JSON), for the inputs
    /// digest.
    pub ami_sha256: Option<String>,
}

/// A parsed pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The pipeline file as given.
    pub file: String,
    /// Its folder.
    pub dir: PathBuf,
    /// The pipeline's name (also the catalog's `pipeline`).
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// The recipe.
    pub recipe: RecipeSource,
    /// Where the `recipe` field is in the pipeline file.
    pub recipe_pos: Pos,
    /// VM settings (override the recipe's `build:`).
    pub infrastructure: BuildSettings,
    /// Where images go.
    pub distribution: PipelineDistribution,
    /// When it runs by itself.
    pub schedule: Option<Schedule>,
    /// When a run builds.
    pub start_condition: StartCondition,
    /// Who hears about finished builds.
    pub notifications: Vec<Notification>,
    /// Which old images go.
    pub retention: RetentionPolicy,
}

/// Why a pipeline file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The file could not be read.
    #[error("cannot read pipeline {}", crate::util::display::Escaped(&path.display().to_string()))]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::util::read::ReadError,
    },
    /// The file is invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// Reads and parses the pipeline file at `path`.
pub fn load(path: &Path) -> Result<Pipeline, PipelineError> {
    let text = crate::util::read::read_document(path).map_err(|source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse(&path.display().to_string(), &text, &dir).map_err(PipelineError::Invalid)
}

/// Checks the recipe file a pipeline names (this reads files; [`parse`]
/// does not): it must be a regular file other than the pipeline file itself,
/// and a valid recipe. Problems of the file itself are reported at the
/// pipeline's `recipe` field, the recipe's own problems in the recipe file.
/// An inline recipe was checked by [`parse`].
pub fn check_recipe_file(p: &Pipeline) -> Vec<Diagnostic> {
    let RecipeSource::Path(path) = &p.recipe else {
        return Vec::new();
    };
    let mut d = Diagnostics::new(&p.file);
    let same_file = match (std::fs::metadata(&p.file), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) == (b.dev(), b.ino())
        }
        _ => false,
    };
    if same_file {
        d.error(
            p.recipe_pos,
            "recipe",
            "recipe",
            "`recipe` names this pipeline file itself",
            Some("give the recipe's own file, or write the recipe inline under `recipe:`".into()),
        );
        return d.into_vec();
    }
    match crate::recipe::load(path) {
        Ok(_) => Vec::new(),
        Err(crate::recipe::RecipeError::Invalid(diags)) => diags,
        Err(e) => {
            d.error(
                p.recipe_pos,
                "recipe",
                "recipe",
                chain(&e),
                Some("relative paths resolve against the pipeline file's folder".into()),
            );
            d.into_vec()
        }
    }
}

/// Parses a pipeline's text; `display` names the file in diagnostics and
/// relative paths resolve against `dir`.
pub fn parse(display: &str, text: &str, dir: &Path) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut d = Diagnostics::new(display);
    let (root, issues) = yaml::parse_checked(text);
    record_yaml_issues(&mut d, issues, "pipeline-shape", |issue| match issue.kind {
        YamlIssueKind::Empty => (
            "the pipeline file is empty".into(),
            Some(PIPELINE_HINT.into()),
        ),
        _ => (
            "the file holds several YAML documents (`---`); a pipeline is one document".into(),
            Some("keep one pipeline per file".into()),
        ),
    });
    let Some(root) = root else {
        return Err(d.into_vec());
    };
    let top = match Field::new(&root, "", Keys::Strict).obj(&mut d) {
        Some(o) => o,
        None => return Err(d.into_vec()),
    };
    let p = read(&top, display, dir, &mut d);
    match p {
        Some(p) if d.is_empty() => Ok(p),
        _ => Err(d.into_vec()),
    }
}

fn read(top: &Obj<'_>, display: &str, dir: &Path, d: &mut Diagnostics) -> Option<Pipeline> {
    top.check_keys(KEYS, d);
    let name = top
        .require("name", d, "add `name: my-pipeline`")
        .and_then(|f| name(&f, d));
    let description = optional(top.get("description").map(|f| f.str(d).map(str::to_string)));
    let recipe_pos = top.get("recipe").map_or(Pos::default(), |f| f.pos());
    let recipe = top
        .require(
            "recipe",
            d,
            "give the recipe's path (`recipe: ./recipe.yml`) or write the recipe inline",
        )
        .and_then(|f| recipe(&f, display, dir, d));
    let infrastructure = match top.get("infrastructure") {
        Some(f) => crate::recipe::parse::build_settings(&f, d),
        None => Some(BuildSettings::default()),
    };
    let distribution = match top.get("distribution") {
        Some(f) => distribution(&f, dir, d),
        None => Some(PipelineDistribution::default()),
    };
    let schedule = optional(top.get("schedule").map(|f| schedule(&f, d)));
    let start_condition = match top.get("startCondition") {
        Some(f) => f
            .one_of(
                d,
                START_CONDITIONS,
                "start-condition",
                "the start condition",
            )
            .map(|s| match s {
                "ifChanged" => StartCondition::IfChanged,
                _ => StartCondition::Always,
            }),
        None => Some(StartCondition::Always),
    };
    let notifications = match top.get("notifications") {
        Some(f) => notifications(&f, d),
        None => Some(Vec::new()),
    };
    let retention = match top.get("retention") {
        Some(f) => retention(&f, d),
        None => Some(RetentionPolicy::default()),
    };
    Some(Pipeline {
        file: display.into(),
        dir: dir.to_path_buf(),
        name: name?,
        description: description?,
        recipe: recipe?,
        recipe_pos,
        infrastructure: infrastructure?,
        distribution: distribution?,
        schedule: schedule?,
        start_condition: start_condition?,
        notifications: notifications?,
        retention: retention?,
    })
}

fn name(f: &Field<'_>, d: &mut Diagnostics) -> Option<String> {
    let text = f.str(d)?;
    if crate::recipe::parse::NAME.is_match(text) {
        Some(text.into())
    } else {
        f.error(
            d,
            "invalid-name",
            format!("`{text}` is not a valid pipeline name"),
            Some("use letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 128 characters".into()),
        );
        None
    }
}

fn recipe(f: &Field<'_>, display: &str, dir: &Path, d: &mut Diagnostics) -> Option<RecipeSource> {
    if f.node.as_map().is_none() {
        let text = f.str(d)?;
        if text.is_empty() {
            f.error(
                d,
                "recipe",
                "`recipe` is empty",
                Some("give the recipe file's path".into()),
            );
            return None;
        }
        return Some(RecipeSource::Path(dir.join(text)));
    }
    // problems of the inline recipe fail the whole parse (see `parse`)
    let obj = f.obj(d)?;
    crate::recipe::parse::read_inline(&obj, dir, d)
        .into_recipe(display, dir)
        .map(|r| RecipeSource::Inline(Box::new(r)))
}

fn distribution(f: &Field<'_>, dir: &Path, d: &mut Diagnostics) -> Option<PipelineDistribution> {
    let obj = f.obj(d)?;
    obj.check_keys(DISTRIBUTION_KEYS, d);
    // the formats are read as the recipe's `distribution.formats`
    let formats = optional(
        obj.get("formats")
            .map(|list| crate::recipe::distribution::parse_formats(&list, d)),
    );
    let dirs = match obj.get("outputDirectories") {
        Some(f) => f
            .strings(d)
            .map(|v| v.iter().map(|s| dir.join(s)).collect::<Vec<_>>()),
        None => Some(Vec::new()),
    };
    let s3 = optional(obj.get("s3Prefix").map(|f| s3_prefix(&f, d)));
    let ami = optional(obj.get("ami").map(|f| {
        let spec = crate::recipe::ami::parse(&f, d)?;
        let json = f.node.to_json().to_string();
        Some((spec, hex::encode(Sha256::digest(json.as_bytes()))))
    }))?;
    let (ami, ami_sha256) = ami.unzip();
    Some(PipelineDistribution {
        formats: formats?,
        output_directories: dirs?,
        s3_prefix: s3?,
        ami,
        ami_sha256,
    })
}

fn s3_prefix(f: &Field<'_>, d: &mut Diagnostics) -> Option<String> {
    let text = f.str(d)?;
    let bucket = text
        .strip_prefix("s3://")
        .map(|r| r.split('/').next().unwrap_or(""));
    if bucket.is_some_and(|b| !b.is_empty()) {
        Some(text.into())
    } else {
        f.error(
            d,
            "invalid-s3-prefix",
            format!("`{text}` is not an S3 location"),
            Some("write s3://BUCKET/PREFIX".into()),
        );
        None
    }
}

fn schedule(f: &Field<'_>, d: &mut Diagnostics) -> Option<Schedule> {
    const HINT: &str = "write `schedule: {expression: \"0 2 * * *\", timezone: Europe/Paris}` (minute hour day month weekday, optionally seconds first)";
    let (expr_field, tz_field) = if f.node.as_map().is_some() {
        let obj = f.obj(d)?;
        obj.check_keys(SCHEDULE_KEYS, d);
        (obj.require("expression", d, HINT), obj.get("timezone"))
    } else {
        (Some(f.clone()), None)
    };
    let expr_field = expr_field?;
    let expression = expr_field.str(d)?;
    let tz = match &tz_field {
        Some(t) => {
            let name = t.str(d);
            match name.map(parse_time_zone) {
                Some(Ok(tz)) => Some(tz),
                Some(Err(e)) => {
                    t.error(d, "invalid-schedule", e.to_string(), None);
                    None
                }
                None => None,
            }
        }
        None => Some(chrono_tz::Tz::UTC),
    };
    // the expression is checked even when the time zone is wrong
    let schedule = match Schedule::new(expression, tz.unwrap_or(chrono_tz::Tz::UTC)) {
        Ok(s) => Some(s),
        Err(e) => {
            expr_field.error(d, "invalid-schedule", e.to_string(), Some(HINT.into()));
            None
        }
    };
    tz.and(schedule)
}

/// ` (its scheme is `ftp`)` for a URL-like text with a plausible scheme,
/// else nothing.
fn scheme_of(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme.len() <= 16
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            format!(" (its scheme is `{scheme}`)")
        }
        _ => String::new(),
    }
}

fn notifications(f: &Field<'_>, d: &mut Diagnostics) -> Option<Vec<Notification>> {
    const HINT: &str = "write `- webhook: https://…` or `- command: [program, arg, …]`";
    let mut out = Vec::new();
    let mut ok = true;
    for item in f.seq(d)? {
        let Some(obj) = item.obj(d) else {
            ok = false;
            continue;
        };
        obj.check_keys(NOTIFICATION_KEYS, d);
        let n = match (obj.get("webhook"), obj.get("command")) {
            (Some(w), None) => w.str(d).and_then(|url| {
                // a webhook URL often is a credential (a token in its path or
                // query): it is masked in every text kiln writes from now on,
                // and a diagnostic names only its scheme
                crate::util::redact::register([url]);
                if is_http_url(url) {
                    Some(Notification::Webhook(url.into()))
                } else {
                    w.error(
                        d,
                        "invalid-url",
                        format!(
                            "the webhook is not an http:// or https:// URL with a host{} (the URL is not repeated: it may hold a token)",
                            scheme_of(url)
                        ),
                        Some(HINT.into()),
                    );
                    None
                }
            }),
            (None, Some(c)) => c.strings(d).and_then(|argv| {
                if argv.is_empty() || argv[0].is_empty() {
                    c.error(
                        d,
                        "notification",
                        "`command` names no program",
                        Some(HINT.into()),
                    );
                    None
                } else {
                    Some(Notification::Command(argv))
                }
            }),
            _ => {
                item.error(
                    d,
                    "notification",
                    "a notification gives exactly one of `webhook` and `command`",
                    Some(HINT.into()),
                );
                None
            }
        };
        match n {
            Some(n) => out.push(n),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn retention(f: &Field<'_>, d: &mut Diagnostics) -> Option<RetentionPolicy> {
    let obj = f.obj(d)?;
    obj.check_keys(RETENTION_KEYS, d);
    let keep_last = optional(obj.get("keepLast").map(|f| f.uint(d, 1, MAX_KEEP_LAST)));
    let max_age = optional(obj.get("maxAgeDays").map(|f| f.uint(d, 1, MAX_AGE_DAYS)));
    if !obj.has("keepLast") && !obj.has("maxAgeDays") {
        f.error(
            d,
            "retention",
            "`retention` gives neither `keepLast` nor `maxAgeDays`",
            Some("e.g. `retention: {keepLast: 5, maxAgeDays: 90}`".into()),
        );
        return None;
    }
    Some(RetentionPolicy {
        // bounded by MAX_KEEP_LAST above
        keep_last: keep_last?.map(|n| n as u32),
        max_age: max_age?.map(|days| Duration::days(days as i64)),
    })
}
