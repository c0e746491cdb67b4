//! gRPC `PaymentsService`: thin translation between the wire and `service`.

use shopstream_platform::{ErrorCode, Problem, grpc::tenant};
use shopstream_proto::{
    common::v1::Money,
    payments::v1::{
        CancelRequest, CancelResponse, CaptureRequest, CaptureResponse, CreateIntentRequest,
        CreateIntentResponse, GetPaymentRequest, GetPaymentResponse, Payment as WirePayment,
        PaymentStatus, RefundRequest, RefundResponse, get_payment_request::By,
        payments_service_server::PaymentsService,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{self, Payment},
    ports::StoreError,
    service::{CreateIntent, Payments, PaymentsError},
};

#[derive(Debug, Clone)]
pub struct GrpcApi {
    pub payments: Payments,
    pub default_tenant: String,
}

pub fn status(s: domain::Status) -> PaymentStatus {
    match s {
        domain::Status::Pending => PaymentStatus::Pending,
        domain::Status::Authorized => PaymentStatus::Authorized,
        domain::Status::Captured => PaymentStatus::Captured,
        domain::Status::PartiallyRefunded => PaymentStatus::PartiallyRefunded,
        domain::Status::Refunded => PaymentStatus::Refunded,
        domain::Status::Failed => PaymentStatus::Failed,
        domain::Status::Cancelled => PaymentStatus::Cancelled,
    }
}

fn money(amount_minor: i64, currency: &str) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: currency.to_string(),
    })
}

pub fn payment(p: &Payment) -> WirePayment {
    WirePayment {
        payment_id: p.id.to_string(),
        order_id: p.order_id.clone(),
        status: status(p.status) as i32,
        amount: money(p.amount_minor, &p.currency),
        captured: money(p.captured_minor, &p.currency),
        refunded: money(p.refunded_minor, &p.currency),
        provider_ref: p.provider_ref.clone(),
        failure_code: p.failure_code.clone(),
        failure_message: p.failure_message.clone(),
        created_at_ms: p.created_at_ms,
        updated_at_ms: p.updated_at_ms,
    }
}

impl From<PaymentsError> for Problem {
    fn from(e: PaymentsError) -> Problem {
        match e {
            PaymentsError::Invalid(fields) => Problem::invalid("invalid payment request", fields),
            PaymentsError::NotFound => Problem::new(ErrorCode::NotFound, "payment not found"),
            PaymentsError::Precondition(m) | PaymentsError::Conflict(m) => {
                Problem::new(ErrorCode::Conflict, m)
            }
            PaymentsError::Unprocessable(m) => Problem::new(ErrorCode::Unprocessable, m),
            PaymentsError::Unavailable(detail) => {
                tracing::warn!(%detail, "payment provider unavailable");
                Problem::new(
                    ErrorCode::Unavailable,
                    "the payment provider is unavailable; retry with the same idempotency key",
                )
            }
            PaymentsError::Store(StoreError::NotFound) => {
                Problem::new(ErrorCode::NotFound, "payment not found")
            }
            PaymentsError::Store(StoreError::Storage(detail)) => {
                tracing::error!(%detail, "payments storage error");
                Problem::new(ErrorCode::Unavailable, "payments storage is unavailable")
            }
        }
    }
}

/// The gRPC status of an error. FAILED_PRECONDITION has no `ErrorCode`
/// (the platform's codes map Conflict to ABORTED), and the proto promises
/// it for e.g. cancelling a captured payment, so it is built here.
pub fn grpc_status(e: PaymentsError) -> Status {
    match e {
        PaymentsError::Precondition(m) => Status::failed_precondition(m),
        e => Problem::from(e).into(),
    }
}

fn payment_id(raw: &str) -> Result<uuid::Uuid, Status> {
    raw.parse()
        .map_err(|_| Problem::new(ErrorCode::Unprocessable, "payment_id is not a UUID").into())
}

#[tonic::async_trait]
impl PaymentsService for GrpcApi {
    async fn create_intent(
        &self,
        req: Request<CreateIntentRequest>,
    ) -> Result<Response<CreateIntentResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let amount = r.amount.unwrap_or_default();
        let (p, client_secret) = self
            .payments
            .create_intent(
                &tenant,
                CreateIntent {
                    idempotency_key: r.idempotency_key,
                    order_id: r.order_id,
                    amount_minor: amount.amount_minor,
                    currency: amount.currency,
                    payment_method_token: r.payment_method_token,
                },
            )
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(CreateIntentResponse {
            payment: Some(payment(&p)),
            client_secret,
        }))
    }

    async fn capture(
        &self,
        req: Request<CaptureRequest>,
    ) -> Result<Response<CaptureResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let p = self
            .payments
            .capture(
                &tenant,
                &r.idempotency_key,
                payment_id(&r.payment_id)?,
                r.amount.map(|m| m.amount_minor),
            )
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(CaptureResponse {
            payment: Some(payment(&p)),
        }))
    }

    async fn refund(
        &self,
        req: Request<RefundRequest>,
    ) -> Result<Response<RefundResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let (p, refund_id) = self
            .payments
            .refund(
                &tenant,
                &r.idempotency_key,
                payment_id(&r.payment_id)?,
                r.amount.map(|m| m.amount_minor),
                &r.reason,
            )
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(RefundResponse {
            payment: Some(payment(&p)),
            refund_id,
        }))
    }

    async fn cancel(
        &self,
        req: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let p = if r.payment_id.is_empty() {
            self.payments
                .cancel_order(&tenant, &r.idempotency_key, &r.order_id)
                .await
        } else {
            self.payments
                .cancel(&tenant, &r.idempotency_key, payment_id(&r.payment_id)?)
                .await
        }
        .map_err(grpc_status)?;
        Ok(Response::new(CancelResponse {
            payment: Some(payment(&p)),
        }))
    }

    async fn get_payment(
        &self,
        req: Request<GetPaymentRequest>,
    ) -> Result<Response<GetPaymentResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let p = match req.into_inner().by {
            Some(By::PaymentId(id)) => self.payments.get(&tenant, payment_id(&id)?).await,
            Some(By::OrderId(order)) => self.payments.by_order(&tenant, &order).await,
            None => {
                return Err(Problem::new(
                    ErrorCode::Unprocessable,
                    "payment_id or order_id is required",
                )
                .into());
            }
        }
        .map_err(grpc_status)?;
        Ok(Response::new(GetPaymentResponse {
            payment: Some(payment(&p)),
        }))
    }
}
