//! The scenario report: what a run measured and whether every invariant held,
//! rendered for the terminal, for a pull request (Markdown + an SVG chart) and as
//! JSON. Everything here is a pure function of [`Report`] except `write_dir`.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

use crate::table;

/// One scenario run, complete or interrupted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    /// RFC 3339.
    pub started_at: String,
    pub duration_s: f64,
    /// users, rate, chaos spec, build profile…
    pub params: BTreeMap<String, String>,
    /// One per second of load, in time order.
    pub seconds: Vec<Second>,
    pub faults: Vec<FaultWindow>,
    /// Our own microsecond histogram of the scenario's main figure.
    pub headline: Option<Headline>,
    /// Per request name, from Goose.
    pub requests: Vec<RequestStat>,
    /// cold-start's timed phases, in order.
    pub phases: Vec<Phase>,
    pub invariants: Vec<Invariant>,
    pub notes: Vec<String>,
    /// Ctrl-C: the report covers only part of the run.
    pub interrupted: bool,
}

/// The load in second `t` (counted from the start of the load).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub t: u32,
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// A fault that was active from `start_s` to `end_s` (equal for instant faults
/// such as a kill).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub label: String,
    pub start_s: f64,
    pub end_s: f64,
    /// The load ended before the fault's own end (or a kill's recovery): the
    /// window closes when the driver cleared it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut_short: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub name: String,
    pub count: u64,
    pub rate_per_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestStat {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub statuses: BTreeMap<u16, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub took_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Invariant {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

impl Report {
    /// True only if the run completed and checked at least one invariant, and
    /// every invariant held: a run that proved nothing does not pass.
    pub fn passed(&self) -> bool {
        !self.interrupted && !self.invariants.is_empty() && self.invariants.iter().all(|i| i.pass)
    }

    /// "PASS — 7 of 7 invariants hold", or why it fails.
    fn verdict(&self) -> String {
        let total = self.invariants.len();
        let failed: Vec<&str> = self
            .invariants
            .iter()
            .filter(|i| !i.pass)
            .map(|i| i.name.as_str())
            .collect();
        if self.passed() {
            return format!("PASS — {total} of {total} invariants hold");
        }
        let mut why = Vec::new();
        if self.interrupted {
            why.push("interrupted, partial report".to_string());
        }
        if total == 0 {
            why.push("no invariant was checked".to_string());
        } else if !failed.is_empty() {
            why.push(format!(
                "{} of {total} invariants failed: {}",
                failed.len(),
                failed.join(", ")
            ));
        } else {
            why.push(format!("{total} of {total} checked invariants hold"));
        }
        format!("FAIL — {}", why.join("; "))
    }

    /// One line: scenario, seed, start and length of the run.
    fn run_line(&self) -> String {
        let mut parts = vec![self.scenario.clone(), format!("seed {}", self.seed)];
        if !self.started_at.is_empty() {
            parts.push(format!("started {}", self.started_at));
        }
        parts.push(format!("{:.1} s", self.duration_s));
        if self.interrupted {
            parts.push("interrupted".to_string());
        }
        parts.join(" · ")
    }

    /// Totals over `seconds`, or None without per-second data.
    fn load_line(&self) -> Option<String> {
        if self.seconds.is_empty() {
            return None;
        }
        let requests: u64 = self.seconds.iter().map(|s| s.requests).sum();
        let errors: u64 = self.seconds.iter().map(|s| s.errors).sum();
        let peak = self.seconds.iter().map(|s| s.requests).max().unwrap_or(0);
        let worst_p99_us = self.seconds.iter().map(|s| s.p99_us).max().unwrap_or(0);
        Some(format!(
            "{} requests in {} s · peak {} req/s · {} errors · worst per-second p99 {} ms",
            thousands(requests),
            self.seconds.len(),
            thousands(peak),
            thousands(errors),
            us_as_ms(worst_p99_us),
        ))
    }

    /// The summary printed at the end of a run; the verdict is the last line.
    pub fn terminal(&self) -> String {
        let mut out = self.run_line();
        out.push('\n');
        if self.interrupted {
            out.push_str("interrupted: this is a partial report\n");
        }
        if !self.params.is_empty() {
            let rows: Vec<Vec<String>> = self
                .params
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect();
            section(&mut out, table::render(&["param", "value"], &rows));
        }
        if let Some(load) = self.load_line() {
            out.push_str(&format!("\nload: {load}\n"));
        }
        if let Some(h) = &self.headline {
            out.push_str(&format!("\nheadline: {}\n", h.name));
            out.push_str(&table::render(&HEADLINE_HEADER, &[headline_row(h)]));
        }
        if !self.requests.is_empty() {
            let rows: Vec<Vec<String>> = self.requests.iter().map(request_row).collect();
            section(&mut out, table::render(&REQUEST_HEADER, &rows));
        }
        if !self.phases.is_empty() {
            section(&mut out, table::render(&PHASE_HEADER, &self.phase_rows()));
        }
        if !self.faults.is_empty() {
            let rows: Vec<Vec<String>> = self.faults.iter().map(fault_row).collect();
            section(&mut out, table::render(&FAULT_HEADER, &rows));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out.push_str(&format!("note: {note}\n"));
            }
        }
        if !self.invariants.is_empty() {
            let rows: Vec<Vec<String>> = self.invariants.iter().map(invariant_row).collect();
            section(&mut out, table::render(&INVARIANT_HEADER, &rows));
        }
        out.push_str(&format!("\nverdict: {}\n", self.verdict()));
        out
    }

    /// A summary for a pull request: the verdict first, then the invariants,
    /// the chart (by the relative path `chart_file`) and the figures as tables.
    pub fn markdown(&self, chart_file: &str) -> String {
        let mut out = format!(
            "### {}: {}\n\n",
            md_cell(&self.scenario),
            md_cell(&self.verdict())
        );
        out.push_str(&format!("{}\n", md_cell(&self.run_line())));
        if let Some(load) = self.load_line() {
            out.push_str(&format!("\n{load}\n"));
        }
        if !self.invariants.is_empty() {
            let rows: Vec<Vec<String>> = self
                .invariants
                .iter()
                .map(|i| {
                    let result = if i.pass { "PASS" } else { "**FAIL**" };
                    vec![result.to_string(), i.name.clone(), i.detail.clone()]
                })
                .collect();
            out.push('\n');
            out.push_str(&md_table(&INVARIANT_HEADER, &rows));
        }
        out.push_str(&format!(
            "\n![{}: throughput, latency and errors over time]({chart_file})\n",
            md_cell(&self.scenario)
        ));
        if let Some(h) = &self.headline {
            out.push_str(&format!("\n#### Headline: {}\n\n", md_cell(&h.name)));
            out.push_str(&md_table(&HEADLINE_HEADER, &[headline_row(h)]));
        }
        if !self.requests.is_empty() {
            let rows: Vec<Vec<String>> = self.requests.iter().map(request_row).collect();
            out.push_str("\n#### Requests\n\n");
            out.push_str(&md_table(&REQUEST_HEADER, &rows));
        }
        if !self.phases.is_empty() {
            out.push_str("\n#### Phases\n\n");
            out.push_str(&md_table(&PHASE_HEADER, &self.phase_rows()));
        }
        if !self.faults.is_empty() {
            let rows: Vec<Vec<String>> = self.faults.iter().map(fault_row).collect();
            out.push_str("\n#### Faults\n\n");
            out.push_str(&md_table(&FAULT_HEADER, &rows));
        }
        if !self.params.is_empty() {
            let rows: Vec<Vec<String>> = self
                .params
                .iter()
                .map(|(k, v)| vec![k.clone(), format!("`{v}`")])
                .collect();
            out.push_str("\n#### Parameters\n\n");
            out.push_str(&md_table(&["param", "value"], &rows));
        }
        if !self.notes.is_empty() {
            out.push_str("\n#### Notes\n\n");
            for note in &self.notes {
                out.push_str(&format!("- {}\n", note.replace('\n', " ")));
            }
        }
        out
    }

    fn phase_rows(&self) -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> = self
            .phases
            .iter()
            .map(|p| vec![p.name.clone(), thousands(p.took_ms)])
            .collect();
        if self.phases.len() > 1 {
            let total: u64 = self.phases.iter().map(|p| p.took_ms).sum();
            rows.push(vec!["total".to_string(), thousands(total)]);
        }
        rows
    }

    /// The chart: requests/s, p50/p99 latency and errors/s over time in three
    /// panels sharing the time axis, each fault window shaded in all three and
    /// labelled above the first.
    pub fn svg(&self) -> Result<String, String> {
        let mut svg = String::new();
        draw_chart(self, &mut svg).map_err(|e| format!("drawing the chart: {e}"))?;
        Ok(svg)
    }

    /// Writes `report.json`, `summary.md` and `chart.svg` into `dir` (made if
    /// missing) and returns their paths.
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let svg = self.svg().map_err(std::io::Error::other)?;
        let files = [
            ("report.json", json + "\n"),
            ("summary.md", self.markdown(CHART_FILE)),
            (CHART_FILE, svg),
        ];
        let mut paths = Vec::with_capacity(files.len());
        for (name, contents) in files {
            let path = dir.join(name);
            std::fs::write(&path, contents)?;
            paths.push(path);
        }
        Ok(paths)
    }
}

