//! A session's data, decoded on first use: a loaded session keeps its stored record's data
//! tokens (checked at load by `value::check_map`, so the decode cannot fail) and decodes them
//! once, when something reads the whole map. A save of data that did not change writes those
//! tokens back as they were.
//!
//! Reading or changing one key does not decode the others: a read decodes that key's value
//! alone (`value::lookup`), and a change is kept aside, in `changes`, until the save splices it
//! into the stored tokens (`value::splice`). So a request that reads its user id, or sets two
//! keys and saves, never builds the rest of the map.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use sled::IVec;

use crate::value::{decode_map, encode_map, lookup, same_map, splice, Checked, Value, ValueError};

/// A session's data map.
pub(crate) type Map = BTreeMap<String, Value>;

/// What readers see of data that could not be decoded (which the check at load rules out).
static EMPTY: Map = BTreeMap::new();

/// The data of one session.
pub(crate) struct Data {
    /// The stored record and the offset of its data tokens; `None` until the session is saved.
    stored: Option<(IVec, usize)>,
    /// The decoded data. Unset only while the data is `stored`'s tokens (with `changes` over
    /// them), not decoded yet. A `OnceLock` (not a `OnceCell`) so that `Session` stays `Sync`.
    map: OnceLock<Result<Map, ValueError>>,
    /// Keys set (`Some`) or removed (`None`) while the map was not decoded, in key order. The
    /// decode applies them, and every change after it goes to the map; so they count only
    /// while `map` is unset, or holds the error of a decode that failed (a save then tries to
    /// splice them, and fails rather than drop them).
    changes: BTreeMap<String, Option<Value>>,
    /// The data may differ from the stored tokens: a save encodes it.
    changed: bool,
    /// The map's encoding, when [`Data::replace`] had to make it to compare; dropped by any
    /// change after.
    encoded: Option<Vec<u8>>,
    /// Reads of one key served by decoding that value alone (see [`Data::value`]).
    lookups: AtomicU32,
    /// Changes that walked the stored tokens for a key's old value (see [`Data::set`]).
    walks: u32,
}

/// How many reads of one key decode that value alone; the next one decodes the whole map, which
/// then serves every read. For the benchmark's six-key session a whole decode costs about as
/// many allocations as four or five one-value reads (`bench/examples/allocations.rs`).
const LOOKUPS_BEFORE_DECODE: u32 = 3;

/// How many changes of keys not changed before look up their stored values alone, each a walk
/// of the stored tokens; the next one decodes the whole map, which then takes every change. A
/// request that changes a few keys decodes nothing else, and one that changes every key of a
/// large session walks it a bounded number of times instead of once per key (quadratic: 16,000
/// keys took 9.9 s before this bound, 3.6 ms decoded).
const WALKS_BEFORE_DECODE: u32 = 8;

impl Data {
    /// The empty data of a new session.
    pub(crate) fn new() -> Data {
        Data {
            stored: None,
            map: OnceLock::from(Ok(Map::new())),
            changes: BTreeMap::new(),
            changed: true,
            encoded: None,
            lookups: AtomicU32::new(0),
            walks: 0,
        }
    }

    /// The data of a loaded record: its tokens start at `at` in `record`, and `checked` is what
    /// [`check_map`](crate::value::check_map) found.
    pub(crate) fn loaded(record: IVec, at: usize, checked: Checked) -> Data {
        let map = match checked {
            Checked::Valid => OnceLock::new(),
            Checked::Decoded(map) => OnceLock::from(Ok(map)),
        };
        Data {
            stored: Some((record, at)),
            map,
            changes: BTreeMap::new(),
            changed: false,
            encoded: None,
            lookups: AtomicU32::new(0),
            walks: 0,
        }
    }

    fn tokens(&self) -> Option<&[u8]> {
        tokens(&self.stored)
    }

    /// The data, decoded on the first call (with the changes made before it).
    ///
    /// # Errors
    /// Only if the stored tokens do not decode, which the check at load rules out.
    pub(crate) fn get(&self) -> Result<&Map, &ValueError> {
        self.map
            .get_or_init(|| {
                let mut map = decode(&self.stored)?;
                apply(
                    &mut map,
                    self.changes.iter().map(|(k, v)| (k.clone(), v.clone())),
                );
                Ok(map)
            })
            .as_ref()
    }

