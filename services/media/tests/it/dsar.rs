//! Media's DSAR participant (ADR 0012) against the test stack: the contract
//! on the real stores (Postgres and S3) seeded through the store's own
//! code, with a variant object two people share (deleted only with its last
//! owner) and a product picture (kept, unlinked from its uploader); then the
//! contract through the wire against a running media service, seeded through
//! `StartIngest`, a presigned PUT and the whole pipeline.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};
use shopstream_dsar::{
    Participant, Subject,
    contract::{self, Marker},
};
use shopstream_media::{
    MIGRATOR,
    domain::{self, Kind, Status, Step},
    dsar::{self as media_dsar, MediaParticipant},
    samples,
    store::{Asset, Store, Variant},
};
use shopstream_platform::{grpc::with_tenant, object_store};
use shopstream_proto::media::v1::{
    AssetStatus, GetAssetRequest, MediaKind, StartIngestRequest,
    media_service_client::MediaServiceClient,
};
use shopstream_runtime::testkit;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{Names, PIPELINE_TIMEOUT, client, put, spawn};

/// The bytes every seeded subject has a variant of: the same picture, so
/// the same content key.
const SHARED: &[u8] = b"the same picture, uploaded by two people";

fn now_ms() -> i64 {
    shopstream_platform::clock::Clock::now_ms(&shopstream_platform::clock::SystemClock)
}

async fn exists(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    s3.head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

struct Stores {
    store: Store,
    s3: aws_sdk_s3::Client,
    upload_bucket: String,
    bucket: String,
}

/// What the direct seed stored for one subject.
#[derive(Debug, Clone)]
struct Seeded {
    personal: Uuid,
    product: Uuid,
    /// The personal asset's own original, and the product picture's.
    personal_key: String,
    product_key: String,
}

impl Stores {
    async fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .unwrap();
    }

    /// An asset of `owner` as `StartIngest` registers it, uploaded (the raw
    /// object, then `processing`), with one variant of `bytes` recorded
    /// the way the pipeline records it.
    async fn asset(
        &self,
        s: &Subject,
        reference: &str,
        filename: &str,
        bytes: &[u8],
    ) -> (Uuid, String) {
        let id = Uuid::now_v7();
        let now = now_ms();
        let a = Asset {
            asset_id: id,
            tenant_id: s.tenant.clone(),
            owner_id: s.user_id.to_string(),
            kind: Kind::Image,
            status: Status::AwaitingUpload,
            declared_type: "image/jpeg".into(),
            declared_size: 1000,
            filename: filename.into(),
            reference: reference.into(),
            upload_bucket: self.upload_bucket.clone(),
            upload_key: format!("uploads/{id}"),
            format: None,
            width: None,
            height: None,
            duration_ms: None,
            phash: None,
            removed_metadata: None,
            failed_step: None,
            failure_reason: String::new(),
            created_ms: now,
            updated_ms: now,
        };
        self.store.insert(&a).await.unwrap();
        self.put(&a.upload_bucket, &a.upload_key, b"raw upload, EXIF and all")
            .await;
        assert!(self.store.mark_processing(id, now).await.unwrap());
        let key = domain::content_key(&hex::encode(Sha256::digest(bytes)), "jpg");
        self.variant(id, "original", &key, bytes).await;
        (id, key)
    }

    async fn variant(&self, asset: Uuid, name: &str, key: &str, bytes: &[u8]) {
        self.put(&self.bucket, key, bytes).await;
        let v = Variant {
            name: name.into(),
            key: key.into(),
            content_type: "image/jpeg".into(),
            width: 160,
            height: 120,
            size_bytes: bytes.len() as u64,
            duration_ms: 0,
        };
        self.store.put_variant(asset, &v).await.unwrap();
    }

    /// A personal picture (with a failed attempt, a thumbnail whose bytes
    /// every subject shares, and a blocklist entry) and a product picture
    /// (ready).
    async fn seed(&self, s: &Subject) -> (Vec<Marker>, Seeded) {
        let tag = Uuid::new_v4().simple().to_string();
        let filename = format!("holiday-{tag}.jpg");
        let (personal, personal_key) = self
            .asset(s, "", &filename, format!("mine {tag}").as_bytes())
            .await;
        let shared = domain::content_key(&hex::encode(Sha256::digest(SHARED)), "jpg");
        self.variant(personal, "thumb_160", &shared, SHARED).await;
        let error = format!("the decoder gave up on {tag}");
        self.store
            .attempt_started(personal, Step::Ingest, 1, now_ms())
            .await
            .unwrap();
        self.store
            .attempt_finished(personal, Step::Ingest, 1, now_ms(), &error)
            .await
            .unwrap();
        self.store
            .block(&s.tenant, rand_phash(), personal, now_ms())
            .await
            .unwrap();
        let catalog_name = format!("catalog-{tag}.jpg");
        let (product, product_key) = self
            .asset(
                s,
                &format!("product:{}", Uuid::now_v7()),
                &catalog_name,
                format!("product {tag}").as_bytes(),
            )
            .await;
        sqlx::query("UPDATE assets SET status = 'ready' WHERE asset_id = $1")
            .bind(product)
            .execute(&self.store.pool)
            .await
            .unwrap();
        (
            vec![
                Marker::new(media_dsar::ASSETS, &filename),
                Marker::new(media_dsar::ASSETS, &catalog_name),
                Marker::new(media_dsar::VARIANTS, &personal_key),
                Marker::new(media_dsar::ATTEMPTS, &error),
                Marker::new(media_dsar::OBJECTS, format!("uploads/{personal}")),
            ],
            Seeded {
                personal,
                product,
                personal_key,
                product_key,
            },
        )
    }
}

