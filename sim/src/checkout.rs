//! The checkout scenario: hosts, workload, faults, invariants, one seed.
//!
//! Hosts (turmoil): `orders` (gRPC `OrdersService` + the saga worker + the
//! unstarted-saga sweeper), `inventory` (gRPC + expiry worker), `payments`
//! (gRPC + Stripe webhook endpoint + reconciler), `stripe` (stripe-sim's
//! router + a webhook relay). Client: `shopper`. What a real process keeps
//! in its database (the in-memory stores, Temporal's history, id
//! generators) is created outside the host closures and so survives a crash;
//! everything else (connections, tasks, caches) is rebuilt on restart.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http_body_util::Full;
use secrecy::SecretString;
use shopstream_inventory::{Inventory, adapters::memory::MemoryInventory, ports::InventoryStore};
use shopstream_orders::{
    Orders,
    adapters::memory::MemoryOrders,
    domain::{checkout::Price, order::OrderState, saga::Saga},
    driver,
    ports::{OrderStore, PriceBook, PriceError, StepRecord},
};
use shopstream_payments::{Payments, adapters::memory::MemoryPayments};
use shopstream_platform::ids::{IdGen, SequentialIdGen};
use shopstream_proto::{
    common::v1::ProductRef,
    inventory::v1::inventory_service_server::InventoryServiceServer,
    orders::v1::{
        CreateOrderItem, CreateOrderRequest, orders_service_client::OrdersServiceClient,
        orders_service_server::OrdersServiceServer,
    },
    payments::v1::payments_service_server::PaymentsServiceServer,
};
use shopstream_stripe_sim::{api::http::HttpState, faults::FailRule, state::StripeState};
use tokio_util::sync::CancellationToken;

use crate::{
    Bug, Fault, Options, bug_zoo, net,
    saga_worker::{History, SimStarter, Worker, short},
    stripe_http::StripeHttp,
    trace::{Rng, SharedRng, SimClock, Trace, sim_ms},
};

pub const TENANT: &str = "default";
pub const PRODUCT: &str = "prod_hot";
const SKUS: [&str; 2] = ["sku-hot-1", "sku-hot-2"];
const PRICE_MINOR: i64 = 2_500;
const SECRET_KEY: &str = "sk_test_shopstream";
const WEBHOOK_SECRET: &str = "whsec_shopstream";
/// The shopper's orders start within this window.
const WORKLOAD_MS: u64 = 8_000;
/// Faults happen before this; then every fault is healed.
pub const FAULTS_END_MS: i64 = 15_000;
/// After faults end, every order must be terminal within this.
pub const SETTLE_MS: i64 = 120_000;
/// Continuous invariants are checked this often (sim time).
const CHECK_EVERY_MS: i64 = 100;
/// One simulation step.
const TICK: Duration = Duration::from_millis(10);
const HOSTS: [&str; 4] = ["orders", "inventory", "payments", "stripe"];
const CRASHABLE: [&str; 3] = ["orders", "inventory", "payments"];

/// Result of one seed.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub outcome: Outcome,
    pub trace_hash: u64,
    pub trace: Vec<crate::trace::Line>,
    pub sim_ms: i64,
    pub real: Duration,
    pub faults_injected: usize,
    pub invariant_checks: u64,
    pub orders: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Held,
    Violated {
        invariant: &'static str,
        detail: String,
    },
}

/// Prices are not under test: a fixed catalog in process.
struct FixedPrices;

#[async_trait::async_trait]
impl PriceBook for FixedPrices {
    async fn prices(
        &self,
        _tenant: &str,
        product_id: &str,
    ) -> Result<BTreeMap<String, Price>, PriceError> {
        if product_id != PRODUCT {
            return Err(PriceError::UnknownProduct(product_id.into()));
        }
        Ok(SKUS
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    Price {
                        amount_minor: PRICE_MINOR,
                        currency: "USD".into(),
                    },
                )
            })
            .collect())
    }
}

#[derive(Debug, Clone)]
struct PlannedOrder {
    user: String,
    key: String,
    sku: &'static str,
    quantity: u32,
    card: &'static str,
    at_ms: u64,
    duplicate_after_ms: Option<u64>,
}

