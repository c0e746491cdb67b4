//! Stripe webhook signatures: the scheme lives in
//! `shopstream_platform::stripe_signature` (stripe-sim signs with the same code).

pub use shopstream_platform::stripe_signature::{
    DEFAULT_TOLERANCE_S, SignatureError, sign, verify,
};
