//! Analytics events from the edge: what shoppers do — `view`, `search`,
//! `add_to_cart`, `checkout_started` — published on `analytics.raw` for the
//! analytics service. A request only puts its event in a bounded buffer and
//! never waits: when the buffer is full the event is dropped and counted
//! (`shopstream_analytics_events_dropped_total`). A worker publishes what the
//! buffer holds, in batches, and keeps trying while the broker is away.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, header, request::Parts},
    middleware::Next,
    response::Response,
};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use shopstream_platform::{
    auth::cookie,
    clock::Clock,
    events::{Envelope, EventBus},
    ids::{IdGen, SystemIdGen},
    metrics::Metrics,
    shutdown::sleep_or_stop,
};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The topic the analytics service reads.
pub const TOPIC: &str = "analytics.raw";
/// `event_type` of an action (schema version 1).
pub const EVENT_TYPE: &str = "analytics.action";
/// Partitions `analytics.raw` is created with (keyed by visitor).
const PARTITIONS: i32 = 3;
/// The cookie that names an anonymous visitor (a random id, one year).
pub const VISITOR_COOKIE: &str = "ss_vid";
const VISITOR_MAX_AGE_S: u64 = 365 * 24 * 3600;
/// Events held for the publisher before new ones are dropped.
pub const BUFFER: usize = 10_000;
/// Events published in one batch.
const BATCH: usize = 500;
/// Pause before publishing again after the broker refused.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest referrer kept.
const MAX_REFERRER: usize = 512;

/// What the shopper did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    View,
    Search,
    AddToCart,
    CheckoutStarted,
}

/// The payload of `analytics.action` on `analytics.raw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEvent {
    /// The signed-in user, if any.
    pub user_id: Option<String>,
    /// The visitor cookie's id (signed in or not).
    pub visitor_id: String,
    pub action: Action,
    /// The product, the SKU or the order; empty for a search (events carry
    /// no free text, ADR 0012).
    pub object_id: String,
    pub ts_ms: i64,
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`, from the User-Agent.
    pub device: String,
    /// The `Referer` header's host (at most 512 characters), or empty.
    pub referrer: String,
}

/// The host of a `Referer` (`https://www.example.com/a?b` →
/// `www.example.com`), at most [`MAX_REFERRER`] characters: a full URL is
/// free text from another site (it may carry an e-mail address or a token),
/// and events carry none (ADR 0012).
pub fn referrer_host(referer: &str) -> String {
    let rest = referer.split_once("://").map_or(referer, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // user:password@host is not a host either.
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host.chars().take(MAX_REFERRER).collect()
}

/// The device class a User-Agent names.
pub fn device(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.is_empty() {
        "unknown"
    } else if ["bot", "crawler", "spider", "curl/", "wget/"]
        .iter()
        .any(|b| ua.contains(b))
    {
        "bot"
    } else if ua.contains("ipad") || ua.contains("tablet") {
        "tablet"
    } else if ua.contains("mobi") || ua.contains("iphone") || ua.contains("android") {
        "mobile"
    } else {
        "desktop"
    }
}

/// The visitor id of a request, set by [`visitor`].
#[derive(Debug, Clone)]
pub struct VisitorId(pub String);

/// Give every request a visitor id: the cookie's, or a new one that the
/// response sets as the cookie.
pub async fn visitor(mut req: Request, next: Next) -> Response {
    let existing = cookie(req.headers(), VISITOR_COOKIE).filter(|v| Uuid::parse_str(v).is_ok());
    let id = existing
        .clone()
        .unwrap_or_else(|| SystemIdGen.new_id().to_string());
    req.extensions_mut().insert(VisitorId(id.clone()));
    let mut resp = next.run(req).await;
    if existing.is_none()
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{VISITOR_COOKIE}={id}; Max-Age={VISITOR_MAX_AGE_S}; Path=/; HttpOnly; SameSite=Lax"
        ))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Who did something and from where: the visitor, the device and the
/// referrer of the request (the caller adds the user, if signed in).
#[derive(Debug, Clone)]
pub struct Seen {
    pub visitor_id: String,
    pub device: &'static str,
    pub referrer: String,
}

impl Seen {
    fn from_headers(headers: &HeaderMap, visitor: Option<&VisitorId>) -> Seen {
        let text = |h| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        Seen {
            visitor_id: visitor.map(|v| v.0.clone()).unwrap_or_default(),
            device: device(text(header::USER_AGENT)),
            referrer: referrer_host(text(header::REFERER)),
        }
    }

