//! Checkout: create orders (idempotent on the client's `Idempotency-Key`) and
//! read them and their saga steps, over the orders service's gRPC API. A
//! caller sees only their own orders (an admin sees the whole tenant);
//! someone else's order is indistinguishable from an absent one (404).
//!
//! A create is never answered as a plain failure once the order may exist:
//! an order stored whose saga did not start in time is 202, and every
//! error that cannot rule out a stored order says so and how to get it
//! (the same `Idempotency-Key` again). The operator's toggle
//! `checkout-paused` refuses new orders with 503 before anything is asked.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{
    ErrorCode, Problem,
    auth::Claims,
    faults,
    http::ApiJson,
    idempotency::{IdempotencyKey, IdempotencyKeyError},
};
use shopstream_proto::{
    common::v1::{Money, PageRequest, ProductRef},
    orders::v1::{
        CancelReason, CreateOrderItem, CreateOrderRequest, GetOrderRequest, ListOrdersRequest,
        Order, OrderItem, OrderState, OrderStep,
    },
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    analytics::{Action, Seen},
    auth::User,
    upstream::{problem_of, request},
};

const SERVICE: &str = "orders";

/// Response header set when a create was answered from an earlier call.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The operator's toggle that refuses new orders (fault catalog).
pub const CHECKOUT_PAUSED: &str = "checkout-paused";
/// The detail of `POST /orders` while [`CHECKOUT_PAUSED`] is on.
pub const CHECKOUT_PAUSED_DETAIL: &str = "checkout is paused by an operator";
/// The detail of a create that failed in a way that cannot rule out a
/// stored order (no answer in time, orders unreachable mid-call, orders
/// unsure itself).
pub const MAYBE_STORED_DETAIL: &str = "orders did not confirm the order; it may have been stored: retry with the same Idempotency-Key (a replay answers the stored order)";

/// One line of a new order. Prices come from the catalog, never the client.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderLineCreate {
    /// Not blank.
    #[schema(pattern = r"[\S\x1c-\x1f]")]
    pub product_id: String,
    /// Not blank, and on one line only.
    #[schema(pattern = r"[\S\x1c-\x1f]")]
    pub sku_id: String,
    /// 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "crate::wire::u32_whole")]
    pub quantity: u32,
}

/// Body of `POST /orders`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderCreate {
    /// 1 to 50 lines, one per SKU.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<OrderLineCreate>,
    /// Tokenized payment method from the provider's SDK, e.g. `pm_card_visa`.
    #[schema(pattern = r"[\S\x1c-\x1f]")]
    pub payment_method: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderLineView {
    pub product_id: String,
    pub sku_id: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub user_id: String,
    /// pending | reserved | authorized | captured | completed | cancelled
    pub state: String,
    /// null unless cancelled: out_of_stock | payment_declined | payment_failed |
    /// reservation_expired | user_requested | internal_error
    pub cancel_reason: Option<String>,
    pub cancel_detail: String,
    pub items: Vec<OrderLineView>,
    pub total_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// Empty until stock is held.
    pub reservation_id: String,
    /// Empty until a payment intent exists.
    pub payment_id: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One thing the checkout saga did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderStepView {
    pub seq: u32,
    /// reserve | authorize | capture | finalize | refund | cancel_intent | release
    pub step: String,
    /// succeeded | failed | compensated
    pub outcome: String,
    /// The order's state after this step.
    pub state: String,
    pub detail: String,
    pub at_ms: i64,
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderEventsView {
    pub order_id: String,
    pub state: String,
    pub steps: Vec<OrderStepView>,
}

fn parse_state(s: &str) -> Option<OrderState> {
    [
        OrderState::Pending,
        OrderState::Reserved,
        OrderState::Authorized,
        OrderState::Captured,
        OrderState::Completed,
        OrderState::Cancelled,
    ]
    .into_iter()
    .find(|st| st.name() == s)
}

pub fn cancel_reason(r: CancelReason) -> Option<&'static str> {
    match r {
        CancelReason::Unspecified => None,
        CancelReason::OutOfStock => Some("out_of_stock"),
        CancelReason::PaymentDeclined => Some("payment_declined"),
        CancelReason::PaymentFailed => Some("payment_failed"),
        CancelReason::ReservationExpired => Some("reservation_expired"),
        CancelReason::UserRequested => Some("user_requested"),
        CancelReason::InternalError => Some("internal_error"),
    }
}

fn minor(m: &Option<Money>) -> i64 {
    m.as_ref().map_or(0, |m| m.amount_minor)
}

fn line_view(i: &OrderItem) -> OrderLineView {
    let sku = i.sku.clone().unwrap_or_default();
    OrderLineView {
        product_id: sku.product_id,
        sku_id: sku.sku_id,
        quantity: i.quantity,
        unit_price_minor: minor(&i.unit_price),
        line_total_minor: minor(&i.line_total),
    }
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        OrderView {
            state: o.state().name().to_string(),
            cancel_reason: cancel_reason(o.cancel_reason()).map(str::to_owned),
            items: o.items.iter().map(line_view).collect(),
            total_minor: minor(&o.total),
            currency: o.total.map(|m| m.currency).unwrap_or_default(),
            order_id: o.order_id,
            user_id: o.user_id,
            cancel_detail: o.cancel_detail,
            reservation_id: o.reservation_id,
            payment_id: o.payment_id,
            created_at_ms: o.created_at_ms,
            updated_at_ms: o.updated_at_ms,
        }
    }
}

