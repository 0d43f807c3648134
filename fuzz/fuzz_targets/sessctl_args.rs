//! sessctl's parsing of what an operator types: `--as-of`, `--expiring-within`, `--timeout`,
//! targets, limits. Each fuzzed argument goes through a command against a folder that does
//! not exist: parsing happens first, then the open fails fast. Nothing may panic.
#![no_main]

use std::ffi::OsString;

use libfuzzer_sys::fuzz_target;

const SHAPES: &[&[&str]] = &[
    &["--as-of", "@", "stats"],
    &["list", "--expiring-within", "@"],
    &["--timeout", "@", "stats"],
    &["show", "@"],
    &["invalidate", "@"],
    &["list", "--limit", "@"],
    &["list", "--principal", "@"],
    &["--as-of", "@", "list", "--expiring-within", "@"],
    &["tui", "--refresh", "@"],
    &["list", "--after", "@"],
];

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let shape = SHAPES[shape as usize % SHAPES.len()];
    let mut args: Vec<OsString> = vec![
        "sessctl".into(),
        "--quiet".into(),
        "--db".into(),
        "/nonexistent/sessctl-fuzz/db".into(),
    ];
    args.extend(
        shape
            .iter()
            .map(|a| OsString::from(if *a == "@" { text } else { a })),
    );
    if let Ok(args) = sessctl::Args::parse_from_os(args) {
        let _ = sessctl::run(args);
    }
});
