//! The feed against the shared test stack (Postgres, Redis, the broker):
//! the timeline contract on Postgres (and on Scylla where
//! `SHOPSTREAM_SCYLLA_URL` is set); then one service end to end — products
//! from `product.events`, activities through `PublishActivity`, a purchase
//! from `order.lifecycle`, a picture from `media.events`, views from
//! `analytics.raw` — into slices served by `GetPage`; a followee's like
//! moving an item up and pushed live; bad input; a Redis flush served from
//! Postgres; a new user's first page; and a second service that replays the
//! topics from the beginning into the same slices, to the bit. The DSAR
//! participant has its own module ([`dsar`]).

mod dsar;

use std::{collections::BTreeMap, time::Duration};

use futures::StreamExt;
use serde_json::json;
use shopstream_feed::{
    Config, Server,
    job::{ANALYTICS_TOPIC, MEDIA_TOPIC, ORDER_TOPIC, PRODUCT_TOPIC},
    timeline::{contract, postgres::PgTimeline, scylla},
};
use shopstream_platform::{
    clock::SystemClock,
    events::{Envelope, EventBus, kafka::KafkaBus},
    grpc::{ERROR_CODE_METADATA_KEY, with_tenant},
    ids::SystemIdGen,
};
use shopstream_proto::feed::v1::{
    ActivityKind, BackfillRequest, GetPageRequest, GetPageResponse, ListActivitiesRequest,
    PublishActivityRequest, PublishActivityResponse, RecommendRequest,
    feed_service_client::FeedServiceClient,
};
use shopstream_runtime::testkit;
use tonic::transport::Channel;
use uuid::Uuid;

type Client = FeedServiceClient<Channel>;

/// The events the end-to-end test gives its shop, one signal-log row each:
/// 8 products created; alice's view; carol's 8 views; alice's follow; bob's
/// like; carol's purchase; a picture; 3 anonymous views. (Replays, the
/// conflict and the refused requests add none.)
const SHOP_EVENTS: i64 = 8 + 1 + 8 + 1 + 1 + 1 + 1 + 3;

/// The tests that run a whole feed service take turns. Two feed services
/// under test at once in this process (each replaying the shared test
/// stack's topics from the start) made a slice come out partial now and
/// then, with or without the DSAR changes (reproduced on the code before
/// them, 3 runs in 8 with 4 test threads on 2 cores); the cause is not
/// found yet (see the closing note of issue 15). One at a time, they pass.
pub static SERVICE_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_timeline_passes_the_contract() {
    let stack = testkit::stack().await;
    let pool = stack.database("it_feed_timeline").await;
    shopstream_platform::db::migrate(&pool, &shopstream_feed::MIGRATOR)
        .await
        .unwrap();
    contract::run(&PgTimeline { pool }).await;
}

/// Runs against a real Scylla (or Cassandra) wherever
/// `SHOPSTREAM_SCYLLA_URL` is set, e.g. by the compose runtime; this machine
/// has none, and then the test says so and checks nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn the_scylla_timeline_passes_the_contract_where_scylla_is_reachable() {
    let Ok(url) = std::env::var("SHOPSTREAM_SCYLLA_URL") else {
        eprintln!("SHOPSTREAM_SCYLLA_URL is not set: the Scylla contract did not run");
        return;
    };
    let keyspace = format!("it_feed_{}", Uuid::new_v4().simple());
    let store = scylla::ScyllaTimeline::connect(&scylla::nodes(&url), &keyspace)
        .await
        .expect("scylla reachable at SHOPSTREAM_SCYLLA_URL");
    contract::run(&store).await;
}

struct Shop {
    tenant: String,
    bus: std::sync::Arc<dyn EventBus>,
}

impl Shop {
    async fn send(&self, topic: &str, event_type: &str, key: &str, payload: serde_json::Value) {
        let e = Envelope::new(
            event_type,
            1,
            &self.tenant,
            key,
            &payload,
            &SystemClock,
            &SystemIdGen,
        )
        .unwrap();
        self.bus.publish(topic, &e).await.unwrap();
    }

