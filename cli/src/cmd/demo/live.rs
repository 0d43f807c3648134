//! `sessctl demo --live`: a simulated application on the demo database. It serves the admin
//! socket and keeps its users busy (logins, page views, id rotations, logouts, sessions left
//! to expire) at a steady rate until Ctrl-C, so that `sessctl tui` in another terminal has
//! something to watch, and its invalidations a running application to take effect in.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use sessdb::{Admin, RemoteAdmin, Session, SessionId, Store};
use time::OffsetDateTime;

use super::{
    arrive, generate, nth_user, prepare, request, shell_quote, sign_in, visit, Demo, Invocation,
    Rng, Who,
};
use crate::cmd::{plural, Ctx};
use crate::db::{self, Access};
use crate::exit::{Exit, Failure};
use crate::output::timestamp;
use crate::signals::stop_on_signals;

/// `demo --live [--rate N] [--duration SECS]`
#[derive(Debug)]
pub struct Live {
    /// Operations per second.
    pub rate: u32,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
}

/// How many sessions the application keeps busy at once; those it lets go of expire.
const ACTIVE: usize = 400;
/// How many users log in: the demo's named users, then numbered ones.
const USERS: u64 = 300;
/// The application's idle timeout for users.
const USER_IDLE: Duration = Duration::from_secs(10 * 60);
/// The admin console logs out sooner.
const ADMIN_IDLE: Duration = Duration::from_secs(2 * 60);
/// A guest's session lasts a minute or two without requests: expiry an operator sees happen.
const GUEST_IDLE_SECS: (i64, i64) = (45, 120);
/// "Remember me": a week without requests, a month at most.
const REMEMBER_IDLE: Duration = Duration::from_secs(7 * 86_400);
const REMEMBER_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// How often the application purges expired sessions.
const REAP_EVERY: Duration = Duration::from_secs(5);
/// Touches of an unchanged session are written at most this often.
const TOUCH_INTERVAL: Duration = Duration::from_secs(10);
/// The longest the loop sleeps, so that Ctrl-C and --duration take effect promptly.
const TICK: Duration = Duration::from_millis(50);
/// The shortest: even a loop behind its schedule leaves the CPU between batches.
const MIN_SLEEP: Duration = Duration::from_millis(2);
/// How long the end waits for an operator's request in progress to let the store go.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// How often the status line is printed (only when stderr is a terminal).
const STATUS_EVERY: Duration = Duration::from_secs(5);

