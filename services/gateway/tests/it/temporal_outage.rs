//! Temporal killed while orders are being placed: the invariant "no client
//! that was told its order failed is ever charged for it". The gateway runs
//! in-process, orders as `shopstream serve orders` against a Temporal of
//! this test's own (the shared stack's Temporal serves other tests and is
//! never touched), and orders' catalog, inventory and payments are fakes
//! here that book every capture in a ledger.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::Duration,
};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use shopstream_platform::{config::Ports, grpc};
use shopstream_proto::{
    catalog::v1::{
        GetProductRequest, GetProductResponse, ListProductsRequest, ListProductsResponse, Product,
        Sku, UpdateStockRequest, UpdateStockResponse,
        catalog_service_server::{CatalogService, CatalogServiceServer},
    },
    common::v1::Money,
    inventory::v1::{
        CommitRequest, CommitResponse, GetStockRequest, GetStockResponse, ReleaseRequest,
        ReleaseResponse, ReservationState, ReserveRequest, ReserveResponse, SetStockRequest,
        SetStockResponse,
        inventory_service_server::{InventoryService, InventoryServiceServer},
    },
    payments::v1::{
        CancelRequest, CancelResponse, CaptureRequest, CaptureResponse, CreateIntentRequest,
        CreateIntentResponse, GetPaymentRequest, GetPaymentResponse, Payment, PaymentStatus,
        RefundRequest, RefundResponse,
        get_payment_request::By,
        payments_service_server::{PaymentsService, PaymentsServiceServer},
    },
};
use shopstream_runtime::{Kind, Stack, testkit};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, service::Routes};

use super::{PASSWORD, listener, start_with, token};

const PRODUCT: &str = "p-lamp";
const SKU: &str = "LAMP-1";
const PRICE_MINOR: i64 = 1999;

/// The gateway's default upstream deadline (`SHOPSTREAM_UPSTREAM_TIMEOUT_MS`).
const GATEWAY_UPSTREAM_TIMEOUT: Duration = Duration::from_millis(3_000);
/// Placements answered before the kill, during the outage, after the restart.
const BEFORE: usize = 4;
const DURING: usize = 6;
const AFTER: usize = 3;
/// Clients placing orders at once.
const PLACERS: usize = 3;
/// Bound on every wait of this test (a saga, a restart, a sweep).
const SETTLE: Duration = Duration::from_secs(120);

/// Catalog: one product with one SKU.
struct Catalog;

