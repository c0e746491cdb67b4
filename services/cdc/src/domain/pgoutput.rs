//! A decoder of pgoutput (protocol version 1) messages: Begin, Commit,
//! Origin, Relation, Type, Insert, Update, Delete and Truncate, with tuple
//! values in text format. Pure: bytes in, typed messages out.
//!
//! Wire format: <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.
//! Every integer is big-endian; strings are NUL-terminated UTF-8.

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01 UTC).
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A Postgres timestamp (µs since 2000-01-01) as Unix milliseconds.
pub fn pg_micros_to_unix_ms(pg_us: i64) -> i64 {
    (pg_us + PG_EPOCH_OFFSET_US).div_euclid(1_000)
}

/// A Postgres LSN in its text form (`16/B374D848`).
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("pgoutput message truncated while reading {0}")]
    Truncated(&'static str),
    #[error("pgoutput message is empty")]
    Empty,
    #[error("unknown pgoutput message tag {0:#04x}")]
    UnknownTag(u8),
    #[error("unknown tuple column kind {0:#04x}")]
    UnknownColumnKind(u8),
    #[error("unexpected tuple marker {0:#04x} in {1}")]
    UnexpectedMarker(u8, &'static str),
    #[error("string is not UTF-8 in {0}")]
    NotUtf8(&'static str),
}

/// One column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity (the key).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_mod: i32,
}

/// A table's description; sent before the first change to it in a session
/// and again after its schema changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// An unchanged TOASTed value: not sent.
    Unchanged,
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        /// LSN of the commit record.
        final_lsn: u64,
        commit_ts_us: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        end_lsn: u64,
        commit_ts_us: i64,
    },
    Origin {
        lsn: u64,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Vec<Value>,
    },
    Update {
        relation: u32,
        /// The old key (`K`, identity changed) or whole old row (`O`, REPLICA IDENTITY FULL).
        old: Option<Vec<Value>>,
        new: Vec<Value>,
    },
    Delete {
        relation: u32,
        /// The key (`K`) or whole row (`O`).
        old: Vec<Value>,
    },
    Truncate {
        options: u8,
        relations: Vec<u32>,
    },
    /// A message this decoder skips (e.g. a logical decoding message).
    Other(u8),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(self.i32(what)? as u32)
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(self.i64(what)? as u64)
    }
    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or(DecodeError::Truncated(what))?;
        let s = std::str::from_utf8(&self.buf[..end]).map_err(|_| DecodeError::NotUtf8(what))?;
        self.buf = &self.buf[end + 1..];
        Ok(s.to_string())
    }
    fn tuple(&mut self) -> Result<Vec<Value>, DecodeError> {
        let n = self.i16("tuple column count")?.max(0) as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8("tuple column kind")? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' => {
                    let len = self.i32("text length")?.max(0) as usize;
                    let b = self.take(len, "text value")?;
                    Value::Text(
                        std::str::from_utf8(b)
                            .map_err(|_| DecodeError::NotUtf8("text value"))?
                            .to_string(),
                    )
                }
                b'b' => {
                    let len = self.i32("binary length")?.max(0) as usize;
                    Value::Binary(self.take(len, "binary value")?.to_vec())
                }
                k => return Err(DecodeError::UnknownColumnKind(k)),
            });
        }
        Ok(out)
    }
}

