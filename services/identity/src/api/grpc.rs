//! gRPC: `GetUser` and `ValidateToken` for other services, and the operator
//! call `EnsureAdmin` (internal only: the gateway never routes to it).

use shopstream_platform::{ErrorCode, Problem, grpc::tenant};
use shopstream_proto::{
    common::v1::User as UserMsg,
    identity::v1::{
        EnsureAdminRequest, EnsureAdminResponse, GetUserRequest, GetUserResponse,
        ValidateTokenRequest, ValidateTokenResponse, identity_service_server::IdentityService,
    },
};
use tonic::{Request, Response, Status};

use crate::service::Identity;

#[derive(Debug, Clone)]
pub struct GrpcApi {
    pub identity: Identity,
    pub default_tenant: String,
}

#[tonic::async_trait]
impl IdentityService for GrpcApi {
    async fn get_user(
        &self,
        req: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let id = req
            .get_ref()
            .user_id
            .parse()
            .map_err(|_| Problem::new(ErrorCode::Unprocessable, "user_id is not a UUID"))?;
        let u = self
            .identity
            .user(&tenant, id)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(GetUserResponse {
            user: Some(UserMsg {
                user_id: u.id.to_string(),
                tenant_id: u.tenant_id.clone(),
                email: u.email.as_str().to_string(),
                display_name: u
                    .email
                    .as_str()
                    .split('@')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                roles: u.roles.iter().map(|r| r.as_str().to_string()).collect(),
                created_at_ms: u.created_at_ms,
            }),
        }))
    }

    async fn validate_token(
        &self,
        req: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let c = self
            .identity
            .validate(&req.get_ref().access_token)
            .map_err(Problem::from)?;
        Ok(Response::new(ValidateTokenResponse {
            user_id: c.sub,
            tenant_id: c.tid,
            roles: c.roles,
            token_id: c.jti,
            expires_at_ms: c.exp * 1000,
        }))
    }

    async fn ensure_admin(
        &self,
        req: Request<EnsureAdminRequest>,
    ) -> Result<Response<EnsureAdminResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let password = self
            .identity
            .ensure_admin(&tenant, &req.get_ref().email)
            .await
            .map_err(Problem::from)?;
        tracing::info!(created = password.is_some(), "admin account ensured");
        Ok(Response::new(EnsureAdminResponse {
            created: password.is_some(),
            password: password.unwrap_or_default(),
        }))
    }
}
