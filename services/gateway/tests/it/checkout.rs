//! Checkout routes against in-process fakes: tonic servers for orders,
//! inventory and payments with canned answers, and an axum stand-in for the
//! payments service's Stripe webhook. Identity is the real one (tokens).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode as AxumStatus},
    routing::post,
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use shopstream_platform::grpc;
use shopstream_proto::{
    TENANT_METADATA_KEY,
    common::v1::{Money, PageResponse},
    inventory::v1::{
        CommitRequest, CommitResponse, GetStockRequest, GetStockResponse, ReleaseRequest,
        ReleaseResponse, ReservationState, ReserveRequest, ReserveResponse, SetStockRequest,
        SetStockResponse, Stock,
        inventory_service_server::{InventoryService, InventoryServiceServer},
    },
    orders::v1::{
        CreateOrderRequest, CreateOrderResponse, GetOrderRequest, GetOrderResponse,
        ListOrderStepsRequest, ListOrderStepsResponse, ListOrdersRequest, ListOrdersResponse,
        Order, OrderItem, OrderState, OrderStep,
        orders_service_server::{OrdersService, OrdersServiceServer},
    },
    payments::v1::{
        CancelRequest, CancelResponse, CaptureRequest, CaptureResponse, CreateIntentRequest,
        CreateIntentResponse, GetPaymentRequest, GetPaymentResponse, Payment, PaymentStatus,
        RefundRequest, RefundResponse,
        payments_service_server::{PaymentsService, PaymentsServiceServer},
    },
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, service::Routes};

use super::{PASSWORD, listener, start_with, token};
use shopstream_runtime::testkit;

/// An order that belongs to somebody else.
const FOREIGN_ORDER: &str = "order-of-someone-else";
const SKU: &str = "LAMP-1";
const PAYMENT: &str = "pay-1";
const GOOD_SIGNATURE: &str = "t=1,v1=good";
/// Payment methods that script the fake orders' answer.
const PM_SAGA_PENDING: &str = "pm_saga_pending";
const PM_ANSWER_LOST: &str = "pm_answer_lost";

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".into(),
    })
}

/// Every call must carry the tenant, as the gateway promises its backends.
fn tenant_of<T>(req: &Request<T>) -> Result<(), Status> {
    match req.metadata().get(TENANT_METADATA_KEY) {
        Some(v) if v == "default" => Ok(()),
        other => Err(Status::internal(format!("tenant metadata: {other:?}"))),
    }
}

#[derive(Default)]
struct FakeOrders {
    /// idempotency key → (request, order)
    by_key: Mutex<HashMap<String, (CreateOrderRequest, Order)>>,
}

impl FakeOrders {
    fn find(&self, id: &str) -> Option<Order> {
        if id == FOREIGN_ORDER {
            return Some(Order {
                order_id: id.into(),
                user_id: "someone-else".into(),
                state: OrderState::Completed as i32,
                ..Default::default()
            });
        }
        let orders = self.by_key.lock().unwrap();
        orders
            .values()
            .map(|(_, o)| o)
            .find(|o| o.order_id == id)
            .cloned()
    }
}

#[tonic::async_trait]
impl OrdersService for FakeOrders {
    async fn create_order(
        &self,
        req: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        tenant_of(&req)?;
        let r = req.into_inner();
        // Scripted: orders stored the order, then the answer was lost.
        if r.payment_method == PM_ANSWER_LOST {
            return Err(Status::deadline_exceeded("no answer in time"));
        }
        // Scripted: stored, but the saga did not start in time.
        let pending = r.payment_method == PM_SAGA_PENDING;
        let mut orders = self.by_key.lock().unwrap();
        if let Some((seen, order)) = orders.get(&r.idempotency_key) {
            if *seen != r {
                return Err(Status::invalid_argument(
                    "idempotency key reused; items: differ from the first request",
                ));
            }
            return Ok(Response::new(CreateOrderResponse {
                order: Some(order.clone()),
                replayed: true,
                saga_start_pending: pending,
            }));
        }
        let items: Vec<OrderItem> = r
            .items
            .iter()
            .map(|i| OrderItem {
                sku: i.sku.clone(),
                quantity: i.quantity,
                unit_price: eur(1999),
                line_total: eur(1999 * i64::from(i.quantity)),
            })
            .collect();
        let order = Order {
            order_id: format!("order-{}", orders.len() + 1),
            user_id: r.user_id.clone(),
            state: OrderState::Pending as i32,
            total: eur(items
                .iter()
                .map(|i| i.line_total.as_ref().unwrap().amount_minor)
                .sum()),
            items,
            created_at_ms: 1,
            updated_at_ms: 1,
            ..Default::default()
        };
        orders.insert(r.idempotency_key.clone(), (r, order.clone()));
        Ok(Response::new(CreateOrderResponse {
            order: Some(order),
            replayed: false,
            saga_start_pending: pending,
        }))
    }