#[tonic::async_trait]
impl CatalogService for Catalog {
    async fn get_product(
        &self,
        req: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        if req.get_ref().product_id != PRODUCT {
            return Err(Status::not_found("no such product"));
        }
        Ok(Response::new(GetProductResponse {
            product: Some(Product {
                product_id: PRODUCT.into(),
                skus: vec![Sku {
                    sku_id: SKU.into(),
                    product_id: PRODUCT.into(),
                    price: Some(eur(PRICE_MINOR)),
                    stock: 1_000,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }))
    }

    async fn list_products(
        &self,
        _: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        Err(Status::unimplemented("orders never lists"))
    }

    async fn update_stock(
        &self,
        _: Request<UpdateStockRequest>,
    ) -> Result<Response<UpdateStockResponse>, Status> {
        Err(Status::unimplemented("orders never updates stock"))
    }
}

/// Inventory: every reservation is held, committed and released at once.
struct Inventory;

#[tonic::async_trait]
impl InventoryService for Inventory {
    async fn reserve(
        &self,
        req: Request<ReserveRequest>,
    ) -> Result<Response<ReserveResponse>, Status> {
        Ok(Response::new(ReserveResponse {
            reservation_id: format!("res-{}", req.get_ref().order_id),
            state: ReservationState::Held as i32,
            expires_at_ms: 4_102_444_800_000,
        }))
    }

    async fn release(
        &self,
        _: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        Ok(Response::new(ReleaseResponse {
            state: ReservationState::Released as i32,
        }))
    }

    async fn commit(&self, _: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        Ok(Response::new(CommitResponse {
            state: ReservationState::Committed as i32,
        }))
    }

    async fn get_stock(
        &self,
        _: Request<GetStockRequest>,
    ) -> Result<Response<GetStockResponse>, Status> {
        Err(Status::unimplemented("the saga never reads stock"))
    }

    async fn set_stock(
        &self,
        _: Request<SetStockRequest>,
    ) -> Result<Response<SetStockResponse>, Status> {
        Err(Status::unimplemented("the saga never sets stock"))
    }
}

/// Payments: every card is good; the ledger books each capture (and
/// refund) by order id, once per idempotency key, as the real one does.
#[derive(Default)]
struct Ledger {
    /// order id → payment
    payments: Mutex<BTreeMap<String, Payment>>,
    /// capture idempotency keys seen, per order id
    captures: Mutex<BTreeMap<String, BTreeSet<String>>>,
    refunds: Mutex<BTreeSet<String>>,
}

impl Ledger {
    fn lock_payments(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Payment>> {
        self.payments.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn by_payment_id(&self, id: &str) -> Result<Payment, Status> {
        self.lock_payments()
            .values()
            .find(|p| p.payment_id == id)
            .cloned()
            .ok_or_else(|| Status::not_found("no such payment"))
    }

    fn set_status(&self, p: &Payment, status: PaymentStatus) -> Payment {
        let mut all = self.lock_payments();
        let stored = all.get_mut(&p.order_id).expect("a known payment");
        stored.status = status as i32;
        stored.clone()
    }

    /// Orders charged (captured, not refunded), with how many distinct
    /// captures each had.
    fn charged(&self) -> BTreeMap<String, usize> {
        let refunded = self.refunds.lock().unwrap().clone();
        self.captures
            .lock()
            .unwrap()
            .iter()
            .filter(|(order, _)| !refunded.contains(*order))
            .map(|(order, keys)| (order.clone(), keys.len()))
            .collect()
    }
}

/// The ledger as the payments gRPC service.
struct Payments(Arc<Ledger>);

impl std::ops::Deref for Payments {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.0
    }
}

#[tonic::async_trait]
impl PaymentsService for Payments {
    async fn create_intent(
        &self,
        req: Request<CreateIntentRequest>,
    ) -> Result<Response<CreateIntentResponse>, Status> {
        let r = req.into_inner();
        let payment = self
            .lock_payments()
            .entry(r.order_id.clone())
            .or_insert_with(|| Payment {
                payment_id: format!("pay-{}", r.order_id),
                order_id: r.order_id.clone(),
                status: PaymentStatus::Authorized as i32,
                amount: r.amount.clone(),
                ..Default::default()
            })
            .clone();
        Ok(Response::new(CreateIntentResponse {
            payment: Some(payment),
            ..Default::default()
        }))
    }

    async fn capture(
        &self,
        req: Request<CaptureRequest>,
    ) -> Result<Response<CaptureResponse>, Status> {
        let r = req.into_inner();
        let p = self.by_payment_id(&r.payment_id)?;
        self.captures
            .lock()
            .unwrap()
            .entry(p.order_id.clone())
            .or_default()
            .insert(r.idempotency_key);
        Ok(Response::new(CaptureResponse {
            payment: Some(self.set_status(&p, PaymentStatus::Captured)),
        }))
    }

    async fn refund(
        &self,
        req: Request<RefundRequest>,
    ) -> Result<Response<RefundResponse>, Status> {
        let p = self.by_payment_id(&req.get_ref().payment_id)?;
        self.refunds.lock().unwrap().insert(p.order_id.clone());
        Ok(Response::new(RefundResponse {
            payment: Some(self.set_status(&p, PaymentStatus::Refunded)),
            refund_id: format!("re-{}", p.order_id),
        }))
    }

    async fn cancel(
        &self,
        req: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        let r = req.into_inner();
        let p = match r.payment_id.as_str() {
            "" => self
                .lock_payments()
                .get(&r.order_id)
                .cloned()
                .ok_or_else(|| Status::not_found("no payment for the order"))?,
            id => self.by_payment_id(id)?,
        };
        if p.status == PaymentStatus::Captured as i32 {
            return Err(Status::failed_precondition("captured: refund it"));
        }
        Ok(Response::new(CancelResponse {
            payment: Some(self.set_status(&p, PaymentStatus::Cancelled)),
        }))
    }

    async fn get_payment(
        &self,
        req: Request<GetPaymentRequest>,
    ) -> Result<Response<GetPaymentResponse>, Status> {
        let p = match req.into_inner().by {
            Some(By::PaymentId(id)) => self.by_payment_id(&id)?,
            Some(By::OrderId(id)) => self
                .lock_payments()
                .get(&id)
                .cloned()
                .ok_or_else(|| Status::not_found("no payment for the order"))?,
            None => return Err(Status::invalid_argument("by is required")),
        };
        Ok(Response::new(GetPaymentResponse { payment: Some(p) }))
    }
}

fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "EUR".into(),
    }
}

/// A Temporal dev server of this test's own, in a state directory of its
/// own on free ports. Killed (by its pid) and its state removed on drop,
/// whatever the test's outcome.
struct PrivateTemporal {
    stack: Stack,
    url: String,
}

impl PrivateTemporal {
    /// The dev server once died while starting (a Go panic, 2026-12-07),
    /// plausibly because a port picked here was taken before it bound it.
    /// This test is about orders while Temporal is down, not about how
    /// Temporal starts: a start that fails is said on stderr, with the log's
    /// first error lines, and tried again on new ports, at most three times.
    async fn start() -> PrivateTemporal {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let mut failed = Vec::new();
        for attempt in 1..=3 {
            let ports = Ports {
                temporal: free(),
                temporal_http: free(),
                temporal_metrics: free(),
                ..Ports::TEST
            };
            let root = testkit::stack_dir().with_file_name(testkit::unique("temporal-outage"));
            let stack = Stack::new(&root, ports, testkit::shopstream_bin());
            let url = stack.endpoints().temporal_url;
            let t = PrivateTemporal { stack, url };
            match t.stack.start_component(Kind::Temporal).await {
                Ok(_) => return t,
                Err(e) => {
                    let log = std::fs::read_to_string(root.join("logs").join("temporal.log"))
                        .unwrap_or_default();
                    let first: Vec<&str> = log
                        .lines()
                        .filter(|l| l.contains("panic") || l.contains("rror"))
                        .take(5)
                        .collect();
                    eprintln!(
                        "a private temporal, attempt {attempt}, did not start: {e}\nits log's first errors:\n{}",
                        first.join("\n")
                    );
                    failed.push(e.to_string());
                }
            }
        }
        panic!("a private temporal did not start in three attempts: {failed:?}");
    }
}

impl Drop for PrivateTemporal {
    fn drop(&mut self) {
        if let Some(pid) = self.stack.running_pid(Kind::Temporal) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(self.stack.root());
    }
}

/// Serve the fakes on one gRPC listener; its URL and the ledger.
async fn start_fakes(stop: &CancellationToken) -> (String, Arc<Ledger>) {
    let ledger = Arc::new(Ledger::default());
    let (l, a) = listener().await;
    let routes = Routes::new(CatalogServiceServer::new(Catalog))
        .add_service(InventoryServiceServer::new(Inventory))
        .add_service(PaymentsServiceServer::new(Payments(ledger.clone())));
    tokio::spawn(grpc::serve(l, routes, Duration::from_secs(5), stop.clone()));
    (format!("http://{a}"), ledger)
}

/// Where Temporal was when a placement was sent.
const UP: u8 = 0;
const DOWN: u8 = 1;
const BACK: u8 = 2;

/// One `POST /orders` and its answer.
#[derive(Debug, Clone)]
struct Placed {
    key: String,
    /// Temporal's phase when it was sent and when it was answered.
    sent: u8,
    answered: u8,
    status: StatusCode,
    location: Option<String>,
    body: Value,
}

fn order_body() -> Value {
    json!({
        "items": [{"product_id": PRODUCT, "sku_id": SKU, "quantity": 1}],
        "payment_method": "pm_card_visa",
    })
}

async fn post_order(
    c: &Client,
    base: &str,
    tok: &str,
    key: &str,
) -> (StatusCode, Option<String>, Value) {
    let r = c
        .post(format!("{base}/orders"))
        .bearer_auth(tok)
        .header("idempotency-key", key)
        .json(&order_body())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, location, r.json().await.unwrap_or(Value::Null))
}

/// Wait until `n` placements were sent and answered in `phase`.
async fn wait_answers(placed: &Arc<Mutex<Vec<Placed>>>, phase: u8, n: usize, what: &str) {
    testkit::eventually(what, SETTLE, || {
        let got = placed
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.sent == phase && p.answered == phase)
            .count();
        std::future::ready((got >= n).then_some(()))
    })
    .await
}

/// A 503 that says the order may exist and how to get it (the same key
/// again): not a failure, an answer still to be had.
fn is_unconfirmed(p: &Placed) -> bool {
    p.status == StatusCode::SERVICE_UNAVAILABLE
        && p.body["detail"].as_str().is_some_and(|d| {
            d.contains("may have been stored") && d.contains("same Idempotency-Key")
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_placed_while_temporal_is_down_are_accepted_and_no_refused_order_is_charged() {
    let temporal = PrivateTemporal::start().await;
    let fakes = CancellationToken::new();
    let _stop_fakes = fakes.clone().drop_guard();
    let (fakes_url, ledger) = start_fakes(&fakes).await;
    let orders = testkit::spawn_process(
        "orders",
        &[
            (
                "SHOPSTREAM_ORDERS_DATABASE",
                testkit::unique("it_gw_outage_orders"),
            ),
            ("SHOPSTREAM_ORDERS_CATALOG_URL", fakes_url.clone()),
            ("SHOPSTREAM_ORDERS_INVENTORY_URL", fakes_url.clone()),
            ("SHOPSTREAM_ORDERS_PAYMENTS_URL", fakes_url.clone()),
            ("SHOPSTREAM_TEMPORAL_URL", temporal.url.clone()),
        ],
    )
    .await;
    let orders_grpc = orders.grpc.clone();
    let s = start_with(|cfg| {
        cfg.orders_grpc = orders_grpc;
        cfg.upstream_timeout = GATEWAY_UPSTREAM_TIMEOUT;
    })
    .await;
    let c = Client::new();
    let base = s.base.clone();
    let r = c
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": "buyer@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let tok = token(&c, &base, "buyer@example.com", PASSWORD).await;
    let readyz = format!("{}/readyz", orders.http);
    assert_eq!(
        reqwest::get(&readyz).await.unwrap().status(),
        StatusCode::OK
    );

    // Placers: each places orders one after another, every one under a key
    // of its own, until told to stop.
    let phase = Arc::new(AtomicU8::new(UP));
    let stop = Arc::new(AtomicBool::new(false));
    let placed: Arc<Mutex<Vec<Placed>>> = Arc::default();
    let mut placers = Vec::new();
    for who in 0..PLACERS {
        let (c, base, tok) = (c.clone(), base.clone(), tok.clone());
        let (phase, stop, placed) = (phase.clone(), stop.clone(), placed.clone());
        placers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let key = format!("outage-{who}-{n}");
                let sent = phase.load(Ordering::SeqCst);
                let (status, location, body) = post_order(&c, &base, &tok, &key).await;
                let answered = phase.load(Ordering::SeqCst);
                placed.lock().unwrap().push(Placed {
                    key,
                    sent,
                    answered,
                    status,
                    location,
                    body,
                });
            }
        }));
    }
    wait_answers(&placed, UP, BEFORE, "orders were placed with temporal up").await;
    // Kill -9 mid-placement: requests are in flight now.
    temporal.stack.kill_component(Kind::Temporal).await;
    phase.store(DOWN, Ordering::SeqCst);
    wait_answers(
        &placed,
        DOWN,
        DURING,
        "orders were placed with temporal down",
    )
    .await;
    // Readiness names Temporal while it is down.
    let c2 = c.clone();
    let not_ready: Value =
        testkit::eventually("orders' readiness to report temporal down", SETTLE, || {
            let req = c2.get(&readyz).send();
            async move {
                let r = req.await.ok()?;
                (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())?;
                r.json().await.ok()
            }
        })
        .await;
    assert!(not_ready.to_string().contains("temporal"), "{not_ready}");

