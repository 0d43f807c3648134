//! Integrity check and repair of records and their index entries.
//!
//! Two kinds of findings: *problems* (an undecodable record, a record missing an index entry)
//! and *leftovers* (index entries with no record or an outdated one). Leftovers are what the
//! write order leaves after a crash; readers ignore them and purge removes them, so they are
//! harmless. Problems mean something other than a crash damaged the store.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::Handle;
use crate::keys::{expiry_key, parse_expiry_key, parse_principal_key, principal_key};
use crate::record::{decode_head, DecodeError};
use crate::store::Store;

/// One record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undecodable {
    /// The record's key as hex (a handle, if the key is 16 bytes).
    pub handle: String,
    /// Why it cannot be decoded.
    pub reason: String,
}

/// What [`Store::check`](crate::Admin::check) found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Records read.
    pub records: u64,
    /// Problem: records that cannot be decoded.
    pub undecodable: Vec<Undecodable>,
    /// Problem: records with no expiry entry in the bucket their head names.
    pub missing_expiry: Vec<Handle>,
    /// Problem: records with a principal but no principals entry.
    pub missing_principal: Vec<Handle>,
    /// Leftover: expiry entries whose record is gone or names another bucket (or malformed).
    pub stale_expiry: u64,
    /// Leftover: principals entries whose record is gone or has another principal.
    pub stale_principal: u64,
}

impl CheckReport {
    /// Whether there is anything a crash cannot explain.
    pub fn has_problems(&self) -> bool {
        !self.undecodable.is_empty()
            || !self.missing_expiry.is_empty()
            || !self.missing_principal.is_empty()
    }

    /// Whether there is nothing at all to report, leftovers included.
    pub fn is_clean(&self) -> bool {
        !self.has_problems() && self.stale_expiry == 0 && self.stale_principal == 0
    }
}

/// What [`Store::repair`](crate::Admin::repair) changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// Undecodable records removed (with why), and with them the sessions they held: none of
    /// them could be loaded. A format byte this build does not know is damage too, since a
    /// newer record format comes with a newer database format, which this build does not open.
    pub removed_records: Vec<Undecodable>,
    /// Index entries added for records that lacked them.
    pub added_entries: u64,
    /// Stale index entries removed.
    pub removed_entries: u64,
}

fn expiry_handle(k: &[u8]) -> Option<Handle> {
    parse_expiry_key(k).map(|(_, h)| h)
}

fn principal_handle(k: &[u8]) -> Option<Handle> {
    parse_principal_key(k).map(|(_, h)| h)
}

fn reason(e: DecodeError) -> String {
    e.into()
}

/// The index entries the records call for, as fingerprints: a 64-bit hash of each key under a
/// key chosen at random per check, not the keys themselves. Sets of keys took about 690 MB at a
/// million sessions, inside the application when `check` came through its admin socket; these
/// take about 40. A stale entry whose fingerprint equals a wanted entry's passes for wanted: a
/// leftover neither counted nor removed, at odds of n in 2⁶⁴ for n wanted entries (one in 18
/// trillion at a million sessions; the hash key changes every run). A wanted entry is never
/// taken for stale, so `repair` never removes one.
struct Wanted {
    keys: RandomState,
    expiry: HashSet<u64>,
    principals: HashSet<u64>,
}

impl Wanted {
    fn new() -> Self {
        Wanted {
            keys: RandomState::new(),
            expiry: HashSet::new(),
            principals: HashSet::new(),
        }
    }

    fn fingerprint(&self, key: &[u8]) -> u64 {
        self.keys.hash_one(key)
    }

    fn add(&mut self, exp: &[u8], pk: Option<&[u8]>) {
        self.expiry.insert(self.fingerprint(exp));
        if let Some(pk) = pk {
            self.principals.insert(self.fingerprint(pk));
        }
    }

    fn has(&self, set: &HashSet<u64>, key: &[u8]) -> bool {
        set.contains(&self.fingerprint(key))
    }
}

/// What a pass over the records found.
struct Scan {
    records: u64,
    wanted: Wanted,
    /// Record keys that do not decode, with why.
    undecodable: Vec<(Vec<u8>, Undecodable)>,
}

fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads every record once, noting the index entries each decodable one calls for and
/// handing them to `each` (its handle, expiry entry and principals entry). Nothing is kept per
/// record but the fingerprints.
fn scan(
    store: &Store,
    mut each: impl FnMut(&Handle, &[u8], Option<&[u8]>) -> Result<()>,
) -> Result<Scan> {
    let mut s = Scan {
        records: 0,
        wanted: Wanted::new(),
        undecodable: Vec::new(),
    };
    for item in store.inner.sessions.iter() {
        let (k, v) = item?;
        s.records += 1;
        let Some(handle) = Handle::from_slice(&k) else {
            let u = Undecodable {
                handle: hex(&k),
                reason: format!("key is {} bytes, not 16", k.len()),
            };
            s.undecodable.push((k.to_vec(), u));
            continue;
        };
        // The whole record must decode, data included.
        if let Err(err) = crate::record::Record::decode(&v) {
            let u = Undecodable {
                handle: hex(&k),
                reason: reason(err),
            };
            s.undecodable.push((k.to_vec(), u));
            continue;
        }
        let Ok(head) = decode_head(&v) else { continue };
        let exp = expiry_key(head.expiry_entry(), &handle);
        let pk = head.principal.as_deref().map(|p| principal_key(p, &handle));
        s.wanted.add(&exp, pk.as_deref());
        each(&handle, &exp, pk.as_deref())?;
    }
    Ok(s)
}

