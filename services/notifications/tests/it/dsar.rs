//! Notifications as a DSAR participant, against the test stack with mail-sim
//! as the mail sink: a channel registered over the API, a test e-mail sent
//! through it by the mailer (the delivery log and the sink's copy), an
//! order's owner, an e-mail waiting for a retry and one in the DLQ pass the
//! contract, in the participant itself and over its gRPC port; an
//! unreachable sink fails the erase, retryably.

use std::time::Duration;

use serde_json::Value;
use shopstream_dsar::{
    Error, Participant as _, Subject,
    contract::{self, Marker},
};
use shopstream_notifications::{
    Config, Server, Topics,
    dsar::{self, Participant},
    email::Template,
    mailer::{self, DeadLetter, MailerConfig, Outbound},
};
use shopstream_platform::{cache, grpc::with_tenant};
use shopstream_proto::notifications::v1::{
    ChannelKind, PushTestRequest, RegisterChannelRequest,
    notifications_service_client::NotificationsServiceClient,
};
use shopstream_runtime::testkit::{self, RunningService, ServiceProcess};
use uuid::Uuid;

/// Long enough for the mailer to send one e-mail.
const MAIL_WAIT: Duration = Duration::from_secs(30);
/// A retry due so late the mailer never takes it back during the test.
const NEVER_DUE_MS: f64 = 9.0e15;

struct World {
    mail: ServiceProcess,
    svc: RunningService,
    pool: sqlx::PgPool,
    redis: cache::ConnectionManager,
    stream: String,
    http: reqwest::Client,
}

async fn world() -> World {
    let stack = testkit::stack().await;
    let dir = testkit::stack_dir()
        .join("mail")
        .join(testkit::unique("mail"));
    let mail = testkit::spawn_process(
        "mail-sim",
        &[("SHOPSTREAM_MAIL_SIM_DIR", dir.display().to_string())],
    )
    .await;
    let database = testkit::unique("it_notifications");
    let stream = testkit::unique(mailer::STREAM);
    let smtp = mail.grpc.trim_start_matches("http://").to_string();
    let sink = mail.http.clone();
    let (db, st) = (database.clone(), stream.clone());
    let svc = testkit::spawn_service::<Server>(move |service| Config {
        service,
        database: db,
        consumer_group: testkit::unique("it-notifications"),
        topics: Topics {
            orders: testkit::unique("order.lifecycle"),
            payments: testkit::unique("payment.events"),
        },
        // No event is published: identity is never asked.
        identity_grpc: "http://127.0.0.1:9".into(),
        mailer: MailerConfig {
            stream: st,
            smtp,
            from: "orders@shopstream.test".into(),
            max_attempts: 3,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            consumer: "mailer-1".into(),
            failpoint: None,
        },
        mail_sink: Some(sink),
    })
    .await;
    let pool = shopstream_platform::db::connect(&stack.endpoints.postgres_url, &database)
        .await
        .unwrap();
    let redis = cache::connect(&stack.endpoints.redis_url).await.unwrap();
    World {
        mail,
        svc,
        pool,
        redis,
        stream,
        http: reqwest::Client::new(),
    }
}

