//! Rendering the [`App`] into a ratatui [`Frame`]: the panels, the header and
//! footer, and the overlays (help, waterfall, the stack-is-down hint). Reads
//! only derived data, so a frame is cheap; never panics on any size.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, BorderType, Cell, Clear, HighlightSpacing, LineGauge, Paragraph, Row, Table, TableState,
    Wrap,
};

use crate::app::{App, Overlay, TraceView};
use crate::model::{ComponentState, Panels, StepLatency};
use crate::waterfall;

/// Smallest terminal the layout fits in; below it only a message is drawn.
pub const MIN_WIDTH: u16 = 120;
pub const MIN_HEIGHT: u16 = 30;
/// Width of the components column.
const COMPONENTS_WIDTH: u16 = 40;
/// Height of the traces panel at the minimum terminal height.
const MIN_TRACES_HEIGHT: u16 = 8;
/// Width bounds of the CDC/faults column beside the orders panel.
const SIDE_MIN_WIDTH: u16 = 28;
const SIDE_MAX_WIDTH: u16 = 40;
/// Width of the order-state list inside the orders panel.
const ORDER_STATES_WIDTH: u16 = 18;
/// Shown for any value not known.
pub const ABSENT: &str = "—";
/// Sparkline levels, empty to full.
const SPARK_LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The colour a component state is drawn in. Starting is neutral: a stack
/// coming up is normal, and red there teaches people to ignore red.
pub fn state_style(state: ComponentState) -> Style {
    match state {
        ComponentState::Ready => Style::new().fg(Color::Green),
        ComponentState::Starting => Style::new().fg(Color::Cyan),
        ComponentState::Failed => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ComponentState::Down => Style::new().fg(Color::DarkGray),
    }
}

/// Draw the whole dashboard.
pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(frame, area);
        return;
    }
    let panels = app.panels();
    let header = Rect { height: 1, ..area };
    let footer = Rect {
        y: area.bottom() - 1,
        height: 1,
        ..area
    };
    let body = Rect {
        y: area.y + 1,
        height: area.height - 2,
        ..area
    };
    render_header(frame, header, app);
    render_footer(frame, footer, app);

    let traces_height = share(body.height, 3, 10).max(MIN_TRACES_HEIGHT);
    let (top, traces) = split_v(body, body.height - traces_height);
    let (components, right) = split_h(top, COMPONENTS_WIDTH);
    let (flow, lower) = split_v(right, right.height / 2);
    let (topics, lag) = split_h(flow, share(flow.width, 11, 20));
    let side_width = share(lower.width, 7, 20).clamp(SIDE_MIN_WIDTH, SIDE_MAX_WIDTH);
    let (orders, side) = split_h(lower, lower.width.saturating_sub(side_width));
    let (freshness, faults) = split_v(side, 4);

    render_components(frame, components, panels);
    render_topics(frame, topics, app);
    render_lag(frame, lag, panels);
    render_orders(frame, orders, panels);
    render_freshness(frame, freshness, panels);
    render_faults(frame, faults, panels);
    render_traces(frame, traces, app);

    if panels.all_down {
        render_stack_hint(frame, body, panels);
    }
    match app.overlay() {
        Overlay::None => {}
        Overlay::Help => render_help(frame, body),
        Overlay::Trace(view) => render_waterfall(frame, body, view),
        Overlay::TraceError { trace_id, message } => {
            render_trace_error(frame, body, trace_id, message);
        }
    }
}

fn render_too_small(frame: &mut Frame, area: Rect) {
    let text = format!(
        "Terminal too small: {}x{}. shopstream dash needs at least {MIN_WIDTH}x{MIN_HEIGHT}; enlarge the window or press q to quit.",
        area.width, area.height
    );
    let top = area.height.saturating_sub(2) / 2;
    let message = Rect {
        y: area.y + top,
        height: area.height - top,
        ..area
    };
    frame.render_widget(
        Paragraph::new(text)
            .style(Style::new().fg(Color::Yellow))
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        message,
    );
}

