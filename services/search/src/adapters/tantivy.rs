//! The embedded index (native runtime): Tantivy in a directory under the
//! state dir. One writer; external versioning in code (an in-memory map of
//! every product's indexed version, rebuilt from the index at open); commits
//! batched every `commit_interval` or `commit_batch_docs` staged documents,
//! with the reader reloaded right after each commit.
//!
//! Durability: `upsert` returns once the document is staged in the writer; it
//! is durable and searchable after the next commit (≤ `commit_interval`
//! later). A crash in between loses that batch; the service reconciles with
//! the catalog at start to repair it.

use std::{
    collections::{HashMap, HashSet},
    ops::Bound,
    path::Path,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use async_trait::async_trait;
use prometheus_client::metrics::histogram::Histogram;
use shopstream_platform::clock::Clock;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
    collector::{Count, DocSetCollector, FacetCollector, TopDocs},
    directory::MmapDirectory,
    query::{
        AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, PhrasePrefixQuery, Query,
        RangeQuery, TermQuery,
    },
    schema::{
        FAST, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, Value,
    },
};

use crate::{
    domain::{
        Applied, FacetField, Hit, IndexedMeta, ProductDoc, SearchQuery, SearchResult, Sort,
        highlight, sort_buckets,
    },
    ports::{IndexError, SearchIndex},
};

/// Writer heap (Tantivy's minimum per thread is 15 MB).
const WRITER_HEAP_BYTES: usize = 32_000_000;
/// Facet buckets returned per field.
const MAX_FACET_BUCKETS: usize = 50;
/// Prefix expansions of a typeahead's last term.
const TYPEAHEAD_MAX_EXPANSIONS: u32 = 50;

#[derive(Debug, Clone)]
pub struct TantivySettings {
    pub commit_interval: Duration,
    pub commit_batch_docs: usize,
}

impl Default for TantivySettings {
    fn default() -> Self {
        TantivySettings {
            commit_interval: Duration::from_millis(100),
            commit_batch_docs: 1_000,
        }
    }
}

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    tenant: Field,
    product_id: Field,
    title: Field,
    description: Field,
    category: Field,
    region: Field,
    f_category: Field,
    f_region: Field,
    f_in_stock: Field,
    price: Field,
    currency: Field,
    in_stock: Field,
    deleted: Field,
    version: Field,
    updated_at: Field,
    commit_ts: Field,
    thumbnail: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        key: b.add_text_field("key", STRING),
        tenant: b.add_text_field("tenant", STRING | STORED),
        product_id: b.add_text_field("product_id", STRING | STORED),
        title: b.add_text_field("title", TEXT | STORED),
        description: b.add_text_field("description", TEXT),
        category: b.add_text_field("category", STRING | STORED),
        region: b.add_text_field("region", STRING | STORED),
        f_category: b.add_facet_field("f_category", FacetOptions::default()),
        f_region: b.add_facet_field("f_region", FacetOptions::default()),
        f_in_stock: b.add_facet_field("f_in_stock", FacetOptions::default()),
        price: b.add_i64_field("price", INDEXED | FAST | STORED),
        currency: b.add_text_field("currency", STRING | STORED),
        in_stock: b.add_bool_field("in_stock", INDEXED | STORED),
        deleted: b.add_bool_field("deleted", INDEXED | STORED),
        version: b.add_i64_field("version", FAST | STORED),
        updated_at: b.add_i64_field("updated_at_ms", FAST | STORED),
        commit_ts: b.add_i64_field("commit_ts_ms", STORED),
        thumbnail: b.add_text_field("thumbnail_url", STORED),
    };
    (b.build(), f)
}

