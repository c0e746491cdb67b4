//! The pipeline end to end, the faults it survives and the inputs it refuses.

use std::time::Duration;

use sha2::{Digest, Sha256};
use shopstream_media::{domain, process, samples};
use shopstream_platform::grpc::with_tenant;
use shopstream_proto::media::v1::{AssetStatus, BlockAssetRequest, MediaKind};
use shopstream_runtime::testkit;

use crate::{
    Names, PIPELINE_TIMEOUT, TENANT, client, get, put, settled, spawn, start, status, upload_image,
};

async fn fetch(url: &str) -> Vec<u8> {
    let r = reqwest::get(url).await.expect("presigned get");
    assert_eq!(r.status(), reqwest::StatusCode::OK, "GET {url}");
    r.bytes().await.expect("body").to_vec()
}

#[tokio::test]
async fn a_photo_goes_from_a_presigned_put_to_three_thumbnails_and_one_event() {
    let names = Names::fresh();
    let media = spawn(&names).await;
    let mut c = client(&media.grpc_url()).await;
    let photo = samples::with_gps(&samples::photo(1600, 1200, 3), 48.8584, 2.2945);
    assert!(process::file_exif(&photo).gps);
    let s = start(
        &mut c,
        MediaKind::Image,
        "image/jpeg",
        photo.len(),
        "product:p-1",
    )
    .await
    .unwrap();
    let id = s.asset.clone().unwrap().asset_id;
    assert_eq!(
        status(&s.asset.clone().unwrap()),
        AssetStatus::AwaitingUpload
    );
    assert_eq!(put(&s, photo, &[]).await, reqwest::StatusCode::OK);
    let a = settled(&mut c, &id).await;
    assert_eq!(status(&a), AssetStatus::Ready, "{a:?}");
    let names_of: Vec<&str> = a.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names_of,
        ["original", "thumb_1080", "thumb_160", "thumb_480"],
        "{a:?}"
    );
    for v in &a.variants {
        let bytes = fetch(&v.url).await;
        assert_eq!(bytes.len() as u64, v.size_bytes);
        // Content-addressed: the key is the SHA-256 of the bytes.
        assert!(
            v.url.contains(&hex::encode(Sha256::digest(&bytes))),
            "{}",
            v.url
        );
        let (_, img, _) = process::decode_image(&bytes, &domain::Policy::default()).unwrap();
        assert_eq!((img.width(), img.height()), (v.width_px, v.height_px));
        assert!(!process::file_exif(&bytes).gps, "{} still has GPS", v.name);
    }
    let longest: Vec<u32> = a
        .variants
        .iter()
        .filter(|v| v.name.starts_with("thumb"))
        .map(|v| v.width_px.max(v.height_px))
        .collect();
    assert_eq!(longest, [1080, 160, 480]);
    // Each step ran once.
    let steps: Vec<(&str, u32)> = a
        .attempts
        .iter()
        .map(|t| (t.step.as_str(), t.attempt))
        .collect();
    assert_eq!(
        steps,
        [
            ("ingest", 1),
            ("moderate", 1),
            ("thumbnail", 1),
            ("ready", 1)
        ]
    );
    // media.events: exactly one event for the asset, published.
    let pool = crate::db(&names).await;
    let (events, published): (i64, i64) = testkit::eventually(
        "the ready event is published",
        Duration::from_secs(20),
        || {
            let pool = pool.clone();
            let id = id.clone();
            async move {
                let r: (i64, i64) = sqlx::query_as(
                    "SELECT count(*), count(published_at) FROM event_outbox
                     WHERE topic = 'media.events' AND key = $1",
                )
                .bind(&id)
                .fetch_one(&pool)
                .await
                .ok()?;
                (r.1 == r.0).then_some(r)
            }
        },
    )
    .await;
    assert_eq!((events, published), (1, 1));
    // Another owner cannot see it.
    let other = c
        .get_asset(with_tenant(
            shopstream_proto::media::v1::GetAssetRequest {
                asset_id: id.clone(),
                owner_id: "someone-else".into(),
                url_ttl_s: 0,
            },
            TENANT,
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn s3_refuses_a_put_of_another_type_or_length_and_nothing_starts() {
    let names = Names::fresh();
    let media = spawn(&names).await;
    let mut c = client(&media.grpc_url()).await;
    let photo = samples::photo(64, 64, 1);
    let s = start(&mut c, MediaKind::Image, "image/jpeg", photo.len(), "")
        .await
        .unwrap();
    let id = s.asset.clone().unwrap().asset_id;
    let other_type = put(&s, photo.clone(), &[("content-type", "image/png")]).await;
    assert_eq!(other_type, reqwest::StatusCode::FORBIDDEN);
    let mut longer = photo.clone();
    longer.extend([0u8; 100]);
    assert_eq!(put(&s, longer, &[]).await, reqwest::StatusCode::FORBIDDEN);
    // Refused means nothing was written, so no notification can start work.
    let s3 = shopstream_platform::object_store::client(&testkit::stack().await.endpoints);
    let head = s3
        .head_object()
        .bucket(&names.upload_bucket)
        .key(format!("uploads/{id}"))
        .send()
        .await;
    assert!(head.is_err(), "a refused PUT left an object: {head:?}");
    assert_eq!(status(&get(&mut c, &id).await), AssetStatus::AwaitingUpload);
    // Outside policy: refused before any URL, every field named.
    let e = start(&mut c, MediaKind::Image, "application/pdf", 21 << 20, "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("content_type:") && e.message().contains("size_bytes:"),
        "{e:?}"
    );
    let e = start(&mut c, MediaKind::Video, "video/mp4", 201 << 20, "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn thumbnail_failing_twice_recovers_and_failing_three_times_fails_the_asset() {
    let names = Names::fresh();
    let media = spawn(&names).await;
    let mut c = client(&media.grpc_url()).await;
    let http = reqwest::Client::new();
    let set = |n: u32| {
        http.put(format!("{}/faults/thumbnail", media.http))
            .json(&serde_json::json!({"fail": n}))
            .send()
    };
    assert!(set(2).await.unwrap().status().is_success());
    let a = upload_image(&mut c, samples::photo(640, 480, 11)).await;
    assert_eq!(status(&a), AssetStatus::Ready, "{a:?}");
    let thumbs: Vec<(u32, bool)> = a
        .attempts
        .iter()
        .filter(|t| t.step == "thumbnail")
        .map(|t| (t.attempt, t.error.is_empty()))
        .collect();
    assert_eq!(thumbs, [(1, false), (2, false), (3, true)]);
    // Backoff: the third attempt started at least 1 s + 2 s after the first.
    let t: Vec<i64> = a
        .attempts
        .iter()
        .filter(|t| t.step == "thumbnail")
        .map(|t| t.started_at_ms)
        .collect();
    assert!(t[2] - t[0] >= 3_000, "{t:?}");

    assert!(set(3).await.unwrap().status().is_success());
    let a = upload_image(&mut c, samples::photo(640, 480, 12)).await;
    assert_eq!(status(&a), AssetStatus::Failed, "{a:?}");
    assert_eq!(a.failed_step, "thumbnail");
    assert!(a.failure_reason.contains("injected fault"), "{a:?}");
    assert_eq!(
        a.attempts.iter().filter(|t| t.step == "thumbnail").count(),
        3
    );
    assert!(a.variants.is_empty());
}

#[tokio::test]
async fn lies_bombs_and_truncations_fail_at_ingest_with_the_reason() {
    let names = Names::fresh();
    let media = spawn(&names).await;
    let mut c = client(&media.grpc_url()).await;
    let bomb = samples::png_header(100_000, 100_000);
    let photo = samples::photo(300, 200, 5);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a PDF declared as a JPEG",
            b"%PDF-1.7 not a picture at all".to_vec(),
            "not any accepted image format",
        ),
        ("a 100,000 x 100,000 px header", bomb, "100000×100000"),
        (
            "a truncated JPEG",
            photo[..photo.len() / 3].to_vec(),
            "truncated",
        ),
    ];
    for (what, bytes, reason) in cases {
        let a = upload_image(&mut c, bytes).await;
        assert_eq!(status(&a), AssetStatus::Failed, "{what}: {a:?}");
        assert_eq!(a.failed_step, "ingest", "{what}");
        assert!(
            a.failure_reason
                .to_lowercase()
                .contains(&reason.to_lowercase()),
            "{what}: {:?}",
            a.failure_reason
        );
        // The file's fault: no retry can help, so one attempt.
        assert_eq!(a.attempts.len(), 1, "{what}: {:?}", a.attempts);
    }
}

#[tokio::test]
async fn a_near_duplicate_of_a_blocked_image_is_rejected() {
    let names = Names::fresh();
    let media = spawn(&names).await;
    let mut c = client(&media.grpc_url()).await;
    let original = samples::photo(800, 600, 77);
    let a = upload_image(&mut c, original.clone()).await;
    assert_eq!(status(&a), AssetStatus::Ready);
    let blocked = c
        .block_asset(with_tenant(
            BlockAssetRequest {
                asset_id: a.asset_id.clone(),
            },
            TENANT,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(blocked.phash.len(), 16);
    let copy = samples::near_duplicate(&original, 0.75, 10).unwrap();
    let b = upload_image(&mut c, copy).await;
    assert_eq!(status(&b), AssetStatus::Rejected, "{b:?}");
    assert!(b.failure_reason.contains("near-duplicate"), "{b:?}");
    // Another picture still passes.
    let other = upload_image(&mut c, samples::photo(800, 600, 4242)).await;
    assert_eq!(status(&other), AssetStatus::Ready);
    // The fault switch can make moderation reject the next one.
    let r = reqwest::Client::new()
        .put(format!("{}/faults/moderate", media.http))
        .json(&serde_json::json!({"reject": 1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let forced = upload_image(&mut c, samples::photo(800, 600, 4343)).await;
    assert_eq!(status(&forced), AssetStatus::Rejected);
    assert!(forced.failure_reason.contains("fault switch"), "{forced:?}");
    let after = upload_image(&mut c, samples::photo(800, 600, 4444)).await;
    assert_eq!(status(&after), AssetStatus::Ready, "one rejection only");
}

#[tokio::test]
async fn a_clip_becomes_a_poster_three_thumbnails_and_two_mp4_renditions() {
    assert!(
        process::ffmpeg_available(),
        "ffmpeg is needed: {}",
        process::FFMPEG_INSTALL
    );
    let names = Names::fresh();
    let media = spawn(&names).await;
    let mut c = client(&media.grpc_url()).await;
    let dir = std::env::temp_dir().join(testkit::unique("clip"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.mp4");
    samples::clip(&path, 3, 1280, 720).await.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let s = start(&mut c, MediaKind::Video, "video/mp4", bytes.len(), "")
        .await
        .unwrap();
    assert_eq!(put(&s, bytes, &[]).await, reqwest::StatusCode::OK);
    let a = settled(&mut c, &s.asset.unwrap().asset_id).await;
    assert_eq!(status(&a), AssetStatus::Ready, "{a:?}");
    let v = |n: &str| {
        a.variants
            .iter()
            .find(|v| v.name == n)
            .unwrap_or_else(|| panic!("{n} in {a:?}"))
    };
    assert_eq!((v("mp4_720").width_px, v("mp4_720").height_px), (1280, 720));
    assert_eq!((v("mp4_360").width_px, v("mp4_360").height_px), (640, 360));
    assert!(v("mp4_360").duration_ms >= 2_900, "{:?}", v("mp4_360"));
    assert_eq!(v("poster").content_type, "image/jpeg");
    assert_eq!(v("thumb_160").width_px, 160);
    let mp4 = fetch(&v("mp4_360").url).await;
    assert_eq!(&mp4[4..8], b"ftyp");
}

#[tokio::test]
async fn a_worker_killed_mid_step_resumes_on_the_next_and_writes_each_variant_once() {
    let names = Names::fresh();
    let mut env = names.env();
    env.push((
        "SHOPSTREAM_MEDIA_SCRATCH_DIR",
        std::env::temp_dir()
            .join(&names.database)
            .display()
            .to_string(),
    ));
    let env_ref: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
    let first = testkit::spawn_process("media", &env_ref).await;
    let mut c = client(&first.grpc).await;
    // Thumbnail takes 8 s on this worker: long enough to kill it mid-step.
    let r = reqwest::Client::new()
        .put(format!("{}/faults/thumbnail", first.http))
        .json(&serde_json::json!({"delay_ms": 8000}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let photo = samples::photo(1200, 900, 99);
    let s = start(&mut c, MediaKind::Image, "image/jpeg", photo.len(), "")
        .await
        .unwrap();
    let id = s.asset.clone().unwrap().asset_id;
    assert_eq!(put(&s, photo, &[]).await, reqwest::StatusCode::OK);
    testkit::eventually(
        "thumbnail starts on the first worker",
        PIPELINE_TIMEOUT,
        || {
            let mut c = c.clone();
            let id = id.clone();
            async move {
                get(&mut c, &id)
                    .await
                    .attempts
                    .iter()
                    .any(|t| t.step == "thumbnail")
                    .then_some(())
            }
        },
    )
    .await;
    drop(first); // SIGKILL: no goodbye to Temporal
    let second = testkit::spawn_process("media", &env_ref).await;
    let mut c = client(&second.grpc).await;
    let a = settled(&mut c, &id).await;
    assert_eq!(status(&a), AssetStatus::Ready, "{a:?}");
    let thumbs = a.attempts.iter().filter(|t| t.step == "thumbnail").count();
    assert!(
        thumbs >= 2,
        "the killed attempt and the one that finished: {:?}",
        a.attempts
    );
    // One object per variant, whose key is its content's hash.
    let pool = crate::db(&names).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, key FROM variants WHERE asset_id = $1::uuid ORDER BY name")
            .bind(&id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for v in &a.variants {
        let bytes = fetch(&v.url).await;
        assert!(v.url.contains(&hex::encode(Sha256::digest(&bytes))));
    }
}
