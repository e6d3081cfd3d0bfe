//! The components a recipe names, loaded and checked: each document is read
//! and validated by the toe engine (ExecuteDocument nesting included), and
//! the recipe's parameter values are checked against what it declares.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::model::{ComponentRef, ComponentSource, Recipe, ResolvedComponent};
use crate::toe::actions::spec::OsPlatform;
use crate::toe::document::Document;
use crate::toe::load::{self, LoadError, LoadedDocument};
use crate::toe::runner::resolve_parameters;
use crate::util::diag::{did_you_mean, Diagnostic, Diagnostics};

/// kiln builds Linux images: components are checked against Linux's actions.
const OS: OsPlatform = OsPlatform::Linux;

/// Loads and checks every component of `recipe`. Problems in the recipe
/// file (missing files, unknown or unallowed parameters) come first, sorted
/// by position; then the problems of each component's own document.
pub fn resolve_components(recipe: &Recipe) -> Result<Vec<ResolvedComponent>, Vec<Diagnostic>> {
    let mut d = Diagnostics::new(recipe.file.display().to_string());
    let (resolved, others) = resolve_into(&recipe.components, &mut d);
    let all = ordered(d, others);
    if all.is_empty() {
        Ok(resolved)
    } else {
        Err(all)
    }
}

/// Resolves `refs`, recording problems in the recipe file in `d` and
/// returning those in the component documents.
pub(crate) fn resolve_into(
    refs: &[ComponentRef],
    d: &mut Diagnostics,
) -> (Vec<ResolvedComponent>, Vec<Diagnostic>) {
    let mut others = Vec::new();
    let resolved = refs
        .iter()
        .filter_map(|r| resolve_one(r, d, &mut others))
        .collect();
    (resolved, others)
}

/// The recipe file's problems sorted by position, then the others in the
/// order found, each once (a document named twice is reported once).
pub(crate) fn ordered(recipe: Diagnostics, others: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut all = recipe.into_vec();
    for d in others {
        if !all.contains(&d) {
            all.push(d);
        }
    }
    all
}

fn load_document(
    r: &ComponentRef,
    d: &mut Diagnostics,
    others: &mut Vec<Diagnostic>,
) -> Option<LoadedDocument> {
    let (reference, hint) = match &r.source {
        ComponentSource::Builtin(name) => (format!("builtin:{name}"), None),
        ComponentSource::File(path) => (
            path.display().to_string(),
            Some("relative paths resolve against the recipe's folder".to_string()),
        ),
    };
    match load::load(&reference, None, OS) {
        Ok(loaded) => Some(loaded),
        Err(LoadError::Invalid(diags)) => {
            others.extend(diags);
            None
        }
        Err(e) => {
            d.error(
                r.pos(),
                "component-missing",
                r.field.clone(),
                crate::util::display::chain(&e),
                hint,
            );
            None
        }
    }
}

fn resolve_one(
    r: &ComponentRef,
    d: &mut Diagnostics,
    others: &mut Vec<Diagnostic>,
) -> Option<ResolvedComponent> {
    let loaded = load_document(r, d, others)?;
    let nesting = load::check_nesting(&loaded, OS);
    let parameters = parameters(r, &loaded.doc, d);
    if !nesting.is_empty() {
        others.extend(nesting);
        return None;
    }
    let mut secrets: Vec<String> = Vec::new();
    for p in r.parameters.iter().filter(|p| p.secret) {
        for s in p.value.iter().cloned().chain([p.joined()]) {
            if !s.is_empty() && !secrets.contains(&s) {
                secrets.push(s);
            }
        }
    }
    // masked in every text this process writes from now on, whichever
    // build or sink the text goes to
    crate::util::redact::register(&secrets);
    Some(ResolvedComponent {
        reference: r.reference.clone(),
        text_sha256: hex::encode(Sha256::digest(loaded.doc.text.as_bytes())),
        parameters: parameters?,
        secrets,
        is_test_only: loaded.doc.is_test_component(),
        loaded,
    })
}

/// Checks the recipe's values against the parameters `doc` declares, as
/// Image Builder does (an undeclared name, a value outside `allowedValues`
/// and a parameter with no default and no value are errors), and returns
/// every declared parameter's value.
fn parameters(
    r: &ComponentRef,
    doc: &Document,
    d: &mut Diagnostics,
) -> Option<BTreeMap<String, String>> {
    let component = doc.name.as_deref().unwrap_or(&r.reference);
    let declared: Vec<&str> = doc.parameters.iter().map(|q| q.name.as_str()).collect();
    let mut ok = true;
    for (i, p) in r.parameters.iter().enumerate() {
        let field = format!("{}.parameters[{i}]", r.field);
        let Some(decl) = doc.parameters.iter().find(|q| q.name == p.name) else {
            let hint = did_you_mean(&p.name, declared.iter().copied()).unwrap_or_else(|| {
                if declared.is_empty() {
                    "it declares no parameters".into()
                } else {
                    format!("it declares: {}", declared.join(", "))
                }
            });
            d.error(
                p.pos,
                "unknown-parameter",
                format!("{field}.name"),
                format!("component `{component}` has no parameter `{}`", p.name),
                Some(hint),
            );
            ok = false;
            continue;
        };
        let value = p.joined();
        if let Some(allowed) = decl.allowed_values.as_ref().filter(|a| !a.contains(&value)) {
            let shown = if p.secret {
                "the secret value".to_string()
            } else {
                format!("`{value}`")
            };
            d.error(
                p.value_pos,
                "parameter-not-allowed",
                format!("{field}.value"),
                format!("{shown} is not an allowed value of parameter `{}`", p.name),
                Some(format!("allowed: {}", allowed.join(", "))),
            );
            ok = false;
        }
    }
    for decl in doc
        .parameters
        .iter()
        .filter(|q| q.default.is_none() && !r.parameters.iter().any(|p| p.name == q.name))
    {
        d.error(
            r.pos(),
            "parameter-missing",
            format!("{}.parameters", r.field),
            format!(
                "component `{component}` needs a value for parameter `{}`, which has no default",
                decl.name
            ),
            Some(format!(
                "add `parameters: [{{name: {}, value: [...]}}]`",
                decl.name
            )),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    let values = r
        .parameters
        .iter()
        .map(|p| (p.name.clone(), p.joined()))
        .collect();
    match resolve_parameters(doc, &values) {
        Ok(all) => Some(all),
        Err(message) => {
            d.error(r.pos(), "parameter-value", r.field.clone(), message, None);
            None
        }
    }
}