fn render_header(frame: &mut Frame, area: Rect, app: &App) {
    let p = app.panels();
    let ready_style = if p.components_total > 0 && p.components_ready == p.components_total {
        Style::new().fg(Color::Green)
    } else {
        Style::new().fg(Color::Yellow)
    };
    let mut spans = vec![
        Span::styled(
            " shopstream dash",
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw("   components "),
        Span::styled(
            format!("{}/{} ready", p.components_ready, p.components_total),
            ready_style,
        ),
        Span::raw("   requests "),
        Span::raw(format!("{}/s", fmt_rate(p.requests_per_s))),
    ];
    if !app.filter().is_empty() {
        spans.push(Span::raw("   filter "));
        spans.push(Span::styled(
            format!("\"{}\"", app.filter()),
            Style::new().fg(Color::Yellow),
        ));
    }
    frame.render_widget(Line::from(spans), area);
}

fn render_footer(frame: &mut Frame, area: Rect, app: &App) {
    let line = match app.filter_draft() {
        Some(draft) => Line::from(vec![
            Span::styled(" filter: ", Style::new().fg(Color::Yellow)),
            Span::raw(format!("{draft}_")),
            Span::styled(
                "   Enter apply   Esc cancel",
                Style::new().fg(Color::DarkGray),
            ),
        ]),
        None => Line::styled(
            " Up/Down select trace   Enter open   / filter   Esc clear   ? help   q quit",
            Style::new().fg(Color::DarkGray),
        ),
    };
    frame.render_widget(line, area);
}

fn panel(title: &str) -> Block<'_> {
    Block::bordered()
        .border_type(BorderType::Rounded)
        .title(Span::styled(
            format!(" {title} "),
            Style::new().add_modifier(Modifier::BOLD),
        ))
}

fn header_row<'a>(cells: impl IntoIterator<Item = Cell<'a>>) -> Row<'a> {
    Row::new(cells).style(Style::new().fg(Color::DarkGray))
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).alignment(Alignment::Right))
}

fn render_components(frame: &mut Frame, area: Rect, p: &Panels) {
    let block = panel("Components");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let failures: Vec<_> = p
        .components
        .iter()
        .filter(|c| c.state == ComponentState::Failed)
        .filter_map(|c| Some((c.name.as_str(), c.error.as_deref()?)))
        .collect();
    let error_lines = u16::try_from(failures.len())
        .unwrap_or(u16::MAX)
        .min(inner.height / 3);
    let (table_area, errors_area) = split_v(inner, inner.height - error_lines);

    // Header row, then as many components as fit; when they do not all fit,
    // a line below says how many more there are.
    let capacity = usize::from(table_area.height.saturating_sub(1));
    let overflow = p.components.len() > capacity;
    let shown = if overflow {
        capacity.saturating_sub(1)
    } else {
        p.components.len()
    };
    let (table_area, overflow_area) = split_v(
        table_area,
        table_area.height.saturating_sub(u16::from(overflow)),
    );
    let mut rows: Vec<Row> = p.components[..shown]
        .iter()
        .map(|c| {
            Row::new(vec![
                Cell::from(c.name.clone()),
                Cell::from(Span::styled(c.state.label(), state_style(c.state))),
                right(format!("{:.1}", c.rss_mib)),
                right(
                    c.cpu_percent
                        .map_or(ABSENT.to_string(), |v| format!("{v:.1}")),
                ),
            ])
        })
        .collect();
    if overflow {
        let hidden = &p.components[shown..];
        let not_ready = hidden
            .iter()
            .filter(|c| c.state != ComponentState::Ready)
            .count();
        frame.render_widget(
            Line::from(format!("… {} more, {not_ready} not ready", hidden.len())),
            overflow_area,
        );
    }
    if p.components.is_empty() {
        rows.push(Row::new(vec![Cell::from(ABSENT)]));
    }
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(5),
        ],
    )
    .header(header_row([
        Cell::from("component"),
        Cell::from("state"),
        right("RSS MiB".into()),
        right("CPU%".into()),
    ]));
    frame.render_widget(table, table_area);

    let lines: Vec<Line> = failures
        .iter()
        .map(|(name, error)| {
            Line::styled(
                waterfall::truncate(&format!("{name}: {error}"), usize::from(inner.width)),
                Style::new().fg(Color::Red),
            )
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), errors_area);
}

