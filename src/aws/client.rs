//! AWS clients from the standard configuration chain, for one region.

use aws_config::SdkConfig;

/// The S3, EC2 and IAM clients of one region.
#[derive(Clone, Debug)]
pub struct Clients {
    /// The region these clients talk to.
    pub region: String,
    /// S3 (path-style when a custom endpoint is configured).
    pub s3: aws_sdk_s3::Client,
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// IAM (global).
    pub iam: aws_sdk_iam::Client,
}

impl Clients {
    /// Clients for `region`, or the configured default region (then
    /// `us-east-1`) when `None`.
    pub async fn new(region: Option<&str>) -> Self {
        let sdk = load(region).await;
        Self::from_sdk(&sdk)
    }

    /// Clients for another region with the same configuration.
    pub async fn for_region(&self, region: &str) -> Self {
        Self::new(Some(region)).await
    }

    fn from_sdk(sdk: &SdkConfig) -> Self {
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let mut s3 = aws_sdk_s3::config::Builder::from(sdk);
        if custom_endpoint(sdk) {
            // Local S3 servers (http://127.0.0.1:PORT) cannot do virtual-hosted buckets.
            s3 = s3.force_path_style(true);
        }
        Clients {
            region,
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            ec2: aws_sdk_ec2::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
        }
    }
}

async fn load(region: Option<&str>) -> SdkConfig {
    let chain = match region {
        Some(r) => aws_config::meta::region::RegionProviderChain::first_try(
            aws_config::Region::new(r.to_string()),
        ),
        None => aws_config::meta::region::RegionProviderChain::default_provider(),
    }
    .or_else(aws_config::Region::from_static("us-east-1"));
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(chain)
        .load()
        .await
}

/// Whether an endpoint other than AWS's is configured (global or for S3).
fn custom_endpoint(sdk: &SdkConfig) -> bool {
    let ignored = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .map(|v| v.trim().eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    sdk.endpoint_url().is_some()
        || (!ignored && std::env::var("AWS_ENDPOINT_URL_S3").is_ok_and(|v| !v.trim().is_empty()))
}
