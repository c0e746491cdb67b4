//! `GET /admin/stats/daily`: the analytics service's daily rollups for the
//! admin's tenant, as JSON.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Query, State},
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{ErrorCode, Problem};
use shopstream_proto::{
    analytics::v1::{DailyStats, GetDailyStatsRequest},
    common::v1::Money,
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    auth::Admin,
    upstream::{problem_of, request},
};

const SERVICE: &str = "analytics";

/// `?from=&to=` of `GET /admin/stats/daily`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// First day, `YYYY-MM-DD` (UTC); default `days` days ending at `to`.
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC); default today.
    #[param(format = Date)]
    pub to: Option<String>,
    /// Without `from`: how many days ending at `to` (1..=366, default 7).
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<u32>,
}

/// One day of one shop.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DayView {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Distinct visitors (signed in or not).
    pub visitors: u64,
    /// A visitor's actions at most 30 minutes apart are one session.
    pub sessions: u64,
    pub views: u64,
    pub searches: u64,
    pub add_to_carts: u64,
    pub checkouts_started: u64,
    pub orders_placed: u64,
    pub orders_completed: u64,
    pub orders_cancelled: u64,
    /// Captured, minor units per currency.
    pub revenue: BTreeMap<String, i64>,
    /// Refunded, minor units per currency.
    pub refunds: BTreeMap<String, i64>,
    /// orders_completed / visitors (0 without visitors).
    pub conversion: f64,
    /// Order placed → completed; absent when no order completed.
    pub checkout_p50_ms: Option<u32>,
    pub checkout_p95_ms: Option<u32>,
    /// Closed at 00:05 UTC the next day; later changes bump `version`.
    pub closed: bool,
    pub version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DailyStatsView {
    /// Oldest first, one per day of the range.
    pub days: Vec<DayView>,
}

fn money(m: Vec<Money>) -> BTreeMap<String, i64> {
    m.into_iter()
        .map(|m| (m.currency, m.amount_minor))
        .collect()
}

impl From<DailyStats> for DayView {
    fn from(d: DailyStats) -> DayView {
        let ms = |v: u32| (d.orders_completed > 0).then_some(v);
        DayView {
            checkout_p50_ms: ms(d.p50_checkout_latency_ms),
            checkout_p95_ms: ms(d.p95_checkout_latency_ms),
            date: d.date,
            visitors: d.active_users,
            sessions: d.sessions,
            views: d.views,
            searches: d.searches,
            add_to_carts: d.add_to_carts,
            checkouts_started: d.checkouts_started,
            orders_placed: d.orders_created,
            orders_completed: d.orders_completed,
            orders_cancelled: d.orders_cancelled,
            revenue: money(d.gross_sales),
            refunds: money(d.refunds),
            conversion: d.conversion_rate,
            closed: d.closed,
            version: d.version,
        }
    }
}

/// Daily statistics of the admin's shop (admin): visitors, sessions, views,
/// carts, orders, revenue and refunds per currency, conversion and checkout
/// duration, one row per UTC day. Today is live; a day closes at 00:05 UTC
/// the next day.
#[utoipa::path(get, path = "/admin/stats/daily", tag = "admin", security(("bearer" = [])),
    params(StatsParams),
    responses((status = 200, body = DailyStatsView),
        (status = 400, description = "a query parameter that is not text"),
        (status = 401, description = "no or invalid access token"), (status = 403, description = "not an admin"),
        (status = 422, description = "a date that is not YYYY-MM-DD, `to` before `from`, `days` of 0, or more than 366 days"),
        (status = 503, description = "analytics is unavailable")))]
pub async fn daily(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Query(q): Query<StatsParams>,
) -> Result<Json<DailyStatsView>, Problem> {
    if q.days == Some(0) {
        return Err(Problem::new(ErrorCode::Unprocessable, "invalid range")
            .with_field("days", "must be between 1 and 366"));
    }
    // Absent means the default; present but empty is not a date.
    for (field, v) in [("from", &q.from), ("to", &q.to)] {
        if v.as_deref() == Some("") {
            return Err(Problem::new(ErrorCode::Unprocessable, "invalid range")
                .with_field(field, "not a YYYY-MM-DD date"));
        }
    }
    let resp = state
        .analytics_grpc
        .clone()
        .get_daily_stats(request(
            // Absent: analytics' defaults (the week ending today).
            GetDailyStatsRequest {
                from_date: q.from.unwrap_or_default(),
                to_date: q.to.unwrap_or_default(),
                days: q.days.unwrap_or(0),
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner();
    Ok(Json(DailyStatsView {
        days: resp.days.into_iter().map(DayView::from).collect(),
    }))
}
