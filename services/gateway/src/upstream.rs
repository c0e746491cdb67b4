//! Calls to the gRPC backends behind the checkout routes: one request builder
//! (deadline + tenant metadata; the trace context is added by the clients'
//! interceptor) and one mapping from a backend's status to problem+json.

use std::time::Duration;

use shopstream_platform::{ErrorCode, Problem};
use shopstream_proto::TENANT_METADATA_KEY;

/// A request with the call's deadline and the caller's tenant in metadata.
pub fn request<T>(msg: T, tenant: &str, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    if let Ok(v) = tenant.parse() {
        r.metadata_mut().insert(TENANT_METADATA_KEY, v);
    }
    r
}

/// A backend's gRPC status → problem+json.
///
/// InvalidArgument → 422 (400 when marked malformed, see
/// `grpc::bad_request`; 422 with the field violations the message carries as
/// `; field: message` parts, the way `Problem::to_status` writes them),
/// NotFound → 404, AlreadyExists/Aborted/FailedPrecondition → 409,
/// Unavailable/DeadlineExceeded/Cancelled (our own deadline) → 503. Anything
/// unexpected is a 500 that names the service, never the backend's text.
pub fn problem_of(service: &'static str, s: tonic::Status) -> Problem {
    let malformed = s
        .metadata()
        .get(shopstream_platform::grpc::ERROR_CODE_METADATA_KEY)
        .is_some_and(|v| v == "bad_request");
    if malformed && s.code() == tonic::Code::InvalidArgument {
        return Problem::new(ErrorCode::BadRequest, s.message());
    }
    let code = match s.code() {
        tonic::Code::FailedPrecondition => ErrorCode::Conflict,
        // Our services never answer `Unknown` themselves: it is tonic's
        // client saying the connection broke mid-call (under overload, an
        // HTTP/2 keep-alive went unanswered), which a retry may fix: 503.
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Cancelled
        | tonic::Code::Unknown => ErrorCode::Unavailable,
        c => ErrorCode::from_grpc(c),
    };
    match code {
        ErrorCode::Internal => {
            tracing::warn!(service, code = ?s.code(), message = s.message(), "backend failed");
            Problem::new(code, format!("{service} failed"))
        }
        ErrorCode::Unavailable => {
            tracing::warn!(service, code = ?s.code(), message = s.message(), "backend unavailable");
            Problem::new(code, format!("{service} is unavailable"))
        }
        ErrorCode::Unprocessable => with_fields(code, s.message()),
        _ => Problem::new(code, s.message()),
    }
}

/// Split `detail; field: message; field: message` into a problem with `errors[]`.
fn with_fields(code: ErrorCode, message: &str) -> Problem {
    let mut parts = message.split("; ");
    let detail = parts.next().unwrap_or_default();
    let fields: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once(": ")).collect();
    fields
        .into_iter()
        .fold(Problem::new(code, detail), |p, (f, m)| p.with_field(f, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_http_codes() {
        let cases = [
            (tonic::Code::NotFound, 404),
            (tonic::Code::AlreadyExists, 409),
            (tonic::Code::Aborted, 409),
            (tonic::Code::FailedPrecondition, 409),
            (tonic::Code::InvalidArgument, 422),
            (tonic::Code::Unavailable, 503),
            (tonic::Code::DeadlineExceeded, 503),
            (tonic::Code::Cancelled, 503),
            (tonic::Code::Unknown, 503),
            (tonic::Code::PermissionDenied, 403),
            (tonic::Code::Internal, 500),
        ];
        for (code, http) in cases {
            assert_eq!(
                problem_of("orders", tonic::Status::new(code, "x")).status,
                http,
                "{code:?}"
            );
        }
    }

    #[test]
    fn field_violations_come_back_as_errors_and_internal_text_stays_inside() {
        let p = problem_of(
            "inventory",
            tonic::Status::invalid_argument("invalid reservation; items[0].quantity: must be >= 1"),
        );
        assert_eq!(p.detail.as_deref(), Some("invalid reservation"));
        assert_eq!(p.errors[0].field, "items[0].quantity");
        assert_eq!(p.errors[0].message, "must be >= 1");
        let p = problem_of("orders", tonic::Status::internal("pq: relation missing"));
        assert_eq!(p.detail.as_deref(), Some("orders failed"));
    }
}
