//! Where the running system is, and thin clients of its public surfaces: the
//! gateway's REST API, inventory's gRPC stock calls and identity's
//! `EnsureAdmin` (operator access, as `shopstream seed` has), and the HTTP
//! plumbing they share. Errors are sorted the way the lab kit needs them:
//! unreachable or 5xx-unavailable is [`LabError::NotReady`] (exit 4),
//! anything else is [`LabError::Failed`].
//!
//! [`Operator`] is access to the local stack itself, for labs that kill and
//! restart a component.

use std::{path::PathBuf, time::Duration};

use serde_json::Value;
use shopstream_platform::config::{Endpoints, Ports, service_addrs};
use shopstream_proto::inventory::v1::{
    GetStockRequest, SetStockRequest, Stock, inventory_service_client::InventoryServiceClient,
};
use shopstream_runtime::Stack;

use crate::kit::LabError;

/// Bound on one HTTP request to the system.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on connecting and on one gRPC call.
pub const GRPC_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const GRPC_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses of one running Shopstream system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// e.g. `http://127.0.0.1:18080`
    pub gateway_url: String,
    /// e.g. `http://127.0.0.1:18084`
    pub stripe_sim_url: String,
    /// e.g. `http://127.0.0.1:18133`
    pub inventory_grpc_url: String,
    /// Identity's gRPC (operator calls such as `EnsureAdmin`), e.g. `http://127.0.0.1:18131`
    pub identity_grpc_url: String,
    /// Orders', payments' and analytics' gRPC (the consistency check), e.g. `http://127.0.0.1:18135`
    pub orders_grpc_url: String,
    pub payments_grpc_url: String,
    pub analytics_grpc_url: String,
    /// Kafka bootstrap servers, e.g. `127.0.0.1:19092`
    pub kafka_brokers: String,
    /// Search's HTTP base (its `/debug/indexed`), e.g. `http://127.0.0.1:18088`
    pub search_http_url: String,
    /// mail-sim's HTTP base (`/messages`, `/_sim/faults`), e.g. `http://127.0.0.1:18090`
    pub mail_sim_url: String,
    /// Notifications' HTTP base (its `/email/dead-letters`), e.g. `http://127.0.0.1:18089`
    pub notifications_http_url: String,
    /// Media's HTTP port (its fault switch).
    pub media_http_url: String,
    /// Feed's HTTP base (its `/metrics`: hit rate, fallbacks).
    pub feed_http_url: String,
    /// Compliance's gRPC (StartDSAR, GetDSAR) and HTTP (key set, audit chain).
    pub compliance_grpc_url: String,
    pub compliance_http_url: String,
    /// The stack's Redis (labs that flush a cache), e.g. `redis://127.0.0.1:16379`
    pub redis_url: String,
    /// Operator access to the stack (labs that kill and restart processes);
    /// `None` when only the public surfaces are known.
    pub operator: Option<Operator>,
}

/// Operator access to the local stack the lab runs against: enough to build it
/// as `shopstream up` did, so a lab can kill and restart a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub state_dir: PathBuf,
    pub ports: Ports,
    /// The `shopstream` executable components are started from.
    pub exe: PathBuf,
}

impl Operator {
    pub fn stack(&self) -> Stack {
        Stack::new(&self.state_dir, self.ports, &self.exe)
    }
}

impl Target {
    /// The native stack listening on `ports` (what `shopstream up` started).
    pub fn from_ports(ports: &Ports) -> Target {
        let http = |name: &str| {
            service_addrs(name, ports.services)
                .map(|(h, _)| format!("http://{h}"))
                .unwrap_or_default()
        };
        let grpc = |name: &str| {
            service_addrs(name, ports.services)
                .map(|(_, g)| format!("http://{g}"))
                .unwrap_or_default()
        };
        Target {
            gateway_url: http("gateway"),
            stripe_sim_url: http("stripe-sim"),
            inventory_grpc_url: grpc("inventory"),
            identity_grpc_url: grpc("identity"),
            orders_grpc_url: grpc("orders"),
            payments_grpc_url: grpc("payments"),
            analytics_grpc_url: grpc("analytics"),
            kafka_brokers: Endpoints::native(*ports).kafka_brokers,
            search_http_url: http("search"),
            mail_sim_url: http("mail-sim"),
            notifications_http_url: http("notifications"),
            media_http_url: http("media"),
            feed_http_url: http("feed"),
            compliance_grpc_url: grpc("compliance"),
            compliance_http_url: http("compliance"),
            redis_url: Endpoints::native(*ports).redis_url,
            operator: None,
        }
    }
}