fn render_topics(frame: &mut Frame, area: Rect, app: &App) {
    let title = if app.filter().is_empty() {
        "Topics · published/s".to_string()
    } else {
        format!("Topics · published/s · \"{}\"", app.filter())
    };
    let block = panel(&title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let spark_width =
        usize::from(inner.width.saturating_sub(28)).clamp(4, crate::model::SPARKLINE_POINTS);
    let rows: Vec<Row> = app
        .visible_topics()
        .into_iter()
        .map(|t| {
            let style = if t.dead_letter {
                if t.published_per_s.is_some_and(|r| r > 0.0) {
                    Style::new().fg(Color::Red)
                } else {
                    Style::new().fg(Color::Yellow)
                }
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(t.topic.clone()),
                right(fmt_rate(t.published_per_s)),
                Cell::from(Span::styled(
                    sparkline(&t.history_per_s, spark_width),
                    Style::new().fg(Color::Cyan),
                )),
            ])
            .style(style)
        })
        .collect();
    let rows_len = rows.len();
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(spark_width as u16),
        ],
    )
    .header(header_row([
        Cell::from("topic"),
        right("rate/s".into()),
        Cell::from("history"),
    ]));
    let empty = rows_len == 0;
    frame.render_widget(table, inner);
    if empty {
        let (_, below_header) = split_v(inner, 1);
        frame.render_widget(
            Line::from(format!("no topic matches \"{}\"", app.filter())),
            below_header,
        );
    }
}

fn render_lag(frame: &mut Frame, area: Rect, p: &Panels) {
    let block = panel("Consumer lag");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut rows: Vec<Row> = p
        .consumer_lag
        .iter()
        .map(|g| {
            let style = match g.lag {
                Some(l) if l >= 1000.0 => Style::new().fg(Color::Red),
                Some(l) if l >= 100.0 => Style::new().fg(Color::Yellow),
                _ => Style::new(),
            };
            Row::new(vec![
                Cell::from(g.group.clone()),
                right(fmt_count(g.lag)),
                right(fmt_rate(g.consumed_per_s)),
            ])
            .style(style)
        })
        .collect();
    if rows.is_empty() {
        rows.push(Row::new(vec![Cell::from(ABSENT)]));
    }
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(6),
            Constraint::Length(6),
        ],
    )
    .header(header_row([
        Cell::from("group"),
        right("lag".into()),
        right("read/s".into()),
    ]));
    frame.render_widget(table, inner);
}

