//! E-mail, the pure part: which events become which e-mail ([`intents`]),
//! the templates and their rendering ([`render`]), the stable key that makes
//! one e-mail per (event, template), and how an SMTP failure is treated
//! ([`next_step`]). The Redis stream, SMTP and Postgres live in `mailer`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::Undecodable;

/// `event_type` of an order's state change on `order.lifecycle`.
pub const ORDER_STATE_EVENT: &str = "order.state_changed";
/// `event_type` of a payment's status change on `payment.events`.
pub const PAYMENT_STATUS_EVENT: &str = "payment.status_changed";

/// The e-mails this service writes. Each is a file under `templates/`: a
/// `Subject:` line, a blank line, the body; `{{name}}` is replaced by the
/// value of `name`, and a placeholder without a value is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    OrderConfirmed,
    OrderCancelled,
    OrderRefunded,
    Test,
}

impl Template {
    pub const ALL: [Template; 4] = [
        Template::OrderConfirmed,
        Template::OrderCancelled,
        Template::OrderRefunded,
        Template::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Template::OrderConfirmed => "order_confirmed",
            Template::OrderCancelled => "order_cancelled",
            Template::OrderRefunded => "order_refunded",
            Template::Test => "test",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Template::OrderConfirmed => include_str!("../templates/order_confirmed.txt"),
            Template::OrderCancelled => include_str!("../templates/order_cancelled.txt"),
            Template::OrderRefunded => include_str!("../templates/order_refunded.txt"),
            Template::Test => include_str!("../templates/test.txt"),
        }
    }
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template {template}: no value for {{{{{name}}}}}")]
    Missing {
        template: &'static str,
        name: String,
    },
    #[error("template {template}: the first line must be `Subject: ...`")]
    NoSubject { template: &'static str },
}

/// `t` with every `{{name}}` replaced by `vars[name]`.
pub fn render(t: Template, vars: &BTreeMap<String, String>) -> Result<Rendered, RenderError> {
    let mut out = String::new();
    let mut rest = t.source();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| RenderError::Missing {
            template: t.as_str(),
            name: after.chars().take(20).collect(),
        })?;
        let name = after[..end].trim();
        let value = vars.get(name).ok_or_else(|| RenderError::Missing {
            template: t.as_str(),
            name: name.to_string(),
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    let (first, body) = out.split_once('\n').unwrap_or((&out, ""));
    let subject = first
        .strip_prefix("Subject:")
        .ok_or(RenderError::NoSubject {
            template: t.as_str(),
        })?
        .trim()
        .to_string();
    Ok(Rendered {
        subject,
        body: body.trim_start_matches('\n').to_string(),
    })
}

/// Who an e-mail is for: the user, when the event names one, else the owner
/// of the order (payments' events carry only the order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recipient {
    User(String),
    OrderOwner(String),
}

/// An e-mail to write about an event, before its recipient is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub template: Template,
    pub to: Recipient,
    pub order_id: String,
    /// Template values known from the event (the recipient's name is added
    /// when the user is looked up).
    pub vars: BTreeMap<String, String>,
}

/// The one key of (event, template): a redelivered event, a replayed stream
/// entry or a restarted sender all find the same key, and the same
/// `Message-ID` goes out.
pub fn key(event_id: &str, t: Template) -> String {
    format!("{event_id}.{}", t.as_str())
}

/// `order.state_changed` as this service reads it (orders' schema version 1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderStateChanged {
    pub order_id: String,
    pub user_id: String,
    pub state: String,
    #[serde(default)]
    pub cancel_reason: Option<String>,
    pub total_minor: i64,
    pub currency: String,
}

/// `payment.status_changed` as this service reads it (payments' schema version 1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentStatusChanged {
    pub order_id: String,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// The e-mails an event causes: a completed order is confirmed, a cancelled
/// one is explained, a refund is announced with its amount.
pub fn intents(event_type: &str, payload: &[u8]) -> Result<Vec<Intent>, Undecodable> {
    let bad = |reason: String| Undecodable {
        event_type: event_type.to_string(),
        reason,
    };
    let base = |order_id: &str| {
        BTreeMap::from([
            ("order_id".to_string(), order_id.to_string()),
            ("order_short".to_string(), short(order_id)),
        ])
    };
    match event_type {
        ORDER_STATE_EVENT => {
            let e: OrderStateChanged =
                serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
            let mut vars = base(&e.order_id);
            let template = match e.state.as_str() {
                "completed" => {
                    vars.insert("total".into(), money(e.total_minor, &e.currency));
                    Template::OrderConfirmed
                }
                "cancelled" => {
                    let reason = e.cancel_reason.as_deref().unwrap_or("");
                    vars.insert("reason".into(), reason_text(reason).to_string());
                    Template::OrderCancelled
                }
                _ => return Ok(vec![]),
            };
            Ok(vec![Intent {
                template,
                to: Recipient::User(e.user_id),
                order_id: e.order_id,
                vars,
            }])
        }
        PAYMENT_STATUS_EVENT => {
            let e: PaymentStatusChanged =
                serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
            if !matches!(e.status.as_str(), "refunded" | "partially_refunded") {
                return Ok(vec![]);
            }
            let mut vars = base(&e.order_id);
            vars.insert("amount".into(), money(e.amount_minor, &e.currency));
            Ok(vec![Intent {
                template: Template::OrderRefunded,
                to: Recipient::OrderOwner(e.order_id.clone()),
                order_id: e.order_id,
                vars,
            }])
        }
        _ => Ok(vec![]),
    }
}

/// How an e-mail greets its reader when only the address is known: the
/// part before `@`.
pub fn display_name(address: &str) -> String {
    address.split('@').next().unwrap_or(address).to_string()
}

