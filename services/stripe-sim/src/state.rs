//! The simulator's state: intents, refunds, events, stored idempotent results
//! and active faults, in memory behind one mutex. Every operation runs under
//! the lock from start to finish, so concurrent requests with one
//! `Idempotency-Key` serialize and the second replays the first.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use axum::http::StatusCode;
use serde_json::Value;
use shopstream_platform::{clock::Clock, ids::IdGen};

use crate::{
    domain::{CaptureMethod, Confirmed, DomainEvent, NewIntent, PaymentIntent, Refund},
    error::StripeError,
    faults::Faults,
    form::Form,
    objects::{self, Event},
    webhooks::{Delivery, WebhookSender},
};

/// Events kept for `GET /v1/events`; older ones are forgotten.
pub const MAX_EVENTS: usize = 10_000;
/// Idempotent results kept; the oldest go first. Stripe keeps them 24 h.
pub const MAX_IDEMPOTENT_RESULTS: usize = 10_000;
pub const IDEMPOTENCY_TTL_S: i64 = 24 * 3600;
/// Objects (intents + refunds) before creation is refused until `/_sim/reset`.
pub const MAX_OBJECTS: usize = 100_000;

/// A stored response for an idempotency key.
#[derive(Debug, Clone)]
pub struct StoredResult {
    pub request: (String, Vec<(String, String)>),
    pub status: StatusCode,
    pub body: Value,
    pub stored_at_s: i64,
}

/// Who is asking, for events and idempotency.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    pub idempotency_key: Option<String>,
    pub api_version: Option<String>,
}

pub struct StripeState {
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
    pub webhooks: WebhookSender,
    pub intents: BTreeMap<String, PaymentIntent>,
    pub refunds: BTreeMap<String, Refund>,
    /// Oldest first.
    pub events: VecDeque<Event>,
    pub idempotency: HashMap<(String, String), StoredResult>,
    idempotency_order: VecDeque<(String, String)>,
    pub faults: Faults,
}

/// The answer of an operation: a Stripe object or a Stripe error.
pub type ApiResult = Result<Value, StripeError>;

impl StripeState {
    pub fn new(clock: Arc<dyn Clock>, ids: Arc<dyn IdGen>, webhooks: WebhookSender) -> StripeState {
        StripeState {
            clock,
            ids,
            webhooks,
            intents: BTreeMap::new(),
            refunds: BTreeMap::new(),
            events: VecDeque::new(),
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            faults: Faults::default(),
        }
    }

    /// Forget every object, event, idempotent result and fault.
    pub fn reset(&mut self) {
        *self = StripeState::new(self.clock.clone(), self.ids.clone(), self.webhooks.clone());
    }

