//! The admin socket. One admin suite, written once, runs against both transports: the store
//! opened directly, and a `RemoteAdmin` talking to a store that serves its socket in this
//! process. Then the socket's own guarantees: owner-only, stale and live sockets, refused
//! users, bad frames, many clients, and the application going away.

mod common;

use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, Once};
use std::time::Duration;

use common::{body, end_line, fixture_with, Fixture, T0};
use sessdb::{
    Admin, Builder, Error, ImportOptions, ListQuery, RemoteAdmin, SessionId, Status, Store, Target,
    Value,
};

// ---- the two transports ----

/// How a suite test reaches the admin interface.
#[derive(Clone, Copy)]
struct Transport {
    configure: fn(Builder) -> Builder,
    connect: fn(&Store) -> Option<RemoteAdmin>,
}

const DIRECT: Transport = Transport {
    configure: |b| b,
    connect: |_| None,
};

const SOCKET: Transport = Transport {
    configure: |b| b.admin_socket_default(),
    connect: |store| {
        let socket = store
            .admin_socket_path()
            .expect("the store serves its socket");
        Some(RemoteAdmin::connect(socket).expect("connect"))
    },
};

/// A store (the application's side) and the admin interface under test.
struct Env {
    fx: Fixture,
    remote: Option<RemoteAdmin>,
    transport: Transport,
}

impl Transport {
    fn env(self) -> Env {
        self.env_with(Store::builder())
    }

    fn env_with(self, builder: Builder) -> Env {
        let fx = fixture_with((self.configure)(builder));
        Env {
            remote: (self.connect)(&fx.store),
            fx,
            transport: self,
        }
    }
}

impl Env {
    fn admin(&self) -> &dyn Admin {
        match &self.remote {
            Some(remote) => remote,
            None => &self.fx.store,
        }
    }

    fn store(&self) -> &Store {
        &self.fx.store
    }

    fn reopen(self, builder: Builder) -> Env {
        let Env { fx, transport, .. } = self;
        let fx = fx.reopen((transport.configure)(builder));
        Env {
            remote: (transport.connect)(&fx.store),
            fx,
            transport,
        }
    }
}

/// Runs each named suite test against both transports.
macro_rules! admin_suite {
    ($($test:ident),* $(,)?) => {
        mod direct {
            $(#[test] fn $test() { super::suite::$test(super::DIRECT) })*
        }
        mod over_socket {
            $(#[test] fn $test() { super::suite::$test(super::SOCKET) })*
        }
    };
}

admin_suite!(
    stats_count_live_expired_and_principals,
    list_pages_through_every_session_once,
    show_finds_a_session_by_handle_and_by_id_with_its_data_intact,
    invalidation_is_seen_by_the_application_at_once,
    invalidate_principal_removes_only_that_principals_sessions,
    purge_reports_progress_and_removes_only_expired_sessions,
    export_then_import_restores_every_session_and_is_idempotent,
    import_reports_bad_lines_and_a_dry_run_writes_nothing,
    a_flood_of_garbage_gets_a_bounded_report_and_a_bad_header_ends_cleanly,
    check_finds_a_healthy_store_clean,
    writes_to_a_read_only_store_fail_with_read_only,
    an_export_to_a_failing_writer_is_an_io_error_and_the_admin_stays_usable,
    an_import_whose_input_fails_writes_nothing,
    list_pages_backward_from_the_end,
    handles_starting_with_a_prefix_are_exactly_those,
);

/// Sessions with every kind of value, principals `user0..user3` (every fourth has none), and
/// a short idle timeout on every third, so that `EXPIRE` seconds later those are expired.
fn seed(store: &Store, n: usize) -> Vec<SessionId> {
    (0..n)
        .map(|i| {
            let mut s = store.create();
            if i % 4 != 3 {
                s.set_principal(Some(&format!("user{}", i % 4))).unwrap();
            }
            s.set_label(Some("web")).unwrap();
            s.set_user_agent(Some("Mozilla/5.0")).unwrap();
            s.insert("cart", &vec![i, i + 1]).unwrap();
            s.insert_value("raw", Value::Bytes(vec![0, 1, 255]))
                .unwrap();
            s.insert_value("big", Value::UInt(u64::MAX)).unwrap();
            s.insert_value("ratio", Value::Float(0.1 + i as f64))
                .unwrap();
            s.insert("nested", &serde_json::json!({"a": {"b": [1.5, null, "x"]}}))
                .unwrap();
            if i % 3 == 0 {
                s.set_idle_timeout(Duration::from_secs(60));
            }
            s.save().unwrap();
            *s.id()
        })
        .collect()
}

const EXPIRE: u64 = 120;

fn expired_in(n: usize) -> u64 {
    (0..n).filter(|i| i % 3 == 0).count() as u64
}

fn export_text(admin: &dyn Admin, include_expired: bool) -> String {
    let mut out = Vec::new();
    admin.export(&mut out, include_expired).unwrap();
    String::from_utf8(out).unwrap()
}

/// A writer that takes `room` bytes, then fails.
struct FailingWriter {
    room: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that gives `data`, then fails.
struct FailingReader<'a> {
    data: &'a [u8],
}

impl Read for FailingReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for FailingReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.data.is_empty() {
            Err(io::Error::other("the input went away"))
        } else {
            Ok(self.data)
        }
    }
    fn consume(&mut self, n: usize) {
        self.data = &self.data[n..];
    }
}

mod suite {
    use super::*;

