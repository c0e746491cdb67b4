//! The embedded S3-compatible server (`shopstream serve s3`): s3s with a
//! file-system backend, SigV4 enforced (presigned URLs included), and bucket
//! notifications: when an object is created in a bucket a rule names, an
//! `s3.object_created` event (one S3 notification record) goes to the rule's
//! Kafka topic before the client hears 200 — as MinIO's bucket notifications
//! and S3's event notifications do. If the event cannot be published the
//! client gets a 503 and retries the PUT, which notifies again.
//!
//! Conditional writes: a PUT with `If-None-Match: *` of an object that exists
//! is refused with 412 (S3's put-if-absent). Write-once buckets
//! (`SHOPSTREAM_S3_WORM`, the audit chain's) refuse overwriting and deleting
//! an object with 403, as S3 Object Lock in compliance mode does.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::Service};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder as ConnBuilder,
};
use s3s::{auth::SimpleAuth, service::S3ServiceBuilder};
use shopstream_platform::{
    clock::{Clock, SystemClock},
    config::Endpoints,
    events::{Envelope, EventBus, kafka::KafkaBus},
    ids::SystemIdGen,
    object_store::{OBJECT_CREATED_EVENT, ObjectCreated, S3Bucket, S3Entity, S3Object},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bound on draining open connections at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on publishing one notification.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// The native stack's rule: uploads to `media-uploads*` start media's pipeline.
pub const DEFAULT_NOTIFY: &str = "media-uploads=media.work";

/// The native stack's write-once buckets: the DSAR audit chain.
pub const DEFAULT_WORM: &str = "audit";

/// `bucket[,bucket...]`: the write-once buckets.
pub fn parse_worm(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(String::from)
        .collect()
}

/// Objects created in buckets whose name starts with `bucket_prefix` are
/// announced on `topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRule {
    pub bucket_prefix: String,
    pub topic: String,
}

/// `prefix=topic[,prefix=topic...]`; empty means no notifications.
pub fn parse_notify(s: &str) -> anyhow::Result<Vec<NotifyRule>> {
    s.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (p, t) = r.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("SHOPSTREAM_S3_NOTIFY: {r:?} is not bucket-prefix=topic")
            })?;
            Ok(NotifyRule {
                bucket_prefix: p.trim().to_string(),
                topic: t.trim().to_string(),
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub access_key: String,
    pub secret_key: String,
    pub notify: Vec<NotifyRule>,
    /// Write-once buckets: no overwrite, no delete.
    pub worm: Vec<String>,
    /// Where the notification topics' broker is.
    pub endpoints: Endpoints,
}

/// Publishes object-created notifications.
struct Notifier {
    rules: Vec<NotifyRule>,
    bus: Arc<dyn EventBus>,
    root: PathBuf,
}

/// `/bucket/key...` of a path-style request, percent-decoded.
fn bucket_and_key(path: &str) -> Option<(String, String)> {
    let path = path.strip_prefix('/')?;
    let (bucket, key) = path.split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let decode = |s: &str| percent_decode(s).filter(|d| !d.is_empty());
    Some((decode(bucket)?, decode(key)?))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Does this request create an object when it succeeds? A PUT of an object
/// (not of a part, not of a bucket sub-resource), or the POST completing a
/// multipart upload. The name S3 gives the event.
fn creates_object(method: &Method, query: &str) -> Option<&'static str> {
    let has = |k: &str| query.split('&').any(|p| p.split('=').next() == Some(k));
    if method == Method::PUT
        && !has("partNumber")
        && !has("uploadId")
        && !has("tagging")
        && !has("acl")
    {
        Some("ObjectCreated:Put")
    } else if method == Method::POST && has("uploadId") {
        Some("ObjectCreated:CompleteMultipartUpload")
    } else {
        None
    }
}

impl Notifier {
    fn topic(&self, bucket: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| bucket.starts_with(&r.bucket_prefix))
            .map(|r| r.topic.as_str())
    }

    async fn publish(
        &self,
        topic: &str,
        event_name: &str,
        bucket: &str,
        key: &str,
        etag: String,
        content_type: String,
    ) -> Result<(), String> {
        // s3s-fs keeps an object as the file <root>/<bucket>/<key>.
        let size = tokio::fs::metadata(self.root.join(bucket).join(key))
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let clock = SystemClock;
        let record = ObjectCreated {
            event_name: event_name.to_string(),
            event_time_ms: clock.now_ms(),
            s3: S3Entity {
                bucket: S3Bucket {
                    name: bucket.to_string(),
                },
                object: S3Object {
                    key: key.to_string(),
                    size,
                    etag,
                    content_type,
                },
            },
        };
        let e = Envelope::new(
            OBJECT_CREATED_EVENT,
            1,
            "",
            &format!("{bucket}/{key}"),
            &record,
            &clock,
            &SystemIdGen,
        )
        .map_err(|e| e.to_string())?;
        tokio::time::timeout(NOTIFY_TIMEOUT, self.bus.publish(topic, &e))
            .await
            .map_err(|_| format!("no broker answer within {NOTIFY_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())
    }
}

/// The S3 service with notifications after successful object writes, and
/// the write-once and put-if-absent rules before them.
#[derive(Clone)]
struct Notifying<S> {
    inner: S,
    notifier: Option<Arc<Notifier>>,
    guard: Arc<Guard>,
}

/// Conditional and write-once writes: the existence check and the write run
/// under one lock, so two put-if-absent writes of one key cannot both win.
struct Guard {
    root: PathBuf,
    worm: Vec<String>,
    lock: tokio::sync::Mutex<()>,
}

/// What the guard does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// Not a conditional or write-once write.
    Pass,
    /// Refuse if the object exists: 412 (If-None-Match) or 403 (write-once).
    IfAbsent { path: PathBuf, locked: bool },
    /// A delete in a write-once bucket.
    Locked,
}

impl Guard {
    fn rule(&self, method: &Method, query: &str, path: &str, if_none_match: bool) -> Rule {
        let bucket = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let locked = self.worm.iter().any(|b| b == bucket);
        let deletes = method == Method::DELETE
            || (method == Method::POST
                && query
                    .split('&')
                    .any(|p| p.split('=').next() == Some("delete")));
        if locked && deletes && path.trim_matches('/') != bucket {
            return Rule::Locked;
        }
        if locked && method == Method::POST && deletes {
            return Rule::Locked;
        }
        let Some((bucket, key)) = bucket_and_key(path) else {
            return Rule::Pass;
        };
        if creates_object(method, query).is_some() && (locked || if_none_match) {
            return Rule::IfAbsent {
                path: self.root.join(&bucket).join(&key),
                locked,
            };
        }
        Rule::Pass
    }
}

fn s3_error<B: From<String>>(status: StatusCode, code: &str, message: &str) -> Response<B> {
    let mut r = Response::new(B::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )));
    *r.status_mut() = status;
    r
}

