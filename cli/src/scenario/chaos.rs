//! `--chaos` schedules: parse one, print it back, or draw a replayable random
//! one. Pure (no I/O, no clock); the driver runs what this plans.
//!
//! A schedule is a comma-separated list of items, each `KIND:TARGET@T` or
//! `KIND:TARGET@T+D` (start `T` after the load starts, for `D`):
//! `kill:orders@10s, pause:payments@20s+5s,
//! latency:payments->stripe-sim=300ms±50ms@15s+20s,
//! loss:orders->inventory=5%@30s+10s, outage:redis@40s+10s`, and
//! `packet-loss:orders->inventory=5%@30s+10s` (real packets, dropped by the
//! kernel on a private network; see `shopstream_runtime::lossy_path`).

use std::{fmt, time::Duration};

use shopstream_runtime::{Kind, links::Link};

/// What `--chaos` accepts, for error messages.
pub const SYNTAX: &str = "kill:COMPONENT@T, pause:COMPONENT@T+D, \
     latency:A->B=MSms[±JITTERms]@T+D, loss:A->B=P%@T+D, bandwidth:A->B=NKiB@T+D, \
     reset:A->B@T+D, blackhole:A->B@T+D, packet-loss:A->B=P%@T+D, outage:BACKEND@T+D, \
     fault:NAME[=VALUE]@T+D \
     (times like 10s, 1500ms, 2m; `random` draws a schedule from --seed)";

/// The kinds of item, as written.
pub const KINDS: [&str; 10] = [
    "kill",
    "pause",
    "latency",
    "loss",
    "bandwidth",
    "reset",
    "blackhole",
    "outage",
    "fault",
    "packet-loss",
];

/// Most items one schedule may hold.
pub const MAX_ITEMS: usize = 64;
/// Largest latency or jitter, in milliseconds.
pub const MAX_LATENCY_MS: u64 = 60_000;
/// Largest bandwidth limit, in KiB/s (about 1 GiB/s).
pub const MAX_BANDWIDTH_KIB_PER_S: u64 = 1 << 20;
/// Longest time a schedule can name.
pub const MAX_TIME: Duration = Duration::from_secs(24 * 3600);
/// A random schedule stays inside this share of the run (percent), so the
/// system has the rest to settle before the verdict.
pub const RANDOM_WINDOW_PERCENT: u32 = 70;
/// Shortest window a random schedule is drawn in; below it, it is empty.
pub const MIN_RANDOM_WINDOW: Duration = Duration::from_secs(1);

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL, then started again at once.
    Kill {
        target: Kind,
    },
    /// SIGSTOP for the item's duration, then SIGCONT.
    Pause {
        target: Kind,
    },
    Latency {
        link: Link,
        ms: u64,
        jitter_ms: u64,
    },
    /// The fault proxy's loss model, in percent of chunks.
    Loss {
        link: Link,
        percent: u8,
    },
    Bandwidth {
        link: Link,
        kib_per_s: u64,
    },
    /// Every connection on the link is reset.
    Reset {
        link: Link,
    },
    /// Nothing passes the link.
    Blackhole {
        link: Link,
    },
    /// Real packets of the link dropped by the kernel, in percent, on a
    /// private network namespace (needs root, `ip` and `nft`).
    PacketLoss {
        link: Link,
        percent: u8,
    },
    /// A backend stopped for the item's duration, then started again.
    Outage {
        target: Kind,
    },
    /// A named fault of the catalog, with its value if one is given.
    Fault {
        name: String,
        value: Option<String>,
    },
}

impl Action {
    /// How the item is written: `kill`, `latency`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Kill { .. } => "kill",
            Action::Pause { .. } => "pause",
            Action::Latency { .. } => "latency",
            Action::Loss { .. } => "loss",
            Action::Bandwidth { .. } => "bandwidth",
            Action::Reset { .. } => "reset",
            Action::Blackhole { .. } => "blackhole",
            Action::PacketLoss { .. } => "packet-loss",
            Action::Outage { .. } => "outage",
            Action::Fault { .. } => "fault",
        }
    }

    /// What the action hits: a component, a link, or a named fault. Two
    /// items with the same target overlap if their windows do.
    pub fn target(&self) -> String {
        match self {
            Action::Kill { target } | Action::Pause { target } | Action::Outage { target } => {
                target.name().to_string()
            }
            Action::Latency { link, .. }
            | Action::Loss { link, .. }
            | Action::Bandwidth { link, .. }
            | Action::Reset { link }
            | Action::Blackhole { link }
            | Action::PacketLoss { link, .. } => link.to_string(),
            Action::Fault { name, .. } => format!("fault:{name}"),
        }
    }

    /// Whether the action lasts a window (everything but a kill).
    pub fn needs_duration(&self) -> bool {
        !matches!(self, Action::Kill { .. })
    }
}

