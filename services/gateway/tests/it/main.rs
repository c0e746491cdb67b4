//! The gateway end to end: identity, catalog and gateway served in-process
//! against the real test stack, driven over HTTP like a browser or the CLI.
//! `checkout` adds in-process fakes of the orders, inventory and payments
//! backends; `dsar` covers the DSAR participant and suppression;
//! `product_cache` follows edits through the cache; `temporal_outage` kills a private Temporal under a real orders service
//! while orders are placed.

mod checkout;
mod dsar;
mod product_cache;
mod search;
mod temporal_outage;

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use shopstream_platform::config::ServiceConfig;
use shopstream_runtime::testkit;

const ADMIN_EMAIL: &str = "admin@shopstream.test";
const PASSWORD: &str = "correct horse battery staple";

struct System {
    base: String,
    catalog_http: String,
    product_topic: String,
    admin_password: String,
    // Stopped when the system is dropped.
    gateway: testkit::RunningService,
    _backends: [testkit::ServiceProcess; 2],
}

/// A loopback listener on a free port (for the in-process fakes).
async fn listener() -> (tokio::net::TcpListener, std::net::SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// The kit's config with the small body limit these tests probe.
fn limited(mut service: ServiceConfig) -> ServiceConfig {
    service.body_limit_bytes = 64 * 1024;
    service
}

async fn start() -> System {
    start_with(|_| {}).await
}

/// Identity, catalog and the gateway; `configure` adjusts the gateway's config
/// (e.g. to point it at fake backends) before it starts.
async fn start_with(configure: impl FnOnce(&mut shopstream_gateway::Config)) -> System {
    // Identity and catalog run as `shopstream serve NAME`: the gateway links
    // no service crate, not even in its tests.
    let identity = testkit::spawn_process(
        "identity",
        &[
            (
                "SHOPSTREAM_IDENTITY_DATABASE",
                testkit::unique("it_gw_identity"),
            ),
            (
                "SHOPSTREAM_IDENTITY_KEY_DIR",
                testkit::stack_dir()
                    .join("keys")
                    .join(testkit::unique("gw"))
                    .display()
                    .to_string(),
            ),
            ("SHOPSTREAM_LOGIN_LIMIT", "50".into()),
            ("SHOPSTREAM_BODY_LIMIT_BYTES", (64 * 1024).to_string()),
        ],
    )
    .await;
    let admin_password =
        shopstream_runtime::admin::ensure_admin(&identity.grpc, Some("default"), ADMIN_EMAIL)
            .await
            .unwrap()
            .expect("a new admin account");
    let catalog = testkit::spawn_process(
        "catalog",
        &[
            (
                "SHOPSTREAM_CATALOG_DATABASE",
                testkit::unique("it_gw_catalog"),
            ),
            ("SHOPSTREAM_BODY_LIMIT_BYTES", (64 * 1024).to_string()),
        ],
    )
    .await;

    let (identity_http, catalog_grpc, catalog_http) = (
        identity.http.clone(),
        catalog.grpc.clone(),
        catalog.http.clone(),
    );
    let product_topic = testkit::unique("it_gw_product_events");
    let topic = product_topic.clone();
    let gateway = testkit::spawn_service::<shopstream_gateway::Server>(move |service| {
        let mut cfg = shopstream_gateway::Config {
            service: limited(service),
            identity_http,
            catalog_grpc,
            catalog_http,
            // Nothing listens there unless `configure` says otherwise.
            inventory_grpc: "http://127.0.0.1:9".into(),
            orders_grpc: "http://127.0.0.1:9".into(),
            payments_grpc: "http://127.0.0.1:9".into(),
            payments_http: "http://127.0.0.1:9".into(),
            search_grpc: "http://127.0.0.1:9".into(),
            analytics_grpc: "http://127.0.0.1:9".into(),
            media_grpc: "http://127.0.0.1:9".into(),
            feed_grpc: "http://127.0.0.1:9".into(),
            compliance_grpc: "http://127.0.0.1:9".into(),
            upstream_timeout: Duration::from_secs(5),
            card_ttl_s: 30,
            product_topic: topic,
            media_topic: testkit::unique("it_gw_media_events"),
            cache_group: testkit::unique("it_gw_cache"),
            live: Default::default(),
            analytics_buffer: shopstream_gateway::analytics::BUFFER,
            clock: Default::default(),
        };
        configure(&mut cfg);
        cfg
    })
    .await;
    System {
        base: gateway.http.clone(),
        catalog_http: catalog.http.clone(),
        product_topic,
        admin_password,
        gateway,
        _backends: [catalog, identity],
    }
}

async fn token(c: &Client, base: &str, email: &str, password: &str) -> String {
    let r = c
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn product(slug: &str, price: i64) -> Value {
    json!({
        "slug": slug,
        "title": format!("Test {slug}"),
        "description": "A product made by the gateway test.",
        "category": "home",
        "regions": ["eu"],
        "skus": [{"sku_id": format!("{}-1", slug.to_uppercase()), "name": "One size",
                  "price": {"amount_minor": price, "currency": "EUR"}, "stock": 5}]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_admin_catalog_cards_and_errors_through_the_gateway() {
    let s = start().await;
    let c = Client::new();
    let base = &s.base;

    // signup → login → me, all through the gateway.
    let r = c
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": "shopper@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let user = token(&c, base, "shopper@example.com", PASSWORD).await;
    let r = c
        .get(format!("{base}/me"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["email"],
        "shopper@example.com"
    );

    // Admin routes: 401 without a token, 403 for a customer, a forged header does not help.
    let r = c
        .post(format!("{base}/admin/products"))
        .json(&product("lamp", 1999))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(format!("{base}/admin/products"))
        .bearer_auth(&user)
        .header("x-shopstream-admin", "true")
        .json(&product("lamp", 1999))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // The admin creates products.
    let admin = token(&c, base, ADMIN_EMAIL, &s.admin_password).await;
    let mut ids = Vec::new();
    for (slug, price) in [("lamp", 1999), ("rug", 8900), ("vase", 2500)] {
        let r = c
            .post(format!("{base}/admin/products"))
            .bearer_auth(&admin)
            .json(&product(slug, price))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    // Validation errors list the fields.
    let r = c
        .post(format!("{base}/admin/products"))
        .bearer_auth(&admin)
        .json(&json!({"slug": "bad", "title": "", "category": "home", "regions": [], "skus": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert!(p["errors"].as_array().unwrap().len() >= 2, "{p}");

    // Edit with the current version succeeds; the same stale version again is 409.
    let r = c
        .patch(format!("{base}/admin/products/{}", ids[0]))
        .bearer_auth(&admin)
        .header("if-match", "\"1\"")
        .json(&json!({"title": "Brass desk lamp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = c
        .patch(format!("{base}/admin/products/{}", ids[0]))
        .bearer_auth(&admin)
        .header("if-match", "\"1\"")
        .json(&json!({"title": "Lost update"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Public reads go over gRPC.
    let r = c
        .get(format!("{base}/products/{}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["title"], "Brass desk lamp");
    assert_eq!(p["version"], 2);
    let r = c
        .get(format!(
            "{base}/products?category=home&sort=price_asc&limit=2"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    let titles: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, vec!["Brass desk lamp", "Test vase"]);
    let next = page["next_cursor"].as_str().expect("a second page");
    let r = c
        .get(format!(
            "{base}/products?category=home&sort=price_asc&limit=2&cursor={next}"
        ))
        .send()
        .await
        .unwrap();
    let page2: Value = r.json().await.unwrap();
    assert_eq!(page2["items"][0]["title"], "Test rug");
    let r = c
        .get(format!(
            "{base}/products/{}",
            "01234567-89ab-7def-8123-456789abcdef"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c
        .get(format!("{base}/products?sort=sideways"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Product cards: a miss fills the cache, the next call hits it.
    let url = format!("{base}/bff/product-cards?ids={},{},nope", ids[1], ids[2]);
    let first = testkit::get_json(&c, &url).await;
    assert_eq!(first["cards"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(first["missing"], json!(["nope"]));
    let second = testkit::get_json(&c, &url).await;
    assert_eq!(first["cards"], second["cards"]);
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hits = metrics
        .lines()
        .find(|l| {
            l.starts_with("shopstream_product_cache_lookups_total{")
                && l.contains(r#"result="hit""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("hit counter");
    assert!(hits >= 2.0, "{hits}");

    // Edge errors are problem+json.
    let r = c.get(format!("{base}/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c
        .post(format!("{base}/auth/login"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let big = "x".repeat(200 * 1024);
    // A client of its own: the gateway answers 413 without reading the body
    // and closes that connection, and a pooled connection closed under a
    // client fails its next request (this test's `/openapi.json`, once in CI).
    let r = Client::new()
        .post(format!("{base}/auth/signup"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The API documents itself.
    let doc = testkit::get_json(&c, &format!("{base}/openapi.json")).await;
    for path in [
        "/auth/login",
        "/products/{id}",
        "/bff/product-cards",
        "/admin/products/{id}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    let r = c.get(format!("{base}/docs/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text().await.unwrap().contains("swagger"),
        "Swagger UI page"
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A new customer's access token.
async fn new_customer(base: &str, email: &str) -> String {
    let c = Client::new();
    let r = c
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    token(&c, base, email, PASSWORD).await
}

/// `GET /ws` with the token as a `bearer.` subprotocol entry; the gateway
/// must select `shopstream.v1` (browsers require it when they offered one).
async fn ws_connect(base: &str, tok: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}/ws", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    let protocols = format!("shopstream.v1, bearer.{tok}");
    req.headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "shopstream.v1");
    ws
}

/// The close frame `ws` gets (code, reason), other frames skipped; panics
/// when none comes within the kit's timeout.
async fn close_frame(ws: &mut Ws) -> (u16, String) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(testkit::READY_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => {
                    break (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame")
}

/// A WebSocket whose client says nothing for the idle limit is closed with a
/// reason; one that keeps talking is not, and a room message reaches it.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_websocket_is_closed_and_a_talking_one_is_kept() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let s = start_with(|cfg| cfg.live.idle = Duration::from_millis(1500)).await;
    let tok = new_customer(&s.base, "idler@example.com").await;
    let mut idle = ws_connect(&s.base, &tok).await;
    let mut talker = ws_connect(&s.base, &tok).await;
    let room = json!({"type": "subscribe", "channel": "room:idle-test"}).to_string();
    talker.send(Message::Text(room.into())).await.unwrap();
    // The talker speaks three times per idle limit; the idle socket never does.
    let talking = async {
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            let ping = json!({"type": "ping"}).to_string();
            talker.send(Message::Text(ping.into())).await.unwrap();
        }
    };
    let closed = tokio::select! {
        c = close_frame(&mut idle) => c,
        () = talking => unreachable!("talking never ends"),
    };
    assert_eq!(closed, (1000, "idle timeout".to_string()));

    // The talker is still open: it hears its own room message.
    let say = json!({"type": "say", "channel": "room:idle-test", "text": "still here"});
    talker
        .send(Message::Text(say.to_string().into()))
        .await
        .unwrap();
    let heard = tokio::time::timeout(testkit::READY_TIMEOUT, async {
        loop {
            if let Some(Ok(Message::Text(t))) = talker.next().await {
                let m: Value = serde_json::from_str(t.as_str()).unwrap();
                if m["type"] == "event" {
                    break m;
                }
            }
        }
    })
    .await
    .expect("the room message arrives");
    assert_eq!(heard["data"]["text"], "still here");
}

/// The gateway's clock, moved forward at will (through the Clock port).
struct Ahead(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl shopstream_platform::clock::Clock for Ahead {
    fn now_ms(&self) -> i64 {
        use shopstream_platform::clock::SystemClock;
        SystemClock.now_ms() + self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A live socket is closed with 1008 and a reason when its access token
/// expires (the gateway's clock is moved to two seconds before the expiry).
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_is_closed_when_its_token_expires() {
    use std::sync::{Arc, atomic::AtomicI64};

    let offset = Arc::new(AtomicI64::new(0));
    let clock = Arc::new(Ahead(offset.clone()));
    let s = start_with(|cfg| cfg.clock = shopstream_gateway::config::TimeSource(clock)).await;
    let tok = new_customer(&s.base, "expiring@example.com").await;
    // The token's exp, from its payload (the middle part, base64url JSON).
    let payload = tok.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&decode_b64url(payload)).unwrap();
    let exp_ms = claims["exp"].as_i64().unwrap() * 1000;
    let now = shopstream_platform::clock::Clock::now_ms(&shopstream_platform::clock::SystemClock);
    offset.store(exp_ms - now - 2_000, std::sync::atomic::Ordering::Relaxed);

    let mut ws = ws_connect(&s.base, &tok).await;
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("expired"), "{reason}");
}

/// base64url without padding, as in a JWT.
fn decode_b64url(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == b).expect("base64url") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A product view through the gateway becomes an `analytics.action` on
/// `analytics.raw` with the visitor's cookie id, the device class and the
/// referrer; a visitor without the cookie is given one.
#[tokio::test(flavor = "multi_thread")]
async fn a_product_view_is_published_on_analytics_raw() {
    use shopstream_gateway::analytics::{Action, ActionEvent};
    use shopstream_platform::events::kafka::KafkaBus;

    let s = start().await;
    let c = Client::new();
    let admin = token(&c, &s.base, ADMIN_EMAIL, &s.admin_password).await;
    let r = c
        .post(format!("{}/admin/products", s.base))
        .bearer_auth(&admin)
        .json(&product("analytics-lamp", 1500))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // No cookie yet: the answer sets one.
    let r = c
        .get(format!("{}/products/{id}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("ss_vid=") && set.contains("HttpOnly"),
        "{set}"
    );

    let visitor = uuid::Uuid::now_v7().to_string();
    let r = c
        .get(format!("{}/products/{id}", s.base))
        .header("cookie", format!("ss_vid={visitor}"))
        .header(
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
        )
        .header("referer", "https://example.com/deals")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "the cookie is kept"
    );

    // Read analytics.raw as the analytics service will.
    let stack = testkit::stack().await;
    let bus = KafkaBus::connect(&stack.endpoints).unwrap();
    let mut sub = bus
        .subscribe(&testkit::unique("it-analytics"), &["analytics.raw".into()])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + testkit::READY_TIMEOUT;
    let event = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no analytics event for visitor {visitor}"
        );
        if let Some(d) = sub.next(Duration::from_millis(500)).await.unwrap()
            && d.envelope.key == visitor
        {
            assert_eq!(d.envelope.event_type, "analytics.action");
            break d.envelope.json::<ActionEvent>().unwrap();
        }
    };
    sub.close().await.unwrap();
    assert_eq!(event.action, Action::View);
    assert_eq!(event.object_id, id);
    assert_eq!(event.visitor_id, visitor);
    assert_eq!(event.device, "mobile");
    // Only the host: a full URL is free text (ADR 0012).
    assert_eq!(event.referrer, "example.com");
    assert_eq!(event.user_id, None);
}