    /// A catalog outbox row as CDC publishes it.
    async fn product_created(&self, id: &str, ts_ms: i64) {
        let row = json!({"id": Uuid::new_v4(), "tenant_id": self.tenant, "aggregate_id": id,
            "event_type": "shopstream.events.v1.ProductChanged",
            "payload": {"product_id": id, "version": 1, "kind": "created", "ts_ms": ts_ms},
            "created_at": "2026-12-01T00:00:00Z"});
        self.send(
            PRODUCT_TOPIC,
            "shopstream.events.v1.ProductChanged",
            id,
            json!({"before": null, "after": row, "op": "c", "ts_ms": ts_ms,
                "source": {"db": "catalog", "table": "outbox", "ts_ms": ts_ms}}),
        )
        .await;
    }
}

async fn publish(
    c: &mut Client,
    tenant: &str,
    actor: &str,
    kind: ActivityKind,
    object: &str,
    client_id: &str,
) -> Result<PublishActivityResponse, tonic::Status> {
    c.publish_activity(with_tenant(
        PublishActivityRequest {
            actor_id: actor.into(),
            kind: kind as i32,
            object: object.into(),
            client_id: client_id.into(),
            text: if kind == ActivityKind::Comment {
                "lovely".into()
            } else {
                String::new()
            },
        },
        tenant,
    ))
    .await
    .map(|r| r.into_inner())
}

async fn page(
    c: &mut Client,
    tenant: &str,
    user: &str,
    size: u32,
    cursor: &str,
    debug: bool,
) -> Result<GetPageResponse, tonic::Status> {
    c.get_page(with_tenant(
        GetPageRequest {
            user_id: user.into(),
            page_size: size,
            cursor: cursor.into(),
            debug,
        },
        tenant,
    ))
    .await
    .map(|r| r.into_inner())
}

fn items(p: &GetPageResponse) -> Vec<String> {
    p.cards.iter().map(|c| c.item_id.clone()).collect()
}

