//! One trace as a waterfall: spans in causal order (parent before child,
//! siblings by start time), indented by depth, with offset, duration and a bar
//! on a shared time axis. The same rows feed the TUI overlay, the text of
//! `shopstream trace` and its `--json`.
//!
//! Traces come from many clocks: a child may start before its parent (clock
//! skew), a parent may be missing (not exported, or sampled away), ids may
//! repeat or even form a cycle. None of this may panic or produce negative
//! offsets; odd spans are marked instead.

use std::collections::HashMap;

use serde::Serialize;

use crate::input::{Span, Trace};

/// Indentation stops growing past this depth, so deep traces keep their bars.
pub const MAX_INDENT_DEPTH: usize = 12;
/// Columns taken by offset and duration before the span label.
const TIME_COLUMNS: usize = 20;
/// Below this many columns for the label, no bar is drawn.
const MIN_LABEL_COLUMNS: usize = 24;
/// Narrowest bar worth drawing.
const MIN_BAR_COLUMNS: usize = 10;
/// Steps that undo a forward saga step.
const COMPENSATION_NAMES: [&str; 3] = ["refund", "cancel_intent", "release"];

/// One span in waterfall order (`--json` of `shopstream trace`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaterfallRow {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    /// 0 for roots.
    pub depth: usize,
    pub service: String,
    pub name: String,
    pub kind: String,
    /// From the earliest span start of the trace; never negative.
    pub offset_nano: u64,
    /// 0 when the span ends before it starts.
    pub duration_nano: u64,
    pub status: String,
    pub error: bool,
    pub error_message: Option<String>,
    /// From the `attempt` attribute, when present.
    pub attempt: Option<u32>,
    /// `attempt` > 1, or a `retry` attribute.
    pub retry: bool,
    /// `saga.compensation` = `true`, or a refund/cancel_intent/release step.
    pub compensation: bool,
    /// The span names a parent that is not in the trace; shown as a root.
    pub parent_missing: bool,
    /// The span starts before its parent: the two hosts' clocks disagree.
    pub clock_skew: bool,
}