impl<S, B> Service<Request<Incoming>> for Notifying<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: From<String> + Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let if_none_match = req
            .headers()
            .get(hyper::header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == b"*");
        let rule = self.guard.rule(
            req.method(),
            req.uri().query().unwrap_or(""),
            req.uri().path(),
            if_none_match,
        );
        let guard = self.guard.clone();
        let target = self.notifier.clone().and_then(|n| {
            let event = creates_object(req.method(), req.uri().query().unwrap_or(""))?;
            let (bucket, key) = bucket_and_key(req.uri().path())?;
            let topic = n.topic(&bucket)?.to_string();
            let ct = req
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Some((n, event, bucket, key, topic, ct))
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let _held = match &rule {
                Rule::Pass => None,
                Rule::Locked => {
                    return Ok(s3_error(
                        StatusCode::FORBIDDEN,
                        "AccessDenied",
                        "the bucket is write-once (object lock): objects cannot be deleted",
                    ));
                }
                Rule::IfAbsent { path, locked } => {
                    let held = guard.lock.lock().await;
                    if tokio::fs::try_exists(path).await.unwrap_or(false) {
                        return Ok(if *locked {
                            s3_error(
                                StatusCode::FORBIDDEN,
                                "AccessDenied",
                                "the bucket is write-once (object lock): an object cannot be overwritten",
                            )
                        } else {
                            s3_error(
                                StatusCode::PRECONDITION_FAILED,
                                "PreconditionFailed",
                                "the object exists (If-None-Match: *)",
                            )
                        });
                    }
                    Some(held)
                }
            };
            let resp = fut.await?;
            let Some((n, event, bucket, key, topic, ct)) = target else {
                return Ok(resp);
            };
            if resp.status() != StatusCode::OK {
                return Ok(resp);
            }
            let etag = resp
                .headers()
                .get(hyper::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_matches('"')
                .to_string();
            match n.publish(&topic, event, &bucket, &key, etag, ct).await {
                Ok(()) => {
                    tracing::info!(%bucket, %key, %topic, "object created; notified");
                    Ok(resp)
                }
                Err(e) => {
                    tracing::warn!(%bucket, %key, %topic, error = %e, "notification not published; the client is told to retry");
                    let mut r = Response::new(B::from(String::from(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                         <Message>the object-created notification could not be published; retry the request</Message></Error>",
                    )));
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    Ok(r)
                }
            }
        })
    }
}