fn key(tenant: &str, product_id: &str) -> String {
    format!("{tenant}\u{1f}{product_id}")
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

type Key = (String, String);

struct State {
    writer: IndexWriter,
    metas: HashMap<Key, IndexedMeta>,
    pending: HashSet<Key>,
    /// Staged products a commit could not verify yet, with how many commits
    /// failed to (see [`commit`]).
    unverified: HashMap<Key, u32>,
}

struct Inner {
    reader: IndexReader,
    f: Fields,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
    /// Told when a document is staged into an empty batch, and when the
    /// index is dropped: the committer sleeps on it while nothing waits.
    staged: Arc<tokio::sync::Notify>,
    settings: TantivySettings,
    clock: Arc<dyn Clock>,
    latency: Option<Histogram>,
    /// Seconds each commit took (the writer's commit and the reader's
    /// reload), once [`TantivyIndex::observe_commits`] set it.
    commit_seconds: std::sync::OnceLock<Histogram>,
}

/// The Tantivy adapter. Cheap to clone; the committer task stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TantivyIndex")
    }
}

impl TantivyIndex {
    /// Open (or create) the index in `dir` and start its committer. Must run
    /// inside a Tokio runtime. `latency` observes commit→searchable seconds.
    pub fn open(
        dir: &Path,
        settings: TantivySettings,
        clock: Arc<dyn Clock>,
        latency: Option<Histogram>,
    ) -> Result<TantivyIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let (schema, f) = schema();
        let directory = MmapDirectory::open(dir).map_err(backend)?;
        let index = Index::open_or_create(directory, schema).map_err(backend)?;
        let writer: IndexWriter = index
            .writer_with_num_threads(1, WRITER_HEAP_BYTES)
            .map_err(backend)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(backend)?;
        let metas = load_metas(&reader, &f)?;
        let inner = Arc::new(Inner {
            reader,
            f,
            state: Mutex::new(State {
                writer,
                metas,
                pending: HashSet::new(),
                unverified: HashMap::new(),
            }),
            notify: tokio::sync::Notify::new(),
            staged: Arc::new(tokio::sync::Notify::new()),
            settings,
            clock,
            latency,
            commit_seconds: std::sync::OnceLock::new(),
        });
        tokio::spawn(committer(Arc::downgrade(&inner), inner.staged.clone()));
        Ok(TantivyIndex { inner })
    }

    /// Observe how long each commit takes (writer commit and reader reload)
    /// in `h`; the first histogram given is kept.
    pub fn observe_commits(&self, h: Histogram) {
        let _ = self.inner.commit_seconds.set(h);
    }
}

fn load_metas(reader: &IndexReader, f: &Fields) -> Result<HashMap<Key, IndexedMeta>, IndexError> {
    let searcher = reader.searcher();
    let docs = searcher
        .search(&AllQuery, &DocSetCollector)
        .map_err(backend)?;
    let mut metas = HashMap::with_capacity(docs.len());
    for addr in docs {
        let d: TantivyDocument = searcher.doc(addr).map_err(backend)?;
        let s = |field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let i = |field| d.get_first(field).and_then(|v| v.as_i64());
        metas.insert(
            (s(f.tenant), s(f.product_id)),
            IndexedMeta {
                version: i(f.version).unwrap_or(0),
                deleted: d
                    .get_first(f.deleted)
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                commit_ts_ms: i(f.commit_ts),
                searchable_ts_ms: None,
            },
        );
    }
    Ok(metas)
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Wake the committer, which then finds the index gone.
        self.staged.notify_one();
    }
}

/// Commit a batch `commit_interval` after its first document was staged,
/// or as soon as it is full. With nothing staged it sleeps until a document
/// is (it used to wake every interval: ~40 wake-ups a second at rest).
async fn committer(weak: Weak<Inner>, staged: Arc<tokio::sync::Notify>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let idle = inner
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .is_empty();
        if idle {
            drop(inner);
            // A permit left by a document staged since the check above
            // makes this return at once.
            staged.notified().await;
            continue;
        }
        let interval = inner.settings.commit_interval;
        // Wait without holding the index alive, so dropping it stops us.
        let notified = {
            let inner = inner.clone();
            async move { inner.notify.notified().await }
        };
        drop(inner);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = notified => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        if let Err(e) = tokio::task::spawn_blocking(move || commit(&inner))
            .await
            .map_err(backend)
            .and_then(|r| r)
        {
            tracing::error!(error = %e, "search index commit failed");
        }
    }
}

