//! Activities: what a user does to a product (like, unlike, view, comment)
//! or to another user (follow), validated, with an id derived from the
//! client's own id so a replay is recognised, and the day bucket that
//! partitions the timeline.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shopstream_platform::error::FieldError;
use uuid::Uuid;

/// Longest client id, in characters.
pub const MAX_CLIENT_ID: usize = 128;
/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;
/// One day in milliseconds: the timeline's partition width.
pub const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Like,
    Unlike,
    View,
    Comment,
    Follow,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Like,
        Kind::Unlike,
        Kind::View,
        Kind::Comment,
        Kind::Follow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Like => "like",
            Kind::Unlike => "unlike",
            Kind::View => "view",
            Kind::Comment => "comment",
            Kind::Follow => "follow",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an activity is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    Product(Uuid),
    User(Uuid),
}

impl Object {
    /// Parse `product:<uuid>` or `user:<uuid>`.
    pub fn parse(s: &str) -> Result<Object, String> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not kind:id (product:<id> or user:<id>)"))?;
        let id = Uuid::parse_str(id).map_err(|_| format!("{id:?} is not a UUID"))?;
        match kind {
            "product" => Ok(Object::Product(id)),
            "user" => Ok(Object::User(id)),
            other => Err(format!(
                "unknown object kind {other:?}: use product:<id> or user:<id>"
            )),
        }
    }

    /// The product, for objects that are one.
    pub fn product(self) -> Option<Uuid> {
        match self {
            Object::Product(id) => Some(id),
            Object::User(_) => None,
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Product(id) => write!(f, "product:{id}"),
            Object::User(id) => write!(f, "user:{id}"),
        }
    }
}

/// A validated request to record an activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    pub actor: Uuid,
    pub kind: Kind,
    pub object: Object,
    pub client_id: String,
    pub text: String,
}

/// Check a request; every problem is reported, with its field.
pub fn validate(
    actor: &str,
    kind: Option<Kind>,
    object: &str,
    client_id: &str,
    text: &str,
) -> Result<NewActivity, Vec<FieldError>> {
    let mut errors = vec![];
    let actor_id = Uuid::parse_str(actor).ok();
    if actor_id.is_none() {
        errors.push(FieldError::new("actor_id", "must be a user id (a UUID)"));
    }
    if kind.is_none() {
        errors.push(FieldError::new(
            "kind",
            "unknown activity kind: use like, unlike, view, comment or follow",
        ));
    }
    let obj = match Object::parse(object) {
        Ok(o) => Some(o),
        Err(e) => {
            errors.push(FieldError::new("object", e));
            None
        }
    };
    if let (Some(k), Some(o)) = (kind, obj) {
        match (k, o) {
            (Kind::Follow, Object::User(u)) if Some(u) == actor_id => {
                errors.push(FieldError::new("object", "a user cannot follow themselves"))
            }
            (Kind::Follow, Object::User(_)) => {}
            (Kind::Follow, Object::Product(_)) => {
                errors.push(FieldError::new("object", "follow takes user:<id>"))
            }
            (_, Object::User(_)) => {
                errors.push(FieldError::new("object", format!("{k} takes product:<id>")))
            }
            (_, Object::Product(_)) => {}
        }
    }
    if client_id.is_empty() || client_id.chars().count() > MAX_CLIENT_ID {
        errors.push(FieldError::new(
            "client_id",
            format!("required, 1 to {MAX_CLIENT_ID} characters"),
        ));
    }
    match kind {
        Some(Kind::Comment) if text.trim().is_empty() => {
            errors.push(FieldError::new("text", "a comment needs text"))
        }
        Some(Kind::Comment) if text.chars().count() > MAX_COMMENT_CHARS => errors.push(
            FieldError::new("text", format!("at most {MAX_COMMENT_CHARS} characters")),
        ),
        Some(k) if k != Kind::Comment && !text.is_empty() => {
            errors.push(FieldError::new("text", format!("{k} takes no text")))
        }
        _ => {}
    }
    match (actor_id, kind, obj) {
        (Some(actor), Some(kind), Some(object)) if errors.is_empty() => Ok(NewActivity {
            actor,
            kind,
            object,
            client_id: client_id.to_string(),
            text: text.to_string(),
        }),
        _ => Err(errors),
    }
}

