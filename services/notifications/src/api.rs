//! `shopstream.notifications.v1.NotificationsService`: users register
//! e-mail channels (an address that replaces the account's for the topics
//! named), and `PushTest` sends a test e-mail through one, for setup checks
//! and labs. Live channels need no registration: a WebSocket or SSE
//! connection receives what it subscribes to.
//!
//! On its HTTP port, for operators and labs: `GET /email/dead-letters`, the
//! e-mails in the DLQ with their reason and attempts.

use std::{collections::BTreeMap, sync::Arc};

use axum::response::IntoResponse;
use shopstream_platform::{
    ErrorCode, Problem,
    cache::ConnectionManager,
    clock::Clock,
    grpc::tenant,
    ids::{IdGen, SystemIdGen},
};
use shopstream_proto::notifications::v1::{
    Channel, ChannelKind, DeliveryStatus, PushTestRequest, PushTestResponse,
    RegisterChannelRequest, RegisterChannelResponse,
    notifications_service_server::NotificationsService,
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    email::{self, Template},
    mailer::{self, Outbound},
};

/// `GET /email/dead-letters` on notifications' HTTP port.
pub fn http_routes(redis: ConnectionManager, stream: String) -> axum::Router {
    axum::Router::new().route(
        "/email/dead-letters",
        axum::routing::get(move || {
            let (mut redis, stream) = (redis.clone(), stream.clone());
            async move {
                match mailer::dead_letters(&mut redis, &stream).await {
                    Ok(d) => axum::Json(serde_json::json!({ "dead_letters": d })).into_response(),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the e-mail DLQ");
                        Problem::new(ErrorCode::Unavailable, "the e-mail DLQ cannot be read now")
                            .into_response()
                    }
                }
            }
        }),
    )
}

/// Longest address accepted.
const MAX_ADDRESS: usize = 254;
/// Most topics on one channel.
const MAX_TOPICS: usize = 16;
/// Longest test message.
const MAX_MESSAGE: usize = 2_000;

pub struct GrpcApi {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    /// The e-mail stream (see [`mailer::STREAM`]).
    pub stream: String,
    pub clock: Arc<dyn Clock>,
    pub default_tenant: String,
}

fn invalid(msg: impl Into<String>) -> Status {
    Problem::new(ErrorCode::Unprocessable, msg).to_status()
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "notifications API");
    Problem::new(ErrorCode::Internal, "notifications could not answer").to_status()
}

/// A plausible e-mail address: one `@`, something on each side, no spaces,
/// and one lettre accepts.
fn valid_email(a: &str) -> bool {
    a.len() <= MAX_ADDRESS
        && a.split('@').count() == 2
        && !a.contains(char::is_whitespace)
        && a.parse::<lettre::Address>().is_ok()
}

type Row = (Uuid, String, String, Vec<String>, i64);

fn channel(r: Row) -> Channel {
    let (channel_id, user_id, address, topics, created_at_ms) = r;
    Channel {
        channel_id: channel_id.to_string(),
        user_id,
        kind: ChannelKind::Email as i32,
        address,
        topics,
        created_at_ms,
    }
}

#[tonic::async_trait]
impl NotificationsService for GrpcApi {
    async fn register_channel(
        &self,
        req: Request<RegisterChannelRequest>,
    ) -> Result<Response<RegisterChannelResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        if Uuid::parse_str(&r.user_id).is_err() {
            return Err(invalid("user_id is not a UUID"));
        }
        if r.kind != ChannelKind::Email as i32 {
            return Err(invalid(
                "only EMAIL channels are registered: WebSocket and SSE connections receive \
                 what they subscribe to, and webhooks are not delivered yet",
            ));
        }
        if !valid_email(&r.address) {
            return Err(invalid(format!(
                "address {:?} is not an e-mail address",
                r.address
            )));
        }
        if r.topics.len() > MAX_TOPICS {
            return Err(invalid(format!("at most {MAX_TOPICS} topics")));
        }
        let row: Row = sqlx::query_as(
            "INSERT INTO channels (channel_id, tenant_id, user_id, kind, address, topics, created_at_ms)
             VALUES ($1, $2, $3, 'email', $4, $5, $6)
             ON CONFLICT (tenant_id, user_id, kind, address) DO UPDATE SET topics = EXCLUDED.topics
             RETURNING channel_id, user_id, address, topics, created_at_ms",
        )
        .bind(SystemIdGen.new_id())
        .bind(&tenant)
        .bind(&r.user_id)
        .bind(&r.address)
        .bind(&r.topics)
        .bind(self.clock.now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(internal)?;
        Ok(Response::new(RegisterChannelResponse {
            channel: Some(channel(row)),
        }))
    }

    async fn push_test(
        &self,
        req: Request<PushTestRequest>,
    ) -> Result<Response<PushTestResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let id = Uuid::parse_str(&r.channel_id).map_err(|_| invalid("channel_id is not a UUID"))?;
        if r.message.len() > MAX_MESSAGE {
            return Err(invalid(format!(
                "message is longer than {MAX_MESSAGE} bytes"
            )));
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT channel_id, user_id, address, topics, created_at_ms FROM channels
             WHERE channel_id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(&tenant)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        let Some((channel_id, _, address, _, _)) = row else {
            return Err(Problem::new(ErrorCode::NotFound, "no such channel").to_status());
        };
        let notification_id = SystemIdGen.new_id().to_string();
        let message = if r.message.is_empty() {
            "If you can read this, e-mail from Shopstream reaches you.".to_string()
        } else {
            r.message
        };
        let vars = BTreeMap::from([
            ("name".to_string(), email::display_name(&address)),
            ("message".to_string(), message),
            ("channel_id".to_string(), channel_id.to_string()),
        ]);
        let rendered = email::render(Template::Test, &vars).map_err(internal)?;
        let out = Outbound {
            key: email::key(&notification_id, Template::Test),
            tenant_id: tenant,
            template: Template::Test,
            to: vec![address],
            order_id: String::new(),
            subject: rendered.subject,
            body: rendered.body,
        };
        let mut redis = self.redis.clone();
        mailer::enqueue(&mut redis, &self.stream, &out)
            .await
            .map_err(internal)?;
        Ok(Response::new(PushTestResponse {
            notification_id,
            status: DeliveryStatus::Queued as i32,
            detail: String::new(),
        }))
    }
}
