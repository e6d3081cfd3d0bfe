//! The recipe's digest, as the manifest, the catalog and the inputs digest
//! record it (and the API serves it). Pure.
//!
//! A digest of a text holding a short secret can be brute-forced, so the
//! digest never covers a secret:
//!
//! - a recipe with no secret in it (no `secret: true` parameter value, no
//!   credential in a URL or a `token=`-like assignment) is digested as it
//!   is: the sha256 of its text, what `sha256sum` prints;
//! - any other recipe is digested in a redacted form: the sha256 of
//!   [`REDACTED_DIGEST_VERSION`], a newline, and its YAML tree as canonical
//!   JSON, each secret parameter value replaced by a marker and each
//!   credential recognised by its shape masked
//!   ([`crate::util::redact::credentials`]).
//!
//! A redacted form rather than a keyed hash: it is the same on every host,
//! like the inputs digest, which leaves secret parameter values out too
//! ([`crate::build::inputs::ParameterInput::Secret`]); so changing only a
//! secret changes neither (an `ifChanged` pipeline does not rebuild for a
//! rotated password), while any other change to the recipe does. Comments
//! and layout are not part of the redacted form.

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::util::io::IoError;
use crate::util::read;
use crate::util::redact;
use crate::util::yaml::{self, Node, ScalarStyle};

/// The redacted form's version, hashed first.
pub const REDACTED_DIGEST_VERSION: &str = "kiln-recipe-redacted-v1";

/// The marker that stands for a secret parameter value in the redacted form.
const SECRET: &str = "<secret>";

/// The recipe digest of `text` (hex): see the module documentation.
pub fn sha256(text: &str) -> String {
    let (root, _) = yaml::parse_checked(text);
    let Some(root) = root else {
        return plain(text);
    };
    let secrets = secret_values(&root);
    let mut found = !secrets.is_empty();
    let tree = canonical(&root, &secrets, &mut found);
    if !found {
        return plain(text);
    }
    let mut h = Sha256::new();
    h.update(REDACTED_DIGEST_VERSION.as_bytes());
    h.update(b"\n");
    h.update(tree.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// The recipe digest ([`sha256`]) of the recipe (or pipeline) file at
/// `path`, read bounded ([`read::read_bounded`]) on a blocking thread.
pub async fn sha256_file(path: &Path) -> Result<String, IoError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<String, IoError> {
        let bytes = read::read_bounded(&owned, read::MAX_DOCUMENT_BYTES)
            .map_err(|e| IoError::at("read", &owned)(std::io::Error::other(e)))?;
        Ok(sha256(&String::from_utf8_lossy(&bytes)))
    })
    .await
    .map_err(|e| IoError::at("read", path)(std::io::Error::other(e)))?
}

fn plain(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The positions of the value items of secret parameters, in either form
/// of the recipe (`components` at the top, or under `imageRecipe`) and in
/// a pipeline file's inline `recipe`, and of a pipeline file's webhook URLs
/// (often a credential whole). A `secret` that is not `false` counts (an
/// invalid recipe is not built, but its digest is still safe).
fn secret_values(root: &Node) -> Vec<yaml::Pos> {
    let top = root
        .get("imageRecipe")
        .or_else(|| root.get("recipe").filter(|r| r.as_map().is_some()))
        .unwrap_or(root);
    let mut out: Vec<yaml::Pos> = root
        .get("notifications")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.get("webhook"))
        .map(|w| w.pos)
        .collect();
    let params = top
        .get("components")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.get("parameters").and_then(Node::as_seq))
        .flatten();
    for p in params {
        let secret = p.get("secret").is_some_and(|s| {
            !matches!(s.as_str(), Some("false" | "False" | "FALSE")) && !s.is_null()
        });
        if let (true, Some(value)) = (secret, p.get("value")) {
            collect_positions(value, &mut out);
        }
    }
    out
}

fn collect_positions(node: &Node, out: &mut Vec<yaml::Pos>) {
    out.push(node.pos);
    if let Some(items) = node.as_seq() {
        items.iter().for_each(|i| collect_positions(i, out));
    }
    if let Some(entries) = node.as_map() {
        for (k, v) in entries {
            collect_positions(k, out);
            collect_positions(v, out);
        }
    }
}

