//! Generated pictures and clips for labs, benchmarks, tests and the seed:
//! nothing is copied from files. A photo is a smooth, seeded pattern; a
//! photo can carry a GPS position in its EXIF (to show ingest removes it);
//! a near-duplicate is the same photo resized, brightened and recompressed;
//! a clip is ffmpeg's test pattern with a tone.

use std::path::Path;

use image::{DynamicImage, Rgb, RgbImage, codecs::jpeg::JpegEncoder, imageops::FilterType};

use crate::process::{self, ProcessError};

/// A `width`×`height` JPEG whose pattern depends on `seed`.
pub fn photo(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let (a, b, c) = (
        (seed % 97) as f32 / 97.0,
        ((seed / 97) % 89) as f32 / 89.0,
        ((seed / 8633) % 83) as f32 / 83.0,
    );
    // sin(p + q) and exp(-(du² + dv²)) split into a row part and a column
    // part, so each pixel costs a few multiplications (fast in debug builds).
    let (fx, fy) = (
        (3.0 + 6.0 * a) * std::f32::consts::PI,
        (2.0 + 5.0 * b) * std::f32::consts::PI,
    );
    let cols: Vec<(f32, f32, f32, f32)> = (0..width)
        .map(|x| {
            let u = x as f32 / width as f32;
            (
                (u * fx).sin(),
                (u * fx).cos(),
                (-((u - c) * 4.0).powi(2)).exp(),
                u,
            )
        })
        .collect();
    let rows: Vec<(f32, f32, f32, f32)> = (0..height)
        .map(|y| {
            let v = y as f32 / height as f32;
            (
                (v * fy).sin(),
                (v * fy).cos(),
                (-((v - b) * 4.0).powi(2)).exp(),
                v,
            )
        })
        .collect();
    let img = RgbImage::from_fn(width, height, |x, y| {
        let (su, cu, bu, u) = cols[x as usize];
        let (sv, cv, bv, v) = rows[y as usize];
        let wave = su * cv + cu * sv;
        let blob = bu * bv;
        Rgb([
            (255.0 * (0.5 + 0.4 * wave) * (1.0 - 0.5 * blob)) as u8,
            (255.0 * (0.3 + 0.6 * v * a + 0.3 * blob)).min(255.0) as u8,
            (255.0 * (0.4 + 0.5 * u * (1.0 - b))).min(255.0) as u8,
        ])
    });
    encode_jpeg(&DynamicImage::ImageRgb8(img), 88)
}

fn encode_jpeg(img: &DynamicImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding an RGB buffer into memory cannot fail.
    let _ = JpegEncoder::new_with_quality(&mut out, quality).encode_image(&img.to_rgb8());
    out
}

/// The same picture as `jpeg`, resized by `scale`, brighter by `lift` and
/// recompressed: what someone re-uploading a blocked image might send.
pub fn near_duplicate(jpeg: &[u8], scale: f32, lift: i32) -> Result<Vec<u8>, ProcessError> {
    let (_, img, _) = process::decode_image(jpeg, &crate::domain::Policy::default())?;
    let (w, h) = (
        ((img.width() as f32) * scale).max(16.0) as u32,
        ((img.height() as f32) * scale).max(16.0) as u32,
    );
    let resized = img.resize_exact(w, h, FilterType::Triangle).brighten(lift);
    Ok(encode_jpeg(&resized, 75))
}

fn rational(num: u32, den: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&num.to_be_bytes());
    b[4..].copy_from_slice(&den.to_be_bytes());
    b
}

/// Degrees as EXIF's degrees/minutes/seconds rationals.
fn dms(deg: f64) -> Vec<u8> {
    let d = deg.abs();
    let whole = d.floor();
    let minutes = ((d - whole) * 60.0).floor();
    let seconds = ((d - whole) * 60.0 - minutes) * 60.0;
    [
        rational(whole as u32, 1),
        rational(minutes as u32, 1),
        rational((seconds * 100.0).round() as u32, 100),
    ]
    .concat()
}

