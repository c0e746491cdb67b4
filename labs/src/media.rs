//! A client of the media pipeline through the public API: declare an upload
//! (`POST /media/uploads`), PUT the bytes straight to S3 with the presigned
//! URL (reporting progress), and follow the asset (`GET /media/{id}`) until
//! it is ready, rejected or failed. Also media's fault switch (`/faults`).
//! Used by `shopstream media upload`, the `media-pipeline` lab and
//! `shopstream bench --target media`.

use std::time::Duration;

use serde_json::Value;

use crate::{
    LabError,
    target::{Gateway, status_error, unreachable},
};

/// How often an asset is polled while it is processed.
pub const FOLLOW_POLL: Duration = Duration::from_millis(50);
/// Chunk size of the upload stream (what progress is reported in).
const CHUNK: usize = 256 * 1024;

/// The MIME type and kind of a file name's extension.
pub fn type_of(filename: &str) -> Option<(&'static str, &'static str)> {
    let ext = filename.rsplit('.').next()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => ("image", "image/jpeg"),
        "png" => ("image", "image/png"),
        "webp" => ("image", "image/webp"),
        "gif" => ("image", "image/gif"),
        "mp4" | "m4v" => ("video", "video/mp4"),
        "mov" => ("video", "video/quicktime"),
        "webm" => ("video", "video/webm"),
        _ => return None,
    })
}

/// A terminal status.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "ready" | "rejected" | "failed")
}

/// Declare an upload; the answer of `POST /media/uploads`.
pub async fn declare(
    gw: &Gateway,
    kind: &str,
    content_type: &str,
    size: u64,
    filename: &str,
    reference: &str,
) -> Result<Value, LabError> {
    let body = serde_json::json!({
        "kind": kind, "content_type": content_type, "size_bytes": size,
        "filename": filename, "ref": reference,
    });
    Ok(gw
        .send(reqwest::Method::POST, "/media/uploads", Some(&body), &[])
        .await?
        .body)
}

/// PUT `bytes` to the presigned target of a declaration, calling
/// `progress(sent, total)` as chunks go out.
pub async fn put(
    upload: &Value,
    bytes: Vec<u8>,
    progress: impl Fn(u64, u64) + Send + Sync + 'static,
) -> Result<(), LabError> {
    let url = upload["url"]
        .as_str()
        .ok_or_else(|| LabError::Failed("the declaration has no upload url".into()))?;
    let total = bytes.len() as u64;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(CHUNK).map(|c| Ok(c.to_vec())).collect();
    let mut sent = 0u64;
    let stream = futures::stream::iter(chunks.into_iter().inspect(move |c| {
        if let Ok(c) = c {
            sent += c.len() as u64;
            progress(sent, total);
        }
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| LabError::Failed(format!("http client: {e}")))?;
    let mut req = client.put(url).body(reqwest::Body::wrap_stream(stream));
    if let Some(h) = upload["headers"].as_object() {
        for (k, v) in h {
            req = req.header(k, v.as_str().unwrap_or_default());
        }
    }
    let resp = req.send().await.map_err(|e| unreachable("S3", url, &e))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(status_error("PUT (presigned)", status, &text));
    }
    Ok(())
}

/// `GET /media/{id}`.
pub async fn get(gw: &Gateway, asset_id: &str) -> Result<Value, LabError> {
    gw.get(&format!("/media/{asset_id}")).await
}

/// Poll the asset until it is terminal or `timeout` passes, calling
/// `on_change` each time its status or attempts change.
pub async fn follow(
    gw: &Gateway,
    asset_id: &str,
    timeout: Duration,
    mut on_change: impl FnMut(&Value),
) -> Result<Value, LabError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        let a = get(gw, asset_id).await?;
        let shape = (a["status"].clone(), a["attempts"].clone());
        if (last["status"].clone(), last["attempts"].clone()) != shape {
            on_change(&a);
        }
        if is_terminal(a["status"].as_str().unwrap_or_default()) {
            return Ok(a);
        }
        last = a;
        if tokio::time::Instant::now() >= deadline {
            return Err(LabError::Failed(format!(
                "asset {asset_id} is still {} after {timeout:?}",
                last["status"].as_str().unwrap_or("?")
            )));
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// Declare, upload and follow one file to the end.
pub async fn upload_and_follow(
    gw: &Gateway,
    filename: &str,
    bytes: Vec<u8>,
    reference: &str,
    timeout: Duration,
    on_change: impl FnMut(&Value),
) -> Result<Value, LabError> {
    let (kind, ct) = type_of(filename).ok_or_else(|| {
        LabError::Failed(format!(
            "{filename}: unknown extension (jpg, jpeg, png, webp, gif, mp4, m4v, mov, webm)"
        ))
    })?;
    let d = declare(gw, kind, ct, bytes.len() as u64, filename, reference).await?;
    let id = d["asset"]["asset_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    put(&d["upload"], bytes, |_, _| {}).await?;
    follow(gw, &id, timeout, on_change).await
}

/// Media's fault switch.
#[derive(Debug, Clone)]
pub struct MediaFaults {
    base: String,
    http: reqwest::Client,
}

impl MediaFaults {
    pub fn new(media_http_url: &str) -> Result<MediaFaults, LabError> {
        Ok(MediaFaults {
            base: media_http_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| LabError::Failed(format!("http client: {e}")))?,
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, LabError> {
        let resp = req
            .send()
            .await
            .map_err(|e| unreachable("media", &self.base, &e))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(status_error(what, status, &text));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Set `step`'s fault: `{"fail": N, "delay_ms": M, "reject": K}`.
    pub async fn set(&self, step: &str, fault: &Value) -> Result<Value, LabError> {
        let url = format!("{}/faults/{step}", self.base);
        self.call(
            self.http.put(&url).json(fault),
            &format!("PUT /faults/{step}"),
        )
        .await
    }

    pub async fn show(&self) -> Result<Value, LabError> {
        let url = format!("{}/faults", self.base);
        self.call(self.http.get(&url), "GET /faults").await
    }

    pub async fn clear(&self) -> Result<(), LabError> {
        let url = format!("{}/faults", self.base);
        self.call(self.http.delete(&url), "DELETE /faults")
            .await
            .map(drop)
    }
}

/// Milliseconds from an attempt's start to its end (0 while running).
pub fn attempt_ms(a: &Value) -> i64 {
    let (s, f) = (
        a["started_at_ms"].as_i64().unwrap_or(0),
        a["finished_at_ms"].as_i64().unwrap_or(0),
    );
    if f > 0 { f - s } else { 0 }
}

/// One line per attempt: `thumbnail #2  312 ms  error...`.
pub fn describe_attempt(a: &Value) -> String {
    let err = a["error"].as_str().unwrap_or_default();
    let ms = attempt_ms(a);
    let took = if a["finished_at_ms"].as_i64().unwrap_or(0) > 0 {
        format!("{ms} ms")
    } else {
        "running".into()
    };
    let outcome = if err.is_empty() {
        "ok".to_string()
    } else {
        format!("failed: {err}")
    };
    format!(
        "{:<10} attempt {}  {:>8}  {outcome}",
        a["step"].as_str().unwrap_or("?"),
        a["attempt"].as_u64().unwrap_or(0),
        took
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        assert_eq!(type_of("a.JPG"), Some(("image", "image/jpeg")));
        assert_eq!(type_of("clip.mp4"), Some(("video", "video/mp4")));
        assert_eq!(type_of("notes.txt"), None);
        assert_eq!(type_of("noext"), None);
    }
}
