//! Orders' DSAR participant passes the contract suite on its real Postgres,
//! directly and through the gRPC surface of a running orders service; the
//! erased subject's orders are kept, anonymised, with their amounts, lines
//! and step history, and no event in the outbox names the subject.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use shopstream_dsar::{
    Participant, Subject,
    contract::{self, Marker},
};
use shopstream_orders::{
    Config, Orders,
    adapters::postgres::{MIGRATOR, PgOrders},
    domain::checkout::{Price, RequestedLine},
    dsar::{self, ERASED_USER_ID, EVENT_OUTBOX, ORDERS, OrdersParticipant},
    ports::{PriceBook, PriceError, SagaOrder, StepRecord},
    service::{EVENT_TYPE, SagaStarter},
};
use shopstream_platform::{clock::SystemClock, db, ids::SystemIdGen, outbox};
use shopstream_runtime::testkit;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// Every product "p-<sku>" has one SKU "<sku>" at 1250 EUR minor.
struct FixedPrices;

#[async_trait]
impl PriceBook for FixedPrices {
    async fn prices(
        &self,
        _: &str,
        product_id: &str,
    ) -> Result<BTreeMap<String, Price>, PriceError> {
        let sku = product_id
            .strip_prefix("p-")
            .ok_or_else(|| PriceError::UnknownProduct(product_id.into()))?;
        Ok(BTreeMap::from([(
            sku.to_string(),
            Price {
                amount_minor: 1250,
                currency: "EUR".into(),
            },
        )]))
    }
}

/// Starts nothing: the seed records the saga's steps itself.
struct NoSaga;

#[async_trait]
impl SagaStarter for NoSaga {
    async fn start(&self, _: &SagaOrder) -> Result<(), String> {
        Ok(())
    }
}

fn orders_on(pool: PgPool) -> Orders {
    Orders {
        store: Arc::new(PgOrders::new(pool)),
        prices: Arc::new(FixedPrices),
        starter: Arc::new(NoSaga),
        clock: Arc::new(SystemClock),
        ids: Arc::new(SystemIdGen),
        relay: None,
    }
}

async fn database(prefix: &str) -> PgPool {
    let pool = testkit::stack().await.database(prefix).await;
    db::migrate(&pool, &MIGRATOR).await.unwrap();
    outbox::ensure_table(&pool).await.unwrap();
    dsar::ensure_indexes(&pool).await.unwrap();
    pool
}

/// What was seeded for one subject.
#[derive(Debug, Clone)]
struct Seeded {
    user_id: String,
    orders: Vec<Uuid>,
    texts: Vec<String>,
}

/// Two orders through the use cases: one that completes its first step, one
/// declined with a detail naming the person; the first order's creation
/// event is published.
async fn seed(pool: &PgPool, s: Subject, log: &Mutex<Vec<Seeded>>) -> Vec<Marker> {
    let orders = orders_on(pool.clone());
    let user = s.user_id.to_string();
    let email = s.emails[0].clone();
    let key = format!("checkout-of-{email}");
    let method = format!("pm_{}", Uuid::new_v4().simple());
    let detail = format!("card of {email} declined");
    let mut ids = Vec::new();
    for (i, sku) in ["a", "b"].iter().enumerate() {
        let lines = [RequestedLine {
            product_id: format!("p-{sku}"),
            sku_id: sku.to_string(),
            quantity: 2,
        }];
        let (order, replay) = orders
            .create(&s.tenant, &user, &format!("{key}-{i}"), &lines, &method)
            .await
            .unwrap();
        assert!(!replay);
        ids.push(order.order_id);
    }
    let step =
        |seq, step: &str, outcome: &str, state: &str, reason: Option<&str>, detail| StepRecord {
            seq,
            step: step.into(),
            outcome: outcome.into(),
            state: state.into(),
            cancel_reason: reason.map(str::to_string),
            detail,
            attempts: 1,
            failure_reason: None,
            uncertain: false,
            at_ms: 1_700_000_000_000,
            reservation_id: (seq == 1).then(|| "r-1".to_string()),
            payment_id: None,
        };
    orders
        .record(
            &s.tenant,
            ids[0],
            &step(
                1,
                "reserve",
                "succeeded",
                "reserved",
                None,
                "reservation r-1".into(),
            ),
        )
        .await
        .unwrap();
    orders
        .record(
            &s.tenant,
            ids[1],
            &step(
                1,
                "authorize",
                "failed",
                "cancelled",
                Some("payment_declined"),
                detail.clone(),
            ),
        )
        .await
        .unwrap();
    sqlx::query(
        "UPDATE event_outbox SET published_at = now()
          WHERE tenant_id = $1 AND key = $2 AND event_type = $3",
    )
    .bind(&s.tenant)
    .bind(ids[0].to_string())
    .bind(EVENT_TYPE)
    .execute(pool)
    .await
    .unwrap();
    log.lock().unwrap().push(Seeded {
        user_id: user,
        orders: ids,
        texts: vec![key.clone(), method.clone(), detail.clone()],
    });
    vec![
        Marker::new(ORDERS, format!("{key}-0")),
        Marker::new(ORDERS, method),
        Marker::new(ORDERS, detail.clone()),
        Marker::new(EVENT_OUTBOX, detail),
    ]
}

