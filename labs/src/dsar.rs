//! The lab `dsar`: a shopper signs up, orders, likes and comments, uploads a
//! photo and gets e-mails; an export shows where their data lives (per-store
//! counts) and hands over an archive; an erasure runs on every participant,
//! the sweep comes back clean, the order is kept anonymised, the certificate
//! verifies and the shopper can no longer log in. Then a residue key is
//! planted behind the system's back and a second erasure's sweep catches it:
//! no certificate.

use std::{collections::HashMap, io::Read, time::Duration};

use serde_json::{Value, json};
use shopstream_compliance::{
    client::{ClientError, Compliance, kind_name, state_name},
    domain::{self, Kind},
};
use shopstream_platform::config::DEFAULT_TENANT;
use shopstream_proto::compliance::v1::Dsar;

use crate::{
    kit::{Lab, LabError, Probe},
    media, order_live,
    target::{Gateway, Inventory, Target},
};

pub const NAME: &str = "dsar";
pub const TITLE: &str = "find everything about one shopper, export it, erase it, prove it";
pub const SUMMARY: &str = "A shopper orders, likes, comments, uploads a photo and gets e-mails; \
    an export lists every store that holds them and hands over an archive; an erasure runs on \
    every participant, the sweep is clean, the order is kept anonymised, the certificate \
    verifies offline, login is refused; a planted residue key makes the next sweep fail.";

const INTRO: &str = "A data subject access request (DSAR) runs as a Temporal workflow in the \
    compliance service. Every service that stores something about a person is a participant: \
    it answers Export, Erase and Scan for one subject. An erasure freezes the subject at the \
    gateway, asks every participant to erase, then sweeps: every participant scans again, and \
    compliance itself looks through every Redis key, every S3 object and every message of every \
    topic for what a participant might have missed. Only a clean sweep earns a certificate, \
    signed with Ed25519 and chained into a write-once audit log in S3.";

const PASSWORD: &str = "dsar lab password";
const ORDER_DEADLINE: Duration = Duration::from_secs(60);
const MAIL_DEADLINE: Duration = Duration::from_secs(45);
const MEDIA_DEADLINE: Duration = Duration::from_secs(60);
const DSAR_DEADLINE: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(250);

fn compliance_err(e: ClientError) -> LabError {
    match e {
        ClientError::Unreachable { .. } => LabError::NotReady(format!(
            "{e}; is the system up? (`shopstream up`, `shopstream status`)"
        )),
        other => LabError::Failed(other.to_string()),
    }
}

/// Per-store counts of a DSAR as lines.
fn store_lines(d: &Dsar) -> Vec<String> {
    d.stores
        .iter()
        .filter(|s| s.records_affected > 0)
        .map(|s| format!("{:<28} {:>5}  {}", s.store, s.records_affected, s.detail))
        .collect()
}

fn count(d: &Dsar, prefix: &str) -> u64 {
    d.stores
        .iter()
        .filter(|s| s.store.starts_with(prefix))
        .map(|s| s.records_affected)
        .sum()
}

async fn run_dsar(lab: &Lab, c: &Compliance, user: &str, kind: Kind) -> Result<Dsar, LabError> {
    let started = c
        .start(DEFAULT_TENANT, user, kind, "dsar lab", "")
        .await
        .map_err(compliance_err)?;
    follow_dsar(lab, c, &started.dsar_id, kind).await
}

/// Follow DSAR `id` to its end.
async fn follow_dsar(lab: &Lab, c: &Compliance, id: &str, kind: Kind) -> Result<Dsar, LabError> {
    let id = id.to_string();
    lab.checkpoint(
        &format!("the {} DSAR ends", kind.as_str()),
        DSAR_DEADLINE,
        POLL,
        || async {
            let d = c.get(DEFAULT_TENANT, &id).await.map_err(compliance_err)?;
            Ok(match state_name(&d) {
                "completed" | "failed" => {
                    let took = d.completed_at_ms - d.created_at_ms;
                    let msg = format!("{} in {took} ms", state_name(&d));
                    Probe::Ready(d, msg)
                }
                s => Probe::Waiting(if d.waiting_on.is_empty() {
                    format!("{s}: {} stores answered", d.stores.len())
                } else {
                    format!("{s}: waiting on {}", d.waiting_on)
                }),
            })
        },
    )
    .await
}

