//! The admin socket server: an owner-only socket, an accept thread that checks each peer's
//! uid and binds the socket again if its file is deleted, one thread per connection (at most
//! [`MAX_CONNECTIONS`]), and shutdown when the last store handle is dropped.
//!
//! The threads hold the store weakly and take a strong handle only while a request runs
//! (released before the request's final answer; an import's input is received before; an
//! export's taken a batch at a time, and released while the batch is sent), so once the
//! application lets its store go, the server keeps the database open at most until the
//! running request's work ends, and never while it waits for a client. A connection that stays
//! silent between frames, or stops inside one, is closed ([`Timeouts`]).

use std::collections::HashMap;
use std::fs::{self, DirBuilder};
use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::wire::{
    decode, encode_frame, imported, path_bytes, read_frame, write_frame, FrameError, Hello,
    ImportFrame, Request, Response, ServerInfo, Welcome, WireError, WireSession, CHUNK_BYTES,
    LIST_CHUNK_BYTES, MAGIC, MAX_FRAME_BYTES, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use super::{Stream, Timeouts};
use crate::admin::{Admin, ListQuery, Page, Target};
use crate::error::{Error, Result};
use crate::export::{read_import, Exporter, ImportOptions, ReadImport};
use crate::store::{lock, Inner, Store};

/// The most connections served at once; more are refused with a message.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// How long a frame may take to go out to a client that stopped reading before the connection
/// is dropped (a request in progress keeps the store open): a deadline for the whole frame, as
/// the reads have, since the socket's own timeout is per `send`, and a send that moves a few
/// bytes before it times out starts the next one's wait afresh (a stalled export's reader held
/// its connection for about 120 s, in an operator's soak test).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

thread_local! {
    /// The connection this thread serves, so that a store dropped by the request it runs
    /// (the application let go meanwhile) still lets that request's answer out.
    static SERVING: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Where log records of the admin socket go (`log` crate; the application picks the logger).
const LOG_TARGET: &str = "sessdb::admin_socket";

/// A running admin socket server. Dropping it (with the store's last handle) stops it: the
/// accept thread is woken and joined, the socket file is removed, and every open connection is
/// shut down, so clients see the end at once instead of waiting.
pub(crate) struct Server {
    path: PathBuf,
    /// Dropping this wakes the accept thread.
    wake: Option<UnixStream>,
    /// The accept thread, which hands back the listener it served last when it ends.
    accept: Option<JoinHandle<UnixListener>>,
    shared: Arc<Shared>,
}

/// The device and inode of a file: those of the socket we bound, so that we never take
/// another file at its path for ours, nor remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

struct Shared {
    database: PathBuf,
    owner: u32,
    conns: Mutex<HashMap<u64, UnixStream>>,
    next_id: AtomicU64,
    timeouts: Timeouts,
    /// The socket file bound last: the accept thread binds a new one if it is deleted.
    file: Mutex<FileId>,
    /// The folder the socket was bound in: a new socket is bound only in that folder, not in
    /// one made since at its path (another process may have the new one).
    folder: Option<FileId>,
    /// How often the accept thread looks at the socket's path.
    check_every: Duration,
}

impl Server {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.wake.take());
        let mut listener = None;
        if let Some(accept) = self.accept.take() {
            // The accept thread never holds the store, so this never runs on it.
            if accept.thread().id() != thread::current().id() {
                listener = accept.join().ok();
            }
        }
        // Once the accept thread has ended, which may have bound the socket again: what it
        // bound last is removed, and nothing is bound after. Its listener is closed only then,
        // so that the inode compared is still ours (a closed socket's inode can be reused).
        remove_if_ours(&self.path, *lock(&self.shared.file));
        drop(listener);
        let own = SERVING.with(std::cell::Cell::get);
        for (id, conn) in lock(&self.shared.conns).drain() {
            if Some(id) != own {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }
}

fn socket_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::AdminSocket {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Binds the socket at `path` and starts serving `store` on it.
pub(crate) fn serve(store: &Store, path: &Path) -> Result<Server> {
    let path = std::path::absolute(path).map_err(socket_err(path, "cannot create"))?;
    let (listener, file) = bind(&path)?;
    let started = (|| {
        listener.set_nonblocking(true)?;
        let (wake, wake_rx) = UnixStream::pair()?;
        let shared = Arc::new(Shared {
            // Absolute, as the socket's path is: a client runs in another working directory.
            database: store.inner.dir.clone(),
            owner: nix::unistd::geteuid().as_raw(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            timeouts: store.inner.config.admin_timeouts,
            file: Mutex::new(file),
            folder: fs::metadata(folder_of(&path)).ok().map(|m| FileId::of(&m)),
            check_every: store.inner.config.admin_socket_check,
        });
        let weak = Arc::downgrade(&store.inner);
        let accept = thread::Builder::new().name("sessdb-admin".into()).spawn({
            let (shared, path) = (shared.clone(), path.clone());
            move || accept_loop(listener, &wake_rx, &shared, &weak, &path)
        })?;
        Ok((wake, accept, shared))
    })();
    match started {
        Ok((wake, accept, shared)) => Ok(Server {
            path,
            wake: Some(wake),
            accept: Some(accept),
            shared,
        }),
        Err(e) => {
            remove_if_ours(&path, file);
            Err(socket_err(&path, "cannot start serving")(e))
        }
    }
}

/// How long [`bind`] waits for room in the queue of a socket found at its path.
const IN_USE_WAIT: Duration = Duration::from_secs(1);

/// Creates the socket owner-only, whatever the umask: it is bound in a fresh 0700 folder
/// beside `path`, set to 0600 there, then renamed into place (replacing a stale socket
/// atomically). Nobody else can connect at any moment in between.
///
/// A socket already at `path` is in use if a connection to it is taken or queued, or waits for
/// room in a full queue (the process that holds it is stopped: a plain `connect` would wait for
/// ever, and the application's open with it).
fn bind(path: &Path) -> Result<(UnixListener, FileId)> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match super::client::connect(path, IN_USE_WAIT) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Error::AdminSocketInUse {
                    path: path.to_path_buf(),
                })
            }
            Ok(_) => {
                return Err(Error::AdminSocketInUse {
                    path: path.to_path_buf(),
                })
            }
            // Nobody listens: a crashed process left it; the rename below replaces it.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(socket_err(path, "cannot check")(e)),
        },
        Ok(_) => {
            return Err(socket_err(path, "cannot create")(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(socket_err(path, "cannot create")(e)),
    }
    bind_staged(path, |staged| fs::rename(staged, path))
}

/// Binds the socket again at `path`, where its file was deleted, ready for the accept loop.
/// It is linked into place, or renamed with `RENAME_NOREPLACE` where the file system links no
/// sockets, never renamed over what is there: a file that took the path meanwhile is never
/// replaced (the error's kind is then `AlreadyExists`).
fn bind_again(path: &Path) -> Result<(UnixListener, FileId)> {
    let (listener, file) = bind_staged(path, |staged| match fs::hard_link(staged, path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => rename_no_replace(staged, path),
        linked => linked,
    })?;
    if let Err(e) = listener.set_nonblocking(true) {
        remove_if_ours(path, file);
        return Err(socket_err(path, "cannot start serving")(e));
    }
    Ok((listener, file))
}

/// Binds a socket owner-only whatever the umask, in a fresh 0700 folder beside `path`, sets it
/// to 0600 there, then has `publish` give it the name `path`, and checks what is there.
fn bind_staged(
    path: &Path,
    publish: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(UnixListener, FileId)> {
    let parent = folder_of(path);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let staging = Staging(parent.join(format!(".sessdb-{}", &suffix[..8])));
    DirBuilder::new()
        .mode(0o700)
        .create(&staging.0)
        .map_err(socket_err(path, "cannot create"))?;
    let temp = staging.socket();
    let listener = UnixListener::bind(&temp).map_err(socket_err(path, "cannot create"))?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o600))
        .map_err(socket_err(path, "cannot set the mode of"))?;
    // Known before it is published (a link or a rename keeps the inode): what is at `path`
    // afterwards is ours only if it is this file.
    let file = fs::symlink_metadata(&temp)
        .map(|m| FileId::of(&m))
        .map_err(socket_err(path, "cannot create"))?;
    publish(&temp).map_err(socket_err(path, "cannot create"))?;
    let meta = fs::symlink_metadata(path).map_err(socket_err(path, "cannot create"))?;
    if FileId::of(&meta) != file {
        return Err(socket_err(path, "cannot create")(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "another file took the path as the socket was put there",
        )));
    }
    if !meta.file_type().is_socket() || meta.mode() & 0o777 != 0o600 {
        remove_if_ours(path, file);
        return Err(socket_err(path, "cannot set the mode of")(
            io::Error::other(format!(
                "mode is {:o} after setting 0600",
                meta.mode() & 0o777
            )),
        ));
    }
    Ok((listener, file))
}

