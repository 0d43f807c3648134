//! Key layouts of the index trees.
//!
//! - `expiry`: the expiry *bucket* (expires_at rounded down to [`EXPIRY_BUCKET_MS`], big-endian
//!   u64 millis) ++ handle. Rounding lets a save that moves the deadline within the same bucket
//!   leave the index untouched; purge reads each record anyway, so it stays exact.
//! - `principals`: principal bytes ++ 0x00 ++ handle. Principals cannot contain 0x00.

use crate::id::Handle;

/// The resolution of the expiry index.
pub(crate) const EXPIRY_BUCKET_MS: i64 = 10_000;

/// The bucket of a deadline (deadlines before the epoch share bucket 0).
pub(crate) fn bucket(expires_at: i64) -> u64 {
    let ms = u64::try_from(expires_at.max(0)).unwrap_or(0);
    ms - ms % EXPIRY_BUCKET_MS as u64
}

pub(crate) fn expiry_key(expires_at: i64, handle: &Handle) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&bucket(expires_at).to_be_bytes());
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
        assert_eq!(parse_expiry_key(&expiry_key(25_001, &h)), Some((20_000, h)));
        assert_eq!(parse_expiry_key(&expiry_key(-5, &h)), Some((0, h)));
        assert_eq!(
            parse_principal_key(&principal_key("alice", &h)),
            Some(("alice", h))
        );
        assert_eq!(parse_principal_key(b"short"), None);
    }

    #[test]
    fn expiry_keys_sort_by_deadline() {
        let h = SessionId::random().handle();
        assert!(expiry_key(9_999, &h) < expiry_key(10_000, &h));
        assert!(expiry_key(10_000, &h) < expiry_key(1 << 40, &h));
    }
}