const CHART_FILE: &str = "chart.svg";
const HEADLINE_HEADER: [&str; 6] = ["count", "rate/s", "p50 ms", "p90 ms", "p99 ms", "max ms"];
const REQUEST_HEADER: [&str; 6] = ["request", "count", "errors", "p50 ms", "p99 ms", "statuses"];
const PHASE_HEADER: [&str; 2] = ["phase", "took ms"];
const FAULT_HEADER: [&str; 4] = ["fault", "start s", "end s", "length s"];
const INVARIANT_HEADER: [&str; 3] = ["result", "invariant", "detail"];

fn section(out: &mut String, table: String) {
    out.push('\n');
    out.push_str(&table);
}

fn headline_row(h: &Headline) -> Vec<String> {
    vec![
        thousands(h.count),
        format!("{:.1}", h.rate_per_s),
        us_as_ms(h.p50_us),
        us_as_ms(h.p90_us),
        us_as_ms(h.p99_us),
        us_as_ms(h.max_us),
    ]
}

fn request_row(r: &RequestStat) -> Vec<String> {
    let statuses: Vec<String> = r
        .statuses
        .iter()
        .map(|(code, n)| format!("{code}×{}", thousands(*n)))
        .collect();
    vec![
        r.name.clone(),
        thousands(r.count),
        thousands(r.errors),
        r.p50_ms.to_string(),
        r.p99_ms.to_string(),
        statuses.join(" "),
    ]
}

