//! E-mail delivery: rendered e-mails wait on the Redis stream
//! `email.outbound` (consumer group `mailer`); the mailer sends each over
//! SMTP, retries temporary failures with exponential backoff through the
//! sorted set `email.outbound.retry`, and moves permanent failures — and
//! temporary ones past the last attempt — to `email.outbound.dlq` with the
//! reason and the attempt count.
//!
//! One e-mail per (event, template): every e-mail has a key
//! ([`crate::email::key`]) and a row in `email_sends`. A key already `sent`
//! or `dead` is acknowledged without sending, so a redelivered event, a
//! replayed entry or a restart sends nothing twice — except in one window: a
//! crash after the SMTP server accepted the message and before the row says
//! `sent`. The restarted mailer cannot know the message left, sends it again,
//! and the copy carries the same `Message-ID`, so a mail client shows it once.
//! ADR 0009 says why that bound is accepted.

use std::{collections::HashMap, sync::Arc, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox,
        header::{ContentType, HeaderName, HeaderValue},
    },
};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use shopstream_platform::{
    cache::ConnectionManager,
    clock::{Clock, SystemClock},
    events::runner::exponential_backoff,
    metrics::Metrics,
    shutdown,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::email::{self, Failure, NextStep, Template};

/// The stream e-mails wait on (the default of `SHOPSTREAM_EMAIL_STREAM`).
pub const STREAM: &str = "email.outbound";
/// Where e-mails that will never be sent go, with the reason: `<stream>.dlq`.
pub fn dlq_stream(stream: &str) -> String {
    format!("{stream}.dlq")
}
/// E-mails waiting for their next attempt, scored by when it is due (ms):
/// `<stream>.retry`.
pub fn retry_set(stream: &str) -> String {
    format!("{stream}.retry")
}
/// The header naming the tenant an e-mail is from: the mail sink keeps it,
/// so a DSAR erases one tenant's mail of an address (mail-sim's
/// `X-Shopstream-Tenant`).
pub const TENANT_HEADER: &str = "X-Shopstream-Tenant";
/// The mailer's consumer group on the stream.
pub const GROUP: &str = "mailer";
/// Entries kept in each stream (approximate trim on every add).
const STREAM_MAXLEN: usize = 10_000;
/// Entries read at once.
const READ_COUNT: usize = 16;
/// How long one read waits for new entries.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// Retries moved back to the stream in one pass.
const RETRY_BATCH: usize = 100;
/// Pause before a failed mailer loop starts again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// Bound on one SMTP conversation.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The failpoint that aborts the process right after the SMTP server accepted
/// a message and before it is recorded as sent (crash tests and chaos labs
/// set `SHOPSTREAM_FAILPOINT` to it).
pub const FAILPOINT_AFTER_SEND: &str = "email.after_send";

/// One e-mail on [`STREAM`] (the entry's `json` field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    /// (event, template): see [`email::key`].
    pub key: String,
    pub tenant_id: String,
    pub template: Template,
    pub to: Vec<String>,
    pub order_id: String,
    pub subject: String,
    pub body: String,
}

/// An e-mail that will not be sent, on the stream's [`dlq_stream`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(flatten)]
    pub email: Outbound,
    pub reason: String,
    pub attempts: u32,
}

/// Queue `e` for sending on `stream`.
pub async fn enqueue(
    redis: &mut ConnectionManager,
    stream: &str,
    e: &Outbound,
) -> redis::RedisResult<String> {
    let json = serde_json::to_string(e).map_err(json_error)?;
    redis::cmd("XADD")
        .arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(STREAM_MAXLEN)
        .arg("*")
        .arg("json")
        .arg(json)
        .query_async(redis)
        .await
}

/// The dead letters of `stream`, oldest first (for labs and tests).
pub async fn dead_letters(
    redis: &mut ConnectionManager,
    stream: &str,
) -> redis::RedisResult<Vec<DeadLetter>> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(dlq_stream(stream))
        .arg("-")
        .arg("+")
        .query_async(redis)
        .await?;
    Ok(entries
        .into_iter()
        .filter_map(|(_, fields)| {
            let (_, json) = fields.into_iter().find(|(k, _)| k == "json")?;
            serde_json::from_str(&json).ok()
        })
        .collect())
}

fn json_error(e: serde_json::Error) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, "json", e.to_string()))
}

/// How the mailer sends.
#[derive(Debug, Clone)]
pub struct MailerConfig {
    /// The stream to read ([`STREAM`] unless tests keep theirs apart).
    pub stream: String,
    /// SMTP server as `host:port` (plain SMTP).
    pub smtp: String,
    /// The `From:` address.
    pub from: String,
    /// Attempts per e-mail before a temporary failure is dead-lettered.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// This mailer's consumer name in [`GROUP`]; stable across restarts, so a
    /// restarted mailer finds the entries it had not acknowledged.
    pub consumer: String,
    /// `SHOPSTREAM_FAILPOINT`, if set.
    pub failpoint: Option<String>,
}