/// Commit staged documents, reload the reader, and stamp searchable what a
/// query through that reader finds: each staged product's key must match
/// exactly one document, at the version the map holds. A product that does
/// not (yet) stays staged and is looked at again after the next commit, up
/// to [`MAX_UNVERIFIED_COMMITS`] times; it is never stamped on trust.
fn commit(inner: &Inner) -> Result<usize, IndexError> {
    let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
    if st.pending.is_empty() {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    st.writer.commit().map_err(backend)?;
    inner.reader.reload().map_err(backend)?;
    if let Some(h) = inner.commit_seconds.get() {
        h.observe(started.elapsed().as_secs_f64());
    }
    let searcher = inner.reader.searcher();
    let now = inner.clock.now_ms();
    let pending = std::mem::take(&mut st.pending);
    let mut stamped = 0;
    for k in pending {
        let Some(expected) = st.metas.get(&k).map(|m| m.version) else {
            continue;
        };
        let found = indexed_versions(&searcher, &inner.f, &k)?;
        if found != [expected] {
            let tries = st.unverified.entry(k.clone()).or_insert(0);
            *tries += 1;
            if *tries == 1 || *tries == MAX_UNVERIFIED_COMMITS {
                tracing::warn!(
                    product_id = %k.1,
                    expected,
                    ?found,
                    tries = *tries,
                    "search: after a commit the index does not hold exactly the staged version; not stamped searchable"
                );
            }
            if *tries < MAX_UNVERIFIED_COMMITS {
                st.pending.insert(k);
            } else {
                st.unverified.remove(&k);
            }
            continue;
        }
        st.unverified.remove(&k);
        if let Some(m) = st.metas.get_mut(&k) {
            m.searchable_ts_ms = Some(now);
            stamped += 1;
            if let (Some(h), Some(c)) = (&inner.latency, m.commit_ts_ms) {
                h.observe((now - c).max(0) as f64 / 1_000.0);
            }
        }
    }
    Ok(stamped)
}

/// How many commits a staged product may fail verification before it is
/// given up on (left unstamped, with a warning).
const MAX_UNVERIFIED_COMMITS: u32 = 50;

/// The versions of every document the key `k` matches, as `searcher` sees them.
fn indexed_versions(
    searcher: &tantivy::Searcher,
    f: &Fields,
    k: &Key,
) -> Result<Vec<i64>, IndexError> {
    let q = TermQuery::new(
        Term::from_field_text(f.key, &key(&k.0, &k.1)),
        IndexRecordOption::Basic,
    );
    let addrs = searcher
        .search(&q, &TopDocs::with_limit(4).order_by_score())
        .map_err(backend)?;
    let mut versions = Vec::with_capacity(addrs.len());
    for (_, addr) in addrs {
        let d: TantivyDocument = searcher.doc(addr).map_err(backend)?;
        versions.push(d.get_first(f.version).and_then(|v| v.as_i64()).unwrap_or(0));
    }
    versions.sort_unstable();
    Ok(versions)
}

fn to_document(f: &Fields, d: &ProductDoc) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(f.key, key(&d.tenant_id, &d.product_id));
    doc.add_text(f.tenant, &d.tenant_id);
    doc.add_text(f.product_id, &d.product_id);
    doc.add_bool(f.deleted, d.deleted);
    doc.add_i64(f.version, d.version);
    doc.add_i64(f.updated_at, d.updated_at_ms);
    doc.add_i64(f.price, d.price_from_minor);
    if let Some(ts) = d.commit_ts_ms {
        doc.add_i64(f.commit_ts, ts);
    }
    if d.deleted {
        return doc;
    }
    doc.add_text(f.title, &d.title);
    doc.add_text(f.description, &d.description);
    doc.add_text(f.category, &d.category);
    doc.add_text(f.region, &d.region);
    doc.add_text(f.currency, &d.currency);
    doc.add_text(f.thumbnail, &d.thumbnail_url);
    doc.add_bool(f.in_stock, d.in_stock);
    doc.add_facet(
        f.f_category,
        tantivy::schema::Facet::from_path([&d.category]),
    );
    doc.add_facet(f.f_region, tantivy::schema::Facet::from_path([&d.region]));
    doc.add_facet(
        f.f_in_stock,
        tantivy::schema::Facet::from_path([if d.in_stock { "true" } else { "false" }]),
    );
    doc
}

