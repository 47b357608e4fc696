//! Writing for people and programs: aligned tables, `Key: value` blocks, durations like
//! `2m13s`, RFC 3339 times, and the choice between table, JSON and YAML.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;

use crate::commands::Io;
use crate::{CliError, OutputFormat};

/// A duration in its two largest units: `45s`, `2m13s`, `1h`, `5h3m`, `3d4h`.
pub fn seconds(s: u64) -> String {
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let two = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    if d > 0 {
        two(d, "d", h, "h")
    } else if h > 0 {
        two(h, "h", m, "m")
    } else if m > 0 {
        two(m, "m", sec, "s")
    } else {
        format!("{sec}s")
    }
}

/// A duration as [`seconds`] writes it; below ten seconds to the millisecond (`250ms`, `1.5s`).
pub fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < Duration::from_secs(10) && d.subsec_millis() != 0 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        seconds(d.as_secs())
    }
}

/// RFC 3339 UTC text of a time since the Unix epoch, with `digits` fractional digits (0..=9).
pub fn rfc3339(secs: i64, nanos: u32, digits: usize) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date
    // Algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let digits = digits.min(9);
    if digits > 0 {
        let frac = format!("{:09}", nanos.min(999_999_999));
        out.push('.');
        out.push_str(&frac[..digits]);
    }
    out.push('Z');
    out
}

/// A protobuf time as RFC 3339 text to the millisecond; `None` when unset.
pub fn timestamp(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.map(|t| rfc3339(t.seconds, u32::try_from(t.nanos).unwrap_or(0), 3))
}

/// How long ago `t` was, as [`seconds`] writes it; `-` when unset. A time in the future
/// (clocks apart) is `0s`.
pub fn age(t: Option<&prost_types::Timestamp>, now: SystemTime) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    seconds(now.saturating_sub(t.seconds).max(0) as u64)
}

/// How a command writes its tables (`-o wide`, `--no-headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// More columns.
    pub wide: bool,
    /// The heading line.
    pub headers: bool,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            wide: false,
            headers: true,
        }
    }
}

/// Columns aligned on the widest cell, two spaces apart, headings in capitals.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headings: &[&str]) -> Self {
        Table {
            rows: vec![headings.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) -> &mut Self {
        self.rows.push(cells);
        self
    }

    /// Rows below the headings.
    pub fn len(&self) -> usize {
        self.rows.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn render(&self) -> String {
        self.render_as(Style::default())
    }

    /// The table in `style`: without its heading line when `style.headers` is false (the
    /// columns are then as wide as the rows alone need).
    pub fn render_as(&self, style: Style) -> String {
        let rows = if style.headers {
            &self.rows[..]
        } else {
            &self.rows[1..]
        };
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut width = vec![0usize; cols];
        for r in rows {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in rows {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{c:<w$}", w = width[i]);
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = writeln!(out, "{:<w$}  {v}", format!("{k}:"));
    }
    out
}

/// `-` for an empty text, the text otherwise.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// A list as one cell: comma-separated, `-` when empty.
pub fn list(items: &[String]) -> String {
    or_dash(&items.join(","))
}

/// Writes `value` as JSON or YAML, or `table()` for people.
pub fn emit<T: Serialize>(
    io: &mut Io<'_>,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), CliError> {
    match io.output {
        OutputFormat::Json => {
            // Made whole first: a write error is then the stream's own (a closed pipe).
            let text = serde_json::to_string_pretty(value).context("cannot write JSON")?;
            writeln!(io.stdout, "{text}")?;
        }
        OutputFormat::Yaml => {
            let text = serde_saphyr::to_string(value).context("cannot write YAML")?;
            write!(io.stdout, "{text}")?;
        }
        OutputFormat::Table | OutputFormat::Wide => write!(io.stdout, "{}", table())?,
    }
    io.stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_two_units() {
        assert_eq!(seconds(0), "0s");
        assert_eq!(seconds(45), "45s");
        assert_eq!(seconds(133), "2m13s");
        assert_eq!(seconds(120), "2m");
        assert_eq!(seconds(3600), "1h");
        assert_eq!(seconds(3599), "59m59s");
        assert_eq!(seconds(5 * 3600 + 3 * 60 + 9), "5h3m");
        assert_eq!(seconds(3 * 86_400 + 4 * 3600 + 59), "3d4h");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(10)), "10s");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0, 0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 250_000_000, 3),
            "2023-11-14T22:13:20.250Z"
        );
        assert_eq!(rfc3339(951_782_400, 0, 0), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1, 0, 0), "1969-12-31T23:59:59Z");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_133);
        let t = prost_types::Timestamp {
            seconds: 1_000_000,
            nanos: 0,
        };
        assert_eq!(age(Some(&t), now), "2m13s");
        assert_eq!(age(None, now), "-");
        let later = prost_types::Timestamp {
            seconds: 2_000_000,
            nanos: 0,
        };
        assert_eq!(age(Some(&later), now), "0s");
    }

    #[test]
    fn table_columns_line_up() {
        let mut t = Table::new(&["MN-ID", "STATE", "AGE"]);
        t.row(vec!["mn1@example.org".into(), "ACTIVE".into(), "2m".into()]);
        t.row(vec!["m@x".into(), "DEREGISTERING".into(), "1h".into()]);
        assert_eq!(
            t.render(),
            "MN-ID            STATE          AGE\n\
             mn1@example.org  ACTIVE         2m\n\
             m@x              DEREGISTERING  1h\n"
        );
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.render_as(Style {
                wide: false,
                headers: false
            }),
            "mn1@example.org  ACTIVE         2m\n\
             m@x              DEREGISTERING  1h\n"
        );
        assert_eq!(
            fields(&[("MN-ID", "a".into()), ("State", "b".into())]),
            "MN-ID:  a\nState:  b\n"
        );
    }
}
