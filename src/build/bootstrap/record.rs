//! `inputs.json` next to a bootstrapped image: what went in, how long each
//! step took, and when it was built.

use std::collections::BTreeMap;

use super::inputs::BootstrapInputs;

/// The record of one bootstrap.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BootstrapRecord {
    /// The digest of `inputs` (the cache folder's name).
    pub digest: String,
    /// What went in.
    pub inputs: BootstrapInputs,
    /// When the build finished (RFC 3339, UTC).
    pub built_at: String,
    /// The kiln version that built it.
    pub kiln_version: String,
    /// Wall-clock seconds of the whole build.
    pub seconds: f64,
    /// Seconds per step of the script (`mmdebstrap`, `assemble`, `qcow2`, …).
    pub timings: BTreeMap<String, f64>,
    /// The image file's size in bytes.
    pub image_bytes: u64,
}

/// Parses the script's `timings.txt`: lines like `mmdebstrap=104.8s`; other
/// lines are ignored.
pub fn parse_timings(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once('=')?;
            let secs = value.strip_suffix('s')?.parse::<f64>().ok()?;
            Some((name.to_string(), secs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings() {
        let t = parse_timings("mmdebstrap=104.8s\nassemble=4.9s\nnoise\nqcow2=x\ncleanup=3.1s\n");
        assert_eq!(t.len(), 3);
        assert_eq!(t["mmdebstrap"], 104.8);
        assert_eq!(t["cleanup"], 3.1);
    }
}
