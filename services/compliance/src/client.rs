//! Compliance from the outside: start a DSAR, follow it to its end, fetch the
//! key set and chain records. `shopstream dsar` and the `dsar` lab use it.

use std::time::{Duration, Instant};

use shopstream_platform::grpc;
use shopstream_proto::compliance::v1::{
    Dsar, DsarKind, DsarState, GetDsarRequest, StartDsarRequest,
    compliance_service_client::ComplianceServiceClient,
};

use crate::domain::{Jwks, Kind};

/// Bound on connecting to compliance, and on one call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two reads while following a DSAR.
pub const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("compliance is not reachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("compliance refused: {0}")]
    Refused(String),
    #[error("the DSAR did not end within {0:?} (last: {1})")]
    Timeout(Duration, String),
}

#[derive(Clone, Debug)]
pub struct Compliance {
    grpc_url: String,
    http_url: String,
    client: ComplianceServiceClient<tonic::transport::Channel>,
    http: reqwest::Client,
}

fn status_err(url: &str, s: tonic::Status) -> ClientError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            ClientError::Unreachable {
                url: url.to_string(),
                reason: s.message().to_string(),
            }
        }
        _ => ClientError::Refused(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// The state's lower-case name.
pub fn state_name(d: &Dsar) -> &'static str {
    match DsarState::try_from(d.state) {
        Ok(DsarState::Pending) => "pending",
        Ok(DsarState::Running) => "running",
        Ok(DsarState::Completed) => "completed",
        Ok(DsarState::Failed) => "failed",
        _ => "unknown",
    }
}

pub fn kind_name(d: &Dsar) -> &'static str {
    match DsarKind::try_from(d.kind) {
        Ok(DsarKind::Delete) => "erase",
        Ok(DsarKind::Export) => "export",
        _ => "unknown",
    }
}

pub fn is_terminal(d: &Dsar) -> bool {
    matches!(
        DsarState::try_from(d.state),
        Ok(DsarState::Completed | DsarState::Failed)
    )
}

impl Compliance {
    pub fn new(grpc_url: &str, http_url: &str) -> Result<Compliance, ClientError> {
        let ch = grpc::channel(grpc_url, CONNECT_TIMEOUT, CALL_TIMEOUT).map_err(|e| {
            ClientError::Unreachable {
                url: grpc_url.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Compliance {
            grpc_url: grpc_url.to_string(),
            http_url: http_url.trim_end_matches('/').to_string(),
            client: ComplianceServiceClient::new(ch),
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .map_err(|e| ClientError::Refused(e.to_string()))?,
        })
    }

    pub async fn start(
        &self,
        tenant: &str,
        user: &str,
        kind: Kind,
        requested_by: &str,
        idempotency_key: &str,
    ) -> Result<Dsar, ClientError> {
        let req = StartDsarRequest {
            idempotency_key: idempotency_key.to_string(),
            subject_user_id: user.to_string(),
            kind: match kind {
                Kind::Erase => DsarKind::Delete as i32,
                Kind::Export => DsarKind::Export as i32,
            },
            requested_by: requested_by.to_string(),
        };
        self.client
            .clone()
            .start_dsar(grpc::with_tenant(req, tenant))
            .await
            .map_err(|s| status_err(&self.grpc_url, s))?
            .into_inner()
            .dsar
            .ok_or_else(|| ClientError::Refused("an empty answer".into()))
    }

    pub async fn get(&self, tenant: &str, id: &str) -> Result<Dsar, ClientError> {
        self.client
            .clone()
            .get_dsar(grpc::with_tenant(
                GetDsarRequest {
                    dsar_id: id.to_string(),
                },
                tenant,
            ))
            .await
            .map_err(|s| status_err(&self.grpc_url, s))?
            .into_inner()
            .dsar
            .ok_or_else(|| ClientError::Refused("an empty answer".into()))
    }

    /// Follow a DSAR until it ends; `tick` sees every read.
    pub async fn wait(
        &self,
        tenant: &str,
        id: &str,
        timeout: Duration,
        mut tick: impl FnMut(&Dsar),
    ) -> Result<Dsar, ClientError> {
        let started = Instant::now();
        loop {
            let d = self.get(tenant, id).await?;
            tick(&d);
            if is_terminal(&d) {
                return Ok(d);
            }
            if started.elapsed() > timeout {
                return Err(ClientError::Timeout(
                    timeout,
                    format!("{} {}", state_name(&d), d.waiting_on),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn http_err(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.http_url.clone(),
            reason: e.to_string(),
        }
    }

    /// The signing keys (`/.well-known/jwks.json`).
    pub async fn jwks(&self) -> Result<Jwks, ClientError> {
        self.http
            .get(format!("{}/.well-known/jwks.json", self.http_url))
            .send()
            .await
            .map_err(|e| self.http_err(e))?
            .error_for_status()
            .map_err(|e| self.http_err(e))?
            .json()
            .await
            .map_err(|e| self.http_err(e))
    }

    /// Sequence numbers of the audit chain.
    pub async fn chain(&self) -> Result<Vec<u64>, ClientError> {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/audit/chain", self.http_url))
            .send()
            .await
            .map_err(|e| self.http_err(e))?
            .error_for_status()
            .map_err(|e| self.http_err(e))?
            .json()
            .await
            .map_err(|e| self.http_err(e))?;
        Ok(v["records"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_u64()).collect())
            .unwrap_or_default())
    }

    /// The bytes of chain record `seq`, or None when there is none.
    pub async fn record(&self, seq: u64) -> Result<Option<Vec<u8>>, ClientError> {
        let r = self
            .http
            .get(format!("{}/audit/chain/{seq}", self.http_url))
            .send()
            .await
            .map_err(|e| self.http_err(e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let r = r.error_for_status().map_err(|e| self.http_err(e))?;
        Ok(Some(
            r.bytes().await.map_err(|e| self.http_err(e))?.to_vec(),
        ))
    }
}
