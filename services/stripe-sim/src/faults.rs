//! Fault injection for labs and chaos tests, set through `/_sim/faults`,
//! and the fault catalog's faults that hit stripe-sim (see
//! `shopstream_platform::faults`), which act through the same code paths:
//! `payment-decline-rate`, `capture-lost-after-effect`, `webhook-drop`,
//! `webhook-duplicate`, `webhook-delay`.
//!
//! An injected failure answers before the operation runs, so nothing changes
//! and no idempotent result is stored: a retry (same key or not) executes for
//! real. With `after_effect: true` the operation runs (its state change,
//! events and idempotent result are kept) and only the response is replaced
//! by the error: "processed, but the response was lost". A retry with the same
//! `Idempotency-Key` then replays the real result, as with Stripe.

use serde::{Deserialize, Serialize};
use shopstream_platform::faults as catalog;

use crate::domain::CardDecline;

/// The component the catalog's faults name for this simulator.
pub const COMPONENT: &str = "stripe-sim";

/// Upper bounds on what can be injected.
pub const MAX_LATENCY_MS: u64 = 60_000;
pub const MAX_WEBHOOK_DELAY_MS: u64 = 600_000;
pub const MAX_FAIL_RULES: usize = 64;

/// An API operation faults can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `POST /v1/payment_intents`
    Create,
    /// `GET /v1/payment_intents/{id}`
    Retrieve,
    Confirm,
    Capture,
    Cancel,
    /// `POST /v1/refunds`
    Refund,
    /// `GET /v1/refunds/{id}`, `GET /v1/events[/{id}]`
    Read,
}

/// Fail the next `count` calls of `operation` with `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailRule {
    pub operation: Operation,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default = "default_count")]
    pub count: u32,
    #[serde(default)]
    pub after_effect: bool,
}

fn default_status() -> u16 {
    500
}

fn default_count() -> u32 {
    1
}

/// The active faults (`GET /_sim/faults`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Added before every Stripe API request.
    pub latency_ms: u64,
    pub fail_next: Vec<FailRule>,
    /// The next N events are not delivered at all.
    pub drop_webhooks: u32,
    /// The next N events are delivered twice (same event id).
    pub duplicate_webhooks: u32,
    /// Every delivery waits this long before its first attempt, until cleared.
    pub delay_webhooks_ms: u64,
}

/// One rule or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(FailRule),
    Many(Vec<FailRule>),
}

/// `POST /_sim/faults`: fields present replace the current value; `fail_next`
/// rules are added (replacing an earlier rule for the same operation).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    pub latency_ms: Option<u64>,
    pub fail_next: Option<OneOrMany>,
    pub drop_webhooks: Option<u32>,
    pub duplicate_webhooks: Option<u32>,
    pub delay_webhooks_ms: Option<u64>,
}

/// What the next event's delivery looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookPlan {
    pub copies: u32,
    pub delay_ms: u64,
}

impl Faults {
    /// Apply an update; errors name the offending field.
    pub fn apply(&mut self, update: FaultsUpdate) -> Result<(), String> {
        let rules = match update.fail_next {
            None => Vec::new(),
            Some(OneOrMany::One(r)) => vec![r],
            Some(OneOrMany::Many(rs)) => rs,
        };
        for r in &rules {
            if !(400..=599).contains(&r.status) {
                return Err(format!(
                    "fail_next.status must be 400..=599, got {}",
                    r.status
                ));
            }
        }
        if update.latency_ms.is_some_and(|l| l > MAX_LATENCY_MS) {
            return Err(format!("latency_ms must be at most {MAX_LATENCY_MS}"));
        }
        if update
            .delay_webhooks_ms
            .is_some_and(|l| l > MAX_WEBHOOK_DELAY_MS)
        {
            return Err(format!(
                "delay_webhooks_ms must be at most {MAX_WEBHOOK_DELAY_MS}"
            ));
        }
        let mut fail_next = self.fail_next.clone();
        for r in rules {
            fail_next.retain(|old| old.operation != r.operation);
            if r.count > 0 {
                fail_next.push(r);
            }
        }
        if fail_next.len() > MAX_FAIL_RULES {
            return Err(format!("at most {MAX_FAIL_RULES} fail_next rules"));
        }
        self.fail_next = fail_next;
        if let Some(v) = update.latency_ms {
            self.latency_ms = v;
        }
        if let Some(v) = update.drop_webhooks {
            self.drop_webhooks = v;
        }
        if let Some(v) = update.duplicate_webhooks {
            self.duplicate_webhooks = v;
        }
        if let Some(v) = update.delay_webhooks_ms {
            self.delay_webhooks_ms = v;
        }
        Ok(())
    }