    /// A handle cut short (the TUI shows 8 characters) names the sessions whose handle starts
    /// with it, expired ones too: odd and even lengths, either case, and at most `limit`.
    pub fn handles_starting_with_a_prefix_are_exactly_those(t: Transport) {
        let env = t.env();
        let mut all: Vec<String> = seed(env.store(), 300)
            .iter()
            .map(|id| id.handle().to_string())
            .collect();
        all.sort();
        env.fx.advance(EXPIRE);
        let admin = env.admin();
        let looked_up = |prefix: &str, limit: usize| -> Vec<String> {
            admin
                .handles_starting_with(prefix, limit)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        for (i, handle) in all.iter().enumerate().step_by(29) {
            for len in [1, 2, 3, 6, 7, 8, 31, 32] {
                let prefix = &handle[..len];
                let want: Vec<String> = all
                    .iter()
                    .filter(|h| h.starts_with(prefix))
                    .cloned()
                    .collect();
                let prefix = if i % 2 == 0 {
                    prefix.to_string()
                } else {
                    prefix.to_ascii_uppercase()
                };
                assert_eq!(looked_up(&prefix, 1000), want, "{prefix}");
                let two: Vec<String> = want.iter().take(2).cloned().collect();
                assert_eq!(looked_up(&prefix, 2), two, "{prefix}");
            }
        }
        assert_eq!(looked_up("", 3), all[..3]);
        assert!(looked_up("zz", 10).is_empty());
        assert!(looked_up(&format!("{}0", all[0]), 10).is_empty());
        assert!(looked_up(&all[0], 0).is_empty());
    }

    pub fn stats_count_live_expired_and_principals(t: Transport) {
        let env = t.env();
        seed(env.store(), 12);
        env.fx.advance(EXPIRE);
        let stats = env.admin().stats().unwrap();
        assert_eq!(stats.expired, expired_in(12));
        assert_eq!(stats.live, 12 - expired_in(12));
        assert_eq!(stats.principals, 3);
        assert_eq!(stats.undecodable, 0);
        // A store opened in periodic durability (format 3 is for one with a commit journal).
        assert_eq!(stats.format_version, 2);
        assert!(stats.bytes_on_disk > 0);
        assert_eq!(
            env.admin().now().unix_timestamp_nanos(),
            i128::from(T0 + EXPIRE as i64 * 1000) * 1_000_000
        );
    }

    pub fn list_pages_through_every_session_once(t: Transport) {
        let env = t.env();
        let ids = seed(env.store(), 250);
        let mut seen = Vec::new();
        let mut pages = Vec::new();
        let mut query = ListQuery {
            limit: 100,
            ..ListQuery::default()
        };
        loop {
            let page = env.admin().list(&query).unwrap();
            pages.push(page.sessions.len());
            seen.extend(page.sessions.iter().map(|s| s.handle));
            match page.next {
                Some(cursor) => query.after = Some(cursor),
                None => break,
            }
        }
        assert_eq!(pages, [100, 100, 50]);
        let mut expected: Vec<_> = ids.iter().map(SessionId::handle).collect();
        expected.sort();
        seen.sort();
        assert_eq!(seen, expected);

        // A page is what the store itself lists, field for field.
        let q = ListQuery {
            principal: Some("user1".into()),
            ..ListQuery::default()
        };
        let remote = env.admin().list(&q).unwrap();
        assert_eq!(remote.sessions.len(), 63);
        assert!(remote
            .sessions
            .iter()
            .all(|s| s.principal.as_deref() == Some("user1")));
        assert_eq!(remote, Admin::list(env.store(), &q).unwrap());

        env.fx.advance(EXPIRE);
        let expired = env
            .admin()
            .list(&ListQuery {
                status: Status::Expired,
                limit: 1000,
                ..ListQuery::default()
            })
            .unwrap();
        assert_eq!(expired.sessions.len() as u64, expired_in(250));
        assert!(expired.next.is_none());
    }

    pub fn show_finds_a_session_by_handle_and_by_id_with_its_data_intact(t: Transport) {
        let env = t.env();
        let ids = seed(env.store(), 3);
        let by_id = env.admin().show(&Target::Id(ids[1])).unwrap().unwrap();
        let by_handle = env
            .admin()
            .show(&Target::Handle(ids[1].handle()))
            .unwrap()
            .unwrap();
        assert_eq!(by_id, by_handle);
        assert_eq!(
            Some(by_id.clone()),
            Admin::show(env.store(), &Target::Id(ids[1])).unwrap()
        );
        assert_eq!(by_id.principal.as_deref(), Some("user1"));
        assert_eq!(by_id.data["raw"], Value::Bytes(vec![0, 1, 255]));
        assert_eq!(by_id.data["big"], Value::UInt(u64::MAX));
        assert_eq!(by_id.data["ratio"], Value::Float(0.1 + 1.0));
        assert!(env
            .admin()
            .show(&Target::Id(SessionId::random()))
            .unwrap()
            .is_none());
    }

    pub fn invalidation_is_seen_by_the_application_at_once(t: Transport) {
        let env = t.env();
        let ids = seed(env.store(), 3);
        assert!(env.admin().invalidate(&Target::Id(ids[0])).unwrap());
        assert!(env.store().load(&ids[0]).unwrap().is_none());
        assert!(!env.admin().invalidate(&Target::Id(ids[0])).unwrap());
        assert!(env
            .admin()
            .invalidate(&Target::Handle(ids[1].handle()))
            .unwrap());
        assert!(env.store().load(&ids[1]).unwrap().is_none());
        assert!(env.store().load(&ids[2]).unwrap().is_some());
    }

    pub fn invalidate_principal_removes_only_that_principals_sessions(t: Transport) {
        let env = t.env();
        let ids = seed(env.store(), 8);
        assert_eq!(env.admin().invalidate_principal("user1").unwrap(), 2);
        for (i, id) in ids.iter().enumerate() {
            let loaded = env.store().load(id).unwrap();
            assert_eq!(loaded.is_none(), i % 4 == 1, "session {i}");
        }
        assert_eq!(env.admin().invalidate_principal("user1").unwrap(), 0);
    }

    pub fn purge_reports_progress_and_removes_only_expired_sessions(t: Transport) {
        let env = t.env();
        // More than one purge batch (512) of expired sessions.
        let n = 1800;
        seed(env.store(), n);
        env.fx.advance(EXPIRE);
        let expired = expired_in(n);
        assert_eq!(expired, 600);
        assert_eq!(env.admin().count_expired().unwrap(), expired);
        let mut progress = Vec::new();
        let purged = env.admin().purge(&mut |done| progress.push(done)).unwrap();
        assert_eq!(purged, expired);
        assert!(progress.len() >= 2, "{progress:?}");
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
        assert_eq!(progress.last(), Some(&expired));
        assert_eq!(env.admin().count_expired().unwrap(), 0);
        let stats = env.admin().stats().unwrap();
        assert_eq!((stats.live, stats.expired), (n as u64 - expired, 0));
    }

    pub fn export_then_import_restores_every_session_and_is_idempotent(t: Transport) {
        let a = t.env();
        seed(a.store(), 20);
        // One large session, so the export and the import span many socket chunks.
        let mut s = a.store().create();
        s.insert("essay", &"x".repeat(200_000)).unwrap();
        s.save().unwrap();
        a.fx.advance(EXPIRE);
        let first = export_text(a.admin(), true);
        assert!(first.len() > 200_000);
        assert_eq!(body(&first).len(), 21);
        assert_eq!(body(&export_text(a.admin(), false)).len(), 21 - 7);
        // The same bytes as the store's own export, apart from the header's time.
        let local = export_text(a.store(), true);
        assert_eq!(body(&first), body(&local));

        let b = t.env();
        b.fx.clock.set_ms(a.fx.clock_ms());
        let report = b
            .admin()
            .import(&mut first.as_bytes(), &ImportOptions::default())
            .unwrap();
        assert_eq!((report.imported, report.bad.len()), (21, 0));
        assert!(report.written);
        assert_eq!(body(&export_text(b.admin(), true)), body(&first));

        let writes = b.store().counters().writes;
        let again = b
            .admin()
            .import(&mut first.as_bytes(), &ImportOptions::default())
            .unwrap();
        assert_eq!(
            (again.imported, again.unchanged, again.written),
            (0, 21, false)
        );
        assert_eq!(b.store().counters().writes, writes);
    }

    pub fn import_reports_bad_lines_and_a_dry_run_writes_nothing(t: Transport) {
        let a = t.env();
        seed(a.store(), 5);
        let good = export_text(a.admin(), true);

        let b = t.env();
        let dry = b
            .admin()
            .import(
                &mut good.as_bytes(),
                &ImportOptions {
                    dry_run: true,
                    ..ImportOptions::default()
                },
            )
            .unwrap();
        assert_eq!((dry.imported, dry.written), (5, false));
        assert_eq!(b.admin().stats().unwrap().live, 0);

        let header = good.lines().next().unwrap();
        let bad = format!(
            "{header}\n{}\n{{\"handle\": 42}}\nnot json at all\n{}\n",
            body(&good).join("\n"),
            end_line(7)
        );
        let report = b
            .admin()
            .import(&mut bad.as_bytes(), &ImportOptions::default())
            .unwrap();
        let lines: Vec<u64> = report.bad.iter().map(|l| l.line).collect();
        assert_eq!(lines, [7, 8]);
        assert!(!report.written);
        assert_eq!(b.admin().stats().unwrap().live, 0);
    }

    /// 20,000 garbage lines: the first 1,000 named, all counted, nothing written; then a bad
    /// header followed by more input, which the server receives and drops so that the
    /// connection stays in step and serves the next request.
    pub fn a_flood_of_garbage_gets_a_bounded_report_and_a_bad_header_ends_cleanly(t: Transport) {
        let a = t.env();
        seed(a.store(), 5);
        let good = export_text(a.admin(), true);
        let header = good.lines().next().unwrap();
        let b = t.env();
        let flood = format!(
            "{header}\n{}{}\n{}\n",
            "x\n".repeat(20_000),
            body(&good).join("\n"),
            end_line(20_005)
        );
        let report = b
            .admin()
            .import(&mut flood.as_bytes(), &ImportOptions::default())
            .unwrap();
        assert_eq!(report.bad.len(), sessdb::MAX_REPORTED_BAD_LINES);
        assert_eq!(report.bad_total(), 20_000);
        assert_eq!((report.imported, report.written), (0, false));
        let headless = format!("not a header\n{}", "x\n".repeat(200_000));
        let report = b
            .admin()
            .import(&mut headless.as_bytes(), &ImportOptions::default())
            .unwrap();
        assert_eq!(report.bad_total(), 1);
        assert_eq!(report.bad[0].line, 1);
        assert_eq!(b.admin().stats().unwrap().live, 0);
    }

    pub fn check_finds_a_healthy_store_clean(t: Transport) {
        let env = t.env();
        seed(env.store(), 10);
        let report = env.admin().check().unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.records, 10);
        let repaired = env.admin().repair().unwrap();
        assert_eq!(
            (repaired.added_entries, repaired.removed_entries),
            (0, 0),
            "{repaired:?}"
        );
        assert!(repaired.removed_records.is_empty());
    }

