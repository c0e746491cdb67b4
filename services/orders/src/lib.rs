//! Orders. What exists so far is the pure core the checkout saga is built on:
//! the order state machine (`domain::order`) and the saga's decisions
//! (`domain::saga`) — which step runs next, and which compensations a failure
//! needs. The Temporal workflow and the deterministic simulator will both be
//! thin drivers of `domain::saga`; the gRPC/REST service (CreateOrder with
//! idempotency keys, GetOrder, ListOrders) and `order.lifecycle` events come
//! with the rest of the checkout issue.

pub mod domain;
