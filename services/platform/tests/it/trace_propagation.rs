//! (f) a trace id set on an HTTP request appears in the Kafka header of the
//! event that request caused.

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State, routing::post};
use shopstream_platform::{
    clock::SystemClock,
    events::{
        Envelope, EventBus, header,
        kafka::{KafkaBus, KafkaSettings},
    },
    http::{self, Ops},
    ids::SystemIdGen,
    telemetry,
};
use shopstream_runtime::testkit;

#[derive(Clone)]
struct AppState {
    bus: Arc<dyn EventBus>,
    topic: String,
}

async fn place_order(State(s): State<AppState>) -> &'static str {
    let e = Envelope::new(
        "order.created",
        1,
        "default",
        "order-1",
        &serde_json::json!({"order_id": "order-1"}),
        &SystemClock,
        &SystemIdGen,
    )
    .unwrap();
    s.bus.publish(&s.topic, &e).await.unwrap();
    "accepted"
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_id_from_http_request_reaches_the_kafka_header() {
    telemetry::init("it", telemetry::LogFormat::Pretty, None).unwrap();
    let stack = testkit::stack().await;
    let bus: Arc<dyn EventBus> =
        Arc::new(KafkaBus::new(KafkaSettings::new(&stack.endpoints.kafka_brokers)).unwrap());
    let topic = testkit::unique("it_trace");
    bus.ensure_topic(&topic, 1).await.unwrap();

    let app = Router::new()
        .route("/orders", post(place_order))
        .with_state(AppState {
            bus: bus.clone(),
            topic: topic.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listener,
        http::router(app, Ops::new("it")),
        shutdown.clone(),
    ));

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/orders"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let mut sub = bus
        .subscribe(&format!("{topic}-g"), std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mut got = None;
    for _ in 0..60 {
        if let Some(d) = sub.next(Duration::from_secs(1)).await.unwrap() {
            got = Some(d);
            break;
        }
    }
    sub.close().await.unwrap();
    let d = got.expect("the event arrived");
    let tp = &d.envelope.headers[header::TRACEPARENT];
    assert!(tp.contains(trace_id), "traceparent header {tp}");
    assert_eq!(d.envelope.trace_id().as_deref(), Some(trace_id));
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