impl From<OrderStep> for OrderStepView {
    fn from(s: OrderStep) -> Self {
        OrderStepView {
            state: s.state().name().to_string(),
            seq: s.seq,
            step: s.step,
            outcome: s.outcome,
            detail: s.detail,
            at_ms: s.at_ms,
            attempts: s.attempts,
        }
    }
}

/// The `Idempotency-Key` header: required, ASCII, at most
/// [`IdempotencyKey::MAX_CHARS`] characters once trimmed (400 otherwise).
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let raw = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::trim))
        .transpose()
        .map_err(|_| Problem::new(ErrorCode::BadRequest, "Idempotency-Key must be ASCII"))?
        .unwrap_or_default();
    match IdempotencyKey::parse(raw) {
        Ok(key) => Ok(key.into_string()),
        Err(IdempotencyKeyError::Missing) => Err(Problem::new(
            ErrorCode::BadRequest,
            "this route needs an Idempotency-Key header",
        )),
        Err(IdempotencyKeyError::TooLong) => Err(Problem::new(
            ErrorCode::BadRequest,
            format!(
                "Idempotency-Key is longer than {} characters",
                IdempotencyKey::MAX_CHARS
            ),
        )),
    }
}

/// The order, if the caller may see it (own order, or admin); else 404.
pub(crate) async fn visible_order(
    state: &AppState,
    claims: &Claims,
    id: String,
) -> Result<Order, Problem> {
    let order = state
        .orders
        .clone()
        .get_order(request(
            GetOrderRequest { order_id: id },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner()
        .order;
    order
        .filter(|o| claims.admin || o.user_id == claims.sub)
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such order"))
}

/// `checkout-paused` on: the 503 that refuses a new order.
pub fn checkout_paused() -> Result<(), Problem> {
    match faults::hits(CHECKOUT_PAUSED, "gateway") {
        Some(_) => Err(Problem::new(ErrorCode::Unavailable, CHECKOUT_PAUSED_DETAIL)),
        None => Ok(()),
    }
}

/// Orders' answer to a create → problem+json. A status that cannot rule out
/// a stored order (the deadline passed, the connection broke, orders failed
/// or said it may have stored it) says how to get the order; the others
/// (invalid, unknown product, key reuse) map as for every backend.
pub fn create_problem(s: tonic::Status) -> Problem {
    if unconfirmed(s.code()) {
        tracing::warn!(service = SERVICE, code = ?s.code(), message = s.message(), "order create unconfirmed");
        Problem::new(ErrorCode::Unavailable, MAYBE_STORED_DETAIL)
    } else {
        problem_of(SERVICE, s)
    }
}

/// Whether a call that writes may have taken effect despite this status: the
/// deadline passed, the connection broke (a transport error is `Unknown`),
/// or the backend failed part-way.
pub fn unconfirmed(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::DataLoss
    )
}

/// Place an order and start the checkout saga (asynchronous: poll the order
/// or its events). Idempotent on `Idempotency-Key`: a replay of the same key
/// and body answers the stored order with `Idempotent-Replayed: true`. An
/// order stored whose saga has not started yet is 202: it starts shortly.
#[utoipa::path(post, path = "/orders", tag = "checkout", request_body = OrderCreate, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "unique per intended order: visible ASCII, not blank, at most 255 characters", min_length = 1, max_length = 255, pattern = r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$")),
    responses(
        (status = 201, body = OrderView, description = "a new order; its checkout saga has started",
            headers(("Location" = String, description = "/orders/{order_id}"))),
        (status = 202, body = OrderView, description = "accepted: the order is stored (state pending) but its checkout saga has not started yet (the workflow engine did not answer in time); orders starts it shortly, follow Location. Also a replay of such an order, with Idempotent-Replayed",
            headers(("Location" = String, description = "/orders/{order_id}"),
                ("Idempotent-Replayed" = String, description = "true on a replay"))),
        (status = 200, body = OrderView, description = "a replay: the stored order",
            headers(("Idempotent-Replayed" = String, description = "true"),
                ("Location" = String, description = "/orders/{order_id}"))),
        (status = 400, description = "no or bad Idempotency-Key; a body that is not JSON or not sent as application/json"),
        (status = 401, description = "no or invalid access token"), (status = 404, description = "an unknown product or SKU"),
        (status = 409, description = "a line lacks stock, or the same key is still being answered"),
        (status = 413, description = "body too large"),
        (status = 422, description = "invalid fields, or the key was used with another body"),
        (status = 503, description = "checkout is paused by an operator (nothing was stored); or orders did not confirm the order: it may have been stored, so retry with the same Idempotency-Key (a replay answers the stored order)")))]