/// One scheduled fault: `action` from `at` (after the load starts) for `dur`
/// (`None` only for a kill).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub at: Duration,
    pub dur: Option<Duration>,
    pub action: Action,
}

impl Item {
    /// When the fault is over (its start, for a kill).
    pub fn end(&self) -> Duration {
        self.at + self.dur.unwrap_or_default()
    }
}

/// A chaos schedule, in the order it was written (or drawn).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    pub items: Vec<Item>,
}

/// Why a schedule was refused: the item and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosError {
    /// The item as written (empty when the schedule as a whole is wrong).
    pub item: String,
    pub reason: String,
}

impl fmt::Display for ChaosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.item.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "`{}`: {}", self.item, self.reason)
        }
    }
}

impl std::error::Error for ChaosError {}

/// `10s`, `1500ms`, `2m`.
pub fn parse_time(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a time; times look like 10s, 1500ms or 2m");
    let digits = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = s[..digits].parse().map_err(|_| bad())?;
    let ms_per_unit = match &s[digits..] {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return Err(bad()),
    };
    let d = n
        .checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_TIME)
        .ok_or_else(|| format!("`{s}` is longer than {}", fmt_time(MAX_TIME)))?;
    Ok(d)
}

/// The shortest exact form [`parse_time`] reads back: `2m`, `90s`, `1500ms`.
pub fn fmt_time(d: Duration) -> String {
    let ms = d.as_millis();
    if ms > 0 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

fn component(name: &str) -> Result<Kind, String> {
    Kind::parse(name.trim()).ok_or_else(|| {
        format!(
            "unknown component `{}`; valid: {}",
            name.trim(),
            Kind::ALL.map(Kind::name).join(", ")
        )
    })
}

fn backend(name: &str) -> Result<Kind, String> {
    let kind = Kind::parse(name.trim()).filter(|k| Kind::INFRA.contains(k));
    kind.ok_or_else(|| {
        format!(
            "`{}` is not a backend; valid: {}",
            name.trim(),
            Kind::INFRA.map(Kind::name).join(", ")
        )
    })
}

/// A link the stack really has (its `from` reads an address for `to`).
fn link(s: &str) -> Result<Link, String> {
    let link = Link::parse(s.trim()).map_err(|e| e.to_string())?;
    link.env_var().map_err(|e| e.to_string())?;
    Ok(link)
}

/// `A->B=VALUE` → the link and the value.
fn link_and_value<'a>(rest: &'a str, kind: &str, example: &str) -> Result<(Link, &'a str), String> {
    let (l, value) = rest
        .split_once('=')
        .ok_or_else(|| format!("{kind} needs a value: {kind}:A->B={example}"))?;
    Ok((link(l)?, value.trim()))
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{}` is not {what}", s.trim()))
}

/// `300ms`, `300ms±50ms`, `300ms±50` (jitter in ms); `+-` for `±`.
fn latency(value: &str) -> Result<(u64, u64), String> {
    let (base, jitter) = match value.split_once('±').or_else(|| value.split_once("+-")) {
        Some((b, j)) => (b, Some(j.trim())),
        None => (value, None),
    };
    let ms = parse_time(base)?.as_millis() as u64;
    let jitter_ms = match jitter {
        None => 0,
        Some(j) if !j.is_empty() && j.bytes().all(|b| b.is_ascii_digit()) => {
            number(j, "a jitter in ms")?
        }
        Some(j) => parse_time(j)?.as_millis() as u64,
    };
    if ms > MAX_LATENCY_MS || jitter_ms > MAX_LATENCY_MS {
        return Err(format!(
            "latency and jitter are at most {}",
            fmt_time(Duration::from_millis(MAX_LATENCY_MS))
        ));
    }
    Ok((ms, jitter_ms))
}

fn percent(value: &str) -> Result<u8, String> {
    let p = value
        .strip_suffix('%')
        .ok_or_else(|| format!("`{value}` is not a percentage like 5%"))?;
    let p: u8 = number(p, "a whole percentage")?;
    if p == 0 || p > 100 {
        return Err(format!("`{value}`: loss is 1% to 100%"));
    }
    Ok(p)
}

fn kib_per_s(value: &str) -> Result<u64, String> {
    let n = value
        .strip_suffix("KiB/s")
        .or_else(|| value.strip_suffix("KiB"))
        .ok_or_else(|| format!("`{value}` is not a bandwidth like 64KiB (KiB per second)"))?;
    let n: u64 = number(n, "a whole number of KiB")?;
    if n == 0 || n > MAX_BANDWIDTH_KIB_PER_S {
        return Err(format!(
            "`{value}`: bandwidth is 1KiB to {MAX_BANDWIDTH_KIB_PER_S}KiB a second"
        ));
    }
    Ok(n)
}

/// A fault's value: no separators of the schedule, no spaces.
fn valid_value(v: &str) -> bool {
    !v.is_empty() && !v.contains([',', '@']) && !v.contains(char::is_whitespace)
}

fn parse_action(head: &str, is_fault: &dyn Fn(&str) -> bool) -> Result<Action, String> {
    let (kind, rest) = head.split_once(':').ok_or_else(|| {
        format!(
            "expected KIND:TARGET@T[+D], KIND one of {}",
            KINDS.join(", ")
        )
    })?;
    let rest = rest.trim();
    let action = match kind.trim() {
        "kill" => Action::Kill {
            target: component(rest)?,
        },
        "pause" => Action::Pause {
            target: component(rest)?,
        },
        "outage" => Action::Outage {
            target: backend(rest)?,
        },
        "latency" => {
            let (link, value) = link_and_value(rest, "latency", "300ms±50ms")?;
            let (ms, jitter_ms) = latency(value)?;
            Action::Latency {
                link,
                ms,
                jitter_ms,
            }
        }
        "loss" => {
            let (link, value) = link_and_value(rest, "loss", "5%")?;
            Action::Loss {
                link,
                percent: percent(value)?,
            }
        }
        "bandwidth" => {
            let (link, value) = link_and_value(rest, "bandwidth", "64KiB")?;
            Action::Bandwidth {
                link,
                kib_per_s: kib_per_s(value)?,
            }
        }
        "packet-loss" => {
            let (link, value) = link_and_value(rest, "packet-loss", "5%")?;
            Action::PacketLoss {
                link,
                percent: percent(value)?,
            }
        }
        "reset" => Action::Reset { link: link(rest)? },
        "blackhole" => Action::Blackhole { link: link(rest)? },
        "fault" => {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (rest, None),
            };
            if !is_fault(name) {
                return Err(format!(
                    "unknown fault `{name}`; `shopstream fault list` names them all"
                ));
            }
            if let Some(v) = value
                && !valid_value(v)
            {
                return Err(format!(
                    "the value of {name} must be non-empty, without spaces, `,` or `@`"
                ));
            }
            Action::Fault {
                name: name.to_string(),
                value: value.map(str::to_string),
            }
        }
        other => {
            return Err(format!(
                "unknown kind `{other}`; valid: {}",
                KINDS.join(", ")
            ));
        }
    };
    Ok(action)
}

fn parse_item(
    text: &str,
    duration: Duration,
    is_fault: &dyn Fn(&str) -> bool,
) -> Result<Item, String> {
    let (head, when) = text
        .rsplit_once('@')
        .ok_or_else(|| "missing `@T`: when the fault starts, e.g. @10s or @10s+5s".to_string())?;
    let action = parse_action(head.trim(), is_fault)?;
    let (at, dur) = match when.split_once('+') {
        Some((at, dur)) => (parse_time(at)?, Some(parse_time(dur)?)),
        None => (parse_time(when)?, None),
    };
    match (action.needs_duration(), dur) {
        (true, None) => {
            return Err(format!(
                "{} needs a duration: @T+D, e.g. @{}+10s",
                action.kind(),
                fmt_time(at)
            ));
        }
        (false, Some(_)) => {
            return Err(
                "kill takes no duration (the component is started again at once); \
                 for a window use pause:COMPONENT@T+D or outage:BACKEND@T+D"
                    .into(),
            );
        }
        (_, Some(d)) if d.is_zero() => return Err("the duration must be above zero".into()),
        _ => {}
    }
    let item = Item { at, dur, action };
    if item.at >= duration {
        return Err(format!(
            "starts at {}, not before the end of the run ({})",
            fmt_time(item.at),
            fmt_time(duration)
        ));
    }
    if item.end() > duration {
        return Err(format!(
            "ends at {}, after the end of the run ({})",
            fmt_time(item.end()),
            fmt_time(duration)
        ));
    }
    Ok(item)
}

/// Parse a `--chaos` schedule for a run of `duration`. `is_fault` says
/// whether a name is in the fault catalog. Every item must start before the
/// run ends and end by then; errors name the item and what is valid.
pub fn parse(
    spec: &str,
    duration: Duration,
    is_fault: &dyn Fn(&str) -> bool,
) -> Result<Schedule, ChaosError> {
    if spec.trim().is_empty() {
        return Err(ChaosError {
            item: String::new(),
            reason: format!("the schedule is empty; write items like {SYNTAX}"),
        });
    }
    let mut items = Vec::new();
    for text in spec.split(',').map(str::trim) {
        let err = |reason: String| ChaosError {
            item: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(err(format!("an empty item; items are {SYNTAX}")));
        }
        if items.len() == MAX_ITEMS {
            return Err(err(format!("a schedule holds at most {MAX_ITEMS} items")));
        }
        items.push(parse_item(text, duration, is_fault).map_err(err)?);
    }
    Ok(Schedule { items })
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Fault { name, .. } => write!(f, "fault:{name}")?,
            _ => write!(f, "{}:{}", self.kind(), self.target())?,
        }
        match self {
            Action::Latency { ms, jitter_ms, .. } => {
                write!(f, "={ms}ms")?;
                if *jitter_ms > 0 {
                    write!(f, "±{jitter_ms}ms")?;
                }
                Ok(())
            }
            Action::Loss { percent, .. } | Action::PacketLoss { percent, .. } => {
                write!(f, "={percent}%")
            }
            Action::Bandwidth { kib_per_s, .. } => write!(f, "={kib_per_s}KiB"),
            Action::Fault { value: Some(v), .. } => write!(f, "={v}"),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.action, fmt_time(self.at))?;
        if let Some(d) = self.dur {
            write!(f, "+{}", fmt_time(d))?;
        }
        Ok(())
    }
}

/// Items joined by `, `: what [`parse`] reads back.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// SplitMix64: a tiny generator whose sequence for a seed never changes
/// with a dependency update, so a seed in a report replays the same
/// schedule in a later build too.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo` when the range is empty).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.between(0, from.len() as u64 - 1) as usize]
    }
}

