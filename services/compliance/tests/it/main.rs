//! Compliance over real processes: identity (a real participant), a small
//! participant of the test's own over Postgres that the tests can kill and
//! bring back, and compliance itself with its Temporal worker, against the
//! shared test stack's Postgres, Redis, broker, Temporal and S3 server.

mod sweep;
mod workflow;

use std::{sync::Arc, time::Duration};

use shopstream_dsar::{Document, Erasure, Error, Export, Participant, StoreCount, Subject};
use shopstream_runtime::testkit::{self, RunningService};
use sqlx::PgPool;

/// How long a DSAR may take in a debug build on a busy machine.
pub const DSAR_TIMEOUT: Duration = Duration::from_secs(120);

/// A participant whose store is one table of notes about users; `up` off
/// makes it answer UNAVAILABLE (its store down), as a participant that is
/// down does.
#[derive(Clone)]
pub struct Notes {
    pub pool: PgPool,
    pub up: Arc<std::sync::atomic::AtomicBool>,
}

impl Notes {
    pub async fn new() -> Notes {
        let pool = testkit::stack().await.database("it_notes").await;
        sqlx::query("CREATE TABLE IF NOT EXISTS notes (tenant_id text, user_id uuid, body text)")
            .execute(&pool)
            .await
            .unwrap();
        Notes {
            pool,
            up: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    fn check_up(&self) -> Result<(), Error> {
        if self.up.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::Unavailable("the notes store is down".into()))
        }
    }

    pub async fn add(&self, s: &Subject, body: &str) {
        sqlx::query("INSERT INTO notes VALUES ($1, $2, $3)")
            .bind(&s.tenant)
            .bind(s.user_id)
            .bind(body)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn count(&self, s: &Subject) -> Result<u64, Error> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM notes WHERE tenant_id = $1 AND user_id = $2")
                .bind(&s.tenant)
                .bind(s.user_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(n as u64)
    }
}

#[async_trait::async_trait]
impl Participant for Notes {
    fn name(&self) -> &'static str {
        "notes"
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        self.check_up()?;
        let bodies: Vec<String> =
            sqlx::query_scalar("SELECT body FROM notes WHERE tenant_id = $1 AND user_id = $2")
                .bind(&s.tenant)
                .bind(s.user_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(Export {
            counts: vec![StoreCount::new(
                "notes.postgres",
                bodies.len() as u64,
                "notes",
            )],
            documents: vec![Document {
                store: "notes.postgres".into(),
                json: serde_json::json!(bodies),
            }],
            objects: vec![],
        })
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        self.check_up()?;
        let n = sqlx::query("DELETE FROM notes WHERE tenant_id = $1 AND user_id = $2")
            .bind(&s.tenant)
            .bind(s.user_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(Erasure {
            counts: vec![StoreCount::new("notes.postgres", n, "notes")],
            retained: vec![],
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        self.check_up()?;
        Ok(vec![StoreCount::new(
            "notes.postgres",
            self.count(s).await?,
            "notes",
        )])
    }
}

/// The notes participant served over gRPC on a port of its own (bound
/// here, so no other test can take it); its URL and the server's task.
pub async fn serve_notes(notes: &Notes) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let svc = shopstream_dsar::server(Arc::new(notes.clone()), "default");
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    (url, task)
}

pub async fn identity() -> RunningService {
    testkit::spawn_service::<shopstream_identity::Server>(|service| shopstream_identity::Config {
        service,
        database: testkit::unique("it_cidentity"),
        key_dir: testkit::stack_dir()
            .join("keys")
            .join(testkit::unique("identity")),
        cookie_secure: false,
        login_limit: 100,
        login_window_s: 60,
    })
    .await
}

/// Names one test's compliance uses.
#[derive(Debug, Clone)]
pub struct Names {
    pub database: String,
    pub task_queue: String,
    pub audit_bucket: String,
    pub export_bucket: String,
}

impl Names {
    pub fn fresh() -> Names {
        let u = testkit::unique("compliance");
        let dashed = u.replace('_', "-");
        Names {
            database: u.clone(),
            task_queue: u,
            // The stack's S3 server makes `audit` write-once; a test's own
            // audit bucket is an ordinary one (tests of the rule use `audit`).
            audit_bucket: format!("audit-{dashed}"),
            export_bucket: format!("exports-{dashed}"),
        }
    }
}

pub async fn compliance(
    names: &Names,
    participants: Vec<(String, String)>,
    identity_grpc: &str,
) -> RunningService {
    let names = names.clone();
    let identity = identity_grpc.to_string();
    testkit::spawn_service::<shopstream_compliance::Server>(move |service| {
        let mut c = shopstream_compliance::Config::new(service, participants, &identity);
        c.database = names.database;
        c.task_queue = names.task_queue;
        c.audit_bucket = names.audit_bucket;
        c.export_bucket = names.export_bucket;
        c
    })
    .await
}
