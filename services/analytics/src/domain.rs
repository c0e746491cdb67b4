//! Per-tenant daily rollups: "what happened today" for one shop.
//!
//! The service receives facts: things that happened, such as a visitor viewing
//! a product, an order being placed, or a payment being captured. Every fact
//! has a unique event id and a timestamp in milliseconds since the Unix epoch.
//! A fact belongs to the UTC calendar day that contains its timestamp.
//!
//! A [`DayRollup`] is the running state of one tenant's day. Facts are applied
//! to it one at a time as they arrive. Applying is idempotent: a fact whose id
//! was already applied changes nothing, so a redelivered event is harmless.
//! A fact from another day also changes nothing. Because counting only adds
//! and takes no notice of arrival order, the same set of facts gives the same
//! [`DayStats`] whatever order they arrive in.
//!
//! Sessions are worked out from each visitor's action times on that day alone:
//! consecutive actions at most [`SESSION_GAP_MS`] apart are one session, and a
//! longer gap starts a new one. A session that crosses midnight therefore
//! counts once on each day.
//!
//! A day is closed [`CLOSE_AFTER_MS`] after it ends (00:05 UTC the next day),
//! which leaves time for late events; see [`close_due`].
//!
//! [`recount`] computes the same statistics straight from a list of raw facts,
//! without the incremental state. It is the reference the rollup is tested
//! against, and a way to rebuild a day from the event log.
//!
//! This module does no I/O.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Milliseconds in one UTC day (Unix time has no leap seconds).
pub const MS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

/// How long after midnight UTC the previous day is closed.
pub const CLOSE_AFTER_MS: i64 = 5 * 60 * 1000;

/// The longest gap between a visitor's consecutive actions within one session.
pub const SESSION_GAP_MS: i64 = 30 * 60 * 1000;

/// The percentile reported as `checkout_p50_ms` (the median).
pub const P50: f64 = 50.0;

/// The percentile reported as `checkout_p95_ms`.
pub const P95: f64 = 95.0;

/// Length of a "YYYY-MM-DD" date.
const DATE_LEN: usize = 10;
/// Byte positions of the two dashes in "YYYY-MM-DD".
const FIRST_DASH: usize = 4;
const SECOND_DASH: usize = 7;

/// The proleptic Gregorian calendar repeats every 400 years ("an era").
const YEARS_PER_ERA: i64 = 400;
/// Days in one 400-year era.
const DAYS_PER_ERA: i64 = 146_097;
/// Days in a common year.
const DAYS_PER_YEAR: i64 = 365;
/// Days from 0000-03-01 (start of the shifted calendar) to 1970-01-01.
const EPOCH_SHIFT_DAYS: i64 = 719_468;
/// Months from March, where the shifted calendar year starts.
const MONTHS_FROM_MARCH: i64 = 10;

/// A UTC calendar day, counted in days since 1970-01-01 (which is `Day(0)`).
///
/// The default is 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Day(pub i32);

impl Day {
    /// The day containing the Unix timestamp `ts_ms` (milliseconds, may be
    /// negative). Timestamps beyond the range of `Day` clamp to its ends.
    pub fn of(ts_ms: i64) -> Day {
        let days = ts_ms.div_euclid(MS_PER_DAY);
        match i32::try_from(days) {
            Ok(d) => Day(d),
            Err(_) if days < 0 => Day(i32::MIN),
            Err(_) => Day(i32::MAX),
        }
    }

    /// The Unix timestamp (milliseconds) of this day's midnight UTC.
    pub fn start_ms(self) -> i64 {
        i64::from(self.0) * MS_PER_DAY
    }

    /// The following day (saturates at the last representable day).
    pub fn next(self) -> Day {
        Day(self.0.saturating_add(1))
    }
}

/// Formats as "YYYY-MM-DD". Years outside 0000..=9999 get a sign or more
/// digits and do not parse back.
impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(i64::from(self.0));
        if year < 0 {
            write!(f, "-{:04}-{month:02}-{day:02}", -year)
        } else {
            write!(f, "{year:04}-{month:02}-{day:02}")
        }
    }
}

/// A string that is not a valid "YYYY-MM-DD" date.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad date {input:?}: expected a real calendar date as YYYY-MM-DD")]
pub struct BadDate {
    /// The rejected input.
    pub input: String,
}

/// Parses exactly "YYYY-MM-DD": four-digit year, two-digit month and day,
/// a date that exists, and nothing else.
impl FromStr for Day {
    type Err = BadDate;

