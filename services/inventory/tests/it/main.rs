//! Inventory against the real test stack: the store contract on Postgres, no
//! oversell under 1,000 concurrent reservations, expiry returning stock, and
//! the idempotent gRPC surface.

use std::{sync::Arc, time::Duration};

use shopstream_inventory::{
    Config, Inventory,
    adapters::{
        contract,
        postgres::{MIGRATOR, PgInventory},
    },
    domain::Line,
    ports::InventoryStore,
};
use shopstream_platform::{
    clock::{ManualClock, SystemClock},
    config::ServiceConfig,
    ids::SystemIdGen,
};
use shopstream_proto::{
    common::v1::ProductRef,
    inventory::v1::{
        CommitRequest, ReleaseRequest, ReservationItem, ReservationState, ReserveRequest,
        inventory_service_client::InventoryServiceClient,
    },
};
use shopstream_runtime::testkit;

async fn store() -> PgInventory {
    let pool = testkit::stack().await.database("it_inventory").await;
    MIGRATOR.run(&pool).await.unwrap();
    PgInventory::new(pool)
}

#[tokio::test]
async fn postgres_store_passes_the_contract() {
    contract::run(&store().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_reservations_on_a_hundred_units_never_oversell() {
    let pg = store().await;
    pg.set_stock("default", "HOT-1", 100).await.unwrap();
    let inv = Inventory {
        store: Arc::new(pg.clone()),
        clock: Arc::new(SystemClock),
        ids: Arc::new(SystemIdGen),
    };
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let inv = inv.clone();
            tokio::spawn(async move {
                inv.reserve(
                    "default",
                    &format!("order-{i}"),
                    &[Line {
                        sku_id: "HOT-1".into(),
                        quantity: 1,
                    }],
                    60,
                )
                .await
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => held.push(r),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(held.len(), 100, "exactly the stock is held");
    assert_eq!(refused, 900);
    let s = pg.stock("default", "HOT-1").await.unwrap();
    assert_eq!((s.on_hand, s.reserved, s.committed), (100, 100, 0));
    // Commit half, release the rest: nothing is left held, nothing lost.
    for (i, r) in held.iter().enumerate() {
        if i % 2 == 0 {
            inv.commit("default", r.id).await.unwrap();
        } else {
            inv.release("default", r.id).await.unwrap();
        }
    }
    let s = pg.stock("default", "HOT-1").await.unwrap();
    assert_eq!((s.on_hand, s.reserved, s.committed), (50, 0, 50));
}

#[tokio::test]
async fn the_expiry_sweep_returns_stock_after_the_ttl() {
    let pg = store().await;
    pg.set_stock("default", "TTL-1", 5).await.unwrap();
    let clock = ManualClock::new(1_000_000);
    let inv = Inventory {
        store: Arc::new(pg.clone()),
        clock: Arc::new(clock.clone()),
        ids: Arc::new(SystemIdGen),
    };
    let r = inv
        .reserve(
            "default",
            "o-ttl",
            &[Line {
                sku_id: "TTL-1".into(),
                quantity: 5,
            }],
            30,
        )
        .await
        .unwrap();
    assert_eq!(inv.expire_due().await.unwrap(), 0, "not due yet");
    clock.advance_ms(30_000);
    assert!(inv.expire_due().await.unwrap() >= 1);
    assert_eq!(pg.stock("default", "TTL-1").await.unwrap().available(), 5);
    // A commit that arrives after expiry is refused: the stock is gone back.
    assert!(inv.commit("default", r.id).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_reserve_commit_release_are_idempotent() {
    let stack = testkit::stack().await;
    let database = testkit::unique("it_inventory_grpc");
    let mut service = ServiceConfig::new("inventory", stack.endpoints.clone());
    service.request_timeout = Duration::from_secs(5);
    let cfg = |service| Config {
        service,
        database: database.clone(),
        expiry_interval: Duration::from_millis(100),
    };
    let (inv, _) = shopstream_inventory::build(&cfg(service)).await.unwrap();
    inv.store.set_stock("default", "SKU-9", 3).await.unwrap();
    let running = testkit::spawn_service::<shopstream_inventory::Server>(|mut service| {
        service.request_timeout = Duration::from_secs(5);
        cfg(service)
    })
    .await;
    let mut c = InventoryServiceClient::connect(running.grpc_url())
        .await
        .unwrap();
    let req = || ReserveRequest {
        order_id: "order-77".into(),
        items: vec![ReservationItem {
            sku: Some(ProductRef {
                product_id: String::new(),
                sku_id: "SKU-9".into(),
            }),
            quantity: 2,
        }],
        ttl_s: 60,
    };
    let a = c.reserve(req()).await.unwrap().into_inner();
    let b = c.reserve(req()).await.unwrap().into_inner();
    assert_eq!(
        a.reservation_id, b.reservation_id,
        "same request, same reservation"
    );
    assert_eq!(a.state, ReservationState::Held as i32);

    let over = ReserveRequest {
        order_id: "order-78".into(),
        ..req()
    };
    let err = c.reserve(over).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Aborted,
        "only 1 unit left: conflict"
    );

    for _ in 0..2 {
        let r = c
            .commit(CommitRequest {
                reservation_id: a.reservation_id.clone(),
            })
            .await
            .unwrap();
        assert_eq!(r.into_inner().state, ReservationState::Committed as i32);
    }
    let err = c
        .release(ReleaseRequest {
            reservation_id: a.reservation_id.clone(),
            reason: "late".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Aborted,
        "a sale cannot be released"
    );
    let err = c
        .reserve(ReserveRequest {
            order_id: String::new(),
            items: vec![],
            ttl_s: 99_999,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Release by order (ADR 0006): the saga lost every answer to its
    // reserve, so it has no reservation id.
    let by_order = |order: &str| ReleaseRequest {
        order_id: order.into(),
        reason: "order_cancelled".into(),
        ..Default::default()
    };
    let early = c.release(by_order("order-79")).await.unwrap().into_inner();
    assert_eq!(early.state, ReservationState::Released as i32);
    let late = c
        .reserve(ReserveRequest {
            order_id: "order-79".into(),
            ..req()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        late.state,
        ReservationState::Released as i32,
        "a reserve arriving after the release holds nothing"
    );
    let err = c.release(by_order("")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "neither id given");
    running.stop().await.unwrap();
}
