//! The audit chain in S3: record `seq` is the object `chain/{seq:012}.jws`
//! of the audit bucket, a compact JWS of an [`AuditRecord`] whose `prev` is
//! the SHA-256 of record `seq - 1`'s bytes. Records are written with
//! put-if-absent (`If-None-Match: *`); the S3 server refuses overwrites and
//! deletes in the audit bucket (the native server's write-once buckets; on
//! AWS, Object Lock in compliance mode), so a record once written stays.

use aws_sdk_s3::primitives::ByteStream;

use crate::domain::{AuditRecord, GENESIS, Signer, chain_key, sha256_hex};

/// Records looked at, newest first, for one this DSAR already wrote (a
/// retried append after a crash between the write and its bookkeeping).
const LOOK_BACK: u64 = 32;
/// Appends tried before giving up on a busy chain.
const APPEND_TRIES: u32 = 20;

fn s3_err<E: std::error::Error>(what: &str, e: aws_sdk_s3::error::SdkError<E>) -> String
where
    aws_sdk_s3::Error: From<aws_sdk_s3::error::SdkError<E>>,
{
    format!("s3 {what}: {}", aws_sdk_s3::Error::from(e))
}

/// Sequence numbers of the chain, ascending.
pub async fn seqs(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("chain/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| s3_err("list chain", e))?;
        for o in page.contents() {
            if let Some(seq) = o
                .key()
                .and_then(|k| k.strip_prefix("chain/"))
                .and_then(|k| k.strip_suffix(".jws"))
                .and_then(|k| k.parse().ok())
            {
                out.push(seq);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The bytes of record `seq`, or None.
pub async fn get(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    seq: u64,
) -> Result<Option<Vec<u8>>, String> {
    match s3
        .get_object()
        .bucket(bucket)
        .key(chain_key(seq))
        .send()
        .await
    {
        Ok(o) => Ok(Some(
            o.body
                .collect()
                .await
                .map_err(|e| format!("s3 read chain: {e}"))?
                .into_bytes()
                .to_vec(),
        )),
        Err(e) => {
            let e = aws_sdk_s3::Error::from(e);
            if matches!(e, aws_sdk_s3::Error::NoSuchKey(_)) {
                Ok(None)
            } else {
                Err(format!("s3 get chain record {seq}: {e}"))
            }
        }
    }
}

/// Was the write refused because the object exists?
fn exists_already<E>(e: &aws_sdk_s3::error::SdkError<E>) -> bool {
    e.raw_response()
        .is_some_and(|r| r.status().as_u16() == 412 || r.status().as_u16() == 409)
}

/// Append the record `build(seq, prev)` makes, unless a record of the same
/// DSAR is already among the last ones. Returns its seq and hash.
pub async fn append(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    signer: &Signer,
    dsar_id: &str,
    build: impl Fn(u64, &str) -> AuditRecord,
) -> Result<(u64, String), String> {
    for _ in 0..APPEND_TRIES {
        let seqs = seqs(s3, bucket).await?;
        for &seq in seqs.iter().rev().take(LOOK_BACK as usize) {
            if let Some(b) = get(s3, bucket, seq).await?
                && crate::domain::jws_payload(&String::from_utf8_lossy(&b))
                    .is_some_and(|p| p["dsar_id"] == dsar_id)
            {
                return Ok((seq, sha256_hex(&b)));
            }
        }
        let (seq, prev) = match seqs.last() {
            None => (0, GENESIS.to_string()),
            Some(&last) => {
                let b = get(s3, bucket, last)
                    .await?
                    .ok_or_else(|| format!("chain record {last} listed but not readable"))?;
                (last + 1, sha256_hex(&b))
            }
        };
        let jws = signer.sign("dsar-audit-record", &build(seq, &prev))?;
        let put = s3
            .put_object()
            .bucket(bucket)
            .key(chain_key(seq))
            .if_none_match("*")
            .content_type("application/jose")
            .body(ByteStream::from(jws.clone().into_bytes()))
            .send()
            .await;
        match put {
            Ok(_) => return Ok((seq, sha256_hex(jws.as_bytes()))),
            // Another DSAR took this seq: read the head again.
            Err(e) if exists_already(&e) => continue,
            Err(e) => return Err(s3_err("append chain record", e)),
        }
    }
    Err(format!(
        "the audit chain stayed busy for {APPEND_TRIES} tries"
    ))
}
