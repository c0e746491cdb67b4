//! Live order updates over real processes: the stack's gateway (SSE) and a
//! second gateway process (WebSocket) both get every step of one order, in
//! order, through orders' outbox, `order.lifecycle`, notifications and the
//! Redis fan-out; reconnecting with the last sequence number seen misses
//! nothing; no token is a 401 and another user's order a 404. Runs on the
//! checkout test's stack (see `checkout.rs`).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shopstream_runtime::testkit;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

/// How long any live step may take to arrive.
const WITHIN: Duration = Duration::from_secs(60);

/// One SSE event: (id, data).
type SseEvent = (u64, Value);

/// Read `GET {url}` as Server-Sent Events until `done` says so.
pub async fn sse(
    url: &str,
    token: &str,
    last_event_id: Option<u64>,
    done: impl Fn(&[SseEvent]) -> bool,
) -> Vec<SseEvent> {
    let mut req = reqwest::Client::new().get(url).bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut sse = shopstream_labs::live::SseParser::default();
    let mut events = Vec::new();
    tokio::time::timeout(WITHIN, async {
        while !done(&events) {
            let chunk = resp.chunk().await.unwrap().expect("the stream stays open");
            events.extend(sse.push(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("SSE {url}: only {events:?} within {WITHIN:?}"));
    events
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open `GET /ws` with the token as a `bearer.` subprotocol entry.
pub async fn ws_connect(base: &str, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("{}/ws", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    let protocols = match token {
        Some(t) => format!("shopstream.v1, bearer.{t}"),
        None => "shopstream.v1".to_string(),
    };
    req.headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

pub async fn ws_send(ws: &mut Ws, msg: Value) {
    ws.send(tungstenite::Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message from the gateway.
pub async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WITHIN, ws.next())
            .await
            .expect("a message within the timeout")
            .expect("the socket stays open")
            .unwrap();
        if let tungstenite::Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Events from `ws` until `done` says so (other messages are checked and skipped).
pub async fn ws_events(ws: &mut Ws, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    while !done(&events) {
        let m = ws_next(ws).await;
        match m["type"].as_str() {
            Some("event") => events.push(m),
            Some("subscribed") => {}
            _ => panic!("unexpected message {m}"),
        }
    }
    events
}

fn ended(state: &Value) -> bool {
    matches!(state.as_str(), Some("completed" | "cancelled"))
}

/// The checks. `gateway_a` is the stack's gateway, `gateway_b` a second
/// gateway process; `place` places one order for `buyer` and returns its id.
pub async fn two_gateways_see_every_step(
    gateway_a: &str,
    gateway_b: &str,
    buyer: &str,
    stranger: &str,
    order_id: &str,
    expected: impl std::future::Future<Output = Vec<Value>>,
) {
    let stream_url = format!("{gateway_a}/orders/{order_id}/stream");
    let channel = format!("order:{order_id}");

    // Subscribe on both gateways while the saga runs.
    let sse_task = {
        let (url, buyer) = (stream_url.clone(), buyer.to_string());
        tokio::spawn(async move {
            sse(&url, &buyer, None, |e| {
                e.last().is_some_and(|(_, d)| ended(&d["state"]))
            })
            .await
        })
    };
    let mut ws = ws_connect(gateway_b, Some(buyer))
        .await
        .expect("WebSocket upgrade");
    ws_send(&mut ws, json!({"type": "subscribe", "channel": channel})).await;
    let ws_got = ws_events(&mut ws, |e| {
        e.last().is_some_and(|m| ended(&m["data"]["state"]))
    })
    .await;
    let sse_got = sse_task.await.unwrap();

    // Both saw exactly the steps orders recorded, in order, each once.
    let expected = expected.await;
    let want: Vec<(u64, Value)> = expected
        .iter()
        .map(|s| (s["seq"].as_u64().unwrap(), s.clone()))
        .collect();
    assert!(
        want.len() >= 4,
        "a completed saga has several steps: {want:?}"
    );
    assert_eq!(sse_got, want, "SSE on the first gateway");
    let ws_pairs: Vec<(u64, Value)> = ws_got
        .iter()
        .map(|m| {
            assert_eq!(m["channel"], channel);
            (m["seq"].as_u64().unwrap(), m["data"].clone())
        })
        .collect();
    assert_eq!(ws_pairs, want, "WebSocket on the second gateway");

    // Both gateways delivered steps from the fan-out, not only re-reads.
    for gateway in [gateway_a, gateway_b] {
        let delivered =
            testkit::metric(gateway, "shopstream_live_events_delivered_total", &[]).await;
        assert!(delivered > 0.0, "{gateway} delivered no live event");
    }

    // A reconnect with the last sequence number seen misses nothing.
    let n = want.len() as u64;
    let resumed = sse(&stream_url, buyer, Some(1), |e| e.len() as u64 == n - 1).await;
    assert_eq!(resumed, want[1..].to_vec(), "SSE resumed after step 1");
    let mut again = ws_connect(gateway_b, Some(buyer)).await.unwrap();
    ws_send(
        &mut again,
        json!({"type": "resume", "channel": channel, "after": 2}),
    )
    .await;
    let rest = ws_events(&mut again, |e| e.len() as u64 == n - 2).await;
    let rest: Vec<u64> = rest.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        rest,
        (3..=n).collect::<Vec<_>>(),
        "WebSocket resumed after step 2"
    );

    // Bad input on a live socket: an error frame, and the socket stays.
    ws_send(&mut again, json!({"type": "shout"})).await;
    assert_eq!(ws_next(&mut again).await["code"], "bad_message");
    ws_send(
        &mut again,
        json!({"type": "subscribe", "channel": "cart:1"}),
    )
    .await;
    assert_eq!(ws_next(&mut again).await["code"], "unknown_channel");
    ws_send(&mut again, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut again).await["type"], "pong");
    // A frame over the limit closes it with 1009.
    let big = "x".repeat(32 * 1024);
    ws_send(&mut again, json!({"type": "ping", "pad": big})).await;
    let closed = loop {
        match tokio::time::timeout(WITHIN, again.next()).await.unwrap() {
            Some(Ok(tungstenite::Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(closed, 1009);

    // A chat room across the two gateways: said on one, heard on the other,
    // numbered, and only the last 50 kept for a late joiner.
    let room = format!("room:e2e-{}", &order_id[order_id.len() - 8..]);
    let mut listener = ws_connect(gateway_a, Some(stranger)).await.unwrap();
    ws_send(&mut listener, json!({"type": "subscribe", "channel": room})).await;
    assert_eq!(ws_next(&mut listener).await["type"], "subscribed");
    let mut speaker = ws_connect(gateway_b, Some(buyer)).await.unwrap();
    for i in 1..=52 {
        ws_send(
            &mut speaker,
            json!({"type": "say", "channel": room, "text": format!("hello {i}")}),
        )
        .await;
        let said = ws_next(&mut speaker).await;
        assert_eq!(
            (said["type"].as_str(), said["seq"].as_u64()),
            (Some("said"), Some(i)),
            "{said}"
        );
    }
    let heard = ws_events(&mut listener, |e| e.len() == 52).await;
    let texts: Vec<&str> = heard
        .iter()
        .map(|m| m["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.first(), Some(&"hello 1"));
    assert_eq!(texts.last(), Some(&"hello 52"));
    assert!(
        heard.iter().zip(1..).all(|(m, i)| m["seq"] == i),
        "in order, each once"
    );
    let mut late = ws_connect(gateway_a, Some(buyer)).await.unwrap();
    ws_send(&mut late, json!({"type": "subscribe", "channel": room})).await;
    let kept = ws_events(&mut late, |e| e.len() == 50).await;
    assert_eq!(kept[0]["seq"], 3, "the room keeps the last 50");
    ws_send(
        &mut speaker,
        json!({"type": "say", "channel": room, "text": "   "}),
    )
    .await;
    assert_eq!(ws_next(&mut speaker).await["code"], "bad_message");

    // Long-poll: nothing after the last step → empty at the deadline; too long a wait → 400.
    let http = reqwest::Client::new();
    let poll = |q: String| {
        http.get(format!("{gateway_a}/orders/{order_id}/events?{q}"))
            .bearer_auth(buyer)
            .send()
    };
    let r = poll(format!("after={n}&wait_ms=200")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["steps"], json!([]));
    let r = poll(format!("after={}&wait_ms=200", n - 1)).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["steps"][0]["seq"], n);
    let r = poll("wait_ms=30001".into()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // No token → 401; someone else's order → 404, on every transport.
    let r = http.get(&stream_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&stream_url)
        .bearer_auth(stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    match ws_connect(gateway_b, None).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!(
            "expected a 401 upgrade refusal, got {:?}",
            other.map(|_| "a socket")
        ),
    }
    let mut theirs = ws_connect(gateway_b, Some(stranger)).await.unwrap();
    ws_send(
        &mut theirs,
        json!({"type": "subscribe", "channel": channel}),
    )
    .await;
    let m = ws_next(&mut theirs).await;
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str()),
        (Some("error"), Some("not_found")),
        "{m}"
    );
}
