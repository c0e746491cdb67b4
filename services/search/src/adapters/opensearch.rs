//! [`SearchIndex`] on OpenSearch through the `opensearch` crate: an index
//! template and mapping from code, bulk writes with `version_type=external_gte`
//! (the external version is [`VersionRank::external`], so at one version a
//! tombstone outranks the live document) and `refresh=wait_for`, query DSL
//! for full text, filters, facets (terms aggregations), sorts and typeahead
//! (`match_bool_prefix`). Requests and responses are built and parsed by pure
//! functions, unit-tested against OpenSearch's documented shapes.
//!
//! With `external_gte` a repeat of the indexed version is rewritten (same
//! content) and reported `Written`; an older version is rejected (409) and
//! reported `Stale`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use opensearch::{
    OpenSearch,
    http::{
        Method, StatusCode,
        headers::{CONTENT_TYPE, HeaderMap, HeaderValue},
        request::{JsonBody, NdBody},
        transport::Transport,
    },
};
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{Value, json};
use shopstream_platform::clock::Clock;

use crate::{
    domain::{
        Applied, FacetField, Hit, IndexedMeta, ProductDoc, SearchQuery, SearchResult, Sort,
        VersionRank, highlight, sort_buckets,
    },
    ports::{IndexError, SearchIndex},
};

/// Deadline of every call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Hits per page while listing a tenant's documents.
const LIST_PAGE: usize = 1_000;
const MAX_FACET_BUCKETS: usize = 50;

/// The index template: settings and the strict mapping of product documents.
pub fn index_template(index: &str) -> Value {
    json!({
        "index_patterns": [index],
        "template": {
            "settings": { "number_of_shards": 1, "refresh_interval": "1s" },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "tenant": { "type": "keyword" },
                    "product_id": { "type": "keyword" },
                    "title": { "type": "text" },
                    "description": { "type": "text" },
                    "category": { "type": "keyword" },
                    "region": { "type": "keyword" },
                    "price_from_minor": { "type": "long" },
                    "currency": { "type": "keyword" },
                    "in_stock": { "type": "boolean" },
                    "deleted": { "type": "boolean" },
                    "version": { "type": "long" },
                    "updated_at_ms": { "type": "long" },
                    "commit_ts_ms": { "type": "long" },
                    "thumbnail_url": { "type": "keyword", "index": false }
                }
            }
        }
    })
}

/// Document id: tenant and product id.
pub fn doc_id(tenant: &str, product_id: &str) -> String {
    format!("{tenant}:{product_id}")
}

/// Percent-encode a path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn source(d: &ProductDoc) -> Value {
    json!({
        "tenant": d.tenant_id,
        "product_id": d.product_id,
        "title": d.title,
        "description": d.description,
        "category": d.category,
        "region": d.region,
        "price_from_minor": d.price_from_minor,
        "currency": d.currency,
        "in_stock": d.in_stock,
        "deleted": d.deleted,
        "version": d.version,
        "updated_at_ms": d.updated_at_ms,
        "commit_ts_ms": d.commit_ts_ms,
        "thumbnail_url": d.thumbnail_url,
    })
}

/// The two NDJSON lines of one externally versioned bulk `index` action.
pub fn bulk_lines(index: &str, d: &ProductDoc) -> Vec<Value> {
    vec![
        json!({ "index": {
            "_index": index,
            "_id": doc_id(&d.tenant_id, &d.product_id),
            "version": d.rank().external(),
            "version_type": "external_gte",
        }}),
        source(d),
    ]
}

/// Outcome of one bulk item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Written,
    /// 409 version conflict: the index holds a newer version.
    Conflict,
    Failed(String),
}

/// Per-item outcomes of a bulk response, in request order.
pub fn parse_bulk(resp: &Value) -> Result<Vec<ItemOutcome>, IndexError> {
    let items = resp
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| IndexError::Backend("bulk response without items".into()))?;
    Ok(items
        .iter()
        .map(|item| {
            let r = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = r.get("status").and_then(Value::as_u64).unwrap_or(0);
            match status {
                200 | 201 => ItemOutcome::Written,
                409 => ItemOutcome::Conflict,
                _ => ItemOutcome::Failed(
                    r.pointer("/error/type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_string(),
                ),
            }
        })
        .collect())
}

