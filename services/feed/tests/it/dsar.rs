//! The feed's DSAR participant (ADR 0012) against the test stack: the
//! contract on the real stores (Postgres, the Postgres timeline, Redis, the
//! in-memory features) seeded through the service's own code, and a
//! restart's reload of the signal log that does not bring the subject back;
//! then the contract through the wire against a running feed seeded through
//! `PublishActivity` and the feature job, and erased users kept out of it
//! (publishing, pages, backfills, the job).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde_json::json;
use shopstream_dsar::{
    Participant, StoreCount, Subject,
    contract::{self, Marker},
};
use shopstream_feed::{
    MIGRATOR,
    domain::{
        activity::{self, Activity, Kind, NewActivity, Object},
        features::{Signal, Weights},
    },
    dsar::{self as feed_dsar, FeedParticipant},
    engine::Engine,
    job::{self, ACTIVITY_TOPIC, ANALYTICS_TOPIC},
    slices::Slices,
    timeline::{TimelineStore, postgres::PgTimeline},
};
use shopstream_platform::{
    cache,
    clock::{Clock, SystemClock},
    events::kafka::KafkaBus,
    grpc::with_tenant,
};
use shopstream_proto::feed::v1::{
    ActivityKind, BackfillRequest, PublishActivityRequest, PublishActivityResponse,
};
use shopstream_runtime::testkit;
use uuid::Uuid;

use crate::{Client, Shop, page, start};

fn count(counts: &[StoreCount], store: &str) -> u64 {
    counts
        .iter()
        .filter(|c| c.store == store)
        .map(|c| c.count)
        .sum()
}