/// The tree as JSON: scalars as `[style, text]`, sequences as arrays, maps
/// as arrays of `[key, value]` in document order. A scalar at a secret
/// position becomes the marker; a scalar holding a credential is masked
/// (and sets `found`).
fn canonical(node: &Node, secrets: &[yaml::Pos], found: &mut bool) -> Value {
    match &node.value {
        yaml::Value::Scalar(text, style) => {
            if secrets.contains(&node.pos) {
                return json!(SECRET);
            }
            let shown = redact::credentials(text);
            if shown != *text {
                *found = true;
            }
            let style = match style {
                ScalarStyle::Plain => "plain",
                ScalarStyle::Quoted => "quoted",
                ScalarStyle::Block => "block",
            };
            json!([style, shown])
        }
        yaml::Value::Seq(items) => {
            Value::Array(items.iter().map(|i| canonical(i, secrets, found)).collect())
        }
        yaml::Value::Map(entries) => Value::Array(
            entries
                .iter()
                .map(|(k, v)| json!([canonical(k, secrets, found), canonical(v, secrets, found)]))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "name: web\nsemanticVersion: 1.0.0\nparentImage: ./base.qcow2\ncomponents:\n  - component: ./c.yml\n    parameters:\n      - {name: Mode, value: [prod]}\n";

    fn with_secret(value: &str) -> String {
        format!(
            "name: web\nsemanticVersion: 1.0.0\nparentImage: ./base.qcow2\ncomponents:\n  - component: ./c.yml\n    parameters:\n      - name: Token\n        value: [\"{value}\"]\n        secret: true\n"
        )
    }

    #[test]
    fn a_recipe_without_secrets_is_digested_as_its_text() {
        assert_eq!(sha256(PLAIN), plain(PLAIN));
        // not YAML at all: the text too
        assert_eq!(sha256("[unclosed"), plain("[unclosed"));
    }

    #[test]
    fn secret_values_do_not_change_the_digest_and_are_not_hashed() {
        let a = sha256(&with_secret("hunter2"));
        let b = sha256(&with_secret("correct horse"));
        assert_eq!(a, b, "only the secret differs");
        assert_ne!(a, plain(&with_secret("hunter2")));
        // anything else still counts
        let other = with_secret("hunter2").replace("1.0.0", "1.0.1");
        assert_ne!(sha256(&other), a);
        let not_secret = with_secret("hunter2").replace("secret: true", "secret: false");
        assert_eq!(sha256(&not_secret), plain(&not_secret));
    }

    #[test]
    fn block_lists_and_the_aws_form_are_redacted_too() {
        let block = |v: &str| {
            format!("name: web\nsemanticVersion: 1.0.0\nparentImage: ./b.qcow2\ncomponents:\n  - component: ./c.yml\n    parameters:\n      - name: Key\n        secret: True\n        value:\n          - |\n            {v}\n          - second\n")
        };
        assert_eq!(
            sha256(&block("-----BEGIN A")),
            sha256(&block("-----BEGIN B"))
        );
        let aws = |v: &str| {
            format!(
                r#"{{"imageRecipe": {{"name": "web", "components": [{{"componentArn": "x", "parameters": [{{"name": "T", "value": ["{v}"], "secret": true}}]}}]}}}}"#
            )
        };
        assert_eq!(sha256(&aws("one")), sha256(&aws("two")));
    }

    #[test]
    fn inline_recipes_and_webhooks_of_pipeline_files_are_redacted() {
        let pipeline = |v: &str, hook: &str| {
            format!("name: nightly\nrecipe:\n  name: web\n  semanticVersion: 1.0.0\n  parentImage: ./b.qcow2\n  components:\n    - component: ./c.yml\n      parameters:\n        - {{name: T, value: [{v}], secret: true}}\nnotifications:\n  - webhook: https://hooks.example/services/{hook}\n")
        };
        let d = sha256(&pipeline("one", "tok1"));
        assert_eq!(d, sha256(&pipeline("two", "tok2")));
        assert_ne!(
            d,
            sha256(&pipeline("one", "tok1").replace("1.0.0", "2.0.0"))
        );
    }

    #[test]
    fn credentials_in_urls_are_not_hashed() {
        let url = |pw: &str| {
            format!("name: web\nsemanticVersion: 1.0.0\nparentImage:\n  url: https://bob:{pw}@mirror.example/base.qcow2\n  sha256: 00\ncomponents: []\n")
        };
        assert_eq!(sha256(&url("pw1")), sha256(&url("pw2")));
        assert_ne!(sha256(&url("pw1")), plain(&url("pw1")));
    }
}
