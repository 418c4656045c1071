//! The submit-to-commit latency of a load run as a histogram.
//!
//! Percentiles say where the tail is; the histogram says what shape it
//! has: one slow block shows as a second hump a block time away from the
//! first, a machine that is busy throughout as one long smear.

use serde::Serialize;

/// Upper bounds of the buckets, in milliseconds: fine where commits land
/// on a healthy consortium (a block every 100 ms under load), coarser in
/// the tail.
/// A latency above the last bound falls in a final, open bucket.
const BOUNDS_MS: &[u64] = &[
    10, 25, 50, 75, 100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900,
    1_000, 1_250, 1_500, 1_750, 2_000, 2_500, 3_000, 4_000, 5_000, 7_500, 10_000, 15_000, 20_000,
    30_000, 60_000,
];

/// One bucket: latencies in `(previous bound, le_ms]`; the last bucket
/// has no bound (`le_ms` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub le_ms: Option<u64>,
    pub count: u64,
}

/// The histogram of a run: every bucket, empty ones included, so that two
/// runs' histograms line up column by column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Histogram {
    pub buckets: Vec<Bucket>,
    pub total: u64,
}

impl Histogram {
    /// Counts `latencies_ms` (in any order) into the buckets.
    pub fn of(latencies_ms: &[u64]) -> Self {
        let mut buckets: Vec<Bucket> = BOUNDS_MS
            .iter()
            .map(|&b| Bucket {
                le_ms: Some(b),
                count: 0,
            })
            .chain(std::iter::once(Bucket {
                le_ms: None,
                count: 0,
            }))
            .collect();
        for &l in latencies_ms {
            // The first bound at or above l; past the last, the open bucket.
            let i = BOUNDS_MS.partition_point(|&b| b < l);
            buckets[i].count += 1;
        }
        Histogram {
            buckets,
            total: latencies_ms.len() as u64,
        }
    }

    /// Text lines for a terminal: the buckets from the first non-empty to
    /// the last, each with a bar scaled to the fullest, its count and the
    /// cumulative share. Empty when there is nothing to show.
    pub fn lines(&self, width: usize) -> Vec<String> {
        let first = self.buckets.iter().position(|b| b.count > 0);
        let last = self.buckets.iter().rposition(|b| b.count > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return Vec::new();
        };
        let max = self
            .buckets
            .iter()
            .map(|b| b.count)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut below = self.buckets[..first].iter().map(|b| b.count).sum::<u64>();
        let mut out = Vec::with_capacity(last - first + 1);
        for (i, b) in self.buckets.iter().enumerate().take(last + 1).skip(first) {
            below += b.count;
            let label = match (b.le_ms, i.checked_sub(1).map(|j| BOUNDS_MS[j])) {
                (Some(hi), Some(lo)) => format!("{lo:>6}–{hi:<6} ms"),
                (Some(hi), None) => format!("{:>6}–{hi:<6} ms", 0),
                (None, lo) => format!("{:>6}+{:6} ms", lo.unwrap_or(0), ""),
            };
            // A bucket that holds anything shows at least one mark.
            let n = if b.count == 0 {
                0
            } else {
                usize::try_from(b.count.saturating_mul(width as u64) / max)
                    .unwrap_or(width)
                    .max(1)
            };
            out.push(format!(
                "{label} {:<width$} {:>9} {:>6.2} %",
                "#".repeat(n),
                b.count,
                100.0 * below as f64 / self.total.max(1) as f64,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_the_bucket_whose_bound_they_do_not_pass() {
        let h = Histogram::of(&[0, 10, 11, 200, 201, 60_000, 60_001, u64::MAX]);
        let count = |le: Option<u64>| {
            h.buckets
                .iter()
                .find(|b| b.le_ms == le)
                .map(|b| b.count)
                .unwrap_or(0)
        };
        assert_eq!(count(Some(10)), 2);
        assert_eq!(count(Some(25)), 1);
        assert_eq!(count(Some(200)), 1);
        assert_eq!(count(Some(250)), 1);
        assert_eq!(count(Some(60_000)), 1);
        assert_eq!(count(None), 2);
        assert_eq!(h.total, 8);
        assert_eq!(h.buckets.iter().map(|b| b.count).sum::<u64>(), h.total);
        assert_eq!(h.buckets.len(), BOUNDS_MS.len() + 1);
    }

    #[test]
    fn the_bounds_rise() {
        assert!(BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn lines_span_the_non_empty_buckets_and_end_at_one_hundred_percent() {
        assert!(Histogram::of(&[]).lines(40).is_empty());
        let lat: Vec<u64> = (0..1000).map(|i| 120 + i % 300).chain([2_600]).collect();
        let h = Histogram::of(&lat);
        let lines = h.lines(40);
        // 120 ms falls in 100–125, 419 in 400–450; then the gap to 2,500–3,000.
        assert!(lines[0].contains("100–125"), "{lines:?}");
        assert!(
            lines.last().is_some_and(|l| l.contains("2500–3000")),
            "{lines:?}"
        );
        assert!(
            lines.last().is_some_and(|l| l.ends_with("100.00 %")),
            "{lines:?}"
        );
        // An empty bucket in the gap shows no bar; a lone latency shows one mark.
        assert!(lines
            .iter()
            .any(|l| l.contains("1000–1250") && !l.contains('#')));
        assert!(lines.last().is_some_and(|l| l.matches('#').count() == 1));
        // The fullest bucket has the whole width.
        assert!(lines.iter().any(|l| l.matches('#').count() == 40));
    }
}
