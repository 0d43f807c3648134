//! Timing, percentiles, memory and disk readings, and the measurement record a child process
//! reports to the parent.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Lines a child prints with this prefix carry one [`Measurement`] as JSON.
pub const RESULT_PREFIX: &str = "@@result ";

/// One measured workload of one engine at one store size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub workload: String,
    pub engine: String,
    /// Sessions in the store.
    pub n: u64,
    /// Operations measured.
    pub ops: u64,
    /// Time they took, including a final flush where the workload writes.
    pub secs: f64,
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    /// Peak RSS of the process during this workload (VmHWM after a reset), in KiB.
    pub rss_kib: Option<u64>,
    pub disk_per_session: Option<f64>,
    /// CPU time of the whole process during the workload (every thread, sessdb's and sled's
    /// background threads included), where measured.
    pub cpu_secs: Option<f64>,
    /// The rates of the concurrent rows' four quarters, in order (see `threads::measure`).
    #[serde(default)]
    pub quarters: Vec<f64>,
    pub note: Option<String>,
}

impl Measurement {
    /// Cores kept busy on average: CPU time over wall time.
    pub fn cores(&self) -> Option<f64> {
        (self.secs > 0.0).then_some(self.cpu_secs? / self.secs)
    }

    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Prints the measurement for the parent process to collect.
    pub fn emit(&self) {
        // Serializing plain numbers and strings cannot fail.
        if let Ok(json) = serde_json::to_string(self) {
            println!("{RESULT_PREFIX}{json}");
        }
    }
}

/// Per-operation latencies and their sum.
#[derive(Debug, Default)]
pub struct Timer {
    lat_ns: Vec<u64>,
    busy: Duration,
}

impl Timer {
    pub fn with_capacity(n: usize) -> Self {
        Timer {
            lat_ns: Vec::with_capacity(n),
            busy: Duration::ZERO,
        }
    }

    /// Runs and times one operation.
    #[inline]
    pub fn time<T>(&mut self, op: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = op();
        self.record(start.elapsed());
        out
    }

    /// Records one operation timed by the caller (an `await`, which a closure cannot hold).
    #[inline]
    pub fn record(&mut self, took: Duration) {
        self.lat_ns.push(took.as_nanos() as u64);
        self.busy += took;
    }

    /// Adds time that belongs to the workload but to no single operation (a final flush).
    pub fn add(&mut self, d: Duration) {
        self.busy += d;
    }

    pub fn merge(&mut self, other: Timer) {
        self.lat_ns.extend(other.lat_ns);
        self.busy += other.busy;
    }

    /// The measurement of these operations, over `secs` (the sum of the timed operations
    /// unless the caller measured wall time).
    pub fn finish(
        mut self,
        workload: &str,
        engine: &str,
        n: usize,
        secs: Option<f64>,
    ) -> Measurement {
        self.lat_ns.sort_unstable();
        Measurement {
            workload: workload.to_string(),
            engine: engine.to_string(),
            n: n as u64,
            ops: self.lat_ns.len() as u64,
            secs: secs.unwrap_or(self.busy.as_secs_f64()),
            p50_ns: percentile(&self.lat_ns, 0.50),
            p99_ns: percentile(&self.lat_ns, 0.99),
            rss_kib: None,
            disk_per_session: None,
            cpu_secs: None,
            quarters: Vec::new(),
            note: None,
        }
    }
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Resets the process's peak RSS (Linux 4.0+), so the next [`peak_rss_kib`] reads the peak of
/// what follows. Best effort: without it the peak covers the process's whole life.
pub fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak RSS (VmHWM) in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_field("/proc/self/status", "VmHWM:")
}

/// A `kB` field of a `/proc/PID/status` file.
pub fn status_field(path: &str, field: &str) -> Option<u64> {
    let status = fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Bytes allocated on disk under `path` (blocks, not apparent sizes: sparse files count for
/// what they use).
pub fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| disk_bytes(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.blocks() * 512
    }
}

/// CPU time (user and system) of this process so far, every thread's, including threads that
/// have exited.
pub fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Runs `f` and returns its result with how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