fn render_orders(frame: &mut Frame, area: Rect, p: &Panels) {
    let title = format!(
        "Orders · compensations {}/min",
        fmt_rate(p.compensations_per_min)
    );
    let block = panel(&title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let (states_area, steps_area) = split_h(inner, ORDER_STATES_WIDTH);

    let mut state_rows: Vec<Row> = match &p.orders_by_state {
        Some(states) => states
            .iter()
            .map(|s| {
                let style = match s.state.as_str() {
                    "failed" => Style::new().fg(Color::Red),
                    "cancelled" => Style::new().fg(Color::Yellow),
                    "completed" => Style::new().fg(Color::Green),
                    _ => Style::new(),
                };
                Row::new(vec![
                    Cell::from(s.state.clone()),
                    right(fmt_count(Some(s.count))),
                ])
                .style(style)
            })
            .collect(),
        None => Vec::new(),
    };
    if state_rows.is_empty() {
        state_rows.push(Row::new(vec![Cell::from(ABSENT)]));
    }
    let states = Table::new(state_rows, [Constraint::Fill(1), Constraint::Length(6)])
        .header(header_row([Cell::from("state"), right("orders".into())]));
    frame.render_widget(states, states_area);

    let step_rows: Vec<Row> = p
        .saga_steps
        .iter()
        .map(|s: &StepLatency| {
            let style = if s.compensation {
                Style::new().fg(Color::Magenta)
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(s.step.clone()),
                right(fmt_ms(s.latency_ms_p50)),
                right(fmt_ms(s.latency_ms_p95)),
            ])
            .style(style)
        })
        .collect();
    let steps = Table::new(
        step_rows,
        [
            Constraint::Fill(1),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(header_row([
        Cell::from(" saga step"),
        right("p50".into()),
        right("p95".into()),
    ]));
    // One column of space between the two lists.
    let steps_area = Rect {
        x: steps_area.x.saturating_add(1).min(steps_area.right()),
        width: steps_area.width.saturating_sub(1),
        ..steps_area
    };
    frame.render_widget(steps, steps_area);
}

fn render_freshness(frame: &mut Frame, area: Rect, p: &Panels) {
    let block = panel("CDC & search");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width);
    let line = |label: &str, value: String| {
        let pad = width.saturating_sub(label.chars().count() + value.chars().count());
        Line::from(format!("{label}{}{value}", " ".repeat(pad)))
    };
    let cdc = p
        .cdc_lag_ms
        .map_or(ABSENT.to_string(), |v| format!("{v:.0} ms"));
    let search = fmt_ms(p.search_commit_to_searchable_ms_p95);
    frame.render_widget(
        Paragraph::new(vec![
            line("CDC lag", cdc),
            line("search freshness p95", search),
        ]),
        inner,
    );
}

fn render_faults(frame: &mut Frame, area: Rect, p: &Panels) {
    let block = panel("Faults & scenario");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let scenario_height = if p.scenario.is_some() { 2 } else { 0 };
    let (faults_area, scenario_area) = split_v(inner, inner.height.saturating_sub(scenario_height));
    let width = usize::from(inner.width);
    let mut lines: Vec<Line> = p
        .faults
        .iter()
        .map(|f| {
            let text = if f.target.is_empty() {
                format!("! {}", f.fault)
            } else {
                format!("! {} → {}", f.fault, f.target)
            };
            Line::styled(
                waterfall::truncate(&text, width),
                Style::new().fg(Color::Red),
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(
            "no active faults",
            Style::new().fg(Color::DarkGray),
        ));
    }
    let capacity = usize::from(faults_area.height);
    if lines.len() > capacity && capacity > 0 {
        let more = lines.len() - (capacity - 1);
        lines.truncate(capacity - 1);
        lines.push(Line::from(format!("… {more} more")));
    }
    frame.render_widget(Paragraph::new(lines), faults_area);

    if let Some(s) = &p.scenario {
        let (label_area, gauge_area) = split_v(scenario_area, 1);
        let label = format!("{} req {} err {}", s.name, s.requests, s.errors);
        frame.render_widget(
            Line::styled(
                waterfall::truncate(&label, width),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            label_area,
        );
        let ratio = if s.duration_s > 0.0 && s.elapsed_s.is_finite() {
            (s.elapsed_s / s.duration_s).clamp(0.0, 1.0)
        } else {
            0.0
        };
        frame.render_widget(
            LineGauge::default()
                .ratio(ratio)
                .label(format!("{:.0}/{:.0}s", s.elapsed_s, s.duration_s))
                .filled_symbol("━")
                .unfilled_symbol("─")
                .filled_style(Style::new().fg(if s.errors > 0 {
                    Color::Yellow
                } else {
                    Color::Green
                })),
            gauge_area,
        );
    }
}

fn render_traces(frame: &mut Frame, area: Rect, app: &App) {
    let visible = app.visible_traces();
    let total = app.panels().traces.len();
    let title = if app.filter().is_empty() {
        format!("Traces · {total} latest")
    } else {
        format!(
            "Traces · {} of {total} match \"{}\"",
            visible.len(),
            app.filter()
        )
    };
    let block = panel(&title);
    let mut rows: Vec<Row> = visible
        .iter()
        .map(|t| {
            let style = if t.error {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(clock_utc(t.start_unix_nano)),
                Cell::from(t.trace_id.chars().take(8).collect::<String>()),
                Cell::from(t.root_service.clone()),
                Cell::from(t.root_name.clone()),
                right(waterfall::format_duration_nano(t.duration_nano)),
                right(t.span_count.to_string()),
                Cell::from(if t.error { "ERR" } else { "" }),
                Cell::from(t.order_id.clone().unwrap_or_else(|| ABSENT.to_string())),
            ])
            .style(style)
        })
        .collect();
    if rows.is_empty() {
        let text = if total == 0 {
            "no traces yet".to_string()
        } else {
            format!("no trace matches \"{}\"", app.filter())
        };
        let blank = || Cell::from("");
        rows.push(Row::new(vec![blank(), blank(), blank(), Cell::from(text)]));
    }
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(14),
            Constraint::Fill(2),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(3),
            Constraint::Fill(1),
        ],
    )
    .header(header_row([
        Cell::from("start"),
        Cell::from("trace"),
        Cell::from("service"),
        Cell::from("operation"),
        right("duration".into()),
        right("spans".into()),
        Cell::from("err"),
        Cell::from("order"),
    ]))
    .block(block)
    .highlight_symbol("> ")
    .highlight_spacing(HighlightSpacing::Always)
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_stack_hint(frame: &mut Frame, body: Rect, p: &Panels) {
    let hint = p
        .stack_hint
        .clone()
        .unwrap_or_else(|| "nothing is running: start it with `shopstream up`".to_string());
    // One line per `\n`, so the command a user must type keeps a line of its
    // own however long the state directory's path before it is.
    let longest = hint.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let width = u16::try_from(longest)
        .unwrap_or(u16::MAX)
        .saturating_add(6)
        .clamp(40, body.width.saturating_sub(4).max(40));
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let rows: usize = hint
        .lines()
        .map(|l| l.chars().count().div_ceil(inner).max(1))
        .sum();
    let height = u16::try_from(rows + 4)
        .unwrap_or(u16::MAX)
        .min(body.height.max(5));
    let area = centered(body, width, height);
    frame.render_widget(Clear, area);
    let lines: Vec<Line> = std::iter::once(Line::default())
        .chain(hint.lines().map(|l| Line::from(l.to_string())))
        .collect();
    frame.render_widget(
        Paragraph::new(lines)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .style(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
            .block(
                Block::bordered()
                    .border_type(BorderType::Double)
                    .border_style(Style::new().fg(Color::Yellow))
                    .title(" The stack is down "),
            ),
        area,
    );
}

fn render_help(frame: &mut Frame, body: Rect) {
    let keys = [
        ("Up / Down", "select a trace (scroll the waterfall)"),
        ("PgUp / PgDn", "move ten rows"),
        ("Enter", "open the selected trace's waterfall"),
        ("/", "filter traces and topics (Enter applies)"),
        ("Esc", "close an overlay, else clear the filter"),
        ("?", "this help"),
        ("q / Ctrl-C", "quit"),
    ];
    let mut lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {k:<12}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::styled(
        " Rates are per second between polls; p50/p95 cover the last minute.",
        Style::new().fg(Color::DarkGray),
    ));
    let area = centered(body, 72, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(panel("Help · Esc to close")),
        area,
    );
}

fn render_waterfall(frame: &mut Frame, body: Rect, view: &TraceView) {
    let area = centered(
        body,
        body.width.saturating_sub(4),
        body.height.saturating_sub(2),
    );
    let block = panel("Trace · Up/Down scroll · Esc close");
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width);
    let mut lines = vec![Line::styled(
        waterfall::header(&view.trace.trace_id, &view.rows, width),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let capacity = usize::from(inner.height.saturating_sub(1));
    let scroll = view.scroll.min(view.rows.len().saturating_sub(capacity));
    let shown = &view.rows[scroll.min(view.rows.len())..];
    let texts = waterfall::row_lines(&shown[..shown.len().min(capacity)], width);
    lines.extend(shown.iter().zip(texts).map(|(row, text)| {
        let style = if row.error {
            Style::new().fg(Color::Red)
        } else if row.compensation {
            Style::new().fg(Color::Magenta)
        } else if row.retry {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        Line::styled(text, style)
    }));
    frame.render_widget(Paragraph::new(Text::from(lines)), inner);
}

fn render_trace_error(frame: &mut Frame, body: Rect, trace_id: &str, message: &str) {
    let area = centered(body, 70, 6);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(format!("Could not load trace {trace_id}: {message}"))
            .wrap(Wrap { trim: true })
            .style(Style::new().fg(Color::Red))
            .block(panel("Trace · Esc close")),
        area,
    );
}

/// Rates: `12.5`, `1.2k`, `—` when unknown.
pub fn fmt_rate(v: Option<f64>) -> String {
    match v {
        None => ABSENT.to_string(),
        Some(v) if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        Some(v) if v >= 1000.0 => format!("{:.1}k", v / 1000.0),
        Some(v) => format!("{v:.1}"),
    }
}

/// Whole counts: `12`, `—` when unknown.
pub fn fmt_count(v: Option<f64>) -> String {
    v.map_or(ABSENT.to_string(), |v| format!("{v:.0}"))
}

/// Latencies given in milliseconds, at most 7 columns: `850us`, `4.2ms`,
/// `120ms`, `1.25s`, `—`.
pub fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => ABSENT.to_string(),
        Some(ms) if ms < 1.0 => format!("{:.0}us", ms * 1000.0),
        Some(ms) if ms < 10.0 => format!("{ms:.1}ms"),
        Some(ms) if ms < 1000.0 => format!("{ms:.0}ms"),
        Some(ms) => format!("{:.2}s", ms / 1000.0),
    }
}

