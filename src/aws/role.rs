//! The `vmimport` service role VM Import/Export assumes: its trust policy,
//! its permissions for the import/export bucket, and creating it.

use serde_json::json;

use super::{sdk_message, AwsError};

/// The role name VM Import/Export uses by default.
pub use crate::ami::DEFAULT_ROLE;
/// The name of the inline policy kiln puts on the role.
pub const POLICY_NAME: &str = "vmimport";

/// The trust policy: vmie.amazonaws.com may assume the role with the
/// external id `vmimport`.
pub fn trust_policy() -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "vmie.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:Externalid": "vmimport"}}
        }]
    })
}

/// The role policy for `bucket` (read for import, write for export), the
/// EC2 calls VM Import makes, and KMS for encrypted imports.
pub fn role_policy(bucket: &str) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket",
                           "s3:PutObject", "s3:GetBucketAcl"],
                "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:ModifySnapshotAttribute", "ec2:CopySnapshot",
                           "ec2:RegisterImage", "ec2:Describe*"],
                "Resource": "*"
            },
            {
                "Effect": "Allow",
                "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                           "kms:GenerateDataKey*", "kms:ReEncrypt*"],
                "Resource": "*"
            }
        ]
    })
}

/// What [`setup`] did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoleSetup {
    /// The role name.
    pub role: String,
    /// Whether the role was created (false: it existed, its policy was updated).
    pub created: bool,
}

/// Creates the role (or keeps the existing one) and puts its policy.
pub async fn setup(
    iam: &aws_sdk_iam::Client,
    role: &str,
    bucket: &str,
) -> Result<RoleSetup, AwsError> {
    let exists = iam.get_role().role_name(role).send().await.is_ok();
    if !exists {
        iam.create_role()
            .role_name(role)
            .description("VM Import/Export service role (created by kiln)")
            .assume_role_policy_document(trust_policy().to_string())
            .send()
            .await
            .map_err(|e| AwsError::Api {
                what: format!("CreateRole {role}"),
                message: sdk_message(&e),
            })?;
    }
    iam.put_role_policy()
        .role_name(role)
        .policy_name(POLICY_NAME)
        .policy_document(role_policy(bucket).to_string())
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("PutRolePolicy {POLICY_NAME} on {role}"),
            message: sdk_message(&e),
        })?;
    Ok(RoleSetup {
        role: role.into(),
        created: !exists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_name_the_bucket_and_the_service() {
        let p = role_policy("my-images");
        let s = p.to_string();
        assert!(s.contains("arn:aws:s3:::my-images/*"));
        assert!(s.contains("ec2:RegisterImage"));
        assert_eq!(
            trust_policy()["Statement"][0]["Principal"]["Service"],
            "vmie.amazonaws.com"
        );
    }
}
