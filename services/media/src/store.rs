//! Media's Postgres: assets, variants, step attempts, the blocklist, and the
//! outbox `media.events` leaves through (written in the same transaction as
//! the terminal status).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use shopstream_platform::{events::Envelope, outbox};
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    domain::{Format, Kind, Status, Step},
    process::RemovedMetadata,
};

/// Topic of the pipeline's outcomes.
pub const EVENTS_TOPIC: &str = "media.events";
/// `event_type` of an asset reaching ready, rejected or failed.
pub const STATUS_EVENT: &str = "media.status_changed";

/// One asset as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub asset_id: Uuid,
    pub tenant_id: String,
    pub owner_id: String,
    pub kind: Kind,
    pub status: Status,
    pub declared_type: String,
    pub declared_size: u64,
    pub filename: String,
    pub reference: String,
    pub upload_bucket: String,
    pub upload_key: String,
    /// What ingest found the bytes to be.
    pub format: Option<Format>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<u64>,
    pub phash: Option<u64>,
    pub removed_metadata: Option<RemovedMetadata>,
    pub failed_step: Option<Step>,
    pub failure_reason: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One rendition of an asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    pub duration_ms: u64,
}

/// One attempt of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub step: String,
    pub attempt: u32,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub error: String,
}

/// The payload of `media.status_changed` on `media.events` (key: the asset id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanged {
    pub asset_id: String,
    pub owner_id: String,
    pub kind: Kind,
    pub status: Status,
    /// What the asset illustrates (`product:<id>`), or empty.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Object keys in the media bucket, by variant name (ready only).
    pub variants: Vec<Variant>,
    /// Rejected or failed: why (and which step failed).
    pub reason: String,
    pub failed_step: Option<Step>,
    pub ts_ms: i64,
}

#[derive(Clone)]
pub struct Store {
    pub pool: PgPool,
}