    async fn get_order(
        &self,
        req: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        tenant_of(&req)?;
        match self.find(&req.get_ref().order_id) {
            Some(o) => Ok(Response::new(GetOrderResponse { order: Some(o) })),
            None => Err(Status::not_found("no such order")),
        }
    }

    async fn list_orders(
        &self,
        req: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        tenant_of(&req)?;
        let user = req.into_inner().user_id;
        let orders = self.by_key.lock().unwrap();
        Ok(Response::new(ListOrdersResponse {
            orders: orders
                .values()
                .map(|(_, o)| o.clone())
                .filter(|o| user.is_empty() || o.user_id == user)
                .collect(),
            page: Some(PageResponse::default()),
        }))
    }

    async fn list_order_steps(
        &self,
        req: Request<ListOrderStepsRequest>,
    ) -> Result<Response<ListOrderStepsResponse>, Status> {
        tenant_of(&req)?;
        Ok(Response::new(ListOrderStepsResponse {
            steps: vec![OrderStep {
                seq: 1,
                step: "reserve".into(),
                outcome: "succeeded".into(),
                state: OrderState::Reserved as i32,
                detail: "reservation r-1".into(),
                at_ms: 2,
                attempts: 1,
            }],
        }))
    }
}

struct FakeInventory;

fn stock(sku_id: String, on_hand: i64) -> Option<Stock> {
    Some(Stock {
        sku_id,
        on_hand,
        reserved: 1,
        available: on_hand - 1,
        committed: 3,
    })
}

#[tonic::async_trait]
impl InventoryService for FakeInventory {
    async fn reserve(
        &self,
        req: Request<ReserveRequest>,
    ) -> Result<Response<ReserveResponse>, Status> {
        tenant_of(&req)?;
        let r = req.into_inner();
        if !r.order_id.starts_with("hold-") {
            return Err(Status::internal(format!("hold key {:?}", r.order_id)));
        }
        // Inventory's answer to a hold key reused for other lines.
        if r.items.iter().any(|i| i.quantity == 3) {
            return Err(Status::aborted(format!(
                "order {} already holds a different reservation",
                r.order_id
            )));
        }
        // What the gateway's client reports when the connection broke
        // mid-call (seen under overload: an HTTP/2 keep-alive timed out).
        if r.items.iter().any(|i| i.quantity == 4) {
            return Err(Status::unknown("transport error"));
        }
        if r.items.iter().any(|i| i.quantity > 5) {
            return Err(Status::aborted("insufficient stock for LAMP-1"));
        }
        Ok(Response::new(ReserveResponse {
            reservation_id: format!("res-{}", r.order_id),
            state: ReservationState::Held as i32,
            expires_at_ms: 4_102_444_800_000,
        }))
    }

    async fn release(
        &self,
        req: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        tenant_of(&req)?;
        let r = req.into_inner();
        if let Ok(mut released) = RELEASED.lock() {
            released.push((r.reservation_id, r.reason));
        }
        Ok(Response::new(ReleaseResponse {
            state: ReservationState::Released as i32,
        }))
    }

    async fn commit(&self, _: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        Err(Status::unimplemented("the gateway never commits"))
    }

    async fn get_stock(
        &self,
        req: Request<GetStockRequest>,
    ) -> Result<Response<GetStockResponse>, Status> {
        tenant_of(&req)?;
        let sku = req.into_inner().sku_id;
        if sku != SKU {
            return Err(Status::not_found("unknown sku"));
        }
        Ok(Response::new(GetStockResponse {
            stock: stock(sku, 10),
        }))
    }