pub async fn create_order(
    State(state): State<AppState>,
    User(claims): User,
    seen: Seen,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OrderCreate>,
) -> Result<Response, Problem> {
    checkout_paused()?;
    let key = idempotency_key(&headers)?;
    let msg = CreateOrderRequest {
        idempotency_key: key,
        user_id: claims.sub.clone(),
        items: body
            .items
            .into_iter()
            .map(|l| CreateOrderItem {
                sku: Some(ProductRef {
                    product_id: l.product_id,
                    sku_id: l.sku_id,
                }),
                quantity: l.quantity,
            })
            .collect(),
        payment_method: body.payment_method,
    };
    let resp = state
        .orders
        .clone()
        .create_order(request(msg, &claims.tid, state.upstream_timeout))
        .await
        .map_err(create_problem)?
        .into_inner();
    let order = resp
        .order
        .map(OrderView::from)
        .ok_or_else(|| Problem::new(ErrorCode::Unavailable, MAYBE_STORED_DETAIL))?;
    if !resp.replayed {
        let now = state.clock.now_ms();
        let event = seen.event(
            Action::CheckoutStarted,
            &order.order_id,
            Some(&claims.sub),
            now,
        );
        state.analytics.record(&claims.tid, event);
    }
    let location = HeaderValue::from_str(&format!("/orders/{}", order.order_id)).ok();
    let status = create_status(resp.replayed, resp.saga_start_pending);
    let mut out = (status, Json(order)).into_response();
    if resp.replayed {
        out.headers_mut().insert(
            HeaderName::from_static(REPLAYED_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    if let Some(l) = location {
        out.headers_mut().insert(header::LOCATION, l);
    }
    Ok(out)
}

/// 202 while the saga has not started (new or replayed), else 201 for a new
/// order and 200 for a replay.
pub fn create_status(replayed: bool, saga_start_pending: bool) -> StatusCode {
    match (saga_start_pending, replayed) {
        (true, _) => StatusCode::ACCEPTED,
        (false, false) => StatusCode::CREATED,
        (false, true) => StatusCode::OK,
    }
}

/// One order: the caller's own (admins see every order).
#[utoipa::path(get, path = "/orders/{id}", tag = "checkout", security(("bearer" = [])),
    params(("id" = String, Path, description = "order id")),
    responses((status = 200, body = OrderView), (status = 401, description = "no or invalid access token"),
        (status = 404, description = "absent or not yours"), (status = 503, description = "orders is unavailable")))]
pub async fn get_order(
    State(state): State<AppState>,
    User(claims): User,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Problem> {
    let order = visible_order(&state, &claims, id).await?;
    Ok(Json(OrderView::from(order)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    /// Page size, 1 to 100 (more is a 422, not a silent cut); default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only orders in these states (comma-separated), e.g. `cancelled`.
    #[param(
        pattern = r"^[^\S\x1c-\x1f]*(pending|reserved|authorized|captured|completed|cancelled)?[^\S\x1c-\x1f]*(,[^\S\x1c-\x1f]*(pending|reserved|authorized|captured|completed|cancelled)?[^\S\x1c-\x1f]*)*$"
    )]
    pub state: Option<String>,
    /// `true` (admins only): every order of the tenant, not just the caller's.
    pub all: Option<bool>,
}

/// Most orders one page may ask for (orders' own bound).
pub const MAX_LIMIT: u32 = 100;

/// The caller's orders, newest first (an admin may ask for `all=true`).
#[utoipa::path(get, path = "/orders", params(OrderListParams), tag = "checkout", security(("bearer" = [])),
    responses((status = 200, body = OrderPage),
        (status = 400, description = "a parameter of the wrong type (`all` not true or false, `limit` not a number), or repeated"),
        (status = 401, description = "no or invalid access token"),
        (status = 403, description = "all=true without the admin role"),
        (status = 422, description = "invalid state, limit or cursor"), (status = 503, description = "orders is unavailable")))]
