//! One error-code enum for the whole system, mapped to both HTTP status and
//! `tonic::Code`, and the `application/problem+json` body (RFC 9457).
//!
//! Services define their own `thiserror` enums per use case and convert them
//! into [`Problem`] at the API edge; driver error text never reaches a client.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

/// What went wrong, independent of the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request (bad JSON, wrong type): HTTP 400.
    BadRequest,
    /// Well-formed but semantically invalid (field validation): HTTP 422.
    Unprocessable,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    /// Stale version, duplicate, idempotency-key reuse: HTTP 409.
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Timeout,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::BadRequest | ErrorCode::Unprocessable => tonic::Code::InvalidArgument,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Conflict => tonic::Code::Aborted,
            ErrorCode::PayloadTooLarge => tonic::Code::OutOfRange,
            ErrorCode::RateLimited => tonic::Code::ResourceExhausted,
            ErrorCode::Timeout => tonic::Code::DeadlineExceeded,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// The code a gRPC status maps back to (used by the gateway when it relays errors).
    pub fn from_grpc(code: tonic::Code) -> ErrorCode {
        match code {
            tonic::Code::InvalidArgument => ErrorCode::Unprocessable,
            tonic::Code::Unauthenticated => ErrorCode::Unauthenticated,
            tonic::Code::PermissionDenied => ErrorCode::PermissionDenied,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::Aborted | tonic::Code::AlreadyExists => ErrorCode::Conflict,
            tonic::Code::OutOfRange => ErrorCode::PayloadTooLarge,
            tonic::Code::ResourceExhausted => ErrorCode::RateLimited,
            tonic::Code::DeadlineExceeded => ErrorCode::Timeout,
            // tonic reports a channel's own timeout expiring as Cancelled: the
            // backend was too slow, which is a 503, not a bug of ours.
            tonic::Code::Unavailable | tonic::Code::Cancelled => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// Short human title used in problem documents.
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "Malformed request",
            ErrorCode::Unprocessable => "Validation failed",
            ErrorCode::Unauthenticated => "Authentication required",
            ErrorCode::PermissionDenied => "Permission denied",
            ErrorCode::NotFound => "Not found",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::RateLimited => "Too many requests",
            ErrorCode::Timeout => "Timed out",
            ErrorCode::Unavailable => "Service unavailable",
            ErrorCode::Internal => "Internal error",
        }
    }
}

/// One invalid input field: a dotted path with indices
/// (`items[1].quantity`) and a human-readable reason. Every service's
/// validation reports these; [`Problem::invalid`] is the one way they reach a
/// client. An empty `field` is a violation of the whole input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// An `application/problem+json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds to wait before retrying (sent as `Retry-After` as well).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: format!(
                "https://shopstream.dev/problems/{}",
                serde_json::to_value(code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
                    .replace('_', "-")
            ),
            title: code.title().to_string(),
            status: code.http_status().as_u16(),
            code,
            detail: Some(detail.into()),
            request_id: None,
            errors: Vec::new(),
            retry_after_s: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Problem {
        self.errors.push(FieldError::new(field, message));
        self
    }

    /// The answer to invalid input: 422 with one `errors[]` entry per field.
    /// The first violation of the whole input (empty `field`) replaces
    /// `detail` instead of becoming an entry.
    pub fn invalid(
        detail: impl Into<String>,
        fields: impl IntoIterator<Item = FieldError>,
    ) -> Problem {
        let mut whole = None;
        let mut errors = Vec::new();
        for f in fields {
            if f.field.is_empty() {
                whole.get_or_insert(f.message);
            } else {
                errors.push(f);
            }
        }
        Problem {
            errors,
            ..Problem::new(
                ErrorCode::Unprocessable,
                whole.unwrap_or_else(|| detail.into()),
            )
        }
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Problem {
        self.request_id = request_id;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after_s = Some(seconds);
        self
    }

    /// The gRPC status carrying this problem (message = detail).
    pub fn to_status(&self) -> tonic::Status {
        let mut msg = self.detail.clone().unwrap_or_else(|| self.title.clone());
        for v in &self.errors {
            msg.push_str(&format!("; {}: {}", v.field, v.message));
        }
        tonic::Status::new(self.code.grpc_code(), msg)
    }
}

impl From<Problem> for tonic::Status {
    fn from(p: Problem) -> tonic::Status {
        p.to_status()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.code.http_status();
        let retry_after = self.retry_after_s;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if let Some(s) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 11] = [
        ErrorCode::BadRequest,
        ErrorCode::Unprocessable,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    #[test]
    fn http_statuses_are_the_documented_ones() {
        assert_eq!(ErrorCode::Unprocessable.http_status().as_u16(), 422);
        assert_eq!(ErrorCode::Conflict.http_status().as_u16(), 409);
        assert_eq!(ErrorCode::PayloadTooLarge.http_status().as_u16(), 413);
        assert_eq!(ErrorCode::RateLimited.http_status().as_u16(), 429);
    }

    #[test]
    fn grpc_round_trip_keeps_the_meaning() {
        for code in ALL {
            let back = ErrorCode::from_grpc(code.grpc_code());
            // 400 and 422 share InvalidArgument; everything else maps back exactly.
            if code != ErrorCode::BadRequest {
                assert_eq!(back, code, "{code:?}");
            }
        }
        // A channel timeout arrives as Cancelled: the backend is slow, a 503.
        assert_eq!(
            ErrorCode::from_grpc(tonic::Code::Cancelled),
            ErrorCode::Unavailable
        );
        assert_eq!(
            ErrorCode::from_grpc(tonic::Code::Unknown),
            ErrorCode::Internal
        );
    }

    #[test]
    fn problem_json_has_the_rfc_fields_and_field_errors() {
        let p = Problem::new(ErrorCode::Unprocessable, "price must be positive")
            .with_field("price.amount_minor", "must be > 0")
            .with_request_id(Some("req-1".into()));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], 422);
        assert_eq!(v["type"], "https://shopstream.dev/problems/unprocessable");
        assert_eq!(v["errors"][0]["field"], "price.amount_minor");
        assert_eq!(v["request_id"], "req-1");
        let resp = p.into_response();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    }

    #[test]
    fn invalid_input_lists_the_fields_and_a_whole_input_violation_is_the_detail() {
        let p = Problem::invalid(
            "invalid order",
            [
                FieldError::new("items[0].quantity", "must be 1..=1000"),
                FieldError::new("payment_method", "is required"),
            ],
        );
        assert_eq!(p.status, 422);
        assert_eq!(p.detail.as_deref(), Some("invalid order"));
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.errors[1].field, "payment_method");
        let p = Problem::invalid(
            "invalid product",
            [
                FieldError::new("", "changes nothing"),
                FieldError::new("title", "must not be empty"),
            ],
        );
        assert_eq!(p.detail.as_deref(), Some("changes nothing"));
        assert_eq!(
            p.errors,
            vec![FieldError::new("title", "must not be empty")]
        );
        // The gRPC form carries the same fields (the gateway splits them back).
        assert_eq!(
            p.to_status().message(),
            "changes nothing; title: must not be empty"
        );
    }

    #[test]
    fn rate_limited_problem_sets_retry_after() {
        let resp = Problem::new(ErrorCode::RateLimited, "slow down")
            .with_retry_after(7)
            .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }
}
