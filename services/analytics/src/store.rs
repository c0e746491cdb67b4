//! Rollups kept in Postgres: every fact in `facts` (keyed by its event id, so
//! it counts once), open days rolled up in memory as facts arrive, closed
//! days in `daily` with a version. A restart rebuilds the open days from
//! `facts`; a late fact for a closed day is stored and the day recounted in
//! one transaction, its version bumped.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use shopstream_platform::clock::Clock;
use sqlx::{PgPool, types::Json};
use tokio::sync::Mutex;

use crate::domain::{self, Day, DayRollup, DayStats, Fact};

/// What recording a fact did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted in an open day.
    Counted,
    /// Its id was counted before.
    Duplicate,
    /// It belongs to a closed day, which was recounted: now at `version`.
    Corrected { version: i32 },
}

/// One day as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    pub stats: DayStats,
    pub closed: bool,
    /// 0 while open; 1 when closed, +1 per late correction.
    pub version: i32,
}

type Key = (String, Day);

/// The rollups of every tenant.
pub struct Rollups {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    /// Open days. One lock over the map keeps a close and a late fact for the
    /// same day from crossing.
    open: Mutex<HashMap<Key, DayRollup>>,
}

/// Whether counting `fact` reads or writes more than the fact itself (an
/// order's placement time, a refund's running total): such facts go through
/// [`Rollups::record`] one at a time; the rest can go through
/// [`Rollups::record_many`].
pub fn needs_history(fact: &Fact) -> bool {
    matches!(
        fact,
        Fact::OrderPlaced { .. } | Fact::OrderCompleted { .. } | Fact::Refunded { .. }
    )
}

/// Fold stored facts into a day's rollup.
fn fold(day: Day, facts: &[Json<Fact>]) -> DayRollup {
    let mut r = DayRollup::new(day);
    for f in facts {
        r.apply(&f.0);
    }
    r
}

impl Rollups {
    /// Rebuild the open days (facts without a closed row) from `facts`.
    pub async fn load(pool: PgPool, clock: Arc<dyn Clock>) -> sqlx::Result<Rollups> {
        let open_days: Vec<(String, i32)> = sqlx::query_as(
            "SELECT DISTINCT f.tenant_id, f.day FROM facts f
             WHERE NOT EXISTS (SELECT 1 FROM daily d WHERE d.tenant_id = f.tenant_id AND d.day = f.day)",
        )
        .fetch_all(&pool)
        .await?;
        let mut open = HashMap::new();
        for (tenant, day) in open_days {
            let facts = Self::facts_of(&pool, &tenant, Day(day)).await?;
            open.insert((tenant, Day(day)), fold(Day(day), &facts));
        }
        Ok(Rollups {
            pool,
            clock,
            open: Mutex::new(open),
        })
    }

    async fn facts_of<'e, E: sqlx::PgExecutor<'e>>(
        ex: E,
        tenant: &str,
        day: Day,
    ) -> sqlx::Result<Vec<Json<Fact>>> {
        sqlx::query_scalar("SELECT fact FROM facts WHERE tenant_id = $1 AND day = $2")
            .bind(tenant)
            .bind(day.0)
            .fetch_all(ex)
            .await
    }

