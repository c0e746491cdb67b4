//! Reservations (stock holds a signed-in caller places and releases) and stock
//! reads/writes, over inventory's gRPC API. Which caller owns a hold is kept
//! in Redis next to the hold's lifetime, so only its owner (or an admin) can
//! release it.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use shopstream_platform::{
    ErrorCode, Problem,
    http::ApiJson,
    ids::{IdGen, SystemIdGen},
};
use shopstream_proto::{
    common::v1::ProductRef,
    inventory::v1::{
        GetStockRequest, ReleaseRequest, ReservationItem, ReservationState, ReserveRequest,
        SetStockRequest, Stock,
    },
};
use utoipa::ToSchema;

use crate::{
    AppState,
    analytics::{Action, Seen},
    auth::{Admin, MaybeUser, User},
    catalog::tenant,
    upstream::{problem_of, request},
};

const SERVICE: &str = "inventory";

/// How long the owner record outlives the hold, so releasing a lapsed hold
/// still finds its owner (the release is idempotent).
const HOLD_OWNER_GRACE_S: u64 = 24 * 60 * 60;

/// Reason recorded with a release the caller asked for.
const RELEASE_REASON: &str = "user_requested";
/// Reason recorded when a new hold is given back because its owner could not
/// be recorded.
const OWNER_UNRECORDED_REASON: &str = "owner_unrecorded";
/// What an unkeyed caller is told then.
pub const OWNER_UNRECORDED_DETAIL: &str = "reservations are unavailable: the hold could not be recorded as yours and was given back; try again";

/// One line to hold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReservationLine {
    /// Not blank.
    #[schema(pattern = r"[\S\x1c-\x1f]")]
    pub sku_id: String,
    /// Units to hold; at least 1.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "crate::wire::u32_whole")]
    pub quantity: u32,
}

/// Body of `POST /reservations`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReservationCreate {
    /// 1 to 100 lines; lines of one SKU are added up.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<ReservationLine>,
    /// How long to hold, in seconds, at most 3600; absent or 0 = the server default.
    #[schema(maximum = 3600)]
    #[serde(default, deserialize_with = "crate::wire::opt_u32_whole")]
    pub ttl_s: Option<u32>,
}

/// A stock hold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReservationView {
    pub reservation_id: String,
    /// held | committed | released | expired
    pub state: String,
    /// When the hold lapses unless committed (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

/// Stock of one SKU.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StockView {
    pub sku_id: String,
    /// Units in the warehouse not yet sold (held ones included).
    pub on_hand: i64,
    /// Units held by open reservations.
    pub reserved: i64,
    /// on_hand - reserved.
    pub available: i64,
    /// Units sold so far.
    pub committed: i64,
}

/// Body of `PUT /admin/inventory/{sku_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StockWrite {
    /// At least the units currently reserved.
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "crate::wire::i64_whole")]
    pub on_hand: i64,
}

pub fn reservation_state(s: ReservationState) -> &'static str {
    match s {
        ReservationState::Unspecified => "unspecified",
        ReservationState::Held => "held",
        ReservationState::Committed => "committed",
        ReservationState::Released => "released",
        ReservationState::Expired => "expired",
    }
}

impl From<Stock> for StockView {
    fn from(s: Stock) -> Self {
        StockView {
            sku_id: s.sku_id,
            on_hand: s.on_hand,
            reserved: s.reserved,
            available: s.available,
            committed: s.committed,
        }
    }
}

/// Who holds a reservation: `hold-owner:{tenant}:{reservation_id}` → the
/// user id, for the hold's lifetime and a grace period.
pub fn owner_key(tenant: &str, reservation_id: &str) -> String {
    format!("hold-owner:{tenant}:{reservation_id}")
}

/// The key inventory stores the hold under (its `order_id`, one hold per
/// key). Without an `Idempotency-Key` it is fresh. With one it is derived
/// from the tenant, the caller and the key, so a retry after a lost answer
/// (a 503 while inventory was still committing) finds the same hold instead
/// of holding the units a second time, and another caller's equal key is a
/// different hold. Hashed, so neither the user id nor the key is stored.
fn hold_key(tenant: &str, user: &str, idempotency_key: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match idempotency_key {
        None => format!("hold-{}", SystemIdGen.new_id()),
        Some(key) => {
            let digest = Sha256::new()
                .chain_update(tenant)
                .chain_update([0])
                .chain_update(user)
                .chain_update([0])
                .chain_update(key)
                .finalize();
            format!("hold-key-{}", hex::encode(&digest[..16]))
        }
    }
}

