//! `sessctl demo`: a realistic database to try sessctl on. A clock the demo moves by hand
//! gives every session a history (creation, several requests, a last access), so that some
//! are active, some about to expire and some already expired when the demo ends. With
//! `--live` ([`live`]), a simulated application then keeps working on it.

mod live;

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use sessdb::{
    Admin, ListQuery, ManualClock, RemoteAdmin, Session, SessionId, Status, Store, Value,
};
use time::OffsetDateTime;

use super::{plural, Ctx};
use crate::db::{self, Access};
use crate::exit::{Exit, Failure};
use crate::output::timestamp;
use crate::progress::Progress;

pub use live::Live;

/// `demo [--sessions N] [--force] [--live ...]`
#[derive(Debug)]
pub struct Demo {
    /// How many sessions to create.
    pub sessions: u32,
    /// Replace an existing database.
    pub force: bool,
    /// Run a simulated application on the database afterwards.
    pub live: Option<Live>,
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// "Expiring soon" in the summary.
const SOON: Duration = Duration::from_secs(15 * 60);

const NAMES: [&str; 24] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin", "zoe",
    "amir", "bea", "chen",
];

/// Named sessions: an API client's cached login (name, principal, user agent).
const API_CLIENTS: [(&str, &str, &str); 3] = [
    (
        "api-client:billing-sync",
        "svc:billing",
        "billing-sync/2.3.1",
    ),
    ("api-client:crm-export", "svc:crm", "crm-export/0.9.4"),
    (
        "api-client:search-indexer",
        "svc:search",
        "search-indexer/5.0.0",
    ),
];

/// (user agent, label) of the devices users log in from.
const DEVICES: [(&str, &str); 6] = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/124.0.0.0 Safari/537.36",
        "web",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) \
         Version/17.4 Safari/605.1.15",
        "web",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "web",
    ),
    ("ShopApp/4.12.0 (iPhone; iOS 17.4.1)", "ios-app"),
    ("ShopApp/4.12.0 (Android 14; Pixel 8)", "android-app"),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "web",
    ),
];

const PATHS: [&str; 8] = [
    "/",
    "/products/espresso-machines",
    "/products/grinders/burr-64",
    "/cart",
    "/checkout/shipping",
    "/account/orders",
    "/account/settings",
    "/search?q=milk+frother",
];

const PRODUCTS: [(&str, i64); 6] = [
    ("BK-1042", 1999),
    ("GR-0064", 24900),
    ("ES-0310", 54900),
    ("AC-0007", 1250),
    ("MF-0201", 8900),
    ("CL-0099", 650),
];

const LANGS: [&str; 4] = ["en-GB", "de-DE", "fr-FR", "nl-NL"];

/// Who a session belongs to.
#[derive(Debug, Clone)]
enum Who {
    User {
        principal: String,
        id: u64,
        admin: bool,
    },
    Guest,
    ApiClient(usize),
}

/// A session's history, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy)]
struct History {
    created: i64,
    last_access: i64,
    requests: u32,
    remember_me: bool,
}

/// What the demo made, for the summary.
#[derive(Debug, Default)]
struct Made {
    users: u64,
    user_sessions: u64,
    guests: u64,
    api_clients: u64,
}

impl Demo {
    /// Creates the demo database and prints what it made and what to try next.
    ///
    /// # Errors
    /// [`Failure::Usage`] when a database exists and `--force` is not given; an error when
    /// `--db` is a folder of other files, or a database with other files in its folder; open,
    /// storage and write errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        // The demo makes (and with --live serves) a database of its own at --db, whatever
        // application socket is named: one named on the command line is refused (ignored, it
        // would read as obeyed); one from the environment (a shell profile's SESSCTL_SOCKET,
        // set for the other commands) is said to be ignored.
        match ctx.socket {
            Some(socket) if ctx.socket_named_by == "--socket" => {
                return Err(Failure::Usage(format!(
                    "demo makes its own database at --db; --socket names an application's \
                     admin socket ({}), which demo does not use: leave it out",
                    socket.display()
                ))
                .into());
            }
            Some(socket) => writeln!(
                ctx.err,
                "note: {} ({}) is ignored: demo makes its own database at --db",
                ctx.socket_named_by,
                socket.display()
            )?,
            None => {}
        }
        if let Some(live) = &self.live {
            return live.run(ctx, self);
        }
        ctx.refuse_future_write()?;
        prepare(ctx.db, self.force)?;
        let (store, made) = generate(ctx, self.sessions)?;
        report(ctx, &store, &made)?;
        Ok(Exit::Success)
    }
}

