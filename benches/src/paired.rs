//! Paired ratios: the echo benchmark compares two servers run by run.
//!
//! On a noisy machine the load of other tenants drifts over seconds to
//! minutes, and it moves every server measured at that moment alike. A
//! ratio of two medians taken over different moments keeps that drift; a
//! ratio taken within one run, between measurements a few seconds apart,
//! mostly cancels it. So the benchmark measures every server in turn for
//! each phase, divides the two servers' figures of the same run, and
//! reports the median of those per-run ratios, with their range as the
//! measure of what noise is left.

/// The per-run ratios of two servers' figures in one cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    /// The median of the per-run ratios (the lower middle one for an even
    /// count).
    pub median: f64,
    /// The smallest per-run ratio.
    pub lo: f64,
    /// The largest per-run ratio.
    pub hi: f64,
    /// How many runs had both figures.
    pub runs: usize,
}

impl Paired {
    /// `a[i] / b[j]` for every run present in both (`(run, value)` pairs;
    /// runs with a non-positive or non-finite divisor are skipped). `None`
    /// when no run has both.
    ///
    /// ```
    /// use ringloop_benches::paired::Paired;
    /// let a = [(0, 2.0), (1, 3.0), (2, 4.0)];
    /// let b = [(0, 2.0), (2, 2.0)]; // run 1 of `b` failed
    /// let p = Paired::of(&a, &b).unwrap();
    /// assert_eq!((p.median, p.lo, p.hi, p.runs), (1.0, 1.0, 2.0, 2));
    /// ```
    pub fn of(a: &[(usize, f64)], b: &[(usize, f64)]) -> Option<Paired> {
        let mut ratios: Vec<f64> = a
            .iter()
            .filter_map(|&(run, va)| {
                let &(_, vb) = b.iter().find(|&&(r, _)| r == run)?;
                (vb > 0.0 && vb.is_finite() && va.is_finite()).then(|| va / vb)
            })
            .collect();
        if ratios.is_empty() {
            return None;
        }
        ratios.sort_by(f64::total_cmp);
        Some(Paired {
            median: ratios[(ratios.len() - 1) / 2],
            lo: ratios[0],
            hi: ratios[ratios.len() - 1],
            runs: ratios.len(),
        })
    }

    /// `median (lo–hi)` with two decimals, or just the median for one run.
    pub fn describe(&self) -> String {
        if self.runs > 1 {
            format!("{:.2} ({:.2}–{:.2})", self.median, self.lo, self.hi)
        } else {
            format!("{:.2}", self.median)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_by_run_not_by_position() {
        // Drift: both servers slow down in run 1; the paired ratio stays.
        let a = [(0, 10.0), (1, 20.0), (2, 11.0)];
        let b = [(2, 10.0), (0, 10.0), (1, 20.0)];
        let p = Paired::of(&a, &b).unwrap();
        assert_eq!(p.runs, 3);
        assert_eq!(p.median, 1.0);
        assert_eq!(p.lo, 1.0);
        assert!((p.hi - 1.1).abs() < 1e-12);
    }

    #[test]
    fn median_is_the_lower_middle_for_even_counts() {
        let a = [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)];
        let b = [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0)];
        assert_eq!(Paired::of(&a, &b).unwrap().median, 2.0);
    }

    #[test]
    fn unpaired_or_zero_divisors_are_skipped() {
        assert_eq!(Paired::of(&[(0, 1.0)], &[(1, 1.0)]), None);
        assert_eq!(Paired::of(&[(0, 1.0)], &[(0, 0.0)]), None);
        assert_eq!(Paired::of(&[], &[]), None);
        let p = Paired::of(&[(0, 3.0), (1, 1.0)], &[(0, 0.0), (1, 2.0)]).unwrap();
        assert_eq!((p.median, p.runs), (0.5, 1));
    }

    #[test]
    fn describes_the_range_only_when_there_is_one() {
        let one = Paired::of(&[(0, 1.0)], &[(0, 2.0)]).unwrap();
        assert_eq!(one.describe(), "0.50");
        let three = Paired::of(
            &[(0, 1.0), (1, 1.1), (2, 0.9)],
            &[(0, 1.0), (1, 1.0), (2, 1.0)],
        )
        .unwrap();
        assert_eq!(three.describe(), "1.00 (0.90–1.10)");
    }
}
