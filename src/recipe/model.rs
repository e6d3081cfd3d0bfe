//! The recipe model: what a recipe file says, checked and with its paths
//! resolved against the recipe's folder.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use super::distribution::Distribution;
use super::version::Version;
use crate::toe::load::LoadedDocument;
use crate::util::yaml::Pos;

/// The working directory when a recipe gives none (as in Image Builder).
pub const DEFAULT_WORKING_DIRECTORY: &str = "/tmp";

/// Which form a recipe file is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipeForm {
    /// kiln's YAML recipe (unknown keys are errors).
    Kiln,
    /// The JSON `aws imagebuilder get-image-recipe` prints: the recipe is
    /// under `imageRecipe`, its version is `version`, and fields kiln does
    /// not use are ignored.
    AwsImageRecipe,
}

impl RecipeForm {
    /// The field path of a top-level recipe field in this form, e.g.
    /// `imageRecipe.components` for `components`.
    pub fn field(self, name: &str) -> String {
        match self {
            RecipeForm::Kiln => name.to_string(),
            RecipeForm::AwsImageRecipe => format!("imageRecipe.{name}"),
        }
    }
}

/// An image recipe: a parent image and the ordered components to run on it.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// The recipe file, as given by the user.
    pub file: PathBuf,
    /// The form the file is written in.
    pub form: RecipeForm,
    /// The folder relative paths in the recipe resolve against.
    pub dir: PathBuf,
    /// The recipe's name (`[A-Za-z0-9][A-Za-z0-9._-]{0,127}`).
    pub name: String,
    /// Its semantic version.
    pub version: Version,
    /// Free text.
    pub description: Option<String>,
    /// The image the build starts from.
    pub parent: ParentImage,
    /// Where `parentImage` is written in the recipe file.
    pub parent_pos: Pos,
    /// The components, in the order they run.
    pub components: Vec<ComponentRef>,
    /// The size of the root volume in GiB (`blockDeviceMappings[].ebs.volumeSize`).
    pub root_volume_gib: Option<u64>,
    /// The absolute guest folder for AWSTOE files and cleanup markers.
    pub working_directory: String,
    /// kiln's build settings (`build:`).
    pub build: BuildSettings,
    /// The export formats (`distribution:`).
    pub distribution: Distribution,
}

/// Where the parent image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParentImage {
    /// A local disk image (qcow2, raw, vmdk, vhdx or vhd), resolved against the recipe's folder.
    File(PathBuf),
    /// A disk image to download, checked against its SHA-256.
    Url {
        /// An `http://` or `https://` URL.
        url: String,
        /// The expected SHA-256, 64 lowercase hex digits.
        sha256: String,
    },
    /// A root file system to bootstrap (mmdebstrap).
    Bootstrap(BootstrapSpec),
    /// An image of kiln's catalog, `kiln:NAME/1.x.x`: the newest available
    /// build whose version matches.
    Catalog {
        /// The image name.
        name: String,
        /// Which versions match.
        filter: crate::recipe::VersionFilter,
    },
}

impl ParentImage {
    /// A short description for summaries, e.g. `bootstrap debian/bookworm`.
    pub fn summary(&self) -> String {
        match self {
            ParentImage::File(p) => format!("file {}", p.display()),
            ParentImage::Url { url, .. } => format!("url {url}"),
            ParentImage::Bootstrap(b) => format!("bootstrap {}/{}", b.distro, b.suite),
            ParentImage::Catalog { name, filter } => format!("kiln:{name}/{filter}"),
        }
    }
}

/// What to bootstrap a parent image from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapSpec {
    /// The distribution; only `debian`.
    pub distro: String,
    /// The release (`bookworm` unless given).
    pub suite: String,
    /// The package mirror URL; `None` means the host's apt mirror.
    pub mirror: Option<String>,
    /// Extra packages to install.
    pub packages: Vec<String>,
}

/// What a component reference names, once classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComponentSource {
    /// A built-in component (by name, `builtin:NAME` or an AWS-managed ARN).
    Builtin(String),
    /// A document file, resolved against the recipe's folder.
    File(PathBuf),
}

/// One entry of `components`.
#[derive(Clone, Debug)]
pub struct ComponentRef {
    /// The reference as written (`component` or `componentArn`).
    pub reference: String,
    /// What the reference names.
    pub source: ComponentSource,
    /// Values for the component's parameters.
    pub parameters: Vec<RecipeParameter>,
    /// The field path of the entry, e.g. `components[2]`.
    pub field: String,
    /// The line of the entry in the recipe file.
    pub line: usize,
    /// The column of the entry in the recipe file.
    pub column: usize,
}