    /// The data, decoded if it was not yet.
    ///
    /// # Errors
    /// As for [`Data::get`].
    pub(crate) fn into_map(self) -> Result<Map, ValueError> {
        match self.map.into_inner() {
            Some(map) => map,
            None => {
                let mut map = decode(&self.stored)?;
                apply(&mut map, self.changes);
                Ok(map)
            }
        }
    }

    /// The data, or an empty map if it cannot be decoded (see [`Data::get`]).
    pub(crate) fn get_or_empty(&self) -> &Map {
        self.get().unwrap_or(&EMPTY)
    }

    /// The value under `key`: decoded alone if the map was not decoded yet, for the first
    /// [`LOOKUPS_BEFORE_DECODE`] reads; then the whole map is decoded.
    ///
    /// # Errors
    /// As for [`Data::get`].
    pub(crate) fn value(&self, key: &str) -> Result<Option<Cow<'_, Value>>, ValueError> {
        if self.map.get().is_none() {
            if let Some(change) = self.changes.get(key) {
                return Ok(change.as_ref().map(Cow::Borrowed));
            }
            // A request that reads many keys, or one key many times, is better served by one
            // decode of the whole map than by a decode per read.
            if self.lookups.fetch_add(1, Ordering::Relaxed) < LOOKUPS_BEFORE_DECODE {
                return Ok(self.stored_value(key)?.map(Cow::Owned));
            }
        }
        match self.get() {
            Ok(map) => Ok(map.get(key).map(Cow::Borrowed)),
            Err(e) => Err(e.clone()),
        }
    }

    /// The value under `key` in the stored tokens.
    fn stored_value(&self, key: &str) -> Result<Option<Value>, ValueError> {
        self.tokens().map_or(Ok(None), |tokens| lookup(tokens, key))
    }

    /// Before a change of `key`: decodes the whole map once changes have walked the stored
    /// tokens [`WALKS_BEFORE_DECODE`] times, so that many changes cost one decode rather than a
    /// walk each.
    ///
    /// # Errors
    /// As for [`Data::get`].
    fn decode_if_walked(&mut self, key: &str) -> Result<(), ValueError> {
        if self.map.get().is_none() && !self.changes.contains_key(key) {
            if self.walks >= WALKS_BEFORE_DECODE {
                self.get_mut()?;
            } else {
                self.walks += 1;
            }
        }
        Ok(())
    }

    /// Sets `key` to `value`. Returns whether that changed the data: the [same](Value::same)
    /// value as before is no change.
    ///
    /// # Errors
    /// As for [`Data::get`].
    pub(crate) fn set(&mut self, key: &str, value: Value) -> Result<bool, ValueError> {
        self.decode_if_walked(key)?;
        if self.map.get().is_some() {
            let map = self.get_mut()?;
            if map.get(key).is_some_and(|old| old.same(&value)) {
                return Ok(false);
            }
            map.insert(key.to_string(), value);
        } else {
            let same = match self.changes.get(key) {
                Some(change) => change.as_ref().is_some_and(|old| old.same(&value)),
                None => self.stored_value(key)?.is_some_and(|old| old.same(&value)),
            };
            if same {
                return Ok(false);
            }
            self.changes.insert(key.to_string(), Some(value));
            self.encoded = None;
        }
        self.changed = true;
        Ok(true)
    }

    /// Removes the value under `key` and returns it.
    ///
    /// # Errors
    /// As for [`Data::get`].
    pub(crate) fn remove(&mut self, key: &str) -> Result<Option<Value>, ValueError> {
        self.decode_if_walked(key)?;
        let old = if self.map.get().is_some() {
            self.get_mut()?.remove(key)
        } else {
            let old = match self.changes.get_mut(key) {
                Some(change) => change.take(),
                None => self.stored_value(key)?,
            };
            if old.is_some() {
                self.changes.insert(key.to_string(), None);
                self.encoded = None;
            }
            old
        };
        if old.is_some() {
            self.changed = true;
        }
        Ok(old)
    }

    /// The data for a change, decoded first if need be. The caller reports a change with
    /// [`Data::changed`].
    ///
    /// # Errors
    /// As for [`Data::get`].
    pub(crate) fn get_mut(&mut self) -> Result<&mut Map, ValueError> {
        self.encoded = None;
        if let Err(e) = self.get() {
            return Err(e.clone());
        }
        // The decode applied them.
        self.changes.clear();
        match self.map.get_mut() {
            Some(Ok(map)) => Ok(map),
            Some(Err(e)) => Err(e.clone()),
            None => Err(ValueError("session data was not decoded".into())),
        }
    }

    /// Records that the map was changed, so that a save encodes it. Data that was never decoded
    /// cannot have been changed through a reference (its one-key changes already set
    /// `changed`), so this leaves it alone.
    pub(crate) fn changed(&mut self) {
        if let Some(Ok(_)) = self.map.get() {
            self.changed = true;
            self.encoded = None;
        }
    }

    /// Whether the data holds what is stored: unchanged, or changed back (a key removed, then
    /// set to the value it had), which compares its encoding with the stored tokens (sessdb's
    /// encoding is canonical). Data never saved holds nothing stored.
    pub(crate) fn holds_stored(&self) -> bool {
        match (self.tokens(), self.changed) {
            (None, _) => false,
            (Some(_), false) => true,
            (Some(tokens), true) => self.encoded().is_ok_and(|encoded| *encoded == *tokens),
        }
    }

    /// Before a save: data that holds what is stored ([`Data::holds_stored`]) goes back to the
    /// stored tokens, so that nothing is written for it, and `true` is returned; otherwise the
    /// encoding made to compare is kept for the save to write.
    pub(crate) fn settle(&mut self) -> bool {
        let (same, made) = match (self.tokens(), self.changed) {
            (None, _) => return false,
            (Some(_), false) => return true,
            (Some(tokens), true) => match self.encoded() {
                Ok(Cow::Borrowed(encoded)) => (encoded == tokens, None),
                Ok(Cow::Owned(encoded)) => (encoded == tokens, Some(encoded)),
                // Changes that cannot be spliced (ruled out at load) fail the save that tries.
                Err(_) => return false,
            },
        };
        if same {
            self.changes.clear();
            self.changed = false;
            self.encoded = None;
        } else if made.is_some() {
            self.encoded = made;
        }
        same
    }

    /// Replaces the whole map. Returns whether the data changed: data not decoded yet is
    /// compared by its encoding (sessdb's own is canonical: keys sorted, one form per value),
    /// so an unchanged replacement decodes nothing and leaves the stored tokens to be saved.
    pub(crate) fn replace(&mut self, map: Map) -> bool {
        if !self.changes.is_empty() {
            // Compared with the data as changed, decoded.
            let _ = self.get();
            self.changes.clear();
        }
        let encoded = match self.map.get() {
            Some(Ok(current)) if same_map(current, &map) => return false,
            Some(_) => None,
            None => {
                let encoded = encode_map(&map);
                if self.tokens() == Some(&encoded[..]) {
                    return false;
                }
                Some(encoded)
            }
        };
        self.map = OnceLock::from(Ok(map));
        self.changed = true;
        self.encoded = encoded;
        true
    }

    /// Empties the data. Returns whether there was any.
    pub(crate) fn clear(&mut self) -> bool {
        let had_data = match self.get_mut() {
            Ok(map) => {
                let had = !map.is_empty();
                map.clear();
                had
            }
            // Undecodable data (ruled out at load) is replaced: clearing is what was asked.
            Err(_) => {
                self.map = OnceLock::from(Ok(Map::new()));
                self.changes.clear();
                self.encoded = None;
                true
            }
        };
        if had_data {
            self.changed = true;
        }
        had_data
    }

    /// The data tokens a save writes: the stored ones unless the data changed; changes to
    /// data not decoded are spliced into the stored tokens.
    ///
    /// # Errors
    /// Only if there are such changes and the stored tokens cannot be read, which the check at
    /// load rules out: the changes are then never dropped silently.
    pub(crate) fn encoded(&self) -> Result<Cow<'_, [u8]>, ValueError> {
        if let (true, Some(encoded)) = (self.changed, &self.encoded) {
            return Ok(Cow::Borrowed(encoded));
        }
        Ok(match (self.changed, self.tokens(), self.map.get()) {
            (false, Some(tokens), _) => Cow::Borrowed(tokens),
            (_, _, Some(Ok(map))) => Cow::Owned(encode_map(map)),
            // Also when a full decode failed after the changes were made: they are written,
            // or the save fails.
            (_, Some(tokens), _) if !self.changes.is_empty() => {
                Cow::Owned(splice(tokens, &self.changes)?)
            }
            // Undecodable data (ruled out at load) is never replaced by a save.
            (_, Some(tokens), _) => Cow::Borrowed(tokens),
            (_, None, _) => Cow::Owned(encode_map(&Map::new())),
        })
    }

    /// The data was saved as the tokens at `at` in `record`.
    pub(crate) fn saved(&mut self, record: IVec, at: usize) {
        self.stored = Some((record, at));
        self.changes.clear();
        self.changed = false;
        self.encoded = None;
    }

    /// Whether the data has been decoded (or set), for tests.
    #[cfg(test)]
    pub(crate) fn is_decoded(&self) -> bool {
        self.map.get().is_some()
    }
}

