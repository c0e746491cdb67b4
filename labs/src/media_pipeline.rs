//! The lab `media-pipeline`: upload a phone photo (with a GPS position in
//! its EXIF) straight to S3 through a presigned URL, watch each pipeline step
//! with its duration, fetch the variants and show the position is gone; make
//! the thumbnail step fail twice and watch the third attempt succeed; make it
//! fail three times and see the asset failed with the step and the reason;
//! block a picture and see a near-duplicate of it rejected.

use std::time::Duration;

use serde_json::{Value, json};
use shopstream_media::{process, samples};

use crate::{
    kit::{Lab, LabError, Probe},
    media::{self as client, MediaFaults},
    target::{Gateway, Target},
};

pub const NAME: &str = "media-pipeline";
pub const TITLE: &str = "a photo goes straight to S3, and a failing step is retried and recovered";
pub const SUMMARY: &str = "Upload a photo with GPS EXIF through a presigned URL, watch ingest, \
    moderate, thumbnail and ready, check the GPS tag is gone; make thumbnail fail twice (the \
    third attempt wins), then three times (the asset fails, with the reason); block a picture \
    and see a near-duplicate rejected.";

/// How long one asset may take through the pipeline.
pub const ASSET_DEADLINE: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(50);
/// Where the lab's photo says it was taken (the Eiffel Tower).
const LAT: f64 = 48.8584;
const LON: f64 = 2.2945;

const INTRO: &str = "Media never touches the bytes of an upload on their way in. The client \
    declares the file (kind, type, size) with POST /media/uploads and gets back a presigned \
    PUT: a URL signed for that one object, that content type and that length, valid for 15 \
    minutes. The bytes go straight to S3. When the object lands, the S3 server publishes an \
    object-created notification on the topic media.work (as S3 and MinIO bucket \
    notifications do); media consumes it and starts a Temporal workflow for the asset: \
    ingest (check what the bytes really are, strip metadata into a clean original), moderate \
    (policy and a perceptual-hash blocklist), thumbnail (three sizes) and, for clips, \
    transcode; then ready, which publishes media.events. Each step has 3 attempts with \
    exponential backoff; after the third failure the asset is failed, with the step and \
    the reason.";

async fn upload(
    lab: &Lab,
    gw: &Gateway,
    label: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Result<String, LabError> {
    lab.action(label, async {
        let (kind, ct) = client::type_of(name).unwrap_or(("image", "image/jpeg"));
        let size = bytes.len();
        let d = client::declare(gw, kind, ct, size as u64, name, "").await?;
        let id = d["asset"]["asset_id"].as_str().unwrap_or_default().to_string();
        let headers = d["upload"]["headers"].clone();
        client::put(&d["upload"], bytes, |_, _| {}).await?;
        Ok((
            id.clone(),
            format!("asset {id}: declared {size} bytes of {ct}; PUT to S3 with the signed headers {headers}"),
        ))
    })
    .await
}

/// Follow an asset to its end, printing each attempt as it finishes.
async fn follow(lab: &Lab, gw: &Gateway, id: &str, expect: &str) -> Result<Value, LabError> {
    let asset = lab
        .checkpoint(
            &format!("the asset ends {expect}"),
            ASSET_DEADLINE,
            POLL,
            || async {
                let a = client::get(gw, id).await?;
                let status = a["status"].as_str().unwrap_or_default().to_string();
                Ok(if client::is_terminal(&status) {
                    let detail = format!(
                        "{status} after {} attempts",
                        a["attempts"].as_array().map_or(0, Vec::len)
                    );
                    Probe::Ready(a, detail)
                } else {
                    Probe::Waiting(status)
                })
            },
        )
        .await?;
    for t in asset["attempts"].as_array().into_iter().flatten() {
        lab.note(&client::describe_attempt(t));
    }
    Ok(asset)
}

fn attempts_of<'a>(a: &'a Value, step: &str) -> Vec<&'a Value> {
    a["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["step"] == step)
        .collect()
}

