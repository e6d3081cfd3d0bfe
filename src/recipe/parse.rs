//! Reading a recipe's text: kiln's YAML form, or the JSON that
//! `aws imagebuilder get-image-recipe` prints (JSON is YAML, so one reader
//! gives file:line:column for both). Pure: no file is read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::component_ref;
use super::distribution::{self, Distribution};
use super::fields::{optional, Field, Keys, Obj};
use super::model::{
    Accelerator, BuildSettings, ComponentRef, Network, ParentImage, Recipe, RecipeForm,
    RecipeParameter, Timeouts, DEFAULT_WORKING_DIRECTORY,
};
use super::parent;
use super::version::{Version, MAX_VERSION_PART};
use crate::util::diag::{did_you_mean, record_yaml_issues, Diagnostics};
use crate::util::yaml::{self, Pos, YamlIssueKind};

const KILN_KEYS: &[&str] = &[
    "name",
    "semanticVersion",
    "description",
    "parentImage",
    "components",
    "blockDeviceMappings",
    "workingDirectory",
    "build",
    "distribution",
];
const COMPONENT_KEYS: &[&str] = &["component", "componentArn", "parameters"];
const PARAMETER_KEYS: &[&str] = &["name", "value", "secret"];
const MAPPING_KEYS: &[&str] = &["deviceName", "ebs", "noDevice", "virtualName"];
const EBS_KEYS: &[&str] = &[
    "deleteOnTermination",
    "encrypted",
    "iops",
    "kmsKeyId",
    "snapshotId",
    "throughput",
    "volumeSize",
    "volumeType",
];
const BUILD_KEYS: &[&str] = &[
    "cpus",
    "memoryMiB",
    "accelerator",
    "network",
    "timeouts",
    "cache",
    "tests",
];
/// The longest a layer may be used: a year.
const MAX_LAYER_AGE_HOURS: u64 = 24 * 366;
const ACCELERATORS: &[&str] = &["auto", "kvm", "tcg"];

/// Bounds of the numbers in `build:` and `blockDeviceMappings`.
pub const MAX_CPUS: u64 = 255;
/// Least memory a build VM may have, in MiB.
pub const MIN_MEMORY_MIB: u64 = 256;
/// Most memory a build VM may have, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// The largest stage timeout, in seconds (a week).
pub const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;
/// The largest root volume, in GiB (EBS's 64 TiB).
pub const MAX_VOLUME_GIB: u64 = 65536;

const RECIPE_HINT: &str = "a recipe is a map with `name`, `semanticVersion`, `parentImage` and `components`, or the JSON that `aws imagebuilder get-image-recipe` prints";

pub(crate) static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$").expect("a valid regex"));

/// What could be read of a recipe, field by field; a field is `None` when
/// it is missing or invalid (and a diagnostic says so).
/// Optional fields are `Some(None)` when absent (see [`optional`]).
#[derive(Debug)]
pub(crate) struct Draft {
    /// The form the file is written in.
    pub form: RecipeForm,
    /// [`Recipe::name`].
    pub name: Option<String>,
    /// [`Recipe::version`].
    pub version: Option<Version>,
    /// [`Recipe::description`].
    pub description: Option<Option<String>>,
    /// [`Recipe::parent`].
    pub parent: Option<ParentImage>,
    /// [`Recipe::parent_pos`].
    pub parent_pos: Pos,
    /// The components that could be read (invalid entries are left out).
    pub components: Vec<ComponentRef>,
    /// [`Recipe::root_volume_gib`].
    pub root_volume_gib: Option<Option<u64>>,
    /// [`Recipe::working_directory`] (the default when absent).
    pub working_directory: Option<String>,
    /// [`Recipe::build`] (the defaults when absent).
    pub build: Option<BuildSettings>,
    /// [`Recipe::distribution`] (none when absent).
    pub distribution: Option<Distribution>,
}