/// Renames `from` to `to` unless something is at `to` already.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}

/// Renames `from` to `to` unless something is at `to` already: not possible here without a
/// race, so not done.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_no_replace(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the file system cannot link a socket, and this system cannot rename without replacing",
    ))
}

/// The folder a socket at `path` is in.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The private folder a socket is bound in; removed with whatever is left in it.
struct Staging(PathBuf);

impl Staging {
    fn socket(&self) -> PathBuf {
        self.0.join("s")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.socket());
        let _ = fs::remove_dir(&self.0);
    }
}

fn remove_if_ours(path: &Path, file: FileId) {
    if let Ok(m) = fs::symlink_metadata(path) {
        if FileId::of(&m) == file {
            let _ = fs::remove_file(path);
        }
    }
}

/// What the accept thread last found at the socket's path, so that it says each change once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// The socket it bound.
    Ours,
    /// Another file (another process's socket, anything else), left alone.
    Other,
    /// Nothing, and binding there again failed.
    Unbound,
}

/// Looks at the socket's path. Its file deleted (a cleaner of `/tmp`, an operator's `rm`): a
/// new socket is bound there, so that clients reach the application again, and `listener`
/// becomes it. Another file there is left alone. `found` is what the last look found; what
/// this one found is returned, and logged when it changed.
fn check_socket(
    listener: &mut UnixListener,
    found: Found,
    shared: &Arc<Shared>,
    store: &Weak<Inner>,
    path: &Path,
) -> Found {
    let ours = *lock(&shared.file);
    match fs::symlink_metadata(path) {
        Ok(m) if FileId::of(&m) == ours => Found::Ours,
        Ok(_) => taken(found, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !same_folder(shared, path) => {
            if found != Found::Unbound {
                log::warn!(
                    target: LOG_TARGET,
                    "admin socket {}: the socket file was deleted with its folder, or the \
                     folder was replaced: no socket is made in a folder this application did \
                     not bind it in",
                    path.display()
                );
            }
            Found::Unbound
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => match bind_again(path) {
            Ok((new, file)) => {
                // Clients that connected before the file went are queued on the old socket.
                while let Ok((stream, _)) = listener.accept() {
                    admit(stream, shared, store, path);
                }
                *listener = new;
                *lock(&shared.file) = file;
                log::warn!(
                    target: LOG_TARGET,
                    "admin socket {}: the socket file was deleted; serving a new one there",
                    path.display()
                );
                Found::Ours
            }
            // Another file took the path between the look and the link.
            Err(Error::AdminSocket { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                taken(found, path)
            }
            Err(e) => {
                if found != Found::Unbound {
                    log::warn!(
                        target: LOG_TARGET,
                        "admin socket {}: the socket file was deleted, and a new one cannot be \
                         made (trying again every {:?}): {e}",
                        path.display(),
                        shared.check_every
                    );
                }
                Found::Unbound
            }
        },
        // Nothing to conclude (a folder's permissions changed): looked at again next time.
        Err(_) => found,
    }
}

/// Another file has the socket's path: it is left alone, and said once.
fn taken(found: Found, path: &Path) -> Found {
    if found != Found::Other {
        log::warn!(
            target: LOG_TARGET,
            "admin socket {}: another file has taken its path, and is left alone: clients \
             cannot reach this application until that file is removed",
            path.display()
        );
    }
    Found::Other
}

/// Whether the socket's folder is the one it was first bound in.
fn same_folder(shared: &Shared, path: &Path) -> bool {
    let now = fs::metadata(folder_of(path)).ok().map(|m| FileId::of(&m));
    now.is_some() && now == shared.folder
}

/// The time until `at` as a poll timeout, rounded up to the millisecond so that a wait ends at
/// or after it, never in a loop of zero-length waits just before; no timeout without `at`.
fn poll_timeout(at: Option<Instant>) -> PollTimeout {
    let Some(at) = at else {
        return PollTimeout::NONE;
    };
    let micros = at.saturating_duration_since(Instant::now()).as_micros();
    PollTimeout::try_from(micros.div_ceil(1000)).unwrap_or(PollTimeout::MAX)
}

/// Serves `listener` until the store goes; returns the listener it served last.
fn accept_loop(
    mut listener: UnixListener,
    wake: &UnixStream,
    shared: &Arc<Shared>,
    store: &Weak<Inner>,
    path: &Path,
) -> UnixListener {
    let mut found = Found::Ours;
    // An interval too long to add to now is never.
    let next_check = || Instant::now().checked_add(shared.check_every);
    let mut check_at = next_check();
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, poll_timeout(check_at)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!(target: LOG_TARGET, "admin socket {}: poll failed, no longer serving: {e}", path.display());
                return listener;
            }
        }
        if fds[1].any().unwrap_or(true) {
            return listener; // the store is gone
        }
        if check_at.is_some_and(|at| Instant::now() >= at) {
            found = check_socket(&mut listener, found, shared, store, path);
            check_at = next_check();
        }
        match listener.accept() {
            Ok((stream, _)) => admit(stream, shared, store, path),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning, and
                // still stop at once if the store goes away.
                log::warn!(target: LOG_TARGET, "admin socket {}: accept failed: {e}", path.display());
                let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
                if matches!(poll(&mut fds, PollTimeout::from(100u8)), Ok(n) if n > 0) {
                    return listener;
                }
            }
        }
    }
}