fn meta_from_source(s: &Value) -> Option<IndexedMeta> {
    Some(IndexedMeta {
        version: s.get("version")?.as_i64()?,
        deleted: s.get("deleted").and_then(Value::as_bool).unwrap_or(false),
        commit_ts_ms: s.get("commit_ts_ms").and_then(Value::as_i64),
        searchable_ts_ms: None,
    })
}

/// Meta from a get-document response (`found: false` is `None`).
pub fn parse_get(resp: &Value) -> Option<IndexedMeta> {
    if !resp.get("found").and_then(Value::as_bool).unwrap_or(false) {
        return None;
    }
    meta_from_source(resp.get("_source")?)
}

fn facet_name(f: FacetField) -> &'static str {
    match f {
        FacetField::Category => "category",
        FacetField::Region => "region",
        FacetField::InStock => "in_stock",
    }
}

/// The `_search` body for a query.
pub fn search_body(q: &SearchQuery) -> Value {
    let mut filter = vec![
        json!({"term": {"tenant": q.tenant_id}}),
        json!({"term": {"deleted": false}}),
    ];
    if let Some(c) = &q.category {
        filter.push(json!({"term": {"category": c}}));
    }
    if let Some(r) = &q.region {
        filter.push(json!({"term": {"region": r}}));
    }
    if q.price_min_minor.is_some() || q.price_max_minor.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(v) = q.price_min_minor {
            range.insert("gte".into(), json!(v));
        }
        if let Some(v) = q.price_max_minor {
            range.insert("lte".into(), json!(v));
        }
        filter.push(json!({"range": {"price_from_minor": range}}));
        if let Some(c) = &q.currency {
            filter.push(json!({"term": {"currency": c}}));
        }
    }
    if q.in_stock_only {
        filter.push(json!({"term": {"in_stock": true}}));
    }
    let text = q.terms().join(" ");
    let must: Vec<Value> = if text.is_empty() {
        vec![]
    } else if q.typeahead {
        vec![json!({"match_bool_prefix": {"title": {"query": text, "operator": "and"}}})]
    } else {
        vec![json!({"multi_match": {
            "query": text, "fields": ["title^2", "description"], "operator": "and"
        }})]
    };
    let sort = match q.sort {
        Sort::Relevance => json!(["_score", {"product_id": "asc"}]),
        Sort::PriceAsc => json!([{"price_from_minor": "asc"}, {"product_id": "asc"}]),
        Sort::PriceDesc => json!([{"price_from_minor": "desc"}, {"product_id": "asc"}]),
        Sort::Newest => json!([{"updated_at_ms": "desc"}, {"product_id": "asc"}]),
    };
    let mut body = json!({
        "from": q.offset,
        "size": q.limit,
        "track_total_hits": true,
        "query": {"bool": {"filter": filter, "must": must}},
        "sort": sort,
        "_source": ["product_id", "title", "category", "region", "price_from_minor",
                    "currency", "in_stock", "thumbnail_url", "version"],
    });
    if !q.typeahead && !q.facets.is_empty() {
        let aggs: serde_json::Map<String, Value> = q
            .facets
            .iter()
            .map(|f| {
                let name = facet_name(*f);
                (
                    name.to_string(),
                    json!({"terms": {"field": name, "size": MAX_FACET_BUCKETS}}),
                )
            })
            .collect();
        body["aggs"] = Value::Object(aggs);
    }
    body
}

