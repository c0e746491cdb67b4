//! E-mail end to end over real processes: identity answers who the user is,
//! mail-sim is the SMTP server (with injected faults), notifications reads
//! the broker and sends. Temporary refusals are retried and delivered; a
//! permanent one lands in the DLQ with its reason; a refund is mailed to the
//! order's owner; a crash between the SMTP server's acceptance and the ack
//! sends exactly one copy more, with the same Message-ID (ADR 0009).

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use shopstream_notifications::{
    Config, Server, Topics,
    mailer::{self, MailerConfig},
};
use shopstream_platform::{
    cache,
    clock::SystemClock,
    config::DEFAULT_TENANT,
    events::{
        Envelope, EventBus,
        kafka::{KafkaBus, SESSION_TIMEOUT},
    },
    ids::SystemIdGen,
};
use shopstream_runtime::testkit::{self, ServiceProcess};
use uuid::Uuid;

/// Long enough for a few retries at the tests' short backoff.
const MAIL_WAIT: Duration = Duration::from_secs(30);

struct World {
    _identity: ServiceProcess,
    identity_grpc: String,
    mail: ServiceProcess,
    /// mail-sim's SMTP `host:port`.
    smtp: String,
    http: Client,
    user_id: String,
    email: String,
    bus: std::sync::Arc<dyn EventBus>,
    /// This test's own e-mail stream (tests share one Redis) and topics.
    stream: String,
    topics: Topics,
    database: String,
    group: String,
}

