//! Compliance's Postgres: DSAR rows (with each participant's step), the
//! signing key and the suppression list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shopstream_dsar::{Retained, StoreCount};
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::domain::{Kind, Signer, State, Sweep};

/// One participant's part of a DSAR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// `running`, `completed`.
    pub state: String,
    pub counts: Vec<StoreCount>,
    #[serde(default)]
    pub retained: Vec<Retained>,
    /// The last error while it is retried.
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub attempts: u32,
    /// The sweep round this step last ran in.
    #[serde(default)]
    pub round: u32,
    /// An erase's scan before erasing (the floor of its counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<Vec<StoreCount>>,
    #[serde(default)]
    pub completed_at_ms: i64,
    /// Milliseconds the successful call took.
    #[serde(default)]
    pub took_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dsar {
    pub dsar_id: Uuid,
    pub tenant: String,
    pub subject_user_id: Uuid,
    pub kind: Kind,
    pub state: State,
    pub requested_by: String,
    pub emails: Vec<String>,
    #[serde(skip)]
    pub salt: Vec<u8>,
    pub steps: BTreeMap<String, Step>,
    pub sweep: Option<Sweep>,
    pub waiting_on: String,
    pub export_key: Option<String>,
    pub audit_seq: Option<i64>,
    pub audit_hash: Option<String>,
    pub certificate: Option<String>,
    pub error: String,
    pub created_at_ms: i64,
    pub completed_at_ms: i64,
}

impl Dsar {
    pub fn subject(&self) -> shopstream_dsar::Subject {
        shopstream_dsar::Subject {
            tenant: self.tenant.clone(),
            user_id: self.subject_user_id,
            emails: self.emails.clone(),
        }
    }
}

fn dsar_of(r: &PgRow) -> Result<Dsar, sqlx::Error> {
    let decode = |col: &str, e: String| sqlx::Error::ColumnDecode {
        index: col.into(),
        source: e.into(),
    };
    let kind: String = r.try_get("kind")?;
    let state: String = r.try_get("state")?;
    let steps: serde_json::Value = r.try_get("steps")?;
    let sweep: Option<serde_json::Value> = r.try_get("sweep")?;
    Ok(Dsar {
        dsar_id: r.try_get("dsar_id")?,
        tenant: r.try_get("tenant_id")?,
        subject_user_id: r.try_get("subject_user_id")?,
        kind: Kind::parse(&kind).ok_or_else(|| decode("kind", kind.clone()))?,
        state: State::parse(&state).ok_or_else(|| decode("state", state.clone()))?,
        requested_by: r.try_get("requested_by")?,
        emails: r.try_get("emails")?,
        salt: r.try_get("salt")?,
        steps: serde_json::from_value(steps).map_err(|e| decode("steps", e.to_string()))?,
        sweep: sweep
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| decode("sweep", e.to_string()))?,
        waiting_on: r.try_get("waiting_on")?,
        export_key: r.try_get("export_key")?,
        audit_seq: r.try_get("audit_seq")?,
        audit_hash: r.try_get("audit_hash")?,
        certificate: r.try_get("certificate")?,
        error: r.try_get("error")?,
        created_at_ms: r.try_get("created_at_ms")?,
        completed_at_ms: r.try_get("completed_at_ms")?,
    })
}

/// What [`Store::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    New,
    /// The same idempotency key was seen before.
    Replayed,
    /// A DSAR for the subject is running; this request joins it.
    Joined,
}

#[derive(Clone, Debug)]
pub struct Store {
    pub pool: PgPool,
}

const UNIQUE_VIOLATION: &str = "23505";

/// A new DSAR's fields.
#[derive(Debug, Clone)]
pub struct NewDsar<'a> {
    pub dsar_id: Uuid,
    pub tenant: &'a str,
    pub subject: Uuid,
    pub kind: Kind,
    pub requested_by: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub salt: Vec<u8>,
    pub now_ms: i64,
}

impl Store {
    pub async fn get(&self, tenant: &str, id: Uuid) -> Result<Option<Dsar>, sqlx::Error> {
        sqlx::query("SELECT * FROM dsars WHERE dsar_id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| dsar_of(&r))
            .transpose()
    }

    /// A DSAR by id in any tenant (the workflow's activities carry only the id).
    pub async fn load(&self, id: Uuid) -> Result<Dsar, sqlx::Error> {
        let r = sqlx::query("SELECT * FROM dsars WHERE dsar_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        dsar_of(&r)
    }

    async fn active(&self, tenant: &str, subject: Uuid) -> Result<Option<Dsar>, sqlx::Error> {
        sqlx::query(
            "SELECT * FROM dsars WHERE tenant_id = $1 AND subject_user_id = $2 \
             AND state IN ('pending', 'running')",
        )
        .bind(tenant)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| dsar_of(&r))
        .transpose()
    }

    async fn by_key(&self, tenant: &str, key: &str) -> Result<Option<Dsar>, sqlx::Error> {
        sqlx::query("SELECT * FROM dsars WHERE tenant_id = $1 AND idempotency_key = $2")
            .bind(tenant)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| dsar_of(&r))
            .transpose()
    }

