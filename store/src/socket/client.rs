//! The client end: [`RemoteAdmin`], the [`Admin`] interface of a running application reached
//! through its admin socket.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use super::wire::{
    decode, path_from, read_frame, write_frame, FrameError, Hello, ImportFrame, Request, Response,
    ServerInfo, Welcome, CHUNK_BYTES, MAGIC, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use super::Stream;
use crate::admin::{Admin, ListQuery, Page, SessionInfo, Stats, Target};
use crate::check::{CheckReport, RepairReport};
use crate::error::{Error, Result};
use crate::export::{ExportReport, ImportOptions, ImportReport};
use crate::id::Handle;
use crate::store::lock;

/// The [`Admin`] interface of a running application, through the admin socket it serves
/// ([`Builder::admin_socket`](crate::Builder::admin_socket)).
///
/// Every method behaves as it does on a [`Store`](crate::Store) opened directly, and errors
/// keep their kind ([`Error::NotFound`], [`Error::ReadOnly`], [`Error::Corrupt`], ...).
/// Failures of the connection itself are [`Error::AdminSocket`], [`Error::Disconnected`],
/// [`Error::Refused`], [`Error::Protocol`] and [`Error::Unresponsive`]; after one, the next call
/// connects again (so a restarted application is reached without a new `RemoteAdmin`).
///
/// ## Timeouts and reconnecting
/// When the application sends nothing for the client's timeout
/// ([`DEFAULT_TIMEOUT`](RemoteAdmin::DEFAULT_TIMEOUT), or
/// [`connect_with_timeout`](RemoteAdmin::connect_with_timeout)), the client checks whether it
/// is alive by opening a second connection: if the application answers that handshake, it is
/// busy (a `check` of a large store sends nothing until it is done) and the client goes on
/// waiting; if not, it is stopped or hung and the call fails with [`Error::Unresponsive`]
/// after at most twice the timeout. Writes to the socket are bounded the same way, and so is
/// connecting: the system queues connections the application has not accepted yet, and once a
/// stopped application's queue is full, connecting fails with [`Error::Unresponsive`] after
/// the timeout instead of waiting for room.
///
/// The application closes connections that stay idle (60 s by default,
/// [`Builder::admin_socket_idle_timeout`](crate::Builder::admin_socket_idle_timeout)). Before
/// each request the client checks its connection and, if the application closed it, connects
/// again, so an idle client never sees that. It also retries a request once on a new
/// connection when the old one turns out to be closed while the request was being sent (the
/// application never received it whole, so never ran it), and, for requests that change
/// nothing (`stats`, `list`, `show`, `count_expired`, `export`, `check`, `now`), when the
/// connection closes before any answer. A request that changes something (`invalidate`,
/// `invalidate_principal`, `purge`, `import`, `repair`) is never sent twice: if the connection
/// closes after it was sent, the call fails with [`Error::Disconnected`] and whether it ran is
/// unknown.
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
    timeout: Duration,
    conn: Mutex<Option<Conn>>,
}

impl fmt::Debug for RemoteAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAdmin")
            .field("socket", &self.socket)
            .field("database", &self.database)
            .field("pid", &self.pid)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

struct Conn {
    io: Patient,
    buf: Vec<u8>,
    /// The protocol version agreed at the handshake.
    version: u32,
    /// Set when the connection can no longer be trusted to be in step with the server.
    broken: bool,
    /// Whether the current request's first frame went out whole.
    sent: bool,
    /// Whether any frame came back since the current request was sent.
    answered: bool,
}

/// Whether a request may be sent again on a new connection when the old one turns out closed
/// (see [`RemoteAdmin`]'s "Timeouts and reconnecting").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// It changes nothing: also when the connection closed before any answer.
    Idempotent,
    /// It changes something: only when it was not sent whole.
    IfUnsent,
}