fn filter(q: impl Query + 'static) -> (Occur, Box<dyn Query>) {
    (
        Occur::Must,
        Box::new(ConstScoreQuery::new(Box::new(q), 0.0)),
    )
}

fn term_query(t: Term) -> TermQuery {
    TermQuery::new(t, IndexRecordOption::WithFreqs)
}

fn build_query(f: &Fields, q: &SearchQuery) -> BooleanQuery {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
        filter(term_query(Term::from_field_text(f.tenant, &q.tenant_id))),
        filter(term_query(Term::from_field_bool(f.deleted, false))),
    ];
    let terms = q.terms();
    if let Some((last, whole)) = terms.split_last() {
        let word = |w: &str| -> Box<dyn Query> {
            let title: Box<dyn Query> = Box::new(BoostQuery::new(
                Box::new(term_query(Term::from_field_text(f.title, w))),
                2.0,
            ));
            let desc: Box<dyn Query> =
                Box::new(term_query(Term::from_field_text(f.description, w)));
            Box::new(BooleanQuery::new(vec![
                (Occur::Should, title),
                (Occur::Should, desc),
            ]))
        };
        for w in whole {
            // Typeahead matches titles only (a search box completes names).
            let clause: Box<dyn Query> = if q.typeahead {
                Box::new(term_query(Term::from_field_text(f.title, w)))
            } else {
                word(w)
            };
            clauses.push((Occur::Must, clause));
        }
        if q.typeahead {
            let mut p = PhrasePrefixQuery::new(vec![Term::from_field_text(f.title, last)]);
            p.set_max_expansions(TYPEAHEAD_MAX_EXPANSIONS);
            clauses.push((Occur::Must, Box::new(p)));
        } else {
            clauses.push((Occur::Must, word(last)));
        }
    }
    if let Some(c) = &q.category {
        clauses.push(filter(term_query(Term::from_field_text(f.category, c))));
    }
    if let Some(r) = &q.region {
        clauses.push(filter(term_query(Term::from_field_text(f.region, r))));
    }
    if q.price_min_minor.is_some() || q.price_max_minor.is_some() {
        let bound = |v: Option<i64>| match v {
            Some(v) => Bound::Included(Term::from_field_i64(f.price, v)),
            None => Bound::Unbounded,
        };
        clauses.push(filter(RangeQuery::new(
            bound(q.price_min_minor),
            bound(q.price_max_minor),
        )));
        if let Some(c) = &q.currency {
            clauses.push(filter(term_query(Term::from_field_text(f.currency, c))));
        }
    }
    if q.in_stock_only {
        clauses.push(filter(term_query(Term::from_field_bool(f.in_stock, true))));
    }
    BooleanQuery::new(clauses)
}

