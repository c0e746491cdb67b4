//! (e) put/get an object and upload through a presigned URL with plain HTTP.

use std::time::Duration;

use aws_sdk_s3::{presigning::PresigningConfig, primitives::ByteStream};
use shopstream_platform::object_store;
use shopstream_runtime::testkit;

#[tokio::test]
async fn put_get_and_presigned_upload_over_plain_http() {
    let stack = testkit::stack().await;
    let s3 = object_store::client(&stack.endpoints);
    let bucket = testkit::unique("it-media").replace('_', "-");
    object_store::ensure_bucket(&s3, &bucket).await.unwrap();
    object_store::ensure_bucket(&s3, &bucket).await.unwrap(); // idempotent

    s3.put_object()
        .bucket(&bucket)
        .key("a/hello.txt")
        .body(ByteStream::from_static(b"hello shopstream"))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("a/hello.txt")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"hello shopstream");

    // A presigned PUT: a browser (here reqwest) uploads with no credentials.
    let presigned = s3
        .put_object()
        .bucket(&bucket)
        .key("uploads/photo.jpg")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .put(presigned.uri())
        .body(vec![7u8; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("uploads/photo.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(64 * 1024));

    // A tampered signature is refused (SigV4 is enforced).
    let uri = presigned.uri().to_string();
    let at = uri.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &uri[at..at + 1] == "0" { "1" } else { "0" };
    let tampered = format!("{}{}{}", &uri[..at], flipped, &uri[at + 1..]);
    let resp = http.put(tampered).body("x").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let stack = testkit::stack().await;
    let mut e = stack.endpoints.clone();
    e.s3_secret_key = secrecy::SecretString::from("wrong");
    let err = object_store::client(&e)
        .list_buckets()
        .send()
        .await
        .unwrap_err();
    let msg = format!("{err:?}");
    assert!(
        msg.contains("SignatureDoesNotMatch") || msg.contains("403"),
        "{msg}"
    );
}
