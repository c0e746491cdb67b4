//! The catalog's pure core: identifiers, money, the product aggregate and its
//! validation, listing rules and cursors, and `ProductChanged` events. No I/O,
//! no async, no clock reads: time and ids are passed in.

pub mod events;
pub mod ids;
pub mod money;
pub mod product;
pub mod query;
pub mod validation;

pub use events::{ChangeKind, EventContext, OutboxEvent};
pub use ids::{Category, ProductId, Region, SkuId, Slug, TenantId};
pub use money::{Currency, Money};
pub use product::{
    MoneyDraft, PatchDraft, Product, ProductDraft, ProductPatch, Sku, SkuDraft, SkuPatchDraft,
    StockChange,
};
pub use query::{Cursor, ListParams, ListQuery, Page, ProductFilter, Sort};
pub use validation::{FieldError, FieldErrors};
