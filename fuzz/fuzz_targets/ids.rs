//! Session ids, handles and targets as a person types them: no panic, accepted text
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessdb::{Handle, SessionId, Target};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<SessionId>() {
        assert_eq!(id.to_string().parse::<SessionId>().expect("roundtrip"), id);
    }
    if let Ok(h) = text.parse::<Handle>() {
        assert_eq!(h.to_string(), text.trim().to_ascii_lowercase());
    }
    let _ = text.parse::<Target>();
});
