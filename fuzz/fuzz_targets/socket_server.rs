//! The admin socket's server, fed by a hostile client: arbitrary bytes (optionally after a
//! valid hello, optionally cut into well-formed frames) through a real Unix socket into a
//! store that serves it. The server thread must never panic (libFuzzer's panic hook aborts
//! the process, whichever thread panics), never hang (the client's read would time out), and
//! the store must still answer afterwards.
#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sessdb::{Admin, RemoteAdmin, Store};

struct Fixture {
    _dir: tempfile::TempDir,
    _store: Store,
    socket: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("a.sock");
        let store = Store::builder()
            .admin_socket(&socket)
            .admin_socket_frame_timeout(Duration::from_secs(3))
            .admin_socket_idle_timeout(Duration::from_secs(3))
            .open(dir.path().join("db"))
            .expect("open");
        for i in 0..5 {
            let mut s = store.create();
            s.set_principal(Some(&format!("user{}", i % 2))).unwrap();
            s.set_label(Some("laptop")).unwrap();
            s.insert("n", &i).unwrap();
            s.insert("b", &vec![1u8, 2, 3]).unwrap();
            s.save().unwrap();
        }
        Fixture {
            _dir: dir,
            _store: store,
            socket,
        }
    })
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The client's bytes for `data`: its first byte picks the shape, the rest is content.
pub fn bytes_for(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if mode & 1 != 0 {
        // A valid hello: magic, min version 1, max version 1 to 4 (postcard varints).
        let max = 1 + ((mode >> 1) & 3);
        let mut hello = b"sessdb\0A".to_vec();
        hello.extend_from_slice(&[1, max]);
        out.extend(frame(&hello));
    }
    if mode & 8 != 0 {
        // Well-formed frames: a length byte and that many bytes each (255: the rest).
        let mut rest = rest;
        while let Some((&n, tail)) = rest.split_first() {
            let n = if n == 255 {
                tail.len()
            } else {
                (n as usize).min(tail.len())
            };
            out.extend(frame(&tail[..n]));
            rest = &tail[n..];
        }
    } else {
        out.extend_from_slice(rest);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let bytes = bytes_for(data);
    let mut conn = UnixStream::connect(&fx.socket).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may close early (a protocol error): a failed write is fine.
    let _ = conn.write_all(&bytes);
    let _ = conn.shutdown(Shutdown::Write);
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                assert!(answer.len() < 256 << 20, "the server answered over 256 MiB");
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the server did not close the connection in {:?}",
                    started.elapsed()
                )
            }
            Err(_) => break, // reset
        }
    }
    // The application still serves: a real client gets an answer.
    if data.first().is_some_and(|m| m & 0x80 != 0) {
        let admin = RemoteAdmin::connect(&fx.socket).expect("connect after");
        admin.stats().expect("stats after");
    }
});
