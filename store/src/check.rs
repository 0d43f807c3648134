//! Integrity check and repair of records and their index entries.
//!
//! Two kinds of findings: *problems* (an undecodable record, a record missing an index entry)
//! and *leftovers* (index entries with no record or an outdated one). Leftovers are what the
//! write order leaves after a crash; readers ignore them and purge removes them, so they are
//! harmless. Problems mean something other than a crash damaged the store.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SledResult as _};
use crate::id::Handle;
use crate::journal::Keyspace;
use crate::keys::{expiry_key, parse_expiry_key, parse_principal_key, principal_key};
use crate::record::{decode_head, decode_lazy, DecodeError};
use crate::store::Store;

/// One record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undecodable {
    /// The record's key as hex (a handle, if the key is 16 bytes).
    pub handle: String,
    /// Why it cannot be decoded.
    pub reason: String,
}

/// What [`Admin::check`](crate::Admin::check) found.
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

/// What [`Admin::repair`](crate::Admin::repair) changed.
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

fn reason(e: DecodeError) -> String {
    e.into()
}

/// The two index trees.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Index {
    Expiry,
    Principals,
}

/// The index entries the records call for and no listing of the index has shown yet, as
/// fingerprints: a 64-bit hash of each key under a hash key chosen at random per run, not the
/// keys themselves. Sets of keys took 325 B of heap a session (690 MB of peak RSS at a million
/// sessions, inside the application when `check` came through its admin socket); these take
/// 26 B.
///
/// A fingerprint only ever decides that there is nothing to look at: an entry whose
/// fingerprint is not wanted is looked up in its record before it is reported or removed, and a
/// record whose entry seems missing is read again. So two keys with one fingerprint can hide a
/// missing entry (when the other key, a stale entry or another record's, is there), at odds of
/// about n in 2⁶⁴ for n entries, and never make `repair` remove an entry in use. The hash key
/// is new every run, so a check that runs again does not miss the same entry.
struct Wanted {
    hash: RandomState,
    expiry: HashSet<u64>,
    principals: HashSet<u64>,
}

impl Wanted {
    fn new() -> Self {
        Wanted {
            hash: RandomState::new(),
            expiry: HashSet::new(),
            principals: HashSet::new(),
        }
    }

    fn fingerprint(&self, key: &[u8]) -> u64 {
        #[cfg(test)]
        if tests::ALL_COLLIDE.get() {
            return 0;
        }
        self.hash.hash_one(key)
    }

    fn add(&mut self, exp: &[u8], pk: Option<&[u8]>) {
        self.expiry.insert(self.fingerprint(exp));
        if let Some(pk) = pk {
            self.principals.insert(self.fingerprint(pk));
        }
    }

    /// An entry of `index` is there: whether it was wanted (and is no longer).
    fn found(&mut self, index: Index, key: &[u8]) -> bool {
        let f = self.fingerprint(key);
        match index {
            Index::Expiry => self.expiry.remove(&f),
            Index::Principals => self.principals.remove(&f),
        }
    }

    /// Whether an entry of these keys is still wanted: no listing showed it.
    fn still_wanted(&self, exp: &[u8], pk: Option<&[u8]>) -> bool {
        self.expiry.contains(&self.fingerprint(exp))
            || pk.is_some_and(|pk| self.principals.contains(&self.fingerprint(pk)))
    }

    fn is_empty(&self) -> bool {
        self.expiry.is_empty() && self.principals.is_empty()
    }
}

fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a pass over the records found besides what `each` was told.
struct Records {
    count: u64,
    /// Record keys that do not decode, with why.
    undecodable: Vec<(Vec<u8>, Undecodable)>,
}

/// Reads every record once, in key order, handing each decodable one's handle, expiry entry
/// and principals entry to `each`. Nothing is kept per record.
fn records(
    store: &Store,
    mut each: impl FnMut(&Handle, &[u8], Option<&[u8]>) -> Result<()>,
) -> Result<Records> {
    let mut r = Records {
        count: 0,
        undecodable: Vec::new(),
    };
    for item in store.inner.sessions.iter() {
        let (k, v) = item.storage()?;
        r.count += 1;
        let Some(handle) = Handle::from_slice(&k) else {
            let u = Undecodable {
                handle: hex(&k),
                reason: format!("key is {} bytes, not 16", k.len()),
            };
            r.undecodable.push((k.to_vec(), u));
            continue;
        };
        // The whole record must decode, data included: checked as a load checks it, which
        // accepts exactly what a whole decode does without building the data.
        let head = match decode_lazy(&v) {
            Ok(record) => record.head,
            Err(err) => {
                let u = Undecodable {
                    handle: hex(&k),
                    reason: reason(err),
                };
                r.undecodable.push((k.to_vec(), u));
                continue;
            }
        };
        let exp = expiry_key(head.expiry_entry(), &handle);
        let pk = head.principal.as_deref().map(|p| principal_key(p, &handle));
        each(&handle, &exp, pk.as_deref())?;
    }
    Ok(r)
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
    let Some(bytes) = store.inner.sessions.get(handle.as_bytes()).storage()? else {
        return Ok(None);
    };
    let Ok(head) = decode_head(&bytes) else {
        return Ok(None);
    };
    let exp = expiry_key(head.expiry_entry(), handle).to_vec();
    let pk = head.principal.as_deref().map(|p| principal_key(p, handle));
    Ok(Some((exp, pk)))
}