    fn now_s(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    fn new_id(&self, prefix: &str) -> String {
        objects::stripe_id(prefix, self.ids.new_id())
    }

    /// The stored result for `key`, if it is still fresh.
    pub fn idempotent_result(&self, key: &(String, String)) -> Option<&StoredResult> {
        let now_s = self.now_s();
        self.idempotency
            .get(key)
            .filter(|r| now_s - r.stored_at_s < IDEMPOTENCY_TTL_S)
    }

    pub fn store_idempotent_result(&mut self, key: (String, String), result: StoredResult) {
        if self.idempotency.insert(key.clone(), result).is_none() {
            self.idempotency_order.push_back(key);
        }
        while self.idempotency_order.len() > MAX_IDEMPOTENT_RESULTS {
            if let Some(old) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&old);
            }
        }
    }

    /// Record an event and queue its delivery as the webhook faults say.
    fn emit(&mut self, kind: DomainEvent, object: Value, ctx: &RequestCtx) {
        let event = Event {
            id: self.new_id("evt"),
            event_type: kind.event_type(),
            created_s: self.now_s(),
            api_version: ctx
                .api_version
                .clone()
                .unwrap_or_else(|| objects::DEFAULT_API_VERSION.to_string()),
            object,
            idempotency_key: ctx.idempotency_key.clone(),
        };
        if self.webhooks.is_enabled() {
            let plan = crate::faults::with_catalog(self.faults.take_webhook_plan());
            if plan.copies == 0 {
                tracing::info!(event_id = %event.id, "webhook dropped by fault injection");
            }
            let payload: Arc<str> = objects::event(&event).to_string().into();
            for _ in 0..plan.copies {
                self.webhooks.enqueue(Delivery {
                    event_id: event.id.clone(),
                    payload: payload.clone(),
                    delay: Duration::from_millis(plan.delay_ms),
                });
            }
        }
        self.events.push_back(event);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    fn intent_mut(&mut self, id: &str) -> Result<&mut PaymentIntent, StripeError> {
        self.intents
            .get_mut(id)
            .ok_or_else(|| StripeError::resource_missing("payment_intent", id))
    }

    fn check_capacity(&self) -> Result<(), StripeError> {
        if self.intents.len() + self.refunds.len() >= MAX_OBJECTS {
            return Err(StripeError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                format!("stripe-sim holds {MAX_OBJECTS} objects; POST /_sim/reset"),
            ));
        }
        Ok(())
    }

    /// `POST /v1/payment_intents`
    pub fn create_intent(&mut self, form: &Form, ctx: &RequestCtx) -> ApiResult {
        self.check_capacity()?;
        let amount = form
            .i64("amount")?
            .ok_or_else(|| StripeError::missing_param("amount"))?;
        let currency = form
            .string("currency")
            .ok_or_else(|| StripeError::missing_param("currency"))?
            .to_ascii_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(StripeError::invalid_request(
                "parameter_invalid",
                format!("Invalid currency: {currency}"),
            )
            .with_param("currency")
            .before_execution());
        }
        let capture_method = match form.str("capture_method") {
            None => CaptureMethod::Automatic,
            Some(s) => CaptureMethod::parse(s).ok_or_else(|| {
                StripeError::invalid_request(
                    "parameter_invalid",
                    format!("Invalid capture_method: {s}"),
                )
                .with_param("capture_method")
                .before_execution()
            })?,
        };
        let confirm = form.bool("confirm")?.unwrap_or(false);
        let id = self.new_id("pi");
        let secret = self.ids.new_id().simple().to_string();
        let mut pi = PaymentIntent::create(NewIntent {
            client_secret: format!("{id}_secret_{secret}"),
            id,
            amount,
            currency,
            capture_method,
            payment_method: form.string("payment_method"),
            metadata: form.metadata("metadata")?,
            created_s: self.now_s(),
        })?;
        if !confirm {
            let body = objects::payment_intent(&pi);
            self.intents.insert(pi.id.clone(), pi);
            return Ok(body);
        }
        let charge = self.new_id("ch");
        // A refused confirmation (e.g. no payment method) creates nothing, as with Stripe.
        let outcome = pi.confirm_or_decline(None, charge, crate::faults::catalog_decline())?;
        let id = pi.id.clone();
        self.intents.insert(id.clone(), pi);
        self.after_confirm(&id, outcome, ctx)
    }

    pub fn retrieve_intent(&mut self, id: &str) -> ApiResult {
        Ok(objects::payment_intent(self.intent_mut(id)?))
    }

    /// `POST /v1/payment_intents/{id}/confirm`
    pub fn confirm_intent(&mut self, id: &str, form: &Form, ctx: &RequestCtx) -> ApiResult {
        let charge = self.new_id("ch");
        let decline = crate::faults::catalog_decline();
        let pi = self.intent_mut(id)?;
        let outcome = pi.confirm_or_decline(form.string("payment_method"), charge, decline)?;
        self.after_confirm(id, outcome, ctx)
    }

    fn after_confirm(&mut self, id: &str, outcome: Confirmed, ctx: &RequestCtx) -> ApiResult {
        let body = objects::payment_intent(&self.intents[id]);
        match outcome {
            Confirmed::Approved(event) => {
                self.emit(event, body.clone(), ctx);
                Ok(body)
            }
            Confirmed::Declined(d) => {
                self.emit(DomainEvent::PaymentFailed, body.clone(), ctx);
                let mut e = StripeError::new(StatusCode::PAYMENT_REQUIRED, "card_error", d.message)
                    .with_code(d.code)
                    .with_extra("charge", body["latest_charge"].clone())
                    .with_extra("payment_intent", body.clone())
                    .with_extra(
                        "payment_method",
                        body["last_payment_error"]["payment_method"].clone(),
                    );
                e.decline_code = Some(d.decline_code.to_string());
                if let Some(p) = d.param {
                    e = e.with_param(p);
                }
                Err(e)
            }
        }
    }

    /// `POST /v1/payment_intents/{id}/capture`
    pub fn capture_intent(&mut self, id: &str, form: &Form, ctx: &RequestCtx) -> ApiResult {
        let amount = form.i64("amount_to_capture")?;
        let event = self.intent_mut(id)?.capture(amount)?;
        let body = objects::payment_intent(&self.intents[id]);
        self.emit(event, body.clone(), ctx);
        Ok(body)
    }

    /// `POST /v1/payment_intents/{id}/cancel`
    pub fn cancel_intent(&mut self, id: &str, form: &Form, ctx: &RequestCtx) -> ApiResult {
        let reason = form.string("cancellation_reason");
        if let Some(r) = &reason
            && !matches!(
                r.as_str(),
                "duplicate" | "fraudulent" | "requested_by_customer" | "abandoned"
            )
        {
            return Err(StripeError::invalid_request(
                "parameter_invalid",
                format!("Invalid cancellation_reason: {r}"),
            )
            .with_param("cancellation_reason")
            .before_execution());
        }
        let now_s = self.now_s();
        let event = self.intent_mut(id)?.cancel(reason, now_s)?;
        let body = objects::payment_intent(&self.intents[id]);
        self.emit(event, body.clone(), ctx);
        Ok(body)
    }

    /// `POST /v1/refunds` (by `payment_intent`; `charge` is accepted too).
    pub fn create_refund(&mut self, form: &Form, ctx: &RequestCtx) -> ApiResult {
        self.check_capacity()?;
        let amount = form.i64("amount")?;
        let metadata = form.metadata("metadata")?;
        let reason = form.string("reason");
        let pi_id = match (form.string("payment_intent"), form.string("charge")) {
            (Some(pi), _) => pi,
            (None, Some(ch)) => self
                .intents
                .values()
                .find(|pi| pi.latest_charge.as_deref() == Some(ch.as_str()))
                .map(|pi| pi.id.clone())
                .ok_or_else(|| StripeError::resource_missing("charge", &ch).with_param("charge"))?,
            (None, None) => {
                return Err(StripeError::invalid_request(
                    "parameter_missing",
                    "One of the following params should be provided for this request: payment_intent or charge.",
                )
                .before_execution());
            }
        };
        let id = self.new_id("re");
        let now_s = self.now_s();
        let pi = self.intents.get_mut(&pi_id).ok_or_else(|| {
            StripeError::resource_missing("payment_intent", &pi_id).with_param("payment_intent")
        })?;
        let refunded = pi.refund(amount)?;
        let refund = Refund {
            id: id.clone(),
            amount: refunded,
            charge: pi.latest_charge.clone().unwrap_or_default(),
            currency: pi.currency.clone(),
            payment_intent: pi.id.clone(),
            reason,
            metadata,
            created_s: now_s,
        };
        let charge = objects::charge(pi);
        let body = objects::refund(&refund);
        self.refunds.insert(id, refund);
        self.emit(DomainEvent::ChargeRefunded, charge, ctx);
        Ok(body)
    }

    pub fn retrieve_refund(&self, id: &str) -> ApiResult {
        self.refunds
            .get(id)
            .map(objects::refund)
            .ok_or_else(|| StripeError::resource_missing("refund", id))
    }

    pub fn retrieve_event(&self, id: &str) -> ApiResult {
        self.events
            .iter()
            .find(|e| e.id == id)
            .map(objects::event)
            .ok_or_else(|| StripeError::resource_missing("event", id))
    }

    /// `GET /v1/events`: newest first, `limit` 1..=100 (default 10),
    /// `starting_after` for the next page, `type` to filter.
    pub fn list_events(&self, form: &Form) -> ApiResult {
        let limit = form.i64("limit")?.unwrap_or(10);
        if !(1..=100).contains(&limit) {
            return Err(StripeError::invalid_request(
                "parameter_invalid_integer",
                "This value must be greater than or equal to 1 and less than or equal to 100.",
            )
            .with_param("limit"));
        }
        let kind = form.string("type");
        let mut newest_first = self
            .events
            .iter()
            .rev()
            .filter(|e| kind.as_deref().is_none_or(|k| k == e.event_type));
        if let Some(after) = form.string("starting_after") {
            if !self.events.iter().any(|e| e.id == after) {
                return Err(
                    StripeError::resource_missing("event", &after).with_param("starting_after")
                );
            }
            for e in newest_first.by_ref() {
                if e.id == after {
                    break;
                }
            }
        }
        let page: Vec<Value> = newest_first
            .by_ref()
            .take(limit as usize)
            .map(objects::event)
            .collect();
        let has_more = newest_first.next().is_some();
        Ok(objects::list("/v1/events", page, has_more))
    }

    /// `GET /_sim/payment_intents`: every intent, oldest first.
    pub fn list_intents(&self) -> Value {
        let mut all: Vec<&PaymentIntent> = self.intents.values().collect();
        all.sort_by(|a, b| (a.created_s, &a.id).cmp(&(b.created_s, &b.id)));
        // Stripe keeps the refunded amount on the charge; this admin listing
        // adds it to each intent as `sim_amount_refunded` (not a Stripe field).
        objects::list(
            "/_sim/payment_intents",
            all.into_iter()
                .map(|pi| {
                    let mut o = objects::payment_intent(pi);
                    o["sim_amount_refunded"] = pi.amount_refunded.into();
                    o
                })
                .collect(),
            false,
        )
    }
}