/// The socket with the client's timeout on every read and write: when it passes, the
/// application is asked for a new connection; one that answers is busy, and the wait goes on.
struct Patient {
    stream: Stream,
    socket: PathBuf,
    timeout: Duration,
    /// Off during a handshake, which is itself the liveness check.
    probe: bool,
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Patient {
    /// Whether the application answers a new connection's handshake (or refuses it, which is
    /// an answer too).
    fn alive(&self) -> bool {
        matches!(
            Conn::open(&self.socket, self.timeout),
            Ok(_) | Err(Error::Refused { .. })
        )
    }

    fn patiently<T>(&mut self, mut op: impl FnMut(&mut Stream) -> io::Result<T>) -> io::Result<T> {
        loop {
            match op(&mut self.stream) {
                Err(e) if timed_out(&e) && self.probe => {
                    if !self.alive() {
                        // The silence, then the probe's unanswered handshake.
                        let waited = Waited(self.timeout.saturating_mul(2));
                        return Err(io::Error::new(io::ErrorKind::TimedOut, waited));
                    }
                }
                Err(e) if timed_out(&e) => return Err(io::ErrorKind::TimedOut.into()),
                other => return other,
            }
        }
    }
}

impl Read for Patient {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.patiently(|s| s.read(buf))
    }
}

impl Write for Patient {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.patiently(|s| s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How long a timed-out wait lasted in all, when that is more than the client's timeout.
#[derive(Debug)]
struct Waited(Duration);

impl fmt::Display for Waited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer for {:?}", self.0)
    }
}

impl std::error::Error for Waited {}