impl Live {
    /// Creates the demo database if there is none (or replaces it with `--force`), then runs
    /// the simulated application on it until SIGINT, SIGTERM or `--duration`. Everything it
    /// says goes to stderr.
    ///
    /// # Errors
    /// [`Failure::Held`] when a running application already serves the database; the demo's
    /// errors; open errors ([`sessdb::Error::Locked`] when another process holds it);
    /// storage errors while it runs.
    pub fn run(&self, ctx: &mut Ctx<'_>, demo: &Demo) -> anyhow::Result<Exit> {
        refuse_served(ctx.db)?;
        if demo.force || !db::looks_like_database(ctx.db) {
            prepare(ctx.db, demo.force)?;
            let (store, made) = generate(ctx, demo.sessions)?;
            drop(store);
            let total = made.user_sessions + made.guests + made.api_clients;
            writeln!(
                ctx.err,
                "created a demo database at {} with {}",
                ctx.db.display(),
                plural(total, "session")
            )?;
        }
        // Before the socket exists, so that a Ctrl-C from the first moment it is served ends
        // the run cleanly. A second signal ends the process at once (exit 1): the socket file
        // it then leaves is replaced by the next application that serves the database.
        let stop = stop_on_signals(1)?;
        let builder = Store::builder()
            .admin_socket_default()
            .reap_every(REAP_EVERY)
            .idle_timeout(USER_IDLE)
            .touch_interval(TOUCH_INTERVAL);
        let store = db::open_with(ctx.db, builder, Access::Write)?;
        let socket = store
            .admin_socket_path()
            .context("the store opened without its admin socket")?
            .to_path_buf();
        let db_arg = shell_quote(&ctx.db.display().to_string());
        writeln!(
            ctx.err,
            "serving the demo database {} on its admin socket {} (pid {})",
            ctx.db.display(),
            socket.display(),
            std::process::id()
        )?;
        writeln!(
            ctx.err,
            "simulating {} operations a second: logins, page views, id rotations, logouts, \
             sessions left to expire",
            self.rate
        )?;
        writeln!(
            ctx.err,
            "in another terminal: {} --db {db_arg} tui",
            Invocation::detect().command
        )?;
        writeln!(ctx.err, "stop with Ctrl-C")?;

        let mut app = App::new(&store, Rng(seed()));
        let started = Instant::now();
        let deadline = self.duration.map(|d| started + d);
        let mut pacer = Pacer::new(self.rate, started);
        let mut next_status = started + STATUS_EVERY;
        let why = loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) {
                break "stopped";
            }
            if deadline.is_some_and(|d| now >= d) {
                break "--duration is over";
            }
            let due = pacer.due(now);
            for _ in 0..due {
                app.step()?;
            }
            pacer.record(due);
            if ctx.progress && now >= next_status {
                next_status = now + STATUS_EVERY;
                let s = Admin::stats(&store)?;
                writeln!(
                    ctx.err,
                    "after {}s: {} live, {} expired; {}; of the sessions it serves, {} found \
                     invalidated from outside and {} expired",
                    started.elapsed().as_secs(),
                    plural(s.live, "session"),
                    s.expired,
                    plural(pacer.done, "operation"),
                    app.counts.gone,
                    app.counts.expired,
                )?;
            }
            let now = Instant::now();
            let pause = pacer
                .next_at()
                .saturating_duration_since(now)
                .clamp(MIN_SLEEP, TICK);
            thread::sleep(pause);
        };
        let elapsed = started.elapsed();
        let counts = app.counts;
        drop(app);
        // Flushes the store and removes the socket file, unless an operator's request is
        // running: the server then lets the store go when that request ends.
        drop(store);
        if !released(&socket, RELEASE_WAIT) {
            writeln!(
                ctx.err,
                "an admin request still ran after {}s; the socket file {} is left (the next \
                 application serving the database replaces it)",
                RELEASE_WAIT.as_secs(),
                socket.display()
            )?;
        }
        writeln!(
            ctx.err,
            "{why}: {} in {:.1}s ({}, {}, {}; of the sessions it served, {} found invalidated \
             from outside and {} expired); the admin socket is closed",
            plural(pacer.done, "operation"),
            elapsed.as_secs_f64(),
            plural(counts.logins, "login"),
            plural(counts.rotations, "id rotation"),
            plural(counts.logouts, "logout"),
            counts.gone,
            counts.expired,
        )?;
        Ok(Exit::Success)
    }
}

/// Waits, at most `within`, for the store to be let go of: its socket file goes last.
fn released(socket: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while std::fs::symlink_metadata(socket).is_ok() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A second application on the same database would find it locked; say who serves it
/// instead, and how to watch that one.
fn refuse_served(path: &Path) -> anyhow::Result<()> {
    let Ok(remote) = RemoteAdmin::connect(RemoteAdmin::default_socket(path)) else {
        return Ok(());
    };
    Err(Failure::Held(format!(
        "{} is already served by a running application (pid {}) on its admin socket {}; watch \
         it with `sessctl --db {} tui`, or stop that application first",
        path.display(),
        remote.server_pid(),
        remote.socket_path().display(),
        shell_quote(&path.display().to_string()),
    ))
    .into())
}

/// A different simulation each run.
fn seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}

/// Spreads `rate` operations a second evenly over time: how many are due at a moment, and
/// when the next one is. A loop that falls behind (a slow disk) drops the backlog beyond a
/// tenth of a second instead of bursting to catch up.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    start: Instant,
    done: u64,
}

impl Pacer {
    fn new(rate: u32, start: Instant) -> Pacer {
        Pacer {
            rate: u64::from(rate.max(1)),
            start,
            done: 0,
        }
    }

    /// How many operations are due at `now`.
    fn due(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let allowed =
            u64::try_from(elapsed * u128::from(self.rate) / 1_000_000_000).unwrap_or(u64::MAX);
        let most = (self.rate / 10).max(1);
        if allowed.saturating_sub(self.done) > most {
            self.done = allowed - most;
        }
        allowed.saturating_sub(self.done)
    }

    /// `n` operations were done.
    fn record(&mut self, n: u64) {
        self.done += n;
    }