/// The first eight characters of an id, for subjects.
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// Minor units as a decimal amount with its currency, e.g. `12.34 EUR`
/// (two decimals; every currency the catalog sells has two).
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", m / 100, m % 100)
}

/// A cancellation reason in words a customer understands.
pub fn reason_text(reason: &str) -> &'static str {
    match reason {
        "out_of_stock" => "an item in it ran out of stock before we could reserve it.",
        "payment_declined" => "your card was declined.",
        "payment_failed" => "we could not take the payment (the payment service did not answer).",
        "reservation_expired" => "the items were held for too long and were released.",
        "user_requested" => "you asked us to cancel it.",
        _ => "something went wrong on our side; nothing was charged that is not refunded.",
    }
}

/// What to do after an SMTP attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Try again after the backoff.
    Retry,
    /// Give up: into the DLQ.
    DeadLetter,
}

/// How a failed SMTP attempt is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 4xx, or no answer at all (refused connection, timeout).
    Temporary,
    /// 5xx: retrying cannot help (e.g. 550 mailbox refused).
    Permanent,
}

/// A permanent refusal goes to the DLQ at once; a temporary one is retried
/// until `attempts` (made so far, including this one) reaches `max_attempts`.
pub fn next_step(failure: Failure, attempts: u32, max_attempts: u32) -> NextStep {
    match failure {
        Failure::Permanent => NextStep::DeadLetter,
        Failure::Temporary if attempts >= max_attempts => NextStep::DeadLetter,
        Failure::Temporary => NextStep::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_template_renders_with_the_values_an_intent_and_the_user_give() {
        let order = "0193a7b2-1111-7000-8000-000000000001";
        let state = |state: &str, reason: Option<&str>| {
            serde_json::to_vec(&serde_json::json!({"order_id": order, "user_id": "u1",
                "state": state, "cancel_reason": reason, "total_minor": 1234,
                "currency": "EUR", "reservation_id": "r", "ts_ms": 1}))
            .unwrap()
        };
        let refund = serde_json::to_vec(&serde_json::json!({"payment_id": "p", "order_id": order,
            "status": "refunded", "amount_minor": 1234, "currency": "EUR", "failure_code": "",
            "ts_ms": 1}))
        .unwrap();
        let mut seen = vec![];
        for (event, payload) in [
            (ORDER_STATE_EVENT, state("completed", None)),
            (
                ORDER_STATE_EVENT,
                state("cancelled", Some("payment_declined")),
            ),
            (PAYMENT_STATUS_EVENT, refund),
        ] {
            let [i] = intents(event, &payload).unwrap().try_into().unwrap();
            let mut v = i.vars.clone();
            v.insert("name".into(), "ada".into());
            let r = render(i.template, &v).unwrap();
            assert!(r.subject.contains("0193a7b2"), "{r:?}");
            assert!(r.body.starts_with("Hello ada,"), "{r:?}");
            assert!(!r.body.contains("{{"), "{r:?}");
            seen.push((i.template, i.to, r));
        }
        assert!(seen[0].2.body.contains("12.34 EUR"));
        assert!(seen[1].2.body.contains("your card was declined"));
        assert_eq!(seen[2].1, Recipient::OrderOwner(order.into()));
        assert!(seen[2].2.subject.starts_with("Refund of 12.34 EUR"));
        let test = render(
            Template::Test,
            &vars(&[("name", "ada"), ("message", "hi"), ("channel_id", "c1")]),
        )
        .unwrap();
        assert_eq!(test.subject, "Shopstream test notification");
    }

    #[test]
    fn a_missing_value_is_an_error_naming_it() {
        let e = render(Template::OrderRefunded, &vars(&[("name", "ada")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template order_refunded: no value for {{amount}}"
        );
    }

    #[test]
    fn only_completed_cancelled_and_refunds_write_mail() {
        let state = |s: &str| {
            serde_json::to_vec(&serde_json::json!({"order_id": "o", "user_id": "u",
                "state": s, "total_minor": 1, "currency": "EUR"}))
            .unwrap()
        };
        for s in ["pending", "reserved", "authorized", "captured"] {
            assert_eq!(intents(ORDER_STATE_EVENT, &state(s)), Ok(vec![]));
        }
        let pay = |s: &str| {
            serde_json::to_vec(&serde_json::json!({"order_id": "o", "status": s,
                "amount_minor": 1, "currency": "EUR"}))
            .unwrap()
        };
        for s in ["authorized", "captured", "cancelled", "failed"] {
            assert_eq!(intents(PAYMENT_STATUS_EVENT, &pay(s)), Ok(vec![]));
        }
        assert_eq!(
            intents(PAYMENT_STATUS_EVENT, &pay("partially_refunded"))
                .unwrap()
                .len(),
            1
        );
        assert!(intents(ORDER_STATE_EVENT, b"{").is_err());
        assert_eq!(intents("order.step_recorded", b"{}"), Ok(vec![]));
    }

    #[test]
    fn money_and_keys() {
        assert_eq!(money(1234, "EUR"), "12.34 EUR");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(-250, "EUR"), "-2.50 EUR");
        assert_eq!(key("e1", Template::OrderRefunded), "e1.order_refunded");
    }

    #[test]
    fn permanent_failures_dead_letter_at_once_temporary_ones_after_the_last_attempt() {
        assert_eq!(next_step(Failure::Permanent, 1, 5), NextStep::DeadLetter);
        assert_eq!(next_step(Failure::Temporary, 1, 5), NextStep::Retry);
        assert_eq!(next_step(Failure::Temporary, 4, 5), NextStep::Retry);
        assert_eq!(next_step(Failure::Temporary, 5, 5), NextStep::DeadLetter);
    }
}
