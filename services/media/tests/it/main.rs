//! Media over real processes: the shared test stack's Postgres, broker,
//! Temporal and S3 server (whose object-created notifications start the
//! pipeline). Each test has its own buckets, database, consumer group and
//! task queue. `dsar` runs the DSAR participant contract.

mod dsar;
mod pipeline;

use std::time::Duration;

use shopstream_media::{Config, Server};
use shopstream_platform::grpc::with_tenant;
use shopstream_proto::media::v1::{
    Asset, AssetStatus, GetAssetRequest, MediaKind, StartIngestRequest, StartIngestResponse,
    media_service_client::MediaServiceClient,
};
use shopstream_runtime::testkit::{self, RunningService};
use tonic::transport::Channel;

pub const TENANT: &str = "t-media";
/// How long a pipeline may take in a debug build on a busy machine.
pub const PIPELINE_TIMEOUT: Duration = Duration::from_secs(90);

/// Names one test's media instance uses.
#[derive(Debug, Clone)]
pub struct Names {
    pub database: String,
    pub upload_bucket: String,
    pub bucket: String,
    pub group: String,
    pub task_queue: String,
}

impl Names {
    pub fn fresh() -> Names {
        let u = testkit::unique("media");
        let dashed = u.replace('_', "-");
        Names {
            database: u.clone(),
            // The stack's S3 server notifies `media.work` for `media-uploads*`.
            upload_bucket: format!("media-uploads-{dashed}"),
            bucket: dashed.clone(),
            group: u.clone(),
            task_queue: u,
        }
    }

    /// The same as environment variables, for `shopstream serve media`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SHOPSTREAM_MEDIA_DATABASE", self.database.clone()),
            ("SHOPSTREAM_MEDIA_UPLOAD_BUCKET", self.upload_bucket.clone()),
            ("SHOPSTREAM_MEDIA_BUCKET", self.bucket.clone()),
            ("SHOPSTREAM_MEDIA_GROUP", self.group.clone()),
            ("SHOPSTREAM_MEDIA_TASK_QUEUE", self.task_queue.clone()),
        ]
    }
}

/// Media's own database of this test (media creates and migrates it).
pub async fn db(names: &Names) -> sqlx::PgPool {
    let stack = testkit::stack().await;
    shopstream_platform::db::connect(&stack.endpoints.postgres_url, &names.database)
        .await
        .expect("media database")
}

pub async fn spawn(names: &Names) -> RunningService {
    let n = names.clone();
    testkit::spawn_service::<Server>(move |service| Config {
        database: n.database,
        upload_bucket: n.upload_bucket,
        bucket: n.bucket,
        consumer_group: n.group,
        task_queue: n.task_queue,
        ..Config::new(service)
    })
    .await
}

pub async fn client(grpc: &str) -> MediaServiceClient<Channel> {
    MediaServiceClient::connect(grpc.to_string())
        .await
        .expect("media grpc")
}

pub async fn start(
    c: &mut MediaServiceClient<Channel>,
    kind: MediaKind,
    content_type: &str,
    size: usize,
    reference: &str,
) -> Result<StartIngestResponse, tonic::Status> {
    c.start_ingest(with_tenant(
        StartIngestRequest {
            owner_id: "u-1".into(),
            filename: "upload".into(),
            content_type: content_type.into(),
            size_bytes: size as u64,
            kind: kind as i32,
            r#ref: reference.into(),
        },
        TENANT,
    ))
    .await
    .map(tonic::Response::into_inner)
}

/// PUT with the presigned URL and the headers it came with (overridable).
pub async fn put(
    s: &StartIngestResponse,
    body: Vec<u8>,
    override_headers: &[(&str, &str)],
) -> reqwest::StatusCode {
    let mut req = reqwest::Client::new().put(&s.upload_url);
    for (k, v) in &s.upload_headers {
        if !override_headers
            .iter()
            .any(|(o, _)| o.eq_ignore_ascii_case(k))
            && !k.eq_ignore_ascii_case("content-length")
        {
            req = req.header(k, v);
        }
    }
    for (k, v) in override_headers {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.expect("put").status()
}

pub async fn get(c: &mut MediaServiceClient<Channel>, id: &str) -> Asset {
    c.get_asset(with_tenant(
        GetAssetRequest {
            asset_id: id.into(),
            owner_id: String::new(),
            url_ttl_s: 0,
        },
        TENANT,
    ))
    .await
    .expect("get asset")
    .into_inner()
    .asset
    .expect("asset")
}

/// Wait until the asset is ready, rejected or failed.
pub async fn settled(c: &mut MediaServiceClient<Channel>, id: &str) -> Asset {
    let mut c = c.clone();
    testkit::eventually(&format!("asset {id} settles"), PIPELINE_TIMEOUT, || {
        let mut c = c.clone();
        async move {
            let a = get(&mut c, id).await;
            matches!(
                AssetStatus::try_from(a.status),
                Ok(AssetStatus::Ready | AssetStatus::Rejected | AssetStatus::Failed)
            )
            .then_some(a)
        }
    })
    .await;
    get(&mut c, id).await
}

/// Upload `bytes` as an image and wait for the outcome.
pub async fn upload_image(c: &mut MediaServiceClient<Channel>, bytes: Vec<u8>) -> Asset {
    let s = start(c, MediaKind::Image, "image/jpeg", bytes.len(), "")
        .await
        .expect("start ingest");
    assert_eq!(put(&s, bytes, &[]).await, reqwest::StatusCode::OK);
    let id = s.asset.expect("asset").asset_id;
    settled(c, &id).await
}

pub fn status(a: &Asset) -> AssetStatus {
    AssetStatus::try_from(a.status).expect("status")
}
