//! The admin socket: a running application serves the [`Admin`](crate::Admin) interface on a
//! Unix socket (opt-in, owner-only, peer uid checked), and [`RemoteAdmin`] reaches it. sled
//! lets one process open a database, so this is how operators reach a live application.
//!
//! `wire` owns the frames and messages, `server` the socket and its threads, `client` the
//! client.

mod client;
mod server;
mod wire;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::RemoteAdmin;
pub(crate) use server::Server;
pub use wire::{MAX_FRAME_BYTES, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION};

use crate::config::Builder;
use crate::error::Result;
use crate::store::Store;

/// The file name of the admin socket in the database folder, when the application uses
/// [`Builder::admin_socket_default`].
pub const ADMIN_SOCKET_FILE: &str = "admin.sock";

/// Where a store serves its admin socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SocketPath {
    /// `admin.sock` in the database folder.
    InDatabase,
    /// A path of the application's choosing.
    At(PathBuf),
}

/// How often the server looks at its socket file by default (see
/// [`Builder::admin_socket_check_interval`]).
pub(crate) const DEFAULT_SOCKET_CHECK: Duration = Duration::from_secs(2);

/// How long the server waits on a client (see [`Builder::admin_socket_idle_timeout`] and
/// [`Builder::admin_socket_frame_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// Between frames: for the next request, and for the next chunk of an import's input.
    pub(crate) idle: Duration,
    /// For the rest of a frame once its first byte arrived, and for the hello.
    pub(crate) frame: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            idle: Duration::from_secs(60),
            frame: Duration::from_secs(10),
        }
    }
}

impl Builder {
    /// Serves the admin interface on a Unix socket at `path`, so that `sessctl` (or a
    /// [`RemoteAdmin`]) can reach this application's sessions while it runs.
    ///
    /// The socket is created with mode 0600 whatever the umask, and each connection's peer
    /// uid is checked: only this process's user and root are served; anyone else is refused
    /// and logged (with the `log` crate, target `sessdb::admin_socket`). A socket file left by
    /// a crashed process is replaced; one that another process answers on makes
    /// [`open`](Builder::open) fail with [`Error::AdminSocketInUse`](crate::Error::AdminSocketInUse).
    /// The server runs on its own threads and stops, removing the socket file, when the last
    /// handle of the store is dropped (after the request in progress, if any).
    ///
    /// The server looks at its socket file every
    /// [`admin_socket_check_interval`](Builder::admin_socket_check_interval) (2 seconds by
    /// default). If the file was deleted while the application runs (a cleaner of `/tmp`, an
    /// operator's `rm`), it binds a new socket at `path`, in the same owner-only way, and logs a
    /// warning: `sessctl` reaches the application again without a restart. If another file
    /// has taken `path` (another process's socket, anything else), it is left alone, and the
    /// server logs a warning once; it binds again if that file goes away. A new socket is made
    /// only in the folder the first one was made in: if that folder was deleted, or deleted
    /// and made again (a new instance of the application may own the new one), the server
    /// logs a warning and makes none.
    ///
    /// Unix socket paths are limited to about 100 bytes; the socket is bound in a temporary
    /// folder beside `path`, whose name is 19 bytes longer than the folder itself.
    pub fn admin_socket(mut self, path: impl AsRef<Path>) -> Self {
        self.config.admin_socket = Some(SocketPath::At(path.as_ref().to_path_buf()));
        self
    }

    /// Serves the admin socket at its default place, `admin.sock` in the database folder
    /// (which `sessctl --db PATH` looks for). See [`Builder::admin_socket`].
    ///
    /// ```
    /// use sessdb::{Admin, RemoteAdmin, Store};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder()
    ///     .admin_socket_default()
    ///     .open(dir.path().join("sessions"))?;
    /// let socket = store.admin_socket_path().expect("serving");
    /// assert_eq!(socket, RemoteAdmin::default_socket(store.path()));
    ///
    /// // What sessctl does from another process:
    /// let admin = RemoteAdmin::connect(socket)?;
    /// assert_eq!(admin.stats()?.live, 0);
    /// # Ok::<(), sessdb::Error>(())
    /// ```
    pub fn admin_socket_default(mut self) -> Self {
        self.config.admin_socket = Some(SocketPath::InDatabase);
        self
    }

