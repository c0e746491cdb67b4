//! S3 client factory: path-style addressing, a custom endpoint and static
//! credentials, so one client talks to the native S3 server, MinIO or AWS S3.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use secrecy::ExposeSecret;

use crate::config::Endpoints;

/// A client for the S3 endpoint in `endpoints`.
pub fn client(endpoints: &Endpoints) -> aws_sdk_s3::Client {
    let creds = Credentials::new(
        endpoints.s3_access_key.clone(),
        endpoints.s3_secret_key.expose_secret().to_string(),
        None,
        None,
        "shopstream",
    );
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_timeout(std::time::Duration::from_secs(30))
        .build();
    let cfg = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(endpoints.s3_region.clone()))
        .endpoint_url(endpoints.s3_endpoint.clone())
        .credentials_provider(creds)
        .force_path_style(true)
        .timeout_config(timeouts)
        .build();
    aws_sdk_s3::Client::from_conf(cfg)
}

/// Create `bucket` unless it exists.
pub async fn ensure_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<(), aws_sdk_s3::Error> {
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = aws_sdk_s3::Error::from(e);
            match e {
                aws_sdk_s3::Error::BucketAlreadyOwnedByYou(_)
                | aws_sdk_s3::Error::BucketAlreadyExists(_) => Ok(()),
                other => Err(other),
            }
        }
    }
}

/// `event_type` of an object-created notification from the S3 server.
pub const OBJECT_CREATED_EVENT: &str = "s3.object_created";

/// An object-created notification, shaped like one record of S3's (and
/// MinIO's) bucket notifications: `{"eventName": "ObjectCreated:Put",
/// "s3": {"bucket": {"name"}, "object": {"key", "size", "eTag"}}}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectCreated {
    #[serde(rename = "eventName")]
    pub event_name: String,
    #[serde(rename = "eventTime")]
    pub event_time_ms: i64,
    pub s3: S3Entity,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct S3Entity {
    pub bucket: S3Bucket,
    pub object: S3Object,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct S3Bucket {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct S3Object {
    /// Not URL-encoded (S3 encodes it; the payload here is JSON already).
    pub key: String,
    pub size: u64,
    #[serde(rename = "eTag", default)]
    pub etag: String,
    #[serde(rename = "contentType", default)]
    pub content_type: String,
}