impl ComponentRef {
    /// Where the entry is in the recipe file.
    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }
}

/// A value a recipe gives a component parameter.
#[derive(Clone)]
pub struct RecipeParameter {
    /// The parameter's name.
    pub name: String,
    /// The value: a list of strings, as in Image Builder.
    pub value: Vec<String>,
    /// kiln extension: redact the value in every log, plan and manifest.
    pub secret: bool,
    /// Where the parameter's `name` is in the recipe file.
    pub pos: Pos,
    /// Where its `value` is.
    pub value_pos: Pos,
}

impl RecipeParameter {
    /// The value as the component sees it: the list items joined with `,`.
    /// Component parameters are of type `string` only, and Image Builder does
    /// not document how a list of several values maps to one; kiln joins
    /// them with commas (one item is passed unchanged, none gives `""`).
    pub fn joined(&self) -> String {
        self.value.join(",")
    }
}

impl fmt::Debug for RecipeParameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = ["***".to_string()];
        f.debug_struct("RecipeParameter")
            .field("name", &self.name)
            .field(
                "value",
                &if self.secret {
                    &redacted[..]
                } else {
                    &self.value[..]
                },
            )
            .field("secret", &self.secret)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

/// kiln's build settings; `None` means kiln's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildSettings {
    /// Virtual CPUs of the build and test VMs.
    pub cpus: Option<u32>,
    /// Memory of the build and test VMs, in MiB.
    pub memory_mib: Option<u32>,
    /// Which accelerator to use.
    pub accelerator: Option<Accelerator>,
    /// What the build and test VMs' network reaches (`build.network`).
    pub network: Option<Network>,
    /// Stage timeouts.
    pub timeouts: Timeouts,
    /// `build.cache.maxAgeHours`: component layers older than this are
    /// not used (`None`: kiln's default, a week).
    pub layer_max_age_hours: Option<u64>,
    /// `build.tests.reboot`: after the test phases, reboot the test VM and
    /// check it comes back (new boot id, cloud-init done). Off unless
    /// `true`; the `reboot-test-linux` component is the other way to ask.
    pub reboot_test: Option<bool>,
}

/// The accelerator a recipe asks for (`build.accelerator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accelerator {
    /// KVM when a probe boot works, else TCG.
    Auto,
    /// KVM, or fail.
    Kvm,
    /// TCG (software emulation).
    Tcg,
}

/// What a recipe lets its build and test VMs' network reach
/// (`build.network`). Every mode keeps kiln's own SSH forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Nothing.
    None,
    /// The internet and the LAN, never the host itself.
    Outbound,
    /// Outbound plus the host's loopback services.
    Host,
}

impl Network {
    /// Every mode, as written in recipes.
    pub const NAMES: &'static [&'static str] = &["none", "outbound", "host"];

    /// The mode named `name` (one of [`Network::NAMES`]).
    pub fn from_name(name: &str) -> Option<Network> {
        match name {
            "none" => Some(Network::None),
            "outbound" => Some(Network::Outbound),
            "host" => Some(Network::Host),
            _ => None,
        }
    }
}

/// Stage timeouts in seconds; `None` means kiln's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Until the VM answers on SSH.
    pub boot_seconds: Option<u64>,
    /// The build and validate phases of all components.
    pub build_seconds: Option<u64>,
    /// The test phase of all components.
    pub test_seconds: Option<u64>,
    /// A guest shutdown.
    pub shutdown_seconds: Option<u64>,
}

/// A component ready to run: its loaded document and parameters as the engine wants them.
#[derive(Clone)]
pub struct ResolvedComponent {
    /// The reference as written in the recipe.
    pub reference: String,
    /// The loaded, validated document.
    pub loaded: LoadedDocument,
    /// Hex SHA-256 of the document text.
    pub text_sha256: String,
    /// Every parameter the document declares, with the recipe's value
    /// ([`RecipeParameter::joined`]) or the document's default.
    pub parameters: BTreeMap<String, String>,
    /// Values of secret parameters (each list item and the joined value), for redaction.
    pub secrets: Vec<String>,
    /// True when the document's only phase is `test`.
    pub is_test_only: bool,
}

impl fmt::Debug for ResolvedComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .parameters
            .iter()
            .map(|(k, v)| {
                let secret = self.secrets.contains(v);
                (k.as_str(), if secret { "***" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("ResolvedComponent")
            .field("reference", &self.reference)
            .field("id", &self.loaded.id)
            .field("text_sha256", &self.text_sha256)
            .field("parameters", &shown)
            .field("is_test_only", &self.is_test_only)
            .finish_non_exhaustive()
    }
}