    /// When the next operation is due.
    fn next_at(&self) -> Instant {
        let nanos = u128::from(self.done + 1) * 1_000_000_000 / u128::from(self.rate);
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// What the application did, for the summary.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    logins: u64,
    rotations: u64,
    logouts: u64,
    /// Sessions that vanished while the application served them, before their deadline as
    /// last read: invalidated from outside (sessctl, the TUI). Only those it went on serving
    /// (it keeps a few hundred, and lets go of the rest as their users leave), and found so
    /// when it next used them: not every invalidation.
    gone: u64,
    /// Sessions that vanished once their deadline as last read had passed: expired (guests'
    /// idle timeouts are minutes), or removed by a purge after that.
    expired: u64,
}

/// A session the application is serving: whose it is, and what its pages have put in it.
#[derive(Debug)]
struct Active {
    id: SessionId,
    who: Who,
    cart: Vec<serde_json::Value>,
    requests: i64,
    /// The session's deadline as last read or written (a touch written since may have moved it
    /// on, never back): a session gone before it was ended by someone, not by time.
    expires_at: OffsetDateTime,
}

impl Active {
    /// A session just saved.
    fn new(session: &Session, who: Who) -> Active {
        Active {
            id: *session.id(),
            who,
            cart: Vec::new(),
            requests: 0,
            expires_at: session.expires_at(),
        }
    }
}

/// The simulated application: the sessions it is serving and what happens to them.
#[derive(Debug)]
struct App<'a> {
    store: &'a Store,
    rng: Rng,
    active: Vec<Active>,
    counts: Counts,
}

