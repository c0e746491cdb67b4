//! The pipeline's work on bytes: decode images within bounded limits, strip
//! their metadata into a clean original, make thumbnails and the perceptual
//! hash (the `image` crate); probe, clean, grab a poster frame from and
//! transcode clips (`ffmpeg` and `ffprobe`, child processes). Blocking code:
//! callers run it on the blocking pool.

use std::{io::Cursor, path::Path, process::Stdio};

use image::{
    DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, codecs::jpeg::JpegEncoder,
    imageops::FilterType, metadata::Orientation,
};
use serde::{Deserialize, Serialize};

use crate::domain::{self, Format, Kind, Policy};

/// Why a file cannot be processed. `Invalid` is the file's fault (no retry
/// helps); `Tool` is the machine's (a missing or failing `ffmpeg`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Tool(String),
}

fn invalid(e: impl std::fmt::Display) -> ProcessError {
    ProcessError::Invalid(e.to_string())
}

/// JPEG quality of clean originals and of thumbnails.
const ORIGINAL_QUALITY: u8 = 90;
const THUMB_QUALITY: u8 = 82;
/// Bytes a decoder may allocate beyond the pixels themselves.
const DECODER_SLACK_BYTES: u64 = 64 * 1024 * 1024;

/// An encoded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub ext: &'static str,
    pub width: u32,
    pub height: u32,
}

/// What ingest learned about an image and the clean original it made.
#[derive(Debug, Clone)]
pub struct IngestedImage {
    pub format: Format,
    pub clean: Encoded,
    /// EXIF tags found in the upload and not carried into the clean original.
    pub removed: RemovedMetadata,
    pub phash: u64,
}

/// Metadata ingest removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedMetadata {
    /// Tag names, e.g. "GPSLatitude", "Make", "DateTimeOriginal".
    pub tags: Vec<String>,
    /// True when the upload carried a location.
    pub gps: bool,
}

fn image_format(f: Format) -> Option<ImageFormat> {
    match f {
        Format::Jpeg => Some(ImageFormat::Jpeg),
        Format::Png => Some(ImageFormat::Png),
        Format::Webp => Some(ImageFormat::WebP),
        Format::Gif => Some(ImageFormat::Gif),
        Format::Mp4 | Format::WebM => None,
    }
}

/// Decode an image within `policy`'s bounds: the real format from the bytes,
/// the header's dimensions checked before any pixel is decoded, and the
/// decoder's allocations capped. Applies the EXIF orientation.
pub fn decode_image(
    bytes: &[u8],
    policy: &Policy,
) -> Result<(Format, DynamicImage, Option<Vec<u8>>), ProcessError> {
    let format = domain::check_format(Kind::Image, domain::sniff(bytes)).map_err(invalid)?;
    let f = image_format(format).ok_or_else(|| invalid("not an image"))?;
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), f)
        .into_dimensions()
        .map_err(|e| invalid(format!("unreadable {} header: {e}", format.content_type())))?;
    policy.check_dimensions(w, h).map_err(invalid)?;
    domain::check_complete(format, bytes).map_err(invalid)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), f);
    let mut limits = Limits::default();
    limits.max_image_width = Some(policy.max_dimension);
    limits.max_image_height = Some(policy.max_dimension);
    limits.max_alloc = Some(policy.max_pixels * 4 + DECODER_SLACK_BYTES);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| invalid(format!("unreadable {}: {e}", format.content_type())))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let exif = decoder.exif_metadata().ok().flatten();
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| invalid(format!("undecodable {}: {e}", format.content_type())))?;
    img.apply_orientation(orientation);
    Ok((format, img, exif))
}

/// The EXIF tags in a raw EXIF block (TIFF structure), and whether any is a
/// GPS tag. Unreadable EXIF is reported as one tag, "unreadable EXIF".
pub fn exif_tags(raw: &[u8]) -> RemovedMetadata {
    match exif::Reader::new().read_raw(raw.to_vec()) {
        Ok(e) => {
            let mut tags: Vec<String> = e.fields().map(|f| f.tag.to_string()).collect();
            tags.sort();
            tags.dedup();
            let gps = e.fields().any(|f| f.tag.context() == exif::Context::Gps);
            RemovedMetadata { tags, gps }
        }
        Err(_) => RemovedMetadata {
            tags: vec!["unreadable EXIF".into()],
            gps: false,
        },
    }
}

/// The EXIF tags of a whole file (JPEG, PNG, WebP), for checks and the lab.
pub fn file_exif(bytes: &[u8]) -> RemovedMetadata {
    match exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) {
        Ok(e) => {
            let mut tags: Vec<String> = e.fields().map(|f| f.tag.to_string()).collect();
            tags.sort();
            tags.dedup();
            let gps = e.fields().any(|f| f.tag.context() == exif::Context::Gps);
            RemovedMetadata { tags, gps }
        }
        Err(_) => RemovedMetadata::default(),
    }
}

