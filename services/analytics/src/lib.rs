//! Analytics: "what happened today" per tenant. Consumes `analytics.raw`
//! (shoppers' actions from the gateway), `order.lifecycle` and
//! `payment.events`; turns each event into a fact ([`fact_of`]); counts each
//! fact once into its day's rollup ([`domain`], pure; [`store`], Postgres);
//! closes each day at 00:05 UTC the next day through the Clock port; serves
//! `GetDailyStats` over gRPC (the gateway's `GET /admin/stats/daily` and
//! `shopstream stats` read it). It answers DSARs over its gRPC port
//! ([`dsar`]): the visitor ids a user acted as and their actions.

pub mod api;
pub mod domain;
pub mod dsar;
pub mod store;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use shopstream_platform::{
    clock::{Clock, SystemClock},
    config::{ConfigError, ServiceConfig, env_or, env_parse},
    db,
    events::{
        Delivery,
        dedupe::HandlerDedupes,
        dlq_topic,
        kafka::KafkaBus,
        runner::{self, Handler, HandlerError, RunnerConfig},
    },
    metrics::Metrics,
    service::{Listeners, Service},
    shutdown::sleep_or_stop,
};
use shopstream_proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::{Action, Fact},
    store::{Recorded, Rollups},
};

/// Shoppers' actions, published by the gateway.
pub const RAW_TOPIC: &str = "analytics.raw";
pub const ORDER_TOPIC: &str = "order.lifecycle";
pub const PAYMENT_TOPIC: &str = "payment.events";
/// `event_type` of a shopper's action on `analytics.raw`.
pub const ACTION_EVENT: &str = "analytics.action";
pub const ORDER_STATE_EVENT: &str = "order.state_changed";
pub const PAYMENT_STATUS_EVENT: &str = "payment.status_changed";
/// Partitions the topics are created with when absent (as their owners do).
const TOPIC_PARTITIONS: i32 = 3;
/// Attempts per event before it is dead-lettered.
const MAX_ATTEMPTS: u32 = 8;
/// Pause before a failed consumer loop starts again.
const CONSUMER_RESTART_DELAY: Duration = Duration::from_secs(1);
/// The most events counted in one transaction, by default.
pub const BATCH_MAX: usize = 128;
/// How often the closer looks for days to close.
const CLOSE_TICK: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// Its Postgres database (facts, closed days).
    pub database: String,
    /// Its consumer group on the three topics.
    pub consumer_group: String,
    /// The clock days are closed by (tests move it).
    pub clock: Arc<dyn Clock>,
    /// The most events counted in one transaction ([`BATCH_MAX`]; 1 counts
    /// each alone, as before batches: kept so the two can be measured
    /// against each other without a rebuild).
    pub batch_max: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("service", &self.service)
            .field("database", &self.database)
            .field("consumer_group", &self.consumer_group)
            .field("batch_max", &self.batch_max)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// `SHOPSTREAM_ANALYTICS_DATABASE` (default `analytics`),
    /// `SHOPSTREAM_ANALYTICS_GROUP` (default `analytics`),
    /// `SHOPSTREAM_ANALYTICS_BATCH_MAX` (default [`BATCH_MAX`], at least 1)
    /// and the shared variables of [`ServiceConfig::from_env`]; the system
    /// clock.
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env("analytics")?,
            database: env_or("SHOPSTREAM_ANALYTICS_DATABASE", "analytics"),
            consumer_group: env_or("SHOPSTREAM_ANALYTICS_GROUP", "analytics"),
            clock: Arc::new(SystemClock),
            batch_max: env_parse("SHOPSTREAM_ANALYTICS_BATCH_MAX", BATCH_MAX)?.max(1),
        })
    }
}

shopstream_platform::service_entry! {
    /// Analytics as `shopstream serve analytics` and the test kit start it.
    Server { name: "analytics", grpc: true, config: Config, run: run }
}

/// Why an event could not be read (retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable {event_type}: {reason}")]
pub struct Undecodable {
    pub event_type: String,
    pub reason: String,
}