    /// Record a DSAR, unless the idempotency key was seen (that one is
    /// answered) or one runs for the subject (the request joins it).
    pub async fn start(&self, n: NewDsar<'_>) -> Result<(Dsar, Started), sqlx::Error> {
        for _ in 0..3 {
            if let Some(k) = n.idempotency_key
                && let Some(d) = self.by_key(n.tenant, k).await?
            {
                return Ok((d, Started::Replayed));
            }
            if let Some(d) = self.active(n.tenant, n.subject).await? {
                return Ok((d, Started::Joined));
            }
            let inserted = sqlx::query(
                "INSERT INTO dsars (dsar_id, tenant_id, subject_user_id, kind, state, \
                 idempotency_key, requested_by, salt, created_at_ms) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8) RETURNING *",
            )
            .bind(n.dsar_id)
            .bind(n.tenant)
            .bind(n.subject)
            .bind(n.kind.as_str())
            .bind(n.idempotency_key)
            .bind(n.requested_by)
            .bind(&n.salt)
            .bind(n.now_ms)
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(r) => return Ok((dsar_of(&r)?, Started::New)),
                // A concurrent start won the race: look again.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNIQUE_VIOLATION) => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(sqlx::Error::Protocol(
            "a DSAR for this subject kept appearing and disappearing".into(),
        ))
    }

    /// DSARs that have not ended, oldest first (resumed at start-up).
    pub async fn unfinished(&self) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT dsar_id FROM dsars WHERE state IN ('pending', 'running') ORDER BY created_at_ms",
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn set_running(&self, id: Uuid, emails: &[String]) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dsars SET state = 'running', emails = $2 \
             WHERE dsar_id = $1 AND state IN ('pending', 'running')",
        )
        .bind(id)
        .bind(emails)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_step(
        &self,
        id: Uuid,
        participant: &str,
        step: &Step,
    ) -> Result<(), sqlx::Error> {
        let v = serde_json::to_value(step).map_err(|e| sqlx::Error::Encode(e.into()))?;
        sqlx::query("UPDATE dsars SET steps = jsonb_set(steps, ARRAY[$2], $3) WHERE dsar_id = $1")
            .bind(id)
            .bind(participant)
            .bind(v)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_waiting(&self, id: Uuid, waiting_on: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE dsars SET waiting_on = $2 WHERE dsar_id = $1")
            .bind(id)
            .bind(waiting_on)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_sweep(&self, id: Uuid, sweep: &Sweep) -> Result<(), sqlx::Error> {
        let v = serde_json::to_value(sweep).map_err(|e| sqlx::Error::Encode(e.into()))?;
        sqlx::query("UPDATE dsars SET sweep = $2 WHERE dsar_id = $1")
            .bind(id)
            .bind(v)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_export_key(&self, id: Uuid, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE dsars SET export_key = $2 WHERE dsar_id = $1")
            .bind(id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_audit(&self, id: Uuid, seq: u64, hash: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE dsars SET audit_seq = $2, audit_hash = $3 WHERE dsar_id = $1")
            .bind(id)
            .bind(seq as i64)
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// End a DSAR: its state, the certificate (completed) or the error
    /// (failed); the subject's e-mail addresses are forgotten.
    pub async fn finish(
        &self,
        id: Uuid,
        state: State,
        certificate: Option<&str>,
        error: &str,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dsars SET state = $2, certificate = $3, error = $4, completed_at_ms = $5, \
             emails = '{}', waiting_on = '' WHERE dsar_id = $1 AND state IN ('pending', 'running')",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(certificate)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The signing key, created on first use.
    pub async fn signer(&self, now_ms: i64) -> Result<Signer, String> {
        let existing: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT pkcs8 FROM signing_keys ORDER BY created_at_ms LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| e.to_string())?;
        if let Some(k) = existing {
            return Signer::from_pkcs8(&k);
        }
        let s = Signer::generate()?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, pkcs8, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(s.kid())
        .bind(s.pkcs8())
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        // Two first starts at once: both use whichever key won.
        let k: Vec<u8> = sqlx::query_scalar(
            "SELECT pkcs8 FROM signing_keys ORDER BY created_at_ms, kid LIMIT 1",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        Signer::from_pkcs8(&k)
    }

    pub async fn suppress(
        &self,
        tenant: &str,
        user: Uuid,
        dsar: Uuid,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO suppressed (tenant_id, user_id, dsar_id, at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(user)
        .bind(dsar)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every suppressed (tenant, user).
    pub async fn suppressed(&self) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
        let rows = sqlx::query("SELECT tenant_id, user_id FROM suppressed")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant_id")?, r.try_get("user_id")?)))
            .collect()
    }
}