fn admit(stream: UnixStream, shared: &Arc<Shared>, store: &Weak<Inner>, path: &Path) {
    // Accepted sockets may inherit the listener's non-blocking mode on some systems.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let refuse = |stream: UnixStream, reason: String| {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let welcome: Welcome = Err(WireError::Refused { reason });
        let _ = write_frame(&mut Stream(stream), &welcome);
    };
    match peer(&stream) {
        Ok((uid, _, _)) if uid == shared.owner || uid == 0 => {}
        Ok((uid, _, pid)) => {
            let from = pid.map_or(String::new(), |p| format!(" (pid {p})"));
            log::warn!(
                target: LOG_TARGET,
                "admin socket {}: refused a connection from uid {uid}{from}: only uid {} and root may connect",
                path.display(),
                shared.owner
            );
            refuse(
                stream,
                format!(
                    "uid {uid} may not use this admin socket: only uid {} (the application's user) and root may",
                    shared.owner
                ),
            );
            return;
        }
        Err(e) => {
            log::warn!(target: LOG_TARGET, "admin socket {}: refused a connection whose peer is unknown: {e}", path.display());
            return;
        }
    }
    let mut conns = lock(&shared.conns);
    if conns.len() >= MAX_CONNECTIONS {
        drop(conns);
        log::warn!(target: LOG_TARGET, "admin socket {}: refused a connection: {MAX_CONNECTIONS} are open", path.display());
        refuse(
            stream,
            format!("too many admin connections ({MAX_CONNECTIONS} are open); try again later"),
        );
        return;
    }
    let Ok(registered) = stream.try_clone() else {
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    conns.insert(id, registered);
    drop(conns);
    let spawned = thread::Builder::new()
        .name("sessdb-admin-conn".into())
        .spawn({
            let (shared, store) = (shared.clone(), store.clone());
            move || {
                // Unregistered however the thread ends, a panic included: a connection left
                // in the table would keep its client waiting for an answer for ever (it never
                // sees the socket close) and hold one of the slots.
                let registered = Registered { shared, id };
                SERVING.with(|s| s.set(Some(id)));
                let mut conn = Timed {
                    stream: Stream(stream),
                    frame: registered.shared.timeouts.frame,
                    wait: Wait::Between(Some(Instant::now())),
                    sending: None,
                };
                let shared = &registered.shared;
                serve_connection(&mut conn, &store, &shared.database, shared.timeouts);
            }
        });
    if let Err(e) = spawned {
        log::warn!(target: LOG_TARGET, "admin socket {}: cannot start a connection thread: {e}", path.display());
        if let Some(conn) = lock(&shared.conns).remove(&id) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

/// A connection's place in [`Shared::conns`], given back when its thread ends, whether it
/// returns or panics; the connection is shut down then, so that its client sees it close.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(conn) = lock(&self.shared.conns).remove(&self.id) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

/// The moment `within` from now; `None` (no deadline) when that is past what an `Instant`
/// holds, as for `Duration::MAX`, which a setting may well use to mean "never".
fn deadline_in(within: Duration) -> Option<Instant> {
    Instant::now().checked_add(within)
}

/// The peer's effective uid and gid, and its pid where the system says.
pub(crate) fn peer(stream: &UnixStream) -> io::Result<(u32, u32, Option<i32>)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let cred =
            nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
        Ok((cred.uid(), cred.gid(), Some(cred.pid())))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (uid, gid) = nix::unistd::getpeereid(stream)?;
        Ok((uid.as_raw(), gid.as_raw(), None))
    }
}