#[derive(Debug, Clone)]
enum Action {
    Partition(&'static str, &'static str),
    Repair(&'static str, &'static str),
    Crash(&'static str),
    Restart(&'static str),
    Latency(u64),
    Skew(&'static str, i64),
    Provider(FailRule),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Partition(a, b) => write!(f, "partition {a} <-> {b}"),
            Action::Repair(a, b) => write!(f, "repair {a} <-> {b}"),
            Action::Crash(h) => write!(f, "crash {h}"),
            Action::Restart(h) => write!(f, "restart {h}"),
            Action::Latency(ms) => write!(f, "max message latency {ms} ms"),
            Action::Skew(h, ms) => write!(f, "clock skew {h} {ms:+} ms"),
            Action::Provider(r) => write!(
                f,
                "stripe-sim fails the next {} {:?} with {}{}",
                r.count,
                r.operation,
                r.status,
                if r.after_effect {
                    " after taking effect"
                } else {
                    ""
                }
            ),
        }
    }
}

fn plan_workload(rng: &mut Rng) -> (Vec<PlannedOrder>, BTreeMap<&'static str, i64>) {
    let stock = SKUS.iter().map(|s| (*s, rng.range(3, 6) as i64)).collect();
    let n = rng.range(8, 14);
    let orders = (0..n)
        .map(|i| PlannedOrder {
            user: format!("user-{i}"),
            key: format!("key-{i}"),
            sku: rng.pick(&SKUS),
            quantity: rng.range(1, 2) as u32,
            card: rng.pick(&[
                "pm_card_visa",
                "pm_card_visa",
                "pm_card_mastercard",
                "pm_card_visa",
                "pm_card_chargeDeclined",
                "pm_card_chargeDeclinedInsufficientFunds",
            ]),
            at_ms: rng.range(0, WORKLOAD_MS),
            duplicate_after_ms: rng.chance(0.3).then(|| rng.range(0, 3_000)),
        })
        .collect();
    (orders, stock)
}

fn plan_faults(rng: &mut Rng, opts: &Options) -> Vec<(i64, Action)> {
    let mut plan = Vec::new();
    let window = |rng: &mut Rng| rng.range(500, FAULTS_END_MS as u64 - 3_000) as i64;
    if opts.has(Fault::Partition) {
        for _ in 0..rng.range(0, 3) {
            let a = rng.pick(&HOSTS);
            let b = rng.pick(&HOSTS);
            if a == b {
                continue;
            }
            let at = window(rng);
            plan.push((at, Action::Partition(a, b)));
            plan.push((at + rng.range(300, 5_000) as i64, Action::Repair(a, b)));
        }
    }
    if opts.has(Fault::Loss) {
        let a = rng.pick(&HOSTS);
        let b = rng.pick(&HOSTS);
        if a != b {
            let mut at = window(rng);
            for _ in 0..rng.range(1, 5) {
                plan.push((at, Action::Partition(a, b)));
                at += rng.range(20, 250) as i64;
                plan.push((at, Action::Repair(a, b)));
                at += rng.range(100, 1_500) as i64;
            }
        }
    }
    if opts.has(Fault::Latency) && rng.chance(0.5) {
        let at = window(rng);
        plan.push((at, Action::Latency(rng.range(20, 400))));
        plan.push((at + rng.range(1_000, 6_000) as i64, Action::Latency(1)));
    }
    if opts.has(Fault::Crash) {
        for _ in 0..rng.range(0, 2) {
            let h = rng.pick(&CRASHABLE);
            let at = window(rng);
            plan.push((at, Action::Crash(h)));
            plan.push((at + rng.range(200, 4_000) as i64, Action::Restart(h)));
        }
    }
    if opts.has(Fault::Skew) && rng.chance(0.5) {
        let h = rng.pick(&HOSTS);
        let ms = rng.range(1_000, 60_000) as i64 * if rng.chance(0.5) { 1 } else { -1 };
        plan.push((window(rng), Action::Skew(h, ms)));
    }
    if opts.has(Fault::Provider) {
        use shopstream_stripe_sim::faults::Operation;
        for _ in 0..rng.range(0, 3) {
            let rule = FailRule {
                operation: rng.pick(&[
                    Operation::Create,
                    Operation::Capture,
                    Operation::Cancel,
                    Operation::Refund,
                ]),
                status: rng.pick(&[500, 503, 429]),
                count: rng.range(1, 2) as u32,
                after_effect: rng.chance(0.6),
            };
            plan.push((window(rng), Action::Provider(rule)));
        }
    }
    plan.sort_by_key(|(t, _)| *t);
    // Heal everything at the end of the fault window.
    plan.push((FAULTS_END_MS, Action::Latency(1)));
    for a in HOSTS {
        for b in HOSTS {
            if a < b {
                plan.push((FAULTS_END_MS, Action::Repair(a, b)));
            }
        }
        plan.push((FAULTS_END_MS, Action::Skew(a, 0)));
    }
    plan
}

/// What the shopper saw: per idempotency key, the order ids it was given.
type Acks = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

/// Run the checkout scenario for one seed: plan the workload and the faults,
/// build the hosts over state that outlives them, then step the simulation
/// until the invariants hold at quiescence or one is violated.
pub fn run_seed(seed: u64, opts: &Options) -> Report {
    let started = Instant::now();
    let trace = Trace::default();
    let mut rng = Rng::new(seed);
    let (workload, initial) = plan_workload(&mut rng);
    let faults = plan_faults(&mut rng, opts);
    let mut sim = new_sim(seed);
    let state = Persisted::new(opts, &initial);
    trace.log_at(
        0,
        "sim",
        format!(
            "seed={seed} stock {} orders {}",
            initial
                .iter()
                .map(|(s, n)| format!("{s}={n}"))
                .collect::<Vec<_>>()
                .join(" "),
            workload.len()
        ),
    );
    // Hosts in this order: turmoil schedules them in the order they were added.
    add_inventory(&mut sim, &state, &trace);
    add_payments(&mut sim, &state, &trace, opts);
    add_stripe(&mut sim, &state, &trace, seed, opts);
    add_orders(&mut sim, &state, &trace, seed, opts);
    let acks = add_shopper(&mut sim, &workload, &trace);
    let world = Observed {
        inventory: state.inventory.clone(),
        orders: state.orders.clone(),
        stripe: state.stripe.clone(),
        history: state.history.clone(),
        initial,
        acks,
    };
    let mut schedule = FaultSchedule::new(faults);
    let (outcome, invariant_checks) = drive(&mut sim, &mut schedule, &state, &world, &trace);
    let sim_ms = sim.elapsed().as_millis() as i64;
    if let Outcome::Violated { invariant, detail } = &outcome {
        trace.log_at(sim_ms, "VIOLATION", format!("{invariant}: {detail}"));
    }
    let orders = world.all_orders().len();
    drop(sim);
    Report {
        seed,
        outcome,
        trace_hash: trace.hash(),
        trace: trace.lines(),
        sim_ms,
        real: started.elapsed(),
        faults_injected: schedule.injected,
        invariant_checks,
        orders,
    }
}

/// The turmoil world of one seed: a fixed epoch, a 10 ms tick, 1–5 ms
/// messages, long enough for the fault window and the settling time.
fn new_sim(seed: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .tick_duration(TICK)
        .simulation_duration(Duration::from_millis(
            (FAULTS_END_MS + SETTLE_MS + 10_000) as u64,
        ))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .build()
}

/// State a real process would persist (its database, Temporal's history, its
/// id generator's position): created once, outside the host closures, so a
/// crashed host finds it again on restart.
struct Persisted {
    clocks: BTreeMap<&'static str, SimClock>,
    /// The store as the invariants read it…
    inventory: MemoryInventory,
    /// …and as the inventory service uses it (a bug-zoo wrapper, maybe).
    inventory_store: Arc<dyn InventoryStore>,
    orders: Arc<dyn OrderStore>,
    orders_store: Arc<dyn OrderStore>,
    payments: MemoryPayments,
    history: History,
    stripe: Arc<Mutex<StripeState>>,
    inventory_ids: Arc<dyn IdGen>,
    orders_ids: Arc<dyn IdGen>,
    payments_ids: Arc<dyn IdGen>,
}

impl Persisted {
    /// Empty stores (wrapped by the selected bug, if any) and `initial` stock.
    fn new(opts: &Options, initial: &BTreeMap<&'static str, i64>) -> Persisted {
        let clocks: BTreeMap<&str, SimClock> =
            HOSTS.iter().map(|h| (*h, SimClock::default())).collect();
        let inventory = MemoryInventory::default();
        let inventory_store: Arc<dyn InventoryStore> = if opts.bug_on(Bug::ReserveNoIdempotency) {
            Arc::new(bug_zoo::ForgetfulReserve {
                inner: inventory.clone(),
                calls: Default::default(),
            })
        } else {
            Arc::new(inventory.clone())
        };
        let orders: Arc<dyn OrderStore> = Arc::new(MemoryOrders::new());
        let broken = [Bug::OrderKeyIgnored, Bug::DecisionLogIgnored]
            .into_iter()
            .find(|b| opts.bug_on(*b));
        let orders_store: Arc<dyn OrderStore> = match broken {
            Some(bug) => Arc::new(bug_zoo::BrokenOrders {
                inner: orders.clone(),
                bug,
                calls: Default::default(),
            }),
            None => orders.clone(),
        };
        let ids = |p: u64| -> Arc<dyn IdGen> { Arc::new(SequentialIdGen::new(p)) };
        let stripe = Arc::new(Mutex::new(StripeState::new(
            Arc::new(clocks["stripe"].clone()),
            ids(4),
            shopstream_stripe_sim::webhooks::WebhookSender::disabled(),
        )));
        for (sku, n) in initial {
            let _ = futures::executor::block_on(inventory.set_stock(TENANT, sku, *n));
        }
        Persisted {
            clocks,
            inventory,
            inventory_store,
            orders,
            orders_store,
            payments: MemoryPayments::default(),
            history: History::default(),
            stripe,
            inventory_ids: ids(1),
            orders_ids: ids(2),
            payments_ids: ids(3),
        }
    }
}

/// `inventory`: its gRPC API and the reservation expiry worker.
fn add_inventory(sim: &mut turmoil::Sim<'_>, state: &Persisted, trace: &Trace) {
    let inventory = Inventory {
        store: state.inventory_store.clone(),
        clock: Arc::new(state.clocks["inventory"].clone()),
        ids: state.inventory_ids.clone(),
    };
    let trace = trace.clone();
    sim.host("inventory", move || {
        let inventory = inventory.clone();
        let trace = trace.clone();
        async move {
            trace.log("inventory", "process started");
            let api = InventoryServiceServer::new(shopstream_inventory::api::GrpcApi {
                inventory: inventory.clone(),
                default_tenant: TENANT.into(),
            });
            let server = net::serve_grpc(tonic::service::Routes::new(api));
            tokio::select! {
                r = server => r?,
                () = inventory.run_expiry(Duration::from_secs(1), CancellationToken::new()) => {}
            }
            Ok(())
        }
    });
}

/// `payments`: its gRPC API, the Stripe webhook endpoint and the reconciler,
/// talking to stripe-sim over HTTP.
fn add_payments(sim: &mut turmoil::Sim<'_>, state: &Persisted, trace: &Trace, opts: &Options) {
    let mut provider = StripeHttp::new("stripe", SECRET_KEY, Duration::from_secs(2));
    provider.fresh_create_keys = opts.bug_on(Bug::AuthorizeNoKey);
    let payments = Payments {
        store: Arc::new(state.payments.clone()),
        provider: Arc::new(provider),
        clock: Arc::new(state.clocks["payments"].clone()),
        ids: state.payments_ids.clone(),
        webhook_secret: WEBHOOK_SECRET.into(),
        on_event: None,
    };
    let trace = trace.clone();
    sim.host("payments", move || {
        let payments = payments.clone();
        let trace = trace.clone();
        async move {
            trace.log("payments", "process started");
            let grpc = PaymentsServiceServer::new(shopstream_payments::api::grpc::GrpcApi {
                payments: payments.clone(),
                default_tenant: TENANT.into(),
            });
            let server = net::serve_grpc(tonic::service::Routes::new(grpc));
            let webhook = shopstream_payments::api::http::routes(
                shopstream_payments::api::http::WebhookState {
                    payments: payments.clone(),
                    default_tenant: TENANT.into(),
                    deliveries: Default::default(),
                },
            );
            let listener = net::http_listener(net::HTTP_PORT).await?;
            let http = axum::serve(listener, webhook);
            tokio::select! {
                r = server => r?,
                r = http.into_future() => r?,
                () = payments.run_reconciler(
                    Duration::from_secs(1),
                    Duration::from_secs(3),
                    CancellationToken::new(),
                ) => {}
            }
            Ok(())
        }
    });
}

/// `stripe`: stripe-sim's router and the webhook [`Relay`]. It never
/// crashes: it is the outside world.
fn add_stripe(
    sim: &mut turmoil::Sim<'_>,
    state: &Persisted,
    trace: &Trace,
    seed: u64,
    opts: &Options,
) {
    let router = shopstream_stripe_sim::api::http::routes(HttpState {
        sim: state.stripe.clone(),
        secret_key: SecretString::from(SECRET_KEY),
    });
    let relay = Relay {
        stripe: state.stripe.clone(),
        clock: state.clocks["stripe"].clone(),
        rng: SharedRng::new(seed ^ 0xBEEF),
        trace: trace.clone(),
        faulty: opts.has(Fault::Webhook),
    };
    sim.host("stripe", move || {
        let router = router.clone();
        let relay = relay.clone();
        async move {
            let listener = net::http_listener(net::HTTP_PORT).await?;
            tokio::spawn(relay.run());
            axum::serve(listener, router).await?;
            Ok(())
        }
    });
}

/// `orders`: its gRPC API, the saga worker and the unstarted-saga sweeper.
fn add_orders(
    sim: &mut turmoil::Sim<'_>,
    state: &Persisted,
    trace: &Trace,
    seed: u64,
    opts: &Options,
) {
    let orders = Orders {
        store: state.orders_store.clone(),
        prices: Arc::new(FixedPrices),
        starter: Arc::new(SimStarter {
            history: state.history.clone(),
            trace: trace.clone(),
        }),
        clock: Arc::new(state.clocks["orders"].clone()),
        ids: state.orders_ids.clone(),
        relay: None,
    };
    let worker = Worker {
        history: state.history.clone(),
        orders: orders.clone(),
        trace: trace.clone(),
        rng: SharedRng::new(seed ^ 0xF00D),
        lost_result_p: if opts.has(Fault::LostResult) {
            0.1
        } else {
            0.0
        },
        faults_end_ms: FAULTS_END_MS,
        bug: opts.bug,
    };
    let trace = trace.clone();
    sim.host("orders", move || {
        let orders = orders.clone();
        let worker = worker.clone();
        let trace = trace.clone();
        async move {
            trace.log("orders", "process started");
            let api = OrdersServiceServer::new(shopstream_orders::api::GrpcApi {
                orders: orders.clone(),
                default_tenant: TENANT.into(),
            });
            let server = net::serve_grpc(tonic::service::Routes::new(api));
            let sweeper = async {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = orders.start_unstarted(1_000).await;
                }
            };
            tokio::select! {
                r = server => r?,
                () = worker.run() => {}
                () = sweeper => {}
            }
            Ok(())
        }
    });
}