pub async fn list_orders(
    State(state): State<AppState>,
    User(claims): User,
    Query(q): Query<OrderListParams>,
) -> Result<Json<OrderPage>, Problem> {
    if q.limit.is_some_and(|n| !(1..=MAX_LIMIT).contains(&n)) {
        return Err(Problem::new(ErrorCode::Unprocessable, "invalid limit")
            .with_field("limit", format!("an integer from 1 to {MAX_LIMIT}")));
    }
    let all = q.all.unwrap_or(false);
    if all && !claims.admin {
        return Err(Problem::new(
            ErrorCode::PermissionDenied,
            "all=true needs the admin role",
        ));
    }
    let mut states = Vec::new();
    for s in q
        .state
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match parse_state(s) {
            Some(st) => states.push(st as i32),
            None => {
                return Err(
                    Problem::new(ErrorCode::Unprocessable, "invalid state").with_field(
                        "state",
                        format!(
                            "{s:?} is not one of pending, reserved, authorized, captured, completed, cancelled"
                        ),
                    ),
                );
            }
        }
    }
    let msg = ListOrdersRequest {
        page: Some(PageRequest {
            page_size: q.limit.unwrap_or(0),
            cursor: q.cursor.unwrap_or_default(),
        }),
        user_id: if all {
            String::new()
        } else {
            claims.sub.clone()
        },
        states,
    };
    let resp = state
        .orders
        .clone()
        .list_orders(request(msg, &claims.tid, state.upstream_timeout))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner();
    Ok(Json(OrderPage {
        orders: resp.orders.into_iter().map(OrderView::from).collect(),
        next_cursor: resp.page.map(|p| p.next_cursor).filter(|c| !c.is_empty()),
    }))
}

/// `?after=&wait_ms=` of `GET /orders/{id}/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Only the steps after this sequence number (the last one seen).
    #[param(minimum = 0)]
    pub after: Option<u64>,
    /// Long-poll: when no step after `after` exists yet, wait up to this many
    /// milliseconds (at most 30,000) for one; an empty list at the deadline.
    #[param(minimum = 0, maximum = 30000)]
    pub wait_ms: Option<u64>,
}

/// What the checkout saga did for one order, oldest first: every step, or
/// those after `after`. With `wait_ms`, a long-poll that answers as soon as a
/// newer step exists.
#[utoipa::path(get, path = "/orders/{id}/events", tag = "checkout", security(("bearer" = [])),
    params(("id" = String, Path, description = "order id"), EventsParams),
    responses((status = 200, body = OrderEventsView),
        (status = 400, description = "`after` or `wait_ms` not a number, or `wait_ms` over 30000"),
        (status = 401, description = "no or invalid access token"),
        (status = 404, description = "absent or not yours"),
        (status = 429, description = "too many live connections for this user or gateway (long-polls count)"),
        (status = 503, description = "orders or the realtime fan-out is unavailable")))]
