//! Reading the node's own Prometheus text back as samples.
//!
//! The summary is computed from exactly what `/metrics` shows, so the
//! dashboard and a Prometheus server never disagree and no counter is kept
//! twice. `prometheus-client` offers no way to read a metric family's
//! series back, but it encodes the registry as OpenMetrics text, whose
//! sample lines are simple: `name{label="value",...} number [timestamp]`,
//! with `\\`, `\"` and `\n` escaped in label values. This parser reads
//! those lines and skips everything else (comments, `# EOF`, exemplars).

use std::collections::BTreeMap;

/// One sample line: metric name (with its `_total`, `_bucket`, ...
/// suffix), labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name as written.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// A label's value, or "" when absent.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Every sample of `text`; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows `}`.
fn parse_labels(s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut chars = s.char_indices().peekable();
    loop {
        // Label name, up to '=' (or the closing brace of an empty set).
        let mut name = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' if name.is_empty() => return Some((labels, &s[i + 1..])),
                '=' => break,
                ',' | ' ' if name.is_empty() => {}
                _ => name.push(c),
            }
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                _ => value.push(c),
            }
        }
        labels.insert(name, value);
        match chars.next()? {
            (_, ',') => {}
            (i, '}') => return Some((labels, &s[i + 1..])),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_and_skips_the_rest() {
        let text = "# HELP dynkv_x A thing.\n# TYPE dynkv_x counter\n\
            dynkv_x_total 3\n\
            dynkv_http_requests_total{op=\"get\",status=\"204\"} 2\n\
            dynkv_lat_bucket{le=\"+Inf\",op=\"put\"} 7 # {trace=\"a\"} 1.0\n\
            dynkv_odd{v=\"a \\\"q\\\" \\\\ b\\nc, d}\"} 1.5e3\n\
            not a sample\n\
            # EOF\n";
        let s = parse(text);
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0].name, "dynkv_x_total");
        assert_eq!(s[0].value, 3.0);
        assert!(s[0].labels.is_empty());
        assert_eq!(s[1].label("op"), "get");
        assert_eq!(s[1].label("status"), "204");
        assert_eq!(s[2].label("le"), "+Inf");
        assert_eq!(s[2].value, 7.0);
        assert_eq!(s[3].label("v"), "a \"q\" \\ b\nc, d}");
        assert_eq!(s[3].value, 1500.0);
        assert_eq!(s[3].label("missing"), "");
    }

    #[test]
    fn malformed_lines_are_skipped_not_fatal() {
        for line in [
            "x{op=\"get\"",
            "x{op=get} 1",
            "x{op=\"get\"} ",
            "x{op=\"g",
            "x 1e",
            "{} 1",
        ] {
            assert!(parse_line(line).is_none(), "{line}");
        }
        assert_eq!(parse_line("x{} 1").map(|s| s.value), Some(1.0));
        assert!(parse_line("x +Inf").is_some_and(|s| s.value.is_infinite()));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }
    }
}
