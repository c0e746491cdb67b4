//! The terminal loop of `shopstream dash`: raw mode and the alternate screen,
//! restored on every way out (return, error, panic), polling a [`Source`] at
//! the refresh rate and redrawing only on a tick, a key or a resize.

use std::io::{self, Write};
use std::panic::{self, PanicHookInfo};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

use crate::app::{Action, App};
use crate::input::{Tick, Trace};
use crate::output::buffer_to_text;
use crate::ui;

/// Polling faster than this buys nothing and loads the services.
pub const MIN_REFRESH: Duration = Duration::from_millis(250);
/// Line written after each recorded frame.
pub const RECORD_SEPARATOR: &str = "────────────────────────────────────────";

/// Where the dashboard's data comes from (the CLI implements it over HTTP).
pub trait Source {
    /// One poll of the stack. MUST return within the refresh interval (use
    /// timeouts): the screen does not redraw while it runs. MUST NOT fail: what
    /// could not be read is left out of the tick (a down component, missing
    /// metrics).
    fn poll(&mut self) -> Tick;
    /// One trace by id, for the waterfall; `Err` carries a message for the user.
    fn trace(&mut self, trace_id: &str) -> Result<Trace, String>;
}

/// Run the dashboard until the user quits. `refresh` is clamped to
/// [`MIN_REFRESH`].
pub fn run_terminal<S: Source>(source: S, refresh: Duration) -> io::Result<()> {
    run_terminal_recording(source, refresh, None)
}

/// [`run_terminal`], also appending each drawn frame's text (as
/// [`crate::render_to_string`] gives it) and a [`RECORD_SEPARATOR`] line to
/// `record` (`--record FILE`).
pub fn run_terminal_recording<S: Source>(
    mut source: S,
    refresh: Duration,
    mut record: Option<&mut dyn Write>,
) -> io::Result<()> {
    let refresh = refresh.max(MIN_REFRESH);
    let _guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    let mut app = App::new();
    let mut next_poll = Instant::now();
    let mut dirty = true;
    loop {
        if Instant::now() >= next_poll {
            app.apply(source.poll());
            next_poll = Instant::now() + refresh;
            dirty = true;
        }
        if dirty {
            let frame = terminal.draw(|f| ui::render(f, &app))?;
            if let Some(out) = record.as_deref_mut() {
                record_frame(out, frame.buffer)?;
            }
            dirty = false;
        }
        let wait = next_poll.saturating_duration_since(Instant::now());
        if !event::poll(wait)? {
            continue;
        }
        match event::read()? {
            // Ctrl-C arrives as a key in raw mode; on_key maps it to Quit.
            Event::Key(key) => {
                match app.on_key(key) {
                    Action::Quit => break,
                    Action::OpenTrace(id) => {
                        let fetched = source.trace(&id);
                        app.open_trace(fetched);
                    }
                    Action::None | Action::CloseOverlay => {}
                }
                dirty = true;
            }
            Event::Resize(..) => {
                terminal.autoresize()?;
                dirty = true;
            }
            _ => {}
        }
    }
    if let Some(out) = record {
        out.flush()?;
    }
    Ok(())
}

/// Append one frame's text and the separator line.
fn record_frame(out: &mut dyn Write, buffer: &Buffer) -> io::Result<()> {
    out.write_all(buffer_to_text(buffer).as_bytes())?;
    writeln!(out, "{RECORD_SEPARATOR}")
}

type PanicHook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Raw mode and the alternate screen while alive; restores the terminal when
/// dropped, and from the panic hook before the panic message prints (else the
/// message would land on the alternate screen and vanish).
struct TerminalGuard {
    previous_hook: Option<Arc<PanicHook>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        let previous: Arc<PanicHook> = Arc::new(panic::take_hook());
        let chained = Arc::clone(&previous);
        panic::set_hook(Box::new(move |info| {
            restore_terminal();
            chained(info);
        }));
        let guard = TerminalGuard {
            previous_hook: Some(previous),
        };
        enable_raw_mode()?;
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        // The hook cannot be swapped while panicking; the process is going
        // down through ours then, which is fine.
        if std::thread::panicking() {
            return;
        }
        let ours = panic::take_hook();
        drop(ours);
        if let Some(previous) = self.previous_hook.take() {
            match Arc::try_unwrap(previous) {
                Ok(hook) => panic::set_hook(hook),
                Err(shared) => panic::set_hook(Box::new(move |info| shared(info))),
            }
        }
    }
}

/// Leave raw mode and the alternate screen; errors are ignored, since this
/// runs on the way out, where nothing better can be done.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::fixtures;

    #[test]
    fn a_recording_is_each_frame_as_rendered_text_then_a_separator() {
        let app = fixtures::app();
        let Ok(mut terminal) = Terminal::new(TestBackend::new(120, 30));
        let mut out: Vec<u8> = Vec::new();
        for _ in 0..2 {
            let Ok(frame) = terminal.draw(|f| ui::render(f, &app));
            record_frame(&mut out, frame.buffer).unwrap();
        }
        let frame_text = crate::render_to_string(&app, 120, 30);
        let expected = format!("{frame_text}{RECORD_SEPARATOR}\n{frame_text}{RECORD_SEPARATOR}\n");
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