    pub fn writes_to_a_read_only_store_fail_with_read_only(t: Transport) {
        let env = t.env();
        let ids = seed(env.store(), 4);
        let text = export_text(env.admin(), true);
        let env = env.reopen(Store::builder().read_only(true));
        let refused = |r: sessdb::Result<()>, what: &str| match r {
            Err(Error::ReadOnly { operation }) => assert_eq!(operation, what),
            other => panic!("{what}: {other:?}"),
        };
        refused(
            env.admin().invalidate(&Target::Id(ids[0])).map(drop),
            "invalidate",
        );
        refused(
            env.admin().invalidate_principal("user0").map(drop),
            "invalidate_principal",
        );
        refused(env.admin().purge(&mut |_| {}).map(drop), "purge");
        refused(env.admin().repair().map(drop), "repair");
        refused(
            env.admin()
                .import(&mut text.as_bytes(), &ImportOptions::default())
                .map(drop),
            "import",
        );
        // A file with bad lines too: the store says it is read-only, not what is in the file.
        let bad = format!("{text}not json\n");
        refused(
            env.admin()
                .import(&mut bad.as_bytes(), &ImportOptions::default())
                .map(drop),
            "import",
        );
        // A dry run writes nothing, so it runs: every session is found as it is.
        let dry = ImportOptions {
            dry_run: true,
            ..ImportOptions::default()
        };
        let report = env.admin().import(&mut text.as_bytes(), &dry).unwrap();
        assert_eq!((report.unchanged, report.written), (4, false), "{report:?}");
        // Reads still work, on the same connection.
        assert_eq!(env.admin().stats().unwrap().live, 4);
        assert!(env.store().load(&ids[0]).unwrap().is_some());
    }

