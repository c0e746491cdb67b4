//! (b) use Redis through `platform::cache`.

use redis::AsyncCommands;
use shopstream_platform::cache;
use shopstream_runtime::testkit;

#[tokio::test]
async fn set_get_expire_and_atomic_counters() {
    let stack = testkit::stack().await;
    let mut c = cache::connect(&stack.endpoints.redis_url).await.unwrap();
    let key = testkit::unique("it_cache");
    let _: () = c.set_ex(&key, "card-json", 30).await.unwrap();
    let v: Option<String> = c.get(&key).await.unwrap();
    assert_eq!(v.as_deref(), Some("card-json"));
    let ttl: i64 = c.ttl(&key).await.unwrap();
    assert!((1..=30).contains(&ttl), "ttl {ttl}");

    let counter = format!("{key}:n");
    let mut handles = Vec::new();
    for _ in 0..10 {
        let mut c = c.clone();
        let counter = counter.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..10 {
                let _: i64 = c.incr(&counter, 1).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let n: i64 = c.get(&counter).await.unwrap();
    assert_eq!(n, 100);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let started = std::time::Instant::now();
    // Port 1 on loopback: nothing listens there.
    let res = cache::connect("redis://127.0.0.1:1").await;
    assert!(res.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
