//! The one contract suite every participant passes (ADR 0012), against its
//! real stores in its integration test (and through the gRPC [`Client`] when
//! the caller passes one):
//!
//! 1. a subject and a bystander are seeded the same way;
//! 2. `Scan` of the subject counts something in every seeded store;
//! 3. `Export` contains every seeded item (a marker text in the named store's
//!    document) and nothing of the bystander's;
//! 4. `Erase` erases something; `Scan` is then zero in every store;
//! 5. a second `Erase` is a no-op (zero counts, nothing retained again);
//! 6. `Export` after erasure holds none of the subject's markers;
//! 7. the bystander's scan and export are what they were.
//!
//! A participant that keeps nothing about a person is not a participant.
//!
//! [`Client`]: crate::Client

use std::future::Future;

use uuid::Uuid;

use crate::{Export, Participant, StoreCount, Subject, total};

/// Something seeded for a subject that its export must show: `text` appears
/// in the JSON document of `store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub store: String,
    pub text: String,
}

impl Marker {
    pub fn new(store: &str, text: impl Into<String>) -> Marker {
        Marker {
            store: store.to_string(),
            text: text.into(),
        }
    }
}

/// A fresh subject in `tenant` with one e-mail address of its own.
pub fn fresh_subject(tenant: &str) -> Subject {
    let id = Uuid::new_v4();
    let email = format!("dsar-{}@example.test", &id.simple().to_string()[..12]);
    Subject::new(tenant, id, &[email.as_str()])
}

fn count_of(counts: &[StoreCount], store: &str) -> u64 {
    counts
        .iter()
        .filter(|c| c.store == store)
        .map(|c| c.count)
        .sum()
}

fn document_text(e: &Export, store: &str) -> String {
    e.documents
        .iter()
        .filter(|d| d.store == store)
        .map(|d| d.json.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn all_text(e: &Export) -> String {
    let mut s: String = e
        .documents
        .iter()
        .map(|d| d.json.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for o in &e.objects {
        s.push('\n');
        s.push_str(&o.key);
    }
    s
}

/// Run the contract against `p` in `tenant`; `seed` stores data of the
/// subject it is given and returns the markers its export must show. Panics
/// with the failed clause.
pub async fn check<P, F, Fut>(p: &P, tenant: &str, seed: F)
where
    P: Participant + ?Sized,
    F: Fn(Subject) -> Fut,
    Fut: Future<Output = Vec<Marker>>,
{
    let name = p.name();
    let subject = fresh_subject(tenant);
    let bystander = fresh_subject(tenant);
    let markers = seed(subject.clone()).await;
    let other = seed(bystander.clone()).await;
    assert!(!markers.is_empty(), "{name}: the seed returned no markers");

    // 2. Scan sees every seeded store.
    let before = p.scan(&subject).await.expect("scan");
    for m in &markers {
        assert!(
            count_of(&before, &m.store) > 0,
            "{name}: scan counts nothing in {} after seeding: {before:?}",
            m.store
        );
    }
    let bystander_before = p.scan(&bystander).await.expect("scan bystander");

    // 3. Export shows every item and nothing of the bystander's.
    let export = p.export(&subject).await.expect("export");
    for m in &markers {
        let doc = document_text(&export, &m.store);
        assert!(
            doc.contains(&m.text),
            "{name}: export of {} lacks {:?}: {doc}",
            m.store,
            m.text
        );
    }
    let everything = all_text(&export);
    for m in &other {
        assert!(
            !everything.contains(&m.text),
            "{name}: the subject's export holds the bystander's {:?} ({})",
            m.text,
            m.store
        );
    }
    assert!(
        !everything.contains(&bystander.user_id.to_string()),
        "{name}: the subject's export names the bystander"
    );
    let bystander_export = p.export(&bystander).await.expect("export bystander");

    // 4. Erase, then nothing is left.
    let erased = p.erase(&subject).await.expect("erase");
    assert!(
        total(&erased.counts) > 0,
        "{name}: erase found nothing to erase: {erased:?}"
    );
    let after = p.scan(&subject).await.expect("scan after erase");
    assert_eq!(
        total(&after),
        0,
        "{name}: scan after erase is not zero: {after:?}"
    );

    // 5. Erase again: a no-op.
    let again = p.erase(&subject).await.expect("second erase");
    assert_eq!(
        total(&again.counts),
        0,
        "{name}: a second erase erased again: {again:?}"
    );
    assert!(
        again.retained.iter().all(|r| r.count == 0),
        "{name}: a second erase retained again: {again:?}"
    );

    // 6. Nothing of the subject is exported any more.
    let gone = all_text(&p.export(&subject).await.expect("export after erase"));
    for m in &markers {
        assert!(
            !gone.contains(&m.text),
            "{name}: after erase the export still holds {:?} ({})",
            m.text,
            m.store
        );
    }

    // 7. The bystander is untouched.
    let bystander_after = p.scan(&bystander).await.expect("scan bystander");
    assert_eq!(
        total(&bystander_after),
        total(&bystander_before),
        "{name}: erasing the subject changed the bystander: {bystander_before:?} -> {bystander_after:?}"
    );
    let bystander_export_after = p.export(&bystander).await.expect("export bystander");
    let (b0, b1) = (
        all_text(&bystander_export),
        all_text(&bystander_export_after),
    );
    for m in &other {
        assert!(
            b0.contains(&m.text) == b1.contains(&m.text),
            "{name}: the bystander's {:?} ({}) changed",
            m.text,
            m.store
        );
    }
}