    async fn set_stock(
        &self,
        req: Request<SetStockRequest>,
    ) -> Result<Response<SetStockResponse>, Status> {
        tenant_of(&req)?;
        let r = req.into_inner();
        Ok(Response::new(SetStockResponse {
            stock: stock(r.sku_id, r.on_hand),
        }))
    }
}

struct FakePayments;

fn payment() -> Payment {
    Payment {
        payment_id: PAYMENT.into(),
        order_id: "order-1".into(),
        status: PaymentStatus::Captured as i32,
        amount: eur(1999),
        captured: eur(1999),
        refunded: eur(0),
        provider_ref: "pi_1".into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl PaymentsService for FakePayments {
    async fn create_intent(
        &self,
        _: Request<CreateIntentRequest>,
    ) -> Result<Response<CreateIntentResponse>, Status> {
        Err(Status::unimplemented("not the gateway's"))
    }

    async fn capture(
        &self,
        _: Request<CaptureRequest>,
    ) -> Result<Response<CaptureResponse>, Status> {
        Err(Status::unimplemented("not the gateway's"))
    }

    async fn refund(
        &self,
        req: Request<RefundRequest>,
    ) -> Result<Response<RefundResponse>, Status> {
        tenant_of(&req)?;
        let r = req.into_inner();
        let amount = r.amount.unwrap_or(Money {
            amount_minor: 1999,
            currency: "EUR".into(),
        });
        if amount.currency != "EUR" || r.idempotency_key.is_empty() {
            return Err(Status::invalid_argument(format!("bad refund {amount:?}")));
        }
        let mut p = payment();
        p.status = PaymentStatus::PartiallyRefunded as i32;
        p.refunded = Some(amount);
        Ok(Response::new(RefundResponse {
            payment: Some(p),
            refund_id: "re_1".into(),
        }))
    }

    async fn cancel(&self, _: Request<CancelRequest>) -> Result<Response<CancelResponse>, Status> {
        Err(Status::unimplemented("not the gateway's"))
    }

    async fn get_payment(
        &self,
        req: Request<GetPaymentRequest>,
    ) -> Result<Response<GetPaymentResponse>, Status> {
        tenant_of(&req)?;
        Ok(Response::new(GetPaymentResponse {
            payment: Some(payment()),
        }))
    }
}

/// The payments service's webhook: 400 (plain text, not a problem) unless the
/// signature is the good one; 200 echoing the raw body otherwise.
async fn fake_webhook(headers: HeaderMap, body: Bytes) -> (AxumStatus, Bytes) {
    match headers.get("stripe-signature") {
        Some(v) if v == GOOD_SIGNATURE => (AxumStatus::OK, body),
        _ => (
            AxumStatus::BAD_REQUEST,
            Bytes::from_static(b"no valid signature"),
        ),
    }
}

/// Start the fakes; returns (grpc url, payments http url).
async fn start_fakes(shutdown: &CancellationToken) -> (String, String) {
    let (gl, ga) = listener().await;
    let routes = Routes::new(OrdersServiceServer::new(FakeOrders::default()))
        .add_service(InventoryServiceServer::new(FakeInventory))
        .add_service(PaymentsServiceServer::new(FakePayments));
    tokio::spawn(grpc::serve(
        gl,
        routes,
        Duration::from_secs(5),
        shutdown.clone(),
    ));
    let (hl, ha) = listener().await;
    let app = axum::Router::new().route("/webhooks/stripe", post(fake_webhook));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(hl, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    (format!("http://{ga}"), format!("http://{ha}"))
}

async fn customer(c: &Client, base: &str, email: &str) -> String {
    let r = c
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    token(c, base, email, PASSWORD).await
}

fn problem_json(r: &reqwest::Response) {
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

/// The gateway pointed at the fakes. Dropping it stops the gateway, its
/// identity and catalog, and the fakes.
struct Checkout {
    s: super::System,
    c: Client,
    _stop_fakes: tokio_util::sync::DropGuard,
}

/// Every release the fake inventory was asked for: (reservation id, reason).
static RELEASED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

async fn checkout_system() -> Checkout {
    checkout_system_with(|_| {}).await
}

async fn checkout_system_with(
    configure: impl FnOnce(&mut shopstream_gateway::Config) + Send + 'static,
) -> Checkout {
    let fakes = CancellationToken::new();
    let stop_fakes = fakes.clone().drop_guard();
    let (grpc_url, payments_http) = start_fakes(&fakes).await;
    let s = start_with(move |cfg| {
        cfg.inventory_grpc = grpc_url.clone();
        cfg.orders_grpc = grpc_url.clone();
        cfg.payments_grpc = grpc_url.clone();
        cfg.payments_http = payments_http.clone();
        configure(cfg);
    })
    .await;
    Checkout {
        s,
        c: Client::new(),
        _stop_fakes: stop_fakes,
    }
}

impl Checkout {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.s.base)
    }

    /// A new customer's access token.
    async fn customer(&self, email: &str) -> String {
        customer(&self.c, &self.s.base, email).await
    }

    /// The admin's access token.
    async fn admin(&self) -> String {
        token(
            &self.c,
            &self.s.base,
            super::ADMIN_EMAIL,
            &self.s.admin_password,
        )
        .await
    }

    /// `POST /orders` as `token` under `key` (no key header when `None`).
    async fn post_order(&self, token: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.c.post(self.url("/orders")).bearer_auth(token);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        req.json(body).send().await.unwrap()
    }

    /// A new order of `token`'s; its id.
    async fn place_order(&self, token: &str) -> String {
        let r = self.post_order(token, Some("k-1"), &order_body(2)).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        r.json::<Value>().await.unwrap()["order_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.c
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// One line of `quantity` units of [`SKU`], paid with a test card.
fn order_body(quantity: u32) -> Value {
    json!({
        "items": [{"product_id": "p-1", "sku_id": SKU, "quantity": quantity}],
        "payment_method": "pm_card_visa",
    })
}

/// POST /orders: 401 without a token, 400 without Idempotency-Key; new → 201;
/// the same key and body again → 200 + Idempotent-Replayed; the same key with
/// another body → the backend's InvalidArgument as a 422.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_needs_a_token_and_a_key_and_replays_by_key() {
    let t = checkout_system().await;
    let ann = t.customer("ann@example.com").await;

    let r =
        t.c.post(t.url("/orders"))
            .header("idempotency-key", "k-1")
            .json(&order_body(2))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t.post_order(&ann, None, &order_body(2)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    problem_json(&r);

    let r = t.post_order(&ann, Some("k-1"), &order_body(2)).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    assert!(r.headers().get("idempotent-replayed").is_none());
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["state"], "pending");
    assert_eq!(order["cancel_reason"], Value::Null);
    assert_eq!(order["total_minor"], 3998);
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["items"][0]["unit_price_minor"], 1999);
    let order_id = order["order_id"].as_str().unwrap().to_string();
    let r = t.post_order(&ann, Some("k-1"), &order_body(2)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.json::<Value>().await.unwrap()["order_id"], order_id);

    let r = t.post_order(&ann, Some("k-1"), &order_body(3)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    problem_json(&r);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "items", "{p}");
}

/// An order stored whose saga has not started is 202 with Location and the
/// pending order (its replay too, marked replayed); a create whose answer
/// was lost is a 503 that says the order may exist and how to get it.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_whose_saga_has_not_started_is_accepted_and_a_lost_answer_says_how_to_resume() {
    let t = checkout_system().await;
    let ann = t.customer("ann@example.com").await;
    let mut body = order_body(1);
    body["payment_method"] = json!(PM_SAGA_PENDING);

    let r = t.post_order(&ann, Some("k-pending"), &body).await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    assert!(r.headers().get("idempotent-replayed").is_none());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["state"], "pending");
    assert_eq!(
        location,
        format!("/orders/{}", order["order_id"].as_str().unwrap())
    );
    let r = t.post_order(&ann, Some("k-pending"), &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.headers()["location"], location.as_str());
    assert_eq!(
        r.json::<Value>().await.unwrap()["order_id"],
        order["order_id"]
    );
    let r = t.get(&location, &ann).await;
    assert_eq!(r.status(), StatusCode::OK);

    body["payment_method"] = json!(PM_ANSWER_LOST);
    let r = t.post_order(&ann, Some("k-lost"), &body).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    problem_json(&r);
    let p: Value = r.json().await.unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("may have been stored") && detail.contains("same Idempotency-Key"),
        "{p}"
    );
}

