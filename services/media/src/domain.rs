//! The media domain, pure: what may be uploaded (the [`Policy`]), what the
//! bytes really are ([`sniff`]), the pipeline's steps per kind ([`Step::plan`]),
//! moderation's rules ([`moderate`], with a perceptual-hash blocklist), the
//! thumbnail geometry and the content-addressed keys of variants. No I/O, no
//! clock: the workflow and the processing module call these.

use serde::{Deserialize, Serialize};

/// What an asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Video => "video",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "image" => Some(Kind::Image),
            "video" => Some(Kind::Video),
            _ => None,
        }
    }
}

/// Where an asset is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Registered; the client has not uploaded yet.
    AwaitingUpload,
    /// Uploaded; the pipeline runs.
    Processing,
    Ready,
    /// Refused by moderation.
    Rejected,
    /// A step failed after its attempts.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::AwaitingUpload => "awaiting_upload",
            Status::Processing => "processing",
            Status::Ready => "ready",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::AwaitingUpload,
            Status::Processing,
            Status::Ready,
            Status::Rejected,
            Status::Failed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Nothing happens to an asset after these.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Ready | Status::Rejected | Status::Failed)
    }
}

/// A step of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Read the upload, check what it really is, strip its metadata into a
    /// clean original.
    Ingest,
    /// Policy and the perceptual-hash blocklist.
    Moderate,
    /// Three sizes (of the poster frame, for clips).
    Thumbnail,
    /// Clips only: H.264/AAC MP4 at two heights.
    Transcode,
    /// Commit the variants and publish `media.events`.
    Ready,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Ingest,
        Step::Moderate,
        Step::Thumbnail,
        Step::Transcode,
        Step::Ready,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Ingest => "ingest",
            Step::Moderate => "moderate",
            Step::Thumbnail => "thumbnail",
            Step::Transcode => "transcode",
            Step::Ready => "ready",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The steps an asset of `kind` goes through, in order (images have
    /// nothing to transcode).
    pub fn plan(kind: Kind) -> &'static [Step] {
        match kind {
            Kind::Image => &[Step::Ingest, Step::Moderate, Step::Thumbnail, Step::Ready],
            Kind::Video => &Step::ALL,
        }
    }
}

/// What may be uploaded, and the bounds every decoder works within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub image_types: Vec<String>,
    pub video_types: Vec<String>,
    pub max_image_bytes: u64,
    pub max_video_bytes: u64,
    /// Neither side may be longer (a 100,000 px header is refused before
    /// anything is decoded).
    pub max_dimension: u32,
    /// Nor may width × height exceed this (decompression bombs).
    pub max_pixels: u64,
    /// Smaller images are refused by moderation (icons, tracking pixels).
    pub min_dimension: u32,
    pub max_video_ms: u64,
}

pub const MIB: u64 = 1024 * 1024;

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            image_types: ["image/jpeg", "image/png", "image/webp", "image/gif"]
                .map(String::from)
                .to_vec(),
            video_types: ["video/mp4", "video/quicktime", "video/webm"]
                .map(String::from)
                .to_vec(),
            max_image_bytes: 20 * MIB,
            max_video_bytes: 200 * MIB,
            max_dimension: 12_000,
            max_pixels: 50_000_000,
            min_dimension: 16,
            max_video_ms: 120_000,
        }
    }
}

