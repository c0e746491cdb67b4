//! The terminal dashboard (`shopstream dash`) and the trace waterfall shared
//! with `shopstream trace`.
//!
//! This crate owns the app state, the derivation of panel data from the
//! services' Prometheus text, key handling, rendering and the terminal loop. It
//! fetches nothing: the CLI implements [`Source`] and feeds [`Tick`]s, so every
//! part can be tested from fixed inputs.
//!
//! - [`prom`]: the Prometheus text reader and histogram quantiles.
//! - [`model`]: panel data derived tick by tick ([`Panels`]).
//! - [`app`]: [`App`] (state and keys, [`App::on_key`] → [`Action`]).
//! - [`ui`]: rendering into a ratatui frame.
//! - [`waterfall`]: one trace as ordered rows or text lines.
//! - [`render_to_string`], [`snapshot_json`]: text and JSON for scripts.
//! - [`run_terminal`]: the terminal loop.

pub mod app;
pub mod input;
pub mod model;
mod output;
pub mod prom;
mod terminal;
pub mod ui;
pub mod waterfall;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

pub use app::{Action, App, Overlay, TraceView};
pub use input::{ComponentInput, ScenarioProgress, Span, SpanEvent, Tick, Trace, TraceSummary};
pub use model::{ComponentState, Panels};
pub use output::{buffer_to_text, render_to_string, snapshot_json};
/// Key events as [`App::on_key`] takes them, so callers need no crossterm.
pub use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
pub use terminal::{MIN_REFRESH, RECORD_SEPARATOR, Source, run_terminal, run_terminal_recording};
pub use waterfall::{WaterfallRow, lines as waterfall_lines, rows as waterfall_rows};
