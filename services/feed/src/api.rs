//! The feed's gRPC surface: thin translation between the wire and the
//! domain, the stores and the engine.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Instant,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
};
use shopstream_platform::{
    Problem,
    clock::Clock,
    error::{ErrorCode, FieldError},
    events::Envelope,
    grpc::{bad_request, tenant},
    ids::FixedId,
    metrics::Metrics,
    outbox::{self, Relay},
};
use shopstream_proto::feed::v1::{
    self as pb, BackfillRequest, BackfillResponse, GetPageRequest, GetPageResponse,
    ListActivitiesRequest, ListActivitiesResponse, PublishActivityRequest, PublishActivityResponse,
    RecommendRequest, RecommendResponse, feed_service_server::FeedService,
};
use sqlx::{PgPool, Row as _};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        activity::{self, Activity, Kind, NewActivity, day},
        cursor::{self, FeedPosition, Sealer},
        features::score_now,
    },
    dsar,
    engine::Engine,
    job::{self, ACTIVITY_TOPIC},
    slices::{Slices, Stored},
    timeline::{MAX_ACTIVITIES_PER_DAY, Row, TimelineError, TimelineStore},
    warm::Warmer,
};

/// A slice older than this is recomputed after it is served.
pub const REFRESH_AFTER_MS: i64 = 5 * 60_000;
/// After a Redis failure, pages skip Redis this long (served from Postgres,
/// marked degraded) instead of waiting on it at every request.
pub const REDIS_BACKOFF_MS: i64 = 2_000;
/// Activities per timeline page by default, and at most.
pub const TIMELINE_PAGE: u32 = 20;
pub const TIMELINE_MAX_PAGE: u32 = 100;
/// Recommendations by default, and at most.
pub const RECOMMEND_DEFAULT: u32 = 10;
pub const RECOMMEND_MAX: u32 = 50;
/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_S: &str = "1";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `redis`, `postgres` or `computed`.
    pub source: String,
}

/// The page-serving numbers on `/metrics`: the hit rate is
/// `shopstream_feed_pages_total{source="redis"}` over all pages.
#[derive(Clone)]
pub struct PageMetrics {
    pub pages: Family<SourceLabels, Counter>,
    pub fallbacks: Counter,
    pub redis_errors: Counter,
    pub slice_age: Histogram,
    pub latency: Histogram,
}

impl PageMetrics {
    pub fn register(m: &Metrics) -> PageMetrics {
        let p = PageMetrics {
            pages: Family::default(),
            fallbacks: Counter::default(),
            redis_errors: Counter::default(),
            slice_age: Histogram::new(exponential_buckets(0.5, 2.0, 16)),
            latency: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
        };
        m.register(
            "feed_pages",
            "Feed pages served, by where the slice came from (redis = a cache hit)",
            p.pages.clone(),
        );
        m.register(
            "feed_fallbacks",
            "Pages served from Postgres because Redis missed or failed",
            p.fallbacks.clone(),
        );
        m.register(
            "feed_redis_errors",
            "Redis failures while serving pages",
            p.redis_errors.clone(),
        );
        m.register(
            "feed_slice_age_seconds",
            "Age of the slice each page was served from",
            p.slice_age.clone(),
        );
        m.register(
            "feed_page_seconds",
            "Time to serve one page (in the feed service)",
            p.latency.clone(),
        );
        p
    }
}

#[derive(Clone)]
pub struct GrpcApi {
    pub engine: Arc<Engine>,
    pub slices: Slices,
    pub timeline: Arc<dyn TimelineStore>,
    pub pool: PgPool,
    pub relay: Relay,
    pub clock: Arc<dyn Clock>,
    pub sealer: Sealer,
    pub metrics: PageMetrics,
    pub default_tenant: String,
    /// Until when Redis is skipped (ms since the epoch).
    pub redis_down_until: Arc<AtomicI64>,
    pub warmer: Arc<Warmer>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %e, "{what} unavailable");
    let mut s = Status::unavailable(format!("{what} is unavailable; retry shortly"));
    s.metadata_mut().insert(
        "retry-after",
        tonic::metadata::MetadataValue::from_static(RETRY_AFTER_S),
    );
    s
}