fn search_blocking(inner: &Inner, q: &SearchQuery) -> Result<SearchResult, IndexError> {
    let f = &inner.f;
    let searcher = inner.reader.searcher();
    let query = build_query(f, q);
    let limit = q.limit.max(1);
    let total = searcher.search(&query, &Count).map_err(backend)? as u64;
    let top = TopDocs::with_limit(limit).and_offset(q.offset);
    let addrs: Vec<(f32, DocAddress)> = match q.sort {
        Sort::Relevance => searcher
            .search(&query, &top.order_by_score())
            .map_err(backend)?,
        Sort::PriceAsc | Sort::PriceDesc | Sort::Newest => {
            let (field, order) = match q.sort {
                Sort::PriceAsc => ("price", Order::Asc),
                Sort::PriceDesc => ("price", Order::Desc),
                _ => ("updated_at_ms", Order::Desc),
            };
            searcher
                .search(&query, &top.order_by_fast_field::<i64>(field, order))
                .map_err(backend)?
                .into_iter()
                .map(|(_, a)| (0.0, a))
                .collect()
        }
    };
    let terms = q.terms();
    let mut hits = Vec::with_capacity(addrs.len());
    for (score, addr) in addrs {
        let d: TantivyDocument = searcher.doc(addr).map_err(backend)?;
        let s = |field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let title = s(f.title);
        hits.push(Hit {
            product_id: s(f.product_id),
            highlight: highlight(&title, &terms, q.typeahead),
            title,
            category: s(f.category),
            region: s(f.region),
            price_from_minor: d.get_first(f.price).and_then(|v| v.as_i64()).unwrap_or(0),
            currency: s(f.currency),
            in_stock: d
                .get_first(f.in_stock)
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            score,
            thumbnail_url: s(f.thumbnail),
            version: d.get_first(f.version).and_then(|v| v.as_i64()).unwrap_or(0),
        });
    }
    let mut facets = Vec::new();
    if !q.typeahead {
        let mut wanted = q.facets.clone();
        wanted.sort();
        wanted.dedup();
        for field in wanted {
            let name = match field {
                FacetField::Category => "f_category",
                FacetField::Region => "f_region",
                FacetField::InStock => "f_in_stock",
            };
            let mut fc = FacetCollector::for_field(name);
            fc.add_facet("/");
            let counts = searcher.search(&query, &fc).map_err(backend)?;
            let mut buckets: Vec<(String, u64)> = counts
                .get("/")
                .filter_map(|(facet, n)| {
                    let path = facet.to_path();
                    path.last().map(|v| (v.to_string(), n))
                })
                .collect();
            sort_buckets(&mut buckets);
            buckets.truncate(MAX_FACET_BUCKETS);
            facets.push((field, buckets));
        }
    }
    Ok(SearchResult {
        hits,
        total,
        facets,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(f).await.map_err(backend)?
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn upsert(&self, doc: ProductDoc) -> Result<Applied, IndexError> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            let k = (doc.tenant_id.clone(), doc.product_id.clone());
            if let Some(old) = st.metas.get(&k)
                && doc.rank() <= old.rank()
            {
                return Ok(Applied::Stale {
                    indexed: old.rank(),
                });
            }
            let f = &inner.f;
            st.writer.delete_term(Term::from_field_text(
                f.key,
                &key(&doc.tenant_id, &doc.product_id),
            ));
            st.writer
                .add_document(to_document(f, &doc))
                .map_err(backend)?;
            st.metas.insert(
                k.clone(),
                IndexedMeta {
                    version: doc.version,
                    deleted: doc.deleted,
                    commit_ts_ms: doc.commit_ts_ms,
                    searchable_ts_ms: None,
                },
            );
            if st.pending.is_empty() {
                inner.staged.notify_one();
            }
            st.pending.insert(k);
            if st.pending.len() >= inner.settings.commit_batch_docs {
                inner.notify.notify_one();
            }
            Ok(Applied::Written)
        })
        .await
    }

    async fn meta(
        &self,
        tenant: &str,
        product_id: &str,
    ) -> Result<Option<IndexedMeta>, IndexError> {
        let st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(st
            .metas
            .get(&(tenant.to_string(), product_id.to_string()))
            .copied())
    }

    async fn list(&self, tenant: &str) -> Result<Vec<(String, IndexedMeta)>, IndexError> {
        let st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = st
            .metas
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, id), m)| (id.clone(), *m))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        let inner = self.inner.clone();
        blocking(move || commit(&inner).map(|_| ())).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResult, IndexError> {
        // Microseconds to a few milliseconds: run on the caller's thread.
        search_blocking(&self.inner, query)
    }
}
