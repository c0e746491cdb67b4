//! The participant contract on the wire: [`server`] wraps a [`Participant`]
//! in the generated tonic server; [`Client`] is the compliance workflow's side.

use std::{sync::Arc, time::Duration};

use shopstream_platform::grpc;
use shopstream_proto::dsar::v1 as pb;
use tonic::{Request, Response, Status};

use crate::{
    Document, Erasure, Error, Export, ObjectRef, Participant, Retained, StoreCount, Subject,
};

/// Bound on connecting to a participant.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one call: an erase of a large subject runs a few seconds.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The tonic server of `participant`; the tenant comes from the call's
/// metadata, else `default_tenant`.
pub fn server(
    participant: Arc<dyn Participant>,
    default_tenant: &str,
) -> pb::participant_server::ParticipantServer<GrpcParticipant> {
    pb::participant_server::ParticipantServer::new(GrpcParticipant {
        inner: participant,
        default_tenant: default_tenant.to_string(),
    })
    .max_encoding_message_size(64 << 20)
}

pub struct GrpcParticipant {
    inner: Arc<dyn Participant>,
    default_tenant: String,
}

fn subject_of<T>(
    req: &Request<T>,
    s: Option<&pb::Subject>,
    default: &str,
) -> Result<Subject, Status> {
    let s = s.ok_or_else(|| grpc::bad_request("subject is required"))?;
    let user_id = s
        .user_id
        .parse()
        .map_err(|_| grpc::bad_request(format!("subject.user_id {:?} is not a UUID", s.user_id)))?;
    Ok(Subject {
        tenant: grpc::tenant(req, default),
        user_id,
        emails: s.emails.iter().map(|e| e.trim().to_lowercase()).collect(),
    })
}

fn status(e: Error) -> Status {
    match e {
        Error::Unavailable(m) => Status::unavailable(m),
        Error::Invalid(m) => Status::invalid_argument(m),
    }
}

fn counts_pb(c: Vec<StoreCount>) -> Vec<pb::StoreCount> {
    c.into_iter()
        .map(|c| pb::StoreCount {
            store: c.store,
            count: c.count,
            detail: c.detail,
        })
        .collect()
}

fn counts_of(c: Vec<pb::StoreCount>) -> Vec<StoreCount> {
    c.into_iter()
        .map(|c| StoreCount {
            store: c.store,
            count: c.count,
            detail: c.detail,
        })
        .collect()
}

#[tonic::async_trait]
impl pb::participant_server::Participant for GrpcParticipant {
    async fn export(
        &self,
        req: Request<pb::ExportRequest>,
    ) -> Result<Response<pb::ExportResponse>, Status> {
        let s = subject_of(&req, req.get_ref().subject.as_ref(), &self.default_tenant)?;
        let e = self.inner.export(&s).await.map_err(status)?;
        Ok(Response::new(pb::ExportResponse {
            counts: counts_pb(e.counts),
            documents: e
                .documents
                .into_iter()
                .map(|d| pb::ExportDocument {
                    store: d.store,
                    json: d.json.to_string(),
                })
                .collect(),
            objects: e
                .objects
                .into_iter()
                .map(|o| pb::ObjectRef {
                    bucket: o.bucket,
                    key: o.key,
                })
                .collect(),
        }))
    }

    async fn erase(
        &self,
        req: Request<pb::EraseRequest>,
    ) -> Result<Response<pb::EraseResponse>, Status> {
        let s = subject_of(&req, req.get_ref().subject.as_ref(), &self.default_tenant)?;
        let e = self.inner.erase(&s).await.map_err(status)?;
        tracing::info!(
            participant = self.inner.name(),
            tenant = %s.tenant,
            erased = crate::total(&e.counts),
            "dsar erase"
        );
        Ok(Response::new(pb::EraseResponse {
            counts: counts_pb(e.counts),
            retained: e
                .retained
                .into_iter()
                .map(|r| pb::Retained {
                    store: r.store,
                    count: r.count,
                    basis: r.basis,
                    fields_kept: r.fields_kept,
                    retain_days: r.retain_days,
                })
                .collect(),
        }))
    }

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let s = subject_of(&req, req.get_ref().subject.as_ref(), &self.default_tenant)?;
        let c = self.inner.scan(&s).await.map_err(status)?;
        Ok(Response::new(pb::ScanResponse {
            counts: counts_pb(c),
        }))
    }
}

/// A participant over gRPC, itself a [`Participant`] (so the contract suite
/// also runs through the wire).
#[derive(Clone)]
pub struct Client {
    name: &'static str,
    inner: pb::participant_client::ParticipantClient<tonic::transport::Channel>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("name", &self.name).finish()
    }
}

impl Client {
    /// A lazily connecting client of the participant `name` at `url`.
    pub fn new(name: &'static str, url: &str) -> Result<Client, Error> {
        let ch = grpc::channel(url, CONNECT_TIMEOUT, CALL_TIMEOUT)
            .map_err(|e| Error::Invalid(format!("{name} at {url}: {e}")))?;
        Ok(Client {
            name,
            inner: pb::participant_client::ParticipantClient::new(ch)
                .max_decoding_message_size(64 << 20),
        })
    }

    fn subject(s: &Subject) -> Option<pb::Subject> {
        Some(pb::Subject {
            user_id: s.user_id.to_string(),
            emails: s.emails.clone(),
        })
    }

    fn err(&self, s: Status) -> Error {
        match s.code() {
            tonic::Code::Unimplemented => Error::Invalid(format!(
                "{} does not serve the DSAR participant contract (UNIMPLEMENTED)",
                self.name
            )),
            tonic::Code::InvalidArgument => {
                Error::Invalid(format!("{}: {}", self.name, s.message()))
            }
            _ => Error::Unavailable(format!("{}: {:?}: {}", self.name, s.code(), s.message())),
        }
    }
}

#[async_trait::async_trait]
impl Participant for Client {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        let r = self
            .inner
            .clone()
            .export(grpc::with_tenant(
                pb::ExportRequest {
                    subject: Self::subject(s),
                },
                &s.tenant,
            ))
            .await
            .map_err(|e| self.err(e))?
            .into_inner();
        let mut documents = Vec::with_capacity(r.documents.len());
        for d in r.documents {
            let json = serde_json::from_str(&d.json).map_err(|e| {
                Error::Invalid(format!(
                    "{}: document {} is not JSON: {e}",
                    self.name, d.store
                ))
            })?;
            documents.push(Document {
                store: d.store,
                json,
            });
        }
        Ok(Export {
            counts: counts_of(r.counts),
            documents,
            objects: r
                .objects
                .into_iter()
                .map(|o| ObjectRef {
                    bucket: o.bucket,
                    key: o.key,
                })
                .collect(),
        })
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        let r = self
            .inner
            .clone()
            .erase(grpc::with_tenant(
                pb::EraseRequest {
                    subject: Self::subject(s),
                },
                &s.tenant,
            ))
            .await
            .map_err(|e| self.err(e))?
            .into_inner();
        Ok(Erasure {
            counts: counts_of(r.counts),
            retained: r
                .retained
                .into_iter()
                .map(|r| Retained {
                    store: r.store,
                    count: r.count,
                    basis: r.basis,
                    fields_kept: r.fields_kept,
                    retain_days: r.retain_days,
                })
                .collect(),
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        let r = self
            .inner
            .clone()
            .scan(grpc::with_tenant(
                pb::ScanRequest {
                    subject: Self::subject(s),
                },
                &s.tenant,
            ))
            .await
            .map_err(|e| self.err(e))?
            .into_inner();
        Ok(counts_of(r.counts))
    }
}