/// Creates the demo database in the folder [`prepare`] made room for, with a history that
/// ends now (or at `--as-of`).
fn generate(ctx: &Ctx<'_>, sessions: u32) -> anyhow::Result<(Store, Made)> {
    let base = ctx.as_of.unwrap_or_else(OffsetDateTime::now_utc);
    let base_ms = to_ms(base);
    let clock = ManualClock::at_ms(base_ms);
    let store = db::open_direct(ctx.db, Some(clock.clone()), Access::Create)?;
    let progress = Progress::bar(ctx.progress, sessions.into(), "creating", " sessions");
    let made = populate(&store, &clock, base_ms, sessions, &progress)?;
    progress.finish();
    clock.set_ms(base_ms);
    store.flush()?;
    Ok((store, made))
}

/// Makes room for the demo: a missing path or an empty folder is fine; an existing database
/// is replaced only with `--force` and only when no process has it open.
fn prepare(path: &Path, force: bool) -> anyhow::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(Failure::Usage(format!(
            "{} is a symbolic link; give the database folder itself as --db",
            path.display()
        ))
        .into());
    }
    if !meta.is_dir() {
        return Err(sessdb::Error::NotADirectory {
            path: path.to_path_buf(),
        }
        .into());
    }
    let empty = fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    if !db::looks_like_database(path) {
        return Err(anyhow::anyhow!(
            "{} is a folder that holds other files, not a sessdb database; choose another --db",
            path.display()
        ));
    }
    if !force {
        return Err(Failure::Usage(format!(
            "a database already exists at {}; pass --force to replace it with a demo database",
            path.display()
        ))
        .into());
    }
    // Only a folder that holds nothing but the database is replaced (an export kept next to
    // it is the operator's, and a folder of other files was not meant as --db).
    let foreign =
        sessdb::foreign_entries(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !foreign.is_empty() {
        const SHOWN: usize = 5;
        let mut names = foreign
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if foreign.len() > SHOWN {
            names.push_str(&format!(" and {} more", foreign.len() - SHOWN));
        }
        return Err(anyhow::anyhow!(
            "{} holds files that are not part of the database ({names}); --force replaces \
             only a folder that holds nothing else: move them out, or choose another --db",
            path.display()
        ));
    }
    // Opening it fails if a process holds it: never delete a database that is in use.
    match db::open_direct(path, None, Access::Read) {
        Ok(store) => drop(store),
        Err(e) => return Err(in_use(path, e)),
    }
    // The database's entries go, the folder stays (its mode and owner with it): a `--db` of
    // `.` or `db/.` names the folder but cannot remove it by that name (EINVAL), and removing
    // the folder whole once left such a database gone and no demo made.
    super::fresh::remove_database(path).with_context(|| format!("cannot remove {}", path.display()))
}

/// Why `--force` leaves a database alone that a process holds. The store's own hint for a
/// held database (have the application serve its admin socket) is for commands that want to
/// reach its sessions; the demo wants to delete them, which it must not.
fn in_use(path: &Path, e: anyhow::Error) -> anyhow::Error {
    if !matches!(
        e.downcast_ref::<sessdb::Error>(),
        Some(sessdb::Error::Locked { .. })
    ) {
        return e;
    }
    let who = match RemoteAdmin::connect(RemoteAdmin::default_socket(path)) {
        Ok(remote) => format!("a running application (pid {})", remote.server_pid()),
        Err(_) => "another process (sled allows one at a time)".into(),
    };
    Failure::Held(format!(
        "the database at {} is in use by {who}; demo --force does not replace a database in \
         use: stop that process first, or choose another --db",
        path.display()
    ))
    .into()
}

/// Creates `n` sessions: three API clients (named sessions), about 15% guests, and the rest
/// spread over users with one to six sessions each.
fn populate(
    store: &Store,
    clock: &ManualClock,
    base: i64,
    n: u32,
    progress: &Progress,
) -> anyhow::Result<Made> {
    let mut rng = Rng(0x5e55_db00_d3e0);
    let n = u64::from(n);
    let api = (n / 20).min(API_CLIENTS.len() as u64);
    let guests = n * 15 / 100;
    let mut made = Made::default();
    let mut whos: Vec<Who> = (0..api as usize).map(Who::ApiClient).collect();
    whos.extend((0..guests).map(|_| Who::Guest));
    let mut user = 0u64;
    while (whos.len() as u64) < n {
        let count = 1 + rng.below(6);
        for _ in 0..count.min(n - whos.len() as u64) {
            whos.push(nth_user(user));
        }
        user += 1;
    }
    made.users = user;
    for who in &whos {
        match who {
            Who::User { .. } => made.user_sessions += 1,
            Who::Guest => made.guests += 1,
            Who::ApiClient(_) => made.api_clients += 1,
        }
        create(store, clock, base, who, &mut rng)?;
        progress.inc(1);
    }
    Ok(made)
}