/// A connection whose reads keep deadlines: [`Peer::await_frame`] starts the wait for a frame.
pub(crate) trait Peer: Read + Write {
    /// The next frame's first byte must arrive within `within`, and the rest of the frame
    /// within the frame timeout after that; past either, reads fail with
    /// [`io::ErrorKind::TimedOut`].
    fn await_frame(&mut self, within: Duration);
}

/// A client connection with the server's read deadlines, and its write deadline.
struct Timed {
    stream: Stream,
    frame: Duration,
    wait: Wait,
    /// When the frame being written must be out by ([`WRITE_TIMEOUT`] after its first write;
    /// `None` between frames: a frame ends with a flush).
    sending: Option<Instant>,
}

/// What the next read waits for, and until when (`None`: for as long as it takes).
#[derive(Clone, Copy)]
enum Wait {
    /// The first byte of a frame.
    Between(Option<Instant>),
    /// The rest of a frame that has started.
    Within(Option<Instant>),
}

impl Peer for Timed {
    fn await_frame(&mut self, within: Duration) {
        self.wait = Wait::Between(deadline_in(within));
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let (deadline, what) = match self.wait {
                Wait::Between(at) => (at, "no frame arrived in time"),
                Wait::Within(at) => (at, "a frame did not arrive whole in time"),
            };
            // A deadline, not a timeout per read: a client that trickles a byte now and then
            // must not hold its connection for ever.
            let left = match deadline {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, what));
                    }
                    Some(left)
                }
                None => None,
            };
            self.stream.0.set_read_timeout(left)?;
            match self.stream.read(buf) {
                Ok(n) => {
                    if n > 0 {
                        if let Wait::Between(_) = self.wait {
                            self.wait = Wait::Within(deadline_in(self.frame));
                        }
                    }
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let deadline = *self
            .sending
            .get_or_insert_with(|| Instant::now() + WRITE_TIMEOUT);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing of a frame in time",
                ));
            }
            self.stream.0.set_write_timeout(Some(left))?;
            match self.stream.write(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sending = None;
        self.stream.flush()
    }
}

/// Serves one connection until the client leaves, breaks the protocol, stays silent too long,
/// or the store is dropped. Generic over the stream so the decoder can be fuzzed without a
/// socket.
pub(crate) fn serve_connection<S: Peer>(
    io: &mut S,
    store: &Weak<Inner>,
    database: &Path,
    timeouts: Timeouts,
) {
    let mut buf = Vec::new();
    io.await_frame(timeouts.frame);
    let Ok(version) = handshake(io, &mut buf, database) else {
        return;
    };
    loop {
        io.await_frame(timeouts.idle);
        if let Err(e) = read_frame(io, &mut buf) {
            match e {
                FrameError::TooLarge(len) => protocol_error(
                    io,
                    format!("a frame of {len} bytes is over the limit of {MAX_FRAME_BYTES}"),
                ),
                FrameError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                    // An idle client finds its connection closed, and reconnects if it wants.
                    log::debug!(target: LOG_TARGET, "closing an admin connection: {e}");
                }
                FrameError::Io(_) | FrameError::Closed => {}
            }
            return;
        }
        let request = match decode::<Request>(&buf) {
            Ok(r) => r,
            Err(reason) => {
                protocol_error(io, reason);
                return;
            }
        };
        if buf.capacity() > CHUNK_BYTES * 4 {
            buf = Vec::new(); // an idle connection keeps no large buffer
        }
        if handle(io, store, database, request, version, timeouts).is_err()
            || store.strong_count() == 0
        {
            // The connection failed, or this request's handle was the store's last one.
            return;
        }
    }
}

fn protocol_error(io: &mut impl Write, reason: String) {
    log::debug!(target: LOG_TARGET, "closing an admin connection: {reason}");
    let _ = write_frame(io, &Response::Error(WireError::Protocol { reason }));
}

