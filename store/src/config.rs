//! The store's settings and the builder that opens a store with them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::store::Store;

/// When a write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// sled writes in the background every `flush_every`; a crash (of the process or the
    /// machine) can lose the writes of the last interval, never the store's consistency. The
    /// last handle's drop flushes; a process that exits without dropping it (a store kept in a
    /// `static`, `std::process::exit`) must call [`Store::flush`] first, or it loses that
    /// interval's writes as a crash would.
    Periodic {
        /// How often the background flush runs (under a millisecond is taken as one).
        flush_every: Duration,
    },
    /// A write returns only after it is on stable storage: its changes are written to the
    /// store's commit journal ([`JOURNAL_FILE`](crate::JOURNAL_FILE), an 8 MiB file made in the
    /// store's folder at the first open in this mode) and `fdatasync`ed, one wait on the disk;
    /// sled's own files are flushed and `fsync`ed at checkpoints, and the next open, in any
    /// mode, replays the commits since the last one. Concurrent savers share one journal write
    /// (group commit). The first open in this mode marks the database as format 3
    /// ([`FORMAT_VERSION`](crate::FORMAT_VERSION)): sessdb builds that know no journal refuse
    /// it rather than ignore the commits it holds.
    Immediate,
}

/// What happens when a principal would get more sessions than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPrincipalLimit {
    /// Invalidate the principal's least recently used sessions to make room, as many as it
    /// takes (one, unless an import or a crash left the principal over its limit): those whose
    /// recorded last access is oldest. A save that only touches the session records its
    /// access at most once per [`touch_interval`](Builder::touch_interval), so two sessions
    /// used within that interval of each other may be taken for one another.
    EvictOldest,
    /// Refuse the save with [`Error::PrincipalLimit`](crate::Error::PrincipalLimit).
    Refuse,
}

/// Settings of an open store. See [`Builder`] for the defaults.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_lifetime: Duration,
    pub(crate) touch_interval: Duration,
    pub(crate) durability: Durability,
    pub(crate) max_session_bytes: usize,
    pub(crate) max_sessions_per_principal: Option<(usize, OnPrincipalLimit)>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cache_bytes: u64,
    pub(crate) create: bool,
    pub(crate) read_only: bool,
    pub(crate) reap_every: Option<Duration>,
    pub(crate) admin_socket: Option<crate::socket::SocketPath>,
    pub(crate) admin_timeouts: crate::socket::Timeouts,
    pub(crate) admin_socket_check: Duration,
    /// How long the last handle's drop waits for sled's flush once a storage I/O error was met
    /// (see `Inner::drop`).
    pub(crate) drop_flush_wait: Duration,
    /// The size of a new journal's ring (immediate durability; `journal.rs`).
    pub(crate) journal_bytes: u64,
}

