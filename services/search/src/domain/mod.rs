//! Pure search types: the indexed product document and its external-version
//! ordering, the query model, pagination cursors and title highlighting. No
//! I/O, no async, no clock reads.

/// `product.events` records (shared with the feed, which reads them too).
pub use shopstream_platform::product_events as event;

/// The largest page a query returns.
pub const MAX_PAGE_SIZE: usize = 100;
/// Page size when the request asks for none.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Deepest offset a cursor may reach: deep paging is a scan, not a search.
pub const MAX_OFFSET: usize = 10_000;

/// One product as the index holds it. A tombstone (`deleted`) keeps only the
/// identity and the version, so an older event can never resurrect it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductDoc {
    pub tenant_id: String,
    pub product_id: String,
    /// The catalog version this document was built from.
    pub version: i64,
    pub deleted: bool,
    pub title: String,
    pub description: String,
    pub category: String,
    pub region: String,
    /// Lowest SKU price in minor units; 0 with an empty currency when the
    /// product has no SKU.
    pub price_from_minor: i64,
    pub currency: String,
    /// At least one SKU in stock.
    pub in_stock: bool,
    pub thumbnail_url: String,
    pub updated_at_ms: i64,
    /// When the change was committed in the catalog database (from the CDC
    /// event), if known.
    pub commit_ts_ms: Option<i64>,
}

impl ProductDoc {
    /// A tombstone for `product_id` at `version`.
    pub fn tombstone(
        tenant_id: &str,
        product_id: &str,
        version: i64,
        commit_ts_ms: Option<i64>,
    ) -> ProductDoc {
        ProductDoc {
            tenant_id: tenant_id.to_string(),
            product_id: product_id.to_string(),
            version,
            deleted: true,
            commit_ts_ms,
            ..ProductDoc::default()
        }
    }

    /// The document's position in the external-version order.
    pub fn rank(&self) -> VersionRank {
        VersionRank::new(self.version, self.deleted)
    }
}

/// External-version order of index writes: by version, and at one version a
/// tombstone after a live document (a delete observed at version v wins over
/// the live v it deletes). A write happens only if its rank is strictly
/// greater than the indexed one, so repeats and older versions are no-ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionRank {
    pub version: i64,
    pub deleted: bool,
}

impl VersionRank {
    pub fn new(version: i64, deleted: bool) -> VersionRank {
        VersionRank { version, deleted }
    }

    /// One integer with the same order (OpenSearch external versions are a
    /// single non-negative long).
    pub fn external(self) -> i64 {
        self.version.max(0).saturating_mul(2) + i64::from(self.deleted)
    }

    pub fn from_external(v: i64) -> VersionRank {
        VersionRank::new(v.div_euclid(2), v.rem_euclid(2) == 1)
    }
}

/// What the index holds for one product, for reconcile and the debug endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedMeta {
    pub version: i64,
    pub deleted: bool,
    pub commit_ts_ms: Option<i64>,
    /// When the document became visible to queries; `None` while it waits for
    /// the next commit (or when unknown after a restart).
    pub searchable_ts_ms: Option<i64>,
}

impl IndexedMeta {
    pub fn rank(&self) -> VersionRank {
        VersionRank::new(self.version, self.deleted)
    }
}

/// Result of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The document replaced an older one (or was new).
    Written,
    /// The index already held this or a newer version; nothing changed.
    Stale { indexed: VersionRank },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FacetField {
    Category,
    Region,
    InStock,
}

/// A validated query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery {
    pub tenant_id: String,
    pub text: String,
    pub category: Option<String>,
    pub region: Option<String>,
    /// Inclusive bounds in minor units.
    pub price_min_minor: Option<i64>,
    pub price_max_minor: Option<i64>,
    /// Set with a price bound: only prices in this currency match.
    pub currency: Option<String>,
    pub in_stock_only: bool,
    pub sort: Sort,
    /// 1..=MAX_PAGE_SIZE.
    pub limit: usize,
    pub offset: usize,
    /// The last term of `text` is a prefix; no facets.
    pub typeahead: bool,
    pub facets: Vec<FacetField>,
}

impl SearchQuery {
    /// A query for everything of `tenant`, first page.
    pub fn all(tenant_id: &str) -> SearchQuery {
        SearchQuery {
            tenant_id: tenant_id.to_string(),
            limit: DEFAULT_PAGE_SIZE,
            sort: Sort::Newest,
            ..SearchQuery::default()
        }
    }

    /// The terms of `text` as the index tokenizes them: lower case,
    /// split on anything not alphanumeric, at most 16.
    pub fn terms(&self) -> Vec<String> {
        terms(&self.text)
    }
}