fn jpeg(img: &DynamicImage, quality: u8) -> Result<Encoded, ProcessError> {
    let rgb = img.to_rgb8();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&rgb)
        .map_err(|e| ProcessError::Tool(format!("jpeg encoder: {e}")))?;
    Ok(Encoded {
        bytes: out,
        content_type: "image/jpeg",
        ext: "jpg",
        width: rgb.width(),
        height: rgb.height(),
    })
}

fn png(img: &DynamicImage) -> Result<Encoded, ProcessError> {
    let img = if img.color().has_alpha() {
        DynamicImage::ImageRgba8(img.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(img.to_rgb8())
    };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .map_err(|e| ProcessError::Tool(format!("png encoder: {e}")))?;
    Ok(Encoded {
        bytes: out.into_inner(),
        content_type: "image/png",
        ext: "png",
        width: img.width(),
        height: img.height(),
    })
}

/// The 64-bit difference hash of a picture.
pub fn phash(img: &DynamicImage) -> u64 {
    let small = img.resize_exact(9, 8, FilterType::Triangle).to_luma8();
    let mut px = [0u8; 72];
    px.copy_from_slice(small.as_raw());
    domain::dhash(&px)
}

/// Ingest an image: decode it within bounds, and re-encode the pixels alone
/// (no EXIF, no XMP, no ICC profile, no text chunks) as the clean original —
/// a JPEG stays a JPEG, anything else becomes a PNG.
pub fn ingest_image(bytes: &[u8], policy: &Policy) -> Result<IngestedImage, ProcessError> {
    let (format, img, exif) = decode_image(bytes, policy)?;
    let removed = exif.as_deref().map(exif_tags).unwrap_or_default();
    let clean = match format {
        Format::Jpeg => jpeg(&img, ORIGINAL_QUALITY)?,
        _ => png(&img)?,
    };
    Ok(IngestedImage {
        format,
        phash: phash(&img),
        clean,
        removed,
    })
}

/// The three thumbnails of a (clean) picture, as JPEG.
pub fn thumbnails(bytes: &[u8], policy: &Policy) -> Result<Vec<(String, Encoded)>, ProcessError> {
    let (_, img, _) = decode_image(bytes, policy)?;
    domain::THUMBNAILS
        .iter()
        .map(|(name, target)| {
            let (w, h) = domain::fit(img.width(), img.height(), *target);
            let t = if (w, h) == (img.width(), img.height()) {
                img.clone()
            } else {
                img.resize_exact(w, h, FilterType::Triangle)
            };
            Ok((name.to_string(), jpeg(&t, THUMB_QUALITY)?))
        })
        .collect()
}

/// The install hint a missing `ffmpeg` fails with.
pub const FFMPEG_INSTALL: &str =
    "apt-get install ffmpeg (Debian/Ubuntu), or `shopstream doctor --fix`";

/// What `ffprobe` says about a clip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub duration_ms: u64,
    pub video_codec: String,
    pub has_audio: bool,
}

fn tool(name: &str) -> Result<std::path::PathBuf, ProcessError> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ProcessError::Tool(format!(
                "{name} not found: video steps need it; install it with {FFMPEG_INSTALL}"
            ))
        })
}

