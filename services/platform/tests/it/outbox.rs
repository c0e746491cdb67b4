//! The outbox on Postgres: rows a caller writes inside a statement of its
//! own ([`outbox::Rows`]) and rows [`outbox::enqueue`] writes in a
//! transaction go out in write order, topic by topic; a round the broker
//! refuses marks nothing, and the next round publishes them all.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use shopstream_platform::{
    db,
    events::{Envelope, EventBus, EventError, GroupLag, Subscription, memory::MemoryBus},
    outbox::{self, Relay, Rows},
};
use shopstream_runtime::testkit;

/// A memory bus that refuses every publish while `down`.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryBus,
    down: Arc<AtomicBool>,
}

#[async_trait]
impl EventBus for Flaky {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), EventError> {
        self.inner.ensure_topic(topic, partitions).await
    }

    async fn publish(&self, topic: &str, event: &Envelope) -> Result<(), EventError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(EventError::Broker("down".into()));
        }
        self.inner.publish(topic, event).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, EventError> {
        self.inner.subscribe(group, topics).await
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<GroupLag, EventError> {
        self.inner.lag(group, topics).await
    }
}

fn event(n: u8) -> Envelope {
    Envelope {
        id: uuid::Uuid::now_v7(),
        event_type: format!("test.e{n}"),
        schema_version: 1,
        tenant_id: "t1".into(),
        key: "k".into(),
        occurred_at_ms: i64::from(n),
        headers: [("n".to_string(), n.to_string())].into(),
        payload: vec![n],
    }
}

async fn unpublished(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn rows_go_out_in_write_order_and_only_once_the_broker_holds_them() {
    let stack = testkit::stack().await;
    let pool = stack.database("it_outbox").await;
    outbox::ensure_table(&pool).await.unwrap();
    let e: Vec<Envelope> = (0..6).map(event).collect();

    // A statement of the caller's own, whose condition is $1.
    let sql = format!(
        "WITH events AS ({}) SELECT 1",
        Rows::insert_sql(2, "$1::bool")
    );
    let write = |cond: bool, topic: &str, events: &[Envelope]| {
        let q = sqlx::query(&sql).bind(cond);
        Rows::new(topic, events).unwrap().bind(q)
    };
    write(false, "a", &e[..2]).execute(&pool).await.unwrap();
    assert_eq!(unpublished(&pool).await, 0, "a false condition wrote rows");
    write(true, "a", &e[..3]).execute(&pool).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    outbox::enqueue(&mut tx, "b", &e[3]).await.unwrap();
    tx.commit().await.unwrap();
    write(true, "a", &e[4..]).execute(&pool).await.unwrap();
    // The same event again is not a second row.
    write(true, "a", &e[..1]).execute(&pool).await.unwrap();
    assert_eq!(unpublished(&pool).await, 6);

    let bus = Flaky::default();
    for t in ["a", "b"] {
        bus.ensure_topic(t, 1).await.unwrap();
    }
    let relay = Relay::new(pool.clone(), Arc::new(bus.clone()));
    bus.down.store(true, Ordering::SeqCst);
    assert!(
        relay.drain().await.is_err(),
        "a refused publish was not an error"
    );
    assert_eq!(unpublished(&pool).await, 6, "a refused round marked rows");

    bus.down.store(false, Ordering::SeqCst);
    assert_eq!(relay.drain().await.unwrap(), 6);
    let ids = |t: &str| -> Vec<uuid::Uuid> { bus.inner.events(t).iter().map(|e| e.id).collect() };
    assert_eq!(ids("a"), [e[0].id, e[1].id, e[2].id, e[4].id, e[5].id]);
    assert_eq!(ids("b"), [e[3].id]);
    // Every field survives the round trip.
    assert_eq!(bus.inner.events("b")[0], e[3]);
    assert_eq!(bus.inner.events("a")[4], e[5]);
    assert_eq!(unpublished(&pool).await, 0);
    assert_eq!(
        relay.drain().await.unwrap(),
        0,
        "a published row went out again"
    );
}

#[tokio::test]
async fn only_bookkeeping_commits_skip_the_wal_flush() {
    let stack = testkit::stack().await;
    let pool = stack.database("it_bookkeeping").await;
    let show = |p: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
            .fetch_one(&p)
            .await
            .unwrap()
    };
    assert_eq!(show(db::bookkeeping(&pool)).await, "off");
    assert_eq!(show(pool).await, "on", "business writes lost their flush");
}