fn fault_row(f: &FaultWindow) -> Vec<String> {
    vec![
        if f.cut_short {
            format!("{} (cut short: the load ended first)", f.label)
        } else {
            f.label.clone()
        },
        format!("{:.1}", f.start_s),
        format!("{:.1}", f.end_s),
        format!("{:.1}", f.end_s - f.start_s),
    ]
}

fn invariant_row(i: &Invariant) -> Vec<String> {
    let result = if i.pass { "PASS" } else { "FAIL" };
    vec![result.to_string(), i.name.clone(), i.detail.clone()]
}

/// Microseconds as milliseconds with two decimals.
fn us_as_ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text safe inside a Markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

// The chart's geometry, in pixels. Text widths are estimates (an SVG has no
// font metrics), generous enough for common sans-serif faces.
const CHART_W: u32 = 1000;
const TITLE_H: u32 = 34;
const PANEL_H: [u32; 3] = [210, 250, 200];
/// Above each panel's plot: room for a legend.
const PANEL_TOP_H: u32 = 22;
const MARGIN_L: u32 = 10;
const MARGIN_R: u32 = 24;
const Y_LABEL_W: u32 = 72;
const X_LABEL_H: u32 = 28;
const X_DESC_H: u32 = 46;
/// One row of fault labels, each over a bar spanning its window.
const LANE_H: u32 = 20;
const MAX_LANES: usize = 6;
const LABEL_FONT_PX: u32 = 12;
const LABEL_CHAR_W: f64 = 7.0;
const FONT: &str = "sans-serif";

const THROUGHPUT: RGBColor = RGBColor(31, 119, 180);
const P50: RGBColor = RGBColor(44, 160, 44);
const P99: RGBColor = RGBColor(230, 85, 13);
const ERRORS: RGBColor = RGBColor(214, 39, 40);
const PASS_GREEN: RGBColor = RGBColor(30, 130, 50);
const GREY_TEXT: RGBColor = RGBColor(120, 120, 120);
/// Fault windows: none of them is a series colour.
const FAULT_COLORS: [RGBColor; 6] = [
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 160, 180),
    RGBColor(188, 140, 20),
    RGBColor(200, 90, 170),
    RGBColor(110, 110, 110),
];

type Svg<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Segments = Vec<Vec<(f64, f64)>>;
type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

struct Line {
    label: &'static str,
    color: RGBColor,
    filled: bool,
    segments: Segments,
}

/// A panel's vertical axis: linear from zero, or logarithmic between two
/// powers (latency spans decades once a fault hits: 2 ms to 5 s).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    Linear { hi: f64 },
    Log { lo: f64, hi: f64 },
}

impl Scale {
    fn bounds(self) -> (f64, f64) {
        match self {
            Scale::Linear { hi } => (0.0, hi),
            Scale::Log { lo, hi } => (lo, hi),
        }
    }
}

struct Panel {
    y_desc: &'static str,
    scale: Scale,
    lines: Vec<Line>,
    /// Pixels above the plot: a legend, and fault labels over the first panel.
    top_px: u32,
    /// Only the bottom panel names the time axis.
    x_desc: bool,
}

/// Points `(t + 0.5, value)` in runs of consecutive seconds; a second without a
/// value (or missing) breaks the line rather than drawing through it.
fn segments(seconds: &[Second], value: impl Fn(&Second) -> Option<f64>) -> Segments {
    let mut out: Segments = Vec::new();
    let mut prev_t: Option<u32> = None;
    for s in seconds {
        let Some(v) = value(s) else {
            prev_t = None;
            continue;
        };
        let follows = prev_t.is_some_and(|p| p.checked_add(1) == Some(s.t));
        if !follows {
            out.push(Vec::new());
        }
        if let Some(run) = out.last_mut() {
            run.push((f64::from(s.t) + 0.5, v));
        }
        prev_t = Some(s.t);
    }
    out
}