/// The `n`th user: the named ones first, then numbered ones; the first two are admins.
fn nth_user(n: u64) -> Who {
    let principal = match usize::try_from(n).ok().and_then(|i| NAMES.get(i)) {
        Some(name) => format!("{name}@example.com"),
        None => format!("user{}@example.com", 1000 + n),
    };
    Who::User {
        principal,
        id: 1042 + n * 7,
        admin: n < 2,
    }
}

/// A history: mostly recent and active, some about to expire, some expired by their idle
/// timeout or their absolute deadline, some "remember me" sessions that live for days.
fn history(rng: &mut Rng, base: i64, who: &Who) -> History {
    if let Who::ApiClient(_) = who {
        let created = base - rng.range(10 * MINUTE, 11 * HOUR);
        let last_access = base - rng.range(0, 5 * MINUTE).min(base - created);
        return History {
            created,
            last_access,
            requests: 1 + rng.below(8) as u32,
            remember_me: false,
        };
    }
    let roll = rng.below(100);
    if (52..55).contains(&roll) {
        // Busy all day until the absolute deadline (24 hours) ended it.
        let created = base - DAY - rng.range(MINUTE, 2 * HOUR);
        return History {
            created,
            last_access: created + DAY - rng.range(MINUTE, 20 * MINUTE),
            requests: 8,
            remember_me: false,
        };
    }
    let (gap, remember_me) = match roll {
        0..=29 => (rng.range(0, 10 * MINUTE), false),
        // Idle for 18 to 29 minutes of 30: expiring within 12 minutes.
        30..=44 => (rng.range(18 * MINUTE, 29 * MINUTE), false),
        45..=51 => (rng.range(10 * MINUTE, 18 * MINUTE), false),
        // Idle for longer than the 30-minute timeout: expired, not yet purged.
        55..=79 => (rng.range(31 * MINUTE, 20 * HOUR), false),
        // Only signed-in users tick "remember me"; a guest's session ends with the day.
        _ if matches!(who, Who::User { .. }) => (rng.range(0, 3 * DAY), true),
        _ => (rng.range(0, 10 * MINUTE), false),
    };
    let last_access = base - gap;
    let span = if remember_me {
        rng.range(0, 10 * DAY)
    } else {
        rng.range(0, 6 * HOUR)
    };
    History {
        created: last_access - span,
        last_access,
        requests: 1 + rng.below(8) as u32,
        remember_me,
    }
}

fn create(
    store: &Store,
    clock: &ManualClock,
    base: i64,
    who: &Who,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let h = history(rng, base, who);
    clock.set_ms(h.created);
    let mut session = match who {
        Who::ApiClient(i) => {
            let (name, principal, agent) = API_CLIENTS[*i];
            let scopes = ["invoices:read", "customers:read", "orders:write"];
            let mut session = store.get_or_create(name, |s| {
                s.set_principal(Some(principal))?;
                s.set_user_agent(Some(agent))?;
                s.set_remote_addr(Some("127.0.0.1"))?;
                s.insert(
                    "token",
                    &json!({
                        "token_type": "Bearer",
                        "scope": scopes[..=(*i % scopes.len())],
                        "expires_in": 43_200,
                        "issuer": "https://id.example.com",
                    }),
                )?;
                s.insert("endpoint", "https://api.example.com/v2")?;
                Ok::<_, sessdb::Error>(())
            })?;
            session.set_idle_timeout(Duration::from_secs(12 * 3600));
            session.set_absolute_deadline(from_ms(h.created + 12 * HOUR));
            session.save()?;
            session
        }
        Who::User { admin, .. } => {
            let mut session = store.create();
            arrive(&mut session, *admin, rng)?;
            sign_in(&mut session, who, from_ms(h.created), rng)?;
            if h.remember_me {
                session.set_idle_timeout(Duration::from_secs(7 * 86_400));
                session.set_absolute_deadline(from_ms(h.created + 30 * DAY));
            }
            session.save()?;
            session
        }
        Who::Guest => {
            let mut session = store.create();
            visit(&mut session, rng)?;
            session.save()?;
            session
        }
    };
    // The requests after the first, evenly spread up to the last access. Between two of them
    // an open tab keeps the session alive (a touch well within the idle timeout): a save never
    // brings back a session that expired, so the history must not let it lapse.
    let span = h.last_access - h.created;
    let keepalive =
        (i64::try_from(session.idle_timeout().as_millis()).unwrap_or(i64::MAX) * 4 / 5).max(MINUTE);
    let mut at = h.created;
    let mut cart: Vec<serde_json::Value> = Vec::new();
    for step in 1..=i64::from(h.requests) {
        let next = h.created + span * step / i64::from(h.requests);
        while next - at > keepalive {
            at += keepalive;
            clock.set_ms(at);
            session.save()?;
        }
        at = next;
        clock.set_ms(next);
        request(&mut session, who, step, &mut cart, rng)?;
        session.save()?;
    }
    Ok(())
}

