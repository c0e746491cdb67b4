//! Parsing one `product.events` record: a Debezium-style envelope
//! `{before, after, source{db, table, lsn, txId, ts_ms}, op, ts_ms}` whose row
//! is a catalog outbox row `{id, tenant_id, aggregate_id, event_type, payload,
//! created_at}` with the `ProductChanged` JSON as `payload`. Parsing is
//! defensive: the payload may be an object or a JSON string, numbers may
//! arrive as strings, and a converter's `{schema, payload}` wrapper is
//! unwrapped. Anything else is a [`ParseError`] (the record is dead-lettered).
//! Search indexes from these records; the feed learns which products exist
//! and when they were created.

use serde_json::Value;

/// Header the CDC service sets to the source transaction's commit time.
pub const COMMIT_TS_HEADER: &str = "cdc-commit-ts-ms";

/// Debezium operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    /// Snapshot read.
    Read,
    Delete,
}

/// What the indexer needs from one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductEvent {
    /// From the outbox row, when it has one.
    pub tenant_id: Option<String>,
    pub product_id: String,
    /// The product version the event reports.
    pub version: i64,
    pub op: Op,
    /// When the change was committed in the source database.
    pub commit_ts_ms: Option<i64>,
    /// The payload's `kind` (`created`, `updated`), when it names one.
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparseable product event: {0}")]
pub struct ParseError(pub String);

fn err(msg: impl Into<String>) -> ParseError {
    ParseError(msg.into())
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_nonempty_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parse the JSON bytes of one record; `commit_ts_header` is the value of
/// [`COMMIT_TS_HEADER`], if present.
pub fn parse(bytes: &[u8], commit_ts_header: Option<&str>) -> Result<ProductEvent, ParseError> {
    let mut root: Value =
        serde_json::from_slice(bytes).map_err(|e| err(format!("not JSON: {e}")))?;
    if root.get("op").is_none() && root.get("payload").is_some_and(Value::is_object) {
        root = root["payload"].take();
    }
    let op = match root.get("op").and_then(Value::as_str) {
        Some("c") => Op::Create,
        Some("u") => Op::Update,
        Some("r") => Op::Read,
        Some("d") => Op::Delete,
        Some(other) => return Err(err(format!("unknown op {other:?}"))),
        None => return Err(err("missing op")),
    };
    let row_key = if op == Op::Delete { "before" } else { "after" };
    let row = root
        .get(row_key)
        .filter(|r| r.is_object())
        .ok_or_else(|| err(format!("op {op:?} without an object {row_key:?}")))?;
    let payload = match row.get("payload") {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| err(format!("row payload is not JSON: {e}")))?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) | None => Value::Null,
    };
    let product_id = as_nonempty_str(payload.get("product_id"))
        .or_else(|| as_nonempty_str(row.get("aggregate_id")))
        .ok_or_else(|| err("no product_id in the payload and no aggregate_id"))?;
    let version = payload
        .get("version")
        .and_then(as_i64)
        .ok_or_else(|| err("no integer version in the payload"))?;
    if version < 0 {
        return Err(err(format!("negative version {version}")));
    }
    let commit_ts_ms = commit_ts_header
        .and_then(|h| h.trim().parse::<i64>().ok())
        .or_else(|| {
            root.get("source")
                .and_then(|s| s.get("ts_ms"))
                .and_then(as_i64)
        })
        .or_else(|| root.get("ts_ms").and_then(as_i64));
    Ok(ProductEvent {
        tenant_id: as_nonempty_str(row.get("tenant_id")),
        product_id,
        version,
        op,
        commit_ts_ms,
        kind: as_nonempty_str(payload.get("kind")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(op: &str, row: Value) -> Vec<u8> {
        let (before, after) = if op == "d" {
            (row, Value::Null)
        } else {
            (Value::Null, row)
        };
        serde_json::to_vec(&json!({
            "before": before, "after": after, "op": op, "ts_ms": 1_700_000_000_500i64,
            "source": {"db": "catalog", "table": "outbox", "lsn": 42, "txId": 7, "ts_ms": 1_700_000_000_000i64},
        }))
        .unwrap()
    }

    fn row(payload: Value) -> Value {
        json!({"id": "e1", "tenant_id": "acme", "aggregate_id": "p-agg",
               "event_type": "shopstream.events.v1.ProductChanged",
               "payload": payload, "created_at": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn parses_an_outbox_insert_with_the_commit_header() {
        let p = json!({"product_id": "p1", "sku_id": "S", "version": 3, "kind": "updated",
                       "price": {"amount_minor": 100, "currency": "EUR"}, "stock": 1});
        let e = parse(&record("c", row(p)), Some("1700000000123")).unwrap();
        assert_eq!(
            e,
            ProductEvent {
                tenant_id: Some("acme".into()),
                product_id: "p1".into(),
                version: 3,
                op: Op::Create,
                commit_ts_ms: Some(1_700_000_000_123),
                kind: Some("updated".into()),
            }
        );
    }

    #[test]
    fn accepts_string_payloads_string_numbers_and_falls_back_to_source_ts() {
        let p = json!({"product_id": "p1", "version": "4"}).to_string();
        let e = parse(&record("u", row(Value::String(p))), None).unwrap();
        assert_eq!((e.version, e.commit_ts_ms), (4, Some(1_700_000_000_000)));
        let e = parse(&record("d", row(json!({"version": 9}))), Some("junk")).unwrap();
        assert_eq!(
            (e.op, e.product_id.as_str(), e.version),
            (Op::Delete, "p-agg", 9)
        );
    }

    #[test]
    fn unwraps_a_schema_payload_wrapper() {
        let inner: Value =
            serde_json::from_slice(&record("r", row(json!({"product_id": "p", "version": 1}))))
                .unwrap();
        let wrapped = serde_json::to_vec(&json!({"schema": {}, "payload": inner})).unwrap();
        assert_eq!(parse(&wrapped, None).unwrap().op, Op::Read);
    }

    #[test]
    fn rejects_poison() {
        for bad in [
            b"not json".to_vec(),
            serde_json::to_vec(&json!({"after": {}})).unwrap(),
            serde_json::to_vec(&json!({"op": "x", "after": {}})).unwrap(),
            record("c", Value::Null),
            record("c", row(json!({"product_id": "p"}))),
            record("u", row(json!({"product_id": "p", "version": -1}))),
            record("u", json!({"payload": {"version": 1}})),
            record("u", row(Value::String("{oops".into()))),
        ] {
            assert!(
                parse(&bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(&bad)
            );
        }
    }
}
