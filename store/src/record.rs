//! The stored form of a session and its versioned encoding. Nothing here touches sled, so a
//! second backend reuses it as is.
//!
//! Layout: one format byte, then the postcard-encoded [`Head`] (everything but the data, so
//! scans can stop there), then the data as a value token stream. A session is loaded with
//! [`decode_lazy`]: the head decoded, the data checked but left as bytes until first use.
//!
//! Format 2 added [`Head::entry_lag`], the place of the session's entry in the expiry index,
//! which may lag behind its deadline by up to [`EXPIRY_ENTRY_LAG_MS`]. Format 1 records (written
//! before) are read with the entry at their deadline's bucket, where format 1 kept it, and are
//! rewritten as format 2 by their next write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::{bucket, EXPIRY_BUCKET_MS, EXPIRY_ENTRY_LAG_MS};
use crate::value::{check_map, decode_map, encode_map, Checked, Value};

/// [`EXPIRY_BUCKET_MS`] as the unsigned bucket arithmetic needs it.
const BUCKET: u64 = EXPIRY_BUCKET_MS as u64;

/// The record format this build writes and the newest it reads.
pub(crate) const RECORD_FORMAT: u8 = 2;

/// The first record format, still read.
const RECORD_FORMAT_V1: u8 = 1;

/// Everything in a record but the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    /// Milliseconds since the epoch when the session expires: the derived
    /// `min(last_access + idle_timeout, absolute_deadline)`, kept so scans need no arithmetic.
    pub(crate) expires_at: i64,
    /// How many expiry buckets the session's entry in the expiry index (see `keys.rs`) is
    /// before the bucket of `expires_at`: at most [`EXPIRY_ENTRY_LAG_MS`] worth. A save that
    /// moves the deadline later by up to that leaves the entry where it is
    /// ([`Head::place_entry`]). Stored as a count of buckets, one byte, rather than the entry's
    /// time, six.
    pub(crate) entry_lag: u16,
    /// Incremented by every write; the optimistic-concurrency check compares it.
    pub(crate) version: u64,
    pub(crate) created: i64,
    pub(crate) last_access: i64,
    pub(crate) idle_timeout_ms: i64,
    pub(crate) absolute_deadline: i64,
    pub(crate) principal: Option<String>,
    pub(crate) label: Option<String>,
    pub(crate) remote_addr: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// The head of format 1, which had no `entry_lag`.
#[derive(Deserialize)]
struct HeadV1 {
    expires_at: i64,
    version: u64,
    created: i64,
    last_access: i64,
    idle_timeout_ms: i64,
    absolute_deadline: i64,
    principal: Option<String>,
    label: Option<String>,
    remote_addr: Option<String>,
    user_agent: Option<String>,
}

impl From<HeadV1> for Head {
    fn from(h: HeadV1) -> Head {
        Head {
            expires_at: h.expires_at,
            // Format 1 kept every entry at its deadline's bucket.
            entry_lag: 0,
            version: h.version,
            created: h.created,
            last_access: h.last_access,
            idle_timeout_ms: h.idle_timeout_ms,
            absolute_deadline: h.absolute_deadline,
            principal: h.principal,
            label: h.label,
            remote_addr: h.remote_addr,
            user_agent: h.user_agent,
        }
    }
}

/// What a write needs of the stored record it replaces: its version (for the conflict error),
/// its deadline, the place of its expiry entry and its principal (whose index entries the
/// write may move). A loaded session keeps this rather than a copy of the whole head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredHead {
    pub(crate) version: u64,
    pub(crate) expires_at: i64,
    pub(crate) expiry_entry: u64,
    pub(crate) principal: Option<String>,
}

impl StoredHead {
    /// Whether the stored session is expired at `now`.
    pub(crate) fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

/// A whole session record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) head: Head,
    pub(crate) data: BTreeMap<String, Value>,
}

/// Why a record could not be decoded.
///
/// There is no "written by a newer sessdb" case: a sessdb that writes a newer record format
/// also marks the database with a newer format (see `FORMAT_VERSION`), which this build refuses
/// to open. So in a database this build has open, a format byte it does not know is damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Garbage, truncated, or internally inconsistent.
    Corrupt(String),
}

impl DecodeError {
    /// The error for the record stored under `handle`.
    pub(crate) fn for_record(self, handle: &crate::id::Handle) -> crate::Error {
        let DecodeError::Corrupt(reason) = self;
        crate::Error::Corrupt {
            handle: handle.to_string(),
            reason,
        }
    }
}

impl Head {
    /// `min(last_access + idle, absolute_deadline)`.
    pub(crate) fn compute_expiry(&self) -> i64 {
        self.expiry_if_accessed_at(self.last_access)
    }

