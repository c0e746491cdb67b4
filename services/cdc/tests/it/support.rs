//! The harness: a fresh catalog database (catalog migrations applied), the
//! cdc service run through its real `run()` on port-0 listeners, outbox
//! writes in plain SQL, and a Kafka consumer that records arrival times.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use shopstream_cdc::{Config, SourceConfig, TableRoute, adapters::postgres};
use shopstream_platform::{
    config::ServiceConfig,
    events::{
        Envelope, EventBus,
        kafka::{KafkaBus, KafkaSettings},
    },
};
use shopstream_runtime::testkit;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const EVENT_TYPE: &str = "shopstream.events.v1.ProductChanged";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A catalog database with its migrations, and a cdc configuration that
/// streams its outbox to a topic of its own (one partition: one total order).
pub struct Fixture {
    pub catalog: PgPool,
    pub cfg: Config,
    pub topic: String,
}

pub async fn fixture() -> Fixture {
    let stack = testkit::stack().await;
    let catalog = stack.database("cdc_it_catalog").await;
    shopstream_catalog::adapters::postgres::MIGRATOR
        .run(&catalog)
        .await
        .unwrap();
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&catalog)
        .await
        .unwrap();
    let topic = testkit::unique("cdc_it_product_events");
    let cfg = Config {
        service: ServiceConfig {
            name: "cdc".into(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            endpoints: stack.endpoints.clone(),
            request_timeout: Duration::from_secs(10),
            body_limit_bytes: ServiceConfig::DEFAULT_BODY_LIMIT_BYTES,
            default_tenant: "default".into(),
        },
        database: testkit::unique("cdc_it_state"),
        sources: vec![SourceConfig::new(
            &db,
            vec![TableRoute::new("outbox", &topic)],
        )],
        topic_partitions: 1,
        max_slot_wal_keep_size: "1024MB".into(),
        max_batch_records: 1_000,
        status_interval: Duration::from_millis(200),
        lag_poll_interval: Duration::from_millis(200),
    };
    Fixture {
        catalog,
        cfg,
        topic,
    }
}

impl Fixture {
    pub fn slot(&self) -> &str {
        &self.cfg.sources[0].slot
    }

    /// Whether the slot exists, and whether a session holds it.
    pub async fn slot_state(&self) -> Option<bool> {
        sqlx::query_scalar("SELECT active FROM pg_replication_slots WHERE slot_name = $1")
            .bind(self.slot())
            .fetch_optional(&self.catalog)
            .await
            .unwrap()
    }

    /// Drop the test's slot once no session holds it (slots retain WAL).
    pub async fn drop_slot(&self) {
        let pool = self.catalog.clone();
        let slot = self.slot().to_string();
        testkit::eventually("the slot is dropped", Duration::from_secs(20), || {
            let (pool, slot) = (pool.clone(), slot.clone());
            async move { postgres::drop_slot(&pool, &slot).await.ok().filter(|d| *d) }
        })
        .await;
    }
}

/// One outbox row as the catalog writes it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: Uuid,
    pub product: Uuid,
    pub version: i64,
    pub traceparent: Option<String>,
}

impl Row {
    pub fn new(product: Uuid, version: i64) -> Row {
        Row {
            id: Uuid::now_v7(),
            product,
            version,
            traceparent: None,
        }
    }
}

/// Insert `rows` in one transaction, as the catalog's use cases do.
pub async fn write(pool: &PgPool, rows: &[Row]) {
    let mut tx = pool.begin().await.unwrap();
    for r in rows {
        let mut payload = serde_json::json!({
            "event_id": r.id,
            "product_id": r.product,
            "sku_id": format!("SKU-{}", r.version),
            "price": {"amount_minor": 1_000 + r.version, "currency": "EUR"},
            "stock": 5,
            "region": "eu",
            "regions": ["eu"],
            "version": r.version,
            "kind": "updated",
            "ts_ms": now_ms(),
        });
        if let Some(tp) = &r.traceparent {
            payload["trace"] = serde_json::json!({"traceparent": tp});
        }
        sqlx::query(
            "INSERT INTO outbox (id, tenant_id, aggregate_id, event_type, payload, created_at)
             VALUES ($1, 'default', $2, $3, $4, now())",
        )
        .bind(r.id)
        .bind(r.product)
        .bind(EVENT_TYPE)
        .bind(&payload)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// The service running on port-0 listeners.
pub struct Running {
    pub http: String,
    service: testkit::RunningService,
}

pub async fn start(cfg: &Config) -> Running {
    // Ready = the slot exists and a session streams from it.
    let service = testkit::spawn_service::<shopstream_cdc::Server>(|service| Config {
        service,
        ..cfg.clone()
    })
    .await;
    Running {
        http: service.http.clone(),
        service,
    }
}

impl Running {
    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }

    /// Stop as a crash would: the service is dropped where it stands.
    pub async fn crash(self) {
        self.service.crash().await;
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// One consumed record and when it arrived (Unix ms).
#[derive(Debug, Clone)]
pub struct Received {
    pub envelope: Envelope,
    pub at_ms: i64,
}

/// A consumer of `topic` in a group of its own, collecting in the background.
pub struct Consumer {
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

pub async fn consume(topic: &str) -> Consumer {
    let brokers = testkit::stack().await.endpoints.kafka_brokers.clone();
    let bus = KafkaBus::new(KafkaSettings::new(&brokers)).unwrap();
    bus.ensure_topic(topic, 1).await.unwrap();
    let mut sub = bus
        .subscribe(&testkit::unique("cdc_it_group"), &[topic.to_string()])
        .await
        .unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let (r, s) = (received.clone(), stop.clone());
    let task = tokio::spawn(async move {
        while !s.is_cancelled() {
            if let Some(d) = sub.next(Duration::from_millis(200)).await.unwrap() {
                let at_ms = now_ms();
                sub.ack(&d).await.unwrap();
                r.lock().unwrap().push(Received {
                    envelope: d.envelope,
                    at_ms,
                });
            }
        }
        let _ = sub.close().await;
    });
    Consumer {
        received,
        stop,
        task,
    }
}

impl Consumer {
    pub fn snapshot(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Wait until `n` distinct event ids arrived; returns everything received.
    pub async fn until_distinct(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let r = self.received.clone();
        testkit::eventually(&format!("{n} distinct events arrive"), timeout, || {
            let r = r.clone();
            async move {
                let all = r.lock().unwrap().clone();
                let distinct: std::collections::BTreeSet<_> =
                    all.iter().map(|x| x.envelope.id).collect();
                (distinct.len() >= n).then_some(all)
            }
        })
        .await
    }

    pub async fn close(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// First occurrence of each event id, in arrival order, and the number of repeats.
pub fn dedupe(all: &[Received]) -> (Vec<Received>, usize) {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for r in all {
        if seen.insert(r.envelope.id, ()).is_none() {
            out.push(r.clone());
        }
    }
    let dups = all.len() - out.len();
    (out, dups)
}

pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