/// The result of a `_search` response for `q`.
pub fn parse_search(q: &SearchQuery, resp: &Value) -> Result<SearchResult, IndexError> {
    let hits_v = resp
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| IndexError::Backend("search response without hits".into()))?;
    let total = resp
        .pointer("/hits/total/value")
        .or_else(|| resp.pointer("/hits/total"))
        .and_then(Value::as_u64)
        .unwrap_or(hits_v.len() as u64);
    let terms = q.terms();
    let hits = hits_v
        .iter()
        .map(|h| {
            let s = h.get("_source").cloned().unwrap_or(Value::Null);
            let st = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let title = st("title");
            Hit {
                product_id: st("product_id"),
                highlight: highlight(&title, &terms, q.typeahead),
                title,
                category: st("category"),
                region: st("region"),
                price_from_minor: s
                    .get("price_from_minor")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                currency: st("currency"),
                in_stock: s.get("in_stock").and_then(Value::as_bool).unwrap_or(false),
                score: if q.sort == Sort::Relevance {
                    h.get("_score").and_then(Value::as_f64).unwrap_or(0.0) as f32
                } else {
                    0.0
                },
                thumbnail_url: st("thumbnail_url"),
                version: s.get("version").and_then(Value::as_i64).unwrap_or(0),
            }
        })
        .collect();
    let mut facets = Vec::new();
    if !q.typeahead {
        let mut wanted = q.facets.clone();
        wanted.sort();
        wanted.dedup();
        for f in wanted {
            let buckets_v = resp
                .pointer(&format!("/aggregations/{}/buckets", facet_name(f)))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut buckets: Vec<(String, u64)> = buckets_v
                .iter()
                .filter_map(|b| {
                    let key = b
                        .get("key_as_string")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| match b.get("key")? {
                            Value::String(s) => Some(s.clone()),
                            other => Some(other.to_string()),
                        })?;
                    Some((key, b.get("doc_count")?.as_u64()?))
                })
                .collect();
            sort_buckets(&mut buckets);
            facets.push((f, buckets));
        }
    }
    Ok(SearchResult {
        hits,
        total,
        facets,
    })
}

/// One page of a tenant's documents (tombstones included), after `after`.
pub fn list_body(tenant: &str, after: Option<&str>) -> Value {
    let mut body = json!({
        "size": LIST_PAGE,
        "query": {"term": {"tenant": tenant}},
        "sort": [{"product_id": "asc"}],
        "_source": ["product_id", "version", "deleted", "commit_ts_ms"],
    });
    if let Some(a) = after {
        body["search_after"] = json!([a]);
    }
    body
}

/// The OpenSearch adapter.
#[derive(Clone)]
pub struct OpenSearchIndex {
    client: OpenSearch,
    index: String,
    clock: Arc<dyn Clock>,
    latency: Option<Histogram>,
    /// When each document was last seen searchable (after its bulk with
    /// `refresh=wait_for`); process-local.
    searchable: Arc<Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Debug for OpenSearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchIndex")
            .field("index", &self.index)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> IndexError {
    IndexError::Unavailable(e.to_string())
}

impl OpenSearchIndex {
    /// Connect to `url`, install the index template and create `index`.
    pub async fn connect(
        url: &str,
        index: &str,
        clock: Arc<dyn Clock>,
        latency: Option<Histogram>,
    ) -> Result<OpenSearchIndex, IndexError> {
        let transport =
            Transport::single_node(url).map_err(|e| IndexError::Backend(e.to_string()))?;
        let os = OpenSearchIndex {
            client: OpenSearch::new(transport),
            index: index.to_string(),
            clock,
            latency,
            searchable: Arc::new(Mutex::new(HashMap::new())),
        };
        os.call(
            Method::Put,
            &format!("/_index_template/{}-template", encode_segment(index)),
            &[],
            Some(index_template(index)),
        )
        .await?;
        let (status, body) = os
            .send(
                Method::Put,
                &format!("/{}", encode_segment(index)),
                &[],
                Some(json!({})),
            )
            .await?;
        let exists = body.pointer("/error/type").and_then(Value::as_str)
            == Some("resource_already_exists_exception");
        if !status.is_success() && !exists {
            return Err(IndexError::Backend(format!(
                "create index: {status} {body}"
            )));
        }
        Ok(os)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), IndexError> {
        let resp = self
            .client
            .send(
                method,
                path,
                HeaderMap::new(),
                Some(query),
                body.map(JsonBody::new),
                Some(CALL_TIMEOUT),
            )
            .await
            .map_err(unavailable)?;
        let status = resp.status_code();
        let text = resp.text().await.map_err(unavailable)?;
        let v = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, v))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, IndexError> {
        let (status, v) = self.send(method, path, query, body).await?;
        if status.is_server_error() {
            return Err(IndexError::Unavailable(format!("{path}: {status}")));
        }
        if !status.is_success() {
            return Err(IndexError::Backend(format!("{path}: {status} {v}")));
        }
        Ok(v)
    }
}