    fn from_str(s: &str) -> Result<Day, BadDate> {
        let bad = || BadDate {
            input: s.to_string(),
        };
        let bytes = s.as_bytes();
        if bytes.len() != DATE_LEN || bytes[FIRST_DASH] != b'-' || bytes[SECOND_DASH] != b'-' {
            return Err(bad());
        }
        let year = parse_digits(&bytes[..FIRST_DASH]).ok_or_else(bad)?;
        let month = parse_digits(&bytes[FIRST_DASH + 1..SECOND_DASH]).ok_or_else(bad)?;
        let day = parse_digits(&bytes[SECOND_DASH + 1..]).ok_or_else(bad)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad());
        }
        let days = days_from_civil(year, month, day);
        i32::try_from(days).map(Day).map_err(|_| bad())
    }
}

/// Reads a run of ASCII digits as a number; `None` if any byte is not a digit.
fn parse_digits(bytes: &[u8]) -> Option<i64> {
    let mut value: i64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(value)
}

/// Whether `year` is a Gregorian leap year.
fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1..=12) of `year`.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of the civil date `year-month-day`.
///
/// Howard Hinnant's algorithm: shift the year to start on March 1 so the leap
/// day is the last day of the year, then count whole 400-year eras, years in
/// the era (with their leap days), and days into the shifted year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(YEARS_PER_ERA);
    let year_of_era = shifted_year - era * YEARS_PER_ERA; // [0, 399]
    let month_from_march = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    // (153 * m + 2) / 5 is the number of days before shifted month m.
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1; // [0, 365]
    let day_of_era =
        year_of_era * DAYS_PER_YEAR + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT_DAYS
}

/// The civil date `(year, month, day)` of a count of days since 1970-01-01.
///
/// The inverse of [`days_from_civil`], also after Howard Hinnant.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + EPOCH_SHIFT_DAYS;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted - era * DAYS_PER_ERA; // [0, 146096]
    // Remove the leap days before this day of the era (one per 4 years, none
    // per 100, one per 400), leaving a count of 365-day years.
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524
        - day_of_era / (DAYS_PER_ERA - 1))
        / DAYS_PER_YEAR; // [0, 399]
    let day_of_year =
        day_of_era - (DAYS_PER_YEAR * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // [1, 31]
    let month = if month_from_march < MONTHS_FROM_MARCH {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * YEARS_PER_ERA + i64::from(month <= 2);
    (year, month, day)
}

/// Whether `day` should be closed at `now_ms`: from 00:05 UTC the next day on.
pub fn close_due(day: Day, now_ms: i64) -> bool {
    now_ms >= day.next().start_ms() + CLOSE_AFTER_MS
}

/// Something a visitor did in the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Looked at a page or product.
    View,
    /// Ran a search.
    Search,
    /// Put an item in the cart.
    AddToCart,
    /// Began checkout.
    CheckoutStarted,
}

/// One thing that happened, with a unique event `id` and a time `ts_ms`
/// (Unix milliseconds). Serialized with a `"kind"` field naming the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// A visitor did something.
    Action {
        /// Event id.
        id: String,
        /// When, in Unix milliseconds.
        ts_ms: i64,
        /// Who.
        visitor_id: String,
        /// What.
        action: Action,
    },
    /// An order was placed.
    OrderPlaced {
        /// Event id.
        id: String,
        /// When, in Unix milliseconds.
        ts_ms: i64,
        /// The order.
        order_id: String,
    },
    /// An order was completed.
    OrderCompleted {
        /// Event id.
        id: String,
        /// When, in Unix milliseconds.
        ts_ms: i64,
        /// The order.
        order_id: String,
        /// Milliseconds from placed to completed, when known.
        checkout_ms: Option<u64>,
    },
    /// An order was cancelled.
    OrderCancelled {
        /// Event id.
        id: String,
        /// When, in Unix milliseconds.
        ts_ms: i64,
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// Money was captured.
    Captured {
        /// Event id.
        id: String,
        /// When, in Unix milliseconds.
        ts_ms: i64,
        /// Amount in the currency's minor units (e.g. cents).
        amount_minor: i64,
        /// Currency code, e.g. "EUR".
        currency: String,
        /// The order paid for (empty in facts stored before it was kept).
        #[serde(default)]
        order_id: String,
    },
    /// Money was refunded.
    Refunded {
        /// Event id.
        id: String,
        /// When, in Unix milliseconds.
        ts_ms: i64,
        /// This refund's amount in the currency's minor units (e.g. cents).
        amount_minor: i64,
        /// Currency code, e.g. "EUR".
        currency: String,
        /// The order paid for (empty in facts stored before it was kept).
        #[serde(default)]
        order_id: String,
    },
}

impl Fact {
    /// The fact's unique event id.
    pub fn id(&self) -> &str {
        match self {
            Fact::Action { id, .. }
            | Fact::OrderPlaced { id, .. }
            | Fact::OrderCompleted { id, .. }
            | Fact::OrderCancelled { id, .. }
            | Fact::Captured { id, .. }
            | Fact::Refunded { id, .. } => id,
        }
    }