fn http_client() -> Result<reqwest::Client, LabError> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| LabError::Failed(format!("http client: {e}")))
}

/// A transport error: the system is not there (or not answering).
pub(crate) fn unreachable(what: &str, url: &str, e: &reqwest::Error) -> LabError {
    let why = if e.is_timeout() {
        format!("no answer within {HTTP_TIMEOUT:?}")
    } else if e.is_connect() {
        "connection refused".to_string()
    } else {
        e.to_string()
    };
    LabError::NotReady(format!(
        "cannot reach {what} at {url} ({why}); is the system up? (`shopstream up`, `shopstream status`)"
    ))
}

/// An answer that is not 2xx, as a lab error: 502/503/504 mean "not ready".
pub(crate) fn status_error(what: &str, status: reqwest::StatusCode, body: &str) -> LabError {
    let problem: Option<Value> = serde_json::from_str(body).ok();
    let text = problem
        .as_ref()
        .and_then(|p| {
            let title = p.get("title").and_then(Value::as_str).unwrap_or_default();
            let detail = p.get("detail").and_then(Value::as_str).unwrap_or_default();
            let errors = p.get("errors").map(|e| format!(" {e}")).unwrap_or_default();
            (!title.is_empty() || !detail.is_empty()).then(|| format!("{title}: {detail}{errors}"))
        })
        .unwrap_or_else(|| body.chars().take(300).collect());
    let msg = format!("{what}: HTTP {} {}", status.as_u16(), text.trim());
    if matches!(status.as_u16(), 502..=504) {
        LabError::NotReady(msg)
    } else {
        LabError::Failed(msg)
    }
}

