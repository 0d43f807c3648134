//! The admin socket's client, fed by a hostile server: a fake application accepts the
//! client's connection and answers its hello and its request with fuzzed bytes. `RemoteAdmin`
//! must report bad answers as errors, never panic, hang, or allocate without bound.
#![no_main]

use std::io::BufReader;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sessdb::{Admin, Handle, ImportOptions, ListQuery, RemoteAdmin, SessionId, Target};

#[path = "common/fake_server.rs"]
mod fake_server;

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let script = fake_server::script(op, rest);
    fake_server::with_fake(script, |socket| {
        let Ok(admin) = RemoteAdmin::connect_with_timeout(socket, Duration::from_secs(5)) else {
            return;
        };
        let handle: Handle = SessionId::named("x").handle();
        match op & 15 {
            0 => drop(admin.stats().map(|s| format!("{s:?}"))),
            1 => drop(admin.list(&ListQuery::default()).map(|p| format!("{p:?}"))),
            2 => drop(
                admin
                    .show(&Target::Handle(handle))
                    .map(|p| format!("{p:?}")),
            ),
            3 => drop(admin.invalidate(&Target::Handle(handle))),
            4 => drop(admin.invalidate_principal("alice")),
            5 => drop(admin.purge(&mut |_| {})),
            6 => drop(admin.count_expired()),
            7 => drop(admin.export(&mut std::io::sink(), true)),
            8 => drop(admin.import(
                &mut BufReader::new(&b"{\"format\":\"sessdb-export\",\"version\":1}\n"[..]),
                &ImportOptions::default(),
            )),
            9 => drop(admin.check().map(|r| format!("{r:?}"))),
            10 => drop(admin.repair().map(|r| format!("{r:?}"))),
            11 => drop(admin.now()),
            12 => drop(admin.handles_starting_with("ab", 10)),
            13 => drop(
                admin
                    .list(&ListQuery {
                        limit: 3,
                        reverse: true,
                        ..ListQuery::default()
                    })
                    .map(|p| format!("{p:?}")),
            ),
            _ => drop(format!(
                "{:?} {}",
                admin.database_path(),
                admin.server_pid()
            )),
        }
    });
});
