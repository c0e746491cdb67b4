//! The gateway's DSAR side: its participant (reservation owners and room
//! messages in Redis) passes the contract in process and over its gRPC port;
//! an account on the suppression list is refused (403) on every
//! authenticated request, before the handler, and another account is not.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use shopstream_dsar::{
    Subject,
    contract::{self, Marker},
};
use shopstream_gateway::{
    dsar::{self, Participant},
    inventory::owner_key,
    rooms,
    suppression::blocked_key,
};
use shopstream_platform::{cache, config::DEFAULT_TENANT};
use shopstream_runtime::testkit;
use uuid::Uuid;

use super::{ADMIN_EMAIL, PASSWORD, start, token};

/// A shared room: the subject's and the bystander's messages sit side by side.
const ROOM: &str = "dsar-lobby";

/// What the gateway keeps of `s`, written the way its handlers write it: a
/// reservation's owner (as `POST /reservations` records it) and two room
/// messages (as a WebSocket `say` stores them).
async fn seed(redis: &cache::ConnectionManager, s: Subject) -> Vec<Marker> {
    let user = s.user_id.to_string();
    let tag = s.user_id.simple().to_string();
    let reservation = Uuid::now_v7().to_string();
    let mut r = redis.clone();
    redis::cmd("SET")
        .arg(owner_key(&s.tenant, &reservation))
        .arg(&user)
        .arg("EX")
        .arg(600)
        .query_async::<()>(&mut r)
        .await
        .unwrap();
    let now = shopstream_platform::clock::Clock::now_ms(&shopstream_platform::clock::SystemClock);
    let text = format!("hello from {tag}");
    rooms::say(redis, &s.tenant, ROOM, &user, &text, now)
        .await
        .unwrap();
    rooms::say(
        redis,
        &s.tenant,
        &format!("room-{}", &tag[..8]),
        &user,
        "again",
        now,
    )
    .await
    .unwrap();
    vec![
        Marker::new(dsar::HOLD_OWNERS, reservation),
        Marker::new(dsar::ROOM_MESSAGES, text),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_passes_the_dsar_contract_in_process() {
    let stack = testkit::stack().await;
    let redis = cache::connect(&stack.endpoints.redis_url).await.unwrap();
    let p = Participant::new(redis.clone());
    let tenant = testkit::unique("t");
    contract::check(&p, &tenant, |s| seed(&redis, s)).await;

    // Another tenant whose name extends this one's (`t` and `t:x`) is not
    // this tenant's: its keys match the pattern, but are not taken.
    let other = format!("{tenant}:x");
    let s = contract::fresh_subject(&tenant);
    let twin = Subject {
        tenant: other.clone(),
        ..s.clone()
    };
    seed(&redis, twin.clone()).await;
    use shopstream_dsar::Participant as _;
    let erased = p.erase(&s).await.unwrap();
    assert_eq!(shopstream_dsar::total(&erased.counts), 0, "{erased:?}");
    let left = p.scan(&twin).await.unwrap();
    assert_eq!(shopstream_dsar::total(&left), 3, "{left:?}");
}

/// Sign up and sign in; the account's id and access token.
async fn customer(c: &Client, base: &str) -> (String, String) {
    let email = format!("{}@example.test", testkit::unique("dsar"));
    let r = c
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (id, token(c, base, &email, PASSWORD).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suppressed_account_is_refused_and_the_participant_answers_over_grpc() {
    let sys = start().await;
    let stack = testkit::stack().await;
    let redis = cache::connect(&stack.endpoints.redis_url).await.unwrap();

    // The participant on the gateway's gRPC port.
    let client = shopstream_dsar::Client::new("gateway", &sys.gateway.grpc_url()).unwrap();
    let tenant = testkit::unique("t");
    contract::check(&client, &tenant, |s| seed(&redis, s)).await;

    // Suppression: one SADD, and every authenticated request of that account
    // is 403 before its handler runs; another account goes on as before.
    let c = Client::new();
    let base = &sys.base;
    let (erased, erased_token) = customer(&c, base).await;
    let (_, other_token) = customer(&c, base).await;
    let get = |path: &str, tok: &str| c.get(format!("{base}{path}")).bearer_auth(tok).send();
    assert_eq!(get("/me", &erased_token).await.unwrap().status(), 200);
    let mut r = redis.clone();
    redis::cmd("SADD")
        .arg(blocked_key(DEFAULT_TENANT))
        .arg(&erased)
        .query_async::<i64>(&mut r)
        .await
        .unwrap();
    // `/me` (forwarded to identity), `/orders` (its backend is not even
    // there: the handler would answer 503), `/products` (signed in or not).
    for path in ["/me", "/orders", "/products"] {
        let resp = get(path, &erased_token).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let p: Value = resp.json().await.unwrap();
        assert!(
            p["detail"].as_str().unwrap().contains("erased (DSAR)"),
            "{path}: {p}"
        );
    }
    // A WebSocket upgrade with the token as a subprotocol, too.
    {
        use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest};
        let mut req = format!("{}/ws", base.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        let protocols = format!("shopstream.v1, bearer.{erased_token}");
        req.headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(Error::Http(resp)) => assert_eq!(resp.status(), 403),
            other => panic!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
        }
    }
    assert_eq!(get("/me", &other_token).await.unwrap().status(), 200);
    // Anonymous requests are not concerned.
    let anonymous = c.get(format!("{base}/products")).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    let _ = redis::cmd("SREM")
        .arg(blocked_key(DEFAULT_TENANT))
        .arg(&erased)
        .query_async::<i64>(&mut r)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_dsar_routes_check_the_caller_and_the_body() {
    let sys = start().await;
    let c = Client::new();
    let base = &sys.base;
    let (user, customer_token) = customer(&c, base).await;
    let admin = token(&c, base, ADMIN_EMAIL, &sys.admin_password).await;
    let post = |tok: &str, body: Value| {
        c.post(format!("{base}/admin/dsar"))
            .bearer_auth(tok)
            .json(&body)
            .send()
    };
    let ok_body = json!({"subject": user, "kind": "export"});
    assert_eq!(
        post(&customer_token, ok_body.clone())
            .await
            .unwrap()
            .status(),
        403
    );
    let anonymous = c
        .post(format!("{base}/admin/dsar"))
        .json(&ok_body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    for (body, field) in [
        (
            json!({"subject": user, "kind": "delete-everything"}),
            "kind",
        ),
        (json!({"subject": "not-a-uuid", "kind": "erase"}), "subject"),
    ] {
        let r = post(&admin, body).await.unwrap();
        assert_eq!(r.status(), 422);
        let p: Value = r.json().await.unwrap();
        assert!(p.to_string().contains(field), "{p}");
    }
    let r = post(&admin, json!({"subject": user})).await.unwrap();
    assert_eq!(r.status(), 422, "a missing field");
    let bad_id = c
        .get(format!("{base}/admin/dsar/nope"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 422);
    // This gateway's compliance is a closed port: 503, not a hang.
    let down = post(&admin, ok_body).await.unwrap();
    assert_eq!(down.status(), 503);
}
