//! Features and scoring: the feature job's state and the pure function that
//! ranks items for a user.
//!
//! **Features.** Per item: views, likes, comments and purchases, counted per
//! hour bucket; when it was created and when it last got a picture
//! (freshness). Per (user, item): the user's own views and like. Per user:
//! whom they follow (their likes become social signals) and what they bought
//! (left out). A like is a last-writer-wins register per (user, item),
//! ordered by (time, event id), so likes and unlikes give the same state in
//! any arrival order.
//!
//! **Decay.** Every signal counts `weight × 2^(-age / HALF_LIFE)`: one
//! half-life for all, so the ratio of two scores never changes with time
//! alone. A score is kept as `log2` of its value at the fixed
//! [`EPOCH_MS`] (`log2 Σ w·2^((t - epoch) / half-life)`, summed in a fixed
//! order with the max trick): it only moves when a new signal arrives, and
//! the score *now* is `2^(log - (now - epoch) / half-life)`.
//!
//! **Determinism.** Counts are integers in hour buckets and registers are
//! ordered, so processing the same events in any order (a replay, a
//! backfill) gives the same state, the same scores to the bit and the same
//! slices.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every signal's half-life.
pub const HALF_LIFE_MS: i64 = 24 * 3_600_000;
/// Signals are counted per hour; an hour's signals all count from its start.
pub const BUCKET_MS: i64 = 3_600_000;
/// The reference time of stored scores: 2026-01-01T00:00:00Z.
pub const EPOCH_MS: i64 = 1_767_225_600_000;
/// Longest slice kept per user.
pub const SLICE_LEN: usize = 200;
/// Items ranked by popularity and freshness alone that every slice considers.
pub const GLOBAL_CANDIDATES: usize = 400;

/// The weight of each feature (named so the debug panel can show them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weights {
    pub views: f64,
    pub likes: f64,
    pub comments: f64,
    pub purchases: f64,
    pub freshness: f64,
    pub affinity_views: f64,
    pub affinity_like: f64,
    pub social_likes: f64,
}

/// A view is cheap; a like says more; a comment more; a purchase most.
pub const WEIGHT_VIEW: f64 = 1.0;
pub const WEIGHT_LIKE: f64 = 4.0;
pub const WEIGHT_COMMENT: f64 = 6.0;
pub const WEIGHT_PURCHASE: f64 = 10.0;
/// A new product, or a new picture of one, is worth a few likes for a day.
pub const WEIGHT_FRESHNESS: f64 = 12.0;
/// What the user looked at themselves...
pub const WEIGHT_AFFINITY_VIEW: f64 = 2.0;
/// ...or liked themselves...
pub const WEIGHT_AFFINITY_LIKE: f64 = 8.0;
/// ...and what the people they follow like.
pub const WEIGHT_SOCIAL_LIKE: f64 = 20.0;

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            views: WEIGHT_VIEW,
            likes: WEIGHT_LIKE,
            comments: WEIGHT_COMMENT,
            purchases: WEIGHT_PURCHASE,
            freshness: WEIGHT_FRESHNESS,
            affinity_views: WEIGHT_AFFINITY_VIEW,
            affinity_like: WEIGHT_AFFINITY_LIKE,
            social_likes: WEIGHT_SOCIAL_LIKE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    Views,
    Likes,
    Comments,
    Purchases,
    Freshness,
    AffinityViews,
    AffinityLike,
    SocialLikes,
}

impl Feature {
    pub const ALL: [Feature; 8] = [
        Feature::Views,
        Feature::Likes,
        Feature::Comments,
        Feature::Purchases,
        Feature::Freshness,
        Feature::AffinityViews,
        Feature::AffinityLike,
        Feature::SocialLikes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Views => "popularity.views",
            Feature::Likes => "popularity.likes",
            Feature::Comments => "popularity.comments",
            Feature::Purchases => "popularity.purchases",
            Feature::Freshness => "freshness",
            Feature::AffinityViews => "affinity.views",
            Feature::AffinityLike => "affinity.like",
            Feature::SocialLikes => "social.likes",
        }
    }

    pub fn weight(self, w: &Weights) -> f64 {
        match self {
            Feature::Views => w.views,
            Feature::Likes => w.likes,
            Feature::Comments => w.comments,
            Feature::Purchases => w.purchases,
            Feature::Freshness => w.freshness,
            Feature::AffinityViews => w.affinity_views,
            Feature::AffinityLike => w.affinity_like,
            Feature::SocialLikes => w.social_likes,
        }
    }
}