/// The client `shopper`: every planned order submitted at its time, and
/// again later if it is planned as a duplicate. Returns what it was told.
fn add_shopper(sim: &mut turmoil::Sim<'_>, workload: &[PlannedOrder], trace: &Trace) -> Acks {
    let acks: Acks = Arc::default();
    let shopper_acks = acks.clone();
    let trace = trace.clone();
    let workload = workload.to_vec();
    sim.client("shopper", async move {
        let mut tasks = Vec::new();
        for o in workload {
            let mut times = vec![o.at_ms];
            if let Some(d) = o.duplicate_after_ms {
                times.push(o.at_ms + d);
            }
            for (copy, at) in times.into_iter().enumerate() {
                let (o, acks, trace) = (o.clone(), shopper_acks.clone(), trace.clone());
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(at)).await;
                    submit(&o, copy, &acks, &trace).await;
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    });
    acks
}

/// The planned faults, applied as simulated time reaches them.
struct FaultSchedule {
    plan: Vec<(i64, Action)>,
    next: usize,
    crashed: BTreeSet<&'static str>,
    /// Faults that changed something inside the fault window.
    injected: usize,
}

impl FaultSchedule {
    fn new(plan: Vec<(i64, Action)>) -> FaultSchedule {
        FaultSchedule {
            plan,
            next: 0,
            crashed: BTreeSet::new(),
            injected: 0,
        }
    }

    /// Apply every action due at `now`; once the window is over, restart
    /// whatever is still down.
    fn apply_due(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        now: i64,
        state: &Persisted,
        trace: &Trace,
    ) {
        while self.next < self.plan.len() && self.plan[self.next].0 <= now {
            let action = self.plan[self.next].1.clone();
            self.next += 1;
            if self.apply(sim, now, &action, state) {
                if now < FAULTS_END_MS {
                    self.injected += 1;
                }
                trace.log_at(now, "fault", action.to_string());
            }
        }
        if now >= FAULTS_END_MS {
            for h in std::mem::take(&mut self.crashed) {
                sim.bounce(h);
                trace.log_at(now, "fault", format!("restart {h}"));
            }
        }
    }

    /// Whether `action` changed anything (a repeated crash or a heal of
    /// what is healthy does not).
    fn apply(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        now: i64,
        action: &Action,
        state: &Persisted,
    ) -> bool {
        match action {
            Action::Partition(a, b) => {
                sim.partition(*a, *b);
                true
            }
            Action::Repair(a, b) => {
                sim.repair(*a, *b);
                now < FAULTS_END_MS
            }
            Action::Crash(h) => {
                if self.crashed.insert(*h) {
                    sim.crash(*h);
                    true
                } else {
                    false
                }
            }
            Action::Restart(h) => {
                if self.crashed.remove(h) {
                    sim.bounce(*h);
                    true
                } else {
                    false
                }
            }
            Action::Latency(ms) => {
                sim.set_max_message_latency(Duration::from_millis(*ms));
                *ms > 1
            }
            Action::Provider(rule) => {
                state
                    .stripe
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .faults
                    .fail_next
                    .push(rule.clone());
                true
            }
            Action::Skew(h, ms) => {
                let clock = &state.clocks[h];
                let changed = clock.skew_ms() != *ms;
                clock.set_skew_ms(*ms);
                changed
            }
        }
    }
}

/// Step the simulation, applying faults as they come due and checking the
/// continuous invariants every [`CHECK_EVERY_MS`], until everything is
/// settled (then the quiescence invariants decide), an invariant breaks, a
/// host fails, or [`SETTLE_MS`] after the faults nothing settled. Returns the
/// outcome and the number of invariant checks run.
fn drive(
    sim: &mut turmoil::Sim<'_>,
    schedule: &mut FaultSchedule,
    state: &Persisted,
    world: &Observed,
    trace: &Trace,
) -> (Outcome, u64) {
    let mut checks = 0u64;
    let mut next_check = 0i64;
    let mut client_done = false;
    loop {
        let now = sim.elapsed().as_millis() as i64;
        schedule.apply_due(sim, now, state, trace);
        match sim.step() {
            Ok(done) => client_done = client_done || done,
            Err(e) => {
                let outcome = Outcome::Violated {
                    invariant: "a host failed",
                    detail: e.to_string(),
                };
                return (outcome, checks);
            }
        }
        if now < next_check {
            continue;
        }
        next_check = now + CHECK_EVERY_MS;
        checks += 1;
        if let Err((invariant, detail)) = world.continuous() {
            return (Outcome::Violated { invariant, detail }, checks);
        }
        if client_done && now >= FAULTS_END_MS && world.quiescent() {
            checks += 1;
            let outcome = match world.at_quiescence() {
                Ok(()) => Outcome::Held,
                Err((invariant, detail)) => Outcome::Violated { invariant, detail },
            };
            return (outcome, checks);
        }
        if now >= FAULTS_END_MS + SETTLE_MS {
            let outcome = Outcome::Violated {
                invariant: "every order reaches a terminal state after faults stop",
                detail: world.stuck(),
            };
            return (outcome, checks);
        }
    }
}

/// One CreateOrder as a client does it: retried on transient errors with
/// the same key, each attempt on a fresh connection.
async fn submit(o: &PlannedOrder, copy: usize, acks: &Acks, trace: &Trace) {
    let who = if copy == 0 { "shopper" } else { "shopper*" };
    let mut wait = Duration::from_millis(300);
    for attempt in 1..=8 {
        let mut client = OrdersServiceClient::new(net::channel(
            "orders",
            net::GRPC_PORT,
            Duration::from_secs(2),
        ));
        let req = CreateOrderRequest {
            idempotency_key: o.key.clone(),
            user_id: o.user.clone(),
            items: vec![CreateOrderItem {
                sku: Some(ProductRef {
                    product_id: PRODUCT.into(),
                    sku_id: o.sku.into(),
                }),
                quantity: o.quantity,
            }],
            payment_method: o.card.into(),
        };
        match client.create_order(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let id = r.order.map(|o| o.order_id).unwrap_or_default();
                trace.log(
                    who,
                    format!(
                        "{} {}x{} {} -> order={}{}",
                        o.key,
                        o.quantity,
                        o.sku,
                        o.card,
                        short(&id),
                        if r.replayed { " (replayed)" } else { "" }
                    ),
                );
                acks.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(o.key.clone())
                    .or_default()
                    .insert(id);
                return;
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Unknown
                        | tonic::Code::Cancelled
                        | tonic::Code::Internal
                ) =>
            {
                trace.log(who, format!("{} attempt {attempt}: {:?}", o.key, s.code()));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(3));
            }
            Err(s) => {
                trace.log(
                    who,
                    format!("{} refused: {:?} {}", o.key, s.code(), s.message()),
                );
                return;
            }
        }
    }
    trace.log(who, format!("{} gave up", o.key));
}