/// Greets a client; returns the protocol version agreed on, the newest both ends speak.
fn handshake<S: Peer>(io: &mut S, buf: &mut Vec<u8>, database: &Path) -> io::Result<u32> {
    let refuse = |io: &mut S, reason: String| {
        log::debug!(target: LOG_TARGET, "refusing an admin client: {reason}");
        let welcome: Welcome = Err(WireError::Protocol { reason });
        let _ = write_frame(io, &welcome);
        Err(io::ErrorKind::InvalidData.into())
    };
    if read_frame(io, buf).is_err() {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let hello = match decode::<Hello>(buf) {
        Ok(h) if h.magic == MAGIC => h,
        Ok(_) | Err(_) => return refuse(io, "not a sessdb admin client".into()),
    };
    let version = hello.max_version.min(PROTOCOL_VERSION);
    if version < hello.min_version.max(OLDEST_PROTOCOL_VERSION) {
        return refuse(
            io,
            format!(
                "this application speaks admin protocol versions {OLDEST_PROTOCOL_VERSION} to \
                 {PROTOCOL_VERSION}, the client versions {} to {}",
                hello.min_version, hello.max_version
            ),
        );
    }
    let welcome: Welcome = Ok(ServerInfo {
        version,
        pid: std::process::id(),
        database: path_bytes(database),
    });
    write_frame(io, &welcome)?;
    Ok(version)
}

/// The final answer to a request.
enum Answer {
    One(Result<Response>),
    Page(Page),
    /// An export, sent by [`export_in_steps`] once the request's store is let go.
    Export {
        include_expired: bool,
    },
}

/// Runs one request and sends its answer. An error return means the connection is unusable.
fn handle<S: Peer>(
    io: &mut S,
    store: &Weak<Inner>,
    database: &Path,
    request: Request,
    version: u32,
    timeouts: Timeouts,
) -> io::Result<()> {
    // An import's input is read and checked as it arrives, before the store is taken: a
    // client whose input stalls (a slow pipe into `sessctl import -`) must not keep the
    // database open once the application has let it go. The application's last drop then
    // closes the store at once (flushing it) and shuts this connection, which ends the import
    // with nothing written. Read as it arrives, the input is never held whole, and a file of
    // garbage costs a bounded report (`export::read_import`).
    let input = match &request {
        Request::Import(options) => {
            // A read-only store will refuse the import: its sessions are only counted.
            let Some((limit, dir)) = store.upgrade().map(|i| {
                let writes = !i.config.read_only || options.dry_run;
                (i.config.max_session_bytes, writes.then(|| i.dir.clone()))
            }) else {
                return Err(shutting_down(io));
            };
            Some(
                receive_import(io, timeouts, limit, dir.as_deref(), options).map_err(|reason| {
                    protocol_error(io, reason);
                    io::Error::from(io::ErrorKind::InvalidData)
                })?,
            )
        }
        _ => None,
    };
    let Some(inner) = store.upgrade() else {
        return Err(shutting_down(io));
    };
    let taken = Store::internal(inner);
    let answer = run(io, &taken, request, version, input)?;
    // The store is released before the final answer: a client holding its answer knows this
    // server no longer keeps the database open, so an application that drops its last handle
    // closes it (and the socket) at once.
    drop(taken);
    match answer {
        Answer::One(response) => reply(
            io,
            response.map_err(|e| WireError::of(&e, database, version)),
        ),
        Answer::Page(page) => send_page(io, &page),
        Answer::Export { include_expired } => {
            export_in_steps(io, store, database, version, include_expired)
        }
    }
}

/// Runs one request, streaming what it streams (purge progress, export chunks), and answers
/// in protocol `version`; `input` is an import's, received and checked already.
fn run<S: Read + Write>(
    io: &mut S,
    store: &Store,
    request: Request,
    version: u32,
    input: Option<ImportInput>,
) -> io::Result<Answer> {
    let admin: &dyn Admin = store;
    let answer = match request {
        Request::Stats => admin.stats().map(Response::Stats),
        Request::List(query) => return Ok(list(admin, query.into_query(false))),
        Request::ListReverse(query) => return Ok(list(admin, query.into_query(true))),
        Request::Show(handle) => admin
            .show(&Target::Handle(handle))
            .map(|s| Response::Session(s.as_ref().map(|s| Box::new(WireSession::from(s))))),
        Request::Invalidate(handle) => admin
            .invalidate(&Target::Handle(handle))
            .map(Response::Invalidated),
        Request::InvalidatePrincipal(p) => admin
            .invalidate_principal(&p)
            .map(|n| Response::InvalidatedPrincipal(n as u64)),
        Request::Purge => {
            let mut lost = None;
            let purged = admin.purge(&mut |n| {
                if lost.is_none() {
                    lost = write_frame(io, &Response::PurgeProgress(n)).err();
                }
            });
            if let Some(e) = lost {
                return Err(e);
            }
            purged.map(Response::Purged)
        }
        Request::CountExpired => admin.count_expired().map(Response::CountExpired),
        // Sent by `export_in_steps`, which takes the store a batch at a time.
        Request::Export { include_expired } => return Ok(Answer::Export { include_expired }),
        Request::Import(options) => match input {
            Some(ImportInput::Read(read)) => read
                .and_then(|read| crate::export::apply_import(store, read, &options))
                .map(|report| imported(version, report)),
            // The client could not read its input: nothing is written.
            Some(ImportInput::Aborted) | None => Err(Error::Io {
                path: "import input".into(),
                source: io::Error::other("the client could not read its input"),
            }),
        },
        Request::Check => admin.check().map(Response::Checked),
        Request::Repair => admin.repair().map(Response::Repaired),
        Request::Now => Ok(Response::Now(admin.now().unix_timestamp_nanos())),
        Request::HandlesStartingWith { prefix, limit } => admin
            .handles_starting_with(&prefix, usize::try_from(limit).unwrap_or(usize::MAX))
            .map(Response::Handles),
    };
    Ok(Answer::One(answer))
}

/// The most sessions one page of a listing holds through the socket, whatever the client asks
/// for: the page is built whole before it is sent, and held while a slow client reads it (a
/// client asking for every session of a large store at once made the application hold
/// gigabytes). The page's cursor continues the listing.
pub(crate) const MAX_PAGE_SESSIONS: usize = 10_000;

fn list(admin: &dyn Admin, mut query: ListQuery) -> Answer {
    query.limit = match query.limit {
        0 => 0,
        n => n.min(MAX_PAGE_SESSIONS),
    };
    match admin.list(&query) {
        Ok(page) => Answer::Page(page),
        Err(e) => Answer::One(Err(e)),
    }
}

fn reply(io: &mut impl Write, answer: std::result::Result<Response, WireError>) -> io::Result<()> {
    let response = answer.unwrap_or_else(Response::Error);
    match encode_frame(&response) {
        Some(frame) => {
            io.write_all(&frame)?;
            io.flush()
        }
        None => write_frame(
            io,
            &Response::Error(WireError::Other {
                message: format!(
                    "the answer is over the admin socket's limit of {MAX_FRAME_BYTES} bytes; \
                     run the command on the database itself while the application is stopped"
                ),
            }),
        ),
    }
}

/// Tells the client that the application has let its store go, and ends the connection.
fn shutting_down(io: &mut impl Write) -> io::Error {
    let _ = write_frame(io, &Response::Error(WireError::ShuttingDown));
    io::ErrorKind::NotConnected.into()
}

/// An export, the store taken for each batch of about [`CHUNK_BYTES`] and let go while that
/// batch is sent: a client that reads slowly (`sessctl export | ssh` on a slow link) must not
/// keep the database open, and its last flush waiting, once the application has let it go (a
/// reviewer's stalling reader kept it open 42 s after the application's drop). An application
/// that lets go midway ends the export with [`WireError::ShuttingDown`].
fn export_in_steps<S: Write>(
    io: &mut S,
    store: &Weak<Inner>,
    database: &Path,
    version: u32,
    include_expired: bool,
) -> io::Result<()> {
    let mut exporter = None;
    let mut batch = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
    loop {
        let Some(inner) = store.upgrade() else {
            return Err(shutting_down(io));
        };
        let store = Store::internal(inner);
        let exporter = exporter.get_or_insert_with(|| Exporter::new(&store, include_expired));
        let step = store.unpanicked(|| exporter.step(&store, &mut batch, CHUNK_BYTES));
        drop(store);
        for chunk in batch.chunks(CHUNK_BYTES) {
            write_frame(io, &Response::ExportChunk(chunk.to_vec()))?;
        }
        batch.clear();
        match step {
            Ok(false) => {}
            Ok(true) => return reply(io, Ok(Response::Exported(exporter.report.clone()))),
            Err(e) => return reply(io, Err(WireError::of(&e, database, version))),
        }
    }
}

/// A page in chunks of about [`LIST_CHUNK_BYTES`], so any page size fits the frame limit.
fn send_page(io: &mut impl Write, page: &Page) -> io::Result<()> {
    let mut chunk = Vec::new();
    let mut weight = 0;
    for info in &page.sessions {
        let s = WireSession::from(info);
        weight += s.weight();
        chunk.push(s);
        if weight >= LIST_CHUNK_BYTES {
            reply(io, Ok(Response::Sessions(std::mem::take(&mut chunk))))?;
            weight = 0;
        }
    }
    if !chunk.is_empty() {
        reply(io, Ok(Response::Sessions(chunk)))?;
    }
    reply(io, Ok(Response::PageEnd(page.next.clone())))
}

/// An import's input as the client sent it.
enum ImportInput {
    /// Every chunk up to the client's `End`, read and checked as it came (or the error of
    /// reading it).
    Read(Result<ReadImport>),
    /// The client could not read its input (`Abort`).
    Aborted,
}

/// Receives an import's input up to `End` or `Abort`, each chunk within the idle timeout of
/// the one before, reading and checking its lines as they arrive. An error (with the reason to
/// tell the client) means the connection is unusable.
fn receive_import<S: Peer>(
    io: &mut S,
    timeouts: Timeouts,
    limit: usize,
    dir: Option<&Path>,
    options: &ImportOptions,
) -> Result<ImportInput, String> {
    let mut input = FrameInput {
        io,
        timeouts,
        frame: Vec::new(),
        chunk: Vec::new(),
        pos: 0,
        end: None,
    };
    let read = read_import(&mut input, limit, options, dir);
    // The client sends its input up to `End` whatever the reading concluded (a bad header
    // ends it early): the rest is received and dropped, so the answer comes after it.
    while input.end.is_none() {
        if input.next_frame().is_err() {
            break;
        }
    }
    match input.end {
        Some(InputEnd::Complete) => Ok(ImportInput::Read(read)),
        Some(InputEnd::Aborted) => Ok(ImportInput::Aborted),
        Some(InputEnd::Failed(reason)) => Err(reason),
        None => Err("the import's input ended unexpectedly".into()),
    }
}

/// How an import's input ended.
enum InputEnd {
    /// The client's `End`.
    Complete,
    /// The client's `Abort`.
    Aborted,
    /// A broken, stalled or malformed stream, with the reason to tell the client.
    Failed(String),
}

/// An import's input as it arrives, one chunk at a time: only the chunk being read is held.
struct FrameInput<'a, S> {
    io: &'a mut S,
    timeouts: Timeouts,
    frame: Vec<u8>,
    chunk: Vec<u8>,
    pos: usize,
    end: Option<InputEnd>,
}