    /// How long an admin connection may stay silent between frames before the server closes
    /// it: waiting for the next request, and waiting for the next chunk of an import's input
    /// (the import is then abandoned and nothing is written). 60 seconds by default.
    ///
    /// This frees the connection slots (at most 64) of clients that went away without closing,
    /// or that sit idle. [`RemoteAdmin`] reconnects by itself when it finds its idle
    /// connection closed, so a client that pauses longer (a TUI with auto-refresh off) only
    /// pays a new handshake. An import's input may come from a slow pipe: a producer that is
    /// silent longer than this needs a longer setting. The server never holds the store while
    /// it waits for a client, so this does not delay closing the store.
    ///
    /// A zero duration is taken as one millisecond.
    pub fn admin_socket_idle_timeout(mut self, d: Duration) -> Self {
        self.config.admin_timeouts.idle = d.max(Duration::from_millis(1));
        self
    }

    /// How long the rest of a frame may take to arrive once its first byte has, and how long
    /// a new connection may take to start its hello (which then has as long again to arrive
    /// whole), before the server closes the connection. 10 seconds by default.
    ///
    /// A client writes each frame (at most [`MAX_FRAME_BYTES`]) at once from memory, which
    /// takes milliseconds; this bounds how long a client that stops in the middle of one (or
    /// sends a few bytes and goes silent) holds a connection slot and the memory of the
    /// frame read so far.
    ///
    /// A zero duration is taken as one millisecond.
    pub fn admin_socket_frame_timeout(mut self, d: Duration) -> Self {
        self.config.admin_timeouts.frame = d.max(Duration::from_millis(1));
        self
    }

    /// How often the admin socket's server checks that its socket file is still the one it
    /// bound (the same device and inode), to bind a new one if the file was deleted (see
    /// [`Builder::admin_socket`]). 2 seconds by default: one `lstat` each time, and an
    /// operator whose `sessctl` found no socket reaches the application again within that.
    /// Stopping the server does not wait for it.
    ///
    /// A zero duration is taken as one millisecond (a thousand looks a second, for tests); an
    /// interval too long to add to the clock, such as [`Duration::MAX`], means no look at all.
    pub fn admin_socket_check_interval(mut self, d: Duration) -> Self {
        self.config.admin_socket_check = d.max(Duration::from_millis(1));
        self
    }
}

impl Store {
    /// The admin socket this store serves, if it was opened with one.
    pub fn admin_socket_path(&self) -> Option<&Path> {
        self.inner.admin_server.get().map(Server::path)
    }
}

/// Starts the admin socket the store's settings ask for, if any.
pub(crate) fn start(store: &Store) -> Result<Option<Server>> {
    let path = match &store.inner.config.admin_socket {
        None => return Ok(None),
        Some(SocketPath::InDatabase) => RemoteAdmin::default_socket(&store.inner.path),
        Some(SocketPath::At(path)) => path.clone(),
    };
    server::serve(store, &path).map(Some)
}

/// A connected socket whose writes never raise SIGPIPE, so neither an application that
/// restored the default SIGPIPE action nor a CLI dies because the other end went away.
#[derive(Debug)]
pub(crate) struct Stream(pub(crate) UnixStream);

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Stream {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use nix::sys::socket::{send, MsgFlags};
        use std::os::fd::AsRawFd;
        loop {
            match send(self.0.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
                Err(nix::errno::Errno::EINTR) => continue,
                result => return result.map_err(io::Error::from),
            }
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