/// Text sparkline of the last `width` values, scaled to their maximum.
pub fn sparkline(values: &[f64], width: usize) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().fold(0.0_f64, f64::max);
    shown
        .iter()
        .map(|&v| {
            if max <= 0.0 || !v.is_finite() || v <= 0.0 {
                SPARK_LEVELS[0]
            } else {
                let level = (v / max * 8.0).round().clamp(1.0, 8.0) as usize;
                SPARK_LEVELS[level]
            }
        })
        .collect()
}

/// `HH:MM:SS` (UTC) of a unix time in nanoseconds.
fn clock_utc(unix_nano: u64) -> String {
    let s = unix_nano / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// `n * num / den` without overflow (`num <= den`).
fn share(n: u16, num: u32, den: u32) -> u16 {
    u16::try_from(u32::from(n) * num / den).unwrap_or(n)
}

/// Top `height` rows of `area`, and the rest.
fn split_v(area: Rect, height: u16) -> (Rect, Rect) {
    let height = height.min(area.height);
    (
        Rect { height, ..area },
        Rect {
            y: area.y + height,
            height: area.height - height,
            ..area
        },
    )
}

/// Left `width` columns of `area`, and the rest.
fn split_h(area: Rect, width: u16) -> (Rect, Rect) {
    let width = width.min(area.width);
    (
        Rect { width, ..area },
        Rect {
            x: area.x + width,
            width: area.width - width,
            ..area
        },
    )
}

/// A `width` x `height` rectangle centred in `area`, clipped to it.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}
