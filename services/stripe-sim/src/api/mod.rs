//! The wire: Stripe's REST surface and the `/_sim/` admin endpoints.

pub mod http;