/// One refused field of a declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl Policy {
    /// Check what a client declares before any upload URL is issued; every
    /// problem is listed.
    pub fn check_declared(
        &self,
        kind: Kind,
        content_type: &str,
        size_bytes: u64,
    ) -> Result<(), Vec<FieldError>> {
        let mut errors = vec![];
        let (types, max) = match kind {
            Kind::Image => (&self.image_types, self.max_image_bytes),
            Kind::Video => (&self.video_types, self.max_video_bytes),
        };
        if !types.iter().any(|t| t == content_type) {
            errors.push(FieldError {
                field: "content_type",
                reason: format!(
                    "{content_type:?} is not an accepted {} type (accepted: {})",
                    kind.as_str(),
                    types.join(", ")
                ),
            });
        }
        if size_bytes == 0 {
            errors.push(FieldError {
                field: "size_bytes",
                reason: "must be at least 1".into(),
            });
        } else if size_bytes > max {
            errors.push(FieldError {
                field: "size_bytes",
                reason: format!(
                    "{size_bytes} bytes is over the {} limit of {} MiB",
                    kind.as_str(),
                    max / MIB
                ),
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Dimensions an image header declares, checked before decoding.
    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<(), String> {
        if width == 0 || height == 0 {
            return Err(format!("{width}×{height} px has no pixels"));
        }
        if width > self.max_dimension || height > self.max_dimension {
            return Err(format!(
                "{width}×{height} px: a side is over {} px",
                self.max_dimension
            ));
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(format!(
                "{width}×{height} px is over {} pixels (a decompression bomb, or simply too large)",
                self.max_pixels
            ));
        }
        Ok(())
    }
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Gif,
    /// ISO base media (MP4, QuickTime).
    Mp4,
    #[serde(rename = "webm")]
    WebM,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Gif => "gif",
            Format::Mp4 => "mp4",
            Format::WebM => "webm",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Format::Jpeg | Format::Png | Format::Webp | Format::Gif => Kind::Image,
            Format::Mp4 | Format::WebM => Kind::Video,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Gif => "image/gif",
            Format::Mp4 => "video/mp4",
            Format::WebM => "video/webm",
        }
    }
}

/// The real format of `bytes` from their magic numbers, whatever the
/// uploader declared.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    let starts = |m: &[u8]| bytes.starts_with(m);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some(Format::Gif)
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        Some(Format::Mp4)
    } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(Format::WebM)
    } else {
        None
    }
}

/// Is the sniffed `format` acceptable for an upload declared as `kind`?
/// (Within a kind the exact type may differ: a `.jpg` that is a PNG is fine.)
pub fn check_format(declared: Kind, format: Option<Format>) -> Result<Format, String> {
    match format {
        None => Err(format!(
            "the bytes are not any accepted {} format",
            declared.as_str()
        )),
        Some(f) if f.kind() != declared => Err(format!(
            "declared {} but the bytes are {}",
            declared.as_str(),
            f.content_type()
        )),
        Some(f) => Ok(f),
    }
}

/// Does the file end the way its format ends? Some decoders pad a truncated
/// file with grey rather than fail, so ingest checks first: a JPEG has its
/// end-of-image marker after the start of its scan (entropy-coded data
/// never holds `FF D9`), a PNG its `IEND` chunk, a GIF its trailer, a WebP
/// all the bytes its RIFF header counts.
pub fn check_complete(format: Format, bytes: &[u8]) -> Result<(), String> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let complete = match format {
        Format::Jpeg => find(bytes, &[0xFF, 0xDA])
            .is_some_and(|sos| find(&bytes[sos..], &[0xFF, 0xD9]).is_some()),
        Format::Png => find(bytes, b"IEND").is_some(),
        Format::Gif => bytes.contains(&0x3B) && bytes.len() > 13,
        Format::Webp => {
            bytes.len() >= 8
                && (u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize)
                    .saturating_add(8)
                    <= bytes.len()
        }
        Format::Mp4 | Format::WebM => true,
    };
    if complete {
        Ok(())
    } else {
        Err(format!(
            "the {} is truncated (it does not end the way the format ends)",
            format.content_type()
        ))
    }
}

/// A 64-bit difference hash of a 9×8 greyscale thumbnail (row-major): bit
/// i is set when a pixel is brighter than its right neighbour. Resizing,
/// recompression and small brightness changes move few bits.
pub fn dhash(gray_9x8: &[u8; 72]) -> u64 {
    let mut h = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let l = gray_9x8[y * 9 + x];
            let r = gray_9x8[y * 9 + x + 1];
            h = (h << 1) | u64::from(l > r);
        }
    }
    h
}

/// Bits in which two hashes differ.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Hashes at most this far apart are the same picture (of 64 bits).
pub const NEAR_DUPLICATE_BITS: u32 = 10;

/// What moderation looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerationInput {
    pub kind: Kind,
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// Of the image, or of the clip's poster frame.
    pub phash: u64,
    pub duration_ms: u64,
}