/// Every key stripe, so no save, purge or invalidation runs while the indexes are compared.
fn lock_all(store: &Store) -> Vec<std::sync::MutexGuard<'_, ()>> {
    store.lock_stripes(&mut (0..crate::store::LOCK_STRIPES).collect())
}

/// A record's expiry entry, and its principals entry if it has a principal.
type Entries = (Vec<u8>, Option<Vec<u8>>);

/// The index entries the record stored under `handle` has now (its expiry entry, and its
/// principals entry if it has a principal), read under the session's key lock; `None` if the
/// record is gone or its head does not decode.
fn entries_now(store: &Store, handle: &Handle) -> Result<Option<Entries>> {
    let Some(bytes) = store.inner.sessions.get(handle.as_bytes())? else {
        return Ok(None);
    };
    let Ok(head) = decode_head(&bytes) else {
        return Ok(None);
    };
    let exp = expiry_key(head.expiry_entry(), handle).to_vec();
    let pk = head.principal.as_deref().map(|p| principal_key(p, handle));
    Ok(Some((exp, pk)))
}

/// Compares the records with their index entries while the application goes on writing: the
/// scan holds no lock (holding every key stripe stopped every save for the whole scan, 27 s at
/// a million sessions), so what looks wrong is looked at again under that session's lock, and
/// reported only if it still is. A write between the scan and that second look (a save moving
/// an entry, a new session) is not a finding.
pub(crate) fn check(store: &Store) -> Result<CheckReport> {
    // Records whose entries were missing when the scan looked.
    let mut suspects = Vec::new();
    let s = scan(store, |handle, exp, pk| {
        let missing = !store.inner.expiry.contains_key(exp)?
            || match pk {
                Some(pk) => !store.inner.principals.contains_key(pk)?,
                None => false,
            };
        if missing {
            suspects.push(*handle);
        }
        Ok(())
    })?;
    let mut report = CheckReport {
        records: s.records,
        ..CheckReport::default()
    };
    for (key, u) in &s.undecodable {
        let still = match Handle::from_slice(key) {
            Some(handle) => {
                let _k = store.lock_key(&handle);
                match store.inner.sessions.get(key)? {
                    Some(bytes) => crate::record::Record::decode(&bytes).is_err(),
                    None => false,
                }
            }
            None => true,
        };
        if still {
            report.undecodable.push(u.clone());
        }
    }
    for handle in &suspects {
        let _k = store.lock_key(handle);
        let Some((exp, pk)) = entries_now(store, handle)? else {
            continue; // gone since the scan
        };
        if !store.inner.expiry.contains_key(&exp)? {
            report.missing_expiry.push(*handle);
        }
        if let Some(pk) = pk {
            if !store.inner.principals.contains_key(&pk)? {
                report.missing_principal.push(*handle);
            }
        }
    }
    let wanted = &s.wanted;
    for (tree, set, parse, is_expiry) in [
        (
            &store.inner.expiry,
            &wanted.expiry,
            expiry_handle as fn(&[u8]) -> Option<Handle>,
            true,
        ),
        (
            &store.inner.principals,
            &wanted.principals,
            principal_handle,
            false,
        ),
    ] {
        for item in tree.iter().keys() {
            let k = item?;
            if wanted.has(set, &k) {
                continue;
            }
            // Written since the scan read its record (or for a session created since), or
            // removed since this listing of the index read it?
            let used = match parse(&k) {
                Some(handle) => {
                    let _k = store.lock_key(&handle);
                    !tree.contains_key(&k)?
                        || entries_now(store, &handle)?.is_some_and(|(exp, pk)| {
                            if is_expiry {
                                exp == k.as_ref()
                            } else {
                                pk.as_deref() == Some(k.as_ref())
                            }
                        })
                }
                None => false,
            };
            if !used {
                if is_expiry {
                    report.stale_expiry += 1;
                } else {
                    report.stale_principal += 1;
                }
            }
        }
    }
    Ok(report)
}

pub(crate) fn repair(store: &Store) -> Result<RepairReport> {
    store.check_writable("repair")?;
    let _all = lock_all(store);
    let mut report = RepairReport::default();
    // Add what is missing before removing what is stale: a crash in between leaves leftovers
    // only, never a record without its entries.
    let s = scan(store, |_, exp, pk| {
        if store.inner.expiry.insert(exp, &[])?.is_none() {
            report.added_entries += 1;
        }
        if let Some(pk) = pk {
            if store.inner.principals.insert(pk, &[])?.is_none() {
                report.added_entries += 1;
            }
        }
        Ok(())
    })?;
    for (key, u) in s.undecodable {
        store.inner.sessions.remove(key)?;
        report.removed_records.push(u);
    }
    let wanted = &s.wanted;
    for (tree, set) in [
        (&store.inner.expiry, &wanted.expiry),
        (&store.inner.principals, &wanted.principals),
    ] {
        for item in tree.iter().keys() {
            let k = item?;
            if !wanted.has(set, &k) {
                tree.remove(&k)?;
                report.removed_entries += 1;
            }
        }
    }
    store.flush()?;
    Ok(report)
}
