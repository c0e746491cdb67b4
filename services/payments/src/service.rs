//! Payments' use cases: create/capture/cancel/refund against the provider,
//! webhooks and the reconciler, all merging what the provider says through
//! `domain::merge` and recording one event per real change.

use std::{sync::Arc, time::Duration};

use shopstream_platform::{clock::Clock, ids::IdGen, shutdown};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    adapters::stripe::{self, PaymentRef, WebhookObservation},
    domain::{
        self, FieldError, IntentState, Observation, Payment, Status,
        signature::{self, SignatureError},
    },
    events,
    ports::{Intent, NewIntent, PaymentStore, Provider, ProviderError, StoreError},
};

/// Payments the reconciler reads per round.
pub const RECONCILE_BATCH: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("payment not found")]
    NotFound,
    /// The payment is not in a state that allows this (gRPC FAILED_PRECONDITION).
    #[error("{0}")]
    Precondition(String),
    /// The request contradicts the stored payment (gRPC ABORTED).
    #[error("{0}")]
    Conflict(String),
    /// E.g. refunding more than is refundable (gRPC INVALID_ARGUMENT).
    #[error("{0}")]
    Unprocessable(String),
    /// The provider's outcome is unknown; retry with the same key.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for PaymentsError {
    fn from(e: StoreError) -> PaymentsError {
        match e {
            StoreError::NotFound => PaymentsError::NotFound,
            e => PaymentsError::Store(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("unreadable event: {0}")]
    Payload(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a webhook delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Applied,
    /// Seen before (by event id): nothing changed.
    Duplicate,
    /// An event type or payment we do not track.
    Ignored,
}

#[derive(Debug, Clone)]
pub struct CreateIntent {
    pub idempotency_key: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_method_token: String,
}

#[derive(Clone)]
pub struct Payments {
    pub store: Arc<dyn PaymentStore>,
    pub provider: Arc<dyn Provider>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
    pub webhook_secret: Arc<str>,
    /// Called after a change that enqueued an event (wakes the outbox relay).
    pub on_event: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Payments")
    }
}

fn unavailable(e: ProviderError) -> PaymentsError {
    PaymentsError::Unavailable(e.to_string())
}

impl Payments {
    /// Merge `obs` into the payment; records an event when something real changed.
    pub async fn apply(
        &self,
        tenant: &str,
        id: Uuid,
        obs: Observation,
    ) -> Result<Payment, StoreError> {
        let now_ms = self.clock.now_ms();
        // The row the change was last computed from: after `update`, the one
        // it was applied to (a store retries the change on a newer row when
        // another writer came first). No read of its own.
        let base: std::sync::Mutex<Option<Payment>> = std::sync::Mutex::new(None);
        let after = self
            .store
            .update(tenant, id, &|cur: &Payment| {
                *base.lock().unwrap_or_else(|p| p.into_inner()) = Some(cur.clone());
                let next = domain::merge(cur, &obs, now_ms)?;
                let event = if domain::is_event_worthy(cur, &next) {
                    match events::envelope(&next, self.clock.as_ref(), self.ids.as_ref()) {
                        Ok(e) => Some(e),
                        Err(e) => {
                            tracing::error!(error = %e, "payment event does not encode");
                            None
                        }
                    }
                } else {
                    None
                };
                Some((next, event))
            })
            .await?;
        let before = base.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = before
            && domain::is_event_worthy(&before, &after)
        {
            tracing::info!(
                payment_id = %after.id, order_id = %after.order_id,
                from = before.status.as_str(), to = after.status.as_str(),
                "payment changed"
            );
            if let Some(wake) = &self.on_event {
                wake();
            }
        }
        Ok(after)
    }

    async fn apply_intent(&self, p: &Payment, i: &Intent) -> Result<Payment, PaymentsError> {
        let obs = Observation::Intent {
            provider_ref: i.provider_ref.clone(),
            state: i.state,
            captured_minor: i.captured_minor,
        };
        Ok(self.apply(&p.tenant_id, p.id, obs).await?)
    }

    /// Read the intent from the provider and merge it: after a refusal
    /// (our view may be stale) and in the reconciler.
    async fn heal(&self, p: &Payment) -> Result<Payment, PaymentsError> {
        let i = self
            .provider
            .retrieve(&p.provider_ref)
            .await
            .map_err(unavailable)?;
        self.apply_intent(p, &i).await
    }

    /// Create and authorize the payment of an order; one per (tenant, order).
    #[tracing::instrument(skip(self, req), fields(order_id = %req.order_id))]
    pub async fn create_intent(
        &self,
        tenant: &str,
        req: CreateIntent,
    ) -> Result<(Payment, String), PaymentsError> {
        let mut errors = Vec::new();
        domain::check_key(&req.idempotency_key, &mut errors);
        if req.order_id.trim().is_empty() {
            errors.push(FieldError {
                field: "order_id".into(),
                message: "is required".into(),
            });
        }
        domain::check_amount("amount.amount_minor", req.amount_minor, &mut errors);
        let currency = domain::check_currency(&req.currency, &mut errors);
        if req.payment_method_token.trim().is_empty() {
            errors.push(FieldError {
                field: "payment_method_token".into(),
                message: "is required".into(),
            });
        }
        if !errors.is_empty() {
            return Err(PaymentsError::Invalid(errors));
        }
        let now_ms = self.clock.now_ms();
        let (p, created) = self
            .store
            .insert(&Payment::new(
                self.ids.new_id(),
                tenant,
                &req.order_id,
                &req.idempotency_key,
                Status::Pending,
                req.amount_minor,
                &currency,
                req.payment_method_token.trim(),
                now_ms,
            ))
            .await?;
        if !created {
            // Cancelled (perhaps before this request arrived, by order id):
            // final, and nothing is authorized for it any more.
            if p.status == Status::Cancelled {
                return Ok((p, String::new()));
            }
            if p.amount_minor != req.amount_minor || p.currency != currency {
                return Err(PaymentsError::Conflict(format!(
                    "order {} already has a payment of {} {}",
                    p.order_id, p.amount_minor, p.currency
                )));
            }
            // Only a payment whose creation never reached the provider is
            // created again, under its first key so the provider replays.
            if p.status != Status::Pending || !p.provider_ref.is_empty() {
                return Ok((p, String::new()));
            }
        }
        self.create_at_provider(&p).await
    }

    /// Create (or, under the payment's first key, replay the creation of)
    /// its intent at the provider, and merge the answer.
    async fn create_at_provider(&self, p: &Payment) -> Result<(Payment, String), PaymentsError> {
        let tenant = p.tenant_id.as_str();
        let result = self
            .provider
            .create_intent(NewIntent {
                idempotency_key: &p.create_key,
                amount_minor: p.amount_minor,
                currency: &p.currency,
                payment_method: &p.payment_method,
                tenant_id: tenant,
                order_id: &p.order_id,
                payment_id: p.id,
            })
            .await;
        match result {
            Ok(i) => {
                let after = self.apply_intent(p, &i).await?;
                if after.status == Status::Cancelled
                    && matches!(i.state, IntentState::Open | IntentState::RequiresCapture)
                {
                    // Cancelled while this creation was in flight: void what
                    // the provider has just authorized.
                    let key = format!("{}:void", p.create_key);
                    let voided = self
                        .provider
                        .cancel(&key, &i.provider_ref)
                        .await
                        .map_err(unavailable)?;
                    return Ok((self.apply_intent(&after, &voided).await?, String::new()));
                }
                Ok((after, i.client_secret))
            }
            // A decline, or a refusal of this payment method (e.g. an unknown
            // token): the payment failed, which is an answer, not an error.
            Err(ProviderError::Declined {
                provider_ref,
                code,
                message,
            }) => {
                let obs = Observation::Declined {
                    provider_ref,
                    code,
                    message,
                };
                Ok((self.apply(tenant, p.id, obs).await?, String::new()))
            }
            Err(ProviderError::Refused { code, message }) => {
                let obs = Observation::Declined {
                    provider_ref: String::new(),
                    code,
                    message,
                };
                Ok((self.apply(tenant, p.id, obs).await?, String::new()))
            }
            Err(e @ ProviderError::Unavailable(_)) => Err(unavailable(e)),
        }
    }

    fn check_capture_amount(p: &Payment, amount: Option<i64>) -> Result<(), PaymentsError> {
        if let Some(a) = amount {
            let mut errors = Vec::new();
            domain::check_amount("amount.amount_minor", a, &mut errors);
            if !errors.is_empty() {
                return Err(PaymentsError::Invalid(errors));
            }
            if a > p.amount_minor {
                return Err(PaymentsError::Unprocessable(format!(
                    "cannot capture {a}: {} authorized",
                    p.amount_minor
                )));
            }
        }
        Ok(())
    }

    /// Capture an authorized payment; capturing a captured one returns it.
    #[tracing::instrument(skip(self))]
    pub async fn capture(
        &self,
        tenant: &str,
        key: &str,
        id: Uuid,
        amount_minor: Option<i64>,
    ) -> Result<Payment, PaymentsError> {
        let mut errors = Vec::new();
        domain::check_key(key, &mut errors);
        if !errors.is_empty() {
            return Err(PaymentsError::Invalid(errors));
        }
        let p = self.store.get(tenant, id).await?;
        match p.status {
            s if s.is_captured() => return Ok(p),
            Status::Failed | Status::Cancelled => {
                return Err(PaymentsError::Precondition(format!(
                    "payment is {}",
                    p.status.as_str()
                )));
            }
            Status::Pending if p.provider_ref.is_empty() => {
                return Err(PaymentsError::Precondition(
                    "payment is not authorized".into(),
                ));
            }
            _ => {}
        }
        Self::check_capture_amount(&p, amount_minor)?;
        match self
            .provider
            .capture(key, &p.provider_ref, amount_minor)
            .await
        {
            Ok(i) => self.apply_intent(&p, &i).await,
            Err(ProviderError::Unavailable(m)) => Err(PaymentsError::Unavailable(m)),
            Err(refused) => {
                // Perhaps already captured (a lost response under another key).
                let healed = self.heal(&p).await?;
                if healed.status.is_captured() {
                    Ok(healed)
                } else {
                    Err(PaymentsError::Precondition(refused.to_string()))
                }
            }
        }
    }

    /// Void an uncaptured payment; cancelling a cancelled one returns it.
    #[tracing::instrument(skip(self))]
    pub async fn cancel(
        &self,
        tenant: &str,
        key: &str,
        id: Uuid,
    ) -> Result<Payment, PaymentsError> {
        let mut errors = Vec::new();
        domain::check_key(key, &mut errors);
        if !errors.is_empty() {
            return Err(PaymentsError::Invalid(errors));
        }
        let mut p = self.store.get(tenant, id).await?;
        if p.status == Status::Pending && p.provider_ref.is_empty() && !p.payment_method.is_empty()
        {
            // The creation may have reached the provider with its answer lost
            // (payments crashed before recording it; found by the simulator,
            // seed 338). Replaying it under its first key returns that intent
            // if it exists, or creates one, which is voided below.
            p = self.create_at_provider(&p).await?.0;
        }
        match p.status {
            Status::Cancelled | Status::Failed => return Ok(p),
            s if s.is_captured() => {
                return Err(PaymentsError::Precondition(
                    "payment is captured: refund it instead".into(),
                ));
            }
            Status::Pending if p.provider_ref.is_empty() => {
                // Cancelled by order before any creation: nothing to void.
                let obs = Observation::Intent {
                    provider_ref: String::new(),
                    state: IntentState::Canceled,
                    captured_minor: 0,
                };
                return Ok(self.apply(tenant, id, obs).await?);
            }
            _ => {}
        }
        match self.provider.cancel(key, &p.provider_ref).await {
            Ok(i) => self.apply_intent(&p, &i).await,
            Err(ProviderError::Unavailable(m)) => Err(PaymentsError::Unavailable(m)),
            Err(refused) => {
                let healed = self.heal(&p).await?;
                match healed.status {
                    Status::Cancelled => Ok(healed),
                    s if s.is_captured() => Err(PaymentsError::Precondition(
                        "payment is captured: refund it instead".into(),
                    )),
                    _ => Err(PaymentsError::Precondition(refused.to_string())),
                }
            }
        }
    }

    /// Cancel the payment of an order whose payment id the caller never
    /// learned (the saga's undo of an authorize whose answers were all lost).
    /// With no payment for the order yet, store a cancelled one, so a
    /// CreateIntent arriving later authorizes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn cancel_order(
        &self,
        tenant: &str,
        key: &str,
        order_id: &str,
    ) -> Result<Payment, PaymentsError> {
        let mut errors = Vec::new();
        domain::check_key(key, &mut errors);
        if order_id.trim().is_empty() {
            errors.push(FieldError {
                field: "order_id".into(),
                message: "is required when payment_id is empty".into(),
            });
        }
        if !errors.is_empty() {
            return Err(PaymentsError::Invalid(errors));
        }
        let existing = match self.store.by_order(tenant, order_id).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => {
                let now_ms = self.clock.now_ms();
                let (p, created) = self
                    .store
                    .insert(&Payment::new(
                        self.ids.new_id(),
                        tenant,
                        order_id,
                        key,
                        Status::Cancelled,
                        0,
                        "",
                        "",
                        now_ms,
                    ))
                    .await?;
                if created {
                    return Ok(p);
                }
                // A CreateIntent got there first: cancel what it made.
                p
            }
            Err(e) => return Err(e.into()),
        };
        self.cancel(tenant, key, existing.id).await
    }

    /// Refund (part of) a captured payment. Returns the payment and the
    /// provider's refund id (empty when there was nothing left to refund).
    #[tracing::instrument(skip(self))]
    pub async fn refund(
        &self,
        tenant: &str,
        key: &str,
        id: Uuid,
        amount_minor: Option<i64>,
        reason: &str,
    ) -> Result<(Payment, String), PaymentsError> {
        let mut errors = Vec::new();
        domain::check_key(key, &mut errors);
        if let Some(a) = amount_minor {
            domain::check_amount("amount.amount_minor", a, &mut errors);
        }
        if !errors.is_empty() {
            return Err(PaymentsError::Invalid(errors));
        }
        let p = self.store.get(tenant, id).await?;
        if !p.status.is_captured() {
            return Err(PaymentsError::Precondition(format!(
                "payment is {}: only captured payments are refunded",
                p.status.as_str()
            )));
        }
        let remaining = p.refundable_minor();
        let amount = match amount_minor {
            None if remaining == 0 => return Ok((p, String::new())),
            None => remaining,
            Some(a) if a > remaining => {
                return Err(PaymentsError::Unprocessable(format!(
                    "cannot refund {a}: {remaining} refundable"
                )));
            }
            Some(a) => a,
        };
        match self
            .provider
            .refund(key, &p.provider_ref, amount, reason)
            .await
        {
            Ok(r) => {
                let obs = Observation::Refund {
                    refund_id: r.refund_id.clone(),
                    amount_minor: r.amount_minor,
                };
                Ok((self.apply(tenant, id, obs).await?, r.refund_id))
            }
            Err(ProviderError::Unavailable(m)) => Err(PaymentsError::Unavailable(m)),
            Err(refused) => Err(PaymentsError::Unprocessable(refused.to_string())),
        }
    }

    pub async fn get(&self, tenant: &str, id: Uuid) -> Result<Payment, PaymentsError> {
        Ok(self.store.get(tenant, id).await?)
    }

    pub async fn by_order(&self, tenant: &str, order_id: &str) -> Result<Payment, PaymentsError> {
        Ok(self.store.by_order(tenant, order_id).await?)
    }

    /// Verify, dedupe and apply one Stripe webhook delivery. Applying is
    /// idempotent (merges never move back), so the event id is recorded
    /// after the change: a crash in between makes a redelivery a no-op
    /// rather than a lost event.
    #[tracing::instrument(skip_all)]
    pub async fn handle_webhook(
        &self,
        payload: &[u8],
        signature_header: Option<&str>,
        default_tenant: &str,
    ) -> Result<WebhookOutcome, WebhookError> {
        let now_s = self.clock.now_ms().div_euclid(1000);
        signature::verify(
            payload,
            signature_header,
            &self.webhook_secret,
            signature::DEFAULT_TOLERANCE_S,
            now_s,
        )?;
        let event = stripe::parse_webhook(payload, default_tenant)
            .map_err(|e| WebhookError::Payload(e.to_string()))?;
        tracing::Span::current().record("event_id", event.id.as_str());
        let Some(WebhookObservation {
            tenant,
            payment,
            observation: obs,
        }) = event.about
        else {
            tracing::debug!(event_id = %event.id, kind = %event.kind, "webhook ignored");
            return Ok(WebhookOutcome::Ignored);
        };
        let found = match payment {
            PaymentRef::Id(id) => self.store.get(&tenant, id).await,
            PaymentRef::Provider(r) => self.store.by_provider_ref(&tenant, &r).await,
        };
        let p = match found {
            Ok(p) => p,
            Err(StoreError::NotFound) => {
                tracing::info!(event_id = %event.id, "webhook for an unknown payment ignored");
                return Ok(WebhookOutcome::Ignored);
            }
            Err(e) => return Err(e.into()),
        };
        self.apply(&tenant, p.id, obs).await?;
        let first = self
            .store
            .record_webhook(&event.id, &event.kind, self.clock.now_ms())
            .await?;
        Ok(if first {
            WebhookOutcome::Applied
        } else {
            WebhookOutcome::Duplicate
        })
    }

    /// One reconciler round: read every in-flight payment untouched for
    /// `min_age` from the provider and merge what it says. Returns how many
    /// payments changed.
    pub async fn reconcile_once(&self, min_age: Duration) -> Result<usize, PaymentsError> {
        let before_ms =
            self.clock.now_ms() - i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX);
        let due = self.store.stale(before_ms, RECONCILE_BATCH).await?;
        let mut changed = 0;
        for p in due {
            match self.heal(&p).await {
                Ok(after) if after != p => changed += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(payment_id = %p.id, error = %e, "reconcile read failed");
                }
            }
        }
        Ok(changed)
    }

    /// Reconcile every `interval` until `shutdown`.
    pub async fn run_reconciler(
        &self,
        interval: Duration,
        min_age: Duration,
        shutdown: CancellationToken,
    ) {
        while shutdown::sleep_or_stop(&shutdown, interval).await {
            match self.reconcile_once(min_age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(healed = n, "reconciler healed payments"),
                Err(e) => tracing::warn!(error = %e, "reconcile round failed"),
            }
        }
    }
}