impl<S: Peer> FrameInput<'_, S> {
    /// Receives the next frame: a chunk to read, or the end of the input.
    fn next_frame(&mut self) -> io::Result<()> {
        let fail = |this: &mut Self, reason: String| {
            this.end = Some(InputEnd::Failed(reason.clone()));
            Err(io::Error::other(reason))
        };
        self.io.await_frame(self.timeouts.idle);
        match read_frame(self.io, &mut self.frame) {
            Ok(()) => {}
            Err(FrameError::TooLarge(n)) => {
                return fail(
                    self,
                    format!("an import frame of {n} bytes is over the limit"),
                )
            }
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                let reason = format!(
                    "the import's input stopped ({e}: the limit is {} s between chunks and \
                     {} s within one); the import was abandoned and nothing was written",
                    self.timeouts.idle.as_secs_f64(),
                    self.timeouts.frame.as_secs_f64()
                );
                return fail(self, reason);
            }
            Err(_) => return fail(self, "the connection ended during an import".into()),
        }
        match decode::<ImportFrame>(&self.frame) {
            Ok(ImportFrame::Chunk(data)) => {
                self.chunk = data;
                self.pos = 0;
            }
            Ok(ImportFrame::End) => self.end = Some(InputEnd::Complete),
            Ok(ImportFrame::Abort) => self.end = Some(InputEnd::Aborted),
            Err(reason) => return fail(self, reason),
        }
        Ok(())
    }
}

