//! The feed's pure core: activities and their validation, the feature state
//! and scoring function, and page cursors. No I/O, no async, no clock reads.

pub mod activity;
pub mod cursor;
pub mod features;
