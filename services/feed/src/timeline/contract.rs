//! The contract every timeline adapter passes (memory in unit tests,
//! Postgres in the integration tests, Scylla wherever
//! `SHOPSTREAM_SCYLLA_URL` is set). Each run uses a fresh tenant.

use uuid::Uuid;

use super::{TimelineError, TimelineStore};
use crate::domain::activity::{Activity, DAY_MS, Kind, Object, day};

const T0: i64 = 1_780_000_000_000;

fn activity(tenant: &str, actor: Uuid, n: u32, ts_ms: i64) -> Activity {
    Activity {
        tenant: tenant.to_string(),
        id: Uuid::from_u64_pair(u64::from(n), ts_ms as u64),
        actor,
        kind: if n.is_multiple_of(2) {
            Kind::Like
        } else {
            Kind::Comment
        },
        object: Object::Product(Uuid::from_u128(7)),
        text: if n.is_multiple_of(2) {
            String::new()
        } else {
            format!("comment {n}")
        },
        client_id: format!("c{n}"),
        ts_ms,
    }
}

async fn all(store: &dyn TimelineStore, tenant: &str, user: Uuid, limit: usize) -> Vec<Activity> {
    let mut out = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .page(tenant, user, cursor.as_deref(), limit)
            .await
            .expect("page");
        assert!(page.activities.len() <= limit);
        out.extend(page.activities);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Run the whole contract against `store`.
pub async fn run(store: &dyn TimelineStore) {
    let tenant = format!("contract-{}", Uuid::new_v4().simple());
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    store.ping().await.expect("ping");

    // Activities over five days with gaps, two in the same millisecond,
    // appended out of order and one of them twice.
    let times = [
        T0,
        T0 + 1,
        T0 + 1,
        T0 + DAY_MS,
        T0 + 3 * DAY_MS + 5,
        T0 + 3 * DAY_MS + 6,
        T0 + 6 * DAY_MS,
    ];
    let acts: Vec<Activity> = times
        .iter()
        .enumerate()
        .map(|(n, t)| activity(&tenant, alice, n as u32, *t))
        .collect();
    for a in acts.iter().rev() {
        store.append(a).await.expect("append");
    }
    store.append(&acts[2]).await.expect("append again");
    store
        .append(&activity(&tenant, bob, 99, T0 + 2))
        .await
        .expect("append bob");
    store
        .append(&activity("another-tenant-of-the-contract", alice, 98, T0))
        .await
        .expect("append other tenant");
    assert_eq!(
        store.count_user(&tenant, alice).await.unwrap(),
        7,
        "a repeat is no second row"
    );
    assert_eq!(store.count_day(&tenant, alice, day(T0)).await.unwrap(), 3);
    assert_eq!(
        store.count_day(&tenant, alice, day(T0) + 2).await.unwrap(),
        0
    );

    // Newest first, ties by id descending, identical at every page size,
    // with every field kept.
    let mut expected = acts.clone();
    expected.sort_by(|a, b| b.ts_ms.cmp(&a.ts_ms).then(b.id.cmp(&a.id)));
    for limit in [1, 2, 3, 50] {
        assert_eq!(
            all(store, &tenant, alice, limit).await,
            expected,
            "limit {limit}"
        );
    }

    // Appends while someone pages: newer ones are not on later pages, older
    // ones are, and nothing repeats.
    let first = store.page(&tenant, alice, None, 3).await.unwrap();
    store
        .append(&activity(&tenant, alice, 50, T0 + 7 * DAY_MS))
        .await
        .unwrap();
    store
        .append(&activity(&tenant, alice, 51, T0 - DAY_MS))
        .await
        .unwrap();
    let mut seen = first.activities.clone();
    let mut cursor = first.next;
    while let Some(c) = cursor {
        let p = store.page(&tenant, alice, Some(&c), 3).await.unwrap();
        seen.extend(p.activities);
        cursor = p.next;
    }
    let ids: Vec<u32> = seen
        .iter()
        .map(|a| a.client_id[1..].parse().unwrap())
        .collect();
    assert_eq!(ids, [6, 5, 4, 3, 2, 1, 0, 51], "{ids:?}");

    // Isolation: another user and another tenant see only their own.
    assert_eq!(all(store, &tenant, bob, 10).await.len(), 1);
    assert!(all(store, &tenant, Uuid::new_v4(), 10).await.is_empty());

    // A damaged cursor is refused.
    assert!(matches!(
        store.page(&tenant, alice, Some("not a cursor"), 3).await,
        Err(TimelineError::BadCursor)
    ));

    // Export: the user's whole history, newest first, comment bodies
    // included, nobody else's (another user, the same user in another
    // tenant).
    let mut history = expected.clone();
    history.push(activity(&tenant, alice, 50, T0 + 7 * DAY_MS));
    history.push(activity(&tenant, alice, 51, T0 - DAY_MS));
    history.sort_by(|a, b| b.ts_ms.cmp(&a.ts_ms).then(b.id.cmp(&a.id)));
    let exported = store.export_user(&tenant, alice).await.expect("export");
    assert_eq!(exported, history);
    assert!(exported.iter().any(|a| a.text == "comment 5"));
    assert!(
        exported
            .iter()
            .all(|a| a.actor == alice && a.tenant == tenant)
    );
    assert_eq!(store.export_user(&tenant, bob).await.unwrap().len(), 1);
    assert!(
        store
            .export_user(&tenant, Uuid::new_v4())
            .await
            .unwrap()
            .is_empty()
    );

    // Erase takes everything of one user, once, and nothing of anyone else.
    assert_eq!(store.erase_user(&tenant, alice).await.unwrap(), 9);
    assert_eq!(store.count_user(&tenant, alice).await.unwrap(), 0);
    assert!(all(store, &tenant, alice, 10).await.is_empty());
    assert!(store.export_user(&tenant, alice).await.unwrap().is_empty());
    assert_eq!(
        store.count_day(&tenant, alice, day(T0)).await.unwrap(),
        0,
        "no row is left in a partition"
    );
    assert_eq!(store.erase_user(&tenant, alice).await.unwrap(), 0);
    assert_eq!(store.count_user(&tenant, bob).await.unwrap(), 1);
    assert_eq!(all(store, &tenant, bob, 10).await.len(), 1);
    assert_eq!(
        store
            .count_user("another-tenant-of-the-contract", alice)
            .await
            .unwrap(),
        1,
        "erasure is scoped to the tenant"
    );
    // Appending after an erase starts a new history (who may append is
    // the service's business, not the store's).
    store
        .append(&activity(&tenant, alice, 60, T0 + 2 * DAY_MS))
        .await
        .unwrap();
    assert_eq!(all(store, &tenant, alice, 10).await.len(), 1);
    assert_eq!(store.erase_user(&tenant, alice).await.unwrap(), 1);
    store.erase_user(&tenant, bob).await.unwrap();
    store
        .erase_user("another-tenant-of-the-contract", alice)
        .await
        .unwrap();
}