/// Opens a [`Store`] with settings other than the defaults.
///
/// ## Defaults
/// | setting | default |
/// |---|---|
/// | [`idle_timeout`](Builder::idle_timeout) | 30 minutes |
/// | [`absolute_lifetime`](Builder::absolute_lifetime) | 24 hours |
/// | [`touch_interval`](Builder::touch_interval) | 60 seconds |
/// | [`durability`](Builder::durability) | [`Durability::Periodic`], every 500 ms |
/// | [`max_session_bytes`](Builder::max_session_bytes) | 256 KiB encoded ([`Builder::DEFAULT_MAX_SESSION_BYTES`]) |
/// | [`max_sessions_per_principal`](Builder::max_sessions_per_principal) | unlimited |
/// | [`cache_bytes`](Builder::cache_bytes) | 128 MiB of sled page cache ([`Builder::DEFAULT_CACHE_BYTES`]) |
/// | [`clock`](Builder::clock) | the system clock |
/// | [`reap_every`](Builder::reap_every) | off: no background purge |
/// | [`admin_socket`](Builder::admin_socket) | off: no admin socket |
/// | [`admin_socket_idle_timeout`](Builder::admin_socket_idle_timeout) | 60 seconds |
/// | [`admin_socket_frame_timeout`](Builder::admin_socket_frame_timeout) | 10 seconds |
/// | [`admin_socket_check_interval`](Builder::admin_socket_check_interval) | 2 seconds |
/// | [`create`](Builder::create) | true: a missing folder is created (mode 0700) |
/// | [`read_only`](Builder::read_only) | false |
///
/// ```
/// use std::time::Duration;
/// use sessdb::{Durability, OnPrincipalLimit, Store};
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder()
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .max_sessions_per_principal(5, OnPrincipalLimit::EvictOldest)
///     .durability(Durability::Immediate)
///     .open(dir.path().join("sessions.sessdb"))?;
/// # Ok::<(), sessdb::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    pub(crate) config: Config,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config {
                idle_timeout: Duration::from_secs(30 * 60),
                absolute_lifetime: Duration::from_secs(24 * 3600),
                touch_interval: Duration::from_secs(60),
                durability: Durability::Periodic {
                    flush_every: Duration::from_millis(500),
                },
                max_session_bytes: Builder::DEFAULT_MAX_SESSION_BYTES,
                max_sessions_per_principal: None,
                clock: Arc::new(SystemClock),
                cache_bytes: Builder::DEFAULT_CACHE_BYTES,
                create: true,
                read_only: false,
                reap_every: None,
                admin_socket: None,
                admin_timeouts: crate::socket::Timeouts::default(),
                admin_socket_check: crate::socket::DEFAULT_SOCKET_CHECK,
                drop_flush_wait: Builder::DROP_FLUSH_WAIT,
                journal_bytes: crate::journal::DEFAULT_RING_BYTES,
            },
        }
    }
}

impl Builder {
    /// The default of [`Builder::cache_bytes`]: 128 MiB, which held a store of 100,000
    /// sessions of ~300 B of data whole in the benchmark (`docs/BENCHMARKS.md`); sled's own
    /// default is 1 GiB.
    pub const DEFAULT_CACHE_BYTES: u64 = 128 * 1024 * 1024;

    /// The default of [`Builder::max_session_bytes`]: 256 KiB encoded.
    pub const DEFAULT_MAX_SESSION_BYTES: usize = 256 * 1024;

    /// The size of sled's log segments in a store created now: 2 MiB, where sled's default is
    /// 512 KiB. Not a setting: sled keeps a database's size in its `conf` file and refuses to
    /// open it with any other, so a store keeps the size it was created with (512 KiB for
    /// stores made before this default). A raw `sled::Config` opening a sessdb folder must
    /// pass the size in that folder's `conf`, which is this one only for stores created since.
    /// (sled marks its segment size setting testing-only; sessdb's tests check what it does.)
    ///
    /// Larger segments let sled reclaim more of the space that the indexes' short-lived page
    /// versions take next to long-lived records: a fresh store of 100,000 sessions took
    /// 1,407–1,468 B a session instead of 1,531–1,620 B, with loads and saves unchanged within
    /// the noise; sled's IO buffers grow with the segments, which cost up to 46 MiB more at the
    /// peak of a bulk load, and a store takes at least one segment on disk
    /// (`docs/BENCHMARKS.md`, "Missed targets", disk).
    pub const NEW_STORE_SEGMENT_BYTES: usize = 2 * 1024 * 1024;

    /// A builder with the defaults.
    pub fn new() -> Self {
        Builder::default()
    }

    /// How long a session lives without being used. A session may override it.
    ///
    /// Each session stores its own idle timeout and absolute deadline, given when it is
    /// created (and exported with it): a store opened with other settings applies them to the
    /// sessions it creates from then on, not to those already stored. To end existing sessions
    /// sooner after a policy change, invalidate them (`Store::invalidate_principal`, `sessctl
    /// invalidate`).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }

    /// How long a session lives at most after its creation, however busy. A session may
    /// override its own deadline. Like the idle timeout, it applies to the sessions created
    /// from then on.
    pub fn absolute_lifetime(mut self, d: Duration) -> Self {
        self.config.absolute_lifetime = d;
        self
    }