fn rand_phash() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}

#[tokio::test(flavor = "multi_thread")]
async fn the_media_participant_passes_the_contract_shares_objects_and_keeps_product_pictures() {
    let stack = testkit::stack().await;
    let pool = stack.database("it_media_dsar").await;
    shopstream_platform::db::migrate(&pool, &MIGRATOR)
        .await
        .unwrap();
    let u = testkit::unique("dsar").replace('_', "-");
    let s3 = object_store::client(&stack.endpoints);
    // Not `media-uploads*`: nothing is notified for these buckets.
    let (upload_bucket, bucket) = (format!("up-{u}"), format!("media-{u}"));
    for b in [&upload_bucket, &bucket] {
        object_store::ensure_bucket(&s3, b).await.unwrap();
    }
    let stores = Arc::new(Stores {
        store: Store { pool: pool.clone() },
        s3: s3.clone(),
        upload_bucket: upload_bucket.clone(),
        bucket: bucket.clone(),
    });
    let p = MediaParticipant {
        store: Store { pool: pool.clone() },
        s3: s3.clone(),
        bucket: bucket.clone(),
    };
    let tenant = testkit::unique("t");
    let seeded: Arc<Mutex<Vec<Seeded>>> = Arc::default();
    contract::check(&p, &tenant, |s| {
        let (stores, seeded) = (stores.clone(), seeded.clone());
        async move {
            let (markers, what) = stores.seed(&s).await;
            seeded.lock().unwrap().push(what);
            markers
        }
    })
    .await;
    let [subject, bystander] =
        <[_; 2]>::try_from(seeded.lock().unwrap().clone()).expect("two subjects seeded");
    let shared = domain::content_key(&hex::encode(Sha256::digest(SHARED)), "jpg");

    // The subject's own objects are gone; the one they shared with the
    // bystander is not, nor anything of the bystander's.
    assert!(!exists(&s3, &bucket, &subject.personal_key).await);
    assert!(
        !exists(
            &s3,
            &upload_bucket,
            &format!("uploads/{}", subject.personal)
        )
        .await
    );
    assert!(
        exists(&s3, &bucket, &shared).await,
        "a shared variant was deleted"
    );
    assert!(exists(&s3, &bucket, &bystander.personal_key).await);
    assert!(
        exists(
            &s3,
            &upload_bucket,
            &format!("uploads/{}", bystander.personal)
        )
        .await
    );

    // The product picture stays, unlinked: nil owner, no file name, its
    // variants there, its raw upload gone.
    let kept = p.store.get(subject.product).await.unwrap().expect("kept");
    assert_eq!(kept.owner_id, media_dsar::ERASED_OWNER);
    assert_eq!(kept.filename, "");
    assert_eq!(p.store.variants(subject.product).await.unwrap().len(), 1);
    assert!(exists(&s3, &bucket, &subject.product_key).await);
    assert!(!exists(&s3, &upload_bucket, &format!("uploads/{}", subject.product)).await);
    assert!(p.store.get(subject.personal).await.unwrap().is_none());

    // The blocklist keeps the hash, not the link to the erased asset.
    let links: Vec<Option<Uuid>> = sqlx::query_scalar(
        "SELECT source_asset FROM blocklist WHERE tenant_id = $1 ORDER BY added_ms",
    )
    .bind(&tenant)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(links.len(), 2);
    assert!(links.contains(&None) && links.contains(&Some(bystander.personal)));

    // What one erase reports: the product picture retained, with its basis.
    let third = contract::fresh_subject(&tenant);
    stores.seed(&third).await;
    let e = p.erase(&third).await.unwrap();
    let retained = &e.retained[0];
    assert_eq!(
        (retained.store.as_str(), retained.count),
        (media_dsar::ASSETS, 1)
    );
    assert_eq!(retained.basis, media_dsar::CATALOG_BASIS);
    let deleted = |store: &str| {
        e.counts
            .iter()
            .find(|c| c.store == store)
            .map(|c| c.count)
            .unwrap_or(0)
    };
    assert_eq!(deleted(media_dsar::ASSETS), 1);
    assert_eq!(deleted(media_dsar::VARIANTS), 2);
    assert_eq!(deleted(media_dsar::ATTEMPTS), 1);
    // Its original and its two raw uploads; the shared thumbnail stays.
    assert_eq!(deleted(media_dsar::OBJECTS), 3, "{e:?}");
}