impl<S: Peer> Read for FrameInput<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<S: Peer> BufRead for FrameInput<'_, S> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() {
            match self.end {
                None => self.next_frame()?,
                Some(InputEnd::Complete) => return Ok(&[]),
                // Not the end of the input: an import of what arrived would be a partial one.
                Some(InputEnd::Aborted) => {
                    return Err(io::Error::other("the client could not read its input"))
                }
                Some(InputEnd::Failed(ref reason)) => return Err(io::Error::other(reason.clone())),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A connection to a client that reads nothing.
    fn unread() -> (Timed, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let conn = Timed {
            stream: Stream(ours),
            frame: Duration::from_secs(10),
            wait: Wait::Between(None),
            sending: None,
        };
        (conn, theirs)
    }

    /// A frame has one deadline from its first write to its flush: the writes that follow the
    /// first keep it (the socket's own timeout, per `send`, started afresh each time), and it
    /// holds even where the socket has room.
    #[test]
    fn a_frame_keeps_one_write_deadline_until_its_flush() {
        let (mut conn, _theirs) = unread();
        conn.write_all(b"first part").unwrap();
        let deadline = conn.sending.expect("set by the first write");
        assert!(
            deadline > Instant::now() + WRITE_TIMEOUT / 2,
            "{deadline:?}"
        );
        conn.write_all(b"second part").unwrap();
        assert_eq!(conn.sending, Some(deadline), "kept, not restarted");
        conn.flush().unwrap();
        assert_eq!(conn.sending, None, "a flush ends the frame");

        conn.sending = Some(Instant::now());
        let err = conn.write(b"late").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }

    /// A client that stops reading: a write that blocks on the full socket fails at the
    /// frame's deadline (here a moment away), rather than wait out a timeout of its own.
    #[test]
    fn a_write_blocked_on_a_client_that_reads_nothing_ends_at_the_frames_deadline() {
        let (mut conn, _theirs) = unread();
        let chunk = vec![0u8; 64 << 10];
        conn.sending = Some(Instant::now() + Duration::from_millis(50));
        let err = loop {
            if let Err(e) = conn.write(&chunk) {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }

    /// However many sessions a client asks for, a page holds at most `MAX_PAGE_SESSIONS`, and
    /// its cursor continues the listing.
    #[test]
    fn a_page_through_the_socket_holds_at_most_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        for _ in 0..=MAX_PAGE_SESSIONS {
            store.create().save().unwrap();
        }
        let query = ListQuery {
            limit: usize::MAX,
            ..ListQuery::default()
        };
        let Answer::Page(page) = list(&store, query) else {
            panic!("not a page");
        };
        assert_eq!(page.sessions.len(), MAX_PAGE_SESSIONS);
        let rest = ListQuery {
            limit: usize::MAX,
            after: page.next,
            ..ListQuery::default()
        };
        let Answer::Page(rest) = list(&store, rest) else {
            panic!("not a page");
        };
        assert_eq!(rest.sessions.len(), 1);
    }

    /// A connection whose input is fixed and whose output is collected.
    struct Scripted {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Peer for Scripted {
        fn await_frame(&mut self, _: Duration) {}
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn hello() -> Vec<u8> {
        hello_for(PROTOCOL_VERSION, PROTOCOL_VERSION)
    }

    fn hello_for(min_version: u32, max_version: u32) -> Vec<u8> {
        encode_frame(&Hello {
            magic: MAGIC,
            min_version,
            max_version,
        })
        .unwrap()
    }

    fn responses(mut output: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = Vec::new();
        while read_frame(&mut output, &mut buf).is_ok() {
            frames.push(buf.clone());
        }
        frames
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        (dir, store)
    }

    /// A client of each protocol version gets the newest version both speak, and the import
    /// report in that version's layout: version 1's without the count of all bad lines.
    #[test]
    fn a_scripted_session_gets_its_answers_in_order() {
        let (_dir, store) = store();
        for (client, agreed) in [
            ((1, 1), 1),
            ((1, 2), 2),
            ((2, 2), 2),
            ((2, 3), 3),
            ((3, 4), 4),
            ((1, 9), 4),
        ] {
            let mut input = hello_for(client.0, client.1);
            input.extend(encode_frame(&Request::CountExpired).unwrap());
            input.extend(encode_frame(&Request::Import(Default::default())).unwrap());
            input.extend(encode_frame(&ImportFrame::Chunk(b"garbage\n".to_vec())).unwrap());
            input.extend(encode_frame(&ImportFrame::End).unwrap());
            let frames = serve_script(&store, input);
            assert_eq!(frames.len(), 3);
            assert!(
                matches!(decode::<Welcome>(&frames[0]), Ok(Ok(info)) if info.version == agreed),
                "{client:?}"
            );
            assert!(matches!(
                decode::<Response>(&frames[1]),
                Ok(Response::CountExpired(0))
            ));
            let report: crate::ImportReport = match decode::<Response>(&frames[2]) {
                Ok(Response::Imported(report)) if agreed == 1 => report.into(),
                Ok(Response::ImportedCounted(report)) if (2..=3).contains(&agreed) => report.into(),
                Ok(Response::ImportedWithExpired(report)) if agreed >= 4 => report,
                other => panic!("{client:?}: {other:?}"),
            };
            assert_eq!((report.bad.len(), report.bad_total()), (1, 1));
        }
        // A client of versions this build no longer (or not yet) speaks is refused.
        assert!(matches!(
            decode::<Welcome>(&serve_script(&store, hello_for(5, 6))[0]),
            Ok(Err(WireError::Protocol { .. }))
        ));
    }

    /// The frames the server sends a client whose bytes are `input`.
    fn serve_script(store: &Store, input: Vec<u8>) -> Vec<Vec<u8>> {
        let mut conn = Scripted {
            input: io::Cursor::new(input),
            output: Vec::new(),
        };
        serve_connection(
            &mut conn,
            &Arc::downgrade(&store.inner),
            store.path(),
            Timeouts::default(),
        );
        responses(&conn.output)
    }

    /// Log records of the lib's tests, to count what the accept thread says.
    struct Capture(Mutex<Vec<String>>);

    static LOGS: Capture = Capture(Mutex::new(Vec::new()));

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            lock(&self.0).push(format!("{}", record.args()));
        }
        fn flush(&self) {}
    }

    /// How many records about the socket at `path` contain `text`.
    fn logged(path: &Path, text: &str) -> usize {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            log::set_logger(&LOGS).unwrap();
            log::set_max_level(log::LevelFilter::Debug);
        });
        let about = format!("admin socket {}: ", path.display());
        lock(&LOGS.0)
            .iter()
            .filter(|l| l.starts_with(&about) && l.contains(text))
            .count()
    }

    /// The accept thread's look at its socket's path, one look at a time: another file there is
    /// left alone and said once; where nothing is, a socket is bound again, owner-only, and
    /// becomes the one served; in a folder made since at the same path, none is, and that is
    /// said once.
    #[test]
    fn each_look_at_the_path_keeps_what_is_not_ours_and_binds_where_nothing_is() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("run");
        fs::create_dir(&folder).unwrap();
        let path = folder.join("admin.sock");
        logged(&path, "");
        let (mut listener, file) = bind(&path).unwrap();
        // As `serve` sets it: the look takes what is queued on a socket it replaces.
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            database: dir.path().join("db"),
            owner: nix::unistd::geteuid().as_raw(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            timeouts: Timeouts::default(),
            file: Mutex::new(file),
            folder: fs::metadata(&folder).ok().map(|m| FileId::of(&m)),
            check_every: Duration::from_secs(2),
        });
        let store = Weak::new();
        let look = |listener: &mut UnixListener, found| {
            check_socket(listener, found, &shared, &store, &path)
        };
        assert_eq!(look(&mut listener, Found::Ours), Found::Ours);
        // A client that connected before the file went waits in the old socket's queue.
        let _queued = UnixStream::connect(&path).unwrap();
        // Another process's socket, then a plain file: neither is touched, and it is said once.
        fs::remove_file(&path).unwrap();
        let theirs = UnixListener::bind(&path).unwrap();
        let mut found = Found::Ours;
        for _ in 0..3 {
            found = look(&mut listener, found);
            assert_eq!(found, Found::Other);
        }
        let _client = UnixStream::connect(&path).unwrap();
        theirs.accept().unwrap();
        drop(theirs);
        fs::remove_file(&path).unwrap();
        fs::write(&path, "theirs").unwrap();
        found = look(&mut listener, found);
        assert_eq!(found, Found::Other);
        assert_eq!(fs::read_to_string(&path).unwrap(), "theirs");
        assert_eq!(logged(&path, "another file has taken its path"), 1);
        // Nothing there: a socket of ours again, the one now served.
        fs::remove_file(&path).unwrap();
        found = look(&mut listener, found);
        assert_eq!(found, Found::Ours);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(*lock(&shared.file), FileId::of(&meta));
        let _client = UnixStream::connect(&path).unwrap();
        assert!(listener.accept().is_ok(), "the listener is the new socket");
        assert_eq!(
            lock(&shared.conns).len(),
            1,
            "the queued client was taken in"
        );
        assert_eq!(logged(&path, "serving a new one there"), 1);
        assert_eq!(look(&mut listener, found), Found::Ours);
        // No staging folder is left beside it.
        let names: Vec<_> = fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["admin.sock"]);
        // The folder deleted, then made again (by a new instance of the application, say):
        // not this server's folder, so nothing is bound there, and that is said once.
        fs::remove_dir_all(&folder).unwrap();
        for _ in 0..2 {
            found = look(&mut listener, found);
            assert_eq!(found, Found::Unbound);
        }
        DirBuilder::new().mode(0o700).create(&folder).unwrap();
        for _ in 0..2 {
            found = look(&mut listener, found);
            assert_eq!(found, Found::Unbound);
        }
        assert!(fs::read_dir(&folder).unwrap().next().is_none());
        assert_eq!(logged(&path, "deleted with its folder"), 1);
    }

    /// Another server's socket renamed over ours as ours is published is not taken for ours:
    /// which file is ours is read from the staged socket, not from the path afterwards.
    #[test]
    fn a_socket_renamed_over_ours_as_it_is_published_is_not_taken_for_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let other = dir.path().join("other.sock");
        let theirs = UnixListener::bind(&other).unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o600)).unwrap();
        let taken = bind_staged(&path, |staged| {
            fs::rename(staged, &path)?;
            fs::rename(&other, &path)
        });
        match taken {
            Err(Error::AdminSocket { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
            }
            other => panic!("{other:?}"),
        }
        // Still theirs, and reachable.
        let _client = UnixStream::connect(&path).unwrap();
        theirs.accept().unwrap();
    }

    /// The time to the next look, and none for an interval too long to count.
    #[test]
    fn a_poll_waits_until_the_next_look_and_for_ever_without_one() {
        assert_eq!(poll_timeout(None), PollTimeout::NONE);
        let soon = Instant::now() + Duration::from_millis(1500);
        let t = i32::from(poll_timeout(Some(soon)));
        assert!((1..=1500).contains(&t), "{t}");
        assert_eq!(i32::from(poll_timeout(Some(Instant::now()))), 0);
    }

    /// Whatever follows (or replaces) a valid hello, the server answers or closes: it never
    /// panics and never writes a frame over the limit. One store serves every case.
    #[test]
    fn arbitrary_bytes_never_panic_the_connection_handler() {
        let (_dir, store) = store();
        let weak = Arc::downgrade(&store.inner);
        let cases = (
            proptest::collection::vec(any::<u8>(), 0..600),
            any::<bool>(),
            any::<bool>(),
        );
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1024));
        runner
            .run(&cases, |(bytes, framed, with_hello)| {
                let mut input = if with_hello { hello() } else { Vec::new() };
                if framed {
                    // A correct length prefix, so the bytes reach the message decoder.
                    input.extend((bytes.len() as u32).to_be_bytes());
                }
                input.extend(&bytes);
                let mut conn = Scripted {
                    input: io::Cursor::new(input),
                    output: Vec::new(),
                };
                serve_connection(&mut conn, &weak, store.path(), Timeouts::default());
                let mut output = conn.output.as_slice();
                let mut buf = Vec::new();
                loop {
                    match read_frame(&mut output, &mut buf) {
                        Ok(()) => {}
                        Err(FrameError::Closed) => break,
                        Err(e) => prop_assert!(false, "bad frame from the server: {e:?}"),
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