/// What a client is told after a write the hold may or may not have taken.
pub const MAYBE_HELD_DETAIL: &str = "inventory did not confirm the hold; it may have been made: retry with the same Idempotency-Key (a replay answers the hold)";
/// The same, to a client that sent no key and so cannot find the hold.
pub const MAYBE_HELD_UNKEYED_DETAIL: &str = "inventory did not confirm the hold; it may have been made and will lapse by its TTL (send an Idempotency-Key to be able to retry safely)";

/// Inventory's answer to a reserve → problem+json. As for orders' create, a
/// status that cannot rule out a made hold (the deadline passed, the
/// connection broke) is a 503 that says so, never a 500; a keyed request's
/// reuse of its key for other lines is a 409 naming the key.
fn reserve_problem(s: tonic::Status, keyed: bool) -> Problem {
    if crate::orders::unconfirmed(s.code()) {
        tracing::warn!(service = SERVICE, code = ?s.code(), message = s.message(), "reservation unconfirmed");
        let detail = if keyed {
            MAYBE_HELD_DETAIL
        } else {
            MAYBE_HELD_UNKEYED_DETAIL
        };
        return Problem::new(ErrorCode::Unavailable, detail);
    }
    let p = problem_of(SERVICE, s);
    // Inventory's "already holds a different reservation" for a hold key.
    let reused = p
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("different reservation"));
    if keyed && p.status == 409 && reused {
        Problem::new(
            ErrorCode::Conflict,
            "this Idempotency-Key was used for a reservation of other lines",
        )
    } else {
        p
    }
}

/// Hold stock for the caller. With an `Idempotency-Key`, a retry answers the
/// same hold (as it is now: held, or released/expired holding nothing).
#[utoipa::path(post, path = "/reservations", tag = "checkout", request_body = ReservationCreate, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "optional; makes a retry answer the same hold instead of holding again: visible ASCII, not blank, at most 255 characters", min_length = 1, max_length = 255)),
    responses((status = 201, body = ReservationView),
        (status = 400, description = "the body is not JSON, or not sent as application/json; a bad Idempotency-Key"),
        (status = 401, description = "no or invalid access token"), (status = 404, description = "an unknown SKU"),
        (status = 409, description = "a line lacks stock; or the Idempotency-Key was used for other lines"), (status = 413, description = "body too large"),
        (status = 422, description = "invalid lines"), (status = 503, description = "inventory is unavailable, or did not confirm the hold (the deadline passed, the connection broke): with an Idempotency-Key, retry with the same key to learn whether the hold was made")))]
pub async fn reserve(
    State(state): State<AppState>,
    User(claims): User,
    seen: Seen,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ReservationCreate>,
) -> Result<(StatusCode, Json<ReservationView>), Problem> {
    let key = headers
        .contains_key("idempotency-key")
        .then(|| crate::orders::idempotency_key(&headers))
        .transpose()?;
    let first_sku = body
        .items
        .first()
        .map(|l| l.sku_id.clone())
        .unwrap_or_default();
    let msg = ReserveRequest {
        order_id: hold_key(&claims.tid, &claims.sub, key.as_deref()),
        items: body
            .items
            .into_iter()
            .map(|l| ReservationItem {
                sku: Some(ProductRef {
                    product_id: String::new(),
                    sku_id: l.sku_id,
                }),
                quantity: l.quantity,
            })
            .collect(),
        ttl_s: body.ttl_s.unwrap_or(0),
    };
    let resp = state
        .inventory
        .clone()
        .reserve(request(msg, &claims.tid, state.upstream_timeout))
        .await
        .map_err(|s| reserve_problem(s, key.is_some()))?
        .into_inner();
    let now = state.clock.now_ms();
    let event = seen.event(Action::AddToCart, &first_sku, Some(&claims.sub), now);
    state.analytics.record(&claims.tid, event);
    let ttl_s = u64::try_from((resp.expires_at_ms - state.clock.now_ms()).max(0) / 1000)
        .unwrap_or(0)
        + HOLD_OWNER_GRACE_S;
    let mut redis = state.redis.clone();
    let owner = owner_key(&claims.tid, &resp.reservation_id);
    if let Err(e) = redis.set_ex::<_, _, ()>(&owner, &claims.sub, ttl_s).await {
        // Without its owner on record only an admin could release the hold
        // (its owner's DELETE would be a 404), so it is not handed out: a
        // keyed client asks again and the replay records the owner; any
        // other caller's units go back now.
        tracing::warn!(error = %e, reservation_id = %resp.reservation_id, "could not record the hold's owner");
        if key.is_some() {
            return Err(Problem::new(ErrorCode::Unavailable, MAYBE_HELD_DETAIL));
        }
        let given_back = release_hold(
            &state,
            &claims.tid,
            &resp.reservation_id,
            OWNER_UNRECORDED_REASON,
        )
        .await
        .is_ok();
        return Err(Problem::new(
            ErrorCode::Unavailable,
            if given_back {
                OWNER_UNRECORDED_DETAIL
            } else {
                MAYBE_HELD_UNKEYED_DETAIL
            },
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(ReservationView {
            state: reservation_state(resp.state()).to_string(),
            reservation_id: resp.reservation_id,
            expires_at_ms: Some(resp.expires_at_ms),
        }),
    ))
}

/// Inventory's release of hold `reservation_id`, recording `reason`.
async fn release_hold(
    state: &AppState,
    tenant: &str,
    reservation_id: &str,
    reason: &str,
) -> Result<shopstream_proto::inventory::v1::ReleaseResponse, tonic::Status> {
    let msg = ReleaseRequest {
        reservation_id: reservation_id.to_string(),
        reason: reason.into(),
        order_id: String::new(),
    };
    Ok(state
        .inventory
        .clone()
        .release(request(msg, tenant, state.upstream_timeout))
        .await?
        .into_inner())
}

/// Release a hold (idempotent). Only its owner or an admin may.
#[utoipa::path(delete, path = "/reservations/{id}", tag = "checkout", security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "reservation id")),
    responses((status = 200, body = ReservationView), (status = 401, description = "no or invalid access token"),
        (status = 404, description = "unknown or not yours"), (status = 409, description = "already committed"),
        (status = 422, description = "not a UUID (an admin's call; others get 404)"),
        (status = 503, description = "inventory is unavailable")))]