/// Serve on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    cfg: S3Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.root)?;
    let fs = s3s_fs::FileSystem::new(&cfg.root)
        .map_err(|e| anyhow::anyhow!("s3 root {}: {e:?}", cfg.root.display()))?;
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(cfg.access_key, cfg.secret_key));
    let notifier = if cfg.notify.is_empty() {
        None
    } else {
        let bus = KafkaBus::connect(&cfg.endpoints)?;
        for r in &cfg.notify {
            // Topics are created here too, so a notification never waits on
            // its consumer having started.
            if let Err(e) = bus.ensure_topic(&r.topic, 3).await {
                tracing::warn!(topic = %r.topic, error = %e, "notification topic not created yet");
            }
        }
        Some(Arc::new(Notifier {
            rules: cfg.notify.clone(),
            bus,
            root: cfg.root.clone(),
        }))
    };
    let service = Notifying {
        inner: b.build(),
        notifier,
        guard: Arc::new(Guard {
            root: cfg.root.clone(),
            worm: cfg.worm.clone(),
            lock: tokio::sync::Mutex::new(()),
        }),
    };
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(addr = %listener.local_addr()?, root = %cfg.root.display(), rules = ?cfg.notify, "s3 server listening");
    loop {
        let (socket, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Without this, small GETs wait on Nagle + delayed ACK (~40 ms).
        let _ = socket.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(socket), service.clone());
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_requests_create_objects() {
        assert_eq!(creates_object(&Method::PUT, ""), Some("ObjectCreated:Put"));
        assert_eq!(
            creates_object(&Method::PUT, "X-Amz-Signature=abc&X-Amz-Date=1"),
            Some("ObjectCreated:Put")
        );
        assert_eq!(
            creates_object(&Method::PUT, "partNumber=1&uploadId=x"),
            None
        );
        assert_eq!(
            creates_object(&Method::POST, "uploadId=x"),
            Some("ObjectCreated:CompleteMultipartUpload")
        );
        assert_eq!(creates_object(&Method::GET, ""), None);
        assert_eq!(
            bucket_and_key("/media-uploads/uploads/a%20b"),
            Some(("media-uploads".into(), "uploads/a b".into()))
        );
        assert_eq!(bucket_and_key("/bucket"), None);
        assert_eq!(
            parse_notify("media-uploads=media.work, x=y").unwrap().len(),
            2
        );
        assert!(parse_notify("nope").is_err());
        assert!(parse_notify("").unwrap().is_empty());
        assert_eq!(parse_worm(" audit, x ,"), ["audit", "x"]);
    }

    #[test]
    fn the_guard_knows_conditional_and_write_once_writes() {
        let g = Guard {
            root: PathBuf::from("/s3"),
            worm: vec!["audit".into()],
            lock: tokio::sync::Mutex::new(()),
        };
        assert_eq!(g.rule(&Method::PUT, "", "/media/a", false), Rule::Pass);
        assert_eq!(
            g.rule(&Method::PUT, "", "/media/a", true),
            Rule::IfAbsent {
                path: PathBuf::from("/s3/media/a"),
                locked: false
            }
        );
        assert_eq!(
            g.rule(&Method::PUT, "", "/audit/chain/1.jws", false),
            Rule::IfAbsent {
                path: PathBuf::from("/s3/audit/chain/1.jws"),
                locked: true
            }
        );
        assert_eq!(
            g.rule(&Method::DELETE, "", "/audit/chain/1.jws", false),
            Rule::Locked
        );
        assert_eq!(
            g.rule(&Method::POST, "delete", "/audit", false),
            Rule::Locked
        );
        assert_eq!(
            g.rule(&Method::POST, "delete=", "/audit/", false),
            Rule::Locked
        );
        assert_eq!(g.rule(&Method::DELETE, "", "/media/a", false), Rule::Pass);
        assert_eq!(
            g.rule(&Method::GET, "", "/audit/chain/1.jws", false),
            Rule::Pass
        );
    }
}
