//! Redis on loopback, one connection, one round trip per operation: the shared engine an
//! application moves its sessions to when it outgrows one node. The bench starts its own
//! `redis-server` (no persistence) on a free loopback port and stops it when done.

use std::env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};

use crate::data::{Plan, IDLE_MS, WARM_UP_SALT};
use crate::measure::{status_field, Timer};

pub const ENGINE: &str = "Redis";
const CHUNK: usize = 1000;

/// The `redis-server` binary on the PATH, if any.
pub fn server_binary() -> Option<PathBuf> {
    env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    })
}

/// A redis-server this process started; stopped on drop. The tower-sessions RedisStore rows
/// start theirs the same way.
pub struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(binary: &Path, dir: &Path) -> Result<(Server, u16)> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let work = dir.join("redis");
        std::fs::create_dir_all(&work)?;
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(&work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok((Server { child }, port))
    }

    pub fn peak_rss_kib(&self) -> Option<u64> {
        status_field(&format!("/proc/{}/status", self.child.id()), "VmHWM:")
    }
}

/// A minimal RESP2 client: commands of bulk strings, replies read whole.
pub struct Conn {
    reader: BufReader<TcpStream>,
    out: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Reply {
    Ok,
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

impl Conn {
    pub fn connect(port: u16) -> Result<Conn> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Conn {
                        reader: BufReader::new(stream),
                        out: Vec::new(),
                    });
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context("connecting to redis-server")
                }
                Err(_) => sleep(Duration::from_millis(20)),
            }
        }
    }

    fn queue(&mut self, args: &[&[u8]]) {
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    fn send(&mut self) -> Result<()> {
        self.reader.get_mut().write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn read(&mut self) -> Result<Reply> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        let text = std::str::from_utf8(line.get(1..line.len().saturating_sub(2)).unwrap_or(&[]))?;
        match line.first() {
            Some(b'+') => Ok(Reply::Ok),
            Some(b':') => Ok(Reply::Int(text.parse()?)),
            Some(b'$') => {
                let len: i64 = text.parse()?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut buf = vec![0; len as usize + 2];
                self.reader.read_exact(&mut buf)?;
                buf.truncate(len as usize);
                Ok(Reply::Bulk(Some(buf)))
            }
            Some(b'-') => bail!("redis error: {text}"),
            _ => bail!(
                "unexpected redis reply {:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.queue(args);
        self.send()?;
        self.read()
    }
}

fn key(plan: &Plan, i: usize) -> Vec<u8> {
    let mut k = b"session:".to_vec();
    k.extend_from_slice(&plan.peer_key(i));
    k
}

pub fn run(plan: &Plan, dir: &Path, binary: &Path) -> Result<()> {
    let (server, port) = Server::start(binary, dir)?;
    let mut conn = Conn::connect(port)?;
    let ttl = IDLE_MS.to_string();

    // Setup, pipelined by 1,000.
    let start = Instant::now();
    for chunk in (0..plan.n).collect::<Vec<_>>().chunks(CHUNK) {
        for &i in chunk {
            let value = plan.peer_value(i, &plan.content(i), plan.created(i), 1);
            conn.queue(&[b"SET", &key(plan, i), &value, b"PX", ttl.as_bytes()]);
        }
        conn.send()?;
        for _ in chunk {
            ensure!(conn.read()? == Reply::Ok, "SET failed");
        }
    }
    let mut m = Timer::default().finish(
        "populate (setup)",
        ENGINE,
        plan.n,
        Some(start.elapsed().as_secs_f64()),
    );
    m.ops = plan.n as u64;
    let used = info_used_memory(&mut conn)?;
    m.disk_per_session = Some(used as f64 / plan.n as f64);
    m.rss_kib = server.peak_rss_kib();
    m.note = Some("pipelined SET PX; bytes/session is used_memory in RAM (no persistence); RSS of redis-server".into());
    m.emit();

    // The server holds the data in its own process, so only the warm-up pass of the other
    // engines' load hit applies (their fresh process would restart an empty server here).
    for warm_up in [true, false] {
        let salt = if warm_up { WARM_UP_SALT } else { 1 };
        let mut timer = Timer::with_capacity(plan.sample);
        for &i in plan.live_order(salt).iter().take(plan.sample) {
            let k = key(plan, i);
            let reply = timer.time(|| conn.call(&[b"GET", &k]))?;
            ensure!(matches!(reply, Reply::Bulk(Some(_))), "a key is missing");
        }
        if warm_up {
            continue;
        }
        let mut m = timer.finish("load hit", ENGINE, plan.n, None);
        m.rss_kib = server.peak_rss_kib();
        m.note = Some("GET, one round trip on loopback; after an untimed warm-up pass".into());
        m.emit();
    }

    let order: Vec<usize> = plan.live_order(2).into_iter().take(plan.sample).collect();
    let mut timer = Timer::with_capacity(order.len());
    for chunk in order.chunks(CHUNK) {
        let values: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let c = plan.modified(i, 1);
                (key(plan, i), plan.peer_value(i, &c, plan.t_work(), 2))
            })
            .collect();
        for (k, v) in &values {
            let reply = timer.time(|| conn.call(&[b"SET", k, v, b"PX", ttl.as_bytes()]))?;
            ensure!(reply == Reply::Ok, "SET failed");
        }
    }
    let mut m = timer.finish("save modified", ENGINE, plan.n, None);
    m.rss_kib = server.peak_rss_kib();
    m.note = Some("SET PX, one round trip, no index, no persistence".into());
    m.emit();
    Ok(())
}

pub fn info_used_memory(conn: &mut Conn) -> Result<u64> {
    let Reply::Bulk(Some(info)) = conn.call(&[b"INFO", b"memory"])? else {
        bail!("INFO memory gave no text");
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO memory has no used_memory")
}
