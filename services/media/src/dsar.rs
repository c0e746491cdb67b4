//! Media as a DSAR participant (ADR 0012): the assets a person uploaded
//! (`assets.owner_id`), store by store.
//!
//! - `media.assets`: their asset rows (file name, reference, status, what
//!   ingest found and removed, failures);
//! - `media.variants`: the renditions recorded for those assets;
//! - `media.attempts`: every attempt of every pipeline step on them;
//! - `media.objects`: the S3 objects: the raw upload in the upload bucket
//!   (metadata and all) and the clean original and every variant in the
//!   media bucket.
//!
//! **Erase** deletes the objects first, then the rows in one transaction
//! (so an erase cut short between the two finds the rows, and with them the
//! objects, again). Variants are content-addressed and the first record of a
//! key wins, so two people who uploaded the same picture share its variant
//! objects: **an object is deleted only when no asset outside the ones
//! being erased references it** (another owner's, in any tenant, or this
//! person's own retained product picture); the rows go either way. The
//! blocklist keeps a blocked picture's perceptual hash (moderation needs
//! it; 64 bits name no one) but loses its link to the erased asset.
//!
//! **Product pictures are kept.** An asset attached to `product:<id>` is
//! catalog content an admin uploaded for the shop, not personal data about
//! the uploader; erasing it would strip the product of its picture. It is
//! kept (row, variants, attempts, variant objects), but its link to the
//! person goes: `owner_id` becomes the nil UUID, the file name is cleared,
//! and its raw upload (which still carries the camera's metadata, GPS
//! included) is deleted once the pipeline is done with it. It is reported as
//! retained, with that basis.
//!
//! Not covered: `media.status_changed` events (in the outbox table and on
//! `media.events`) name the owner by id, never by name or file name, and
//! are immutable.

use std::collections::{BTreeSet, HashSet};

use aws_sdk_s3::error::DisplayErrorContext;
use serde_json::{Value, json};
use shopstream_dsar::{
    Document, Erasure, Error, Export, ObjectRef, Participant, Retained, StoreCount, Subject,
};
use uuid::Uuid;

use crate::store::{Asset, Attempt, Store, Variant};

pub const ASSETS: &str = "media.assets";
pub const VARIANTS: &str = "media.variants";
pub const ATTEMPTS: &str = "media.attempts";
pub const OBJECTS: &str = "media.objects";

/// The owner of an asset whose uploader was erased: a fixed pseudonym that
/// leads back to no one.
pub const ERASED_OWNER: &str = "00000000-0000-0000-0000-000000000000";
/// Why a product picture outlives its uploader's erasure.
pub const CATALOG_BASIS: &str = "product catalog content, not personal data: a picture \
     attached to a product belongs to the shop's catalog; the link to the uploader is removed";
/// What a retained product picture keeps.
pub const CATALOG_FIELDS_KEPT: &str = "asset row (kind, status, declared type and size, \
     format, dimensions, ref product:<id>, timestamps), variants, attempts and variant objects; \
     owner_id set to the nil UUID, file name cleared, raw upload deleted";
/// How long a retained product picture is kept: no fixed term (as long as
/// the catalog shows it), which `Retained` says as 0.
pub const CATALOG_RETAIN_DAYS: u32 = 0;

/// Whether an asset illustrates a product (catalog content).
pub fn is_catalog(a: &Asset) -> bool {
    a.reference.starts_with("product:")
}

/// Media's stores, as the DSAR workflow sees them.
#[derive(Clone)]
pub struct MediaParticipant {
    pub store: Store,
    pub s3: aws_sdk_s3::Client,
    /// Where clean originals and variants are (uploads are where each
    /// asset's row says).
    pub bucket: String,
}

/// One asset of the subject with what hangs off it.
struct Held {
    asset: Asset,
    variants: Vec<Variant>,
    attempts: Vec<Attempt>,
}

fn s3_error<E>(e: aws_sdk_s3::error::SdkError<E>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    Error::store("s3", DisplayErrorContext(e))
}

impl MediaParticipant {
    /// The subject's assets in their tenant (the owner as every store keys
    /// it: the user id's canonical form), oldest first.
    async fn assets(&self, s: &Subject) -> Result<Vec<Asset>, Error> {
        Ok(self
            .store
            .by_owner(&s.tenant, &s.user_id.to_string())
            .await?)
    }

    async fn held(&self, s: &Subject) -> Result<Vec<Held>, Error> {
        let mut out = vec![];
        for asset in self.assets(s).await? {
            out.push(Held {
                variants: self.store.variants(asset.asset_id).await?,
                attempts: self.store.attempts(asset.asset_id).await?,
                asset,
            });
        }
        Ok(out)
    }

