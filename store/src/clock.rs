//! Where the store gets the current time: the system clock, or a clock a test controls.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time, in milliseconds since the Unix epoch.
///
/// The store reads every time through its clock, so expiry can be tested without sleeping
/// ([`ManualClock`]) and sessctl can evaluate expiry "as of" another moment.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// A shared clock is a clock: `Arc<dyn Clock>` chosen at run time, or an `Arc` of a test's
/// clock, can be handed to [`Builder::clock`](crate::Builder::clock).
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        to_ms(OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use sessdb::{Clock, ManualClock};
///
/// let clock = ManualClock::at_ms(1_000);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms(), 3_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `ms` milliseconds after the Unix epoch.
    pub fn at_ms(ms: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }

    /// A clock showing `t`.
    pub fn at(t: OffsetDateTime) -> Self {
        ManualClock::at_ms(to_ms(t))
    }

    /// Moves the clock forward (up to the largest time it can hold, never wrapping).
    pub fn advance(&self, by: Duration) {
        let by = duration_ms(by);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ms| {
                Some(ms.saturating_add(by))
            });
    }

    /// Sets the clock, forward or backward.
    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The latest moment a record can hold: the end of year 9999, the last one RFC 3339 can write.
pub(crate) const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Milliseconds since the epoch of `t`, clamped to 1970..=9999 so every stored time can be
/// exported as RFC 3339 and read back unchanged.
pub(crate) fn to_ms(t: OffsetDateTime) -> i64 {
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms.clamp(0, i128::from(MAX_TIME_MS))).unwrap_or(MAX_TIME_MS)
}

/// `a + b` milliseconds, clamped to the storable range.
pub(crate) fn add_ms(a: i64, b: i64) -> i64 {
    a.saturating_add(b).clamp(0, MAX_TIME_MS)
}

/// The moment `ms` milliseconds after the epoch (clamped to what `time` can represent).
pub(crate) fn from_ms(ms: i64) -> OffsetDateTime {
    let ms = ms.clamp(0, MAX_TIME_MS);
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A duration in whole milliseconds, saturating: `Duration::MAX` (no idle timeout) is
/// `i64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The inverse of [`duration_ms`]: `i64::MAX` is `Duration::MAX` again, so that a session
/// given no idle timeout reads back as none; a negative count (never written) is zero.
pub(crate) fn ms_duration(ms: i64) -> Duration {
    match ms {
        i64::MAX => Duration::MAX,
        ms => Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_advanced_past_its_end_stays_there() {
        let clock = ManualClock::at_ms(1_000);
        clock.advance(Duration::MAX);
        assert_eq!(clock.now_ms(), i64::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ms(), i64::MAX);
    }
}
