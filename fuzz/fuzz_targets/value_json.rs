//! `Value::from_json` on any JSON: no panic, and an accepted value goes back to the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessdb::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(value) = Value::from_json(&json) {
        let back = value.to_json();
        let again = Value::from_json(&back).expect("to_json's output is accepted");
        assert_eq!(again.to_json(), back);
    }
});
