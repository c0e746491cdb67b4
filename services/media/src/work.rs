//! Uploads become work without polling: the S3 server publishes an
//! object-created notification on `media.work` when a client's presigned PUT
//! lands; this consumer finds the asset the object belongs to and starts its
//! workflow. On AWS the same notification comes from S3 through SQS or
//! EventBridge (ADR 0010); only this adapter changes.

use std::sync::Arc;

use async_trait::async_trait;
use shopstream_platform::{
    clock::Clock,
    events::{
        Delivery,
        runner::{Handler, HandlerError},
    },
    object_store::{OBJECT_CREATED_EVENT, ObjectCreated},
};
use temporalio_client::Client;

use crate::{store::Store, workflow};

/// Topic of the S3 server's object-created notifications.
pub const WORK_TOPIC: &str = "media.work";
/// Where in the upload bucket `StartIngest` puts uploads (`uploads/<asset id>`).
pub const UPLOAD_PREFIX: &str = "uploads/";

pub struct StartOnUpload {
    pub store: Store,
    /// Deletes an upload whose asset is gone.
    pub s3: aws_sdk_s3::Client,
    pub temporal: Client,
    pub task_queue: String,
    /// Only notifications of this bucket are media's.
    pub upload_bucket: String,
    pub clock: Arc<dyn Clock>,
}

impl StartOnUpload {
    /// An upload no asset expects. Under `uploads/` it was put with a URL
    /// of an asset since erased (a DSAR; the URL outlives the row by up to
    /// 15 minutes): it is deleted, so no one's picture is kept unowned.
    /// Anything else is left alone.
    async fn unexpected(&self, bucket: &str, key: &str) -> Result<(), HandlerError> {
        if !key.starts_with(UPLOAD_PREFIX) {
            tracing::warn!(key, "an upload no asset expects; ignored");
            return Ok(());
        }
        self.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                HandlerError::Retryable(format!(
                    "s3 delete: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                ))
            })?;
        tracing::info!(key, "an upload no asset expects (erased?); deleted");
        Ok(())
    }
}

#[async_trait]
impl Handler for StartOnUpload {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let e = &d.envelope;
        if e.event_type != OBJECT_CREATED_EVENT {
            return Ok(());
        }
        let n: ObjectCreated = e
            .json()
            .map_err(|err| HandlerError::Permanent(format!("undecodable notification: {err}")))?;
        if n.s3.bucket.name != self.upload_bucket {
            return Ok(());
        }
        let retry = |err: &dyn std::fmt::Display| HandlerError::Retryable(err.to_string());
        let Some(asset) = self
            .store
            .by_upload(&n.s3.bucket.name, &n.s3.object.key)
            .await
            .map_err(|err| retry(&err))?
        else {
            return self.unexpected(&n.s3.bucket.name, &n.s3.object.key).await;
        };
        if asset.status.is_terminal() {
            return Ok(());
        }
        if self
            .store
            .mark_processing(asset.asset_id, self.clock.now_ms())
            .await
            .map_err(|err| retry(&err))?
        {
            tracing::info!(asset = %asset.asset_id, size = n.s3.object.size, "uploaded; pipeline starts");
        }
        let job = workflow::Job {
            tenant_id: asset.tenant_id.clone(),
            asset_id: asset.asset_id.to_string(),
            kind: asset.kind,
        };
        workflow::start(&self.temporal, &self.task_queue, &job)
            .await
            .map_err(|err| HandlerError::Retryable(format!("temporal: {err}")))
    }
}
