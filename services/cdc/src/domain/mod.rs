//! The CDC domain: the pgoutput decoder, the per-stream state that turns
//! messages into row changes, and the mapping of row changes to events.
//! No I/O, no async, no clock reads.

pub mod change;
pub mod pgoutput;
pub mod stream;
