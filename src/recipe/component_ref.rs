//! What a recipe's component reference names: a built-in (by name,
//! `builtin:NAME` or AWS-managed ARN) or a document file. Pure: files are
//! only read later, by [`super::resolve`].

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::model::ComponentSource;
use crate::toe::builtin;
use crate::util::diag::did_you_mean;

/// Image Builder's component ARN form (`…:component/NAME[/x.y.z[/BUILD]]`).
static COMPONENT_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[^:]*:imagebuilder:[^:]+:([0-9]{12}|aws):component/[a-z0-9_-]+(/(x|[0-9]+)\.(x|[0-9]+)\.(x|[0-9]+)(/[0-9]+)?)?$")
        .expect("a valid regex")
});

/// Why a reference names nothing kiln can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefProblem {
    /// The diagnostic code.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

fn builtin_list() -> String {
    builtin::BUILTINS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_builtin(name: &str, what: &str) -> RefProblem {
    let names = builtin::BUILTINS.iter().map(|(n, _)| *n);
    let suggestion = did_you_mean(name, names).map_or(String::new(), |s| format!("{s} "));
    RefProblem {
        code: "unknown-component",
        message: format!("{what} `{name}` is not one of kiln's built-in components"),
        hint: format!(
            "{suggestion}built-ins: {}; a document file is named by a path containing `/` or ending in .yml/.yaml",
            builtin_list()
        ),
    }
}

/// True when `reference` is read as a built-in's name: no `/` and no
/// document file extension.
fn looks_like_name(reference: &str) -> bool {
    !reference.contains('/')
        && ![".yml", ".yaml", ".json"]
            .iter()
            .any(|ext| reference.to_ascii_lowercase().ends_with(ext))
}

fn classify_arn(arn: &str) -> Result<ComponentSource, RefProblem> {
    let Some(m) = COMPONENT_ARN.captures(arn) else {
        return Err(RefProblem {
            code: "invalid-arn",
            message: format!("`{arn}` is not an Image Builder component ARN"),
            hint: format!(
                "the form is arn:aws:imagebuilder:REGION:aws:component/NAME/x.x.x; kiln's built-ins: {}",
                builtin_list()
            ),
        });
    };
    if &m[1] != "aws" {
        return Err(RefProblem {
            code: "unknown-component",
            message: format!(
                "`{arn}` is a component of account {}, which kiln cannot fetch offline",
                &m[1]
            ),
            hint: "save its document (`aws imagebuilder get-component --component-build-version-arn ARN --query component.data --output text > NAME.yml`) and give that path".into(),
        });
    }
    let name = builtin::name_from_arn(arn).unwrap_or_default();
    match builtin::find(name) {
        Some(_) => Ok(ComponentSource::Builtin(name.to_string())),
        None => Err(unknown_builtin(name, "the AWS-managed component")),
    }
}

/// Classifies a component reference; relative paths resolve against `dir`.
pub fn classify(reference: &str, dir: &Path) -> Result<ComponentSource, RefProblem> {
    if reference.trim().is_empty() {
        return Err(RefProblem {
            code: "unknown-component",
            message: "the component reference is empty".into(),
            hint: format!(
                "give a built-in name ({}), a path to a document, or an AWS-managed component ARN",
                builtin_list()
            ),
        });
    }
    if reference.starts_with("s3://") {
        return Err(RefProblem {
            code: "unknown-component",
            message: format!("`{reference}`: kiln reads components from local files, not S3"),
            hint: "copy the document (`aws s3 cp URI ./NAME.yml`) and give its path".into(),
        });
    }
    if reference.starts_with("arn:") {
        return classify_arn(reference);
    }
    let name = reference.strip_prefix("builtin:");
    if let Some(name) = name.or(looks_like_name(reference).then_some(reference)) {
        return match builtin::find(name) {
            Some(_) => Ok(ComponentSource::Builtin(name.to_string())),
            None => Err(unknown_builtin(name, "component")),
        };
    }
    Ok(ComponentSource::File(dir.join(reference)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn ok(r: &str) -> ComponentSource {
        classify(r, Path::new("/recipes")).unwrap()
    }

    fn err(r: &str) -> RefProblem {
        classify(r, Path::new("/recipes")).unwrap_err()
    }

    #[test]
    fn names_paths_and_arns() {
        assert_eq!(
            ok("update-linux"),
            ComponentSource::Builtin("update-linux".into())
        );
        assert_eq!(
            ok("builtin:reboot-linux"),
            ComponentSource::Builtin("reboot-linux".into())
        );
        assert_eq!(
            ok("arn:aws:imagebuilder:us-east-1:aws:component/hello-world-linux/1.0.0/1"),
            ComponentSource::Builtin("hello-world-linux".into())
        );
        assert_eq!(
            ok("arn:aws-cn:imagebuilder:cn-north-1:aws:component/update-linux/x.x.x"),
            ComponentSource::Builtin("update-linux".into())
        );
        assert_eq!(
            ok("./components/web.yml"),
            ComponentSource::File(PathBuf::from("/recipes/./components/web.yml"))
        );
        assert_eq!(
            ok("web.yaml"),
            ComponentSource::File(PathBuf::from("/recipes/web.yaml"))
        );
        assert_eq!(
            ok("/abs/web"),
            ComponentSource::File(PathBuf::from("/abs/web"))
        );
    }

    #[test]
    fn problems_name_the_builtins() {
        let e = err("update-linx");
        assert_eq!(e.code, "unknown-component");
        assert!(
            e.hint
                .starts_with("did you mean `update-linux`? built-ins: update-linux, reboot-linux"),
            "{}",
            e.hint
        );
        let e = err("arn:aws:imagebuilder:us-east-1:aws:component/python-3-linux/x.x.x");
        assert_eq!(
            e.message,
            "the AWS-managed component `python-3-linux` is not one of kiln's built-in components"
        );
        let e = err("arn:aws:imagebuilder:us-east-1:123456789012:component/mine/1.0.0/1");
        assert!(e.message.contains("account 123456789012"), "{}", e.message);
        assert!(e.hint.contains("get-component"));
        for bad in [
            "arn:aws:imagebuilder:us-east-1:aws:component/Hello/1.0.0",
            "arn:aws:imagebuilder:us-east-1:aws:image/x/1.0.0",
            "arn:aws:s3:::bucket",
            "arn:aws:imagebuilder:us-east-1:aws:component/x/1.0",
        ] {
            assert_eq!(err(bad).code, "invalid-arn", "{bad}");
        }
        assert!(err("s3://b/k.yml").message.contains("not S3"));
        assert!(err(" ").message.contains("empty"));
    }
}