/// The start of `ts_ms`'s hour.
pub fn bucket(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// What one signal at `at_ms` is worth at `now_ms`, per unit of weight.
pub fn decay(at_ms: i64, now_ms: i64) -> f64 {
    (-((now_ms - at_ms) as f64) / HALF_LIFE_MS as f64).exp2()
}

/// Counts per hour bucket.
pub type Buckets = BTreeMap<i64, i64>;

fn add(b: &mut Buckets, ts_ms: i64, n: i64) {
    let e = b.entry(bucket(ts_ms)).or_insert(0);
    *e += n;
    if *e == 0 {
        b.remove(&bucket(ts_ms));
    }
}

/// A like or unlike, last writer wins by (time, event id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LikeRegister {
    pub ts_ms: i64,
    pub event: Uuid,
    pub liked: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemState {
    pub views: Buckets,
    /// Current likes, by the hour of the like.
    pub likes: Buckets,
    pub comments: Buckets,
    pub purchases: Buckets,
    /// The earliest creation seen.
    pub created_ms: Option<i64>,
    /// The latest picture that became ready.
    pub pictured_ms: Option<i64>,
    /// Current likes in all.
    pub like_count: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserState {
    pub views: BTreeMap<String, Buckets>,
    pub likes: BTreeMap<String, LikeRegister>,
    pub follows: BTreeSet<String>,
    pub bought: BTreeSet<String>,
}

impl UserState {
    fn liked_at(&self, item: &str) -> Option<i64> {
        self.likes.get(item).filter(|r| r.liked).map(|r| r.ts_ms)
    }
}

/// One thing the feature job learned from an event (stored in the signal
/// log as JSON, tagged by `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Signal {
    /// `user` is `None` for an anonymous visitor.
    View {
        user: Option<String>,
        item: String,
        ts_ms: i64,
    },
    Comment {
        user: String,
        item: String,
        ts_ms: i64,
    },
    Like {
        user: String,
        item: String,
        liked: bool,
        ts_ms: i64,
        event: Uuid,
    },
    Follow {
        follower: String,
        followee: String,
    },
    Purchase {
        user: String,
        item: String,
        ts_ms: i64,
    },
    Created {
        item: String,
        ts_ms: i64,
    },
    Pictured {
        item: String,
        ts_ms: i64,
    },
    /// The product exists (a change of a product created before the job
    /// saw it): known, but nothing speaks for it yet.
    Known {
        item: String,
    },
}

impl Signal {
    /// The people the signal names (none for item-only signals and
    /// anonymous views).
    pub fn people(&self) -> Vec<&str> {
        match self {
            Signal::View { user, .. } => user.as_deref().into_iter().collect(),
            Signal::Comment { user, .. }
            | Signal::Like { user, .. }
            | Signal::Purchase { user, .. } => vec![user.as_str()],
            Signal::Follow { follower, followee } => vec![follower.as_str(), followee.as_str()],
            Signal::Created { .. } | Signal::Pictured { .. } | Signal::Known { .. } => vec![],
        }
    }
}

/// What a signal changed: whose slices are out of date, whether the
/// item-only ranking is, and an item's new like count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    pub users: Vec<String>,
    pub global: bool,
    pub like_count: Option<(String, i64)>,
}

/// Everything the feature job knows about one tenant.
#[derive(Debug, Clone, Default)]
pub struct TenantFeatures {
    pub items: BTreeMap<String, ItemState>,
    pub users: BTreeMap<String, UserState>,
    /// followee -> followers.
    pub followers: BTreeMap<String, BTreeSet<String>>,
    /// The item-only ranking (log scores, best first), and whether it is stale.
    global: Vec<(f64, String)>,
    global_stale: bool,
}

/// How many followers one like marks for a slice refresh at once; the rest
/// see it at their next refresh (the write fan-out limit).
pub const FANOUT_LIMIT: usize = 1_000;

/// A like as a person's export shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LikeState {
    pub liked: bool,
    pub ts_ms: i64,
    pub event: Uuid,
}

