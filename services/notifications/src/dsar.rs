//! Notifications as a DSAR participant (ADR 0012): what it holds about a
//! person, found by user id and by e-mail address (the subject's addresses,
//! lower-cased, and the addresses of the e-mail channels the user
//! registered), in the subject's tenant only.
//!
//! | store | what | erase |
//! |---|---|---|
//! | `notifications.channels` | channels the user registered (address, topics) | deleted |
//! | `notifications.email_sends` | the delivery log: one row per e-mail key, with its recipients and last SMTP error | anonymised: recipients and error cleared (the key, state and attempts stay, so a replayed event still sends nothing twice) |
//! | `notifications.order_owners` | which of the user's orders a refund e-mail goes to | anonymised: the owner becomes the nil UUID (a refund of the order then finds no user and sends nothing, instead of retrying) |
//! | `notifications.outbox` | rendered e-mails (addresses, name, body) waiting on the stream or for a retry | deleted (a deleted stream entry the mailer had read is acknowledged unsent) |
//! | `notifications.dead_letters` | rendered e-mails in the DLQ stream | deleted |
//! | `notifications.mail_sink` | the messages the mail provider holds (mail-sim, over HTTP) | deleted |
//!
//! Nothing else is personal: `refund_totals` holds order ids and amounts,
//! and live updates are published, not kept.
//! The e-mail keys in `email_sends` and the order ids link to orders, which
//! orders keeps anonymised.
//!
//! Erase works from the queue outwards, so a retry after a failure finds
//! what is left: first the outbox and the DLQ (nothing more is sent), then
//! the mail sink (an unreachable sink fails the erase, retryably), and the
//! Postgres rows last, in one transaction (the channels' addresses are what
//! finds the sink's messages, so they go only once those are gone). An
//! e-mail the mailer was sending at that very moment can still reach the
//! sink; a scan after the erase shows it and a second erase takes it.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Value, json};
use shopstream_dsar::{Document, Erasure, Error, Export, StoreCount, Subject};
use shopstream_platform::cache::ConnectionManager;
use sqlx::PgPool;
use uuid::Uuid;

use crate::mailer;

pub const CHANNELS: &str = "notifications.channels";
pub const EMAIL_SENDS: &str = "notifications.email_sends";
pub const ORDER_OWNERS: &str = "notifications.order_owners";
pub const OUTBOX: &str = "notifications.outbox";
pub const DEAD_LETTERS: &str = "notifications.dead_letters";
pub const MAIL_SINK: &str = "notifications.mail_sink";

/// Stream entries read (and ids deleted) per round trip.
const PAGE: usize = 500;
/// Bound on one call to the mail sink.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// The fields of an e-mail on the outbox or the DLQ that say whose it is.
#[derive(Deserialize)]
struct Addressed {
    tenant_id: String,
    #[serde(default)]
    to: Vec<String>,
}

/// Notifications' participant.
pub struct Participant {
    pool: PgPool,
    redis: ConnectionManager,
    /// The e-mail stream (see [`mailer::STREAM`]); its retry set and DLQ
    /// are named after it.
    stream: String,
    sink: Option<MailSink>,
}

/// The mail provider's store of delivered messages, over mail-sim's HTTP API
/// (`GET|DELETE /messages?to=ADDR&tenant=T`).
struct MailSink {
    http: reqwest::Client,
    url: String,
}

impl Participant {
    /// The participant over `pool`, `redis` and the e-mail `stream`;
    /// `mail_sink` is mail-sim's HTTP base URL, `None` where the provider
    /// keeps no mailbox that can be erased.
    pub fn new(
        pool: PgPool,
        redis: ConnectionManager,
        stream: &str,
        mail_sink: Option<&str>,
    ) -> Result<Participant, reqwest::Error> {
        let sink = match mail_sink {
            Some(url) => Some(MailSink {
                http: reqwest::Client::builder().timeout(SINK_TIMEOUT).build()?,
                url: url.trim_end_matches('/').to_string(),
            }),
            None => None,
        };
        Ok(Participant {
            pool,
            redis,
            stream: stream.to_string(),
            sink,
        })
    }

