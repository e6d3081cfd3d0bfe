//! The shapes of AWS names kiln checks before calling AWS: regions,
//! account ids, organization and OU ARNs, AMI names, tags.

use super::spec::RegionCopy;

/// A value that is not a valid AWS setting; the message says why and
/// shows a valid example.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

/// Parses `r1,r2=KEY,…` (a region, optionally `=` its KMS key).
pub fn parse_region_copies(s: &str) -> Result<Vec<RegionCopy>, InvalidSetting> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (region, key) = match p.split_once('=') {
                Some((r, k)) => (r.trim(), Some(k.trim().to_string())),
                None => (p, None),
            };
            if validate_region(region).is_err() {
                return Err(InvalidSetting(format!(
                    "`{p}` is not a region: use e.g. eu-west-1 or eu-west-1=KMS_KEY_ARN"
                )));
            }
            Ok(RegionCopy {
                region: region.into(),
                kms_key: key.filter(|k| !k.is_empty()),
            })
        })
        .collect()
}

/// Checks the shape of a region name: lowercase words joined by `-`, the
/// first two letters, the last a number (`us-east-1`, `us-gov-west-1`).
pub fn validate_region(region: &str) -> Result<(), InvalidSetting> {
    let parts: Vec<&str> = region.split('-').collect();
    let word = |w: &&str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase());
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(word)
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(InvalidSetting(format!(
            "`{region}` is not an AWS region name, e.g. us-east-1 or eu-west-1"
        )))
    }
}

/// Checks a 12-digit AWS account id.
pub fn validate_account(account: &str) -> Result<(), InvalidSetting> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidSetting(format!(
            "`{account}` is not a 12-digit AWS account id"
        )));
    }
    Ok(())
}

/// What a launch permission ARN names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArnKind {
    /// `arn:aws:organizations::ACCOUNT:organization/o-…`.
    Organization,
    /// `arn:aws:organizations::ACCOUNT:ou/o-…/ou-…`.
    OrganizationalUnit,
}

/// Checks an organization or OU ARN (EC2 refuses bare ids).
pub fn validate_arn(arn: &str, kind: ArnKind) -> Result<(), InvalidSetting> {
    let (what, example) = match kind {
        ArnKind::Organization => (
            "organization",
            "arn:aws:organizations::123456789012:organization/o-abc123",
        ),
        ArnKind::OrganizationalUnit => (
            "organizational unit",
            "arn:aws:organizations::123456789012:ou/o-abc123/ou-ab12-cdef3456",
        ),
    };
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let resource_ok = |r: &str| {
        let parts: Vec<&str> = r.split('/').collect();
        match kind {
            ArnKind::Organization => {
                parts.len() == 2 && parts[0] == "organization" && parts[1].starts_with("o-")
            }
            ArnKind::OrganizationalUnit => {
                parts.len() == 3
                    && parts[0] == "ou"
                    && parts[1].starts_with("o-")
                    && parts[2].starts_with("ou-")
            }
        }
    };
    let ok = fields.len() == 6
        && fields[0] == "arn"
        && fields[1].starts_with("aws")
        && fields[2] == "organizations"
        && fields[3].is_empty()
        && validate_account(fields[4]).is_ok()
        && resource_ok(fields[5]);
    if ok {
        Ok(())
    } else {
        Err(InvalidSetting(format!(
            "`{arn}` is not an {what} ARN (an id alone is refused by EC2), e.g. {example}"
        )))
    }
}

/// Parses `k=v,k2=v2` tags.
pub fn parse_tags(s: &str) -> Result<Vec<(String, String)>, InvalidSetting> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.trim().into())),
            _ => Err(InvalidSetting(format!("tag `{p}` is not KEY=VALUE"))),
        })
        .collect()
}

/// Checks an AMI name as CopyImage does (3–128 of `A-Za-z0-9()[] ./-'@_`).
pub fn validate_name(name: &str) -> Result<(), InvalidSetting> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c);
    if !(3..=128).contains(&name.len()) || !name.chars().all(ok_char) {
        return Err(InvalidSetting(format!(
            "AMI name `{name}` is invalid: it needs 3 to 128 characters from letters, digits and ()[] ./-'@_"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::Sharing;

    #[test]
    fn region_copies_with_optional_keys() {
        assert_eq!(
            parse_region_copies("eu-west-1, us-west-2=arn:aws:kms:us-west-2:1:key/x").unwrap(),
            vec![
                RegionCopy {
                    region: "eu-west-1".into(),
                    kms_key: None
                },
                RegionCopy {
                    region: "us-west-2".into(),
                    kms_key: Some("arn:aws:kms:us-west-2:1:key/x".into())
                },
            ]
        );
        assert!(parse_region_copies("eu west").is_err());
    }

    #[test]
    fn tags_and_names_and_sharing() {
        assert_eq!(
            parse_tags("a=1,b=").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "".into())]
        );
        assert!(parse_tags("novalue").is_err());
        assert!(validate_name("web-1.0 (x)").is_ok());
        assert!(validate_name("ab").is_err());
        assert!(validate_name("a*b").is_err());
        let mut s = Sharing {
            accounts: vec!["111122223333".into()],
            ..Default::default()
        };
        assert!(s.validate().is_ok());
        s.orgs.push("o-abc".into());
        assert!(s.validate().unwrap_err().to_string().contains("ARN"));
        s.orgs.clear();
        s.accounts.push("12".into());
        assert!(s.validate().is_err());
    }

    #[test]
    fn regions_and_arns() {
        for r in ["us-east-1", "eu-west-1", "us-gov-west-1", "ap-southeast-2"] {
            assert!(validate_region(r).is_ok(), "{r}");
        }
        for r in ["us-east", "US-east-1", "useast1", "u-east-1", "us--1", ""] {
            assert!(validate_region(r).is_err(), "{r}");
        }
        let org = "arn:aws:organizations::123456789012:organization/o-abc123def4";
        let ou = "arn:aws:organizations::123456789012:ou/o-abc123def4/ou-ab12-cdef3456";
        assert!(validate_arn(org, ArnKind::Organization).is_ok());
        assert!(validate_arn(ou, ArnKind::OrganizationalUnit).is_ok());
        assert!(validate_arn(ou, ArnKind::Organization).is_err());
        assert!(validate_arn(org, ArnKind::OrganizationalUnit).is_err());
        assert!(validate_arn(
            "arn:aws:organizations::12:organization/o-a",
            ArnKind::Organization
        )
        .is_err());
        assert!(validate_arn(
            "arn:aws:iam::123456789012:organization/o-a",
            ArnKind::Organization
        )
        .is_err());
    }
}
