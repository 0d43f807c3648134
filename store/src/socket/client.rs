//! The client end: [`RemoteAdmin`], the [`Admin`] interface of a running application reached
//! through its admin socket.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use time::OffsetDateTime;

use super::wire::{
    decode, path_from, read_frame, write_frame, FrameError, Hello, ImportFrame, Request, Response,
    ServerInfo, Welcome, CHUNK_BYTES, MAGIC, PROTOCOL_VERSION,
};
use super::Stream;
use crate::admin::{Admin, ListQuery, Page, SessionInfo, Stats, Target};
use crate::check::{CheckReport, RepairReport};
use crate::error::{Error, Result};
use crate::export::{ExportReport, ImportOptions, ImportReport};
use crate::store::lock;

/// The [`Admin`] interface of a running application, through the admin socket it serves
/// ([`Builder::admin_socket`](crate::Builder::admin_socket)).
///
/// Every method behaves as it does on a [`Store`](crate::Store) opened directly, and errors
/// keep their kind ([`Error::NotFound`], [`Error::ReadOnly`], [`Error::Corrupt`], ...).
/// Failures of the connection itself are [`Error::AdminSocket`], [`Error::Disconnected`],
/// [`Error::Refused`] and [`Error::Protocol`]; after one, the next call connects again (so a
/// restarted application is reached without a new `RemoteAdmin`).
///
/// One request runs at a time per `RemoteAdmin` (calls from several threads wait for each
/// other); open one per thread for parallel requests. Do not call it from inside the
/// `progress` callback of its own [`purge`](Admin::purge).
///
/// ```no_run
/// use sessdb::{Admin, RemoteAdmin};
///
/// let admin = RemoteAdmin::connect(RemoteAdmin::default_socket("/var/lib/app/sessions"))?;
/// println!("{} live sessions in the application (pid {})", admin.stats()?.live, admin.server_pid());
/// admin.invalidate_principal("alice")?;
/// # Ok::<(), sessdb::Error>(())
/// ```
pub struct RemoteAdmin {
    socket: PathBuf,
    database: PathBuf,
    pid: u32,
    conn: Mutex<Option<Conn>>,
}

impl fmt::Debug for RemoteAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAdmin")
            .field("socket", &self.socket)
            .field("database", &self.database)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

struct Conn {
    io: Stream,
    buf: Vec<u8>,
    /// Set when the connection can no longer be trusted to be in step with the server.
    broken: bool,
}

/// An I/O failure on the connection: the peer closing it is [`Error::Disconnected`] (never a
/// broken-pipe `io::Error`, which a CLI would take for its own output closing).
fn transport(socket: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected
        | io::ErrorKind::UnexpectedEof => Error::Disconnected {
            path: socket.to_path_buf(),
        },
        _ => Error::AdminSocket {
            path: socket.to_path_buf(),
            what: "I/O error on",
            source: e,
        },
    }
}

fn protocol(socket: &Path, reason: impl Into<String>) -> Error {
    Error::Protocol {
        path: socket.to_path_buf(),
        reason: reason.into(),
    }
}

impl Conn {
    fn open(socket: &Path) -> Result<(Conn, ServerInfo)> {
        let stream = UnixStream::connect(socket).map_err(|source| Error::AdminSocket {
            path: socket.to_path_buf(),
            what: "cannot connect to",
            source,
        })?;
        let mut conn = Conn {
            io: Stream(stream),
            buf: Vec::new(),
            broken: false,
        };
        let hello = Hello {
            magic: MAGIC,
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
        };
        // A refusing server answers without reading: its answer says more than our failed
        // write would.
        let sent = write_frame(&mut conn.io, &hello);
        let welcome: Welcome = match read_frame(&mut conn.io, &mut conn.buf) {
            Ok(()) => decode(&conn.buf).map_err(|_| {
                protocol(
                    socket,
                    "the peer is not a sessdb admin socket (unexpected handshake)",
                )
            })?,
            Err(FrameError::TooLarge(_)) => {
                return Err(protocol(socket, "the peer is not a sessdb admin socket"))
            }
            Err(FrameError::Closed) => {
                return Err(match sent {
                    Err(e) => transport(socket, e),
                    Ok(()) => Error::Disconnected {
                        path: socket.to_path_buf(),
                    },
                })
            }
            Err(FrameError::Io(e)) => return Err(transport(socket, e)),
        };
        let info = welcome.map_err(|e| e.into_error(socket))?;
        if info.version != PROTOCOL_VERSION {
            return Err(protocol(
                socket,
                format!("the application chose protocol version {}", info.version),
            ));
        }
        Ok((conn, info))
    }