fn asset_of(r: &PgRow) -> Result<Asset, sqlx::Error> {
    let bad = |what: &str, v: String| sqlx::Error::Decode(format!("{what} {v:?}").into());
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    let failed: Option<String> = r.try_get("failed_step")?;
    let removed: Option<serde_json::Value> = r.try_get("removed_metadata")?;
    let format: Option<String> = r.try_get("format")?;
    Ok(Asset {
        asset_id: r.try_get("asset_id")?,
        tenant_id: r.try_get("tenant_id")?,
        owner_id: r.try_get("owner_id")?,
        kind: Kind::parse(&kind).ok_or_else(|| bad("kind", kind.clone()))?,
        status: Status::parse(&status).ok_or_else(|| bad("status", status.clone()))?,
        declared_type: r.try_get("declared_type")?,
        declared_size: r.try_get::<i64, _>("declared_size")? as u64,
        filename: r.try_get("filename")?,
        reference: r.try_get("ref")?,
        upload_bucket: r.try_get("upload_bucket")?,
        upload_key: r.try_get("upload_key")?,
        format: format.and_then(|f| serde_json::from_value(serde_json::Value::String(f)).ok()),
        width: r.try_get::<Option<i32>, _>("width")?.map(|v| v as u32),
        height: r.try_get::<Option<i32>, _>("height")?.map(|v| v as u32),
        duration_ms: r
            .try_get::<Option<i64>, _>("duration_ms")?
            .map(|v| v as u64),
        phash: r.try_get::<Option<i64>, _>("phash")?.map(|v| v as u64),
        removed_metadata: removed.and_then(|v| serde_json::from_value(v).ok()),
        failed_step: failed.as_deref().and_then(Step::parse),
        failure_reason: r.try_get("failure_reason")?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

impl Store {
    pub async fn insert(&self, a: &Asset) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO assets (asset_id, tenant_id, owner_id, kind, status, declared_type,
                declared_size, filename, ref, upload_bucket, upload_key, created_ms, updated_ms)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$12)",
        )
        .bind(a.asset_id)
        .bind(&a.tenant_id)
        .bind(&a.owner_id)
        .bind(a.kind.as_str())
        .bind(a.status.as_str())
        .bind(&a.declared_type)
        .bind(a.declared_size as i64)
        .bind(&a.filename)
        .bind(&a.reference)
        .bind(&a.upload_bucket)
        .bind(&a.upload_key)
        .bind(a.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, asset_id: Uuid) -> Result<Option<Asset>, sqlx::Error> {
        sqlx::query("SELECT * FROM assets WHERE asset_id = $1")
            .bind(asset_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| asset_of(&r))
            .transpose()
    }

    /// The asset an uploaded object belongs to.
    pub async fn by_upload(&self, bucket: &str, key: &str) -> Result<Option<Asset>, sqlx::Error> {
        sqlx::query("SELECT * FROM assets WHERE upload_bucket = $1 AND upload_key = $2")
            .bind(bucket)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| asset_of(&r))
            .transpose()
    }

    /// awaiting_upload → processing; false if it had moved on already.
    pub async fn mark_processing(&self, asset_id: Uuid, now_ms: i64) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(
            "UPDATE assets SET status = 'processing', updated_ms = $2
             WHERE asset_id = $1 AND status = 'awaiting_upload'",
        )
        .bind(asset_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn attempt_started(
        &self,
        asset_id: Uuid,
        step: Step,
        attempt: u32,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO attempts (asset_id, step, attempt, started_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (asset_id, step, attempt)
             DO UPDATE SET started_ms = EXCLUDED.started_ms, finished_ms = 0, error = ''",
        )
        .bind(asset_id)
        .bind(step.as_str())
        .bind(attempt as i32)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn attempt_finished(
        &self,
        asset_id: Uuid,
        step: Step,
        attempt: u32,
        now_ms: i64,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE attempts SET finished_ms = $4, error = $5
             WHERE asset_id = $1 AND step = $2 AND attempt = $3",
        )
        .bind(asset_id)
        .bind(step.as_str())
        .bind(attempt as i32)
        .bind(now_ms)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn attempts(&self, asset_id: Uuid) -> Result<Vec<Attempt>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT step, attempt, started_ms, finished_ms, error FROM attempts
             WHERE asset_id = $1 ORDER BY started_ms, attempt",
        )
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    step: r.try_get("step")?,
                    attempt: r.try_get::<i32, _>("attempt")? as u32,
                    started_ms: r.try_get("started_ms")?,
                    finished_ms: r.try_get("finished_ms")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    /// What ingest learned.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_ingested(
        &self,
        asset_id: Uuid,
        format: Format,
        width: u32,
        height: u32,
        duration_ms: u64,
        phash: u64,
        removed: &RemovedMetadata,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE assets SET width = $2, height = $3, duration_ms = $4, phash = $5,
                removed_metadata = $6, updated_ms = $7, format = $8
             WHERE asset_id = $1",
        )
        .bind(asset_id)
        .bind(width as i32)
        .bind(height as i32)
        .bind(duration_ms as i64)
        .bind(phash as i64)
        .bind(serde_json::to_value(removed).unwrap_or_default())
        .bind(now_ms)
        .bind(format.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a variant; the first record of a name stands (a retried step
    /// that made the same bytes records the same key anyway).
    pub async fn put_variant(&self, asset_id: Uuid, v: &Variant) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO variants (asset_id, name, key, content_type, width, height, size_bytes, duration_ms)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (asset_id, name) DO NOTHING",
        )
        .bind(asset_id)
        .bind(&v.name)
        .bind(&v.key)
        .bind(&v.content_type)
        .bind(v.width as i32)
        .bind(v.height as i32)
        .bind(v.size_bytes as i64)
        .bind(v.duration_ms as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn variants(&self, asset_id: Uuid) -> Result<Vec<Variant>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM variants WHERE asset_id = $1 ORDER BY name")
            .bind(asset_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(variant_of).collect()
    }

    pub async fn blocklist(&self, tenant: &str) -> Result<Vec<u64>, sqlx::Error> {
        let rows = sqlx::query("SELECT phash FROM blocklist WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("phash").map(|h| h as u64))
            .collect()
    }

    pub async fn block(
        &self,
        tenant: &str,
        phash: u64,
        source: Uuid,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO blocklist (tenant_id, phash, source_asset, added_ms) VALUES ($1,$2,$3,$4)
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(phash as i64)
        .bind(source)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Move a processing asset to its terminal `status` and enqueue its
    /// `media.events` event in the same transaction. False (and no event)
    /// when it is terminal already: the step was retried after it committed.
    pub async fn finish(
        &self,
        asset_id: Uuid,
        status: Status,
        failed_step: Option<Step>,
        reason: &str,
        now_ms: i64,
        event: &Envelope,
    ) -> Result<bool, FinishError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE assets SET status = $2, failed_step = $3, failure_reason = $4, updated_ms = $5
             WHERE asset_id = $1 AND status IN ('processing', 'awaiting_upload')",
        )
        .bind(asset_id)
        .bind(status.as_str())
        .bind(failed_step.map(Step::as_str))
        .bind(reason)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        outbox::enqueue(&mut tx, EVENTS_TOPIC, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The newest ready image attached to each reference.
    pub async fn ready_images(
        &self,
        tenant: &str,
        refs: &[String],
    ) -> Result<HashMap<String, Uuid>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (ref) ref, asset_id FROM assets
             WHERE tenant_id = $1 AND ref = ANY($2) AND ref <> '' AND status = 'ready' AND kind = 'image'
             ORDER BY ref, updated_ms DESC",
        )
        .bind(tenant)
        .bind(refs)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("ref")?, r.try_get("asset_id")?)))
            .collect()
    }

    /// A variant of each asset, by asset.
    pub async fn variant_of_each(
        &self,
        assets: &[Uuid],
        name: &str,
    ) -> Result<HashMap<Uuid, Variant>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM variants WHERE asset_id = ANY($1) AND name = $2")
            .bind(assets)
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("asset_id")?, variant_of(r)?)))
            .collect()
    }
}