fn max_value(lines: &[Line]) -> f64 {
    lines
        .iter()
        .flat_map(|l| l.segments.iter().flatten())
        .map(|&(_, y)| y)
        .fold(0.0, f64::max)
}

/// Zero to a little above the largest value (1 when there is none).
fn linear_scale(lines: &[Line]) -> Scale {
    let top = max_value(lines);
    Scale::Linear {
        hi: if top > 0.0 { top * 1.12 } else { 1.0 },
    }
}

/// From the power of ten at or below the smallest value to the 1-2-5 step
/// above the largest.
fn log_scale(lines: &[Line]) -> Scale {
    let positive = || {
        lines
            .iter()
            .flat_map(|l| l.segments.iter().flatten())
            .map(|&(_, y)| y)
            .filter(|y| *y > 0.0 && y.is_finite())
    };
    let Some(min) = positive().reduce(f64::min) else {
        return Scale::Log { lo: 1.0, hi: 10.0 };
    };
    let max = positive().fold(min, f64::max);
    let lo = 10f64.powf(min.log10().floor());
    let top = max * 1.1;
    let decade = 10f64.powf(top.log10().floor());
    let hi = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * decade)
        .find(|v| *v >= top)
        .unwrap_or(10.0 * decade);
    Scale::Log {
        lo,
        hi: hi.max(lo * 10.0),
    }
}

/// A log axis' tick label: only at 1 (and 2, 5 when a decade is tall enough),
/// so that labels never crowd; the other ticks stay as unlabelled marks.
fn log_tick(v: f64, with_2_and_5: bool) -> String {
    if v <= 0.0 || !v.is_finite() {
        return String::new();
    }
    let exponent = v.log10().floor();
    let mantissa = (v / 10f64.powf(exponent)).round();
    let labelled = mantissa == 1.0 || (with_2_and_5 && (mantissa == 2.0 || mantissa == 5.0));
    if !labelled {
        return String::new();
    }
    let decimals = if exponent < 0.0 {
        -exponent as usize
    } else {
        0
    };
    format!("{:.*}", decimals, mantissa * 10f64.powf(exponent))
}

/// Assigns each span `(x0, x1)` (sorted by x0) the first lane where it does not
/// overlap the one before; past `max_lanes` lanes, the lane that frees up
/// first (spans may then overlap, but the chart's height has a limit).
fn assign_lanes(spans: &[(f64, f64)], max_lanes: usize) -> Vec<usize> {
    const GAP_PX: f64 = 8.0;
    let mut lane_end: Vec<f64> = Vec::new();
    spans
        .iter()
        .map(|&(x0, x1)| {
            let lane = match lane_end.iter().position(|&end| end + GAP_PX <= x0) {
                Some(lane) => lane,
                None if lane_end.len() < max_lanes.max(1) => {
                    lane_end.push(f64::MIN);
                    lane_end.len() - 1
                }
                None => lane_end
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(lane, _)| lane),
            };
            lane_end[lane] = x1;
            lane
        })
        .collect()
}

/// Where a fault is drawn above the plots, in pixels of the whole chart.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FaultMark {
    fault: usize,
    /// The window's start and end.
    x0: f64,
    x1: f64,
    /// The label's left edge: at the start, or moved left to stay inside.
    text_x: f64,
    lane: usize,
}

/// Lays out the fault labels and bars in lanes over the first plot. The plot's
/// horizontal mapping is computed here from the same constants the panels are
/// built with, so the lanes (and so the chart's height) are known first.
fn fault_marks(faults: &[FaultWindow], x_max: f64) -> Vec<FaultMark> {
    let plot_left = f64::from(MARGIN_L + Y_LABEL_W);
    let plot_right = f64::from(CHART_W - MARGIN_R);
    let px = |x: f64| plot_left + x.clamp(0.0, x_max) / x_max * (plot_right - plot_left);
    let mut order: Vec<usize> = (0..faults.len()).collect();
    order.sort_by(|&a, &b| faults[a].start_s.total_cmp(&faults[b].start_s));
    let mut marks: Vec<FaultMark> = order
        .into_iter()
        .map(|fault| {
            let x0 = px(faults[fault].start_s);
            let x1 = px(faults[fault].end_s).max(x0);
            let width = faults[fault].label.chars().count() as f64 * LABEL_CHAR_W;
            let text_x = (x0 + 3.0).min(plot_right - width).max(plot_left);
            FaultMark {
                fault,
                x0,
                x1,
                text_x,
                lane: 0,
            }
        })
        .collect();
    let spans: Vec<(f64, f64)> = marks
        .iter()
        .map(|m| {
            let width = faults[m.fault].label.chars().count() as f64 * LABEL_CHAR_W;
            (m.x0.min(m.text_x), m.x1.max(m.text_x + width))
        })
        .collect();
    for (mark, lane) in marks.iter_mut().zip(assign_lanes(&spans, MAX_LANES)) {
        mark.lane = lane;
    }
    marks
}

