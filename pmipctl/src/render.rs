//! Text rendering of a decoded message for a person: a title line, then one line per field,
//! options indented under it, warnings last.
//!
//! ```text
//! Proxy Binding Update (MH Type 5)
//!   sequence: 4711
//!   flags: A|P
//!   options:
//!     Mobile Node Identifier (type 8) at byte 12, length 16
//!       identifier: mn1@example.org
//!   warning: at byte 12: mandatory option 23 (Handoff Indicator) is missing
//! ```

use std::fmt::Write as _;

use crate::decode::{Record, Value};

fn label(key: &str) -> String {
    key.replace('_', " ")
}

/// A scalar value on one line.
fn scalar(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::Text(t) => t.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Named {
            value,
            name: Some(n),
        } => format!("{value} {n}"),
        Value::Named { value, name: None } => format!("{value} (unknown)"),
        Value::Flags(l) if l.is_empty() => "none".into(),
        Value::Flags(l) => l.join("|"),
        Value::List(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Record(r) => {
            r.0.iter()
                .map(|(k, v)| format!("{} {}", label(k), scalar(v)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

fn number(r: &Record, key: &str) -> Option<u64> {
    match r.get(key)? {
        Value::Number(n) => Some(*n),
        Value::Named { value, .. } => Some(*value),
        _ => None,
    }
}

/// The heading of an option: "Home Network Prefix (type 22) at byte 12, length 18".
fn option_heading(o: &Record) -> String {
    let name = match o.get("type") {
        Some(Value::Named { name: Some(n), .. }) => (*n).to_string(),
        _ => "Unknown option".into(),
    };
    format!(
        "{name} (type {}) at byte {}, length {}",
        number(o, "type").unwrap_or(0),
        number(o, "offset").unwrap_or(0),
        number(o, "length").unwrap_or(0)
    )
}

fn fields(r: &Record, skip: &[&str], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in &r.0 {
        if skip.contains(k) {
            continue;
        }
        match (*k, v) {
            ("warnings", Value::List(ws)) => {
                for w in ws {
                    let _ = writeln!(out, "{pad}warning: {}", scalar(w));
                }
            }
            ("options", Value::List(opts)) if opts.is_empty() => {
                let _ = writeln!(out, "{pad}options: none");
            }
            ("options", Value::List(opts)) => {
                let _ = writeln!(out, "{pad}options:");
                for o in opts {
                    if let Value::Record(o) = o {
                        let _ = writeln!(out, "{pad}  {}", option_heading(o));
                        fields(o, &["type", "offset", "length"], indent + 4, out);
                    }
                }
            }
            (_, Value::List(items)) if items.iter().any(|i| matches!(i, Value::Record(_))) => {
                let _ = writeln!(out, "{pad}{}:", label(k));
                for i in items {
                    let _ = writeln!(out, "{pad}  - {}", scalar(i));
                }
            }
            (_, Value::Record(inner)) => {
                let _ = writeln!(out, "{pad}{}:", label(k));
                fields(inner, &[], indent + 2, out);
            }
            _ => {
                let _ = writeln!(out, "{pad}{}: {}", label(k), scalar(v));
            }
        }
    }
}

/// A decoded message as text (see the module docs).
pub fn message_text(r: &Record) -> String {
    let mut out = String::new();
    let title = match r.get("message") {
        Some(Value::Text(t)) => t.clone(),
        _ => "Mobility Header".into(),
    };
    let _ = writeln!(
        out,
        "{title} (MH Type {})",
        number(r, "mh_type").unwrap_or(0)
    );
    fields(r, &["message", "mh_type"], 2, &mut out);
    out
}

/// The line introducing a Mobility Header found in a packet (of a captured frame).
pub fn packet_heading(frame: Option<u64>, p: &Record) -> String {
    let s = |k: &str| match p.get(k) {
        Some(v) => scalar(v),
        None => String::new(),
    };
    let mut line = match frame {
        Some(n) => format!("frame {n}: "),
        None => String::new(),
    };
    let _ = write!(line, "{} -> {} over {}", s("src"), s("dst"), s("transport"));
    if p.get("src_port").is_some() {
        let _ = write!(line, " (UDP {} -> {})", s("src_port"), s("dst_port"));
    }
    let _ = write!(line, ", Mobility Header at byte {}", s("mh_offset"));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mut opt = Record::new();
        opt.push(
            "type",
            Value::Named {
                value: 22,
                name: Some("Home Network Prefix"),
            },
        )
        .num("offset", 12u64)
        .num("length", 18u64)
        .text("home_network_prefix", "2001:db8::/64");
        let mut r = Record::new();
        r.text("message", "Proxy Binding Acknowledgement")
            .push(
                "mh_type",
                Value::Named {
                    value: 6,
                    name: Some("Binding Acknowledgement"),
                },
            )
            .push(
                "status",
                Value::Named {
                    value: 154,
                    name: Some("MAG_NOT_AUTHORIZED_FOR_PROXY_REG"),
                },
            )
            .push("flags", Value::Flags(vec!["P"]))
            .push("options", Value::List(vec![Value::Record(opt)]))
            .push(
                "warnings",
                Value::List(vec![Value::Text("at byte 7: x".into())]),
            );
        assert_eq!(
            message_text(&r),
            "Proxy Binding Acknowledgement (MH Type 6)\n\
             \x20 status: 154 MAG_NOT_AUTHORIZED_FOR_PROXY_REG\n\
             \x20 flags: P\n\
             \x20 options:\n\
             \x20   Home Network Prefix (type 22) at byte 12, length 18\n\
             \x20     home network prefix: 2001:db8::/64\n\
             \x20 warning: at byte 7: x\n"
        );
    }
}
