//! The product aggregate: a product, its regions and its SKUs with price and
//! stock. Drafts (raw input with every field optional) are validated into
//! products, patches are applied to them, and stock changes are computed here;
//! each returns every invalid field at once.
//!
//! Invariants of a [`Product`]: at least one region and one SKU, no duplicate
//! regions or SKU codes, all SKUs priced in one currency, stock never negative,
//! `version >= 1` and bumped by exactly one on every change.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use uuid::Uuid;

use super::{
    events::{self, ChangeKind, EventContext, OutboxEvent},
    ids::{Category, ProductId, Region, SkuId, Slug},
    money::{Currency, Money},
    validation::{FieldErrors, length},
};

/// Longest title accepted.
pub const TITLE_MAX_CHARS: usize = 200;
/// Longest description accepted.
pub const DESCRIPTION_MAX_CHARS: usize = 5_000;
/// Most regions on one product.
pub const MAX_REGIONS: usize = 16;
/// Most tags on one product.
pub const MAX_TAGS: usize = 32;
/// Longest tag accepted.
pub const TAG_MAX_CHARS: usize = 64;
/// Longest image key accepted.
pub const IMAGE_KEY_MAX_CHARS: usize = 512;
/// Most SKUs on one product.
pub const MAX_SKUS: usize = 100;
/// Longest SKU label accepted.
pub const SKU_NAME_MAX_CHARS: usize = 200;
/// Most attributes on one SKU.
pub const MAX_ATTRIBUTES: usize = 16;
/// Longest attribute key or value accepted.
pub const ATTRIBUTE_MAX_CHARS: usize = 128;
/// Largest stock count accepted.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Longest `reason` accepted on a stock change (it goes to the logs).
pub const STOCK_REASON_MAX_CHARS: usize = 200;

/// A sellable variant with its price and the catalog's view of its stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sku {
    #[serde(rename = "sku_id")]
    pub id: SkuId,
    /// Variant label, e.g. "navy / M".
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    pub price: Money,
    /// Units available for sale, as last reported. Never negative.
    pub stock: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: ProductId,
    pub slug: Slug,
    pub title: String,
    pub description: String,
    pub category: Category,
    /// Regions the product is sold in; the first is its home region.
    pub regions: Vec<Region>,
    pub tags: Vec<String>,
    pub image_key: Option<String>,
    pub skus: Vec<Sku>,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Product {
    /// The lowest SKU price: what `price_asc` / `price_desc` sort by.
    pub fn min_price(&self) -> Money {
        self.skus
            .iter()
            .map(|s| s.price)
            .min_by_key(|p| p.amount_minor)
            .unwrap_or(Money {
                amount_minor: 0,
                currency: self.currency(),
            })
    }

    /// The one currency all SKUs are priced in.
    pub fn currency(&self) -> Currency {
        self.skus
            .first()
            .map(|s| s.price.currency)
            .unwrap_or(Currency::NONE)
    }

    /// The home region: where the product is primarily sold.
    pub fn home_region(&self) -> Option<&Region> {
        self.regions.first()
    }

    pub fn sku(&self, id: &SkuId) -> Option<&Sku> {
        self.skus.iter().find(|s| &s.id == id)
    }

    /// Check the aggregate's invariants (a bug if this fails on a product this
    /// module produced; adapters call it on rows they load).
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.regions.is_empty() {
            return Err("a product needs at least one region".into());
        }
        if self.skus.is_empty() {
            return Err("a product needs at least one sku".into());
        }
        let regions: BTreeSet<_> = self.regions.iter().collect();
        if regions.len() != self.regions.len() {
            return Err("duplicate region".into());
        }
        let skus: BTreeSet<_> = self.skus.iter().map(|s| &s.id).collect();
        if skus.len() != self.skus.len() {
            return Err("duplicate sku".into());
        }
        let currency = self.currency();
        if self.skus.iter().any(|s| s.price.currency != currency) {
            return Err("skus priced in more than one currency".into());
        }
        if self.skus.iter().any(|s| s.stock < 0) {
            return Err("negative stock".into());
        }
        if self.version < 1 {
            return Err("version below 1".into());
        }
        Ok(())
    }
}

/// A price as sent by a client: both parts optional so missing ones are
/// reported as field errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoneyDraft {
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
}

