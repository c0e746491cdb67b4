//! Feed: `POST /activity` records what the caller did (like, unlike, view,
//! comment, follow); `GET /activity` lists it (their timeline);
//! `GET /feed` pages their ranked feed as product cards (`?debug=true` adds
//! each card's feature contributions); `GET /recommendations` ranks popular
//! products the customer has not bought.

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{ErrorCode, Problem, http::ApiJson};
use shopstream_proto::feed::v1::{
    self as pb, GetPageRequest, ListActivitiesRequest, PublishActivityRequest, RecommendRequest,
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    auth::User,
    catalog::{ProductCard, cards_for},
    upstream::{problem_of, request},
};

const SERVICE: &str = "feed";
/// Seconds a client waits after the feed answered 503.
const RETRY_AFTER_S: u64 = 1;

fn feed_problem(s: tonic::Status) -> Problem {
    let p = problem_of(SERVICE, s);
    if p.code == ErrorCode::Unavailable {
        p.with_retry_after(RETRY_AFTER_S)
    } else {
        p
    }
}

/// Compute a new user's first slice (best effort: if it fails, their first
/// page computes it).
pub async fn backfill_new_user(state: AppState, tenant: String, user_id: String) {
    let r = state
        .feed
        .clone()
        .backfill(request(
            pb::BackfillRequest {
                user_id,
                all: false,
            },
            &tenant,
            state.upstream_timeout,
        ))
        .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "new user's feed not backfilled");
    }
}

/// Body of `POST /activity`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityCreate {
    /// `like`, `unlike`, `view`, `comment` or `follow`.
    #[schema(pattern = "^(like|unlike|view|comment|follow)$")]
    pub kind: String,
    /// `product:<id>` (like, unlike, view, comment) or `user:<id>` (follow).
    #[schema(pattern = "^(product|user):[0-9a-fA-F-]{36}$")]
    pub object: String,
    /// Your own id for this action (1-128 characters): sending it again
    /// returns the first result and records nothing twice.
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: String,
    /// A comment's text (at most 2,000 characters); nothing for other kinds.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActivityView {
    pub activity_id: String,
    pub actor_id: String,
    pub kind: String,
    pub object: String,
    pub text: String,
    pub client_id: String,
    pub ts_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActivityRecorded {
    pub activity: ActivityView,
    /// True when this client_id was recorded before (nothing new happened).
    pub replayed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActivityPage {
    pub activities: Vec<ActivityView>,
    pub next_cursor: Option<String>,
}

fn kind_name(k: i32) -> &'static str {
    match pb::ActivityKind::try_from(k).unwrap_or(pb::ActivityKind::Unspecified) {
        pb::ActivityKind::Like => "like",
        pb::ActivityKind::Unlike => "unlike",
        pb::ActivityKind::View => "view",
        pb::ActivityKind::Comment => "comment",
        pb::ActivityKind::Follow => "follow",
        pb::ActivityKind::Unspecified => "unspecified",
    }
}

impl From<pb::Activity> for ActivityView {
    fn from(a: pb::Activity) -> ActivityView {
        ActivityView {
            kind: kind_name(a.kind).into(),
            activity_id: a.activity_id,
            actor_id: a.actor_id,
            object: a.object,
            text: a.text,
            client_id: a.client_id,
            ts_ms: a.ts_ms,
        }
    }
}

/// Record an activity of the caller. 201 when new, 200 for a replay of the
/// same `client_id`. Likes are pushed live on `product:<id>` (WebSocket).
#[utoipa::path(post, path = "/activity", tag = "feed", request_body = ActivityCreate, security(("bearer" = [])),
    responses((status = 201, body = ActivityRecorded), (status = 200, body = ActivityRecorded, description = "a replay"),
        (status = 400, description = "the body is not JSON"), (status = 401, description = "no or invalid access token"),
        (status = 409, description = "the client_id was used for another activity"),
        (status = 422, description = "unknown kind, malformed or unknown object, self-follow, bad text, all listed"),
        (status = 429, description = "the daily activity limit is reached"),
        (status = 503, description = "the feed or its timeline store is unavailable (Retry-After)")))]