/// Tries at drawing a non-overlapping item before [`random`] settles for
/// fewer.
const RANDOM_ATTEMPTS: usize = 256;

/// A replayable random schedule for a run of `duration`: 3 to 6 items
/// (processes, wire, backends and, if `catalog` is not empty, its named
/// faults), no two on the same target overlapping, all over within the
/// first [`RANDOM_WINDOW_PERCENT`] % of the run so the system can settle. The
/// same seed and arguments give the same schedule. Runs whose window is
/// shorter than [`MIN_RANDOM_WINDOW`] get an empty schedule.
pub fn random(seed: u64, duration: Duration, catalog: &[&str]) -> Schedule {
    let window_ms = (duration.as_millis() * u128::from(RANDOM_WINDOW_PERCENT) / 100) as u64;
    if window_ms < MIN_RANDOM_WINDOW.as_millis() as u64 {
        return Schedule::default();
    }
    // Times are whole tenths of a second, which print short.
    let step_ms = 100;
    let round = |ms: u64| ms / step_ms * step_ms;
    let mut rng = SplitMix64(seed);
    let wanted = rng.between(3, 6) as usize;
    let links = Link::all();
    // Packet loss needs root and a private network: never drawn at random.
    let mut kinds: Vec<&str> = KINDS.into_iter().filter(|k| *k != "packet-loss").collect();
    if catalog.is_empty() {
        kinds.retain(|k| *k != "fault");
    }
    // A kill has no duration, but its target needs a while to restart: it
    // occupies the target for a tenth of the window.
    let kill_span = Duration::from_millis(round(window_ms / 10).max(step_ms));
    let occupied = |item: &Item| (item.at, item.at + item.dur.unwrap_or(kill_span));
    let mut items: Vec<Item> = Vec::new();
    for _ in 0..RANDOM_ATTEMPTS {
        if items.len() == wanted {
            break;
        }
        let action = match *rng.pick(&kinds) {
            "kill" => Action::Kill {
                target: *rng.pick(&Kind::SERVICES),
            },
            "pause" => Action::Pause {
                target: *rng.pick(&Kind::SERVICES),
            },
            "outage" => Action::Outage {
                target: *rng.pick(&Kind::INFRA),
            },
            "latency" => {
                let ms = rng.between(5, 50) * 10;
                Action::Latency {
                    link: *rng.pick(&links),
                    ms,
                    jitter_ms: rng.between(0, ms / 40) * 10,
                }
            }
            "loss" => Action::Loss {
                link: *rng.pick(&links),
                percent: rng.between(1, 20) as u8,
            },
            "bandwidth" => Action::Bandwidth {
                link: *rng.pick(&links),
                kib_per_s: *rng.pick(&[16, 64, 256, 1024]),
            },
            "reset" => Action::Reset {
                link: *rng.pick(&links),
            },
            "blackhole" => Action::Blackhole {
                link: *rng.pick(&links),
            },
            _ => Action::Fault {
                name: rng.pick(catalog).to_string(),
                value: None,
            },
        };
        // Each window is 10–25 % of the schedule's window.
        let span_ms = round(rng.between(window_ms / 10, window_ms / 4)).max(step_ms);
        let at_ms = round(rng.between(0, window_ms - span_ms));
        let item = Item {
            at: Duration::from_millis(at_ms),
            dur: action
                .needs_duration()
                .then(|| Duration::from_millis(span_ms)),
            action,
        };
        let (start, end) = occupied(&item);
        let target = item.action.target();
        let overlaps = items.iter().any(|other| {
            let (other_start, other_end) = occupied(other);
            other.action.target() == target && start < other_end && other_start < end
        });
        if !overlaps {
            items.push(item);
        }
    }
    items.sort_by_key(|i| i.at);
    Schedule { items }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CATALOG: &[&str] = &["payment-decline-rate", "catalog-slow", "cdc-paused"];

    fn is_fault(name: &str) -> bool {
        CATALOG.contains(&name)
    }

    fn parse_ok(spec: &str, duration_s: u64) -> Schedule {
        parse(spec, Duration::from_secs(duration_s), &is_fault)
            .unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    #[track_caller]
    fn refused(spec: &str, duration_s: u64, says: &str) {
        let err = parse(spec, Duration::from_secs(duration_s), &is_fault)
            .expect_err(spec)
            .to_string();
        assert!(err.contains(says), "{spec}: {err:?} does not say {says:?}");
    }

    fn link(s: &str) -> Link {
        Link::parse(s).unwrap()
    }

    #[test]
    fn parses_the_issue_example() {
        let s = parse_ok(
            "kill:orders@10s, pause:payments@20s+5s, \
             latency:payments->stripe-sim=300ms±50@15s+20s, \
             loss:orders->inventory=5%@30s+10s, outage:redis@40s+10s",
            60,
        );
        let secs = Duration::from_secs;
        assert_eq!(
            s.items,
            vec![
                Item {
                    at: secs(10),
                    dur: None,
                    action: Action::Kill {
                        target: Kind::Orders
                    },
                },
                Item {
                    at: secs(20),
                    dur: Some(secs(5)),
                    action: Action::Pause {
                        target: Kind::Payments
                    },
                },
                Item {
                    at: secs(15),
                    dur: Some(secs(20)),
                    action: Action::Latency {
                        link: link("payments->stripe-sim"),
                        ms: 300,
                        jitter_ms: 50
                    },
                },
                Item {
                    at: secs(30),
                    dur: Some(secs(10)),
                    action: Action::Loss {
                        link: link("orders->inventory"),
                        percent: 5
                    },
                },
                Item {
                    at: secs(40),
                    dur: Some(secs(10)),
                    action: Action::Outage {
                        target: Kind::Redis
                    },
                },
            ]
        );
        assert_eq!(
            s.to_string(),
            "kill:orders@10s, pause:payments@20s+5s, \
             latency:payments->stripe-sim=300ms±50ms@15s+20s, \
             loss:orders->inventory=5%@30s+10s, outage:redis@40s+10s"
        );
    }

    #[test]
    fn parses_every_kind_and_its_values() {
        let s = parse_ok(
            "bandwidth:gateway->catalog=64KiB/s@1s+1s, reset:orders->postgres@2s+500ms, \
             blackhole:search->kafka@1500ms+1m, fault:catalog-slow=250@0s+2m, \
             fault:cdc-paused@3s+1s, latency:orders->payments=1s+-20ms@0s+1s",
            180,
        );
        let actions: Vec<&Action> = s.items.iter().map(|i| &i.action).collect();
        assert_eq!(
            actions,
            [
                &Action::Bandwidth {
                    link: link("gateway->catalog"),
                    kib_per_s: 64
                },
                &Action::Reset {
                    link: link("orders->postgres")
                },
                &Action::Blackhole {
                    link: link("search->kafka")
                },
                &Action::Fault {
                    name: "catalog-slow".into(),
                    value: Some("250".into())
                },
                &Action::Fault {
                    name: "cdc-paused".into(),
                    value: None
                },
                &Action::Latency {
                    link: link("orders->payments"),
                    ms: 1000,
                    jitter_ms: 20
                },
            ]
        );
        assert_eq!(s.items[1].dur, Some(Duration::from_millis(500)));
        assert_eq!(s.items[2].at, Duration::from_millis(1500));
        assert_eq!(s.items[2].dur, Some(Duration::from_secs(60)));
    }

    #[test]
    fn times_print_in_their_shortest_exact_form() {
        for (text, ms) in [
            ("10s", 10_000),
            ("1500ms", 1_500),
            ("2m", 120_000),
            ("0s", 0),
        ] {
            assert_eq!(parse_time(text).unwrap(), Duration::from_millis(ms));
            assert_eq!(fmt_time(Duration::from_millis(ms)), text);
        }
        assert_eq!(fmt_time(Duration::from_secs(90)), "90s");
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10 s",
            "10h",
            "99999999999999999999s",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
        assert!(parse_time("25h").is_err() && parse_time("1441m").is_err());
    }

    #[test]
    fn bad_input_is_refused_naming_what_is_valid() {
        refused("", 60, "kill:COMPONENT@T");
        refused("kill:orders@10s,,pause:orders@1s+1s", 60, "an empty item");
        refused("explode:orders@1s", 60, "valid: kill, pause, latency");
        refused("kill:ordrs@1s", 60, "valid: postgres, redis");
        refused("kill:orders", 60, "missing `@T`");
        refused("kill:orders@1s+5s", 60, "kill takes no duration");
        refused("pause:orders@1s", 60, "pause needs a duration");
        refused("pause:orders@1s+0s", 60, "above zero");
        refused(
            "outage:orders@1s+1s",
            60,
            "valid: postgres, redis, kafka, temporal, s3",
        );
        refused(
            "latency:payments->redis=10ms@1s+1s",
            60,
            "payments talks to: stripe-sim",
        );
        refused(
            "latency:payments->stripe@1s+1s",
            60,
            "latency needs a value",
        );
        refused(
            "latency:payments->strip=1ms@1s+1s",
            60,
            "unknown component `strip`",
        );
        refused(
            "latency:payments->stripe-sim=fast@1s+1s",
            60,
            "times look like",
        );
        refused("latency:payments->stripe-sim=61s@1s+1s", 60, "at most 1m");
        refused("loss:orders->inventory=5@1s+1s", 60, "percentage like 5%");
        refused("loss:orders->inventory=101%@1s+1s", 60, "1% to 100%");
        refused("bandwidth:orders->inventory=64@1s+1s", 60, "like 64KiB");
        refused("bandwidth:orders->inventory=0KiB@1s+1s", 60, "1KiB to");
        refused("reset:orders@1s+1s", 60, "write FROM->TO");
        refused("fault:no-such-fault@1s+1s", 60, "shopstream fault list");
        refused("fault:catalog-slow=@1s+1s", 60, "non-empty");
        refused("orders@1s", 60, "KIND:TARGET@T[+D]");
    }

    #[test]
    fn a_schedule_beyond_the_run_is_refused() {
        refused("kill:orders@60s", 60, "not before the end of the run (1m)");
        refused("kill:orders@2m", 60, "starts at 2m");
        refused(
            "pause:orders@50s+11s",
            60,
            "ends at 61s, after the end of the run (1m)",
        );
        // Ending exactly at the end is fine.
        assert_eq!(parse_ok("pause:orders@50s+10s", 60).items.len(), 1);
        let many = vec!["kill:orders@1s"; MAX_ITEMS + 1].join(",");
        refused(&many, 60, "at most 64 items");
    }

    #[test]
    fn random_schedules_are_bounded_and_replay() {
        let d = Duration::from_secs(30);
        let a = random(7, d, CATALOG);
        assert_eq!(a, random(7, d, CATALOG));
        assert_ne!(a, random(8, d, CATALOG));
        assert!(random(7, Duration::from_secs(1), CATALOG).items.is_empty());
        // Without a catalog no named fault is drawn.
        for seed in 0..50 {
            let s = random(seed, d, &[]);
            assert!(
                s.items
                    .iter()
                    .all(|i| !matches!(i.action, Action::Fault { .. }))
            );
        }
    }

    /// Every valid action, for the property tests.
    fn action() -> impl Strategy<Value = Action> {
        let kind = (0..Kind::ALL.len()).prop_map(|i| Kind::ALL[i]);
        let backend = (0..Kind::INFRA.len()).prop_map(|i| Kind::INFRA[i]);
        let links = Link::all();
        let link = (0..links.len()).prop_map(move |i| links[i]);
        let name = (0..CATALOG.len()).prop_map(|i| CATALOG[i].to_string());
        prop_oneof![
            kind.clone().prop_map(|target| Action::Kill { target }),
            kind.prop_map(|target| Action::Pause { target }),
            backend.prop_map(|target| Action::Outage { target }),
            (link.clone(), 0..=MAX_LATENCY_MS, 0..=MAX_LATENCY_MS).prop_map(
                |(link, ms, jitter_ms)| Action::Latency {
                    link,
                    ms,
                    jitter_ms
                }
            ),
            (link.clone(), 1..=100u8).prop_map(|(link, percent)| Action::Loss { link, percent }),
            (link.clone(), 1..=100u8)
                .prop_map(|(link, percent)| Action::PacketLoss { link, percent }),
            (link.clone(), 1..=MAX_BANDWIDTH_KIB_PER_S)
                .prop_map(|(link, kib_per_s)| Action::Bandwidth { link, kib_per_s }),
            link.clone().prop_map(|link| Action::Reset { link }),
            link.prop_map(|link| Action::Blackhole { link }),
            (name, proptest::option::of("[a-z0-9._:/-]{1,12}"))
                .prop_map(|(name, value)| Action::Fault { name, value }),
        ]
    }

    /// A valid item for a run of `duration_ms`.
    fn item(duration_ms: u64) -> impl Strategy<Value = Item> {
        (action(), 0..duration_ms, any::<u64>()).prop_map(move |(action, at_ms, d)| {
            let dur = action
                .needs_duration()
                .then(|| Duration::from_millis(1 + d % (duration_ms - at_ms)));
            Item {
                at: Duration::from_millis(at_ms),
                dur,
                action,
            }
        })
    }

    proptest! {
        #[test]
        fn display_reads_back(
            (duration_ms, items) in (1u64..=MAX_TIME.as_millis() as u64)
                .prop_flat_map(|d| (Just(d), proptest::collection::vec(item(d), 1..12)))
        ) {
            let schedule = Schedule { items };
            let duration = Duration::from_millis(duration_ms);
            let text = schedule.to_string();
            prop_assert_eq!(parse(&text, duration, &is_fault), Ok(schedule), "{}", text);
        }

        #[test]
        fn random_schedules_hold_their_promises(
            seed in any::<u64>(),
            duration_s in 10u64..7200,
        ) {
            let duration = Duration::from_secs(duration_s);
            let s = random(seed, duration, CATALOG);
            prop_assert!((3..=6).contains(&s.items.len()), "{} items: {}", s.items.len(), s);
            let window = duration * RANDOM_WINDOW_PERCENT / 100;
            for (i, a) in s.items.iter().enumerate() {
                prop_assert!(a.end() <= window, "{} ends after {:?}", a, window);
                for b in &s.items[i + 1..] {
                    if a.action.target() == b.action.target() {
                        prop_assert!(a.end() <= b.at || b.end() <= a.at, "{} overlaps {}", a, b);
                    }
                }
            }
            prop_assert_eq!(parse(&s.to_string(), duration, &is_fault), Ok(s.clone()));
            prop_assert_eq!(random(seed, duration, CATALOG), s);
        }
    }
}