/// A new SKU as sent by a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkuDraft {
    pub sku_id: Option<String>,
    /// Defaults to the attribute values joined with " / ", else the SKU code.
    pub name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub price: Option<MoneyDraft>,
    /// Defaults to 0.
    pub stock: Option<i64>,
}

/// A new product as sent by a client (or read from the seed file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductDraft {
    pub slug: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub regions: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub image_key: Option<String>,
    pub skus: Option<Vec<SkuDraft>>,
}

/// Changes to one existing SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkuPatchDraft {
    pub sku_id: Option<String>,
    pub name: Option<String>,
    pub price: Option<MoneyDraft>,
}

/// An edit as sent by a client: absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchDraft {
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub regions: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// `Some(None)` clears the image.
    pub image_key: Option<Option<String>>,
    pub skus: Option<Vec<SkuPatchDraft>>,
}

/// A validated edit of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuPatch {
    pub sku_id: SkuId,
    pub name: Option<String>,
    pub price: Option<Money>,
}

/// A validated edit. Whether its SKUs exist is checked when it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<Category>,
    pub regions: Option<Vec<Region>>,
    pub tags: Option<Vec<String>>,
    pub image_key: Option<Option<String>>,
    pub skus: Vec<SkuPatch>,
}

fn title(errors: &mut FieldErrors, field: &str, raw: &str) -> Option<String> {
    let t = raw.trim();
    errors
        .check(
            field,
            length(t, 1, TITLE_MAX_CHARS).and_then(|()| printable(t)),
        )
        .map(|()| t.to_string())
}

fn printable(s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(())
    }
}

fn description(errors: &mut FieldErrors, field: &str, raw: &str) -> Option<String> {
    errors
        .check(field, length(raw, 0, DESCRIPTION_MAX_CHARS))
        .map(|()| raw.to_string())
}

fn regions(errors: &mut FieldErrors, field: &str, raw: &[String]) -> Option<Vec<Region>> {
    let before = errors.len();
    if raw.is_empty() {
        errors.push(field, "must list at least one region");
    } else if raw.len() > MAX_REGIONS {
        errors.push(field, format!("must list at most {MAX_REGIONS} regions"));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        if let Some(region) = errors.check(format!("{field}[{i}]"), Region::parse(r)) {
            if !seen.insert(region.clone()) {
                errors.push(format!("{field}[{i}]"), format!("duplicate region {r:?}"));
            }
            out.push(region);
        }
    }
    (errors.len() == before).then_some(out)
}

fn tags(errors: &mut FieldErrors, field: &str, raw: &[String]) -> Option<Vec<String>> {
    let before = errors.len();
    if raw.len() > MAX_TAGS {
        errors.push(field, format!("must list at most {MAX_TAGS} tags"));
    }
    for (i, t) in raw.iter().enumerate() {
        errors.check(format!("{field}[{i}]"), length(t.trim(), 1, TAG_MAX_CHARS));
    }
    (errors.len() == before).then(|| raw.iter().map(|t| t.trim().to_string()).collect())
}

fn image_key(errors: &mut FieldErrors, field: &str, raw: &str) -> Option<String> {
    errors
        .check(field, length(raw, 1, IMAGE_KEY_MAX_CHARS))
        .map(|()| raw.to_string())
}

fn money(errors: &mut FieldErrors, field: &str, raw: Option<&MoneyDraft>) -> Option<Money> {
    let raw = errors.required(field, raw)?;
    match Money::parse(raw.amount_minor, raw.currency.as_deref()) {
        Ok(m) => Some(m),
        Err(e) => {
            errors.extend_prefixed(field, e);
            None
        }
    }
}

fn sku_name(errors: &mut FieldErrors, field: &str, raw: &str) -> Option<String> {
    let n = raw.trim();
    errors
        .check(
            field,
            length(n, 1, SKU_NAME_MAX_CHARS).and_then(|()| printable(n)),
        )
        .map(|()| n.to_string())
}

fn stock(errors: &mut FieldErrors, field: &str, raw: i64) -> Option<i64> {
    errors.check(field, check_stock(raw))
}

