//! The self-describing value model of session data, its compact encoding and its JSON form.
//!
//! Values are stored as a flat, pre-order token stream (not a nested enum) so that decoding is
//! iterative: a corrupt or hostile record cannot overflow the stack, whatever its nesting.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

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
    /// An unsigned integer above `i64::MAX`.
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

/// One token of the flat encoding. Containers give their element count; their elements follow.
#[derive(Debug, Serialize, Deserialize)]
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

/// Why a value could not be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueError(pub(crate) String);

impl Value {
    /// Converts any serializable value (through its JSON data model).
    pub(crate) fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
        let json = serde_json::to_value(value).map_err(|e| ValueError(e.to_string()))?;
        Value::from_json_inner(&json, 0, false)
    }

    /// Converts into any deserializable type (through its JSON data model).
    pub(crate) fn to_deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ValueError> {
        serde_json::from_value(self.to_json_plain()).map_err(|e| ValueError(e.to_string()))
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
    /// Fails when the value nests deeper than [`MAX_DEPTH`].
    pub fn from_json(json: &serde_json::Value) -> Result<Value, String> {
        Value::from_json_inner(json, 0, true).map_err(|e| e.0)
    }

    /// JSON for serde conversions: bytes as arrays of numbers, as serde_json itself writes them.
    fn to_json_plain(&self) -> serde_json::Value {
        self.to_json_with(false)
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

    fn from_json_inner(
        json: &serde_json::Value,
        depth: usize,
        tagged: bool,
    ) -> Result<Value, ValueError> {
        use serde_json::Value as J;
        if depth > MAX_DEPTH {
            return Err(ValueError(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::UInt(u)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            J::String(s) => Value::String(s.clone()),
            J::Array(items) => Value::List(
                items
                    .iter()
                    .map(|v| Value::from_json_inner(v, depth + 1, tagged))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(map) => {
                if tagged && map.len() == 1 {
                    if let Some(J::String(text)) = map.get("$base64") {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .map_err(|e| ValueError(format!("bad $base64 value: {e}")))?;
                        return Ok(Value::Bytes(bytes));
                    }
                    if let Some(J::Object(inner)) = map.get("$map") {
                        return Ok(Value::Map(
                            inner
                                .iter()
                                .map(|(k, v)| {
                                    Ok((k.clone(), Value::from_json_inner(v, depth + 1, tagged)?))
                                })
                                .collect::<Result<_, ValueError>>()?,
                        ));
                    }
                    if let Some(J::String(text)) = map.get("$float") {
                        let f = text
                            .parse::<f64>()
                            .map_err(|e| ValueError(format!("bad $float value: {e}")))?;
                        return Ok(Value::Float(f));
                    }
                }
                Value::Map(
                    map.iter()
                        .map(|(k, v)| {
                            Ok((k.clone(), Value::from_json_inner(v, depth + 1, tagged)?))
                        })
                        .collect::<Result<_, ValueError>>()?,
                )
            }
        })
    }

    /// The nesting depth (a scalar is 0).
    pub(crate) fn depth(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Map(map) => 1 + map.values().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// [`Token`] borrowing its strings and bytes from the value being encoded, so that encoding
/// copies no string. Same variants in the same order: the encoding is identical.
#[derive(Serialize)]
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
    // Serializing plain enums into a Vec cannot fail.
    postcard::to_allocvec(&tokens).unwrap_or_default()
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

/// A container being filled while decoding.
enum Frame {
    List(Vec<Value>, u32),
    Map(BTreeMap<String, Value>, u32, Option<String>),
}

impl Frame {
    fn is_complete(&self) -> bool {
        match self {
            Frame::List(items, n) => items.len() == *n as usize,
            Frame::Map(map, n, key) => key.is_none() && map.len() == *n as usize,
        }
    }

    fn into_value(self) -> Value {
        match self {
            Frame::List(items, _) => Value::List(items),
            Frame::Map(map, _, _) => Value::Map(map),
        }
    }
}

/// Decodes a token stream written by [`encode_map`], iteratively.
pub(crate) fn decode_map(bytes: &[u8]) -> Result<BTreeMap<String, Value>, ValueError> {
    let tokens: Vec<Token> =
        postcard::from_bytes(bytes).map_err(|e| ValueError(format!("bad data encoding: {e}")))?;
    let mut tokens = tokens.into_iter();
    let Some(Token::Map(n)) = tokens.next() else {
        return Err(ValueError("data does not start with a map".into()));
    };
    let mut stack = vec![Frame::Map(BTreeMap::new(), n, None)];
    loop {
        // Close every container that is complete, handing it to its parent.
        while let Some(frame) = stack.pop_if(|f| f.is_complete()) {
            let value = frame.into_value();
            match stack.last_mut() {
                Some(parent) => attach(parent, value)?,
                None => {
                    if tokens.next().is_some() {
                        return Err(ValueError("trailing tokens after data".into()));
                    }
                    return match value {
                        Value::Map(map) => Ok(map),
                        _ => unreachable_frame(),
                    };
                }
            }
        }
        let Some(token) = tokens.next() else {
            return Err(ValueError("data ends in the middle of a value".into()));
        };
        // A map expecting a key takes a string token as the key.
        if let Some(Frame::Map(_, _, key @ None)) = stack.last_mut() {
            match token {
                Token::Str(k) => {
                    *key = Some(k);
                    continue;
                }
                _ => return Err(ValueError("map key is not a string".into())),
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
            Token::List(n) => {
                push_frame(&mut stack, Frame::List(Vec::new(), n))?;
                continue;
            }
            Token::Map(n) => {
                push_frame(&mut stack, Frame::Map(BTreeMap::new(), n, None))?;
                continue;
            }
        };
        match stack.last_mut() {
            Some(parent) => attach(parent, value)?,
            None => return unreachable_frame(),
        }
    }
}

fn unreachable_frame<T>() -> Result<T, ValueError> {
    Err(ValueError("internal decoder state error".into()))
}

fn push_frame(stack: &mut Vec<Frame>, frame: Frame) -> Result<(), ValueError> {
    if stack.len() > MAX_DEPTH {
        return Err(ValueError(format!(
            "data nested deeper than {MAX_DEPTH} levels"
        )));
    }
    stack.push(frame);
    Ok(())
}

fn attach(parent: &mut Frame, value: Value) -> Result<(), ValueError> {
    match parent {
        Frame::List(items, _) => items.push(value),
        Frame::Map(map, _, key) => {
            let Some(k) = key.take() else {
                return Err(ValueError("map value without a key".into()));
            };
            if map.insert(k, value).is_some() {
                return Err(ValueError("duplicate map key".into()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn token_encoding_roundtrips() {
        let map = sample();
        assert_eq!(decode_map(&encode_map(&map)).unwrap(), map);
        assert!(decode_map(&encode_map(&BTreeMap::new()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn borrowed_tokens_encode_like_owned_ones() {
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
        assert_eq!(
            postcard::to_allocvec(&owned).unwrap(),
            postcard::to_allocvec(&borrowed).unwrap()
        );
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

    #[test]
    fn truncated_and_garbage_input_is_an_error() {
        let bytes = encode_map(&sample());
        for cut in 0..bytes.len() {
            assert!(decode_map(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_map(&[0xff; 40]).is_err());
    }

    #[test]
    fn hostile_nesting_is_rejected_without_recursion() {
        // 100,000 nested single-element lists: a recursive decoder would overflow the stack.
        let mut tokens = vec![Token::Map(1), Token::Str("k".into())];
        tokens.extend((0..100_000).map(|_| Token::List(1)));
        tokens.push(Token::Null);
        let bytes = postcard::to_allocvec(&tokens).unwrap();
        let err = decode_map(&bytes).unwrap_err();
        assert!(err.0.contains("nested deeper"), "{err:?}");
    }

    #[test]
    fn deep_json_is_rejected() {
        let mut json = serde_json::json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            json = serde_json::json!([json]);
        }
        assert!(Value::from_json(&json)
            .unwrap_err()
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
}
