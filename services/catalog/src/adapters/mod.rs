//! Backends of the [`crate::ports::ProductRepository`] port: Postgres for every
//! runtime, in-memory for unit tests and the simulator, and the [`contract`]
//! suite both pass.

pub mod contract;
pub mod memory;
pub mod postgres;

use crate::{
    domain::{ChangeKind, OutboxEvent, Product, events, product},
    ports::{RepoError, StockUpdate},
};

/// What a stock update does to the locked `current` product, for every
/// backend alike: the version check, the new product, and its outbox event.
pub(crate) fn plan_stock_update(
    current: &Product,
    u: &StockUpdate,
) -> Result<(Product, OutboxEvent), RepoError> {
    if u.expected_version.is_some_and(|v| v != current.version) {
        return Err(RepoError::Conflict {
            product: current.id,
            current: current.version,
        });
    }
    let next = product::apply_stock(current, &u.sku_id, u.change, u.context.now_ms)
        .map_err(RepoError::Invalid)?;
    let event = events::sku_changed(
        &next,
        &u.sku_id,
        ChangeKind::Updated,
        u.event_id,
        &u.context,
    )
    .ok_or_else(|| RepoError::Internal("sku vanished".into()))?;
    Ok((next, event))
}
