//! The TUI's own time, apart from the store's (which stands still as of a fixed time): it says
//! what a long read cost, so that an auto-refresh repeats that read less often. Tests make it
//! manual and move it, as they move the store's `ManualClock`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic clock: the system's, or in tests one that moves only when told.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    /// Set in tests: the time is the instant the clock was made plus these milliseconds.
    manual: Option<(Instant, Arc<AtomicU64>)>,
}

impl Clock {
    /// A clock that stands still until [`Clock::advance`]; its clones move with it.
    #[cfg(test)]
    pub(crate) fn manual() -> Clock {
        Clock {
            manual: Some((Instant::now(), Arc::default())),
        }
    }

    /// Moves a manual clock on; the system's moves by itself.
    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        if let Some((_, ms)) = &self.manual {
            let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            ms.fetch_add(by, Ordering::SeqCst);
        }
    }

    pub(crate) fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some((start, ms)) => *start + Duration::from_millis(ms.load(Ordering::SeqCst)),
        }
    }
}

/// What a read that may be long (the header's count, a search scan) took, and when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cost {
    pub(crate) took: Duration,
    pub(crate) ended: Instant,
}

impl Cost {
    /// Whether an auto-refresh at `now` may repeat the read: at once when it took less than
    /// `slow`, else once `factor` times what it took has passed since it ended, so that it
    /// keeps at most one part in `factor + 1` of the store's time.
    pub(crate) fn due_again(&self, now: Instant, slow: Duration, factor: u32) -> bool {
        self.took < slow || now.saturating_duration_since(self.ended) >= self.took * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_with_it() {
        let clock = Clock::manual();
        let copy = clock.clone();
        let t = clock.now();
        assert_eq!(copy.now(), t);
        clock.advance(Duration::from_secs(3));
        assert_eq!(copy.now() - t, Duration::from_secs(3));
    }

    #[test]
    fn a_slow_read_is_due_again_factor_times_its_cost_after_it_ended() {
        let ended = Clock::manual().now();
        let slow = Duration::from_millis(200);
        let quick = Cost {
            took: Duration::from_millis(199),
            ended,
        };
        assert!(quick.due_again(ended, slow, 10), "a quick read, every time");
        let long = Cost {
            took: Duration::from_secs(3),
            ended,
        };
        assert!(!long.due_again(ended + Duration::from_millis(29_999), slow, 10));
        assert!(long.due_again(ended + Duration::from_secs(30), slow, 10));
    }
}