/// Decode one pgoutput message.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let (&tag, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    let mut r = Reader { buf: rest };
    Ok(match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("begin final lsn")?,
            commit_ts_us: r.i64("begin commit time")?,
            xid: r.u32("begin xid")?,
        },
        b'C' => Message::Commit {
            flags: r.u8("commit flags")?,
            commit_lsn: r.u64("commit lsn")?,
            end_lsn: r.u64("commit end lsn")?,
            commit_ts_us: r.i64("commit time")?,
        },
        b'O' => Message::Origin {
            lsn: r.u64("origin lsn")?,
            name: r.cstr("origin name")?,
        },
        b'R' => {
            let oid = r.u32("relation oid")?;
            let namespace = r.cstr("relation namespace")?;
            let name = r.cstr("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let n = r.i16("relation column count")?.max(0) as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                columns.push(Column {
                    key: r.u8("column flags")? & 1 == 1,
                    name: r.cstr("column name")?,
                    type_oid: r.u32("column type")?,
                    type_mod: r.i32("column type modifier")?,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type {
            oid: r.u32("type oid")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        },
        b'I' => {
            let relation = r.u32("insert relation")?;
            match r.u8("insert marker")? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                m => return Err(DecodeError::UnexpectedMarker(m, "insert")),
            }
        }
        b'U' => {
            let relation = r.u32("update relation")?;
            let (old, marker) = match r.u8("update marker")? {
                b'K' | b'O' => (Some(r.tuple()?), r.u8("update new marker")?),
                m => (None, m),
            };
            if marker != b'N' {
                return Err(DecodeError::UnexpectedMarker(marker, "update"));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32("delete relation")?;
            match r.u8("delete marker")? {
                b'K' | b'O' => Message::Delete {
                    relation,
                    old: r.tuple()?,
                },
                m => return Err(DecodeError::UnexpectedMarker(m, "delete")),
            }
        }
        b'T' => {
            let n = r.i32("truncate relation count")?.max(0) as usize;
            let options = r.u8("truncate options")?;
            let mut relations = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                relations.push(r.u32("truncate relation")?);
            }
            Message::Truncate { options, relations }
        }
        b'M' => Message::Other(tag),
        t => return Err(DecodeError::UnknownTag(t)),
    })
}

/// Builders of pgoutput bytes, for tests of this decoder and of what uses it.
#[cfg(test)]
pub(crate) mod wire {
    use super::Value;

    pub fn begin(final_lsn: u64, ts_us: i64, xid: u32) -> Vec<u8> {
        let mut b = vec![b'B'];
        b.extend(final_lsn.to_be_bytes());
        b.extend(ts_us.to_be_bytes());
        b.extend(xid.to_be_bytes());
        b
    }

    pub fn commit(lsn: u64, end_lsn: u64, ts_us: i64) -> Vec<u8> {
        let mut b = vec![b'C', 0];
        b.extend(lsn.to_be_bytes());
        b.extend(end_lsn.to_be_bytes());
        b.extend(ts_us.to_be_bytes());
        b
    }

    fn cstr(b: &mut Vec<u8>, s: &str) {
        b.extend(s.as_bytes());
        b.push(0);
    }

    /// Columns: (key, name, type oid).
    pub fn relation(oid: u32, ns: &str, name: &str, cols: &[(bool, &str, u32)]) -> Vec<u8> {
        let mut b = vec![b'R'];
        b.extend(oid.to_be_bytes());
        cstr(&mut b, ns);
        cstr(&mut b, name);
        b.push(b'd');
        b.extend((cols.len() as i16).to_be_bytes());
        for (key, n, ty) in cols {
            b.push(u8::from(*key));
            cstr(&mut b, n);
            b.extend(ty.to_be_bytes());
            b.extend((-1i32).to_be_bytes());
        }
        b
    }

