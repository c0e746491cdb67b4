//! Listing products: filters, sorts and keyset pagination with opaque cursors.
//!
//! A cursor is URL-safe base64 (no padding) of a small JSON document holding
//! the sort it was issued for, the last item's sort key and its id. Each sort
//! orders by its key and breaks ties by product id in the same direction, so
//! `(key, id)` is a total order: a page starts strictly after the cursor, and
//! products inserted meanwhile never shift later pages.

use std::cmp::Ordering;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    ids::{Category, ProductId, Region},
    money::{Currency, check_amount},
    product::Product,
    validation::FieldErrors,
};

/// Page size when the client asks for none.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page size.
pub const MAX_LIMIT: usize = 100;
/// Longest cursor accepted, checked before decoding.
pub const MAX_CURSOR_CHARS: usize = 4_096;

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Most recently created first.
    #[default]
    Newest,
    /// Lowest SKU price first.
    PriceAsc,
    /// Lowest SKU price, highest first.
    PriceDesc,
    /// Title in byte order.
    Name,
}

impl Sort {
    pub const ALL: [Sort; 4] = [Sort::Newest, Sort::PriceAsc, Sort::PriceDesc, Sort::Name];

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::PriceAsc => "price_asc",
            Sort::PriceDesc => "price_desc",
            Sort::Name => "name",
        }
    }

    pub fn parse(s: &str) -> Result<Sort, String> {
        Sort::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| "must be one of newest, price_asc, price_desc, name".to_string())
    }

    /// Whether larger keys come first.
    pub fn descending(self) -> bool {
        matches!(self, Sort::Newest | Sort::PriceDesc)
    }
}

/// The value a product is sorted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortKey {
    Int(i64),
    Text(String),
}

impl SortKey {
    /// The key of `product` under `sort`.
    pub fn of(product: &Product, sort: Sort) -> SortKey {
        match sort {
            Sort::Newest => SortKey::Int(product.created_at_ms),
            Sort::PriceAsc | Sort::PriceDesc => SortKey::Int(product.min_price().amount_minor),
            Sort::Name => SortKey::Text(product.title.clone()),
        }
    }

    fn fits(&self, sort: Sort) -> bool {
        matches!(
            (self, sort),
            (
                SortKey::Int(_),
                Sort::Newest | Sort::PriceAsc | Sort::PriceDesc
            ) | (SortKey::Text(_), Sort::Name)
        )
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &SortKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey {
    /// Ints by value, texts by bytes (Postgres `COLLATE "C"`); ints before texts
    /// (never compared: one sort has one kind of key).
    fn cmp(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Int(a), SortKey::Int(b)) => a.cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (SortKey::Int(_), SortKey::Text(_)) => Ordering::Less,
            (SortKey::Text(_), SortKey::Int(_)) => Ordering::Greater,
        }
    }
}

/// Where the next page starts: strictly after `(key, id)` in `sort` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: Sort,
    #[serde(rename = "k")]
    pub key: SortKey,
    pub id: Uuid,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("is not a cursor issued by this service")]
    Malformed,
    #[error("was issued for sort={issued}, not sort={requested}")]
    WrongSort {
        issued: &'static str,
        requested: &'static str,
    },
}

impl Cursor {
    /// The cursor after `product` in `sort` order.
    pub fn after(product: &Product, sort: Sort) -> Cursor {
        Cursor {
            sort,
            key: SortKey::of(product, sort),
            id: product.id.0,
        }
    }

    pub fn encode(&self) -> String {
        // Serializing plain data to JSON cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Result<Cursor, CursorError> {
        if s.is_empty() || s.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| CursorError::Malformed)?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
        if !c.key.fits(c.sort) {
            return Err(CursorError::Malformed);
        }
        Ok(c)
    }

    /// Decode a cursor and check it belongs to a listing sorted by `sort`.
    pub fn decode_for(s: &str, sort: Sort) -> Result<Cursor, CursorError> {
        let c = Cursor::decode(s)?;
        if c.sort != sort {
            return Err(CursorError::WrongSort {
                issued: c.sort.as_str(),
                requested: sort.as_str(),
            });
        }
        Ok(c)
    }
}

