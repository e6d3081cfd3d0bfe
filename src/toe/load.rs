//! Reading documents: local paths, AWS-managed component ARNs (resolved to
//! built-ins) and built-in names; and the static check of ExecuteDocument
//! nesting (depth and cycles) across files.

use std::path::{Path, PathBuf};

use super::actions::spec::OsPlatform;
use super::builtin;
use super::document::{self, Document};
use crate::util::diag::{Diagnostic, Diagnostics};

/// ExecuteDocument may nest this many levels below the top document.
pub const MAX_DOCUMENT_DEPTH: usize = 3;

/// A document and where it came from.
#[derive(Clone, Debug)]
pub struct LoadedDocument {
    /// A stable identity: the canonical path, or `builtin:NAME`.
    pub id: String,
    /// The folder relative paths in it resolve against (none for built-ins).
    pub base_dir: Option<PathBuf>,
    /// The parsed document.
    pub doc: Document,
}

/// Why a document could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read document {}", crate::util::display::Escaped(path))]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: crate::util::read::ReadError,
    },
    /// The reference names nothing kiln knows.
    #[error("unknown component `{0}`")]
    Unknown(String),
    /// The document is invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl LoadError {
    /// The diagnostics, if the document was read but is invalid.
    pub fn diagnostics(&self) -> Option<&[Diagnostic]> {
        match self {
            LoadError::Invalid(d) => Some(d),
            _ => None,
        }
    }
}

/// Parses already-read text.
pub fn from_text(
    id: String,
    display: &str,
    text: &str,
    base_dir: Option<PathBuf>,
    os: OsPlatform,
) -> Result<LoadedDocument, LoadError> {
    let doc = document::parse(display, text, os).map_err(LoadError::Invalid)?;
    Ok(LoadedDocument { id, base_dir, doc })
}

/// Loads a document named by a path (relative to `relative_to` when given),
/// an AWS-managed component ARN, or `builtin:NAME`.
pub fn load(
    reference: &str,
    relative_to: Option<&Path>,
    os: OsPlatform,
) -> Result<LoadedDocument, LoadError> {
    if let Some(name) =
        builtin::name_from_arn(reference).or_else(|| reference.strip_prefix("builtin:"))
    {
        let text = builtin::find(name).ok_or_else(|| LoadError::Unknown(reference.to_string()))?;
        return from_text(format!("builtin:{name}"), reference, text, None, os);
    }
    if reference.starts_with("s3://") {
        return Err(LoadError::Unknown(format!(
            "{reference}: kiln reads documents from local paths and built-in ARNs; copy the document from S3 and give its path"
        )));
    }
    if reference.starts_with("arn:") {
        return Err(LoadError::Unknown(format!(
            "{reference} (only AWS-managed component ARNs of kiln's built-ins resolve offline: {})",
            builtin::BUILTINS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let path = match relative_to {
        Some(base) if Path::new(reference).is_relative() => base.join(reference),
        _ => PathBuf::from(reference),
    };
    let text = crate::util::read::read_document(&path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let base_dir = canonical.parent().map(Path::to_path_buf);
    let display = path.display().to_string();
    from_text(
        canonical.display().to_string(),
        &display,
        &text,
        base_dir,
        os,
    )
}

/// Checks the ExecuteDocument calls of `top` whose `document` is a fixed
/// path or ARN: the called documents load and are valid, nesting stays within
/// [`MAX_DOCUMENT_DEPTH`], and no document calls itself or an ancestor.
/// Calls whose document is an expression are checked when they run.
pub fn check_nesting(top: &LoadedDocument, os: OsPlatform) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    walk(top, &mut vec![top.id.clone()], os, &mut out);
    out
}

fn walk(
    parent: &LoadedDocument,
    ancestors: &mut Vec<String>,
    os: OsPlatform,
    out: &mut Vec<Diagnostic>,
) {
    let depth = ancestors.len() - 1;
    for phase in &parent.doc.phases {
        for step in phase.steps.iter().filter(|s| s.action == "ExecuteDocument") {
            let Some(node) = step.inputs.as_ref().and_then(|i| i.get("document")) else {
                continue;
            };
            let Some(reference) = node.as_str().filter(|r| !r.contains("{{")) else {
                continue;
            };
            let mut d = Diagnostics::new(parent.doc.file.clone());
            let field = format!("{}.{}.inputs.document", phase.name, step.name);
            if depth >= MAX_DOCUMENT_DEPTH {
                d.error(node.pos, "document-nesting", field, format!(
                    "ExecuteDocument nests more than {MAX_DOCUMENT_DEPTH} levels deep (this document is already at level {depth})"),
                    Some("flatten the chain: a document at the third level may not call another".into()));
                out.extend(d.into_vec());
                continue;
            }
            match load(reference, parent.base_dir.as_deref(), os) {
                Ok(child) => {
                    if ancestors.contains(&child.id) {
                        d.error(node.pos, "document-cycle", field,
                            format!("ExecuteDocument `{reference}` calls a document that is already running (a cycle)"),
                            Some("a document may not call itself or any document that called it".into()));
                        out.extend(d.into_vec());
                        continue;
                    }
                    ancestors.push(child.id.clone());
                    walk(&child, ancestors, os, out);
                    ancestors.pop();
                }
                Err(LoadError::Invalid(diags)) => out.extend(diags),
                Err(e) => {
                    d.error(
                        node.pos,
                        "document-missing",
                        field,
                        e.to_string(),
                        Some("relative paths resolve against the calling document's folder".into()),
                    );
                    out.extend(d.into_vec());
                }
            }
        }
    }
}
