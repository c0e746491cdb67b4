//! Stripe's error object (`{"error": {"type", "code", "decline_code",
//! "message", "param", ...}}`) and its HTTP status, built from domain errors,
//! parameter errors and card declines.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{domain::DomainError, form::ParamError};

#[derive(Debug, Clone, PartialEq)]
pub struct StripeError {
    pub status: StatusCode,
    /// `card_error`, `invalid_request_error`, `idempotency_error`, `api_error`.
    pub kind: &'static str,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: String,
    pub param: Option<String>,
    /// Extra members of the error object (`payment_intent`, `charge`, ...).
    pub extra: serde_json::Map<String, Value>,
    /// Refused before the operation ran (parameter validation): Stripe saves
    /// no idempotent result for it, so a corrected retry may reuse the key.
    pub before_execution: bool,
}

impl StripeError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> StripeError {
        StripeError {
            status,
            kind,
            code: None,
            decline_code: None,
            message: message.into(),
            param: None,
            extra: serde_json::Map::new(),
            before_execution: false,
        }
    }

    pub fn invalid_request(code: &str, message: impl Into<String>) -> StripeError {
        StripeError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).with_code(code)
    }

    pub fn missing_param(param: &str) -> StripeError {
        StripeError::invalid_request(
            "parameter_missing",
            format!("Missing required param: {param}."),
        )
        .with_param(param)
        .before_execution()
    }

    pub fn resource_missing(kind: &str, id: &str) -> StripeError {
        StripeError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No such {kind}: '{id}'"),
        )
        .with_code("resource_missing")
        .with_param("id")
    }

    pub fn unauthorized(message: impl Into<String>) -> StripeError {
        StripeError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
    }

    pub fn with_code(mut self, code: &str) -> StripeError {
        self.code = Some(code.to_string());
        self
    }

    pub fn with_param(mut self, param: &str) -> StripeError {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_extra(mut self, key: &str, value: Value) -> StripeError {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn before_execution(mut self) -> StripeError {
        self.before_execution = true;
        self
    }

    pub fn body(&self) -> Value {
        let mut e = serde_json::Map::new();
        e.insert("type".into(), json!(self.kind));
        e.insert("message".into(), json!(self.message));
        if let Some(c) = &self.code {
            e.insert("code".into(), json!(c));
            e.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    c.replace('_', "-")
                )),
            );
        }
        if let Some(d) = &self.decline_code {
            e.insert("decline_code".into(), json!(d));
        }
        if let Some(p) = &self.param {
            e.insert("param".into(), json!(p));
        }
        e.extend(self.extra.clone());
        json!({ "error": e })
    }
}

impl IntoResponse for StripeError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<DomainError> for StripeError {
    fn from(e: DomainError) -> StripeError {
        let mut out = StripeError::invalid_request(e.code(), e.to_string());
        if let Some(p) = e.param() {
            out = out.with_param(p);
        }
        if matches!(e, DomainError::InvalidAmount { .. }) {
            out = out.before_execution();
        }
        out
    }
}

impl From<ParamError> for StripeError {
    fn from(e: ParamError) -> StripeError {
        StripeError::invalid_request("parameter_invalid", e.message)
            .with_param(&e.param)
            .before_execution()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_has_stripes_shape() {
        let e = StripeError::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            "Your card was declined.",
        )
        .with_code("card_declined");
        let mut e = e;
        e.decline_code = Some("generic_decline".into());
        let b = e.body();
        assert_eq!(b["error"]["type"], "card_error");
        assert_eq!(b["error"]["code"], "card_declined");
        assert_eq!(b["error"]["decline_code"], "generic_decline");
        assert_eq!(
            b["error"]["doc_url"],
            "https://stripe.com/docs/error-codes/card-declined"
        );
        assert!(b["error"].get("param").is_none());
    }
}
