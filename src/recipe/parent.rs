//! `parentImage`: a local disk file, `{url, sha256}` or `{bootstrap: …}`;
//! and the check that a local parent file exists.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::fields::{optional, Field};
use super::model::{BootstrapSpec, ParentImage};
use super::version::{VersionFilter, VersionFilterError};
use crate::util::diag::{Diagnostic, Diagnostics};
use crate::util::yaml::Pos;

/// Distributions kiln can bootstrap.
pub const DISTROS: &[&str] = &["debian"];
/// Debian suites kiln can bootstrap: those the host's mmdebstrap (Debian 12)
/// knows and has archive keys for.
pub const SUITES: &[&str] = &["bookworm", "trixie"];
/// The suite when a bootstrap gives none.
pub const DEFAULT_SUITE: &str = "bookworm";

/// How to write `parentImage`.
pub const PARENT_HINT: &str =
    "give a local disk file path, {url: …, sha256: …} or {bootstrap: {distro: debian, …}}";

/// The prefix of a catalog parent, `kiln:NAME/VERSION`.
pub const CATALOG_PREFIX: &str = "kiln:";

/// How to write a catalog parent.
const CATALOG_HINT: &str = "write kiln:NAME/1.x.x, kiln:NAME/1.2.x, kiln:NAME/1.2.3 or kiln:NAME/1.2.3/4 (wildcards `x` only on the right)";

/// Parses the text after `kiln:`: `NAME/FILTER`.
pub fn parse_catalog_ref(text: &str) -> Result<(String, VersionFilter), String> {
    let (name, filter) = text
        .split_once('/')
        .ok_or_else(|| format!("`kiln:{text}` names no version"))?;
    if !super::parse::NAME.is_match(name) {
        return Err(format!("`{name}` is not an image name"));
    }
    let filter = filter
        .parse()
        .map_err(|e: VersionFilterError| e.to_string())?;
    Ok((name.to_string(), filter))
}

static AMI_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$").expect("a valid regex"));
/// Debian policy §5.6.1: package names.
static PACKAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9+.-]+$").expect("a valid regex"));

/// What a parentImage string names that is not on this machine, if anything.
fn remote_kind(s: &str) -> Option<&'static str> {
    if AMI_ID.is_match(s) {
        Some("an EC2 AMI id")
    } else if s.starts_with("arn:") {
        Some("an Image Builder image ARN")
    } else if s.starts_with("ssm:") || s.starts_with("resolve:ssm:") {
        Some("an SSM parameter")
    } else if s.starts_with("http://") || s.starts_with("https://") {
        Some("a URL")
    } else {
        None
    }
}

/// True for an absolute `http://` or `https://` URL with a host.
pub fn is_http_url(s: &str) -> bool {
    reqwest::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

/// Parses `parentImage`; relative paths resolve against `dir`.
pub(crate) fn parse(field: &Field<'_>, dir: &Path, d: &mut Diagnostics) -> Option<ParentImage> {
    if field.node.as_map().is_some() {
        return parse_map(field, d);
    }
    let text = field.str(d)?;
    if text.is_empty() {
        field.error(
            d,
            "parent-image",
            "`parentImage` is empty",
            Some(PARENT_HINT.into()),
        );
        return None;
    }
    if let Some(rest) = text.strip_prefix(CATALOG_PREFIX) {
        return match parse_catalog_ref(rest) {
            Ok((name, filter)) => Some(ParentImage::Catalog { name, filter }),
            Err(message) => {
                field.error(d, "parent-image", message, Some(CATALOG_HINT.into()));
                None
            }
        };
    }
    if let Some(kind) = remote_kind(text) {
        let hint = if kind == "a URL" {
            "write {url: …, sha256: …} so the download can be checked".to_string()
        } else {
            format!("kiln builds from local images: {PARENT_HINT}")
        };
        field.error(
            d,
            "parent-image",
            format!("`{text}` is {kind}, which kiln cannot use as a parent image"),
            Some(hint),
        );
        return None;
    }
    Some(ParentImage::File(dir.join(text)))
}

fn parse_map(field: &Field<'_>, d: &mut Diagnostics) -> Option<ParentImage> {
    let obj = field.obj(d)?;
    obj.check_keys(&["url", "sha256", "bootstrap"], d);
    match (obj.has("url"), obj.has("bootstrap")) {
        (true, true) => {
            field.error(
                d,
                "parent-image",
                "`parentImage` gives both `url` and `bootstrap`",
                Some("keep one of them".into()),
            );
            None
        }
        (false, false) => {
            field.error(
                d,
                "parent-image",
                "`parentImage` gives neither `url` nor `bootstrap`",
                Some(PARENT_HINT.into()),
            );
            None
        }
        (true, false) => {
            let url = obj.get("url").and_then(|f| parse_url(&f, d));
            let sha = obj
                .require("sha256", d, "add the image's SHA-256 (`sha256sum FILE`)")
                .and_then(|f| parse_sha256(&f, d));
            Some(ParentImage::Url {
                url: url?,
                sha256: sha?,
            })
        }
        (false, true) => {
            if let Some(f) = obj.get("sha256") {
                f.error(
                    d,
                    "parent-image",
                    "`sha256` goes with `url`, not with `bootstrap`",
                    Some("remove it".into()),
                );
            }
            obj.get("bootstrap")
                .and_then(|f| parse_bootstrap(&f, d))
                .map(ParentImage::Bootstrap)
        }
    }
}

fn parse_url(field: &Field<'_>, d: &mut Diagnostics) -> Option<String> {
    let text = field.str(d)?;
    if is_http_url(text) {
        Some(text.to_string())
    } else {
        field.error(
            d,
            "invalid-url",
            format!("`{text}` is not an http:// or https:// URL"),
            Some("give the full URL, e.g. https://cloud.debian.org/images/…/disk.qcow2".into()),
        );
        None
    }
}

fn parse_sha256(field: &Field<'_>, d: &mut Diagnostics) -> Option<String> {
    let text = field.str(d)?;
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(text.to_ascii_lowercase())
    } else {
        field.error(
            d,
            "invalid-sha256",
            format!(
                "`sha256` must be 64 hex digits, found {} characters",
                text.chars().count()
            ),
            Some("copy the first word that `sha256sum FILE` prints".into()),
        );
        None
    }
}

