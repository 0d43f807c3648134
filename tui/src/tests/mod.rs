//! Tests of the whole crate in three layers (STYLE.md): keys → state with no drawing
//! (`state`), one widget into a `Buffer` (`widgets`), and whole screens on a `TestBackend` as
//! insta snapshots (`screens`). They share the stores built here, whose `ManualClock` makes
//! every relative time on screen the same on every run.

mod screens;
mod state;
mod widgets;

use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sessdb::{Admin, ManualClock, SessionId, Store};
use tempfile::TempDir;

use crate::app::{Action, App};
use crate::Options;

/// 2023-11-14T22:13:20Z.
pub(crate) const T0_MS: i64 = 1_700_000_000_000;

/// A store in a temporary folder with a clock the test moves.
pub(crate) struct Fixture {
    pub(crate) store: Store,
    pub(crate) clock: ManualClock,
    _dir: TempDir,
}

/// What one test session holds.
#[derive(Default)]
pub(crate) struct Spec<'a> {
    pub(crate) name: &'a str,
    pub(crate) principal: Option<&'a str>,
    pub(crate) label: Option<&'a str>,
    pub(crate) addr: Option<&'a str>,
    pub(crate) idle: Option<Duration>,
    pub(crate) data: &'a [(&'a str, serde_json::Value)],
}

impl Fixture {
    /// An empty store at `T0_MS`.
    pub(crate) fn empty() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::at_ms(T0_MS);
        let store = Store::builder()
            .clock(clock.clone())
            .open(dir.path().join("sessions.sessdb"))
            .expect("open store");
        Fixture {
            store,
            clock,
            _dir: dir,
        }
    }

    /// Saves a session whose id derives from `spec.name`, so its handle (and with it the
    /// order of sessions that tie on a sort key) is the same on every run.
    pub(crate) fn add(&self, spec: Spec<'_>) -> sessdb::Handle {
        let mut s = self.store.create_with_id(SessionId::named(spec.name));
        s.set_principal(spec.principal).expect("principal");
        s.set_label(spec.label).expect("label");
        s.set_remote_addr(spec.addr).expect("addr");
        if let Some(idle) = spec.idle {
            s.set_idle_timeout(idle);
        }
        for (k, v) in spec.data {
            s.insert(k, v).expect("insert");
        }
        s.save().expect("save");
        s.handle()
    }

    pub(crate) fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Seven sessions of five principals and one anonymous; at the fixture's time, 22:27:20 UTC
    /// (14 minutes after the first was created), carol's expires in 20 s and dave's has expired.
    pub(crate) fn demo() -> Fixture {
        let f = Fixture::empty();
        f.add(Spec {
            name: "alice-web",
            principal: Some("alice"),
            label: Some("web"),
            addr: Some("203.0.113.7"),
            data: &[
                ("cart", serde_json::json!([1, 2, 3])),
                ("theme", serde_json::json!("dark")),
            ],
            ..Spec::default()
        });
        f.advance(120);
        f.add(Spec {
            name: "bob-web",
            principal: Some("bob"),
            label: Some("web"),
            addr: Some("198.51.100.4"),
            data: &[("csrf", serde_json::json!("k2Jx9"))],
            ..Spec::default()
        });
        f.advance(180);
        f.add(Spec {
            name: "guest",
            label: Some("guest"),
            addr: Some("192.0.2.10"),
            ..Spec::default()
        });
        f.advance(300);
        f.add(Spec {
            name: "alice-mobile",
            principal: Some("alice"),
            label: Some("mobile"),
            addr: Some("203.0.113.99"),
            data: &[("device", serde_json::json!({"os": "android", "push": true}))],
            ..Spec::default()
        });
        f.advance(60);
        f.add(Spec {
            name: "carol",
            principal: Some("carol"),
            addr: Some("2001:db8::1"),
            idle: Some(Duration::from_secs(200)),
            ..Spec::default()
        });
        f.advance(60);
        f.add(Spec {
            name: "billing",
            principal: Some("svc-billing"),
            label: Some("api:billing"),
            addr: Some("10.0.0.5"),
            idle: Some(Duration::from_secs(8 * 3600)),
            ..Spec::default()
        });
        f.advance(30);
        f.add(Spec {
            name: "dave",
            principal: Some("dave"),
            label: Some("web"),
            addr: Some("198.51.100.77"),
            idle: Some(Duration::from_secs(60)),
            ..Spec::default()
        });
        f.advance(90);
        f
    }

    /// `n` sessions `user0000`… ten seconds apart (the expiry index's resolution, so the
    /// index order is the creation order), each of its own principal, all live for 20 hours.
    pub(crate) fn many(n: usize) -> Fixture {
        let f = Fixture::empty();
        for i in 0..n {
            let name = format!("user{i:04}");
            f.add(Spec {
                name: &name,
                principal: Some(&name),
                label: Some("web"),
                idle: Some(Duration::from_secs(20 * 3600)),
                ..Spec::default()
            });
            f.advance(10);
        }
        f
    }
}

/// An app started on `admin` in a terminal of `width`×`height`, stats loaded, as the event
/// loop leaves it before the first key.
pub(crate) fn started(admin: &dyn Admin, width: u16, height: u16) -> App {
    let mut app = App::new(&Options {
        title: "/srv/app/sessions.sessdb".into(),
        refresh: Duration::from_secs(2),
        no_color: false,
    });
    app.update(admin, Action::Resize(width, height));
    app.start(admin);
    app.load_stats(admin);
    app
}

pub(crate) fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub(crate) fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// Feeds keys through the key map and `update`, as the event loop does.
pub(crate) fn press(app: &mut App, admin: &dyn Admin, keys: &[KeyEvent]) {
    for k in keys {
        let filtered = app.listing.view().filter.is_active();
        if let Some(action) = crate::keys::action(&app.mode, filtered, *k) {
            app.update(admin, action);
        }
    }
}

/// Types `text` as separate key presses.
pub(crate) fn type_text(app: &mut App, admin: &dyn Admin, text: &str) {
    let keys: Vec<KeyEvent> = text.chars().map(ch).collect();
    press(app, admin, &keys);
}

/// The principals of the loaded rows, in order.
pub(crate) fn principals(app: &App) -> Vec<String> {
    app.listing
        .rows()
        .iter()
        .map(|s| s.principal.clone().unwrap_or_else(|| "-".into()))
        .collect()
}
