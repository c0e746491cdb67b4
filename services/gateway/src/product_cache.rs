//! The gateway's product cache: the [`ProductView`] of `GET /products/{id}`
//! (and so every product card) in Redis, kept current by `product.events`.
//!
//! A key `product:{tenant}:{id}` holds either `"<version> <json>"` (the view
//! at that catalog version) or a tombstone `"T<version>"` ("any version
//! older than this is stale"). Two Lua scripts keep a slow reader from ever
//! putting back what an edit replaced:
//! - **fill** writes a view only if the key holds no newer view and no
//!   tombstone above its version;
//! - **invalidate** (on each `product.events` record, and at once after an
//!   admin write through this gateway) writes a tombstone unless the key
//!   already holds that version or a newer one.
//!
//! So a read that raced an edit (read version 4 from catalog, then the event
//! for version 5 arrived, then the fill) is refused, and a cached product is
//! never older than the event stream: edit → read is stale for at most the
//! CDC lag, and not at all for edits made through this gateway. Entries
//! expire after the card TTL, which also bounds how long a picture is
//! stale (`media.events` of a ready picture forget its product at once).
//! While the invalidating consumer is not healthy (its runner reports a
//! stall or repeated restarts), reads bypass the cache rather than serve
//! what nobody is invalidating. A Redis outage degrades to catalog reads.

use async_trait::async_trait;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use shopstream_platform::{
    cache::ConnectionManager,
    events::{
        Delivery,
        runner::{ConsumerHealth, Handler, HandlerError},
    },
    metrics::Metrics,
    product_events,
};

use crate::catalog::ProductView;

/// Consumer group of the gateways' cache invalidation (one group for all
/// gateways: the cache is shared, so one of them invalidating is enough).
pub const GROUP: &str = "gateway-product-cache";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LookupLabels {
    /// `hit`, `miss` or `bypass` (asked not to, or the cache is not kept current).
    pub result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct InvalidationLabels {
    /// `event` (product.events), `write` (an admin write through this
    /// gateway) or `media` (a picture became ready).
    pub source: &'static str,
}

/// Write the view unless the key holds a view at this version or newer, or
/// a tombstone above it. KEYS[1] key; ARGV: version, value, ttl.
const FILL: &str = r#"
local cur = redis.call('GET', KEYS[1])
local new = tonumber(ARGV[1])
if cur then
  local tomb, v = string.match(cur, '^(T?)(%-?%d+)')
  v = tonumber(v)
  if v and ((tomb == 'T' and v > new) or (tomb ~= 'T' and v >= new)) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"#;

/// Write a tombstone for versions below ARGV[1] unless the key holds that
/// version or a newer one (view or tombstone). ARGV: version, ttl.
const INVALIDATE: &str = r#"
local cur = redis.call('GET', KEYS[1])
local w = tonumber(ARGV[1])
if cur then
  local _, v = string.match(cur, '^(T?)(%-?%d+)')
  v = tonumber(v)
  if v and v >= w then
    return 0
  end
end
redis.call('SET', KEYS[1], 'T' .. ARGV[1], 'EX', ARGV[2])
return 1
"#;

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct ProductCache {
    redis: ConnectionManager,
    /// How long a view (and a tombstone) stays.
    ttl_s: u64,
    /// The invalidating consumer's health; `None` trusts the cache always
    /// (tests of the cache alone).
    health: Option<ConsumerHealth>,
    lookups: Family<LookupLabels, Counter>,
    invalidations: Family<InvalidationLabels, Counter>,
}

impl std::fmt::Debug for ProductCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductCache")
            .field("ttl_s", &self.ttl_s)
            .finish()
    }
}

/// A stored value: a view at its version, or a tombstone.
#[derive(Debug)]
enum Stored {
    View(Box<ProductView>),
    Tombstone,
}

fn decode(raw: &str) -> Option<Stored> {
    if raw.starts_with('T') {
        return Some(Stored::Tombstone);
    }
    let (_, json) = raw.split_once(' ')?;
    serde_json::from_str(json)
        .ok()
        .map(|v| Stored::View(Box::new(v)))
}

