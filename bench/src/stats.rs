//! Distributions of measured values.

use serde::Serialize;

/// Percentiles of a sample (nearest rank), in the unit the sample was in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dist {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Dist {
    /// `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Dist> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Dist {
            count: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }

    /// Microseconds to milliseconds.
    pub fn of_micros(us: &[u32]) -> Option<Dist> {
        let ms: Vec<f64> = us.iter().map(|u| f64::from(*u) / 1e3).collect();
        Dist::of(&ms)
    }
}

/// Rounds to `digits` decimals (for reports).
pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let d = Dist::of(&v).unwrap();
        assert_eq!((d.p50, d.p99, d.max, d.count), (50.0, 99.0, 100.0, 100));
        assert_eq!(Dist::of(&[7.0]).unwrap().p99, 7.0);
        assert!(Dist::of(&[]).is_none());
    }
}