    /// The event of `action` on `object_id` by `user_id` at `ts_ms`.
    pub fn event(
        &self,
        action: Action,
        object_id: &str,
        user_id: Option<&str>,
        ts_ms: i64,
    ) -> ActionEvent {
        ActionEvent {
            user_id: user_id.map(str::to_owned),
            visitor_id: self.visitor_id.clone(),
            action,
            object_id: object_id.to_string(),
            ts_ms,
            device: self.device.to_string(),
            referrer: self.referrer.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Seen {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Seen::from_headers(
            &parts.headers,
            parts.extensions.get::<VisitorId>(),
        ))
    }
}

/// The requests' side: puts events in the buffer, never waits. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(String, ActionEvent)>,
    recorded: Counter,
    dropped: Counter,
}

/// The worker's side: publishes the buffer on `analytics.raw`.
pub struct Publisher {
    rx: Mutex<mpsc::Receiver<(String, ActionEvent)>>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    published: Counter,
}

/// A recorder and its publisher, with a buffer of `capacity` events.
pub fn channel(
    capacity: usize,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    metrics: &Metrics,
) -> (Recorder, Publisher) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let (recorded, dropped, published) =
        (Counter::default(), Counter::default(), Counter::default());
    metrics.register(
        "analytics_events_recorded",
        "Analytics events put in the buffer",
        recorded.clone(),
    );
    metrics.register(
        "analytics_events_dropped",
        "Analytics events dropped because the buffer was full",
        dropped.clone(),
    );
    metrics.register(
        "analytics_events_published",
        "Analytics events published on analytics.raw",
        published.clone(),
    );
    (
        Recorder {
            tx,
            recorded,
            dropped,
        },
        Publisher {
            rx: Mutex::new(rx),
            bus,
            clock,
            published,
        },
    )
}

impl Recorder {
    /// Buffer `event` of `tenant`; drop and count it when the buffer is full.
    pub fn record(&self, tenant: &str, event: ActionEvent) {
        let counter = match self.tx.try_send((tenant.to_string(), event)) {
            Ok(()) => &self.recorded,
            Err(_) => &self.dropped,
        };
        counter.inc();
    }
}

impl Publisher {
    /// Publish until `stop`: create the topic, then each batch the buffer
    /// holds, retrying a batch while the broker refuses it.
    pub async fn run(self, stop: CancellationToken) {
        while let Err(e) = self.bus.ensure_topic(TOPIC, PARTITIONS).await {
            tracing::warn!(error = %e, "analytics.raw not ready; retrying");
            if !sleep_or_stop(&stop, RETRY_AFTER).await {
                return;
            }
        }
        let mut rx = self.rx.lock().await;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let n = tokio::select! {
                _ = stop.cancelled() => return,
                n = rx.recv_many(&mut batch, BATCH) => n,
            };
            if n == 0 {
                return;
            }
            let envelopes: Vec<Envelope> = batch
                .drain(..)
                .filter_map(|(tenant, e)| {
                    let key = e.visitor_id.clone();
                    Envelope::new(
                        EVENT_TYPE,
                        1,
                        &tenant,
                        &key,
                        &e,
                        self.clock.as_ref(),
                        &SystemIdGen,
                    )
                    .ok()
                })
                .collect();
            while let Err(e) = self.bus.publish_batch(TOPIC, &envelopes).await {
                tracing::warn!(error = %e, events = envelopes.len(), "publishing analytics failed; retrying");
                if !sleep_or_stop(&stop, RETRY_AFTER).await {
                    return;
                }
            }
            self.published.inc_by(envelopes.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_referrer_is_kept_as_its_host_only() {
        assert_eq!(
            referrer_host("https://www.example.com/a?mail=ann@x.test#f"),
            "www.example.com"
        );
        assert_eq!(
            referrer_host("http://user:pw@shop.test:8080/p"),
            "shop.test:8080"
        );
        assert_eq!(referrer_host("android-app://com.example"), "com.example");
        assert_eq!(referrer_host("example.org/path"), "example.org");
        assert_eq!(referrer_host(""), "");
    }

    #[test]
    fn user_agents_map_to_device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
        assert_eq!(device(iphone), "mobile");
        assert_eq!(
            device("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)"),
            "tablet"
        );
        assert_eq!(
            device("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"),
            "desktop"
        );
        assert_eq!(
            device("Googlebot/2.1 (+http://www.google.com/bot.html)"),
            "bot"
        );
        assert_eq!(device("curl/8.5.0"), "bot");
        assert_eq!(device(""), "unknown");
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_and_never_waits() {
        let metrics = Metrics::new("test");
        let bus = Arc::new(shopstream_platform::events::memory::MemoryBus::default());
        let clock = Arc::new(shopstream_platform::clock::SystemClock);
        let (recorder, _publisher) = channel(2, bus, clock, &metrics);
        let seen = Seen {
            visitor_id: "v".into(),
            device: "desktop",
            referrer: String::new(),
        };
        for i in 0..5 {
            recorder.record("t", seen.event(Action::View, &i.to_string(), None, 0));
        }
        assert_eq!((recorder.recorded.get(), recorder.dropped.get()), (2, 3));
    }
}
