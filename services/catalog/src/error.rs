//! The catalog's error type and its one mapping to `platform::Problem`
//! (problem+json over HTTP, a status code over gRPC). Store and driver text is
//! logged, never sent to clients.

use shopstream_platform::{ErrorCode, Problem, config::ConfigError, db::DbError};

use crate::{
    domain::{FieldErrors, ProductId},
    ports::RepoError,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks validation rules; every bad field is listed.
    #[error("{detail}: {fields}")]
    Invalid { detail: String, fields: FieldErrors },
    /// Malformed request metadata (e.g. a bad tenant header or `If-Match`).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The caller lacks the admin role the gateway vouches for.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("product {0} not found")]
    ProductNotFound(String),
    #[error("sku {0} not found")]
    SkuNotFound(String),
    /// The client's version is stale.
    #[error("product {id} is at version {current}, not {expected}")]
    VersionConflict {
        id: ProductId,
        expected: i64,
        current: i64,
    },
    /// A unique key is taken (slug, SKU code).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Serve(#[from] shopstream_platform::service::ServiceError),
    /// The seed file cannot be read or is invalid.
    #[error("seed {path}: {reason}")]
    Seed { path: String, reason: String },
}

impl Error {
    pub fn invalid(fields: FieldErrors) -> Error {
        Error::Invalid {
            detail: "the request has invalid fields".into(),
            fields,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Invalid { .. } => ErrorCode::Unprocessable,
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::ProductNotFound(_) | Error::SkuNotFound(_) => ErrorCode::NotFound,
            Error::VersionConflict { .. } | Error::Conflict(_) => ErrorCode::Conflict,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_)
            | Error::Config(_)
            | Error::Db(_)
            | Error::Serve(_)
            | Error::Seed { .. } => ErrorCode::Internal,
        }
    }

    /// The problem document a client sees.
    pub fn to_problem(&self) -> Problem {
        let code = self.code();
        match self {
            // A violation of the whole body (no field) becomes the detail.
            Error::Invalid { detail, fields } => Problem::invalid(detail, fields.clone()),
            Error::Unavailable(_) => {
                tracing::warn!(error = %self, "store unavailable");
                Problem::new(code, "the catalog store is unavailable; retry shortly")
                    .with_retry_after(1)
            }
            Error::Internal(_)
            | Error::Config(_)
            | Error::Db(_)
            | Error::Serve(_)
            | Error::Seed { .. } => {
                tracing::error!(error = %self, "internal error");
                Problem::new(code, "internal error")
            }
            other => Problem::new(code, other.to_string()),
        }
    }
}

impl From<&Error> for Problem {
    fn from(e: &Error) -> Problem {
        e.to_problem()
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        e.to_problem()
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        e.to_problem().to_status()
    }
}

impl From<RepoError> for Error {
    /// Translate store errors that the use case did not handle itself.
    fn from(e: RepoError) -> Error {
        match e {
            RepoError::NotFound => Error::ProductNotFound("requested".into()),
            RepoError::SkuNotFound => Error::Internal("unexpected sku not found".into()),
            RepoError::Conflict { product, current } => Error::Conflict(format!(
                "product {product} changed meanwhile (now version {current})"
            )),
            RepoError::Duplicate(d) => Error::Conflict(format!("{d} already exists")),
            RepoError::Invalid(fields) => Error::invalid(fields),
            RepoError::Unavailable(m) => Error::Unavailable(m),
            RepoError::Internal(m) => Error::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn validation_lists_every_field_as_422() {
        let mut f = FieldErrors::new();
        f.push("title", "must not be empty");
        f.push("skus[0].price.currency", "must be an ISO 4217 code");
        let p = Error::invalid(f).to_problem();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.errors[1].field, "skus[0].price.currency");

        let p = Error::invalid(FieldErrors::single("", "changes nothing")).to_problem();
        assert_eq!(p.detail.as_deref(), Some("changes nothing"));
        assert!(p.errors.is_empty());
    }

    #[test]
    fn statuses_and_grpc_codes() {
        let conflict = Error::VersionConflict {
            id: ProductId(Uuid::nil()),
            expected: 1,
            current: 3,
        };
        assert_eq!(conflict.to_problem().status, 409);
        assert!(conflict.to_problem().detail.unwrap().contains("version 3"));
        assert_eq!(
            tonic::Status::from(Error::ProductNotFound("x".into())).code(),
            tonic::Code::NotFound
        );
        assert_eq!(Error::BadRequest("x".into()).to_problem().status, 400);
        assert_eq!(Error::PermissionDenied("x".into()).to_problem().status, 403);
    }

    #[test]
    fn driver_text_never_reaches_the_client() {
        let p = Error::Internal("relation \"product\" does not exist".into()).to_problem();
        assert_eq!(p.status, 500);
        assert_eq!(p.detail.as_deref(), Some("internal error"));
        let p = Error::Unavailable("connection refused 127.0.0.1:25432".into()).to_problem();
        assert_eq!(p.status, 503);
        assert!(!p.detail.unwrap().contains("127.0.0.1"));
    }
}
