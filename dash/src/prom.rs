//! A small reader of the Prometheus text exposition (what every service serves
//! at `/metrics`), and the arithmetic the dashboard needs on it: sums and
//! maxima by label, and histogram quantiles from bucket counts.
//!
//! The reader is lenient: a line it cannot read is skipped, never fatal, since
//! one odd line must not blank the dashboard.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Label pairs in the order they appear on the line.
pub type Labels = Vec<(String, String)>;

/// One sample: a series (name and labels) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample carries it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a line is not a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromError {
    #[error("no metric name")]
    MissingName,
    #[error("malformed labels")]
    MalformedLabels,
    #[error("missing value")]
    MissingValue,
    #[error("value {0:?} is not a number")]
    BadValue(String),
    #[error("timestamp {0:?} is not an integer")]
    BadTimestamp(String),
}

/// All samples of a text exposition; comment lines (`# HELP`, `# TYPE`,
/// `# EOF`), blank lines and lines that cannot be read are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter_map(|line| parse_line(line).ok().flatten())
        .collect()
}

/// One line: `Ok(None)` for a blank or comment line, else the sample
/// `name{k="v",...} value [timestamp]`. The timestamp and an OpenMetrics
/// exemplar (`# {...} v`) after the value are read past and dropped.
pub fn parse_line(line: &str) -> Result<Option<Sample>, PromError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let name_len = line
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
        })
        .map_or(line.len(), |(i, _)| i);
    if name_len == 0 {
        return Err(PromError::MissingName);
    }
    let name = &line[..name_len];
    let after_name = &line[name_len..];
    if !after_name.starts_with([' ', '\t', '{']) {
        return Err(if after_name.is_empty() {
            PromError::MissingValue
        } else {
            PromError::MissingName
        });
    }
    let mut rest = after_name.trim_start();
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    // An exemplar or comment may follow the value: ` # {trace_id="..."} 1.0`.
    let rest = rest.split(" #").next().unwrap_or_default();
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or(PromError::MissingValue)?;
    let value = parse_value(value_text).ok_or_else(|| PromError::BadValue(value_text.into()))?;
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
        && ts.parse::<f64>().is_err()
    {
        return Err(PromError::BadTimestamp(ts.into()));
    }
    Ok(Some(Sample {
        name: name.to_string(),
        labels,
        value,
    }))
}

/// Labels after the opening `{`, up to and including the closing `}`; returns
/// them and what follows.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), PromError> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let key_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or(PromError::MalformedLabels)?;
        if key_len == 0 {
            return Err(PromError::MalformedLabels);
        }
        let key = s[..key_len].to_string();
        s = s[key_len..].trim_start();
        s = s.strip_prefix('=').ok_or(PromError::MalformedLabels)?;
        s = s.trim_start();
        s = s.strip_prefix('"').ok_or(PromError::MalformedLabels)?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(PromError::MalformedLabels),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    // Unknown escapes are kept as written, like Prometheus does.
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => return Err(PromError::MalformedLabels),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(PromError::MalformedLabels);
        }
    }
}

/// A sample value: a float, `NaN`, `+Inf`, `-Inf` (case-insensitive).
pub fn parse_value(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse::<f64>().ok(),
    }
}

/// Sum of the finite values of series `name`, grouped by the value of `label`
/// (samples without the label are left out).
pub fn sum_by(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == name && s.value.is_finite())
    {
        if let Some(v) = s.label(label) {
            *out.entry(v.to_string()).or_insert(0.0) += s.value;
        }
    }
    out
}

/// Sum of the finite values of series `name`; `None` when there is none.
pub fn sum(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.name == name && s.value.is_finite())
        .map(|s| s.value)
        .reduce(|a, b| a + b)
}

/// Largest finite value of series `name`; `None` when there is none.
pub fn max(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.name == name && s.value.is_finite())
        .map(|s| s.value)
        .reduce(f64::max)
}

/// A bucket's upper bound (`le`), ordered totally so buckets can key a map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Le(pub f64);

impl Eq for Le {}

