//! From a row change to the event on the wire: the Debezium-style change
//! record (`before`, `after`, `source`, `op`, `ts_ms`) as the payload of a
//! platform [`Envelope`].
//!
//! Two kinds of table:
//! - an **outbox** table (`id`, `tenant_id`, `aggregate_id`, `event_type`,
//!   `payload`, `created_at`): only inserts are events. The event id is the
//!   row id (consumers dedupe on it), the type and tenant come from the row,
//!   the key is `aggregate_id`, and the W3C headers in `payload.trace` become
//!   the envelope's trace headers, so the writer's trace continues.
//! - a **row** table: every insert, update and delete is an event keyed by
//!   the row's key columns, with an id derived from the change's LSN (the
//!   same change replayed gets the same id).

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};
use shopstream_platform::events::Envelope;
use uuid::Uuid;

use super::stream::{Op, RowChange, TxnContext};

/// Header: the source transaction's commit time, Unix ms.
pub const HEADER_COMMIT_TS_MS: &str = "cdc-commit-ts-ms";
/// Header: the change's LSN (decimal, the same number as `source.lsn`).
pub const HEADER_LSN: &str = "cdc-lsn";
/// Schema version of the Debezium-style payload.
pub const SCHEMA_VERSION: u16 = 1;

/// How a table's changes become events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Outbox,
    Row,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("outbox row in {table} lacks a valid {column}")]
    MalformedOutbox { table: String, column: &'static str },
}

/// The Debezium-style change record.
pub fn change_record(change: &RowChange, cx: &TxnContext, database: &str, now_ms: i64) -> Json {
    let obj = |m: &Option<Map<String, Json>>| m.clone().map(Json::Object).unwrap_or(Json::Null);
    json!({
        "before": obj(&change.before),
        "after": obj(&change.after),
        "source": {
            "db": database,
            "schema": change.schema,
            "table": change.table,
            "lsn": change.lsn,
            "txId": cx.xid,
            "ts_ms": cx.commit_ts_ms,
        },
        "op": change.op.code(),
        "ts_ms": now_ms,
    })
}

fn cdc_headers(change: &RowChange, cx: &TxnContext) -> BTreeMap<String, String> {
    BTreeMap::from([
        (HEADER_COMMIT_TS_MS.to_string(), cx.commit_ts_ms.to_string()),
        (HEADER_LSN.to_string(), change.lsn.to_string()),
    ])
}

/// The event for a change to an outbox table; `None` for anything but an
/// insert or a snapshot read (outbox rows are immutable facts; their clean-up is not an event).
pub fn outbox_event(
    change: &RowChange,
    cx: &TxnContext,
    database: &str,
    now_ms: i64,
) -> Result<Option<Envelope>, RouteError> {
    if !matches!(change.op, Op::Create | Op::Read) {
        return Ok(None);
    }
    let row = change.after.as_ref();
    let malformed = |column| RouteError::MalformedOutbox {
        table: change.table.clone(),
        column,
    };
    let text = |column: &'static str| {
        row.and_then(|r| r.get(column))
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| malformed(column))
    };
    let id: Uuid = text("id")?.parse().map_err(|_| malformed("id"))?;
    let mut headers = BTreeMap::new();
    if let Some(trace) = row
        .and_then(|r| r.get("payload"))
        .and_then(|p| p.get("trace"))
        .and_then(Json::as_object)
    {
        for (k, v) in trace {
            if let Some(v) = v.as_str() {
                headers.insert(k.clone(), v.to_string());
            }
        }
    }
    headers.extend(cdc_headers(change, cx));
    Ok(Some(Envelope {
        id,
        event_type: text("event_type")?.to_string(),
        schema_version: SCHEMA_VERSION,
        tenant_id: text("tenant_id")?.to_string(),
        key: text("aggregate_id")?.to_string(),
        occurred_at_ms: cx.commit_ts_ms,
        headers,
        payload: change_record(change, cx, database, now_ms)
            .to_string()
            .into_bytes(),
    }))
}

