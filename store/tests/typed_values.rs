//! Typed values (`Session::insert` / `Session::get`) through serde: a float that JSON's data
//! model cannot hold is refused, wherever it is, and finite floats come back bit for bit.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{fixture, Fixture};
use serde::{Serialize, Serializer};
use sessdb::{Error, Session, Value};

const NON_FINITE_F64: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
const NON_FINITE_F32: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

/// A saved session holding `"old": 1.5`, loaded again, so that a save writes only a change.
fn saved_session(f: &Fixture) -> Session {
    let mut s = f.store.create();
    s.insert("old", &1.5f64).unwrap();
    s.save().unwrap();
    f.store.load(s.id()).unwrap().unwrap()
}

/// Inserting `value` under a new key and over `"old"` is refused with an [`Error::Value`] that
/// names the key and the way out, and leaves the session as it was: nothing to save, the new
/// key absent, `"old"` unchanged, here and after a reload.
fn assert_refused<T: Serialize + ?Sized>(f: &Fixture, what: &str, value: &T) {
    let mut s = saved_session(f);
    let version = s.version();
    for key in ["new", "old"] {
        let err = s.insert(key, value).expect_err(what);
        match &err {
            Error::Value { key: k, reason } => {
                assert_eq!(k, key, "{what}");
                assert!(
                    reason.contains("not finite (NaN or infinity)")
                        && reason.contains("insert_value(Value::Float(..))"),
                    "{what}: {reason}"
                );
            }
            other => panic!("{what}: not Error::Value: {other:?}"),
        }
        assert!(
            err.to_string().contains(&format!("{key:?}")),
            "{what}: {err}"
        );
    }
    assert!(!s.is_dirty(), "{what}");
    assert_eq!(s.get::<serde_json::Value>("new").unwrap(), None, "{what}");
    assert_eq!(s.get::<f64>("old").unwrap(), Some(1.5), "{what}");
    s.save().unwrap();
    assert_eq!(s.version(), version, "{what}: the save wrote something");
    let reloaded = f.store.load(s.id()).unwrap().unwrap();
    assert_eq!(reloaded.get_value("new"), None, "{what}");
    assert_eq!(
        reloaded.get_value("old"),
        Some(&Value::Float(1.5)),
        "{what}"
    );
}

/// [`assert_refused`] for `make(x)` with every non-finite `f64` and, through `make32`, `f32`.
fn assert_refused_all<T: Serialize, U: Serialize>(
    f: &Fixture,
    what: &str,
    make: impl Fn(f64) -> T,
    make32: impl Fn(f32) -> U,
) {
    for x in NON_FINITE_F64 {
        assert_refused(f, &format!("{what} with f64 {x}"), &make(x));
    }
    for x in NON_FINITE_F32 {
        assert_refused(f, &format!("{what} with f32 {x}"), &make32(x));
    }
}

#[test]
fn a_non_finite_float_at_the_top_is_refused() {
    let f = fixture();
    assert_refused_all(&f, "a float", |x| x, |x| x);
}

#[derive(Serialize)]
struct Point(f64, f32);

#[derive(Serialize)]
struct Meters<T>(T);

#[derive(Serialize)]
struct Reading<T> {
    label: &'static str,
    value: T,
    unit: (),
}

#[test]
fn a_non_finite_float_in_a_struct_is_refused() {
    let f = fixture();
    assert_refused_all(
        &f,
        "a struct field",
        |x| Reading {
            label: "t",
            value: x,
            unit: (),
        },
        |x| Reading {
            label: "t",
            value: x,
            unit: (),
        },
    );
    assert_refused_all(&f, "a newtype struct", Meters, Meters);
    assert_refused_all(
        &f,
        "a tuple struct",
        |x| Point(1.0, x as f32),
        |x| Point(1.0, x),
    );
    assert_refused_all(
        &f,
        "a tuple struct's first field",
        |x| Point(x, 1.0),
        |x| Point(f64::from(x), 1.0),
    );
}