/// An I/O failure on the connection: the peer closing it is [`Error::Disconnected`] (never a
/// broken-pipe `io::Error`, which a CLI would take for its own output closing), and a timeout
/// [`Error::Unresponsive`].
fn transport(socket: &Path, timeout: Duration, e: io::Error) -> Error {
    if timed_out(&e) {
        let waited = e.get_ref().and_then(|inner| inner.downcast_ref::<Waited>());
        return Error::Unresponsive {
            path: socket.to_path_buf(),
            waited: waited.map_or(timeout, |w| w.0),
            // Whether the request was sent is for the caller to say (`with_conn`).
            sent: true,
        };
    }
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

/// `e`, said of a request that was not sent: an application that did not answer the
/// connection it was to go on (stopped, hung) got nothing to do once it runs again.
fn unsent(e: Error) -> Error {
    match e {
        Error::Unresponsive { path, waited, .. } => Error::Unresponsive {
            path,
            waited,
            sent: false,
        },
        other => other,
    }
}

fn protocol(socket: &Path, reason: impl Into<String>) -> Error {
    Error::Protocol {
        path: socket.to_path_buf(),
        reason: reason.into(),
    }
}

/// Who serves a socket, and the folder that holds it.
#[derive(Debug, Clone, Copy)]
struct Serving {
    /// The server's effective uid and gid, as the kernel recorded them.
    uid: u32,
    gid: u32,
    /// The folder's owner and group, and whether its group may write in it.
    folder: Option<(u32, u32, bool)>,
}

/// Whether a server may be sent commands by this process (effective uid `me`): one run as
/// this user or root, as the folder's owner (an application running as its database's owner,
/// reached by root), or with the folder's group when that group may write in it (an
/// application given a shared folder). Anyone else could only have put a socket at the path
/// through a folder everyone may write to, or in the moment between a cleaner's removal and
/// the application's new bind: it would get an import's sessions and answer for invalidations
/// that never happen. (The application checks its clients too: its own user or root.)
fn trusted_server(serving: Serving, me: u32) -> bool {
    let Serving { uid, gid, folder } = serving;
    uid == me
        || uid == 0
        || folder.is_some_and(|(owner, group, group_writes)| {
            uid == owner || (group_writes && gid == group)
        })
}

/// Refuses the server at `socket` unless [`trusted_server`].
fn check_server(stream: &UnixStream, socket: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let (uid, gid, pid) = super::server::peer(stream).map_err(|source| Error::AdminSocket {
        path: socket.to_path_buf(),
        what: "cannot tell who serves",
        source,
    })?;
    let me = nix::unistd::geteuid().as_raw();
    // The folder the path names the socket in, not where a link there leads: whoever may
    // write in that folder could have put a link to a socket of theirs, in a folder they own.
    let folder = match socket.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = std::fs::metadata(folder)
        .ok()
        .map(|m| (m.uid(), m.gid(), m.permissions().mode() & 0o020 != 0));
    if trusted_server(Serving { uid, gid, folder }, me) {
        return Ok(());
    }
    let pid = pid.map_or(String::new(), |p| format!(" (pid {p})"));
    Err(protocol(
        socket,
        format!(
            "the process serving it{pid} runs as uid {uid}: not this user (uid {me}), root, the \
             owner of the socket's folder or its group (when that group may write there), so it \
             is not sent the command (another user may have put a socket, or a link to one, at \
             this path; give the path of the socket itself)"
        ),
    ))
}

/// The error of an import whose frame could not be sent (`e`): the application's own reason
/// if it said why it stopped reading (input that stalled past its idle timeout: abandoned,
/// nothing written), which says more than the closed connection, and which a client must not
/// take for an import that may have been written. An application that did not take the frame
/// in time (stopped, hung) said nothing: its silence is the error, without a second wait.
fn why_stopped(conn: &mut Conn, socket: &Path, e: Error) -> Error {
    if matches!(e, Error::Unresponsive { .. }) {
        return e;
    }
    match conn.recv(socket) {
        Err(why @ Error::Protocol { .. }) => why,
        _ => e,
    }
}

/// Connects to `socket`, waiting at most `timeout` for the application to make room.
///
/// The system queues connections until the application accepts them. A stopped or hung
/// application accepts none, its queue fills, and a plain `connect` then waits for ever. With
/// a send timeout on the socket, the system gives up after `timeout` (`EAGAIN`), and this
/// returns a timed-out error.
pub(crate) fn connect(socket: &Path, timeout: Duration) -> io::Result<UnixStream> {
    use nix::errno::Errno;
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    use nix::sys::time::TimeVal;
    use std::os::fd::AsRawFd;
    let address = UnixAddr::new(socket)?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    use nix::libc::{suseconds_t, time_t};
    // Zero would mean no timeout at all; the callers' timeout is at least a millisecond.
    let timeout = timeout.max(Duration::from_micros(1));
    #[allow(
        clippy::unnecessary_fallible_conversions,
        reason = "suseconds_t is i32 on some targets"
    )]
    let wait = TimeVal::new(
        time_t::try_from(timeout.as_secs()).unwrap_or(time_t::MAX),
        suseconds_t::try_from(timeout.subsec_micros()).unwrap_or(0),
    );
    socket::setsockopt(&fd, sockopt::SendTimeout, &wait)?;
    loop {
        match socket::connect(fd.as_raw_fd(), &address) {
            Ok(()) => return Ok(UnixStream::from(fd)),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
}

impl Conn {
    fn open(socket: &Path, timeout: Duration) -> Result<(Conn, ServerInfo)> {
        let cannot = |source| Error::AdminSocket {
            path: socket.to_path_buf(),
            what: "cannot connect to",
            source,
        };
        let stream = connect(socket, timeout).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => transport(socket, timeout, e),
            _ => cannot(e),
        })?;
        check_server(&stream, socket)?;
        stream.set_read_timeout(Some(timeout)).map_err(cannot)?;
        stream.set_write_timeout(Some(timeout)).map_err(cannot)?;
        let mut conn = Conn {
            io: Patient {
                stream: Stream(stream),
                socket: socket.to_path_buf(),
                timeout,
                probe: false,
            },
            buf: Vec::new(),
            version: OLDEST_PROTOCOL_VERSION,
            broken: false,
            sent: false,
            answered: false,
        };
        let hello = Hello {
            magic: MAGIC,
            min_version: OLDEST_PROTOCOL_VERSION,
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
                    Err(e) => transport(socket, timeout, e),
                    Ok(()) => Error::Disconnected {
                        path: socket.to_path_buf(),
                    },
                })
            }
            Err(FrameError::Io(e)) => return Err(transport(socket, timeout, e)),
        };
        let info = welcome.map_err(|e| e.into_error(socket))?;
        if !(OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&info.version) {
            return Err(protocol(
                socket,
                format!("the application chose protocol version {}", info.version),
            ));
        }
        conn.io.probe = true;
        conn.version = info.version;
        Ok((conn, info))
    }

    /// Whether the application closed this idle connection (or sent something unasked, which
    /// leaves it out of step): either way it is of no more use.
    fn closed_by_peer(&self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        let mut byte = [0u8; 1];
        let fd = self.io.stream.0.as_raw_fd();
        !matches!(
            recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
            Err(nix::errno::Errno::EAGAIN)
        )
    }

    /// Sends one frame; the first one sent whole marks the request as sent.
    fn send<T: serde::Serialize>(&mut self, socket: &Path, message: &T) -> Result<()> {
        let timeout = self.io.timeout;
        write_frame(&mut self.io, message).map_err(|e| {
            self.broken = true;
            if e.kind() == io::ErrorKind::InvalidData {
                protocol(socket, format!("the request cannot be sent: {e}"))
            } else {
                transport(socket, timeout, e)
            }
        })?;
        self.sent = true;
        Ok(())
    }

    /// The next response; an application error becomes `Err` with its kind.
    fn recv(&mut self, socket: &Path) -> Result<Response> {
        let timeout = self.io.timeout;
        let read = read_frame(&mut self.io, &mut self.buf);
        // A close before any answer: the end of the stream, or a reset, which is what the
        // client sees when the application closed the connection with the request unread (its
        // idle deadline passing as the request arrived).
        let closed_unanswered = match &read {
            Err(FrameError::Closed) => true,
            Err(FrameError::Io(e)) => e.kind() == io::ErrorKind::ConnectionReset,
            _ => false,
        };
        if !closed_unanswered {
            self.answered = true;
        }
        let response = read
            .map_err(|e| match e {
                FrameError::Closed => Error::Disconnected {
                    path: socket.to_path_buf(),
                },
                FrameError::TooLarge(n) => {
                    protocol(socket, format!("the application sent a frame of {n} bytes"))
                }
                FrameError::Io(e) => transport(socket, timeout, e),
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
    /// is not a sessdb admin socket of a compatible version; [`Error::Unresponsive`] if the
    /// application does not answer within [`DEFAULT_TIMEOUT`](RemoteAdmin::DEFAULT_TIMEOUT).
    pub fn connect(socket: impl AsRef<Path>) -> Result<RemoteAdmin> {
        RemoteAdmin::connect_with_timeout(socket, RemoteAdmin::DEFAULT_TIMEOUT)
    }

    /// How long a client waits for the application by default: 10 seconds. Long enough for an
    /// application under load to answer a handshake, short enough that an operator (or a TUI)
    /// learns soon that the application is stopped. Long requests are not cut short by it
    /// (see "Timeouts and reconnecting" above).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Connects as [`connect`](RemoteAdmin::connect) does, waiting at most `timeout` at a
    /// time for the application (instead of [`DEFAULT_TIMEOUT`](RemoteAdmin::DEFAULT_TIMEOUT)):
    /// see "Timeouts and reconnecting" above. A zero `timeout` is taken as one millisecond.
    ///
    /// # Errors
    /// As for [`connect`](RemoteAdmin::connect).
    pub fn connect_with_timeout(
        socket: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<RemoteAdmin> {
        let socket = socket.as_ref().to_path_buf();
        let timeout = timeout.max(Duration::from_millis(1));
        let (conn, info) = Conn::open(&socket, timeout).map_err(unsent)?;
        Ok(RemoteAdmin {
            database: path_from(info.database),
            pid: info.pid,
            socket,
            timeout,
            conn: Mutex::new(Some(conn)),
        })
    }

    /// How long this client waits for the application at a time.
    pub fn timeout(&self) -> Duration {
        self.timeout
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

    /// Runs `f` (one request) on the connection: connecting again first if the last one
    /// failed or the application closed it, and once more after `f` if the connection it
    /// found open was closed in a way `retry` allows. Drops the connection if `f` left it out
    /// of step.
    fn with_conn<R>(
        &self,
        retry: Retry,
        mut f: impl FnMut(&mut Conn, &Path) -> Result<R>,
    ) -> Result<R> {
        let mut slot = lock(&self.conn);
        let mut reused = false;
        if let Some(conn) = &*slot {
            if conn.closed_by_peer() {
                // The application closed our connection: if it cannot be reached again, that
                // it went away is what to say.
                let conn = Conn::open(&self.socket, self.timeout).map_err(|e| match e {
                    Error::AdminSocket { .. } => Error::Disconnected {
                        path: self.socket.clone(),
                    },
                    other => unsent(other),
                });
                *slot = None;
                return self.run_on(&mut slot, conn?.0, &mut f);
            }
            reused = true;
        }
        let Some(conn) = slot.as_mut() else {
            let conn = Conn::open(&self.socket, self.timeout).map_err(unsent)?.0;
            return self.run_on(&mut slot, conn, &mut f);
        };
        conn.sent = false;
        conn.answered = false;
        let result = f(conn, &self.socket).map_err(|e| if conn.sent { e } else { unsent(e) });
        let again = reused
            && matches!(result, Err(Error::Disconnected { .. }))
            && (!conn.sent || (retry == Retry::Idempotent && !conn.answered));
        if conn.broken {
            *slot = None;
        }
        if again {
            *slot = None;
            let conn = Conn::open(&self.socket, self.timeout).map_err(unsent)?.0;
            return self.run_on(&mut slot, conn, &mut f);
        }
        result
    }

    /// Runs `f` on a new connection, kept in `slot` unless `f` left it out of step.
    fn run_on<R>(
        &self,
        slot: &mut Option<Conn>,
        conn: Conn,
        f: &mut impl FnMut(&mut Conn, &Path) -> Result<R>,
    ) -> Result<R> {
        let conn = slot.insert(conn);
        let result = f(conn, &self.socket).map_err(|e| if conn.sent { e } else { unsent(e) });
        if conn.broken {
            *slot = None;
        }
        result
    }

    /// One request with one final answer, picked out by `pick`.
    fn call<R>(
        &self,
        request: &Request,
        retry: Retry,
        pick: impl Fn(Response) -> Result<R, Response>,
    ) -> Result<R> {
        self.with_conn(retry, |conn, socket| {
            conn.send(socket, request)?;
            let response = conn.recv(socket)?;
            pick(response).or_else(|other| conn.unexpected(socket, &other))
        })
    }
}

impl Admin for RemoteAdmin {
    fn handles_starting_with(&self, prefix: &str, limit: usize) -> Result<Vec<Handle>> {
        // An application older than protocol version 3 has no lookup: its listing's search.
        if self.with_conn(Retry::Idempotent, |conn, _| Ok(conn.version))? < 3 {
            return crate::admin::handles_by_search(self, prefix, limit);
        }
        let request = Request::HandlesStartingWith {
            prefix: prefix.to_string(),
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
        };
        self.call(&request, Retry::Idempotent, |r| match r {
            Response::Handles(handles) => Ok(handles),
            other => Err(other),
        })
    }

    fn stats(&self) -> Result<Stats> {
        self.call(&Request::Stats, Retry::Idempotent, |r| match r {
            Response::Stats(s) => Ok(s),
            other => Err(other),
        })
    }

    fn list(&self, query: &ListQuery) -> Result<Page> {
        self.with_conn(Retry::Idempotent, |conn, socket| {
            conn.send(socket, &Request::list(query))?;
            // A page holds at most what was asked for: a broken or hostile server sending
            // more is refused, not kept until memory runs out.
            let most = query.page_size();
            let mut sessions = Vec::new();
            loop {
                match conn.recv(socket)? {
                    Response::Sessions(part) => {
                        if part.len() > most - sessions.len() {
                            conn.broken = true;
                            return Err(protocol(
                                socket,
                                format!(
                                    "the application sent more than the {most} sessions asked for"
                                ),
                            ));
                        }
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
        self.with_conn(Retry::Idempotent, |conn, socket| {
            let handle = target.handle();
            conn.send(socket, &Request::Show(handle))?;
            match conn.recv(socket)? {
                Response::Session(None) => Ok(None),
                Response::Session(Some(s)) => match s.into_info() {
                    Ok(info) if info.handle == handle => Ok(Some(info)),
                    Ok(info) => {
                        conn.broken = true;
                        Err(protocol(
                            socket,
                            format!(
                                "asked for session {handle}, the application sent session {}",
                                info.handle
                            ),
                        ))
                    }
                    Err(reason) => {
                        conn.broken = true;
                        Err(protocol(socket, reason))
                    }
                },
                other => conn.unexpected(socket, &other),
            }
        })
    }

    fn invalidate(&self, target: &Target) -> Result<bool> {
        self.call(
            &Request::Invalidate(target.handle()),
            Retry::IfUnsent,
            |r| match r {
                Response::Invalidated(b) => Ok(b),
                other => Err(other),
            },
        )
    }

    fn invalidate_principal(&self, principal: &str) -> Result<usize> {
        let request = Request::InvalidatePrincipal(principal.to_string());
        self.call(&request, Retry::IfUnsent, |r| match r {
            Response::InvalidatedPrincipal(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(other),
        })
    }

    fn purge(&self, progress: &mut dyn FnMut(u64)) -> Result<u64> {
        self.with_conn(Retry::IfUnsent, |conn, socket| {
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
        self.call(&Request::CountExpired, Retry::Idempotent, |r| match r {
            Response::CountExpired(n) => Ok(n),
            other => Err(other),
        })
    }

    fn export(&self, out: &mut dyn Write, include_expired: bool) -> Result<ExportReport> {
        let write_err = |source: io::Error| Error::Io {
            path: "export output".into(),
            source,
        };
        // Retried only before any chunk reached `out`.
        self.with_conn(Retry::Idempotent, |conn, socket| {
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
        // Retried only when the request itself did not go out, before any input was read.
        self.with_conn(Retry::IfUnsent, |conn, socket| {
            conn.send(socket, &Request::Import(options.clone()))?;
            let failed = loop {
                let n = match input.fill_buf() {
                    Ok([]) => break None,
                    Ok(data) => {
                        let n = data.len().min(CHUNK_BYTES);
                        let chunk = ImportFrame::Chunk(data[..n].to_vec());
                        if let Err(e) = conn.send(socket, &chunk) {
                            return Err(why_stopped(conn, socket, e));
                        }
                        n
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                    Err(e) => break Some(e),
                };
                input.consume(n);
            };
            if let Some(source) = failed {
                // The server writes nothing on an abort; its answer only keeps us in step. One
                // that gave up on the input first (it stalled past the application's limit) may
                // have closed the connection: the input's error is still the one to report, and
                // nothing was written either way (the send marks the connection broken).
                if conn.send(socket, &ImportFrame::Abort).is_ok() {
                    match conn.recv(socket) {
                        Ok(_) | Err(Error::Io { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                return Err(Error::Io {
                    path: "import input".into(),
                    source,
                });
            }
            if let Err(e) = conn.send(socket, &ImportFrame::End) {
                // Input that stalled and then ended: the application gave up on it meanwhile.
                return Err(why_stopped(conn, socket, e));
            }
            match conn.recv(socket)? {
                Response::Imported(report) => Ok(report.into()),
                Response::ImportedCounted(report) => Ok(report.into()),
                Response::ImportedWithExpired(report) => Ok(report),
                other => conn.unexpected(socket, &other),
            }
        })
    }

    fn check(&self) -> Result<CheckReport> {
        self.call(&Request::Check, Retry::Idempotent, |r| match r {
            Response::Checked(report) => Ok(report),
            other => Err(other),
        })
    }

    fn repair(&self) -> Result<RepairReport> {
        self.call(&Request::Repair, Retry::IfUnsent, |r| match r {
            Response::Repaired(report) => Ok(report),
            other => Err(other),
        })
    }

    /// The application's clock; this machine's clock if the application cannot be reached.
    fn now(&self) -> OffsetDateTime {
        self.call(&Request::Now, Retry::Idempotent, |r| match r {
            Response::Now(nanos) => Ok(nanos),
            other => Err(other),
        })
        .ok()
        .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::socket::wire::WireSession;

    /// A fake application's connection to its one client, welcomed, with the client's first
    /// request read.
    fn welcome_one(listener: &UnixListener) -> UnixStream {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        read_frame(&mut conn, &mut buf).unwrap();
        let welcome: Welcome = Ok(ServerInfo {
            version: PROTOCOL_VERSION,
            pid: 7,
            database: b"/db".to_vec(),
        });
        write_frame(&mut conn, &welcome).unwrap();
        read_frame(&mut conn, &mut buf).unwrap();
        conn
    }

    /// A fake application at `path` that welcomes one client, reads its request and sends
    /// `answers`, then waits for the client to go.
    fn fake(path: &Path, answers: Vec<Response>) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let mut conn = welcome_one(&listener);
            // A client that refuses an answer closes the connection before the rest.
            for answer in answers {
                if write_frame(&mut conn, &answer).is_err() {
                    return;
                }
            }
            let _ = conn.read(&mut [0; 1]);
        })
    }

    /// An import's input through a stall: a first chunk, then a wait until the application
    /// closed the connection (`closed`), then its end, or with `fails` a read that times out
    /// (sessctl giving up on it).
    struct Stall {
        first: Vec<u8>,
        closed: std::sync::mpsc::Receiver<()>,
        fails: bool,
        waited: bool,
    }

    impl Stall {
        fn new(closed: std::sync::mpsc::Receiver<()>, fails: bool) -> Self {
            Stall {
                first: b"{\"format\":\"sessdb-export\"}\n".to_vec(),
                closed,
                fails,
                waited: false,
            }
        }
    }

    impl Read for Stall {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            unreachable!("read through BufRead")
        }
    }

    impl BufRead for Stall {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            if self.first.is_empty() && !self.waited {
                self.closed.recv().unwrap();
                self.waited = true;
            }
            if self.first.is_empty() && self.fails {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "it gave nothing"));
            }
            Ok(&self.first)
        }
        fn consume(&mut self, n: usize) {
            self.first.drain(..n);
        }
    }

    /// Input that stalls past the application's idle timeout and then ends: the `End` finds
    /// the connection closed, and the client reports the application's reason (nothing was
    /// written), not a closed connection, which sessctl takes for an import that may have been
    /// written.
    #[test]
    fn an_import_abandoned_during_a_stall_that_then_ends_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let reason = "the import's input stopped (timed out: the limit is 60 s between chunks \
                      and 10 s within one); the import was abandoned and nothing was written";
        let (closed_tx, closed_rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let mut conn = welcome_one(&listener); // its request: Import
            read_frame(&mut conn, &mut Vec::new()).unwrap(); // the first chunk
            let gave_up = Response::Error(crate::socket::wire::WireError::Protocol {
                reason: reason.into(),
            });
            write_frame(&mut conn, &gave_up).unwrap();
            drop(conn);
            closed_tx.send(()).unwrap();
        });
        let mut input = Stall::new(closed_rx, false);
        let admin = RemoteAdmin::connect(&path).unwrap();
        let err = admin
            .import(&mut input, &ImportOptions::default())
            .unwrap_err();
        assert!(
            matches!(&err, Error::Protocol { reason: r, .. }
                if *r == format!("the application says: {reason}")),
            "{err:?}"
        );
        server.join().unwrap();
    }

    /// Input that fails (sessctl gives up on one that stalls) after the application gave up on
    /// it and closed the connection without a word: the input's error is reported (nothing was
    /// written), not the failed send of the abort, which read as a closed connection.
    #[test]
    fn an_input_that_fails_after_the_application_closed_reports_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (closed_tx, closed_rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let mut conn = welcome_one(&listener); // its request: Import
            read_frame(&mut conn, &mut Vec::new()).unwrap(); // the first chunk
            drop(conn);
            closed_tx.send(()).unwrap();
        });
        let mut input = Stall::new(closed_rx, true);
        let admin = RemoteAdmin::connect(&path).unwrap();
        let err = admin
            .import(&mut input, &ImportOptions::default())
            .unwrap_err();
        assert!(
            matches!(&err, Error::Io { path, source }
                if path == Path::new("import input") && source.kind() == io::ErrorKind::TimedOut),
            "{err:?}"
        );
        server.join().unwrap();
    }

    /// Two sessions as a server sends them.
    fn sessions() -> Vec<SessionInfo> {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path().join("db")).unwrap();
        (0..2)
            .map(|_| {
                let mut s = store.create();
                s.save().unwrap();
                store.show(&Target::Id(*s.id())).unwrap().unwrap()
            })
            .collect()
    }

    #[test]
    fn a_server_is_trusted_as_this_user_root_or_the_socket_folders_owner_or_writing_group() {
        let serving = |uid, gid, folder| Serving { uid, gid, folder };
        assert!(trusted_server(
            serving(1000, 1000, Some((1000, 1000, false))),
            1000
        ));
        assert!(trusted_server(
            serving(0, 0, Some((1000, 1000, false))),
            1000
        ));
        // Root reaching an application that runs as its database's owner.
        assert!(trusted_server(serving(33, 33, Some((33, 33, false))), 0));
        // Root reaching an application given a shared folder (root:nogroup 2775) by its group.
        assert!(trusted_server(
            serving(65534, 65534, Some((0, 65534, true))),
            0
        ));
        // The same group, but one that may not write there, could not have bound the socket.
        assert!(!trusted_server(
            serving(65534, 65534, Some((0, 65534, false))),
            0
        ));
        // Another user's socket, in a folder anyone can write to (owned by root).
        assert!(!trusted_server(
            serving(65534, 65534, Some((0, 0, false))),
            0
        ));
        assert!(!trusted_server(
            serving(65534, 65534, Some((1000, 1000, true))),
            1000
        ));
        assert!(!trusted_server(serving(65534, 65534, None), 1000));
    }

    /// `show` of one session answered with another is refused, not shown as the one asked for.
    #[test]
    fn show_refuses_another_session_than_the_one_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let [asked, other] = <[SessionInfo; 2]>::try_from(sessions()).unwrap();
        let server = fake(
            &path,
            vec![Response::Session(Some(Box::new(WireSession::from(&other))))],
        );
        let admin = RemoteAdmin::connect(&path).unwrap();
        let err = admin.show(&Target::Handle(asked.handle)).unwrap_err();
        assert!(
            matches!(&err, Error::Protocol { reason, .. } if reason.contains(&format!(
                "asked for session {}, the application sent session {}",
                asked.handle, other.handle
            ))),
            "{err}"
        );
        drop(admin);
        server.join().unwrap();
    }

    /// A listing answered with more sessions than asked for is refused at the first chunk
    /// past the limit: an endless stream cannot fill the client's memory.
    #[test]
    fn a_listing_with_more_sessions_than_asked_for_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let chunk: Vec<WireSession> = sessions().iter().map(WireSession::from).collect();
        let server = fake(
            &path,
            vec![
                Response::Sessions(chunk.clone()),
                Response::Sessions(chunk),
                Response::PageEnd(None),
            ],
        );
        let admin = RemoteAdmin::connect(&path).unwrap();
        let query = ListQuery {
            limit: 3,
            ..ListQuery::default()
        };
        let err = admin.list(&query).unwrap_err();
        assert!(
            matches!(&err, Error::Protocol { reason, .. }
                if reason == "the application sent more than the 3 sessions asked for"),
            "{err}"
        );
        drop(admin);
        server.join().unwrap();
    }
}