impl World {
    /// Seed everything notifications holds about `s` (in `s.tenant`):
    /// through the API and the mailer where it has a path, else as it
    /// writes them.
    async fn seed(&self, s: Subject) -> Vec<Marker> {
        let tag = s.user_id.simple().to_string();
        let mut api = NotificationsServiceClient::connect(self.svc.grpc_url())
            .await
            .unwrap();
        // A channel of another address (in another case): found by user id.
        let work = format!("Work-{tag}@Example.test");
        let channel = api
            .register_channel(with_tenant(
                RegisterChannelRequest {
                    user_id: s.user_id.to_string(),
                    kind: ChannelKind::Email as i32,
                    address: work.clone(),
                    topics: vec![],
                },
                &s.tenant,
            ))
            .await
            .unwrap()
            .into_inner()
            .channel
            .unwrap();
        // A test e-mail through it: the mailer sends it to mail-sim and logs it.
        let text = format!("push-{tag}");
        let pushed = api
            .push_test(with_tenant(
                PushTestRequest {
                    channel_id: channel.channel_id,
                    message: text.clone(),
                },
                &s.tenant,
            ))
            .await
            .unwrap()
            .into_inner();
        let key = format!("{}.test", pushed.notification_id);
        testkit::eventually("the test e-mail sent", MAIL_WAIT, || async {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM email_sends WHERE key = $1")
                    .bind(&key)
                    .fetch_optional(&self.pool)
                    .await
                    .unwrap();
            (state.as_deref() == Some("sent")).then_some(())
        })
        .await;
        // The owner of an order (from order.state_changed).
        let order = Uuid::now_v7().to_string();
        sqlx::query("INSERT INTO order_owners (tenant_id, order_id, user_id) VALUES ($1, $2, $3)")
            .bind(&s.tenant)
            .bind(&order)
            .bind(s.user_id.to_string())
            .execute(&self.pool)
            .await
            .unwrap();
        // An e-mail to the account's address waiting for a retry, and one
        // in the DLQ.
        let outbound = |body: &str| Outbound {
            key: format!("{}.order_confirmed", Uuid::now_v7()),
            tenant_id: s.tenant.clone(),
            template: Template::OrderConfirmed,
            to: vec![s.emails[0].clone()],
            order_id: order.clone(),
            subject: "Your Shopstream order is confirmed".into(),
            body: format!("Hello ada,\n\n{body}\n"),
        };
        let retry = format!("retry-{tag}");
        let mut redis = self.redis.clone();
        redis::cmd("ZADD")
            .arg(mailer::retry_set(&self.stream))
            .arg(NEVER_DUE_MS)
            .arg(serde_json::to_string(&outbound(&retry)).unwrap())
            .query_async::<i64>(&mut redis)
            .await
            .unwrap();
        let dead = format!("dead-{tag}");
        let letter = DeadLetter {
            email: outbound(&dead),
            reason: "SMTP 550: mailbox unavailable".into(),
            attempts: 1,
        };
        redis::cmd("XADD")
            .arg(mailer::dlq_stream(&self.stream))
            .arg("*")
            .arg("json")
            .arg(serde_json::to_string(&letter).unwrap())
            .query_async::<String>(&mut redis)
            .await
            .unwrap();
        vec![
            Marker::new(dsar::CHANNELS, &work),
            Marker::new(dsar::EMAIL_SENDS, &key),
            Marker::new(dsar::ORDER_OWNERS, &order),
            Marker::new(dsar::OUTBOX, &retry),
            Marker::new(dsar::DEAD_LETTERS, &dead),
            Marker::new(dsar::MAIL_SINK, &text),
        ]
    }

    /// How many messages mail-sim holds for `to` in `tenant`.
    async fn sunk(&self, to: &str, tenant: &str) -> u64 {
        let url = format!("{}/messages?to={to}&tenant={tenant}", self.mail.http);
        let v: Value = testkit::get_json(&self.http, &url).await;
        v["count"].as_u64().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_passes_the_dsar_contract_in_process_and_over_grpc() {
    let w = world().await;
    let p = Participant::new(
        w.pool.clone(),
        w.redis.clone(),
        &w.stream,
        Some(&w.mail.http),
    )
    .unwrap();
    let tenant = testkit::unique("t");
    contract::check(&p, &tenant, |s| w.seed(s)).await;

    let client = shopstream_dsar::Client::new("notifications", &w.svc.grpc_url()).unwrap();
    let tenant = testkit::unique("t");
    contract::check(&client, &tenant, |s| w.seed(s)).await;

    // Only the subject's tenant: the same person in another tenant keeps
    // their channel, log and mail.
    let (t1, t2) = (testkit::unique("t"), testkit::unique("t"));
    let s1 = contract::fresh_subject(&t1);
    let s2 = Subject {
        tenant: t2.clone(),
        ..s1.clone()
    };
    w.seed(s1.clone()).await;
    w.seed(s2.clone()).await;
    let work = format!("work-{}@example.test", s1.user_id.simple());
    assert_eq!(w.sunk(&work, &t2).await, 1);
    let erased = p.erase(&s1).await.unwrap();
    assert!(shopstream_dsar::total(&erased.counts) > 0, "{erased:?}");
    assert_eq!(shopstream_dsar::total(&p.scan(&s1).await.unwrap()), 0);
    assert_eq!(w.sunk(&work, &t1).await, 0);
    assert_eq!(w.sunk(&work, &t2).await, 1);
    let left = p.scan(&s2).await.unwrap();
    assert!(left.iter().all(|c| c.count > 0), "{left:?}");

    // The order's owner is a pseudonym now: a refund finds no user.
    let owner: String = sqlx::query_scalar(
        "SELECT user_id FROM order_owners WHERE tenant_id = $1 ORDER BY order_id LIMIT 1",
    )
    .bind(&t1)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(owner, Uuid::nil().to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_mail_sink_fails_the_erase_retryably() {
    let stack = testkit::stack().await;
    let pool = stack.database("it_notifications_dsar").await;
    shopstream_platform::db::migrate(&pool, &shopstream_notifications::MIGRATOR)
        .await
        .unwrap();
    let redis = cache::connect(&stack.endpoints.redis_url).await.unwrap();
    let p = Participant::new(
        pool,
        redis,
        &testkit::unique(mailer::STREAM),
        // Nothing listens on the discard port.
        Some("http://127.0.0.1:9"),
    )
    .unwrap();
    let s = contract::fresh_subject(&testkit::unique("t"));
    for r in [
        p.erase(&s).await.map(|_| ()),
        p.scan(&s).await.map(|_| ()),
        p.export(&s).await.map(|_| ()),
    ] {
        assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    }
}