/// The event for a change to a row table: every operation, keyed by the key
/// columns (joined by `:`), tenant from a `tenant_id` column when there is one.
pub fn row_event(
    change: &RowChange,
    cx: &TxnContext,
    database: &str,
    default_tenant: &str,
    now_ms: i64,
) -> Envelope {
    let row = change.row();
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let key = change
        .key_columns
        .iter()
        .map(|c| row.and_then(|r| r.get(c)).map(text).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":");
    let tenant = row
        .and_then(|r| r.get("tenant_id"))
        .and_then(Json::as_str)
        .unwrap_or(default_tenant)
        .to_string();
    let table = format!("{database}.{}.{}", change.schema, change.table);
    // A change is identified by its WAL record; a snapshot read (one LSN for
    // the whole snapshot) by its key.
    let (hi, lo) = match change.op {
        Op::Read => (fnv1a64(key.as_bytes()), !fnv1a64(table.as_bytes())),
        _ => (change.lsn, fnv1a64(table.as_bytes())),
    };
    Envelope {
        id: Uuid::from_u64_pair(hi, lo),
        event_type: format!("cdc.{table}"),
        schema_version: SCHEMA_VERSION,
        tenant_id: tenant,
        key,
        occurred_at_ms: cx.commit_ts_ms,
        headers: cdc_headers(change, cx),
        payload: change_record(change, cx, database, now_ms)
            .to_string()
            .into_bytes(),
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> TxnContext {
        TxnContext {
            xid: 900,
            final_lsn: 5_000,
            commit_ts_ms: 1_700_000_000_123,
        }
    }

    fn outbox_insert() -> RowChange {
        let after = json!({
            "id": "0192a0b4-0000-7000-8000-000000000001",
            "tenant_id": "default",
            "aggregate_id": "0192a0b4-0000-7000-8000-0000000000aa",
            "event_type": "shopstream.events.v1.ProductChanged",
            "payload": {"version": 2, "sku_id": "S-1", "trace": {"traceparent": "00-4bf9-00f0-01", "tracestate": "k=v"}},
            "created_at": "2026-11-22T23:55:20.123Z",
        });
        RowChange {
            schema: "public".into(),
            table: "outbox".into(),
            op: Op::Create,
            before: None,
            after: after.as_object().cloned(),
            key_columns: vec!["tenant_id".into(), "id".into()],
            lsn: 4_242,
        }
    }

    #[test]
    fn an_outbox_insert_is_an_envelope_with_the_row_identity_and_trace() {
        let e = outbox_event(&outbox_insert(), &cx(), "catalog", 1_700_000_000_200)
            .unwrap()
            .unwrap();
        assert_eq!(e.id.to_string(), "0192a0b4-0000-7000-8000-000000000001");
        assert_eq!(e.event_type, "shopstream.events.v1.ProductChanged");
        assert_eq!(e.tenant_id, "default");
        assert_eq!(e.key, "0192a0b4-0000-7000-8000-0000000000aa");
        assert_eq!(e.occurred_at_ms, 1_700_000_000_123);
        assert_eq!(e.headers["traceparent"], "00-4bf9-00f0-01");
        assert_eq!(e.headers["tracestate"], "k=v");
        assert_eq!(e.headers[HEADER_COMMIT_TS_MS], "1700000000123");
        assert_eq!(e.headers[HEADER_LSN], "4242");
        let v: Json = e.json().unwrap();
        assert_eq!(v["op"], "c");
        assert_eq!(v["before"], Json::Null);
        assert_eq!(v["after"]["payload"]["version"], 2);
        assert_eq!(v["source"]["db"], "catalog");
        assert_eq!(v["source"]["table"], "outbox");
        assert_eq!(v["source"]["lsn"], 4_242);
        assert_eq!(v["source"]["txId"], 900);
        assert_eq!(v["source"]["ts_ms"], 1_700_000_000_123i64);
        assert_eq!(v["ts_ms"], 1_700_000_000_200i64);
    }

    #[test]
    fn outbox_updates_and_deletes_are_not_events_and_bad_rows_are_errors() {
        let mut c = outbox_insert();
        c.op = Op::Delete;
        assert_eq!(outbox_event(&c, &cx(), "catalog", 0).unwrap(), None);
        let mut c = outbox_insert();
        c.after.as_mut().unwrap().insert("id".into(), json!("nope"));
        assert!(outbox_event(&c, &cx(), "catalog", 0).is_err());
        let mut c = outbox_insert();
        c.after.as_mut().unwrap().remove("event_type");
        assert!(matches!(
            outbox_event(&c, &cx(), "catalog", 0),
            Err(RouteError::MalformedOutbox {
                column: "event_type",
                ..
            })
        ));
    }

    #[test]
    fn row_events_are_keyed_by_the_key_columns_with_stable_ids() {
        let mut c = outbox_insert();
        c.op = Op::Update;
        c.before = None;
        let a = row_event(&c, &cx(), "catalog", "t0", 1);
        let b = row_event(&c, &cx(), "catalog", "t0", 2);
        assert_eq!(a.id, b.id, "a replayed change keeps its id");
        assert_eq!(a.key, "default:0192a0b4-0000-7000-8000-000000000001");
        assert_eq!(a.tenant_id, "default");
        assert_eq!(a.event_type, "cdc.catalog.public.outbox");
        let v: Json = a.json().unwrap();
        assert_eq!(v["op"], "u");
    }
}