/// `jpeg` with an EXIF block (APP1) holding a camera make and a GPS
/// position, as a phone writes it.
pub fn with_gps(jpeg: &[u8], lat: f64, lon: f64) -> Vec<u8> {
    // A big-endian TIFF: IFD0 {Make, GPSInfo pointer}, then the GPS IFD
    // {LatitudeRef, Latitude, LongitudeRef, Longitude}, then the values.
    let make = b"Shopstream Phone\0";
    let mut t: Vec<u8> = vec![];
    t.extend(b"MM\0\x2a");
    t.extend(8u32.to_be_bytes());
    let ifd0_len = 2 + 2 * 12 + 4;
    let gps_ifd = 8 + ifd0_len as u32;
    let gps_len = 2 + 4 * 12 + 4;
    let data = gps_ifd + gps_len as u32;
    let make_off = data;
    let lat_off = make_off + make.len() as u32;
    let lon_off = lat_off + 24;
    let entry = |t: &mut Vec<u8>, tag: u16, ty: u16, count: u32, value: [u8; 4]| {
        t.extend(tag.to_be_bytes());
        t.extend(ty.to_be_bytes());
        t.extend(count.to_be_bytes());
        t.extend(value);
    };
    // IFD0
    t.extend(2u16.to_be_bytes());
    entry(&mut t, 0x010F, 2, make.len() as u32, make_off.to_be_bytes());
    entry(&mut t, 0x8825, 4, 1, gps_ifd.to_be_bytes());
    t.extend(0u32.to_be_bytes());
    // GPS IFD
    t.extend(4u16.to_be_bytes());
    let ns = if lat >= 0.0 { b'N' } else { b'S' };
    let ew = if lon >= 0.0 { b'E' } else { b'W' };
    entry(&mut t, 0x0001, 2, 2, [ns, 0, 0, 0]);
    entry(&mut t, 0x0002, 5, 3, lat_off.to_be_bytes());
    entry(&mut t, 0x0003, 2, 2, [ew, 0, 0, 0]);
    entry(&mut t, 0x0004, 5, 3, lon_off.to_be_bytes());
    t.extend(0u32.to_be_bytes());
    // Values
    t.extend(make);
    t.extend(dms(lat));
    t.extend(dms(lon));
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(t);
    let mut out = Vec::with_capacity(jpeg.len() + app1.len() + 4);
    out.extend(&jpeg[..2]); // SOI
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The start of a PNG whose (valid) header claims `width`×`height` pixels
/// and nothing behind it: what a decompression bomb shows a decoder first.
pub fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(width.to_be_bytes());
    chunk.extend(height.to_be_bytes());
    chunk.extend([8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&chunk);
    png.extend(crc32(&chunk).to_be_bytes());
    // An empty first data chunk: decoders read the header up to here.
    png.extend(0u32.to_be_bytes());
    png.extend(b"IDAT");
    png.extend(crc32(b"IDAT").to_be_bytes());
    png
}

/// A `seconds`-long clip of ffmpeg's test pattern at `width`×`height`, 30
/// fps, H.264 with a 440 Hz AAC tone, written to `out`.
pub async fn clip(out: &Path, seconds: u32, width: u32, height: u32) -> Result<(), ProcessError> {
    let video = format!("testsrc2=duration={seconds}:size={width}x{height}:rate=30");
    let audio = format!("sine=frequency=440:duration={seconds}");
    let o = out.display().to_string();
    let status = tokio::process::Command::new("ffmpeg")
        .args([
            "-y",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            &video,
            "-f",
            "lavfi",
            "-i",
            &audio,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            &o,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            ProcessError::Tool(format!(
                "ffmpeg: {e} (install it with {})",
                process::FFMPEG_INSTALL
            ))
        })?;
    if status.status.success() {
        Ok(())
    } else {
        Err(ProcessError::Tool(format!(
            "ffmpeg could not make the clip: {}",
            String::from_utf8_lossy(&status.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{domain, process};

    #[test]
    fn a_gps_photo_reads_back_and_ingest_removes_it() {
        let jpeg = with_gps(&photo(320, 240, 7), 48.8584, 2.2945);
        let before = process::file_exif(&jpeg);
        assert!(before.gps, "{before:?}");
        assert!(before.tags.iter().any(|t| t == "GPSLatitude"), "{before:?}");
        let i = process::ingest_image(&jpeg, &domain::Policy::default()).unwrap();
        assert!(i.removed.gps);
        assert!(!process::file_exif(&i.clean.bytes).gps);
        assert!(process::file_exif(&i.clean.bytes).tags.is_empty());
    }

    #[test]
    fn near_duplicates_hash_near_and_other_photos_far() {
        let p = domain::Policy::default();
        let a = photo(800, 600, 1);
        let b = near_duplicate(&a, 0.7, 12).unwrap();
        let c = photo(800, 600, 4242);
        let h = |x: &[u8]| process::ingest_image(x, &p).unwrap().phash;
        assert!(domain::hamming(h(&a), h(&b)) <= domain::NEAR_DUPLICATE_BITS);
        assert!(domain::hamming(h(&a), h(&c)) > domain::NEAR_DUPLICATE_BITS);
    }
}