/// The subject's orders are still there, anonymised, and nothing in the
/// database names the subject or holds what it typed.
async fn assert_anonymised(pool: &PgPool, tenant: &str, subject: &Seeded) {
    for id in &subject.orders {
        let o = sqlx::query(
            "SELECT user_id, idempotency_key, payment_method, fingerprint, cancel_detail,
                    total_minor, currency,
                    (SELECT count(*) FROM order_items i
                      WHERE i.tenant_id = o.tenant_id AND i.order_id = o.order_id) AS items,
                    (SELECT count(*) FROM order_steps s
                      WHERE s.tenant_id = o.tenant_id AND s.order_id = o.order_id) AS steps
               FROM orders o WHERE tenant_id = $1 AND order_id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(o.get::<String, _>("user_id"), ERASED_USER_ID);
        assert_eq!(
            o.get::<String, _>("idempotency_key"),
            format!("erased:{id}")
        );
        assert_eq!(o.get::<String, _>("payment_method"), "");
        assert_eq!(o.get::<String, _>("fingerprint"), "");
        assert_eq!(o.get::<String, _>("cancel_detail"), "");
        assert_eq!(o.get::<i64, _>("total_minor"), 2500);
        assert_eq!(o.get::<String, _>("currency"), "EUR");
        assert_eq!(o.get::<i64, _>("items"), 1);
        assert_eq!(o.get::<i64, _>("steps"), 1);
    }
    let mut needles = subject.texts.clone();
    needles.push(subject.user_id.clone());
    for needle in needles {
        let found: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM event_outbox
                      WHERE position(convert_to($1, 'UTF8') IN payload) > 0)
                  + (SELECT count(*) FROM order_steps WHERE position($1 IN detail) > 0)
                  + (SELECT count(*) FROM orders
                      WHERE position($1 IN user_id || idempotency_key || payment_method
                                        || cancel_detail) > 0)",
        )
        .bind(&needle)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(found, 0, "{needle:?} is still stored");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_participant_passes_the_dsar_contract_on_postgres() {
    let pool = database("it_orders_dsar").await;
    let tenant = testkit::unique("t");
    let log = Arc::new(Mutex::new(Vec::new()));
    contract::check(&OrdersParticipant::new(pool.clone()), &tenant, |s| {
        let (pool, log) = (pool.clone(), log.clone());
        async move { seed(&pool, s, &log).await }
    })
    .await;
    let subject = log.lock().unwrap()[0].clone();
    assert_anonymised(&pool, &tenant, &subject).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_participant_passes_the_dsar_contract_over_grpc() {
    // A running service polls the fault store into the process's view.
    let _view = crate::saga::FAULT_VIEW.read().await;
    let database = testkit::unique("it_orders_dsar");
    let running = testkit::spawn_service::<shopstream_orders::Server>(|service| Config {
        service,
        database: database.clone(),
        // Nothing here starts a saga: the steps never call these.
        catalog_url: "http://127.0.0.1:9".into(),
        inventory_url: "http://127.0.0.1:9".into(),
        payments_url: "http://127.0.0.1:9".into(),
        task_queue: testkit::unique("orders_dsar"),
        restart_interval: Duration::from_secs(3600),
    })
    .await;
    let pool = db::connect(&testkit::stack().await.endpoints.postgres_url, &database)
        .await
        .unwrap();
    let participant = shopstream_dsar::Client::new("orders", &running.grpc_url()).unwrap();
    let tenant = testkit::unique("t");
    let log = Arc::new(Mutex::new(Vec::new()));
    contract::check(&participant, &tenant, |s| {
        let (pool, log) = (pool.clone(), log.clone());
        async move { seed(&pool, s, &log).await }
    })
    .await;
    let subject = log.lock().unwrap()[0].clone();
    assert_anonymised(&pool, &tenant, &subject).await;
    // Erased through the wire, and retained for the accounting period.
    let s = contract::fresh_subject(&tenant);
    seed(&pool, s.clone(), &log).await;
    let erased = participant.erase(&s).await.unwrap();
    let retained = &erased.retained[0];
    assert_eq!(
        (retained.store.as_str(), retained.count),
        (ORDERS, 2),
        "{erased:?}"
    );
    assert_eq!(retained.basis, shopstream_dsar::ACCOUNTING_BASIS);
    assert_eq!(
        retained.retain_days,
        shopstream_dsar::ACCOUNTING_RETAIN_DAYS
    );
}