/// Moderation's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Approved,
    Rejected(Vec<String>),
}

/// A later classifier (a model) plugs in here; its reasons join the rules'.
pub trait Classifier: Send + Sync {
    fn classify(&self, input: &ModerationInput) -> Vec<String>;
}

/// No classifier: the rules alone decide.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClassifier;

impl Classifier for NoClassifier {
    fn classify(&self, _: &ModerationInput) -> Vec<String> {
        vec![]
    }
}

/// The rules: the file type is accepted for its kind; the dimensions and the
/// duration are within policy; the picture is not a near-duplicate of a
/// blocked one; and whatever the classifier says. Every reason is listed.
pub fn moderate(
    input: &ModerationInput,
    policy: &Policy,
    blocklist: &[u64],
    classifier: &dyn Classifier,
) -> Verdict {
    let mut reasons = vec![];
    let types = match input.kind {
        Kind::Image => &policy.image_types,
        Kind::Video => &policy.video_types,
    };
    let ct = input.format.content_type();
    if input.format.kind() != input.kind || !types.iter().any(|t| t == ct) {
        reasons.push(format!(
            "file type {ct} is not accepted for a {}",
            input.kind.as_str()
        ));
    }
    if input.width < policy.min_dimension || input.height < policy.min_dimension {
        reasons.push(format!(
            "{}×{} px is under the {} px minimum",
            input.width, input.height, policy.min_dimension
        ));
    }
    if let Err(e) = policy.check_dimensions(input.width, input.height) {
        reasons.push(e);
    }
    if input.kind == Kind::Video && input.duration_ms > policy.max_video_ms {
        reasons.push(format!(
            "{} s is over the {} s limit for clips",
            input.duration_ms / 1000,
            policy.max_video_ms / 1000
        ));
    }
    if let Some((blocked, d)) = blocklist
        .iter()
        .map(|b| (*b, hamming(*b, input.phash)))
        .filter(|(_, d)| *d <= NEAR_DUPLICATE_BITS)
        .min_by_key(|(_, d)| *d)
    {
        reasons.push(format!(
            "near-duplicate of a blocked image (hash {blocked:016x}, {d} of 64 bits differ)"
        ));
    }
    reasons.extend(classifier.classify(input));
    if reasons.is_empty() {
        Verdict::Approved
    } else {
        Verdict::Rejected(reasons)
    }
}

/// Longest side of each thumbnail, with its variant name.
pub const THUMBNAILS: [(&str, u32); 3] =
    [("thumb_160", 160), ("thumb_480", 480), ("thumb_1080", 1080)];

/// Size of a thumbnail whose longest side is `target`, keeping the aspect
/// ratio and never enlarging.
pub fn fit(width: u32, height: u32, target: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= target {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(target) + u64::from(long) / 2) / u64::from(long)).max(1)
            as u32
    };
    (scale(width), scale(height))
}

/// Heights of the clip renditions.
pub const RENDITIONS: [(&str, u32); 2] = [("mp4_720", 720), ("mp4_360", 360)];

