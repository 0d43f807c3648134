//! The self-describing value model of session data, its compact encoding and its JSON form.
//!
//! Values are stored as a flat, pre-order token stream (not a nested enum) so that decoding is
//! iterative: a corrupt or hostile record cannot overflow the stack, whatever its nesting.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The deepest nesting of lists and maps a value may have.
pub const MAX_DEPTH: usize = 64;

/// A session data value: what a session can hold without the application's Rust types.
///
/// Typed access goes through serde ([`Session::get`](crate::Session::get),
/// [`Session::insert`](crate::Session::insert)); this type is what the TUI shows and what the
/// JSON export writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`. A smaller one given as `UInt` is stored as
    /// [`Value::Int`], as it reads back from JSON (and from a typed value): an export imported
    /// again then finds the same session.
    UInt(u64),
    /// A floating point number.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes (exported as `{"$base64": "..."}`).
    Bytes(Vec<u8>),
    /// A list of values.
    List(Vec<Value>),
    /// A map from string keys to values.
    Map(BTreeMap<String, Value>),
}

/// Single-key JSON objects with these keys carry a value JSON has no form for.
const TAGS: [&str; 3] = ["$base64", "$float", "$map"];

/// Why a value could not be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueError(pub(crate) String);

impl ValueError {
    /// The error of [`Value::from_json`] and [`Value::from_plain_json`].
    fn invalid_json(self) -> Error {
        Error::InvalidField {
            field: "JSON value",
            reason: self.0,
        }
    }
}

impl Value {
    /// Converts any serializable value (through its JSON data model). A float that is not
    /// finite, anywhere in `value`, is refused: serde_json would write it as `null`.
    pub(crate) fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
        let json = serde_json::to_value(Finite(value)).map_err(|e| ValueError(e.to_string()))?;
        Value::from_json_inner(&json, MAX_DEPTH, false)
    }

    /// Converts into any deserializable type (through its JSON data model).
    pub(crate) fn to_deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ValueError> {
        serde_json::from_value(self.to_plain_json()).map_err(|e| ValueError(e.to_string()))
    }

    /// The value a JSON value stands for in serde's data model: what
    /// [`Session::insert`](crate::Session::insert) stores for it, without copying the JSON
    /// first. Unlike [`Value::from_json`], `{"$base64": ..}` stays an object.
    ///
    /// ```
    /// use sessdb::Value;
    ///
    /// let json = serde_json::json!({"cart": [1, 2], "$base64": "AA=="});
    /// assert_eq!(Value::from_plain_json(&json)?.to_plain_json(), json);
    /// # Ok::<(), sessdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidField`] (field `JSON value`) when the value nests deeper than
    /// [`MAX_DEPTH`], or holds a number that does not fit in 64 bits (an integer) or a float's
    /// range, which only serde_json's `arbitrary_precision` feature makes.
    pub fn from_plain_json(json: &serde_json::Value) -> Result<Value, Error> {
        Value::from_json_inner(json, MAX_DEPTH, false).map_err(ValueError::invalid_json)
    }

    /// The value in serde's JSON data model: what
    /// [`Session::get::<serde_json::Value>`](crate::Session::get) returns. Bytes become arrays
    /// of numbers and non-finite floats `null`, as serde_json itself writes them; the inverse of
    /// [`Value::from_plain_json`] for every value that came from JSON.
    pub fn to_plain_json(&self) -> serde_json::Value {
        self.to_json_with(false)
    }

    /// [`Value::to_plain_json`], moving the strings and keys instead of copying them.
    pub fn into_plain_json(self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::String(s) => J::String(s),
            Value::List(items) => J::Array(items.into_iter().map(Value::into_plain_json).collect()),
            Value::Map(map) => J::Object(
                map.into_iter()
                    .map(|(k, v)| (k, v.into_plain_json()))
                    .collect(),
            ),
            scalar => scalar.to_json_with(false),
        }
    }

    /// The JSON form used by the export and `--json`: bytes become `{"$base64": "..."}`,
    /// non-finite floats `{"$float": "NaN"}`, and a real one-key map whose key is one of those
    /// tags (or `$map`) is wrapped as `{"$map": {...}}`, so that [`Value::from_json`] restores
    /// every value exactly.
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_with(true)
    }

    /// The inverse of [`Value::to_json`].
    ///
    /// # Errors
    /// [`Error::InvalidField`] (field `JSON value`) when the value nests deeper than
    /// [`MAX_DEPTH`], or holds a number that does not fit in 64 bits (an integer) or a float's
    /// range, which only serde_json's `arbitrary_precision` feature makes.
    pub fn from_json(json: &serde_json::Value) -> Result<Value, Error> {
        Value::from_json_inner(json, MAX_DEPTH, true).map_err(ValueError::invalid_json)
    }

    /// [`Value::from_json`] of a session's whole data map, as the export writes it: the map
    /// itself is one level more, so each of its values may nest [`MAX_DEPTH`] deep.
    pub(crate) fn data_from_json(json: &serde_json::Value) -> Result<Value, String> {
        Value::from_json_inner(json, MAX_DEPTH + 1, true).map_err(|e| e.0)
    }

    fn to_json_with(&self, tagged: bool) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => J::Number(n),
                None if tagged => {
                    let mut m = serde_json::Map::new();
                    m.insert("$float".into(), J::String(f.to_string()));
                    J::Object(m)
                }
                None => J::Null,
            },
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) if tagged => {
                let mut m = serde_json::Map::new();
                let text = base64::engine::general_purpose::STANDARD.encode(b);
                m.insert("$base64".into(), J::String(text));
                J::Object(m)
            }
            Value::Bytes(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
            Value::List(items) => J::Array(items.iter().map(|v| v.to_json_with(tagged)).collect()),
            Value::Map(map) => {
                let object: serde_json::Map<String, J> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json_with(tagged)))
                    .collect();
                // A real map that looks like a tag is escaped, so import reads it as a map.
                if tagged && map.len() == 1 && map.keys().all(|k| TAGS.contains(&k.as_str())) {
                    let mut escaped = serde_json::Map::new();
                    escaped.insert("$map".into(), J::Object(object));
                    J::Object(escaped)
                } else {
                    J::Object(object)
                }
            }
        }
    }

    /// Converts `json`, in which lists and maps may nest `room` deep: a list or a map takes one
    /// level, a scalar (and a tag that stands for one) none, so a value is refused exactly when
    /// its depth would exceed `room`. The recursion is bounded by `room` too.
    fn from_json_inner(
        json: &serde_json::Value,
        room: usize,
        tagged: bool,
    ) -> Result<Value, ValueError> {
        use serde_json::Value as J;
        let inside = || {
            room.checked_sub(1)
                .ok_or_else(|| ValueError(format!("nested deeper than {MAX_DEPTH} levels")))
        };
        let map = |entries: &serde_json::Map<String, J>, room: usize| {
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), Value::from_json_inner(v, room, tagged)?)))
                .collect::<Result<BTreeMap<_, _>, ValueError>>()
        };
        Ok(match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => number(n)?,
            J::String(s) => Value::String(s.clone()),
            J::Array(items) => {
                let room = inside()?;
                Value::List(
                    items
                        .iter()
                        .map(|v| Value::from_json_inner(v, room, tagged))
                        .collect::<Result<_, _>>()?,
                )
            }
            J::Object(entries) => {
                if tagged && entries.len() == 1 {
                    if let Some(J::String(text)) = entries.get("$base64") {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .map_err(|e| ValueError(format!("bad $base64 value: {e}")))?;
                        return Ok(Value::Bytes(bytes));
                    }
                    if let Some(J::Object(inner)) = entries.get("$map") {
                        return Ok(Value::Map(map(inner, inside()?)?));
                    }
                    if let Some(J::String(text)) = entries.get("$float") {
                        let f = text
                            .parse::<f64>()
                            .map_err(|e| ValueError(format!("bad $float value: {e}")))?;
                        return Ok(Value::Float(f));
                    }
                }
                Value::Map(map(entries, inside()?)?)
            }
        })
    }

    /// Whether `self` and `other` are the same value as stored: floats compare by their bits,
    /// so `-0.0` differs from `0.0` and a NaN is the same as itself (the derived `==` says the
    /// opposite of both). What decides whether a change is a change.
    pub(crate) fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Value::Map(a), Value::Map(b)) => same_map(a, b),
            (a, b) => a == b,
        }
    }

    /// Whether the nesting is deeper than `limit` (a scalar's depth is 0). It looks no deeper
    /// than `limit + 1` levels, so a value nested far too deep (built in code: JSON and the
    /// encoding stop at the limit) is refused without exhausting the stack.
    pub(crate) fn deeper_than(&self, limit: usize) -> bool {
        match self {
            Value::List(items) => limit == 0 || items.iter().any(|v| v.deeper_than(limit - 1)),
            Value::Map(map) => limit == 0 || map.values().any(|v| v.deeper_than(limit - 1)),
            _ => false,
        }
    }

    /// The value as it is stored: an unsigned integer that fits `i64` becomes [`Value::Int`],
    /// at any depth. Call on a value no deeper than [`MAX_DEPTH`].
    pub(crate) fn normalize(&mut self) {
        match self {
            Value::UInt(u) => {
                if let Ok(i) = i64::try_from(*u) {
                    *self = Value::Int(i);
                }
            }
            Value::List(items) => items.iter_mut().for_each(Value::normalize),
            Value::Map(map) => map.values_mut().for_each(Value::normalize),
            _ => {}
        }
    }

    /// The nesting depth (a scalar is 0).
    #[cfg(test)]
    pub(crate) fn depth(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Map(map) => 1 + map.values().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        }
    }
}