impl<'a> App<'a> {
    fn new(store: &'a Store, rng: Rng) -> App<'a> {
        App {
            store,
            rng,
            active: Vec::with_capacity(ACTIVE + 1),
            counts: Counts::default(),
        }
    }

    /// One operation, chosen at random: mostly requests, then touches, logins, guests
    /// arriving, rotations and logouts. Sessions beyond [`ACTIVE`] are let go of (their
    /// users closed the tab) and expire by themselves.
    fn step(&mut self) -> sessdb::Result<()> {
        let roll = self.rng.below(100);
        if self.active.is_empty() || roll < 8 {
            self.log_in()?;
        } else if roll < 12 {
            self.guest()?;
        } else {
            let i = self.rng.below(self.active.len() as u64) as usize;
            match roll {
                12..=15 => self.rotate(i)?,
                16..=18 => self.log_out(i)?,
                19..=33 => self.touch(i)?,
                _ => self.request(i)?,
            }
        }
        while self.active.len() > ACTIVE {
            let i = self.rng.below(self.active.len() as u64) as usize;
            self.active.swap_remove(i);
        }
        Ok(())
    }

    /// A user logs in on a new session.
    fn log_in(&mut self) -> sessdb::Result<()> {
        let who = nth_user(self.rng.below(USERS));
        let admin = matches!(who, Who::User { admin: true, .. });
        let mut session = self.store.create();
        arrive(&mut session, admin, &mut self.rng)?;
        sign_in(&mut session, &who, OffsetDateTime::now_utc(), &mut self.rng)?;
        if session.label() == Some("admin-console") {
            session.set_idle_timeout(ADMIN_IDLE);
        } else if self.rng.below(50) == 0 {
            session.set_idle_timeout(REMEMBER_IDLE);
            session.set_absolute_deadline(OffsetDateTime::now_utc() + REMEMBER_LIFETIME);
        }
        session.save()?;
        self.counts.logins += 1;
        self.active.push(Active::new(&session, who));
        Ok(())
    }

    /// A guest's first page view: a short-lived session.
    fn guest(&mut self) -> sessdb::Result<()> {
        let mut session = self.store.create();
        visit(&mut session, &mut self.rng)?;
        let (lo, hi) = GUEST_IDLE_SECS;
        let idle = self.rng.range(lo, hi).unsigned_abs();
        session.set_idle_timeout(Duration::from_secs(idle));
        session.save()?;
        self.active.push(Active::new(&session, Who::Guest));
        Ok(())
    }

    /// A page view: the session's data changes.
    fn request(&mut self, i: usize) -> sessdb::Result<()> {
        let Some(mut session) = self.load(i)? else {
            return Ok(());
        };
        let a = &mut self.active[i];
        a.requests += 1;
        request(&mut session, &a.who, a.requests, &mut a.cart, &mut self.rng)?;
        // A changed session is written, its new deadline with it.
        let saved = session.save();
        if saved.is_ok() {
            self.active[i].expires_at = session.expires_at();
        }
        self.settle(i, saved)
    }

    /// A request that changes nothing: the idle deadline moves (written when a touch is due).
    fn touch(&mut self, i: usize) -> sessdb::Result<()> {
        let Some(mut session) = self.load(i)? else {
            return Ok(());
        };
        // Written only when a touch is due: the deadline known stays the one loaded.
        let saved = session.save();
        self.settle(i, saved)
    }

    /// A new id: a guest logs in, or a user confirms their password for account settings.
    fn rotate(&mut self, i: usize) -> sessdb::Result<()> {
        let Some(mut session) = self.load(i)? else {
            return Ok(());
        };
        let now = OffsetDateTime::now_utc();
        let user = match self.active[i].who {
            Who::Guest => {
                let user = nth_user(self.rng.below(USERS));
                session.set_label(Some("web"))?;
                sign_in(&mut session, &user, now, &mut self.rng)?;
                session.set_idle_timeout(USER_IDLE);
                Some(user)
            }
            _ => {
                session.insert("reauthenticated_at", &timestamp(now))?;
                None
            }
        };
        if let Err(e) = session.cycle_id() {
            return self.settle(i, Err(e));
        }
        self.counts.rotations += 1;
        let a = &mut self.active[i];
        a.id = *session.id();
        a.expires_at = session.expires_at();
        if let Some(user) = user {
            a.who = user;
            self.counts.logins += 1;
        }
        Ok(())
    }

    /// The user logs out: the application invalidates the session.
    fn log_out(&mut self, i: usize) -> sessdb::Result<()> {
        let Some(session) = self.load(i)? else {
            return Ok(());
        };
        session.invalidate()?;
        self.active.swap_remove(i);
        self.counts.logouts += 1;
        Ok(())
    }

    /// Loads active session `i`; when it is gone, the application forgets it.
    fn load(&mut self, i: usize) -> sessdb::Result<Option<Session>> {
        let session = self.store.load(&self.active[i].id)?;
        match &session {
            Some(s) => self.active[i].expires_at = s.expires_at(),
            None => self.forget_gone(i),
        }
        Ok(session)
    }

    /// The outcome of a write of active session `i`: one invalidated since it was loaded is
    /// forgotten like one that was gone at the load; a conflicting write (an import replaced
    /// it) is simply not retried.
    fn settle(&mut self, i: usize, result: sessdb::Result<()>) -> sessdb::Result<()> {
        match result {
            Err(e) if is_gone(&e) => {
                self.forget_gone(i);
                Ok(())
            }
            Err(e) if e.is_conflict() => Ok(()),
            other => other,
        }
    }

    fn forget_gone(&mut self, i: usize) {
        let gone = self.active.swap_remove(i);
        if Admin::now(self.store) >= gone.expires_at {
            self.counts.expired += 1;
        } else {
            self.counts.gone += 1;
        }
    }
}

fn is_gone(e: &sessdb::Error) -> bool {
    matches!(e, sessdb::Error::NotFound { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessdb::ManualClock;

    #[test]
    fn the_pacer_spreads_operations_evenly() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut pacer = Pacer::new(1000, t0);
        assert_eq!(pacer.due(t0), 0);
        assert_eq!(pacer.next_at(), ms(1));
        assert_eq!(pacer.due(ms(10)), 10);
        pacer.record(10);
        assert_eq!(pacer.due(ms(10)), 0);
        assert_eq!(pacer.next_at(), ms(11));
        assert_eq!(pacer.due(ms(25)), 15);
        pacer.record(15);
        assert_eq!(pacer.done, 25);
    }

    #[test]
    fn the_pacer_drops_a_backlog_instead_of_bursting() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(300, t0);
        // Stalled for five seconds: a tenth of a second's worth, not 1500.
        let late = t0 + Duration::from_secs(5);
        assert_eq!(pacer.due(late), 30);
        pacer.record(30);
        assert_eq!(pacer.due(late), 0);
        assert_eq!(
            pacer.next_at(),
            t0 + Duration::from_nanos(1501 * 1_000_000_000 / 300)
        );
        // At one a second, one is due once a second.
        let mut slow = Pacer::new(1, t0);
        assert_eq!(slow.due(t0 + Duration::from_millis(999)), 0);
        assert_eq!(slow.due(t0 + Duration::from_secs(1)), 1);
    }

    #[test]
    fn the_application_logs_in_rotates_logs_out_and_notices_invalidations() {
        let (_dir, clock, store) = store_on_a_manual_clock();
        let mut app = App::new(&store, Rng(7));
        for _ in 0..6000 {
            app.step().expect("step");
        }
        let c = app.counts;
        assert!(
            c.logins > 100 && c.rotations > 50 && c.logouts > 30,
            "{c:?}"
        );
        assert_eq!(c.gone, 0);
        assert_eq!(app.active.len(), ACTIVE);
        // Every session the application serves is in the store under its current id.
        for a in &app.active {
            assert!(store.load(&a.id).expect("load").is_some());
        }
        let stats = Admin::stats(&store).expect("stats");
        assert!(stats.live > ACTIVE as u64, "{stats:?}");
        let principals: std::collections::BTreeSet<_> = app
            .active
            .iter()
            .filter_map(|a| match &a.who {
                Who::User { principal, .. } => Some(principal.clone()),
                Who::Guest | Who::ApiClient(_) => None,
            })
            .collect();
        assert!(principals.contains("alice@example.com"), "{principals:?}");

        // An operator logs a user out everywhere: the application finds those sessions gone.
        let alice = app
            .active
            .iter()
            .filter(|a| matches!(&a.who, Who::User { principal, .. } if principal == "alice@example.com"))
            .count() as u64;
        store
            .invalidate_principal("alice@example.com")
            .expect("invalidate");
        for i in (0..app.active.len()).rev() {
            app.touch(i).expect("touch");
        }
        assert_eq!(app.counts.gone, alice);
        assert_eq!(app.active.len() as u64, ACTIVE as u64 - alice);

        // Guests are let go of and expire within two minutes; users stay.
        clock.advance(Duration::from_secs(121));
        let stats_after = Admin::stats(&store).expect("stats");
        assert!(stats_after.expired > 0, "{stats_after:?}");
        assert!(stats_after.live > 0, "{stats_after:?}");
        // The application finds those sessions (its guests', the admin console's) gone by
        // time, not by an operator.
        let now = Admin::now(&store);
        let timed_out = app
            .active
            .iter()
            .filter(|a| {
                Admin::show(&store, &sessdb::Target::Id(a.id))
                    .expect("show")
                    .is_some_and(|info| info.is_expired_at(now))
            })
            .count() as u64;
        assert!(timed_out > 0);
        for i in (0..app.active.len()).rev() {
            app.touch(i).expect("touch");
        }
        assert_eq!(app.counts.gone, alice, "an expiry is no invalidation");
        assert_eq!(app.counts.expired, timed_out);
    }

    /// A store on a manual clock in a folder of its own, for one simulated application.
    fn store_on_a_manual_clock() -> (tempfile::TempDir, ManualClock, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::at_ms(1_750_000_000_000);
        let store = Store::builder()
            .clock(clock.clone())
            .open(dir.path().join("live.sessdb"))
            .expect("open");
        (dir, clock, store)
    }

    /// A guest logs in (the rotation gives the session a user's idle timeout) and an operator
    /// logs the user out after the guest's deadline, long before the user's: an invalidation.
    #[test]
    fn an_invalidation_after_a_login_is_not_counted_an_expiry() {
        let (_dir, clock, store) = store_on_a_manual_clock();
        let mut app = App::new(&store, Rng(7));
        app.guest().expect("guest");
        app.rotate(0).expect("rotate");
        assert!(matches!(app.active[0].who, Who::User { .. }));
        clock.advance(Duration::from_secs(200));
        let id = app.active[0].id;
        assert!(store.invalidate(&id).expect("invalidate"));
        app.touch(0).expect("touch");
        assert_eq!((app.counts.gone, app.counts.expired), (1, 0));
    }

    /// A page view moves the deadline on: an invalidation after the deadline as loaded before
    /// it, and before the one it wrote, is an invalidation.
    #[test]
    fn an_invalidation_after_a_request_is_not_counted_an_expiry() {
        let (_dir, clock, store) = store_on_a_manual_clock();
        let mut app = App::new(&store, Rng(7));
        app.guest().expect("guest");
        let id = app.active[0].id;
        let idle = store.load(&id).expect("load").expect("live").idle_timeout();
        clock.advance(Duration::from_secs(40));
        app.request(0).expect("request");
        clock.advance(idle - Duration::from_secs(39));
        assert!(store.invalidate(&id).expect("invalidate"));
        app.touch(0).expect("touch");
        assert_eq!((app.counts.gone, app.counts.expired), (1, 0));
    }
}