    pub fn tuple(b: &mut Vec<u8>, vals: &[Value]) {
        b.extend((vals.len() as i16).to_be_bytes());
        for v in vals {
            match v {
                Value::Null => b.push(b'n'),
                Value::Unchanged => b.push(b'u'),
                Value::Text(s) => {
                    b.push(b't');
                    b.extend((s.len() as i32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
                Value::Binary(x) => {
                    b.push(b'b');
                    b.extend((x.len() as i32).to_be_bytes());
                    b.extend(x);
                }
            }
        }
    }

    pub fn insert(rel: u32, vals: &[Value]) -> Vec<u8> {
        let mut b = vec![b'I'];
        b.extend(rel.to_be_bytes());
        b.push(b'N');
        tuple(&mut b, vals);
        b
    }

    pub fn update(rel: u32, old: Option<(u8, &[Value])>, new: &[Value]) -> Vec<u8> {
        let mut b = vec![b'U'];
        b.extend(rel.to_be_bytes());
        if let Some((m, o)) = old {
            b.push(m);
            tuple(&mut b, o);
        }
        b.push(b'N');
        tuple(&mut b, new);
        b
    }

    pub fn delete(rel: u32, marker: u8, old: &[Value]) -> Vec<u8> {
        let mut b = vec![b'D'];
        b.extend(rel.to_be_bytes());
        b.push(marker);
        tuple(&mut b, old);
        b
    }

    pub fn t(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{wire::*, *};
    use proptest::prelude::*;

    #[test]
    fn begin_and_commit_round_trip() {
        assert_eq!(
            decode(&begin(0x16_B374_D848, 777, 42)).unwrap(),
            Message::Begin {
                final_lsn: 0x16_B374_D848,
                commit_ts_us: 777,
                xid: 42
            }
        );
        assert_eq!(
            decode(&commit(10, 20, 30)).unwrap(),
            Message::Commit {
                flags: 0,
                commit_lsn: 10,
                end_lsn: 20,
                commit_ts_us: 30
            }
        );
    }

    #[test]
    fn relation_and_row_changes_decode() {
        let rel = decode(&relation(
            7,
            "public",
            "outbox",
            &[(true, "id", 2950), (false, "payload", 3802)],
        ))
        .unwrap();
        let Message::Relation(r) = rel else {
            panic!("not a relation")
        };
        assert_eq!(
            (r.oid, r.name.as_str(), r.namespace.as_str()),
            (7, "outbox", "public")
        );
        assert!(r.columns[0].key && !r.columns[1].key);
        assert_eq!(r.columns[1].type_oid, 3802);

        let ins = decode(&insert(7, &[t("a"), Value::Null])).unwrap();
        assert_eq!(
            ins,
            Message::Insert {
                relation: 7,
                new: vec![t("a"), Value::Null]
            }
        );
        let upd = decode(&update(7, None, &[t("a"), Value::Unchanged])).unwrap();
        assert_eq!(
            upd,
            Message::Update {
                relation: 7,
                old: None,
                new: vec![t("a"), Value::Unchanged]
            }
        );
        let upd = decode(&update(
            7,
            Some((b'O', &[t("x"), t("y")])),
            &[t("a"), t("b")],
        ))
        .unwrap();
        assert!(matches!(upd, Message::Update { old: Some(ref o), .. } if o.len() == 2));
        let del = decode(&delete(7, b'K', &[t("a"), Value::Null])).unwrap();
        assert_eq!(
            del,
            Message::Delete {
                relation: 7,
                old: vec![t("a"), Value::Null]
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(b"Z"), Err(DecodeError::UnknownTag(b'Z')));
        assert!(matches!(decode(b"B\0\0"), Err(DecodeError::Truncated(_))));
        let mut ins = insert(7, &[t("abc")]);
        ins.truncate(ins.len() - 1);
        assert!(matches!(decode(&ins), Err(DecodeError::Truncated(_))));
    }

    #[test]
    fn times_and_lsns_convert() {
        assert_eq!(pg_micros_to_unix_ms(0), 946_684_800_000);
        assert_eq!(pg_micros_to_unix_ms(1_500), 946_684_800_001);
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
        assert_eq!(lsn_text(0), "0/0");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn text_tuples_round_trip(vals in proptest::collection::vec(
            prop_oneof![Just(Value::Null), Just(Value::Unchanged), "[a-z0-9 {}\":]{0,12}".prop_map(Value::Text)],
            0..8,
        )) {
            let m = decode(&insert(1, &vals)).unwrap();
            prop_assert_eq!(m, Message::Insert { relation: 1, new: vals });
        }
    }
}
