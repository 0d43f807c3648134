//! Purge: walk the expiry index up to now and remove expired sessions one by one, so the cost
//! follows the number of expired sessions, not the size of the store (a live session whose
//! entry lags behind its deadline is read and left, see `keys.rs`). Also the optional
//! background reaper.
//!
//! Each session is removed with plain writes under its own key stripe, in the order of every
//! other removal (record, then its entries), not with a sled `Batch` per tree: a batch takes
//! sled's process-wide write lock, stopping every load and save of the application while it
//! runs, and in the bench's alternating runs the per-session writes purged 1.9× as fast at 100k
//! sessions and 1.4× at 1M (docs/BENCHMARKS.md, "What the benchmark changed in the store").

use std::sync::{mpsc, Weak};
use std::time::Duration;

use crate::error::{Result, SledResult as _};
use crate::journal::Keyspace::{Expiry, Sessions};
use crate::keys::{expiry_bucket_start, parse_expiry_key, EXPIRY_BUCKET_MS};
use crate::record::decode_head;
use crate::store::{Inner, Store};

/// Expiry entries read from the index at a time; progress is reported after each batch.
const BATCH: usize = 512;

impl Store {
    /// Removes every session expired as of now. Returns how many were removed.
    ///
    /// # Errors
    /// Storage errors, or [`Error::ReadOnly`](crate::Error::ReadOnly).
    pub fn purge_expired(&self) -> Result<u64> {
        self.purge_expired_with(|_| {})
    }

    /// Like [`Store::purge_expired`], calling `progress` with the running total after each
    /// batch.
    ///
    /// # Errors
    /// As for [`Store::purge_expired`].
    pub fn purge_expired_with(&self, mut progress: impl FnMut(u64)) -> Result<u64> {
        self.check_writable("purge")?;
        let now = self.now();
        let inner = &self.inner;
        // Entries in buckets up to the one holding `now` may be expired; later ones cannot be.
        let end = expiry_bucket_start(now.saturating_add(EXPIRY_BUCKET_MS));
        let mut from: Vec<u8> = Vec::new();
        let mut removed = 0u64;
        loop {
            let mut entries = Vec::with_capacity(BATCH);
            for item in inner.expiry.range(from.as_slice()..end.as_slice()).keys() {
                let k = item.storage()?;
                if k.as_ref() == from.as_slice() {
                    continue;
                }
                entries.push(k);
                if entries.len() == BATCH {
                    break;
                }
            }
            let Some(last) = entries.last() else { break };
            from = last.to_vec();

            for k in &entries {
                let Some((entry, handle)) = parse_expiry_key(k) else {
                    inner.remove(Expiry, k).storage()?;
                    continue;
                };
                // Under the key stripe, the record cannot change between the read and the
                // removal: every writer of a record takes it.
                let _g = self.lock_key(&handle);
                let Some(bytes) = inner.sessions.get(handle.as_bytes()).storage()? else {
                    inner.remove(Expiry, k).storage()?; // stale: its record is gone
                    continue;
                };
                // Undecodable records are left for check/repair to report.
                let Ok(head) = decode_head(&bytes) else {
                    continue;
                };
                if head.expiry_entry() != entry {
                    inner.remove(Expiry, k).storage()?; // stale: the record's entry is elsewhere
                } else if head.is_expired(now) {
                    // The record first: a crash before its entries go leaves only stale entries.
                    self.noting(inner.remove(Sessions, handle.as_bytes()).storage())?;
                    self.remove_entries(&handle, entry, head.principal.as_deref())?;
                    // Counted one by one: an error later in the batch loses no count.
                    inner.counters.removed(1);
                    removed += 1;
                }
                // Otherwise the session lives: its entry lags behind its deadline (by at most
                // `EXPIRY_ENTRY_LAG_MS`) or is in the current bucket. A later purge finds it.
            }
            progress(removed);
        }
        self.sync()?;
        Ok(removed)
    }

    /// How many sessions [`Store::purge_expired`] would remove now, without removing any.
    ///
    /// # Errors
    /// Storage errors.
    pub fn count_expired(&self) -> Result<u64> {
        let now = self.now();
        let end = expiry_bucket_start(now.saturating_add(EXPIRY_BUCKET_MS));
        let mut count = 0;
        for item in self.inner.expiry.range(..end.as_slice()).keys() {
            let k = item.storage()?;
            let Some((entry, handle)) = parse_expiry_key(&k) else {
                continue;
            };
            if let Some(bytes) = self.inner.sessions.get(handle.as_bytes()).storage()? {
                if let Ok(head) = decode_head(&bytes) {
                    if head.is_expired(now) && head.expiry_entry() == entry {
                        count += 1;
                    }
                }
            }
        }
        Ok(count)
    }
}

/// Purges every `every` until the store is dropped (the sender inside it then disconnects).
pub(crate) fn spawn_reaper(store: Weak<Inner>, stop: mpsc::Receiver<()>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("sessdb-reaper".into())
        .spawn(move || loop {
            match stop.recv_timeout(every) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let Some(inner) = store.upgrade() else { return };
            let store = Store::internal(inner);
            if let Err(e) = store.purge_expired() {
                // Tried again at the next tick; the application's log is the one place to say it.
                log::warn!(
                    target: "sessdb::reaper",
                    "purge of {} failed: {e}",
                    store.path().display()
                );
            }
        });
    // Without a thread the store still works; purge can be run by hand or by sessctl.
    drop(spawned);
}