#[test]
fn a_non_finite_float_in_a_sequence_tuple_or_option_is_refused() {
    let f = fixture();
    assert_refused_all(&f, "a Vec", |x| vec![1.0, x], |x| vec![x]);
    assert_refused_all(&f, "an array", |x| [x, 2.0], |x| [0.5, x]);
    assert_refused_all(&f, "a tuple", |x| (1, "a", x), |x| (x, 1));
    assert_refused_all(&f, "an Option", Some, |x| Some(Some(x)));
    assert_refused_all(
        &f,
        "a slice of Options",
        |x| [None, Some(x)],
        |x| [Some(1.0), Some(x)],
    );
}

#[test]
fn a_non_finite_float_in_a_map_value_or_key_is_refused() {
    let f = fixture();
    assert_refused_all(
        &f,
        "a BTreeMap value",
        |x| BTreeMap::from([("a", 1.0), ("b", x)]),
        |x| BTreeMap::from([("a", x)]),
    );
    assert_refused_all(
        &f,
        "a HashMap value",
        |x| HashMap::from([("a".to_string(), vec![x])]),
        |x| HashMap::from([(1u8, x)]),
    );
    // JSON keys are strings; serde_json writes a finite float key as its decimal form.
    assert_refused_all(
        &f,
        "a map key",
        |x| FloatKeys(vec![(x, 1)]),
        |x| FloatKeys(vec![(1.0, 1), (x, 2)]),
    );
    assert_refused_all(
        &f,
        "a map value serialized apart from its key",
        |x| FloatKeys(vec![("a", x)]),
        |x| FloatKeys(vec![(1.5, x)]),
    );
    assert_refused_all(
        &f,
        "a newtype map key",
        |x| FloatKeys(vec![(Meters(x), 1)]),
        |x| FloatKeys(vec![(Meters(x), 1)]),
    );
}

