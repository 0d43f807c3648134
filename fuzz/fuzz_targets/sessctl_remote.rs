//! sessctl against a hostile application: the fake application of `socket_client` answers
//! `sessctl --socket PATH <command>`, and sessctl must report what it cannot use (exit code,
//! message), never panic or hang, whatever it prints from the answer.
#![no_main]

use std::ffi::OsString;

use libfuzzer_sys::fuzz_target;

#[path = "common/fake_server.rs"]
mod fake_server;

const COMMANDS: &[&[&str]] = &[
    &["stats"],
    &["list"],
    &["list", "--json"],
    &["list", "--all"],
    &["show", "ab12"],
    &["show", "--json", "ab12"],
    &["invalidate", "ab12"],
    &["purge"],
    &["check"],
    &["repair"],
    &["export", "-o", "/dev/null"],
    &["stats", "--json"],
    &["list", "--expired"],
    &["list", "--expiring-within", "1h"],
    &["check", "--json"],
    &["show", "--name", "x"],
];

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let script = fake_server::script(op, rest);
    fake_server::with_fake(script, |socket| {
        let mut args: Vec<OsString> = vec![
            "sessctl".into(),
            "--quiet".into(),
            "--timeout".into(),
            "5".into(),
        ];
        args.push("--socket".into());
        args.push(socket.into());
        args.extend(COMMANDS[(op & 15) as usize].iter().map(OsString::from));
        if let Ok(args) = sessctl::Args::parse_from_os(args) {
            let _ = sessctl::run(args);
        }
    });
});
