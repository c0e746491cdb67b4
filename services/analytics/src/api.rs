//! `shopstream.analytics.v1.AnalyticsService`: one row per day of a range.

use std::sync::Arc;

use shopstream_platform::{ErrorCode, Problem, clock::Clock, grpc::tenant};
use shopstream_proto::{
    analytics::v1::{
        DailyStats, GetDailyStatsRequest, GetDailyStatsResponse, GetOrderFactsRequest,
        GetOrderFactsResponse, OrderFacts, analytics_service_server::AnalyticsService,
    },
    common::v1::Money,
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{BadDate, Day, Fact},
    store::{DayRow, Rollups},
};

/// The longest range one request may ask for, in days.
pub const MAX_RANGE_DAYS: i32 = 366;
/// Most order ids one GetOrderFacts may name.
pub const MAX_ORDER_IDS: usize = 1_000;
/// Days shown when `from_date` and `days` are empty: the week ending at `to_date`.
pub const DEFAULT_DAYS: i32 = 7;

pub struct GrpcApi {
    pub rollups: Arc<Rollups>,
    /// "Today", for an empty `to_date`.
    pub clock: Arc<dyn Clock>,
    pub default_tenant: String,
}

fn invalid(field: &str, msg: impl Into<String>) -> Status {
    Problem::new(ErrorCode::Unprocessable, "invalid request")
        .with_field(field, msg)
        .to_status()
}

fn money(m: &std::collections::BTreeMap<String, i64>) -> Vec<Money> {
    m.iter()
        .map(|(currency, amount)| Money {
            amount_minor: *amount,
            currency: currency.clone(),
        })
        .collect()
}

/// A day as the proto has it (absent percentiles are 0).
pub fn daily(r: DayRow) -> DailyStats {
    let s = r.stats;
    let ms = |v: Option<u64>| v.map_or(0, |v| v.min(u64::from(u32::MAX)) as u32);
    DailyStats {
        date: s.date,
        orders_created: s.orders_placed,
        orders_completed: s.orders_completed,
        orders_cancelled: s.orders_cancelled,
        gross_sales: money(&s.revenue),
        refunds: money(&s.refunds),
        active_users: s.visitors,
        conversion_rate: s.conversion,
        p95_checkout_latency_ms: ms(s.checkout_p95_ms),
        sessions: s.sessions,
        views: s.views,
        searches: s.searches,
        add_to_carts: s.add_to_carts,
        checkouts_started: s.checkouts_started,
        p50_checkout_latency_ms: ms(s.checkout_p50_ms),
        closed: r.closed,
        version: r.version.max(0) as u32,
    }
}

#[tonic::async_trait]
impl AnalyticsService for GrpcApi {
    async fn get_daily_stats(
        &self,
        req: Request<GetDailyStatsRequest>,
    ) -> Result<Response<GetDailyStatsResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let to: Day = if r.to_date.is_empty() {
            Day::of(self.clock.now_ms())
        } else {
            r.to_date
                .parse()
                .map_err(|e: BadDate| invalid("to_date", e.to_string()))?
        };
        let from: Day = if r.from_date.is_empty() {
            let days = if r.days == 0 {
                DEFAULT_DAYS
            } else {
                r.days.min(i32::MAX as u32) as i32
            };
            Day(to.0.saturating_sub(days - 1))
        } else {
            r.from_date
                .parse()
                .map_err(|e: BadDate| invalid("from_date", e.to_string()))?
        };
        // Name the field the caller sent: `days` when it chose the range.
        let range_field = if r.from_date.is_empty() {
            "days"
        } else {
            "from_date"
        };
        if to < from {
            return Err(invalid("from_date", "is after to_date"));
        }
        if to.0 - from.0 + 1 > MAX_RANGE_DAYS {
            return Err(invalid(
                range_field,
                format!("the range is longer than {MAX_RANGE_DAYS} days"),
            ));
        }
        let rows = self.rollups.days(&tenant, from, to).await.map_err(|e| {
            tracing::error!(error = %e, "daily stats");
            Problem::new(ErrorCode::Unavailable, "analytics could not read its store").to_status()
        })?;
        Ok(Response::new(GetDailyStatsResponse {
            days: rows.into_iter().map(daily).collect(),
        }))
    }

    async fn get_order_facts(
        &self,
        req: Request<GetOrderFactsRequest>,
    ) -> Result<Response<GetOrderFactsResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let ids = req.into_inner().order_ids;
        if ids.len() > MAX_ORDER_IDS {
            return Err(invalid(
                "order_ids",
                format!("at most {MAX_ORDER_IDS} ids per call"),
            ));
        }
        let by_order = self.rollups.order_facts(&tenant, &ids).await.map_err(|e| {
            tracing::error!(error = %e, "order facts");
            Problem::new(ErrorCode::Unavailable, "analytics could not read its store").to_status()
        })?;
        let orders = by_order
            .into_iter()
            .map(|(order_id, facts)| {
                let mut o = OrderFacts {
                    order_id,
                    ..OrderFacts::default()
                };
                for f in facts {
                    match f {
                        Fact::OrderPlaced { .. } => o.placed = true,
                        Fact::OrderCompleted { .. } => o.completed = true,
                        Fact::OrderCancelled { .. } => o.cancelled = true,
                        Fact::Captured { amount_minor, .. } => o.captured_minor += amount_minor,
                        Fact::Refunded { amount_minor, .. } => o.refunded_minor += amount_minor,
                        Fact::Action { .. } => {}
                    }
                }
                o
            })
            .collect();
        Ok(Response::new(GetOrderFactsResponse { orders }))
    }
}