/// What the features hold about one person (a DSAR export and scan): their
/// own views, likes, follows and purchases, and who follows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PersonFeatures {
    /// Whether the user has an entry at all (a comment or being followed
    /// gives one, even an empty one).
    pub known: bool,
    /// Views per item, by hour bucket.
    pub views: BTreeMap<String, Buckets>,
    pub likes: BTreeMap<String, LikeState>,
    pub follows: BTreeSet<String>,
    pub followers: BTreeSet<String>,
    pub bought: BTreeSet<String>,
}

impl PersonFeatures {
    /// Entries about the person: the user entry itself and each view item,
    /// like, follow, follower and purchase.
    pub fn entries(&self) -> u64 {
        u64::from(self.known)
            + self.views.len() as u64
            + self.likes.len() as u64
            + self.follows.len() as u64
            + self.followers.len() as u64
            + self.bought.len() as u64
    }
}

impl TenantFeatures {
    pub fn knows_item(&self, item: &str) -> bool {
        self.items.contains_key(item)
    }

    /// What the features hold about `user`.
    pub fn person(&self, user: &str) -> PersonFeatures {
        let us = self.users.get(user);
        PersonFeatures {
            known: us.is_some(),
            views: us.map(|u| u.views.clone()).unwrap_or_default(),
            likes: us
                .map(|u| {
                    u.likes
                        .iter()
                        .map(|(i, r)| {
                            (
                                i.clone(),
                                LikeState {
                                    liked: r.liked,
                                    ts_ms: r.ts_ms,
                                    event: r.event,
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            follows: us.map(|u| u.follows.clone()).unwrap_or_default(),
            followers: self.followers.get(user).cloned().unwrap_or_default(),
            bought: us.map(|u| u.bought.clone()).unwrap_or_default(),
        }
    }

    /// Take `user` out of the fold (a DSAR erase): their views, likes,
    /// follows and purchases, and every follow of them, so no slice ranks
    /// by them any more. The item counts they added (views, likes,
    /// comments, purchases per hour) stay: they are about items, not
    /// people, and no longer name anyone. Returns what went and the users
    /// whose slices change (the people who followed them: their social
    /// likes lose this user's).
    pub fn forget(&mut self, user: &str) -> (PersonFeatures, Vec<String>) {
        let gone = self.person(user);
        self.users.remove(user);
        for followee in &gone.follows {
            if let Some(fs) = self.followers.get_mut(followee) {
                fs.remove(user);
                if fs.is_empty() {
                    self.followers.remove(followee);
                }
            }
        }
        self.followers.remove(user);
        for follower in &gone.followers {
            if let Some(us) = self.users.get_mut(follower) {
                us.follows.remove(user);
            }
        }
        let affected = gone.followers.iter().cloned().collect();
        (gone, affected)
    }

    /// Apply one signal.
    pub fn apply(&mut self, s: Signal) -> Touched {
        let mut t = Touched::default();
        match s {
            Signal::View { user, item, ts_ms } => {
                add(
                    &mut self.items.entry(item.clone()).or_default().views,
                    ts_ms,
                    1,
                );
                t.global = true;
                if let Some(u) = user {
                    let us = self.users.entry(u.clone()).or_default();
                    add(us.views.entry(item).or_default(), ts_ms, 1);
                    t.users.push(u);
                }
            }
            Signal::Comment { user, item, ts_ms } => {
                add(&mut self.items.entry(item).or_default().comments, ts_ms, 1);
                self.users.entry(user.clone()).or_default();
                t.global = true;
                t.users.push(user);
            }
            Signal::Purchase { user, item, ts_ms } => {
                add(
                    &mut self.items.entry(item.clone()).or_default().purchases,
                    ts_ms,
                    1,
                );
                self.users
                    .entry(user.clone())
                    .or_default()
                    .bought
                    .insert(item);
                t.global = true;
                t.users.push(user);
            }
            Signal::Created { item, ts_ms } => {
                let it = self.items.entry(item).or_default();
                it.created_ms = Some(it.created_ms.map_or(ts_ms, |c| c.min(ts_ms)));
                t.global = true;
            }
            Signal::Known { item } => {
                self.items.entry(item).or_default();
            }
            Signal::Pictured { item, ts_ms } => {
                let it = self.items.entry(item).or_default();
                it.pictured_ms = Some(it.pictured_ms.map_or(ts_ms, |c| c.max(ts_ms)));
                t.global = true;
            }
            Signal::Follow { follower, followee } => {
                self.users
                    .entry(follower.clone())
                    .or_default()
                    .follows
                    .insert(followee.clone());
                self.users.entry(followee.clone()).or_default();
                self.followers
                    .entry(followee)
                    .or_default()
                    .insert(follower.clone());
                t.users.push(follower);
            }
            Signal::Like {
                user,
                item,
                liked,
                ts_ms,
                event,
            } => {
                let new = LikeRegister {
                    ts_ms,
                    event,
                    liked,
                };
                let us = self.users.entry(user.clone()).or_default();
                let old = us.likes.get(&item).copied();
                if old.is_some_and(|o| o >= new) {
                    return t;
                }
                us.likes.insert(item.clone(), new);
                let it = self.items.entry(item.clone()).or_default();
                if let Some(o) = old.filter(|o| o.liked) {
                    add(&mut it.likes, o.ts_ms, -1);
                    it.like_count -= 1;
                }
                if liked {
                    add(&mut it.likes, ts_ms, 1);
                    it.like_count += 1;
                }
                t.global = true;
                t.like_count = Some((item, it.like_count));
                t.users.push(user.clone());
                if let Some(fs) = self.followers.get(&user) {
                    t.users.extend(fs.iter().take(FANOUT_LIMIT).cloned());
                }
            }
        }
        if t.global {
            self.global_stale = true;
        }
        t
    }

    /// Each feature's signals for `user` (if any) on `item`, as
    /// (feature, bucket or time, count), in a fixed order.
    fn terms(&self, user: Option<&str>, item: &str) -> Vec<(Feature, i64, i64)> {
        let mut out = vec![];
        if let Some(it) = self.items.get(item) {
            for (f, b) in [
                (Feature::Views, &it.views),
                (Feature::Likes, &it.likes),
                (Feature::Comments, &it.comments),
                (Feature::Purchases, &it.purchases),
            ] {
                out.extend(b.iter().map(|(t, n)| (f, *t, *n)));
            }
            for t in [it.created_ms, it.pictured_ms].into_iter().flatten() {
                out.push((Feature::Freshness, bucket(t), 1));
            }
        }
        if let Some(us) = user.and_then(|u| self.users.get(u)) {
            if let Some(b) = us.views.get(item) {
                out.extend(b.iter().map(|(t, n)| (Feature::AffinityViews, *t, *n)));
            }
            if let Some(t) = us.liked_at(item) {
                out.push((Feature::AffinityLike, bucket(t), 1));
            }
            for f in &us.follows {
                if let Some(t) = self.users.get(f).and_then(|fs| fs.liked_at(item)) {
                    out.push((Feature::SocialLikes, bucket(t), 1));
                }
            }
        }
        out
    }

    /// The stored (time-free) score of `item` for `user` (`None`: the
    /// item-only score), or `None` when nothing speaks for it.
    pub fn log_score(&self, user: Option<&str>, item: &str, w: &Weights) -> Option<f64> {
        log_sum(&self.terms(user, item), w)
    }

    /// Each feature's weighted value at `now_ms` (the debug panel); their
    /// sum is the score now.
    pub fn contributions(
        &self,
        user: Option<&str>,
        item: &str,
        w: &Weights,
        now_ms: i64,
    ) -> Vec<(Feature, f64)> {
        let mut sums: BTreeMap<Feature, f64> = BTreeMap::new();
        for (f, t, n) in self.terms(user, item) {
            *sums.entry(f).or_default() += f.weight(w) * n as f64 * decay(t, now_ms);
        }
        sums.into_iter().collect()
    }

    /// Whether a signal changed the item-only ranking since it was last
    /// computed.
    pub fn global_stale(&self) -> bool {
        self.global_stale
    }

    /// Recompute the item-only ranking if a signal changed it. It scores
    /// every item (tens of milliseconds for 50,000 in a release build), so
    /// the feed does it at most once a second on a thread of its own, not
    /// once per slice; slices and recommendations use the last ranking
    /// computed.
    pub fn refresh_global(&mut self, w: &Weights) {
        if self.global_stale {
            let mut ranked: Vec<(f64, String)> = self
                .items
                .keys()
                .filter_map(|i| self.log_score(None, i, w).map(|s| (s, i.clone())))
                .collect();
            ranked.sort_by(by_score);
            ranked.truncate(GLOBAL_CANDIDATES.max(SLICE_LEN));
            self.global = ranked;
            self.global_stale = false;
        }
    }

    /// Items ranked by popularity and freshness alone (best first), as last
    /// computed by [`TenantFeatures::refresh_global`].
    pub fn global(&self) -> &[(f64, String)] {
        &self.global
    }

    /// `user`'s slice: the best [`SLICE_LEN`] items among the popular and
    /// fresh ones and those the user or the people they follow touched,
    /// leaving out what the user bought. Best first; ties by item id
    /// (descending, as Redis orders equal scores in reverse).
    pub fn slice(&self, user: &str, w: &Weights) -> Vec<(f64, String)> {
        let mut candidates: BTreeSet<String> =
            self.global().iter().map(|(_, i)| i.clone()).collect();
        let empty = UserState::default();
        let us = self.users.get(user).unwrap_or(&empty);
        candidates.extend(us.views.keys().cloned());
        candidates.extend(us.likes.keys().cloned());
        for f in &us.follows {
            if let Some(fs) = self.users.get(f) {
                candidates.extend(
                    fs.likes
                        .iter()
                        .filter(|(_, r)| r.liked)
                        .map(|(i, _)| i.clone()),
                );
            }
        }
        let mut ranked: Vec<(f64, String)> = candidates
            .into_iter()
            .filter(|i| !us.bought.contains(i))
            .filter_map(|i| self.log_score(Some(user), &i, w).map(|s| (s, i)))
            .collect();
        ranked.sort_by(by_score);
        ranked.truncate(SLICE_LEN);
        ranked
    }

    /// Popular items (item-only score) that `customer` has not bought, and
    /// how many were left out for that reason.
    pub fn recommend(&self, customer: &str, limit: usize) -> (Vec<(f64, String)>, usize) {
        let bought = self
            .users
            .get(customer)
            .map(|u| u.bought.clone())
            .unwrap_or_default();
        let mut excluded = 0;
        let mut out = vec![];
        for (s, i) in self.global() {
            if bought.contains(i) {
                excluded += 1;
                continue;
            }
            if out.len() < limit {
                out.push((*s, i.clone()));
            }
        }
        (out, excluded)
    }
}

/// Best score first; ties by item id descending.
pub fn by_score(a: &(f64, String), b: &(f64, String)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1))
}

/// `log2 Σ n·w·2^((t - epoch) / half-life)` over `terms`, in their order.
fn log_sum(terms: &[(Feature, i64, i64)], w: &Weights) -> Option<f64> {
    let exps: Vec<f64> = terms
        .iter()
        .filter(|(f, _, n)| *n > 0 && f.weight(w) > 0.0)
        .map(|(f, t, n)| {
            (f.weight(w) * *n as f64).log2() + (t - EPOCH_MS) as f64 / HALF_LIFE_MS as f64
        })
        .collect();
    let max = exps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return None;
    }
    Some(max + exps.iter().map(|e| (e - max).exp2()).sum::<f64>().log2())
}

/// The value at `now_ms` of a stored score.
pub fn score_now(log_score: f64, now_ms: i64) -> f64 {
    (log_score - (now_ms - EPOCH_MS) as f64 / HALF_LIFE_MS as f64).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = EPOCH_MS + 300 * 24 * 3_600_000;
    const H: i64 = 3_600_000;

    fn like(user: &str, item: &str, liked: bool, ts_ms: i64, n: u128) -> Signal {
        Signal::Like {
            user: user.into(),
            item: item.into(),
            liked,
            ts_ms,
            event: Uuid::from_u128(n),
        }
    }

    fn view(user: &str, item: &str, ts_ms: i64) -> Signal {
        Signal::View {
            user: Some(user.into()),
            item: item.into(),
            ts_ms,
        }
    }

    #[test]
    fn likes_are_registers_in_any_order() {
        let events = [
            like("u", "a", true, T0, 1),
            like("u", "a", false, T0 + H, 2),
            like("u", "a", true, T0 + 2 * H, 3),
            like("v", "a", true, T0, 4),
        ];
        let mut fwd = TenantFeatures::default();
        for e in events.clone() {
            fwd.apply(e);
        }
        let mut rev = TenantFeatures::default();
        for e in events.into_iter().rev() {
            rev.apply(e);
        }
        assert_eq!(fwd.items["a"], rev.items["a"]);
        assert_eq!(fwd.items["a"].like_count, 2);
        let w = Weights::default();
        assert_eq!(
            fwd.log_score(Some("u"), "a", &w).unwrap().to_bits(),
            rev.log_score(Some("u"), "a", &w).unwrap().to_bits()
        );
        // A repeated like changes nothing.
        let before = fwd.items["a"].clone();
        assert_eq!(fwd.apply(like("v", "a", true, T0, 4)), Touched::default());
        assert_eq!(fwd.items["a"], before);
    }

    #[test]
    fn contributions_sum_to_the_score_now() {
        let mut f = TenantFeatures::default();
        f.apply(Signal::Created {
            item: "a".into(),
            ts_ms: T0,
        });
        f.apply(view("u", "a", T0 + H));
        f.apply(like("w", "a", true, T0 + 2 * H, 1));
        f.apply(Signal::Follow {
            follower: "u".into(),
            followee: "w".into(),
        });
        let w = Weights::default();
        let now = T0 + 30 * H;
        let sum: f64 = f
            .contributions(Some("u"), "a", &w, now)
            .iter()
            .map(|c| c.1)
            .sum();
        let stored = f.log_score(Some("u"), "a", &w).unwrap();
        assert!(
            (score_now(stored, now) - sum).abs() < 1e-9 * sum,
            "{sum} vs {stored}"
        );
        let names: Vec<_> = f
            .contributions(Some("u"), "a", &w, now)
            .iter()
            .map(|c| c.0.name())
            .collect();
        assert_eq!(
            names,
            [
                "popularity.views",
                "popularity.likes",
                "freshness",
                "affinity.views",
                "social.likes"
            ]
        );
    }

    #[test]
    fn a_followees_like_lifts_an_item_and_purchases_are_left_out() {
        let mut f = TenantFeatures::default();
        for (i, item) in ["a", "b", "c"].iter().enumerate() {
            f.apply(Signal::Created {
                item: item.to_string(),
                ts_ms: T0 + i as i64 * H,
            });
        }
        let w = Weights::default();
        f.refresh_global(&w);
        assert_eq!(
            f.slice("u", &w)[0].1,
            "c",
            "newest first when nothing else counts"
        );
        f.apply(Signal::Follow {
            follower: "u".into(),
            followee: "w".into(),
        });
        let t = f.apply(like("w", "a", true, T0 + 3 * H, 9));
        assert!(t.users.contains(&"u".to_string()), "followers are marked");
        assert_eq!(t.like_count, Some(("a".into(), 1)));
        f.refresh_global(&w);
        assert_eq!(f.slice("u", &w)[0].1, "a");
        f.apply(Signal::Purchase {
            user: "u".into(),
            item: "a".into(),
            ts_ms: T0 + 4 * H,
        });
        f.refresh_global(&w);
        assert!(f.slice("u", &w).iter().all(|(_, i)| i != "a"));
        let (recs, excluded) = f.recommend("u", 10);
        assert_eq!(excluded, 1);
        assert!(recs.iter().all(|(_, i)| i != "a"));
        assert_eq!(
            f.recommend("x", 10).0[0].1,
            "a",
            "bought once: the most popular"
        );
    }

    #[test]
    fn a_forgotten_user_ranks_nothing_and_item_counts_stay() {
        let mut f = TenantFeatures::default();
        for (i, item) in ["a", "b"].iter().enumerate() {
            f.apply(Signal::Created {
                item: item.to_string(),
                ts_ms: T0 + i as i64 * H,
            });
        }
        f.apply(Signal::Follow {
            follower: "u".into(),
            followee: "w".into(),
        });
        f.apply(Signal::Follow {
            follower: "w".into(),
            followee: "x".into(),
        });
        f.apply(like("w", "a", true, T0 + 3 * H, 1));
        f.apply(view("w", "b", T0 + H));
        f.apply(Signal::Purchase {
            user: "w".into(),
            item: "b".into(),
            ts_ms: T0 + 4 * H,
        });
        let w = Weights::default();
        f.refresh_global(&w);
        let social = |f: &TenantFeatures| {
            f.contributions(Some("u"), "a", &w, T0 + 5 * H)
                .iter()
                .any(|c| c.0 == Feature::SocialLikes)
        };
        assert!(social(&f));
        let p = f.person("w");
        // The entry, a view, a like, a follow, a follower, a purchase.
        assert_eq!(p.entries(), 6, "{p:?}");
        let (gone, affected) = f.forget("w");
        assert_eq!(gone, p);
        assert_eq!(affected, ["u"]);
        assert_eq!(f.person("w").entries(), 0);
        assert!(!social(&f), "a follower's slice no longer shows w's like");
        assert!(f.users["u"].follows.is_empty());
        assert!(!f.followers.contains_key("x"));
        assert_eq!(f.items["a"].like_count, 1, "item counts stay");
        assert_eq!(f.slice("w", &w), f.slice("a-stranger", &w));
        assert_eq!(f.forget("w").0.entries(), 0, "forgetting twice is a no-op");
    }

    proptest! {
        /// More engagement never lowers a score.
        #[test]
        fn monotone_in_engagement(
            base in proptest::collection::vec((0u8..4, 0i64..200), 0..30),
            extra in (0u8..4, 0i64..200),
        ) {
            let sig = |(k, h): (u8, i64), n: u128| match k {
                0 => view("u", "a", T0 + h * H),
                1 => Signal::Comment { user: "v".into(), item: "a".into(), ts_ms: T0 + h * H },
                2 => Signal::Purchase { user: "v".into(), item: "a".into(), ts_ms: T0 + h * H },
                _ => like(&format!("l{n}"), "a", true, T0 + h * H, n),
            };
            let mut f = TenantFeatures::default();
            f.apply(Signal::Created { item: "a".into(), ts_ms: T0 });
            for (n, b) in base.iter().enumerate() {
                f.apply(sig(*b, n as u128));
            }
            let w = Weights::default();
            let before = f.log_score(Some("u"), "a", &w).unwrap();
            f.apply(sig(extra, 10_000));
            let after = f.log_score(Some("u"), "a", &w).unwrap();
            prop_assert!(after >= before, "{after} < {before}");
        }

        /// Older signals are worth less now, and a score never grows by
        /// itself.
        #[test]
        fn decays_with_age(age_h in 0i64..2_000, later_h in 1i64..500) {
            let w = Weights::default();
            let mut old = TenantFeatures::default();
            old.apply(view("u", "a", T0));
            let mut young = TenantFeatures::default();
            young.apply(view("u", "a", T0 + age_h * H + H));
            let now = T0 + 3_000 * H;
            let s_old = score_now(old.log_score(None, "a", &w).unwrap(), now);
            let s_young = score_now(young.log_score(None, "a", &w).unwrap(), now);
            prop_assert!(s_young > s_old);
            let s_later = score_now(old.log_score(None, "a", &w).unwrap(), now + later_h * H);
            prop_assert!(s_later < s_old);
        }

        /// Any arrival order gives the same slice, to the bit.
        #[test]
        fn order_does_not_matter(
            events in proptest::collection::vec((0u8..5, 0u8..4, 0u8..6, 0i64..100), 1..60),
            seed in any::<u64>(),
        ) {
            let users = ["u0", "u1", "u2", "u3"];
            let items = ["i0", "i1", "i2", "i3", "i4", "i5"];
            let sigs: Vec<Signal> = events.iter().enumerate().map(|(n, (k, u, i, h))| {
                let followee = users[(*i % 4) as usize];
                let (u, i, ts) = (users[*u as usize], items[*i as usize], T0 + h * H);
                match k {
                    0 => view(u, i, ts),
                    1 => like(u, i, true, ts, n as u128),
                    2 => like(u, i, false, ts, n as u128),
                    3 => Signal::Follow { follower: u.into(), followee: followee.into() },
                    _ => Signal::Created { item: i.into(), ts_ms: ts },
                }
            }).filter(|s| !matches!(s, Signal::Follow { follower, followee } if follower == followee)).collect();
            let mut shuffled = sigs.clone();
            let mut r = seed;
            for k in (1..shuffled.len()).rev() {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(k, (r >> 33) as usize % (k + 1));
            }
            let (mut a, mut b) = (TenantFeatures::default(), TenantFeatures::default());
            sigs.into_iter().for_each(|s| { a.apply(s); });
            shuffled.into_iter().for_each(|s| { b.apply(s); });
            let w = Weights::default();
            a.refresh_global(&w);
            b.refresh_global(&w);
            for u in users {
                let sa: Vec<_> = a.slice(u, &w).into_iter().map(|(s, i)| (s.to_bits(), i)).collect();
                let sb: Vec<_> = b.slice(u, &w).into_iter().map(|(s, i)| (s.to_bits(), i)).collect();
                prop_assert_eq!(sa, sb);
            }
        }
    }
}
