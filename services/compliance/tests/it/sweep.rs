//! The sweep can fail: residue planted behind the system's back in each kind
//! of store is found — a Postgres row (through its participant's scan), a
//! Redis key, an S3 object and a topic message. And the audit bucket is
//! write-once.

use shopstream_compliance::sweep;
use shopstream_dsar::{Participant, contract::fresh_subject, total};
use shopstream_platform::{
    cache,
    clock::SystemClock,
    events::{Envelope, kafka::KafkaBus},
    ids::SystemIdGen,
    object_store,
};
use shopstream_runtime::testkit;

use crate::Notes;

#[tokio::test]
async fn a_planted_postgres_row_is_found() {
    let notes = Notes::new().await;
    let s = fresh_subject("t-sweep");
    assert_eq!(total(&notes.scan(&s).await.unwrap()), 0);
    notes.add(&s, "planted").await;
    assert_eq!(total(&notes.scan(&s).await.unwrap()), 1);
}

#[tokio::test]
async fn a_planted_redis_key_is_found() {
    let stack = testkit::stack().await;
    let mut r = cache::connect(&stack.endpoints.redis_url).await.unwrap();
    let s = fresh_subject("t-sweep");
    let clean = sweep::redis_keys(&mut r, &s).await.unwrap();
    assert_eq!(clean.check.count, 0, "{clean:?}");
    let key = format!("cart:t-sweep:{}", s.user_id);
    redis::cmd("SET")
        .arg(&key)
        .arg("1")
        .query_async::<()>(&mut r)
        .await
        .unwrap();
    let by_mail = format!("newsletter:{}", s.emails[0]);
    redis::cmd("SET")
        .arg(&by_mail)
        .arg("1")
        .query_async::<()>(&mut r)
        .await
        .unwrap();
    let found = sweep::redis_keys(&mut r, &s).await.unwrap();
    assert_eq!(found.check.count, 2, "{found:?}");
    assert!(
        found.residue.contains(&format!("redis key {key}")),
        "{found:?}"
    );
    redis::cmd("DEL")
        .arg(&key)
        .arg(&by_mail)
        .query_async::<()>(&mut r)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_planted_s3_object_is_found() {
    let stack = testkit::stack().await;
    let s3 = object_store::client(&stack.endpoints);
    let bucket = testkit::unique("sweep").replace('_', "-");
    object_store::ensure_bucket(&s3, &bucket).await.unwrap();
    let s = fresh_subject("t-sweep");
    let clean = sweep::s3_objects(&s3, &[], &s).await.unwrap();
    assert_eq!(clean.check.count, 0, "{clean:?}");
    let key = format!("stray/{}/avatar.png", s.user_id);
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(b"png".to_vec().into())
        .send()
        .await
        .unwrap();
    let found = sweep::s3_objects(&s3, &[], &s).await.unwrap();
    assert_eq!(found.check.count, 1, "{found:?}");
    assert_eq!(found.residue, [format!("s3 object {bucket}/{key}")]);
    // A skipped bucket is not looked at.
    let skipped = sweep::s3_objects(&s3, std::slice::from_ref(&bucket), &s)
        .await
        .unwrap();
    assert_eq!(skipped.check.count, 0);
}

#[tokio::test]
async fn a_planted_topic_message_is_found() {
    let stack = testkit::stack().await;
    let bus = KafkaBus::connect(&stack.endpoints).unwrap();
    let topic = testkit::unique("sweep");
    bus.ensure_topic(&topic, 1).await.unwrap();
    let s = fresh_subject("t-sweep");
    let clean = sweep::topics(&stack.endpoints.kafka_brokers, &s)
        .await
        .unwrap();
    assert_eq!(clean.check.count, 0, "{clean:?}");
    let e = Envelope::new(
        "user.note",
        1,
        "t-sweep",
        "k",
        &serde_json::json!({"email": s.emails[0].to_uppercase()}),
        &SystemClock,
        &SystemIdGen,
    )
    .unwrap();
    bus.publish(&topic, &e).await.unwrap();
    let found = sweep::topics(&stack.endpoints.kafka_brokers, &s)
        .await
        .unwrap();
    assert_eq!(found.check.count, 1, "{found:?}");
    assert!(
        found.residue[0].starts_with(&format!("topic message {topic}/0@")),
        "{found:?}"
    );
    println!("topic sweep: {}", found.check.detail);
}

#[tokio::test]
async fn the_audit_bucket_is_write_once_and_puts_can_be_conditional() {
    let stack = testkit::stack().await;
    let s3 = object_store::client(&stack.endpoints);
    object_store::ensure_bucket(&s3, "audit").await.unwrap();
    let key = format!("test/{}.jws", testkit::unique("worm"));
    s3.put_object()
        .bucket("audit")
        .key(&key)
        .body(b"one".to_vec().into())
        .send()
        .await
        .unwrap();
    let again = s3
        .put_object()
        .bucket("audit")
        .key(&key)
        .body(b"two".to_vec().into())
        .send()
        .await;
    let status = again
        .unwrap_err()
        .raw_response()
        .map(|r| r.status().as_u16());
    assert_eq!(
        status,
        Some(403),
        "an overwrite in the audit bucket must be refused"
    );
    let del = s3.delete_object().bucket("audit").key(&key).send().await;
    assert_eq!(
        del.unwrap_err().raw_response().map(|r| r.status().as_u16()),
        Some(403)
    );
    let body = s3
        .get_object()
        .bucket("audit")
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap();
    assert_eq!(body.into_bytes().as_ref(), b"one");
    // If-None-Match: * anywhere: the first wins, the second gets 412.
    let bucket = testkit::unique("cond").replace('_', "-");
    object_store::ensure_bucket(&s3, &bucket).await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("k")
        .if_none_match("*")
        .body(b"a".to_vec().into())
        .send()
        .await
        .unwrap();
    let second = s3
        .put_object()
        .bucket(&bucket)
        .key("k")
        .if_none_match("*")
        .body(b"b".to_vec().into())
        .send()
        .await;
    assert_eq!(
        second
            .unwrap_err()
            .raw_response()
            .map(|r| r.status().as_u16()),
        Some(412)
    );
    // Without the condition an ordinary bucket overwrites.
    s3.put_object()
        .bucket(&bucket)
        .key("k")
        .body(b"c".to_vec().into())
        .send()
        .await
        .unwrap();
}
