//! The messages mail-sim received: each kept as `<id>.eml` (the message as
//! sent) and `<id>.json` (the envelope and headers) under its directory, and
//! listed from memory, rebuilt from the directory at start.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use serde::{Deserialize, Serialize};

/// The header naming the tenant a message is from (notifications sets it).
pub const TENANT_HEADER: &str = "x-shopstream-tenant";

/// Which messages a recipient query selects: those with `to` among their
/// recipients (any case), and, when `tenant` is set, from that tenant or
/// from none named (a message without the header cannot be told apart, so
/// an erasure takes it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient<'a> {
    pub to: &'a str,
    pub tenant: Option<&'a str>,
}

impl Recipient<'_> {
    fn selects(&self, s: &Summary) -> bool {
        let to = self.to.trim();
        s.to.iter().any(|a| a.trim().eq_ignore_ascii_case(to))
            && self
                .tenant
                .is_none_or(|t| s.tenant.is_empty() || s.tenant == t)
    }
}

/// One received message, without its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    /// `MAIL FROM`.
    pub from: String,
    /// Every `RCPT TO`.
    pub to: Vec<String>,
    /// The `Subject:` header, or empty.
    pub subject: String,
    /// The `Message-ID:` header, or empty (a sender that retries after a
    /// crash sends the same id twice; this is how the copies are told apart
    /// from two different messages).
    #[serde(default)]
    pub message_id: String,
    /// The `X-Shopstream-Tenant:` header (the shop the message is from), or
    /// empty: a DSAR erases one tenant's mail of an address.
    #[serde(default)]
    pub tenant: String,
    pub received_at_ms: i64,
    pub size_bytes: usize,
}

/// A message with its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    #[serde(flatten)]
    pub summary: Summary,
    /// The message as received (headers and body), dot-unstuffed.
    pub raw: String,
}

#[derive(Debug, thiserror::Error)]
#[error("mail store at {dir}: {source}")]
pub struct StoreError {
    dir: String,
    source: std::io::Error,
}

/// The message store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    index: Arc<Mutex<Vec<Summary>>>,
}

impl Store {
    /// Open (create) `dir` and list what it holds, oldest first.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut index = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(err)? {
            let path = entry.map_err(err)?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(s) = serde_json::from_str::<Summary>(&text)
            {
                index.push(s);
            }
        }
        index.sort_by_key(|s| (s.received_at_ms, s.id.clone()));
        Ok(Store {
            dir: dir.to_path_buf(),
            index: Arc::new(Mutex::new(index)),
        })
    }

    fn index(&self) -> MutexGuard<'_, Vec<Summary>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep a received message; returns its summary.
    pub fn put(
        &self,
        from: &str,
        to: &[String],
        raw: &str,
        received_at_ms: i64,
    ) -> Result<Summary, StoreError> {
        let summary = Summary {
            id: uuid::Uuid::now_v7().to_string(),
            from: from.to_string(),
            to: to.to_vec(),
            subject: header(raw, "subject"),
            message_id: header(raw, "message-id"),
            tenant: header(raw, TENANT_HEADER),
            received_at_ms,
            size_bytes: raw.len(),
        };
        let err = |source| StoreError {
            dir: self.dir.display().to_string(),
            source,
        };
        std::fs::write(self.dir.join(format!("{}.eml", summary.id)), raw).map_err(err)?;
        let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        std::fs::write(self.dir.join(format!("{}.json", summary.id)), json).map_err(err)?;
        self.index().push(summary.clone());
        Ok(summary)
    }

    /// Every message, newest first.
    pub fn list(&self) -> Vec<Summary> {
        self.index().iter().rev().cloned().collect()
    }

    /// The messages `r` selects, newest first.
    pub fn sent_to(&self, r: &Recipient<'_>) -> Vec<Summary> {
        self.index()
            .iter()
            .rev()
            .filter(|s| r.selects(s))
            .cloned()
            .collect()
    }

    /// Delete the messages `r` selects (both files and the index entry);
    /// returns how many. Deleting again finds none.
    pub fn delete_to(&self, r: &Recipient<'_>) -> Result<usize, StoreError> {
        let mut index = self.index();
        let mut deleted = 0;
        let mut result = Ok(());
        index.retain(|s| {
            if result.is_err() || !r.selects(s) {
                return true;
            }
            for ext in ["eml", "json"] {
                match std::fs::remove_file(self.dir.join(format!("{}.{ext}", s.id))) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        result = Err(StoreError {
                            dir: self.dir.display().to_string(),
                            source: e,
                        });
                        // Kept in the index: a retry deletes it.
                        return true;
                    }
                    _ => {}
                }
            }
            deleted += 1;
            false
        });
        result.map(|()| deleted)
    }

    /// One message with its text.
    pub fn get(&self, id: &str) -> Option<Message> {
        let summary = self.index().iter().find(|s| s.id == id).cloned()?;
        let raw = std::fs::read_to_string(self.dir.join(format!("{id}.eml"))).ok()?;
        Some(Message { summary, raw })
    }
}

/// Header `name` of a message (its first line only), or empty.
fn header(raw: &str, name: &str) -> String {
    raw.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, value) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_kept_listed_newest_first_and_found_again_after_a_restart() {
        let dir = std::env::temp_dir().join(format!("mail-sim-{}", uuid::Uuid::now_v7()));
        let store = Store::open(&dir).unwrap();
        let a = store
            .put("a@x", &["b@y".into()], "Subject: one\r\n\r\nhi\r\n", 1)
            .unwrap();
        let b = store
            .put("a@x", &["c@y".into()], "From: a@x\r\n\r\nno subject\r\n", 2)
            .unwrap();
        assert_eq!(a.subject, "one");
        assert_eq!(b.subject, "");
        let again = Store::open(&dir).unwrap();
        assert_eq!(again.list(), vec![b.clone(), a.clone()]);
        assert_eq!(again.get(&a.id).unwrap().raw, "Subject: one\r\n\r\nhi\r\n");
        assert!(again.get("nope").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn messages_to_an_address_are_listed_and_deleted_by_tenant() {
        let dir = std::env::temp_dir().join(format!("mail-sim-{}", uuid::Uuid::now_v7()));
        let store = Store::open(&dir).unwrap();
        let from = |t: &str| format!("X-Shopstream-Tenant: {t}\r\nSubject: s\r\n\r\nhi\r\n");
        let a = store.put("s@x", &["Ada@Y".into()], &from("t1"), 1).unwrap();
        let b = store.put("s@x", &["ada@y".into()], &from("t2"), 2).unwrap();
        let c = store
            .put("s@x", &["ada@y".into(), "bob@y".into()], "\r\nhi", 3)
            .unwrap();
        let d = store.put("s@x", &["bob@y".into()], &from("t1"), 4).unwrap();
        assert_eq!(a.tenant, "t1");
        let ada_t1 = Recipient {
            to: "ada@y",
            tenant: Some("t1"),
        };
        assert_eq!(store.sent_to(&ada_t1), vec![c.clone(), a.clone()]);
        let ada = Recipient {
            to: "ADA@y",
            tenant: None,
        };
        assert_eq!(store.sent_to(&ada).len(), 3);
        assert_eq!(store.delete_to(&ada_t1).unwrap(), 2);
        assert_eq!(store.delete_to(&ada_t1).unwrap(), 0);
        let again = Store::open(&dir).unwrap();
        assert_eq!(again.list(), vec![d, b]);
        assert!(again.get(&a.id).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