    /// The subject's addresses: its own and those of its e-mail channels,
    /// lower-cased.
    async fn addresses(&self, s: &Subject) -> Result<Vec<String>, Error> {
        let registered: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT lower(address) FROM channels WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(&s.tenant)
        .bind(s.user_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let all: BTreeSet<String> = s
            .emails
            .iter()
            .map(|e| e.trim().to_lowercase())
            .chain(registered)
            .filter(|e| !e.is_empty())
            .collect();
        Ok(all.into_iter().collect())
    }

    /// The subject's rows of each table, as JSON.
    async fn rows(&self, s: &Subject, addrs: &[String]) -> Result<[Vec<Value>; 3], Error> {
        let user = s.user_id.to_string();
        let channels: Vec<Value> = sqlx::query_scalar(
            "SELECT to_jsonb(c) FROM channels c
             WHERE tenant_id = $1 AND (user_id = $2 OR lower(address) = ANY($3))
             ORDER BY created_at_ms",
        )
        .bind(&s.tenant)
        .bind(&user)
        .bind(addrs)
        .fetch_all(&self.pool)
        .await?;
        let sends: Vec<Value> = sqlx::query_scalar(
            "SELECT to_jsonb(e) FROM email_sends e
             WHERE tenant_id = $1 AND lower_addresses(recipients) && $2
             ORDER BY created_at",
        )
        .bind(&s.tenant)
        .bind(addrs)
        .fetch_all(&self.pool)
        .await?;
        let owners: Vec<Value> = sqlx::query_scalar(
            "SELECT to_jsonb(o) FROM order_owners o WHERE tenant_id = $1 AND user_id = $2
             ORDER BY order_id",
        )
        .bind(&s.tenant)
        .bind(&user)
        .fetch_all(&self.pool)
        .await?;
        Ok([channels, sends, owners])
    }

    fn ours(s: &Subject, addrs: &[String], json: &str) -> Option<Value> {
        let a: Addressed = serde_json::from_str(json).ok()?;
        let mine = a.tenant_id == s.tenant
            && a.to
                .iter()
                .any(|t| addrs.contains(&t.trim().to_lowercase()));
        mine.then(|| serde_json::from_str(json).ok()).flatten()
    }

    /// The subject's entries of stream `key`: (entry id, e-mail).
    async fn stream_entries(
        &self,
        key: &str,
        s: &Subject,
        addrs: &[String],
    ) -> Result<Vec<(String, Value)>, Error> {
        let mut redis = self.redis.clone();
        let mut out = Vec::new();
        let mut start = "-".to_string();
        loop {
            let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut redis)
                .await
                .map_err(|e| Error::store("redis", e))?;
            let full = page.len() == PAGE;
            let Some(last) = page.last().map(|(id, _)| id.clone()) else {
                break;
            };
            for (id, fields) in page {
                if let Some(v) = fields
                    .iter()
                    .find(|(k, _)| k == "json")
                    .and_then(|(_, j)| Self::ours(s, addrs, j))
                {
                    out.push((id, v));
                }
            }
            if !full {
                break;
            }
            start = format!("({last}");
        }
        Ok(out)
    }

