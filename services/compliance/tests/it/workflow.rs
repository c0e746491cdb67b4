//! The DSAR workflow end to end: a participant down at the start and
//! compliance crashed mid-erasure, yet the DSAR completes with a clean sweep
//! and a certificate that verifies; a second request joins the first; an
//! unknown subject completes with nothing found; an export's archive holds
//! every store; planted residue fails an erasure without a certificate.

use std::{collections::HashMap, io::Read, time::Duration};

use shopstream_compliance::{
    client::{Compliance, state_name},
    domain::{self, Kind},
};
use shopstream_dsar::Subject;
use shopstream_platform::cache;
use shopstream_runtime::testkit;

use crate::{DSAR_TIMEOUT, Names, Notes, compliance, identity, serve_notes};

const TENANT: &str = "default";

async fn signup(identity_http: &str) -> (uuid::Uuid, String) {
    let email = format!("{}@example.test", testkit::unique("dsar"));
    let r = reqwest::Client::new()
        .post(format!("{identity_http}/auth/signup"))
        .json(&serde_json::json!({"email": email, "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: serde_json::Value = r.json().await.unwrap();
    (v["id"].as_str().unwrap().parse().unwrap(), email)
}

fn client(c: &testkit::RunningService) -> Compliance {
    Compliance::new(&c.grpc_url(), &c.http).unwrap()
}

async fn verify(c: &Compliance, jws: &str, user: uuid::Uuid) -> Vec<domain::Check> {
    let keys = c.jwks().await.unwrap();
    let claimed = domain::jws_payload(jws).unwrap()["audit_seq"]
        .as_u64()
        .unwrap();
    let mut chain = HashMap::new();
    for seq in 0..=claimed {
        if let Some(b) = c.record(seq).await.unwrap() {
            chain.insert(seq, b);
        }
    }
    domain::verify_certificate(
        jws,
        &keys,
        &mut |s| chain.get(&s).cloned(),
        Some((TENANT, user)),
    )
    .1
}

#[tokio::test]
async fn an_erasure_survives_a_down_participant_and_a_compliance_crash() {
    let id = identity().await;
    let (user, email) = signup(&id.http).await;
    let notes = Notes::new().await;
    let subject = Subject::new(TENANT, user, &[email.as_str()]);
    for i in 0..3 {
        notes.add(&subject, &format!("note {i}")).await;
    }
    // The notes participant is down (its store answers UNAVAILABLE) when
    // the DSAR starts.
    notes.up.store(false, std::sync::atomic::Ordering::SeqCst);
    let (notes_url, server) = serve_notes(&notes).await;
    let names = Names::fresh();
    let participants = vec![
        ("identity".to_string(), id.grpc_url()),
        ("notes".to_string(), notes_url),
    ];
    let first = compliance(&names, participants.clone(), &id.grpc_url()).await;
    let c = client(&first);
    let d = c
        .start(TENANT, &user.to_string(), Kind::Erase, "it", "k1")
        .await
        .unwrap();
    // A second request for the same subject joins the first.
    let joined = c
        .start(TENANT, &user.to_string(), Kind::Erase, "it", "k2")
        .await
        .unwrap();
    assert_eq!(joined.dsar_id, d.dsar_id);
    let waiting = testkit::eventually("the DSAR waits for notes", DSAR_TIMEOUT, || async {
        let d = c.get(TENANT, &d.dsar_id).await.ok()?;
        d.waiting_on.starts_with("notes").then_some(d)
    })
    .await;
    println!("waiting on: {}", waiting.waiting_on);
    // The subject is frozen: on the blocked set the gateway reads.
    let mut r = cache::connect(&testkit::stack().await.endpoints.redis_url)
        .await
        .unwrap();
    let frozen: bool = redis::cmd("SISMEMBER")
        .arg(shopstream_dsar::blocked_key(TENANT))
        .arg(user.to_string())
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(frozen);
    // Compliance crashes mid-erasure; a new one takes over.
    first.crash().await;
    let second = compliance(&names, participants, &id.grpc_url()).await;
    let c = client(&second);
    notes.up.store(true, std::sync::atomic::Ordering::SeqCst);
    let done = c
        .wait(TENANT, &d.dsar_id, DSAR_TIMEOUT, |_| {})
        .await
        .unwrap();
    server.abort();
    assert_eq!(state_name(&done), "completed", "{done:?}");
    assert!(done.sweep_clean, "{done:?}");
    assert!(done.waiting_on.is_empty());
    let notes_step = done
        .stores
        .iter()
        .find(|s| s.store == "notes.postgres")
        .unwrap();
    assert_eq!(notes_step.records_affected, 3);
    assert!(
        notes_step.attempts > 1,
        "notes answered only after retries: {notes_step:?}"
    );
    assert!(
        done.stores
            .iter()
            .any(|s| s.participant == "identity" && s.records_affected > 0),
        "{done:?}"
    );
    // Login is refused: the user is gone.
    let login = reqwest::Client::new()
        .post(format!("{}/auth/login", id.http))
        .json(&serde_json::json!({"email": email, "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);
    // The certificate verifies against the key set and the chain.
    let checks = verify(&c, &done.certificate_jws, user).await;
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    // And a request for the erased user is a new DSAR that finds nothing.
    let again = c
        .start(TENANT, &user.to_string(), Kind::Erase, "it", "k3")
        .await
        .unwrap();
    assert_ne!(again.dsar_id, d.dsar_id);
    let again = c
        .wait(TENANT, &again.dsar_id, DSAR_TIMEOUT, |_| {})
        .await
        .unwrap();
    assert_eq!(state_name(&again), "completed");
    let cert: domain::Certificate =
        serde_json::from_value(domain::jws_payload(&again.certificate_jws).unwrap()).unwrap();
    assert!(cert.nothing_found, "{cert:?}");
    assert!(cert.audit_seq > done.audit_seq as u64);
}

#[tokio::test]
async fn an_unknown_subject_completes_with_nothing_found() {
    let id = identity().await;
    let names = Names::fresh();
    let svc = compliance(
        &names,
        vec![("identity".into(), id.grpc_url())],
        &id.grpc_url(),
    )
    .await;
    let c = client(&svc);
    let nobody = uuid::Uuid::new_v4();
    let d = c
        .start(TENANT, &nobody.to_string(), Kind::Erase, "it", "")
        .await
        .unwrap();
    let d = c
        .wait(TENANT, &d.dsar_id, DSAR_TIMEOUT, |_| {})
        .await
        .unwrap();
    assert_eq!(state_name(&d), "completed", "{d:?}");
    let cert: domain::Certificate =
        serde_json::from_value(domain::jws_payload(&d.certificate_jws).unwrap()).unwrap();
    assert!(cert.nothing_found);
    assert!(
        verify(&c, &d.certificate_jws, nobody)
            .await
            .iter()
            .all(|c| c.ok)
    );
    // Bad input: not a UUID, an unknown DSAR.
    let bad = c
        .start(TENANT, "nope", Kind::Erase, "it", "")
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("not a user id"), "{bad}");
    let missing = c
        .get(TENANT, &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("NotFound"), "{missing}");
}

#[tokio::test]
async fn an_export_archive_holds_every_store() {
    let id = identity().await;
    let (user, email) = signup(&id.http).await;
    let notes = Notes::new().await;
    let subject = Subject::new(TENANT, user, &[email.as_str()]);
    notes.add(&subject, "a note to export").await;
    let (notes_url, server) = serve_notes(&notes).await;
    let names = Names::fresh();
    let svc = compliance(
        &names,
        vec![
            ("identity".into(), id.grpc_url()),
            ("notes".into(), notes_url),
        ],
        &id.grpc_url(),
    )
    .await;
    let c = client(&svc);
    let d = c
        .start(TENANT, &user.to_string(), Kind::Export, "it", "")
        .await
        .unwrap();
    let d = c
        .wait(TENANT, &d.dsar_id, DSAR_TIMEOUT, |_| {})
        .await
        .unwrap();
    server.abort();
    assert_eq!(state_name(&d), "completed", "{d:?}");
    assert!(!d.export_url.is_empty());
    let bytes = reqwest::get(&d.export_url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut files = HashMap::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        files.insert(path, s);
    }
    let notes_doc = &files["stores/notes/notes.postgres.json"];
    assert!(notes_doc.contains("a note to export"), "{notes_doc}");
    let identity_docs: String = files
        .iter()
        .filter(|(p, _)| p.starts_with("stores/identity/"))
        .map(|(_, s)| s.clone())
        .collect();
    assert!(identity_docs.contains(&email), "{:?}", files.keys());
    assert!(files.contains_key("manifest.json"));
    // The data is still there: an export erases nothing.
    use shopstream_dsar::Participant;
    assert_eq!(
        shopstream_dsar::total(&notes.scan(&subject).await.unwrap()),
        1
    );
    let checks = verify(&c, &d.certificate_jws, user).await;
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
}

#[tokio::test]
async fn planted_residue_fails_an_erasure_without_a_certificate() {
    let id = identity().await;
    let (user, _) = signup(&id.http).await;
    let names = Names::fresh();
    let svc = compliance(
        &names,
        vec![("identity".into(), id.grpc_url())],
        &id.grpc_url(),
    )
    .await;
    let c = client(&svc);
    let mut r = cache::connect(&testkit::stack().await.endpoints.redis_url)
        .await
        .unwrap();
    let key = format!("cart:{TENANT}:{user}");
    redis::cmd("SET")
        .arg(&key)
        .arg("[]")
        .query_async::<()>(&mut r)
        .await
        .unwrap();
    let d = c
        .start(TENANT, &user.to_string(), Kind::Erase, "it", "")
        .await
        .unwrap();
    let d = c
        .wait(TENANT, &d.dsar_id, Duration::from_secs(240), |_| {})
        .await
        .unwrap();
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut r)
        .await
        .unwrap();
    assert_eq!(state_name(&d), "failed", "{d:?}");
    assert!(d.certificate_jws.is_empty());
    assert!(!d.sweep_clean);
    assert!(d.residue.iter().any(|x| x.contains(&key)), "{d:?}");
    assert!(d.error.contains("residue"), "{}", d.error);
    // The failure is on the audit chain all the same.
    assert!(d.audit_seq >= 0);
}
