//! The feature job (the reference's Flink job, as a consumer in this
//! process): turns each event of the five topics into signals
//! ([`signals_of`]), logs them once per event id in Postgres, folds them into
//! the [`Engine`], and marks the slices they change; the [`materialize`] loop
//! recomputes those slices and writes them to Postgres and Redis. Like
//! counts are pushed live on `product:<id>`.
//! Signals that name a user a DSAR erased are dropped before they are
//! logged (the erased users are a Redis set the compliance service keeps).
//!
//! Starting from an empty signal log and reading the topics from the
//! beginning (a new consumer group) is a replay: the state is a fold of the
//! same signals, so the slices come out the same.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use serde::Deserialize;
use shopstream_platform::{
    clock::Clock,
    events::{
        Delivery,
        runner::{Handler, HandlerError},
    },
    metrics::Metrics,
    product_events,
    realtime::{self, LiveEvent, Topic},
    shutdown::sleep_or_stop,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    domain::{
        activity::{self, ActivityEvent, Kind, Object},
        features::Signal,
    },
    dsar,
    engine::{Engine, LikeCount},
    slices::Slices,
};

pub const ACTIVITY_TOPIC: &str = "activity.raw";
pub const ANALYTICS_TOPIC: &str = "analytics.raw";
pub const ORDER_TOPIC: &str = "order.lifecycle";
pub const MEDIA_TOPIC: &str = "media.events";
pub const PRODUCT_TOPIC: &str = "product.events";
/// Every topic the job reads.
pub const TOPICS: [&str; 5] = [
    ACTIVITY_TOPIC,
    ANALYTICS_TOPIC,
    ORDER_TOPIC,
    MEDIA_TOPIC,
    PRODUCT_TOPIC,
];
const ANALYTICS_ACTION: &str = "analytics.action";
const ORDER_STATE: &str = "order.state_changed";
const MEDIA_STATUS: &str = "media.status_changed";
/// How often the materializer looks for out-of-date slices.
pub const MATERIALIZE_TICK: Duration = Duration::from_millis(200);
/// Most slices recomputed per tick (the rest wait for the next).
pub const MATERIALIZE_BATCH: usize = 2_000;
/// Least time between two recomputations of the item-only rankings while
/// signals keep arriving (each scores every item of a tenant).
pub const GLOBAL_REFRESH: Duration = Duration::from_secs(1);
/// Slices written to the stores at once.
const WRITE_CONCURRENCY: usize = 8;

/// Why an event could not be read (retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable {event_type}: {reason}")]
pub struct Undecodable {
    pub event_type: String,
    pub reason: String,
}

#[derive(Deserialize)]
struct ActionEvent {
    user_id: Option<String>,
    action: String,
    object_id: String,
    ts_ms: i64,
}

#[derive(Deserialize)]
struct OrderStateChanged {
    user_id: String,
    state: String,
    #[serde(default)]
    product_ids: Vec<String>,
    ts_ms: i64,
}

#[derive(Deserialize)]
struct MediaStatusChanged {
    status: String,
    #[serde(rename = "ref", default)]
    reference: String,
    ts_ms: i64,
}

fn is_uuid(s: &str) -> bool {
    Uuid::parse_str(s).is_ok()
}

/// A person's id as every store of the feed keys it: a UUID in its
/// canonical form (anything else as sent), so a DSAR finds it.
fn person_id(s: String) -> String {
    Uuid::parse_str(&s).map(|u| u.to_string()).unwrap_or(s)
}

