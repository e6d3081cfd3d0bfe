//! The inputs digest: one sha256 over everything that decides what a build
//! makes, so `startCondition: ifChanged` can skip a build whose inputs are
//! those of the last successful one. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The digest format's version, hashed first: a change of what is hashed
/// changes every digest once.
pub const INPUTS_DIGEST_VERSION: &str = "kiln-inputs-v1";

/// A component as it went into a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInput {
    /// The document's identity (`builtin:NAME` or its path).
    pub source: String,
    /// sha256 of the document text.
    pub sha256: String,
    /// Parameter values. A secret parameter's value is **not** hashed (a
    /// digest of a short secret can be guessed): only that it is set, so
    /// changing a secret alone does not trigger an `ifChanged` build.
    pub parameters: BTreeMap<String, ParameterInput>,
}

/// One parameter value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterInput {
    /// A plain value.
    Value(String),
    /// A secret: its value is left out.
    Secret,
}

/// Everything that decides what a build makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    /// The recipe digest: sha256 of the recipe text, or of its redacted
    /// form when it holds a secret ([`crate::recipe::digest`]).
    pub recipe_sha256: String,
    /// sha256 of the parent disk.
    pub parent_sha256: String,
    /// The components in recipe order.
    pub components: Vec<ComponentInput>,
    /// sha256 of the bootstrap mirror's package index (`Release` file), for
    /// bootstrapped parents.
    pub mirror_index_sha256: Option<String>,
    /// The export formats, in order.
    pub formats: Vec<String>,
    /// sha256 of the AMI distribution settings, when the build imports an
    /// AMI (absent otherwise, so digests of builds without one are
    /// unchanged from the first version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_sha256: Option<String>,
}

/// The inputs digest, hex: sha256 of [`INPUTS_DIGEST_VERSION`], a newline,
/// and the inputs' canonical JSON (fields in a fixed order, parameters
/// sorted by name).
pub fn inputs_digest(inputs: &Inputs) -> String {
    let mut h = Sha256::new();
    h.update(INPUTS_DIGEST_VERSION.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(inputs).expect("strings, lists and string-keyed maps serialize"));
    hex::encode(h.finalize())
}

/// Which inputs differ between two builds, for saying why a build ran.
pub fn changes(old: &Inputs, new: &Inputs) -> Vec<String> {
    let mut out = Vec::new();
    if old.recipe_sha256 != new.recipe_sha256 {
        out.push("the recipe changed".to_string());
    }
    if old.parent_sha256 != new.parent_sha256 {
        out.push("the parent image changed".to_string());
    }
    if old.mirror_index_sha256 != new.mirror_index_sha256 {
        out.push("the bootstrap mirror's package index changed".to_string());
    }
    if old.formats != new.formats {
        out.push("the export formats changed".to_string());
    }
    if old.ami_sha256 != new.ami_sha256 {
        out.push("the AMI distribution settings changed".to_string());
    }
    let by_source = |v: &[ComponentInput]| -> BTreeMap<String, ComponentInput> {
        v.iter().map(|c| (c.source.clone(), c.clone())).collect()
    };
    let (a, b) = (by_source(&old.components), by_source(&new.components));
    for (source, c) in &b {
        match a.get(source) {
            None => out.push(format!("component {source} was added")),
            Some(o) if o.sha256 != c.sha256 => out.push(format!("component {source} changed")),
            Some(o) if o.parameters != c.parameters => {
                out.push(format!("the parameters of component {source} changed"))
            }
            Some(_) => {}
        }
    }
    for source in a.keys().filter(|s| !b.contains_key(*s)) {
        out.push(format!("component {source} was removed"));
    }
    let order = |v: &[ComponentInput]| v.iter().map(|c| c.source.clone()).collect::<Vec<_>>();
    if out.is_empty() && order(&old.components) != order(&new.components) {
        out.push("the components' order changed".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            recipe_sha256: "r".into(),
            parent_sha256: "p".into(),
            components: vec![
                ComponentInput {
                    source: "builtin:update-linux".into(),
                    sha256: "u".into(),
                    parameters: BTreeMap::new(),
                },
                ComponentInput {
                    source: "./web.yml".into(),
                    sha256: "w".into(),
                    parameters: [
                        ("Mode".to_string(), ParameterInput::Value("prod".into())),
                        ("Token".to_string(), ParameterInput::Secret),
                    ]
                    .into(),
                },
            ],
            mirror_index_sha256: None,
            formats: vec!["vmdk".into()],
            ami_sha256: None,
        }
    }

    #[test]
    fn digest_is_stable_and_sensitive() {
        let base = inputs();
        let d = inputs_digest(&base);
        assert_eq!(d.len(), 64);
        assert_eq!(d, inputs_digest(&inputs()));
        let mut other = inputs();
        other.components[1].sha256 = "w2".into();
        assert_ne!(inputs_digest(&other), d);
        assert_eq!(changes(&base, &other), ["component ./web.yml changed"]);
        let mut other = inputs();
        other.components[1]
            .parameters
            .insert("Mode".into(), ParameterInput::Value("dev".into()));
        assert_ne!(inputs_digest(&other), d);
        assert_eq!(
            changes(&base, &other),
            ["the parameters of component ./web.yml changed"]
        );
        let mut other = inputs();
        other.components.swap(0, 1);
        assert_ne!(inputs_digest(&other), d);
        assert_eq!(changes(&base, &other), ["the components' order changed"]);
        let mut other = inputs();
        other.parent_sha256 = "p2".into();
        other.mirror_index_sha256 = Some("m".into());
        assert_eq!(
            changes(&base, &other),
            [
                "the parent image changed",
                "the bootstrap mirror's package index changed"
            ]
        );
        assert!(changes(&base, &inputs()).is_empty());
        let mut other = inputs();
        other.ami_sha256 = Some("a".into());
        assert_ne!(inputs_digest(&other), d);
        assert_eq!(
            changes(&base, &other),
            ["the AMI distribution settings changed"]
        );
    }

    #[test]
    fn inputs_round_trip_through_json() {
        let text = serde_json::to_string(&inputs()).unwrap();
        assert!(!text.contains("amiSha256"), "{text}");
        let back: Inputs = serde_json::from_str(&text).unwrap();
        assert_eq!(back, inputs());
    }
}
