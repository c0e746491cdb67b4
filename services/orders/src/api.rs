//! gRPC: CreateOrder (idempotent on the key), GetOrder, ListOrders,
//! ListOrderSteps — thin translation between the wire and `Orders`.

use shopstream_platform::{ErrorCode, Problem, grpc::tenant};
use shopstream_proto::{
    common::v1::{Money, PageResponse, ProductRef},
    orders::v1::{
        CancelReason as PbReason, CreateOrderRequest, CreateOrderResponse, GetOrderRequest,
        GetOrderResponse, ListOrderStepsRequest, ListOrderStepsResponse, ListOrdersRequest,
        ListOrdersResponse, Order as PbOrder, OrderItem, OrderState as PbState, OrderStep,
        orders_service_server::OrdersService,
    },
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        checkout::RequestedLine,
        listing,
        order::{CancelReason, OrderState},
    },
    ports::{Cursor, Order},
    service::{Orders, OrdersError},
};

#[derive(Debug, Clone)]
pub struct GrpcApi {
    pub orders: Orders,
    pub default_tenant: String,
}

impl From<OrdersError> for Problem {
    fn from(e: OrdersError) -> Problem {
        match e {
            OrdersError::Invalid(fields) => Problem::invalid("invalid order", fields),
            OrdersError::KeyReuse => Problem::new(ErrorCode::Unprocessable, e.to_string())
                .with_field("idempotency_key", "was used for a different request"),
            OrdersError::NotFound => Problem::new(ErrorCode::NotFound, "order not found"),
            // The detail names another service or a driver: logged, never answered.
            OrdersError::Unavailable(why) => {
                tracing::warn!(%why, "orders dependency unavailable");
                Problem::new(
                    ErrorCode::Unavailable,
                    "a service orders depends on is unavailable; retry shortly",
                )
            }
            OrdersError::Store(s) => {
                tracing::error!(error = %s, "orders storage error");
                Problem::new(ErrorCode::Unavailable, "orders storage is unavailable")
            }
            OrdersError::MaybeStored(s) => {
                tracing::error!(error = %s, "order insert failed without saying whether it committed");
                Problem::new(ErrorCode::Unavailable, MAYBE_STORED)
            }
        }
    }
}

/// The detail of an error that may hide a stored order.
pub const MAYBE_STORED: &str = "the order may have been stored: retry with the same Idempotency-Key, and a replay answers the stored order";

/// When the caller stops waiting: its `grpc-timeout` from now, if it sent one.
fn caller_deadline<T>(req: &Request<T>) -> Option<tokio::time::Instant> {
    let raw = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    Some(tokio::time::Instant::now() + parse_grpc_timeout(raw)?)
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(raw: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3_600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

pub fn pb_state(s: OrderState) -> PbState {
    match s {
        OrderState::Pending => PbState::Pending,
        OrderState::Reserved => PbState::Reserved,
        OrderState::Authorized => PbState::Authorized,
        OrderState::Captured => PbState::Captured,
        OrderState::Completed => PbState::Completed,
        OrderState::Cancelled(_) => PbState::Cancelled,
    }
}

/// The domain's names of the wire states in a listing filter (unknown and
/// unspecified values filter nothing).
fn state_names(states: &[i32]) -> Vec<String> {
    states
        .iter()
        .filter_map(|s| PbState::try_from(*s).ok())
        .flat_map(|wanted| {
            OrderState::EACH_NAME
                .into_iter()
                .filter(move |s| pb_state(*s) == wanted)
        })
        .map(|s| s.as_str().to_string())
        .collect()
}

pub fn pb_reason(r: Option<CancelReason>) -> PbReason {
    match r {
        None => PbReason::Unspecified,
        Some(CancelReason::OutOfStock) => PbReason::OutOfStock,
        Some(CancelReason::PaymentDeclined) => PbReason::PaymentDeclined,
        Some(CancelReason::PaymentFailed) => PbReason::PaymentFailed,
        Some(CancelReason::ReservationExpired) => PbReason::ReservationExpired,
        Some(CancelReason::UserRequested) => PbReason::UserRequested,
        Some(CancelReason::InternalError) => PbReason::InternalError,
    }
}

fn money(amount_minor: i64, currency: &str) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: currency.to_string(),
    })
}

pub fn pb_order(o: &Order) -> PbOrder {
    PbOrder {
        order_id: o.order_id.to_string(),
        user_id: o.user_id.clone(),
        state: pb_state(o.state) as i32,
        cancel_reason: pb_reason(o.state.cancel_reason()) as i32,
        items: o
            .lines
            .iter()
            .map(|l| OrderItem {
                sku: Some(ProductRef {
                    product_id: l.product_id.clone(),
                    sku_id: l.sku_id.clone(),
                }),
                quantity: l.quantity,
                unit_price: money(l.unit_price_minor, &o.currency),
                line_total: money(l.line_total_minor, &o.currency),
            })
            .collect(),
        total: money(o.total_minor, &o.currency),
        reservation_id: o.reservation_id.clone(),
        payment_id: o.payment_id.clone(),
        created_at_ms: o.created_at_ms,
        updated_at_ms: o.updated_at_ms,
        cancel_detail: o.cancel_detail.clone(),
    }
}

