//! The sweep's own eyes: besides every participant's `Scan`, compliance
//! looks for the subject where no participant would think to — every Redis
//! key, every S3 object and every message of every topic — so residue a
//! participant does not know about (a key written by hand, a stray object,
//! a personal field in an event) fails the DSAR instead of hiding.
//!
//! - Redis: `SCAN` over all keys for names containing the user id or an
//!   e-mail address (values are not read: the participants own them).
//! - S3: every object of every bucket but the audit and export buckets, by
//!   key (user id or e-mail address in it).
//! - Topics: every message of every topic (internal `__` topics aside), from
//!   the first retained offset to the end: key, headers and payload bytes
//!   searched for the e-mail addresses. User ids are pseudonymous in events
//!   (ADR 0012), so they are not searched for there.

use std::time::{Duration, Instant};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use shopstream_dsar::{StoreCount, Subject};

/// Bound on one topic scan (every topic together).
pub const TOPIC_SCAN_TIMEOUT: Duration = Duration::from_secs(120);
/// One poll's wait, and the quiet spell after which a topic scan ends.
const POLL: Duration = Duration::from_millis(250);
const QUIET: Duration = Duration::from_secs(3);
/// Keys per `SCAN` call.
const REDIS_SCAN_COUNT: usize = 1000;
/// Residue entries kept per check (the count is exact).
const RESIDUE_SHOWN: usize = 10;

/// What one independent check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub check: StoreCount,
    pub residue: Vec<String>,
}

fn found(store: &str, detail: String, hits: Vec<String>) -> Found {
    Found {
        check: StoreCount::new(store, hits.len() as u64, &detail),
        residue: hits.into_iter().take(RESIDUE_SHOWN).collect(),
    }
}

fn needles(s: &Subject) -> Vec<String> {
    let mut n = vec![s.user_id.to_string(), s.user_id.simple().to_string()];
    n.extend(s.emails.iter().filter(|e| !e.is_empty()).cloned());
    n
}

