//! The consistency check: for every order of a time window, does everyone
//! agree about its money? Four records are compared — the order (orders),
//! the payment (payments), the payment intent at the provider (stripe-sim)
//! and what analytics counted — and every disagreement older than a grace
//! period (60 s by default: events take a moment to travel) is reported.
//! Used by `shopstream consistency`, the `order-live` lab and scenarios.
//!
//! The rules, per order:
//! - an order still on its way (pending … captured) after the grace period is
//!   stuck;
//! - a completed order has its total captured at payments and at the
//!   provider, and analytics counted it placed, completed and captured;
//! - a cancelled order kept no money: whatever was captured was refunded,
//!   at payments and at the provider, and analytics counted it cancelled;
//! - payments, the provider and analytics agree on the amount refunded.

use std::{collections::HashMap, time::Duration};

use serde::Serialize;
use serde_json::Value;
use shopstream_platform::grpc::{channel, with_tenant};
use shopstream_proto::{
    analytics::v1::{GetOrderFactsRequest, analytics_service_client::AnalyticsServiceClient},
    common::v1::PageRequest,
    orders::v1::{ListOrdersRequest, orders_service_client::OrdersServiceClient},
    payments::v1::{
        GetPaymentRequest, get_payment_request::By, payments_service_client::PaymentsServiceClient,
    },
};

use crate::{
    kit::LabError,
    stripe_sim::{self, StripeSim},
    target::{GRPC_CONNECT_TIMEOUT, GRPC_TIMEOUT, Target},
};

/// How old a disagreement must be before it counts (events in flight).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// Orders read per page from orders.
const PAGE: u32 = 100;
/// Most orders one check looks at.
pub const MAX_ORDERS: usize = 5_000;
/// Order ids per GetOrderFacts call.
const FACTS_CHUNK: usize = 1_000;

/// The order as orders has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderSide {
    pub order_id: String,
    /// `pending`, …, `completed`, `cancelled`.
    pub state: String,
    pub total_minor: i64,
    pub updated_at_ms: i64,
}

/// The payment as payments has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentSide {
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub updated_at_ms: i64,
}

/// The payment intent as the provider has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderSide {
    pub status: String,
    pub received_minor: i64,
    pub refunded_minor: i64,
}

/// What analytics counted for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnalyticsSide {
    pub placed: bool,
    pub completed: bool,
    pub cancelled: bool,
    pub captured_minor: i64,
    pub refunded_minor: i64,
}

/// One order whose records disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub order_id: String,
    pub state: String,
    /// Since the last change at orders or payments.
    pub age_s: i64,
    pub problems: Vec<String>,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub window_s: u64,
    pub grace_s: u64,
    pub orders_checked: usize,
    /// Changed within the grace period: not judged yet.
    pub orders_too_recent: usize,
    /// The window held more than [`MAX_ORDERS`] orders: the oldest were not read.
    pub truncated: bool,
    pub disagreements: Vec<Disagreement>,
}

/// What is wrong with one order's records (empty: they agree). Pure.
pub fn judge(
    o: &OrderSide,
    payment: Option<&PaymentSide>,
    provider: Option<&ProviderSide>,
    analytics: Option<&AnalyticsSide>,
) -> Vec<String> {
    let mut p = Vec::new();
    let none = AnalyticsSide {
        placed: false,
        completed: false,
        cancelled: false,
        captured_minor: 0,
        refunded_minor: 0,
    };
    let a = analytics.unwrap_or(&none);
    if !a.placed {
        p.push("analytics did not count the order placed".into());
    }
    match o.state.as_str() {
        "completed" => {
            match payment {
                Some(pay) if pay.captured_minor == o.total_minor => {}
                Some(pay) => p.push(format!(
                    "payments captured {} of the total {}",
                    pay.captured_minor, o.total_minor
                )),
                None => p.push("payments has no payment for a completed order".into()),
            }
            match provider {
                Some(pi) if pi.received_minor == o.total_minor => {}
                Some(pi) => p.push(format!(
                    "the provider received {} of the total {} (intent {})",
                    pi.received_minor, o.total_minor, pi.status
                )),
                None => p.push(
                    "the provider has no intent for a completed order (stripe-sim keeps its \
                     intents in memory: a restart forgets them)"
                        .into(),
                ),
            }
            if !a.completed {
                p.push("analytics did not count the order completed".into());
            }
            if a.captured_minor != o.total_minor {
                p.push(format!(
                    "analytics counted {} captured of the total {}",
                    a.captured_minor, o.total_minor
                ));
            }
        }
        "cancelled" => {
            if let Some(pay) = payment
                && pay.captured_minor != pay.refunded_minor
            {
                p.push(format!(
                    "payments kept {} of a cancelled order (captured {}, refunded {})",
                    pay.captured_minor - pay.refunded_minor,
                    pay.captured_minor,
                    pay.refunded_minor
                ));
            }
            if let Some(pi) = provider
                && pi.received_minor != pi.refunded_minor
            {
                p.push(format!(
                    "the provider kept {} of a cancelled order (intent {})",
                    pi.received_minor - pi.refunded_minor,
                    pi.status
                ));
            }
            if !a.cancelled {
                p.push("analytics did not count the order cancelled".into());
            }
        }
        state => p.push(format!("stuck in {state}")),
    }
    let refunds = [
        payment.map(|x| ("payments", x.refunded_minor)),
        provider.map(|x| ("the provider", x.refunded_minor)),
        Some(("analytics", a.refunded_minor)),
    ];
    let refunds: Vec<(&str, i64)> = refunds.into_iter().flatten().collect();
    if refunds.windows(2).any(|w| w[0].1 != w[1].1) {
        let said: Vec<String> = refunds.iter().map(|(w, v)| format!("{w} {v}")).collect();
        p.push(format!("refunded amounts differ: {}", said.join(", ")));
    }
    p
}