    /// When the fact happened, in Unix milliseconds.
    pub fn ts_ms(&self) -> i64 {
        match self {
            Fact::Action { ts_ms, .. }
            | Fact::OrderPlaced { ts_ms, .. }
            | Fact::OrderCompleted { ts_ms, .. }
            | Fact::OrderCancelled { ts_ms, .. }
            | Fact::Captured { ts_ms, .. }
            | Fact::Refunded { ts_ms, .. } => *ts_ms,
        }
    }

    /// The UTC day the fact belongs to.
    pub fn day(&self) -> Day {
        Day::of(self.ts_ms())
    }
}

/// The published statistics of one tenant's day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayStats {
    /// The day, as "YYYY-MM-DD".
    pub date: String,
    /// Distinct visitors with at least one action.
    pub visitors: u64,
    /// Sessions (see [`SESSION_GAP_MS`]), summed over visitors.
    pub sessions: u64,
    /// `View` actions.
    pub views: u64,
    /// `Search` actions.
    pub searches: u64,
    /// `AddToCart` actions.
    pub add_to_carts: u64,
    /// `CheckoutStarted` actions.
    pub checkouts_started: u64,
    /// Orders placed.
    pub orders_placed: u64,
    /// Orders completed.
    pub orders_completed: u64,
    /// Orders cancelled.
    pub orders_cancelled: u64,
    /// Captured minor units per currency (only currencies seen).
    pub revenue: BTreeMap<String, i64>,
    /// Refunded minor units per currency (only currencies seen).
    pub refunds: BTreeMap<String, i64>,
    /// `orders_completed / visitors` as a ratio (not a percentage); 0.0 with
    /// no visitors. Orders are not tied to visitors, so it can exceed 1.
    pub conversion: f64,
    /// Median checkout time over completed orders that report one.
    pub checkout_p50_ms: Option<u64>,
    /// 95th-percentile checkout time over completed orders that report one.
    pub checkout_p95_ms: Option<u64>,
}

impl DayStats {
    /// The statistics of a day with no facts.
    pub fn empty(day: Day) -> DayStats {
        DayStats {
            date: day.to_string(),
            visitors: 0,
            sessions: 0,
            views: 0,
            searches: 0,
            add_to_carts: 0,
            checkouts_started: 0,
            orders_placed: 0,
            orders_completed: 0,
            orders_cancelled: 0,
            revenue: BTreeMap::new(),
            refunds: BTreeMap::new(),
            conversion: 0.0,
            checkout_p50_ms: None,
            checkout_p95_ms: None,
        }
    }
}

/// Nearest-rank percentile `p` (0..=100) of an ascending slice: the value at
/// rank `ceil(p / 100 * n)`, at least 1 and at most `n`. `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // Multiply before dividing so whole-number percentiles stay exact.
    let rank = (p * n as f64 / 100.0).ceil() as usize; // NaN and negatives give 0
    let rank = rank.clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// What [`DayRollup::apply`] did with a fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The fact was new and is now counted.
    Counted,
    /// A fact with this id was already applied; nothing changed.
    Duplicate,
    /// The fact belongs to another day; nothing changed.
    OtherDay,
}

/// The incremental state of one (tenant, day).
#[derive(Debug, Clone, Default)]
pub struct DayRollup {
    day: Day,
    applied_ids: HashSet<String>,
    /// Distinct action instants per visitor; action counts are kept apart.
    visitor_instants: BTreeMap<String, BTreeSet<i64>>,
    views: u64,
    searches: u64,
    add_to_carts: u64,
    checkouts_started: u64,
    orders_placed: u64,
    orders_completed: u64,
    orders_cancelled: u64,
    revenue: BTreeMap<String, i64>,
    refunds: BTreeMap<String, i64>,
    checkout_samples: Vec<u64>,
}

impl DayRollup {
    /// An empty rollup for `day`.
    pub fn new(day: Day) -> DayRollup {
        DayRollup {
            day,
            ..DayRollup::default()
        }
    }

    /// The day this rollup counts.
    pub fn day(&self) -> Day {
        self.day
    }

