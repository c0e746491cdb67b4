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

/// Every write to the fault store is announced on its channel, so the
/// services listening through `cache::listen` reread it at once instead of
/// waiting for their safety poll.
#[tokio::test]
async fn fault_store_writes_are_announced_to_listeners() {
    use shopstream_platform::faults;
    let stack = testkit::stack().await;
    let url = stack.endpoints.redis_url.clone();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let (heard_tx, mut heard_rx) = tokio::sync::mpsc::unbounded_channel();
    let client = redis::Client::open(url.as_str()).unwrap();
    let listener = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        cache::listen(
            &client,
            faults::CHANGED_CHANNEL,
            std::time::Duration::from_secs(5),
            || {
                if let Some(tx) = subscribed_tx.take() {
                    let _ = tx.send(());
                }
            },
            |name| {
                let _ = heard_tx.send(name);
            },
        )
        .await
    });
    let within = std::time::Duration::from_secs(10);
    tokio::time::timeout(within, subscribed_rx)
        .await
        .expect("subscribed in time")
        .unwrap();
    // Not a catalog fault: no service acts on it, whatever else uses this Redis.
    let name = testkit::unique("it_fault");
    let store = faults::Store::connect(&url).await.unwrap();
    let active = faults::Active {
        name: name.clone(),
        value: None,
        target: "nobody".into(),
        set_at_ms: 0,
        until_ms: None,
    };
    store.set(&active).await.unwrap();
    tokio::time::timeout(within, heard(&mut heard_rx, &name))
        .await
        .expect("the set was announced");
    assert!(store.clear(&name).await.unwrap());
    tokio::time::timeout(within, heard(&mut heard_rx, &name))
        .await
        .expect("the clear was announced");
    listener.abort();
}

/// Until the listener hears `name` (other tests may write to the same store).
async fn heard(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, name: &str) {
    loop {
        match rx.recv().await {
            Some(n) if n == name => return,
            Some(_) => {}
            None => panic!("listener ended"),
        }
    }
}
