//! The export archive: one `.tar.gz` with a JSON document per store, the
//! subject's S3 objects (media originals and variants) and a manifest, put in
//! the export bucket under `exports/{tenant}/{user}/{dsar}.tar.gz` and handed
//! out as a presigned GET that expires. An erasure deletes the subject's
//! earlier archives (they are personal data too).

use std::time::Duration;

use aws_sdk_s3::{presigning::PresigningConfig, primitives::ByteStream};
use shopstream_dsar::{Export, ObjectRef};
use uuid::Uuid;

/// The archive's key.
pub fn key(tenant: &str, user: Uuid, dsar: Uuid) -> String {
    format!("exports/{tenant}/{user}/{dsar}.tar.gz")
}

fn prefix(tenant: &str, user: Uuid) -> String {
    format!("exports/{tenant}/{user}/")
}

fn append(
    tar: &mut tar::Builder<impl std::io::Write>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> Result<(), String> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_cksum();
    tar.append_data(&mut h, path, bytes)
        .map_err(|e| format!("archive {path}: {e}"))
}

/// Object paths inside the archive: `objects/<bucket>/<key>`.
fn object_path(o: &ObjectRef) -> String {
    format!("objects/{}/{}", o.bucket, o.key.trim_start_matches('/'))
}

/// Build the archive of `parts` (participant name, its export), copying the
/// objects from S3.
pub async fn build(
    s3: &aws_sdk_s3::Client,
    manifest: &serde_json::Value,
    parts: &[(String, Export)],
    now_ms: i64,
) -> Result<Vec<u8>, String> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = (now_ms / 1000).max(0) as u64;
    let mut files = Vec::new();
    for (participant, e) in parts {
        for d in &e.documents {
            let path = format!("stores/{participant}/{}.json", d.store);
            let body = serde_json::to_vec_pretty(&d.json).map_err(|e| e.to_string())?;
            append(&mut tar, &path, &body, mtime)?;
            files.push(path);
        }
        for o in &e.objects {
            let obj = s3
                .get_object()
                .bucket(&o.bucket)
                .key(&o.key)
                .send()
                .await
                .map_err(|err| {
                    format!(
                        "s3 get {}/{}: {}",
                        o.bucket,
                        o.key,
                        aws_sdk_s3::Error::from(err)
                    )
                })?;
            let bytes = obj
                .body
                .collect()
                .await
                .map_err(|err| format!("s3 read {}/{}: {err}", o.bucket, o.key))?
                .into_bytes();
            let path = object_path(o);
            append(&mut tar, &path, &bytes, mtime)?;
            files.push(path);
        }
    }
    let mut m = manifest.clone();
    m["files"] = serde_json::json!(files);
    let body = serde_json::to_vec_pretty(&m).map_err(|e| e.to_string())?;
    append(&mut tar, "manifest.json", &body, mtime)?;
    let gz = tar.into_inner().map_err(|e| format!("archive: {e}"))?;
    gz.finish().map_err(|e| format!("archive: {e}"))
}

pub async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
) -> Result<(), String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/gzip")
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("s3 put {bucket}/{key}: {}", aws_sdk_s3::Error::from(e)))
}

/// A presigned GET of the archive, valid for `ttl`.
pub async fn presign(
    presigner: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    ttl: Duration,
) -> Result<String, String> {
    let cfg = PresigningConfig::expires_in(ttl).map_err(|e| e.to_string())?;
    presigner
        .get_object()
        .bucket(bucket)
        .key(key)
        .presigned(cfg)
        .await
        .map(|r| r.uri().to_string())
        .map_err(|e| format!("presign: {}", aws_sdk_s3::Error::from(e)))
}

/// The subject's archives (keys).
pub async fn list(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    tenant: &str,
    user: Uuid,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix(tenant, user))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("s3 list {bucket}: {}", aws_sdk_s3::Error::from(e)))?;
        out.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
    }
    Ok(out)
}

pub async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(), String> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("s3 delete {bucket}/{key}: {}", aws_sdk_s3::Error::from(e)))
}