    /// Counts `fact` unless it is of another day or its id was already applied.
    pub fn apply(&mut self, fact: &Fact) -> Applied {
        if fact.day() != self.day {
            return Applied::OtherDay;
        }
        if self.applied_ids.contains(fact.id()) {
            return Applied::Duplicate;
        }
        self.applied_ids.insert(fact.id().to_string());
        match fact {
            Fact::Action {
                ts_ms,
                visitor_id,
                action,
                ..
            } => {
                self.visitor_instants
                    .entry(visitor_id.clone())
                    .or_default()
                    .insert(*ts_ms);
                match action {
                    Action::View => self.views += 1,
                    Action::Search => self.searches += 1,
                    Action::AddToCart => self.add_to_carts += 1,
                    Action::CheckoutStarted => self.checkouts_started += 1,
                }
            }
            Fact::OrderPlaced { .. } => self.orders_placed += 1,
            Fact::OrderCompleted { checkout_ms, .. } => {
                self.orders_completed += 1;
                if let Some(ms) = checkout_ms {
                    self.checkout_samples.push(*ms);
                }
            }
            Fact::OrderCancelled { .. } => self.orders_cancelled += 1,
            Fact::Captured {
                amount_minor,
                currency,
                ..
            } => add_money(&mut self.revenue, currency, *amount_minor),
            Fact::Refunded {
                amount_minor,
                currency,
                ..
            } => add_money(&mut self.refunds, currency, *amount_minor),
        }
        Applied::Counted
    }

    /// The statistics of everything applied so far.
    pub fn stats(&self) -> DayStats {
        let visitors = self.visitor_instants.len() as u64;
        let sessions = self.visitor_instants.values().map(count_sessions).sum();
        let mut samples = self.checkout_samples.clone();
        samples.sort_unstable();
        let conversion = if visitors == 0 {
            0.0
        } else {
            self.orders_completed as f64 / visitors as f64
        };
        DayStats {
            date: self.day.to_string(),
            visitors,
            sessions,
            views: self.views,
            searches: self.searches,
            add_to_carts: self.add_to_carts,
            checkouts_started: self.checkouts_started,
            orders_placed: self.orders_placed,
            orders_completed: self.orders_completed,
            orders_cancelled: self.orders_cancelled,
            revenue: self.revenue.clone(),
            refunds: self.refunds.clone(),
            conversion,
            checkout_p50_ms: percentile(&samples, P50),
            checkout_p95_ms: percentile(&samples, P95),
        }
    }

    /// How many facts have been counted.
    pub fn len(&self) -> usize {
        self.applied_ids.len()
    }

    /// Whether no fact has been counted yet.
    pub fn is_empty(&self) -> bool {
        self.applied_ids.is_empty()
    }
}

/// Adds `amount` to `currency`'s total, saturating at the `i64` limits.
fn add_money(totals: &mut BTreeMap<String, i64>, currency: &str, amount: i64) {
    match totals.get_mut(currency) {
        Some(total) => *total = total.saturating_add(amount),
        None => {
            totals.insert(currency.to_string(), amount);
        }
    }
}

/// Sessions in one visitor's ascending action instants.
fn count_sessions(instants: &BTreeSet<i64>) -> u64 {
    let mut sessions = 0;
    let mut previous: Option<i64> = None;
    for &instant in instants {
        match previous {
            Some(prev) if instant - prev <= SESSION_GAP_MS => {}
            _ => sessions += 1,
        }
        previous = Some(instant);
    }
    sessions
}

