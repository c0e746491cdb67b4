//! `bench --target media`: upload → ready through the public API, one asset
//! at a time (the latency of one upload, not of a queue): N generated 2 MP
//! photos, then M generated 10-second 720p clips, each declared, PUT to S3
//! with its presigned URL and followed to ready. While clips are processed,
//! the media worker's PSS plus its ffmpeg children's is sampled; the peak is
//! reported.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;
use shopstream_labs::{
    media::{self as client},
    target::Gateway,
};
use shopstream_media::samples;

use super::Report;
use crate::exit;

/// 1732 × 1155 ≈ 2.0 MP.
const PHOTO: (u32, u32) = (1732, 1155);
const CLIP: (u32, u32, u32) = (10, 1280, 720);
const ASSET_TIMEOUT: Duration = Duration::from_secs(180);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Serialize)]
pub struct MediaSummary {
    pub photos: usize,
    pub clips: usize,
    /// The media process and its children (ffmpeg), peak while clips ran.
    pub worker_peak_pss_kib: Option<u64>,
}

pub struct MediaArgs {
    pub photos: usize,
    pub clips: usize,
    /// This stack's media process (none with --url).
    pub media_pid: Option<u32>,
}

/// PSS of `pid` and every descendant, in KiB.
fn tree_pss_kib(pid: u32) -> Option<u64> {
    let pss = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
            .ok()
            .and_then(|t| shopstream_runtime::process::parse_smaps_rollup(&t))
            .map(|(_, pss)| pss)
    };
    let mut total = pss(pid)?;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                total += pss(c).unwrap_or(0);
                stack.push(c);
            }
        }
    }
    Some(total)
}

async fn one(gw: &Gateway, name: &str, bytes: Vec<u8>) -> Result<Duration, String> {
    let (kind, ct) = client::type_of(name).ok_or("unknown type")?;
    let d = client::declare(gw, kind, ct, bytes.len() as u64, name, "")
        .await
        .map_err(|e| e.to_string())?;
    let id = d["asset"]["asset_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Upload → ready: from the PUT's start.
    let started = Instant::now();
    client::put(&d["upload"], bytes, |_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    let a = client::follow(gw, &id, ASSET_TIMEOUT, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    match a["status"].as_str() {
        Some("ready") => Ok(started.elapsed()),
        s => Err(format!("{id} ended {s:?}: {}", a["failure_reason"])),
    }
}

fn report(name: &str, n: usize, took: &[Duration], errors: u64, wall: Duration) -> Report {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
    for d in took {
        let _ = h.record((d.as_micros() as u64).max(1));
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Report {
        target: name.to_string(),
        rate_per_s: 0,
        duration_s: wall.as_secs(),
        requests: n as u64,
        ok: took.len() as u64,
        errors,
        dropped: 0,
        achieved_per_s: took.len() as f64 / wall.as_secs_f64().max(0.001),
        latency_ms_p50: ms(0.50),
        latency_ms_p95: ms(0.95),
        latency_ms_p99: ms(0.99),
        latency_ms_max: h.max() as f64 / 1000.0,
        in_flight: None,
        ratio_to_floor: None,
        ok_in_warmup: 0,
    }
}

pub async fn run(
    base: &str,
    args: MediaArgs,
) -> anyhow::Result<Result<(Vec<Report>, MediaSummary), u8>> {
    let mut gw = Gateway::new(base).map_err(|e| anyhow::anyhow!("{e}"))?;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    if let Err(e) = gw
        .signup_and_login(
            &format!("bench-media-{}@bench.shopstream.dev", &suffix[..10]),
            &suffix,
        )
        .await
    {
        eprintln!("error: {e}");
        return Ok(Err(exit::NOT_READY));
    }
    let mut reports = vec![];
    eprintln!(
        "bench: {} photos of {}×{} px, one at a time: upload → ready",
        args.photos, PHOTO.0, PHOTO.1
    );
    let (mut took, mut errors) = (vec![], 0u64);
    let wall = Instant::now();
    for i in 0..args.photos {
        let photo = samples::photo(
            PHOTO.0,
            PHOTO.1,
            10_000 + i as u64 + suffix.len() as u64 * 1000,
        );
        match one(&gw, "bench.jpg", photo).await {
            Ok(d) => took.push(d),
            Err(e) => {
                eprintln!("bench: photo {i}: {e}");
                errors += 1;
            }
        }
    }
    reports.push(report(
        &format!("photo {}×{} upload → ready", PHOTO.0, PHOTO.1),
        args.photos,
        &took,
        errors,
        wall.elapsed(),
    ));
    let peak: Arc<Mutex<Option<u64>>> = Arc::new(Mutex::new(None));
    if args.clips > 0 {
        let dir = std::env::temp_dir().join(format!("shopstream-bench-{}", &suffix[..8]));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("clip.mp4");
        eprintln!(
            "bench: making a {} s {}×{} clip with ffmpeg, then {} uploads of it, one at a time",
            CLIP.0, CLIP.1, CLIP.2, args.clips
        );
        if let Err(e) = samples::clip(&path, CLIP.0, CLIP.1, CLIP.2).await {
            eprintln!("error: {e}");
            return Ok(Err(exit::MISSING_PREREQ));
        }
        let bytes = std::fs::read(&path)?;
        let _ = std::fs::remove_dir_all(&dir);
        let stop = tokio_util::sync::CancellationToken::new();
        let sampler = args.media_pid.map(|pid| {
            let (peak, stop) = (peak.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    if let Some(k) = tree_pss_kib(pid)
                        && let Ok(mut p) = peak.lock()
                    {
                        *p = Some(p.map_or(k, |v: u64| v.max(k)));
                    }
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        });
        let (mut took, mut errors) = (vec![], 0u64);
        let wall = Instant::now();
        for i in 0..args.clips {
            // A different clip each time (content-addressed variants would
            // otherwise be the same objects): append a distinct free box.
            let mut b = bytes.clone();
            let tag = format!("shopstream-bench-{i}-{suffix}");
            b.extend(((8 + tag.len()) as u32).to_be_bytes());
            b.extend(b"free");
            b.extend(tag.as_bytes());
            match one(&gw, "bench.mp4", b).await {
                Ok(d) => took.push(d),
                Err(e) => {
                    eprintln!("bench: clip {i}: {e}");
                    errors += 1;
                }
            }
        }
        stop.cancel();
        if let Some(s) = sampler {
            let _ = s.await;
        }
        reports.push(report(
            &format!("clip {} s {}p upload → ready", CLIP.0, CLIP.2),
            args.clips,
            &took,
            errors,
            wall.elapsed(),
        ));
    }
    let worker_peak_pss_kib = peak.lock().ok().and_then(|p| *p);
    Ok(Ok((
        reports,
        MediaSummary {
            photos: args.photos,
            clips: args.clips,
            worker_peak_pss_kib,
        },
    )))
}