    fn send<T: serde::Serialize>(&mut self, socket: &Path, message: &T) -> Result<()> {
        write_frame(&mut self.io, message).map_err(|e| {
            self.broken = true;
            if e.kind() == io::ErrorKind::InvalidData {
                protocol(socket, format!("the request cannot be sent: {e}"))
            } else {
                transport(socket, e)
            }
        })
    }

    /// The next response; an application error becomes `Err` with its kind.
    fn recv(&mut self, socket: &Path) -> Result<Response> {
        let read = read_frame(&mut self.io, &mut self.buf);
        let response = read
            .map_err(|e| match e {
                FrameError::Closed => Error::Disconnected {
                    path: socket.to_path_buf(),
                },
                FrameError::TooLarge(n) => {
                    protocol(socket, format!("the application sent a frame of {n} bytes"))
                }
                FrameError::Io(e) => transport(socket, e),
            })
            .and_then(|()| decode::<Response>(&self.buf).map_err(|e| protocol(socket, e)));
        match response {
            Ok(Response::Error(e)) => Err(e.into_error(socket)),
            Ok(r) => Ok(r),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    fn unexpected<T>(&mut self, socket: &Path, r: &Response) -> Result<T> {
        self.broken = true;
        Err(protocol(
            socket,
            format!("unexpected response {}", r.name()),
        ))
    }
}

impl RemoteAdmin {
    /// Connects to the admin socket at `socket` and checks that a sessdb application of a
    /// compatible protocol version answers.
    ///
    /// # Errors
    /// [`Error::AdminSocket`] if nothing can be reached there (no such file, permission denied,
    /// nobody listening); [`Error::Refused`] if the application refuses this user (only its own
    /// user and root may connect) or has too many connections; [`Error::Protocol`] if the peer
    /// is not a sessdb admin socket of a compatible version.
    pub fn connect(socket: impl AsRef<Path>) -> Result<RemoteAdmin> {
        let socket = socket.as_ref().to_path_buf();
        let (conn, info) = Conn::open(&socket)?;
        Ok(RemoteAdmin {
            database: path_from(info.database),
            pid: info.pid,
            socket,
            conn: Mutex::new(Some(conn)),
        })
    }

    /// Where an application serves its admin socket by default: `admin.sock` in its database
    /// folder ([`Builder::admin_socket_default`](crate::Builder::admin_socket_default)).
    pub fn default_socket(database: impl AsRef<Path>) -> PathBuf {
        database.as_ref().join(super::ADMIN_SOCKET_FILE)
    }

    /// The socket this client connects to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The database folder the application serves (an absolute path), as it reported when
    /// this client connected.
    pub fn database_path(&self) -> &Path {
        &self.database
    }

    /// The process id of the application, as it reported when this client connected.
    pub fn server_pid(&self) -> u32 {
        self.pid
    }

    /// Runs `f` on the connection (connecting again first if the last one failed), and drops
    /// the connection if `f` left it out of step.
    fn with_conn<R>(&self, f: impl FnOnce(&mut Conn, &Path) -> Result<R>) -> Result<R> {
        let mut slot = lock(&self.conn);
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(Conn::open(&self.socket)?.0),
        };
        let result = f(conn, &self.socket);
        if conn.broken {
            *slot = None;
        }
        result
    }

    /// One request with one final answer, picked out by `pick`.
    fn call<R>(
        &self,
        request: &Request,
        pick: impl FnOnce(Response) -> Result<R, Response>,
    ) -> Result<R> {
        self.with_conn(|conn, socket| {
            conn.send(socket, request)?;
            let response = conn.recv(socket)?;
            pick(response).or_else(|other| conn.unexpected(socket, &other))
        })
    }
}

impl Admin for RemoteAdmin {
    fn stats(&self) -> Result<Stats> {
        self.call(&Request::Stats, |r| match r {
            Response::Stats(s) => Ok(s),
            other => Err(other),
        })
    }

    fn list(&self, query: &ListQuery) -> Result<Page> {
        self.with_conn(|conn, socket| {
            conn.send(socket, &Request::list(query))?;
            let mut sessions = Vec::new();
            loop {
                match conn.recv(socket)? {
                    Response::Sessions(part) => {
                        for s in part {
                            match s.into_info() {
                                Ok(info) => sessions.push(info),
                                Err(reason) => {
                                    conn.broken = true;
                                    return Err(protocol(socket, reason));
                                }
                            }
                        }
                    }
                    Response::PageEnd(next) => return Ok(Page { sessions, next }),
                    other => return conn.unexpected(socket, &other),
                }
            }
        })
    }