/// What [`Store::erase_owner`] did, row by row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnerRows {
    pub assets: u64,
    pub variants: u64,
    pub attempts: u64,
    /// Assets kept with the owner replaced by a pseudonym.
    pub anonymised: u64,
}

/// What still names an owner (a DSAR scan).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnerCounts {
    pub assets: u64,
    pub variants: u64,
    pub attempts: u64,
    /// Objects the rows name: distinct variant keys, and the raw upload of
    /// every asset past `awaiting_upload`.
    pub objects: u64,
}

/// The owner's assets among `$1` (ids read before the transaction are
/// checked again inside it).
const OWNED: &str =
    "SELECT asset_id FROM assets WHERE asset_id = ANY($1) AND tenant_id = $2 AND owner_id = $3";

impl Store {
    /// The assets of `owner` in `tenant`, oldest first.
    pub async fn by_owner(&self, tenant: &str, owner: &str) -> Result<Vec<Asset>, sqlx::Error> {
        sqlx::query(
            "SELECT * FROM assets WHERE tenant_id = $1 AND owner_id = $2
             ORDER BY created_ms, asset_id",
        )
        .bind(tenant)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(asset_of)
        .collect()
    }

    /// Which of `keys` a variant of an asset outside `except` records (in
    /// any tenant: keys are content addresses in one bucket).
    pub async fn keys_used_outside(
        &self,
        keys: &[String],
        except: &[Uuid],
    ) -> Result<HashSet<String>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let used: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT key FROM variants WHERE key = ANY($1) AND NOT (asset_id = ANY($2))",
        )
        .bind(keys)
        .bind(except)
        .fetch_all(&self.pool)
        .await?;
        Ok(used.into_iter().collect())
    }

    /// Whether any variant records `key`.
    pub async fn key_in_use(&self, key: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM variants WHERE key = $1)")
            .bind(key)
            .fetch_one(&self.pool)
            .await
    }

    /// In one transaction, for the assets of `owner` in `tenant`: delete
    /// those in `erase` with their variants and attempts (the blocklist
    /// keeps their hashes but no longer names them), and keep those in
    /// `anonymise` with `pseudonym` as their owner and no file name.
    pub async fn erase_owner(
        &self,
        tenant: &str,
        owner: &str,
        erase: &[Uuid],
        anonymise: &[Uuid],
        pseudonym: &str,
    ) -> Result<OwnerRows, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let statements = [
            format!("UPDATE blocklist SET source_asset = NULL WHERE source_asset IN ({OWNED})"),
            format!("DELETE FROM attempts WHERE asset_id IN ({OWNED})"),
            format!("DELETE FROM variants WHERE asset_id IN ({OWNED})"),
            "DELETE FROM assets WHERE asset_id = ANY($1) AND tenant_id = $2 AND owner_id = $3"
                .to_string(),
        ];
        let mut affected = [0u64; 4];
        for (n, sql) in statements.iter().enumerate() {
            affected[n] = sqlx::query(sql)
                .bind(erase)
                .bind(tenant)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        let [_, attempts, variants, assets] = affected;
        let anonymised = sqlx::query(
            "UPDATE assets SET owner_id = $4, filename = ''
             WHERE asset_id = ANY($1) AND tenant_id = $2 AND owner_id = $3",
        )
        .bind(anonymise)
        .bind(tenant)
        .bind(owner)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(OwnerRows {
            assets,
            variants,
            attempts,
            anonymised,
        })
    }

    /// What still names `owner` in `tenant`, by the owner index and the
    /// variants' and attempts' primary keys.
    pub async fn owner_counts(
        &self,
        tenant: &str,
        owner: &str,
    ) -> Result<OwnerCounts, sqlx::Error> {
        let (assets, variants, attempts, keys, uploads): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "WITH owned AS (
                    SELECT asset_id, status FROM assets WHERE tenant_id = $1 AND owner_id = $2
                 )
                 SELECT
                    (SELECT count(*) FROM owned),
                    (SELECT count(*) FROM variants JOIN owned USING (asset_id)),
                    (SELECT count(*) FROM attempts JOIN owned USING (asset_id)),
                    (SELECT count(DISTINCT key) FROM variants JOIN owned USING (asset_id)),
                    (SELECT count(*) FROM owned WHERE status <> 'awaiting_upload')",
            )
            .bind(tenant)
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        Ok(OwnerCounts {
            assets: assets as u64,
            variants: variants as u64,
            attempts: attempts as u64,
            objects: (keys + uploads) as u64,
        })
    }
}

fn variant_of(r: &PgRow) -> Result<Variant, sqlx::Error> {
    Ok(Variant {
        name: r.try_get("name")?,
        key: r.try_get("key")?,
        content_type: r.try_get("content_type")?,
        width: r.try_get::<i32, _>("width")? as u32,
        height: r.try_get::<i32, _>("height")? as u32,
        size_bytes: r.try_get::<i64, _>("size_bytes")? as u64,
        duration_ms: r.try_get::<i64, _>("duration_ms")? as u64,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] outbox::OutboxError),
}