impl PartialOrd for Le {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Le {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Cumulative bucket counts by upper bound, the shape of one histogram.
pub type Buckets = BTreeMap<Le, f64>;

/// Buckets of histogram `base` (its `<base>_bucket` series), summed over all
/// series and grouped by the value of `group_label` (`""` groups everything
/// under the key `""`).
pub fn buckets_by(samples: &[Sample], base: &str, group_label: &str) -> BTreeMap<String, Buckets> {
    let bucket_name = format!("{base}_bucket");
    let mut out: BTreeMap<String, Buckets> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == bucket_name && s.value.is_finite())
    {
        let Some(le) = s.label("le").and_then(parse_value) else {
            continue;
        };
        let group = if group_label.is_empty() {
            ""
        } else {
            match s.label(group_label) {
                Some(g) => g,
                None => continue,
            }
        };
        *out.entry(group.to_string())
            .or_default()
            .entry(Le(le))
            .or_insert(0.0) += s.value;
    }
    out
}

/// Per-bucket increase from `before` to `now`. A bucket that went down was
/// reset (its process restarted), so its whole current count is the increase;
/// a bucket missing from `before` counts from zero.
pub fn bucket_deltas(now: &Buckets, before: &Buckets) -> Buckets {
    now.iter()
        .map(|(le, &n)| {
            let b = before.get(le).copied().unwrap_or(0.0);
            (*le, if n >= b { n - b } else { n })
        })
        .collect()
}

/// Total observations in `buckets` (the count of the highest bucket).
pub fn bucket_total(buckets: &Buckets) -> f64 {
    buckets.values().copied().fold(0.0, f64::max)
}

/// The `q` quantile (0..=1) of a histogram given as cumulative bucket counts,
/// with Prometheus's `histogram_quantile` interpolation: linear inside the
/// bucket holding the rank, from 0 for the first bucket; a rank in the `+Inf`
/// bucket answers the highest finite bound. `None` without observations.
pub fn histogram_quantile(q: f64, buckets: &Buckets) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || buckets.is_empty() {
        return None;
    }
    // Cumulative counts must not decrease; deltas across a reset can make them.
    let mut cumulative = Vec::with_capacity(buckets.len());
    let mut running = 0.0_f64;
    for (le, &count) in buckets {
        running = running.max(count);
        cumulative.push((le.0, running));
    }
    let total = running;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let idx = cumulative.iter().position(|&(_, c)| c >= rank)?;
    let (upper, count) = cumulative[idx];
    if upper.is_infinite() {
        // Prometheus answers the highest finite bound for a rank past it.
        return Some(if idx == 0 { 0.0 } else { cumulative[idx - 1].0 });
    }
    let (lower, below) = if idx == 0 {
        if upper <= 0.0 {
            return Some(upper);
        }
        (0.0, 0.0)
    } else {
        cumulative[idx - 1]
    };
    let in_bucket = count - below;
    if in_bucket <= 0.0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / in_bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(f64, f64)]) -> Buckets {
        pairs.iter().map(|&(le, c)| (Le(le), c)).collect()
    }

    #[test]
    fn parses_names_labels_values_and_skips_comments() {
        let text = "# HELP x help\n# TYPE x counter\n\nx_total{a=\"1\",b=\"two\"} 3\nup 1\n# EOF\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name, "x_total");
        assert_eq!(samples[0].label("a"), Some("1"));
        assert_eq!(samples[0].label("b"), Some("two"));
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].name, "up");
        assert!(samples[1].labels.is_empty());
    }

    #[test]
    fn label_values_unescape_quotes_backslashes_and_newlines() {
        let s = parse_line(r#"m{path="a\"b",dir="c:\\tmp",msg="x\ny",odd="\q"} 1"#)
            .unwrap()
            .unwrap();
        assert_eq!(s.label("path"), Some("a\"b"));
        assert_eq!(s.label("dir"), Some("c:\\tmp"));
        assert_eq!(s.label("msg"), Some("x\ny"));
        assert_eq!(s.label("odd"), Some("\\q"));
    }

    #[test]
    fn label_values_may_hold_braces_commas_and_hashes() {
        let s = parse_line(r#"m{route="/p/{id}",x="a, b # c"} 2"#)
            .unwrap()
            .unwrap();
        assert_eq!(s.label("route"), Some("/p/{id}"));
        assert_eq!(s.label("x"), Some("a, b # c"));
        assert_eq!(s.value, 2.0);
    }

    #[test]
    fn special_values_timestamps_exemplars_and_trailing_commas() {
        assert!(parse_line("m NaN").unwrap().unwrap().value.is_nan());
        assert_eq!(parse_line("m +Inf").unwrap().unwrap().value, f64::INFINITY);
        assert_eq!(
            parse_line("m -Inf").unwrap().unwrap().value,
            f64::NEG_INFINITY
        );
        assert_eq!(
            parse_line("m 1.5e3 1700000000000").unwrap().unwrap().value,
            1500.0
        );
        let s = parse_line(r#"m_bucket{le="+Inf",} 7 # {trace_id="abc"} 0.2 1.0"#)
            .unwrap()
            .unwrap();
        assert_eq!(s.value, 7.0);
        assert_eq!(s.label("le").and_then(parse_value), Some(f64::INFINITY));
        assert_eq!(parse_line("  m   4  ").unwrap().unwrap().value, 4.0);
        assert_eq!(parse_line("m{} 4").unwrap().unwrap().value, 4.0);
    }

    #[test]
    fn malformed_lines_are_errors_and_parse_skips_them() {
        assert_eq!(parse_line("{a=\"1\"} 1"), Err(PromError::MissingName));
        assert_eq!(parse_line("m{a=\"1} 1"), Err(PromError::MalformedLabels));
        assert_eq!(parse_line("m{a=1} 1"), Err(PromError::MalformedLabels));
        assert_eq!(
            parse_line("m{a=\"1\" b=\"2\"} 1"),
            Err(PromError::MalformedLabels)
        );
        assert_eq!(parse_line("m{a=\"1\"}"), Err(PromError::MissingValue));
        assert_eq!(parse_line("m abc"), Err(PromError::BadValue("abc".into())));
        assert_eq!(
            parse_line("m 1 later"),
            Err(PromError::BadTimestamp("later".into()))
        );
        assert_eq!(parse_line("m"), Err(PromError::MissingValue));
        assert_eq!(parse_line("m-1 2"), Err(PromError::MissingName));
        let samples = parse("good 1\nbad{ 2\nm{a=\"x\\\"} 3\nalso_good 4");
        let names: Vec<_> = samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["good", "also_good"]);
    }

    #[test]
    fn sums_and_maxima_skip_nan_and_missing_labels() {
        let samples = parse(
            "c_total{topic=\"a\",service=\"x\"} 2\nc_total{topic=\"a\",service=\"y\"} 3\n\
             c_total{topic=\"b\"} 1\nc_total{other=\"z\"} 9\nc_total{topic=\"b\"} NaN\n\
             g{db=\"1\"} 10\ng{db=\"2\"} 40\ng{db=\"3\"} NaN\n",
        );
        let by_topic = sum_by(&samples, "c_total", "topic");
        assert_eq!(by_topic.get("a"), Some(&5.0));
        assert_eq!(by_topic.get("b"), Some(&1.0));
        assert_eq!(by_topic.len(), 2);
        assert_eq!(sum(&samples, "c_total"), Some(15.0));
        assert_eq!(max(&samples, "g"), Some(40.0));
        assert_eq!(max(&samples, "absent"), None);
        assert_eq!(sum(&samples, "absent"), None);
    }

    #[test]
    fn buckets_are_summed_across_series_of_a_group() {
        let samples = parse(
            "h_bucket{step=\"a\",outcome=\"ok\",le=\"0.1\"} 1\n\
             h_bucket{step=\"a\",outcome=\"error\",le=\"0.1\"} 2\n\
             h_bucket{step=\"a\",outcome=\"ok\",le=\"+Inf\"} 4\n\
             h_bucket{step=\"a\",outcome=\"error\",le=\"+Inf\"} 2\n\
             h_bucket{step=\"b\",le=\"0.1\"} 5\nh_sum{step=\"a\"} 3\n",
        );
        let by_step = buckets_by(&samples, "h", "step");
        assert_eq!(by_step["a"], buckets(&[(0.1, 3.0), (f64::INFINITY, 6.0)]));
        assert_eq!(by_step["b"], buckets(&[(0.1, 5.0)]));
        let all = buckets_by(&samples, "h", "");
        assert_eq!(all[""], buckets(&[(0.1, 8.0), (f64::INFINITY, 6.0)]));
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        // 10 observations: 5 in (0, 0.1], 4 in (0.1, 0.2], 1 in (0.2, +Inf).
        let b = buckets(&[(0.1, 5.0), (0.2, 9.0), (f64::INFINITY, 10.0)]);
        assert_eq!(histogram_quantile(0.5, &b), Some(0.1));
        let p25 = histogram_quantile(0.25, &b).unwrap();
        assert!((p25 - 0.05).abs() < 1e-12, "{p25}");
        let p70 = histogram_quantile(0.7, &b).unwrap();
        assert!((p70 - 0.15).abs() < 1e-12, "{p70}");
        // Rank in the +Inf bucket: the highest finite bound.
        assert_eq!(histogram_quantile(0.95, &b), Some(0.2));
        assert_eq!(
            histogram_quantile(0.5, &buckets(&[(f64::INFINITY, 0.0)])),
            None
        );
        assert_eq!(histogram_quantile(0.5, &Buckets::new()), None);
        assert_eq!(histogram_quantile(1.5, &b), None);
    }

    #[test]
    fn quantile_from_bucket_deltas_sees_only_the_new_observations() {
        // Before: 100 fast observations. Since: 10 slow ones in (0.5, 1].
        let before = buckets(&[
            (0.1, 100.0),
            (0.5, 100.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ]);
        let now = buckets(&[
            (0.1, 100.0),
            (0.5, 100.0),
            (1.0, 110.0),
            (f64::INFINITY, 110.0),
        ]);
        let cumulative_p50 = histogram_quantile(0.5, &now).unwrap();
        assert!(cumulative_p50 < 0.1, "{cumulative_p50}");
        let delta = bucket_deltas(&now, &before);
        assert_eq!(bucket_total(&delta), 10.0);
        let p50 = histogram_quantile(0.5, &delta).unwrap();
        assert!((p50 - 0.75).abs() < 1e-12, "{p50}");
    }

    #[test]
    fn bucket_deltas_count_a_reset_bucket_from_zero() {
        let before = buckets(&[(0.1, 50.0), (f64::INFINITY, 60.0)]);
        let now = buckets(&[(0.1, 2.0), (f64::INFINITY, 3.0), (1.0, 3.0)]);
        let delta = bucket_deltas(&now, &before);
        assert_eq!(
            delta,
            buckets(&[(0.1, 2.0), (1.0, 3.0), (f64::INFINITY, 3.0)])
        );
    }
}
