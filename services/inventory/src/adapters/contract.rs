//! The contract every inventory store passes (memory in unit tests, Postgres
//! in integration tests). Panics on a violation.

use uuid::Uuid;

use crate::{
    domain::{Line, State},
    ports::{InventoryStore, StoreError},
};

fn line(sku: &str, q: u32) -> Line {
    Line {
        sku_id: sku.into(),
        quantity: q,
    }
}

pub async fn run(store: &dyn InventoryStore) {
    let t = format!("t-{}", Uuid::now_v7());
    store.set_stock(&t, "A", 10).await.unwrap();
    store.set_stock(&t, "B", 1).await.unwrap();

    // All or nothing: B lacks stock, so A is not held either.
    let err = store
        .reserve(
            &t,
            "o1",
            &[line("A", 2), line("B", 2)],
            Uuid::now_v7(),
            1_000,
        )
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::InsufficientStock { sku_id: "B".into() });
    assert_eq!(store.stock(&t, "A").await.unwrap().reserved, 0);

    // Hold; the same request again is the same reservation.
    let r1 = store
        .reserve(&t, "o2", &[line("A", 3)], Uuid::now_v7(), 1_000)
        .await
        .unwrap();
    let again = store
        .reserve(&t, "o2", &[line("A", 3)], Uuid::now_v7(), 1_000)
        .await
        .unwrap();
    assert_eq!(again.id, r1.id);
    assert_eq!(store.stock(&t, "A").await.unwrap().reserved, 3);
    assert!(matches!(
        store
            .reserve(&t, "o2", &[line("A", 4)], Uuid::now_v7(), 1_000)
            .await,
        Err(StoreError::OrderMismatch(_))
    ));
    assert!(matches!(
        store
            .reserve(&t, "o9", &[line("Z", 1)], Uuid::now_v7(), 1_000)
            .await,
        Err(StoreError::UnknownSku(_))
    ));

    // Commit twice moves stock once.
    assert_eq!(
        store.commit(&t, r1.id).await.unwrap().state,
        State::Committed
    );
    assert_eq!(
        store.commit(&t, r1.id).await.unwrap().state,
        State::Committed
    );
    let a = store.stock(&t, "A").await.unwrap();
    assert_eq!((a.on_hand, a.reserved, a.committed), (7, 0, 3));
    assert!(matches!(
        store.release(&t, r1.id).await,
        Err(StoreError::Conflict(_))
    ));

    // Release twice returns stock once.
    let r2 = store
        .reserve(&t, "o3", &[line("A", 5)], Uuid::now_v7(), 1_000)
        .await
        .unwrap();
    store.release(&t, r2.id).await.unwrap();
    store.release(&t, r2.id).await.unwrap();
    assert_eq!(store.stock(&t, "A").await.unwrap().available(), 7);
    assert!(matches!(
        store.commit(&t, r2.id).await,
        Err(StoreError::Conflict(_))
    ));

    // Expiry returns held stock once, and never touches the finished ones.
    let r3 = store
        .reserve(&t, "o4", &[line("A", 4), line("B", 1)], Uuid::now_v7(), 500)
        .await
        .unwrap();
    assert_eq!(store.stock(&t, "A").await.unwrap().available(), 3);
    let expired: Vec<_> = store
        .expire_due(500, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.tenant_id == t)
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, r3.id);
    assert_eq!(store.stock(&t, "A").await.unwrap().available(), 7);
    assert_eq!(store.stock(&t, "B").await.unwrap().available(), 1);
    assert!(
        store.release(&t, r3.id).await.is_ok(),
        "releasing an expired hold is a no-op"
    );
    assert!(matches!(
        store.commit(&t, Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));

    // Release by order: the order's reservation, whatever its id.
    let r5 = store
        .reserve(&t, "o5", &[line("A", 2)], Uuid::now_v7(), 1_000)
        .await
        .unwrap();
    let released = store.release_order(&t, "o5", Uuid::now_v7()).await.unwrap();
    assert_eq!((released.id, released.state), (r5.id, State::Released));
    assert_eq!(store.stock(&t, "A").await.unwrap().available(), 7);
    // An order released before its reserve arrived never holds stock: the
    // late reserve gets the released reservation back.
    let gone = store.release_order(&t, "o6", Uuid::now_v7()).await.unwrap();
    assert_eq!(gone.state, State::Released);
    assert!(gone.lines.is_empty());
    let late = store
        .reserve(&t, "o6", &[line("A", 1)], Uuid::now_v7(), 1_000)
        .await
        .unwrap();
    assert_eq!((late.id, late.state), (gone.id, State::Released));
    assert_eq!(store.stock(&t, "A").await.unwrap().available(), 7);
    assert_eq!(
        store
            .release_order(&t, "o6", Uuid::now_v7())
            .await
            .unwrap()
            .id,
        gone.id,
        "releasing by order twice is one release"
    );
    // A sale cannot be released by order either.
    assert!(matches!(
        store.release_order(&t, "o2", Uuid::now_v7()).await,
        Err(StoreError::Conflict(_))
    ));

    // Conservation: on_hand + committed is what was stocked.
    let a = store.stock(&t, "A").await.unwrap();
    assert_eq!(a.on_hand + a.committed, 10);

    // The same order held by eight callers at once (a client's retries
    // racing each other): one reservation, its units held once.
    store.set_stock(&t, "C", 10).await.unwrap();
    let lines = [line("C", 2)];
    let racing = (0..8).map(|_| store.reserve(&t, "o7", &lines, Uuid::now_v7(), 1_000));
    let ids: Vec<Uuid> = futures::future::join_all(racing)
        .await
        .into_iter()
        .map(|r| r.expect("each racing caller gets the order's hold").id)
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one reservation: {ids:?}"
    );
    assert_eq!(store.stock(&t, "C").await.unwrap().reserved, 2);
}
