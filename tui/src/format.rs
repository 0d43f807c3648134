//! How times, sizes and handles are written on screen: short, relative to the store's clock
//! (never the wall clock, so a test with a `ManualClock` sees the same screen every time).

use std::time::Duration;

use time::OffsetDateTime;

/// `d` as one or two units: `45s`, `12m 5s`, `3h 4m`, `2d 3h`; `none` for `Duration::MAX`.
pub(crate) fn span(d: Duration) -> String {
    if d == Duration::MAX {
        // A session with no idle timeout.
        return "none".into();
    }
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) if secs == 0 => format!("{mins}m"),
        (0, 0, _) => format!("{mins}m {secs}s"),
        (0, _, _) if mins == 0 => format!("{hours}h"),
        (0, _, _) => format!("{hours}h {mins}m"),
        _ if hours == 0 => format!("{days}d"),
        _ => format!("{days}d {hours}h"),
    }
}

/// How long before `now` the moment `t` was, as one unit (`45s ago`, `12m ago`, `3h ago`);
/// a moment in the future (a clock moved back) reads `now`.
pub(crate) fn ago(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let Ok(d) = Duration::try_from(now - t) else {
        return "now".into();
    };
    let s = d.as_secs();
    match s {
        0 => "now".into(),
        1..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// The time left until `expires_at`, or `None` when the session has expired.
pub(crate) fn remaining(expires_at: OffsetDateTime, now: OffsetDateTime) -> Option<Duration> {
    if now >= expires_at {
        return None;
    }
    Duration::try_from(expires_at - now).ok()
}

/// A byte count in binary units, at most 8 characters: `312 B`, `1.5 KiB`, `649 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A moment as RFC 3339 in UTC, seconds precision.
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The time of day of `t` in UTC, `HH:MM:SS`.
pub(crate) fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).expect("valid time")
    }

    #[test]
    fn spans_use_at_most_two_units() {
        assert_eq!(span(Duration::from_secs(0)), "0s");
        assert_eq!(span(Duration::from_secs(45)), "45s");
        assert_eq!(span(Duration::from_secs(120)), "2m");
        assert_eq!(span(Duration::from_secs(725)), "12m 5s");
        assert_eq!(span(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(span(Duration::from_secs(3 * 3600 + 4 * 60 + 9)), "3h 4m");
        assert_eq!(span(Duration::from_secs(2 * 86_400)), "2d");
        assert_eq!(
            span(Duration::from_secs(2 * 86_400 + 3 * 3600 + 1)),
            "2d 3h"
        );
        assert_eq!(span(Duration::MAX), "none");
    }

    #[test]
    fn ago_is_relative_to_the_given_now() {
        assert_eq!(ago(at(0), at(0)), "now");
        assert_eq!(ago(at(0), at(59)), "59s ago");
        assert_eq!(ago(at(0), at(60)), "1m ago");
        assert_eq!(ago(at(0), at(7200)), "2h ago");
        assert_eq!(ago(at(0), at(86_400 * 3)), "3d ago");
        assert_eq!(ago(at(10), at(0)), "now", "a future moment is not negative");
    }

    #[test]
    fn remaining_is_none_once_expired() {
        assert_eq!(remaining(at(30), at(0)), Some(Duration::from_secs(30)));
        assert_eq!(remaining(at(30), at(30)), None);
        assert_eq!(remaining(at(30), at(31)), None);
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 * 1024 + 300), "12 KiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1024 KiB");
        assert_eq!(bytes(649 * 1024 * 1024), "649 MiB");
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(timestamp(at(0)), "2023-11-14T22:13:20Z");
        assert_eq!(clock(at(0)), "22:13:20");
    }
}
