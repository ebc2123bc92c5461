//! What a run measures besides time: resident memory from `/proc/self/status`,
//! samples over time, and a histogram of per-operation latencies.

use serde::{Deserialize, Serialize};

/// A `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kib = line[field.len()..]
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// Resident set size now.
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS")
}

/// Peak resident set size since start or the last [`reset_peak_rss`].
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM")
}

/// Resets `VmHWM` to the current RSS (writing 5 to `/proc/self/clear_refs`).
/// Returns false when the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// One sample of a run's memory over time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Nanoseconds since the replay started.
    pub t_ns: u64,
    /// Requested bytes of live blocks (as replayed so far).
    pub live_bytes: u64,
    /// Bytes the allocator holds from the OS (see the run's `footprint_source`).
    pub footprint_bytes: u64,
    /// Resident set size of the replaying process.
    pub rss_bytes: u64,
}

impl Sample {
    /// `footprint / live`, when anything is live.
    pub fn fragmentation(&self) -> Option<f64> {
        (self.live_bytes > 0).then(|| self.footprint_bytes as f64 / self.live_bytes as f64)
    }
}

/// Log-linear latency histogram: 8 buckets per power of two (12.5% resolution).
#[derive(Clone, Debug)]
pub struct Hist {
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u64,
}

const SUB: u32 = 3;

impl Default for Hist {
    fn default() -> Self {
        Hist {
            buckets: vec![0; 64 << SUB],
            count: 0,
            sum_ns: 0,
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < (1 << SUB) {
        return ns as usize;
    }
    let e = 63 - ns.leading_zeros();
    let sub = (ns >> (e - SUB)) & ((1 << SUB) - 1);
    (((e - SUB + 1) << SUB) as u64 + sub) as usize
}

/// Largest value that falls into bucket `i`.
fn bucket_max(i: usize) -> u64 {
    if i < (1 << SUB) {
        return i as u64;
    }
    let e = (i >> SUB) as u32 + SUB - 1;
    let sub = (i & ((1 << SUB) - 1)) as u64;
    (((1 << SUB) + sub + 1) << (e - SUB)) - 1
}

impl Hist {
    /// Adds one latency.
    #[inline]
    pub fn add(&mut self, ns: u64) {
        self.buckets[bucket_of(ns)] += 1;
        self.count += 1;
        self.sum_ns += ns;
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
    }

    /// Number of latencies.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean latency in nanoseconds.
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// Latency at quantile `q` (0..=1), as the upper bound of its bucket.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_max(i);
            }
        }
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        for ns in [0u64, 1, 7, 8, 9, 15, 16, 100, 1000, 123_456, u64::MAX / 2] {
            let b = bucket_of(ns);
            assert!(
                bucket_max(b) >= ns,
                "{ns} in bucket {b} max {}",
                bucket_max(b)
            );
            if b > 0 {
                assert!(bucket_max(b - 1) < ns, "{ns}");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for ns in 1..=100 {
            h.add(ns);
        }
        assert_eq!(h.count(), 100);
        assert!((h.mean_ns() - 50.5).abs() < 1e-9);
        let p99 = h.quantile_ns(0.99);
        assert!((99..=111).contains(&p99), "{p99}");
    }
}