/// A user's device opens the login page: label, address and user agent. Admins sign in to
/// the admin console half of the time.
fn arrive(session: &mut Session, admin: bool, rng: &mut Rng) -> sessdb::Result<()> {
    let (agent, mut label) = *rng.pick(&DEVICES);
    if admin && rng.below(2) == 0 {
        label = "admin-console";
    }
    session.set_label(Some(label))?;
    session.set_remote_addr(Some(&address(rng)))?;
    session.set_user_agent(Some(agent))
}

/// A user signs in on `session` at `at`: principal, profile, how they authenticated, their
/// preferences and a CSRF seed. Guests are left alone.
fn sign_in(
    session: &mut Session,
    who: &Who,
    at: OffsetDateTime,
    rng: &mut Rng,
) -> sessdb::Result<()> {
    let Who::User {
        principal,
        id,
        admin,
    } = who
    else {
        return Ok(());
    };
    session.set_principal(Some(principal))?;
    let name = principal.split('@').next().unwrap_or(principal);
    let roles: Vec<&str> = if *admin {
        vec!["customer", "admin", "support"]
    } else {
        vec!["customer"]
    };
    session.insert(
        "user",
        &json!({ "id": id, "name": capitalize(name), "roles": roles }),
    )?;
    let method = *rng.pick(&["password", "passkey", "sso:okta"]);
    session.insert(
        "auth",
        &json!({
            "method": method,
            "at": timestamp(at),
            "mfa": { "verified": method != "password" || rng.below(3) > 0,
                     "method": if method == "passkey" { "webauthn" } else { "totp" } },
        }),
    )?;
    session.insert(
        "prefs",
        &json!({
            "theme": *rng.pick(&["dark", "light", "system"]),
            "lang": *rng.pick(&LANGS),
            "tz": *rng.pick(&["Europe/Berlin", "Europe/London", "America/New_York"]),
        }),
    )?;
    let seed: Vec<u8> = (0..16).map(|_| rng.below(256) as u8).collect();
    session.insert_value("csrf_seed", Value::Bytes(seed))
}

/// A guest's first page view, from a desktop browser.
fn visit(session: &mut Session, rng: &mut Rng) -> sessdb::Result<()> {
    let (agent, _) = *rng.pick(&DEVICES[..3]);
    session.set_remote_addr(Some(&address(rng)))?;
    session.set_user_agent(Some(agent))?;
    session.insert("locale", *rng.pick(&LANGS))
}

/// One request: a page view, sometimes a cart change or a flash message.
fn request(
    session: &mut Session,
    who: &Who,
    step: i64,
    cart: &mut Vec<serde_json::Value>,
    rng: &mut Rng,
) -> sessdb::Result<()> {
    if let Who::ApiClient(_) = who {
        session.insert("calls", &step)?;
        return Ok(());
    }
    session.insert("page_views", &step)?;
    session.insert("last_path", *rng.pick(&PATHS))?;
    if rng.below(3) == 0 {
        let (sku, price) = *rng.pick(&PRODUCTS);
        cart.push(json!({ "sku": sku, "qty": 1 + rng.below(3), "price_cents": price }));
        session.insert("cart", &json!({ "currency": "EUR", "items": cart }))?;
    }
    if matches!(who, Who::User { .. }) {
        let flash = match rng.below(6) {
            0 => json!({ "level": "info", "text": "Your settings were saved." }),
            1 => json!({ "level": "warning", "text": "Your card expires next month." }),
            _ => serde_json::Value::Null,
        };
        session.insert("flash", &flash)?;
    }
    Ok(())
}