/// One HTTP answer: status, headers, JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// The gateway's REST API, as a signed-in user once [`Gateway::login`] ran.
#[derive(Debug, Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Gateway {
    pub fn new(base: &str) -> Result<Gateway, LabError> {
        Ok(Gateway {
            http: http_client()?,
            base: base.trim_end_matches('/').to_string(),
            token: None,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send a request; a non-2xx answer is an error.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, LabError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unreachable("the gateway", &self.base, &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .map_err(|e| unreachable("the gateway", &self.base, &e))?;
        if !status.is_success() {
            return Err(status_error(&format!("{method} {path}"), status, &text));
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| {
                LabError::Failed(format!("{method} {path}: the answer is not JSON: {e}"))
            })?
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, LabError> {
        Ok(self.send(reqwest::Method::GET, path, None, &[]).await?.body)
    }

    /// `GET /readyz`.
    pub async fn ready(&self) -> Result<(), LabError> {
        self.get("/readyz").await.map(|_| ()).map_err(|e| match e {
            LabError::Failed(m) => LabError::NotReady(m),
            e => e,
        })
    }

    /// Log in as an existing account; later requests carry the access token.
    pub async fn login(&mut self, email: &str, password: &str) -> Result<(), LabError> {
        let creds = serde_json::json!({"email": email, "password": password});
        let session = self
            .send(reqwest::Method::POST, "/auth/login", Some(&creds), &[])
            .await?
            .body;
        let token = session["access_token"]
            .as_str()
            .ok_or_else(|| LabError::Failed("POST /auth/login: no access_token".into()))?;
        self.token = Some(token.to_string());
        Ok(())
    }

    /// The access token of the account logged in, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Send `token` with later requests (an account logged in elsewhere).
    pub fn set_token(&mut self, token: &str) {
        self.token = Some(token.to_string());
    }

    /// Log in as a fresh admin, created through identity's operator gRPC
    /// call `EnsureAdmin` (in identity's default tenant, the one the
    /// gateway's logins use); its e-mail.
    pub async fn login_as_new_admin(
        &mut self,
        identity_grpc_url: &str,
        prefix: &str,
    ) -> Result<String, LabError> {
        use shopstream_runtime::admin::{AdminError, ensure_admin};
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("{prefix}-{}@labs.shopstream.dev", &suffix[..12]);
        let password = ensure_admin(identity_grpc_url, None, &email)
            .await
            .map_err(|e| match e {
                AdminError::Unreachable { .. } => {
                    LabError::NotReady(format!("{e}; is the system up? (`shopstream up`)"))
                }
                AdminError::Refused { .. } => {
                    LabError::Failed(format!("creating the lab admin: {e}"))
                }
            })?
            .ok_or_else(|| LabError::Failed(format!("{email} already existed")))?;
        self.login(&email, &password).await?;
        Ok(email)
    }

    pub async fn signup_and_login(
        &mut self,
        email: &str,
        password: &str,
    ) -> Result<String, LabError> {
        let creds = serde_json::json!({"email": email, "password": password});
        self.send(reqwest::Method::POST, "/auth/signup", Some(&creds), &[])
            .await?;
        let session = self
            .send(reqwest::Method::POST, "/auth/login", Some(&creds), &[])
            .await?
            .body;
        let token = session["access_token"]
            .as_str()
            .ok_or_else(|| LabError::Failed("POST /auth/login: no access_token".into()))?;
        self.token = Some(token.to_string());
        Ok(session["user"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}

/// Inventory's stock calls over gRPC.
#[derive(Debug, Clone)]
pub struct Inventory {
    client: InventoryServiceClient<tonic::transport::Channel>,
    url: String,
}

impl Inventory {
    pub fn new(url: &str) -> Result<Inventory, LabError> {
        let channel = shopstream_platform::grpc::channel(url, GRPC_CONNECT_TIMEOUT, GRPC_TIMEOUT)
            .map_err(|e| LabError::Failed(format!("inventory address {url}: {e}")))?;
        Ok(Inventory {
            client: InventoryServiceClient::new(channel),
            url: url.to_string(),
        })
    }

    fn error(&self, call: &str, s: tonic::Status) -> LabError {
        let msg = format!("inventory {call} at {}: {}", self.url, s.message());
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                LabError::NotReady(format!(
                    "{msg} ({:?}); is the system up? (`shopstream status`)",
                    s.code()
                ))
            }
            _ => LabError::Failed(format!("{msg} ({:?})", s.code())),
        }
    }

    /// The stock of `sku_id`; `None` when inventory has no row for it yet.
    pub async fn stock(&self, sku_id: &str) -> Result<Option<Stock>, LabError> {
        let req = GetStockRequest {
            sku_id: sku_id.to_string(),
        };
        match self.client.clone().get_stock(req).await {
            Ok(r) => Ok(r.into_inner().stock),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(self.error("GetStock", s)),
        }
    }

    /// Set the units on hand of `sku_id`; returns the new stock.
    pub async fn set_on_hand(&self, sku_id: &str, on_hand: i64) -> Result<Stock, LabError> {
        let req = SetStockRequest {
            sku_id: sku_id.to_string(),
            on_hand,
        };
        self.client
            .clone()
            .set_stock(req)
            .await
            .map_err(|s| self.error("SetStock", s))?
            .into_inner()
            .stock
            .ok_or_else(|| LabError::Failed("inventory SetStock returned no stock".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_follows_the_stack_ports() {
        let t = Target::from_ports(&Ports::DEV);
        assert_eq!(t.gateway_url, "http://127.0.0.1:18080");
        assert_eq!(t.stripe_sim_url, "http://127.0.0.1:18084");
        assert_eq!(t.inventory_grpc_url, "http://127.0.0.1:18133");
        assert_eq!(t.identity_grpc_url, "http://127.0.0.1:18131");
        assert_eq!(t.kafka_brokers, "127.0.0.1:19092");
        assert_eq!(t.search_http_url, "http://127.0.0.1:18088");
    }

    #[test]
    fn unavailable_answers_are_not_ready_and_others_fail() {
        let body = r#"{"title":"Service Unavailable","detail":"orders is down"}"#;
        let e = status_error(
            "POST /orders",
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            body,
        );
        assert_eq!(
            e,
            LabError::NotReady("POST /orders: HTTP 503 Service Unavailable: orders is down".into())
        );
        let e = status_error("POST /orders", reqwest::StatusCode::CONFLICT, "plain");
        assert_eq!(e, LabError::Failed("POST /orders: HTTP 409 plain".into()));
    }
}