/// The object key of a variant: its content's SHA-256, so the same bytes
/// always land on the same key and a retried step cannot write a second,
/// different copy under it.
pub fn content_key(sha256_hex: &str, ext: &str) -> String {
    format!(
        "v/{}/{sha256_hex}.{ext}",
        &sha256_hex[..2.min(sha256_hex.len())]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn declarations_outside_policy_are_refused_with_every_reason() {
        let p = Policy::default();
        assert!(p.check_declared(Kind::Image, "image/jpeg", 1).is_ok());
        assert!(
            p.check_declared(Kind::Video, "video/mp4", 200 * MIB)
                .is_ok()
        );
        let e = p
            .check_declared(Kind::Image, "application/pdf", 21 * MIB)
            .unwrap_err();
        assert_eq!(
            e.iter().map(|f| f.field).collect::<Vec<_>>(),
            ["content_type", "size_bytes"]
        );
        assert!(p.check_declared(Kind::Image, "video/mp4", 10).is_err());
        assert!(p.check_declared(Kind::Video, "video/mp4", 0).is_err());
    }

    #[test]
    fn sniffing_goes_by_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom"), Some(Format::Mp4));
        assert_eq!(sniff(b"%PDF-1.7"), None);
        assert_eq!(sniff(b""), None);
        assert!(check_format(Kind::Image, Some(Format::Mp4)).is_err());
        assert!(check_format(Kind::Image, None).is_err());
        assert_eq!(
            check_format(Kind::Image, Some(Format::Png)),
            Ok(Format::Png)
        );
    }

    #[test]
    fn truncated_files_are_told_apart() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3, 0xFF, 0xD9];
        assert!(check_complete(Format::Jpeg, &jpeg).is_ok());
        assert!(check_complete(Format::Jpeg, &jpeg[..7]).is_err());
        assert!(check_complete(Format::Png, b"\x89PNG....IEND\xaeB`\x82").is_ok());
        assert!(check_complete(Format::Png, b"\x89PNG....").is_err());
        let mut webp = b"RIFF\x08\0\0\0WEBPVP8 ".to_vec();
        assert!(check_complete(Format::Webp, &webp).is_ok());
        webp.truncate(10);
        assert!(check_complete(Format::Webp, &webp).is_err());
    }

    #[test]
    fn oversize_headers_are_refused_before_decoding() {
        let p = Policy::default();
        assert!(p.check_dimensions(100_000, 100_000).is_err());
        assert!(p.check_dimensions(10_000, 10_000).is_err()); // 100 MP
        assert!(p.check_dimensions(0, 10).is_err());
        assert!(p.check_dimensions(4000, 3000).is_ok());
    }

    fn input(phash: u64) -> ModerationInput {
        ModerationInput {
            kind: Kind::Image,
            format: Format::Jpeg,
            width: 800,
            height: 600,
            phash,
            duration_ms: 0,
        }
    }

    #[test]
    fn near_duplicates_of_blocked_images_are_rejected() {
        let p = Policy::default();
        let blocked = 0xF0F0_F0F0_1234_5678u64;
        assert_eq!(
            moderate(&input(!blocked), &p, &[blocked], &NoClassifier),
            Verdict::Approved
        );
        // 3 bits off: the same picture.
        let Verdict::Rejected(r) = moderate(&input(blocked ^ 0b111), &p, &[blocked], &NoClassifier)
        else {
            panic!("a near-duplicate passed")
        };
        assert!(
            r[0].contains("near-duplicate") && r[0].contains("3 of 64"),
            "{r:?}"
        );
        let tiny = ModerationInput {
            width: 8,
            height: 8,
            ..input(1)
        };
        assert!(matches!(
            moderate(&tiny, &p, &[], &NoClassifier),
            Verdict::Rejected(_)
        ));
    }

    #[test]
    fn the_classifier_hook_adds_its_reasons() {
        struct Refuse;
        impl Classifier for Refuse {
            fn classify(&self, _: &ModerationInput) -> Vec<String> {
                vec!["model: unsafe".into()]
            }
        }
        assert_eq!(
            moderate(&input(0), &Policy::default(), &[], &Refuse),
            Verdict::Rejected(vec!["model: unsafe".into()])
        );
    }

    #[test]
    fn plans() {
        assert!(!Step::plan(Kind::Image).contains(&Step::Transcode));
        assert_eq!(Step::plan(Kind::Video).len(), 5);
        for s in Step::ALL {
            assert_eq!(Step::parse(s.as_str()), Some(s));
        }
    }

    proptest! {
        #[test]
        fn thumbnails_fit_keep_the_ratio_and_never_enlarge(w in 1u32..20_000, h in 1u32..20_000, t in 1u32..2_000) {
            let (tw, th) = fit(w, h, t);
            prop_assert!(tw.max(th) <= t.max(w.max(h).min(t)));
            prop_assert!(tw <= w && th <= h);
            prop_assert!(tw >= 1 && th >= 1);
            if w.max(h) > t {
                prop_assert_eq!(tw.max(th), t);
            }
        }

        #[test]
        fn sniffing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = sniff(&bytes);
        }
    }
}