fn timeline_status(e: TimelineError) -> Status {
    match e {
        TimelineError::BadCursor => bad_request("invalid cursor"),
        TimelineError::Unavailable(m) => unavailable("the timeline store", m),
    }
}

fn invalid(fields: Vec<FieldError>) -> Status {
    Problem::invalid("the request is invalid", fields).to_status()
}

fn kind_of(k: i32) -> Option<Kind> {
    match pb::ActivityKind::try_from(k).ok()? {
        pb::ActivityKind::Like => Some(Kind::Like),
        pb::ActivityKind::Unlike => Some(Kind::Unlike),
        pb::ActivityKind::View => Some(Kind::View),
        pb::ActivityKind::Comment => Some(Kind::Comment),
        pb::ActivityKind::Follow => Some(Kind::Follow),
        pb::ActivityKind::Unspecified => None,
    }
}

fn pb_kind(k: Kind) -> pb::ActivityKind {
    match k {
        Kind::Like => pb::ActivityKind::Like,
        Kind::Unlike => pb::ActivityKind::Unlike,
        Kind::View => pb::ActivityKind::View,
        Kind::Comment => pb::ActivityKind::Comment,
        Kind::Follow => pb::ActivityKind::Follow,
    }
}

fn pb_activity(a: &Activity) -> pb::Activity {
    pb::Activity {
        activity_id: a.id.to_string(),
        actor_id: a.actor.to_string(),
        kind: pb_kind(a.kind) as i32,
        object: a.object.to_string(),
        text: a.text.clone(),
        client_id: a.client_id.clone(),
        ts_ms: a.ts_ms,
    }
}

/// A user a DSAR erased: the feed keeps nothing of or about them.
fn erased(user: &str) -> Status {
    Status::failed_precondition(format!(
        "user {user} was erased (a data subject request): the feed keeps nothing of theirs"
    ))
}

fn user_id(field: &str, s: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(s)
        .map_err(|_| invalid(vec![FieldError::new(field, "must be a user id (a UUID)")]))
}

impl GrpcApi {
    /// The activity already recorded under (actor, client_id), if any.
    async fn recorded(&self, tenant: &str, new: &NewActivity) -> Result<Option<Activity>, Status> {
        let row = sqlx::query(
            "SELECT activity_id, kind, object, body, ts_ms FROM activity_keys
             WHERE tenant = $1 AND actor_id = $2 AND client_id = $3",
        )
        .bind(tenant)
        .bind(new.actor)
        .bind(&new.client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| unavailable("the feed database", e))?;
        row.map(|r| {
            Row {
                ts_ms: r.get("ts_ms"),
                id: r.get("activity_id"),
                kind: r.get("kind"),
                object: r.get("object"),
                body: r.get("body"),
                client_id: new.client_id.clone(),
            }
            .into_activity(tenant, new.actor)
            .map_err(timeline_status)
        })
        .transpose()
    }