    /// Count `fact` for `tenant`, once.
    pub async fn record(&self, tenant: &str, mut fact: Fact) -> sqlx::Result<Recorded> {
        let mut open = self.open.lock().await;
        match &mut fact {
            Fact::OrderPlaced {
                order_id, ts_ms, ..
            } => {
                sqlx::query(
                    "INSERT INTO order_placed (tenant_id, order_id, placed_ms) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(tenant)
                .bind(&*order_id)
                .bind(*ts_ms)
                .execute(&self.pool)
                .await?;
            }
            Fact::OrderCompleted {
                order_id,
                ts_ms,
                checkout_ms,
                ..
            } if checkout_ms.is_none() => {
                let placed: Option<i64> = sqlx::query_scalar(
                    "SELECT placed_ms FROM order_placed WHERE tenant_id = $1 AND order_id = $2",
                )
                .bind(tenant)
                .bind(&*order_id)
                .fetch_optional(&self.pool)
                .await?;
                *checkout_ms = placed
                    .map(|p| *ts_ms - p)
                    .filter(|d| *d >= 0)
                    .map(|d| d as u64);
            }
            _ => {}
        }
        let day = fact.day();
        let mut tx = self.pool.begin().await?;
        // Payments' refund events carry the running total refunded for the
        // order: the fact counts this refund only, the difference from the
        // total seen before.
        let mut refund_total = None;
        if let Fact::Refunded {
            order_id,
            amount_minor,
            ..
        } = &mut fact
            && !order_id.is_empty()
        {
            let before: i64 = sqlx::query_scalar(
                "SELECT refunded_minor FROM refund_totals
                 WHERE tenant_id = $1 AND order_id = $2 FOR UPDATE",
            )
            .bind(tenant)
            .bind(&*order_id)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
            refund_total = Some((order_id.clone(), (*amount_minor).max(before)));
            *amount_minor = (*amount_minor - before).max(0);
        }
        let inserted = sqlx::query(
            "INSERT INTO facts (tenant_id, day, id, fact) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(day.0)
        .bind(fact.id())
        .bind(Json(&fact))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(Recorded::Duplicate);
        }
        if let Some((order_id, total)) = refund_total {
            sqlx::query(
                "INSERT INTO refund_totals (tenant_id, order_id, refunded_minor) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, order_id) DO UPDATE SET refunded_minor = EXCLUDED.refunded_minor",
            )
            .bind(tenant)
            .bind(&order_id)
            .bind(total)
            .execute(&mut *tx)
            .await?;
        }
        let closed: Option<i32> = sqlx::query_scalar(
            "SELECT version FROM daily WHERE tenant_id = $1 AND day = $2 FOR UPDATE",
        )
        .bind(tenant)
        .bind(day.0)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(version) = closed {
            // A late fact: recount the closed day with it.
            let facts = Self::facts_of(&mut *tx, tenant, day).await?;
            let stats = fold(day, &facts).stats();
            sqlx::query(
                "UPDATE daily SET stats = $3, version = $4, updated_at_ms = $5
                 WHERE tenant_id = $1 AND day = $2",
            )
            .bind(tenant)
            .bind(day.0)
            .bind(Json(&stats))
            .bind(version + 1)
            .bind(self.clock.now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Recorded::Corrected {
                version: version + 1,
            });
        }
        tx.commit().await?;
        let key = (tenant.to_string(), day);
        match open.get_mut(&key) {
            Some(r) => {
                r.apply(&fact);
            }
            None => {
                // First fact of the day (it is among the stored facts now).
                let facts = Self::facts_of(&self.pool, tenant, day).await?;
                open.insert(key, fold(day, &facts));
            }
        }
        Ok(Recorded::Counted)
    }

    /// Count `facts` (each with its tenant), once each, in one transaction:
    /// the batch path of the views' pipeline, where one fact per commit was
    /// most of analytics' share of Postgres. Only facts that need no history
    /// ([`needs_history`] false) go here; one result per fact, in order, each
    /// what [`Rollups::record`] would have answered. A late fact corrects
    /// its closed day as there: the day's version goes up once per late fact.
    pub async fn record_many(&self, facts: &[(String, Fact)]) -> sqlx::Result<Vec<Recorded>> {
        debug_assert!(facts.iter().all(|(_, f)| !needs_history(f)));
        if facts.is_empty() {
            return Ok(Vec::new());
        }
        let mut open = self.open.lock().await;
        let (mut tenants, mut days, mut ids, mut rows) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (tenant, fact) in facts {
            tenants.push(tenant.as_str());
            days.push(fact.day().0);
            ids.push(fact.id());
            rows.push(serde_json::to_string(fact).map_err(|e| sqlx::Error::Encode(e.into()))?);
        }
        let mut tx = self.pool.begin().await?;
        let inserted: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO facts (tenant_id, day, id, fact)
             SELECT r.tenant_id, r.day, r.id, r.fact::jsonb
               FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) AS r(tenant_id, day, id, fact)
             ON CONFLICT DO NOTHING
             RETURNING tenant_id, id",
        )
        .bind(&tenants)
        .bind(&days)
        .bind(&ids)
        .bind(&rows)
        .fetch_all(&mut *tx)
        .await?;
        let mut fresh: std::collections::HashSet<(String, String)> = inserted.into_iter().collect();
        // Which facts counted: the first of each inserted id, in order (an id
        // twice in one batch inserts once).
        let counted: Vec<bool> = facts
            .iter()
            .map(|(t, f)| fresh.remove(&(t.clone(), f.id().to_string())))
            .collect();
        // The days the new facts fall on, and which of those are closed.
        let touched: std::collections::BTreeSet<Key> = facts
            .iter()
            .zip(&counted)
            .filter(|(_, c)| **c)
            .map(|((tenant, fact), _)| (tenant.clone(), fact.day()))
            .collect();
        let (ts, ds): (Vec<&str>, Vec<i32>) =
            touched.iter().map(|(t, d)| (t.as_str(), d.0)).unzip();
        let closed: Vec<(String, i32, i32)> = sqlx::query_as(
            "SELECT d.tenant_id, d.day, d.version FROM daily d
               JOIN unnest($1::text[], $2::int[]) AS k(tenant_id, day)
                 ON d.tenant_id = k.tenant_id AND d.day = k.day
             ORDER BY d.tenant_id, d.day
             FOR UPDATE OF d",
        )
        .bind(&ts)
        .bind(&ds)
        .fetch_all(&mut *tx)
        .await?;
        let closed: BTreeMap<Key, i32> = closed
            .into_iter()
            .map(|(t, d, v)| ((t, Day(d)), v))
            .collect();
        // Late facts (of a closed day) per day: its version goes up by one each.
        let mut late: BTreeMap<Key, i32> = BTreeMap::new();
        let mut results = Vec::with_capacity(facts.len());
        for ((tenant, fact), c) in facts.iter().zip(&counted) {
            let key = (tenant.clone(), fact.day());
            results.push(match (c, closed.get(&key)) {
                (false, _) => Recorded::Duplicate,
                (true, None) => Recorded::Counted,
                (true, Some(version)) => {
                    let n = late.entry(key).or_default();
                    *n += 1;
                    Recorded::Corrected {
                        version: version + *n,
                    }
                }
            });
        }
        for ((tenant, day), n) in &late {
            let facts = Self::facts_of(&mut *tx, tenant, *day).await?;
            sqlx::query(
                "UPDATE daily SET stats = $3, version = $4, updated_at_ms = $5
                 WHERE tenant_id = $1 AND day = $2",
            )
            .bind(tenant)
            .bind(day.0)
            .bind(Json(&fold(*day, &facts).stats()))
            .bind(closed[&(tenant.clone(), *day)] + n)
            .bind(self.clock.now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for ((tenant, fact), r) in facts.iter().zip(&results) {
            if *r != Recorded::Counted {
                continue;
            }
            let key = (tenant.clone(), fact.day());
            match open.get_mut(&key) {
                // A fact already folded in below is a duplicate there.
                Some(rollup) => {
                    rollup.apply(fact);
                }
                None => {
                    // The day's first facts: all of them are stored now.
                    let stored = Self::facts_of(&self.pool, tenant, key.1).await?;
                    open.insert(key, fold(fact.day(), &stored));
                }
            }
        }
        Ok(results)
    }

    /// Remember that each (tenant, user, visitor, ts_ms) user acted as that
    /// visitor, first at that time: how a DSAR finds a person's actions,
    /// whose facts name only the visitor. One statement for them all; a link
    /// named again keeps its earliest time.
    pub async fn link_visitors(&self, links: &[(String, String, String, i64)]) -> sqlx::Result<()> {
        let mut first: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
        for (t, u, v, ts) in links {
            let at = first.entry((t, u, v)).or_insert(*ts);
            *at = (*at).min(*ts);
        }
        if first.is_empty() {
            return Ok(());
        }
        let (mut ts, mut us, mut vs, mut ats) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((t, u, v), at) in first {
            ts.push(t);
            us.push(u);
            vs.push(v);
            ats.push(at);
        }
        sqlx::query(
            "INSERT INTO visitor_users (tenant_id, user_id, visitor_id, first_seen_ms)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
             ON CONFLICT (tenant_id, user_id, visitor_id)
             DO UPDATE SET first_seen_ms = EXCLUDED.first_seen_ms
             WHERE visitor_users.first_seen_ms > EXCLUDED.first_seen_ms",
        )
        .bind(&ts)
        .bind(&us)
        .bind(&vs)
        .bind(&ats)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The visitor ids `user_id` acted as, with when each was first seen,
    /// and the facts of those visitors (oldest first).
    pub async fn user_data(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> sqlx::Result<(Vec<(String, i64)>, Vec<Fact>)> {
        let visitors: Vec<(String, i64)> = sqlx::query_as(
            "SELECT visitor_id, first_seen_ms FROM visitor_users
             WHERE tenant_id = $1 AND user_id = $2 ORDER BY first_seen_ms, visitor_id",
        )
        .bind(tenant)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<String> = visitors.iter().map(|(v, _)| v.clone()).collect();
        let facts: Vec<Json<Fact>> = sqlx::query_scalar(
            "SELECT fact FROM facts
             WHERE tenant_id = $1 AND fact->>'visitor_id' = ANY($2)
             ORDER BY (fact->>'ts_ms')::bigint, id",
        )
        .bind(tenant)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        Ok((visitors, facts.into_iter().map(|f| f.0).collect()))
    }

    /// How many visitor links and facts of `user_id` there are.
    pub async fn user_counts(&self, tenant: &str, user_id: &str) -> sqlx::Result<(u64, u64)> {
        let (links, facts): (i64, i64) = sqlx::query_as(
            "SELECT
                (SELECT count(*) FROM visitor_users WHERE tenant_id = $1 AND user_id = $2),
                (SELECT count(*) FROM facts
                 WHERE tenant_id = $1 AND fact->>'visitor_id' IN
                     (SELECT visitor_id FROM visitor_users WHERE tenant_id = $1 AND user_id = $2))",
        )
        .bind(tenant)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((links.max(0) as u64, facts.max(0) as u64))
    }

    /// Delete the facts of every visitor `user_id` acted as, and those
    /// links, in one transaction; the open days they touched are counted
    /// again without them (closed days keep their published totals, which
    /// name no one). Returns (facts, links) deleted.
    ///
    /// A visitor id shared by two accounts (one browser, two sign-ins) is
    /// erased whole: its facts cannot be told apart.
    pub async fn erase_user(&self, tenant: &str, user_id: &str) -> sqlx::Result<(u64, u64)> {
        // Held throughout: a fact recorded meanwhile cannot fall between the
        // delete and the recount.
        let mut open = self.open.lock().await;
        let mut tx = self.pool.begin().await?;
        let visitors: Vec<String> = sqlx::query_scalar(
            "DELETE FROM visitor_users WHERE tenant_id = $1 AND user_id = $2
             RETURNING visitor_id",
        )
        .bind(tenant)
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
        let days: Vec<i32> = sqlx::query_scalar(
            "DELETE FROM facts WHERE tenant_id = $1 AND fact->>'visitor_id' = ANY($2)
             RETURNING day",
        )
        .bind(tenant)
        .bind(&visitors)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let touched: std::collections::BTreeSet<i32> = days.iter().copied().collect();
        for day in touched {
            if let Some(rollup) = open.get_mut(&(tenant.to_string(), Day(day))) {
                let facts = Self::facts_of(&self.pool, tenant, Day(day)).await?;
                *rollup = fold(Day(day), &facts);
            }
        }
        Ok((days.len() as u64, visitors.len() as u64))
    }

    /// Close every open day whose time has come (00:05 UTC the next day on
    /// the clock); returns the days closed.
    pub async fn close_due(&self) -> sqlx::Result<Vec<(String, Day)>> {
        let now = self.clock.now_ms();
        let mut open = self.open.lock().await;
        let due: Vec<Key> = open
            .keys()
            .filter(|(_, day)| domain::close_due(*day, now))
            .cloned()
            .collect();
        for key in &due {
            let Some(r) = open.get(key) else { continue };
            sqlx::query(
                "INSERT INTO daily (tenant_id, day, stats, version, closed_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&key.0)
            .bind(key.1.0)
            .bind(Json(r.stats()))
            .bind(now)
            .execute(&self.pool)
            .await?;
            open.remove(key);
        }
        Ok(due)
    }

    /// The facts of each of `order_ids` (any day), by order.
    pub async fn order_facts(
        &self,
        tenant: &str,
        order_ids: &[String],
    ) -> sqlx::Result<BTreeMap<String, Vec<Fact>>> {
        let rows: Vec<(String, Json<Fact>)> = sqlx::query_as(
            "SELECT fact->>'order_id', fact FROM facts
             WHERE tenant_id = $1 AND fact->>'order_id' = ANY($2)",
        )
        .bind(tenant)
        .bind(order_ids)
        .fetch_all(&self.pool)
        .await?;
        let mut out: BTreeMap<String, Vec<Fact>> = BTreeMap::new();
        for (order, fact) in rows {
            out.entry(order).or_default().push(fact.0);
        }
        Ok(out)
    }

    /// Days `from..=to` of `tenant`, oldest first; a day with nothing has
    /// zero counts.
    pub async fn days(&self, tenant: &str, from: Day, to: Day) -> sqlx::Result<Vec<DayRow>> {
        // Locked before the read, so a day closing meanwhile is seen in one
        // place or the other, never in neither.
        let open = self.open.lock().await;
        let closed: Vec<(i32, Json<DayStats>, i32)> = sqlx::query_as(
            "SELECT day, stats, version FROM daily
             WHERE tenant_id = $1 AND day BETWEEN $2 AND $3",
        )
        .bind(tenant)
        .bind(from.0)
        .bind(to.0)
        .fetch_all(&self.pool)
        .await?;
        let mut rows: BTreeMap<Day, DayRow> = closed
            .into_iter()
            .map(|(day, stats, version)| {
                (
                    Day(day),
                    DayRow {
                        stats: stats.0,
                        closed: true,
                        version,
                    },
                )
            })
            .collect();
        let now = self.clock.now_ms();
        let mut day = from;
        while day <= to {
            rows.entry(day)
                .or_insert_with(|| match open.get(&(tenant.to_string(), day)) {
                    Some(r) => DayRow {
                        stats: r.stats(),
                        closed: false,
                        version: 0,
                    },
                    // Nothing happened: final once its closing time passed.
                    None => DayRow {
                        stats: DayStats::empty(day),
                        closed: domain::close_due(day, now),
                        version: 0,
                    },
                });
            if day.next() == day {
                break;
            }
            day = day.next();
        }
        Ok(rows.into_values().collect())
    }
}