fn report(ctx: &mut Ctx<'_>, store: &Store, made: &Made) -> anyhow::Result<()> {
    let admin: &dyn Admin = store;
    let stats = admin.stats()?;
    let soon = count(
        admin,
        ListQuery {
            status: Status::Live,
            expiring_within: Some(SOON),
            ..ListQuery::default()
        },
    )?;
    let out = &mut *ctx.out;
    writeln!(out, "created a demo database at {}", ctx.db.display())?;
    let total = made.user_sessions + made.guests + made.api_clients;
    writeln!(
        out,
        "  {}: {} with {}, {}, {}",
        plural(total, "session"),
        plural(made.users, "user"),
        plural(made.user_sessions, "session"),
        plural(made.guests, "guest"),
        plural(made.api_clients, "API client"),
    )?;
    writeln!(
        out,
        "  {} live ({} expiring within 15m), {} expired and not yet purged",
        stats.live, soon, stats.expired
    )?;
    if let Some(t) = ctx.as_of {
        writeln!(out, "  as of {}", timestamp(t))?;
    }
    // The commands below then need no --db (and stay short enough to read).
    let this = Invocation::detect();
    let mut cmd = this.command.clone();
    if let Some(t) = ctx.as_of {
        cmd.push_str(&format!(" --as-of {}", timestamp(t)));
    }
    writeln!(out)?;
    match &this.why {
        None => writeln!(out, "try next:")?,
        Some(why) => writeln!(out, "try next ({why}):")?,
    }
    if ctx.db != Path::new(crate::config::DEFAULT_DB) {
        writeln!(
            out,
            "  export SESSCTL_DB={}",
            shell_quote(&ctx.db.display().to_string())
        )?;
    }
    let mut tries = vec![
        ("stats", "counts and size"),
        ("list --limit 10", "sessions, soonest expiry first"),
        (
            "list --principal alice@example.com",
            "every session of one user",
        ),
        (
            "list --expiring-within 15m",
            "who is about to be logged out",
        ),
        ("list --expired", "expired sessions not yet purged"),
    ];
    let show;
    if made.api_clients > 0 {
        show = format!("show {}", SessionId::named(API_CLIENTS[0].0).handle());
        tries.push((show.as_str(), "one session (an API client's cached login)"));
    }
    tries.extend([
        (
            "invalidate --principal alice@example.com",
            "log a user out everywhere",
        ),
        (
            "purge --expired --dry-run",
            "what the cron job would remove",
        ),
        ("export --out backup.jsonl", "a backup (created owner-only)"),
        ("check", "verify records and indexes"),
        ("tui", "browse it interactively"),
    ]);
    let width = tries.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (args, what) in tries {
        writeln!(out, "  {cmd} {args:width$}  # {what}")?;
    }
    Ok(())
}

/// How the user who ran this demo runs this sessctl again: `sessctl` when that name on PATH
/// is this binary, its path otherwise. `cargo run -p sessctl -- demo`, the README's first
/// command, leaves it in `target/release/`, on no PATH, and a `sessctl` suggested then would
/// be "command not found" (or another, older binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The command to type: `sessctl`, or this binary's path, shell-quoted.
    pub command: String,
    /// Why it is not `sessctl`, with the way to put it on PATH.
    pub why: Option<String>,
}

impl Invocation {
    /// For this process.
    pub fn detect() -> Invocation {
        match std::env::current_exe() {
            Ok(exe) => Invocation::of(
                &exe,
                std::env::var_os("PATH").as_deref(),
                std::env::current_dir().ok().as_deref(),
            ),
            // Nothing better to say than the name.
            Err(_) => Invocation {
                command: "sessctl".into(),
                why: None,
            },
        }
    }