pub async fn publish(
    State(state): State<AppState>,
    User(claims): User,
    ApiJson(body): ApiJson<ActivityCreate>,
) -> Result<Response, Problem> {
    let kind = match body.kind.as_str() {
        "like" => pb::ActivityKind::Like,
        "unlike" => pb::ActivityKind::Unlike,
        "view" => pb::ActivityKind::View,
        "comment" => pb::ActivityKind::Comment,
        "follow" => pb::ActivityKind::Follow,
        _ => pb::ActivityKind::Unspecified,
    };
    let r = state
        .feed
        .clone()
        .publish_activity(request(
            PublishActivityRequest {
                actor_id: claims.sub.clone(),
                kind: kind as i32,
                object: body.object,
                client_id: body.client_id,
                text: body.text,
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(feed_problem)?
        .into_inner();
    let activity = r
        .activity
        .ok_or_else(|| Problem::new(ErrorCode::Internal, "feed answered without an activity"))?;
    let status = if r.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(ActivityRecorded {
            activity: activity.into(),
            replayed: r.replayed,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Cards per page: 20 by default, at most 50 (more is clamped, and the
    /// answer says so).
    pub limit: Option<u32>,
    /// Add each card's feature contributions.
    #[serde(default)]
    pub debug: bool,
}

/// The caller's activities, newest first.
#[utoipa::path(get, path = "/activity", tag = "feed", params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = ActivityPage), (status = 400, description = "a cursor that was altered or is someone else's"),
        (status = 401, description = "no or invalid access token"),
        (status = 503, description = "the timeline store is unavailable (Retry-After)")))]
pub async fn list_activity(
    State(state): State<AppState>,
    User(claims): User,
    Query(q): Query<PageParams>,
) -> Result<Json<ActivityPage>, Problem> {
    let r = state
        .feed
        .clone()
        .list_activities(request(
            ListActivitiesRequest {
                user_id: claims.sub.clone(),
                page_size: q.limit.unwrap_or(0),
                cursor: q.cursor.unwrap_or_default(),
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(feed_problem)?
        .into_inner();
    Ok(Json(ActivityPage {
        activities: r.activities.into_iter().map(Into::into).collect(),
        next_cursor: Some(r.next_cursor).filter(|c| !c.is_empty()),
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContributionView {
    /// `popularity.views`, `popularity.likes`, `popularity.comments`,
    /// `popularity.purchases`, `freshness`, `affinity.views`,
    /// `affinity.like` or `social.likes`.
    pub feature: String,
    /// Weighted value now. A card's contributions add up to its score once
    /// its slice has caught up with the latest signals (the score is the
    /// stored slice's; contributions are computed at the request).
    pub value: f64,
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedCard {
    /// 1-based position in the caller's feed.
    pub rank: u32,
    pub item_id: String,
    pub score: f64,
    /// Absent if the product no longer exists.
    pub product: Option<ProductCard>,
    /// With `debug=true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<ContributionView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    pub cards: Vec<FeedCard>,
    pub next_cursor: Option<String>,
    /// `redis` (a cache hit), `postgres` (the fallback) or `computed` (a
    /// new user's first slice).
    pub source: String,
    /// Redis was down or failing: served from Postgres.
    pub degraded: bool,
    /// The page size used, and whether the request asked for more.
    pub limit: u32,
    pub clamped: bool,
    pub slice_age_ms: i64,
}

/// The caller's feed: a page of ranked product cards.
#[utoipa::path(get, path = "/feed", tag = "feed", params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = FeedPage), (status = 400, description = "a cursor that was altered or is someone else's"),
        (status = 401, description = "no or invalid access token"),
        (status = 503, description = "the feed's stores are unavailable (Retry-After)")))]
pub async fn feed(
    State(state): State<AppState>,
    User(claims): User,
    Query(q): Query<PageParams>,
) -> Result<Json<FeedPage>, Problem> {
    let r = state
        .feed
        .clone()
        .get_page(request(
            GetPageRequest {
                user_id: claims.sub.clone(),
                page_size: q.limit.unwrap_or(0),
                cursor: q.cursor.unwrap_or_default(),
                debug: q.debug,
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(feed_problem)?
        .into_inner();
    let ids: Vec<String> = r.cards.iter().map(|c| c.item_id.clone()).collect();
    let (mut products, _missing) = if ids.is_empty() {
        Default::default()
    } else {
        cards_for(&state, &claims.tid, &ids).await?
    };
    Ok(Json(FeedPage {
        cards: r
            .cards
            .into_iter()
            .enumerate()
            .map(|(i, c)| FeedCard {
                rank: c.rank,
                product: products.remove(&i),
                item_id: c.item_id,
                score: c.score,
                contributions: c
                    .contributions
                    .into_iter()
                    .map(|x| ContributionView {
                        feature: x.feature,
                        value: x.value,
                        weight: x.weight,
                    })
                    .collect(),
            })
            .collect(),
        next_cursor: Some(r.next_cursor).filter(|c| !c.is_empty()),
        source: r.source,
        degraded: r.degraded,
        limit: r.page_size,
        clamped: r.clamped,
        slice_age_ms: r.slice_age_ms,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendParams {
    /// Whose: yourself, or anyone if you are an admin.
    pub customer_id: String,
    /// 10 by default, at most 50.
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecommendationView {
    pub item_id: String,
    pub score: f64,
    pub product: Option<ProductCard>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecommendationsView {
    pub items: Vec<RecommendationView>,
    /// Popular products left out because the customer bought them.
    pub excluded_bought: u32,
}

/// Popular products the customer has not bought.
#[utoipa::path(get, path = "/recommendations", tag = "feed", params(RecommendParams), security(("bearer" = [])),
    responses((status = 200, body = RecommendationsView), (status = 400, description = "no customer_id"),
        (status = 401, description = "no or invalid access token"),
        (status = 403, description = "another customer's, and you are not an admin"),
        (status = 422, description = "customer_id is not a user id"),
        (status = 503, description = "the feed is unavailable (Retry-After)")))]
pub async fn recommendations(
    State(state): State<AppState>,
    User(claims): User,
    Query(q): Query<RecommendParams>,
) -> Result<Json<RecommendationsView>, Problem> {
    if q.customer_id != claims.sub && !claims.admin {
        return Err(Problem::new(
            ErrorCode::PermissionDenied,
            "you may only ask for your own recommendations",
        ));
    }
    let r = state
        .feed
        .clone()
        .recommend(request(
            RecommendRequest {
                customer_id: q.customer_id,
                limit: q.limit.unwrap_or(0),
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(feed_problem)?
        .into_inner();
    let ids: Vec<String> = r.items.iter().map(|c| c.item_id.clone()).collect();
    let (mut products, _missing) = if ids.is_empty() {
        Default::default()
    } else {
        cards_for(&state, &claims.tid, &ids).await?
    };
    Ok(Json(RecommendationsView {
        items: r
            .items
            .into_iter()
            .enumerate()
            .map(|(i, x)| RecommendationView {
                product: products.remove(&i),
                item_id: x.item_id,
                score: x.score,
            })
            .collect(),
        excluded_bought: r.excluded_bought,
    }))
}