#[async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn upsert(&self, doc: ProductDoc) -> Result<Applied, IndexError> {
        let lines: Vec<JsonBody<Value>> = bulk_lines(&self.index, &doc)
            .into_iter()
            .map(JsonBody::new)
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let resp = self
            .client
            .send(
                Method::Post,
                "/_bulk",
                headers,
                Some(&[("refresh", "wait_for")]),
                Some(NdBody::new(lines)),
                Some(CALL_TIMEOUT),
            )
            .await
            .map_err(unavailable)?;
        let status = resp.status_code();
        let text = resp.text().await.map_err(unavailable)?;
        if !status.is_success() {
            return Err(IndexError::Unavailable(format!("bulk: {status}")));
        }
        let v: Value =
            serde_json::from_str(&text).map_err(|e| IndexError::Backend(e.to_string()))?;
        match parse_bulk(&v)?.first() {
            Some(ItemOutcome::Written) => {
                let now = self.clock.now_ms();
                if let (Some(h), Some(c)) = (&self.latency, doc.commit_ts_ms) {
                    h.observe((now - c).max(0) as f64 / 1_000.0);
                }
                self.searchable
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(doc_id(&doc.tenant_id, &doc.product_id), now);
                Ok(Applied::Written)
            }
            Some(ItemOutcome::Conflict) => {
                let indexed = self
                    .meta(&doc.tenant_id, &doc.product_id)
                    .await?
                    .map(|m| m.rank())
                    .unwrap_or(VersionRank::new(doc.version, doc.deleted));
                Ok(Applied::Stale { indexed })
            }
            Some(ItemOutcome::Failed(why)) => Err(IndexError::Backend(format!("bulk item: {why}"))),
            None => Err(IndexError::Backend("bulk response without items".into())),
        }
    }

    async fn meta(
        &self,
        tenant: &str,
        product_id: &str,
    ) -> Result<Option<IndexedMeta>, IndexError> {
        let id = doc_id(tenant, product_id);
        let (status, v) = self
            .send(
                Method::Get,
                &format!(
                    "/{}/_doc/{}",
                    encode_segment(&self.index),
                    encode_segment(&id)
                ),
                &[],
                None,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(IndexError::Unavailable(format!("get: {status}")));
        }
        Ok(parse_get(&v).map(|m| IndexedMeta {
            searchable_ts_ms: self
                .searchable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .copied(),
            ..m
        }))
    }

    async fn list(&self, tenant: &str) -> Result<Vec<(String, IndexedMeta)>, IndexError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let v = self
                .call(
                    Method::Post,
                    &format!("/{}/_search", encode_segment(&self.index)),
                    &[],
                    Some(list_body(tenant, after.as_deref())),
                )
                .await?;
            let hits = v
                .pointer("/hits/hits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for h in &hits {
                let s = h.get("_source").cloned().unwrap_or(Value::Null);
                if let (Some(id), Some(m)) = (
                    s.get("product_id").and_then(Value::as_str),
                    meta_from_source(&s),
                ) {
                    out.push((id.to_string(), m));
                }
            }
            if hits.len() < LIST_PAGE {
                return Ok(out);
            }
            after = out.last().map(|(id, _)| id.clone());
        }
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        self.call(
            Method::Post,
            &format!("/{}/_refresh", encode_segment(&self.index)),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResult, IndexError> {
        let v = self
            .call(
                Method::Post,
                &format!("/{}/_search", encode_segment(&self.index)),
                &[],
                Some(search_body(query)),
            )
            .await?;
        parse_search(query, &v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: i64, deleted: bool) -> ProductDoc {
        ProductDoc {
            tenant_id: "t".into(),
            product_id: "p1".into(),
            version: v,
            deleted,
            title: "Red Wool Scarf".into(),
            ..ProductDoc::default()
        }
    }

    #[test]
    fn bulk_action_is_externally_versioned_with_tombstones_ranked_higher() {
        let live = bulk_lines("products", &doc(3, false));
        assert_eq!(
            live[0],
            json!({"index": {"_index": "products", "_id": "t:p1", "version": 6,
                             "version_type": "external_gte"}})
        );
        assert_eq!(live[1]["title"], "Red Wool Scarf");
        assert_eq!(live[1]["deleted"], false);
        let dead = bulk_lines("products", &doc(3, true));
        assert_eq!(dead[0]["index"]["version"], 7);
    }

    #[test]
    fn parses_a_documented_bulk_response() {
        // Shape of the `_bulk` response in the OpenSearch documentation.
        let resp = json!({
            "took": 11, "errors": true,
            "items": [
                {"index": {"_index": "products", "_id": "t:p1", "_version": 6, "result": "created",
                           "_shards": {"total": 2, "successful": 1, "failed": 0},
                           "_seq_no": 0, "_primary_term": 1, "status": 201}},
                {"index": {"_index": "products", "_id": "t:p2", "status": 409,
                           "error": {"type": "version_conflict_engine_exception",
                                     "reason": "[t:p2]: version conflict, current version [8] is higher than the one provided [6]",
                                     "index": "products", "shard": "0"}}},
                {"index": {"_index": "products", "_id": "t:p3", "status": 400,
                           "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"}}},
                {"index": {"_index": "products", "_id": "t:p4", "_version": 8, "result": "updated", "status": 200}}
            ]
        });
        assert_eq!(
            parse_bulk(&resp).unwrap(),
            vec![
                ItemOutcome::Written,
                ItemOutcome::Conflict,
                ItemOutcome::Failed("mapper_parsing_exception".into()),
                ItemOutcome::Written
            ]
        );
        assert!(parse_bulk(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn parses_a_documented_get_response() {
        let found = json!({"_index": "products", "_id": "t:p1", "_version": 7, "_seq_no": 3,
                           "_primary_term": 1, "found": true,
                           "_source": {"product_id": "p1", "version": 3, "deleted": true,
                                       "commit_ts_ms": 1700}});
        assert_eq!(
            parse_get(&found),
            Some(IndexedMeta {
                version: 3,
                deleted: true,
                commit_ts_ms: Some(1700),
                searchable_ts_ms: None
            })
        );
        assert_eq!(
            parse_get(&json!({"_index": "products", "_id": "x", "found": false})),
            None
        );
    }

    #[test]
    fn builds_the_query_dsl() {
        let q = SearchQuery {
            tenant_id: "t".into(),
            text: "Wool scarf".into(),
            category: Some("scarves".into()),
            price_min_minor: Some(100),
            price_max_minor: Some(900),
            currency: Some("EUR".into()),
            in_stock_only: true,
            sort: Sort::PriceAsc,
            limit: 10,
            offset: 20,
            facets: vec![FacetField::Region, FacetField::InStock],
            ..SearchQuery::default()
        };
        let b = search_body(&q);
        assert_eq!(
            (b["from"].clone(), b["size"].clone()),
            (json!(20), json!(10))
        );
        let filter = b["query"]["bool"]["filter"].as_array().unwrap();
        assert!(filter.contains(&json!({"term": {"tenant": "t"}})));
        assert!(filter.contains(&json!({"term": {"deleted": false}})));
        assert!(filter.contains(&json!({"term": {"category": "scarves"}})));
        assert!(filter.contains(&json!({"range": {"price_from_minor": {"gte": 100, "lte": 900}}})));
        assert!(filter.contains(&json!({"term": {"currency": "EUR"}})));
        assert!(filter.contains(&json!({"term": {"in_stock": true}})));
        assert_eq!(
            b["query"]["bool"]["must"][0]["multi_match"],
            json!({"query": "wool scarf", "fields": ["title^2", "description"], "operator": "and"})
        );
        assert_eq!(b["sort"][0], json!({"price_from_minor": "asc"}));
        assert_eq!(b["aggs"]["region"]["terms"]["field"], "region");
        assert_eq!(b["aggs"]["in_stock"]["terms"]["field"], "in_stock");

        let ta = SearchQuery {
            text: "wool sc".into(),
            typeahead: true,
            facets: vec![FacetField::Category],
            ..SearchQuery::all("t")
        };
        let b = search_body(&ta);
        assert_eq!(
            b["query"]["bool"]["must"][0],
            json!({"match_bool_prefix": {"title": {"query": "wool sc", "operator": "and"}}})
        );
        assert!(b.get("aggs").is_none());
    }

    #[test]
    fn parses_a_documented_search_response_with_aggregations() {
        let q = SearchQuery {
            text: "wool".into(),
            sort: Sort::Relevance,
            facets: vec![FacetField::Category, FacetField::InStock],
            ..SearchQuery::all("t")
        };
        let resp = json!({
            "took": 3, "timed_out": false,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {
                "total": {"value": 2, "relation": "eq"},
                "max_score": 1.3,
                "hits": [
                    {"_index": "products", "_id": "t:p1", "_score": 1.3,
                     "_source": {"product_id": "p1", "title": "Red Wool Scarf", "category": "scarves",
                                 "region": "eu", "price_from_minor": 2499, "currency": "EUR",
                                 "in_stock": true, "thumbnail_url": "", "version": 4}},
                    {"_index": "products", "_id": "t:p2", "_score": 0.7,
                     "_source": {"product_id": "p2", "title": "Wool Socks", "category": "socks",
                                 "region": "us", "price_from_minor": 900, "currency": "USD",
                                 "in_stock": false, "version": 1}}
                ]
            },
            "aggregations": {
                "category": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0,
                             "buckets": [{"key": "scarves", "doc_count": 1}, {"key": "socks", "doc_count": 1}]},
                "in_stock": {"buckets": [{"key": 1, "key_as_string": "true", "doc_count": 1},
                                         {"key": 0, "key_as_string": "false", "doc_count": 1}]}
            }
        });
        let r = parse_search(&q, &resp).unwrap();
        assert_eq!(r.total, 2);
        assert_eq!(r.hits[0].product_id, "p1");
        assert_eq!(r.hits[0].highlight, "Red <em>Wool</em> Scarf");
        assert_eq!((r.hits[0].price_from_minor, r.hits[0].version), (2499, 4));
        assert!((r.hits[0].score - 1.3).abs() < 1e-6);
        assert!(!r.hits[1].in_stock);
        assert_eq!(
            r.facets,
            vec![
                (
                    FacetField::Category,
                    vec![("scarves".into(), 1), ("socks".into(), 1)]
                ),
                (
                    FacetField::InStock,
                    vec![("false".into(), 1), ("true".into(), 1)]
                ),
            ]
        );
        assert!(parse_search(&q, &json!({"error": {}})).is_err());
    }

    #[test]
    fn template_is_strict_and_ids_are_encoded() {
        let t = index_template("products");
        assert_eq!(t["template"]["mappings"]["dynamic"], "strict");
        assert_eq!(
            t["template"]["mappings"]["properties"]["version"]["type"],
            "long"
        );
        assert_eq!(encode_segment("t:p 1/x"), "t%3Ap%201%2Fx");
        assert_eq!(list_body("t", Some("p9"))["search_after"], json!(["p9"]));
    }
}