impl Draft {
    fn new(form: RecipeForm) -> Self {
        Draft {
            form,
            name: None,
            version: None,
            description: Some(None),
            parent: None,
            parent_pos: Pos::default(),
            components: Vec::new(),
            root_volume_gib: Some(None),
            working_directory: Some(DEFAULT_WORKING_DIRECTORY.into()),
            build: Some(BuildSettings::default()),
            distribution: Some(Distribution::default()),
        }
    }

    /// The recipe, if every field could be read.
    pub fn into_recipe(self, file: &str, dir: &Path) -> Option<Recipe> {
        Some(Recipe {
            file: file.into(),
            form: self.form,
            dir: dir.to_path_buf(),
            name: self.name?,
            version: self.version?,
            description: self.description?,
            parent: self.parent?,
            parent_pos: self.parent_pos,
            components: self.components,
            root_volume_gib: self.root_volume_gib?,
            working_directory: self.working_directory?,
            build: self.build?,
            distribution: self.distribution?,
        })
    }
}

/// Reads `text` (the recipe file `display`, whose folder is `dir`) as far as
/// it can, recording every problem in the returned diagnostics.
pub(crate) fn read(display: &str, text: &str, dir: &Path) -> (Draft, Diagnostics) {
    let mut d = Diagnostics::new(display);
    let mut draft = Draft::new(RecipeForm::Kiln);
    let (root, issues) = yaml::parse_checked(text);
    record_yaml_issues(&mut d, issues, "recipe-shape", |issue| match issue.kind {
        YamlIssueKind::Empty => ("the recipe is empty".into(), Some(RECIPE_HINT.into())),
        _ => (
            "the file holds several YAML documents (`---`); a recipe is one document".into(),
            Some("keep one recipe per file".into()),
        ),
    });
    let Some(root) = root else {
        return (draft, d);
    };
    if root.as_map().is_none() {
        d.error(
            root.pos,
            "recipe-shape",
            "",
            format!("a recipe is a map, found {}", root.kind_name()),
            Some(RECIPE_HINT.into()),
        );
        return (draft, d);
    }
    if let Some(inner) = root.get("containerRecipe") {
        d.error(
            inner.pos,
            "recipe-shape",
            "containerRecipe",
            "this is a container recipe; kiln builds VM images from image recipes",
            Some("give the output of `aws imagebuilder get-image-recipe`".into()),
        );
        return (draft, d);
    }
    let top = match root.get("imageRecipe") {
        Some(inner) => {
            draft.form = RecipeForm::AwsImageRecipe;
            match Field::new(inner, "imageRecipe", Keys::Lenient).obj(&mut d) {
                Some(o) => o,
                None => return (draft, d),
            }
        }
        None => Obj {
            node: &root,
            path: String::new(),
            keys: Keys::Strict,
        },
    };
    Reader {
        d: &mut d,
        dir,
        form: draft.form,
    }
    .fill(&top, &mut draft);
    (draft, d)
}

/// Reads a recipe written inline as the map `top` (kiln's form) inside
/// another file, e.g. a pipeline's `recipe:`; diagnostics go to `d`.
pub(crate) fn read_inline(top: &Obj<'_>, dir: &Path, d: &mut Diagnostics) -> Draft {
    let mut draft = Draft::new(RecipeForm::Kiln);
    Reader {
        d,
        dir,
        form: RecipeForm::Kiln,
    }
    .fill(top, &mut draft);
    draft
}

/// Reads a block shaped like a recipe's `build:` (cpus, memoryMiB,
/// accelerator, network, timeouts), e.g. a pipeline's `infrastructure:`.
pub(crate) fn build_settings(f: &Field<'_>, d: &mut Diagnostics) -> Option<BuildSettings> {
    Reader {
        d,
        dir: Path::new("."),
        form: RecipeForm::Kiln,
    }
    .build(f)
}

struct Reader<'a> {
    d: &'a mut Diagnostics,
    dir: &'a Path,
    form: RecipeForm,
}