    /// Record `a` and its event in one transaction; false if another call
    /// recorded this client id first.
    async fn record(&self, a: &Activity) -> Result<bool, Status> {
        let db = |e: sqlx::Error| unavailable("the feed database", e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO activity_keys (tenant, actor_id, client_id, activity_id, kind, object, body, ts_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&a.tenant)
        .bind(a.actor)
        .bind(&a.client_id)
        .bind(a.id)
        .bind(a.kind.as_str())
        .bind(a.object.to_string())
        .bind(&a.text)
        .bind(a.ts_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        let event = Envelope::new(
            activity::EVENT_TYPE,
            1,
            &a.tenant,
            &a.actor.to_string(),
            &a.event(),
            self.clock.as_ref(),
            &FixedId(a.id),
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        outbox::enqueue(&mut tx, ACTIVITY_TOPIC, &event)
            .await
            .map_err(|e| unavailable("the feed database", e))?;
        tx.commit().await.map_err(db)?;
        self.relay.wake();
        Ok(true)
    }

    /// The stored slice to serve a page from, where it came from, and
    /// whether Redis was skipped or failing.
    async fn stored(
        &self,
        tenant: &str,
        user: &str,
        from: Option<&FeedPosition>,
        n: usize,
    ) -> Result<(Stored, &'static str, bool), Status> {
        let now = self.clock.now_ms();
        let mut degraded = self.redis_down_until.load(Ordering::Relaxed) > now;
        if !degraded {
            match self.slices.read_redis(tenant, user, from, n).await {
                Ok(Some(s)) => return Ok((s, "redis", false)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "redis failed; serving from postgres");
                    self.metrics.redis_errors.inc();
                    self.redis_down_until
                        .store(self.clock.now_ms() + REDIS_BACKOFF_MS, Ordering::Relaxed);
                    degraded = true;
                }
            }
        }
        let pg = |e: sqlx::Error| unavailable("the feed's slice store", e);
        if let Some(s) = self
            .slices
            .read_pg(tenant, user, from, n)
            .await
            .map_err(pg)?
        {
            self.metrics.fallbacks.inc();
            if !degraded {
                self.warmer.missed();
                // Put the whole slice back in Redis, off the request path.
                let (slices, engine, tenant, user) = (
                    self.slices.clone(),
                    self.engine.clone(),
                    tenant.to_string(),
                    user.to_string(),
                );
                tokio::spawn(async move {
                    let gone = || engine.is_erased(&tenant, &user);
                    if let Ok(Some(full)) = slices.full_pg(&tenant, &user).await
                        && let Err(e) = slices
                            .write_redis_unless(
                                &tenant,
                                &user,
                                &full.cards,
                                full.computed_ms,
                                &gone,
                            )
                            .await
                    {
                        tracing::debug!(error = %e, "slice not put back in redis");
                    }
                });
            }
            return Ok((s, "postgres", degraded));
        }
        // No slice stored yet (a new user): compute it now, from the latest
        // ranking; never for a user a DSAR erased (unchecked while Redis
        // is failing: such a slice holds popular items only).
        if !degraded
            && let Ok(b) = dsar::blocked(&self.slices.redis, tenant, &[user.to_string()]).await
            && !b.is_empty()
        {
            return Err(erased(user));
        }
        self.engine.refresh_global(tenant);
        let cards = self.engine.slice(tenant, user);
        self.slices
            .write_pg(tenant, user, &cards, now)
            .await
            .map_err(pg)?;
        let gone = || self.engine.is_erased(tenant, user);
        if !degraded
            && let Err(e) = self
                .slices
                .write_redis_unless(tenant, user, &cards, now, &gone)
                .await
        {
            tracing::debug!(error = %e, "new slice not written to redis");
        }
        Ok((
            Stored {
                cards,
                computed_ms: now,
            },
            "computed",
            degraded,
        ))
    }
}

#[tonic::async_trait]
impl FeedService for GrpcApi {
    #[tracing::instrument(skip_all)]
    async fn publish_activity(
        &self,
        req: Request<PublishActivityRequest>,
    ) -> Result<Response<PublishActivityResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let new = activity::validate(
            &r.actor_id,
            kind_of(r.kind),
            &r.object,
            &r.client_id,
            &r.text,
        )
        .map_err(invalid)?;
        // Nothing new for a user a DSAR erased, nor about one (a follow).
        // Unchecked while Redis is failing: publishing does not depend on
        // it, and the scan after an erase finds anything that got in.
        let named = match new.object {
            activity::Object::User(u) => vec![new.actor.to_string(), u.to_string()],
            activity::Object::Product(_) => vec![new.actor.to_string()],
        };
        let redis_down = self.redis_down_until.load(Ordering::Relaxed) > self.clock.now_ms();
        if !redis_down {
            match dsar::blocked(&self.slices.redis, &tenant, &named).await {
                Ok(gone) if !gone.is_empty() => {
                    let mut gone: Vec<String> = gone.into_iter().collect();
                    gone.sort();
                    return Err(erased(&gone.join(", ")));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "erased users not checked (redis failed)");
                    self.metrics.redis_errors.inc();
                    self.redis_down_until
                        .store(self.clock.now_ms() + REDIS_BACKOFF_MS, Ordering::Relaxed);
                }
            }
        }
        if let Some(p) = new.object.product()
            && !self.engine.knows_item(&tenant, &p.to_string())
        {
            return Err(invalid(vec![FieldError::new(
                "object",
                format!("unknown product {p}"),
            )]));
        }
        let answer = |a: &Activity, replayed| {
            Response::new(PublishActivityResponse {
                activity: Some(pb_activity(a)),
                replayed,
            })
        };
        loop {
            if let Some(a) = self.recorded(&tenant, &new).await? {
                if !a.same_request(&new) {
                    return Err(Problem::new(
                        ErrorCode::Conflict,
                        format!(
                            "client_id {:?} was used for another activity ({} {})",
                            new.client_id, a.kind, a.object
                        ),
                    )
                    .to_status());
                }
                // A replay also repairs a timeline write that failed before.
                self.timeline.append(&a).await.map_err(timeline_status)?;
                return Ok(answer(&a, true));
            }
            let now = self.clock.now_ms();
            let today = self
                .timeline
                .count_day(&tenant, new.actor, day(now))
                .await
                .map_err(timeline_status)?;
            if today >= MAX_ACTIVITIES_PER_DAY {
                return Err(Problem::new(
                    ErrorCode::RateLimited,
                    format!("at most {MAX_ACTIVITIES_PER_DAY} activities a day"),
                )
                .to_status());
            }
            let a = Activity::new(&tenant, new.clone(), now);
            if self.record(&a).await? {
                self.timeline.append(&a).await.map_err(timeline_status)?;
                return Ok(answer(&a, false));
            }
            // Another call recorded this client id first: answer as a replay.
        }
    }

