//! One file per real backend the service talks to.

pub mod postgres;