/// The spans of `trace` in waterfall order.
pub fn rows(trace: &Trace) -> Vec<WaterfallRow> {
    let spans = &trace.spans;
    if spans.is_empty() {
        return Vec::new();
    }
    let trace_start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        by_id.entry(s.span_id.as_str()).or_insert(i);
    }
    let parent_of = |i: usize| -> Option<usize> {
        let p = parent_id(&spans[i])?;
        by_id.get(p).copied().filter(|&pi| pi != i)
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for i in 0..spans.len() {
        match parent_of(i) {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    let order = |a: &usize, b: &usize| {
        let (sa, sb) = (&spans[*a], &spans[*b]);
        sa.start_unix_nano
            .cmp(&sb.start_unix_nano)
            .then_with(|| sa.span_id.cmp(&sb.span_id))
            .then_with(|| a.cmp(b))
    };
    roots.sort_by(order);
    for c in &mut children {
        c.sort_by(order);
    }

    let mut out = Vec::with_capacity(spans.len());
    let mut visited = vec![false; spans.len()];
    let walk = |root: usize, out: &mut Vec<WaterfallRow>, visited: &mut [bool]| {
        let mut stack = vec![(root, 0usize)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut visited[i], true) {
                continue;
            }
            let parent = parent_of(i).filter(|_| depth > 0);
            out.push(row(
                &spans[i],
                parent.map(|p| &spans[p]),
                depth,
                trace_start,
            ));
            for &c in children[i].iter().rev() {
                stack.push((c, depth + 1));
            }
        }
    };
    for &r in &roots {
        walk(r, &mut out, &mut visited);
    }
    // Spans left over form parent cycles: start each from its earliest span.
    let mut rest: Vec<usize> = (0..spans.len()).filter(|&i| !visited[i]).collect();
    rest.sort_by(order);
    for r in rest {
        walk(r, &mut out, &mut visited);
    }
    out
}

fn parent_id(s: &Span) -> Option<&str> {
    s.parent_span_id
        .as_deref()
        .filter(|p| !p.is_empty() && !p.bytes().all(|b| b == b'0'))
}

fn row(s: &Span, parent: Option<&Span>, depth: usize, trace_start: u64) -> WaterfallRow {
    let attempt = s
        .attributes
        .get("attempt")
        .and_then(|a| a.trim().parse::<u32>().ok());
    let retry_attr = s
        .attributes
        .get("retry")
        .is_some_and(|v| !matches!(v.trim(), "false" | "0" | ""));
    let error = s.status.eq_ignore_ascii_case("error");
    let error_message = error
        .then(|| {
            s.status_message
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(|| {
                    s.events
                        .iter()
                        .find(|e| e.name == "exception")
                        .and_then(|e| e.attributes.get("exception.message").cloned())
                })
        })
        .flatten();
    let step_name = |n: &str| {
        COMPENSATION_NAMES.contains(&n)
            || n.rsplit(['.', '/', ' ', ':'])
                .next()
                .is_some_and(|last| COMPENSATION_NAMES.contains(&last))
    };
    let compensation = s
        .attributes
        .get("saga.compensation")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || step_name(&s.name)
        || s.attributes.get("saga.step").is_some_and(|v| step_name(v));
    WaterfallRow {
        span_id: s.span_id.clone(),
        parent_span_id: parent_id(s).map(str::to_string),
        depth,
        service: s.service.clone(),
        name: s.name.clone(),
        kind: s.kind.clone(),
        offset_nano: s.start_unix_nano.saturating_sub(trace_start),
        duration_nano: s.end_unix_nano.saturating_sub(s.start_unix_nano),
        status: s.status.clone(),
        error,
        error_message,
        attempt,
        retry: attempt.is_some_and(|a| a > 1) || retry_attr,
        compensation,
        parent_missing: parent.is_none() && parent_id(s).is_some(),
        clock_skew: parent.is_some_and(|p| s.start_unix_nano < p.start_unix_nano),
    }
}

/// The waterfall as text lines at most `width` columns wide: a header line,
/// then one line per span (see [`rows`]) with offset, duration, the indented
/// `service name` and its marks, and a bar when there is room.
pub fn lines(trace: &Trace, width: usize) -> Vec<String> {
    let rows = rows(trace);
    let mut out = vec![header(&trace.trace_id, &rows, width)];
    out.extend(row_lines(&rows, width));
    out
}

/// The header line of [`lines`].
pub fn header(trace_id: &str, rows: &[WaterfallRow], width: usize) -> String {
    let errors = rows.iter().filter(|r| r.error).count();
    let text = format!(
        "trace {trace_id}  {} span{}  {}  {errors} error{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        format_duration_nano(total_nano(rows)),
        if errors == 1 { "" } else { "s" },
    );
    truncate(&text, width)
}

/// One line per row of [`rows`], at most `width` columns each.
pub fn row_lines(rows: &[WaterfallRow], width: usize) -> Vec<String> {
    let total = total_nano(rows).max(1);
    let room = width.saturating_sub(TIME_COLUMNS);
    let bar_width = if room >= MIN_LABEL_COLUMNS + 1 + MIN_BAR_COLUMNS {
        (room * 2 / 5).max(MIN_BAR_COLUMNS)
    } else {
        0
    };
    let label_width = if bar_width > 0 {
        room - bar_width - 1
    } else {
        room
    };
    rows.iter()
        .map(|r| {
            let mut line = format!(
                "{:>9} {:>9} ",
                format!("+{}", format_duration_nano(r.offset_nano)),
                format_duration_nano(r.duration_nano)
            );
            let label = format!(
                "{}{} {}{}",
                "  ".repeat(r.depth.min(MAX_INDENT_DEPTH)),
                r.service,
                r.name,
                marks(r)
            );
            if bar_width > 0 {
                line.push_str(&pad(&truncate(&label, label_width), label_width));
                line.push(' ');
                line.push_str(&bar(r, total, bar_width));
            } else {
                line.push_str(&label);
            }
            truncate(line.trim_end(), width)
        })
        .collect()
}

/// `[error: ...] [retry #2] [compensation] ...` for a row, with a leading space.
pub fn marks(r: &WaterfallRow) -> String {
    let mut m = String::new();
    if r.error {
        match &r.error_message {
            Some(msg) => m.push_str(&format!(" [error: {}]", msg.replace('\n', " "))),
            None => m.push_str(" [error]"),
        }
    }
    if r.retry {
        match r.attempt {
            Some(a) => m.push_str(&format!(" [retry #{a}]")),
            None => m.push_str(" [retry]"),
        }
    }
    if r.compensation {
        m.push_str(" [compensation]");
    }
    if r.parent_missing {
        m.push_str(" [parent missing]");
    }
    if r.clock_skew {
        m.push_str(" [clock skew]");
    }
    m
}

/// From the earliest start to the latest end.
fn total_nano(rows: &[WaterfallRow]) -> u64 {
    rows.iter()
        .map(|r| r.offset_nano.saturating_add(r.duration_nano))
        .max()
        .unwrap_or(0)
}

fn bar(r: &WaterfallRow, total: u64, width: usize) -> String {
    let scale = |t: u64, round_up: bool| -> usize {
        let num = u128::from(t) * width as u128;
        let den = u128::from(total);
        let v = if round_up {
            num.div_ceil(den)
        } else {
            num / den
        };
        usize::try_from(v).unwrap_or(usize::MAX).min(width)
    };
    let start = scale(r.offset_nano, false).min(width - 1);
    let end = scale(r.offset_nano.saturating_add(r.duration_nano), true).max(start + 1);
    format!("{}{}", " ".repeat(start), "█".repeat(end - start))
}

/// `0`, `850ns`, `12.5us`, `3.2ms`, `1.25s`.
pub fn format_duration_nano(n: u64) -> String {
    let f = n as f64;
    if n == 0 {
        "0".to_string()
    } else if n < 1_000 {
        format!("{n}ns")
    } else if n < 1_000_000 {
        format!("{:.1}us", f / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.1}ms", f / 1e6)
    } else {
        format!("{:.2}s", f / 1e9)
    }
}

/// At most `width` characters, ending in `…` when cut.
pub fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{order_trace, span};

    fn ids(rows: &[WaterfallRow]) -> Vec<(&str, usize)> {
        rows.iter().map(|r| (r.span_id.as_str(), r.depth)).collect()
    }

    fn trace(spans: Vec<Span>) -> Trace {
        Trace {
            trace_id: "t".into(),
            spans,
        }
    }

    #[test]
    fn spans_are_in_causal_order_with_depth() {
        let rows = rows(&order_trace());
        assert_eq!(
            ids(&rows),
            [
                ("g1", 0),
                ("w1", 1),
                ("r1", 2),
                ("a1", 2),
                ("a2", 2),
                ("c1", 2),
                ("f1", 2)
            ]
        );
        assert_eq!(rows[2].offset_nano, 10_000_000);
        assert_eq!(rows[2].duration_nano, 20_000_000);
        assert!(rows.iter().all(|r| !r.parent_missing && !r.clock_skew));
    }

    #[test]
    fn siblings_are_ordered_by_start_and_children_follow_their_parent() {
        let spans = vec![
            span("b", Some("root"), "s", "second", 20, 30),
            span("b1", Some("b"), "s", "under second", 21, 22),
            span("a1", Some("a"), "s", "under first", 11, 12),
            span("a", Some("root"), "s", "first", 10, 40),
            span("root", None, "s", "root", 0, 50),
        ];
        assert_eq!(
            ids(&rows(&trace(spans))),
            [("root", 0), ("a", 1), ("a1", 2), ("b", 1), ("b1", 2)]
        );
    }

    #[test]
    fn retries_compensations_and_errors_are_marked() {
        let rows = rows(&order_trace());
        let by_id = |id: &str| rows.iter().find(|r| r.span_id == id).unwrap();
        assert!(!by_id("a1").retry, "attempt 1 is not a retry");
        assert_eq!(by_id("a1").attempt, Some(1));
        assert!(by_id("a2").retry);
        assert!(by_id("c1").error);
        assert_eq!(by_id("c1").error_message.as_deref(), Some("card_declined"));
        assert!(by_id("f1").compensation);
        assert!(!by_id("r1").compensation, "reserve is a forward step");
        assert_eq!(marks(by_id("a2")), " [retry #2]");
        assert_eq!(marks(by_id("c1")), " [error: card_declined]");
        assert_eq!(marks(by_id("f1")), " [compensation]");

        // By step name alone, a `retry` attribute, an exception event.
        let mut failed = span("x", None, "payments", "stripe.create", 0, 5);
        failed.status = "ERROR".into();
        failed.events.push(crate::input::SpanEvent {
            name: "exception".into(),
            time_unix_nano: 1,
            attributes: [("exception.message".to_string(), "timeout".to_string())].into(),
        });
        let mut retried = span("y", None, "payments", "stripe.create", 6, 9);
        retried.attributes.insert("retry".into(), "true".into());
        let spans = vec![
            span("r", None, "inventory", "saga.release", 10, 12),
            span("c", None, "payments", "cancel_intent", 13, 14),
            failed,
            retried,
        ];
        let rows = super::rows(&trace(spans));
        let marks: Vec<String> = rows.iter().map(marks).collect();
        assert_eq!(
            marks,
            [
                " [error: timeout]",
                " [retry]",
                " [compensation]",
                " [compensation]"
            ]
        );
    }

    #[test]
    fn a_span_whose_parent_is_missing_is_a_root() {
        let spans = vec![
            span("root", None, "gateway", "GET /", 0, 10),
            span("lost", Some("not-exported"), "search", "query", 2, 4),
            span("kid", Some("lost"), "search", "tantivy", 3, 4),
            span("zero", Some("0000000000000000"), "feed", "tick", 5, 6),
        ];
        let rows = rows(&trace(spans));
        assert_eq!(
            ids(&rows),
            [("root", 0), ("lost", 0), ("kid", 1), ("zero", 0)]
        );
        assert!(rows[1].parent_missing);
        assert!(!rows[2].parent_missing);
        assert!(!rows[3].parent_missing, "an all-zero parent id means none");
        assert_eq!(marks(&rows[1]), " [parent missing]");
    }

    #[test]
    fn clock_skew_gives_no_negative_offsets_or_durations() {
        let spans = vec![
            span("p", None, "orders", "place", 100, 200),
            // Another host's clock runs 50ms behind.
            span("c", Some("p"), "payments", "authorize", 60, 90),
            // Ends before it starts.
            span("e", Some("p"), "payments", "broken", 150, 140),
        ];
        let rows = rows(&trace(spans));
        assert_eq!(ids(&rows), [("p", 0), ("c", 1), ("e", 1)]);
        assert_eq!(rows[0].offset_nano, 40_000_000);
        assert_eq!(rows[1].offset_nano, 0, "the earliest span starts the trace");
        assert!(rows[1].clock_skew);
        assert_eq!(rows[2].duration_nano, 0);
        let text = lines(
            &trace(vec![
                span("p", None, "orders", "place", 100, 200),
                span("c", Some("p"), "payments", "authorize", 60, 90),
            ]),
            80,
        );
        assert!(text[1].starts_with("  +40.0ms"), "{text:?}");
        assert!(text[2].contains("[clock skew]"), "{text:?}");
    }

    #[test]
    fn parent_cycles_and_duplicate_ids_end_and_keep_every_span_once() {
        let spans = vec![
            span("a", Some("b"), "s", "a", 0, 10),
            span("b", Some("a"), "s", "b", 1, 9),
            span("self", Some("self"), "s", "own parent", 2, 3),
            span("d", None, "s", "first d", 4, 5),
            span("d", None, "s", "second d", 6, 7),
        ];
        let rows = rows(&trace(spans));
        let mut names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names.len(), 5);
        names.sort_unstable();
        assert_eq!(names, ["a", "b", "first d", "own parent", "second d"]);
    }

    #[test]
    fn lines_show_offset_duration_indent_marks_and_bars() {
        let text = lines(&order_trace(), 100);
        let expected = [
            "trace 4bf92f3577b34da6a3ce929d0e0e4736  7 spans  150.0ms  1 error",
            "       +0   150.0ms gateway POST /orders                            ████████████████████████████████",
            "   +5.0ms   140.0ms   orders saga.place_order                        ██████████████████████████████",
            "  +10.0ms    20.0ms     inventory reserve                             █████",
            "  +35.0ms    10.0ms     payments authorize                                 ███",
            "  +50.0ms    20.0ms     payments authorize [retry #2]                         █████",
            "  +80.0ms    40.0ms     payments capture [error: card_declined]                      █████████",
            " +125.0ms    15.0ms     payments refund [compensation]                                        ████",
        ];
        assert_eq!(text, expected);
        assert!(text.iter().all(|l| l.chars().count() <= 100));
    }

    #[test]
    fn narrow_widths_drop_the_bar_and_never_overflow() {
        let text = lines(&order_trace(), 40);
        assert_eq!(text[6], "  +80.0ms    40.0ms     payments captur…");
        for width in [0, 1, 5, 20, 21, 39, 54, 55, 56, 200] {
            for l in lines(&order_trace(), width) {
                assert!(l.chars().count() <= width, "{width}: {l:?}");
            }
        }
        assert!(lines(&trace(Vec::new()), 80).len() == 1, "just the header");
    }

    #[test]
    fn rows_serialize_for_json() {
        let rows = rows(&order_trace());
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[4]["span_id"], "a2");
        assert_eq!(json[4]["retry"], true);
        assert_eq!(json[4]["attempt"], 2);
        assert_eq!(json[5]["error_message"], "card_declined");
        assert_eq!(json[0]["parent_span_id"], serde_json::Value::Null);
    }
}