/// Compare two products in `sort` order (ties broken by id).
pub fn compare(a: &Product, b: &Product, sort: Sort) -> Ordering {
    let ka = (SortKey::of(a, sort), a.id.0);
    let kb = (SortKey::of(b, sort), b.id.0);
    if sort.descending() {
        kb.cmp(&ka)
    } else {
        ka.cmp(&kb)
    }
}

/// Whether `product` comes strictly after `cursor` in the cursor's sort.
pub fn is_after(product: &Product, cursor: &Cursor) -> bool {
    let k = (SortKey::of(product, cursor.sort), product.id.0);
    let c = (cursor.key.clone(), cursor.id);
    if cursor.sort.descending() {
        k < c
    } else {
        k > c
    }
}

/// Products with a SKU priced inside an inclusive range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceFilter {
    pub min_minor: Option<i64>,
    pub max_minor: Option<i64>,
    /// Only SKUs priced in this currency count; any currency when `None`.
    pub currency: Option<Currency>,
}

impl PriceFilter {
    pub fn is_any(&self) -> bool {
        self.min_minor.is_none() && self.max_minor.is_none() && self.currency.is_none()
    }
}

/// What a listing keeps; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    pub category: Option<Category>,
    /// Products sold in this region (any of their regions).
    pub region: Option<Region>,
    /// Products with any SKU priced in the range.
    pub price: PriceFilter,
}

impl ProductFilter {
    pub fn matches(&self, p: &Product) -> bool {
        self.category.as_ref().is_none_or(|c| &p.category == c)
            && self.region.as_ref().is_none_or(|r| p.regions.contains(r))
            && (self.price.is_any()
                || p.skus.iter().any(|s| {
                    self.price
                        .min_minor
                        .is_none_or(|m| s.price.amount_minor >= m)
                        && self
                            .price
                            .max_minor
                            .is_none_or(|m| s.price.amount_minor <= m)
                        && self.price.currency.is_none_or(|c| s.price.currency == c)
                }))
    }
}

/// A validated listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: ProductFilter,
    pub sort: Sort,
    /// 1..=[`MAX_LIMIT`].
    pub limit: usize,
    pub after: Option<Cursor>,
}

impl Default for ListQuery {
    fn default() -> ListQuery {
        ListQuery {
            filter: ProductFilter::default(),
            sort: Sort::Newest,
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Product>,
    /// Set when more products follow the last item.
    pub next: Option<Cursor>,
}

/// A listing request as raw text (query-string values), every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub category: Option<String>,
    pub region: Option<String>,
    pub min_price: Option<String>,
    pub max_price: Option<String>,
    pub currency: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn amount(e: &mut FieldErrors, field: &str, raw: &str) -> Option<i64> {
    let n = e.check(
        field,
        raw.parse::<i64>()
            .map_err(|_| "must be an integer amount in minor units".to_string()),
    )?;
    e.check(field, check_amount(n))
}

impl ListQuery {
    /// Validate raw parameters; every invalid one is reported. Empty values
    /// count as absent.
    pub fn parse(p: &ListParams) -> Result<ListQuery, FieldErrors> {
        let mut e = FieldErrors::new();
        let category = non_empty(&p.category).and_then(|c| e.check("category", Category::parse(c)));
        let region = non_empty(&p.region).and_then(|r| e.check("region", Region::parse(r)));
        let min = non_empty(&p.min_price).and_then(|m| amount(&mut e, "min_price", m));
        let max = non_empty(&p.max_price).and_then(|m| amount(&mut e, "max_price", m));
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            e.push("max_price", "must be >= min_price");
        }
        let currency = non_empty(&p.currency).and_then(|c| e.check("currency", Currency::parse(c)));
        let sort = non_empty(&p.sort)
            .map(|s| e.check("sort", Sort::parse(s)))
            .unwrap_or(Some(Sort::Newest));
        let limit = match non_empty(&p.limit) {
            None => Some(DEFAULT_LIMIT),
            Some(l) => e.check(
                "limit",
                l.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("must be an integer from 1 to {MAX_LIMIT}")),
            ),
        };
        let after = match (non_empty(&p.cursor), sort) {
            (Some(c), Some(sort)) => e.check(
                "cursor",
                Cursor::decode_for(c, sort).map_err(|x| x.to_string()),
            ),
            _ => None,
        };
        let (Some(sort), Some(limit)) = (sort, limit) else {
            return Err(e);
        };
        e.into_result(|| ListQuery {
            filter: ProductFilter {
                category,
                region,
                price: PriceFilter {
                    min_minor: min,
                    max_minor: max,
                    currency,
                },
            },
            sort,
            limit,
            after,
        })
    }

