//! Analytics as a DSAR participant (ADR 0012). What it keeps of a person:
//!
//! | store | what | erase |
//! |---|---|---|
//! | `analytics.visitors` | the visitor ids (`ss_vid` cookie) a user acted as, from the user id the gateway puts on each signed-in action | deleted |
//! | `analytics.facts` | the actions of those visitors: event id, time, visitor id, what (view, search, add to cart, checkout) | deleted; open days are counted again without them |
//!
//! A fact keeps no user id, object, device or referrer: those stay in the
//! `analytics.raw` events, which this service reads and does not own; events
//! carry pseudonymous ids only (ADR 0012) and age out with the topic's
//! retention. Order and payment facts carry order ids and amounts only, and
//! the orders themselves are anonymised by orders: they name no one.
//!
//! No rollup row is per person: `daily` holds one tenant's totals per day
//! (visitors, sessions, actions, orders, money, checkout times) and stays as
//! published. The open day's in-memory rollup does keep action times per
//! visitor (to count sessions); an erase recounts the open days it touched,
//! so those go too. Actions of a visitor before it signed in are the
//! person's as well, and go with the visitor id; actions the subject takes
//! after the erase under the same cookie while signed out name no one.

use std::sync::Arc;

use serde_json::json;
use shopstream_dsar::{Document, Erasure, Error, Export, StoreCount, Subject};

use crate::store::Rollups;

pub const VISITORS: &str = "analytics.visitors";
pub const FACTS: &str = "analytics.facts";

/// Analytics' participant.
pub struct Participant {
    rollups: Arc<Rollups>,
}

impl Participant {
    pub fn new(rollups: Arc<Rollups>) -> Participant {
        Participant { rollups }
    }
}

#[async_trait::async_trait]
impl shopstream_dsar::Participant for Participant {
    fn name(&self) -> &'static str {
        "analytics"
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        let (visitors, facts) = self
            .rollups
            .user_data(&s.tenant, &s.user_id.to_string())
            .await?;
        let visitors: Vec<_> = visitors
            .into_iter()
            .map(|(visitor_id, first_seen_ms)| {
                json!({"visitor_id": visitor_id, "first_seen_ms": first_seen_ms})
            })
            .collect();
        Ok(Export {
            counts: vec![
                StoreCount::new(VISITORS, visitors.len() as u64, "visitor ids"),
                StoreCount::new(FACTS, facts.len() as u64, "actions"),
            ],
            documents: vec![
                Document {
                    store: VISITORS.into(),
                    json: json!(visitors),
                },
                Document {
                    store: FACTS.into(),
                    json: json!(facts),
                },
            ],
            objects: vec![],
        })
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        let (facts, links) = self
            .rollups
            .erase_user(&s.tenant, &s.user_id.to_string())
            .await?;
        Ok(Erasure {
            counts: vec![
                StoreCount::new(VISITORS, links, "visitor ids deleted"),
                StoreCount::new(FACTS, facts, "actions deleted"),
            ],
            retained: vec![],
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        let (links, facts) = self
            .rollups
            .user_counts(&s.tenant, &s.user_id.to_string())
            .await?;
        Ok(vec![
            StoreCount::new(VISITORS, links, "visitor ids"),
            StoreCount::new(FACTS, facts, "actions"),
        ])
    }
}