fn order_id(raw: &str) -> Result<Uuid, Status> {
    raw.parse().map_err(|_| {
        Problem::new(ErrorCode::NotFound, "order not found")
            .with_field("order_id", "is not an order id")
            .into()
    })
}

/// Cursors are `<created_at_ms>.<order_id>` of the last order of a page.
fn encode_cursor(o: &Order) -> String {
    format!("{}.{}", o.created_at_ms, o.order_id)
}

fn decode_cursor(raw: &str) -> Result<Option<Cursor>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || -> Status {
        Problem::new(ErrorCode::Unprocessable, "invalid cursor")
            .with_field("page.cursor", "is not a cursor from a previous page")
            .into()
    };
    let (ms, id) = raw.split_once('.').ok_or_else(bad)?;
    Ok(Some((
        ms.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    )))
}

#[tonic::async_trait]
impl OrdersService for GrpcApi {
    async fn create_order(
        &self,
        req: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let deadline = caller_deadline(&req);
        let r = req.into_inner();
        let lines: Vec<RequestedLine> = r
            .items
            .iter()
            .map(|i| {
                let sku = i.sku.clone().unwrap_or_default();
                RequestedLine {
                    product_id: sku.product_id,
                    sku_id: sku.sku_id,
                    quantity: i.quantity,
                }
            })
            .collect();
        let (order, replayed) = self
            .orders
            .create_within(
                &tenant,
                &r.user_id,
                &r.idempotency_key,
                &lines,
                &r.payment_method,
                deadline,
            )
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(CreateOrderResponse {
            order: Some(pb_order(&order)),
            replayed,
            saga_start_pending: !order.workflow_started,
        }))
    }

    async fn get_order(
        &self,
        req: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let id = order_id(&req.get_ref().order_id)?;
        let o = self.orders.get(&tenant, id).await.map_err(Problem::from)?;
        Ok(Response::new(GetOrderResponse {
            order: Some(pb_order(&o)),
        }))
    }

    async fn list_orders(
        &self,
        req: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let page = r.page.unwrap_or_default();
        let after = decode_cursor(&page.cursor)?;
        let limit = listing::page_size(page.page_size);
        let states = state_names(&r.states);
        let user = (!r.user_id.is_empty()).then_some(r.user_id.as_str());
        let orders = self
            .orders
            .list(&tenant, user, &states, after, limit + 1)
            .await
            .map_err(Problem::from)?;
        let more = orders.len() > limit as usize;
        let orders: Vec<_> = orders.into_iter().take(limit as usize).collect();
        let next_cursor = if more {
            orders.last().map(encode_cursor).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListOrdersResponse {
            orders: orders.iter().map(pb_order).collect(),
            page: Some(PageResponse { next_cursor }),
        }))
    }

    async fn list_order_steps(
        &self,
        req: Request<ListOrderStepsRequest>,
    ) -> Result<Response<ListOrderStepsResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let id = order_id(&req.get_ref().order_id)?;
        let steps = self
            .orders
            .steps(&tenant, id)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(ListOrderStepsResponse {
            steps: steps
                .into_iter()
                .map(|s| {
                    let reason = s.cancel_reason.as_deref().and_then(CancelReason::parse);
                    let state = OrderState::parse(&s.state, reason)
                        .map(pb_state)
                        .unwrap_or(PbState::Unspecified);
                    OrderStep {
                        seq: s.seq,
                        step: s.step,
                        outcome: s.outcome,
                        state: state as i32,
                        detail: s.detail,
                        at_ms: s.at_ms,
                        attempts: s.attempts,
                    }
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StoreError;
    use std::time::Duration;

    #[test]
    fn a_callers_grpc_timeout_is_read_in_each_unit_and_nonsense_is_ignored() {
        assert_eq!(
            parse_grpc_timeout("2999m"),
            Some(Duration::from_millis(2_999))
        );
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1M"), Some(Duration::from_secs(60)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_grpc_timeout("500u"), Some(Duration::from_micros(500)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "12", "123456789m", "-1m", "1x", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_insert_that_may_have_committed_says_so_and_how_to_get_the_order() {
        let p = Problem::from(OrdersError::MaybeStored(StoreError::Storage(
            "connection reset during commit".into(),
        )));
        assert_eq!(p.status, 503);
        assert_eq!(p.detail.as_deref(), Some(MAYBE_STORED));
        assert!(MAYBE_STORED.contains("same Idempotency-Key"));
        let p = Problem::from(OrdersError::Store(StoreError::Storage("down".into())));
        assert_eq!(p.detail.as_deref(), Some("orders storage is unavailable"));
    }
}
