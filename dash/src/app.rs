//! The dashboard's state: derived panels plus what the user is doing (trace
//! selection, filter, overlays), and key handling as a pure function from a
//! key to an [`Action`] for the terminal loop.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::input::{Tick, Trace, TraceSummary};
use crate::model::{Model, Panels, TopicRow};
use crate::waterfall::{self, WaterfallRow};

/// Longest filter the user can type.
pub const MAX_FILTER_CHARS: usize = 64;
/// Rows one PageUp/PageDown moves.
pub const PAGE_ROWS: usize = 10;

/// What the terminal loop should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing (state may have changed).
    None,
    Quit,
    /// Fetch this trace and hand it to [`App::open_trace`].
    OpenTrace(String),
    /// An overlay (help, waterfall) was closed.
    CloseOverlay,
}

/// What covers the panels, if anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    None,
    Help,
    Trace(TraceView),
    TraceError { trace_id: String, message: String },
}

/// An open waterfall: the trace, its ordered rows, and how far it is scrolled.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceView {
    pub trace: Trace,
    pub rows: Vec<WaterfallRow>,
    pub scroll: usize,
}

#[derive(Debug)]
pub struct App {
    model: Model,
    /// Applied filter (empty: none).
    filter: String,
    /// The filter being typed, while the user types it.
    draft: Option<String>,
    /// The selected trace, by id so new traces arriving do not move it.
    selected: Option<String>,
    overlay: Overlay,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    pub fn new() -> App {
        App {
            model: Model::default(),
            filter: String::new(),
            draft: None,
            selected: None,
            overlay: Overlay::None,
        }
    }

    /// Take in one poll.
    pub fn apply(&mut self, tick: Tick) {
        self.model.apply(tick);
        self.keep_selection_valid();
    }

    /// The derived panel data of the last tick.
    pub fn panels(&self) -> &Panels {
        self.model.panels()
    }

    /// The applied filter (empty when none).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The filter being typed, if the user is typing one.
    pub fn filter_draft(&self) -> Option<&str> {
        self.draft.as_deref()
    }

    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// Traces that pass the filter, newest first.
    pub fn visible_traces(&self) -> Vec<&TraceSummary> {
        let needle = self.filter.to_lowercase();
        self.panels()
            .traces
            .iter()
            .filter(|t| needle.is_empty() || trace_matches(t, &needle))
            .collect()
    }

    /// Topics that pass the filter, in panel order.
    pub fn visible_topics(&self) -> Vec<&TopicRow> {
        let needle = self.filter.to_lowercase();
        self.panels()
            .topics
            .iter()
            .filter(|t| needle.is_empty() || t.topic.to_lowercase().contains(&needle))
            .collect()
    }

    /// Index of the selected trace among [`App::visible_traces`].
    pub fn selected_index(&self) -> Option<usize> {
        let visible = self.visible_traces();
        let id = self.selected.as_deref()?;
        visible.iter().position(|t| t.trace_id == id)
    }

    pub fn selected_trace(&self) -> Option<&TraceSummary> {
        let id = self.selected.as_deref()?;
        self.visible_traces().into_iter().find(|t| t.trace_id == id)
    }

    /// Show the waterfall of a trace the loop fetched after
    /// [`Action::OpenTrace`], or why it could not be fetched.
    pub fn open_trace(&mut self, fetched: Result<Trace, String>) {
        self.overlay = match fetched {
            Ok(trace) => Overlay::Trace(TraceView {
                rows: waterfall::rows(&trace),
                trace,
                scroll: 0,
            }),
            Err(message) => Overlay::TraceError {
                trace_id: self.selected.clone().unwrap_or_default(),
                message,
            },
        };
    }