/// The statistics of `day` computed directly from raw `facts`, without
/// [`DayRollup`]: keep the first fact of each id, keep those of `day`, count.
///
/// An id names one event, so every copy of it has the same time and day;
/// deduplicating before or after the day filter then gives the same result.
pub fn recount(day: Day, facts: &[Fact]) -> DayStats {
    let mut seen_ids: HashSet<&str> = HashSet::new();
    let firsts: Vec<&Fact> = facts.iter().filter(|f| seen_ids.insert(f.id())).collect();
    let kept: Vec<&Fact> = firsts.into_iter().filter(|f| f.day() == day).collect();

    let count = |wanted: fn(&Fact) -> bool| kept.iter().filter(|f| wanted(f)).count() as u64;

    let mut times_by_visitor: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for fact in &kept {
        if let Fact::Action {
            ts_ms, visitor_id, ..
        } = fact
        {
            times_by_visitor
                .entry(visitor_id.as_str())
                .or_default()
                .push(*ts_ms);
        }
    }
    let visitors = times_by_visitor.len() as u64;
    let sessions = times_by_visitor
        .values_mut()
        .map(|times| {
            times.sort_unstable();
            let long_gaps = times
                .windows(2)
                .filter(|pair| pair[1] - pair[0] > SESSION_GAP_MS)
                .count() as u64;
            1 + long_gaps
        })
        .sum();

    let mut revenue: BTreeMap<String, i64> = BTreeMap::new();
    let mut refunds: BTreeMap<String, i64> = BTreeMap::new();
    for fact in &kept {
        let (totals, amount, currency) = match fact {
            Fact::Captured {
                amount_minor,
                currency,
                ..
            } => (&mut revenue, *amount_minor, currency),
            Fact::Refunded {
                amount_minor,
                currency,
                ..
            } => (&mut refunds, *amount_minor, currency),
            _ => continue,
        };
        let total = totals.entry(currency.clone()).or_insert(0);
        *total = total.saturating_add(amount);
    }

    let mut samples: Vec<u64> = kept
        .iter()
        .filter_map(|f| match f {
            Fact::OrderCompleted { checkout_ms, .. } => *checkout_ms,
            _ => None,
        })
        .collect();
    samples.sort_unstable();

    let orders_completed = count(|f| matches!(f, Fact::OrderCompleted { .. }));
    let conversion = if visitors == 0 {
        0.0
    } else {
        orders_completed as f64 / visitors as f64
    };

    DayStats {
        date: day.to_string(),
        visitors,
        sessions,
        views: count(|f| {
            matches!(
                f,
                Fact::Action {
                    action: Action::View,
                    ..
                }
            )
        }),
        searches: count(|f| {
            matches!(
                f,
                Fact::Action {
                    action: Action::Search,
                    ..
                }
            )
        }),
        add_to_carts: count(|f| {
            matches!(
                f,
                Fact::Action {
                    action: Action::AddToCart,
                    ..
                }
            )
        }),
        checkouts_started: count(|f| {
            matches!(
                f,
                Fact::Action {
                    action: Action::CheckoutStarted,
                    ..
                }
            )
        }),
        orders_placed: count(|f| matches!(f, Fact::OrderPlaced { .. })),
        orders_completed,
        orders_cancelled: count(|f| matches!(f, Fact::OrderCancelled { .. })),
        revenue,
        refunds,
        conversion,
        checkout_p50_ms: percentile(&samples, P50),
        checkout_p95_ms: percentile(&samples, P95),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const MINUTE_MS: i64 = 60 * 1000;
    const SECOND_MS: i64 = 1000;
    const CASES: u32 = 512;
    const VISITORS: [&str; 5] = ["v0", "v1", "v2", "v3", "v4"];
    const CURRENCIES: [&str; 2] = ["EUR", "USD"];
    const ORDERS: [&str; 4] = ["o0", "o1", "o2", "o3"];
    const REASONS: [&str; 2] = ["out_of_stock", "customer_request"];

    fn day(s: &str) -> Day {
        s.parse().expect("valid test date")
    }

    fn action(id: &str, ts_ms: i64, visitor: &str, action: Action) -> Fact {
        Fact::Action {
            id: id.to_string(),
            ts_ms,
            visitor_id: visitor.to_string(),
            action,
        }
    }

    fn captured(id: &str, ts_ms: i64, amount_minor: i64, currency: &str) -> Fact {
        Fact::Captured {
            id: id.to_string(),
            ts_ms,
            amount_minor,
            currency: currency.to_string(),
            order_id: String::new(),
        }
    }

    fn fold(d: Day, facts: &[Fact]) -> DayRollup {
        let mut rollup = DayRollup::new(d);
        for fact in facts {
            rollup.apply(fact);
        }
        rollup
    }

    // ---- Day ----

    #[test]
    fn epoch_is_day_zero() {
        assert_eq!(day("1970-01-01"), Day(0));
        assert_eq!(Day(0).to_string(), "1970-01-01");
        assert_eq!(Day(0).start_ms(), 0);
    }

    #[test]
    fn known_dates_round_trip() {
        for s in [
            "2000-02-29",
            "2026-12-04",
            "1600-03-01",
            "0000-01-01",
            "9999-12-31",
        ] {
            assert_eq!(day(s).to_string(), s);
        }
        assert_eq!(day("2000-03-01").0 - day("2000-02-28").0, 2);
        assert_eq!(day("2026-12-04").next(), day("2026-12-05"));
        assert_eq!(day("2026-12-31").next(), day("2027-01-01"));
    }

    #[test]
    fn day_of_floors_negative_timestamps() {
        assert_eq!(Day::of(-1).to_string(), "1969-12-31");
        assert_eq!(Day::of(-MS_PER_DAY), Day(-1));
        assert_eq!(Day::of(-MS_PER_DAY - 1), Day(-2));
        assert_eq!(Day::of(MS_PER_DAY - 1), Day(0));
        assert_eq!(Day::of(MS_PER_DAY), Day(1));
        assert_eq!(Day::of(i64::MAX), Day(i32::MAX));
        assert_eq!(Day::of(i64::MIN), Day(i32::MIN));
    }

    #[test]
    fn invalid_dates_are_rejected() {
        for s in [
            "2026-02-30",
            "2025-02-29",
            "1900-02-29",
            "2026-04-31",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-1-01",
            "2026-01-1",
            "26-01-01",
            "2026-01-01x",
            "2026-01-01 ",
            " 2026-01-01",
            "2026/01/01",
            "+026-01-01",
            "2026-+1-01",
            "２026-01-01",
            "",
        ] {
            let err = s.parse::<Day>().expect_err(s);
            assert_eq!(err.input, s);
            assert!(err.to_string().contains("YYYY-MM-DD"), "{err}");
        }
        assert!("2024-02-29".parse::<Day>().is_ok());
    }

    // ---- closing ----

    #[test]
    fn close_due_boundary() {
        let d = day("2026-03-14");
        let next_midnight = d.next().start_ms();
        let at_0004_59_999 = next_midnight + 4 * MINUTE_MS + 59 * SECOND_MS + 999;
        let at_0005 = next_midnight + 5 * MINUTE_MS;
        assert!(!close_due(d, at_0004_59_999));
        assert!(close_due(d, at_0005));
        assert!(!close_due(d, d.start_ms()));
    }

    // ---- percentile ----

    #[test]
    fn percentile_nearest_rank() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 95.0), Some(95));
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 100.0), Some(100));
        assert_eq!(percentile(&hundred, 0.0), Some(1));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 95.0), Some(4));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[10, 20, 30], 50.0), Some(20));
        assert_eq!(percentile(&[], 50.0), None);
    }

    // ---- rollup ----

    #[test]
    fn actions_ten_minutes_apart_are_one_session_each() {
        let d = day("2026-03-14");
        let t = d.start_ms() + 9 * 60 * MINUTE_MS;
        let facts = [
            action("a1", t, "alice", Action::View),
            action("a2", t + 10 * MINUTE_MS, "alice", Action::Search),
            action("b1", t, "bob", Action::View),
            action("b2", t + 10 * MINUTE_MS, "bob", Action::AddToCart),
        ];
        let stats = fold(d, &facts).stats();
        assert_eq!(stats.visitors, 2);
        assert_eq!(stats.sessions, 2);
        assert_eq!(stats.views, 2);
        assert_eq!(stats.searches, 1);
        assert_eq!(stats.add_to_carts, 1);
        assert_eq!(stats, recount(d, &facts));
    }

    #[test]
    fn session_gap_boundary() {
        let d = day("2026-03-14");
        let t = d.start_ms() + MINUTE_MS;
        let split = [
            action("a1", t, "alice", Action::View),
            action("a2", t + 31 * MINUTE_MS, "alice", Action::View),
        ];
        assert_eq!(fold(d, &split).stats().sessions, 2);
        assert_eq!(recount(d, &split).sessions, 2);

        let exactly_gap = [
            action("a1", t, "alice", Action::View),
            action("a2", t + SESSION_GAP_MS, "alice", Action::View),
        ];
        assert_eq!(fold(d, &exactly_gap).stats().sessions, 1);
        assert_eq!(recount(d, &exactly_gap).sessions, 1);

        let just_over = [
            action("a1", t, "alice", Action::View),
            action("a2", t + SESSION_GAP_MS + 1, "alice", Action::View),
        ];
        assert_eq!(fold(d, &just_over).stats().sessions, 2);
        assert_eq!(recount(d, &just_over).sessions, 2);
    }

    #[test]
    fn same_instant_from_two_events_counts_two_actions_one_session() {
        let d = day("2026-03-14");
        let t = d.start_ms();
        let facts = [
            action("a1", t, "alice", Action::View),
            action("a2", t, "alice", Action::View),
        ];
        let stats = fold(d, &facts).stats();
        assert_eq!(stats.views, 2);
        assert_eq!(stats.sessions, 1);
        assert_eq!(stats, recount(d, &facts));
    }

    #[test]
    fn other_day_is_not_counted() {
        let d = day("2026-03-14");
        let mut rollup = DayRollup::new(d);
        let yesterday = action("x", d.start_ms() - 1, "alice", Action::View);
        let tomorrow = action("y", d.next().start_ms(), "alice", Action::View);
        assert_eq!(rollup.apply(&yesterday), Applied::OtherDay);
        assert_eq!(rollup.apply(&tomorrow), Applied::OtherDay);
        assert_eq!(rollup.len(), 0);
        assert!(rollup.is_empty());
        assert_eq!(rollup.stats(), DayStats::empty(d));
    }

    #[test]
    fn duplicate_id_is_not_counted_twice() {
        let d = day("2026-03-14");
        let mut rollup = DayRollup::new(d);
        let fact = captured("c1", d.start_ms() + 5, 1_000, "EUR");
        assert_eq!(rollup.apply(&fact), Applied::Counted);
        assert_eq!(rollup.apply(&fact), Applied::Duplicate);
        assert_eq!(rollup.len(), 1);
        assert_eq!(rollup.stats().revenue.get("EUR"), Some(&1_000));
    }

    #[test]
    fn revenue_and_refunds_sum_per_currency() {
        let d = day("2026-03-14");
        let t = d.start_ms();
        let facts = [
            captured("c1", t, 1_000, "EUR"),
            captured("c2", t + 1, 250, "EUR"),
            captured("c3", t + 2, 700, "USD"),
            Fact::Refunded {
                id: "r1".to_string(),
                ts_ms: t + 3,
                amount_minor: 100,
                currency: "EUR".to_string(),
                order_id: String::new(),
            },
        ];
        let stats = fold(d, &facts).stats();
        let revenue: BTreeMap<String, i64> =
            [("EUR".to_string(), 1_250), ("USD".to_string(), 700)].into();
        let refunds: BTreeMap<String, i64> = [("EUR".to_string(), 100)].into();
        assert_eq!(stats.revenue, revenue);
        assert_eq!(stats.refunds, refunds);
        assert_eq!(stats, recount(d, &facts));
    }

    #[test]
    fn conversion_is_zero_without_visitors() {
        let d = day("2026-03-14");
        let facts = [Fact::OrderCompleted {
            id: "o1".to_string(),
            ts_ms: d.start_ms(),
            order_id: "order-1".to_string(),
            checkout_ms: Some(42),
        }];
        let stats = fold(d, &facts).stats();
        assert_eq!(stats.visitors, 0);
        assert_eq!(stats.orders_completed, 1);
        assert_eq!(stats.conversion, 0.0);
        assert_eq!(stats.checkout_p50_ms, Some(42));
        assert_eq!(stats, recount(d, &facts));
    }

    #[test]
    fn conversion_and_checkout_percentiles() {
        let d = day("2026-03-14");
        let t = d.start_ms();
        let completed = |id: &str, checkout_ms: Option<u64>| Fact::OrderCompleted {
            id: id.to_string(),
            ts_ms: t,
            order_id: format!("order-{id}"),
            checkout_ms,
        };
        let facts = [
            action("a1", t, "alice", Action::View),
            action("a2", t, "bob", Action::View),
            action("a3", t, "carol", Action::View),
            action("a4", t, "dave", Action::View),
            completed("o1", Some(400)),
            completed("o2", None),
            completed("o3", Some(100)),
            completed("o4", Some(300)),
            completed("o5", Some(200)),
        ];
        let stats = fold(d, &facts).stats();
        assert_eq!(stats.conversion, 5.0 / 4.0);
        assert_eq!(stats.checkout_p50_ms, Some(200));
        assert_eq!(stats.checkout_p95_ms, Some(400));
        assert_eq!(stats, recount(d, &facts));
    }

    #[test]
    fn fact_json_shape() {
        let fact = Fact::OrderCompleted {
            id: "e1".to_string(),
            ts_ms: 5,
            order_id: "o1".to_string(),
            checkout_ms: None,
        };
        let json = serde_json::to_value(&fact).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "order_completed",
                "id": "e1",
                "ts_ms": 5,
                "order_id": "o1",
                "checkout_ms": null
            })
        );
        let parsed: Fact = serde_json::from_str(
            r#"{"kind":"action","id":"e2","ts_ms":-3,"visitor_id":"v","action":"add_to_cart"}"#,
        )
        .expect("parses");
        assert_eq!(parsed, action("e2", -3, "v", Action::AddToCart));
        let stats = DayStats::empty(Day(0));
        let back: DayStats =
            serde_json::from_str(&serde_json::to_string(&stats).expect("serializes"))
                .expect("parses");
        assert_eq!(back, stats);
    }

    // ---- property tests ----

    fn arb_day() -> impl Strategy<Value = Day> {
        (-40_000i32..40_000).prop_map(Day)
    }

    /// Mostly inside `d`, clustered so session gaps matter, sometimes exactly
    /// on multiples of the gap or the day's edges, sometimes a neighbour day.
    fn arb_ts(d: Day) -> impl Strategy<Value = i64> {
        let start = d.start_ms();
        prop_oneof![
            4 => (0..MS_PER_DAY).prop_map(move |o| start + o),
            6 => (0..3 * SESSION_GAP_MS).prop_map(move |o| start + o),
            3 => (0i64..8, 0i64..2).prop_map(move |(k, e)| start + k * SESSION_GAP_MS + e),
            1 => Just(start),
            1 => Just(start + MS_PER_DAY - 1),
            1 => (1..=MS_PER_DAY).prop_map(move |o| start - o),
            1 => (0..MS_PER_DAY).prop_map(move |o| start + MS_PER_DAY + o),
        ]
    }

    fn arb_action() -> impl Strategy<Value = Action> {
        prop_oneof![
            Just(Action::View),
            Just(Action::Search),
            Just(Action::AddToCart),
            Just(Action::CheckoutStarted),
        ]
    }

    fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::sample::select(pool).prop_map(str::to_string)
    }

    /// A fact with an empty id; callers assign ids.
    fn arb_fact(d: Day) -> impl Strategy<Value = Fact> {
        let id = String::new;
        prop_oneof![
            4 => (arb_ts(d), pick(&VISITORS), arb_action()).prop_map(
                move |(ts_ms, visitor_id, action)| Fact::Action { id: id(), ts_ms, visitor_id, action }
            ),
            1 => (arb_ts(d), pick(&ORDERS)).prop_map(
                move |(ts_ms, order_id)| Fact::OrderPlaced { id: id(), ts_ms, order_id }
            ),
            1 => (arb_ts(d), pick(&ORDERS), prop::option::of(0u64..600_000)).prop_map(
                move |(ts_ms, order_id, checkout_ms)| Fact::OrderCompleted { id: id(), ts_ms, order_id, checkout_ms }
            ),
            1 => (arb_ts(d), pick(&ORDERS), pick(&REASONS)).prop_map(
                move |(ts_ms, order_id, reason)| Fact::OrderCancelled { id: id(), ts_ms, order_id, reason }
            ),
            1 => (arb_ts(d), 0i64..100_000, pick(&CURRENCIES)).prop_map(
                move |(ts_ms, amount_minor, currency)| Fact::Captured { id: id(), ts_ms, amount_minor, currency, order_id: String::new() }
            ),
            1 => (arb_ts(d), 0i64..100_000, pick(&CURRENCIES)).prop_map(
                move |(ts_ms, amount_minor, currency)| Fact::Refunded { id: id(), ts_ms, amount_minor, currency, order_id: String::new() }
            ),
        ]
    }

    fn with_id(mut fact: Fact, new_id: String) -> Fact {
        match &mut fact {
            Fact::Action { id, .. }
            | Fact::OrderPlaced { id, .. }
            | Fact::OrderCompleted { id, .. }
            | Fact::OrderCancelled { id, .. }
            | Fact::Captured { id, .. }
            | Fact::Refunded { id, .. } => *id = new_id,
        }
        fact
    }

    /// A day and 0..60 facts drawn (with repeats) from a set of distinct
    /// facts, so every copy of an id carries identical content.
    fn arb_day_and_facts() -> impl Strategy<Value = (Day, Vec<Fact>)> {
        arb_day()
            .prop_flat_map(|d| {
                (
                    Just(d),
                    prop::collection::vec(arb_fact(d), 1..30),
                    prop::collection::vec(any::<Index>(), 0..60),
                )
            })
            .prop_map(|(d, bodies, picks)| {
                let distinct: Vec<Fact> = bodies
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| with_id(f, format!("e{i}")))
                    .collect();
                let sequence = picks.iter().map(|ix| ix.get(&distinct).clone()).collect();
                (d, sequence)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]

        #[test]
        fn day_display_parse_round_trips(n in -100_000i32..200_000) {
            let d = Day(n);
            prop_assert_eq!(d.to_string().parse::<Day>(), Ok(d));
            prop_assert_eq!(Day::of(d.start_ms()), d);
            prop_assert_eq!(Day::of(d.next().start_ms() - 1), d);
            prop_assert_eq!(d.next().0, n + 1);
        }

        #[test]
        fn rollup_matches_recount((d, facts) in arb_day_and_facts()) {
            let rollup = fold(d, &facts);
            let expected = recount(d, &facts);
            prop_assert_eq!(rollup.stats(), expected);
            let distinct_in_day: HashSet<&str> =
                facts.iter().filter(|f| f.day() == d).map(Fact::id).collect();
            prop_assert_eq!(rollup.len(), distinct_in_day.len());
        }

        #[test]
        fn order_does_not_matter(
            (d, facts, shuffled) in arb_day_and_facts().prop_flat_map(|(d, facts)| {
                (Just(d), Just(facts.clone()), Just(facts).prop_shuffle())
            })
        ) {
            let original = fold(d, &facts).stats();
            prop_assert_eq!(fold(d, &shuffled).stats(), original.clone());
            prop_assert_eq!(recount(d, &shuffled), original);
        }

        #[test]
        fn replay_changes_nothing((d, facts) in arb_day_and_facts()) {
            let mut rollup = fold(d, &facts);
            let before = rollup.stats();
            let len = rollup.len();
            for fact in &facts {
                prop_assert_ne!(rollup.apply(fact), Applied::Counted);
            }
            prop_assert_eq!(rollup.stats(), before);
            prop_assert_eq!(rollup.len(), len);
        }

        /// Ids from a small pool regardless of content, all inside the day:
        /// both sides must keep the first fact of each id.
        #[test]
        fn first_occurrence_wins(
            (d, facts) in arb_day().prop_flat_map(|d| {
                (Just(d), prop::collection::vec((arb_fact(d), 0usize..8), 0..60))
            })
        ) {
            let facts: Vec<Fact> = facts
                .into_iter()
                .map(|(f, i)| with_id(f, format!("e{i}")))
                .filter(|f| f.day() == d)
                .collect();
            prop_assert_eq!(fold(d, &facts).stats(), recount(d, &facts));
        }
    }
}
