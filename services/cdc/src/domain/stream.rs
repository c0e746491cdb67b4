//! The state of one replication stream: the relations seen so far and the
//! transaction in progress. It turns decoded pgoutput messages into row
//! changes (column names attached, values typed as JSON) inside their
//! transaction's context. Pure: no I/O, no clock.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use super::pgoutput::{self, Message, Relation, Value};

/// Placeholder for an unchanged TOASTed column (the value Debezium uses).
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// Debezium's operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// A snapshot read.
    Read,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
        }
    }
}

/// The transaction a change belongs to, known from its Begin message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnContext {
    pub xid: u32,
    /// LSN of the commit record.
    pub final_lsn: u64,
    pub commit_ts_ms: i64,
}

/// Whether the transaction whose commit record starts at `final_lsn` is at
/// or below `checkpoint` (an acknowledged commit end, or an idle position
/// the server reported): then it was published before and is skipped. A
/// commit record that starts below a commit's end lies at or before it.
pub fn already_published(final_lsn: u64, checkpoint: u64) -> bool {
    final_lsn < checkpoint
}

/// One row change, with its columns by name.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub schema: String,
    pub table: String,
    pub op: Op,
    pub before: Option<Map<String, Json>>,
    pub after: Option<Map<String, Json>>,
    /// Names of the replica-identity (key) columns, in table order.
    pub key_columns: Vec<String>,
    /// LSN of the change's WAL record.
    pub lsn: u64,
}