/// Run `program args`; its stdout, or its stderr's last line as the error.
async fn run(program: &str, args: &[&str]) -> Result<Vec<u8>, ProcessError> {
    let bin = tool(program)?;
    let out = tokio::process::Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ProcessError::Tool(format!("{program}: {e}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(invalid(format!("{program} failed: {}", last.trim())))
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

/// Probe a clip: its first video stream's size and codec, its duration,
/// whether it has sound. A file ffprobe cannot read is `Invalid`.
pub async fn probe(path: &Path) -> Result<VideoInfo, ProcessError> {
    let p = path.display().to_string();
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
            &p,
        ],
    )
    .await?;
    let probe: Probe =
        serde_json::from_slice(&out).map_err(|e| invalid(format!("ffprobe: {e}")))?;
    let video = probe
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video"))
        .ok_or_else(|| invalid("the clip has no video stream"))?;
    let duration_ms = probe
        .format
        .and_then(|f| f.duration)
        .and_then(|d| d.parse::<f64>().ok())
        .map(|s| (s * 1000.0) as u64)
        .ok_or_else(|| invalid("the clip has no duration (truncated?)"))?;
    Ok(VideoInfo {
        width: video.width.unwrap_or(0),
        height: video.height.unwrap_or(0),
        duration_ms,
        video_codec: video.codec_name.clone().unwrap_or_default(),
        has_audio: probe
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio")),
    })
}

/// Copy a clip's streams without its metadata (title, location, device) into
/// `out`, with the index at the front.
pub async fn clean_clip(input: &Path, out: &Path) -> Result<(), ProcessError> {
    let (i, o) = (input.display().to_string(), out.display().to_string());
    run(
        "ffmpeg",
        &[
            "-y",
            "-v",
            "error",
            "-i",
            &i,
            "-map",
            "0:v:0",
            "-map",
            "0:a:0?",
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            &o,
        ],
    )
    .await
    .map(drop)
}

/// One frame (at 1 s, or the middle of a shorter clip) as a PNG file.
pub async fn poster_frame(input: &Path, duration_ms: u64, out: &Path) -> Result<(), ProcessError> {
    let at = format!("{:.3}", (duration_ms.min(2_000) as f64 / 2_000.0));
    let (i, o) = (input.display().to_string(), out.display().to_string());
    run(
        "ffmpeg",
        &[
            "-y",
            "-v",
            "error",
            "-ss",
            &at,
            "-i",
            &i,
            "-frames:v",
            "1",
            &o,
        ],
    )
    .await
    .map(drop)
}

/// An H.264/AAC MP4 of `input` at `height` (never enlarged), index first
/// (progressive playback).
pub async fn transcode(input: &Path, height: u32, out: &Path) -> Result<(), ProcessError> {
    let scale = format!("scale=-2:'min({height},ih)'");
    let (i, o) = (input.display().to_string(), out.display().to_string());
    run(
        "ffmpeg",
        &[
            "-y",
            "-v",
            "error",
            "-i",
            &i,
            "-map",
            "0:v:0",
            "-map",
            "0:a:0?",
            "-vf",
            &scale,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-map_metadata",
            "-1",
            "-movflags",
            "+faststart",
            &o,
        ],
    )
    .await
    .map(drop)
}

/// Is `ffmpeg` (and `ffprobe`) on PATH?
pub fn ffmpeg_available() -> bool {
    tool("ffmpeg").is_ok() && tool("ffprobe").is_ok()
}

/// Encode a decoded poster frame (PNG bytes) as a JPEG.
pub fn poster_jpeg(png_bytes: &[u8], policy: &Policy) -> Result<Encoded, ProcessError> {
    let (_, img, _) = decode_image(png_bytes, policy)?;
    jpeg(&img, ORIGINAL_QUALITY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small gradient picture as JPEG.
    pub fn sample_jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
        });
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn ingest_makes_a_clean_original_and_three_thumbnails() {
        let policy = Policy::default();
        let bytes = sample_jpeg(1200, 800);
        let i = ingest_image(&bytes, &policy).unwrap();
        assert_eq!(i.format, Format::Jpeg);
        assert_eq!((i.clean.width, i.clean.height), (1200, 800));
        let t = thumbnails(&i.clean.bytes, &policy).unwrap();
        let sizes: Vec<_> = t
            .iter()
            .map(|(n, e)| (n.as_str(), e.width, e.height))
            .collect();
        assert_eq!(
            sizes,
            [
                ("thumb_160", 160, 107),
                ("thumb_480", 480, 320),
                ("thumb_1080", 1080, 720)
            ]
        );
        // The same bytes make the same thumbnails (content-addressed keys).
        assert_eq!(t, thumbnails(&i.clean.bytes, &policy).unwrap());
    }

    #[test]
    fn a_recompressed_copy_has_a_near_hash() {
        let policy = Policy::default();
        let a = ingest_image(&sample_jpeg(640, 480), &policy).unwrap();
        let b = ingest_image(&sample_jpeg(600, 450), &policy).unwrap();
        assert!(domain::hamming(a.phash, b.phash) <= domain::NEAR_DUPLICATE_BITS);
    }

    #[test]
    fn lies_truncations_and_huge_headers_are_invalid() {
        let policy = Policy::default();
        let jpeg = sample_jpeg(64, 64);
        assert!(matches!(
            ingest_image(&jpeg[..jpeg.len() / 2], &policy),
            Err(ProcessError::Invalid(_))
        ));
        assert!(matches!(
            ingest_image(b"%PDF-1.7 not a picture", &policy),
            Err(ProcessError::Invalid(_))
        ));
        // A PNG header claiming 100,000 × 100,000 px (and nothing behind it).
        let png = crate::samples::png_header(100_000, 100_000);
        let err = ingest_image(&png, &policy).unwrap_err().to_string();
        assert!(err.contains("100000×100000"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Random bytes, and every truncation of a real picture, never panic.
        #[test]
        fn ingest_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = ingest_image(&bytes, &Policy::default());
        }

        #[test]
        fn ingest_never_panics_on_truncated_or_corrupted_files(cut in 0usize..4000, flip in 0usize..4000, bit in 0u8..8) {
            let mut bytes = sample_jpeg(48, 40);
            let n = bytes.len();
            if flip < n { bytes[flip] ^= 1 << bit; }
            bytes.truncate(cut.min(n));
            let _ = ingest_image(&bytes, &Policy::default());
        }
    }
}