/// The handle an entry of `index` names, if the key is well formed.
fn entry_handle(index: Index, key: &[u8]) -> Option<Handle> {
    match index {
        Index::Expiry => parse_expiry_key(key).map(|(_, h)| h),
        Index::Principals => parse_principal_key(key).map(|(_, h)| h),
    }
}

/// Whether the entry `key` of `index` is one its record uses now (the record read again), or
/// is gone from the index by now. The caller holds the key lock of `handle`, the handle the
/// entry names.
fn in_use(store: &Store, index: Index, handle: &Handle, key: &[u8]) -> Result<bool> {
    let tree = match index {
        Index::Expiry => &store.inner.expiry,
        Index::Principals => &store.inner.principals,
    };
    Ok(!tree.contains_key(key).storage()?
        || entries_now(store, handle)?.is_some_and(|(exp, pk)| match index {
            Index::Expiry => exp == key,
            Index::Principals => pk.as_deref() == Some(key),
        }))
}

/// Lists both indexes, crossing off the entries `wanted` holds, and hands each other entry
/// that its record does not use (looked up again, under the session's key lock if `lock`) to
/// `stale`: a fingerprint only ever says there is nothing to look at.
fn stale_entries(
    store: &Store,
    wanted: &mut Wanted,
    lock: bool,
    mut stale: impl FnMut(Index, &sled::Tree, &[u8]) -> Result<()>,
) -> Result<()> {
    for (index, tree) in [
        (Index::Expiry, &store.inner.expiry),
        (Index::Principals, &store.inner.principals),
    ] {
        for item in tree.iter().keys() {
            let k = item.storage()?;
            if wanted.found(index, &k) {
                continue;
            }
            if let Some(handle) = entry_handle(index, &k) {
                let _k = lock.then(|| store.lock_key(&handle));
                if in_use(store, index, &handle, &k)? {
                    continue;
                }
            }
            stale(index, tree, &k)?;
        }
    }
    Ok(())
}

