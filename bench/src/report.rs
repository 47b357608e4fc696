//! What every benchmark prints: tables of figures for people, the targets with their verdicts,
//! and the same as JSON.

use serde::Serialize;

/// A target of the benchmarks and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// `None` when the run could not measure it.
    pub met: Option<bool>,
}

impl Verdict {
    pub fn new(target: impl Into<String>, measured: impl Into<String>, met: Option<bool>) -> Self {
        Verdict {
            target: target.into(),
            measured: measured.into(),
            met,
        }
    }
}

/// A plain-text table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Self {
        Table {
            title: title.to_owned(),
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn text(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |r: &Vec<String>| {
            let mut s = String::from(" ");
            for (i, w) in width.iter().enumerate() {
                let c = r.get(i).map_or("", String::as_str);
                let pad = w - c.chars().count();
                if i == 0 {
                    s.push_str(&format!(" {c}{} ", " ".repeat(pad)));
                } else {
                    s.push_str(&format!(" {}{c} ", " ".repeat(pad)));
                }
            }
            s.trim_end().to_owned() + "\n"
        };
        let mut out = format!("{}\n", self.title);
        out.push_str(&line(&self.header));
        let total: usize = width.iter().map(|w| w + 2).sum::<usize>() + 1;
        out.push_str(&format!("  {}\n", "-".repeat(total.saturating_sub(2))));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// The report of one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bench: String,
    /// How the run was made (sizes, modes, tools).
    pub setup: serde_json::Value,
    pub tables: Vec<Table>,
    pub verdicts: Vec<Verdict>,
    /// What limited the run or why a figure is missing.
    pub notes: Vec<String>,
    /// The figures, for machines.
    pub figures: serde_json::Value,
}

impl Report {
    pub fn text(&self) -> String {
        let mut s = format!("== {} ==\n", self.bench);
        for t in &self.tables {
            s.push_str(&t.text());
            s.push('\n');
        }
        if !self.verdicts.is_empty() {
            let mut t = Table::new("targets", &["target", "measured", "verdict"]);
            for v in &self.verdicts {
                t.row(vec![
                    v.target.clone(),
                    v.measured.clone(),
                    match v.met {
                        Some(true) => "MET".into(),
                        Some(false) => "MISSED".into(),
                        None => "not measured".into(),
                    },
                ]);
            }
            s.push_str(&t.text());
        }
        for n in &self.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        s
    }
}

/// Formats a rate with thousands separators.
pub fn int(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(int(1234567.4), "1,234,567");
        assert_eq!(int(999.0), "999");
        assert_eq!(int(0.0), "0");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new("t", &["a", "bb"]);
        t.row(vec!["xyz".into(), "1".into()]);
        let s = t.text();
        // The first column is left-aligned, the others right-aligned to the widest cell.
        assert!(s.contains("\n  a    bb\n"), "{s}");
        assert!(s.contains("\n  xyz   1\n"), "{s}");
        assert!(s.contains("\n  --------\n"), "{s}");
    }
}