// ---- typed values: serde's data model through JSON's, without losing a float ----
//
// serde_json's value serializer writes a NaN or an infinity as `null`, silently: the value then
// reads back as something else, or not at all. `Finite` runs a value's `Serialize` through a
// serializer that forwards every call to serde_json's and refuses a non-finite float first.
// Each nested value is handed on wrapped in `Finite` again, so whatever serializer serde_json
// uses inside (its value serializer for elements, fields and variants, its key serializer for
// map keys) is checked the same way.

/// Why a typed value holding a NaN or an infinity is refused.
pub(crate) const NOT_FINITE: &str = "a float that is not finite (NaN or infinity) has no form \
    in JSON's data model, which typed values go through: store it with \
    insert_value(Value::Float(..)) and read it with get_value";

/// A value whose serialization refuses non-finite floats.
struct Finite<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Finite<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(FiniteSerializer(serializer))
    }
}

/// Forwards to `S`, refusing non-finite floats and wrapping nested values in [`Finite`].
struct FiniteSerializer<S>(S);

/// A compound serializer of `S`, its elements, fields, keys and values wrapped in [`Finite`].
struct FiniteCompound<C>(C);

fn not_finite<E: serde::ser::Error>() -> E {
    E::custom(NOT_FINITE)
}

/// Forwards scalar `serialize_*` methods unchanged.
macro_rules! forward_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.0.$method(v)
        }
    )*};
}

impl<S: serde::Serializer> serde::Serializer for FiniteSerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = FiniteCompound<S::SerializeSeq>;
    type SerializeTuple = FiniteCompound<S::SerializeTuple>;
    type SerializeTupleStruct = FiniteCompound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = FiniteCompound<S::SerializeTupleVariant>;
    type SerializeMap = FiniteCompound<S::SerializeMap>;
    type SerializeStruct = FiniteCompound<S::SerializeStruct>;
    type SerializeStructVariant = FiniteCompound<S::SerializeStructVariant>;

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        if !v.is_finite() {
            return Err(not_finite());
        }
        self.0.serialize_f32(v)
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        if !v.is_finite() {
            return Err(not_finite());
        }
        self.0.serialize_f64(v)
    }

    forward_scalars! {
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Finite(value))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Finite(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Finite(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(FiniteCompound)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(FiniteCompound)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(FiniteCompound)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(FiniteCompound)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(FiniteCompound)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(FiniteCompound)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(FiniteCompound)
    }

    // `collect_seq` and `collect_map` keep serde's defaults, which go through `serialize_seq`
    // and `serialize_map` above: `S`'s own would hand the items to `S` unchecked.

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Implements the compound serializer traits whose one method takes a value and nothing else.
macro_rules! finite_compound {
    ($($trait:ident::$method:ident),* $(,)?) => {$(
        impl<C: serde::ser::$trait> serde::ser::$trait for FiniteCompound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
                self.0.$method(&Finite(value))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    )*};
}

finite_compound! {
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
}

impl<C: serde::ser::SerializeStruct> serde::ser::SerializeStruct for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(key, &Finite(value))
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.0.skip_field(key)
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: serde::ser::SerializeStructVariant> serde::ser::SerializeStructVariant
    for FiniteCompound<C>
{
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(key, &Finite(value))
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.0.skip_field(key)
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: serde::ser::SerializeMap> serde::ser::SerializeMap for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.0.serialize_key(&Finite(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Finite(value))
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), C::Error> {
        self.0.serialize_entry(&Finite(key), &Finite(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

/// Whether two maps hold the same keys and the [same](Value::same) values.
pub(crate) fn same_map(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && va.same(vb))
}

/// One token of the flat encoding. Containers give their element count; their elements follow.
/// Strings and bytes borrow from the value being encoded or from the bytes being decoded, so
/// neither copies a string it does not keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum TokenRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    List(u32),
    Map(u32),
}

/// Encodes a data map as a token stream.
pub(crate) fn encode_map(map: &BTreeMap<String, Value>) -> Vec<u8> {
    let mut tokens = Vec::with_capacity(map.len() * 2 + 1);
    tokens.push(TokenRef::Map(len_u32(map.len())));
    for (k, v) in map {
        tokens.push(TokenRef::Str(k));
        push_tokens(v, &mut tokens);
    }
    // Sized up front, so the encoding does not grow its buffer by doubling.
    let capacity = 10 + encoded_len_bound(&tokens);
    // Serializing plain enums into a Vec cannot fail.
    postcard::to_extend(&tokens, Vec::with_capacity(capacity)).unwrap_or_default()
}

/// A buffer capacity for the encoding of `tokens`, at or a little above its length: a number's
/// varint takes at most 10 bytes and its token's tag one more, a string or bytes their length,
/// their length's varint (5 bytes below 32 GiB) and the tag.
fn encoded_len_bound(tokens: &[TokenRef<'_>]) -> usize {
    tokens
        .iter()
        .map(|t| match t {
            TokenRef::Str(s) => 6 + s.len(),
            TokenRef::Bytes(b) => 6 + b.len(),
            _ => 11,
        })
        .sum()
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn push_tokens<'a>(v: &'a Value, out: &mut Vec<TokenRef<'a>>) {
    match v {
        Value::Null => out.push(TokenRef::Null),
        Value::Bool(b) => out.push(TokenRef::Bool(*b)),
        Value::Int(i) => out.push(TokenRef::Int(*i)),
        Value::UInt(u) => out.push(TokenRef::UInt(*u)),
        Value::Float(f) => out.push(TokenRef::Float(*f)),
        Value::String(s) => out.push(TokenRef::Str(s)),
        Value::Bytes(b) => out.push(TokenRef::Bytes(b)),
        Value::List(items) => {
            out.push(TokenRef::List(len_u32(items.len())));
            for item in items {
                push_tokens(item, out);
            }
        }
        Value::Map(map) => {
            out.push(TokenRef::Map(len_u32(map.len())));
            for (k, v) in map {
                out.push(TokenRef::Str(k));
                push_tokens(v, out);
            }
        }
    }
}

// ---- decoding: one structural walk, two consumers ----
//
// A token stream is postcard's encoding of a sequence of tokens: the token count, then the
// tokens. `walk` reads it one borrowed token at a time and checks everything about its shape
// (the token count, a map at the root, string keys, element counts, the depth limit) with a
// fixed array for its stack: it allocates nothing and never recurses. `decode_map` builds the
// values from its events; `check_map` only watches the keys. Both run the same walk, so a
// stream the check accepts is one the decoder accepts: the check is what lets a session defer
// decoding its data until first use without the decode ever failing.

/// What [`walk`] reports, in order: the root map opens first and closes last.
trait Events<'a> {
    /// A container opens; its elements (or key/value pairs) follow.
    fn open(&mut self, map: bool, len: u32);
    /// A map key (the map's next value follows). `ascending` is whether it sorts after the
    /// previous key of the same map.
    fn key(&mut self, key: &'a str, ascending: bool);
    /// A scalar value.
    fn scalar(&mut self, token: TokenRef<'a>) -> Result<(), ValueError>;
    /// The innermost open container is complete.
    fn close(&mut self) -> Result<(), ValueError>;
}

/// One open container during [`walk`].
#[derive(Clone, Copy)]
struct Level<'a> {
    /// Elements (lists) or entries (maps) still to come.
    left: u32,
    map: bool,
    /// A map has read a key and waits for its value.
    has_key: bool,
    /// The map's previous key, to tell whether its keys ascend.
    last_key: Option<&'a str>,
}

impl Level<'_> {
    const EMPTY: Level<'static> = Level {
        left: 0,
        map: false,
        has_key: false,
        last_key: None,
    };

    fn is_complete(&self) -> bool {
        self.left == 0 && !self.has_key
    }
}

fn bad_encoding(e: postcard::Error) -> ValueError {
    ValueError(format!("bad data encoding: {e}"))
}

/// Walks a token stream written by [`encode_map`], iteratively and without allocating.
fn walk<'a>(bytes: &'a [u8], events: &mut impl Events<'a>) -> Result<(), ValueError> {
    // The count is read as postcard reads a sequence's length; bytes after the last token are
    // not looked at, as postcard's `from_bytes` does not.
    let (count, mut rest) = postcard::take_from_bytes::<usize>(bytes).map_err(bad_encoding)?;
    let mut left = count;
    let mut next = || -> Result<Option<TokenRef<'a>>, ValueError> {
        if left == 0 {
            return Ok(None);
        }
        left -= 1;
        let (token, after) =
            postcard::take_from_bytes::<TokenRef<'a>>(rest).map_err(bad_encoding)?;
        rest = after;
        Ok(Some(token))
    };
    let Some(TokenRef::Map(n)) = next()? else {
        return Err(ValueError("data does not start with a map".into()));
    };
    // The root map and at most MAX_DEPTH containers inside it.
    let mut stack = [Level::EMPTY; MAX_DEPTH + 1];
    stack[0] = Level {
        left: n,
        map: true,
        ..Level::EMPTY
    };
    let mut depth = 1;
    events.open(true, n);
    loop {
        // Close every container that is complete.
        while stack[depth - 1].is_complete() {
            events.close()?;
            depth -= 1;
            if depth == 0 {
                return match next()? {
                    None => Ok(()),
                    Some(_) => Err(ValueError("trailing tokens after data".into())),
                };
            }
        }
        let Some(token) = next()? else {
            return Err(ValueError("data ends in the middle of a value".into()));
        };
        let top = &mut stack[depth - 1];
        // A map expecting a key takes a string token as the key.
        if top.map && !top.has_key {
            let TokenRef::Str(key) = token else {
                return Err(ValueError("map key is not a string".into()));
            };
            let ascending = top.last_key.is_none_or(|last| key > last);
            top.last_key = Some(key);
            top.has_key = true;
            events.key(key, ascending);
            continue;
        }
        // The value counts for its container now; a nested container is complete later.
        top.left -= 1;
        top.has_key = false;
        match token {
            TokenRef::List(n) | TokenRef::Map(n) => {
                let Some(slot) = stack.get_mut(depth) else {
                    return Err(ValueError(format!(
                        "data nested deeper than {MAX_DEPTH} levels"
                    )));
                };
                let map = matches!(token, TokenRef::Map(_));
                *slot = Level {
                    left: n,
                    map,
                    ..Level::EMPTY
                };
                depth += 1;
                events.open(map, n);
            }
            scalar => events.scalar(scalar)?,
        }
    }
}