fn check_stock(n: i64) -> Result<i64, String> {
    if n < 0 {
        Err("must be >= 0".into())
    } else if n > MAX_STOCK {
        Err(format!("must be <= {MAX_STOCK}"))
    } else {
        Ok(n)
    }
}

/// The label of a SKU without an explicit one.
fn default_sku_name(id: &SkuId, attributes: &BTreeMap<String, String>) -> String {
    if attributes.is_empty() {
        id.to_string()
    } else {
        attributes
            .values()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

fn sku(errors: &mut FieldErrors, field: &str, raw: &SkuDraft) -> Option<Sku> {
    let before = errors.len();
    let id = errors
        .required(&format!("{field}.sku_id"), raw.sku_id.as_deref())
        .and_then(|s| errors.check(format!("{field}.sku_id"), SkuId::parse(s)));
    if raw.attributes.len() > MAX_ATTRIBUTES {
        errors.push(
            format!("{field}.attributes"),
            format!("must have at most {MAX_ATTRIBUTES} entries"),
        );
    }
    for (k, v) in &raw.attributes {
        errors.check(
            format!("{field}.attributes.{k}"),
            length(k, 1, ATTRIBUTE_MAX_CHARS).and_then(|()| length(v, 1, ATTRIBUTE_MAX_CHARS)),
        );
    }
    let name = raw
        .name
        .as_deref()
        .map(|n| sku_name(errors, &format!("{field}.name"), n));
    let price = money(errors, &format!("{field}.price"), raw.price.as_ref());
    let stock = stock(errors, &format!("{field}.stock"), raw.stock.unwrap_or(0));
    if errors.len() != before {
        return None;
    }
    let id = id?;
    let name = match name {
        Some(n) => n?,
        None => default_sku_name(&id, &raw.attributes),
    };
    Some(Sku {
        name,
        attributes: raw.attributes.clone(),
        price: price?,
        stock: stock?,
        id,
    })
}

/// Report SKUs priced in another currency than the first one.
fn same_currency(errors: &mut FieldErrors, skus: &[(usize, Money)]) {
    let Some((_, first)) = skus.first() else {
        return;
    };
    for (i, p) in skus.iter().skip(1) {
        if p.currency != first.currency {
            errors.push(
                format!("skus[{i}].price.currency"),
                format!(
                    "must be {}: all skus of a product share one currency",
                    first.currency
                ),
            );
        }
    }
}

/// Validate a new product. `id`, the time and version 1 come from the caller.
pub fn validate_new(
    draft: &ProductDraft,
    id: ProductId,
    now_ms: i64,
) -> Result<Product, FieldErrors> {
    let mut e = FieldErrors::new();
    let slug = e
        .required("slug", draft.slug.as_deref())
        .and_then(|s| e.check("slug", Slug::parse(s)));
    let title = e
        .required("title", draft.title.as_deref())
        .and_then(|t| title(&mut e, "title", t));
    let description = description(
        &mut e,
        "description",
        draft.description.as_deref().unwrap_or(""),
    );
    let category = e
        .required("category", draft.category.as_deref())
        .and_then(|c| e.check("category", Category::parse(c)));
    let regions = e
        .required("regions", draft.regions.as_deref())
        .and_then(|r| regions(&mut e, "regions", r));
    let tags = tags(&mut e, "tags", draft.tags.as_deref().unwrap_or(&[]));
    let image_key = draft
        .image_key
        .as_deref()
        .map(|k| image_key(&mut e, "image_key", k));

    let mut skus = Vec::new();
    match draft.skus.as_deref() {
        None => e.push("skus", "is required"),
        Some([]) => e.push("skus", "must list at least one sku"),
        Some(raw) if raw.len() > MAX_SKUS => {
            e.push("skus", format!("must list at most {MAX_SKUS} skus"))
        }
        Some(raw) => {
            let mut seen = BTreeSet::new();
            for (i, s) in raw.iter().enumerate() {
                if let Some(sku) = sku(&mut e, &format!("skus[{i}]"), s) {
                    if !seen.insert(sku.id.clone()) {
                        e.push(
                            format!("skus[{i}].sku_id"),
                            format!("duplicate sku {}", sku.id),
                        );
                    }
                    skus.push((i, sku));
                }
            }
            let prices: Vec<_> = skus.iter().map(|(i, s)| (*i, s.price)).collect();
            same_currency(&mut e, &prices);
        }
    }

    if !e.is_empty() {
        return Err(e);
    }
    match (slug, title, description, category, regions, tags) {
        (Some(slug), Some(title), Some(description), Some(category), Some(regions), Some(tags)) => {
            Ok(Product {
                id,
                slug,
                title,
                description,
                category,
                regions,
                tags,
                image_key: image_key.flatten(),
                skus: skus.into_iter().map(|(_, s)| s).collect(),
                version: 1,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
            })
        }
        // Every None above recorded an error, so this arm is not reached.
        _ => Err(FieldErrors::single("", "invalid product")),
    }
}

/// Validate an edit without looking at the product it will apply to.
pub fn validate_patch(draft: &PatchDraft) -> Result<ProductPatch, FieldErrors> {
    let mut e = FieldErrors::new();
    let changes = [
        draft.title.is_some(),
        draft.description.is_some(),
        draft.category.is_some(),
        draft.regions.is_some(),
        draft.tags.is_some(),
        draft.image_key.is_some(),
        draft.skus.is_some(),
    ];
    if !changes.contains(&true) {
        e.push(
            "",
            "changes nothing: send at least one of title, description, category, regions, tags, image_key, skus",
        );
    }
    let title = draft.title.as_deref().map(|t| title(&mut e, "title", t));
    let description = draft
        .description
        .as_deref()
        .map(|d| description(&mut e, "description", d));
    let category = draft
        .category
        .as_deref()
        .map(|c| e.check("category", Category::parse(c)));
    let regions = draft
        .regions
        .as_deref()
        .map(|r| regions(&mut e, "regions", r));
    let tags = draft.tags.as_deref().map(|t| tags(&mut e, "tags", t));
    let image_key = draft
        .image_key
        .as_ref()
        .map(|k| k.as_deref().map(|k| image_key(&mut e, "image_key", k)));

    let mut skus = Vec::new();
    if let Some(raw) = &draft.skus {
        if raw.len() > MAX_SKUS {
            e.push("skus", format!("must list at most {MAX_SKUS} skus"));
        }
        let mut seen = BTreeSet::new();
        for (i, s) in raw.iter().enumerate() {
            let f = format!("skus[{i}]");
            let id = e
                .required(&format!("{f}.sku_id"), s.sku_id.as_deref())
                .and_then(|x| e.check(format!("{f}.sku_id"), SkuId::parse(x)));
            let name = s
                .name
                .as_deref()
                .map(|n| sku_name(&mut e, &format!("{f}.name"), n));
            let price = s
                .price
                .as_ref()
                .map(|p| money(&mut e, &format!("{f}.price"), Some(p)));
            if s.name.is_none() && s.price.is_none() {
                e.push(f.clone(), "changes nothing: send name or price");
            }
            if let Some(id) = id {
                if !seen.insert(id.clone()) {
                    e.push(format!("{f}.sku_id"), format!("duplicate sku {id}"));
                }
                skus.push(SkuPatch {
                    sku_id: id,
                    name: name.flatten(),
                    price: price.flatten(),
                });
            }
        }
    }

    if !e.is_empty() {
        return Err(e);
    }
    Ok(ProductPatch {
        title: title.flatten(),
        description: description.flatten(),
        category: category.flatten(),
        regions: regions.flatten(),
        tags: tags.flatten(),
        image_key: image_key.map(Option::flatten),
        skus,
    })
}

/// The product after `patch`, with the version bumped and `updated_at_ms`
/// set. Fails when the patch names a SKU the product does not have, or would
/// mix currencies.
pub fn apply_patch(
    current: &Product,
    patch: &ProductPatch,
    now_ms: i64,
) -> Result<Product, FieldErrors> {
    let mut next = current.clone();
    let mut e = FieldErrors::new();
    if let Some(t) = &patch.title {
        next.title = t.clone();
    }
    if let Some(d) = &patch.description {
        next.description = d.clone();
    }
    if let Some(c) = &patch.category {
        next.category = c.clone();
    }
    if let Some(r) = &patch.regions {
        next.regions = r.clone();
    }
    if let Some(t) = &patch.tags {
        next.tags = t.clone();
    }
    if let Some(k) = &patch.image_key {
        next.image_key = k.clone();
    }
    for (i, sp) in patch.skus.iter().enumerate() {
        match next.skus.iter_mut().find(|s| s.id == sp.sku_id) {
            None => e.push(
                format!("skus[{i}].sku_id"),
                format!("product has no sku {}", sp.sku_id),
            ),
            Some(s) => {
                if let Some(n) = &sp.name {
                    s.name = n.clone();
                }
                if let Some(p) = sp.price {
                    s.price = p;
                }
            }
        }
    }
    let currency = next.currency();
    for (i, sp) in patch.skus.iter().enumerate() {
        if let Some(p) = sp.price
            && (p.currency != currency || next.skus.iter().any(|s| s.price.currency != p.currency))
        {
            e.push(
                format!("skus[{i}].price.currency"),
                "must match the currency of the product's other skus",
            );
        }
    }
    if !e.is_empty() {
        return Err(e);
    }
    next.version = current.version + 1;
    next.updated_at_ms = now_ms.max(current.updated_at_ms);
    Ok(next)
}

/// The stored product `current` brought in line with `desired` (a product
/// validated from a seed file), or `None` when nothing differs.
///
/// Everything the file describes is taken from `desired` (title, description,
/// category, regions, tags, image, SKUs with names, attributes and prices;
/// SKUs missing from the file are dropped), except the stock of SKUs that
/// already exist: stock is live data, so a re-seed never resets it. The id,
/// slug and creation time stay; the version is bumped.
pub fn sync(current: &Product, desired: &Product, now_ms: i64) -> Option<Product> {
    let mut next = desired.clone();
    next.id = current.id;
    next.slug = current.slug.clone();
    next.created_at_ms = current.created_at_ms;
    for s in &mut next.skus {
        if let Some(old) = current.sku(&s.id) {
            s.stock = old.stock;
        }
    }
    next.version = current.version;
    next.updated_at_ms = current.updated_at_ms;
    if &next == current {
        return None;
    }
    next.version = current.version + 1;
    next.updated_at_ms = now_ms.max(current.updated_at_ms);
    Some(next)
}

/// A change to the stock view of one SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    /// Set to this absolute value (>= 0).
    SetTo(i64),
    /// Add this possibly negative delta; the result may not go below 0.
    Delta(i64),
}

impl StockChange {
    /// The stock after the change, or why it is refused (a message for the
    /// field `stock`).
    pub fn apply(self, current: i64) -> Result<i64, String> {
        match self {
            StockChange::SetTo(n) => check_stock(n),
            StockChange::Delta(d) => match current.checked_add(d) {
                Some(n) if n < 0 => Err(format!("would go below 0: {current} in stock, delta {d}")),
                Some(n) => check_stock(n),
                None => Err(format!("must be <= {MAX_STOCK}")),
            },
        }
    }
}

/// Check the free-text `reason` of a stock change (a message for the field
/// `reason` when it is refused).
pub fn stock_reason(reason: &str) -> Result<(), String> {
    length(reason, 0, STOCK_REASON_MAX_CHARS)
}

/// Why the rules refuse a stock update of a stored product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockUpdateRefused {
    /// The caller expected another version than the stored one.
    Conflict { product: ProductId, current: i64 },
    /// The SKU is not on the product, or the stock would be out of range.
    Invalid(FieldErrors),
}