    /// Whether the object is there (a missing bucket counts as missing).
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, Error> {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let missing = e.as_service_error().is_some_and(|x| x.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                if missing { Ok(false) } else { Err(s3_error(e)) }
            }
        }
    }

    /// Delete the object if it is there; whether it was.
    async fn delete(&self, bucket: &str, key: &str) -> Result<bool, Error> {
        if !self.exists(bucket, key).await? {
            return Ok(false);
        }
        self.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error)?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Participant for MediaParticipant {
    fn name(&self) -> &'static str {
        "media"
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        let held = self.held(s).await?;
        let (mut assets, mut variants, mut attempts, mut objects) =
            (vec![], vec![], vec![], vec![]);
        let mut refs: Vec<ObjectRef> = vec![];
        let mut seen = HashSet::new();
        for h in &held {
            let id = h.asset.asset_id;
            let mut row = serde_json::to_value(&h.asset)
                .map_err(|e| Error::Invalid(format!("asset {id}: {e}")))?;
            if let Value::Object(m) = &mut row {
                m.insert("catalog".into(), json!(is_catalog(&h.asset)));
            }
            assets.push(row);
            // The raw upload exists only once the client has put it.
            let (ub, uk) = (&h.asset.upload_bucket, &h.asset.upload_key);
            if self.exists(ub, uk).await? {
                objects.push(json!({ "asset_id": id, "role": "upload", "bucket": ub, "key": uk }));
                refs.push(ObjectRef {
                    bucket: ub.clone(),
                    key: uk.clone(),
                });
            }
            for v in &h.variants {
                variants.push(json!({ "asset_id": id, "variant": v }));
                objects.push(
                    json!({ "asset_id": id, "role": v.name, "bucket": self.bucket, "key": v.key }),
                );
                if seen.insert(v.key.clone()) {
                    refs.push(ObjectRef {
                        bucket: self.bucket.clone(),
                        key: v.key.clone(),
                    });
                }
            }
            for t in &h.attempts {
                attempts.push(json!({ "asset_id": id, "attempt": t }));
            }
        }
        Ok(Export {
            counts: vec![
                StoreCount::new(ASSETS, assets.len() as u64, "uploaded by them"),
                StoreCount::new(VARIANTS, variants.len() as u64, ""),
                StoreCount::new(ATTEMPTS, attempts.len() as u64, ""),
                StoreCount::new(OBJECTS, refs.len() as u64, "in S3"),
            ],
            documents: vec![
                Document {
                    store: ASSETS.into(),
                    json: json!({ "assets": assets }),
                },
                Document {
                    store: VARIANTS.into(),
                    json: json!({ "variants": variants }),
                },
                Document {
                    store: ATTEMPTS.into(),
                    json: json!({ "attempts": attempts }),
                },
                Document {
                    store: OBJECTS.into(),
                    json: json!({ "objects": objects }),
                },
            ],
            objects: refs,
        })
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        let assets = self.assets(s).await?;
        let (catalog, personal): (Vec<&Asset>, Vec<&Asset>) =
            assets.iter().partition(|a| is_catalog(a));
        let personal_ids: Vec<Uuid> = personal.iter().map(|a| a.asset_id).collect();
        let catalog_ids: Vec<Uuid> = catalog.iter().map(|a| a.asset_id).collect();
        // Objects first. Variant objects of the erased assets go unless an
        // asset left standing (another owner's, a retained product
        // picture) records the same content key.
        let mut keys = BTreeSet::new();
        for id in &personal_ids {
            keys.extend(self.store.variants(*id).await?.into_iter().map(|v| v.key));
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let shared = self.store.keys_used_outside(&keys, &personal_ids).await?;
        let mut objects = 0;
        for key in keys.iter().filter(|k| !shared.contains(*k)) {
            objects += u64::from(self.delete(&self.bucket, key).await?);
        }
        // Raw uploads: every erased asset's, and a product picture's once
        // the pipeline is done with it (it keeps the camera's metadata).
        for a in personal
            .iter()
            .chain(catalog.iter().filter(|a| a.status.is_terminal()))
        {
            objects += u64::from(self.delete(&a.upload_bucket, &a.upload_key).await?);
        }
        let rows = self
            .store
            .erase_owner(
                &s.tenant,
                &s.user_id.to_string(),
                &personal_ids,
                &catalog_ids,
                ERASED_OWNER,
            )
            .await?;
        Ok(Erasure {
            counts: vec![
                StoreCount::new(ASSETS, rows.assets, "deleted"),
                StoreCount::new(VARIANTS, rows.variants, "deleted"),
                StoreCount::new(ATTEMPTS, rows.attempts, "deleted"),
                StoreCount::new(
                    OBJECTS,
                    objects,
                    &format!("deleted; {} shared with another asset kept", shared.len()),
                ),
            ],
            retained: vec![Retained {
                store: ASSETS.into(),
                count: rows.anonymised,
                basis: CATALOG_BASIS.into(),
                fields_kept: CATALOG_FIELDS_KEPT.into(),
                retain_days: CATALOG_RETAIN_DAYS,
            }],
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        let c = self
            .store
            .owner_counts(&s.tenant, &s.user_id.to_string())
            .await?;
        Ok(vec![
            StoreCount::new(ASSETS, c.assets, ""),
            StoreCount::new(VARIANTS, c.variants, ""),
            StoreCount::new(ATTEMPTS, c.attempts, ""),
            StoreCount::new(OBJECTS, c.objects, "named by their rows"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_erased_owner_is_the_nil_uuid() {
        assert_eq!(ERASED_OWNER, Uuid::nil().to_string());
    }
}