    fn show(&self, target: &Target) -> Result<Option<SessionInfo>> {
        // Only the handle crosses the socket, never a session id.
        self.with_conn(|conn, socket| {
            conn.send(socket, &Request::Show(target.handle()))?;
            match conn.recv(socket)? {
                Response::Session(None) => Ok(None),
                Response::Session(Some(s)) => s.into_info().map(Some).map_err(|reason| {
                    conn.broken = true;
                    protocol(socket, reason)
                }),
                other => conn.unexpected(socket, &other),
            }
        })
    }

    fn invalidate(&self, target: &Target) -> Result<bool> {
        self.call(&Request::Invalidate(target.handle()), |r| match r {
            Response::Invalidated(b) => Ok(b),
            other => Err(other),
        })
    }

    fn invalidate_principal(&self, principal: &str) -> Result<usize> {
        let request = Request::InvalidatePrincipal(principal.to_string());
        self.call(&request, |r| match r {
            Response::InvalidatedPrincipal(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(other),
        })
    }

    fn purge(&self, progress: &mut dyn FnMut(u64)) -> Result<u64> {
        self.with_conn(|conn, socket| {
            conn.send(socket, &Request::Purge)?;
            loop {
                match conn.recv(socket)? {
                    Response::PurgeProgress(n) => progress(n),
                    Response::Purged(n) => return Ok(n),
                    other => return conn.unexpected(socket, &other),
                }
            }
        })
    }

    fn count_expired(&self) -> Result<u64> {
        self.call(&Request::CountExpired, |r| match r {
            Response::CountExpired(n) => Ok(n),
            other => Err(other),
        })
    }

    fn export(&self, out: &mut dyn Write, include_expired: bool) -> Result<ExportReport> {
        let write_err = |source: io::Error| Error::Io {
            path: "export output".into(),
            source,
        };
        self.with_conn(|conn, socket| {
            conn.send(socket, &Request::Export { include_expired })?;
            loop {
                match conn.recv(socket)? {
                    Response::ExportChunk(bytes) => {
                        if let Err(e) = out.write_all(&bytes) {
                            // The server is still sending: only a new connection is in step.
                            conn.broken = true;
                            return Err(write_err(e));
                        }
                    }
                    Response::Exported(report) => {
                        out.flush().map_err(write_err)?;
                        return Ok(report);
                    }
                    other => return conn.unexpected(socket, &other),
                }
            }
        })
    }

    fn import(&self, input: &mut dyn BufRead, options: &ImportOptions) -> Result<ImportReport> {
        self.with_conn(|conn, socket| {
            conn.send(socket, &Request::Import(options.clone()))?;
            let failed = loop {
                let n = match input.fill_buf() {
                    Ok([]) => break None,
                    Ok(data) => {
                        let n = data.len().min(CHUNK_BYTES);
                        conn.send(socket, &ImportFrame::Chunk(data[..n].to_vec()))?;
                        n
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                    Err(e) => break Some(e),
                };
                input.consume(n);
            };
            if let Some(source) = failed {
                // The server writes nothing on an abort; its answer only keeps us in step.
                conn.send(socket, &ImportFrame::Abort)?;
                match conn.recv(socket) {
                    Ok(_) | Err(Error::Io { .. }) => {}
                    Err(e) => return Err(e),
                }
                return Err(Error::Io {
                    path: "import input".into(),
                    source,
                });
            }
            conn.send(socket, &ImportFrame::End)?;
            match conn.recv(socket)? {
                Response::Imported(report) => Ok(report),
                other => conn.unexpected(socket, &other),
            }
        })
    }

    fn check(&self) -> Result<CheckReport> {
        self.call(&Request::Check, |r| match r {
            Response::Checked(report) => Ok(report),
            other => Err(other),
        })
    }

    fn repair(&self) -> Result<RepairReport> {
        self.call(&Request::Repair, |r| match r {
            Response::Repaired(report) => Ok(report),
            other => Err(other),
        })
    }

    /// The application's clock; this machine's clock if the application cannot be reached.
    fn now(&self) -> OffsetDateTime {
        self.call(&Request::Now, |r| match r {
            Response::Now(nanos) => Ok(nanos),
            other => Err(other),
        })
        .ok()
        .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
    }
}