async fn get_in(
    c: &mut MediaServiceClient<Channel>,
    tenant: &str,
    id: &str,
) -> Result<shopstream_proto::media::v1::Asset, tonic::Status> {
    c.get_asset(with_tenant(
        GetAssetRequest {
            asset_id: id.into(),
            owner_id: String::new(),
            url_ttl_s: 0,
        },
        tenant,
    ))
    .await
    .map(|r| r.into_inner().asset.expect("asset"))
}

/// Upload `photo` for `s` through `StartIngest` and a presigned PUT, and
/// wait until the pipeline made it ready; its asset id.
async fn upload(
    c: &mut MediaServiceClient<Channel>,
    s: &Subject,
    photo: Vec<u8>,
    filename: &str,
    reference: &str,
) -> String {
    let started = c
        .start_ingest(with_tenant(
            StartIngestRequest {
                owner_id: s.user_id.to_string(),
                filename: filename.into(),
                content_type: "image/jpeg".into(),
                size_bytes: photo.len() as u64,
                kind: MediaKind::Image as i32,
                r#ref: reference.into(),
            },
            &s.tenant,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put(&started, photo, &[]).await, reqwest::StatusCode::OK);
    let id = started.asset.expect("asset").asset_id;
    let a = testkit::eventually(&format!("asset {id} settles"), PIPELINE_TIMEOUT, || {
        let (mut c, t, id) = (c.clone(), s.tenant.clone(), id.clone());
        async move {
            let a = get_in(&mut c, &t, &id).await.ok()?;
            (a.status != AssetStatus::AwaitingUpload as i32
                && a.status != AssetStatus::Processing as i32)
                .then_some(a)
        }
    })
    .await;
    assert_eq!(a.status, AssetStatus::Ready as i32, "{a:?}");
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_wire_seeded_by_the_pipeline() {
    let names = Names::fresh();
    let media = spawn(&names).await;
    let c = client(&media.grpc_url()).await;
    let p = shopstream_dsar::Client::new("media", &media.grpc_url()).unwrap();
    let tenant = testkit::unique("t");
    // The same photo (with a location in its EXIF) for everyone: the same
    // clean original and thumbnails, so the same objects.
    let photo = samples::with_gps(&samples::photo(640, 480, 11), 48.8584, 2.2945);
    let seeded: Arc<Mutex<Vec<(Subject, String, String)>>> = Arc::default();
    contract::check(&p, &tenant, |s| {
        let (mut c, seeded, photo) = (c.clone(), seeded.clone(), photo.clone());
        async move {
            let filename = format!("holiday-{}.jpg", Uuid::new_v4().simple());
            let mine = upload(&mut c, &s, photo, &filename, "").await;
            let product = upload(
                &mut c,
                &s,
                samples::photo(640, 480, 12 + s.user_id.as_u64_pair().0 % 1000),
                "product shot.jpg",
                &format!("product:{}", Uuid::now_v7()),
            )
            .await;
            seeded.lock().unwrap().push((s, mine.clone(), product));
            vec![
                Marker::new(media_dsar::ASSETS, &filename),
                Marker::new(media_dsar::VARIANTS, &mine),
                Marker::new(media_dsar::ATTEMPTS, &mine),
                Marker::new(media_dsar::OBJECTS, format!("uploads/{mine}")),
            ]
        }
    })
    .await;
    let [(subject, mine, product), (bystander, theirs, _)] =
        <[_; 2]>::try_from(seeded.lock().unwrap().clone()).expect("two subjects seeded");
    let mut c = c;
    let t = &tenant;

    // Their picture is gone, and its raw upload.
    let gone = get_in(&mut c, t, &mine).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let s3 = object_store::client(&testkit::stack().await.endpoints);
    assert!(!exists(&s3, &names.upload_bucket, &format!("uploads/{mine}")).await);
    // The bystander's identical picture still serves every variant.
    let kept = get_in(&mut c, t, &theirs).await.unwrap();
    assert_eq!(kept.owner_id, bystander.user_id.to_string());
    assert_eq!(kept.variants.len(), 4);
    for v in &kept.variants {
        let r = reqwest::get(&v.url).await.unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::OK,
            "{} of the bystander",
            v.name
        );
    }
    // Their product picture stays in the catalog, no longer theirs.
    let shot = get_in(&mut c, t, &product).await.unwrap();
    assert_eq!(shot.owner_id, media_dsar::ERASED_OWNER);
    assert_eq!(shot.variants.len(), 4);
    assert!(!exists(&s3, &names.upload_bucket, &format!("uploads/{product}")).await);
    assert_eq!(shopstream_dsar::total(&p.scan(&subject).await.unwrap()), 0);
}
