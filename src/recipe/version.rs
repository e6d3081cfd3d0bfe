//! Semantic versions `major.minor.patch`, as Image Builder gives recipes.

use std::fmt;
use std::str::FromStr;

/// The largest value of each part of a version (2^30 − 1), as in Image Builder.
pub const MAX_VERSION_PART: u64 = 1_073_741_823;

/// A semantic version `major.minor.patch`. Leading zeros are accepted when
/// parsing (`2021.12.02`, as Image Builder allows dates) and dropped when
/// printed (`2021.12.2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// The first part.
    pub major: u64,
    /// The second part.
    pub minor: u64,
    /// The third part.
    pub patch: u64,
}

/// Why a text is not a [`Version`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not three parts separated by dots.
    #[error("`{text}` is not a version of the form major.minor.patch")]
    Shape {
        /// The text given.
        text: String,
    },
    /// A part is not a whole number (wildcards such as `x` included).
    #[error("`{part}` in version `{text}` is not a whole number")]
    NotNumber {
        /// The text given.
        text: String,
        /// The offending part.
        part: String,
    },
    /// A part is larger than [`MAX_VERSION_PART`].
    #[error("`{part}` in version `{text}` is larger than {MAX_VERSION_PART}")]
    TooLarge {
        /// The text given.
        text: String,
        /// The offending part.
        part: String,
    },
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(VersionError::Shape { text: text.into() });
        };
        let number = |part: &str| -> Result<u64, VersionError> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::NotNumber {
                    text: text.into(),
                    part: part.into(),
                });
            }
            part.parse::<u64>()
                .ok()
                .filter(|n| *n <= MAX_VERSION_PART)
                .ok_or_else(|| VersionError::TooLarge {
                    text: text.into(),
                    part: part.into(),
                })
        };
        Ok(Version {
            major: number(major)?,
            minor: number(minor)?,
            patch: number(patch)?,
        })
    }
}

/// A version filter as Image Builder writes them after an image or
/// component name: an exact `1.2.3`, an exact build `1.2.3/4`, or wildcards
/// `x` that only stand right-aligned (`1.2.x`, `1.x.x`, `x.x.x`; never
/// `x.1.x` nor `1.x.3`). `None` parts match anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionFilter {
    /// The major part, `None` for `x`.
    pub major: Option<u64>,
    /// The minor part, `None` for `x`.
    pub minor: Option<u64>,
    /// The patch part, `None` for `x`.
    pub patch: Option<u64>,
    /// The build number after `/`, only with an exact version.
    pub build: Option<u64>,
}

/// Why a text is not a [`VersionFilter`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionFilterError {
    /// A part of the version is invalid.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// A wildcard stands left of a number (`x.1.x`, `1.x.3`).
    #[error(
        "`{text}`: a wildcard `x` may only be followed by wildcards (write e.g. 1.x.x or 1.2.x)"
    )]
    WildcardNotRightAligned {
        /// The text given.
        text: String,
    },
    /// A build number follows a version with wildcards, or is not a whole number ≥ 1.
    #[error(
        "`{text}`: a build number `/N` (N ≥ 1) may only follow an exact version such as 1.2.3/4"
    )]
    Build {
        /// The text given.
        text: String,
    },
}

impl VersionFilter {
    /// True when `version` and `build` match this filter.
    pub fn matches(&self, version: &Version, build: u64) -> bool {
        self.major.is_none_or(|m| m == version.major)
            && self.minor.is_none_or(|m| m == version.minor)
            && self.patch.is_none_or(|p| p == version.patch)
            && self.build.is_none_or(|b| b == build)
    }

    /// The exact version, when the filter has no wildcard.
    pub fn exact(&self) -> Option<Version> {
        Some(Version {
            major: self.major?,
            minor: self.minor?,
            patch: self.patch?,
        })
    }
}

impl fmt::Display for VersionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |p: Option<u64>| p.map_or_else(|| "x".to_string(), |n| n.to_string());
        write!(
            f,
            "{}.{}.{}",
            part(self.major),
            part(self.minor),
            part(self.patch)
        )?;
        if let Some(b) = self.build {
            write!(f, "/{b}")?;
        }
        Ok(())
    }
}