/// Compares the records with their index entries while the application goes on writing, in
/// three sequential passes and no lookup for a healthy store: the records (what entries they
/// want), then each index (which entries are there), then, only if some wanted entry was not
/// there, the records again (whose it was). The scan holds no lock (holding every key stripe
/// stopped every save for the whole scan, 27 s at a million sessions), so what looks wrong is
/// looked at again under that session's lock, and reported only if it still is. A write
/// between the scan and that second look (a save moving an entry, a new session) is not a
/// finding.
pub(crate) fn check(store: &Store) -> Result<CheckReport> {
    let mut wanted = Wanted::new();
    let r = records(store, |_, exp, pk| {
        wanted.add(exp, pk);
        Ok(())
    })?;
    let mut report = CheckReport {
        records: r.count,
        ..CheckReport::default()
    };
    for (key, u) in &r.undecodable {
        let still = match Handle::from_slice(key) {
            Some(handle) => {
                let _k = store.lock_key(&handle);
                match store.inner.sessions.get(key).storage()? {
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
    // Not wanted: stale, or written since the scan read its record (or for a session created
    // since), or removed since this listing of the index read it? Looked at under its lock.
    stale_entries(store, &mut wanted, true, |index, _, _| {
        match index {
            Index::Expiry => report.stale_expiry += 1,
            Index::Principals => report.stale_principal += 1,
        }
        Ok(())
    })?;
    if wanted.is_empty() {
        return Ok(report);
    }
    // Some record's entry was not in its index: whose, and is it still missing?
    let mut suspects = Vec::new();
    records(store, |handle, exp, pk| {
        if wanted.still_wanted(exp, pk) {
            suspects.push(*handle);
        }
        Ok(())
    })?;
    for handle in &suspects {
        let _k = store.lock_key(handle);
        let Some((exp, pk)) = entries_now(store, handle)? else {
            continue; // gone since the scan
        };
        if !store.inner.expiry.contains_key(&exp).storage()? {
            report.missing_expiry.push(*handle);
        }
        if let Some(pk) = pk {
            if !store.inner.principals.contains_key(&pk).storage()? {
                report.missing_principal.push(*handle);
            }
        }
    }
    Ok(report)
}

/// Rebuilds the indexes with every key stripe held, in the passes of `check`: stale entries
/// are removed while the indexes are listed, missing ones added in a second pass over the
/// records, after the undecodable records are removed. A crash part way leaves the store no
/// worse than repair found it (no session could be loaded from an undecodable record, and a
/// stale entry is no record's entry), and repair can run again.
pub(crate) fn repair(store: &Store) -> Result<RepairReport> {
    store.check_writable("repair")?;
    let _all = lock_all(store);
    let mut wanted = Wanted::new();
    let r = records(store, |_, exp, pk| {
        wanted.add(exp, pk);
        Ok(())
    })?;
    let mut report = RepairReport::default();
    for (key, u) in r.undecodable {
        store.inner.remove(Keyspace::Sessions, &key).storage()?;
        report.removed_records.push(u);
    }
    // Every key stripe is held already.
    stale_entries(store, &mut wanted, false, |index, _, k| {
        let space = match index {
            Index::Expiry => Keyspace::Expiry,
            Index::Principals => Keyspace::Principals,
        };
        store.inner.remove(space, k).storage()?;
        report.removed_entries += 1;
        Ok(())
    })?;
    if !wanted.is_empty() {
        records(store, |_, exp, pk| {
            if wanted.still_wanted(exp, pk) {
                if store
                    .inner
                    .insert(Keyspace::Expiry, exp, &[])
                    .storage()?
                    .is_none()
                {
                    report.added_entries += 1;
                }
                if let Some(pk) = pk {
                    if store
                        .inner
                        .insert(Keyspace::Principals, pk, &[])
                        .storage()?
                        .is_none()
                    {
                        report.added_entries += 1;
                    }
                }
            }
            Ok(())
        })?;
    }
    store.flush()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use crate::keys::{parse_expiry_key, principal_key};
    use crate::{Admin, ManualClock, Store};

    thread_local! {
        /// Every key's fingerprint is 0: the worst the hash can do.
        pub(super) static ALL_COLLIDE: Cell<bool> = const { Cell::new(false) };
    }

    /// With every fingerprint equal, `repair` still removes exactly the stale entries: a
    /// fingerprint only ever says there is nothing to look at, and an entry is looked up in its
    /// record before it goes. (A missing entry can then pass unnoticed, as documented on
    /// `Wanted`; a check with real fingerprints still finds it.)
    #[test]
    fn repair_removes_no_entry_in_use_when_every_fingerprint_collides() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder()
            .clock(ManualClock::at_ms(1_767_225_600_000))
            .open(dir.path().join("db"))
            .unwrap();
        let mut handles = Vec::new();
        for i in 0..10 {
            let mut s = store.create();
            s.set_principal(Some(&format!("user{i}"))).unwrap();
            s.save().unwrap();
            handles.push(s.handle());
        }
        let inner = &store.inner;
        // One record loses its expiry entry; two entries name no record, and sort last, after
        // an entry in use has taken the one fingerprint (one sorting first would pass for
        // wanted: a leftover not counted).
        let victim = inner
            .expiry
            .iter()
            .keys()
            .map(|k| k.unwrap())
            .find(|k| parse_expiry_key(k).is_some_and(|(_, h)| h == handles[3]))
            .unwrap();
        inner.expiry.remove(&victim).unwrap();
        inner.expiry.insert([0xffu8; 24], &[]).unwrap();
        let nobody = crate::SessionId::named("nobody").handle();
        inner
            .principals
            .insert(principal_key("zz-ghost", &nobody), &[])
            .unwrap();

        ALL_COLLIDE.set(true);
        let report = store.check().unwrap();
        assert_eq!((report.stale_expiry, report.stale_principal), (1, 1));
        let repaired = store.repair().unwrap();
        ALL_COLLIDE.set(false);
        assert_eq!(repaired.removed_entries, 2, "{repaired:?}");
        assert_eq!(inner.expiry.len(), 9);
        assert_eq!(inner.principals.len(), 10);

        let report = store.check().unwrap();
        assert_eq!(report.missing_expiry, vec![handles[3]]);
        assert!(report.missing_principal.is_empty());
        assert_eq!((report.stale_expiry, report.stale_principal), (0, 0));
        let repaired = store.repair().unwrap();
        assert_eq!((repaired.added_entries, repaired.removed_entries), (1, 0));
        assert!(store.check().unwrap().is_clean());
    }
}