pub async fn script(lab: Lab, target: Target) -> Result<(), LabError> {
    lab.narrate(INTRO);
    let compliance = Compliance::new(&target.compliance_grpc_url, &target.compliance_http_url)
        .map_err(compliance_err)?;
    let mut buyer = Gateway::new(&target.gateway_url)?;
    let inventory = Inventory::new(&target.inventory_grpc_url)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| LabError::Failed(e.to_string()))?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let email = format!("dsar-{run}@labs.shopstream.dev");
    let comment = format!("I love this one ({run})");

    // 1. A shopper leaves traces everywhere.
    let user = lab
        .action("sign up and log in a shopper", async {
            let id = buyer.signup_and_login(&email, PASSWORD).await?;
            Ok((id.clone(), format!("{email} (user {id})")))
        })
        .await?;
    let (product_id, sku_id) = lab
        .action("pick a seeded product and make 5 units available", async {
            let (product_id, sku_id, _) =
                order_live::stock_a_product(&buyer, &inventory, 5).await?;
            Ok(((product_id, sku_id.clone()), format!("sku {sku_id}")))
        })
        .await?;
    let order_id = lab
        .action("the shopper orders one unit", async {
            let id = order_live::place_order(&buyer, &product_id, &sku_id, &format!("dsar-{run}"))
                .await?;
            Ok((id.clone(), format!("order {id}")))
        })
        .await?;
    lab.checkpoint("the order completes", ORDER_DEADLINE, POLL, || async {
        let o = buyer.get(&format!("/orders/{order_id}")).await?;
        let state = o["state"].as_str().unwrap_or_default().to_string();
        Ok(if state == "completed" {
            Probe::Ready((), "completed".to_string())
        } else {
            Probe::Waiting(state)
        })
    })
    .await?;
    lab.action("the shopper likes the product and comments on it", async {
        for (kind, text) in [("like", ""), ("comment", comment.as_str())] {
            buyer
                .send(
                    reqwest::Method::POST,
                    "/activity",
                    Some(
                        &json!({"kind": kind, "object": format!("product:{product_id}"),
                        "client_id": format!("{kind}-{run}"), "text": text}),
                    ),
                    &[],
                )
                .await?;
        }
        Ok(((), format!("a like and the comment {comment:?}")))
    })
    .await?;
    // A picture of this run's own: content-addressed variants are shared
    // between identical uploads, and this one should be the shopper's alone.
    let photo =
        shopstream_media::samples::photo(320, 240, u64::from_str_radix(&run[..8], 16).unwrap_or(7));
    let asset = lab
        .action("the shopper uploads a photo", async {
            let a = media::upload_and_follow(
                &buyer,
                "me.jpg",
                photo,
                &format!("user:{user}"),
                MEDIA_DEADLINE,
                |_| {},
            )
            .await?;
            let id = a["asset_id"].as_str().unwrap_or_default().to_string();
            let d = format!("asset {id}: {}", a["status"].as_str().unwrap_or_default());
            Ok((id, d))
        })
        .await?;
    lab.checkpoint("the shopper got e-mails", MAIL_DEADLINE, POLL, || async {
        let list: Value = http
            .get(format!("{}/messages", target.mail_sim_url))
            .send()
            .await
            .map_err(|e| crate::target::unreachable("mail-sim", &target.mail_sim_url, &e))?
            .json()
            .await
            .map_err(|e| LabError::Failed(e.to_string()))?;
        let mine: Vec<&Value> = list["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == email.as_str()))
            })
            .collect();
        Ok(if mine.is_empty() {
            Probe::Waiting("none yet".into())
        } else {
            let subjects: Vec<&str> = mine.iter().filter_map(|m| m["subject"].as_str()).collect();
            Probe::Ready((), format!("{}: {}", mine.len(), subjects.join(" | ")))
        })
    })
    .await?;

    // 2. Export: where the data lives, and the archive.
    let export = run_dsar(&lab, &compliance, &user, Kind::Export).await?;
    lab.note(&format!(
        "where the shopper's data lives (the export's per-store counts):\n{}",
        store_lines(&export).join("\n")
    ));
    for (prefix, what) in [
        ("identity.", "identity holds the account"),
        ("orders.", "orders holds the order"),
        ("feed.", "the feed holds the like and the comment"),
        ("media.", "media holds the photo"),
        ("notifications.", "notifications holds the e-mails"),
    ] {
        lab.check(
            what,
            count(&export, prefix) > 0,
            "> 0",
            count(&export, prefix).to_string(),
        );
    }
    let files = lab
        .action(
            "download the export archive (a presigned URL that expires)",
            async {
                let bytes = http
                    .get(&export.export_url)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .map_err(|e| LabError::Failed(format!("archive: {e}")))?
                    .bytes()
                    .await
                    .map_err(|e| LabError::Failed(format!("archive: {e}")))?;
                let mut files = HashMap::new();
                let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
                for e in tar.entries().map_err(|e| LabError::Failed(e.to_string()))? {
                    let mut e = e.map_err(|e| LabError::Failed(e.to_string()))?;
                    let path = e
                        .path()
                        .map_err(|e| LabError::Failed(e.to_string()))?
                        .display()
                        .to_string();
                    let mut body = Vec::new();
                    e.read_to_end(&mut body)
                        .map_err(|e| LabError::Failed(e.to_string()))?;
                    files.insert(path, body);
                }
                let mut names: Vec<&String> = files.keys().collect();
                names.sort();
                let d = format!(
                    "{} bytes, {} files: {}",
                    bytes.len(),
                    files.len(),
                    names
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Ok((files, d))
            },
        )
        .await?;
    let text: String = files
        .iter()
        .filter(|(p, _)| p.ends_with(".json"))
        .map(|(_, b)| String::from_utf8_lossy(b).to_string())
        .collect();
    lab.check(
        "the archive holds the comment's text",
        text.contains(&comment),
        "present",
        text.contains(&comment).to_string(),
    );
    lab.check(
        "the archive holds the photo",
        files.keys().any(|p| p.starts_with("objects/")),
        "an objects/ entry",
        files
            .keys()
            .filter(|p| p.starts_with("objects/"))
            .count()
            .to_string(),
    );

    // 3. Erase.
    let refused = buyer
        .send(
            reqwest::Method::POST,
            "/admin/dsar",
            Some(&json!({"subject": user, "kind": "erase"})),
            &[],
        )
        .await;
    lab.check(
        "a shopper cannot start a DSAR (POST /admin/dsar is for admins)",
        matches!(&refused, Err(LabError::Failed(m)) if m.contains("403")),
        "HTTP 403",
        format!("{:?}", refused.map(|a| a.status)),
    );
    let mut admin = Gateway::new(&target.gateway_url)?;
    let dsar_id = lab
        .action("an admin asks for the erasure: POST /admin/dsar", async {
            let who = admin
                .login_as_new_admin(&target.identity_grpc_url, "dsar-lab")
                .await?;
            let a = admin
                .send(
                    reqwest::Method::POST,
                    "/admin/dsar",
                    Some(&json!({"subject": user, "kind": "erase"})),
                    &[],
                )
                .await?;
            let id = a.body["dsar_id"].as_str().unwrap_or_default().to_string();
            let d = format!(
                "HTTP {} as {who}: DSAR {id} {}",
                a.status.as_u16(),
                a.body["state"]
            );
            Ok((id, d))
        })
        .await?;
    let erase = follow_dsar(&lab, &compliance, &dsar_id, Kind::Erase).await?;
    lab.note(&format!(
        "what each participant erased:\n{}",
        store_lines(&erase).join("\n")
    ));
    let took = erase.completed_at_ms - erase.created_at_ms;
    lab.measure("erasure, end to end", took as f64, "ms");
    let mut per_participant = std::collections::BTreeMap::new();
    for s in erase.stores.iter().filter(|s| s.took_ms > 0) {
        per_participant.insert(s.participant.clone(), s.took_ms);
    }
    for (p, ms) in per_participant {
        lab.measure(&format!("  {p}"), ms as f64, "ms");
    }
    lab.check(
        "the erasure completed",
        state_name(&erase) == "completed",
        "completed",
        state_name(&erase).to_string(),
    );
    lab.check(
        "the sweep is clean",
        erase.swept && erase.sweep_clean,
        "clean",
        format!("{:?}", erase.residue),
    );
    lab.note(&format!(
        "the sweep's checks:\n{}",
        erase
            .sweep
            .iter()
            .map(|c| format!("{:<28} {:>5}  {}", c.store, c.count, c.detail))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    for r in &erase.retained {
        let kept = match r.retain_days {
            0 => "with no fixed term".to_string(),
            d => format!("{d} days"),
        };
        lab.note(&format!(
            "retained: {} {} — {} — kept {kept} under {}",
            r.count, r.store, r.fields_kept, r.basis
        ));
    }
    lab.check(
        "the order is kept, anonymised, with its legal basis",
        erase
            .retained
            .iter()
            .any(|r| r.store.starts_with("orders.") && r.basis.contains("17(3)")),
        "orders retained under Art. 17(3)",
        format!("{} retained entries", erase.retained.len()),
    );
    let checks = lab
        .action(
            "verify the certificate against the key set and the audit chain",
            async {
                let keys = compliance.jwks().await.map_err(compliance_err)?;
                let seq = domain::jws_payload(&erase.certificate_jws)
                    .and_then(|p| p["audit_seq"].as_u64())
                    .unwrap_or(0);
                let mut chain = HashMap::new();
                for s in 0..=seq {
                    if let Some(b) = compliance.record(s).await.map_err(compliance_err)? {
                        chain.insert(s, b);
                    }
                }
                let subject = user.parse().ok().map(|u| (DEFAULT_TENANT, u));
                let (_, checks) = domain::verify_certificate(
                    &erase.certificate_jws,
                    &keys,
                    &mut |s| chain.get(&s).cloned(),
                    subject,
                );
                let d = checks
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}: {}",
                            if c.ok { "PASS" } else { "FAIL" },
                            c.name,
                            c.detail
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                Ok((checks, d))
            },
        )
        .await?;
    lab.check(
        "every check of the certificate passes",
        checks.iter().all(|c| c.ok),
        "all pass",
        format!("{} checks", checks.len()),
    );
    // A client with no token: the old one would be refused before login.
    let login = Gateway::new(&target.gateway_url)?
        .send(
            reqwest::Method::POST,
            "/auth/login",
            Some(&json!({"email": email, "password": PASSWORD})),
            &[],
        )
        .await;
    let refused = matches!(&login, Err(LabError::Failed(m)) if m.contains("401"));
    lab.check(
        "the shopper's login is refused",
        refused,
        "HTTP 401",
        format!("{:?}", login.map(|a| a.status)),
    );
    let old_token = buyer.get("/me").await;
    lab.check(
        "the shopper's old access token is refused",
        matches!(&old_token, Err(LabError::Failed(m)) if m.contains("403") || m.contains("401")),
        "HTTP 403",
        format!("{:?}", old_token.map(|_| "200")),
    );
    let _ = asset;

    // 4. The sweep can fail.
    lab.narrate(
        "Now a residue: a Redis key with the shopper's id, written behind the system's back \
         (no participant owns it, so no participant's erase removes it). The next erasure's \
         participants find nothing, but the sweep's own scan of Redis does.",
    );
    let key = format!("cart:{DEFAULT_TENANT}:{user}");
    let redis_url = target.redis_url.clone();
    let k = key.clone();
    let cleanup_url = target.redis_url.clone();
    lab.fault(
        &format!("plant the Redis key {key}"),
        async {
            redis_cmd(&redis_url, &["SET", &k, "[]"]).await?;
            Ok(format!("SET {k}"))
        },
        "remove the planted key",
        move || async move {
            redis_cmd(&cleanup_url, &["DEL", &key]).await?;
            Ok("DEL".to_string())
        },
    )
    .await?;
    let caught = run_dsar(&lab, &compliance, &user, Kind::Erase).await?;
    lab.check(
        "the sweep catches the residue and the DSAR fails",
        state_name(&caught) == "failed" && caught.residue.iter().any(|r| r.contains("cart:")),
        "failed, residue named",
        format!("{} {:?}", state_name(&caught), caught.residue),
    );
    lab.check(
        "no certificate for a DSAR with residue",
        caught.certificate_jws.is_empty(),
        "none",
        format!("{} bytes", caught.certificate_jws.len()),
    );
    lab.note(&format!(
        "{} {}: {}",
        kind_name(&caught),
        state_name(&caught),
        caught.error
    ));
    Ok(())
}

async fn redis_cmd(url: &str, args: &[&str]) -> Result<(), LabError> {
    let err = |e: redis::RedisError| LabError::NotReady(format!("redis at {url}: {e}"));
    let mut conn = redis::Client::open(url)
        .map_err(err)?
        .get_multiplexed_async_connection()
        .await
        .map_err(err)?;
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async::<redis::Value>(&mut conn)
        .await
        .map_err(err)?;
    Ok(())
}
