//! Cursors: where the next page starts, signed so a client can neither forge
//! nor edit one, and bound to the user it was issued to.
//!
//! A feed page continues strictly after the last card it showed, in the
//! slice's order (score descending, then item id descending). Stored scores
//! only change when a new signal arrives (see `features`), so items inserted
//! while someone pages never shift the rest: no duplicates, no gaps.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::Sha256;

/// Cards per page when the request asks for none.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest feed page; larger requests are clamped.
pub const MAX_PAGE_SIZE: u32 = 50;
/// Tag bytes kept from the HMAC.
const TAG_LEN: usize = 16;

/// The page size to use, and whether the request was clamped.
pub fn page_size(requested: u32, default: u32, max: u32) -> (u32, bool) {
    match requested {
        0 => (default, false),
        n if n > max => (max, true),
        n => (n, false),
    }
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is malformed or was altered")]
    Tampered,
    #[error("the cursor belongs to another user")]
    OtherUser,
}

/// Signs and checks cursors with one key.
#[derive(Clone)]
pub struct Sealer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// What the cursor pages (`feed`, `timeline`).
    k: String,
    /// The user it was issued to.
    u: String,
    p: T,
}

impl Sealer {
    pub fn new(key: &[u8]) -> Sealer {
        Sealer { key: key.to_vec() }
    }

    fn tag(&self, body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(body);
        mac.finalize().into_bytes()[..TAG_LEN].to_vec()
    }

    /// `position` of a `kind` listing, for `user`.
    pub fn seal<T: Serialize>(&self, kind: &str, user: &str, position: &T) -> String {
        let body = serde_json::to_vec(&Envelope {
            k: kind.to_string(),
            u: user.to_string(),
            p: position,
        })
        .expect("positions serialize");
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(self.tag(&body))
        )
    }

    /// The position in `cursor`, if it is intact, of `kind` and `user`'s.
    pub fn open<T: DeserializeOwned>(
        &self,
        kind: &str,
        user: &str,
        cursor: &str,
    ) -> Result<T, CursorError> {
        let (body, tag) = cursor.split_once('.').ok_or(CursorError::Tampered)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CursorError::Tampered)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Tampered)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(&body);
        mac.verify_truncated_left(&tag)
            .map_err(|_| CursorError::Tampered)?;
        if tag.len() != TAG_LEN {
            return Err(CursorError::Tampered);
        }
        let env: Envelope<T> = serde_json::from_slice(&body).map_err(|_| CursorError::Tampered)?;
        if env.k != kind {
            return Err(CursorError::Tampered);
        }
        if env.u != user {
            return Err(CursorError::OtherUser);
        }
        Ok(env.p)
    }
}

/// Where a feed page ended: the last card's stored score and item, and its
/// rank (so the next page numbers on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedPosition {
    pub score: f64,
    pub item: String,
    pub rank: u32,
}

/// Whether (score, item) comes after `p` in slice order.
pub fn after(p: &FeedPosition, score: f64, item: &str) -> bool {
    match score.total_cmp(&p.score) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Equal => item < p.item.as_str(),
        std::cmp::Ordering::Greater => false,
    }
}

/// One page of `slice` (in slice order) after `from`: the cards with their
/// ranks, and the position to continue from when more may follow.
pub fn page(
    slice: &[(f64, String)],
    from: Option<&FeedPosition>,
    size: usize,
) -> (Vec<(u32, f64, String)>, Option<FeedPosition>) {
    let start_rank = from.map_or(0, |p| p.rank);
    let rest = slice
        .iter()
        .filter(|(s, i)| from.is_none_or(|p| after(p, *s, i)));
    let cards: Vec<(u32, f64, String)> = rest
        .take(size + 1)
        .enumerate()
        .map(|(n, (s, i))| (start_rank + n as u32 + 1, *s, i.clone()))
        .collect();
    if cards.len() > size {
        let mut cards = cards;
        cards.truncate(size);
        let (rank, score, item) = cards.last().cloned().expect("size > 0");
        (cards, Some(FeedPosition { score, item, rank }))
    } else {
        (cards, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::by_score;
    use proptest::prelude::*;

    #[test]
    fn cursors_are_sealed_and_bound_to_their_user() {
        let s = Sealer::new(b"k");
        let p = FeedPosition {
            score: 1.5,
            item: "a".into(),
            rank: 20,
        };
        let c = s.seal("feed", "u1", &p);
        assert_eq!(s.open::<FeedPosition>("feed", "u1", &c).unwrap(), p);
        assert_eq!(
            s.open::<FeedPosition>("feed", "u2", &c).unwrap_err(),
            CursorError::OtherUser
        );
        assert_eq!(
            s.open::<FeedPosition>("timeline", "u1", &c).unwrap_err(),
            CursorError::Tampered
        );
        let (body, tag) = c.split_once('.').unwrap();
        let mut forged = URL_SAFE_NO_PAD.decode(body).unwrap();
        forged[10] ^= 1;
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged));
        assert!(s.open::<FeedPosition>("feed", "u1", &forged).is_err());
        assert!(
            Sealer::new(b"other")
                .open::<FeedPosition>("feed", "u1", &c)
                .is_err()
        );
        for junk in ["", ".", "abc", "a.b", &format!("{body}.")] {
            assert!(
                s.open::<FeedPosition>("feed", "u1", junk).is_err(),
                "{junk}"
            );
        }
    }

    #[test]
    fn page_sizes_default_and_clamp() {
        assert_eq!(page_size(0, 20, 50), (20, false));
        assert_eq!(page_size(7, 20, 50), (7, false));
        assert_eq!(page_size(500, 20, 50), (50, true));
    }

    proptest! {
        /// Paging while new items are inserted anywhere: every item that was
        /// there at the start is shown exactly once, nothing twice.
        #[test]
        fn no_duplicates_and_no_gaps_under_concurrent_inserts(
            initial in proptest::collection::btree_map("[a-z]{1,3}", 0u8..8, 1..80),
            inserts in proptest::collection::vec(("[A-Z]{1,3}", 0u8..8), 0..40),
            size in 1usize..15,
        ) {
            // Few distinct scores, so ties (broken by item id) are common.
            let mut slice: Vec<(f64, String)> =
                initial.iter().map(|(i, s)| (*s as f64, i.clone())).collect();
            slice.sort_by(by_score);
            let start: Vec<String> = slice.iter().map(|(_, i)| i.clone()).collect();
            let mut inserts = inserts.into_iter();
            let mut seen: Vec<String> = vec![];
            let mut from: Option<FeedPosition> = None;
            loop {
                let (cards, next) = page(&slice, from.as_ref(), size);
                for (n, (rank, _, _)) in cards.iter().enumerate() {
                    prop_assert_eq!(*rank as usize, seen.len() + n + 1);
                }
                seen.extend(cards.into_iter().map(|(_, _, i)| i));
                if let Some((i, s)) = inserts.next()
                    && !slice.iter().any(|(_, x)| *x == i)
                {
                    slice.push((s as f64, i));
                    slice.sort_by(by_score);
                }
                match next {
                    Some(p) => from = Some(p),
                    None => break,
                }
            }
            let mut unique = seen.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), seen.len(), "a card was shown twice");
            for i in start {
                prop_assert!(seen.contains(&i), "{} was skipped", i);
            }
        }
    }
}