pub async fn release(
    State(state): State<AppState>,
    User(claims): User,
    Path(id): Path<String>,
) -> Result<Json<ReservationView>, Problem> {
    let mut redis = state.redis.clone();
    let owner: Option<String> = redis.get(owner_key(&claims.tid, &id)).await.map_err(|e| {
        tracing::warn!(error = %e, "hold owner lookup failed");
        Problem::new(ErrorCode::Unavailable, "reservations are unavailable")
    })?;
    if !claims.admin && owner.as_deref() != Some(claims.sub.as_str()) {
        return Err(Problem::new(ErrorCode::NotFound, "no such reservation"));
    }
    let resp = release_hold(&state, &claims.tid, &id, RELEASE_REASON)
        .await
        .map_err(|s| problem_of(SERVICE, s))?;
    Ok(Json(ReservationView {
        reservation_id: id,
        state: reservation_state(resp.state()).to_string(),
        expires_at_ms: None,
    }))
}

/// Stock of one SKU (public).
#[utoipa::path(get, path = "/inventory/{sku_id}", tag = "checkout", security((), ("bearer" = [])),
    params(("sku_id" = String, Path, description = "sku id")),
    responses((status = 200, body = StockView), (status = 401, description = "an access token was sent and is invalid"),
        (status = 404, description = "unknown SKU"), (status = 503, description = "inventory is unavailable")))]
pub async fn get_stock(
    State(state): State<AppState>,
    user: MaybeUser,
    headers: HeaderMap,
    Path(sku_id): Path<String>,
) -> Result<Json<StockView>, Problem> {
    let tenant = tenant(&user, &headers, &state);
    let resp = state
        .inventory
        .clone()
        .get_stock(request(
            GetStockRequest { sku_id },
            &tenant,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner();
    resp.stock
        .map(|s| Json(StockView::from(s)))
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such sku"))
}

/// Set a SKU's units on hand (admin).
#[utoipa::path(put, path = "/admin/inventory/{sku_id}", tag = "admin", request_body = StockWrite, security(("bearer" = [])),
    params(("sku_id" = String, Path, description = "sku id")),
    responses((status = 200, body = StockView),
        (status = 400, description = "the body is not JSON, or not sent as application/json"),
        (status = 401, description = "no or invalid access token"), (status = 403, description = "not an admin"),
        (status = 404, description = "unknown SKU"), (status = 409, description = "below the reserved quantity"),
        (status = 413, description = "body too large"),
        (status = 422, description = "negative, or a field missing or of the wrong type"),
        (status = 503, description = "inventory is unavailable")))]
pub async fn set_stock(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Path(sku_id): Path<String>,
    ApiJson(body): ApiJson<StockWrite>,
) -> Result<Json<StockView>, Problem> {
    if body.on_hand < 0 {
        return Err(Problem::new(ErrorCode::Unprocessable, "invalid stock")
            .with_field("on_hand", "must not be negative"));
    }
    let resp = state
        .inventory
        .clone()
        .set_stock(request(
            SetStockRequest {
                sku_id,
                on_hand: body.on_hand,
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner();
    resp.stock
        .map(|s| Json(StockView::from(s)))
        .ok_or_else(|| Problem::new(ErrorCode::Internal, "inventory answered without stock"))
}