impl Reader<'_> {
    fn fill(&mut self, top: &Obj<'_>, draft: &mut Draft) {
        top.check_keys(KILN_KEYS, self.d);
        if self.form == RecipeForm::AwsImageRecipe {
            self.check_aws_kind(top);
        }
        draft.name = top
            .require("name", self.d, "add `name: my-image`")
            .and_then(|f| self.name(&f));
        let version_key = match self.form {
            RecipeForm::Kiln => "semanticVersion",
            RecipeForm::AwsImageRecipe => "version",
        };
        draft.version = top
            .require(version_key, self.d, "add a version, e.g. `1.0.0`")
            .and_then(|f| self.version(&f));
        draft.description = optional(
            top.get("description")
                .map(|f| f.str(self.d).map(str::to_string)),
        );
        if let Some(f) = top.require("parentImage", self.d, parent::PARENT_HINT) {
            draft.parent_pos = f.pos();
            draft.parent = parent::parse(&f, self.dir, self.d);
        }
        if let Some(f) = top.require(
            "components",
            self.d,
            "add a list, e.g. `components: [{component: update-linux}]`",
        ) {
            draft.components = self.components(&f);
        }
        if let Some(f) = top.get("blockDeviceMappings") {
            draft.root_volume_gib = self.root_volume(&f);
        }
        if let Some(f) = top.get("workingDirectory") {
            draft.working_directory = self.working_directory(&f);
        }
        if let Some(f) = top.get("build") {
            draft.build = self.build(&f);
        }
        if let Some(f) = top.get("distribution") {
            draft.distribution = distribution::parse(&f, self.d);
        }
    }

    /// `platform` and `type` of AWS's form, when given, must be a Linux AMI recipe.
    fn check_aws_kind(&mut self, top: &Obj<'_>) {
        for (key, want) in [("platform", "Linux"), ("type", "AMI")] {
            let Some(f) = top.get(key) else { continue };
            if let Some(v) = f.str(self.d).filter(|v| !v.eq_ignore_ascii_case(want)) {
                f.error(
                    self.d,
                    "recipe-shape",
                    format!("kiln builds {want} image recipes, this one's {key} is `{v}`"),
                    None,
                );
            }
        }
    }

    fn name(&mut self, f: &Field<'_>) -> Option<String> {
        let name = f.str(self.d)?;
        if NAME.is_match(name) {
            return Some(name.to_string());
        }
        f.error(
            self.d,
            "invalid-name",
            format!("`{name}` is not a valid recipe name"),
            Some(
                "use 1 to 128 letters, digits, `.`, `_` and `-`, starting with a letter or digit"
                    .into(),
            ),
        );
        None
    }

    fn version(&mut self, f: &Field<'_>) -> Option<Version> {
        let text = f.str(self.d)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                f.error(
                    self.d,
                    "invalid-version",
                    e.to_string(),
                    Some(format!("write major.minor.patch, e.g. 1.0.0; each part is a whole number up to {MAX_VERSION_PART}; wildcards are not allowed")),
                );
                None
            }
        }
    }

    fn components(&mut self, f: &Field<'_>) -> Vec<ComponentRef> {
        let Some(items) = f.seq(self.d) else {
            return Vec::new();
        };
        if items.is_empty() {
            f.error(
                self.d,
                "components-empty",
                "`components` is empty; a recipe runs at least one component",
                Some("add one, e.g. `- component: update-linux`".into()),
            );
        }
        items
            .iter()
            .filter_map(|item| self.component(item))
            .collect()
    }

    /// The reference field of a component entry.
    fn reference_field<'n>(&mut self, obj: &Obj<'n>) -> Option<Field<'n>> {
        const HINT: &str = "write `component: NAME` (a built-in), a path to a document, or `componentArn: arn:aws:imagebuilder:…:aws:component/NAME/x.x.x`";
        if self.form == RecipeForm::AwsImageRecipe {
            return obj.require("componentArn", self.d, HINT);
        }
        match (obj.get("component"), obj.get("componentArn")) {
            (Some(_), Some(arn)) => {
                arn.error(
                    self.d,
                    "component-reference",
                    "`component` and `componentArn` are both given; `componentArn` is another name for `component`",
                    Some("keep one of them".into()),
                );
                None
            }
            (Some(f), None) | (None, Some(f)) => Some(f),
            (None, None) => obj.require("component", self.d, HINT),
        }
    }

    fn component(&mut self, item: &Field<'_>) -> Option<ComponentRef> {
        let obj = item.obj(self.d)?;
        obj.check_keys(COMPONENT_KEYS, self.d);
        let source = self.reference_field(&obj).and_then(|f| {
            let reference = f.str(self.d)?;
            match component_ref::classify(reference, self.dir) {
                Ok(source) => Some((reference.to_string(), source)),
                Err(p) => {
                    f.error(self.d, p.code, p.message, Some(p.hint));
                    None
                }
            }
        });
        let parameters = match obj.get("parameters") {
            Some(f) => self.parameters(&f),
            None => Some(Vec::new()),
        };
        let (reference, source) = source?;
        Some(ComponentRef {
            reference,
            source,
            parameters: parameters?,
            field: item.path.clone(),
            line: item.pos().line,
            column: item.pos().column,
        })
    }

    fn parameters(&mut self, f: &Field<'_>) -> Option<Vec<RecipeParameter>> {
        let items = f.seq(self.d)?;
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        let mut ok = true;
        for item in &items {
            match self.parameter(item) {
                Some(p) => {
                    if let Some(line) = first_line.get(&p.name) {
                        self.d.error(
                            p.pos,
                            "duplicate-parameter",
                            format!("{}.name", item.path),
                            format!("parameter `{}` is given twice", p.name),
                            Some(format!("it is first given on line {line}; keep one")),
                        );
                        ok = false;
                    }
                    first_line.entry(p.name.clone()).or_insert(p.pos.line);
                    out.push(p);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn parameter(&mut self, item: &Field<'_>) -> Option<RecipeParameter> {
        let obj = item.obj(self.d)?;
        obj.check_keys(PARAMETER_KEYS, self.d);
        let name = obj.require("name", self.d, "add `name: ParameterName`");
        let name_pos = name.as_ref().map(Field::pos);
        let name = name.and_then(|f| f.str(self.d).map(str::to_string));
        let value = obj.require("value", self.d, "add `value: [text]`");
        let value_pos = value.as_ref().map(Field::pos);
        let value = value.and_then(|f| {
            if f.node.as_str().is_some() && !f.node.is_null() {
                f.error(
                    self.d,
                    "parameter-value",
                    "a parameter `value` is a list of strings, as in Image Builder",
                    // the value itself is not repeated: it may be a secret
                    Some("write it as a list, e.g. `value: [text]`".into()),
                );
                return None;
            }
            f.strings(self.d)
        });
        let secret = match obj.get("secret") {
            Some(f) => f.boolean(self.d),
            None => Some(false),
        };
        Some(RecipeParameter {
            name: name?,
            value: value?,
            secret: secret?,
            pos: name_pos?,
            value_pos: value_pos?,
        })
    }

    /// The one sized volume of `blockDeviceMappings`.
    fn root_volume(&mut self, f: &Field<'_>) -> Option<Option<u64>> {
        let mut sized: Option<(u64, Pos)> = None;
        let mut ok = true;
        for item in f.seq(self.d)? {
            let Some(obj) = item.obj(self.d) else {
                ok = false;
                continue;
            };
            obj.check_keys(MAPPING_KEYS, self.d);
            let Some(ebs) = obj.get("ebs").and_then(|e| e.obj(self.d)) else {
                continue;
            };
            ebs.check_keys(EBS_KEYS, self.d);
            let Some(size) = ebs.get("volumeSize") else {
                continue;
            };
            match (size.uint(self.d, 1, MAX_VOLUME_GIB), sized) {
                (None, _) => ok = false,
                (Some(_), Some((_, first))) => {
                    size.error(
                        self.d,
                        "block-device",
                        "more than one volume is sized; kiln builds a single-disk image",
                        Some(format!(
                            "keep only the root volume's mapping (the first is on line {})",
                            first.line
                        )),
                    );
                    ok = false;
                }
                (Some(gib), None) => sized = Some((gib, size.pos())),
            }
        }
        ok.then_some(sized.map(|(gib, _)| gib))
    }

    fn working_directory(&mut self, f: &Field<'_>) -> Option<String> {
        let dir = f.str(self.d)?;
        if dir.starts_with('/') && !dir.chars().any(char::is_control) {
            return Some(dir.to_string());
        }
        f.error(
            self.d,
            "working-directory",
            format!("`workingDirectory` must be an absolute path in the guest, found `{dir}`"),
            Some("e.g. `workingDirectory: /tmp` (the default)".into()),
        );
        None
    }

    fn build(&mut self, f: &Field<'_>) -> Option<BuildSettings> {
        let obj = f.obj(self.d)?;
        obj.check_keys(BUILD_KEYS, self.d);
        let d = &mut *self.d;
        let cpus = obj.get("cpus").map(|f| f.uint(d, 1, MAX_CPUS));
        let memory = obj
            .get("memoryMiB")
            .map(|f| f.uint(d, MIN_MEMORY_MIB, MAX_MEMORY_MIB));
        let accelerator = obj.get("accelerator").map(|f| {
            f.one_of(d, ACCELERATORS, "accelerator", "the accelerator")
                .map(|a| match a {
                    "kvm" => Accelerator::Kvm,
                    "tcg" => Accelerator::Tcg,
                    _ => Accelerator::Auto,
                })
        });
        let network = obj.get("network").map(|f| network(&f, d));
        let timeouts = match obj.get("timeouts") {
            Some(t) => timeouts(&t, d),
            None => Some(Timeouts::default()),
        };
        let cache_age = obj.get("cache").map(|c| {
            let c = c.obj(d)?;
            c.check_keys(&["maxAgeHours"], d);
            optional(
                c.get("maxAgeHours")
                    .map(|h| h.uint(d, 0, MAX_LAYER_AGE_HOURS)),
            )
        });
        let reboot_test = obj.get("tests").map(|t| {
            let t = t.obj(d)?;
            t.check_keys(&["reboot"], d);
            optional(t.get("reboot").map(|r| r.boolean(d)))
        });
        Some(BuildSettings {
            // both are bounded far below u32::MAX above
            cpus: optional(cpus)?.map(|n| n as u32),
            memory_mib: optional(memory)?.map(|n| n as u32),
            accelerator: optional(accelerator)?,
            network: optional(network)?,
            timeouts: timeouts?,
            layer_max_age_hours: optional(cache_age)?.flatten(),
            reboot_test: optional(reboot_test)?.flatten(),
        })
    }
}

/// What `build.network` means, for its hint.
const NETWORK_HINT: &str = "`none`: nothing but kiln's SSH; `outbound` (the default): the internet and LAN, never the host itself; `host`: outbound plus the host's loopback services at 10.0.2.2";

fn network(f: &Field<'_>, d: &mut Diagnostics) -> Option<Network> {
    let text = f.str(d)?;
    if let Some(n) = Network::from_name(text) {
        return Some(n);
    }
    let hint = match did_you_mean(text, Network::NAMES.iter().copied()) {
        Some(guess) => format!("{guess} {NETWORK_HINT}"),
        None => NETWORK_HINT.to_string(),
    };
    f.error(
        d,
        "network",
        format!("kiln does not support the network `{text}`"),
        Some(hint),
    );
    None
}

fn timeouts(f: &Field<'_>, d: &mut Diagnostics) -> Option<Timeouts> {
    let obj = f.obj(d)?;
    let keys = [
        "bootSeconds",
        "buildSeconds",
        "testSeconds",
        "shutdownSeconds",
    ];
    obj.check_keys(&keys, d);
    let [boot, build, test, shutdown] =
        keys.map(|k| optional(obj.get(k).map(|f| f.uint(d, 1, MAX_TIMEOUT_SECONDS))));
    Some(Timeouts {
        boot_seconds: boot?,
        build_seconds: build?,
        test_seconds: test?,
        shutdown_seconds: shutdown?,
    })
}