    /// The expiry this session would have with `last_access` as its last access.
    pub(crate) fn expiry_if_accessed_at(&self, last_access: i64) -> i64 {
        crate::clock::add_ms(last_access, self.idle_timeout_ms).min(self.absolute_deadline)
    }

    /// Whether the session is expired at `now` (a session is expired *at* its deadline).
    pub(crate) fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    /// Places the expiry entry of this head, written over a record whose entry is in bucket
    /// `old` (`None` for a new record): the old place while it is neither after this deadline's
    /// bucket nor more than [`EXPIRY_ENTRY_LAG_MS`] before it, so a save that moves the
    /// deadline later by less than that writes no index entry; otherwise this deadline's
    /// bucket.
    pub(crate) fn place_entry(&mut self, old: Option<u64>) {
        let due = bucket(self.expires_at);
        self.entry_lag = match old {
            Some(b) if b <= due && due - b <= EXPIRY_ENTRY_LAG_MS => {
                u16::try_from((due - b) / BUCKET).unwrap_or(0)
            }
            _ => 0,
        };
    }

    /// The bucket of the session's entry in the expiry index.
    pub(crate) fn expiry_entry(&self) -> u64 {
        bucket(self.expires_at).saturating_sub(u64::from(self.entry_lag) * BUCKET)
    }

    /// An upper bound of the head's encoded length in practice: its strings plus the most its
    /// integers take as varints (10 bytes each) and the options' tags.
    fn encoded_len_hint(&self) -> usize {
        let text = [
            &self.principal,
            &self.label,
            &self.remote_addr,
            &self.user_agent,
        ]
        .iter()
        .map(|s| s.as_ref().map_or(1, |s| s.len() + 6))
        .sum::<usize>();
        8 * 10 + text
    }

    /// Whether `self` and `other` differ at most in what a touch changes: the last access,
    /// the deadline, the expiry entry's place and the version.
    pub(crate) fn same_apart_from_touch(&self, other: &Head) -> bool {
        let untouched = |h: &Head| Head {
            expires_at: 0,
            entry_lag: 0,
            version: 0,
            last_access: 0,
            ..h.clone()
        };
        untouched(self) == untouched(other)
    }

    /// What a later write of this record's successor needs to know of it.
    pub(crate) fn stored(&self) -> StoredHead {
        StoredHead {
            version: self.version,
            expires_at: self.expires_at,
            expiry_entry: self.expiry_entry(),
            principal: self.principal.clone(),
        }
    }
}

impl Record {
    /// The encoded record.
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_parts(&self.head, &encode_map(&self.data)).0
    }

    /// Decodes a whole record.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let (head, rest) = split(bytes)?;
        let data = decode_map(rest).map_err(|e| DecodeError::Corrupt(e.0))?;
        Ok(Record { head, data })
    }
}

/// A record from a head and data tokens that are already encoded (a session's stored data,
/// kept as it was loaded). Returns the bytes and the offset of the data in them.
pub(crate) fn encode_parts(head: &Head, data: &[u8]) -> (Vec<u8>, usize) {
    // One buffer, sized for the whole record: the head is written into it, not into a vector
    // of its own that grows by doubling and is then copied (allocations are what concurrent
    // saves wait on; docs/BENCHMARKS.md, "Concurrent calls and the allocator").
    let mut out = Vec::with_capacity(1 + head.encoded_len_hint() + data.len());
    out.push(RECORD_FORMAT);
    // Serializing strings and integers into a Vec cannot fail.
    let mut out = postcard::to_extend(head, out).unwrap_or_else(|_| vec![RECORD_FORMAT]);
    let data_at = out.len();
    out.extend_from_slice(data);
    (out, data_at)
}

/// Decodes the head and returns the data tokens as they are, unchecked.
pub(crate) fn decode_parts(bytes: &[u8]) -> Result<(Head, &[u8]), DecodeError> {
    split(bytes)
}

/// Decodes only the head, for scans that need no data.
pub(crate) fn decode_head(bytes: &[u8]) -> Result<Head, DecodeError> {
    split(bytes).map(|(head, _)| head)
}

/// A record as a session is loaded: the head decoded, the data checked and left encoded.
#[derive(Debug, PartialEq)]
pub(crate) struct LazyRecord {
    pub(crate) head: Head,
    /// Where the data tokens start in the record's bytes.
    pub(crate) data_at: usize,
    /// What the check of the data found (data whose keys are out of order comes back decoded).
    pub(crate) data: Checked,
}

