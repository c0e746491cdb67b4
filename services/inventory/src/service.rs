//! Inventory's use cases over the store: validation, TTLs on the `Clock`
//! port, ids on `IdGen`, and the expiry worker.

use std::{sync::Arc, time::Duration};

use shopstream_platform::{clock::Clock, ids::IdGen, shutdown};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    domain::{self, FieldError, Line},
    ports::{InventoryStore, Reservation, Stock, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Inventory {
    pub store: Arc<dyn InventoryStore>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inventory")
    }
}

/// Reservations expired per sweep of the worker.
pub const EXPIRY_BATCH: i64 = 500;

impl Inventory {
    #[tracing::instrument(skip(self, lines), fields(lines = lines.len()))]
    pub async fn reserve(
        &self,
        tenant: &str,
        order_id: &str,
        lines: &[Line],
        ttl_s: u32,
    ) -> Result<Reservation, InventoryError> {
        let mut errors = Vec::new();
        if order_id.trim().is_empty() {
            errors.push(FieldError {
                field: "order_id".into(),
                message: "is required".into(),
            });
        }
        let ttl = domain::ttl_s(ttl_s).map_err(|e| errors.push(e)).ok();
        let lines = domain::normalise(lines).map_err(|e| errors.extend(e)).ok();
        let (Some(ttl), Some(lines)) = (ttl, lines) else {
            return Err(InventoryError::Invalid(errors));
        };
        if !errors.is_empty() {
            return Err(InventoryError::Invalid(errors));
        }
        // The catalog's `reservation-ttl-short` replaces the TTL asked for.
        let ttl = match shopstream_platform::faults::value("reservation-ttl-short", "inventory") {
            Some(short_s) => {
                tracing::info!(
                    fault = "reservation-ttl-short",
                    ttl_s = short_s,
                    asked_ttl_s = ttl,
                    "reservation expires early"
                );
                u32::try_from(short_s).unwrap_or(ttl)
            }
            None => ttl,
        };
        let expires = self.clock.now_ms() + i64::from(ttl) * 1000;
        Ok(self
            .store
            .reserve(tenant, order_id, &lines, self.ids.new_id(), expires)
            .await?)
    }

    pub async fn stock(&self, tenant: &str, sku_id: &str) -> Result<Stock, InventoryError> {
        Ok(self.store.stock(tenant, sku_id).await?)
    }

    /// Set the units on hand of a SKU (admin, seeding); returns the new stock.
    pub async fn set_stock(
        &self,
        tenant: &str,
        sku_id: &str,
        on_hand: i64,
    ) -> Result<Stock, InventoryError> {
        let mut errors = Vec::new();
        if sku_id.trim().is_empty() {
            errors.push(FieldError {
                field: "sku_id".into(),
                message: "is required".into(),
            });
        }
        if on_hand < 0 {
            errors.push(FieldError {
                field: "on_hand".into(),
                message: "must not be negative".into(),
            });
        }
        if !errors.is_empty() {
            return Err(InventoryError::Invalid(errors));
        }
        self.store.set_stock(tenant, sku_id, on_hand).await?;
        Ok(self.store.stock(tenant, sku_id).await?)
    }

    pub async fn commit(&self, tenant: &str, id: Uuid) -> Result<Reservation, InventoryError> {
        Ok(self.store.commit(tenant, id).await?)
    }

    pub async fn release(&self, tenant: &str, id: Uuid) -> Result<Reservation, InventoryError> {
        Ok(self.store.release(tenant, id).await?)
    }

    /// Release an order's hold when the caller never learned its id (the
    /// saga's undo of a reserve whose answers were all lost).
    pub async fn release_order(
        &self,
        tenant: &str,
        order_id: &str,
    ) -> Result<Reservation, InventoryError> {
        if order_id.trim().is_empty() {
            return Err(InventoryError::Invalid(vec![FieldError {
                field: "order_id".into(),
                message: "is required when reservation_id is empty".into(),
            }]));
        }
        Ok(self
            .store
            .release_order(tenant, order_id, self.ids.new_id())
            .await?)
    }

    /// One sweep: expire every due hold (in batches). Returns how many expired.
    pub async fn expire_due(&self) -> Result<usize, InventoryError> {
        let mut total = 0;
        loop {
            let n = self
                .store
                .expire_due(self.clock.now_ms(), EXPIRY_BATCH)
                .await?
                .len();
            total += n;
            if (n as i64) < EXPIRY_BATCH {
                return Ok(total);
            }
        }
    }

    /// Sweep every `interval` until `shutdown`.
    pub async fn run_expiry(&self, interval: Duration, shutdown: CancellationToken) {
        while shutdown::sleep_or_stop(&shutdown, interval).await {
            match self.expire_due().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired reservations returned their stock"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    }
}