    /// The subject's members of the retry set: (member, e-mail).
    async fn retries(&self, s: &Subject, addrs: &[String]) -> Result<Vec<(String, Value)>, Error> {
        let mut redis = self.redis.clone();
        let key = mailer::retry_set(&self.stream);
        let mut seen = BTreeMap::new();
        let mut cursor = "0".to_string();
        loop {
            let (next, flat): (String, Vec<String>) = redis::cmd("ZSCAN")
                .arg(&key)
                .arg(&cursor)
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut redis)
                .await
                .map_err(|e| Error::store("redis", e))?;
            // Member, score, member, score, ...
            for member in flat.into_iter().step_by(2) {
                if let Some(v) = Self::ours(s, addrs, &member) {
                    seen.insert(member, v);
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        Ok(seen.into_iter().collect())
    }

    /// The outbox (stream entries and retries) and the DLQ of the subject.
    async fn queued(&self, s: &Subject, addrs: &[String]) -> Result<Queued, Error> {
        Ok(Queued {
            stream: self.stream_entries(&self.stream, s, addrs).await?,
            retries: self.retries(s, addrs).await?,
            dead: self
                .stream_entries(&mailer::dlq_stream(&self.stream), s, addrs)
                .await?,
        })
    }

    /// Delete `ids` from stream `key`; how many were there.
    async fn xdel(&self, key: &str, ids: &[String]) -> Result<u64, Error> {
        let mut redis = self.redis.clone();
        let mut n = 0;
        for chunk in ids.chunks(PAGE) {
            let removed: u64 = redis::cmd("XDEL")
                .arg(key)
                .arg(chunk)
                .query_async(&mut redis)
                .await
                .map_err(|e| Error::store("redis", e))?;
            n += removed;
        }
        Ok(n)
    }

    async fn zrem(&self, members: &[String]) -> Result<u64, Error> {
        let mut redis = self.redis.clone();
        let key = mailer::retry_set(&self.stream);
        let mut n = 0;
        for chunk in members.chunks(PAGE) {
            let removed: u64 = redis::cmd("ZREM")
                .arg(&key)
                .arg(chunk)
                .query_async(&mut redis)
                .await
                .map_err(|e| Error::store("redis", e))?;
            n += removed;
        }
        Ok(n)
    }
}

/// The subject's e-mails waiting in Redis.
struct Queued {
    stream: Vec<(String, Value)>,
    retries: Vec<(String, Value)>,
    dead: Vec<(String, Value)>,
}

impl Queued {
    fn outbox(&self) -> Vec<Value> {
        self.stream
            .iter()
            .chain(&self.retries)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl MailSink {
    fn unavailable(e: impl std::fmt::Display) -> Error {
        Error::store("mail sink", e)
    }

    /// Fail with the sink's answer unless it is a success: a 4xx cannot be
    /// helped by retrying, anything else can.
    async fn check(r: reqwest::Response) -> Result<reqwest::Response, Error> {
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        let text = r.text().await.unwrap_or_default();
        let msg = format!("mail sink answered {status}: {text}");
        if status.is_client_error() {
            Err(Error::Invalid(msg))
        } else {
            Err(Error::Unavailable(msg))
        }
    }

    /// The messages sent to any of `addrs` from `tenant` (with their text
    /// when `text`), by message id.
    async fn messages(
        &self,
        tenant: &str,
        addrs: &[String],
        text: bool,
    ) -> Result<BTreeMap<String, Value>, Error> {
        let raw = if text { "true" } else { "false" };
        let mut out = BTreeMap::new();
        for a in addrs {
            let r = self
                .http
                .get(format!("{}/messages", self.url))
                .query(&[("to", a.as_str()), ("tenant", tenant), ("raw", raw)])
                .send()
                .await
                .map_err(Self::unavailable)?;
            let body: Value = Self::check(r)
                .await?
                .json()
                .await
                .map_err(Self::unavailable)?;
            for m in body["messages"].as_array().into_iter().flatten() {
                let id = m["id"].as_str().unwrap_or_default().to_string();
                out.insert(id, m.clone());
            }
        }
        Ok(out)
    }

    /// Delete the messages sent to any of `addrs` from `tenant`.
    async fn delete(&self, tenant: &str, addrs: &[String]) -> Result<u64, Error> {
        let mut n = 0;
        for a in addrs {
            let r = self
                .http
                .delete(format!("{}/messages", self.url))
                .query(&[("to", a.as_str()), ("tenant", tenant)])
                .send()
                .await
                .map_err(Self::unavailable)?;
            let body: Value = Self::check(r)
                .await?
                .json()
                .await
                .map_err(Self::unavailable)?;
            n += body["deleted"].as_u64().unwrap_or(0);
        }
        Ok(n)
    }
}

fn count(store: &str, n: usize, detail: &str) -> StoreCount {
    StoreCount::new(store, n as u64, detail)
}

#[async_trait::async_trait]
impl shopstream_dsar::Participant for Participant {
    fn name(&self) -> &'static str {
        "notifications"
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        let addrs = self.addresses(s).await?;
        let [channels, sends, owners] = self.rows(s, &addrs).await?;
        let queued = self.queued(s, &addrs).await?;
        let outbox = queued.outbox();
        let dead: Vec<Value> = queued.dead.into_iter().map(|(_, v)| v).collect();
        let mut counts = vec![
            count(CHANNELS, channels.len(), "registered channels"),
            count(EMAIL_SENDS, sends.len(), "e-mails sent or tried"),
            count(ORDER_OWNERS, owners.len(), "orders owned"),
            count(OUTBOX, outbox.len(), "e-mails waiting to be sent"),
            count(DEAD_LETTERS, dead.len(), "e-mails in the DLQ"),
        ];
        let mut documents = vec![
            Document {
                store: CHANNELS.into(),
                json: json!(channels),
            },
            Document {
                store: EMAIL_SENDS.into(),
                json: json!(sends),
            },
            Document {
                store: ORDER_OWNERS.into(),
                json: json!(owners),
            },
            Document {
                store: OUTBOX.into(),
                json: json!(outbox),
            },
            Document {
                store: DEAD_LETTERS.into(),
                json: json!(dead),
            },
        ];
        if let Some(sink) = &self.sink {
            let messages: Vec<Value> = sink
                .messages(&s.tenant, &addrs, true)
                .await?
                .into_values()
                .collect();
            counts.push(count(MAIL_SINK, messages.len(), "delivered messages"));
            documents.push(Document {
                store: MAIL_SINK.into(),
                json: json!(messages),
            });
        }
        Ok(Export {
            counts,
            documents,
            objects: vec![],
        })
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        let addrs = self.addresses(s).await?;
        // Nothing more is sent: the outbox and the DLQ first.
        let queued = self.queued(s, &addrs).await?;
        let ids = |v: &[(String, Value)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        let outbox = self.xdel(&self.stream, &ids(&queued.stream)).await?
            + self.zrem(&ids(&queued.retries)).await?;
        let dead = self
            .xdel(&mailer::dlq_stream(&self.stream), &ids(&queued.dead))
            .await?;
        let sunk = match &self.sink {
            Some(sink) => Some(sink.delete(&s.tenant, &addrs).await?),
            None => None,
        };
        let user = s.user_id.to_string();
        let mut tx = self.pool.begin().await?;
        let channels = sqlx::query(
            "DELETE FROM channels WHERE tenant_id = $1 AND (user_id = $2 OR lower(address) = ANY($3))",
        )
        .bind(&s.tenant)
        .bind(&user)
        .bind(&addrs)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let sends = sqlx::query(
            "UPDATE email_sends SET recipients = '{}', last_error = '', updated_at = now()
             WHERE tenant_id = $1 AND lower_addresses(recipients) && $2",
        )
        .bind(&s.tenant)
        .bind(&addrs)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let owners = sqlx::query(
            "UPDATE order_owners SET user_id = $3 WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(&s.tenant)
        .bind(&user)
        .bind(Uuid::nil().to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        let mut counts = vec![
            StoreCount::new(CHANNELS, channels, "channels deleted"),
            StoreCount::new(
                EMAIL_SENDS,
                sends,
                "delivery rows anonymised (recipients and error cleared)",
            ),
            StoreCount::new(
                ORDER_OWNERS,
                owners,
                "order owners anonymised (nil user id)",
            ),
            StoreCount::new(OUTBOX, outbox, "queued e-mails deleted"),
            StoreCount::new(DEAD_LETTERS, dead, "dead letters deleted"),
        ];
        if let Some(n) = sunk {
            counts.push(StoreCount::new(MAIL_SINK, n, "delivered messages deleted"));
        }
        Ok(Erasure {
            counts,
            retained: vec![],
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        let addrs = self.addresses(s).await?;
        let user = s.user_id.to_string();
        let (channels, sends, owners): (i64, i64, i64) = sqlx::query_as(
            "SELECT
                (SELECT count(*) FROM channels
                 WHERE tenant_id = $1 AND (user_id = $2 OR lower(address) = ANY($3))),
                (SELECT count(*) FROM email_sends
                 WHERE tenant_id = $1 AND lower_addresses(recipients) && $3),
                (SELECT count(*) FROM order_owners WHERE tenant_id = $1 AND user_id = $2)",
        )
        .bind(&s.tenant)
        .bind(&user)
        .bind(&addrs)
        .fetch_one(&self.pool)
        .await?;
        let queued = self.queued(s, &addrs).await?;
        let n = |v: i64| v.max(0) as u64;
        let mut counts = vec![
            StoreCount::new(CHANNELS, n(channels), "registered channels"),
            StoreCount::new(EMAIL_SENDS, n(sends), "e-mails naming the subject"),
            StoreCount::new(ORDER_OWNERS, n(owners), "orders owned"),
            count(
                OUTBOX,
                queued.stream.len() + queued.retries.len(),
                "e-mails waiting to be sent",
            ),
            count(DEAD_LETTERS, queued.dead.len(), "e-mails in the DLQ"),
        ];
        if let Some(sink) = &self.sink {
            let messages = sink.messages(&s.tenant, &addrs, false).await?;
            counts.push(count(MAIL_SINK, messages.len(), "delivered messages"));
        }
        Ok(counts)
    }
}
