//! `ProductChanged` events as outbox records. Every write to a product appends
//! one record per affected SKU (the shape of `shopstream.events.v1.ProductChanged`:
//! one event per changed SKU) in the same transaction as the write; CDC
//! streams them to `product.events` keyed by product id.
//!
//! The payload is JSON: `event_id`, `product_id`, `sku_id`, `price`, `stock`,
//! `region` (the home region), `regions`, `version` (the product's version
//! after the write), `kind`, `ts_ms`, and `trace` (W3C headers, when the write
//! ran inside a trace).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shopstream_platform::ids::IdGen;
use uuid::Uuid;

use super::{
    ids::{ProductId, SkuId},
    product::Product,
};

/// `event_type` of every catalog outbox record: the protobuf message's full
/// name, as the `event-type` header of `product.events` carries it.
pub const PRODUCT_CHANGED: &str = "shopstream.events.v1.ProductChanged";
/// The topic CDC publishes catalog outbox records to.
pub const TOPIC: &str = "product.events";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
}

/// When and in which trace a write happens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventContext {
    pub now_ms: i64,
    /// W3C trace-context headers (`traceparent`, `tracestate`); may be empty.
    pub trace: BTreeMap<String, String>,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub id: Uuid,
    /// The product the event is about (the Kafka key).
    pub aggregate_id: ProductId,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at_ms: i64,
}

impl OutboxEvent {
    /// The product version the payload reports.
    pub fn version(&self) -> Option<i64> {
        self.payload
            .get("version")
            .and_then(serde_json::Value::as_i64)
    }

    pub fn sku_id(&self) -> Option<&str> {
        self.payload
            .get("sku_id")
            .and_then(serde_json::Value::as_str)
    }
}

/// The event for one SKU of `product` (as it is after the write).
/// `None` when the product has no such SKU.
pub fn sku_changed(
    product: &Product,
    sku_id: &SkuId,
    kind: ChangeKind,
    event_id: Uuid,
    cx: &EventContext,
) -> Option<OutboxEvent> {
    let sku = product.sku(sku_id)?;
    let mut payload = serde_json::json!({
        "event_id": event_id,
        "product_id": product.id,
        "sku_id": sku.id,
        "price": sku.price,
        "stock": sku.stock,
        "region": product.home_region().map(|r| r.as_str()).unwrap_or_default(),
        "regions": product.regions,
        "version": product.version,
        "kind": kind,
        "ts_ms": cx.now_ms,
    });
    if !cx.trace.is_empty() {
        payload["trace"] = serde_json::json!(cx.trace);
    }
    Some(OutboxEvent {
        id: event_id,
        aggregate_id: product.id,
        event_type: PRODUCT_CHANGED.to_string(),
        payload,
        created_at_ms: cx.now_ms,
    })
}

/// One event per SKU of `product`, for a write that touched the whole product.
pub fn product_changed(
    product: &Product,
    kind: ChangeKind,
    ids: &dyn IdGen,
    cx: &EventContext,
) -> Vec<OutboxEvent> {
    product
        .skus
        .iter()
        .filter_map(|s| sku_changed(product, &s.id, kind, ids.new_id(), cx))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::{tests::draft, validate_new};
    use shopstream_platform::ids::SequentialIdGen;

    #[test]
    fn one_event_per_sku_with_the_product_version_and_trace() {
        let p = validate_new(&draft("scarf"), ProductId(Uuid::from_u64_pair(1, 1)), 5).unwrap();
        let cx = EventContext {
            now_ms: 77,
            trace: BTreeMap::from([("traceparent".to_string(), "00-abc-def-01".to_string())]),
        };
        let events = product_changed(&p, ChangeKind::Created, &SequentialIdGen::new(3), &cx);
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(e.event_type, PRODUCT_CHANGED);
        assert_eq!(e.aggregate_id, p.id);
        assert_eq!(e.version(), Some(1));
        assert_eq!(e.sku_id(), Some("SCARF-NVY"));
        assert_eq!(e.created_at_ms, 77);
        assert_eq!(e.payload["event_id"], e.id.to_string());
        assert_eq!(e.payload["price"]["amount_minor"], 2499);
        assert_eq!(e.payload["price"]["currency"], "EUR");
        assert_eq!(e.payload["stock"], 5);
        assert_eq!(e.payload["region"], "eu");
        assert_eq!(e.payload["kind"], "created");
        assert_eq!(e.payload["trace"]["traceparent"], "00-abc-def-01");
        assert_ne!(events[0].id, events[1].id);

        let untraced = EventContext {
            now_ms: 1,
            trace: BTreeMap::new(),
        };
        let e = sku_changed(
            &p,
            &p.skus[1].id,
            ChangeKind::Updated,
            Uuid::nil(),
            &untraced,
        )
        .unwrap();
        assert!(e.payload.get("trace").is_none());
        assert_eq!(e.payload["kind"], "updated");
        assert!(
            sku_changed(
                &p,
                &SkuId::parse("NOPE").unwrap(),
                ChangeKind::Updated,
                Uuid::nil(),
                &untraced
            )
            .is_none()
        );
    }
}