pub async fn order_events(
    State(state): State<AppState>,
    User(claims): User,
    Path(id): Path<String>,
    Query(q): Query<EventsParams>,
) -> Result<Json<OrderEventsView>, Problem> {
    let wait = q.wait_ms.unwrap_or(0);
    if wait > crate::live::MAX_WAIT_MS {
        return Err(Problem::new(
            ErrorCode::BadRequest,
            format!("wait_ms is at most {}", crate::live::MAX_WAIT_MS),
        ));
    }
    let after = q.after.unwrap_or(0);
    let mut order = visible_order(&state, &claims, id.clone()).await?;
    let mut steps = crate::realtime::steps_after(&state, &claims.tid, &id, after).await?;
    if steps.is_empty() && wait > 0 {
        // Follow the order first, then read again: a step committed in
        // between is either in the read or on its way to `conn`.
        use crate::realtime::{live_problem, order_topic};
        let topic = order_topic(&id)?;
        let mut conn = state.live.connect(&claims.sub).map_err(live_problem)?;
        conn.subscribe(&claims.tid, &topic)
            .await
            .map_err(live_problem)?;
        steps = crate::realtime::steps_after(&state, &claims.tid, &id, after).await?;
        if steps.is_empty() {
            let deadline = std::time::Duration::from_millis(wait);
            if tokio::time::timeout(deadline, conn.recv()).await.is_ok() {
                steps = crate::realtime::steps_after(&state, &claims.tid, &id, after).await?;
                // The order moved on while this request waited.
                order = visible_order(&state, &claims, id.clone()).await?;
            }
        }
    }
    Ok(Json(OrderEventsView {
        state: order.state().name().to_string(),
        order_id: order.order_id,
        steps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fault view is process-wide: tests that set it hold this.
    static FAULT_VIEW: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn checkout_paused_refuses_with_a_503_problem_only_while_on() {
        let _view = FAULT_VIEW.lock().unwrap_or_else(|p| p.into_inner());
        faults::set_view([]);
        assert!(checkout_paused().is_ok());
        let on = faults::spec(CHECKOUT_PAUSED)
            .unwrap()
            .activate(None, None, None, 0)
            .unwrap();
        assert_eq!(on.target, "gateway");
        faults::set_view([on]);
        let p = checkout_paused().unwrap_err();
        assert_eq!(
            (p.status, p.detail.as_deref()),
            (503, Some(CHECKOUT_PAUSED_DETAIL))
        );
        let resp = p.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            shopstream_platform::error::PROBLEM_CONTENT_TYPE
        );
        faults::set_view([]);
        assert!(checkout_paused().is_ok());
    }

    #[test]
    fn a_create_is_202_until_its_saga_starts_and_an_unconfirmed_one_says_how_to_resume() {
        assert_eq!(create_status(false, false), StatusCode::CREATED);
        assert_eq!(create_status(true, false), StatusCode::OK);
        assert_eq!(create_status(false, true), StatusCode::ACCEPTED);
        assert_eq!(create_status(true, true), StatusCode::ACCEPTED);
        for code in [
            tonic::Code::DeadlineExceeded,
            tonic::Code::Unavailable,
            tonic::Code::Cancelled,
            tonic::Code::Internal,
            tonic::Code::Unknown,
        ] {
            let p = create_problem(tonic::Status::new(code, "pq: connection reset"));
            assert_eq!(p.status, 503, "{code:?}");
            assert_eq!(p.detail.as_deref(), Some(MAYBE_STORED_DETAIL), "{code:?}");
        }
        let p = create_problem(tonic::Status::invalid_argument(
            "invalid order; items[0].quantity: must be >= 1",
        ));
        assert_eq!((p.status, p.errors.len()), (422, 1));
        assert_eq!(
            create_problem(tonic::Status::not_found("unknown product")).status,
            404
        );
    }

    #[test]
    fn states_render_as_the_contract_strings_and_parse_back() {
        for (st, s) in [
            (OrderState::Pending, "pending"),
            (OrderState::Cancelled, "cancelled"),
        ] {
            assert_eq!(st.name(), s);
            assert_eq!(parse_state(s), Some(st));
        }
        assert_eq!(parse_state("unspecified"), None);
        assert_eq!(cancel_reason(CancelReason::Unspecified), None);
        assert_eq!(
            cancel_reason(CancelReason::PaymentDeclined),
            Some("payment_declined")
        );
    }

    #[test]
    fn idempotency_key_is_required_and_bounded() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap_err().status, 400);
        h.insert("idempotency-key", HeaderValue::from_static("  "));
        assert_eq!(idempotency_key(&h).unwrap_err().status, 400);
        h.insert(
            "idempotency-key",
            HeaderValue::from_str(&"k".repeat(IdempotencyKey::MAX_CHARS + 1)).unwrap(),
        );
        assert_eq!(idempotency_key(&h).unwrap_err().status, 400);
        let longest = "k".repeat(IdempotencyKey::MAX_CHARS);
        h.insert("idempotency-key", HeaderValue::from_str(&longest).unwrap());
        assert_eq!(idempotency_key(&h).unwrap(), longest);
        h.insert("idempotency-key", HeaderValue::from_static("order-1"));
        assert_eq!(idempotency_key(&h).unwrap(), "order-1");
    }
}