/// What a stock update does to the stored (and locked) `current` product,
/// for every backend alike: the version check, the product after the change
/// (see [`apply_stock`]) and its `ProductChanged` outbox event with id
/// `event_id`.
pub fn plan_stock_update(
    current: &Product,
    sku: &SkuId,
    change: StockChange,
    expected_version: Option<i64>,
    event_id: Uuid,
    cx: &EventContext,
) -> Result<(Product, OutboxEvent), StockUpdateRefused> {
    if expected_version.is_some_and(|v| v != current.version) {
        return Err(StockUpdateRefused::Conflict {
            product: current.id,
            current: current.version,
        });
    }
    let next = apply_stock(current, sku, change, cx.now_ms).map_err(StockUpdateRefused::Invalid)?;
    // `apply_stock` found the SKU on `next`, so there is an event to build.
    let event =
        events::sku_changed(&next, sku, ChangeKind::Updated, event_id, cx).ok_or_else(|| {
            StockUpdateRefused::Invalid(FieldErrors::single(
                "sku_id",
                format!("product has no sku {sku}"),
            ))
        })?;
    Ok((next, event))
}

/// The product after setting the stock of `sku`: version bumped, time set.
/// `Err` carries field errors (`sku_id` unknown, `stock` refused).
pub fn apply_stock(
    current: &Product,
    sku: &SkuId,
    change: StockChange,
    now_ms: i64,
) -> Result<Product, FieldErrors> {
    let mut next = current.clone();
    let Some(s) = next.skus.iter_mut().find(|s| &s.id == sku) else {
        return Err(FieldErrors::single(
            "sku_id",
            format!("product has no sku {sku}"),
        ));
    };
    s.stock = change
        .apply(s.stock)
        .map_err(|m| FieldErrors::single("stock", m))?;
    next.version = current.version + 1;
    next.updated_at_ms = now_ms.max(current.updated_at_ms);
    Ok(next)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn draft(slug: &str) -> ProductDraft {
        ProductDraft {
            slug: Some(slug.into()),
            title: Some("  Alder Lambswool Scarf ".into()),
            description: Some("Warm.".into()),
            category: Some("apparel".into()),
            regions: Some(vec!["eu".into(), "uk".into()]),
            tags: Some(vec!["scarf".into()]),
            image_key: Some("catalog/apparel/scarf.jpg".into()),
            skus: Some(vec![
                SkuDraft {
                    sku_id: Some(format!("{slug}-NVY").to_ascii_uppercase()),
                    name: None,
                    attributes: BTreeMap::from([("color".into(), "navy".into())]),
                    price: Some(MoneyDraft {
                        amount_minor: Some(2499),
                        currency: Some("EUR".into()),
                    }),
                    stock: Some(5),
                },
                SkuDraft {
                    sku_id: Some(format!("{slug}-OAT").to_ascii_uppercase()),
                    name: Some("Oatmeal".into()),
                    attributes: BTreeMap::new(),
                    price: Some(MoneyDraft {
                        amount_minor: Some(1999),
                        currency: Some("EUR".into()),
                    }),
                    stock: None,
                },
            ]),
        }
    }

    fn id() -> ProductId {
        ProductId(Uuid::from_u64_pair(1, 1))
    }

    #[test]
    fn a_valid_draft_becomes_a_version_1_product() {
        let p = validate_new(&draft("scarf"), id(), 1_000).unwrap();
        assert_eq!(p.title, "Alder Lambswool Scarf");
        assert_eq!(p.version, 1);
        assert_eq!((p.created_at_ms, p.updated_at_ms), (1_000, 1_000));
        assert_eq!(p.skus[0].name, "navy");
        assert_eq!(p.skus[1].name, "Oatmeal");
        assert_eq!(p.skus[1].stock, 0);
        assert_eq!(p.min_price().amount_minor, 1999);
        assert_eq!(p.home_region().unwrap().as_str(), "eu");
        p.check_invariants().unwrap();
    }

    #[test]
    fn every_invalid_field_is_listed() {
        let mut d = draft("scarf");
        d.slug = Some("Not A Slug".into());
        d.title = Some("   ".into());
        d.category = None;
        d.regions = Some(vec!["eu".into(), "eu".into(), "EU".into()]);
        d.tags = Some(vec!["".into()]);
        let skus = d.skus.as_mut().unwrap();
        skus[0].price = Some(MoneyDraft {
            amount_minor: Some(-5),
            currency: Some("eur".into()),
        });
        skus[1].sku_id = Some("bad code!".into());
        skus[1].stock = Some(-1);
        skus.push(SkuDraft {
            sku_id: Some("X-1".into()),
            price: Some(MoneyDraft {
                amount_minor: Some(1),
                currency: Some("USD".into()),
            }),
            ..SkuDraft::default()
        });
        skus.push(SkuDraft {
            sku_id: Some("X-1".into()),
            price: None,
            ..SkuDraft::default()
        });
        let e = validate_new(&d, id(), 0).unwrap_err();
        assert_eq!(
            e.fields(),
            [
                "slug",
                "title",
                "category",
                "regions[1]",
                "regions[2]",
                "tags[0]",
                "skus[0].price.amount_minor",
                "skus[0].price.currency",
                "skus[1].sku_id",
                "skus[1].stock",
                "skus[3].price",
            ],
            "{e}"
        );
    }

    #[test]
    fn missing_required_fields_and_mixed_currencies() {
        let e = validate_new(&ProductDraft::default(), id(), 0).unwrap_err();
        assert_eq!(e.fields(), ["slug", "title", "category", "regions", "skus"]);

        let mut d = draft("scarf");
        d.skus.as_mut().unwrap()[1].price = Some(MoneyDraft {
            amount_minor: Some(1),
            currency: Some("USD".into()),
        });
        let e = validate_new(&d, id(), 0).unwrap_err();
        assert_eq!(e.fields(), ["skus[1].price.currency"]);

        let mut d = draft("scarf");
        d.skus = Some(vec![]);
        d.regions = Some(vec![]);
        let e = validate_new(&d, id(), 0).unwrap_err();
        assert_eq!(e.fields(), ["regions", "skus"]);
    }

    #[test]
    fn duplicate_sku_codes_are_refused() {
        let mut d = draft("scarf");
        let skus = d.skus.as_mut().unwrap();
        skus[1].sku_id = skus[0].sku_id.clone();
        let e = validate_new(&d, id(), 0).unwrap_err();
        assert_eq!(e.fields(), ["skus[1].sku_id"]);
    }

    #[test]
    fn a_patch_bumps_the_version_and_keeps_what_it_does_not_name() {
        let p = validate_new(&draft("scarf"), id(), 1_000).unwrap();
        let patch = validate_patch(&PatchDraft {
            title: Some("Scarf".into()),
            image_key: Some(None),
            skus: Some(vec![SkuPatchDraft {
                sku_id: Some("SCARF-NVY".into()),
                name: None,
                price: Some(MoneyDraft {
                    amount_minor: Some(999),
                    currency: Some("EUR".into()),
                }),
            }]),
            ..PatchDraft::default()
        })
        .unwrap();
        let next = apply_patch(&p, &patch, 2_000).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(next.updated_at_ms, 2_000);
        assert_eq!(next.created_at_ms, 1_000);
        assert_eq!(next.title, "Scarf");
        assert_eq!(next.image_key, None);
        assert_eq!(next.description, p.description);
        assert_eq!(next.skus[0].price.amount_minor, 999);
        assert_eq!(next.min_price().amount_minor, 999);
        next.check_invariants().unwrap();
    }

    #[test]
    fn invalid_patches_list_their_fields() {
        let e = validate_patch(&PatchDraft::default()).unwrap_err();
        assert_eq!(e.fields(), [""]);
        let e = validate_patch(&PatchDraft {
            title: Some("".into()),
            regions: Some(vec![]),
            skus: Some(vec![SkuPatchDraft::default()]),
            ..PatchDraft::default()
        })
        .unwrap_err();
        assert_eq!(
            e.fields(),
            ["title", "regions", "skus[0].sku_id", "skus[0]"]
        );

        let p = validate_new(&draft("scarf"), id(), 0).unwrap();
        let patch = validate_patch(&PatchDraft {
            skus: Some(vec![
                SkuPatchDraft {
                    sku_id: Some("NOPE".into()),
                    name: Some("x".into()),
                    price: None,
                },
                SkuPatchDraft {
                    sku_id: Some("SCARF-OAT".into()),
                    name: None,
                    price: Some(MoneyDraft {
                        amount_minor: Some(1),
                        currency: Some("USD".into()),
                    }),
                },
            ]),
            ..PatchDraft::default()
        })
        .unwrap();
        let e = apply_patch(&p, &patch, 0).unwrap_err();
        assert_eq!(e.fields(), ["skus[0].sku_id", "skus[1].price.currency"]);
    }

    #[test]
    fn sync_takes_the_file_but_keeps_live_stock() {
        let stored = validate_new(&draft("scarf"), id(), 1_000).unwrap();
        let stored =
            apply_stock(&stored, &stored.skus[0].id, StockChange::SetTo(1), 1_500).unwrap();
        // The same file again: nothing to do, even though stock moved.
        let same =
            validate_new(&draft("scarf"), ProductId(Uuid::from_u64_pair(2, 2)), 9_000).unwrap();
        assert_eq!(sync(&stored, &same, 9_000), None);

        let mut changed = draft("scarf");
        changed.title = Some("Scarf v2".into());
        let skus = changed.skus.as_mut().unwrap();
        skus[0].price.as_mut().unwrap().amount_minor = Some(2_999);
        skus[1] = SkuDraft {
            sku_id: Some("SCARF-RST".into()),
            price: Some(MoneyDraft {
                amount_minor: Some(2_999),
                currency: Some("EUR".into()),
            }),
            stock: Some(40),
            ..SkuDraft::default()
        };
        let desired = validate_new(&changed, ProductId(Uuid::from_u64_pair(2, 2)), 9_000).unwrap();
        let next = sync(&stored, &desired, 9_000).unwrap();
        assert_eq!(
            (next.id, next.version, next.created_at_ms),
            (stored.id, 3, 1_000)
        );
        assert_eq!(next.updated_at_ms, 9_000);
        assert_eq!(next.title, "Scarf v2");
        assert_eq!(next.skus[0].price.amount_minor, 2_999);
        assert_eq!(next.skus[0].stock, 1, "live stock kept");
        assert_eq!(
            (next.skus[1].id.as_str(), next.skus[1].stock),
            ("SCARF-RST", 40)
        );
        assert_eq!(next.skus.len(), 2, "SCARF-OAT dropped with the file");
        next.check_invariants().unwrap();
    }

    #[test]
    fn stock_changes() {
        assert_eq!(StockChange::SetTo(7).apply(3), Ok(7));
        assert_eq!(StockChange::Delta(-3).apply(3), Ok(0));
        assert!(StockChange::Delta(-4).apply(3).is_err());
        assert!(StockChange::SetTo(-1).apply(3).is_err());
        assert!(StockChange::Delta(i64::MAX).apply(3).is_err());
        let p = validate_new(&draft("scarf"), id(), 0).unwrap();
        let sku = SkuId::parse("SCARF-NVY").unwrap();
        let next = apply_stock(&p, &sku, StockChange::Delta(-5), 10).unwrap();
        assert_eq!(next.sku(&sku).unwrap().stock, 0);
        assert_eq!(next.version, 2);
        let e = apply_stock(&next, &sku, StockChange::Delta(-1), 10).unwrap_err();
        assert_eq!(e.fields(), ["stock"]);
        let e =
            apply_stock(&p, &SkuId::parse("NOPE").unwrap(), StockChange::SetTo(1), 0).unwrap_err();
        assert_eq!(e.fields(), ["sku_id"]);
    }

    #[test]
    fn a_stock_update_checks_the_version_and_carries_its_event() {
        let p = validate_new(&draft("scarf"), id(), 0).unwrap();
        let sku = SkuId::parse("SCARF-NVY").unwrap();
        let cx = EventContext {
            now_ms: 42,
            trace: BTreeMap::new(),
        };
        let event_id = Uuid::from_u64_pair(7, 7);
        let (next, event) = plan_stock_update(
            &p,
            &sku,
            StockChange::SetTo(9),
            Some(p.version),
            event_id,
            &cx,
        )
        .unwrap();
        assert_eq!(next.sku(&sku).unwrap().stock, 9);
        assert_eq!((event.id, event.aggregate_id), (event_id, p.id));
        assert_eq!(event.payload["stock"], 9);
        assert_eq!(event.payload["version"], next.version);
        let stale = plan_stock_update(&next, &sku, StockChange::SetTo(1), Some(1), event_id, &cx);
        assert_eq!(
            stale.unwrap_err(),
            StockUpdateRefused::Conflict {
                product: p.id,
                current: 2
            }
        );
        let below = plan_stock_update(&p, &sku, StockChange::Delta(-6), None, event_id, &cx);
        assert!(matches!(below, Err(StockUpdateRefused::Invalid(e)) if e.fields() == ["stock"]));
    }

    #[test]
    fn a_stock_reason_is_bounded_in_characters() {
        assert!(stock_reason("").is_ok());
        assert!(stock_reason(&"é".repeat(STOCK_REASON_MAX_CHARS)).is_ok());
        assert!(stock_reason(&"x".repeat(STOCK_REASON_MAX_CHARS + 1)).is_err());
    }
}