/// The signals one event gives (none for events the feed does not use).
pub fn signals_of(
    topic: &str,
    event_type: &str,
    event_id: Uuid,
    payload: &[u8],
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<Signal>, Undecodable> {
    let bad = |reason: String| Undecodable {
        event_type: event_type.to_string(),
        reason,
    };
    let json = |e: serde_json::Error| bad(e.to_string());
    if topic == PRODUCT_TOPIC {
        let p = product_events::parse(
            payload,
            headers
                .get(product_events::COMMIT_TS_HEADER)
                .map(String::as_str),
        )
        .map_err(|e| bad(e.to_string()))?;
        let item = p.product_id;
        return Ok(vec![match (p.kind.as_deref(), p.commit_ts_ms) {
            (Some("created"), Some(ts_ms)) => Signal::Created { item, ts_ms },
            _ => Signal::Known { item },
        }]);
    }
    Ok(match event_type {
        activity::EVENT_TYPE => {
            let a: ActivityEvent = serde_json::from_slice(payload).map_err(json)?;
            let user = a.actor_id.to_string();
            let object = Object::parse(&a.object).map_err(bad)?;
            match (a.kind, object) {
                (Kind::Follow, Object::User(u)) => vec![Signal::Follow {
                    follower: user,
                    followee: u.to_string(),
                }],
                (Kind::Like | Kind::Unlike, Object::Product(p)) => vec![Signal::Like {
                    user,
                    item: p.to_string(),
                    liked: a.kind == Kind::Like,
                    ts_ms: a.ts_ms,
                    event: a.activity_id,
                }],
                (Kind::View, Object::Product(p)) => vec![Signal::View {
                    user: Some(user),
                    item: p.to_string(),
                    ts_ms: a.ts_ms,
                }],
                (Kind::Comment, Object::Product(p)) => vec![Signal::Comment {
                    user,
                    item: p.to_string(),
                    ts_ms: a.ts_ms,
                }],
                (k, o) => return Err(bad(format!("{k} cannot take {o}"))),
            }
        }
        ANALYTICS_ACTION => {
            let a: ActionEvent = serde_json::from_slice(payload).map_err(json)?;
            if a.action == "view" && is_uuid(&a.object_id) {
                vec![Signal::View {
                    user: a.user_id.filter(|u| !u.is_empty()).map(person_id),
                    item: a.object_id,
                    ts_ms: a.ts_ms,
                }]
            } else {
                vec![]
            }
        }
        ORDER_STATE => {
            let o: OrderStateChanged = serde_json::from_slice(payload).map_err(json)?;
            if o.state == "completed" {
                let user = person_id(o.user_id);
                o.product_ids
                    .into_iter()
                    .map(|item| Signal::Purchase {
                        user: user.clone(),
                        item,
                        ts_ms: o.ts_ms,
                    })
                    .collect()
            } else {
                vec![]
            }
        }
        MEDIA_STATUS => {
            let m: MediaStatusChanged = serde_json::from_slice(payload).map_err(json)?;
            match m.reference.strip_prefix("product:") {
                Some(p) if m.status == "ready" && is_uuid(p) => vec![Signal::Pictured {
                    item: p.to_string(),
                    ts_ms: m.ts_ms,
                }],
                _ => vec![],
            }
        }
        _ => {
            let _ = event_id;
            vec![]
        }
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
    /// `applied`, `duplicate`, `ignored` or `suppressed` (every signal named
    /// an erased user).
    pub outcome: String,
}

/// The job's numbers on `/metrics`.
#[derive(Clone)]
pub struct JobMetrics {
    pub events: Family<TopicLabels, Counter>,
    pub signals: Counter,
    pub slices_written: Counter,
    pub slice_write_failures: Counter,
    pub dirty: Gauge,
    pub items: Gauge,
    pub users: Gauge,
}

impl JobMetrics {
    pub fn register(m: &Metrics) -> JobMetrics {
        let j = JobMetrics {
            events: Family::default(),
            signals: Counter::default(),
            slices_written: Counter::default(),
            slice_write_failures: Counter::default(),
            dirty: Gauge::default(),
            items: Gauge::default(),
            users: Gauge::default(),
        };
        m.register(
            "feed_job_events",
            "Events the feature job consumed, by topic and outcome",
            j.events.clone(),
        );
        m.register(
            "feed_job_signals",
            "Signals folded into the features",
            j.signals.clone(),
        );
        m.register(
            "feed_slices_written",
            "Slices recomputed and stored (in Postgres at least)",
            j.slices_written.clone(),
        );
        m.register(
            "feed_slice_write_failures",
            "Slice writes that failed (Postgres or Redis); retried",
            j.slice_write_failures.clone(),
        );
        m.register(
            "feed_dirty_slices",
            "Slices waiting to be recomputed",
            j.dirty.clone(),
        );
        m.register("feed_items", "Items the features know", j.items.clone());
        m.register("feed_users", "Users the features know", j.users.clone());
        j
    }
}

/// The consumer: log, fold, mark, push like counts.
pub struct Job {
    pub engine: Arc<Engine>,
    pub pool: PgPool,
    pub redis: redis::aio::ConnectionManager,
    pub metrics: JobMetrics,
    pub default_tenant: String,
    /// Each tenant's DSAR blocked set as last read, and when.
    pub blocked: BlockedCache,
}

/// How long a tenant's blocked set is used before it is read again: one
/// `SMEMBERS` per tenant at most this often instead of a round trip per
/// event (a job replaying a topic's history would otherwise crawl). An
/// erasure's events that slip through in that window are found by the
/// sweep after the erase, which erases again.
pub const BLOCKED_CACHE_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// A tenant's blocked users, and when they were read.
type BlockedEntry = (std::time::Instant, Arc<std::collections::HashSet<String>>);

/// Tenants' blocked sets, read at most every [`BLOCKED_CACHE_FOR`].
#[derive(Debug, Default)]
pub struct BlockedCache(std::sync::Mutex<std::collections::HashMap<String, BlockedEntry>>);

impl BlockedCache {
    /// The blocked users of `tenant`.
    pub async fn get(
        &self,
        redis: &redis::aio::ConnectionManager,
        tenant: &str,
    ) -> redis::RedisResult<Arc<std::collections::HashSet<String>>> {
        if let Some((at, set)) = self.0.lock().expect("not poisoned").get(tenant)
            && at.elapsed() < BLOCKED_CACHE_FOR
        {
            return Ok(set.clone());
        }
        let members: std::collections::HashSet<String> = redis::cmd("SMEMBERS")
            .arg(dsar::blocked_key(tenant))
            .query_async(&mut redis.clone())
            .await?;
        let set = Arc::new(members);
        self.0
            .lock()
            .expect("not poisoned")
            .insert(tenant.to_string(), (std::time::Instant::now(), set.clone()));
        Ok(set)
    }
}

impl Job {
    fn count(&self, topic: &str, outcome: &str) {
        self.metrics
            .events
            .get_or_create(&TopicLabels {
                topic: topic.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// `signals` without those that name a user a DSAR erased (a member of
    /// `dsar:blocked:{tenant}`): an event in flight, a redelivery or a replay
    /// of the topics does not bring them back. Redis failing lets the
    /// signals through, with a warning: the feature job does not stop for
    /// Redis (pages do not either), and the scan that follows an erase
    /// finds anything that got in.
    async fn suppress(&self, tenant: &str, signals: Vec<Signal>) -> Vec<Signal> {
        let people: Vec<String> = signals
            .iter()
            .flat_map(Signal::people)
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if people.is_empty() {
            return signals;
        }
        match self.blocked.get(&self.redis, tenant).await {
            Ok(erased) if !people.iter().any(|p| erased.contains(p)) => signals,
            Ok(erased) => signals
                .into_iter()
                .filter(|s| s.people().iter().all(|p| !erased.contains(*p)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "erased users not checked (redis failed); signals kept");
                signals
            }
        }
    }

    async fn push_likes(&self, tenant: &str, counts: Vec<LikeCount>, ts_ms: i64) {
        for c in counts {
            let Ok(id) = Uuid::parse_str(&c.item) else {
                continue;
            };
            let topic = Topic::Product(id);
            let ev = LiveEvent {
                topic: topic.to_string(),
                seq: c.version,
                kind: "product.likes".into(),
                data: serde_json::json!({ "product_id": c.item, "likes": c.likes }),
                committed_ms: ts_ms,
            };
            // Live updates are hints: a lost one is corrected by the next.
            if let Err(e) = realtime::publish(&mut self.redis.clone(), tenant, &topic, &ev).await {
                tracing::debug!(error = %e, "like count not pushed");
            }
        }
    }
}

/// What an event comes to before the signal log: nothing to log (counted
/// under `outcome`), or a row for it.
enum Prepared {
    Done(&'static str),
    Row {
        tenant: String,
        signals: Vec<Signal>,
        ts_ms: i64,
    },
}

/// Most events logged in one statement: what had already arrived together.
pub const BATCH_MAX: usize = 128;

impl Job {
    /// Decode `d`'s signals and drop those of erased users.
    async fn prepare(&self, d: &Delivery) -> Result<Prepared, HandlerError> {
        let e = &d.envelope;
        let signals = signals_of(&d.topic, &e.event_type, e.id, &e.payload, &e.headers)
            .map_err(|err| HandlerError::Permanent(err.to_string()))?;
        if signals.is_empty() {
            return Ok(Prepared::Done("ignored"));
        }
        let tenant = if e.tenant_id.is_empty() || e.tenant_id == "unknown" {
            self.default_tenant.clone()
        } else {
            e.tenant_id.clone()
        };
        let signals = self.suppress(&tenant, signals).await;
        if signals.is_empty() {
            return Ok(Prepared::Done("suppressed"));
        }
        let ts_ms = signals
            .iter()
            .find_map(|s| match s {
                Signal::View { ts_ms, .. }
                | Signal::Comment { ts_ms, .. }
                | Signal::Like { ts_ms, .. }
                | Signal::Purchase { ts_ms, .. }
                | Signal::Created { ts_ms, .. }
                | Signal::Pictured { ts_ms, .. } => Some(*ts_ms),
                _ => None,
            })
            .unwrap_or(e.occurred_at_ms);
        Ok(Prepared::Row {
            tenant,
            signals,
            ts_ms,
        })
    }
}

#[async_trait]
impl Handler for Job {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        self.handle_batch(&[d])
            .await
            .pop()
            .unwrap_or_else(|| Err(HandlerError::Retryable("not handled".into())))
    }

    /// The events' rows go into the signal log in one statement (one
    /// commit for the batch, not one per view); an event id already logged
    /// is a duplicate and adds nothing. Then each logged event is applied
    /// to the engine in delivery order.
    async fn handle_batch(&self, batch: &[&Delivery]) -> Vec<Result<(), HandlerError>> {
        let mut prepared = Vec::with_capacity(batch.len());
        for d in batch {
            prepared.push(self.prepare(d).await);
        }
        let (mut tenants, mut ids, mut topics, mut signals, mut stamps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (d, p) in batch.iter().zip(&prepared) {
            if let Ok(Prepared::Row {
                tenant,
                signals: s,
                ts_ms,
            }) = p
            {
                tenants.push(tenant.as_str());
                ids.push(d.envelope.id);
                topics.push(d.topic.as_str());
                signals.push(serde_json::to_string(s).unwrap_or_else(|_| "[]".into()));
                stamps.push(*ts_ms);
            }
        }
        let mut logged: std::collections::HashSet<(String, Uuid)> = if ids.is_empty() {
            Default::default()
        } else {
            match sqlx::query_as::<_, (String, Uuid)>(
                "INSERT INTO signal_log (tenant, event_id, topic, signals, ts_ms)
                 SELECT r.tenant, r.event_id, r.topic, r.signals::jsonb, r.ts_ms
                   FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bigint[])
                        AS r(tenant, event_id, topic, signals, ts_ms)
                 ON CONFLICT DO NOTHING
                 RETURNING tenant, event_id",
            )
            .bind(&tenants)
            .bind(&ids)
            .bind(&topics)
            .bind(&signals)
            .bind(&stamps)
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) => rows.into_iter().collect(),
                Err(err) => {
                    // Nothing was logged: each is retried alone.
                    let failed = HandlerError::Retryable(format!("postgres: {err}"));
                    return prepared
                        .into_iter()
                        .map(|p| p.and_then(|_| Err(failed.clone())))
                        .collect();
                }
            }
        };
        let mut results = Vec::with_capacity(batch.len());
        let mut pushes = Vec::new();
        for (d, p) in batch.iter().zip(prepared) {
            let topic = &d.topic;
            match p {
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
                Ok(Prepared::Done(outcome)) => self.count(topic, outcome),
                Ok(Prepared::Row {
                    tenant,
                    signals,
                    ts_ms,
                }) => {
                    // Taken out once applied: the same event twice in one
                    // batch is logged and applied once.
                    if logged.remove(&(tenant.clone(), d.envelope.id)) {
                        self.metrics.signals.inc_by(signals.len() as u64);
                        let likes = self.engine.apply(&tenant, signals);
                        self.count(topic, "applied");
                        pushes.push((tenant, likes, ts_ms));
                    } else {
                        self.count(topic, "duplicate");
                    }
                }
            }
            results.push(Ok(()));
        }
        for (tenant, likes, ts_ms) in pushes {
            self.push_likes(&tenant, likes, ts_ms).await;
        }
        results
    }

    fn batch_max(&self) -> usize {
        BATCH_MAX
    }
}

/// Fold the whole signal log into `engine` (at start-up); returns how many
/// events were read.
pub async fn load(pool: &PgPool, engine: &Engine) -> Result<u64, sqlx::Error> {
    let mut rows = sqlx::query_as::<_, (String, sqlx::types::Json<Vec<Signal>>)>(
        "SELECT tenant, signals FROM signal_log",
    )
    .fetch(pool);
    let mut n = 0;
    while let Some((tenant, signals)) = rows.try_next().await? {
        engine.restore(&tenant, signals.0);
        n += 1;
    }
    Ok(n)
}

/// Recompute and store one user's slice; returns its length.
pub async fn refresh(
    engine: &Engine,
    slices: &Slices,
    clock: &dyn Clock,
    tenant: &str,
    user: &str,
) -> Result<usize, String> {
    let cards = engine.slice(tenant, user);
    let now = clock.now_ms();
    let gone = || engine.is_erased(tenant, user);
    match slices
        .write(tenant, user, &cards, now, &gone)
        .await
        .map_err(|e| format!("postgres: {e}"))?
    {
        crate::slices::Written::Both => Ok(cards.len()),
        crate::slices::Written::Skipped => Ok(0),
        crate::slices::Written::PostgresOnly(e) => Err(format!("redis: {e}")),
    }
}

/// Recompute the item-only rankings that signals changed, at most every
/// [`GLOBAL_REFRESH`], until `stop`. It runs apart from the materializer (on
/// a blocking thread: a tenant of 50,000 items takes a while), so slices of
/// other tenants, and of users whose own signals changed, are not held up.
pub async fn refresh_rankings(engine: Arc<Engine>, stop: CancellationToken) {
    while sleep_or_stop(&stop, GLOBAL_REFRESH).await {
        let e = engine.clone();
        if let Err(err) = tokio::task::spawn_blocking(move || e.refresh_globals()).await {
            tracing::warn!(error = %err, "ranking refresh failed");
        }
    }
}

/// Recompute out-of-date slices until `stop`: a tick after the first one
/// goes out of date (gathering what else changes meanwhile), then every
/// tick while any are; asleep while none are.
pub async fn materialize(
    engine: Arc<Engine>,
    slices: Slices,
    clock: Arc<dyn Clock>,
    metrics: JobMetrics,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = engine.dirty() => {}
        }
        if !sleep_or_stop(&stop, MATERIALIZE_TICK).await {
            return;
        }
        let (items, users) = engine.sizes();
        metrics.items.set(items as i64);
        metrics.users.set(users as i64);
        let batch = engine.take_dirty(MATERIALIZE_BATCH);
        let results: Vec<_> = futures::stream::iter(batch)
            .map(|(tenant, user)| {
                let (engine, slices, clock) = (engine.clone(), slices.clone(), clock.clone());
                async move {
                    let r = refresh(&engine, &slices, clock.as_ref(), &tenant, &user).await;
                    (tenant, user, r)
                }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (tenant, user, r) in results {
            match r {
                Ok(_) => {
                    metrics.slices_written.inc();
                }
                Err(e) => {
                    metrics.slice_write_failures.inc();
                    if e.starts_with("postgres") {
                        // Not stored at all: try again later.
                        tracing::warn!(%tenant, %user, error = %e, "slice not stored; trying again");
                        engine.mark_dirty(&tenant, &user);
                    } else {
                        // Stored in Postgres, which serves it (and puts it
                        // back in Redis when read); Redis refused it.
                        metrics.slices_written.inc();
                        tracing::warn!(%tenant, %user, error = %e, "slice stored in postgres only");
                    }
                }
            }
        }
        metrics.dirty.set(engine.dirty_len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sig(topic: &str, ty: &str, payload: &str) -> Result<Vec<Signal>, Undecodable> {
        signals_of(topic, ty, Uuid::nil(), payload.as_bytes(), &BTreeMap::new())
    }

    const P: &str = "0190a0a0-0000-7000-8000-0000000000aa";
    const U: &str = "0190a0a0-0000-7000-8000-000000000001";

    #[test]
    fn each_topic_gives_its_signals() {
        let like = format!(
            r#"{{"activity_id":"{U}","actor_id":"{U}","kind":"unlike","object":"product:{P}","ts_ms":5}}"#
        );
        assert!(matches!(
            &sig(ACTIVITY_TOPIC, activity::EVENT_TYPE, &like).unwrap()[..],
            [Signal::Like {
                liked: false,
                ts_ms: 5,
                ..
            }]
        ));
        let follow = format!(
            r#"{{"activity_id":"{U}","actor_id":"{U}","kind":"follow","object":"user:{P}","ts_ms":5}}"#
        );
        assert!(matches!(
            &sig(ACTIVITY_TOPIC, activity::EVENT_TYPE, &follow).unwrap()[..],
            [Signal::Follow { .. }]
        ));
        let view = format!(
            r#"{{"user_id":null,"visitor_id":"v","action":"view","object_id":"{P}","ts_ms":7,"device":"d","referrer":""}}"#
        );
        assert_eq!(
            sig(ANALYTICS_TOPIC, ANALYTICS_ACTION, &view).unwrap(),
            vec![Signal::View {
                user: None,
                item: P.into(),
                ts_ms: 7
            }]
        );
        let search =
            r#"{"user_id":"u","visitor_id":"v","action":"search","object_id":"wool","ts_ms":7}"#;
        assert!(
            sig(ANALYTICS_TOPIC, ANALYTICS_ACTION, search)
                .unwrap()
                .is_empty()
        );
        let order = format!(
            r#"{{"order_id":"o","user_id":"{U}","state":"completed","total_minor":1,"currency":"EUR","reservation_id":"r","ts_ms":9,"product_ids":["{P}","x"]}}"#
        );
        assert_eq!(sig(ORDER_TOPIC, ORDER_STATE, &order).unwrap().len(), 2);
        let old_order = r#"{"order_id":"o","user_id":"u","state":"completed","ts_ms":9}"#;
        assert!(sig(ORDER_TOPIC, ORDER_STATE, old_order).unwrap().is_empty());
        let media = format!(r#"{{"status":"ready","ref":"product:{P}","ts_ms":3}}"#);
        assert_eq!(
            sig(MEDIA_TOPIC, MEDIA_STATUS, &media).unwrap(),
            vec![Signal::Pictured {
                item: P.into(),
                ts_ms: 3
            }]
        );
        let post = r#"{"status":"ready","ref":"post:1","ts_ms":3}"#;
        assert!(sig(MEDIA_TOPIC, MEDIA_STATUS, post).unwrap().is_empty());
        assert!(sig(ACTIVITY_TOPIC, activity::EVENT_TYPE, "{").is_err());
        assert!(
            sig(ORDER_TOPIC, "order.step_recorded", "{")
                .unwrap()
                .is_empty()
        );
    }
}