fn encode(view: &ProductView) -> Option<String> {
    serde_json::to_string(view)
        .ok()
        .map(|json| format!("{} {json}", view.version))
}

impl ProductCache {
    pub fn new(
        redis: ConnectionManager,
        ttl_s: u64,
        health: Option<ConsumerHealth>,
        metrics: &Metrics,
    ) -> ProductCache {
        let cache = ProductCache {
            redis,
            ttl_s: ttl_s.max(1),
            health,
            lookups: Family::default(),
            invalidations: Family::default(),
        };
        metrics.register(
            "product_cache_lookups",
            "Product reads by how the cache answered: hit, miss, bypass",
            cache.lookups.clone(),
        );
        metrics.register(
            "product_cache_invalidations",
            "Cached products invalidated, by source: event, write, media",
            cache.invalidations.clone(),
        );
        cache
    }

    pub fn key(tenant: &str, id: &str) -> String {
        format!("product:{tenant}:{id}")
    }

    /// Whether reads may trust the cache now.
    fn trusted(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.status().is_ok())
    }

    fn count(&self, result: &'static str, n: usize) {
        self.lookups
            .get_or_create(&LookupLabels { result })
            .inc_by(n as u64);
    }

    /// The cached views of `ids` (by position), `None` where not cached.
    /// `bypass` (the client sent `Cache-Control: no-cache`), an untrusted
    /// cache or a Redis error answer all misses.
    pub async fn get_many(
        &self,
        tenant: &str,
        ids: &[String],
        bypass: bool,
    ) -> Vec<Option<ProductView>> {
        if bypass || !self.trusted() {
            self.count("bypass", ids.len());
            return vec![None; ids.len()];
        }
        let keys: Vec<String> = ids.iter().map(|id| Self::key(tenant, id)).collect();
        let mut redis = self.redis.clone();
        let raw: Vec<Option<String>> =
            match redis::cmd("MGET").arg(&keys).query_async(&mut redis).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "product cache unavailable");
                    self.count("bypass", ids.len());
                    return vec![None; ids.len()];
                }
            };
        raw.into_iter()
            .map(|r| match r.as_deref().and_then(decode) {
                Some(Stored::View(v)) => {
                    self.count("hit", 1);
                    Some(*v)
                }
                _ => {
                    self.count("miss", 1);
                    None
                }
            })
            .collect()
    }

    /// Store `view` (read from catalog) for `ttl_s` (at most the cache's
    /// TTL) unless a newer view or a tombstone above it is there. True if
    /// stored.
    pub async fn fill(&self, tenant: &str, view: &ProductView, ttl_s: u64) -> bool {
        let Some(value) = encode(view) else {
            return false;
        };
        let mut redis = self.redis.clone();
        // EVAL with the script's text (a few hundred bytes): no script
        // cache to reload after a Redis restart.
        let r: Result<i64, _> = redis::cmd("EVAL")
            .arg(FILL)
            .arg(1)
            .arg(Self::key(tenant, &view.id))
            .arg(view.version)
            .arg(value)
            .arg(ttl_s.clamp(1, self.ttl_s))
            .query_async(&mut redis)
            .await;
        match r {
            Ok(n) => n == 1,
            Err(e) => {
                tracing::debug!(error = %e, "product cache fill failed");
                false
            }
        }
    }

    /// Mark every version of `id` below `version` stale. True if a
    /// tombstone was written (false: a view at `version` or newer is there).
    pub async fn invalidate(
        &self,
        tenant: &str,
        id: &str,
        version: i64,
        source: &'static str,
    ) -> Result<bool, redis::RedisError> {
        let mut redis = self.redis.clone();
        let n: i64 = redis::cmd("EVAL")
            .arg(INVALIDATE)
            .arg(1)
            .arg(Self::key(tenant, id))
            .arg(version)
            .arg(self.ttl_s)
            .query_async(&mut redis)
            .await?;
        if n == 1 {
            self.invalidations
                .get_or_create(&InvalidationLabels { source })
                .inc();
        }
        Ok(n == 1)
    }

    /// Drop whatever is cached for `id` (its picture changed: the version
    /// did not). A fill racing this may put the old picture back until the
    /// TTL ends.
    pub async fn forget(
        &self,
        tenant: &str,
        id: &str,
        source: &'static str,
    ) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        let n: i64 = redis::cmd("DEL")
            .arg(Self::key(tenant, id))
            .query_async(&mut redis)
            .await?;
        if n > 0 {
            self.invalidations
                .get_or_create(&InvalidationLabels { source })
                .inc();
        }
        Ok(())
    }
}