/// stripe-sim records every event (`GET /v1/events`); its own delivery
/// worker uses reqwest on real sockets, so on the stripe host this relay
/// delivers them instead: signed with stripe-sim's `sign`, POSTed to
/// payments' real webhook endpoint, retried like stripe-sim's worker, and —
/// with the webhook fault — duplicated, reordered, late or dropped.
#[derive(Clone)]
struct Relay {
    stripe: Arc<Mutex<StripeState>>,
    clock: SimClock,
    rng: SharedRng,
    trace: Trace,
    faulty: bool,
}

impl Relay {
    async fn run(self) {
        let mut seen = 0usize;
        loop {
            let new: Vec<(String, &'static str, String)> = {
                let g = self.stripe.lock().unwrap_or_else(|p| p.into_inner());
                g.events
                    .iter()
                    .skip(seen)
                    .map(|e| {
                        (
                            e.id.clone(),
                            e.event_type,
                            shopstream_stripe_sim::objects::event(e).to_string(),
                        )
                    })
                    .collect()
            };
            seen += new.len();
            for (id, kind, payload) in new {
                let plan: Vec<u64> = self.rng.with(|r| {
                    if !self.faulty || sim_ms() >= FAULTS_END_MS {
                        return vec![r.range(0, 20)];
                    }
                    match r.range(0, 99) {
                        0..=4 => vec![],                                   // lost
                        5..=19 => vec![r.range(0, 50), r.range(0, 3_000)], // duplicated
                        20..=34 => vec![r.range(500, 3_000)],              // reordered
                        35..=44 => vec![r.range(10_000, 30_000)],          // late
                        _ => vec![r.range(0, 20)],
                    }
                });
                if plan.len() != 1 || plan[0] > 20 {
                    self.trace.log(
                        "stripe",
                        format!("webhook {} {kind} delivery plan {:?} ms", short(&id), plan),
                    );
                }
                for delay in plan {
                    let r = self.clone();
                    let (id, payload) = (id.clone(), payload.clone());
                    tokio::spawn(async move { r.deliver(id, kind, payload, delay).await });
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn deliver(self, id: String, kind: &'static str, payload: String, delay_ms: u64) {
        use shopstream_stripe_sim::webhooks::{FIRST_BACKOFF_MS, MAX_ATTEMPTS, MAX_BACKOFF_MS};
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let mut backoff = FIRST_BACKOFF_MS;
        for attempt in 1..=MAX_ATTEMPTS {
            let now_s = shopstream_platform::clock::Clock::now_ms(&self.clock).div_euclid(1000);
            let sig = shopstream_stripe_sim::sign(payload.as_bytes(), WEBHOOK_SECRET, now_s);
            let req = http::Request::builder()
                .method("POST")
                .uri(shopstream_payments::api::http::WEBHOOK_PATH)
                .header("host", "payments")
                .header("content-type", "application/json")
                .header(shopstream_payments::api::http::SIGNATURE_HEADER, sig)
                .body(Full::new(Bytes::from(payload.clone())))
                .expect("static request parts are valid");
            match net::http("payments", net::HTTP_PORT, req, Duration::from_secs(2)).await {
                Ok((s, body)) if s.is_success() => {
                    self.trace.log(
                        "webhook",
                        format!(
                            "{} {kind} -> {}",
                            short(&id),
                            String::from_utf8_lossy(&body)
                        ),
                    );
                    return;
                }
                Ok((s, _)) => self.trace.log(
                    "webhook",
                    format!("{} {kind} attempt {attempt}: {s}", short(&id)),
                ),
                Err(e) => self.trace.log(
                    "webhook",
                    format!("{} {kind} attempt {attempt}: {e}", short(&id)),
                ),
            }
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF_MS);
        }
        self.trace
            .log("webhook", format!("{} {kind} given up", short(&id)));
    }
}

/// The omniscient view the invariants read (the stores themselves).
struct Observed {
    inventory: MemoryInventory,
    orders: Arc<dyn OrderStore>,
    stripe: Arc<Mutex<StripeState>>,
    history: History,
    initial: BTreeMap<&'static str, i64>,
    acks: Acks,
}

type Check = Result<(), (&'static str, String)>;

/// What stripe-sim holds for one order, summed over its payment intents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OrderPayments {
    captured_minor: i64,
    refunded_minor: i64,
    /// Intents authorized and neither captured nor cancelled.
    open_authorizations: usize,
    /// Intents that captured anything.
    captured_intents: usize,
}

impl Observed {
    fn all_orders(&self) -> Vec<shopstream_orders::ports::Order> {
        futures::executor::block_on(self.orders.list(TENANT, None, &[], None, u32::MAX))
            .unwrap_or_default()
    }

    /// Per order id (from each intent's metadata): what stripe-sim holds.
    fn payments_by_order(&self) -> BTreeMap<String, OrderPayments> {
        let g = self.stripe.lock().unwrap_or_else(|p| p.into_inner());
        let mut by: BTreeMap<String, OrderPayments> = BTreeMap::new();
        for pi in g.intents.values() {
            let order = pi.metadata.get("order_id").cloned().unwrap_or_default();
            let e = by.entry(order).or_default();
            e.captured_minor += pi.amount_received;
            e.refunded_minor += pi.amount_refunded;
            if pi.status == shopstream_stripe_sim::domain::Status::RequiresCapture {
                e.open_authorizations += 1;
            }
            if pi.amount_received > 0 {
                e.captured_intents += 1;
            }
        }
        by
    }

    fn continuous(&self) -> Check {
        for (sku, initial) in &self.initial {
            let s = futures::executor::block_on(self.inventory.stock(TENANT, sku))
                .map_err(|e| ("stock readable", e.to_string()))?;
            if s.on_hand < 0 || s.reserved < 0 || s.reserved > s.on_hand {
                return Err((
                    "never oversold",
                    format!(
                        "{sku}: on_hand={} reserved={} committed={}",
                        s.on_hand, s.reserved, s.committed
                    ),
                ));
            }
            if s.committed > *initial || s.on_hand + s.committed != *initial {
                return Err((
                    "stock conserved",
                    format!(
                        "{sku}: initial={initial} available={} reserved={} sold={}",
                        s.available(),
                        s.reserved,
                        s.committed
                    ),
                ));
            }
        }
        for (order, p) in self.payments_by_order() {
            let (captured, refunded, captures) =
                (p.captured_minor, p.refunded_minor, p.captured_intents);
            if captures > 1 {
                return Err((
                    "at most one capture per order",
                    format!("order {order}: {captures} captured intents"),
                ));
            }
            if refunded > captured {
                return Err((
                    "refunds never exceed captures",
                    format!("order {order}: captured {captured} refunded {refunded}"),
                ));
            }
        }
        for (id, wf) in self.history.all() {
            if let Some(e) = wf.failed {
                return Err(("the saga accepts every outcome", format!("{id}: {e}")));
            }
        }
        Ok(())
    }

    fn quiescent(&self) -> bool {
        self.history.open_ids().is_empty()
            && self
                .all_orders()
                .iter()
                .all(|o| matches!(o.state, OrderState::Completed | OrderState::Cancelled(_)))
    }

    fn stuck(&self) -> String {
        let mut out: Vec<String> = self
            .all_orders()
            .iter()
            .filter(|o| !matches!(o.state, OrderState::Completed | OrderState::Cancelled(_)))
            .map(|o| {
                format!(
                    "order={} {} (saga started: {})",
                    short(&o.order_id.to_string()),
                    o.state.as_str(),
                    o.workflow_started
                )
            })
            .collect();
        out.extend(self.history.open_ids().into_iter().map(|id| {
            let wf = self.history.get(&id);
            format!(
                "workflow {} open at {:?}",
                short(&id),
                wf.map(|w| w.saga.next())
            )
        }));
        out.join("; ")
    }

    /// The order's log read back step by step, as a replayed workflow
    /// reads it (`driver::recorded`): seqs without a gap, each answering
    /// the decider's next command and leaving the state it recorded, and
    /// the order in the state the last one left. Steps run twice by a
    /// replay that did not read the log would break it.
    fn log_is_one_saga_run(&self, o: &shopstream_orders::ports::Order) -> Check {
        const INVARIANT: &str = "each order's log is one run of the saga";
        let steps = futures::executor::block_on(self.orders.steps(TENANT, o.order_id))
            .map_err(|e| ("orders readable", e.to_string()))?;
        let at = |s: &StepRecord, why: String| {
            let id = o.order_id.to_string();
            (
                INVARIANT,
                format!(
                    "order={} step {} {} {}: {why}",
                    short(&id),
                    s.seq,
                    s.step,
                    s.outcome
                ),
            )
        };
        let mut saga = Saga::new();
        for (i, s) in steps.iter().enumerate() {
            if s.seq as usize != i + 1 {
                return Err(at(s, format!("expected seq {}", i + 1)));
            }
            let command = saga.next();
            driver::recorded(command, s)
                .and_then(|settled| saga.on(settled.outcome).map_err(|e| e.to_string()))
                .map_err(|why| at(s, why))?;
            if saga.state().as_str() != s.state {
                return Err(at(s, format!("the saga is {} here", saga.state().as_str())));
            }
        }
        if saga.state() != o.state {
            let id = o.order_id.to_string();
            return Err((
                INVARIANT,
                format!(
                    "order={} is {:?} but its log ends {:?}",
                    short(&id),
                    o.state,
                    saga.state()
                ),
            ));
        }
        Ok(())
    }

    fn at_quiescence(&self) -> Check {
        let orders = self.all_orders();
        let pays = self.payments_by_order();
        // Holds still open now: every order is terminal, so none may be
        // left, including holds the saga never learned of (it undoes a
        // reserve whose answers were all lost by order id). Expiring them
        // all shows whose they are.
        let held = futures::executor::block_on(self.inventory.expire_due(i64::MAX, 100_000))
            .map_err(|e| ("stock readable", e.to_string()))?;
        if let Some(r) = held.first() {
            let order_id = r.order_id.split('#').next().unwrap_or_default();
            let state = orders
                .iter()
                .find(|o| o.order_id.to_string() == order_id)
                .map(|o| o.state);
            return Err((
                "every cancelled order released its stock",
                format!(
                    "reservation {} of order={} ({}) still holds {:?}",
                    short(&r.id.to_string()),
                    short(order_id),
                    state.map_or("unknown", |s| s.as_str()),
                    r.lines
                        .iter()
                        .map(|l| format!("{}x{}", l.quantity, l.sku_id))
                        .collect::<Vec<_>>()
                ),
            ));
        }
        let mut sold: BTreeMap<String, i64> = BTreeMap::new();
        let mut per_user: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &orders {
            *per_user.entry(o.user_id.as_str()).or_default() += 1;
            let id = o.order_id.to_string();
            let p = pays.get(&id).copied().unwrap_or_default();
            let (captured, refunded, open) =
                (p.captured_minor, p.refunded_minor, p.open_authorizations);
            match o.state {
                OrderState::Completed => {
                    for l in &o.lines {
                        *sold.entry(l.sku_id.clone()).or_default() += i64::from(l.quantity);
                    }
                    if captured != o.total_minor || refunded != 0 {
                        return Err((
                            "a completed order is paid exactly once",
                            format!(
                                "order={} total {} captured {captured} refunded {refunded}",
                                short(&id),
                                o.total_minor
                            ),
                        ));
                    }
                }
                OrderState::Cancelled(_) => {
                    if captured != refunded {
                        return Err((
                            "a cancelled order keeps no money",
                            format!(
                                "order={} captured {captured} refunded {refunded}",
                                short(&id)
                            ),
                        ));
                    }
                }
                s => {
                    return Err((
                        "every order reaches a terminal state after faults stop",
                        format!("order={} is {}", short(&id), s.as_str()),
                    ));
                }
            }
            self.log_is_one_saga_run(o)?;
            if open > 0 {
                return Err((
                    "no authorization is left open",
                    format!(
                        "order={} has {open} uncaptured authorization(s)",
                        short(&id)
                    ),
                ));
            }
        }
        for sku in self.initial.keys() {
            let s = futures::executor::block_on(self.inventory.stock(TENANT, sku))
                .map_err(|e| ("stock readable", e.to_string()))?;
            let want = sold.get(*sku).copied().unwrap_or(0);
            if s.committed != want {
                return Err((
                    "stock sold equals what completed orders bought",
                    format!(
                        "{sku}: sold={} but completed orders bought {want}",
                        s.committed
                    ),
                ));
            }
        }
        if let Some((user, n)) = per_user.iter().find(|(_, n)| **n > 1) {
            return Err((
                "duplicate submissions create one order",
                format!("{user} has {n} orders for one idempotency key"),
            ));
        }
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        for (key, ids) in acks.iter() {
            if ids.len() > 1 {
                return Err((
                    "duplicate submissions create one order",
                    format!("{key} answered with {} different orders", ids.len()),
                ));
            }
            for id in ids {
                if !orders.iter().any(|o| o.order_id.to_string() == *id) {
                    return Err((
                        "no acknowledged order is lost",
                        format!("{key}: order {id} acknowledged but not stored"),
                    ));
                }
            }
        }
        Ok(())
    }
}