/// The id of the activity `client_id` names for `actor` in `tenant`: the
/// same on every replay, never equal to a generated (v4/v7) id.
pub fn activity_id(tenant: &str, actor: Uuid, client_id: &str) -> Uuid {
    let mut h = Sha256::new();
    for part in [tenant.as_bytes(), actor.as_bytes(), client_id.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

/// The day bucket of `ts_ms` (days since the Unix epoch, UTC).
pub fn day(ts_ms: i64) -> i32 {
    ts_ms.div_euclid(DAY_MS) as i32
}

/// One recorded activity (what the timeline stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub tenant: String,
    pub id: Uuid,
    pub actor: Uuid,
    pub kind: Kind,
    pub object: Object,
    pub text: String,
    pub client_id: String,
    pub ts_ms: i64,
}

impl Activity {
    pub fn new(tenant: &str, a: NewActivity, ts_ms: i64) -> Activity {
        Activity {
            tenant: tenant.to_string(),
            id: activity_id(tenant, a.actor, &a.client_id),
            actor: a.actor,
            kind: a.kind,
            object: a.object,
            text: a.text,
            client_id: a.client_id,
            ts_ms,
        }
    }

    /// Whether `other` asks for the same thing (a replay), whatever its time.
    pub fn same_request(&self, other: &NewActivity) -> bool {
        self.actor == other.actor
            && self.kind == other.kind
            && self.object == other.object
            && self.text == other.text
            && self.client_id == other.client_id
    }

    /// Its event on `activity.raw`: no free text (a comment's words stay in
    /// the timeline, which erasure can reach; events are immutable).
    pub fn event(&self) -> ActivityEvent {
        ActivityEvent {
            activity_id: self.id,
            actor_id: self.actor,
            kind: self.kind,
            object: self.object.to_string(),
            ts_ms: self.ts_ms,
        }
    }
}

/// `event_type` of an activity on `activity.raw` (schema version 1).
pub const EVENT_TYPE: &str = "activity.published";

/// Payload of [`EVENT_TYPE`], keyed by `actor_id` (a user's activities stay
/// in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEvent {
    pub activity_id: Uuid,
    pub actor_id: Uuid,
    pub kind: Kind,
    pub object: String,
    pub ts_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0190a0a0-0000-7000-8000-000000000001";
    const P: &str = "product:0190a0a0-0000-7000-8000-0000000000aa";

    #[test]
    fn valid_requests_pass_and_every_problem_is_named() {
        let ok = validate(A, Some(Kind::Like), P, "c1", "").unwrap();
        assert_eq!(ok.kind, Kind::Like);
        assert!(validate(A, Some(Kind::Comment), P, "c2", "nice").is_ok());
        let errs = validate("nope", None, "post:1", "", "x").unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["actor_id", "kind", "object", "client_id"]);
        let self_follow = validate(A, Some(Kind::Follow), &format!("user:{A}"), "c", "");
        assert_eq!(self_follow.unwrap_err()[0].field, "object");
        assert!(validate(A, Some(Kind::Follow), P, "c", "").is_err());
        assert!(
            validate(A, Some(Kind::Like), &format!("user:{A}"), "c", "").is_err(),
            "likes are for products"
        );
        assert!(validate(A, Some(Kind::Comment), P, "c", "  ").is_err());
        assert!(validate(A, Some(Kind::Like), P, "c", "words").is_err());
        assert!(validate(A, Some(Kind::Like), P, &"x".repeat(129), "").is_err());
    }

    #[test]
    fn ids_are_stable_per_client_id_and_distinct_otherwise() {
        let actor = Uuid::parse_str(A).unwrap();
        let a = activity_id("t", actor, "c1");
        assert_eq!(a, activity_id("t", actor, "c1"));
        assert_ne!(a, activity_id("t", actor, "c2"));
        assert_ne!(a, activity_id("u", actor, "c1"));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(activity_id("ab", actor, "c"), activity_id("a", actor, "bc"));
        assert_eq!(a.get_version_num(), 8);
    }

    #[test]
    fn days_split_at_utc_midnight() {
        assert_eq!(day(0), 0);
        assert_eq!(day(DAY_MS - 1), 0);
        assert_eq!(day(DAY_MS), 1);
        assert_eq!(day(-1), -1);
    }
}