    /// Consume one failure for `op`, if one is armed.
    pub fn take_failure(&mut self, op: Operation) -> Option<FailRule> {
        let i = self.fail_next.iter().position(|r| r.operation == op)?;
        let rule = self.fail_next[i].clone();
        if rule.count <= 1 {
            self.fail_next.remove(i);
        } else {
            self.fail_next[i].count -= 1;
        }
        Some(rule)
    }

    /// Consume the webhook faults for one event. Dropping wins over duplicating.
    pub fn take_webhook_plan(&mut self) -> WebhookPlan {
        let copies = if self.drop_webhooks > 0 {
            self.drop_webhooks -= 1;
            0
        } else if self.duplicate_webhooks > 0 {
            self.duplicate_webhooks -= 1;
            2
        } else {
            1
        };
        WebhookPlan {
            copies,
            delay_ms: self.delay_webhooks_ms,
        }
    }
}

/// The failure the fault catalog arms for one call of `op`, when no
/// `fail_next` rule did: with `capture-lost-after-effect` every capture
/// runs and then answers 500, as an `after_effect` rule would.
pub fn catalog_failure(op: Operation) -> Option<FailRule> {
    if op != Operation::Capture || catalog::hits("capture-lost-after-effect", COMPONENT).is_none() {
        return None;
    }
    tracing::info!(
        fault = "capture-lost-after-effect",
        "capture runs, then its answer is lost"
    );
    Some(FailRule {
        operation: op,
        status: 500,
        count: 1,
        after_effect: true,
    })
}

/// The decline `payment-decline-rate` imposes on one card confirmation
/// (a fresh draw per confirmation); `None` when the card decides.
pub fn catalog_decline() -> Option<CardDecline> {
    if !catalog::roll("payment-decline-rate", COMPONENT) {
        return None;
    }
    tracing::info!(
        fault = "payment-decline-rate",
        "card confirmation declined (card_declined)"
    );
    Some(CardDecline {
        code: "card_declined",
        decline_code: "generic_decline",
        message: "Your card was declined.",
        param: None,
    })
}

/// `plan` with the catalog's webhook faults on top: `webhook-drop` delivers
/// nothing, `webhook-duplicate` delivers twice, `webhook-delay` waits at
/// least its value before the first attempt.
pub fn with_catalog(mut plan: WebhookPlan) -> WebhookPlan {
    if catalog::hits("webhook-drop", COMPONENT).is_some() {
        tracing::info!(fault = "webhook-drop", "webhook not delivered");
        plan.copies = 0;
    } else if plan.copies == 1 && catalog::hits("webhook-duplicate", COMPONENT).is_some() {
        tracing::info!(fault = "webhook-duplicate", "webhook delivered twice");
        plan.copies = 2;
    }
    if let Some(ms) = catalog::value("webhook-delay", COMPONENT) {
        let ms = u64::try_from(ms).unwrap_or(0).min(MAX_WEBHOOK_DELAY_MS);
        if ms > plan.delay_ms {
            tracing::info!(
                fault = "webhook-delay",
                delay_ms = ms,
                "webhook delivery delayed"
            );
            plan.delay_ms = ms;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: &str) -> FaultsUpdate {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn fail_rules_count_down_and_disappear() {
        let mut f = Faults::default();
        f.apply(update(
            r#"{"fail_next": {"operation": "capture", "status": 503, "count": 2}}"#,
        ))
        .unwrap();
        assert_eq!(f.take_failure(Operation::Confirm), None);
        assert_eq!(f.take_failure(Operation::Capture).unwrap().status, 503);
        assert_eq!(f.take_failure(Operation::Capture).unwrap().count, 1);
        assert_eq!(f.take_failure(Operation::Capture), None);
        assert!(f.fail_next.is_empty());
    }

    #[test]
    fn webhook_plan_drops_then_duplicates_then_delivers() {
        let mut f = Faults::default();
        f.apply(update(
            r#"{"drop_webhooks": 1, "duplicate_webhooks": 1, "delay_webhooks_ms": 7}"#,
        ))
        .unwrap();
        let copies: Vec<_> = (0..3).map(|_| f.take_webhook_plan().copies).collect();
        assert_eq!(copies, vec![0, 2, 1]);
        assert_eq!(f.take_webhook_plan().delay_ms, 7);
    }

    #[test]
    fn invalid_updates_are_refused_and_change_nothing() {
        let mut f = Faults::default();
        assert!(
            f.apply(update(
                r#"{"fail_next": {"operation": "capture", "status": 200}}"#
            ))
            .is_err()
        );
        assert!(f.apply(update(r#"{"latency_ms": 999999999}"#)).is_err());
        assert_eq!(f, Faults::default());
        assert!(serde_json::from_str::<FaultsUpdate>(r#"{"latncy_ms": 1}"#).is_err());
        assert!(
            serde_json::from_str::<FaultsUpdate>(r#"{"fail_next": {"operation": "fly"}}"#).is_err()
        );
    }
}