impl RowChange {
    /// The row as it is after the change, or before it for a delete.
    pub fn row(&self) -> Option<&Map<String, Json>> {
        self.after.as_ref().or(self.before.as_ref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Decode(#[from] pgoutput::DecodeError),
    #[error("a row change arrived outside a transaction")]
    OutsideTransaction,
    #[error("a change refers to relation {0}, which was never described")]
    UnknownRelation(u32),
    #[error("relation {relation} has {expected} columns but a tuple carried {got}")]
    ColumnCount {
        relation: String,
        expected: usize,
        got: usize,
    },
}

/// What one data message meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Change(TxnContext, RowChange),
    /// Relations, types, origins, truncates and logical messages: nothing to publish.
    Nothing,
}

/// Relations and the open transaction of one stream.
#[derive(Debug, Default)]
pub struct StreamState {
    relations: HashMap<u32, Relation>,
    open: Option<TxnContext>,
}

impl StreamState {
    pub fn new() -> StreamState {
        StreamState::default()
    }

    /// A transaction starts (the client library reports Begin on its own).
    pub fn begin(&mut self, xid: u32, final_lsn: u64, commit_ts_us: i64) -> TxnContext {
        let cx = TxnContext {
            xid,
            final_lsn,
            commit_ts_ms: pgoutput::pg_micros_to_unix_ms(commit_ts_us),
        };
        self.open = Some(cx);
        cx
    }

    /// The open transaction ends; returns its context if one was open.
    pub fn commit(&mut self) -> Option<TxnContext> {
        self.open.take()
    }

    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// Apply one pgoutput data message read at `lsn`.
    pub fn apply(&mut self, lsn: u64, bytes: &[u8]) -> Result<Step, StreamError> {
        let (relation, op, old, new) = match pgoutput::decode(bytes)? {
            Message::Begin {
                final_lsn,
                commit_ts_us,
                xid,
            } => {
                self.begin(xid, final_lsn, commit_ts_us);
                return Ok(Step::Nothing);
            }
            Message::Commit { .. } => {
                self.commit();
                return Ok(Step::Nothing);
            }
            Message::Relation(r) => {
                self.relations.insert(r.oid, r);
                return Ok(Step::Nothing);
            }
            Message::Insert { relation, new } => (relation, Op::Create, None, Some(new)),
            Message::Update { relation, old, new } => (relation, Op::Update, old, Some(new)),
            Message::Delete { relation, old } => (relation, Op::Delete, Some(old), None),
            Message::Origin { .. }
            | Message::Type { .. }
            | Message::Truncate { .. }
            | Message::Other(_) => return Ok(Step::Nothing),
        };
        let cx = self.open.ok_or(StreamError::OutsideTransaction)?;
        let rel = self
            .relations
            .get(&relation)
            .ok_or(StreamError::UnknownRelation(relation))?;
        let before = old.map(|t| row(rel, &t, op == Op::Delete)).transpose()?;
        let after = new.map(|t| row(rel, &t, false)).transpose()?;
        Ok(Step::Change(
            cx,
            RowChange {
                schema: rel.namespace.clone(),
                table: rel.name.clone(),
                op,
                before,
                after,
                key_columns: rel
                    .columns
                    .iter()
                    .filter(|c| c.key)
                    .map(|c| c.name.clone())
                    .collect(),
                lsn,
            },
        ))
    }
}

/// A row read by the initial snapshot (`row_to_json`) as a change with
/// op `r`. Timestamps in UTC (`+00:00`) are written as the stream writes them (`Z`).
pub fn snapshot_change(
    schema: &str,
    table: &str,
    mut row: Map<String, Json>,
    key_columns: Vec<String>,
    lsn: u64,
) -> RowChange {
    for v in row.values_mut() {
        if let Json::String(s) = v
            && s.len() >= 25
            && s.as_bytes()[10] == b'T'
            && let Some(utc) = s.strip_suffix("+00:00")
        {
            *s = format!("{utc}Z");
        }
    }
    RowChange {
        schema: schema.to_string(),
        table: table.to_string(),
        op: Op::Read,
        before: None,
        after: Some(row),
        key_columns,
        lsn,
    }
}

/// A tuple as a JSON object. `key_only`: a delete under REPLICA IDENTITY
/// DEFAULT sends only the key columns; the others arrive as nulls and are
/// left out.
fn row(rel: &Relation, tuple: &[Value], key_only: bool) -> Result<Map<String, Json>, StreamError> {
    if tuple.len() != rel.columns.len() {
        return Err(StreamError::ColumnCount {
            relation: format!("{}.{}", rel.namespace, rel.name),
            expected: rel.columns.len(),
            got: tuple.len(),
        });
    }
    Ok(rel
        .columns
        .iter()
        .zip(tuple)
        .filter(|(c, v)| !(key_only && !c.key && **v == Value::Null))
        .map(|(c, v)| (c.name.clone(), json_value(c.type_oid, v)))
        .collect())
}

/// Type OIDs whose text form maps to a JSON type other than string.
mod oid {
    pub const BOOL: u32 = 16;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const JSONB: u32 = 3802;
}

/// One column value as JSON: integers and booleans typed, json/jsonb parsed
/// (as JSON, not a string), timestamptz as RFC 3339, everything else (uuid,
/// text, numeric, arrays) as its Postgres text form.
pub fn json_value(type_oid: u32, v: &Value) -> Json {
    let text = match v {
        Value::Null => return Json::Null,
        Value::Unchanged => return Json::String(UNAVAILABLE_VALUE.into()),
        Value::Binary(b) => return Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::Text(t) => t,
    };
    let parsed = match type_oid {
        oid::BOOL => Some(Json::Bool(text == "t")),
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => text.parse::<i64>().ok().map(Json::from),
        oid::FLOAT4 | oid::FLOAT8 => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number),
        oid::JSON | oid::JSONB => serde_json::from_str(text).ok(),
        oid::TIMESTAMPTZ => Some(Json::String(rfc3339(text))),
        _ => None,
    };
    parsed.unwrap_or_else(|| Json::String(text.clone()))
}

/// `2026-11-22 23:55:20.123+00` (DateStyle ISO, TimeZone UTC) as
/// `2026-11-22T23:55:20.123Z`; any other form unchanged.
fn rfc3339(text: &str) -> String {
    match text.strip_suffix("+00") {
        Some(utc) if utc.len() >= 19 && utc.as_bytes()[10] == b' ' => {
            format!("{}T{}Z", &utc[..10], &utc[11..])
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pgoutput::wire::{self, t};

    fn outbox_relation() -> Vec<u8> {
        wire::relation(
            9,
            "public",
            "outbox",
            &[
                (true, "id", 2950),
                (false, "tenant_id", 25),
                (false, "payload", 3802),
                (false, "created_at", 1184),
                (false, "n", 20),
            ],
        )
    }

    #[test]
    fn an_insert_inside_a_transaction_is_a_typed_row_change() {
        let mut s = StreamState::new();
        assert_eq!(s.apply(1, &outbox_relation()).unwrap(), Step::Nothing);
        let cx = s.begin(77, 500, 1_000_000);
        let step = s
            .apply(
                400,
                &wire::insert(
                    9,
                    &[
                        t("0190-uuid"),
                        t("default"),
                        t(r#"{"version": 3, "trace": {"traceparent": "00-a-b-01"}}"#),
                        t("2026-11-22 23:55:20.123+00"),
                        t("42"),
                    ],
                ),
            )
            .unwrap();
        let Step::Change(got_cx, c) = step else {
            panic!("no change")
        };
        assert_eq!(got_cx, cx);
        assert_eq!(cx.commit_ts_ms, 946_684_801_000);
        assert_eq!((c.op, c.table.as_str(), c.lsn), (Op::Create, "outbox", 400));
        assert!(c.before.is_none());
        let after = c.after.unwrap();
        assert_eq!(
            after["payload"]["version"], 3,
            "jsonb is JSON, not a string"
        );
        assert_eq!(after["created_at"], "2026-11-22T23:55:20.123Z");
        assert_eq!(after["n"], 42);
        assert_eq!(c.key_columns, vec!["id".to_string()]);
        assert_eq!(s.commit(), Some(cx));
        assert!(!s.in_transaction());
    }

    #[test]
    fn deletes_with_the_default_identity_carry_only_the_key() {
        let mut s = StreamState::new();
        s.apply(1, &outbox_relation()).unwrap();
        s.begin(1, 2, 3);
        let step = s
            .apply(
                5,
                &wire::delete(
                    9,
                    b'K',
                    &[t("k"), Value::Null, Value::Null, Value::Null, Value::Null],
                ),
            )
            .unwrap();
        let Step::Change(_, c) = step else {
            panic!("no change")
        };
        assert_eq!(c.op, Op::Delete);
        assert!(c.after.is_none());
        let before = c.before.unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before["id"], "k");
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut s = StreamState::new();
        s.apply(1, &outbox_relation()).unwrap();
        let ins = wire::insert(9, &[t("a"), t("b"), t("{}"), Value::Null, Value::Null]);
        assert_eq!(s.apply(2, &ins), Err(StreamError::OutsideTransaction));
        s.begin(1, 2, 3);
        assert_eq!(
            s.apply(2, &wire::insert(10, &[])),
            Err(StreamError::UnknownRelation(10))
        );
        assert!(matches!(
            s.apply(2, &wire::insert(9, &[t("a")])),
            Err(StreamError::ColumnCount { .. })
        ));
    }

    #[test]
    fn commits_at_or_below_the_checkpoint_are_replays() {
        // Commit A: record at 100..140; commit B: record at 200..240.
        let (a_final, a_end, b_final) = (100, 140, 200);
        assert!(already_published(a_final, a_end), "A itself, acknowledged");
        assert!(!already_published(b_final, a_end), "B comes after A's end");
        assert!(
            !already_published(a_final, 0),
            "no checkpoint: nothing skipped"
        );
        assert!(
            !already_published(a_final, a_final),
            "A's end is past its start"
        );
    }

    #[test]
    fn snapshot_rows_are_reads_with_utc_timestamps_as_the_stream_writes_them() {
        let row = serde_json::json!({"id": 1, "created_at": "2026-11-22T23:55:20.123+00:00", "name": "x+00:00"});
        let c = snapshot_change(
            "public",
            "outbox",
            row.as_object().cloned().unwrap(),
            vec!["id".into()],
            9,
        );
        assert_eq!(c.op, Op::Read);
        let after = c.after.unwrap();
        assert_eq!(after["created_at"], "2026-11-22T23:55:20.123Z");
        assert_eq!(after["name"], "x+00:00");
    }

    #[test]
    fn values_are_typed_by_oid() {
        assert_eq!(json_value(16, &t("t")), Json::Bool(true));
        assert_eq!(json_value(23, &t("-7")), Json::from(-7));
        assert_eq!(json_value(701, &t("1.5")), Json::from(1.5));
        assert_eq!(json_value(1700, &t("1.50")), Json::from("1.50"));
        assert_eq!(json_value(25, &Value::Null), Json::Null);
        assert_eq!(
            json_value(25, &Value::Unchanged),
            Json::from(UNAVAILABLE_VALUE)
        );
        assert_eq!(json_value(3802, &t("not json")), Json::from("not json"));
        assert_eq!(
            json_value(1184, &t("2026-01-02 03:04:05+00")),
            Json::from("2026-01-02T03:04:05Z")
        );
    }
}
