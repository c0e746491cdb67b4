//! Text and JSON views of the dashboard for scripts, recordings and the book:
//! the rendered screen as plain lines, and the derived panel data as JSON.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use crate::app::App;
use crate::ui;

/// The dashboard rendered at `width` x `height`, as text lines with trailing
/// spaces trimmed (colours and styles dropped). Cells are read one symbol
/// each, so a double-width character is followed by the blank it covers.
pub fn render_to_string(app: &App, width: u16, height: u16) -> String {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(never) => match never {},
    };
    match terminal.draw(|frame| ui::render(frame, app)) {
        Ok(frame) => buffer_to_text(frame.buffer),
        Err(never) => match never {},
    }
}

/// A buffer's cells as text lines, trailing spaces trimmed, `\n`-terminated.
pub fn buffer_to_text(buffer: &Buffer) -> String {
    let width = usize::from(buffer.area.width);
    if width == 0 {
        return String::new();
    }
    let mut out = String::with_capacity(buffer.content.len() + usize::from(buffer.area.height));
    for row in buffer.content.chunks(width) {
        let line: String = row.iter().map(|c| c.symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The derived panel data (components with state, topic rates, lag, orders by
/// state, step latencies, compensations/min, CDC lag, search p95, faults,
/// scenario, traces) as JSON; unknown values are `null`. Not filtered.
pub fn snapshot_json(app: &App) -> serde_json::Value {
    serde_json::to_value(app.panels()).unwrap_or(serde_json::Value::Null)
}