/// The mailer's counters on `/metrics`.
#[derive(Debug, Clone, Default)]
struct Counters {
    sent: Counter,
    retried: Counter,
    dead: Counter,
    suppressed: Counter,
}

/// Sends what waits on [`STREAM`].
pub struct Mailer {
    /// A connection of its own: blocking reads would stall a shared one.
    redis: ConnectionManager,
    pool: PgPool,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    /// `cfg.from`, checked at start.
    from: Mailbox,
    cfg: MailerConfig,
    counters: Counters,
    clock: Arc<dyn Clock>,
}

/// One entry read from the stream.
struct Entry {
    id: String,
    email: Option<Outbound>,
}

impl Mailer {
    pub fn new(
        redis: ConnectionManager,
        pool: PgPool,
        cfg: MailerConfig,
        metrics: &Metrics,
    ) -> anyhow::Result<Mailer> {
        let (host, port) = cfg
            .smtp
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("SMTP server {:?} is not host:port", cfg.smtp))?;
        let port: u16 = port
            .parse()
            .map_err(|_| anyhow::anyhow!("SMTP server {:?}: bad port", cfg.smtp))?;
        let from: Mailbox = cfg.from.parse().map_err(|e| {
            anyhow::anyhow!("the From address {:?} is not an address: {e}", cfg.from)
        })?;
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let counters = Counters::default();
        for (name, help, c) in [
            (
                "notifications_emails_sent",
                "E-mails the SMTP server accepted",
                &counters.sent,
            ),
            (
                "notifications_emails_retried",
                "E-mail attempts that failed and were scheduled again",
                &counters.retried,
            ),
            (
                "notifications_emails_dead_lettered",
                "E-mails moved to email.outbound.dlq",
                &counters.dead,
            ),
            (
                "notifications_emails_suppressed",
                "E-mails not sent again because their key was already sent or dead",
                &counters.suppressed,
            ),
        ] {
            metrics.register(name, help, c.clone());
        }
        Ok(Mailer {
            redis,
            pool,
            smtp,
            from,
            cfg,
            counters,
            clock: Arc::new(SystemClock),
        })
    }

    /// Send until `stop`: first the entries this consumer read and never
    /// acknowledged (a crash), then new ones; retries come back when due. A
    /// failing Redis or Postgres is logged and tried again after a pause,
    /// starting again from the backlog (nothing unacknowledged is lost).
    pub async fn run(mut self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            if let Err(e) = self.run_once(&stop).await {
                tracing::warn!(error = %e, "mailer failed; starting again");
                shutdown::sleep_or_stop(&stop, RESTART_DELAY).await;
            }
        }
    }

    async fn run_once(&mut self, stop: &CancellationToken) -> anyhow::Result<()> {
        self.create_group().await?;
        let mut backlog = true;
        while !stop.is_cancelled() {
            self.requeue_due().await?;
            let entries = self.read(backlog).await?;
            if backlog && entries.is_empty() {
                backlog = false;
                continue;
            }
            for e in entries {
                self.deliver(e).await?;
            }
        }
        Ok(())
    }

    async fn create_group(&mut self) -> anyhow::Result<()> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.cfg.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.redis)
            .await;
        match r {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Move due retries back onto the stream, atomically.
    async fn requeue_due(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now_ms();
        redis::cmd("EVAL")
            .arg(
                r"local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
                  for _, m in ipairs(due) do
                    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'json', m)
                    redis.call('ZREM', KEYS[1], m)
                  end
                  return #due",
            )
            .arg(2)
            .arg(retry_set(&self.cfg.stream))
            .arg(&self.cfg.stream)
            .arg(now)
            .arg(RETRY_BATCH)
            .arg(STREAM_MAXLEN)
            .query_async::<i64>(&mut self.redis)
            .await?;
        Ok(())
    }

    /// Our pending entries (`backlog`), else new ones (waiting a little).
    async fn read(&mut self, backlog: bool) -> anyhow::Result<Vec<Entry>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.cfg.consumer)
            .arg("COUNT")
            .arg(READ_COUNT);
        if !backlog {
            cmd.arg("BLOCK").arg(READ_BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS")
            .arg(&self.cfg.stream)
            .arg(if backlog { "0" } else { ">" });
        let reply: Option<redis::streams::StreamReadReply> =
            cmd.query_async(&mut self.redis).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|sid| {
                let email = sid
                    .get::<String>("json")
                    .and_then(|j| serde_json::from_str(&j).ok());
                Entry { id: sid.id, email }
            })
            .collect())
    }

    async fn ack(&mut self, id: &str) -> anyhow::Result<()> {
        redis::cmd("XACK")
            .arg(&self.cfg.stream)
            .arg(GROUP)
            .arg(id)
            .query_async::<i64>(&mut self.redis)
            .await?;
        Ok(())
    }

    /// Run `put` (where the entry goes next: the retry set, the DLQ) and
    /// acknowledge the entry, in one `MULTI`: it is in exactly one place.
    async fn hand_off(&mut self, put: redis::Cmd, id: &str) -> anyhow::Result<()> {
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.cfg.stream).arg(GROUP).arg(id);
        redis::pipe()
            .atomic()
            .add_command(put)
            .ignore()
            .add_command(ack)
            .ignore()
            .query_async::<()>(&mut self.redis)
            .await?;
        Ok(())
    }

    async fn deliver(&mut self, entry: Entry) -> anyhow::Result<()> {
        let Some(e) = entry.email else {
            // Trimmed away or not ours to read: nothing can be sent from it.
            tracing::warn!(id = %entry.id, "unreadable e-mail entry acknowledged");
            return self.ack(&entry.id).await;
        };
        // Claim an attempt, unless the key is finished.
        let attempts: Option<i32> = sqlx::query_scalar(
            "INSERT INTO email_sends (key, tenant_id, template, recipients, order_id, state, attempts)
             VALUES ($1, $2, $3, $4, $5, 'sending', 1)
             ON CONFLICT (key) DO UPDATE
                SET attempts = email_sends.attempts + 1, state = 'sending', updated_at = now()
                WHERE email_sends.state IN ('sending', 'retrying')
             RETURNING attempts",
        )
        .bind(&e.key)
        .bind(&e.tenant_id)
        .bind(e.template.as_str())
        .bind(&e.to)
        .bind(&e.order_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(attempts) = attempts else {
            self.counters.suppressed.inc();
            return self.ack(&entry.id).await;
        };
        let attempts = attempts.max(1) as u32;
        match self.send(&e).await {
            Ok(()) => {
                if self.cfg.failpoint.as_deref() == Some(FAILPOINT_AFTER_SEND) {
                    tracing::error!(key = %e.key, "failpoint {FAILPOINT_AFTER_SEND}: aborting");
                    std::process::abort();
                }
                self.set_state(&e.key, "sent", "").await?;
                self.counters.sent.inc();
                self.ack(&entry.id).await
            }
            Err((failure, reason)) => {
                match email::next_step(failure, attempts, self.cfg.max_attempts) {
                    NextStep::Retry => {
                        let due = self.clock.now_ms()
                            + exponential_backoff(
                                self.cfg.backoff_base,
                                self.cfg.backoff_max,
                                attempts,
                            )
                            .as_millis() as i64;
                        let mut zadd = redis::cmd("ZADD");
                        zadd.arg(retry_set(&self.cfg.stream))
                            .arg(due)
                            .arg(serde_json::to_string(&e)?);
                        self.hand_off(zadd, &entry.id).await?;
                        self.counters.retried.inc();
                        tracing::info!(key = %e.key, attempts, %reason, "e-mail will be retried");
                        self.set_state(&e.key, "retrying", &reason).await
                    }
                    NextStep::DeadLetter => {
                        let dead = DeadLetter {
                            email: e.clone(),
                            reason: reason.clone(),
                            attempts,
                        };
                        let mut xadd = redis::cmd("XADD");
                        xadd.arg(dlq_stream(&self.cfg.stream))
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(STREAM_MAXLEN)
                            .arg("*")
                            .arg("json")
                            .arg(serde_json::to_string(&dead)?);
                        self.hand_off(xadd, &entry.id).await?;
                        self.counters.dead.inc();
                        tracing::warn!(key = %e.key, attempts, %reason, "e-mail dead-lettered");
                        self.set_state(&e.key, "dead", &reason).await
                    }
                }
            }
        }
    }

    async fn set_state(&self, key: &str, state: &str, error: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE email_sends SET state = $2, last_error = $3, updated_at = now() WHERE key = $1",
        )
        .bind(key)
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One SMTP attempt; a failure says whether retrying can help.
    async fn send(&self, e: &Outbound) -> Result<(), (Failure, String)> {
        let permanent = |r: String| (Failure::Permanent, r);
        let mut b = Message::builder()
            .message_id(Some(format!("<{}@shopstream>", e.key)))
            .from(self.from.clone())
            .subject(&e.subject)
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(TENANT_HEADER),
                e.tenant_id.clone(),
            ));
        for to in &e.to {
            b = b.to(to
                .parse()
                .map_err(|err| permanent(format!("bad address {to:?}: {err}")))?);
        }
        let msg = b
            .body(e.body.clone())
            .map_err(|err| permanent(format!("unbuildable message: {err}")))?;
        self.smtp.send(msg).await.map(|_| ()).map_err(|err| {
            let failure = if err.is_permanent() {
                Failure::Permanent
            } else {
                Failure::Temporary
            };
            (failure, smtp_reason(&err))
        })
    }
}

/// An SMTP error as one line: the server's code and text when it answered.
fn smtp_reason(err: &lettre::transport::smtp::Error) -> String {
    match err.status() {
        Some(code) => format!("SMTP {code}: {err}"),
        None => format!("SMTP: {err}"),
    }
}

/// Rows of `email_sends` by state, for tests and labs.
pub async fn send_counts(pool: &PgPool) -> sqlx::Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM email_sends GROUP BY state")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}
