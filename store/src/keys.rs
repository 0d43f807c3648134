//! Key layouts of the index trees.
//!
//! - `expiry`: an expiry *bucket* (milliseconds rounded down to [`EXPIRY_BUCKET_MS`], big-endian
//!   u64) ++ handle. The bucket is the record's `expiry_entry()`: its deadline's bucket when the
//!   entry was placed, so at or before its deadline; a save that moves the deadline later by
//!   up to [`EXPIRY_ENTRY_LAG_MS`] leaves it there (`Head::place_entry`). Purge and the
//!   listings read each record anyway, so they stay exact.
//! - `principals`: principal bytes ++ 0x00 ++ handle. Principals cannot contain 0x00.

use crate::id::Handle;

/// The resolution of the expiry index.
pub(crate) const EXPIRY_BUCKET_MS: i64 = 10_000;

/// How far a session's expiry entry may lag behind its deadline's bucket: a save that moves
/// the deadline later by up to this writes the record alone, not three times (new entry,
/// record, old entry). Five minutes covers a user's clicks within a visit; the cost is that
/// the expiry index orders sessions by deadline to within this much, and purge reads a
/// session whose entry is due but whose deadline is not at most this long.
///
/// Part of record format 2, not a tuning knob: the live listing starts this long before now,
/// so a record lagging further would be missed, and decode refuses one. Another value needs
/// another record format (and database format), so that builds with either value never read
/// each other's records.
pub(crate) const EXPIRY_ENTRY_LAG_MS: u64 = 5 * 60 * 1000;

/// The bucket of a deadline (deadlines before the epoch share bucket 0).
pub(crate) fn bucket(expires_at: i64) -> u64 {
    let ms = u64::try_from(expires_at.max(0)).unwrap_or(0);
    ms - ms % EXPIRY_BUCKET_MS as u64
}

/// The expiry entry in bucket `bucket` (a record's `expiry_entry()`).
pub(crate) fn expiry_key(bucket: u64, handle: &Handle) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&bucket.to_be_bytes());
    k[8..].copy_from_slice(handle.as_bytes());
    k
}

/// The first expiry key of the bucket holding `ms`.
pub(crate) fn expiry_bucket_start(ms: i64) -> [u8; 8] {
    bucket(ms).to_be_bytes()
}

/// The bucket and handle of an expiry key, or `None` if it is malformed.
pub(crate) fn parse_expiry_key(k: &[u8]) -> Option<(u64, Handle)> {
    if k.len() != 24 {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[..8]);
    Some((u64::from_be_bytes(b), Handle::from_slice(&k[8..])?))
}

pub(crate) fn principal_prefix(principal: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(principal.len() + 17);
    k.extend_from_slice(principal.as_bytes());
    k.push(0);
    k
}

pub(crate) fn principal_key(principal: &str, handle: &Handle) -> Vec<u8> {
    let mut k = principal_prefix(principal);
    k.extend_from_slice(handle.as_bytes());
    k
}

/// The principal and handle of a principals key, or `None` if it is malformed.
pub(crate) fn parse_principal_key(k: &[u8]) -> Option<(&str, Handle)> {
    if k.len() < 17 || k[k.len() - 17] != 0 {
        return None;
    }
    let principal = std::str::from_utf8(&k[..k.len() - 17]).ok()?;
    Some((principal, Handle::from_slice(&k[k.len() - 16..])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;

    #[test]
    fn keys_roundtrip() {
        let h = SessionId::random().handle();
        assert_eq!(bucket(25_001), 20_000);
        assert_eq!(bucket(-5), 0);
        assert_eq!(parse_expiry_key(&expiry_key(20_000, &h)), Some((20_000, h)));
        assert_eq!(
            parse_principal_key(&principal_key("alice", &h)),
            Some(("alice", h))
        );
        assert_eq!(parse_principal_key(b"short"), None);
    }

    #[test]
    fn expiry_keys_sort_by_deadline() {
        let h = SessionId::random().handle();
        assert!(expiry_key(bucket(9_999), &h) < expiry_key(bucket(10_000), &h));
        assert!(expiry_key(bucket(10_000), &h) < expiry_key(bucket(1 << 40), &h));
    }
}
