//! The tonic server helper: a real service from `shopstream-proto` served by
//! `platform::grpc::serve`, called through a channel with the trace interceptor.
//! The caller's trace continues on the server, and a `Problem` arrives as the
//! matching gRPC code.

use std::time::Duration;

use opentelemetry::context::FutureExt as _;
use shopstream_platform::{ErrorCode, Problem, grpc, telemetry};
use shopstream_proto::identity::v1::{
    EnsureAdminRequest, EnsureAdminResponse, GetUserRequest, GetUserResponse, ValidateTokenRequest,
    ValidateTokenResponse,
    identity_service_client::IdentityServiceClient,
    identity_service_server::{IdentityService, IdentityServiceServer},
};
use tonic::{Request, Response, Status};

pub(crate) struct Identity;

#[tonic::async_trait]
impl IdentityService for Identity {
    async fn get_user(
        &self,
        req: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        // Report the trace the server sees, so the test can compare.
        let seen = telemetry::current_trace_id().unwrap_or_default();
        Err(Problem::new(
            ErrorCode::NotFound,
            format!("no user {}; trace {seen}", req.get_ref().user_id),
        )
        .into())
    }

    async fn validate_token(
        &self,
        _req: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Err(Status::internal("unreachable: the deadline fires first"))
    }

    async fn ensure_admin(
        &self,
        _req: Request<EnsureAdminRequest>,
    ) -> Result<Response<EnsureAdminResponse>, Status> {
        Err(Status::unimplemented("not used by this test"))
    }
}

#[test]
fn platform_and_proto_agree_on_the_tenant_metadata_key() {
    assert_eq!(
        grpc::TENANT_METADATA_KEY,
        shopstream_proto::TENANT_METADATA_KEY
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_continues_and_problems_map_to_grpc_codes() {
    telemetry::init("it", telemetry::LogFormat::Pretty, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let routes = tonic::service::Routes::new(IdentityServiceServer::new(Identity));
    let server = tokio::spawn(grpc::serve(
        listener,
        routes,
        Duration::from_millis(300),
        shutdown.clone(),
    ));

    let channel = grpc::channel(
        &format!("http://{addr}"),
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .unwrap();
    let mut client = IdentityServiceClient::with_interceptor(channel, grpc::TraceInterceptor);

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    let cx = telemetry::extract(&telemetry::HeaderExtractor(&headers));
    let err = async {
        client
            .get_user(GetUserRequest {
                user_id: "u-404".into(),
            })
            .await
            .unwrap_err()
    }
    .with_context(cx)
    .await;
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().contains(&format!("trace {trace_id}")),
        "{}",
        err.message()
    );

    // The server-side deadline turns a slow handler into DeadlineExceeded/Cancelled.
    let err = client
        .validate_token(ValidateTokenRequest {
            access_token: "x".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
        ),
        "{err:?}"
    );

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