/// Applies changes made before the decode.
fn apply(map: &mut Map, changes: impl IntoIterator<Item = (String, Option<Value>)>) {
    for (key, change) in changes {
        match change {
            Some(value) => map.insert(key, value),
            None => map.remove(&key),
        };
    }
}

/// The data tokens of a stored record.
fn tokens(stored: &Option<(IVec, usize)>) -> Option<&[u8]> {
    stored.as_ref().and_then(|(record, at)| record.get(*at..))
}

/// The map the stored tokens hold (a session never saved holds none).
fn decode(stored: &Option<(IVec, usize)>) -> Result<Map, ValueError> {
    tokens(stored).map_or_else(|| Ok(Map::new()), decode_map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(map: &Map) -> (IVec, usize) {
        let mut record = b"head".to_vec();
        record.extend(encode_map(map));
        (IVec::from(record), 4)
    }

    fn sample() -> Map {
        let mut map = Map::new();
        map.insert("a".into(), Value::Int(1));
        map.insert("b".into(), Value::List(vec![Value::Null]));
        map
    }

    #[test]
    fn loaded_data_is_decoded_on_first_use_and_saved_verbatim_until_changed() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record.clone(), at, Checked::Valid);
        assert!(!data.is_decoded());
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(t) if t == &record[at..]));
        assert_eq!(data.get().unwrap(), &sample());
        assert!(data.is_decoded());
        // Decoded but unchanged: still the stored tokens.
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(_)));
        data.get_mut()
            .unwrap()
            .insert("c".into(), Value::Bool(true));
        data.changed();
        let Cow::Owned(tokens) = data.encoded().unwrap() else {
            panic!("changed data must be encoded");
        };
        assert_eq!(decode_map(&tokens).unwrap().len(), 3);
    }

    /// Each change of a key not changed before walks the stored tokens for its old value; after
    /// [`WALKS_BEFORE_DECODE`] walks the map is decoded once instead, so a request that sets
    /// every key of a large session is linear, not quadratic. Changing a key again walks
    /// nothing.
    #[test]
    fn many_changes_decode_the_map_once_instead_of_walking_it_each_time() {
        let map: Map = (0..100)
            .map(|i| (format!("k{i:03}"), Value::Int(i)))
            .collect();
        let (record, at) = stored(&map);
        let mut data = Data::loaded(record, at, Checked::Valid);
        for i in 0..WALKS_BEFORE_DECODE {
            let key = format!("k{i:03}");
            assert!(data.set(&key, Value::Int(-1)).unwrap());
            // The same key again is found among the changes: no walk.
            assert!(!data.set(&key, Value::Int(-1)).unwrap());
            assert!(!data.is_decoded(), "decoded after {} walks", i + 1);
        }
        assert_eq!(data.remove("k050").unwrap(), Some(Value::Int(50)));
        assert!(data.is_decoded());
        for i in 0..100 {
            data.set(&format!("k{i:03}"), Value::Int(i * 2)).unwrap();
        }
        let mut want: Map = (0..100)
            .map(|i| (format!("k{i:03}"), Value::Int(i * 2)))
            .collect();
        assert_eq!(data.get().unwrap(), &want);
        want.remove("k050");
        data.remove("k050").unwrap();
        assert_eq!(decode_map(&data.encoded().unwrap()).unwrap(), want);
    }

    #[test]
    fn changed_before_decoding_is_no_change() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        data.changed();
        assert!(!data.is_decoded());
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn clear_reports_whether_there_was_data() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        assert!(data.clear());
        assert!(!data.clear());
        assert_eq!(
            &*data.encoded().unwrap(),
            encode_map(&Map::new()).as_slice()
        );
        let mut new = Data::new();
        assert!(!new.clear());
    }

    #[test]
    fn undecodable_tokens_read_as_empty_and_are_never_overwritten_by_a_save() {
        // Cannot come from a load (the check refuses it); the fallback must still be safe.
        let record = IVec::from(b"head\xff\xff".to_vec());
        let mut data = Data::loaded(record, 4, Checked::Valid);
        assert!(data.get().is_err());
        assert!(data.get_or_empty().is_empty());
        assert!(data.get_mut().is_err());
        data.changed();
        assert_eq!(&*data.encoded().unwrap(), b"\xff\xff");
        assert!(data.clear());
        assert_eq!(
            &*data.encoded().unwrap(),
            encode_map(&Map::new()).as_slice()
        );
    }

    #[test]
    fn replacing_undecoded_data_compares_encodings_and_decodes_nothing() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record.clone(), at, Checked::Valid);
        assert!(!data.replace(sample()));
        assert!(!data.is_decoded());
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(t) if t == &record[at..]));

        let mut other = sample();
        other.insert("c".into(), Value::String("x".into()));
        assert!(data.replace(other.clone()));
        assert_eq!(data.get().unwrap(), &other);
        // The encoding made to compare is what the save writes.
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(t) if t == encode_map(&other)));
    }

    #[test]
    fn a_change_after_a_replace_is_saved_too() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        let mut other = sample();
        other.remove("a");
        assert!(data.replace(other.clone()));
        data.get_mut().unwrap().insert("z".into(), Value::Int(9));
        data.changed();
        other.insert("z".into(), Value::Int(9));
        assert_eq!(decode_map(&data.encoded().unwrap()).unwrap(), other);
    }

    #[test]
    fn replacing_decoded_data_compares_the_maps() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        data.get().unwrap();
        assert!(!data.replace(sample()));
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(_)));
        assert!(data.replace(Map::new()));
        assert_eq!(
            &*data.encoded().unwrap(),
            encode_map(&Map::new()).as_slice()
        );
        let mut new = Data::new();
        assert!(!new.replace(Map::new()));
        assert!(new.replace(sample()));
        assert_eq!(decode_map(&new.encoded().unwrap()).unwrap(), sample());
    }

    #[test]
    fn the_map_is_taken_decoded_or_not() {
        let (record, at) = stored(&sample());
        let undecoded = Data::loaded(record.clone(), at, Checked::Valid);
        assert_eq!(undecoded.into_map().unwrap(), sample());
        let decoded = Data::loaded(record, at, Checked::Valid);
        decoded.get().unwrap();
        assert_eq!(decoded.into_map().unwrap(), sample());
        assert_eq!(Data::new().into_map().unwrap(), Map::new());
        let bad = Data::loaded(IVec::from(b"head\xff".to_vec()), 4, Checked::Valid);
        assert!(bad.into_map().is_err());
    }

    #[test]
    fn a_new_session_encodes_its_map() {
        let mut data = Data::new();
        assert!(data.is_decoded());
        data.get_mut().unwrap().insert("k".into(), Value::Null);
        data.changed();
        let tokens = data.encoded().unwrap().into_owned();
        data.saved(IVec::from(tokens.clone()), 0);
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(t) if t == tokens.as_slice()));
    }

    #[test]
    fn one_key_is_read_and_changed_without_decoding_the_others() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        assert_eq!(data.value("a").unwrap().as_deref(), Some(&Value::Int(1)));
        assert_eq!(data.value("zz").unwrap(), None);
        // The same value again is no change.
        assert!(!data.set("a", Value::Int(1)).unwrap());
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(_)));
        assert!(data.set("a", Value::Int(2)).unwrap());
        assert!(data.set("c", Value::Bool(true)).unwrap());
        assert!(!data.set("c", Value::Bool(true)).unwrap());
        assert_eq!(
            data.remove("b").unwrap(),
            Some(Value::List(vec![Value::Null]))
        );
        assert_eq!(data.remove("b").unwrap(), None);
        assert_eq!(data.remove("zz").unwrap(), None);
        assert_eq!(data.value("a").unwrap().as_deref(), Some(&Value::Int(2)));
        assert_eq!(data.value("b").unwrap(), None);
        assert!(!data.is_decoded());

        let mut expected = Map::new();
        expected.insert("a".into(), Value::Int(2));
        expected.insert("c".into(), Value::Bool(true));
        let tokens = data.encoded().unwrap().into_owned();
        assert_eq!(tokens, encode_map(&expected));
        assert!(!data.is_decoded());
        // A full read sees the changes, and the changes after it go to the map.
        assert_eq!(data.get().unwrap(), &expected);
        assert!(data.set("d", Value::Null).unwrap());
        expected.insert("d".into(), Value::Null);
        assert_eq!(data.encoded().unwrap().into_owned(), encode_map(&expected));
        data.saved(IVec::from(encode_map(&expected)), 0);
        assert!(matches!(data.encoded().unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn repeated_one_key_reads_end_in_one_whole_decode() {
        let (record, at) = stored(&sample());
        let data = Data::loaded(record, at, Checked::Valid);
        for _ in 0..LOOKUPS_BEFORE_DECODE {
            assert_eq!(data.value("a").unwrap().as_deref(), Some(&Value::Int(1)));
            assert!(!data.is_decoded());
        }
        let next = data.value("b").unwrap();
        assert!(matches!(next, Some(Cow::Borrowed(Value::List(_)))));
        assert!(data.is_decoded());
        // Reads of pending changes are not decodes, and do not count.
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        data.set("z", Value::Null).unwrap();
        for _ in 0..10 {
            assert_eq!(data.value("z").unwrap().as_deref(), Some(&Value::Null));
        }
        assert!(!data.is_decoded());
    }

    #[test]
    fn a_replace_after_a_change_compares_with_the_changed_data() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        assert!(data.set("a", Value::Int(5)).unwrap());
        let mut changed = sample();
        changed.insert("a".into(), Value::Int(5));
        assert!(!data.replace(changed.clone()));
        assert_eq!(data.encoded().unwrap().into_owned(), encode_map(&changed));
        assert!(data.replace(sample()));
        assert_eq!(data.into_map().unwrap(), sample());
    }

    #[test]
    fn changes_over_unreadable_tokens_fail_the_save_instead_of_vanishing() {
        // Cannot come from a load (the check refuses it). The key sorts before the damage, so
        // its change is accepted; the save must then fail, not write the old tokens.
        let mut bytes = encode_map(&sample());
        let cut = bytes.len() - 1;
        bytes.truncate(cut);
        let mut record = b"head".to_vec();
        record.extend(bytes);
        let mut data = Data::loaded(IVec::from(record), 4, Checked::Valid);
        assert!(data.set("a", Value::Int(7)).unwrap());
        assert!(data.encoded().is_err());
        assert!(data.get().is_err());
        assert!(data.encoded().is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(String, Value),
        Remove(String),
        Read(String),
        ReadAll,
        Save,
        Clear,
        Replace(Map),
        /// `mark_changed`: no change to the content.
        Changed,
        /// A save that settled the data and then failed (a conflict, say): nothing stored.
        FailedSave,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let key = "[a-d]{0,2}";
        prop_oneof![
            4 => (key, crate::value::arb_value()).prop_map(|(k, v)| Op::Set(k, v)),
            2 => key.prop_map(Op::Remove),
            2 => key.prop_map(Op::Read),
            1 => Just(Op::ReadAll),
            1 => Just(Op::Save),
            1 => Just(Op::Clear),
            1 => proptest::collection::btree_map(key, crate::value::arb_value(), 0..3)
                .prop_map(Op::Replace),
            1 => Just(Op::Changed),
            1 => Just(Op::FailedSave),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 500,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Any sequence of reads, changes and saves agrees with a plain map, whether the data
        /// was decoded or not, a save writes exactly that map's encoding, and the data holds
        /// what is stored exactly when that map is the one last saved.
        #[test]
        fn data_behaves_as_a_plain_map(
            start in proptest::collection::btree_map("[a-d]{0,2}", crate::value::arb_value(), 0..5),
            ops in proptest::collection::vec(op(), 0..12),
            decoded_at_load in proptest::prelude::any::<bool>(),
        ) {
            let (record, at) = stored(&start);
            // As a load leaves it: not decoded, or decoded (as a load decodes records whose keys
            // are out of order; these tokens are in sessdb's own order).
            let checked = if decoded_at_load {
                Checked::Decoded(start.clone())
            } else {
                Checked::Valid
            };
            let mut data = Data::loaded(record, at, checked);
            let mut saved = start.clone();
            let mut model = start;
            let enc = |v: &Value| encode_map(&Map::from([(String::new(), v.clone())]));
            for op in ops {
                match op {
                    Op::Set(k, v) => {
                        let change = !model.get(&k).is_some_and(|old| old.same(&v));
                        proptest::prop_assert_eq!(data.set(&k, v.clone()).unwrap(), change);
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        let got = data.remove(&k).unwrap();
                        proptest::prop_assert_eq!(got.as_ref().map(enc), model.remove(&k).as_ref().map(enc));
                    }
                    Op::Read(k) => {
                        let got = data.value(&k).unwrap();
                        proptest::prop_assert_eq!(got.as_deref().map(enc), model.get(&k).map(enc));
                    }
                    Op::ReadAll => {
                        proptest::prop_assert_eq!(encode_map(data.get().unwrap()), encode_map(&model));
                    }
                    Op::Save => {
                        proptest::prop_assert_eq!(data.settle(), same_map(&model, &saved));
                        if same_map(&model, &saved) {
                            // The stored tokens themselves, not an encoding of the same.
                            let kept = matches!(
                                data.encoded(),
                                Ok(Cow::Borrowed(t)) if Some(t) == data.tokens()
                            );
                            proptest::prop_assert!(kept);
                        }
                        let tokens = data.encoded().unwrap().into_owned();
                        proptest::prop_assert_eq!(&tokens, &encode_map(&model));
                        data.saved(IVec::from(tokens), 0);
                        saved = model.clone();
                    }
                    Op::Clear => {
                        proptest::prop_assert_eq!(data.clear(), !model.is_empty());
                        model.clear();
                    }
                    Op::Replace(map) => {
                        proptest::prop_assert_eq!(data.replace(map.clone()), !same_map(&model, &map));
                        model = map;
                    }
                    Op::Changed => data.changed(),
                    Op::FailedSave => {
                        proptest::prop_assert_eq!(data.settle(), same_map(&model, &saved));
                    }
                }
                proptest::prop_assert_eq!(data.encoded().unwrap().into_owned(), encode_map(&model));
                proptest::prop_assert_eq!(data.holds_stored(), same_map(&model, &saved));
            }
            proptest::prop_assert_eq!(data.encoded().unwrap().into_owned(), encode_map(&model));
            proptest::prop_assert_eq!(encode_map(&data.into_map().unwrap()), encode_map(&model));
        }
    }
}