#[derive(Deserialize)]
struct ActionEvent {
    /// The signed-in user, if any (kept only as the visitor's link, for
    /// DSARs: see [`store::Rollups::link_visitors`]).
    #[serde(default)]
    user_id: Option<String>,
    visitor_id: String,
    action: Action,
    ts_ms: i64,
}

#[derive(Deserialize)]
struct OrderStateChanged {
    order_id: String,
    state: String,
    #[serde(default)]
    cancel_reason: Option<String>,
    ts_ms: i64,
}

#[derive(Deserialize)]
struct PaymentStatusChanged {
    order_id: String,
    status: String,
    amount_minor: i64,
    currency: String,
    ts_ms: i64,
}

/// The fact an event is, if any: an action; an order placed (`pending`),
/// completed or cancelled; money captured or refunded. The store fills in
/// what needs history: a completed order's checkout duration (from when it
/// was placed), and a refund's own amount (payments' events carry the
/// running total refunded).
pub fn fact_of(event_type: &str, id: &str, payload: &[u8]) -> Result<Option<Fact>, Undecodable> {
    let bad = |e: serde_json::Error| Undecodable {
        event_type: event_type.to_string(),
        reason: e.to_string(),
    };
    let id = id.to_string();
    Ok(match event_type {
        ACTION_EVENT => {
            let a: ActionEvent = serde_json::from_slice(payload).map_err(bad)?;
            Some(Fact::Action {
                id,
                ts_ms: a.ts_ms,
                visitor_id: a.visitor_id,
                action: a.action,
            })
        }
        ORDER_STATE_EVENT => {
            let o: OrderStateChanged = serde_json::from_slice(payload).map_err(bad)?;
            match o.state.as_str() {
                "pending" => Some(Fact::OrderPlaced {
                    id,
                    ts_ms: o.ts_ms,
                    order_id: o.order_id,
                }),
                "completed" => Some(Fact::OrderCompleted {
                    id,
                    ts_ms: o.ts_ms,
                    order_id: o.order_id,
                    checkout_ms: None,
                }),
                "cancelled" => Some(Fact::OrderCancelled {
                    id,
                    ts_ms: o.ts_ms,
                    order_id: o.order_id,
                    reason: o.cancel_reason.unwrap_or_default(),
                }),
                _ => None,
            }
        }
        PAYMENT_STATUS_EVENT => {
            let p: PaymentStatusChanged = serde_json::from_slice(payload).map_err(bad)?;
            match p.status.as_str() {
                "captured" => Some(Fact::Captured {
                    id,
                    ts_ms: p.ts_ms,
                    amount_minor: p.amount_minor,
                    currency: p.currency,
                    order_id: p.order_id,
                }),
                "refunded" | "partially_refunded" => Some(Fact::Refunded {
                    id,
                    ts_ms: p.ts_ms,
                    amount_minor: p.amount_minor,
                    currency: p.currency,
                    order_id: p.order_id,
                }),
                _ => None,
            }
        }
        _ => None,
    })
}

/// The (user, visitor) of a signed-in shopper's action.
fn signed_in(event_type: &str, payload: &[u8]) -> Option<(String, String)> {
    if event_type != ACTION_EVENT {
        return None;
    }
    let a: ActionEvent = serde_json::from_slice(payload).ok()?;
    let user = a.user_id.filter(|u| !u.is_empty())?;
    (!a.visitor_id.is_empty()).then_some((user, a.visitor_id))
}

/// Counts each event's fact.
pub struct Count {
    pub rollups: Arc<Rollups>,
    /// What [`Handler::batch_max`] answers ([`BATCH_MAX`] unless set).
    pub batch_max: usize,
    counted: Counter,
    duplicates: Counter,
    corrections: Counter,
}

impl Count {
    pub fn new(rollups: Arc<Rollups>, metrics: &Metrics) -> Count {
        let (counted, duplicates, corrections) =
            (Counter::default(), Counter::default(), Counter::default());
        metrics.register(
            "analytics_facts_counted",
            "Facts counted into an open day",
            counted.clone(),
        );
        metrics.register(
            "analytics_facts_duplicate",
            "Facts whose event id was counted before",
            duplicates.clone(),
        );
        metrics.register(
            "analytics_late_corrections",
            "Late facts that corrected a closed day (its version went up)",
            corrections.clone(),
        );
        Count {
            rollups,
            batch_max: BATCH_MAX,
            counted,
            duplicates,
            corrections,
        }
    }