pub async fn script(lab: Lab, target: Target) -> Result<(), LabError> {
    lab.narrate(INTRO);
    let mut gw = Gateway::new(&target.gateway_url)?;
    let faults = MediaFaults::new(&target.media_http_url)?;
    lab.action("check that the gateway and media answer", async {
        gw.ready().await?;
        let f = faults.show().await?;
        Ok((
            (),
            format!("gateway at {}; media faults now: {f}", gw.base()),
        ))
    })
    .await?;
    let email = lab
        .action(
            "log in as a fresh admin (uploading, and later blocking)",
            async {
                let e = gw
                    .login_as_new_admin(&target.identity_grpc_url, "media-lab")
                    .await?;
                Ok((e.clone(), e))
            },
        )
        .await?;
    let _ = email;

    // --- 1. a phone photo -------------------------------------------------
    lab.narrate(
        "A 1600×1200 photo, generated, with the EXIF a phone writes: the camera's make and \
         the GPS position where it was taken.",
    );
    let photo = samples::with_gps(&samples::photo(1600, 1200, 2026), LAT, LON);
    let before = process::file_exif(&photo);
    lab.check(
        "the photo carries a GPS position",
        before.gps,
        "GPS tags",
        before.tags.join(", "),
    );
    let id = upload(
        &lab,
        &gw,
        "declare the photo and PUT it to S3",
        "photo.jpg",
        photo,
    )
    .await?;
    let a = follow(&lab, &gw, &id, "ready").await?;
    lab.assert_eq("status", "ready", a["status"].as_str().unwrap_or_default());
    for t in a["attempts"].as_array().into_iter().flatten() {
        if let Some(step) = t["step"].as_str() {
            lab.measure(&format!("{step} took"), client::attempt_ms(t) as f64, "ms");
        }
    }
    let variants: Vec<Value> = a["variants"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = variants
        .iter()
        .map(|v| {
            format!(
                "{} {}×{}",
                v["name"].as_str().unwrap_or_default(),
                v["width"],
                v["height"]
            )
        })
        .collect();
    lab.check(
        "an original and three thumbnails",
        variants.len() == 4,
        "original, thumb_160, thumb_480, thumb_1080",
        names.join(", "),
    );
    let original = variants
        .iter()
        .find(|v| v["name"] == "original")
        .and_then(|v| v["url"].as_str())
        .unwrap_or_default()
        .to_string();
    let clean = lab
        .action(
            "download the clean original with its presigned GET",
            async {
                let r = reqwest::get(&original)
                    .await
                    .map_err(|e| LabError::Failed(format!("GET original: {e}")))?;
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| LabError::Failed(format!("GET original: {e}")))?;
                Ok((bytes.to_vec(), format!("{} bytes", bytes.len())))
            },
        )
        .await?;
    let after = process::file_exif(&clean);
    lab.check(
        "the GPS position is gone from the original",
        !after.gps && after.tags.is_empty(),
        "no EXIF tags",
        if after.tags.is_empty() {
            "none".to_string()
        } else {
            after.tags.join(", ")
        },
    );

    // --- 2. thumbnail fails twice ----------------------------------------
    lab.narrate(
        "Now the thumbnail step fails on its next two attempts (media's fault switch). \
         Temporal retries it after 1 s, then after 2 s; the third attempt works.",
    );
    let f = faults.clone();
    lab.fault(
        "make the next 2 thumbnail attempts fail",
        async {
            f.set("thumbnail", &json!({"fail": 2}))
                .await
                .map(|v| v.to_string())
        },
        "clear media faults",
        move || async move { faults.clear().await.map(|_| "cleared".to_string()) },
    )
    .await?;
    let f = MediaFaults::new(&target.media_http_url)?;
    let id = upload(
        &lab,
        &gw,
        "upload another photo",
        "second.jpg",
        samples::photo(1024, 768, 7),
    )
    .await?;
    let a = follow(&lab, &gw, &id, "ready").await?;
    lab.assert_eq("status", "ready", a["status"].as_str().unwrap_or_default());
    let thumbs = attempts_of(&a, "thumbnail");
    let outcome: Vec<bool> = thumbs.iter().map(|t| t["error"] == "").collect();
    lab.assert_eq(
        "thumbnail: two failures, then success",
        vec![false, false, true],
        outcome,
    );
    if thumbs.len() == 3 {
        let gap = |i: usize| {
            thumbs[i]["started_at_ms"].as_i64().unwrap_or(0)
                - thumbs[i - 1]["finished_at_ms"].as_i64().unwrap_or(0)
        };
        lab.measure("wait before attempt 2", gap(1) as f64, "ms");
        lab.measure("wait before attempt 3 (doubled)", gap(2) as f64, "ms");
    }

    // --- 3. thumbnail fails three times ----------------------------------
    lab.narrate("Three failures in a row exhaust the step's attempts: the asset fails.");
    lab.action("make the next 3 thumbnail attempts fail", async {
        Ok((
            (),
            f.set("thumbnail", &json!({"fail": 3})).await?.to_string(),
        ))
    })
    .await?;
    let id = upload(
        &lab,
        &gw,
        "upload a third photo",
        "third.jpg",
        samples::photo(1024, 768, 8),
    )
    .await?;
    let a = follow(&lab, &gw, &id, "failed").await?;
    lab.assert_eq("status", "failed", a["status"].as_str().unwrap_or_default());
    lab.assert_eq(
        "failed step",
        "thumbnail",
        a["failed_step"].as_str().unwrap_or_default(),
    );
    lab.check(
        "the reason is the last attempt's error",
        a["failure_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("injected fault"),
        "injected fault: thumbnail fails",
        a["failure_reason"].as_str().unwrap_or_default(),
    );
    lab.assert_eq("thumbnail attempts", 3, attempts_of(&a, "thumbnail").len());

    // --- 4. a near-duplicate of a blocked picture --------------------------
    lab.narrate(
        "Moderation keeps a blocklist of perceptual hashes (a 64-bit difference hash). An \
         admin blocks a picture; someone uploads it again, resized to 75 %, brightened and \
         recompressed. Its bytes differ entirely; its hash stays within a few bits of the \
         blocked one (10 of 64 at most count as the same picture), and moderation rejects it.",
    );
    let blocked_photo = samples::photo(900, 700, 31337);
    let id = upload(
        &lab,
        &gw,
        "upload a picture that will be blocked",
        "blocked.jpg",
        blocked_photo.clone(),
    )
    .await?;
    follow(&lab, &gw, &id, "ready").await?;
    lab.action("block it (POST /admin/media/{id}/block)", async {
        let r = gw
            .send(
                reqwest::Method::POST,
                &format!("/admin/media/{id}/block"),
                None,
                &[],
            )
            .await?;
        Ok(((), format!("perceptual hash {} blocked", r.body["phash"])))
    })
    .await?;
    let copy = samples::near_duplicate(&blocked_photo, 0.75, 12)
        .map_err(|e| LabError::Failed(e.to_string()))?;
    let id = upload(&lab, &gw, "upload a near-duplicate of it", "copy.jpg", copy).await?;
    let a = follow(&lab, &gw, &id, "rejected").await?;
    lab.assert_eq(
        "status",
        "rejected",
        a["status"].as_str().unwrap_or_default(),
    );
    lab.check(
        "rejected as a near-duplicate",
        a["failure_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("near-duplicate"),
        "near-duplicate of a blocked image",
        a["failure_reason"].as_str().unwrap_or_default(),
    );
    Ok(())
}