/// A container being filled while decoding.
enum Frame {
    List(Vec<Value>),
    Map(BTreeMap<String, Value>, Option<String>),
}

/// Builds the values from [`walk`]'s events.
#[derive(Default)]
struct Build {
    stack: Vec<Frame>,
    root: Option<BTreeMap<String, Value>>,
}

impl Build {
    fn attach(&mut self, value: Value) -> Result<(), ValueError> {
        match self.stack.last_mut() {
            Some(Frame::List(items)) => items.push(value),
            Some(Frame::Map(map, key)) => {
                let Some(k) = key.take() else {
                    return Err(ValueError("map value without a key".into()));
                };
                if map.insert(k, value).is_some() {
                    return Err(ValueError("duplicate map key".into()));
                }
            }
            None => return Err(ValueError("internal decoder state error".into())),
        }
        Ok(())
    }
}

impl<'a> Events<'a> for Build {
    fn open(&mut self, map: bool, _len: u32) {
        // No capacity from the count: a corrupt count must not allocate.
        self.stack.push(if map {
            Frame::Map(BTreeMap::new(), None)
        } else {
            Frame::List(Vec::new())
        });
    }

    fn key(&mut self, key: &'a str, _ascending: bool) {
        if let Some(Frame::Map(_, slot)) = self.stack.last_mut() {
            *slot = Some(key.to_string());
        }
    }

    fn scalar(&mut self, token: TokenRef<'a>) -> Result<(), ValueError> {
        let value = match token {
            TokenRef::Null => Value::Null,
            TokenRef::Bool(b) => Value::Bool(b),
            TokenRef::Int(i) => Value::Int(i),
            TokenRef::UInt(u) => Value::UInt(u),
            TokenRef::Float(f) => Value::Float(f),
            TokenRef::Str(s) => Value::String(s.to_string()),
            TokenRef::Bytes(b) => Value::Bytes(b.to_vec()),
            TokenRef::List(_) | TokenRef::Map(_) => {
                return Err(ValueError("internal decoder state error".into()))
            }
        };
        self.attach(value)
    }

    fn close(&mut self) -> Result<(), ValueError> {
        let value = match self.stack.pop() {
            Some(Frame::List(items)) => Value::List(items),
            Some(Frame::Map(map, _)) => Value::Map(map),
            None => return Err(ValueError("internal decoder state error".into())),
        };
        match (value, self.stack.is_empty()) {
            (Value::Map(map), true) => {
                self.root = Some(map);
                Ok(())
            }
            (value, false) => self.attach(value),
            (_, true) => Err(ValueError("internal decoder state error".into())),
        }
    }
}

/// Decodes a token stream written by [`encode_map`], iteratively.
pub(crate) fn decode_map(bytes: &[u8]) -> Result<BTreeMap<String, Value>, ValueError> {
    let mut build = Build::default();
    walk(bytes, &mut build)?;
    build
        .root
        .ok_or_else(|| ValueError("internal decoder state error".into()))
}

/// What [`check_map`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Checked {
    /// [`decode_map`] will succeed on these bytes.
    Valid,
    /// Some map's keys were not in ascending order (sessdb always writes them sorted), so
    /// duplicates could only be ruled out by decoding: here is the decoded map.
    Decoded(BTreeMap<String, Value>),
}

/// Notes whether every map's keys ascend: then no key repeats.
struct Keys {
    ascending: bool,
}

impl<'a> Events<'a> for Keys {
    fn open(&mut self, _map: bool, _len: u32) {}

    fn key(&mut self, _key: &'a str, ascending: bool) {
        self.ascending &= ascending;
    }

    fn scalar(&mut self, _token: TokenRef<'a>) -> Result<(), ValueError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), ValueError> {
        Ok(())
    }
}

/// Checks a token stream without building its values: `Ok` exactly when [`decode_map`] would
/// succeed. For sessdb's own encoding (sorted keys) it allocates nothing; a stream with keys out
/// of order is decoded to rule out a repeated key.
pub(crate) fn check_map(bytes: &[u8]) -> Result<Checked, ValueError> {
    let mut keys = Keys { ascending: true };
    walk(bytes, &mut keys)?;
    if keys.ascending {
        Ok(Checked::Valid)
    } else {
        decode_map(bytes).map(Checked::Decoded)
    }
}

