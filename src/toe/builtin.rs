//! Built-in components: the AWS-managed components kiln ships, by name.

/// (name, document text) of every built-in component.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "update-linux",
        include_str!("../../components/update-linux.yml"),
    ),
    (
        "reboot-linux",
        include_str!("../../components/reboot-linux.yml"),
    ),
    (
        "hello-world-linux",
        include_str!("../../components/hello-world-linux.yml"),
    ),
    (
        "simple-boot-test-linux",
        include_str!("../../components/simple-boot-test-linux.yml"),
    ),
    (
        "reboot-test-linux",
        include_str!("../../components/reboot-test-linux.yml"),
    ),
];

/// The text of the built-in component `name`.
pub fn find(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The component name of an AWS-managed component ARN, e.g.
/// `arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x` → `update-linux`.
/// Returns `None` for anything that is not an AWS-owned component ARN.
pub fn name_from_arn(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws")?;
    let parts: Vec<&str> = rest.splitn(6, ':').collect();
    // ["" or "-cn"/"-us-gov", "imagebuilder", region, "aws", "component/name/version[/build]"]
    if parts.len() != 5 || parts[1] != "imagebuilder" || parts[3] != "aws" {
        return None;
    }
    let mut path = parts[4].split('/');
    (path.next() == Some("component")).then_some(())?;
    path.next().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_resolve_to_builtins() {
        assert_eq!(
            name_from_arn("arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"),
            Some("update-linux")
        );
        assert_eq!(
            name_from_arn("arn:aws:imagebuilder:eu-west-1:aws:component/reboot-linux/1.0.1/1"),
            Some("reboot-linux")
        );
        assert_eq!(
            name_from_arn("arn:aws:imagebuilder:us-east-1:123456789012:component/mine/1.0.0"),
            None
        );
        assert_eq!(name_from_arn("update-linux"), None);
    }

    #[test]
    fn every_builtin_is_a_valid_document() {
        for (name, text) in BUILTINS {
            let doc = crate::toe::document::parse(
                name,
                text,
                crate::toe::actions::spec::OsPlatform::Linux,
            )
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(doc.name.as_deref(), Some(*name));
        }
    }
}
