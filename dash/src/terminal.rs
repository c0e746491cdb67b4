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

    /// Set in the child this test starts inside tmux: it runs the real
    /// terminal loop with a source that panics on its second poll.
    const PANIC_CHILD: &str = "SHOPSTREAM_DASH_PANIC_CHILD";
    const PANIC_MESSAGE: &str = "the source broke on purpose";

    struct PanickingSource(u32);

    impl Source for PanickingSource {
        fn poll(&mut self) -> Tick {
            self.0 += 1;
            assert!(self.0 < 2, "{PANIC_MESSAGE}");
            fixtures::all_down_tick()
        }
        fn trace(&mut self, _: &str) -> Result<Trace, String> {
            Err("no traces here".into())
        }
    }

    /// A panic inside the loop leaves the terminal as it found it: cooked
    /// mode with echo (`stty` says so), the main screen, and the panic
    /// message on it for the user to read. Driven in a real terminal: this
    /// test re-runs itself as a child inside a tmux session.
    #[test]
    fn a_panic_restores_the_terminal_and_shows_its_message() {
        if std::env::var_os(PANIC_CHILD).is_some() {
            let _ = run_terminal(PanickingSource(0), MIN_REFRESH);
            unreachable!("the source panics on its second poll");
        }
        let exe = std::env::current_exe().unwrap();
        let dir = std::env::temp_dir().join(format!("dash-panic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stty = dir.join("stty");
        let socket = format!("shopstream-dash-panic-{}", std::process::id());
        let tmux = |args: &[&str]| {
            std::process::Command::new("tmux")
                .args(["-L", &socket])
                .args(args)
                .output()
                .expect("tmux (scripts/bootstrap.sh installs it)")
        };
        struct Kill<'a>(
            &'a dyn Fn(&[&str]) -> std::process::Output,
            std::path::PathBuf,
        );
        impl Drop for Kill<'_> {
            fn drop(&mut self) {
                let _ = (self.0)(&["kill-server"]);
                let _ = std::fs::remove_dir_all(&self.1);
            }
        }
        let _kill = Kill(&tmux, dir.clone());
        // The pane's shell runs the child, then records the terminal's
        // modes; the pane stays (remain-on-exit) so it can be read.
        let script = format!(
            "env {PANIC_CHILD}=1 RUST_BACKTRACE=0 {exe} --exact \
             terminal::tests::a_panic_restores_the_terminal_and_shows_its_message \
             --nocapture --test-threads 1; stty -a > {stty}.tmp && mv {stty}.tmp {stty}",
            exe = exe.display(),
            stty = stty.display()
        );
        let out = tmux(&[
            "start-server",
            ";",
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            &script,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stty.exists() {
            assert!(Instant::now() < deadline, "the child never finished");
            std::thread::sleep(Duration::from_millis(100));
        }
        let modes = std::fs::read_to_string(&stty).unwrap();
        let words: Vec<&str> = modes.split_whitespace().collect();
        for mode in ["icanon", "echo", "isig"] {
            assert!(words.contains(&mode), "{mode} not restored: {modes}");
        }
        let pane = String::from_utf8_lossy(&tmux(&["capture-pane", "-p"]).stdout).into_owned();
        assert!(pane.contains(PANIC_MESSAGE), "{pane}");
        // Left the alternate screen: the dashboard's frame is not what shows.
        assert!(!pane.contains("The stack is down"), "{pane}");
        assert!(
            tmux(&["display-message", "-p", "#{alternate_on}"])
                .stdout
                .starts_with(b"0"),
            "still on the alternate screen"
        );
    }

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