    /// Saving an unmodified session writes a *touch* (its last access and a new idle
    /// deadline) only when the stored deadline, or the stored last access, is at least this
    /// much earlier than the new one (the last access alone moves for a session without an
    /// idle timeout, or one whose deadline is its absolute deadline). Larger values write
    /// less; the idle timeout is then honoured within this interval. A session whose idle
    /// timeout is shorter than twice this interval is touched once half its idle timeout has
    /// passed instead, so that a session in use never expires for want of a touch.
    pub fn touch_interval(mut self, d: Duration) -> Self {
        self.config.touch_interval = d;
        self
    }

    /// When writes reach the disk.
    pub fn durability(mut self, d: Durability) -> Self {
        self.config.durability = d;
        self
    }

    /// The largest encoded session the store accepts (its record: the data, the metadata and
    /// about 40 bytes of its own; 0 is refused at [`open`](Builder::open), since every save
    /// would fail).
    pub fn max_session_bytes(mut self, n: usize) -> Self {
        self.config.max_session_bytes = n;
        self
    }

    /// How long the last handle's drop waits for its flush once a write failed (`Inner::drop`
    /// in `store.rs`): 10 seconds.
    pub(crate) const DROP_FLUSH_WAIT: Duration = Duration::from_secs(10);

    /// Sets that wait, for the tests that make sled fail a write (not a setting: the default
    /// serves every application).
    #[doc(hidden)]
    pub fn __drop_flush_wait_for_tests(mut self, wait: Duration) -> Self {
        self.config.drop_flush_wait = wait;
        self
    }

    /// Sets the size of a new store's commit journal (immediate durability only), for the
    /// tests that make it wrap and checkpoint often: 8 MiB otherwise (not a setting: a larger
    /// ring only checkpoints less often). Sizes under 4 KiB are taken as 4 KiB.
    #[doc(hidden)]
    pub fn __journal_bytes_for_tests(mut self, bytes: u64) -> Self {
        self.config.journal_bytes = bytes;
        self
    }

    /// At most `limit` sessions per principal, and what to do when a login would exceed it.
    /// A limit of 0 is taken as 1: a principal can always log in somewhere.
    ///
    /// With [`OnPrincipalLimit::EvictOldest`] the login's session is written first and the
    /// oldest are removed right after, still under the principal's lock: between the two, and
    /// after a crash between them, the principal has one session more than `limit`. If that
    /// removal fails, the save (or `cycle_id`) returns its error although the login's session
    /// was written.
    ///
    /// The limit applies to logins: a save or `cycle_id` that gives a session a principal. An
    /// import restores what its file holds, whatever the limit (a backup brought back into a
    /// store whose limit is lower loses no session); a principal left over it meets the policy
    /// at its next login, which under `EvictOldest` removes all of its sessions over the limit.
    pub fn max_sessions_per_principal(mut self, limit: usize, policy: OnPrincipalLimit) -> Self {
        self.config.max_sessions_per_principal = Some((limit.max(1), policy));
        self
    }

    /// sled's page cache size. Memory grows with it up to the working set; a smaller cache
    /// costs speed on stores larger than it. A store served from memory needs roughly 1 to
    /// 1.3 KiB of cache per session of ~300 B of data (measured at 100k and 1M sessions);
    /// `docs/BENCHMARKS.md` ("Memory and the cache setting") has the measured trade-off.
    /// Values below [`MIN_CACHE_BYTES`](Builder::MIN_CACHE_BYTES) are raised to it (sled
    /// refuses a cache under 256 bytes by panicking).
    pub fn cache_bytes(mut self, n: u64) -> Self {
        self.config.cache_bytes = n.max(Builder::MIN_CACHE_BYTES);
        self
    }

    /// The smallest cache [`cache_bytes`](Builder::cache_bytes) sets: 1 MiB.
    pub const MIN_CACHE_BYTES: u64 = 1 << 20;

    /// The clock every expiry decision reads.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Purge expired sessions on a background thread at this interval (at least a
    /// millisecond: zero is taken as one, rather than a thread that never rests). The thread
    /// stops when the last handle of the store is dropped. A purge that fails is logged
    /// (`log` target `sessdb::reaper`) and tried again at the next interval.
    pub fn reap_every(mut self, every: Duration) -> Self {
        self.config.reap_every = Some(every.max(Duration::from_millis(1)));
        self
    }

