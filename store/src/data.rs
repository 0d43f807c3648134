//! A session's data, decoded on first use: a loaded session keeps its stored record's data
//! tokens (checked at load by `value::check_map`, so the decode cannot fail) and decodes them
//! once, when something reads or changes the data. A save of data that did not change writes
//! those tokens back as they were.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use sled::IVec;

use crate::value::{decode_map, encode_map, same_map, Checked, Value, ValueError};

/// A session's data map.
pub(crate) type Map = BTreeMap<String, Value>;

/// What readers see of data that could not be decoded (which the check at load rules out).
static EMPTY: Map = BTreeMap::new();

/// The data of one session.
pub(crate) struct Data {
    /// The stored record and the offset of its data tokens; `None` until the session is saved.
    stored: Option<(IVec, usize)>,
    /// The decoded data. Unset only while the data is `stored`'s tokens, not decoded yet.
    /// A `OnceLock` (not a `OnceCell`) so that `Session` stays `Sync`.
    map: OnceLock<Result<Map, ValueError>>,
    /// The map may differ from the stored tokens: a save encodes it.
    changed: bool,
    /// The map's encoding, when [`Data::replace`] had to make it to compare; dropped by any
    /// change after.
    encoded: Option<Vec<u8>>,
}

impl Data {
    /// The empty data of a new session.
    pub(crate) fn new() -> Data {
        Data {
            stored: None,
            map: OnceLock::from(Ok(Map::new())),
            changed: true,
            encoded: None,
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
            changed: false,
            encoded: None,
        }
    }

    fn tokens(&self) -> Option<&[u8]> {
        tokens(&self.stored)
    }

    /// The data, decoded on the first call.
    ///
    /// # Errors
    /// Only if the stored tokens do not decode, which the check at load rules out.
    pub(crate) fn get(&self) -> Result<&Map, &ValueError> {
        self.map.get_or_init(|| decode(&self.stored)).as_ref()
    }

    /// The data, decoded if it was not yet.
    ///
    /// # Errors
    /// As for [`Data::get`].
    pub(crate) fn into_map(self) -> Result<Map, ValueError> {
        match self.map.into_inner() {
            Some(map) => map,
            None => decode(&self.stored),
        }
    }

    /// The data, or an empty map if it cannot be decoded (see [`Data::get`]).
    pub(crate) fn get_or_empty(&self) -> &Map {
        self.get().unwrap_or(&EMPTY)
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
        match self.map.get_mut() {
            Some(Ok(map)) => Ok(map),
            Some(Err(e)) => Err(e.clone()),
            None => Err(ValueError("session data was not decoded".into())),
        }
    }

    /// Records that the map was changed, so that a save encodes it. Data that was never decoded
    /// cannot have changed: its stored tokens stay what a save writes.
    pub(crate) fn changed(&mut self) {
        if let Some(Ok(_)) = self.map.get() {
            self.changed = true;
        }
    }

    /// Replaces the whole map. Returns whether the data changed: data not decoded yet is
    /// compared by its encoding (sessdb's own is canonical: keys sorted, one form per value),
    /// so an unchanged replacement decodes nothing and leaves the stored tokens to be saved.
    pub(crate) fn replace(&mut self, map: Map) -> bool {
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
                true
            }
        };
        if had_data {
            self.changed = true;
        }
        had_data
    }

    /// The data tokens a save writes: the stored ones unless the map changed.
    pub(crate) fn encoded(&self) -> Cow<'_, [u8]> {
        if let (true, Some(encoded)) = (self.changed, &self.encoded) {
            return Cow::Borrowed(encoded);
        }
        match (self.changed, self.tokens(), self.map.get()) {
            (false, Some(tokens), _) => Cow::Borrowed(tokens),
            (_, _, Some(Ok(map))) => Cow::Owned(encode_map(map)),
            // Undecodable data (ruled out at load) is never replaced by a save.
            (_, Some(tokens), _) => Cow::Borrowed(tokens),
            (_, None, _) => Cow::Owned(encode_map(&Map::new())),
        }
    }

    /// The data was saved as the tokens at `at` in `record`.
    pub(crate) fn saved(&mut self, record: IVec, at: usize) {
        self.stored = Some((record, at));
        self.changed = false;
        self.encoded = None;
    }

    /// Whether the data has been decoded (or set), for tests.
    #[cfg(test)]
    pub(crate) fn is_decoded(&self) -> bool {
        self.map.get().is_some()
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
        assert!(matches!(data.encoded(), Cow::Borrowed(t) if t == &record[at..]));
        assert_eq!(data.get().unwrap(), &sample());
        assert!(data.is_decoded());
        // Decoded but unchanged: still the stored tokens.
        assert!(matches!(data.encoded(), Cow::Borrowed(_)));
        data.get_mut()
            .unwrap()
            .insert("c".into(), Value::Bool(true));
        data.changed();
        let Cow::Owned(tokens) = data.encoded() else {
            panic!("changed data must be encoded");
        };
        assert_eq!(decode_map(&tokens).unwrap().len(), 3);
    }

    #[test]
    fn changed_before_decoding_is_no_change() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        data.changed();
        assert!(!data.is_decoded());
        assert!(matches!(data.encoded(), Cow::Borrowed(_)));
    }

    #[test]
    fn clear_reports_whether_there_was_data() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        assert!(data.clear());
        assert!(!data.clear());
        assert_eq!(&*data.encoded(), encode_map(&Map::new()).as_slice());
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
        assert_eq!(&*data.encoded(), b"\xff\xff");
        assert!(data.clear());
        assert_eq!(&*data.encoded(), encode_map(&Map::new()).as_slice());
    }

    #[test]
    fn replacing_undecoded_data_compares_encodings_and_decodes_nothing() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record.clone(), at, Checked::Valid);
        assert!(!data.replace(sample()));
        assert!(!data.is_decoded());
        assert!(matches!(data.encoded(), Cow::Borrowed(t) if t == &record[at..]));

        let mut other = sample();
        other.insert("c".into(), Value::String("x".into()));
        assert!(data.replace(other.clone()));
        assert_eq!(data.get().unwrap(), &other);
        // The encoding made to compare is what the save writes.
        assert!(matches!(data.encoded(), Cow::Borrowed(t) if t == encode_map(&other)));
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
        assert_eq!(decode_map(&data.encoded()).unwrap(), other);
    }

    #[test]
    fn replacing_decoded_data_compares_the_maps() {
        let (record, at) = stored(&sample());
        let mut data = Data::loaded(record, at, Checked::Valid);
        data.get().unwrap();
        assert!(!data.replace(sample()));
        assert!(matches!(data.encoded(), Cow::Borrowed(_)));
        assert!(data.replace(Map::new()));
        assert_eq!(&*data.encoded(), encode_map(&Map::new()).as_slice());
        let mut new = Data::new();
        assert!(!new.replace(Map::new()));
        assert!(new.replace(sample()));
        assert_eq!(decode_map(&new.encoded()).unwrap(), sample());
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
        let tokens = data.encoded().into_owned();
        data.saved(IVec::from(tokens.clone()), 0);
        assert!(matches!(data.encoded(), Cow::Borrowed(t) if t == tokens.as_slice()));
    }
}
