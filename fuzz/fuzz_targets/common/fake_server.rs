//! A fake application for fuzzing clients: it accepts connections on a fresh socket, reads
//! the client's hello, sends `welcome`, reads one request frame, sends `answer`, shuts its
//! side, and drains the client until it goes (a client that reconnects gets the same script,
//! up to three times).

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub struct Script {
    pub welcome: Vec<u8>,
    pub answer: Vec<u8>,
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Well-formed frames from `rest`: a length byte and that many bytes each (255: the rest).
fn frames(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some((&n, tail)) = rest.split_first() {
        let n = if n == 255 {
            tail.len()
        } else {
            (n as usize).min(tail.len())
        };
        out.extend(frame(&tail[..n]));
        rest = &tail[n..];
    }
    out
}

/// `op`'s high bits shape the script: bit 4 a valid welcome (bits 5-6 its version - 1),
/// else the first framed chunk of `rest` is the welcome's body; bit 7 the answer as
/// well-formed frames, else raw bytes.
pub fn script(op: u8, rest: &[u8]) -> Script {
    let (welcome, rest) = if op & 16 != 0 {
        let version = 1 + ((op >> 5) & 3);
        // Ok(ServerInfo { version, pid: 7, database: b"/db" })
        let body = [0u8, version, 7, 3, b'/', b'd', b'b'];
        (frame(&body), rest)
    } else {
        match rest.split_first() {
            Some((&n, tail)) => {
                let n = (n as usize).min(tail.len());
                (frame(&tail[..n]), &tail[n..])
            }
            None => (Vec::new(), rest),
        }
    };
    let answer = if op & 128 != 0 {
        frames(rest)
    } else {
        rest.to_vec()
    };
    Script { welcome, answer }
}

fn read_frame(s: &mut UnixStream) -> bool {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let len = u32::from_be_bytes(len) as u64;
    let mut body = Vec::new();
    matches!(s.take(len).read_to_end(&mut body), Ok(n) if n as u64 == len)
}

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

fn serve_one(mut s: UnixStream, script: &Script) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    if !script.welcome.is_empty()
        && read_frame(&mut s)
        && s.write_all(&script.welcome).is_ok()
        && read_frame(&mut s)
    {
        let _ = s.write_all(&script.answer);
    }
    let _ = s.shutdown(Shutdown::Write);
    let mut sink = [0u8; 65536];
    loop {
        match s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the client kept its connection open 20 s after the answer")
            }
            Err(_) => break,
        }
    }
}

struct Fake {
    path: PathBuf,
    script: Arc<Mutex<Arc<Script>>>,
}

/// One fake application for the whole run (a thread per input is slow under ASan): it plays
/// the script set when it accepts a connection, one connection at a time.
fn fake() -> &'static Fake {
    static FAKE: OnceLock<Fake> = OnceLock::new();
    FAKE.get_or_init(|| {
        let path = dir().join("fake.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let script = Arc::new(Mutex::new(Arc::new(Script {
            welcome: Vec::new(),
            answer: Vec::new(),
        })));
        std::thread::spawn({
            let script = script.clone();
            move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let current = script.lock().unwrap().clone();
                    serve_one(conn, &current);
                }
            }
        });
        Fake { path, script }
    })
}

/// Runs `client` against the fake application playing `script`.
pub fn with_fake(script: Script, client: impl FnOnce(&Path)) {
    let fake = fake();
    *fake.script.lock().unwrap() = Arc::new(script);
    client(&fake.path);
}