    #[tracing::instrument(skip_all)]
    async fn get_page(
        &self,
        req: Request<GetPageRequest>,
    ) -> Result<Response<GetPageResponse>, Status> {
        let started = Instant::now();
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        // Keys are the canonical form, whatever form the caller sent.
        let user = user_id("user_id", &r.user_id)?.to_string();
        let (size, clamped) = cursor::page_size(
            r.page_size,
            cursor::DEFAULT_PAGE_SIZE,
            cursor::MAX_PAGE_SIZE,
        );
        let from: Option<FeedPosition> = if r.cursor.is_empty() {
            None
        } else {
            Some(
                self.sealer
                    .open("feed", &user, &r.cursor)
                    .map_err(|e| bad_request(e.to_string()))?,
            )
        };
        self.warmer.seen(&tenant, &user);
        let (stored, source, degraded) = self
            .stored(&tenant, &user, from.as_ref(), size as usize)
            .await?;
        let now = self.clock.now_ms();
        let age_ms = (now - stored.computed_ms).max(0);
        if age_ms > REFRESH_AFTER_MS {
            self.engine.mark_dirty(&tenant, &user);
        }
        let (cards, next) = cursor::page(&stored.cards, from.as_ref(), size as usize);
        let cards = cards
            .into_iter()
            .map(|(rank, log, item)| pb::Card {
                score: score_now(log, now),
                rank,
                contributions: if r.debug {
                    let w = self.engine.weights;
                    self.engine
                        .contributions(&tenant, &user, &item, now)
                        .into_iter()
                        .map(|(f, v)| pb::Contribution {
                            feature: f.name().into(),
                            value: v,
                            weight: f.weight(&w),
                        })
                        .collect()
                } else {
                    vec![]
                },
                item_id: item,
            })
            .collect();
        self.metrics
            .pages
            .get_or_create(&SourceLabels {
                source: source.into(),
            })
            .inc();
        self.metrics.slice_age.observe(age_ms as f64 / 1000.0);
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(GetPageResponse {
            cards,
            next_cursor: next
                .map(|p| self.sealer.seal("feed", &user, &p))
                .unwrap_or_default(),
            source: source.into(),
            degraded,
            page_size: size,
            clamped,
            slice_age_ms: age_ms,
        }))
    }

    async fn list_activities(
        &self,
        req: Request<ListActivitiesRequest>,
    ) -> Result<Response<ListActivitiesResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let user = user_id("user_id", &r.user_id)?;
        let (size, _) = cursor::page_size(r.page_size, TIMELINE_PAGE, TIMELINE_MAX_PAGE);
        let from: Option<String> = if r.cursor.is_empty() {
            None
        } else {
            Some(
                self.sealer
                    .open("timeline", &r.user_id, &r.cursor)
                    .map_err(|e| bad_request(e.to_string()))?,
            )
        };
        let page = self
            .timeline
            .page(&tenant, user, from.as_deref(), size as usize)
            .await
            .map_err(timeline_status)?;
        Ok(Response::new(ListActivitiesResponse {
            activities: page.activities.iter().map(pb_activity).collect(),
            next_cursor: page
                .next
                .map(|c| self.sealer.seal("timeline", &r.user_id, &c))
                .unwrap_or_default(),
        }))
    }

    async fn recommend(
        &self,
        req: Request<RecommendRequest>,
    ) -> Result<Response<RecommendResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        user_id("customer_id", &r.customer_id)?;
        let (limit, _) = cursor::page_size(r.limit, RECOMMEND_DEFAULT, RECOMMEND_MAX);
        let (items, excluded) = self
            .engine
            .recommend(&tenant, &r.customer_id, limit as usize);
        let now = self.clock.now_ms();
        Ok(Response::new(RecommendResponse {
            items: items
                .into_iter()
                .map(|(s, item_id)| pb::Recommendation {
                    item_id,
                    score: score_now(s, now),
                })
                .collect(),
            excluded_bought: excluded as u32,
        }))
    }

    async fn backfill(
        &self,
        req: Request<BackfillRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        match (r.all, r.user_id.is_empty()) {
            (true, true) => {
                // Thousands of slices take longer than a call may: queue
                // them for the materializer, from the latest ranking.
                self.engine.refresh_global(&tenant);
                let mut users = self.engine.users(&tenant);
                // Users a DSAR erased are skipped (the fold forgot them at
                // the erase; this holds if an event brought one back).
                let gone = dsar::blocked(&self.slices.redis, &tenant, &users)
                    .await
                    .map_err(|e| unavailable("redis (the erased users)", e))?;
                if !gone.is_empty() {
                    users.retain(|u| !gone.contains(u));
                    tracing::info!(skipped = gone.len(), "backfill skips erased users");
                }
                for u in &users {
                    self.engine.mark_dirty(&tenant, u);
                }
                Ok(Response::new(BackfillResponse {
                    users: users.len() as u32,
                    cards: 0,
                    queued: true,
                }))
            }
            (false, false) => {
                let user = user_id("user_id", &r.user_id)?.to_string();
                let blocked =
                    dsar::blocked(&self.slices.redis, &tenant, std::slice::from_ref(&user))
                        .await
                        .map_err(|e| unavailable("redis (the erased users)", e))?;
                if !blocked.is_empty() {
                    return Err(erased(&user));
                }
                self.engine.refresh_global(&tenant);
                let cards = job::refresh(
                    &self.engine,
                    &self.slices,
                    self.clock.as_ref(),
                    &tenant,
                    &user,
                )
                .await
                .map_err(|e| unavailable("the feed's slice stores", e))?;
                Ok(Response::new(BackfillResponse {
                    users: 1,
                    cards: cards as u64,
                    queued: false,
                }))
            }
            _ => Err(invalid(vec![FieldError::new(
                "user_id",
                "name one user, or set all (not both)",
            )])),
        }
    }
}