fn draw_chart(report: &Report, svg: &mut String) -> Result<(), Box<dyn Error>> {
    let mut seconds = report.seconds.clone();
    seconds.sort_by_key(|s| s.t);
    let last_second = seconds.last().map_or(0.0, |s| f64::from(s.t) + 1.0);
    let last_fault = report
        .faults
        .iter()
        .flat_map(|f| [f.start_s, f.end_s])
        .fold(0.0, f64::max);
    let x_max = [report.duration_s, last_second, last_fault]
        .into_iter()
        .filter(|x| x.is_finite())
        .fold(1.0, f64::max);

    let marks = fault_marks(&report.faults, x_max);
    let lanes = marks.iter().map(|m| m.lane + 1).max().unwrap_or(0);
    let lanes_h = LANE_H * u32::try_from(lanes).unwrap_or(0);

    let throughput = vec![Line {
        label: "requests/s",
        color: THROUGHPUT,
        filled: true,
        segments: segments(&seconds, |s| Some(s.requests as f64)),
    }];
    // A second without requests (or without a measured latency) has no latency.
    let latency_ms = |us: fn(&Second) -> u64| {
        segments(&seconds, move |s| {
            (s.requests > 0 && us(s) > 0).then(|| us(s) as f64 / 1000.0)
        })
    };
    let latency = vec![
        Line {
            label: "p99",
            color: P99,
            filled: false,
            segments: latency_ms(|s| s.p99_us),
        },
        Line {
            label: "p50",
            color: P50,
            filled: false,
            segments: latency_ms(|s| s.p50_us),
        },
    ];
    let errors = vec![Line {
        label: "errors/s",
        color: ERRORS,
        filled: true,
        segments: segments(&seconds, |s| Some(s.errors as f64)),
    }];
    let panels = [
        Panel {
            y_desc: "throughput (requests/s)",
            scale: linear_scale(&throughput),
            lines: throughput,
            top_px: PANEL_TOP_H + lanes_h,
            x_desc: false,
        },
        Panel {
            y_desc: "latency (ms, log scale)",
            scale: log_scale(&latency),
            lines: latency,
            top_px: PANEL_TOP_H,
            x_desc: false,
        },
        Panel {
            y_desc: "errors/s",
            scale: linear_scale(&errors),
            lines: errors,
            top_px: PANEL_TOP_H,
            x_desc: true,
        },
    ];

    let height = TITLE_H + lanes_h + PANEL_H.iter().sum::<u32>();
    let root = SVGBackend::with_string(svg, (CHART_W, height)).into_drawing_area();
    root.fill(&WHITE)?;
    draw_title(&root, report)?;

    let (_, mut rest) = root.split_vertically(TITLE_H);
    let mut first_plot_top_px = 0;
    for (i, panel) in panels.iter().enumerate() {
        let h = PANEL_H[i] + if i == 0 { lanes_h } else { 0 };
        let (area, below) = rest.split_vertically(h);
        let plot_top_px = draw_panel(&root, &area, panel, x_max, &report.faults)?;
        if i == 0 {
            first_plot_top_px = plot_top_px;
        }
        rest = below;
    }
    draw_fault_marks(&root, &marks, &report.faults, first_plot_top_px)?;
    root.present()?;
    Ok(())
}

fn draw_title(root: &Svg<'_>, report: &Report) -> Result<(), Box<dyn Error>> {
    let font = (FONT, 17).into_font().style(FontStyle::Bold);
    let title = TextStyle::from(font.clone())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    root.draw(&Text::new(
        report.run_line(),
        (MARGIN_L as i32 + 4, TITLE_H as i32 / 2),
        title,
    ))?;
    let (verdict, color) = if report.passed() {
        ("PASS", PASS_GREEN)
    } else {
        ("FAIL", ERRORS)
    };
    let style = TextStyle::from(font)
        .color(&color)
        .pos(Pos::new(HPos::Right, VPos::Center));
    root.draw(&Text::new(
        verdict,
        ((CHART_W - MARGIN_R) as i32, TITLE_H as i32 / 2),
        style,
    ))?;
    Ok(())
}

/// Each fault's label over a bracket from its start to its end, in its lane
/// above the first plot.
fn draw_fault_marks(
    root: &Svg<'_>,
    marks: &[FaultMark],
    faults: &[FaultWindow],
    plot_top_px: i32,
) -> Result<(), Box<dyn Error>> {
    for mark in marks {
        let color = FAULT_COLORS[mark.fault % FAULT_COLORS.len()];
        let lane_px = i32::try_from(mark.lane).unwrap_or(0) * LANE_H as i32;
        let bar_y = plot_top_px - 4 - lane_px;
        // Short ticks only: a tick down to the plot would cross lower labels.
        let tick_y = if mark.lane == 0 {
            plot_top_px
        } else {
            bar_y + 4
        };
        let (x0, x1) = (mark.x0.round() as i32, mark.x1.round() as i32);
        root.draw(&PathElement::new(
            vec![(x0, tick_y), (x0, bar_y), (x1, bar_y), (x1, tick_y)],
            color.stroke_width(2),
        ))?;
        let style = TextStyle::from((FONT, LABEL_FONT_PX).into_font())
            .color(&color)
            .pos(Pos::new(HPos::Left, VPos::Bottom));
        root.draw(&Text::new(
            faults[mark.fault].label.as_str(),
            (mark.text_x.round() as i32, bar_y - 3),
            style,
        ))?;
    }
    Ok(())
}