/// Log an event's signals and fold them, as the feature job does.
async fn log_and_fold(
    p: &FeedParticipant,
    tenant: &str,
    id: Uuid,
    topic: &str,
    signals: Vec<Signal>,
) {
    sqlx::query(
        "INSERT INTO signal_log (tenant, event_id, topic, signals, ts_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant)
    .bind(id)
    .bind(topic)
    .bind(sqlx::types::Json(&signals))
    .bind(SystemClock.now_ms())
    .execute(&p.pool)
    .await
    .unwrap();
    p.engine.apply(tenant, signals);
}

/// Seed `s` through the service's own code: activities recorded the way
/// `PublishActivity` records them (activity_keys, the timeline), their
/// events' signals logged and folded the way the job does, a view from
/// `analytics.raw`, a stranger following them, and their slice stored in
/// Postgres and Redis. Returns the markers and the stranger.
async fn seed_direct(p: &FeedParticipant, s: &Subject, product: Uuid) -> (Vec<Marker>, Uuid) {
    let t = &s.tenant;
    let now = SystemClock.now_ms();
    let comment = format!("dsar comment {}", Uuid::new_v4());
    let (followee, follower) = (Uuid::new_v4(), Uuid::new_v4());
    let acts = [
        (
            s.user_id,
            Kind::Comment,
            Object::Product(product),
            comment.clone(),
        ),
        (
            s.user_id,
            Kind::Like,
            Object::Product(product),
            String::new(),
        ),
        (
            s.user_id,
            Kind::Follow,
            Object::User(followee),
            String::new(),
        ),
        (
            follower,
            Kind::Follow,
            Object::User(s.user_id),
            String::new(),
        ),
    ];
    let mut like = Uuid::nil();
    for (n, (actor, kind, object, text)) in acts.into_iter().enumerate() {
        let new = NewActivity {
            actor,
            kind,
            object,
            client_id: format!("c-{n}"),
            text,
        };
        let a = Activity::new(t, new, now + n as i64);
        if kind == Kind::Like {
            like = a.id;
        }
        sqlx::query(
            "INSERT INTO activity_keys (tenant, actor_id, client_id, activity_id, kind, object, body, ts_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(t)
        .bind(a.actor)
        .bind(&a.client_id)
        .bind(a.id)
        .bind(a.kind.as_str())
        .bind(a.object.to_string())
        .bind(&a.text)
        .bind(a.ts_ms)
        .execute(&p.pool)
        .await
        .unwrap();
        p.timeline.append(&a).await.unwrap();
        let payload = serde_json::to_vec(&a.event()).unwrap();
        let signals = job::signals_of(
            ACTIVITY_TOPIC,
            activity::EVENT_TYPE,
            a.id,
            &payload,
            &BTreeMap::new(),
        )
        .unwrap();
        log_and_fold(p, t, a.id, ACTIVITY_TOPIC, signals).await;
    }
    let view = json!({"user_id": s.user_id, "visitor_id": "v", "action": "view",
        "object_id": product, "ts_ms": now, "device": "desktop", "referrer": ""});
    let id = Uuid::new_v4();
    let signals = job::signals_of(
        ANALYTICS_TOPIC,
        "analytics.action",
        id,
        view.to_string().as_bytes(),
        &BTreeMap::new(),
    )
    .unwrap();
    log_and_fold(p, t, id, ANALYTICS_TOPIC, signals).await;
    p.engine.refresh_global(t);
    let slices = Slices {
        redis: p.redis.clone(),
        pool: p.pool.clone(),
    };
    let cards = job::refresh(&p.engine, &slices, &SystemClock, t, &s.user_id.to_string())
        .await
        .unwrap();
    assert!(cards > 0);
    (
        vec![
            Marker::new(feed_dsar::ACTIVITY_KEYS, &comment),
            Marker::new(feed_dsar::TIMELINE, &comment),
            Marker::new(feed_dsar::SIGNAL_LOG, like.to_string()),
            Marker::new(feed_dsar::FEATURES, followee.to_string()),
        ],
        follower,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_participant_passes_the_contract_and_a_reload_does_not_bring_the_subject_back() {
    let stack = testkit::stack().await;
    let pool = stack.database("it_feed_dsar").await;
    shopstream_platform::db::migrate(&pool, &MIGRATOR)
        .await
        .unwrap();
    let timeline: Arc<dyn TimelineStore> = Arc::new(PgTimeline { pool: pool.clone() });
    let p = FeedParticipant {
        pool: pool.clone(),
        redis: cache::connect(&stack.endpoints.redis_url).await.unwrap(),
        timeline,
        engine: Arc::new(Engine::new(Weights::default())),
        warmer: None,
    };
    let tenant = testkit::unique("t");
    let product = Uuid::now_v7();
    p.engine.apply(
        &tenant,
        vec![Signal::Created {
            item: product.to_string(),
            ts_ms: SystemClock.now_ms(),
        }],
    );
    let seeded: Arc<Mutex<Vec<(Subject, Uuid)>>> = Arc::default();
    contract::check(&p, &tenant, |s| {
        let (p, seeded) = (p.clone(), seeded.clone());
        async move {
            let (markers, follower) = seed_direct(&p, &s, product).await;
            seeded.lock().unwrap().push((s, follower));
            markers
        }
    })
    .await;
    let [(subject, follower), (bystander, _)] =
        <[_; 2]>::try_from(seeded.lock().unwrap().clone()).expect("two subjects seeded");
    let (su, bu) = (subject.user_id.to_string(), bystander.user_id.to_string());

    // The live fold: their follower no longer follows anyone.
    assert!(
        p.engine
            .person(&tenant, &follower.to_string())
            .follows
            .is_empty()
    );

    // A restart folds the signal log again: the subject is not in it.
    let reloaded = Engine::new(Weights::default());
    job::load(&pool, &reloaded).await.unwrap();
    assert_eq!(reloaded.person(&tenant, &su).entries(), 0);
    assert!(
        reloaded
            .person(&tenant, &follower.to_string())
            .follows
            .is_empty()
    );
    assert!(reloaded.person(&tenant, &bu).entries() > 0);
    assert!(!reloaded.users(&tenant).contains(&su));
    // The follower's own history of following them is theirs, and stays.
    let theirs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM activity_keys WHERE tenant = $1 AND actor_id = $2",
    )
    .bind(&tenant)
    .bind(follower)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(theirs, 1);
}

async fn publish(
    c: &mut Client,
    tenant: &str,
    actor: Uuid,
    kind: ActivityKind,
    object: String,
    text: &str,
) -> Result<PublishActivityResponse, tonic::Status> {
    c.publish_activity(with_tenant(
        PublishActivityRequest {
            actor_id: actor.to_string(),
            kind: kind as i32,
            object,
            client_id: Uuid::new_v4().to_string(),
            text: text.into(),
        },
        tenant,
    ))
    .await
    .map(|r| r.into_inner())
}

async fn backfill(c: &mut Client, tenant: &str, user: &str) -> Result<u32, tonic::Status> {
    c.backfill(with_tenant(
        BackfillRequest {
            user_id: user.into(),
            all: user.is_empty(),
        },
        tenant,
    ))
    .await
    .map(|r| r.into_inner().users)
}

/// Seed `s` through a running feed: a comment, a like, a follow of a
/// stranger and a stranger's follow of them through `PublishActivity`; the
/// feature job logs and folds them; a backfill stores their slice.
async fn seed_wire(
    c: &mut Client,
    p: &shopstream_dsar::Client,
    s: &Subject,
    product: &str,
) -> Vec<Marker> {
    let t = &s.tenant;
    let comment = format!("dsar comment {}", Uuid::new_v4());
    let (followee, follower) = (Uuid::new_v4(), Uuid::new_v4());
    let on = format!("product:{product}");
    publish(c, t, s.user_id, ActivityKind::Comment, on.clone(), &comment)
        .await
        .unwrap();
    let like = publish(c, t, s.user_id, ActivityKind::Like, on, "")
        .await
        .unwrap()
        .activity
        .unwrap()
        .activity_id;
    let follow = |who: Uuid, whom: Uuid| {
        let mut c = c.clone();
        async move {
            publish(
                &mut c,
                t,
                who,
                ActivityKind::Follow,
                format!("user:{whom}"),
                "",
            )
            .await
            .unwrap()
        }
    };
    follow(s.user_id, followee).await;
    follow(follower, s.user_id).await;
    testkit::eventually(
        "the job logged the four events",
        testkit::READY_TIMEOUT,
        || {
            let (p, s) = (p.clone(), s.clone());
            async move {
                let c = p.scan(&s).await.ok()?;
                (count(&c, feed_dsar::SIGNAL_LOG) == 4 && count(&c, feed_dsar::FEATURES) >= 4)
                    .then_some(())
            }
        },
    )
    .await;
    backfill(c, t, &s.user_id.to_string()).await.unwrap();
    vec![
        Marker::new(feed_dsar::ACTIVITY_KEYS, &comment),
        Marker::new(feed_dsar::TIMELINE, &comment),
        Marker::new(feed_dsar::SIGNAL_LOG, like),
        Marker::new(feed_dsar::FEATURES, followee.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_wire_and_erased_users_stay_out_of_the_feed() {
    let _one_at_a_time = crate::SERVICE_TESTS.lock().await;
    let stack = testkit::stack().await;
    let (svc, mut c) = start(
        &testkit::unique("it_feed_dsar"),
        &testkit::unique("it-feed-dsar"),
    )
    .await;
    let shop = Shop {
        tenant: testkit::unique("t"),
        bus: KafkaBus::connect(&stack.endpoints).unwrap(),
    };
    let t = shop.tenant.clone();
    let product = Uuid::now_v7().to_string();
    shop.product_created(&product, SystemClock.now_ms()).await;
    testkit::eventually("the feed knows the product", testkit::READY_TIMEOUT, || {
        let (mut c, t, o) = (c.clone(), t.clone(), format!("product:{product}"));
        async move {
            publish(&mut c, &t, Uuid::new_v4(), ActivityKind::View, o, "")
                .await
                .ok()
        }
    })
    .await;
    let p = shopstream_dsar::Client::new("feed", &svc.grpc_url()).unwrap();
    let seeded: Arc<Mutex<Vec<Subject>>> = Arc::default();
    contract::check(&p, &t, |s| {
        let (mut c, p, seeded, product) = (c.clone(), p.clone(), seeded.clone(), product.clone());
        async move {
            let markers = seed_wire(&mut c, &p, &s, &product).await;
            seeded.lock().unwrap().push(s);
            markers
        }
    })
    .await;
    let [subject, bystander] =
        <[_; 2]>::try_from(seeded.lock().unwrap().clone()).expect("two subjects seeded");
    let su = subject.user_id.to_string();

    // The compliance service lists the erased subject.
    let redis = redis::Client::open(stack.endpoints.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let block = |user: Uuid| {
        let mut redis = redis.clone();
        let key = feed_dsar::blocked_key(&t);
        async move {
            let _: () = redis::cmd("SADD")
                .arg(key)
                .arg(user.to_string())
                .query_async(&mut redis)
                .await
                .unwrap();
        }
    };
    block(subject.user_id).await;
    // The job reads the blocked set at most every BLOCKED_CACHE_FOR.
    tokio::time::sleep(shopstream_feed::job::BLOCKED_CACHE_FOR * 2).await;
    // Compliance blocks, then erases. The contract's erase above ran before
    // the block, so a slice the job computed before it may have been stored
    // since; the erase that follows a block leaves nothing to come back.
    shopstream_dsar::Participant::erase(&p, &subject)
        .await
        .unwrap();

    // Nothing of theirs comes back: no activity of theirs or about them, no
    // slice (a one-user backfill is refused, a page is not computed).
    let on = format!("product:{product}");
    for e in [
        publish(
            &mut c,
            &t,
            subject.user_id,
            ActivityKind::Like,
            on.clone(),
            "",
        )
        .await,
        publish(
            &mut c,
            &t,
            bystander.user_id,
            ActivityKind::Follow,
            format!("user:{su}"),
            "",
        )
        .await,
    ] {
        let e = e.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("erased"), "{}", e.message());
    }
    let refused = backfill(&mut c, &t, &su).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains(&su) && refused.message().contains("erased"),
        "{}",
        refused.message()
    );
    let no_page = page(&mut c, &t, &su, 5, "", false).await.unwrap_err();
    assert_eq!(no_page.code(), tonic::Code::FailedPrecondition);

    // An event of theirs still in flight is dropped by the job: a view of
    // theirs, then one of someone else's under the same key (the same
    // partition, so in that order); once the second is folded, the first
    // was handled.
    let someone = Subject::new(&t, Uuid::new_v4(), &[]);
    for user in [subject.user_id, someone.user_id] {
        shop.send(
            ANALYTICS_TOPIC,
            "analytics.action",
            "dsar-view",
            json!({"user_id": user, "visitor_id": "v", "action": "view",
                "object_id": product, "ts_ms": SystemClock.now_ms(), "device": "desktop",
                "referrer": ""}),
        )
        .await;
    }
    testkit::eventually("the job folded the later view", testkit::READY_TIMEOUT, || {
        let (p, s) = (p.clone(), someone.clone());
        async move {
            (count(&p.scan(&s).await.ok()?, feed_dsar::SIGNAL_LOG) == 1).then_some(())
        }
    })
    .await;
    assert!(
        testkit::metric(
            &svc.http,
            "shopstream_feed_job_events_total",
            &["outcome=\"suppressed\""]
        )
        .await
            >= 1.0
    );
    let after = p.scan(&subject).await.unwrap();
    assert_eq!(shopstream_dsar::total(&after), 0, "{after:?}");

    // Backfill { all } skips listed users.
    let everyone = backfill(&mut c, &t, "").await.unwrap();
    block(bystander.user_id).await;
    assert_eq!(backfill(&mut c, &t, "").await.unwrap(), everyone - 1);
}