/// `Backfill { all }` and wait until the service wrote every queued slice.
async fn backfill_all(c: &mut Client, svc: &testkit::RunningService, tenant: &str) {
    let written = |base: String| async move {
        (
            testkit::metric(&base, "shopstream_feed_slices_written_total", &[]).await,
            testkit::metric(&base, "shopstream_feed_dirty_slices", &[]).await,
        )
    };
    let before = written(svc.http.clone()).await.0;
    let r = c
        .backfill(with_tenant(
            BackfillRequest {
                user_id: String::new(),
                all: true,
            },
            tenant,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.queued);
    testkit::eventually("every queued slice written", testkit::READY_TIMEOUT, || {
        let base = svc.http.clone();
        async move {
            let (w, dirty) = written(base).await;
            (dirty == 0.0 && w - before >= f64::from(r.users)).then_some(())
        }
    })
    .await;
}

async fn start(database: &str, group: &str) -> (testkit::RunningService, Client) {
    let (database, group) = (database.to_string(), group.to_string());
    let svc = testkit::spawn_service::<Server>(move |service| Config {
        database,
        consumer_group: group,
        ..Config::new(service)
    })
    .await;
    let c = FeedServiceClient::connect(svc.grpc_url()).await.unwrap();
    (svc, c)
}

/// Every stored slice of `tenant` in `database`: user → [(item, score bits)].
async fn stored_slices(database: &str, tenant: &str) -> BTreeMap<String, Vec<(String, u64)>> {
    let stack = testkit::stack().await;
    let pool = shopstream_platform::db::connect(&stack.endpoints.postgres_url, database)
        .await
        .unwrap();
    let rows: Vec<(String, String, f64)> = sqlx::query_as(
        "SELECT user_id, item_id, score FROM slices WHERE tenant = $1
         ORDER BY user_id, score DESC, item_id DESC",
    )
    .bind(tenant)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut out: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for (u, i, s) in rows {
        out.entry(u).or_default().push((i, s.to_bits()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn activities_become_features_slices_and_pages_and_a_replay_gives_the_same_slices() {
    let _one_at_a_time = SERVICE_TESTS.lock().await;
    let stack = testkit::stack().await;
    let db1 = testkit::unique("it_feed");
    let (svc1, mut c) = start(&db1, &testkit::unique("it-feed")).await;
    let shop = Shop {
        tenant: testkit::unique("feedshop"),
        bus: KafkaBus::connect(&stack.endpoints).unwrap(),
    };
    let t = shop.tenant.clone();
    let now = shopstream_platform::clock::Clock::now_ms(&SystemClock);
    let hour = 3_600_000;
    // Eight products, created an hour apart (the newest is the freshest).
    let products: Vec<String> = (0..8).map(|_| Uuid::now_v7().to_string()).collect();
    for (i, p) in products.iter().enumerate() {
        shop.product_created(p, now - (8 - i as i64) * hour).await;
    }
    let (alice, bob, carol) = (
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    );
    let obj = |i: usize| format!("product:{}", products[i]);

    // The first like waits until the feed knows the product.
    let first = testkit::eventually(
        "the feed knows the products",
        testkit::READY_TIMEOUT,
        || {
            let mut c = c.clone();
            let (t, alice, o) = (t.clone(), alice.clone(), obj(7));
            async move {
                publish(&mut c, &t, &alice, ActivityKind::View, &o, "v-0")
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert!(!first.replayed);
    for (i, p) in products.iter().enumerate() {
        // Every product known before going on.
        testkit::eventually("product known", testkit::READY_TIMEOUT, || {
            let mut c = c.clone();
            let (t, carol, o) = (t.clone(), carol.clone(), format!("product:{p}"));
            async move {
                publish(
                    &mut c,
                    &t,
                    &carol,
                    ActivityKind::View,
                    &o,
                    &format!("cv-{i}"),
                )
                .await
                .ok()
            }
        })
        .await;
    }

    // Alice's first page: the freshest products first (nothing else speaks
    // yet but her own view of product 7 and carol's views). Contributions
    // are computed now, the score is the stored slice's: they agree once the
    // slice has caught up with every signal.
    let agrees = |p: &GetPageResponse| {
        p.cards.len() == 3
            && p.cards.iter().all(|c| {
                let sum: f64 = c.contributions.iter().map(|x| x.value).sum();
                (sum - c.score).abs() < 1e-6 * sum
            })
    };
    // Other shoppers' signals change every slice, but only the slices of
    // those who acted are recomputed at once (the rest when they are read
    // and older than REFRESH_AFTER_MS): ask for alice's explicitly.
    let p1 = testkit::eventually(
        "alice's slice has caught up",
        testkit::READY_TIMEOUT,
        || {
            let mut c = c.clone();
            let (t, alice) = (t.clone(), alice.clone());
            async move {
                c.backfill(with_tenant(
                    BackfillRequest {
                        user_id: alice.clone(),
                        all: false,
                    },
                    &t,
                ))
                .await
                .ok()?;
                page(&mut c, &t, &alice, 3, "", true)
                    .await
                    .ok()
                    .filter(agrees)
            }
        },
    )
    .await;
    assert_eq!(p1.cards[0].item_id, products[7]);
    assert!(
        p1.cards[0]
            .contributions
            .iter()
            .any(|x| x.feature == "affinity.views"),
        "{:?}",
        p1.cards[0].contributions
    );

    // Alice follows bob; bob likes product 0 (the stalest): it moves to the
    // top of alice's feed, and its like count is pushed live.
    let mut live = redis::Client::open(stack.endpoints.redis_url.as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    let channel = format!("rt:{t}:product:{}", products[0]);
    live.subscribe(&channel).await.unwrap();
    publish(
        &mut c,
        &t,
        &alice,
        ActivityKind::Follow,
        &format!("user:{bob}"),
        "f-1",
    )
    .await
    .unwrap();
    let liked = publish(&mut c, &t, &bob, ActivityKind::Like, &obj(0), "l-1")
        .await
        .unwrap();
    let top = testkit::eventually(
        "bob's like tops alice's feed",
        testkit::READY_TIMEOUT,
        || {
            let mut c = c.clone();
            let (t, alice, p0) = (t.clone(), alice.clone(), products[0].clone());
            async move {
                page(&mut c, &t, &alice, 3, "", true)
                    .await
                    .ok()
                    .filter(|p| p.cards[0].item_id == p0)
            }
        },
    )
    .await;
    assert!(
        top.cards[0]
            .contributions
            .iter()
            .any(|x| x.feature == "social.likes" && x.value > 0.0)
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), live.on_message().next())
        .await
        .expect("a live like count")
        .unwrap();
    let ev: serde_json::Value =
        serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(ev["kind"], "product.likes");
    assert_eq!(ev["data"]["likes"], 1);

    // A replayed client id: the same activity, nothing new; the same id for
    // another object: a conflict.
    let again = publish(&mut c, &t, &bob, ActivityKind::Like, &obj(0), "l-1")
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.activity, liked.activity);
    let conflict = publish(&mut c, &t, &bob, ActivityKind::Like, &obj(1), "l-1")
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), tonic::Code::Aborted);

    // Bad input: every problem named, nothing recorded.
    for (kind, object, field) in [
        (ActivityKind::Unspecified, obj(0), "kind"),
        (
            ActivityKind::Like,
            format!("product:{}", Uuid::now_v7()),
            "object",
        ),
        (ActivityKind::Follow, format!("user:{alice}"), "object"),
        (ActivityKind::Like, "post:1".to_string(), "object"),
    ] {
        let e = publish(&mut c, &t, &alice, kind, &object, "bad")
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{object}");
        assert!(e.message().contains(field), "{}", e.message());
    }
    let timeline = c
        .list_activities(with_tenant(
            ListActivitiesRequest {
                user_id: alice.clone(),
                page_size: 1,
                cursor: String::new(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.activities[0].kind, ActivityKind::Follow as i32);
    let older = c
        .list_activities(with_tenant(
            ListActivitiesRequest {
                user_id: alice.clone(),
                page_size: 10,
                cursor: timeline.next_cursor.clone(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(older.activities.len(), 1, "one view before the follow");
    assert!(older.next_cursor.is_empty());

    // Paging: clamped sizes, cursors bound to their user and sealed.
    // The slice a like recomputed may predate the latest ranking refresh
    // (every second) for a moment; it is whole once the next one lands.
    let all = testkit::eventually("alice's whole slice", testkit::READY_TIMEOUT, || {
        let mut c = c.clone();
        let (t, alice) = (t.clone(), alice.clone());
        async move {
            page(&mut c, &t, &alice, 500, "", false)
                .await
                .ok()
                .filter(|p| p.cards.len() == 8)
        }
    })
    .await;
    assert!(all.clamped);
    assert_eq!(all.page_size, 50);
    assert_eq!(all.cards.len(), 8);
    let mut walked = vec![];
    let mut cursor = String::new();
    loop {
        let p = page(&mut c, &t, &alice, 3, &cursor, false).await.unwrap();
        walked.extend(items(&p));
        if p.next_cursor.is_empty() {
            break;
        }
        cursor = p.next_cursor;
    }
    assert_eq!(walked, items(&all), "pages of 3 walk the same order");
    let p = page(&mut c, &t, &alice, 3, "", false).await.unwrap();
    for bad in [
        page(&mut c, &t, &bob, 3, &p.next_cursor, false).await,
        page(&mut c, &t, &alice, 3, &format!("x{}", p.next_cursor), false).await,
    ] {
        let e = bad.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            e.metadata().get(ERROR_CODE_METADATA_KEY).unwrap(),
            "bad_request"
        );
    }

    // Carol buys product 0; her recommendations leave it out. Product 3
    // gets a picture (fresh again); anonymous views count for popularity.
    shop.send(
        ORDER_TOPIC,
        "order.state_changed",
        "o1",
        json!({"order_id": "o1", "user_id": carol, "state": "completed", "total_minor": 1,
            "currency": "EUR", "reservation_id": "r", "ts_ms": now, "product_ids": [products[0]]}),
    )
    .await;
    shop.send(
        MEDIA_TOPIC,
        "media.status_changed",
        "a1",
        json!({"asset_id": "a1", "owner_id": "x", "kind": "image", "status": "ready",
            "ref": format!("product:{}", products[3]), "ts_ms": now}),
    )
    .await;
    for _ in 0..3 {
        shop.send(
            ANALYTICS_TOPIC,
            "analytics.action",
            "v",
            json!({"user_id": null, "visitor_id": "v", "action": "view",
                "object_id": products[5], "ts_ms": now, "device": "desktop", "referrer": ""}),
        )
        .await;
    }
    let recs = testkit::eventually("the purchase is left out", testkit::READY_TIMEOUT, || {
        let mut c = c.clone();
        let (t, carol) = (t.clone(), carol.clone());
        async move {
            c.recommend(with_tenant(
                RecommendRequest {
                    customer_id: carol,
                    limit: 5,
                },
                &t,
            ))
            .await
            .ok()
            .map(|r| r.into_inner())
            .filter(|r| r.excluded_bought == 1)
        }
    })
    .await;
    assert_eq!(recs.items.len(), 5);
    assert!(recs.items.iter().all(|r| r.item_id != products[0]));

    // Redis loses everything of this shop: pages come from Postgres (a
    // fallback), which puts the slice back; the next page is a hit again.
    let mut redis = redis::Client::open(stack.endpoints.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("feed:{t}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
    let fallback = page(&mut c, &t, &alice, 3, "", false).await.unwrap();
    assert_eq!(fallback.source, "postgres");
    assert!(!fallback.degraded);
    testkit::eventually("the slice is back in redis", testkit::READY_TIMEOUT, || {
        let mut c = c.clone();
        let (t, alice) = (t.clone(), alice.clone());
        async move {
            page(&mut c, &t, &alice, 3, "", false)
                .await
                .ok()
                .filter(|p| p.source == "redis")
        }
    })
    .await;

    // A brand-new user's first page is computed on the spot: never empty.
    let newcomer = Uuid::now_v7().to_string();
    let first_page = page(&mut c, &t, &newcomer, 5, "", false).await.unwrap();
    assert_eq!(first_page.source, "computed");
    assert_eq!(first_page.cards.len(), 5);
    assert_eq!(
        page(&mut c, &t, &newcomer, 5, "", false)
            .await
            .unwrap()
            .source,
        "redis"
    );

    // A replay: a second feed with an empty database reads the topics from
    // the beginning under a new group. Once both have folded every event of
    // this shop and recomputed every slice, the slices are the same, to the
    // bit.
    let count = |db: String| {
        let t = t.clone();
        async move {
            let stack = testkit::stack().await;
            let pool = shopstream_platform::db::connect(&stack.endpoints.postgres_url, &db)
                .await
                .unwrap();
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM signal_log WHERE tenant = $1")
                .bind(&t)
                .fetch_one(&pool)
                .await
                .unwrap();
            n
        }
    };
    testkit::eventually(
        "the first feed folded every event",
        testkit::READY_TIMEOUT,
        || {
            let db1 = db1.clone();
            async move { (count(db1).await == SHOP_EVENTS).then_some(()) }
        },
    )
    .await;
    backfill_all(&mut c, &svc1, &t).await;
    let db2 = testkit::unique("it_feed_replay");
    let (svc2, mut c2) = start(&db2, &testkit::unique("it-feed-replay")).await;
    testkit::eventually(
        "the replay folded every event",
        testkit::READY_TIMEOUT,
        || {
            let db2 = db2.clone();
            async move { (count(db2).await == SHOP_EVENTS).then_some(()) }
        },
    )
    .await;
    backfill_all(&mut c2, &svc2, &t).await;
    let (mut s1, s2) = (stored_slices(&db1, &t).await, stored_slices(&db2, &t).await);
    // The newcomer has no signals, so only the first service holds a slice
    // for them (computed when they asked).
    s1.remove(&newcomer);
    for u in [&alice, &bob, &carol] {
        assert!(s2.contains_key(u.as_str()), "{u} has a replayed slice");
    }
    assert_eq!(s1, s2);
}