    // BACK from the moment the restart begins: an order answered while
    // Temporal comes up is not one placed while it was down.
    phase.store(BACK, Ordering::SeqCst);
    temporal
        .stack
        .start_component(Kind::Temporal)
        .await
        .expect("temporal back");
    testkit::wait_http_ok(&readyz, SETTLE).await;
    wait_answers(
        &placed,
        BACK,
        AFTER,
        "orders were placed with temporal back",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for p in placers {
        p.await.unwrap();
    }
    let placed = placed.lock().unwrap().clone();

    // Every answer is an acceptance or says the order may exist: never a
    // plain failure.
    for p in &placed {
        assert!(
            [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&p.status) || is_unconfirmed(p),
            "a plain failure: {p:?}"
        );
        if p.status.is_success() {
            let id = p.body["order_id"].as_str().expect("an order");
            assert_eq!(
                p.location.as_deref(),
                Some(format!("/orders/{id}").as_str()),
                "{p:?}"
            );
        }
        if p.status == StatusCode::ACCEPTED {
            assert_eq!(p.body["state"], "pending", "{p:?}");
        }
    }
    // Placed entirely during the outage: accepted (202), or unconfirmed.
    let during: Vec<&Placed> = placed
        .iter()
        .filter(|p| p.sent == DOWN && p.answered == DOWN)
        .collect();
    assert!(
        during
            .iter()
            .all(|p| p.status == StatusCode::ACCEPTED || is_unconfirmed(p)),
        "{during:#?}"
    );
    assert!(
        during.iter().any(|p| p.status == StatusCode::ACCEPTED),
        "no order placed during the outage was accepted: {during:#?}"
    );
    let summary: BTreeMap<(u8, u8, u16), usize> =
        placed.iter().fold(BTreeMap::new(), |mut m, p| {
            *m.entry((p.sent, p.answered, p.status.as_u16()))
                .or_default() += 1;
            m
        });
    eprintln!("placements by (sent, answered, status): {summary:?}");

    // The client resumes each unconfirmed one with the same key: a replay
    // answers the stored order (or, if none was stored, creates it).
    let mut accepted: BTreeMap<String, String> = BTreeMap::new(); // order id → key
    for p in &placed {
        let id = if is_unconfirmed(p) {
            let (status, _, body) = post_order(&c, &base, &tok, &p.key).await;
            assert!(status.is_success(), "{status} {body}");
            body["order_id"].as_str().unwrap().to_string()
        } else {
            p.body["order_id"].as_str().unwrap().to_string()
        };
        assert!(
            accepted.insert(id, p.key.clone()).is_none(),
            "two keys, one order"
        );
    }

    // With Temporal back, every accepted order reaches a terminal state
    // (the sweeper starts those whose saga had not started).
    let mut finished: BTreeMap<String, String> = BTreeMap::new();
    for id in accepted.keys() {
        let (c, base, tok) = (c.clone(), base.clone(), tok.clone());
        let state = testkit::eventually(&format!("order {id} to finish"), SETTLE, || {
            let req = c
                .get(format!("{base}/orders/{id}"))
                .bearer_auth(&tok)
                .send();
            async move {
                let o: Value = req.await.ok()?.json().await.ok()?;
                let state = o["state"].as_str()?.to_string();
                ["completed", "cancelled"]
                    .contains(&state.as_str())
                    .then_some(state)
            }
        })
        .await;
        finished.insert(id.clone(), state);
    }
    eprintln!("accepted orders by final state: {finished:?}");

    // Every order orders stored is one its client was given; only those
    // are charged, each completed one once, no cancelled one at all.
    let page: Value = c
        .get(format!("{base}/orders?limit=100"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: BTreeSet<String> = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_string())
        .collect();
    let known: BTreeSet<String> = accepted.keys().cloned().collect();
    assert_eq!(stored, known, "a stored order its client was not given");
    let charged = ledger.charged();
    for (order, captures) in &charged {
        assert!(
            known.contains(order),
            "charged for an order never accepted: {order}"
        );
        assert_eq!(*captures, 1, "charged twice: {order}");
    }
    let completed: BTreeSet<String> = finished
        .iter()
        .filter(|(_, state)| *state == "completed")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        charged.keys().cloned().collect::<BTreeSet<_>>(),
        completed,
        "charged exactly the completed orders"
    );
    drop(orders);
    drop(temporal);
}