/// A map with any keys (a float has no `Ord`, so no `BTreeMap` of them), serialized key and
/// value apart, where the standard maps serialize each entry in one call.
struct FloatKeys<K, V>(Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for FloatKeys<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_key(k)?;
            map.serialize_value(v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
enum External<T> {
    Unit,
    Newtype(T),
    Tuple(i32, T),
    Struct { n: i32, x: T },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Internal<T> {
    Struct { x: T },
    Newtype(Reading<T>),
}

#[derive(Serialize)]
#[serde(tag = "t", content = "c")]
enum Adjacent<T> {
    Newtype(T),
    Tuple(T, T),
    Struct { x: T },
}

#[derive(Serialize)]
#[serde(untagged)]
enum Untagged<T> {
    Newtype(T),
    Struct { x: T },
}

#[derive(Serialize)]
struct Flattened<T> {
    a: i32,
    #[serde(flatten)]
    inner: Reading<T>,
}

#[test]
fn a_non_finite_float_in_any_enum_variant_is_refused() {
    let f = fixture();
    assert_refused_all(
        &f,
        "a newtype variant",
        External::Newtype,
        External::Newtype,
    );
    assert_refused_all(
        &f,
        "a tuple variant",
        |x| External::Tuple(1, x),
        |x| External::Tuple(1, x),
    );
    assert_refused_all(
        &f,
        "a struct variant",
        |x| External::Struct { n: 1, x },
        |x| External::Struct { n: 1, x },
    );
    assert_refused_all(
        &f,
        "a unit variant next to a newtype variant",
        |x| vec![External::Unit, External::Newtype(x)],
        |x| (External::<f32>::Unit, External::Newtype(x)),
    );
    assert_refused_all(
        &f,
        "an internally tagged struct variant",
        |x| Internal::Struct { x },
        |x| Internal::Struct { x },
    );
    assert_refused_all(
        &f,
        "an internally tagged newtype variant",
        |x| {
            Internal::Newtype(Reading {
                label: "l",
                value: x,
                unit: (),
            })
        },
        |x| {
            Internal::Newtype(Reading {
                label: "l",
                value: x,
                unit: (),
            })
        },
    );
    assert_refused_all(
        &f,
        "an adjacently tagged newtype",
        Adjacent::Newtype,
        Adjacent::Newtype,
    );
    assert_refused_all(
        &f,
        "an adjacently tagged tuple",
        |x| Adjacent::Tuple(0.0, x),
        |x| Adjacent::Tuple(x, 0.0),
    );
    assert_refused_all(
        &f,
        "an adjacently tagged struct",
        |x| Adjacent::Struct { x },
        |x| Adjacent::Struct { x },
    );
    assert_refused_all(
        &f,
        "an untagged newtype",
        Untagged::Newtype,
        Untagged::Newtype,
    );
    assert_refused_all(
        &f,
        "an untagged struct",
        |x| Untagged::Struct { x },
        |x| Untagged::Struct { x },
    );
    assert_refused_all(
        &f,
        "a flattened struct",
        |x| Flattened {
            a: 1,
            inner: Reading {
                label: "l",
                value: x,
                unit: (),
            },
        },
        |x| Flattened {
            a: 1,
            inner: Reading {
                label: "l",
                value: x,
                unit: (),
            },
        },
    );
}

#[test]
fn a_non_finite_float_nested_deep_is_refused() {
    let f = fixture();
    let deep = |x: f64| {
        vec![
            None,
            Some(Flattened {
                a: 1,
                inner: Reading {
                    label: "l",
                    value: External::Struct {
                        n: 2,
                        x: BTreeMap::from([("k", (1, vec![Meters(0.5), Meters(x)]))]),
                    },
                    unit: (),
                },
            }),
        ]
    };
    assert_refused_all(&f, "a float nested deep", deep, |x| deep(f64::from(x)));
}

#[test]
fn the_refusal_echoes_no_session_data() {
    #[derive(Serialize)]
    struct Login {
        token: &'static str,
        score: f64,
    }
    let f = fixture();
    let mut s = f.store.create();
    let err = s
        .insert(
            "login",
            &Login {
                token: "hunter2-secret",
                score: f64::NAN,
            },
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("session data key \"login\": "), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("token"), "{text}");
}

#[test]
fn the_way_out_the_error_names_stores_a_nan() {
    let f = fixture();
    let mut s = f.store.create();
    assert!(s.insert("ratio", &f64::NAN).is_err());
    s.insert_value("ratio", Value::Float(f64::NAN)).unwrap();
    s.save().unwrap();
    let reloaded = f.store.load(s.id()).unwrap().unwrap();
    let Some(Value::Float(x)) = reloaded.get_value("ratio") else {
        panic!("{:?}", reloaded.get_value("ratio"));
    };
    assert_eq!(x.to_bits(), f64::NAN.to_bits());
}

/// Finite floats that JSON's text form or a careless conversion could lose or change.
const FINITE_F64: [f64; 12] = [
    0.0,
    -0.0,
    5e-324,
    f64::MIN_POSITIVE / 3.0,
    f64::MIN_POSITIVE,
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    0.1,
    3.0,
    -1e300,
    9007199254740992.0,
];
const FINITE_F32: [f32; 8] = [
    0.0,
    -0.0,
    1e-45,
    f32::MIN_POSITIVE,
    f32::MAX,
    f32::MIN,
    0.1,
    16777216.0,
];

#[test]
fn finite_floats_round_trip_bit_for_bit() {
    #[derive(Serialize, serde::Deserialize)]
    struct Both {
        x: f64,
        y: Vec<f32>,
    }
    let f = fixture();
    let mut s = f.store.create();
    for (i, x) in FINITE_F64.iter().enumerate() {
        s.insert(&format!("f64/{i}"), x).unwrap();
    }
    for (i, x) in FINITE_F32.iter().enumerate() {
        s.insert(&format!("f32/{i}"), x).unwrap();
    }
    s.insert(
        "both",
        &Both {
            x: -0.0,
            y: FINITE_F32.to_vec(),
        },
    )
    .unwrap();
    s.save().unwrap();
    let reloaded = f.store.load(s.id()).unwrap().unwrap();
    for session in [&s, &reloaded] {
        for (i, x) in FINITE_F64.iter().enumerate() {
            let back: f64 = session.get(&format!("f64/{i}")).unwrap().unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x:e}");
        }
        for (i, x) in FINITE_F32.iter().enumerate() {
            let back: f32 = session.get(&format!("f32/{i}")).unwrap().unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x:e}");
        }
        let both: Both = session.get("both").unwrap().unwrap();
        assert_eq!(both.x.to_bits(), (-0.0f64).to_bits());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&both.y), bits(&FINITE_F32));
    }
}