/// Draws one panel; returns the top edge of its plot in pixels of the chart.
fn draw_panel(
    root: &Svg<'_>,
    area: &Svg<'_>,
    panel: &Panel,
    x_max: f64,
    faults: &[FaultWindow],
) -> Result<i32, Box<dyn Error>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_left(MARGIN_L)
        .margin_right(MARGIN_R)
        .margin_top(panel.top_px)
        .x_label_area_size(if panel.x_desc { X_DESC_H } else { X_LABEL_H })
        .y_label_area_size(Y_LABEL_W);
    match panel.scale {
        Scale::Linear { hi } => {
            let chart = builder.build_cartesian_2d(0.0..x_max, 0.0..hi)?;
            fill_panel(root, chart, panel, x_max, faults)
        }
        Scale::Log { lo, hi } => {
            let chart = builder.build_cartesian_2d(0.0..x_max, (lo..hi).log_scale())?;
            fill_panel(root, chart, panel, x_max, faults)
        }
    }
}

fn fill_panel<Y>(
    root: &Svg<'_>,
    mut chart: Chart<'_, '_, Y>,
    panel: &Panel,
    x_max: f64,
    faults: &[FaultWindow],
) -> Result<i32, Box<dyn Error>>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let (y_lo, y_hi) = panel.scale.bounds();
    let x_fmt = |v: &f64| {
        if x_max < 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        }
    };
    // Log ticks: 1-2-5 labels when a decade is at least ~60 px tall.
    let decades = (y_hi / y_lo).log10().max(1.0);
    let plot_h = f64::from(chart.plotting_area().dim_in_pixel().1);
    let with_2_and_5 = plot_h / decades >= 60.0;
    let y_fmt = |v: &f64| match panel.scale {
        Scale::Log { .. } => log_tick(*v, with_2_and_5),
        Scale::Linear { hi } if hi < 10.0 => format!("{v:.1}"),
        Scale::Linear { .. } => format!("{v:.0}"),
    };
    let y_labels = match panel.scale {
        // Enough for plotters to mark every 1..9 × 10^n.
        Scale::Log { .. } => 10 * decades.ceil() as usize + 10,
        Scale::Linear { .. } => 6,
    };
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(panel.y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_labels(13)
        .y_labels(y_labels)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .bold_line_style(BLACK.mix(0.07))
        .light_line_style(TRANSPARENT);
    if panel.x_desc {
        mesh.x_desc("time since start of load (s)");
    }
    mesh.draw()?;

    for (i, f) in faults.iter().enumerate() {
        let color = FAULT_COLORS[i % FAULT_COLORS.len()];
        let start = f.start_s.clamp(0.0, x_max);
        let end = f.end_s.clamp(start, x_max);
        if end > start {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(start, y_lo), (end, y_hi)],
                color.mix(0.13).filled(),
            )))?;
        }
        for x in [start, end] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, y_lo), (x, y_hi)],
                color.mix(0.7).stroke_width(if x == start { 2 } else { 1 }),
            )))?;
        }
    }

    for line in &panel.lines {
        let color = line.color;
        for run in &line.segments {
            if run.len() == 1 {
                chart.draw_series(run.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
            } else if line.filled {
                chart.draw_series(
                    AreaSeries::new(run.iter().copied(), y_lo, color.mix(0.18))
                        .border_style(color.stroke_width(2)),
                )?;
            } else {
                chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
            }
        }
    }

    let (plot_right, plot_top) = chart.backend_coord(&(x_max, y_hi));
    if panel.lines.iter().all(|l| l.segments.is_empty()) {
        let style = TextStyle::from((FONT, 13).into_font())
            .color(&GREY_TEXT)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let (x, bottom) = chart.backend_coord(&(x_max / 2.0, y_lo));
        root.draw(&Text::new(
            "no per-second data",
            (x, (plot_top + bottom) / 2),
            style,
        ))?;
    } else if panel.lines.len() > 1 {
        draw_legend(root, &panel.lines, plot_right, plot_top)?;
    }
    Ok(plot_top)
}