/// Reads: own order and its steps; another user's order is 404 for a
/// customer and readable by an admin.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_is_read_by_its_owner_or_an_admin() {
    let t = checkout_system().await;
    let ann = t.customer("ann@example.com").await;
    let bob = t.customer("bob@example.com").await;
    let order_id = t.place_order(&ann).await;

    let r = t.get(&format!("/orders/{order_id}"), &ann).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = t.get(&format!("/orders/{order_id}/events"), &ann).await;
    assert_eq!(r.status(), StatusCode::OK);
    let events: Value = r.json().await.unwrap();
    assert_eq!(events["state"], "pending");
    assert_eq!(events["steps"][0]["step"], "reserve");
    assert_eq!(events["steps"][0]["state"], "reserved");
    for path in [
        format!("/orders/{order_id}"),
        format!("/orders/{order_id}/events"),
    ] {
        let r = t.get(&path, &bob).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        problem_json(&r);
    }
    let r = t.get(&format!("/orders/{FOREIGN_ORDER}"), &ann).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let admin = t.admin().await;
    let r = t.get(&format!("/orders/{FOREIGN_ORDER}"), &admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "completed");
}

/// Lists: the caller's own (bob sees none of ann's); all=true is for admins.
#[tokio::test(flavor = "multi_thread")]
async fn orders_are_listed_for_their_owner_and_all_only_for_admins() {
    let t = checkout_system().await;
    let ann = t.customer("ann@example.com").await;
    let bob = t.customer("bob@example.com").await;
    t.place_order(&ann).await;

    let page: Value = t.get("/orders?limit=20", &bob).await.json().await.unwrap();
    assert_eq!(page["orders"], json!([]));
    assert_eq!(page["next_cursor"], Value::Null);
    let r = t.get("/orders?all=true", &bob).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = t.get("/orders?state=sideways", &bob).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// Reservations: held for the caller, released only by them; a short line is 409.
#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_is_released_only_by_its_holder() {
    let t = checkout_system().await;
    let ann = t.customer("ann@example.com").await;
    let bob = t.customer("bob@example.com").await;

    let r =
        t.c.post(t.url("/reservations"))
            .bearer_auth(&ann)
            .json(&json!({"items": [{"sku_id": SKU, "quantity": 1}], "ttl_s": 60}))
            .send()
            .await
            .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let hold: Value = r.json().await.unwrap();
    assert_eq!(hold["state"], "held");
    let hold_id = hold["reservation_id"].as_str().unwrap().to_string();
    let r =
        t.c.delete(t.url(&format!("/reservations/{hold_id}")))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r =
        t.c.delete(t.url(&format!("/reservations/{hold_id}")))
            .bearer_auth(&ann)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"reservation_id": hold_id, "state": "released"})
    );
    let r =
        t.c.post(t.url("/reservations"))
            .bearer_auth(&ann)
            .json(&json!({"items": [{"sku_id": SKU, "quantity": 50}]}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

/// With an `Idempotency-Key` a retry reaches inventory under the same hold
/// key (inventory answers the existing hold: its contract suite checks that
/// the units are held once); another caller's equal key, or no key, is
/// another hold; inventory's mismatch for other lines is a 409 naming the
/// key; a bad key is 400 and reaches nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_keyed_reservation_retried_is_the_same_hold() {
    let t = checkout_system().await;
    let ann = t.customer("ann@example.com").await;
    let bob = t.customer("bob@example.com").await;
    let reserve = |token: String, key: Option<String>, quantity: u32| {
        let mut rb = t.c.post(t.url("/reservations")).bearer_auth(token);
        if let Some(key) = key {
            rb = rb.header("Idempotency-Key", key);
        }
        async move {
            let r = rb
                .json(&json!({"items": [{"sku_id": SKU, "quantity": quantity}], "ttl_s": 60}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let key = || Some("cart-1".to_string());
    let (status, first) = reserve(ann.clone(), key(), 2).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = reserve(ann.clone(), key(), 2).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["reservation_id"], first["reservation_id"]);
    let (_, bobs) = reserve(bob.clone(), key(), 2).await;
    assert_ne!(bobs["reservation_id"], first["reservation_id"]);
    let (_, unkeyed) = reserve(ann.clone(), None, 2).await;
    let (_, unkeyed_again) = reserve(ann.clone(), None, 2).await;
    assert_ne!(unkeyed["reservation_id"], unkeyed_again["reservation_id"]);
    assert_ne!(unkeyed["reservation_id"], first["reservation_id"]);

    let (status, p) = reserve(ann.clone(), key(), 3).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(
        p["detail"],
        "this Idempotency-Key was used for a reservation of other lines"
    );
    // Without a key the same answer is inventory's own words.
    let (status, p) = reserve(ann.clone(), None, 3).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("already holds"),
        "{p}"
    );

    // A call whose outcome is unknown is a 503 that says so, never a 500.
    let (status, p) = reserve(ann.clone(), key(), 4).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(
        p["detail"],
        shopstream_gateway::inventory::MAYBE_HELD_DETAIL
    );
    let (status, p) = reserve(ann.clone(), None, 4).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(
        p["detail"],
        shopstream_gateway::inventory::MAYBE_HELD_UNKEYED_DETAIL
    );

    let (status, p) = reserve(ann.clone(), Some("k".repeat(300)), 1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "{p}"
    );
}

/// When the hold's owner cannot be recorded in Redis (here: a Redis user
/// that may do everything but SETEX), the hold is not handed out: a keyed
/// caller is told 503 and keeps the hold for its retry; an unkeyed caller is
/// told 503 and the units go back to inventory at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_hold_whose_owner_cannot_be_recorded_is_not_handed_out() {
    let test = testkit::stack().await;
    let user = testkit::unique("gw_no_setex");
    let mut admin = shopstream_platform::cache::connect(&test.endpoints.redis_url)
        .await
        .unwrap();
    redis::cmd("ACL")
        .arg(&["SETUSER", &user, "on", ">pw", "~*", "&*", "+@all", "-setex"])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let url = test
        .endpoints
        .redis_url
        .replacen("redis://", &format!("redis://{user}:pw@"), 1);
    let t = checkout_system_with(move |cfg| cfg.service.endpoints.redis_url = url).await;
    let ann = t.customer("ann@example.com").await;
    let reserve = |key: Option<&str>| {
        let mut rb = t.c.post(t.url("/reservations")).bearer_auth(&ann);
        if let Some(key) = key {
            rb = rb.header("Idempotency-Key", key);
        }
        async move {
            let r = rb
                .json(&json!({"items": [{"sku_id": SKU, "quantity": 1}], "ttl_s": 60}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let released_before = RELEASED.lock().unwrap().len();

    let (status, p) = reserve(Some("owner-unrecorded-1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(
        p["detail"],
        shopstream_gateway::inventory::MAYBE_HELD_DETAIL
    );
    assert_eq!(
        RELEASED.lock().unwrap().len(),
        released_before,
        "a keyed hold is kept for the retry"
    );

    let (status, p) = reserve(None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(
        p["detail"],
        shopstream_gateway::inventory::OWNER_UNRECORDED_DETAIL
    );
    let released = RELEASED.lock().unwrap().clone();
    let given_back: Vec<_> = released[released_before..]
        .iter()
        .filter(|(_, reason)| reason == "owner_unrecorded")
        .collect();
    assert_eq!(
        given_back.len(),
        1,
        "the unkeyed hold went back: {released:?}"
    );
    assert!(given_back[0].0.starts_with("res-hold-"), "{given_back:?}");
    redis::cmd("ACL")
        .arg(&["DELUSER", &user])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
}

/// Stock: public read, admin write.
#[tokio::test(flavor = "multi_thread")]
async fn stock_is_public_to_read_and_admin_only_to_write() {
    let t = checkout_system().await;
    let ann = t.customer("ann@example.com").await;
    let admin = t.admin().await;

    let r =
        t.c.get(t.url(&format!("/inventory/{SKU}")))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["available"], 9);
    let r = t.c.get(t.url("/inventory/NOPE")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r =
        t.c.put(t.url(&format!("/admin/inventory/{SKU}")))
            .bearer_auth(&ann)
            .json(&json!({"on_hand": 100}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r =
        t.c.put(t.url(&format!("/admin/inventory/{SKU}")))
            .bearer_auth(&admin)
            .json(&json!({"on_hand": 100}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["on_hand"], 100);
}

/// Refunds are admin-only and need an Idempotency-Key.
#[tokio::test(flavor = "multi_thread")]
async fn a_refund_is_admin_only_and_needs_a_key() {
    let t = checkout_system().await;
    let ann = t.customer("ann@example.com").await;
    let admin = t.admin().await;
    let refund_url = t.url(&format!("/payments/{PAYMENT}/refund"));
    let refund = json!({"amount_minor": 500, "reason": "customer_request"});

    let r =
        t.c.post(&refund_url)
            .bearer_auth(&ann)
            .header("idempotency-key", "rf-1")
            .json(&refund)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    problem_json(&r);
    let r =
        t.c.post(&refund_url)
            .bearer_auth(&admin)
            .json(&refund)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r =
        t.c.post(&refund_url)
            .bearer_auth(&admin)
            .header("idempotency-key", "rf-1")
            .json(&refund)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["refund_id"], "re_1");
    assert_eq!(v["payment"]["status"], "partially_refunded");
    assert_eq!(v["payment"]["refunded_minor"], 500);
    let r = t.get(&format!("/payments/{PAYMENT}"), &admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "captured");
}

/// The webhook goes through byte for byte; the backend's answer comes back as is.
#[tokio::test(flavor = "multi_thread")]
async fn the_stripe_webhook_passes_through_byte_for_byte() {
    let t = checkout_system().await;
    let event = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let r =
        t.c.post(t.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", "t=1,v1=forged")
            .body(event.as_slice())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.text().await.unwrap(), "no valid signature");
    let r =
        t.c.post(t.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", GOOD_SIGNATURE)
            .body(event.as_slice())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), event.as_slice());
}

/// Every checkout route is documented.
#[tokio::test(flavor = "multi_thread")]
async fn every_checkout_route_is_documented() {
    let t = checkout_system().await;
    let doc = testkit::get_json(&t.c, &t.url("/openapi.json")).await;
    for path in [
        "/reservations",
        "/reservations/{id}",
        "/inventory/{sku_id}",
        "/admin/inventory/{sku_id}",
        "/orders",
        "/orders/{id}",
        "/orders/{id}/events",
        "/payments/{payment_id}/refund",
        "/payments/{payment_id}",
        "/webhooks/stripe",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    // POST /orders: accepted-not-started and the paused / unconfirmed 503.
    let create = &doc["paths"]["/orders"]["post"]["responses"];
    for code in ["200", "201", "202", "503"] {
        assert!(
            create.get(code).is_some(),
            "POST /orders {code} undocumented"
        );
    }
    assert!(
        create["202"]["headers"].get("Location").is_some(),
        "{create}"
    );
    let unavailable = create["503"]["description"].as_str().unwrap();
    assert!(
        unavailable.contains("paused") && unavailable.contains("Idempotency-Key"),
        "{unavailable}"
    );
    for schema in [
        "OrderView",
        "OrderCreate",
        "ReservationCreate",
        "RefundView",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} missing from OpenAPI"
        );
    }
}

/// A backend that is down is a 503 problem, for gRPC and for the webhook.
#[tokio::test(flavor = "multi_thread")]
async fn a_down_backend_is_a_503() {
    // start_with's defaults point every checkout backend at a closed port.
    let s = start_with(|_| {}).await;
    let c = Client::new();
    let base = &s.base;
    let r = c
        .get(format!("{base}/inventory/{SKU}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    problem_json(&r);
    let r = c
        .post(format!("{base}/webhooks/stripe"))
        .header("stripe-signature", GOOD_SIGNATURE)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    problem_json(&r);
}
