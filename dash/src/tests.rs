//! Rendering tests: every panel drawn into a `TestBackend` from the fixed
//! ticks of [`crate::fixtures`] (two scrapes one second apart), asserted on
//! the rendered text; plus sizes, colours and overlays.

use std::ops::Range;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use crate::app::App;
use crate::fixtures;
use crate::model::ComponentState;
use crate::ui::{self, MIN_HEIGHT, MIN_WIDTH};
use crate::{KeyCode, KeyEvent, KeyModifiers, render_to_string, snapshot_json};

fn lines(app: &App, width: u16, height: u16) -> Vec<String> {
    render_to_string(app, width, height)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Columns `cols` of rows `rows`, trailing spaces trimmed.
fn region(screen: &[String], rows: Range<usize>, cols: Range<usize>) -> Vec<String> {
    screen[rows]
        .iter()
        .map(|l| {
            let cut: String = l.chars().skip(cols.start).take(cols.len()).collect();
            cut.trim_end().to_string()
        })
        .collect()
}

#[track_caller]
fn assert_lines(actual: &[String], expected: &[&str]) {
    if actual != expected {
        panic!(
            "rendered text differs\n--- expected\n{}\n--- actual\n{}\n",
            expected.join("\n"),
            actual.join("\n")
        );
    }
}

fn press(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn buffer(app: &App, width: u16, height: u16) -> Buffer {
    let Ok(mut terminal) = Terminal::new(TestBackend::new(width, height));
    let Ok(frame) = terminal.draw(|f| ui::render(f, app));
    frame.buffer.clone()
}

/// The whole screen at 120x40 after the two fixture ticks.
const FULL_120X40: &str = r#" shopstream dash   components 6/9 ready   requests 50.0/s
╭ Components ──────────────────────────╮╭ Topics · published/s ────────────────────╮╭ Consumer lag ────────────────────╮
│component       state    RSS MiB  CPU%││topic                rate/s history       ││group                   lag read/s│
│gateway         ready       50.0   2.5││product.events          8.0 █             ││catalog-projector         0      —│
│catalog         ready       40.0   1.0││order.lifecycle        12.0 █             ││orders-saga               4    5.0│
│orders          ready       80.0   5.2││payment.events          5.0 █             ││payments-intents       1300      —│
│payments        ready       38.0   0.5││media.events              —               ││search-indexer           20    8.0│
│search          ready      128.0  12.0││analytics.raw         100.0 █             ││                                  │
│cdc             ready       20.0     —││activity.raw           50.0 █             ││                                  │
│notifications   starting    10.0   0.0││payment.events.dlq      1.0 █             ││                                  │
│media           failed       0.0     —││                                          ││                                  │
│analytics       down         0.0     —││                                          ││                                  │
│                                      ││                                          ││                                  │
│                                      │╰──────────────────────────────────────────╯╰──────────────────────────────────╯
│                                      │╭ Orders · compensations 60.0/min ─────────────────╮╭ CDC & search ────────────╮
│                                      ││state       orders  saga step          p50     p95││CDC lag              95 ms│
│                                      ││pending          3 reserve            30ms    48ms││search freshness p95 958ms│
│                                      ││reserved         2 authorize          80ms   380ms│╰──────────────────────────╯
│                                      ││authorized       1 capture               —       —│╭ Faults & scenario ───────╮
│                                      ││completed       42 finalize              —       —││! stripe-slow → payments  │
│                                      ││cancelled        2 refund            750ms   975ms││                          │
│                                      ││failed           1 cancel_intent         —       —││                          │
│                                      ││                   release               —       —││                          │
│                                      ││                                                  ││                          │
│                                      ││                                                  ││                          │
│                                      ││                                                  ││flash-sale req 1234 err 5 │
│media: exited with status 1           ││                                                  ││42/120s ━━━━━━────────────│
╰──────────────────────────────────────╯╰──────────────────────────────────────────────────╯╰──────────────────────────╯
╭ Traces · 4 latest ───────────────────────────────────────────────────────────────────────────────────────────────────╮
│  start    trace    service        operation                                  duration spans err order                │
│  12:34:59 77aa88bb payments       stripe.webhook                              152.3ms     7     ord_1001             │
│> 12:34:58 0f0e0d0c catalog        GET /products/{id}                            3.1ms     2     —                    │
│  12:34:57 a1b2c3d4 gateway        POST /orders                                  2.40s    12 ERR ord_1002             │
│  12:34:56 4bf92f35 gateway        POST /orders                                152.3ms     7     ord_1001             │
│                                                                                                                      │
│                                                                                                                      │
│                                                                                                                      │
│                                                                                                                      │
╰──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╯
 Up/Down select trace   Enter open   / filter   Esc clear   ? help   q quit
"#;

#[test]
fn the_whole_dashboard_at_120x40() {
    let text = render_to_string(&fixtures::app(), 120, 40);
    let expected = FULL_120X40.strip_prefix('\n').unwrap_or(FULL_120X40);
    assert_lines(
        &text.lines().map(str::to_string).collect::<Vec<_>>(),
        &expected.lines().collect::<Vec<_>>(),
    );
    assert!(
        text.lines().all(|l| l == l.trim_end()),
        "trailing spaces trimmed"
    );
}

#[test]
fn components_panel() {
    // Name, state, RSS MiB, CPU % when known; failures explained at the bottom.
    let screen = lines(&fixtures::app(), 120, 40);
    assert_lines(
        &region(&screen, 1..28, 0..40),
        &[
            "╭ Components ──────────────────────────╮",
            "│component       state    RSS MiB  CPU%│",
            "│gateway         ready       50.0   2.5│",
            "│catalog         ready       40.0   1.0│",
            "│orders          ready       80.0   5.2│",
            "│payments        ready       38.0   0.5│",
            "│search          ready      128.0  12.0│",
            "│cdc             ready       20.0     —│",
            "│notifications   starting    10.0   0.0│",
            "│media           failed       0.0     —│",
            "│analytics       down         0.0     —│",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│                                      │",
            "│media: exited with status 1           │",
            "╰──────────────────────────────────────╯",
        ],
    );
}

#[test]
fn topics_panel() {
    // Known topics always (— when absent), then dead-letter topics, with rate and sparkline.
    let screen = lines(&fixtures::app(), 120, 40);
    assert_lines(
        &region(&screen, 1..14, 40..84),
        &[
            "╭ Topics · published/s ────────────────────╮",
            "│topic                rate/s history       │",
            "│product.events          8.0 █             │",
            "│order.lifecycle        12.0 █             │",
            "│payment.events          5.0 █             │",
            "│media.events              —               │",
            "│analytics.raw         100.0 █             │",
            "│activity.raw           50.0 █             │",
            "│payment.events.dlq      1.0 █             │",
            "│                                          │",
            "│                                          │",
            "│                                          │",
            "╰──────────────────────────────────────────╯",
        ],
    );
}

#[test]
fn consumer_lag_panel() {
    // Lag summed per group; read/s from consumed counters where exposed.
    let screen = lines(&fixtures::app(), 120, 40);
    assert_lines(
        &region(&screen, 1..14, 84..120),
        &[
            "╭ Consumer lag ────────────────────╮",
            "│group                   lag read/s│",
            "│catalog-projector         0      —│",
            "│orders-saga               4    5.0│",
            "│payments-intents       1300      —│",
            "│search-indexer           20    8.0│",
            "│                                  │",
            "│                                  │",
            "│                                  │",
            "│                                  │",
            "│                                  │",
            "│                                  │",
            "╰──────────────────────────────────╯",
        ],
    );
}

#[test]
fn orders_panel() {
    // States now; step p50/p95 from the bucket deltas of the last second; compensations/min in the title.
    let screen = lines(&fixtures::app(), 120, 40);
    assert_lines(
        &region(&screen, 14..28, 40..92),
        &[
            "╭ Orders · compensations 60.0/min ─────────────────╮",
            "│state       orders  saga step          p50     p95│",
            "│pending          3 reserve            30ms    48ms│",
            "│reserved         2 authorize          80ms   380ms│",
            "│authorized       1 capture               —       —│",
            "│completed       42 finalize              —       —│",
            "│cancelled        2 refund            750ms   975ms│",
            "│failed           1 cancel_intent         —       —│",
            "│                   release               —       —│",
            "│                                                  │",
            "│                                                  │",
            "│                                                  │",
            "│                                                  │",
            "╰──────────────────────────────────────────────────╯",
        ],
    );
}

#[test]
fn orders_panel_on_the_first_tick_uses_cumulative_buckets() {
    // One scrape only: quantiles from cumulative buckets, no rates.
    let screen = lines(&first_tick_app(), 120, 40);
    assert_lines(
        &region(&screen, 14..28, 40..92),
        &[
            "╭ Orders · compensations —/min ────────────────────╮",
            "│state       orders  saga step          p50     p95│",
            "│pending          3 reserve           6.0ms    30ms│",
            "│reserved         2 authorize          46ms   318ms│",
            "│authorized       1 capture           8.3ms    44ms│",
            "│completed       40 finalize              —       —│",
            "│cancelled        2 refund            200ms   875ms│",
            "│failed           1 cancel_intent         —       —│",
            "│                   release               —       —│",
            "│                                                  │",
            "│                                                  │",
            "│                                                  │",
            "│                                                  │",
            "╰──────────────────────────────────────────────────╯",
        ],
    );
}

#[test]
fn cdc_and_search_panel() {
    // CDC lag is the largest database lag; freshness p95 from bucket deltas.
    let screen = lines(&fixtures::app(), 120, 40);
    assert_lines(
        &region(&screen, 14..18, 92..120),
        &[
            "╭ CDC & search ────────────╮",
            "│CDC lag              95 ms│",
            "│search freshness p95 958ms│",
            "╰──────────────────────────╯",
        ],
    );
}

#[test]
fn cdc_and_search_panel_on_the_first_tick() {
    // Cumulative buckets on the first tick.
    let screen = lines(&first_tick_app(), 120, 40);
    assert_lines(
        &region(&screen, 14..18, 92..120),
        &[
            "╭ CDC & search ────────────╮",
            "│CDC lag             120 ms│",
            "│search freshness p95 375ms│",
            "╰──────────────────────────╯",
        ],
    );
}

#[test]
fn faults_and_scenario_panel() {
    // A fault reported by two services shows once; the scenario gauge at 42 of 120 s.
    let screen = lines(&fixtures::app(), 120, 40);
    assert_lines(
        &region(&screen, 18..28, 92..120),
        &[
            "╭ Faults & scenario ───────╮",
            "│! stripe-slow → payments  │",
            "│                          │",
            "│                          │",
            "│                          │",
            "│                          │",
            "│                          │",
            "│flash-sale req 1234 err 5 │",
            "│42/120s ━━━━━━────────────│",
            "╰──────────────────────────╯",
        ],
    );
}

#[test]
fn traces_panel() {
    // Newest first; the selection stays on the trace it was on when new ones arrive.
    let screen = lines(&fixtures::app(), 120, 40);
    assert_lines(
        &region(&screen, 28..39, 0..120),
        &[
            "╭ Traces · 4 latest ───────────────────────────────────────────────────────────────────────────────────────────────────╮",
            "│  start    trace    service        operation                                  duration spans err order                │",
            "│  12:34:59 77aa88bb payments       stripe.webhook                              152.3ms     7     ord_1001             │",
            "│> 12:34:58 0f0e0d0c catalog        GET /products/{id}                            3.1ms     2     —                    │",
            "│  12:34:57 a1b2c3d4 gateway        POST /orders                                  2.40s    12 ERR ord_1002             │",
            "│  12:34:56 4bf92f35 gateway        POST /orders                                152.3ms     7     ord_1001             │",
            "│                                                                                                                      │",
            "│                                                                                                                      │",
            "│                                                                                                                      │",
            "│                                                                                                                      │",
            "╰──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╯",
        ],
    );
}

fn first_tick_app() -> App {
    let mut app = App::new();
    app.apply(fixtures::tick(0));
    app
}

#[test]
fn the_waterfall_overlay() {
    let mut app = fixtures::app();
    app.open_trace(Ok(fixtures::order_trace()));
    let screen = lines(&app, 120, 30);
    assert_lines(
        &region(&screen, 2..11, 2..118),
        &[
            "╭ Trace · Up/Down scroll · Esc close ──────────────────────────────────────────────────────────────────────────────╮",
            "│trace 4bf92f3577b34da6a3ce929d0e0e4736  7 spans  150.0ms  1 error                                                 │",
            "│       +0   150.0ms gateway POST /orders                                     █████████████████████████████████████│",
            "│   +5.0ms   140.0ms   orders saga.place_order                                 ███████████████████████████████████ │",
            "│  +10.0ms    20.0ms     inventory reserve                                      ██████                             │",
            "│  +35.0ms    10.0ms     payments authorize                                           ████                         │",
            "│  +50.0ms    20.0ms     payments authorize [retry #2]                                    ██████                   │",
            "│  +80.0ms    40.0ms     payments capture [error: card_declined]                                 ███████████       │",
            "│ +125.0ms    15.0ms     payments refund [compensation]                                                     █████  │",
        ],
    );
}

#[test]
fn all_down_shows_the_stack_hint() {
    let mut app = App::new();
    app.apply(fixtures::all_down_tick());
    let screen = lines(&app, 120, 30);
    assert_lines(
        &region(&screen, 12..17, 32..88),
        &[
            "╔ The stack is down ══════════════════════════════════╗",
            "║                                                     ║",
            "║  nothing is running: start it with `shopstream up`  ║",
            "║                                                     ║",
            "╚═════════════════════════════════════════════════════╝",
        ],
    );
    assert_eq!(
        screen[0],
        " shopstream dash   components 0/3 ready   requests —/s"
    );
}

/// A state directory's path can be longer than the overlay is wide: it wraps,
/// and the command to type keeps a line of its own (CI's checkout path once
/// split "`shopstream up`" across two lines).
#[test]
fn a_long_hint_wraps_and_keeps_the_command_on_its_own_line() {
    let mut tick = fixtures::all_down_tick();
    let path = format!(
        "/check/{}/target/tmp/dash-nothing-up-18994",
        "work/main".repeat(12)
    );
    tick.stack_hint = Some(format!(
        "nothing is running in {path}\nstart it with `shopstream up`"
    ));
    let mut app = App::new();
    app.apply(tick);
    let screen = lines(&app, 120, 30);
    assert!(
        screen
            .iter()
            .any(|l| l.contains("║") && l.contains(" start it with `shopstream up` ")),
        "{}",
        screen.join("\n")
    );
    // The whole path is there, wrapped over as many rows as it needs.
    let inside: String = screen
        .iter()
        .filter(|l| l.contains('║'))
        .map(|l| l.split('║').nth(1).unwrap_or("").trim())
        .collect();
    assert!(inside.contains("work/mainwork/main"), "{inside}");
    assert!(inside.contains("dash-nothing-up-18994"), "{inside}");
}

#[test]
fn the_default_hint_shows_when_the_caller_gives_none() {
    let mut tick = fixtures::all_down_tick();
    tick.stack_hint = None;
    let mut app = App::new();
    app.apply(tick);
    let text = render_to_string(&app, 120, 30);
    assert!(text.contains("The stack is down"), "{text}");
    assert!(
        text.contains("nothing is running: start it with `shopstream up`"),
        "{text}"
    );
    // Not shown while anything runs.
    assert!(!render_to_string(&fixtures::app(), 120, 30).contains("The stack is down"));
}

#[test]
fn a_too_small_terminal_shows_only_its_size_and_the_minimum() {
    let screen = lines(&fixtures::app(), 80, 24);
    let text: Vec<&str> = screen
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        text,
        [
            "Terminal too small: 80x24. shopstream dash needs at least 120x30; enlarge the",
            "window or press q to quit."
        ]
    );
    // One column or one row short is too small too.
    assert!(render_to_string(&fixtures::app(), MIN_WIDTH - 1, MIN_HEIGHT).contains("119x30"));
    assert!(render_to_string(&fixtures::app(), MIN_WIDTH, MIN_HEIGHT - 1).contains("120x29"));
    assert!(render_to_string(&fixtures::app(), MIN_WIDTH, MIN_HEIGHT).contains("Components"));
}

#[test]
fn no_size_panics_including_zero_by_zero() {
    assert_eq!(render_to_string(&fixtures::app(), 0, 0), "");
    let mut with_help = fixtures::app();
    press(&mut with_help, KeyCode::Char('?'));
    let mut with_trace = fixtures::app();
    with_trace.open_trace(Ok(fixtures::order_trace()));
    let mut down = App::new();
    down.apply(fixtures::all_down_tick());
    let apps = [App::new(), fixtures::app(), with_help, with_trace, down];
    // Wide enough that naive u16 arithmetic on widths would overflow.
    assert!(render_to_string(&apps[1], 7_000, 30).contains("Components"));
    for app in &apps {
        for width in [0, 1, 2, 3, 10, 40, 119, 120, 121, 250] {
            for height in [0, 1, 2, 3, 10, 29, 30, 31, 80] {
                let text = render_to_string(app, width, height);
                assert_eq!(
                    text.lines().count(),
                    usize::from(height) * usize::from(width > 0)
                );
            }
        }
    }
}

#[test]
fn component_states_have_their_colours_and_starting_is_not_red() {
    assert_eq!(
        ui::state_style(ComponentState::Starting).fg,
        Some(Color::Cyan)
    );
    assert_ne!(
        ui::state_style(ComponentState::Starting).fg,
        Some(Color::Red)
    );
    // On screen: the state cell of each fixture component, column 17.
    let buf = buffer(&fixtures::app(), 120, 40);
    let colour_at_row = |row: u16| buf[(17, row)].fg;
    let cell_text = |row: u16| -> String {
        (17..25)
            .map(|x| buf[(x, row)].symbol().to_string())
            .collect()
    };
    assert_eq!(cell_text(3), "ready   ");
    assert_eq!(colour_at_row(3), Color::Green);
    assert_eq!(cell_text(9), "starting");
    assert_eq!(colour_at_row(9), Color::Cyan);
    assert_eq!(cell_text(10), "failed  ");
    assert_eq!(colour_at_row(10), Color::Red);
    assert_eq!(cell_text(11), "down    ");
    assert_eq!(colour_at_row(11), Color::DarkGray);
}

#[test]
fn the_selected_trace_is_highlighted_and_errors_are_red() {
    let buf = buffer(&fixtures::app(), 120, 40);
    // Row 31 holds the selected trace (0f0e...), row 32 the failed one.
    assert_eq!(buf[(1, 31)].symbol(), ">");
    assert!(
        buf[(5, 31)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
    assert!(
        !buf[(5, 30)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
    assert_eq!(buf[(5, 32)].fg, Color::Red);
}

#[test]
fn header_and_footer() {
    let mut app = fixtures::app();
    let screen = lines(&app, 120, 40);
    assert_eq!(
        screen[0],
        " shopstream dash   components 6/9 ready   requests 50.0/s"
    );
    assert_eq!(
        screen[39],
        " Up/Down select trace   Enter open   / filter   Esc clear   ? help   q quit"
    );
    press(&mut app, KeyCode::Char('/'));
    for c in "ord_1001".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    let screen = lines(&app, 120, 40);
    assert_eq!(screen[39], " filter: ord_1001_   Enter apply   Esc cancel");
    press(&mut app, KeyCode::Enter);
    let screen = lines(&app, 120, 40);
    assert_eq!(
        screen[0],
        " shopstream dash   components 6/9 ready   requests 50.0/s   filter \"ord_1001\""
    );
}

#[test]
fn a_filter_narrows_the_traces_and_topics_panels() {
    let mut app = fixtures::app();
    press(&mut app, KeyCode::Char('/'));
    for c in "pay".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    let screen = lines(&app, 120, 40);
    assert_lines(
        &region(&screen, 1..5, 40..84),
        &[
            "╭ Topics · published/s · \"pay\" ────────────╮",
            "│topic                rate/s history       │",
            "│payment.events          5.0 █             │",
            "│payment.events.dlq      1.0 █             │",
        ],
    );
    assert_lines(
        &region(&screen, 28..32, 0..120),
        &[
            "╭ Traces · 1 of 4 match \"pay\" ─────────────────────────────────────────────────────────────────────────────────────────╮",
            "│  start    trace    service        operation                                  duration spans err order                │",
            "│> 12:34:59 77aa88bb payments       stripe.webhook                              152.3ms     7     ord_1001             │",
            "│                                                                                                                      │",
        ],
    );
    press(&mut app, KeyCode::Char('/'));
    for c in "zz".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    let screen = lines(&app, 120, 40);
    assert_eq!(
        screen[3]
            .chars()
            .skip(40)
            .take(44)
            .collect::<String>()
            .trim_end(),
        "│no topic matches \"payzz\"                  │"
    );
    assert!(
        screen[30].contains("no trace matches \"payzz\""),
        "{}",
        screen[30]
    );
}

#[test]
fn many_components_end_with_how_many_more_are_hidden() {
    let mut tick = fixtures::tick(0);
    for i in 0..30 {
        tick.components.push(fixtures::component(
            &format!("extra-{i:02}"),
            true,
            i % 3 != 0,
            None,
        ));
    }
    let mut app = App::new();
    app.apply(tick);
    let screen = lines(&app, 120, 30);
    // 30 rows: header, footer, 8 for traces, 20 for the components panel:
    // its border, the column header, 15 components, the overflow line, the
    // failure line, the border.
    assert_eq!(
        &screen[17][..screen[17].find("││").unwrap()],
        "│extra-05        ready        0.0     —"
    );
    assert!(
        screen[18].starts_with("│… 24 more, 8 not ready                ││"),
        "{}",
        screen[18]
    );
    assert!(
        screen[19].starts_with("│media: exited with status 1"),
        "{}",
        screen[19]
    );
}

#[test]
fn the_help_overlay_lists_the_keys() {
    let mut app = fixtures::app();
    press(&mut app, KeyCode::Char('?'));
    let screen = lines(&app, 120, 30);
    let text = screen.join("\n");
    for key in ["Up / Down", "Enter", "/ ", "Esc", "q / Ctrl-C"] {
        assert!(text.contains(key), "{key} missing:\n{text}");
    }
    assert!(text.contains("Help · Esc to close"));
}

#[test]
fn a_trace_that_failed_to_load_says_why() {
    let mut app = fixtures::app();
    app.open_trace(Err("collector unreachable".into()));
    let text = render_to_string(&app, 120, 30);
    assert!(
        text.contains("Could not load trace 0f0e0d0c0b0a09080706050403020100: collector"),
        "{text}"
    );
}

#[test]
fn the_waterfall_scrolls_to_later_spans() {
    let spans = (0..40u64)
        .map(|i| {
            let parent = (i > 0).then_some("s00");
            fixtures::span(
                &format!("s{i:02}"),
                parent,
                "feed",
                &format!("step {i:02}"),
                i,
                100,
            )
        })
        .collect();
    let mut app = fixtures::app();
    app.open_trace(Ok(crate::Trace {
        trace_id: "t".into(),
        spans,
    }));
    let first_row = |app: &App| -> String {
        let row: String = lines(app, 120, 30)[4].chars().skip(3).take(40).collect();
        row.trim_end().to_string()
    };
    assert_eq!(first_row(&app), "       +0   100.0ms feed step 00");
    for _ in 0..4 {
        press(&mut app, KeyCode::Down);
    }
    assert_eq!(first_row(&app), "   +4.0ms    96.0ms   feed step 04");
    // 23 rows fit: the last scroll position shows the last span at the bottom.
    press(&mut app, KeyCode::End);
    let screen = lines(&app, 120, 30);
    assert!(screen[4].contains("feed step 17"), "{}", screen[4]);
    assert!(screen[26].contains("feed step 39"), "{}", screen[26]);
}

#[test]
fn sparklines_scale_to_their_maximum() {
    assert_eq!(ui::sparkline(&[0.0, 1.0, 2.0, 4.0, 8.0], 10), " ▁▂▄█");
    assert_eq!(
        ui::sparkline(&[8.0, 0.0, 8.0], 2),
        " █",
        "the newest points"
    );
    assert_eq!(ui::sparkline(&[0.0, 0.0], 5), "  ");
    assert_eq!(ui::sparkline(&[], 5), "");
    assert_eq!(ui::sparkline(&[f64::NAN, 1.0], 5), " █");
}

#[test]
fn values_format_compactly_and_unknown_is_a_dash() {
    assert_eq!(ui::fmt_rate(None), "—");
    assert_eq!(ui::fmt_rate(Some(12.34)), "12.3");
    assert_eq!(ui::fmt_rate(Some(1234.0)), "1.2k");
    assert_eq!(ui::fmt_rate(Some(123_456.0)), "123k");
    assert_eq!(ui::fmt_ms(None), "—");
    assert_eq!(ui::fmt_ms(Some(0.25)), "250us");
    assert_eq!(ui::fmt_ms(Some(4.25)), "4.2ms");
    assert_eq!(ui::fmt_ms(Some(120.4)), "120ms");
    assert_eq!(ui::fmt_ms(Some(1250.0)), "1.25s");
    assert_eq!(ui::fmt_count(Some(1300.0)), "1300");
}

#[test]
fn the_json_snapshot_holds_the_derived_panel_data() {
    let json = snapshot_json(&fixtures::app());
    assert_eq!(json["components"][6]["name"], "notifications");
    assert_eq!(json["components"][6]["state"], "starting");
    assert_eq!(json["components"][7]["state"], "failed");
    assert_eq!(json["components"][0]["rss_mib"], 50.0);
    assert_eq!(json["components_ready"], 6);
    assert_eq!(json["requests_per_s"], 50.0);
    assert_eq!(json["topics"][1]["topic"], "order.lifecycle");
    assert_eq!(json["topics"][1]["published_per_s"], 12.0);
    assert_eq!(
        json["topics"][3]["published_per_s"],
        serde_json::Value::Null
    );
    assert_eq!(json["topics"][6]["dead_letter"], true);
    assert!(json["topics"][0].get("history_per_s").is_none());
    assert_eq!(json["consumer_lag"][2]["group"], "payments-intents");
    assert_eq!(json["consumer_lag"][2]["lag"], 1300.0);
    assert_eq!(json["orders_by_state"][3]["state"], "completed");
    assert_eq!(json["orders_by_state"][3]["count"], 42.0);
    assert_eq!(json["saga_steps"][0]["step"], "reserve");
    let p50 = json["saga_steps"][0]["latency_ms_p50"].as_f64().unwrap();
    assert!((p50 - 30.0).abs() < 1e-9);
    assert_eq!(
        json["saga_steps"][2]["latency_ms_p95"],
        serde_json::Value::Null
    );
    let per_min = json["compensations_per_min"].as_f64().unwrap();
    assert!((per_min - 60.0).abs() < 1e-9);
    assert_eq!(json["cdc_lag_ms"], 95.0);
    assert!(json["search_commit_to_searchable_ms_p95"].as_f64().unwrap() > 958.0);
    assert_eq!(json["faults"][0]["fault"], "stripe-slow");
    assert_eq!(json["scenario"]["name"], "flash-sale");
    assert_eq!(
        json["traces"][0]["trace_id"],
        "77aa88bb99cc00dd11ee22ff33004455"
    );
    assert_eq!(json["all_down"], false);
}

#[test]
fn buffer_text_trims_trailing_spaces() {
    let buf = Buffer::with_lines(["ab  ", "    ", " c d"]);
    assert_eq!(crate::buffer_to_text(&buf), "ab\n\n c d\n");
}