/// Lower-cased alphanumeric words of `text` (at most 16, each at most 40 bytes,
/// the index tokenizer's limit).
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 40)
        .map(str::to_lowercase)
        .take(16)
        .collect()
}

/// Clamp a requested page size: 0 means the default.
pub fn page_size(requested: u32) -> usize {
    match requested as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor")]
pub struct InvalidCursor;

/// Cursors are opaque to clients; inside they are the next offset.
pub fn decode_cursor(cursor: &str) -> Result<usize, InvalidCursor> {
    if cursor.is_empty() {
        return Ok(0);
    }
    let n: usize = cursor
        .strip_prefix("o")
        .and_then(|s| s.parse().ok())
        .ok_or(InvalidCursor)?;
    if n > MAX_OFFSET {
        return Err(InvalidCursor);
    }
    Ok(n)
}

/// The cursor after a page, or empty when it was the last (or the depth cap).
pub fn next_cursor(offset: usize, returned: usize, total: u64) -> String {
    let next = offset + returned;
    if returned == 0 || next as u64 >= total || next > MAX_OFFSET {
        String::new()
    } else {
        format!("o{next}")
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub product_id: String,
    pub title: String,
    pub category: String,
    pub region: String,
    pub price_from_minor: i64,
    pub currency: String,
    pub in_stock: bool,
    pub score: f32,
    pub highlight: String,
    pub thumbnail_url: String,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResult {
    pub hits: Vec<Hit>,
    pub total: u64,
    /// Buckets highest count first (ties by value).
    pub facets: Vec<(FacetField, Vec<(String, u64)>)>,
}

/// Sort buckets highest count first, ties by value, for stable output.
pub fn sort_buckets(buckets: &mut [(String, u64)]) {
    buckets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// `title` with the words that match `query_terms` wrapped in `<em>..</em>`
/// (the last term as a prefix when `prefix_last`); empty if none matched.
pub fn highlight(title: &str, query_terms: &[String], prefix_last: bool) -> String {
    if query_terms.is_empty() {
        return String::new();
    }
    let (last, whole) = query_terms.split_last().unwrap_or((&query_terms[0], &[]));
    let matches = |w: &str| {
        let w = w.to_lowercase();
        whole.contains(&w)
            || if prefix_last {
                w.starts_with(last.as_str())
            } else {
                w == *last
            }
    };
    let mut out = String::with_capacity(title.len() + 16);
    let mut any = false;
    let mut word = String::new();
    let mut flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            if matches(word) {
                any = true;
                out.push_str("<em>");
                out.push_str(word);
                out.push_str("</em>");
            } else {
                out.push_str(word);
            }
            word.clear();
        }
    };
    for c in title.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    if any { out } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_orders_versions_then_tombstones() {
        let live = |v| VersionRank::new(v, false);
        let dead = |v| VersionRank::new(v, true);
        assert!(live(2) > live(1));
        assert!(dead(2) > live(2));
        assert!(live(3) > dead(2));
        assert!(live(2) <= live(2), "a repeat is not newer");
        for r in [live(0), dead(0), live(7), dead(7)] {
            assert_eq!(VersionRank::from_external(r.external()), r);
        }
        assert!(dead(7).external() > live(7).external());
        assert!(live(8).external() > dead(7).external());
    }

    #[test]
    fn cursors_round_trip_and_stop_at_the_end() {
        assert_eq!(decode_cursor("").unwrap(), 0);
        assert_eq!(next_cursor(0, 20, 45), "o20");
        assert_eq!(decode_cursor("o20").unwrap(), 20);
        assert_eq!(next_cursor(40, 5, 45), "");
        assert_eq!(next_cursor(0, 0, 45), "");
        assert!(decode_cursor("x").is_err());
        assert!(decode_cursor("o99999999").is_err());
        assert_eq!(page_size(0), 20);
        assert_eq!(page_size(1000), 100);
        assert_eq!(page_size(7), 7);
    }

    #[test]
    fn terms_match_the_tokenizer() {
        assert_eq!(terms("Red  Wool-Scarf!"), vec!["red", "wool", "scarf"]);
        assert!(terms("  ..").is_empty());
    }

    #[test]
    fn highlight_wraps_matching_words() {
        let t = vec!["wool".to_string(), "sc".to_string()];
        assert_eq!(
            highlight("Red Wool Scarf", &t, true),
            "Red <em>Wool</em> <em>Scarf</em>"
        );
        assert_eq!(
            highlight("Red Wool Scarf", &t, false),
            "Red <em>Wool</em> Scarf"
        );
        assert_eq!(highlight("Boots", &t, true), "");
        assert_eq!(highlight("Boots", &[], true), "");
    }
}