/// Applies `product.events` (and the ready pictures of `media.events`) to
/// the cache. Idempotent by version: a redelivered event writes nothing.
#[derive(Debug, Clone)]
pub struct Invalidator {
    pub cache: ProductCache,
    pub media_topic: String,
    /// Tenant of events that name none.
    pub default_tenant: String,
}

impl Invalidator {
    fn tenant(&self, named: Option<String>, envelope_tenant: &str) -> String {
        named
            .or_else(|| {
                Some(envelope_tenant.to_string()).filter(|t| !t.is_empty() && t != "unknown")
            })
            .unwrap_or_else(|| self.default_tenant.clone())
    }
}

/// The product whose picture a `media.events` record made ready, if any.
pub fn ready_product_picture(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if v.get("status")?.as_str()? != "ready" {
        return None;
    }
    let id = v.get("ref")?.as_str()?.strip_prefix("product:")?;
    (!id.is_empty()).then(|| id.to_string())
}

/// Redis did not take an invalidation: the entry stays until its TTL. Not
/// retried into `product.events.dlq`, which is search's to replay, and
/// while Redis fails, reads bypass the cache anyway.
fn unapplied(e: &redis::RedisError, product_id: &str) {
    tracing::warn!(error = %e, %product_id, "product cache not invalidated; the entry expires with its TTL");
}

#[async_trait]
impl Handler for Invalidator {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let e = &d.envelope;
        if d.topic == self.media_topic {
            if let Some(id) = ready_product_picture(&e.payload) {
                let tenant = self.tenant(None, &e.tenant_id);
                if let Err(err) = self.cache.forget(&tenant, &id, "media").await {
                    unapplied(&err, &id);
                }
            }
            return Ok(());
        }
        let ev = match product_events::parse(&e.payload, None) {
            Ok(ev) => ev,
            Err(err) => {
                // Search dead-letters it; a second copy helps nobody.
                tracing::warn!(error = %err, offset = d.offset, "product event skipped by the cache");
                return Ok(());
            }
        };
        let tenant = self.tenant(ev.tenant_id.clone(), &e.tenant_id);
        if let Err(err) = self
            .cache
            .invalidate(&tenant, &ev.product_id, ev.version, "event")
            .await
        {
            unapplied(&err, &ev.product_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(version: i64) -> ProductView {
        ProductView {
            id: "p1".into(),
            title: "Lamp".into(),
            description: "A lamp".into(),
            category: "home".into(),
            region: "eu".into(),
            skus: vec![],
            version,
            updated_at_ms: 1,
            image_url: "/media/placeholder/product:p1.svg".into(),
        }
    }

    #[test]
    fn a_view_round_trips_and_a_tombstone_is_no_view() {
        let raw = encode(&view(7)).unwrap();
        assert!(raw.starts_with("7 {"), "{raw}");
        match decode(&raw) {
            Some(Stored::View(v)) => assert_eq!((v.version, v.title.as_str()), (7, "Lamp")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode("T7"), Some(Stored::Tombstone)));
        assert!(decode("garbage").is_none());
    }

    #[test]
    fn only_a_ready_product_picture_forgets_a_product() {
        let ev = |status: &str, r: &str| {
            serde_json::to_vec(&serde_json::json!({"asset_id": "a", "status": status, "ref": r}))
                .unwrap()
        };
        assert_eq!(
            ready_product_picture(&ev("ready", "product:p1")),
            Some("p1".into())
        );
        assert_eq!(ready_product_picture(&ev("failed", "product:p1")), None);
        assert_eq!(ready_product_picture(&ev("ready", "avatar:u1")), None);
        assert_eq!(ready_product_picture(&ev("ready", "product:")), None);
        assert_eq!(ready_product_picture(b"not json"), None);
    }
}
