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

#[cfg(test)]
mod tests {
    use super::*;

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