/// Redis keys whose names hold the user id or an e-mail address.
pub async fn redis_keys(
    redis: &mut redis::aio::ConnectionManager,
    s: &Subject,
) -> Result<Found, String> {
    let mut hits = Vec::new();
    let mut scanned = 0u64;
    for needle in needles(s) {
        // Glob metacharacters in an address are escaped.
        let pattern = format!("*{}*", needle.replace(['*', '?', '[', ']'], "\\$0"));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(REDIS_SCAN_COUNT)
                .query_async(redis)
                .await
                .map_err(|e| format!("redis: {e}"))?;
            scanned += 1;
            for k in keys {
                if !hits.contains(&format!("redis key {k}")) {
                    hits.push(format!("redis key {k}"));
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(found(
        "sweep.redis",
        format!("key names holding the user id or an e-mail ({scanned} SCAN calls)"),
        hits,
    ))
}

/// S3 objects (every bucket but `skip`) whose key holds the user id or an
/// e-mail address.
pub async fn s3_objects(
    s3: &aws_sdk_s3::Client,
    skip: &[String],
    s: &Subject,
) -> Result<Found, String> {
    let buckets = s3
        .list_buckets()
        .send()
        .await
        .map_err(|e| format!("s3 list buckets: {}", aws_sdk_s3::Error::from(e)))?;
    let needles = needles(s);
    let (mut hits, mut listed, mut nbuckets) = (Vec::new(), 0u64, 0);
    for b in buckets.buckets() {
        let Some(name) = b.name() else { continue };
        if skip.iter().any(|x| x == name) {
            continue;
        }
        nbuckets += 1;
        let mut pages = s3.list_objects_v2().bucket(name).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| format!("s3 list {name}: {}", aws_sdk_s3::Error::from(e)))?;
            for o in page.contents() {
                listed += 1;
                let key = o.key().unwrap_or_default();
                if needles.iter().any(|n| key.contains(n.as_str())) {
                    hits.push(format!("s3 object {name}/{key}"));
                }
            }
        }
    }
    Ok(found(
        "sweep.s3",
        format!("{listed} objects in {nbuckets} buckets, by key"),
        hits,
    ))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Messages of every topic that hold one of the subject's e-mail addresses
/// (key, header or payload).
pub async fn topics(brokers: &str, s: &Subject) -> Result<Found, String> {
    if s.emails.is_empty() {
        return Ok(found(
            "sweep.topics",
            "no e-mail address known for the subject: nothing readable to look for".into(),
            vec![],
        ));
    }
    let brokers = brokers.to_string();
    let needles: Vec<Vec<u8>> = s.emails.iter().map(|e| e.as_bytes().to_vec()).collect();
    tokio::task::spawn_blocking(move || scan_topics(&brokers, &needles, TOPIC_SCAN_TIMEOUT))
        .await
        .map_err(|e| format!("topic scan: {e}"))?
}

fn scan_topics(brokers: &str, needles: &[Vec<u8>], timeout: Duration) -> Result<Found, String> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set("group.id", "compliance-sweep")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("socket.connection.setup.timeout.ms", "5000")
        .create()
        .map_err(|e| format!("kafka: {e}"))?;
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| format!("kafka metadata: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    let mut ntopics = 0;
    for t in md.topics() {
        if t.name().starts_with("__") {
            continue;
        }
        ntopics += 1;
        for p in t.partitions() {
            let (lo, hi) = consumer
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                .map_err(|e| format!("kafka watermarks {}/{}: {e}", t.name(), p.id()))?;
            if hi > lo {
                tpl.add_partition_offset(t.name(), p.id(), Offset::Offset(lo))
                    .map_err(|e| format!("kafka: {e}"))?;
                ends.insert((t.name().to_string(), p.id()), hi);
            }
        }
    }
    let mut hits = Vec::new();
    let mut read = 0u64;
    let mut idle = Duration::ZERO;
    if !ends.is_empty() {
        consumer
            .assign(&tpl)
            .map_err(|e| format!("kafka assign: {e}"))?;
        while !ends.is_empty() {
            if started.elapsed() > timeout {
                return Err(format!(
                    "topic scan: {read} messages read in {timeout:?}, {} partitions unfinished",
                    ends.len()
                ));
            }
            let Some(m) = consumer.poll(POLL) else {
                // A partition whose last offsets are gone (compaction,
                // transaction markers) never delivers its high watermark - 1:
                // after a quiet spell everything deliverable has been read.
                idle += POLL;
                if idle >= QUIET {
                    break;
                }
                continue;
            };
            let m = m.map_err(|e| format!("kafka: {e}"))?;
            idle = Duration::ZERO;
            read += 1;
            let mut hit = m
                .payload()
                .is_some_and(|p| needles.iter().any(|n| contains(p, n)))
                || m.key()
                    .is_some_and(|k| needles.iter().any(|n| contains(k, n)));
            if let Some(h) = m.headers() {
                for hd in h.iter() {
                    hit |= hd
                        .value
                        .is_some_and(|v| needles.iter().any(|n| contains(v, n)));
                }
            }
            if hit {
                hits.push(format!(
                    "topic message {}/{}@{}",
                    m.topic(),
                    m.partition(),
                    m.offset()
                ));
            }
            let k = (m.topic().to_string(), m.partition());
            if ends.get(&k).is_some_and(|hi| m.offset() + 1 >= *hi) {
                ends.remove(&k);
            }
        }
    }
    Ok(found(
        "sweep.topics",
        format!(
            "{read} messages in {ntopics} topics, for the e-mail addresses ({} ms)",
            started.elapsed().as_millis()
        ),
        hits,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_search_ignores_ascii_case() {
        assert!(contains(
            b"{\"to\":\"Ann@Example.test\"}",
            b"ann@example.test"
        ));
        assert!(!contains(b"ann@example.tes", b"ann@example.test"));
        assert!(!contains(b"abc", b""));
    }
}