impl FromStr for VersionFilter {
    type Err = VersionFilterError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (version, build) = match text.split_once('/') {
            Some((v, b)) => (v, Some(b)),
            None => (text, None),
        };
        let parts: Vec<&str> = version.split('.').collect();
        if parts.len() != 3 {
            return Err(VersionError::Shape { text: text.into() }.into());
        }
        let wild: Vec<bool> = parts.iter().map(|p| matches!(*p, "x" | "X")).collect();
        if wild.windows(2).any(|w| w[0] && !w[1]) {
            return Err(VersionFilterError::WildcardNotRightAligned { text: text.into() });
        }
        // the numeric parts are checked as a version with wildcards as 0
        let numeric: Vec<&str> = parts
            .iter()
            .zip(&wild)
            .map(|(p, w)| if *w { "0" } else { p })
            .collect();
        let v: Version = numeric.join(".").parse().map_err(|e| match e {
            VersionError::Shape { .. } => VersionError::Shape { text: text.into() },
            VersionError::NotNumber { part, .. } => VersionError::NotNumber {
                text: text.into(),
                part,
            },
            VersionError::TooLarge { part, .. } => VersionError::TooLarge {
                text: text.into(),
                part,
            },
        })?;
        let build = match build {
            None => None,
            Some(b) => {
                let n = b
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1 && b.bytes().all(|c| c.is_ascii_digit()) && !wild[2]);
                Some(n.ok_or_else(|| VersionFilterError::Build { text: text.into() })?)
            }
        };
        Ok(VersionFilter {
            major: (!wild[0]).then_some(v.major),
            minor: (!wild[1]).then_some(v.minor),
            patch: (!wild[2]).then_some(v.patch),
            build,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_image_builder_wildcard_rules() {
        for (text, printed) in [
            ("1.2.3", "1.2.3"),
            ("1.2.3/4", "1.2.3/4"),
            ("1.2.x", "1.2.x"),
            ("1.x.x", "1.x.x"),
            ("x.x.x", "x.x.x"),
            ("1.X.X", "1.x.x"),
            ("01.2.x", "1.2.x"),
        ] {
            let f: VersionFilter = text.parse().unwrap();
            assert_eq!(f.to_string(), printed, "{text}");
        }
        for (text, expected) in [
            ("x.1.x", "may only be followed by wildcards"),
            ("1.x.3", "may only be followed by wildcards"),
            ("x.x.1", "may only be followed by wildcards"),
            ("1.x.x/2", "may only follow an exact version"),
            ("1.2.3/0", "may only follow an exact version"),
            ("1.2.3/", "may only follow an exact version"),
            ("1.2.3/+4", "may only follow an exact version"),
            ("1.2", "is not a version of the form"),
            ("1.y.x", "`y` in version `1.y.x` is not a whole number"),
            ("1.2.1073741824", "larger than"),
        ] {
            let e = text.parse::<VersionFilter>().unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn filters_match_versions_and_builds() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        let f = |s: &str| s.parse::<VersionFilter>().unwrap();
        assert!(f("1.x.x").matches(&v("1.9.9"), 3));
        assert!(!f("1.x.x").matches(&v("2.0.0"), 1));
        assert!(f("1.2.x").matches(&v("1.2.0"), 1));
        assert!(!f("1.2.x").matches(&v("1.3.0"), 1));
        assert!(f("1.2.3").matches(&v("1.2.3"), 7));
        assert!(f("1.2.3/7").matches(&v("1.2.3"), 7));
        assert!(!f("1.2.3/7").matches(&v("1.2.3"), 6));
        assert!(f("x.x.x").matches(&v("0.0.0"), 1));
        assert_eq!(f("1.2.3/7").exact(), Some(v("1.2.3")));
        assert_eq!(f("1.2.x").exact(), None);
    }

    #[test]
    fn parses_and_prints() {
        let v: Version = "1.20.3".parse().unwrap();
        assert_eq!(
            v,
            Version {
                major: 1,
                minor: 20,
                patch: 3
            }
        );
        assert_eq!(v.to_string(), "1.20.3");
        assert_eq!(
            "2021.12.02".parse::<Version>().unwrap().to_string(),
            "2021.12.2"
        );
        assert_eq!(
            "1073741823.0.0".parse::<Version>().unwrap().major,
            MAX_VERSION_PART
        );
        assert!("1.0.0".parse::<Version>().unwrap() < "1.0.10".parse().unwrap());
    }

    #[test]
    fn rejects_bad_versions() {
        for (text, expected) in [
            ("1.0", "is not a version of the form major.minor.patch"),
            ("1.0.0.0", "is not a version of the form major.minor.patch"),
            ("1.x.x", "`x` in version `1.x.x` is not a whole number"),
            ("1.-1.0", "`-1` in version `1.-1.0` is not a whole number"),
            ("1..0", "`` in version `1..0` is not a whole number"),
            ("+1.0.0", "`+1` in version `+1.0.0` is not a whole number"),
            ("1.0.1073741824", "larger than 1073741823"),
            ("99999999999999999999.0.0", "larger than 1073741823"),
        ] {
            let e = text.parse::<Version>().unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
