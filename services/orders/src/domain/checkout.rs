//! Placing an order: what a valid request is, the fingerprint that decides
//! whether a repeated `Idempotency-Key` carries the same request, and pricing
//! from catalog prices (the client never sends prices).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
pub use shopstream_platform::FieldError;
use shopstream_platform::idempotency::IdempotencyKey;

/// Most lines in one order.
pub const MAX_LINES: usize = 50;
/// Most units of one line.
pub const MAX_QUANTITY: u32 = 1_000;

/// One requested line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedLine {
    pub product_id: String,
    pub sku_id: String,
    pub quantity: u32,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message)
}

/// Every problem with a create request, or nothing.
pub fn validate(key: &str, lines: &[RequestedLine], payment_method: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(e) = IdempotencyKey::parse_field(key) {
        errors.push(e);
    }
    if payment_method.trim().is_empty() {
        errors.push(err("payment_method", "is required (e.g. pm_card_visa)"));
    }
    if lines.is_empty() {
        errors.push(err("items", "needs at least one line"));
    } else if lines.len() > MAX_LINES {
        errors.push(err("items", format!("at most {MAX_LINES} lines")));
    }
    let mut seen = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        if l.product_id.trim().is_empty() {
            errors.push(err(format!("items[{i}].product_id"), "is required"));
        }
        if l.sku_id.trim().is_empty() {
            errors.push(err(format!("items[{i}].sku_id"), "is required"));
        } else if let Some(first) = seen.insert(l.sku_id.as_str(), i) {
            errors.push(err(
                format!("items[{i}].sku_id"),
                format!("repeats items[{first}]; put the quantity on one line"),
            ));
        }
        if l.quantity == 0 || l.quantity > MAX_QUANTITY {
            errors.push(err(
                format!("items[{i}].quantity"),
                format!("must be 1..={MAX_QUANTITY}"),
            ));
        }
    }
    errors
}

/// A digest of what the request asks for, independent of line order, so a
/// retried request matches and a different one under the same key does not.
pub fn fingerprint(lines: &[RequestedLine], payment_method: &str) -> String {
    let mut sorted: Vec<_> = lines.iter().collect();
    sorted.sort_by(|a, b| (&a.sku_id, &a.product_id).cmp(&(&b.sku_id, &b.product_id)));
    let mut h = Sha256::new();
    for l in sorted {
        h.update(l.product_id.as_bytes());
        h.update([0]);
        h.update(l.sku_id.as_bytes());
        h.update([0]);
        h.update(l.quantity.to_be_bytes());
    }
    h.update([1]);
    h.update(payment_method.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A SKU's current price from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub amount_minor: i64,
    pub currency: String,
}

/// A priced line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: String,
    pub sku_id: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub lines: Vec<PricedLine>,
    pub total_minor: i64,
    pub currency: String,
}

/// Price every line; `prices` maps sku_id → price (a missing SKU is an error
/// on its line). All lines must share one currency.
pub fn price(
    lines: &[RequestedLine],
    prices: &BTreeMap<String, Price>,
) -> Result<Priced, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(lines.len());
    let mut currency: Option<&str> = None;
    let mut total: i64 = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(p) = prices.get(&l.sku_id) else {
            errors.push(err(
                format!("items[{i}].sku_id"),
                "is not a SKU of that product",
            ));
            continue;
        };
        match currency {
            None => currency = Some(&p.currency),
            Some(c) if c != p.currency => {
                errors.push(err(
                    format!("items[{i}].sku_id"),
                    format!("is priced in {}, the order in {c}", p.currency),
                ));
                continue;
            }
            Some(_) => {}
        }
        let Some(line_total) = p.amount_minor.checked_mul(i64::from(l.quantity)) else {
            errors.push(err(format!("items[{i}].quantity"), "total overflows"));
            continue;
        };
        total = total.saturating_add(line_total);
        out.push(PricedLine {
            product_id: l.product_id.clone(),
            sku_id: l.sku_id.clone(),
            quantity: l.quantity,
            unit_price_minor: p.amount_minor,
            line_total_minor: line_total,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Priced {
        lines: out,
        total_minor: total,
        currency: currency.unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, q: u32) -> RequestedLine {
        RequestedLine {
            product_id: format!("p-{sku}"),
            sku_id: sku.into(),
            quantity: q,
        }
    }

    #[test]
    fn fingerprint_ignores_line_order_but_not_content() {
        let a = fingerprint(&[line("a", 1), line("b", 2)], "pm_card_visa");
        assert_eq!(
            a,
            fingerprint(&[line("b", 2), line("a", 1)], "pm_card_visa")
        );
        assert_ne!(
            a,
            fingerprint(&[line("a", 1), line("b", 3)], "pm_card_visa")
        );
        assert_ne!(
            a,
            fingerprint(&[line("a", 1), line("b", 2)], "pm_card_mastercard")
        );
    }

    #[test]
    fn validation_names_every_bad_field() {
        let errors = validate("", &[line("a", 0), line("a", 1)], "");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "idempotency_key",
                "payment_method",
                "items[0].quantity",
                "items[1].sku_id"
            ]
        );
        assert!(validate("k", &[line("a", 1)], "pm_card_visa").is_empty());
        assert_eq!(validate("k", &[], "pm")[0].field, "items");
    }

    #[test]
    fn pricing_sums_lines_and_rejects_mixed_currencies_and_unknown_skus() {
        let mut prices = BTreeMap::new();
        prices.insert(
            "a".into(),
            Price {
                amount_minor: 250,
                currency: "EUR".into(),
            },
        );
        prices.insert(
            "b".into(),
            Price {
                amount_minor: 1000,
                currency: "EUR".into(),
            },
        );
        prices.insert(
            "c".into(),
            Price {
                amount_minor: 5,
                currency: "USD".into(),
            },
        );
        let p = price(&[line("a", 2), line("b", 1)], &prices).unwrap();
        assert_eq!((p.total_minor, p.currency.as_str()), (1500, "EUR"));
        assert_eq!(p.lines[0].line_total_minor, 500);
        let e = price(&[line("a", 1), line("c", 1), line("x", 1)], &prices).unwrap_err();
        assert_eq!(e.len(), 2);
    }
}