fn parse_bootstrap(field: &Field<'_>, d: &mut Diagnostics) -> Option<BootstrapSpec> {
    let obj = field.obj(d)?;
    obj.check_keys(&["distro", "suite", "mirror", "packages"], d);
    let distro = obj
        .require("distro", d, "add `distro: debian`")
        .and_then(|f| {
            f.one_of(d, DISTROS, "bootstrap", "the distribution")
                .map(str::to_string)
        });
    let suite = match obj.get("suite") {
        Some(f) => f
            .one_of(d, SUITES, "bootstrap", "the suite")
            .map(str::to_string),
        None => Some(DEFAULT_SUITE.to_string()),
    };
    let mirror = obj.get("mirror").map(|f| parse_url(&f, d));
    let packages = obj.get("packages").map(|f| parse_packages(&f, d));
    Some(BootstrapSpec {
        distro: distro?,
        suite: suite?,
        mirror: optional(mirror)?,
        packages: optional(packages)?.unwrap_or_default(),
    })
}

fn parse_packages(field: &Field<'_>, d: &mut Diagnostics) -> Option<Vec<String>> {
    let names = field.strings(d)?;
    let items = field.seq(d)?;
    let mut ok = true;
    for (name, item) in names.iter().zip(&items) {
        if !PACKAGE.is_match(name) {
            item.error(
                d,
                "bootstrap",
                format!("`{name}` is not a Debian package name"),
                Some("package names are lowercase letters, digits and `+ . -`, at least two characters".into()),
            );
            ok = false;
        }
    }
    ok.then_some(names)
}

/// Checks that a local parent image file exists and is a file; `pos` and
/// `field` say where `parentImage` is written in `file`.
pub fn check_file(parent: &ParentImage, file: &str, pos: Pos, field: String) -> Option<Diagnostic> {
    let ParentImage::File(path) = parent else {
        return None;
    };
    let message = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => return None,
        Ok(_) => format!("the parent image {} is not a file", path.display()),
        Err(e) => format!("cannot read the parent image {}: {e}", path.display()),
    };
    Some(Diagnostic {
        file: file.to_string(),
        pos,
        code: "parent-image",
        field,
        message,
        hint: Some(format!(
            "relative paths resolve against the recipe's folder; {PARENT_HINT}"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_refs() {
        let (name, filter) = parse_catalog_ref("base/1.x.x").unwrap();
        assert_eq!(
            (name.as_str(), filter.to_string().as_str()),
            ("base", "1.x.x")
        );
        assert_eq!(parse_catalog_ref("base/1.2.3/4").unwrap().1.build, Some(4));
        for (text, expected) in [
            ("base", "names no version"),
            ("/1.x.x", "is not an image name"),
            ("ba se/1.x.x", "is not an image name"),
            ("base/x.1.x", "may only be followed by wildcards"),
            ("base/1.x.x/2", "may only follow an exact version"),
        ] {
            let e = parse_catalog_ref(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