    /// The page size a client asked for, clamped as `PageRequest` specifies:
    /// 0 means the default, values above the maximum become the maximum.
    pub fn clamp_limit(requested: u32) -> usize {
        match requested {
            0 => DEFAULT_LIMIT,
            n => (n as usize).min(MAX_LIMIT),
        }
    }
}

/// Apply a listing to products already filtered by tenant: what every
/// adapter must return, written out once (the in-memory adapter uses it).
pub fn page_of<'a>(products: impl IntoIterator<Item = &'a Product>, q: &ListQuery) -> Page {
    let mut hits: Vec<&Product> = products
        .into_iter()
        .filter(|p| q.filter.matches(p))
        .filter(|p| q.after.as_ref().is_none_or(|c| is_after(p, c)))
        .collect();
    hits.sort_by(|a, b| compare(a, b, q.sort));
    let more = hits.len() > q.limit;
    hits.truncate(q.limit);
    let next = if more {
        hits.last().map(|p| Cursor::after(p, q.sort))
    } else {
        None
    };
    Page {
        items: hits.into_iter().cloned().collect(),
        next,
    }
}

/// Product ids of a page, for assertions and logs.
pub fn ids(page: &Page) -> Vec<ProductId> {
    page.items.iter().map(|p| p.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::{ProductDraft, tests::draft, validate_new};
    use proptest::prelude::*;

    fn sort_strategy() -> impl Strategy<Value = Sort> {
        prop::sample::select(Sort::ALL.to_vec())
    }

    fn cursor_strategy() -> impl Strategy<Value = Cursor> {
        (sort_strategy(), any::<i64>(), ".{0,200}", any::<u128>()).prop_map(|(sort, n, t, id)| {
            let key = if sort == Sort::Name {
                SortKey::Text(t)
            } else {
                SortKey::Int(n)
            };
            Cursor {
                sort,
                key,
                id: Uuid::from_u128(id),
            }
        })
    }

    proptest! {
        #[test]
        fn cursors_round_trip(c in cursor_strategy()) {
            let s = c.encode();
            prop_assert!(s.len() <= MAX_CURSOR_CHARS);
            prop_assert!(s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'));
            prop_assert_eq!(Cursor::decode(&s), Ok(c.clone()));
            prop_assert_eq!(Cursor::decode_for(&s, c.sort), Ok(c));
        }

        #[test]
        fn garbage_never_decodes_to_a_cursor_of_the_wrong_kind(s in ".{0,300}") {
            if let Ok(c) = Cursor::decode(&s) {
                prop_assert!(c.key.fits(c.sort));
            }
        }
    }

    #[test]
    fn cursors_of_another_sort_or_shape_are_refused() {
        let c = Cursor {
            sort: Sort::PriceAsc,
            key: SortKey::Int(5),
            id: Uuid::nil(),
        };
        assert_eq!(
            Cursor::decode_for(&c.encode(), Sort::Newest),
            Err(CursorError::WrongSort {
                issued: "price_asc",
                requested: "newest"
            })
        );
        let mismatched = Cursor {
            sort: Sort::Name,
            key: SortKey::Int(5),
            id: Uuid::nil(),
        };
        assert_eq!(
            Cursor::decode(&mismatched.encode()),
            Err(CursorError::Malformed)
        );
        assert_eq!(Cursor::decode("!!"), Err(CursorError::Malformed));
        assert_eq!(
            Cursor::decode(&"a".repeat(MAX_CURSOR_CHARS + 1)),
            Err(CursorError::Malformed)
        );
    }

    #[test]
    fn params_are_validated_together() {
        let q = ListQuery::parse(&ListParams::default()).unwrap();
        assert_eq!(q, ListQuery::default());
        let e = ListQuery::parse(&ListParams {
            category: Some("Shoes!".into()),
            min_price: Some("x".into()),
            max_price: Some("-1".into()),
            currency: Some("usd".into()),
            sort: Some("cheapest".into()),
            limit: Some("101".into()),
            cursor: Some("zzz".into()),
            ..ListParams::default()
        })
        .unwrap_err();
        assert_eq!(
            e.fields(),
            [
                "category",
                "min_price",
                "max_price",
                "currency",
                "sort",
                "limit"
            ]
        );
        let e = ListQuery::parse(&ListParams {
            min_price: Some("500".into()),
            max_price: Some("100".into()),
            limit: Some("0".into()),
            cursor: Some("zzz".into()),
            ..ListParams::default()
        })
        .unwrap_err();
        assert_eq!(e.fields(), ["max_price", "limit", "cursor"]);
        let q = ListQuery::parse(&ListParams {
            region: Some("eu".into()),
            sort: Some("price_desc".into()),
            limit: Some("100".into()),
            min_price: Some("".into()),
            ..ListParams::default()
        })
        .unwrap();
        assert_eq!((q.sort, q.limit), (Sort::PriceDesc, 100));
        assert_eq!(q.filter.price.min_minor, None);
        assert_eq!(ListQuery::clamp_limit(0), DEFAULT_LIMIT);
        assert_eq!(ListQuery::clamp_limit(7), 7);
        assert_eq!(ListQuery::clamp_limit(5_000), MAX_LIMIT);
    }

    fn products(n: u64) -> Vec<Product> {
        (0..n)
            .map(|i| {
                let mut d: ProductDraft = draft(&format!("p{i}"));
                d.title = Some(format!("title {}", (i * 7) % 5));
                d.category = Some(if i % 2 == 0 { "even" } else { "odd" }.into());
                let skus = d.skus.as_mut().unwrap();
                skus[0].price.as_mut().unwrap().amount_minor = Some(((i * 37) % 11) as i64 * 100);
                skus[1].price.as_mut().unwrap().amount_minor = Some(5_000);
                validate_new(&d, ProductId(Uuid::from_u64_pair(9, i)), (i % 4) as i64).unwrap()
            })
            .collect()
    }

    #[test]
    fn paging_visits_every_match_once_in_order_for_every_sort() {
        let all = products(53);
        for sort in Sort::ALL {
            let mut q = ListQuery {
                sort,
                limit: 6,
                filter: ProductFilter {
                    category: Some(Category::parse("even").unwrap()),
                    ..ProductFilter::default()
                },
                after: None,
            };
            let mut seen = Vec::new();
            loop {
                let page = page_of(&all, &q);
                assert!(page.items.len() <= 6);
                seen.extend(page.items.iter().cloned());
                match page.next {
                    Some(c) => q.after = Some(c),
                    None => break,
                }
            }
            let mut expected: Vec<_> = all
                .iter()
                .filter(|p| q.filter.matches(p))
                .cloned()
                .collect();
            expected.sort_by(|a, b| compare(a, b, sort));
            assert_eq!(
                seen.iter().map(|p| p.id).collect::<Vec<_>>(),
                expected.iter().map(|p| p.id).collect::<Vec<_>>(),
                "{sort:?}"
            );
            assert_eq!(seen.len(), 27);
        }
    }

    #[test]
    fn price_filter_matches_any_sku_in_range() {
        let all = products(11);
        let f = ProductFilter {
            price: PriceFilter {
                min_minor: Some(4_000),
                max_minor: Some(6_000),
                currency: Some(Currency::parse("EUR").unwrap()),
            },
            ..ProductFilter::default()
        };
        // Every product has a SKU at 5000 EUR.
        assert!(all.iter().all(|p| f.matches(p)));
        let f = ProductFilter {
            price: PriceFilter {
                min_minor: Some(0),
                max_minor: Some(0),
                currency: None,
            },
            ..ProductFilter::default()
        };
        let hits: Vec<_> = all.iter().filter(|p| f.matches(p)).collect();
        assert!(!hits.is_empty());
        assert!(hits.iter().all(|p| p.min_price().amount_minor == 0));
        let usd = ProductFilter {
            price: PriceFilter {
                currency: Some(Currency::parse("USD").unwrap()),
                ..PriceFilter::default()
            },
            ..ProductFilter::default()
        };
        assert!(!all.iter().any(|p| usd.matches(p)));
    }
}