fn unreachable(what: &str, url: &str, e: impl std::fmt::Display) -> LabError {
    LabError::NotReady(format!(
        "cannot reach {what} at {url} ({e}); is the system up? (`shopstream up`)"
    ))
}

fn grpc(what: &str, url: &str) -> Result<tonic::transport::Channel, LabError> {
    channel(url, GRPC_CONNECT_TIMEOUT, GRPC_TIMEOUT).map_err(|e| unreachable(what, url, e))
}

/// Check every order of `tenant` created in the last `window`, as of `now_ms`.
pub async fn check(
    target: &Target,
    tenant: &str,
    window: Duration,
    grace: Duration,
    now_ms: i64,
) -> Result<Report, LabError> {
    let status = |what: &'static str, url: &str| {
        let url = url.to_string();
        move |s: tonic::Status| {
            if matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            ) {
                unreachable(what, &url, s.message())
            } else {
                LabError::Failed(format!("{what}: {}", s.message()))
            }
        }
    };
    let since = now_ms - window.as_millis() as i64;
    let mut orders_api = OrdersServiceClient::new(grpc("orders", &target.orders_grpc_url)?);
    let mut orders = Vec::new();
    let mut truncated = false;
    let mut cursor = String::new();
    'pages: loop {
        let page = orders_api
            .list_orders(with_tenant(
                ListOrdersRequest {
                    page: Some(PageRequest {
                        page_size: PAGE,
                        cursor: cursor.clone(),
                    }),
                    user_id: String::new(),
                    states: vec![],
                },
                tenant,
            ))
            .await
            .map_err(status("orders", &target.orders_grpc_url))?
            .into_inner();
        for o in page.orders {
            if o.created_at_ms < since {
                break 'pages;
            }
            if orders.len() >= MAX_ORDERS {
                truncated = true;
                break 'pages;
            }
            orders.push(OrderSide {
                state: o.state().name().to_string(),
                total_minor: o.total.as_ref().map_or(0, |m| m.amount_minor),
                updated_at_ms: o.updated_at_ms,
                order_id: o.order_id,
            });
        }
        cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }

    let mut payments_api = PaymentsServiceClient::new(grpc("payments", &target.payments_grpc_url)?);
    let mut payments = HashMap::new();
    for o in &orders {
        let r = payments_api
            .get_payment(with_tenant(
                GetPaymentRequest {
                    by: Some(By::OrderId(o.order_id.clone())),
                },
                tenant,
            ))
            .await;
        match r {
            Ok(r) => {
                if let Some(p) = r.into_inner().payment {
                    let minor = |m: &Option<shopstream_proto::common::v1::Money>| {
                        m.as_ref().map_or(0, |m| m.amount_minor)
                    };
                    payments.insert(
                        o.order_id.clone(),
                        (
                            p.payment_id.clone(),
                            PaymentSide {
                                captured_minor: minor(&p.captured),
                                refunded_minor: minor(&p.refunded),
                                updated_at_ms: p.updated_at_ms,
                            },
                        ),
                    );
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(status("payments", &target.payments_grpc_url)(s)),
        }
    }

    let intents: Vec<Value> = StripeSim::new(&target.stripe_sim_url)?
        .payment_intents()
        .await?;
    let mut analytics_api =
        AnalyticsServiceClient::new(grpc("analytics", &target.analytics_grpc_url)?);
    let mut facts = HashMap::new();
    for chunk in orders.chunks(FACTS_CHUNK) {
        let r = analytics_api
            .get_order_facts(with_tenant(
                GetOrderFactsRequest {
                    order_ids: chunk.iter().map(|o| o.order_id.clone()).collect(),
                },
                tenant,
            ))
            .await
            .map_err(status("analytics", &target.analytics_grpc_url))?;
        for f in r.into_inner().orders {
            facts.insert(
                f.order_id.clone(),
                AnalyticsSide {
                    placed: f.placed,
                    completed: f.completed,
                    cancelled: f.cancelled,
                    captured_minor: f.captured_minor,
                    refunded_minor: f.refunded_minor,
                },
            );
        }
    }

    let grace_ms = grace.as_millis() as i64;
    let mut report = Report {
        window_s: window.as_secs(),
        grace_s: grace.as_secs(),
        orders_checked: 0,
        orders_too_recent: 0,
        truncated,
        disagreements: vec![],
    };
    for o in &orders {
        let payment = payments.get(&o.order_id);
        let last_change = payment.map_or(o.updated_at_ms, |(_, p)| {
            p.updated_at_ms.max(o.updated_at_ms)
        });
        let age_ms = now_ms - last_change;
        if age_ms < grace_ms {
            report.orders_too_recent += 1;
            continue;
        }
        report.orders_checked += 1;
        let payment_id = payment.map_or("", |(id, _)| id.as_str());
        let provider = stripe_sim::intents_of(&intents, &o.order_id, payment_id)
            .last()
            .map(|pi| ProviderSide {
                status: pi["status"].as_str().unwrap_or("?").to_string(),
                received_minor: pi["amount_received"].as_i64().unwrap_or(0),
                refunded_minor: pi["sim_amount_refunded"].as_i64().unwrap_or(0),
            });
        let problems = judge(
            o,
            payment.map(|(_, p)| p),
            provider.as_ref(),
            facts.get(&o.order_id),
        );
        if !problems.is_empty() {
            report.disagreements.push(Disagreement {
                order_id: o.order_id.clone(),
                state: o.state.clone(),
                age_s: age_ms / 1000,
                problems,
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(state: &str) -> OrderSide {
        OrderSide {
            order_id: "o1".into(),
            state: state.into(),
            total_minor: 500,
            updated_at_ms: 0,
        }
    }

    fn pay(captured: i64, refunded: i64) -> PaymentSide {
        PaymentSide {
            captured_minor: captured,
            refunded_minor: refunded,
            updated_at_ms: 0,
        }
    }

    fn pi(received: i64, refunded: i64) -> ProviderSide {
        ProviderSide {
            status: "succeeded".into(),
            received_minor: received,
            refunded_minor: refunded,
        }
    }

    fn counted(completed: bool, cancelled: bool, captured: i64, refunded: i64) -> AnalyticsSide {
        AnalyticsSide {
            placed: true,
            completed,
            cancelled,
            captured_minor: captured,
            refunded_minor: refunded,
        }
    }

    #[test]
    fn records_that_agree_give_nothing() {
        let a = counted(true, false, 500, 0);
        assert!(
            judge(
                &order("completed"),
                Some(&pay(500, 0)),
                Some(&pi(500, 0)),
                Some(&a)
            )
            .is_empty()
        );
        // Completed, then refunded in full by an admin: still consistent.
        let a = counted(true, false, 500, 500);
        assert!(
            judge(
                &order("completed"),
                Some(&pay(500, 500)),
                Some(&pi(500, 500)),
                Some(&a)
            )
            .is_empty()
        );
        // Cancelled after capture: refunded everywhere.
        let a = counted(false, true, 500, 500);
        assert!(
            judge(
                &order("cancelled"),
                Some(&pay(500, 500)),
                Some(&pi(500, 500)),
                Some(&a)
            )
            .is_empty()
        );
        // Cancelled before any payment.
        let a = counted(false, true, 0, 0);
        assert!(judge(&order("cancelled"), None, None, Some(&a)).is_empty());
    }

    #[test]
    fn each_kind_of_disagreement_is_named() {
        let a = counted(true, false, 500, 0);
        let p = judge(
            &order("completed"),
            Some(&pay(0, 0)),
            Some(&pi(500, 0)),
            Some(&a),
        );
        assert_eq!(p, ["payments captured 0 of the total 500"]);
        let p = judge(
            &order("cancelled"),
            Some(&pay(500, 0)),
            Some(&pi(500, 0)),
            Some(&counted(false, true, 500, 0)),
        );
        assert_eq!(
            p,
            [
                "payments kept 500 of a cancelled order (captured 500, refunded 0)",
                "the provider kept 500 of a cancelled order (intent succeeded)"
            ]
        );
        let p = judge(
            &order("completed"),
            Some(&pay(500, 200)),
            Some(&pi(500, 200)),
            Some(&a),
        );
        assert_eq!(
            p,
            ["refunded amounts differ: payments 200, the provider 200, analytics 0"]
        );
        let p = judge(&order("authorized"), None, None, None);
        assert_eq!(
            p,
            [
                "analytics did not count the order placed",
                "stuck in authorized"
            ]
        );
    }
}