    /// Whether to create the database folder when it is missing.
    pub fn create(mut self, create: bool) -> Self {
        self.config.create = create;
        self
    }

    /// Refuse every write, including the lazy deletion of an expired session on load.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config.read_only = read_only;
        self
    }

    /// Opens (or creates) the store in the folder `path`.
    ///
    /// # Errors
    /// [`Error::Locked`](crate::Error::Locked) when another process holds the database (after
    /// waiting up to half a second: sled lets go of a dropped database's lock from a background
    /// thread, so a store reopened at once in the same process may find it briefly held), also
    /// while another process compacts it ([`Store::compact`](crate::Store::compact)),
    /// [`Error::Missing`](crate::Error::Missing) when it does not exist and `create` is off,
    /// [`Error::CompactionCut`](crate::Error::CompactionCut) when it does not exist because a
    /// compaction was cut between its two renames (no new database is made then),
    /// [`Error::EmptyPath`](crate::Error::EmptyPath) for an empty `path`,
    /// [`Error::NotADirectory`](crate::Error::NotADirectory),
    /// [`Error::NotADatabase`](crate::Error::NotADatabase) for a folder without a database that
    /// `create` is off for, or that holds files of its own (a new database is made only in a
    /// new or empty folder; see [`foreign_entries`](crate::foreign_entries)),
    /// [`Error::NewerFormat`](crate::Error::NewerFormat),
    /// [`Error::InvalidField`](crate::Error::InvalidField) for an idle timeout or absolute
    /// lifetime under a millisecond (every session would expire as it is saved;
    /// `Duration::MAX` is none) or a `max_session_bytes` of 0 (every save would fail), or an
    /// I/O or storage error.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Store> {
        for (field, d) in [
            ("idle timeout", self.config.idle_timeout),
            ("absolute lifetime", self.config.absolute_lifetime),
        ] {
            // Deadlines are in whole milliseconds: less is none at all.
            if d.as_millis() == 0 {
                return Err(crate::Error::InvalidField {
                    field,
                    reason: "it is under a millisecond, so every session would expire as it is \
                             saved (Duration::MAX is none)"
                        .into(),
                });
            }
        }
        if self.config.max_session_bytes == 0 {
            return Err(crate::Error::InvalidField {
                field: "max session bytes",
                reason: "it is 0, so every save would fail".into(),
            });
        }
        Store::open_with(path.as_ref(), self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle timeout or absolute lifetime under a millisecond (deadlines are whole
    /// milliseconds), and a size limit of 0, are refused by name, before anything is made:
    /// every session would expire as it is saved, or fail to save.
    #[test]
    fn settings_under_which_no_session_lives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let err = Builder::new()
            .idle_timeout(Duration::ZERO)
            .open(&path)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid idle timeout: it is under a millisecond, so every session would expire as \
             it is saved (Duration::MAX is none)"
        );
        for lifetime in [Duration::ZERO, Duration::from_micros(999)] {
            let err = Builder::new()
                .absolute_lifetime(lifetime)
                .open(&path)
                .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("invalid absolute lifetime: it is under a millisecond"),
                "{lifetime:?}"
            );
        }
        let err = Builder::new().max_session_bytes(0).open(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid max session bytes: it is 0, so every save would fail"
        );
        assert!(!path.exists());
        Builder::new()
            .idle_timeout(Duration::from_millis(1))
            .max_session_bytes(1)
            .open(&path)
            .unwrap();
    }

    /// Values sled would panic on, or that would spin a core, are raised to the documented
    /// minimum.
    #[test]
    fn zero_cache_and_zero_reap_interval_are_raised() {
        let b = Builder::new().cache_bytes(0).reap_every(Duration::ZERO);
        assert_eq!(b.config.cache_bytes, Builder::MIN_CACHE_BYTES);
        assert_eq!(b.config.reap_every, Some(Duration::from_millis(1)));
        let b = Builder::new().cache_bytes(u64::MAX);
        assert_eq!(b.config.cache_bytes, u64::MAX);
    }
}
