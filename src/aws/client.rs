//! AWS clients from the standard configuration chain, for one region; the
//! one place kiln builds an S3 client (also used by TOE's S3 actions).

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
        let sdk = sdk_config(region).await;
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
        Clients {
            region,
            s3: s3_client(sdk, None),
            ec2: aws_sdk_ec2::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
        }
    }
}

/// The SDK configuration from the standard chain (environment, profiles,
/// `AWS_ENDPOINT_URL`…) for `region`, or the configured default region,
/// then `us-east-1`.
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
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

/// An S3 client for `sdk`, sent to `endpoint` when given (e.g.
/// `http://127.0.0.1:5000`). With any custom endpoint (given, or configured
/// globally or for S3) it addresses buckets path-style: local S3 servers
/// cannot do virtual-hosted buckets.
pub fn s3_client(sdk: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let mut s3 = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(url) = endpoint {
        s3 = s3.endpoint_url(url);
    }
    if endpoint.is_some() || custom_endpoint(sdk) {
        s3 = s3.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(s3.build())
}

/// Whether an endpoint other than AWS's is configured (global or for S3).
fn custom_endpoint(sdk: &SdkConfig) -> bool {
    let ignored = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .map(|v| v.trim().eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    sdk.endpoint_url().is_some()
        || (!ignored && std::env::var("AWS_ENDPOINT_URL_S3").is_ok_and(|v| !v.trim().is_empty()))
}