    /// For the binary `exe`, given the PATH variable and the current folder.
    fn of(exe: &Path, path_var: Option<&std::ffi::OsStr>, cwd: Option<&Path>) -> Invocation {
        let on_path = path_var.and_then(|p| {
            std::env::split_paths(p)
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(|dir| dir.join("sessctl"))
                .find(|candidate| is_executable(candidate))
        });
        let same = |other: &Path| match (fs::canonicalize(other), fs::canonicalize(exe)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let why = match on_path {
            Some(found) if same(&found) => {
                return Invocation {
                    command: "sessctl".into(),
                    why: None,
                }
            }
            Some(found) => format!(
                "the sessctl on your PATH, {}, is another binary, so these run this one",
                found.display()
            ),
            None => "sessctl is not on your PATH, so these run it where it is; `cargo install \
                     --path cli` in the sessdb checkout puts it there"
                .into(),
        };
        // Relative to the current folder when it is inside it: `target/release/sessctl`.
        let shown = match cwd.and_then(|cwd| exe.strip_prefix(cwd).ok()) {
            Some(rel) if rel.components().count() == 1 => Path::new(".").join(rel),
            Some(rel) => rel.to_path_buf(),
            None => exe.to_path_buf(),
        };
        Invocation {
            command: shell_quote(&shown.display().to_string()),
            why: Some(why),
        }
    }
}

/// Whether `path` is a file that someone may execute, as a shell looking through PATH asks.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn count(admin: &dyn Admin, mut query: ListQuery) -> sessdb::Result<u64> {
    let mut n = 0;
    query.limit = 1000;
    loop {
        let page = admin.list(&query)?;
        n += page.sessions.len() as u64;
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(n),
        }
    }
}

fn address(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=5 => format!("203.0.113.{}", 1 + rng.below(254)),
        6..=7 => format!("198.51.100.{}", 1 + rng.below(254)),
        _ => format!(
            "2001:db8:{:x}::{:x}",
            rng.below(0xffff),
            1 + rng.below(0xfffe)
        ),
    }
}

fn capitalize(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

fn shell_quote(text: &str) -> String {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_./-:@%+=,".contains(&b));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// SplitMix64: a fixed seed makes every demo the same apart from its random session ids.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A number in `lo..hi` (or `lo` when the range is empty).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let width = u64::try_from(hi - lo).unwrap_or(0);
        lo + i64::try_from(self.below(width)).unwrap_or(0)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_names_the_binary_that_ran_unless_path_finds_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let release = dir.path().join("target/release");
        fs::create_dir_all(&release).expect("mkdir");
        let exe = release.join("sessctl");
        fs::write(&exe, "").expect("write");
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod");
        let not_on_path = Invocation::of(&exe, None, Some(dir.path()));
        assert_eq!(not_on_path.command, "target/release/sessctl");
        assert!(not_on_path
            .why
            .is_some_and(|w| w.contains("cargo install --path cli")));
        // Outside the current folder: the whole path.
        let elsewhere = Invocation::of(&exe, Some("".as_ref()), Some(Path::new("/nowhere")));
        assert_eq!(elsewhere.command, exe.display().to_string());
        // In the current folder itself: ./sessctl, which a shell does not look up in PATH.
        let here = Invocation::of(&exe, None, Some(&release));
        assert_eq!(here.command, "./sessctl");
        // On PATH (through a link, as a package manager installs it): plain sessctl.
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).expect("mkdir");
        std::os::unix::fs::symlink(&exe, bin.join("sessctl")).expect("symlink");
        let path = std::env::join_paths([Path::new("/no/such/dir"), &bin]).expect("join");
        let installed = Invocation::of(&exe, Some(&path), Some(dir.path()));
        assert_eq!(
            installed,
            Invocation {
                command: "sessctl".into(),
                why: None
            }
        );
        // Another sessctl first on PATH: this one, by its path.
        let other = dir.path().join("old");
        fs::create_dir(&other).expect("mkdir");
        fs::write(other.join("sessctl"), "").expect("write");
        fs::set_permissions(other.join("sessctl"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = std::env::join_paths([&other, &bin]).expect("join");
        let shadowed = Invocation::of(&exe, Some(&path), Some(dir.path()));
        assert_eq!(shadowed.command, "target/release/sessctl");
        assert!(shadowed
            .why
            .is_some_and(|w| w.contains("is another binary")));
    }

    #[test]
    fn quoting_leaves_plain_paths_alone() {
        assert_eq!(shell_quote("/tmp/demo.sessdb"), "/tmp/demo.sessdb");
        assert_eq!(shell_quote("my db"), "'my db'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn histories_stay_consistent() {
        let mut rng = Rng(1);
        let base = 1_700_000_000_000;
        for who in [Who::Guest, Who::ApiClient(0)] {
            for _ in 0..1000 {
                let h = history(&mut rng, base, &who);
                assert!(h.created <= h.last_access && h.last_access <= base, "{h:?}");
                assert!(h.requests >= 1);
            }
        }
    }
}