// ---- one entry at a time: reads and changes that leave the other entries encoded ----
//
// sessdb writes a map's keys in ascending order, each once, and a loaded session's stored data
// was checked at load. Over such a stream a root entry (its key token and its value's tokens) is
// found by counting tokens, without building any value: `lookup` decodes the one value asked
// for, and `splice` copies every unchanged entry's bytes as they are and encodes only the
// changed ones. Both refuse keys out of order, where neither would be correct.

/// One entry of a stream's root map, as encoded.
struct RawEntry<'a> {
    key: &'a str,
    /// The key's token and the value's tokens.
    bytes: &'a [u8],
    /// How many tokens `bytes` holds.
    tokens: usize,
}

/// The entries of a stream's root map, in order, found by counting tokens.
struct RootEntries<'a> {
    rest: &'a [u8],
    /// Tokens of the stream still to come.
    tokens_left: usize,
    /// Root entries still to come.
    entries_left: u32,
    last_key: Option<&'a str>,
}

impl<'a> RootEntries<'a> {
    fn new(bytes: &'a [u8]) -> Result<RootEntries<'a>, ValueError> {
        let (count, rest) = postcard::take_from_bytes::<usize>(bytes).map_err(bad_encoding)?;
        let mut entries = RootEntries {
            rest,
            tokens_left: count,
            entries_left: 0,
            last_key: None,
        };
        let TokenRef::Map(n) = entries.token()? else {
            return Err(ValueError("data does not start with a map".into()));
        };
        entries.entries_left = n;
        Ok(entries)
    }

    fn token(&mut self) -> Result<TokenRef<'a>, ValueError> {
        if self.tokens_left == 0 {
            return Err(ValueError("data ends in the middle of a value".into()));
        }
        self.tokens_left -= 1;
        let (token, rest) =
            postcard::take_from_bytes::<TokenRef<'a>>(self.rest).map_err(bad_encoding)?;
        self.rest = rest;
        Ok(token)
    }

    fn entry(&mut self) -> Result<RawEntry<'a>, ValueError> {
        let start = self.rest;
        let TokenRef::Str(key) = self.token()? else {
            return Err(ValueError("map key is not a string".into()));
        };
        if self.last_key.is_some_and(|last| key <= last) {
            return Err(ValueError("map keys out of order".into()));
        }
        self.last_key = Some(key);
        // Tokens of the value still to read: its first, then each container's elements (a
        // map's entries are two tokens each).
        let mut pending: u64 = 1;
        let mut tokens = 1;
        while pending > 0 {
            pending -= 1;
            tokens += 1;
            match self.token()? {
                TokenRef::List(n) => pending = pending.saturating_add(u64::from(n)),
                TokenRef::Map(n) => pending = pending.saturating_add(2 * u64::from(n)),
                _ => {}
            }
        }
        let used = start.len() - self.rest.len();
        Ok(RawEntry {
            key,
            bytes: &start[..used],
            tokens,
        })
    }
}

impl<'a> Iterator for RootEntries<'a> {
    type Item = Result<RawEntry<'a>, ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.entries_left == 0 {
            if self.tokens_left > 0 {
                // As `walk` refuses them: the stream is not what it seems.
                self.tokens_left = 0;
                return Some(Err(ValueError("trailing tokens after data".into())));
            }
            return None;
        }
        self.entries_left -= 1;
        let entry = self.entry();
        if entry.is_err() {
            self.entries_left = 0;
        }
        Some(entry)
    }
}

/// The value under `key` in a token stream whose keys ascend (sessdb's own encoding), decoding
/// that value only.
pub(crate) fn lookup(bytes: &[u8], key: &str) -> Result<Option<Value>, ValueError> {
    for entry in RootEntries::new(bytes)? {
        let entry = entry?;
        match entry.key.cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return decode_entry(&entry).map(Some),
            std::cmp::Ordering::Greater => break,
        }
    }
    Ok(None)
}

/// The value of one entry, decoded as a map of that entry alone.
fn decode_entry(entry: &RawEntry<'_>) -> Result<Value, ValueError> {
    let mut bytes = Vec::with_capacity(entry.bytes.len() + 16);
    bytes = postcard::to_extend(&(entry.tokens + 1), bytes).map_err(bad_encoding)?;
    bytes = postcard::to_extend(&TokenRef::Map(1), bytes).map_err(bad_encoding)?;
    bytes.extend_from_slice(entry.bytes);
    decode_map(&bytes)?
        .into_values()
        .next()
        .ok_or_else(|| ValueError("internal decoder state error".into()))
}

/// A token stream whose keys ascend, with `changes` applied: a `Some` sets its key, a `None`
/// removes it. Unchanged entries are copied as stored, so only the changed values are encoded;
/// the bytes are those [`encode_map`] writes for the changed map.
pub(crate) fn splice(
    bytes: &[u8],
    changes: &BTreeMap<String, Option<Value>>,
) -> Result<Vec<u8>, ValueError> {
    /// A piece of the new stream: an entry's stored bytes, or a range of `fresh`.
    enum Piece<'a> {
        Stored(&'a [u8]),
        Fresh(std::ops::Range<usize>),
    }
    /// Adds the tokens of a changed entry, unless it is a removal.
    fn add<'v>(
        key: &'v str,
        value: &'v Option<Value>,
        fresh: &mut Vec<TokenRef<'v>>,
        pieces: &mut Vec<Piece<'_>>,
    ) {
        if let Some(value) = value {
            let start = fresh.len();
            fresh.push(TokenRef::Str(key));
            push_tokens(value, fresh);
            pieces.push(Piece::Fresh(start..fresh.len()));
        }
    }
    let mut fresh = Vec::new();
    let mut pieces = Vec::new();
    let mut stored_tokens = 0;
    let mut changes = changes.iter().peekable();
    for entry in RootEntries::new(bytes)? {
        let entry = entry?;
        while let Some((key, value)) = changes.next_if(|(k, _)| k.as_str() < entry.key) {
            add(key, value, &mut fresh, &mut pieces);
        }
        match changes.next_if(|(k, _)| k.as_str() == entry.key) {
            Some((key, value)) => add(key, value, &mut fresh, &mut pieces),
            None => {
                stored_tokens += entry.tokens;
                pieces.push(Piece::Stored(entry.bytes));
            }
        }
    }
    for (key, value) in changes {
        add(key, value, &mut fresh, &mut pieces);
    }
    let mut out = Vec::with_capacity(bytes.len() + encoded_len_bound(&fresh) + 10);
    out = postcard::to_extend(&(1 + stored_tokens + fresh.len()), out).map_err(bad_encoding)?;
    out = postcard::to_extend(&TokenRef::Map(len_u32(pieces.len())), out).map_err(bad_encoding)?;
    for piece in pieces {
        match piece {
            Piece::Stored(bytes) => out.extend_from_slice(bytes),
            Piece::Fresh(range) => {
                for token in &fresh[range] {
                    out = postcard::to_extend(token, out).map_err(bad_encoding)?;
                }
            }
        }
    }
    Ok(out)
}

/// Any value, with short map keys so that generated changes often meet stored keys.
#[cfg(test)]
pub(crate) fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<f64>().prop_map(Value::Float),
        "[a-c]{0,3}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
    ]
    .prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::btree_map("[a-c]{0,2}", inner, 0..4).prop_map(Value::Map),
        ]
    })
}

/// A JSON number as a value: an integer as `Int` or `UInt`, any other number as `Float`.
/// serde_json's default build only makes numbers that fit; with its `arbitrary_precision`
/// feature (which any crate of an application can turn on) a number keeps its text, and one
/// that does not fit is refused rather than changed: an integer beyond 64 bits would become
/// an inexact float, and one beyond a float's range infinity, written back as `null`.
fn number(n: &serde_json::Number) -> Result<Value, ValueError> {
    // Every number serde_json's default build makes, without building its text.
    if let Some(i) = n.as_i64() {
        return Ok(Value::Int(i));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Value::UInt(u));
    }
    if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.is_finite()) {
        return Ok(Value::Float(f));
    }
    number_from(&n.to_string(), None, None, n.as_f64())
}