    pub fn an_export_to_a_failing_writer_is_an_io_error_and_the_admin_stays_usable(t: Transport) {
        let env = t.env();
        let mut s = env.store().create();
        s.insert("essay", &"y".repeat(200_000)).unwrap();
        s.save().unwrap();
        let mut out = FailingWriter { room: 1000 };
        match env.admin().export(&mut out, true) {
            Err(Error::Io { path, source }) => {
                assert_eq!(path, Path::new("export output"));
                assert_eq!(source.to_string(), "disk full");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(env.admin().stats().unwrap().live, 1);
    }

    pub fn an_import_whose_input_fails_writes_nothing(t: Transport) {
        let a = t.env();
        seed(a.store(), 5);
        let text = export_text(a.admin(), true);
        let b = t.env();
        let mut input = FailingReader {
            data: text.as_bytes(),
        };
        match b.admin().import(&mut input, &ImportOptions::default()) {
            Err(Error::Io { path, .. }) => assert_eq!(path, Path::new("import input")),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.admin().stats().unwrap().live, 0);
        assert_eq!(b.store().counters().writes, 0);
    }

    pub fn list_pages_backward_from_the_end(t: Transport) {
        let env = t.env();
        seed(env.store(), 250);
        let pages_of = |reverse: bool, status: Status| {
            let mut query = ListQuery {
                limit: 100,
                status,
                reverse,
                ..ListQuery::default()
            };
            let mut pages = Vec::new();
            loop {
                let page = env.admin().list(&query).unwrap();
                // Each page is what the store itself lists, field for field.
                assert_eq!(page, Admin::list(env.store(), &query).unwrap());
                pages.push(page.sessions.iter().map(|s| s.handle).collect::<Vec<_>>());
                match page.next {
                    Some(cursor) => query.after = Some(cursor),
                    None => return pages,
                }
            }
        };
        let backward = pages_of(true, Status::Live);
        assert_eq!(
            backward.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        let mut forward: Vec<_> = pages_of(false, Status::Live).concat();
        forward.reverse();
        assert_eq!(backward.concat(), forward);

        env.fx.advance(EXPIRE);
        let expired = pages_of(true, Status::Expired).concat();
        assert_eq!(expired.len() as u64, expired_in(250));
        let mut forward = pages_of(false, Status::Expired).concat();
        forward.reverse();
        assert_eq!(expired, forward);
    }
}

// ---- the socket itself ----

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn remote_admin_is_send_and_sync() {
    assert_send_sync::<RemoteAdmin>();
    assert_send_sync::<Store>();
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_default_socket_is_owner_only_and_removed_with_the_store() {
    let env = SOCKET.env();
    let socket = env.store().admin_socket_path().unwrap().to_path_buf();
    assert_eq!(socket, env.fx.path().join("admin.sock"));
    assert_eq!(socket, RemoteAdmin::default_socket(env.store().path()));
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&socket), 0o600);
    let remote = env.remote.as_ref().unwrap();
    assert_eq!(remote.database_path(), env.store().path());
    assert_eq!(remote.server_pid(), std::process::id());
    // Nothing else is left in the database folder.
    let extra: Vec<_> = std::fs::read_dir(env.fx.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".sessdb-"))
        .collect();
    assert!(extra.is_empty(), "{extra:?}");
    drop(env);
    assert!(!socket.exists());
}

/// `Duration::MAX` for the server's waits means no deadline. It used to overflow the
/// deadline's `Instant` and panic the connection's thread, whose connection then stayed open
/// in the server's table: its client waited for ever for an answer (a reviewer's `stats` was
/// still waiting after ten minutes), and every such connection kept one of the 64 slots.
#[test]
fn the_longest_waits_mean_no_deadline_and_never_strand_a_client() {
    let env = SOCKET.env_with(
        Store::builder()
            .admin_socket_idle_timeout(Duration::MAX)
            .admin_socket_frame_timeout(Duration::MAX),
    );
    seed(env.store(), 3);
    let remote = env.remote.as_ref().unwrap();
    for _ in 0..3 {
        assert_eq!(remote.stats().unwrap().live, 3);
    }
    // More connections than the slots: each one's thread ends, and gives its slot back.
    let socket = env.store().admin_socket_path().unwrap().to_path_buf();
    for _ in 0..100 {
        let admin = RemoteAdmin::connect(&socket).unwrap();
        assert_eq!(admin.stats().unwrap().live, 3);
    }
}

#[test]
fn a_store_without_the_option_serves_nothing() {
    let env = DIRECT.env();
    assert!(env.store().admin_socket_path().is_none());
    assert!(!env.fx.path().join("admin.sock").exists());
}

#[test]
fn a_stale_socket_left_by_a_crash_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    // A socket file nobody listens on: what a killed process leaves.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(std::fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_socket());
    assert_eq!(
        UnixStream::connect(&socket).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    let store = Store::builder()
        .admin_socket(&socket)
        .open(dir.path().join("db"))
        .unwrap();
    assert_eq!(mode(&socket), 0o600);
    let remote = RemoteAdmin::connect(&socket).unwrap();
    assert_eq!(remote.database_path(), store.path());
    assert_eq!(remote.stats().unwrap().live, 0);
}

#[test]
fn a_live_socket_of_another_server_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let first = Store::builder()
        .admin_socket(&socket)
        .open(dir.path().join("first"))
        .unwrap();
    let err = Store::builder()
        .admin_socket(&socket)
        .open(dir.path().join("second"))
        .unwrap_err();
    match &err {
        Error::AdminSocketInUse { path } => assert_eq!(path, &socket),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "another process is serving the admin socket {}",
            socket.display()
        )
    );
    // The first server still answers, and the second store let its database go.
    let remote = RemoteAdmin::connect(&socket).unwrap();
    assert_eq!(remote.database_path(), first.path());
    Store::open(dir.path().join("second")).unwrap();

    // A file that is not a socket is never replaced.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    match Store::builder()
        .admin_socket(&file)
        .open(dir.path().join("third"))
    {
        Err(Error::AdminSocket { what, source, .. }) => {
            assert_eq!(what, "cannot create");
            assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn connecting_to_nothing_or_to_a_stranger_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sock");
    match RemoteAdmin::connect(&missing) {
        Err(e @ Error::AdminSocket { .. }) => assert_eq!(
            e.to_string(),
            format!("cannot connect to the admin socket {}", missing.display())
        ),
        other => panic!("{other:?}"),
    }

    // A server that speaks something else entirely.
    let stranger = dir.path().join("http.sock");
    let listener = UnixListener::bind(&stranger).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
    });
    match RemoteAdmin::connect(&stranger) {
        Err(Error::Protocol { path, reason }) => {
            assert_eq!(path, stranger);
            assert!(reason.contains("not a sessdb admin socket"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    server.join().unwrap();
}

/// A raw connection to the socket, with a timeout so a server that failed to close it makes
/// the test fail instead of hang.
fn raw(socket: &Path) -> UnixStream {
    let conn = UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn
}

/// The client hello of protocol version `version`, encoded by hand: the wire format is part of
/// the interface.
fn hello(version: u8) -> Vec<u8> {
    hello_for(version, version)
}

/// The hello of a client of protocol versions `min` to `max` (each below 128, one byte).
fn hello_for(min: u8, max: u8) -> Vec<u8> {
    let mut frame = vec![0, 0, 0, 10];
    frame.extend_from_slice(b"sessdb\0A");
    frame.extend([min, max]);
    frame
}

/// Everything the server sends until it closes the connection.
fn until_closed(mut conn: UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    match conn.read_to_end(&mut out) {
        Ok(_) => {}
        // The server may close with our unread bytes in its queue.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let env = SOCKET.env();
    let ids = seed(env.store(), 3);
    let socket = env.store().admin_socket_path().unwrap().to_path_buf();
    let survivor = env.remote.as_ref().unwrap();

    // An oversized first frame: closed before any handshake.
    let mut conn = raw(&socket);
    conn.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(until_closed(conn).is_empty());

    // A handshake of another protocol version: told why, then closed.
    let mut conn = raw(&socket);
    conn.write_all(&hello(99)).unwrap();
    let answer = until_closed(conn);
    assert!(contains(&answer, "protocol versions 1 to 4"), "{answer:?}");

    // After a good handshake: an oversized frame, then a malformed one.
    for bad in [
        (17u32 * 1024 * 1024).to_be_bytes().to_vec(),
        vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
    ] {
        let mut conn = raw(&socket);
        conn.write_all(&hello(1)).unwrap();
        conn.write_all(&bad).unwrap();
        let answer = until_closed(conn);
        let database = env.store().path().to_str().unwrap();
        assert!(contains(&answer, database), "no welcome: {answer:?}");
        assert!(
            contains(&answer, "over the limit") || contains(&answer, "malformed"),
            "{answer:?}"
        );
    }

    // A frame cut short by the client going away.
    let mut conn = raw(&socket);
    conn.write_all(&hello(1)).unwrap();
    conn.write_all(&[0, 0, 1, 0, 1, 2]).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    until_closed(conn);

    // The server is unharmed: the connection opened before still works, and so does a new one.
    assert_eq!(survivor.stats().unwrap().live, 3);
    let fresh = RemoteAdmin::connect(&socket).unwrap();
    assert!(fresh.invalidate(&Target::Id(ids[0])).unwrap());
    assert!(env.store().load(&ids[0]).unwrap().is_none());
}

#[test]
fn many_clients_at_once() {
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 25; // a show and an invalidation each: 50 requests per client
    let env = SOCKET.env();
    let ids = seed(env.store(), CLIENTS * PER_CLIENT + 10);
    let socket = env.store().admin_socket_path().unwrap().to_path_buf();
    std::thread::scope(|scope| {
        for chunk in ids[..CLIENTS * PER_CLIENT].chunks(PER_CLIENT) {
            let socket = &socket;
            scope.spawn(move || {
                let admin = RemoteAdmin::connect(socket).unwrap();
                for id in chunk {
                    let shown = admin.show(&Target::Id(*id)).unwrap().unwrap();
                    assert_eq!(shown.handle, id.handle());
                    assert!(admin.invalidate(&Target::Id(*id)).unwrap());
                }
            });
        }
    });
    for (i, id) in ids.iter().enumerate() {
        let loaded = env.store().load(id).unwrap();
        assert_eq!(loaded.is_some(), i >= CLIENTS * PER_CLIENT, "session {i}");
    }
    let remote = env.remote.as_ref().unwrap();
    assert_eq!(remote.stats().unwrap().live, 10);
}

#[test]
fn clients_beyond_the_limit_are_refused_with_a_reason() {
    let env = SOCKET.env();
    let socket = env.store().admin_socket_path().unwrap().to_path_buf();
    // The suite's own client is the first connection.
    let clients: Vec<RemoteAdmin> = (1..64)
        .map(|_| RemoteAdmin::connect(&socket).unwrap())
        .collect();
    match RemoteAdmin::connect(&socket) {
        Err(e @ Error::Refused { .. }) => {
            assert!(
                e.to_string().contains("too many admin connections (64"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Everyone admitted is still served.
    for client in clients.iter().chain(env.remote.as_ref()) {
        assert_eq!(client.count_expired().unwrap(), 0);
    }
}

#[test]
fn dropping_the_store_ends_connected_clients_and_removes_the_socket() {
    let Env { fx, remote, .. } = SOCKET.env();
    let remote = remote.unwrap();
    let socket = fx.store.admin_socket_path().unwrap().to_path_buf();
    assert_eq!(remote.stats().unwrap().live, 0);
    let Fixture { dir, store, .. } = fx;
    drop(store);
    assert!(!socket.exists());
    // The connected client is told at once; its next attempt finds nothing to connect to.
    match remote.stats() {
        Err(e @ Error::Disconnected { .. }) => {
            assert!(e.to_string().contains("closed the connection"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    match remote.stats() {
        Err(Error::AdminSocket { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::NotFound)
        }
        other => panic!("{other:?}"),
    }
    // The server kept no handle: the database opens again, and a client can reconnect to the
    // restarted application without a new RemoteAdmin.
    let store = Store::builder()
        .admin_socket_default()
        .open(dir.path().join("db"))
        .unwrap();
    assert_eq!(store.admin_socket_path(), Some(socket.as_path()));
    assert_eq!(remote.stats().unwrap().live, 0);
}

/// Waits until `f` gives something, trying again every few milliseconds: for what another
/// thread does in its own time. The deadline only turns a hang into a failure.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = f() {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The log lines of the admin socket at `socket` that contain `text`.
fn logged(logs: &Capture, socket: &Path, text: &str) -> usize {
    let about = format!("sessdb::admin_socket: admin socket {}: ", socket.display());
    logs.0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&about) && l.contains(text))
        .count()
}

/// An application whose server looks at its socket file every 10 ms.
fn checking_often() -> Env {
    SOCKET.env_with(Store::builder().admin_socket_check_interval(Duration::from_millis(10)))
}

fn file_id(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.dev(), m.ino())
}

#[test]
fn a_deleted_socket_file_is_made_again_and_the_application_reached_through_it() {
    let logs = capture_logs();
    let Env { fx, remote, .. } = checking_often();
    let remote = remote.unwrap();
    let socket = fx.store.admin_socket_path().unwrap().to_path_buf();
    let deleted = file_id(&socket);
    std::fs::remove_file(&socket).unwrap();
    let again = eventually("a client connects again", || {
        RemoteAdmin::connect(&socket).ok()
    });
    assert_eq!(again.stats().unwrap().live, 0);
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner-only again");
    assert_ne!(file_id(&socket), deleted, "a new socket");
    assert_eq!(
        logged(logs, &socket, "was deleted; serving a new one there"),
        1
    );
    // A client connected before goes on through its connection.
    assert_eq!(remote.stats().unwrap().live, 0);
    // Stopping still removes the socket, the new one, and ends the connections at once.
    let Fixture {
        dir: _dir, store, ..
    } = fx;
    drop(store);
    assert!(!socket.exists());
    for client in [&again, &remote] {
        match client.stats() {
            Err(Error::Disconnected { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_file_that_took_the_socket_path_is_left_alone_and_said_once() {
    let logs = capture_logs();
    let Env { fx, .. } = checking_often();
    let socket = fx.store.admin_socket_path().unwrap().to_path_buf();
    // Another process's socket takes the path: renamed over ours, so that at no moment is
    // there nothing there.
    let theirs = fx.dir.path().join("theirs.sock");
    let listener = UnixListener::bind(&theirs).unwrap();
    std::fs::rename(&theirs, &socket).unwrap();
    let taken = file_id(&socket);
    eventually("the server says it leaves the path alone", || {
        (logged(logs, &socket, "left alone") > 0).then_some(())
    });
    // Still theirs: a client reaches the other process.
    let _client = UnixStream::connect(&socket).unwrap();
    listener.accept().unwrap();
    // Then a plain file takes it; when that goes, the server binds its socket again.
    let file = fx.dir.path().join("file");
    std::fs::write(&file, "not a socket").unwrap();
    std::fs::rename(&file, &socket).unwrap();
    std::fs::remove_file(&socket).unwrap();
    let again = eventually("a client connects again", || {
        RemoteAdmin::connect(&socket).ok()
    });
    assert_eq!(again.stats().unwrap().live, 0);
    assert_ne!(file_id(&socket), taken);
    assert_eq!(logged(logs, &socket, "left alone"), 1, "said once");
    // A file in the way when the application stops is not removed either.
    std::fs::write(&file, "not a socket").unwrap();
    std::fs::rename(&file, &socket).unwrap();
    let Fixture {
        dir: _dir, store, ..
    } = fx;
    drop(store);
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
}

/// An interval too long to add to a clock reading means no look at all, not a dead socket
/// (the accept thread panicked computing its next look, and clients found the socket
/// refusing, as if stale).
#[test]
fn a_check_interval_too_long_to_count_leaves_the_socket_served() {
    let Env { fx, remote, .. } =
        SOCKET.env_with(Store::builder().admin_socket_check_interval(Duration::MAX));
    assert_eq!(remote.unwrap().stats().unwrap().live, 0);
    let socket = fx.store.admin_socket_path().unwrap().to_path_buf();
    let again = RemoteAdmin::connect(&socket).unwrap();
    assert_eq!(again.stats().unwrap().live, 0);
}

/// An export output that stops at its first write until told to go on.
struct Gate {
    first: Option<mpsc::Sender<()>>,
    go: mpsc::Receiver<()>,
    written: usize,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(first) = self.first.take() {
            first.send(()).unwrap();
            self.go.recv().unwrap();
        }
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An export takes the store a batch at a time and lets it go while the batch is sent: a
/// client that reads slowly (`sessctl export | ssh` on a slow link) does not keep the database
/// open once the application lets it go. (It did, for as long as the client took: a reviewer's
/// stalling reader kept it open 42 s, and the application's reopen of the folder failed.) The
/// export then ends as the application does.
#[test]
fn an_export_read_slowly_does_not_keep_the_store_open_once_the_application_drops_it() {
    let Env { fx, remote, .. } = SOCKET.env();
    let remote = remote.unwrap();
    for _ in 0..20 {
        let mut s = fx.store.create();
        s.insert("essay", &"z".repeat(200_000)).unwrap();
        s.save().unwrap();
    }
    let socket = fx.store.admin_socket_path().unwrap().to_path_buf();
    let Fixture { dir, store, .. } = fx;
    let (first_tx, first_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let exporting = std::thread::spawn(move || {
        let mut out = Gate {
            first: Some(first_tx),
            go: go_rx,
            written: 0,
        };
        let report = remote.export(&mut out, true);
        (report, out.written, remote)
    });
    // The export is under way, its client stalled and the socket full.
    first_rx.recv().unwrap();
    drop(store);
    // The application's drop closes the store (the socket goes with it), and the database
    // opens again, while the client still has not read on.
    eventually("the socket removed", || (!socket.exists()).then_some(()));
    let reopened = Store::open(dir.path().join("db")).unwrap();
    let stats = reopened.stats().unwrap();
    assert_eq!(stats.live + stats.expired, 20);
    go_tx.send(()).unwrap();
    let (report, written, remote) = exporting.join().unwrap();
    match report {
        Err(Error::Disconnected { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(written < 20 * 200_000, "{written}");
    match remote.stats() {
        Err(Error::Disconnected { .. } | Error::AdminSocket { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_request_over_the_frame_limit_is_refused_before_it_is_sent() {
    let env = SOCKET.env();
    let remote = env.remote.as_ref().unwrap();
    let too_long = "p".repeat(sessdb::MAX_FRAME_BYTES + 1);
    match remote.invalidate_principal(&too_long) {
        Err(Error::Protocol { reason, .. }) => {
            assert!(reason.contains("frame limit"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Nothing was sent, and the admin goes on working.
    assert_eq!(remote.stats().unwrap().live, 0);
}

// ---- another user ----

/// Log records of this test process, for asserting that a refusal was logged.
struct Capture(Mutex<Vec<String>>);

static LOGS: Capture = Capture(Mutex::new(Vec::new()));

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

fn capture_logs() -> &'static Capture {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&LOGS).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
    &LOGS
}

/// Set in the child process that plays the other user.
const PROBE: &str = "SESSDB_SOCKET_TEST_PROBE";
const NOBODY: u32 = 65534;
const PROBE_CONNECTED: i32 = 10;
const PROBE_REFUSED: i32 = 11;
const PROBE_NO_ACCESS: i32 = 12;
const PROBE_OTHER: i32 = 13;

/// The child: become uid 65534 and try the socket. `peercred` keeps root's file-system uid, so
/// the socket file lets it in and only the peer-uid check can refuse it; `mode` drops every
/// uid, so the socket's 0600 mode keeps it out.
fn probe(spec: &str) -> ! {
    use nix::unistd::{setfsuid, setgroups, setresgid, setresuid, Gid, Uid};
    let (how, socket) = spec.split_once(':').expect("probe spec");
    let (nobody, root) = (Uid::from_raw(NOBODY), Uid::from_raw(0));
    setgroups(&[]).unwrap();
    let nogroup = Gid::from_raw(NOBODY);
    setresgid(nogroup, nogroup, nogroup).unwrap();
    match how {
        "peercred" => {
            setresuid(nobody, nobody, root).unwrap();
            setfsuid(root);
        }
        _ => setresuid(nobody, nobody, nobody).unwrap(),
    }
    let code = match RemoteAdmin::connect(socket) {
        Ok(_) => PROBE_CONNECTED,
        Err(Error::Refused { reason, .. }) => {
            println!("refused: {reason}");
            PROBE_REFUSED
        }
        Err(Error::AdminSocket { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            PROBE_NO_ACCESS
        }
        Err(e) => {
            println!("other: {e}");
            PROBE_OTHER
        }
    };
    std::process::exit(code)
}

fn run_probe(how: &str, socket: &Path) -> (i32, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_connection_from_another_user_is_refused_and_logged",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE, format!("{how}:{}", socket.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("probe died: {stdout} {stderr}"));
    (code, format!("{stdout}{stderr}"))
}

#[test]
fn a_connection_from_another_user_is_refused_and_logged() {
    if let Ok(spec) = std::env::var(PROBE) {
        probe(&spec);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED a_connection_from_another_user_is_refused_and_logged: it needs root to run \
             a probe process as uid {NOBODY}"
        );
        return;
    }
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    // Let uid 65534 reach the socket's folder: only the socket's own mode and the uid check
    // stand in its way.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket: PathBuf = dir.path().join("admin.sock");
    let store = Store::builder()
        .admin_socket(&socket)
        .open(dir.path().join("db"))
        .unwrap();

    let (code, output) = run_probe("peercred", &socket);
    assert_eq!(code, PROBE_REFUSED, "{output}");
    assert!(
        output.contains(&format!(
            "refused: uid {NOBODY} may not use this admin socket"
        )),
        "{output}"
    );
    let logged = logs.0.lock().unwrap().clone();
    assert!(
        logged
            .iter()
            .any(|l| l.starts_with("WARN sessdb::admin_socket")
                && l.contains(&format!("refused a connection from uid {NOBODY}"))),
        "{logged:?}"
    );

    let (code, output) = run_probe("mode", &socket);
    assert_eq!(code, PROBE_NO_ACCESS, "{output}");

    // The owner is still served.
    let remote = RemoteAdmin::connect(&socket).unwrap();
    assert_eq!(remote.database_path(), store.path());
}

// ---- fuzzing the live server ----

/// Arbitrary bytes, after a good handshake or instead of one, never take the server down: after
/// each, a new client is served. (The frame decoder itself is fuzzed without a socket in the
/// library's unit tests.)
#[test]
fn arbitrary_bytes_never_take_the_server_down() {
    use proptest::prelude::*;
    let env = SOCKET.env();
    seed(env.store(), 3);
    let socket = env.store().admin_socket_path().unwrap().to_path_buf();
    let cases = (
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    runner
        .run(&cases, |(bytes, handshake)| {
            let mut conn = raw(&socket);
            if handshake {
                conn.write_all(&hello(1)).unwrap();
            }
            // The server may close before it has read everything.
            let _ = conn.write_all(&bytes);
            let _ = conn.shutdown(std::net::Shutdown::Write);
            until_closed(conn);
            let admin = RemoteAdmin::connect(&socket).unwrap();
            prop_assert_eq!(
                admin.stats().unwrap().live + admin.stats().unwrap().expired,
                3
            );
            Ok(())
        })
        .unwrap();
}

// ---- timeouts and reconnecting ----

/// An import input that gives `first`, then blocks until told to go on, then gives `rest`.
struct Stalling {
    parts: Vec<Vec<u8>>,
    stalled: Option<mpsc::Sender<()>>,
    go: mpsc::Receiver<()>,
}

impl Read for Stalling {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let data = self.fill_buf()?;
            let n = data.len().min(out.len());
            out[..n].copy_from_slice(&data[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Stalling {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.parts.first().is_some_and(Vec::is_empty) {
            self.parts.remove(0);
            if let Some(stalled) = self.stalled.take() {
                stalled.send(()).unwrap();
                let _ = self.go.recv();
            }
        }
        Ok(self.parts.first().map_or(&[][..], Vec::as_slice))
    }
    fn consume(&mut self, n: usize) {
        if let Some(part) = self.parts.first_mut() {
            part.drain(..n);
        }
    }
}

#[test]
fn a_stalled_import_does_not_keep_the_store_open_once_the_application_drops_it() {
    let Env { fx, remote, .. } = SOCKET.env();
    let remote = remote.unwrap();
    let id = seed(&fx.store, 1)[0];
    let export = export_text(&fx.store, true);
    let (header, line) = export.split_once('\n').unwrap();
    let socket = fx.store.admin_socket_path().unwrap().to_path_buf();
    assert!(fx.store.invalidate(&id).unwrap());
    let Fixture { dir, store, .. } = fx;
    // `slow-producer | sessctl import -`: the header, then a long pause.
    let (stalled_tx, stalled_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let importing = std::thread::spawn({
        let parts = vec![format!("{header}\n").into_bytes(), line.as_bytes().to_vec()];
        move || {
            let mut input = Stalling {
                parts,
                stalled: Some(stalled_tx),
                go: go_rx,
            };
            remote.import(&mut input, &ImportOptions::default())
        }
    });
    stalled_rx.recv().unwrap();
    // The application lets its store go: it closes (flushed, socket removed) and the database
    // opens again, although the import has not ended. (At once, unless the connection's thread
    // is at that moment reading the store's settings for the import it was just sent: then
    // that thread closes it a moment later, as it lets go.)
    drop(store);
    eventually("the socket removed", || (!socket.exists()).then_some(()));
    let store = Store::open(dir.path().join("db")).unwrap();
    go_tx.send(()).unwrap();
    match importing.join().unwrap() {
        Err(Error::Disconnected { .. } | Error::Protocol { .. }) => {}
        other => panic!("{other:?}"),
    }
    // Nothing of the abandoned import was written.
    assert!(store.load(&id).unwrap().is_none());
}

#[test]
fn an_import_whose_input_stalls_past_the_idle_timeout_is_abandoned_and_writes_nothing() {
    let env =
        SOCKET.env_with(Store::builder().admin_socket_idle_timeout(Duration::from_millis(20)));
    let id = seed(env.store(), 1)[0];
    let export = export_text(env.store(), true);
    assert!(env.store().invalidate(&id).unwrap());
    let socket = env.store().admin_socket_path().unwrap().to_path_buf();
    // By hand: a hello, `Import` with default options, a chunk with the header and a session,
    // then nothing (no `End`).
    let mut conn = raw(&socket);
    conn.write_all(&hello(1)).unwrap();
    conn.write_all(&[0, 0, 0, 4, 8, 0, 0, 0]).unwrap();
    let mut chunk = vec![0u8]; // ImportFrame::Chunk
    let mut len = export.len();
    while len >= 0x80 {
        chunk.push((len as u8) | 0x80);
        len >>= 7;
    }
    chunk.push(len as u8);
    chunk.extend_from_slice(export.as_bytes());
    conn.write_all(&(chunk.len() as u32).to_be_bytes()).unwrap();
    conn.write_all(&chunk).unwrap();
    let answer = until_closed(conn);
    assert!(contains(&answer, "nothing was written"), "{answer:?}");
    assert!(env.store().load(&id).unwrap().is_none());
    // The server goes on serving.
    assert_eq!(
        RemoteAdmin::connect(&socket).unwrap().stats().unwrap().live,
        0
    );
}

#[test]
fn idle_and_half_sent_connections_are_closed_and_free_their_slots() {
    let builder = Store::builder()
        .admin_socket_idle_timeout(Duration::from_millis(20))
        .admin_socket_frame_timeout(Duration::from_millis(20));
    let env = SOCKET.env_with(builder);
    let socket = env.store().admin_socket_path().unwrap().to_path_buf();
    // Every slot taken: clients that say nothing, that stop after their hello, and that send
    // half a length prefix (or most of a large frame) and go silent.
    let conns: Vec<UnixStream> = (1..64)
        .map(|i| {
            let mut conn = raw(&socket);
            match i % 4 {
                0 => {}
                1 => conn.write_all(&hello(1)).unwrap(),
                2 => {
                    conn.write_all(&hello(1)).unwrap();
                    conn.write_all(&[0, 0]).unwrap();
                }
                _ => {
                    conn.write_all(&hello(1)).unwrap();
                    conn.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
                    conn.write_all(&[0; 1000]).unwrap();
                }
            }
            conn
        })
        .collect();
    // The server closes each of them by itself.
    for conn in conns {
        until_closed(conn);
    }
    // Their slots are free again, and the suite's client (idle past the timeout too) still
    // works: it reconnects by itself.
    let clients: Vec<RemoteAdmin> = (1..64)
        .map(|_| RemoteAdmin::connect(&socket).unwrap())
        .collect();
    drop(clients);
    assert_eq!(env.remote.as_ref().unwrap().stats().unwrap().live, 0);
}

/// A server of our own that speaks the protocol by hand, to close connections exactly when a
/// test needs it.
struct Fake {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    listener: UnixListener,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        Fake {
            _dir: dir,
            socket,
            listener,
        }
    }

    /// Accepts a client of protocol versions 1 to 4 and welcomes it as an application of
    /// version 1 would (pid 7, database "/db"). Fails the test rather than hang when no
    /// client comes.
    fn accept(&self) -> UnixStream {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(20_000u16)).unwrap();
        assert_eq!(ready, 1, "no client connected");
        let (mut conn, _) = self.listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        assert_eq!(read_raw_frame(&mut conn), hello_for(1, 4)[4..]);
        write_raw_frame(&mut conn, &[0, 1, 7, 3, b'/', b'd', b'b']);
        conn
    }
}

fn read_raw_frame(conn: &mut UnixStream) -> Vec<u8> {
    let mut len = [0; 4];
    conn.read_exact(&mut len).unwrap();
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    conn.read_exact(&mut body).unwrap();
    body
}

fn write_raw_frame(conn: &mut UnixStream, body: &[u8]) {
    conn.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    conn.write_all(body).unwrap();
}

/// Request bodies and answers by hand: `Invalidate` is variant 3 (a 32-byte handle follows),
/// `CountExpired` 6; `Invalidated` answers 4, `CountExpired` 8.
const COUNT_EXPIRED: [u8; 1] = [6];

#[test]
fn a_client_reconnects_when_the_application_closed_its_connection_and_never_resends_a_write() {
    let fake = Fake::new();
    let target = Target::Handle(SessionId::random().handle());
    let (closed_tx, closed_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            // 1. The connection is closed while idle: the invalidation arrives on a new one.
            drop(fake.accept());
            closed_tx.send(()).unwrap();
            let mut conn = fake.accept();
            assert_eq!(read_raw_frame(&mut conn)[0], 3);
            write_raw_frame(&mut conn, &[4, 1]);
            // 2. Closed after a read-only request arrived: it is asked again on a new one.
            assert_eq!(read_raw_frame(&mut conn), COUNT_EXPIRED);
            drop(conn);
            let mut conn = fake.accept();
            assert_eq!(read_raw_frame(&mut conn), COUNT_EXPIRED);
            write_raw_frame(&mut conn, &[8, 42]);
            // 3. Closed after an invalidation arrived: it is not sent again; the client's
            // next call connects anew, and what it sends is that call, not the write.
            assert_eq!(read_raw_frame(&mut conn)[0], 3);
            drop(conn);
            let mut conn = fake.accept();
            assert_eq!(read_raw_frame(&mut conn), COUNT_EXPIRED);
            write_raw_frame(&mut conn, &[8, 1]);
        });
        let admin = RemoteAdmin::connect(&fake.socket).unwrap();
        assert_eq!(admin.server_pid(), 7);
        closed_rx.recv().unwrap();
        assert!(admin.invalidate(&target).unwrap());
        assert_eq!(admin.count_expired().unwrap(), 42);
        match admin.invalidate(&target) {
            Err(Error::Disconnected { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(admin.count_expired().unwrap(), 1);
        server.join().unwrap();
    });
}

/// The application closes the connection with the request unread (its idle deadline passing
/// as the request arrives): the client reads a reset, not an answer, and asks a read-only
/// request again on a new connection.
#[test]
fn a_read_only_request_closed_unread_is_asked_again() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let fake = Fake::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let conn = fake.accept();
            let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
            assert_eq!(poll(&mut fds, PollTimeout::from(20_000u16)).unwrap(), 1);
            drop(conn);
            let mut conn = fake.accept();
            assert_eq!(read_raw_frame(&mut conn), COUNT_EXPIRED);
            write_raw_frame(&mut conn, &[8, 42]);
        });
        let admin = RemoteAdmin::connect(&fake.socket).unwrap();
        assert_eq!(admin.count_expired().unwrap(), 42);
    });
}

#[test]
fn a_stopped_application_is_reported_after_the_clients_timeout() {
    // A stopped process's socket: the system queues connections, nobody answers.
    let fake = Fake::new();
    let timeout = Duration::from_millis(30);
    match RemoteAdmin::connect_with_timeout(&fake.socket, timeout) {
        Err(e @ Error::Unresponsive { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "the application behind the admin socket {} did not answer within 30 ms (is it \
                 stopped or hung?)",
                fake.socket.display()
            )
        ),
        other => panic!("{other:?}"),
    }
    // Stopped in the middle of a request: the probe for life is not answered either. The
    // timeout is generous here, since the handshake before the request must be answered.
    let timeout = Duration::from_millis(300);
    let fake = Fake::new();
    let (welcomed_tx, welcomed_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let fake = &fake;
        scope.spawn(move || {
            let mut conn = fake.accept();
            welcomed_tx.send(()).unwrap();
            assert_eq!(read_raw_frame(&mut conn), COUNT_EXPIRED);
            let _ = done_rx.recv();
        });
        let admin = RemoteAdmin::connect_with_timeout(&fake.socket, timeout).unwrap();
        welcomed_rx.recv().unwrap();
        let result = admin.count_expired();
        // Before checking: a failed check must not leave the fake application waiting.
        done_tx.send(()).unwrap();
        // The message says how long it waited in all: the silence, then the probe.
        match result {
            Err(e @ Error::Unresponsive { .. }) => assert_eq!(
                e.to_string(),
                format!(
                    "the application behind the admin socket {} did not answer within 600 ms (is \
                     it stopped or hung?)",
                    fake.socket.display()
                )
            ),
            other => panic!("{other:?}"),
        }
    });
}

/// The application closed the client's idle connection, then stopped: the next request's new
/// connection is never answered, so the request never left the client. Its error says so
/// (`sent: false`): before, it read as a request sent and unanswered, which a stopped
/// application does once it runs again, and the TUI said an invalidation would happen that
/// never could (found by a second reviewer).
#[test]
fn a_request_that_a_stopped_application_never_got_is_not_sent() {
    let fake = Fake::new();
    let timeout = Duration::from_millis(100);
    std::thread::scope(|scope| {
        let fake = &fake;
        let (welcomed_tx, welcomed_rx) = mpsc::channel();
        let closing = scope.spawn(move || {
            let conn = fake.accept();
            welcomed_tx.send(()).unwrap();
            // Its idle deadline: the connection is closed, and nothing after it is accepted.
            drop(conn);
        });
        let admin = RemoteAdmin::connect_with_timeout(&fake.socket, timeout).unwrap();
        welcomed_rx.recv().unwrap();
        closing.join().unwrap();
        let target = Target::Handle(SessionId::random().handle());
        match admin.invalidate(&target) {
            Err(Error::Unresponsive { sent: false, .. }) => {}
            other => panic!("{other:?}"),
        }
    });
}

/// The socket of a stopped application whose queue of connections is full: a plain `connect`
/// to it waits for room for ever.
struct StoppedSocket {
    _listener: std::os::fd::OwnedFd,
    _queued: UnixStream,
}

impl StoppedSocket {
    fn at(path: &Path) -> StoppedSocket {
        use nix::sys::socket::{
            bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
        };
        use std::os::fd::AsRawFd;
        let listener = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(listener.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        // Room for one connection not yet accepted, which the first client takes.
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        let queued = UnixStream::connect(path).unwrap();
        StoppedSocket {
            _listener: listener,
            _queued: queued,
        }
    }
}

/// A stopped application's queue of connections fills (one monitoring run after another),
/// and then the system makes a plain `connect` wait for room for ever: the client gives up
/// after its timeout instead.
#[test]
fn a_full_queue_of_connections_is_reported_after_the_clients_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let _stopped = StoppedSocket::at(&path);
    let (tx, rx) = mpsc::channel();
    let socket = path.clone();
    // Not scoped: if the client hangs, the test fails instead of hanging with it.
    std::thread::spawn(move || {
        let _ = tx.send(RemoteAdmin::connect_with_timeout(
            &socket,
            Duration::from_millis(30),
        ));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Err(Error::Unresponsive {
            path: p,
            waited,
            sent,
        })) => assert_eq!((p, waited, sent), (path, Duration::from_millis(30), false)),
        Ok(other) => panic!("{other:?}"),
        Err(_) => panic!("the client still waits to connect after 20 s"),
    }
}

/// The socket of a stopped application, its queue full, is in use: an application opening
/// with that socket path is refused after a moment, rather than wait for room in the queue for
/// ever (the check at bind used a plain `connect`, a reviewer found).
#[test]
fn a_socket_whose_queue_is_full_is_in_use_and_the_open_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stopped.sock");
    let _stopped = StoppedSocket::at(&path);
    let (tx, rx) = mpsc::channel();
    let db = dir.path().join("db");
    let socket = path.clone();
    // Not scoped: if the open hangs, the test fails instead of hanging with it.
    std::thread::spawn(move || {
        let _ = tx.send(Store::builder().admin_socket(&socket).open(&db).map(drop));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Err(Error::AdminSocketInUse { path: p })) => assert_eq!(p, path),
        Ok(other) => panic!("{other:?}"),
        Err(_) => panic!("the open still waits after 20 s"),
    }
}

#[test]
fn a_busy_application_that_answers_the_probe_is_waited_for() {
    let fake = Fake::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut conn = fake.accept();
            assert_eq!(read_raw_frame(&mut conn), COUNT_EXPIRED);
            // Long at work: the answer comes only after the client, tired of waiting, has
            // checked that the application is alive.
            drop(fake.accept());
            write_raw_frame(&mut conn, &[8, 5]);
        });
        // Generous, since the handshake and the probe's must be answered within it.
        let timeout = Duration::from_millis(300);
        let admin = RemoteAdmin::connect_with_timeout(&fake.socket, timeout).unwrap();
        assert_eq!(admin.timeout(), timeout);
        assert_eq!(admin.count_expired().unwrap(), 5);
    });
}
