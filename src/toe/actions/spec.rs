//! The table of action modules: which inputs each takes, in which shape, on
//! which platform. Validation of every action's inputs is driven by it.

/// Where an action can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// Linux and Windows.
    Any,
    /// Linux (and macOS) only.
    Linux,
    /// Windows only.
    Windows,
}

/// The shape of an action's `inputs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One map.
    Map,
    /// A map that may be left out.
    OptionalMap,
    /// A list of maps, each handled in turn.
    List,
    /// A condition expression (`Assert`).
    Condition,
}

/// The type of one input field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str,
    /// `true` or `false`.
    Bool,
    /// An integer.
    Int,
    /// A list of strings.
    StrList,
    /// A map of strings.
    StrMap,
    /// A list of `{name, value}` maps.
    NameValueList,
    /// Anything (`SetRegistry.value`).
    Any,
}

/// One input field.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The key, case-sensitive.
    pub name: &'static str,
    /// Whether it must be given.
    pub required: bool,
    /// Its type.
    pub kind: Kind,
    /// Allowed values (compared without regard to case), when restricted.
    pub one_of: &'static [&'static str],
}

/// An action module.
#[derive(Clone, Copy, Debug)]
pub struct ActionSpec {
    /// The action's name as written in documents.
    pub name: &'static str,
    /// Where it runs.
    pub platform: Platform,
    /// The shape of its inputs.
    pub shape: Shape,
    /// Its input fields.
    pub fields: &'static [Field],
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: true,
        kind,
        one_of: &[],
    }
}
const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: false,
        kind,
        one_of: &[],
    }
}
const fn opt_of(name: &'static str, one_of: &'static [&'static str]) -> Field {
    Field {
        name,
        required: false,
        kind: Kind::Str,
        one_of,
    }
}

/// The file encodings the file modules accept.
pub const ENCODINGS: &[&str] = &[
    "utf8",
    "utf-8",
    "utf16",
    "utf-16",
    "utf16-LE",
    "utf-16-LE",
    "utf16-BE",
    "utf-16-BE",
    "utf32",
    "utf-32",
    "utf32-LE",
    "utf-32-LE",
    "utf32-BE",
    "utf-32-BE",
];
/// Hash algorithms of WebDownload.
pub const ALGORITHMS: &[&str] = &["MD5", "SHA1", "SHA256", "SHA512"];

use Kind::*;
use Platform::{Any as AnyOs, Linux, Windows};
use Shape::{Condition, List, Map, OptionalMap};

const COPY_MOVE: &[Field] = &[
    req("source", Str),
    req("destination", Str),
    opt("overwrite", Bool),
];
const MSI: &[Field] = &[
    req("path", Str),
    opt_of("reboot", &["Allow", "Force", "Skip"]),
    opt("logOptions", Str),
    opt("logFile", Str),
    opt("properties", StrMap),
    opt("ignoreAuthenticodeSignatureErrors", Bool),
    opt("allowUnsignedInstaller", Bool),
];

/// Every action module AWSTOE knows.
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "ExecuteBash",
        platform: Linux,
        shape: Map,
        fields: &[req("commands", StrList)],
    },
    ActionSpec {
        name: "ExecuteBinary",
        platform: AnyOs,
        shape: Map,
        fields: &[req("path", Str), opt("arguments", StrList)],
    },
    ActionSpec {
        name: "ExecutePowerShell",
        platform: Windows,
        shape: Map,
        fields: &[opt("commands", StrList), opt("file", Str)],
    },
    ActionSpec {
        name: "ExecuteDocument",
        platform: AnyOs,
        shape: Map,
        fields: &[
            req("document", Str),
            opt("document-s3-bucket-owner", Str),
            opt("phases", Str),
            opt("parameters", NameValueList),
        ],
    },
    ActionSpec {
        name: "Assert",
        platform: AnyOs,
        shape: Condition,
        fields: &[],
    },
    ActionSpec {
        name: "AppendFile",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("path", Str),
            opt("content", Str),
            Field {
                name: "encoding",
                required: false,
                kind: Str,
                one_of: ENCODINGS,
            },
        ],
    },
    ActionSpec {
        name: "CopyFile",
        platform: AnyOs,
        shape: List,
        fields: COPY_MOVE,
    },
    ActionSpec {
        name: "CopyFolder",
        platform: AnyOs,
        shape: List,
        fields: COPY_MOVE,
    },
    ActionSpec {
        name: "MoveFile",
        platform: AnyOs,
        shape: List,
        fields: COPY_MOVE,
    },
    ActionSpec {
        name: "MoveFolder",
        platform: AnyOs,
        shape: List,
        fields: COPY_MOVE,
    },
    ActionSpec {
        name: "CreateFile",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("path", Str),
            opt("content", Str),
            Field {
                name: "encoding",
                required: false,
                kind: Str,
                one_of: ENCODINGS,
            },
            opt("owner", Str),
            opt("group", Str),
            opt("permissions", Str),
            opt("overwrite", Bool),
        ],
    },
    ActionSpec {
        name: "CreateFolder",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("path", Str),
            opt("owner", Str),
            opt("group", Str),
            opt("permissions", Str),
            opt("overwrite", Bool),
        ],
    },
    ActionSpec {
        name: "CreateSymlink",
        platform: Linux,
        shape: List,
        fields: &[req("path", Str), req("target", Str), opt("force", Bool)],
    },
    ActionSpec {
        name: "DeleteFile",
        platform: AnyOs,
        shape: List,
        fields: &[req("path", Str)],
    },
    ActionSpec {
        name: "DeleteFolder",
        platform: AnyOs,
        shape: List,
        fields: &[req("path", Str), opt("force", Bool)],
    },
    ActionSpec {
        name: "ListFiles",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("path", Str),
            opt("fileNamePattern", Str),
            opt("recursive", Bool),
        ],
    },
    ActionSpec {
        name: "ReadFile",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("path", Str),
            Field {
                name: "encoding",
                required: false,
                kind: Str,
                one_of: ENCODINGS,
            },
            opt("printFileContent", Bool),
        ],
    },
    ActionSpec {
        name: "SetFileEncoding",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("path", Str),
            Field {
                name: "encoding",
                required: false,
                kind: Str,
                one_of: ENCODINGS,
            },
        ],
    },
    ActionSpec {
        name: "SetFileOwner",
        platform: Linux,
        shape: List,
        fields: &[req("path", Str), req("owner", Str), opt("group", Str)],
    },
    ActionSpec {
        name: "SetFolderOwner",
        platform: Linux,
        shape: List,
        fields: &[
            req("path", Str),
            req("owner", Str),
            opt("group", Str),
            opt("recursive", Bool),
        ],
    },
    ActionSpec {
        name: "SetFilePermissions",
        platform: Linux,
        shape: List,
        fields: &[req("path", Str), req("permissions", Str)],
    },
    ActionSpec {
        name: "SetFolderPermissions",
        platform: Linux,
        shape: List,
        fields: &[
            req("path", Str),
            req("permissions", Str),
            opt("recursive", Bool),
        ],
    },
    ActionSpec {
        name: "S3Download",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("source", Str),
            req("destination", Str),
            opt("expectedBucketOwner", Str),
            opt("overwrite", Bool),
        ],
    },
    ActionSpec {
        name: "S3Upload",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("source", Str),
            req("destination", Str),
            opt("recurse", Bool),
            opt("expectedBucketOwner", Str),
        ],
    },
    ActionSpec {
        name: "WebDownload",
        platform: AnyOs,
        shape: List,
        fields: &[
            req("source", Str),
            req("destination", Str),
            opt("overwrite", Bool),
            opt("checksum", Str),
            Field {
                name: "algorithm",
                required: false,
                kind: Str,
                one_of: ALGORITHMS,
            },
            opt("ignoreCertificateErrors", Bool),
        ],
    },
    ActionSpec {
        name: "UpdateOS",
        platform: AnyOs,
        shape: OptionalMap,
        fields: &[opt("include", StrList), opt("exclude", StrList)],
    },
    ActionSpec {
        name: "Reboot",
        platform: AnyOs,
        shape: OptionalMap,
        fields: &[opt("delaySeconds", Int)],
    },
    ActionSpec {
        name: "InstallMSI",
        platform: Windows,
        shape: Map,
        fields: MSI,
    },
    ActionSpec {
        name: "UninstallMSI",
        platform: Windows,
        shape: Map,
        fields: MSI,
    },
    ActionSpec {
        name: "SetRegistry",
        platform: Windows,
        shape: List,
        fields: &[
            req("path", Str),
            req("name", Str),
            req("value", Any),
            Field {
                name: "type",
                required: true,
                kind: Str,
                one_of: &["BINARY", "DWORD", "QWORD", "SZ", "EXPAND_SZ", "MULTI_SZ"],
            },
        ],
    },
];

/// Looks an action up by its exact (case-sensitive) name.
pub fn find(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

impl ActionSpec {
    /// Whether it runs on `os` (`linux` or `windows`).
    pub fn runs_on(&self, os: OsPlatform) -> bool {
        matches!(
            (self.platform, os),
            (Platform::Any, _)
                | (Platform::Linux, OsPlatform::Linux)
                | (Platform::Windows, OsPlatform::Windows)
        )
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The operating system a document is validated or run for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OsPlatform {
    /// Linux.
    Linux,
    /// Windows.
    Windows,
}

impl std::fmt::Display for OsPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OsPlatform::Linux => "Linux",
            OsPlatform::Windows => "Windows",
        })
    }
}