    /// Handle one key. `q` and Ctrl-C quit (Ctrl-C even while typing a
    /// filter); `?` toggles help; `/` starts a filter (Enter applies, Esc
    /// cancels); Up/Down move the trace selection or scroll the waterfall;
    /// Enter opens the selected trace; Esc closes an overlay, else clears the
    /// filter.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C'))
        {
            return Action::Quit;
        }
        if let Some(draft) = self.draft.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    self.filter = self.draft.take().unwrap_or_default().trim().to_string();
                    self.selected = None;
                    self.keep_selection_valid();
                }
                KeyCode::Esc => self.draft = None,
                KeyCode::Backspace => {
                    draft.pop();
                }
                KeyCode::Char(c)
                    if !key
                        .modifiers
                        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                        && draft.chars().count() < MAX_FILTER_CHARS =>
                {
                    draft.push(c);
                }
                _ => {}
            }
            return Action::None;
        }
        match (&mut self.overlay, key.code) {
            (_, KeyCode::Char('q')) => Action::Quit,
            (Overlay::Help, KeyCode::Char('?'))
            | (Overlay::Help | Overlay::Trace(_) | Overlay::TraceError { .. }, KeyCode::Esc) => {
                self.overlay = Overlay::None;
                Action::CloseOverlay
            }
            (_, KeyCode::Char('?')) => {
                self.overlay = Overlay::Help;
                Action::None
            }
            (Overlay::Trace(view), code) => {
                let last = view.rows.len().saturating_sub(1);
                view.scroll = match code {
                    KeyCode::Up => view.scroll.saturating_sub(1),
                    KeyCode::Down => (view.scroll + 1).min(last),
                    KeyCode::PageUp => view.scroll.saturating_sub(PAGE_ROWS),
                    KeyCode::PageDown => (view.scroll + PAGE_ROWS).min(last),
                    KeyCode::Home => 0,
                    KeyCode::End => last,
                    _ => view.scroll,
                };
                Action::None
            }
            (Overlay::Help | Overlay::TraceError { .. }, _) => Action::None,
            (Overlay::None, KeyCode::Char('/')) => {
                self.draft = Some(self.filter.clone());
                Action::None
            }
            (Overlay::None, KeyCode::Esc) => {
                self.filter.clear();
                self.keep_selection_valid();
                Action::None
            }
            (Overlay::None, KeyCode::Up) => {
                self.move_selection(-1);
                Action::None
            }
            (Overlay::None, KeyCode::Down) => {
                self.move_selection(1);
                Action::None
            }
            (Overlay::None, KeyCode::PageUp) => {
                self.move_selection(-(PAGE_ROWS as isize));
                Action::None
            }
            (Overlay::None, KeyCode::PageDown) => {
                self.move_selection(PAGE_ROWS as isize);
                Action::None
            }
            (Overlay::None, KeyCode::Enter) => match self.selected_trace() {
                Some(t) => Action::OpenTrace(t.trace_id.clone()),
                None => Action::None,
            },
            (Overlay::None, _) => Action::None,
        }
    }

    fn move_selection(&mut self, by: isize) {
        let visible = self.visible_traces();
        if visible.is_empty() {
            return;
        }
        let at = self.selected_index().unwrap_or(0);
        let to = at.saturating_add_signed(by).min(visible.len() - 1);
        self.selected = Some(visible[to].trace_id.clone());
    }

    /// Keep the selected trace if still visible, else select the newest.
    fn keep_selection_valid(&mut self) {
        if self.selected_index().is_none() {
            self.selected = self.visible_traces().first().map(|t| t.trace_id.clone());
        }
    }
}