    /// Count what recording one fact did.
    fn note(&self, tenant: &str, recorded: Recorded) {
        match recorded {
            Recorded::Counted => self.counted.inc(),
            Recorded::Duplicate => self.duplicates.inc(),
            Recorded::Corrected { version } => {
                tracing::info!(%tenant, version, "late fact corrected a closed day");
                self.corrections.inc()
            }
        };
    }
}

#[async_trait]
impl Handler for Count {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let e = &d.envelope;
        let fact = fact_of(&e.event_type, &e.id.to_string(), &e.payload)
            .map_err(|err| HandlerError::Permanent(err.to_string()))?;
        let Some(fact) = fact else { return Ok(()) };
        if let Some((user, visitor)) = signed_in(&e.event_type, &e.payload) {
            let link = (e.tenant_id.clone(), user, visitor, fact.ts_ms());
            self.rollups
                .link_visitors(&[link])
                .await
                .map_err(|err| HandlerError::Retryable(format!("postgres: {err}")))?;
        }
        let recorded = self
            .rollups
            .record(&e.tenant_id, fact)
            .await
            .map_err(|err| HandlerError::Retryable(format!("postgres: {err}")))?;
        self.note(&e.tenant_id, recorded);
        Ok(())
    }

    /// Facts that need history (orders, refunds) are recorded one at a time,
    /// in delivery order; the rest (the shoppers' actions: nearly every
    /// event under load) together, in one transaction, with the visitors'
    /// links in one statement before it. If that fails nothing of it was
    /// counted, and each is retried alone.
    async fn handle_batch(&self, batch: &[&Delivery]) -> Vec<Result<(), HandlerError>> {
        let mut results: Vec<Option<Result<(), HandlerError>>> = vec![None; batch.len()];
        let (mut plain, mut at, mut links) = (Vec::new(), Vec::new(), Vec::new());
        for (i, d) in batch.iter().enumerate() {
            let e = &d.envelope;
            match fact_of(&e.event_type, &e.id.to_string(), &e.payload) {
                Err(err) => results[i] = Some(Err(HandlerError::Permanent(err.to_string()))),
                Ok(None) => results[i] = Some(Ok(())),
                Ok(Some(fact)) if store::needs_history(&fact) => {
                    results[i] = Some(self.handle(d).await)
                }
                Ok(Some(fact)) => {
                    if let Some((user, visitor)) = signed_in(&e.event_type, &e.payload) {
                        links.push((e.tenant_id.clone(), user, visitor, fact.ts_ms()));
                    }
                    plain.push((e.tenant_id.clone(), fact));
                    at.push(i);
                }
            }
        }
        if !plain.is_empty() {
            let recorded = match self.rollups.link_visitors(&links).await {
                Ok(()) => self.rollups.record_many(&plain).await,
                Err(err) => Err(err),
            };
            match recorded {
                Ok(recorded) => {
                    for ((i, (tenant, _)), r) in at.iter().zip(&plain).zip(recorded) {
                        self.note(tenant, r);
                        results[*i] = Some(Ok(()));
                    }
                }
                Err(err) => {
                    let failed = HandlerError::Retryable(format!("postgres: {err}"));
                    for i in at {
                        results[i] = Some(Err(failed.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(HandlerError::Retryable("not handled".into()))))
            .collect()
    }

    fn batch_max(&self) -> usize {
        self.batch_max
    }
}

/// Close due days every tick until `stop`.
async fn closer(rollups: Arc<Rollups>, stop: CancellationToken) {
    while sleep_or_stop(&stop, CLOSE_TICK).await {
        match rollups.close_due().await {
            Ok(closed) => {
                for (tenant, day) in closed {
                    tracing::info!(%tenant, %day, "day closed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "closing days failed; trying again"),
        }
    }
}

/// Consume the three topics, close days and serve `GetDailyStats` until
/// `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let svc = Service::new(&cfg.service);
    let pool = db::connect(&cfg.service.endpoints.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &MIGRATOR).await?;
    // The facts table is the dedupe: a fact's key is its event's id, so a
    // redelivered event inserts nothing and counts nothing (`Recorded::Duplicate`).
    let dedupe = Arc::new(HandlerDedupes);
    let rollups = Arc::new(Rollups::load(pool.clone(), cfg.clock.clone()).await?);
    let count = Arc::new(Count {
        batch_max: cfg.batch_max,
        ..Count::new(rollups.clone(), svc.metrics())
    });
    let bus = KafkaBus::connect(&cfg.service.endpoints)?;
    let topics = [RAW_TOPIC, ORDER_TOPIC, PAYMENT_TOPIC];
    for topic in topics {
        bus.ensure_topic(topic, TOPIC_PARTITIONS).await?;
        bus.ensure_topic(&dlq_topic(topic), 1).await?;
    }
    let rcfg = RunnerConfig {
        max_attempts: MAX_ATTEMPTS,
        health: runner::ConsumerHealth::new(svc.metrics(), &cfg.consumer_group),
        ..RunnerConfig::new(&cfg.consumer_group, &topics)
    };
    let api = api::GrpcApi {
        rollups: rollups.clone(),
        clock: cfg.clock.clone(),
        default_tenant: cfg.service.default_tenant.clone(),
    };
    let participant = dsar::Participant::new(rollups.clone());
    svc.check_postgres("postgres", pool)
        .check("consumer", rcfg.health.readiness())
        .grpc(AnalyticsServiceServer::new(api))
        .grpc(shopstream_dsar::server(
            Arc::new(participant),
            &cfg.service.default_tenant,
        ))
        .task("events", move |stop| {
            runner::run_until_stopped(bus, dedupe, count, rcfg, stop, CONSUMER_RESTART_DELAY)
        })
        .task("closer", move |stop| closer(rollups, stop))
        .run(listeners, shutdown)
        .await?;
    Ok(())
}

/// Analytics' schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_facts_and_the_rest_is_ignored() {
        let action = br#"{"user_id":null,"visitor_id":"v1","action":"add_to_cart","object_id":"s","ts_ms":5,"device":"desktop","referrer":""}"#;
        assert_eq!(
            fact_of(ACTION_EVENT, "e1", action).unwrap(),
            Some(Fact::Action {
                id: "e1".into(),
                ts_ms: 5,
                visitor_id: "v1".into(),
                action: Action::AddToCart
            })
        );
        let order = |state: &str| {
            format!(
                r#"{{"order_id":"o1","user_id":"u","state":"{state}","cancel_reason":"out_of_stock","total_minor":1,"currency":"EUR","reservation_id":"r","ts_ms":7}}"#
            )
        };
        assert!(matches!(
            fact_of(ORDER_STATE_EVENT, "e2", order("pending").as_bytes()).unwrap(),
            Some(Fact::OrderPlaced { .. })
        ));
        assert!(matches!(
            fact_of(ORDER_STATE_EVENT, "e3", order("cancelled").as_bytes()).unwrap(),
            Some(Fact::OrderCancelled { reason, .. }) if reason == "out_of_stock"
        ));
        assert_eq!(
            fact_of(ORDER_STATE_EVENT, "e4", order("captured").as_bytes()).unwrap(),
            None
        );
        let pay = |status: &str| {
            format!(
                r#"{{"payment_id":"p","order_id":"o1","status":"{status}","amount_minor":250,"currency":"EUR","failure_code":"","ts_ms":9}}"#
            )
        };
        assert!(matches!(
            fact_of(PAYMENT_STATUS_EVENT, "e5", pay("captured").as_bytes()).unwrap(),
            Some(Fact::Captured {
                amount_minor: 250,
                ..
            })
        ));
        assert!(matches!(
            fact_of(
                PAYMENT_STATUS_EVENT,
                "e6",
                pay("partially_refunded").as_bytes()
            )
            .unwrap(),
            Some(Fact::Refunded { .. })
        ));
        assert_eq!(
            fact_of(PAYMENT_STATUS_EVENT, "e7", pay("authorized").as_bytes()).unwrap(),
            None
        );
        assert_eq!(fact_of("order.step_recorded", "e8", b"{").unwrap(), None);
        assert!(fact_of(ACTION_EVENT, "e9", b"{").is_err());
    }
}