/// Decodes the head and checks the data without decoding it: `Ok` exactly when
/// [`Record::decode`] would succeed, and then the data decodes later without error.
pub(crate) fn decode_lazy(bytes: &[u8]) -> Result<LazyRecord, DecodeError> {
    let (head, rest) = split(bytes)?;
    let data = check_map(rest).map_err(|e| DecodeError::Corrupt(e.0))?;
    Ok(LazyRecord {
        head,
        data_at: bytes.len() - rest.len(),
        data,
    })
}

fn split(bytes: &[u8]) -> Result<(Head, &[u8]), DecodeError> {
    let bad_header = |e: postcard::Error| DecodeError::Corrupt(format!("bad record header: {e}"));
    let (head, rest) = match bytes.first() {
        None => return Err(DecodeError::Corrupt("empty record".into())),
        Some(&RECORD_FORMAT) => {
            postcard::take_from_bytes::<Head>(&bytes[1..]).map_err(bad_header)?
        }
        Some(&RECORD_FORMAT_V1) => {
            let (v1, rest) =
                postcard::take_from_bytes::<HeadV1>(&bytes[1..]).map_err(bad_header)?;
            (Head::from(v1), rest)
        }
        Some(&f) => {
            return Err(DecodeError::Corrupt(format!(
                "unknown record format {f} (this database holds formats {RECORD_FORMAT_V1} and \
                 {RECORD_FORMAT})"
            )))
        }
    };
    if head.expires_at != head.compute_expiry() {
        return Err(DecodeError::Corrupt(
            "expires_at does not match last access, idle timeout and deadline".into(),
        ));
    }
    let lag = u64::from(head.entry_lag) * BUCKET;
    if lag > EXPIRY_ENTRY_LAG_MS {
        return Err(DecodeError::Corrupt(format!(
            "the expiry entry lags the deadline by {lag} ms, more than the {EXPIRY_ENTRY_LAG_MS} \
             ms record format {RECORD_FORMAT} allows",
        )));
    }
    if lag > bucket(head.expires_at) {
        return Err(DecodeError::Corrupt(format!(
            "the expiry entry lags the deadline by {lag} ms, which would place it before 1970",
        )));
    }
    Ok((head, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let mut head = Head {
            expires_at: 0,
            entry_lag: 0,
            version: 3,
            created: 1_000,
            last_access: 2_000,
            idle_timeout_ms: 1_800_000,
            absolute_deadline: 86_401_000,
            principal: Some("alice".into()),
            label: None,
            remote_addr: Some("203.0.113.7".into()),
            user_agent: Some("curl/8".into()),
        };
        head.expires_at = head.compute_expiry();
        head.place_entry(None);
        let mut data = BTreeMap::new();
        data.insert("n".into(), Value::Int(5));
        Record { head, data }
    }

    #[test]
    fn roundtrip_and_head_only_decode() {
        let r = record();
        let bytes = r.encode();
        assert_eq!(bytes[0], RECORD_FORMAT);
        assert_eq!(Record::decode(&bytes).unwrap(), r);
        assert_eq!(decode_head(&bytes).unwrap(), r.head);
    }

    #[test]
    fn one_buffer_encoding_is_the_format_byte_postcards_head_and_the_data() {
        let mut r = record();
        // Strings longer than the capacity hint's margin, and none at all.
        r.head.user_agent = Some("Mozilla/5.0 ".repeat(40));
        r.head.label = Some(String::new());
        for head in [
            r.head.clone(),
            Head {
                principal: None,
                remote_addr: None,
                user_agent: None,
                label: None,
                ..r.head.clone()
            },
        ] {
            let data = encode_map(&r.data);
            let (bytes, data_at) = encode_parts(&head, &data);
            let mut expected = vec![RECORD_FORMAT];
            expected.extend(postcard::to_allocvec(&head).unwrap());
            assert_eq!(data_at, expected.len());
            expected.extend(&data);
            assert_eq!(bytes, expected);
            assert!(head.encoded_len_hint() >= data_at - 1);
        }
    }

    #[test]
    fn expiry_is_the_earlier_of_idle_and_absolute() {
        let mut h = record().head;
        assert_eq!(h.compute_expiry(), 2_000 + 1_800_000);
        h.absolute_deadline = 5_000;
        assert_eq!(h.compute_expiry(), 5_000);
        h.expires_at = 5_000;
        assert!(!h.is_expired(4_999));
        assert!(h.is_expired(5_000));
    }

    #[test]
    fn unknown_formats_and_damage_are_corrupt() {
        let mut bytes = record().encode();
        // A newer format comes with a newer database format, which is refused at open: in an
        // open database any other format byte is damage (nearly every random first byte).
        for format in [0, RECORD_FORMAT + 1, b'g', u8::MAX] {
            bytes[0] = format;
            assert_eq!(
                Record::decode(&bytes),
                Err(DecodeError::Corrupt(format!(
                    "unknown record format {format} (this database holds formats 1 and 2)"
                )))
            );
        }
        assert!(matches!(Record::decode(&[]), Err(DecodeError::Corrupt(_))));
        let good = record().encode();
        for cut in 1..good.len() {
            assert!(Record::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lazy_decode_agrees_with_the_whole_decode() {
        let r = record();
        let bytes = r.encode();
        let lazy = decode_lazy(&bytes).unwrap();
        assert_eq!(lazy.head, r.head);
        assert_eq!(lazy.data, Checked::Valid);
        assert_eq!(decode_map(&bytes[lazy.data_at..]).unwrap(), r.data);
        assert_eq!(
            encode_parts(&r.head, &bytes[lazy.data_at..]),
            (bytes.clone(), lazy.data_at)
        );
        for cut in 0..bytes.len() {
            assert!(decode_lazy(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut newer = bytes.clone();
        newer[0] = RECORD_FORMAT + 1;
        assert!(matches!(decode_lazy(&newer), Err(DecodeError::Corrupt(_))));
        let mut bad_data = bytes;
        *bad_data.last_mut().unwrap() = 0xff;
        assert!(Record::decode(&bad_data).is_err());
        assert!(matches!(
            decode_lazy(&bad_data),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn inconsistent_expiry_is_corrupt() {
        let mut r = record();
        r.head.expires_at += 1;
        assert!(matches!(
            Record::decode(&r.encode()),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn format_1_records_read_with_the_entry_at_their_deadline() {
        #[derive(Serialize)]
        struct V1<'a> {
            expires_at: i64,
            version: u64,
            created: i64,
            last_access: i64,
            idle_timeout_ms: i64,
            absolute_deadline: i64,
            principal: Option<&'a str>,
            label: Option<&'a str>,
            remote_addr: Option<&'a str>,
            user_agent: Option<&'a str>,
        }
        let r = record();
        let h = &r.head;
        let mut bytes = vec![RECORD_FORMAT_V1];
        bytes.extend(
            postcard::to_allocvec(&V1 {
                expires_at: h.expires_at,
                version: h.version,
                created: h.created,
                last_access: h.last_access,
                idle_timeout_ms: h.idle_timeout_ms,
                absolute_deadline: h.absolute_deadline,
                principal: h.principal.as_deref(),
                label: h.label.as_deref(),
                remote_addr: h.remote_addr.as_deref(),
                user_agent: h.user_agent.as_deref(),
            })
            .unwrap(),
        );
        bytes.extend(encode_map(&r.data));
        let decoded = Record::decode(&bytes).unwrap();
        assert_eq!(decoded.head.expiry_entry(), bucket(h.expires_at));
        assert_eq!(decoded, r);
        assert_eq!(decode_lazy(&bytes).unwrap().head, r.head);
        // Written again, it is format 2.
        assert_eq!(decoded.encode()[0], RECORD_FORMAT);
    }

    #[test]
    fn the_entry_stays_while_the_deadline_moves_later() {
        let mut h = record().head;
        let due = bucket(h.expires_at);
        h.place_entry(None);
        assert_eq!(h.expiry_entry(), due);
        h.place_entry(Some(due - 60_000));
        assert_eq!(h.expiry_entry(), due - 60_000, "an earlier entry stays");
        h.place_entry(Some(due - EXPIRY_ENTRY_LAG_MS));
        assert_eq!(h.expiry_entry(), due - EXPIRY_ENTRY_LAG_MS, "up to the lag");
        h.place_entry(Some(due - EXPIRY_ENTRY_LAG_MS - 10_000));
        assert_eq!(
            h.expiry_entry(),
            due,
            "an entry lagging further moves to the deadline"
        );
        h.place_entry(Some(due + 10_000));
        assert_eq!(
            h.expiry_entry(),
            due,
            "an entry after the deadline moves back to it"
        );
    }

    #[test]
    fn an_entry_outside_the_lag_is_corrupt() {
        let mut r = record();
        let most = u16::try_from(EXPIRY_ENTRY_LAG_MS / BUCKET).unwrap();
        r.head.entry_lag = most + 1;
        let Err(DecodeError::Corrupt(reason)) = Record::decode(&r.encode()) else {
            panic!("a lag over the limit was accepted");
        };
        assert!(reason.contains("expiry entry"), "{reason}");
        r.head.entry_lag = most;
        assert!(Record::decode(&r.encode()).is_ok());
        // Before the epoch's bucket: refused too.
        r.head.absolute_deadline = 15_000;
        r.head.expires_at = r.head.compute_expiry();
        r.head.entry_lag = 2;
        assert!(Record::decode(&r.encode()).is_err());
    }
}
