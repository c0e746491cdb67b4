//! An admin account through identity's public surface: its internal gRPC
//! `EnsureAdmin`, the operator call that `shopstream seed`'s first admin, the
//! labs and the integration tests all use instead of opening identity's
//! database. Like every operator call it needs access to identity's gRPC
//! port, which the gateway never exposes.

use std::time::Duration;

use shopstream_platform::grpc;
use shopstream_proto::{
    TENANT_METADATA_KEY,
    identity::v1::{EnsureAdminRequest, identity_service_client::IdentityServiceClient},
};

/// Bound on connecting to identity.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the call: creating an account hashes its password with argon2id,
/// which takes seconds in a debug build on a busy machine.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no admin account could be ensured.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Identity is not there (not started, or not answering in time).
    #[error("identity's gRPC at {url} is not reachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// Identity answered and refused (e.g. the email is not an email).
    #[error("identity refused EnsureAdmin ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
}

/// Make sure `email` is an admin of `tenant` (`None`: identity's default
/// tenant). Returns the generated password when the account was created by
/// this call (shown once: only its hash is stored), `None` when an existing
/// account was given the admin role.
pub async fn ensure_admin(
    identity_grpc_url: &str,
    tenant: Option<&str>,
    email: &str,
) -> Result<Option<String>, AdminError> {
    let unreachable = |reason: String| AdminError::Unreachable {
        url: identity_grpc_url.to_string(),
        reason,
    };
    let channel = grpc::channel(identity_grpc_url, CONNECT_TIMEOUT, CALL_TIMEOUT)
        .map_err(|e| unreachable(e.to_string()))?;
    let mut request = tonic::Request::new(EnsureAdminRequest {
        email: email.to_string(),
    });
    if let Some(t) = tenant {
        let value = t.parse().map_err(|_| AdminError::Refused {
            code: tonic::Code::InvalidArgument,
            message: format!("tenant {t:?} is not a valid metadata value"),
        })?;
        request.metadata_mut().insert(TENANT_METADATA_KEY, value);
    }
    match IdentityServiceClient::new(channel)
        .ensure_admin(request)
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            Ok(r.created.then_some(r.password))
        }
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) =>
        {
            Err(unreachable(s.message().to_string()))
        }
        Err(s) => Err(AdminError::Refused {
            code: s.code(),
            message: s.message().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unusable_url_is_unreachable_not_refused() {
        let e = ensure_admin("not a url", None, "a@b.io").await.unwrap_err();
        assert!(matches!(e, AdminError::Unreachable { .. }), "{e}");
    }
}