/// Does a trace match a lower-cased filter: root service, root operation,
/// order id or trace id contain it.
fn trace_matches(t: &TraceSummary, needle: &str) -> bool {
    t.root_service.to_lowercase().contains(needle)
        || t.root_name.to_lowercase().contains(needle)
        || t.trace_id.to_lowercase().contains(needle)
        || t.order_id
            .as_deref()
            .is_some_and(|o| o.to_lowercase().contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl_c() -> KeyEvent {
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
    }

    fn type_text(app: &mut App, text: &str) {
        for c in text.chars() {
            assert_eq!(app.on_key(key(KeyCode::Char(c))), Action::None);
        }
    }

    fn visible_ids(app: &App) -> Vec<&str> {
        app.visible_traces()
            .iter()
            .map(|t| &t.trace_id[..4])
            .collect()
    }

    #[test]
    fn q_and_ctrl_c_quit() {
        let mut app = fixtures::app();
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(app.on_key(ctrl_c()), Action::Quit);
        // Ctrl-C quits even while a filter is typed; q is typed there.
        app.on_key(key(KeyCode::Char('/')));
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::None);
        assert_eq!(app.filter_draft(), Some("q"));
        assert_eq!(app.on_key(ctrl_c()), Action::Quit);
    }

    #[test]
    fn key_releases_are_ignored() {
        let mut app = fixtures::app();
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(app.on_key(release), Action::None);
    }

    #[test]
    fn question_mark_toggles_help_and_esc_closes_it() {
        let mut app = fixtures::app();
        assert_eq!(app.on_key(key(KeyCode::Char('?'))), Action::None);
        assert_eq!(app.overlay(), &Overlay::Help);
        assert_eq!(app.on_key(key(KeyCode::Char('?'))), Action::CloseOverlay);
        assert_eq!(app.overlay(), &Overlay::None);
        app.on_key(key(KeyCode::Char('?')));
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::CloseOverlay);
        assert_eq!(app.overlay(), &Overlay::None);
    }

    #[test]
    fn slash_starts_a_filter_enter_applies_it_to_traces_and_topics() {
        let mut app = fixtures::app();
        assert_eq!(visible_ids(&app), ["77aa", "0f0e", "a1b2", "4bf9"]);
        app.on_key(key(KeyCode::Char('/')));
        type_text(&mut app, "PAYx");
        app.on_key(key(KeyCode::Backspace));
        assert_eq!(app.filter_draft(), Some("PAY"));
        assert_eq!(app.filter(), "", "not applied while typing");
        app.on_key(key(KeyCode::Enter));
        assert_eq!(app.filter(), "PAY");
        assert_eq!(app.filter_draft(), None);
        // Case-insensitive, on the root service.
        assert_eq!(visible_ids(&app), ["77aa"]);
        let topics: Vec<_> = app
            .visible_topics()
            .iter()
            .map(|t| t.topic.as_str())
            .collect();
        assert_eq!(topics, ["payment.events", "payment.events.dlq"]);
        assert_eq!(app.selected_trace().map(|t| &t.trace_id[..4]), Some("77aa"));
    }

    #[test]
    fn the_filter_matches_operation_and_order_id() {
        let mut app = fixtures::app();
        app.on_key(key(KeyCode::Char('/')));
        type_text(&mut app, "ord_1001");
        app.on_key(key(KeyCode::Enter));
        assert_eq!(visible_ids(&app), ["77aa", "4bf9"]);
        app.on_key(key(KeyCode::Char('/')));
        for _ in 0.."ord_1001".len() {
            app.on_key(key(KeyCode::Backspace));
        }
        type_text(&mut app, "products");
        app.on_key(key(KeyCode::Enter));
        assert_eq!(visible_ids(&app), ["0f0e"]);
    }

    #[test]
    fn esc_cancels_the_typed_filter_and_then_clears_the_applied_one() {
        let mut app = fixtures::app();
        app.on_key(key(KeyCode::Char('/')));
        type_text(&mut app, "gateway");
        app.on_key(key(KeyCode::Enter));
        app.on_key(key(KeyCode::Char('/')));
        type_text(&mut app, "-more");
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::None);
        assert_eq!(app.filter_draft(), None);
        assert_eq!(app.filter(), "gateway", "Esc keeps the applied filter");
        assert_eq!(visible_ids(&app), ["a1b2", "4bf9"]);
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.filter(), "");
        assert_eq!(visible_ids(&app).len(), 4);
    }

    #[test]
    fn the_filter_is_bounded() {
        let mut app = fixtures::app();
        app.on_key(key(KeyCode::Char('/')));
        type_text(&mut app, &"x".repeat(MAX_FILTER_CHARS + 10));
        assert_eq!(
            app.filter_draft().map(|d| d.chars().count()),
            Some(MAX_FILTER_CHARS)
        );
    }

    #[test]
    fn up_and_down_move_the_selection_within_bounds() {
        let mut app = App::new();
        app.apply(fixtures::tick(1));
        assert_eq!(app.selected_index(), Some(0), "the newest by default");
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.selected_index(), Some(0));
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_trace().map(|t| &t.trace_id[..4]), Some("a1b2"));
        for _ in 0..5 {
            app.on_key(key(KeyCode::Down));
        }
        assert_eq!(app.selected_index(), Some(3));
        app.on_key(key(KeyCode::PageUp));
        assert_eq!(app.selected_index(), Some(0));
    }

    #[test]
    fn the_selection_follows_its_trace_when_new_ones_arrive() {
        let mut app = App::new();
        app.apply(fixtures::tick(0));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_trace().map(|t| &t.trace_id[..4]), Some("a1b2"));
        app.apply(fixtures::tick(1));
        assert_eq!(app.selected_trace().map(|t| &t.trace_id[..4]), Some("a1b2"));
        assert_eq!(app.selected_index(), Some(2));
    }

    #[test]
    fn enter_opens_the_selected_trace() {
        let mut app = App::new();
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Action::None,
            "no traces yet"
        );
        app.apply(fixtures::tick(1));
        app.on_key(key(KeyCode::Down));
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Action::OpenTrace("0f0e0d0c0b0a09080706050403020100".into())
        );
    }

    #[test]
    fn an_open_trace_scrolls_and_esc_closes_it() {
        let mut app = fixtures::app();
        app.open_trace(Ok(fixtures::order_trace()));
        let Overlay::Trace(view) = app.overlay() else {
            panic!("no waterfall: {:?}", app.overlay());
        };
        assert_eq!(view.rows.len(), 7);
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        let scroll = |app: &App| match app.overlay() {
            Overlay::Trace(v) => v.scroll,
            _ => usize::MAX,
        };
        assert_eq!(scroll(&app), 2);
        app.on_key(key(KeyCode::PageDown));
        assert_eq!(scroll(&app), 6, "not past the last row");
        app.on_key(key(KeyCode::Home));
        assert_eq!(scroll(&app), 0);
        let selected = app.selected_index();
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_index(), selected, "keys go to the overlay");
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::CloseOverlay);
        assert_eq!(app.overlay(), &Overlay::None);
    }

    #[test]
    fn a_trace_that_cannot_be_fetched_shows_why() {
        let mut app = fixtures::app();
        app.open_trace(Err("collector unreachable".into()));
        assert!(matches!(
            app.overlay(),
            Overlay::TraceError { message, .. } if message == "collector unreachable"
        ));
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::CloseOverlay);
    }
}