/// [`number`], from the number's text and its readings.
fn number_from(
    text: &str,
    int: Option<i64>,
    uint: Option<u64>,
    float: Option<f64>,
) -> Result<Value, ValueError> {
    if let Some(i) = int {
        return Ok(Value::Int(i));
    }
    if let Some(u) = uint {
        return Ok(Value::UInt(u));
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError(format!(
            "the integer {} does not fit in 64 bits",
            shorten(text)
        )));
    }
    match float {
        Some(f) if f.is_finite() => Ok(Value::Float(f)),
        _ => Err(ValueError(format!(
            "the number {} is beyond a 64-bit float's range",
            shorten(text)
        ))),
    }
}

/// A number's text as an error message quotes it: at most 40 characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json's `arbitrary_precision` feature hands over (the text kept, the readings
    /// serde_json gives it): numbers that fit are read as ever; an integer beyond 64 bits and a
    /// number beyond a float's range are refused, naming the number, where they became an
    /// inexact float and `null`.
    #[test]
    fn numbers_that_do_not_fit_are_refused_not_changed() {
        assert_eq!(
            number_from("-5", Some(-5), None, Some(-5.0)).unwrap(),
            Value::Int(-5)
        );
        assert_eq!(
            number_from("18446744073709551615", None, Some(u64::MAX), Some(1.8e19)).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            number_from("0.10", None, None, Some(0.1)).unwrap(),
            Value::Float(0.1)
        );
        assert_eq!(
            number_from("1E2", None, None, Some(100.0)).unwrap(),
            Value::Float(100.0)
        );
        let e = number_from(
            "-170141183460469231731687303715884105728",
            None,
            None,
            Some(-1.7e38),
        )
        .unwrap_err();
        assert_eq!(
            e.0,
            "the integer -170141183460469231731687303715884105728 does not fit in 64 bits"
        );
        let e = number_from("1e400", None, None, Some(f64::INFINITY)).unwrap_err();
        assert_eq!(e.0, "the number 1e400 is beyond a 64-bit float's range");
        let long = "9".repeat(100);
        let e = number_from(&long, None, None, Some(1e100)).unwrap_err();
        assert!(e.0.contains(&format!("{}…", "9".repeat(40))), "{}", e.0);
        assert!(!e.0.contains(&"9".repeat(41)), "{}", e.0);
        // serde_json's default build: every number it makes converts.
        for json in ["0", "-1", "18446744073709551615", "1.5", "1e300", "-0.0"] {
            let n: serde_json::Number = serde_json::from_str(json).unwrap();
            assert!(number(&n).is_ok(), "{json}");
        }
    }

    fn sample() -> BTreeMap<String, Value> {
        let mut inner = BTreeMap::new();
        inner.insert("theme".to_string(), Value::String("dark".into()));
        inner.insert("empty".to_string(), Value::Map(BTreeMap::new()));
        let mut map = BTreeMap::new();
        map.insert(
            "cart".to_string(),
            Value::List(vec![Value::Int(1), Value::Int(-2), Value::UInt(u64::MAX)]),
        );
        map.insert("prefs".to_string(), Value::Map(inner));
        map.insert("blob".to_string(), Value::Bytes(vec![0, 255, 7]));
        map.insert("pi".to_string(), Value::Float(3.25));
        map.insert("nan".to_string(), Value::Float(f64::INFINITY));
        map.insert("none".to_string(), Value::Null);
        map.insert("ok".to_string(), Value::Bool(true));
        map.insert("list".to_string(), Value::List(vec![]));
        map
    }

    /// The owned token type the format was first written and read with (postcard: variant
    /// order matters).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Token {
        Null,
        Bool(bool),
        Int(i64),
        UInt(u64),
        Float(f64),
        Str(String),
        Bytes(Vec<u8>),
        List(u32),
        Map(u32),
    }

    /// The decoder before data was decoded lazily, kept as the oracle: `decode_map` and
    /// `check_map` must accept exactly what it accepted (a record it refused is refused at load).
    fn reference_decode(bytes: &[u8]) -> Result<BTreeMap<String, Value>, ValueError> {
        enum Frame {
            List(Vec<Value>, u32),
            Map(BTreeMap<String, Value>, u32, Option<String>),
        }
        fn attach(parent: &mut Frame, value: Value) -> Result<(), ValueError> {
            match parent {
                Frame::List(items, _) => items.push(value),
                Frame::Map(map, _, key) => {
                    let k = key.take().ok_or(ValueError("value without key".into()))?;
                    if map.insert(k, value).is_some() {
                        return Err(ValueError("duplicate map key".into()));
                    }
                }
            }
            Ok(())
        }
        let tokens: Vec<Token> =
            postcard::from_bytes(bytes).map_err(|e| ValueError(format!("encoding: {e}")))?;
        let mut tokens = tokens.into_iter();
        let Some(Token::Map(n)) = tokens.next() else {
            return Err(ValueError("no map".into()));
        };
        let mut stack = vec![Frame::Map(BTreeMap::new(), n, None)];
        loop {
            while let Some(frame) = stack.pop_if(|f| match f {
                Frame::List(items, n) => items.len() == *n as usize,
                Frame::Map(map, n, key) => key.is_none() && map.len() == *n as usize,
            }) {
                let value = match frame {
                    Frame::List(items, _) => Value::List(items),
                    Frame::Map(map, _, _) => Value::Map(map),
                };
                match stack.last_mut() {
                    Some(parent) => attach(parent, value)?,
                    None if tokens.next().is_some() => return Err(ValueError("trailing".into())),
                    None => match value {
                        Value::Map(map) => return Ok(map),
                        _ => unreachable!(),
                    },
                }
            }
            let token = tokens.next().ok_or(ValueError("ends".into()))?;
            if let Some(Frame::Map(_, _, key @ None)) = stack.last_mut() {
                match token {
                    Token::Str(k) => {
                        *key = Some(k);
                        continue;
                    }
                    _ => return Err(ValueError("key".into())),
                }
            }
            let value = match token {
                Token::Null => Value::Null,
                Token::Bool(b) => Value::Bool(b),
                Token::Int(i) => Value::Int(i),
                Token::UInt(u) => Value::UInt(u),
                Token::Float(f) => Value::Float(f),
                Token::Str(s) => Value::String(s),
                Token::Bytes(b) => Value::Bytes(b),
                Token::List(n) | Token::Map(n) if stack.len() > MAX_DEPTH => {
                    let _ = n;
                    return Err(ValueError("nested deeper".into()));
                }
                Token::List(n) => {
                    stack.push(Frame::List(Vec::new(), n));
                    continue;
                }
                Token::Map(n) => {
                    stack.push(Frame::Map(BTreeMap::new(), n, None));
                    continue;
                }
            };
            attach(stack.last_mut().unwrap(), value)?;
        }
    }

    /// The decoder, the check and the oracle agree on `bytes`: same verdict, same values.
    fn agree(bytes: &[u8]) -> Result<(), String> {
        let reference = reference_decode(bytes);
        let decoded = decode_map(bytes);
        let checked = check_map(bytes);
        if reference.is_ok() != decoded.is_ok() || reference.is_ok() != checked.is_ok() {
            return Err(format!(
                "reference {reference:?}, decode {decoded:?}, check {checked:?}"
            ));
        }
        if let (Ok(r), Ok(d)) = (&reference, &decoded) {
            // Floats compare by bits: NaN payloads must survive too.
            if format!("{r:?}") != format!("{d:?}") {
                return Err(format!("reference {r:?} but decoded {d:?}"));
            }
        }
        if let Ok(Checked::Decoded(map)) = &checked {
            if Ok(map) != decoded.as_ref() {
                return Err("check decoded another map".into());
            }
        }
        Ok(())
    }

    fn tokens(t: &[Token]) -> Vec<u8> {
        postcard::to_allocvec(t).unwrap()
    }

    #[test]
    fn token_encoding_roundtrips() {
        let map = sample();
        let bytes = encode_map(&map);
        assert_eq!(decode_map(&bytes).unwrap(), map);
        assert_eq!(check_map(&bytes).unwrap(), Checked::Valid);
        agree(&bytes).unwrap();
        let empty = encode_map(&BTreeMap::new());
        assert!(decode_map(&empty).unwrap().is_empty());
        assert_eq!(check_map(&empty).unwrap(), Checked::Valid);
    }

    #[test]
    fn borrowed_tokens_encode_and_decode_like_owned_ones() {
        let owned = vec![
            Token::Map(7),
            Token::Null,
            Token::Bool(true),
            Token::Int(-3),
            Token::UInt(u64::MAX),
            Token::Float(0.5),
            Token::Str("héllo".into()),
            Token::Bytes(vec![0, 255, 7]),
            Token::List(2),
        ];
        let borrowed = vec![
            TokenRef::Map(7),
            TokenRef::Null,
            TokenRef::Bool(true),
            TokenRef::Int(-3),
            TokenRef::UInt(u64::MAX),
            TokenRef::Float(0.5),
            TokenRef::Str("héllo"),
            TokenRef::Bytes(&[0, 255, 7]),
            TokenRef::List(2),
        ];
        let bytes = postcard::to_allocvec(&owned).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&borrowed).unwrap());
        assert_eq!(
            postcard::from_bytes::<Vec<TokenRef<'_>>>(&bytes).unwrap(),
            borrowed
        );
    }

    #[test]
    fn keys_out_of_order_are_decoded_by_the_check_and_duplicates_refused() {
        let unordered = tokens(&[
            Token::Map(2),
            Token::Str("b".into()),
            Token::Int(1),
            Token::Str("a".into()),
            Token::List(0),
        ]);
        let Checked::Decoded(map) = check_map(&unordered).unwrap() else {
            panic!("keys out of order must be decoded to rule out duplicates");
        };
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b"]);
        agree(&unordered).unwrap();

        // A repeated key, at the root and in a nested map.
        let repeated = tokens(&[
            Token::Map(2),
            Token::Str("a".into()),
            Token::Int(1),
            Token::Str("a".into()),
            Token::Int(2),
        ]);
        let nested = tokens(&[
            Token::Map(1),
            Token::Str("m".into()),
            Token::Map(2),
            Token::Str("x".into()),
            Token::Null,
            Token::Str("x".into()),
            Token::Null,
        ]);
        for bytes in [repeated, nested] {
            assert!(check_map(&bytes).unwrap_err().0.contains("duplicate"));
            agree(&bytes).unwrap();
        }
        // Equal keys in different maps are fine, and ascending keys need no decode.
        let distinct_maps = tokens(&[
            Token::Map(2),
            Token::Str("a".into()),
            Token::Map(1),
            Token::Str("a".into()),
            Token::Null,
            Token::Str("b".into()),
            Token::Null,
        ]);
        assert_eq!(check_map(&distinct_maps).unwrap(), Checked::Valid);
        agree(&distinct_maps).unwrap();
    }

    #[test]
    fn token_counts_and_trailing_bytes_are_judged_as_before() {
        // More tokens counted than the map holds; fewer; bytes after the last counted token
        // (postcard's `from_bytes` never looked at them).
        let mut more = tokens(&[Token::Map(0), Token::Null]);
        more[0] = 2;
        let mut fewer = tokens(&[Token::Map(1), Token::Str("k".into()), Token::Null]);
        fewer[0] = 2;
        let mut after = tokens(&[Token::Map(0)]);
        after.extend([0xff, 0x00, 0x17]);
        let not_a_map = tokens(&[Token::List(0)]);
        let key_not_a_string = tokens(&[Token::Map(1), Token::Int(1), Token::Null]);
        let mut bad_bool = tokens(&[Token::Map(1), Token::Str("k".into()), Token::Bool(true)]);
        *bad_bool.last_mut().unwrap() = 2;
        for bytes in [more, fewer, not_a_map, key_not_a_string, bad_bool] {
            assert!(check_map(&bytes).is_err(), "{bytes:?}");
            agree(&bytes).unwrap();
        }
        assert_eq!(check_map(&after).unwrap(), Checked::Valid);
        agree(&after).unwrap();
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error() {
        let bytes = encode_map(&sample());
        for cut in 0..bytes.len() {
            assert!(decode_map(&bytes[..cut]).is_err(), "cut at {cut}");
            assert!(check_map(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_map(&[0xff; 40]).is_err());
        assert!(check_map(&[0xff; 40]).is_err());
    }

    #[test]
    fn hostile_nesting_is_rejected_without_recursion() {
        // 100,000 nested single-element lists: a recursive decoder (or check) would overflow
        // the stack.
        let mut t = vec![Token::Map(1), Token::Str("k".into())];
        t.extend((0..100_000).map(|_| Token::List(1)));
        t.push(Token::Null);
        let bytes = tokens(&t);
        let err = decode_map(&bytes).unwrap_err();
        assert!(err.0.contains("nested deeper"), "{err:?}");
        let err = check_map(&bytes).unwrap_err();
        assert!(err.0.contains("nested deeper"), "{err:?}");
    }

    #[test]
    fn the_depth_limit_is_where_it_was() {
        for (depth, ok) in [(MAX_DEPTH, true), (MAX_DEPTH + 1, false)] {
            let mut t = vec![Token::Map(1), Token::Str("k".into())];
            t.extend((0..depth).map(|_| Token::List(1)));
            t.push(Token::Null);
            let bytes = tokens(&t);
            assert_eq!(check_map(&bytes).is_ok(), ok, "{depth} nested lists");
            agree(&bytes).unwrap();
        }
    }

    fn scalar() -> impl proptest::strategy::Strategy<Value = Token> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Token::Null),
            any::<bool>().prop_map(Token::Bool),
            any::<i64>().prop_map(Token::Int),
            any::<u64>().prop_map(Token::UInt),
            any::<f64>().prop_map(Token::Float),
            "[a-c]{0,2}".prop_map(Token::Str),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(Token::Bytes),
        ]
    }

    fn token() -> impl proptest::strategy::Strategy<Value = Token> {
        use proptest::prelude::*;
        prop_oneof![
            4 => scalar(),
            1 => prop_oneof![0u32..4, Just(u32::MAX)].prop_map(Token::List),
            1 => prop_oneof![0u32..4, Just(u32::MAX)].prop_map(Token::Map),
        ]
    }

    /// A well-formed value whose maps may repeat keys or list them out of order.
    #[derive(Debug, Clone)]
    enum Tree {
        Leaf(Token),
        List(Vec<Tree>),
        Map(Vec<(String, Tree)>),
    }

    fn tree() -> impl proptest::strategy::Strategy<Value = Tree> {
        use proptest::prelude::*;
        scalar()
            .prop_map(Tree::Leaf)
            .prop_recursive(5, 32, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Tree::List),
                    proptest::collection::vec(("[a-c]?", inner), 0..4).prop_map(Tree::Map),
                ]
            })
    }

    fn flatten(tree: Tree, out: &mut Vec<Token>) {
        match tree {
            Tree::Leaf(t) => out.push(t),
            Tree::List(items) => {
                out.push(Token::List(items.len() as u32));
                items.into_iter().for_each(|t| flatten(t, out));
            }
            Tree::Map(entries) => {
                out.push(Token::Map(entries.len() as u32));
                for (k, v) in entries {
                    out.push(Token::Str(k));
                    flatten(v, out);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2000,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Well-formed streams (short keys, so that repeats and disorder are common), then
        /// damaged ones: decode, check and the old decoder agree on every one.
        #[test]
        fn check_and_decode_agree_with_the_old_decoder(
            entries in proptest::collection::vec(("[a-c]?", tree()), 0..5),
            flips in proptest::collection::vec((0usize..64, 1u8..=255), 0..3),
            cut in proptest::option::of(0usize..64),
        ) {
            let mut t = Vec::new();
            flatten(Tree::Map(entries), &mut t);
            let mut bytes = tokens(&t);
            proptest::prop_assert!(agree(&bytes).is_ok(), "{:?}", agree(&bytes));
            for (at, xor) in flips {
                let n = bytes.len();
                bytes[at % n] ^= xor;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            proptest::prop_assert!(agree(&bytes).is_ok(), "{:?}", agree(&bytes));
        }

        /// Random token sequences: mostly malformed structure.
        #[test]
        fn random_token_sequences_get_the_same_verdict(
            body in proptest::collection::vec(token(), 0..14),
            root in 0u32..5,
        ) {
            let mut t = vec![Token::Map(root)];
            t.extend(body);
            let bytes = tokens(&t);
            proptest::prop_assert!(agree(&bytes).is_ok(), "{:?}", agree(&bytes));
        }

        #[test]
        fn arbitrary_bytes_get_the_same_verdict(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            proptest::prop_assert!(agree(&bytes).is_ok(), "{:?}", agree(&bytes));
        }
    }

    #[test]
    fn the_plain_json_form_is_the_same_moved_or_copied() {
        let mut map = sample();
        map.insert("nested".into(), Value::Map(sample()));
        map.insert("nan".into(), Value::Float(f64::NAN));
        let value = Value::Map(map);
        let json = value.to_plain_json();
        assert_eq!(json["blob"], serde_json::json!([0, 255, 7]));
        assert_eq!(json["nan"], serde_json::Value::Null);
        assert_eq!(json["nested"]["prefs"]["theme"], "dark");
        assert_eq!(value.to_deserialize::<serde_json::Value>().unwrap(), json);
        assert_eq!(value.into_plain_json(), json);
    }

    #[test]
    fn json_form_roundtrips_bytes_and_non_finite_floats() {
        let value = Value::Map(sample());
        let json = value.to_json();
        assert_eq!(json["blob"], serde_json::json!({"$base64": "AP8H"}));
        assert_eq!(json["nan"], serde_json::json!({"$float": "inf"}));
        assert_eq!(Value::from_json(&json).unwrap(), value);
    }

    #[test]
    fn maps_that_look_like_tags_survive_the_json_form() {
        for key in ["$base64", "$float", "$map"] {
            let mut inner = BTreeMap::new();
            inner.insert(key.to_string(), Value::String("x!".into()));
            let value = Value::Map(inner);
            let json = value.to_json();
            assert_eq!(json, serde_json::json!({"$map": {key: "x!"}}));
            assert_eq!(Value::from_json(&json).unwrap(), value);
        }
        let two_keys = serde_json::json!({"$base64": "AA==", "other": 1});
        assert_eq!(Value::from_json(&two_keys).unwrap().to_json(), two_keys);
    }

    /// Every conversion from JSON draws the line where [`Value::depth`] and
    /// `Session::insert_value` do, whatever sits at the bottom; the whole data map of an export
    /// line gets one level more, for itself.
    #[test]
    fn json_nesting_is_judged_as_value_depth() {
        let wrap = |mut v: serde_json::Value, n: usize| {
            for _ in 0..n {
                v = serde_json::json!([v]);
            }
            v
        };
        for leaf in [
            serde_json::json!(1),
            serde_json::json!([]),
            serde_json::json!({}),
        ] {
            let leaf_depth = Value::from_plain_json(&leaf).unwrap().depth();
            let at_limit = wrap(leaf.clone(), MAX_DEPTH - leaf_depth);
            let over = wrap(leaf, MAX_DEPTH - leaf_depth + 1);
            for convert in [Value::from_json, Value::from_plain_json] {
                assert_eq!(convert(&at_limit).unwrap().depth(), MAX_DEPTH);
                assert!(convert(&over)
                    .unwrap_err()
                    .to_string()
                    .contains("nested deeper than 64"));
            }
            let data = |v: &serde_json::Value| serde_json::json!({"k": v});
            assert!(Value::data_from_json(&data(&at_limit)).is_ok());
            assert!(Value::data_from_json(&data(&over)).is_err());
        }
        // A tag that stands for a scalar takes no level; `$map` takes one.
        let bytes = wrap(serde_json::json!({"$base64": "AA=="}), MAX_DEPTH);
        assert_eq!(Value::from_json(&bytes).unwrap().depth(), MAX_DEPTH);
        let tagged_map = wrap(serde_json::json!({"$map": {"$float": "x"}}), MAX_DEPTH);
        assert!(Value::from_json(&tagged_map)
            .unwrap_err()
            .to_string()
            .contains("nested deeper than 64"));
        let tagged_map = wrap(serde_json::json!({"$map": {"$float": "x"}}), MAX_DEPTH - 1);
        assert_eq!(Value::from_json(&tagged_map).unwrap().depth(), MAX_DEPTH);
    }

    #[test]
    fn deeper_than_agrees_with_depth() {
        let mut v = Value::Int(1);
        for depth in 0..=MAX_DEPTH + 1 {
            assert_eq!(v.depth(), depth);
            assert!(!v.deeper_than(depth) && (depth == 0 || v.deeper_than(depth - 1)));
            v = if depth % 2 == 0 {
                Value::List(vec![Value::Null, v])
            } else {
                Value::Map(BTreeMap::from([("k".to_string(), v)]))
            };
        }
        assert!(Value::List(Vec::new()).deeper_than(0));
    }

    #[test]
    fn deep_json_is_rejected() {
        let mut json = serde_json::json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            json = serde_json::json!([json]);
        }
        assert!(Value::from_json(&json)
            .unwrap_err()
            .to_string()
            .contains("nested deeper"));
    }

    #[test]
    fn typed_conversions_go_through_serde() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Cart {
            items: Vec<u32>,
            coupon: Option<String>,
        }
        let cart = Cart {
            items: vec![1, 2],
            coupon: None,
        };
        let v = Value::from_serialize(&cart).unwrap();
        assert_eq!(v.depth(), 2);
        assert_eq!(v.to_deserialize::<Cart>().unwrap(), cart);
        assert!(v.to_deserialize::<u32>().is_err());
    }

    /// A random typed value: every kind of serde container and enum variant, with floats
    /// (finite or not) anywhere, map keys included.
    #[derive(Debug, Clone, Serialize)]
    enum Shape {
        Unit,
        Int(i64),
        Wide(i128, u128),
        Text(String, char),
        F64(f64),
        F32(f32),
        Tuple(f64, Option<f32>),
        Struct { a: f64, items: Vec<Shape> },
        Wrapped(Wrap),
        Map(BTreeMap<String, Shape>),
        FloatKeys(#[serde(serialize_with = "float_keys")] Vec<(f64, Shape)>),
        Tagged(Tagged),
        Loose(Loose),
    }

    #[derive(Debug, Clone, Serialize)]
    struct Wrap(Option<Box<Shape>>);

    #[derive(Debug, Clone, Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        A { x: f32, rest: Box<Shape> },
    }

    #[derive(Debug, Clone, Serialize)]
    #[serde(untagged)]
    enum Loose {
        Pair(f64, f64),
        Unit,
    }

    fn float_keys<S: serde::Serializer>(
        pairs: &[(f64, Shape)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(pairs.iter().map(|(k, v)| (k, v)))
    }

    impl Shape {
        fn has_non_finite(&self) -> bool {
            let bad = |x: f64| !x.is_finite();
            match self {
                Shape::Unit | Shape::Int(_) | Shape::Wide(..) | Shape::Text(..) => false,
                Shape::F64(x) => bad(*x),
                Shape::F32(x) => bad(f64::from(*x)),
                Shape::Tuple(x, y) => bad(*x) || y.is_some_and(|y| bad(f64::from(y))),
                Shape::Struct { a, items } => bad(*a) || items.iter().any(Shape::has_non_finite),
                Shape::Wrapped(Wrap(inner)) => inner.as_ref().is_some_and(|s| s.has_non_finite()),
                Shape::Map(map) => map.values().any(Shape::has_non_finite),
                Shape::FloatKeys(pairs) => pairs.iter().any(|(k, v)| bad(*k) || v.has_non_finite()),
                Shape::Tagged(Tagged::A { x, rest }) => bad(f64::from(*x)) || rest.has_non_finite(),
                Shape::Loose(Loose::Pair(x, y)) => bad(*x) || bad(*y),
                Shape::Loose(Loose::Unit) => false,
            }
        }
    }

    /// Mostly finite floats of every class (zeros, subnormals, the extremes), sometimes not.
    fn arb_f64() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::num::f64 as f;
        use proptest::prelude::*;
        prop_oneof![
            12 => f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(f64::MAX),
        ]
    }

    fn arb_f32() -> impl proptest::strategy::Strategy<Value = f32> {
        use proptest::num::f32 as f;
        use proptest::prelude::*;
        prop_oneof![
            12 => f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
        ]
    }

    fn arb_shape() -> impl proptest::strategy::Strategy<Value = Shape> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Shape::Unit),
            any::<i64>().prop_map(Shape::Int),
            (any::<i64>(), any::<u64>())
                .prop_map(|(i, u)| Shape::Wide(i128::from(i), u128::from(u))),
            ("[a-c]{0,3}", any::<char>()).prop_map(|(s, c)| Shape::Text(s, c)),
            arb_f64().prop_map(Shape::F64),
            arb_f32().prop_map(Shape::F32),
            (arb_f64(), proptest::option::of(arb_f32())).prop_map(|(x, y)| Shape::Tuple(x, y)),
            (arb_f64(), arb_f64()).prop_map(|(x, y)| Shape::Loose(Loose::Pair(x, y))),
            Just(Shape::Loose(Loose::Unit)),
        ]
        .prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                (arb_f64(), proptest::collection::vec(inner.clone(), 0..4))
                    .prop_map(|(a, items)| Shape::Struct { a, items }),
                proptest::option::of(inner.clone())
                    .prop_map(|s| Shape::Wrapped(Wrap(s.map(Box::new)))),
                proptest::collection::btree_map("[a-c]{0,2}", inner.clone(), 0..4)
                    .prop_map(Shape::Map),
                proptest::collection::vec((arb_f64(), inner.clone()), 0..3)
                    .prop_map(Shape::FloatKeys),
                (arb_f32(), inner).prop_map(|(x, rest)| Shape::Tagged(Tagged::A {
                    x,
                    rest: Box::new(rest)
                })),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2048,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// The checked serialization refuses a value exactly when a float in it is not finite,
        /// and otherwise is serde_json's own, float for float (`-0.0` included: the text shows
        /// its sign, `Value::same` its bits).
        #[test]
        fn typed_values_are_serde_json_s_unless_a_float_is_not_finite(shape in arb_shape()) {
            let checked = serde_json::to_value(Finite(&shape)).map_err(|e| e.to_string());
            let value = Value::from_serialize(&shape);
            if shape.has_non_finite() {
                proptest::prop_assert_eq!(checked, Err(NOT_FINITE.to_string()));
                proptest::prop_assert_eq!(value, Err(ValueError(NOT_FINITE.to_string())));
            } else {
                let plain = serde_json::to_value(&shape).unwrap();
                let checked = checked.unwrap();
                proptest::prop_assert_eq!(checked.to_string(), plain.to_string());
                let expected = Value::from_json_inner(&plain, MAX_DEPTH, false).unwrap();
                proptest::prop_assert!(value.unwrap().same(&expected));
            }
        }
    }

    #[test]
    fn encode_map_writes_what_postcard_writes_for_the_token_sequence() {
        // encode_map sizes its buffer up front; the bytes must be postcard's for the same tokens.
        let mut map = sample();
        map.insert("long".to_string(), Value::String("x".repeat(5000)));
        map.insert("bin".to_string(), Value::Bytes(vec![7; 300]));
        for map in [map, BTreeMap::new()] {
            let mut tokens = vec![TokenRef::Map(len_u32(map.len()))];
            for (k, v) in &map {
                tokens.push(TokenRef::Str(k));
                push_tokens(v, &mut tokens);
            }
            assert_eq!(encode_map(&map), postcard::to_allocvec(&tokens).unwrap());
        }
    }

    #[test]
    fn lookup_and_splice_work_one_entry_at_a_time() {
        let map = sample();
        let bytes = encode_map(&map);
        for (key, value) in &map {
            assert!(lookup(&bytes, key).unwrap().unwrap().same(value), "{key}");
        }
        assert_eq!(lookup(&bytes, "absent").unwrap(), None);
        assert_eq!(lookup(&bytes, "").unwrap(), None);
        assert_eq!(lookup(&bytes, "zzz").unwrap(), None);

        let changes = BTreeMap::from([
            ("aaa".to_string(), Some(Value::Int(1))),
            ("blob".to_string(), None),
            ("pi".to_string(), Some(Value::Map(sample()))),
            ("missing".to_string(), None),
            ("zzz".to_string(), Some(Value::Null)),
        ]);
        let mut expected = map.clone();
        expected.insert("aaa".into(), Value::Int(1));
        expected.remove("blob");
        expected.insert("pi".into(), Value::Map(sample()));
        expected.insert("zzz".into(), Value::Null);
        assert_eq!(splice(&bytes, &changes).unwrap(), encode_map(&expected));
        assert_eq!(splice(&bytes, &BTreeMap::new()).unwrap(), bytes);
    }

    #[test]
    fn lookup_and_splice_refuse_what_they_cannot_read() {
        let bytes = encode_map(&sample());
        let changes = BTreeMap::from([("k".to_string(), Some(Value::Null))]);
        for cut in 0..bytes.len() {
            assert!(splice(&bytes[..cut], &changes).is_err(), "cut at {cut}");
        }
        // Keys out of order (never written by sessdb) would make both wrong: refused.
        let disorder = tokens(&[
            Token::Map(2),
            Token::Str("b".into()),
            Token::Null,
            Token::Str("a".into()),
            Token::Null,
        ]);
        assert!(lookup(&disorder, "c")
            .unwrap_err()
            .0
            .contains("out of order"));
        assert!(splice(&disorder, &changes).is_err());
        let not_a_map = tokens(&[Token::List(0)]);
        assert!(lookup(&not_a_map, "k").is_err());
        assert!(splice(&not_a_map, &changes).is_err());
        let key_not_a_string = tokens(&[Token::Map(1), Token::Int(1), Token::Null]);
        assert!(lookup(&key_not_a_string, "k").is_err());
        // A container that claims more elements than the stream holds.
        let short = tokens(&[Token::Map(1), Token::Str("k".into()), Token::List(u32::MAX)]);
        assert!(splice(&short, &changes).is_err());
        let mut trailing = tokens(&[Token::Map(0), Token::Null]);
        assert!(splice(&trailing, &changes).is_err());
        trailing[0] = 1;
        assert!(splice(&trailing, &changes).is_ok());
    }

    #[test]
    fn splice_counts_past_one_byte_varints() {
        // 63 entries are 127 tokens, 127 entries 127 in the map's count: one-byte varints. One
        // entry more needs two bytes for the token count, then for the entry count.
        for n in [63, 127] {
            let map: BTreeMap<String, Value> =
                (0..n).map(|i| (format!("k{i:03}"), Value::Null)).collect();
            let bytes = encode_map(&map);
            let add = BTreeMap::from([("k200".to_string(), Some(Value::Null))]);
            let mut grown = map.clone();
            grown.insert("k200".into(), Value::Null);
            let spliced = splice(&bytes, &add).unwrap();
            assert_eq!(spliced, encode_map(&grown), "{n} entries");
            // The new entry's 7 bytes, and one more where a varint grew.
            assert_eq!(spliced.len(), bytes.len() + 7 + 1, "{n} entries");
            let remove = BTreeMap::from([("k200".to_string(), None)]);
            assert_eq!(splice(&spliced, &remove).unwrap(), bytes, "{n} entries");
            assert_eq!(lookup(&spliced, "k200").unwrap(), Some(Value::Null));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 1000,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Splicing changes into the stored bytes gives exactly the encoding of the changed
        /// map, and a lookup finds what the map holds.
        #[test]
        fn splice_is_encode_of_the_changed_map(
            map in proptest::collection::btree_map("[a-d]{0,2}", arb_value(), 0..6),
            changes in proptest::collection::btree_map(
                "[a-d]{0,2}",
                proptest::option::of(arb_value()),
                0..5,
            ),
            probe in "[a-d]{0,2}",
        ) {
            let bytes = encode_map(&map);
            let mut expected = map.clone();
            for (key, change) in &changes {
                match change {
                    Some(value) => expected.insert(key.clone(), value.clone()),
                    None => expected.remove(key),
                };
            }
            proptest::prop_assert_eq!(splice(&bytes, &changes).unwrap(), encode_map(&expected));
            let found = lookup(&bytes, &probe).unwrap();
            proptest::prop_assert_eq!(
                found.map(|v| encode_map(&BTreeMap::from([(probe.clone(), v)]))),
                map.get(&probe).map(|v| encode_map(&BTreeMap::from([(probe.clone(), v.clone())]))),
            );
        }
    }
}