/// A one-line legend right-aligned just above the plot, clear of the data.
fn draw_legend(
    root: &Svg<'_>,
    lines: &[Line],
    plot_right: i32,
    plot_top: i32,
) -> Result<(), Box<dyn Error>> {
    let y = plot_top - 10;
    let mut right = plot_right;
    for line in lines.iter().rev() {
        let text_w = (line.label.chars().count() as f64 * LABEL_CHAR_W).round() as i32;
        let style = TextStyle::from((FONT, LABEL_FONT_PX).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        root.draw(&Text::new(line.label, (right, y), style))?;
        let swatch_end = right - text_w - 6;
        root.draw(&PathElement::new(
            vec![(swatch_end - 20, y), (swatch_end, y)],
            line.color.stroke_width(3),
        ))?;
        right = swatch_end - 20 - 18;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invariant(name: &str, pass: bool) -> Invariant {
        Invariant {
            name: name.to_string(),
            pass,
            detail: format!("{name} detail"),
        }
    }

    fn sample() -> Report {
        let seconds = (0..30)
            .map(|t| {
                let down = (10..13).contains(&t);
                Second {
                    t,
                    requests: if down { 120 } else { 900 + u64::from(t) * 5 },
                    errors: if down { 80 } else { u64::from(t % 7 == 0) },
                    p50_us: if down { 45_000 } else { 3_200 },
                    p99_us: if down { 2_400_000 } else { 18_500 },
                }
            })
            .collect();
        Report {
            scenario: "flash-sale".to_string(),
            seed: 42,
            started_at: "2026-12-05T01:00:00Z".to_string(),
            duration_s: 30.0,
            params: BTreeMap::from([
                ("users".to_string(), "1000".to_string()),
                (
                    "chaos".to_string(),
                    "kill:orders@10s, latency:payments->stripe-sim=300ms±50@15s+8s".to_string(),
                ),
            ]),
            seconds,
            faults: vec![
                FaultWindow {
                    label: "kill:orders".to_string(),
                    start_s: 10.0,
                    end_s: 10.0,
                    cut_short: false,
                },
                FaultWindow {
                    label: "latency:payments->stripe-sim=300ms±50".to_string(),
                    start_s: 15.0,
                    end_s: 23.0,
                    cut_short: false,
                },
            ],
            headline: Some(Headline {
                name: "reservation attempts".to_string(),
                count: 27_000,
                rate_per_s: 900.0,
                p50_us: 1_234,
                p90_us: 4_567,
                p99_us: 12_345,
                max_us: 250_000,
            }),
            requests: vec![RequestStat {
                name: "reserve".to_string(),
                count: 27_000,
                errors: 240,
                p50_ms: 3,
                p99_ms: 19,
                statuses: BTreeMap::from([(200, 26_760), (503, 240)]),
            }],
            phases: vec![],
            invariants: vec![
                invariant("no SKU oversold", true),
                invariant("no lost order", true),
            ],
            notes: vec!["release build".to_string()],
            interrupted: false,
        }
    }

    #[test]
    fn passes_only_when_every_invariant_holds_and_the_run_completed() {
        let mut report = sample();
        assert!(report.passed());

        report.invariants[1].pass = false;
        assert!(!report.passed());

        let mut interrupted = sample();
        interrupted.interrupted = true;
        assert!(!interrupted.passed());

        let mut nothing_checked = sample();
        nothing_checked.invariants.clear();
        assert!(!nothing_checked.passed());
    }

    #[test]
    fn terminal_lists_each_invariant_and_ends_with_the_verdict() {
        let mut report = sample();
        report.invariants[1].pass = false;
        let text = report.terminal();
        let has_line = |result: &str, name: &str| {
            text.lines()
                .any(|l| l.starts_with(result) && l.contains(name))
        };
        assert!(has_line("PASS", "no SKU oversold"), "{text}");
        assert!(has_line("FAIL", "no lost order"), "{text}");
        assert_eq!(
            text.lines().last(),
            Some("verdict: FAIL — 1 of 2 invariants failed: no lost order")
        );
        assert!(
            text.contains("1.23"),
            "headline in ms with two decimals: {text}"
        );
        assert!(text.contains("200×26,760 503×240"), "{text}");
        assert!(text.contains("kill:orders"), "{text}");

        let ok = sample().terminal();
        assert_eq!(
            ok.lines().last(),
            Some("verdict: PASS — 2 of 2 invariants hold")
        );
    }

    #[test]
    fn verdict_says_why_an_interrupted_or_unchecked_run_fails() {
        let mut report = sample();
        report.interrupted = true;
        assert!(
            report
                .terminal()
                .contains("interrupted: this is a partial report")
        );
        assert_eq!(
            report.verdict(),
            "FAIL — interrupted, partial report; 2 of 2 checked invariants hold"
        );
        report.invariants.clear();
        assert_eq!(
            report.verdict(),
            "FAIL — interrupted, partial report; no invariant was checked"
        );
    }

    #[test]
    fn markdown_puts_the_verdict_first_and_embeds_the_chart() {
        let mut report = sample();
        report.invariants[0].pass = false;
        let md = report.markdown("chart.svg");
        assert!(
            md.starts_with("### flash-sale: FAIL — 1 of 2 invariants failed: no SKU oversold"),
            "{md}"
        );
        assert!(md.contains("| **FAIL** | no SKU oversold |"), "{md}");
        assert!(md.contains("| PASS | no lost order |"), "{md}");
        assert!(md.contains("](chart.svg)"), "{md}");
        assert!(
            md.contains("| 27,000 | 900.0 | 1.23 | 4.57 | 12.35 | 250.00 |"),
            "{md}"
        );
        assert!(
            sample()
                .markdown("c.svg")
                .starts_with("### flash-sale: PASS")
        );
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        let mut report = sample();
        report.invariants[0].detail = "a | b\nc".to_string();
        let md = report.markdown("chart.svg");
        assert!(md.contains("| a \\| b c |"), "{md}");
    }

    #[test]
    fn phases_are_listed_with_their_total() {
        let mut report = sample();
        report.phases = vec![
            Phase {
                name: "down --purge".to_string(),
                took_ms: 1_200,
            },
            Phase {
                name: "up".to_string(),
                took_ms: 8_300,
            },
        ];
        let text = report.terminal();
        assert!(text.contains("down --purge  1,200"), "{text}");
        assert!(text.contains("total         9,500"), "{text}");
    }

    #[test]
    fn svg_names_its_axes_and_every_fault() {
        let svg = sample().svg().expect("chart");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for needle in [
            "throughput (requests/s)",
            "latency (ms, log scale)",
            "errors/s",
            "time since start of load (s)",
            "kill:orders",
            // The SVG backend escapes `>`.
            "latency:payments-&gt;stripe-sim=300ms±50",
            "p50",
            "p99",
        ] {
            assert!(svg.contains(needle), "chart lacks {needle:?}");
        }
    }

    #[test]
    fn svg_renders_without_any_data() {
        let report = Report {
            scenario: "browse".to_string(),
            interrupted: true,
            ..Report::default()
        };
        let svg = report.svg().expect("chart");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("no per-second data"));

        let mut faults_only = report;
        faults_only.faults = vec![FaultWindow {
            label: "outage:redis".to_string(),
            start_s: 5.0,
            end_s: f64::INFINITY,
            cut_short: false,
        }];
        assert!(faults_only.svg().expect("chart").contains("outage:redis"));
    }

    #[test]
    fn segments_break_where_seconds_have_no_value_or_are_missing() {
        let at = |t: u32, requests: u64| Second {
            t,
            requests,
            ..Second::default()
        };
        let seconds = [at(0, 5), at(1, 0), at(2, 7), at(3, 8), at(5, 9)];
        let runs = segments(&seconds, |s| (s.requests > 0).then_some(s.requests as f64));
        assert_eq!(
            runs,
            vec![
                vec![(0.5, 5.0)],
                vec![(2.5, 7.0), (3.5, 8.0)],
                vec![(5.5, 9.0)],
            ]
        );
    }

    #[test]
    fn overlapping_labels_go_to_separate_lanes() {
        let lanes = assign_lanes(
            &[(0.0, 100.0), (50.0, 120.0), (130.0, 200.0), (60.0, 80.0)],
            2,
        );
        assert_eq!(lanes, vec![0, 1, 0, 1]);
        // A third overlapping label would need a third lane: past the limit it
        // reuses the lane that frees up first.
        let capped = assign_lanes(&[(0.0, 100.0), (10.0, 300.0), (20.0, 50.0)], 2);
        assert_eq!(capped, vec![0, 1, 0]);
    }

    #[test]
    fn a_cut_short_window_says_so_in_its_row_and_its_json() {
        let w = FaultWindow {
            label: "outage:redis".into(),
            start_s: 5.0,
            end_s: 7.5,
            cut_short: true,
        };
        assert_eq!(
            fault_row(&w)[0],
            "outage:redis (cut short: the load ended first)"
        );
        assert_eq!(fault_row(&w)[3], "2.5");
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["cut_short"], true);
        let on_time = FaultWindow {
            cut_short: false,
            ..w
        };
        assert_eq!(fault_row(&on_time)[0], "outage:redis");
        assert!(
            serde_json::to_value(&on_time)
                .unwrap()
                .get("cut_short")
                .is_none()
        );
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn write_dir_writes_json_markdown_and_chart() {
        let dir = std::env::temp_dir().join(format!(
            "shopstream-report-test-{}-{}",
            std::process::id(),
            line!()
        ));
        let report = sample();
        let paths = report.write_dir(&dir).expect("write");
        let names: Vec<String> = paths
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["report.json", "summary.md", "chart.svg"]);
        let json = std::fs::read_to_string(dir.join("report.json")).expect("json");
        let back: Report = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, report);
        let md = std::fs::read_to_string(dir.join("summary.md")).expect("md");
        assert!(md.contains("](chart.svg)"));
        let svg = std::fs::read_to_string(dir.join("chart.svg")).expect("svg");
        assert!(svg.starts_with("<svg"));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