async fn world() -> World {
    let stack = testkit::stack().await;
    let keys = testkit::stack_dir()
        .join("keys")
        .join(testkit::unique("notif"));
    let identity = testkit::spawn_process(
        "identity",
        &[
            (
                "SHOPSTREAM_IDENTITY_DATABASE",
                testkit::unique("it_identity"),
            ),
            ("SHOPSTREAM_IDENTITY_KEY_DIR", keys.display().to_string()),
        ],
    )
    .await;
    let dir = testkit::stack_dir()
        .join("mail")
        .join(testkit::unique("mail"));
    let mail = testkit::spawn_process(
        "mail-sim",
        &[("SHOPSTREAM_MAIL_SIM_DIR", dir.display().to_string())],
    )
    .await;
    let http = Client::new();
    let email = format!("{}@example.com", testkit::unique("buyer"));
    let r = http
        .post(format!("{}/auth/signup", identity.http))
        .json(&json!({"email": email, "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: Value = r.json().await.unwrap();
    World {
        identity_grpc: identity.grpc.clone(),
        _identity: identity,
        smtp: mail.grpc.trim_start_matches("http://").to_string(),
        mail,
        http,
        user_id: user["id"].as_str().unwrap().to_string(),
        email,
        bus: KafkaBus::connect(&stack.endpoints).unwrap(),
        stream: testkit::unique("email.outbound"),
        topics: Topics {
            orders: testkit::unique("order.lifecycle"),
            payments: testkit::unique("payment.events"),
        },
        database: testkit::unique("it_notifications"),
        group: testkit::unique("it-notifications"),
    }
}

impl World {
    fn mailer(&self, consumer: &str) -> MailerConfig {
        MailerConfig {
            stream: self.stream.clone(),
            smtp: self.smtp.clone(),
            from: "orders@shopstream.test".into(),
            max_attempts: 4,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            consumer: consumer.into(),
            failpoint: None,
        }
    }

    fn config(&self, service: shopstream_platform::config::ServiceConfig) -> Config {
        Config {
            service,
            database: self.database.clone(),
            consumer_group: self.group.clone(),
            topics: self.topics.clone(),
            identity_grpc: self.identity_grpc.clone(),
            mailer: self.mailer("mailer-1"),
            mail_sink: Some(self.mail.http.clone()),
        }
    }

    /// An `order.state_changed` for this world's user, published.
    async fn order_state(&self, order: Uuid, state: &str, reason: Option<&str>) -> Envelope {
        let e = Envelope::new(
            "order.state_changed",
            1,
            DEFAULT_TENANT,
            &order.to_string(),
            &json!({"order_id": order.to_string(), "user_id": self.user_id, "state": state,
                "cancel_reason": reason, "total_minor": 4_200, "currency": "EUR",
                "reservation_id": "r1", "ts_ms": 1}),
            &SystemClock,
            &SystemIdGen,
        )
        .unwrap();
        self.bus.publish(&self.topics.orders, &e).await.unwrap();
        e
    }

    /// Payments' event after a refund: `total_minor` is the running total
    /// refunded for the order, as payments sends it.
    async fn refund(&self, order: Uuid, status: &str, total_minor: i64) {
        let e = Envelope::new(
            "payment.status_changed",
            1,
            DEFAULT_TENANT,
            &order.to_string(),
            &json!({"payment_id": "p1", "order_id": order.to_string(), "status": status,
                "amount_minor": total_minor, "currency": "EUR", "failure_code": "", "ts_ms": 2}),
            &SystemClock,
            &SystemIdGen,
        )
        .unwrap();
        self.bus.publish(&self.topics.payments, &e).await.unwrap();
    }

    async fn messages(&self) -> Vec<Value> {
        let v = testkit::get_json(&self.http, &format!("{}/messages", self.mail.http)).await;
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until mail-sim holds `n` messages; they come newest first.
    async fn wait_messages(&self, n: usize) -> Vec<Value> {
        self.wait_messages_within(n, MAIL_WAIT).await
    }

    async fn wait_messages_within(&self, n: usize, within: Duration) -> Vec<Value> {
        testkit::eventually(&format!("{n} messages in mail-sim"), within, || async {
            let m = self.messages().await;
            (m.len() >= n).then_some(m)
        })
        .await
    }

    async fn faults(&self, f: Value) {
        let r = self
            .http
            .put(format!("{}/_sim/faults", self.mail.http))
            .json(&f)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    async fn sends(&self, pool: &sqlx::PgPool, key: &str) -> Option<(String, i32, String)> {
        sqlx::query_as("SELECT state, attempts, last_error FROM email_sends WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_refusals_are_retried_a_permanent_one_is_dead_lettered_and_refunds_reach_the_owner()
 {
    let w = world().await;
    let svc = testkit::spawn_service::<Server>(|s| w.config(s)).await;
    let stack = testkit::stack().await;
    let pool = shopstream_platform::db::connect(&stack.endpoints.postgres_url, &w.database)
        .await
        .unwrap();
    let mut redis = cache::connect(&stack.endpoints.redis_url).await.unwrap();

    // Two 421s, then acceptance: delivered on the third attempt.
    w.faults(json!({"temporary": 2})).await;
    let order = Uuid::now_v7();
    let completed = w.order_state(order, "completed", None).await;
    let m = w.wait_messages(1).await;
    assert_eq!(m[0]["to"], json!([w.email]));
    assert_eq!(
        m[0]["subject"],
        format!(
            "Your Shopstream order {} is confirmed",
            &order.to_string()[..8]
        )
    );
    let key = format!("{}.order_confirmed", completed.id);
    assert_eq!(m[0]["message_id"], format!("<{key}@shopstream>"));
    let (state, attempts, _) = testkit::eventually("the send recorded", MAIL_WAIT, || async {
        w.sends(&pool, &key).await.filter(|s| s.0 == "sent")
    })
    .await;
    assert_eq!((state.as_str(), attempts), ("sent", 3));
    assert_eq!(
        testkit::metric(
            &svc.http,
            "shopstream_notifications_emails_retried_total",
            &[]
        )
        .await,
        2.0
    );

    // The same event again (a producer retry): no second e-mail.
    w.bus.publish(&w.topics.orders, &completed).await.unwrap();

    // Refunds go to the order's owner, found from the order's events; each
    // e-mail names its own refund, though payments sends running totals.
    let short = &order.to_string()[..8];
    w.refund(order, "partially_refunded", 1_000).await;
    let m = w.wait_messages(2).await;
    assert_eq!(
        m[0]["subject"],
        format!("Refund of 10.00 EUR for order {short}")
    );
    assert_eq!(m[0]["to"], json!([w.email]));
    w.refund(order, "refunded", 4_200).await;
    let m = w.wait_messages(3).await;
    assert_eq!(
        m[0]["subject"],
        format!("Refund of 32.00 EUR for order {short}")
    );

    // 550 until cleared: the cancellation e-mail goes to the DLQ at once,
    // with the server's answer, after one attempt.
    w.faults(json!({"permanent": true})).await;
    // (The same order: its partition is the duplicate's, so the dead letter
    // also shows the duplicate was handled before it.)
    let cancelled = w
        .order_state(order, "cancelled", Some("payment_declined"))
        .await;
    let dead = testkit::eventually("a dead letter", MAIL_WAIT, || async {
        let mut r = redis.clone();
        let d = mailer::dead_letters(&mut r, &w.stream).await.unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].email.key,
        format!("{}.order_cancelled", cancelled.id)
    );
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].reason.contains("550"), "{}", dead[0].reason);
    assert!(dead[0].email.body.contains("your card was declined"));
    // The DLQ is written before the key's row (ADR 0009): the row follows.
    let (_, _, error) = testkit::eventually("the key recorded dead", MAIL_WAIT, || async {
        w.sends(&pool, &dead[0].email.key)
            .await
            .filter(|s| s.0 == "dead")
    })
    .await;
    assert!(error.contains("550"), "{error}");

    // Still exactly the three delivered e-mails: the duplicate event sent
    // nothing, the refused one is in the DLQ, not retried.
    assert_eq!(w.messages().await.len(), 3);
    let _ = redis::cmd("DEL")
        .arg(mailer::dlq_stream(&w.stream))
        .query_async::<i64>(&mut redis)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_send_and_ack_sends_exactly_one_more_copy_with_the_same_message_id() {
    let w = world().await;
    let stack = testkit::stack().await;
    // Notifications as a process that aborts right after mail-sim accepted
    // the message, before the send is recorded.
    let mut crashing = testkit::spawn_process(
        "notifications",
        &[
            ("SHOPSTREAM_NOTIFICATIONS_DATABASE", w.database.clone()),
            ("SHOPSTREAM_NOTIFICATIONS_GROUP", w.group.clone()),
            ("SHOPSTREAM_IDENTITY_GRPC_URL", w.identity_grpc.clone()),
            ("SHOPSTREAM_NOTIFICATIONS_SMTP", w.smtp.clone()),
            ("SHOPSTREAM_EMAIL_STREAM", w.stream.clone()),
            (
                "SHOPSTREAM_NOTIFICATIONS_ORDER_TOPIC",
                w.topics.orders.clone(),
            ),
            (
                "SHOPSTREAM_NOTIFICATIONS_PAYMENT_TOPIC",
                w.topics.payments.clone(),
            ),
            ("SHOPSTREAM_NOTIFICATIONS_MAILER", "mailer-1".into()),
            ("SHOPSTREAM_FAILPOINT", mailer::FAILPOINT_AFTER_SEND.into()),
        ],
    )
    .await;
    let order = Uuid::now_v7();
    let completed = w.order_state(order, "completed", None).await;
    let first = w.wait_messages(1).await;
    let status = crashing
        .exited(MAIL_WAIT)
        .await
        .expect("the failpoint aborts it");
    assert!(!status.success(), "{status:?}");
    drop(crashing);

    // Restarted without the failpoint, under the same consumer name: it
    // finds the entry it never acknowledged and, not knowing the message
    // left, sends it again.
    let _svc = testkit::spawn_service::<Server>(|s| w.config(s)).await;
    let pool = shopstream_platform::db::connect(&stack.endpoints.postgres_url, &w.database)
        .await
        .unwrap();
    let key = format!("{}.order_confirmed", completed.id);
    let (state, attempts, _) = testkit::eventually("the send recorded", MAIL_WAIT, || async {
        w.sends(&pool, &key).await.filter(|s| s.0 == "sent")
    })
    .await;
    assert_eq!((state.as_str(), attempts), ("sent", 2));
    let all = w.messages().await;
    assert_eq!(all.len(), 2, "exactly one copy more: {all:#?}");
    assert_eq!(all[0]["message_id"], first[0]["message_id"]);
    assert_eq!(all[0]["message_id"], format!("<{key}@shopstream>"));

    // And the event redelivered once more sends nothing: the key is sent.
    // (A cancellation of the same order follows it on the same partition, so
    // once its e-mail is here the duplicate was handled.)
    w.bus.publish(&w.topics.orders, &completed).await.unwrap();
    w.order_state(order, "cancelled", Some("user_requested"))
        .await;
    // The crashed process never left the consumer group: its partitions
    // come to the restarted one only once its session expires
    // (`kafka::SESSION_TIMEOUT`, 45 s; ADR 0002 says why it is that long).
    let all = w.wait_messages_within(3, SESSION_TIMEOUT + MAIL_WAIT).await;
    assert!(
        all[0]["subject"]
            .as_str()
            .unwrap()
            .contains("was cancelled"),
        "{all:#?}"
    );
    assert_eq!(all.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_channel_receives_the_mail_and_push_test_sends_through_it() {
    use shopstream_proto::notifications::v1::{
        ChannelKind, DeliveryStatus, PushTestRequest, RegisterChannelRequest,
        notifications_service_client::NotificationsServiceClient,
    };
    let w = world().await;
    let svc = testkit::spawn_service::<Server>(|s| w.config(s)).await;
    let mut api = NotificationsServiceClient::connect(svc.grpc_url())
        .await
        .unwrap();
    let register = |kind: ChannelKind, address: &str| RegisterChannelRequest {
        user_id: w.user_id.clone(),
        kind: kind as i32,
        address: address.into(),
        topics: vec![w.topics.orders.clone()],
    };

    // Bad input changes nothing.
    let e = api
        .register_channel(register(ChannelKind::Websocket, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = api
        .register_channel(register(ChannelKind::Email, "not an address"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = api
        .push_test(PushTestRequest {
            channel_id: Uuid::now_v7().to_string(),
            message: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // An e-mail channel for the order topic: order e-mail goes there, not to
    // the account's address. Registering again returns the same channel.
    let work = format!("{}@work.example.com", testkit::unique("ada"));
    let ch = api
        .register_channel(register(ChannelKind::Email, &work))
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap();
    let again = api
        .register_channel(register(ChannelKind::Email, &work))
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap();
    assert_eq!(again.channel_id, ch.channel_id);
    w.order_state(Uuid::now_v7(), "completed", None).await;
    let m = w.wait_messages(1).await;
    assert_eq!(m[0]["to"], json!([work]));

    // PushTest queues a test e-mail through the channel.
    let r = api
        .push_test(PushTestRequest {
            channel_id: ch.channel_id.clone(),
            message: "hello from the test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, DeliveryStatus::Queued as i32);
    let m = w.wait_messages(2).await;
    assert_eq!(m[0]["subject"], "Shopstream test notification");
    assert_eq!(m[0]["to"], json!([work]));
    let shown = testkit::get_json(
        &w.http,
        &format!("{}/messages/{}", w.mail.http, m[0]["id"].as_str().unwrap()),
    )
    .await;
    assert!(
        shown["raw"]
            .as_str()
            .unwrap()
            .contains("hello from the test")
    );
}
