//! Search against real backends: the index contract on Tantivy (and on
//! OpenSearch when `SHOPSTREAM_OPENSEARCH_URL` is set), the `product.events`
//! pipeline on the test stack's Kafka with a fake catalog, reconcile, and the
//! query latency over 1,000 products.

mod contract;
mod pipeline;
mod support;
