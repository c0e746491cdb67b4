//! The store inventory needs. Adapters: `adapters::postgres` (production) and
//! `adapters::memory` (unit tests, simulator); both pass `adapters::contract`.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{Line, State};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: Uuid,
    pub tenant_id: String,
    pub order_id: String,
    pub lines: Vec<Line>,
    pub state: State,
    pub expires_at_ms: i64,
}

impl Reservation {
    /// What `release_order` stores for an order that never reserved: a
    /// released reservation without lines, so a later reserve holds nothing.
    pub fn released_empty(id: Uuid, tenant: &str, order_id: &str) -> Reservation {
        Reservation {
            id,
            tenant_id: tenant.to_string(),
            order_id: order_id.to_string(),
            lines: Vec::new(),
            state: State::Released,
            expires_at_ms: 0,
        }
    }
}

/// Stock of one SKU. `on_hand - reserved` is available to reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stock {
    pub on_hand: i64,
    pub reserved: i64,
    /// Units committed (sold) so far.
    pub committed: i64,
}

impl Stock {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("not enough stock for {sku_id}")]
    InsufficientStock { sku_id: String },
    #[error("unknown sku {0}")]
    UnknownSku(String),
    #[error("reservation not found")]
    NotFound,
    #[error("reservation is {0}")]
    Conflict(&'static str),
    #[error("order {0} already holds a different reservation")]
    OrderMismatch(String),
    #[error("storage: {0}")]
    Storage(String),
}

/// Stock and reservations.
///
/// Contract (checked by `adapters::contract`):
/// - `reserve` is atomic: either every line is held or none is; it MUST NOT
///   let `reserved` exceed `on_hand` under any concurrency;
/// - `reserve` is idempotent per (tenant, order): the same lines again return
///   the existing reservation; different lines are `OrderMismatch`; once the
///   order's reservation is released or expired, `reserve` returns it as it
///   is and holds nothing (an order holds stock at most once);
/// - `release_order` releases the order's reservation like `release`; when
///   the order has none it stores a released one without lines, so a
///   `reserve` for the order arriving later holds nothing;
/// - `commit`/`release`/`expire_due` follow `domain::apply`, moving stock only
///   on a real change, so repeats never move stock twice;
/// - stock is conserved: on_hand + committed is constant except through `set_stock`.
#[async_trait]
pub trait InventoryStore: Send + Sync + 'static {
    async fn set_stock(&self, tenant: &str, sku_id: &str, on_hand: i64) -> Result<(), StoreError>;
    async fn stock(&self, tenant: &str, sku_id: &str) -> Result<Stock, StoreError>;
    async fn reserve(
        &self,
        tenant: &str,
        order_id: &str,
        lines: &[Line],
        new_id: Uuid,
        expires_at_ms: i64,
    ) -> Result<Reservation, StoreError>;
    async fn commit(&self, tenant: &str, id: Uuid) -> Result<Reservation, StoreError>;
    async fn release(&self, tenant: &str, id: Uuid) -> Result<Reservation, StoreError>;
    /// Release by order (the caller never learned the reservation id);
    /// `new_id` names the empty released reservation stored when there is none.
    async fn release_order(
        &self,
        tenant: &str,
        order_id: &str,
        new_id: Uuid,
    ) -> Result<Reservation, StoreError>;
    /// Expire up to `limit` held reservations due at `now_ms`; returns them.
    async fn expire_due(&self, now_ms: i64, limit: i64) -> Result<Vec<Reservation>, StoreError>;
}
