//! End to end: the real `sessctl tui` in a real terminal (a detached tmux session of fixed
//! size) on a demo database. It filters to a principal, invalidates one session with `d`/`y`,
//! quits with `q`, then checks with `sessctl show` that the session is gone and that the
//! terminal was restored (no alternate screen, cooked mode, the shell prompt back). As of a
//! future time (`--as-of`), the same keys are refused on screen and nothing is written.
//!
//! Skipped, saying so, when tmux is not installed (CI installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How often, and how many times, the screen is read while waiting for something on it.
const POLL: Duration = Duration::from_millis(50);
const ATTEMPTS: u32 = 600;

/// `sessctl --db DB args…`, with the tool's own environment variables cleared.
fn sessctl(bin: &Path, db: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .env_remove("SESSCTL_DB")
        .env_remove("SESSCTL_SOCKET")
        .env_remove("NO_COLOR")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run sessctl")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "sessctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A tmux server of our own (its own socket, no user config), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server for the test `name`: the tests of this file run at once, each on its own.
    fn start(name: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!("sessdb-e2e-{}-{name}", std::process::id()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            &w,
            "-y",
            &h,
            "sh",
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", "e2e", "-l", text]);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    /// Presses a named key (`Enter`, `Escape`).
    fn press(&self, key: &str) {
        let out = self.run(&["send-keys", "-t", "e2e", key]);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "e2e"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alternate_screen_on(&self) -> bool {
        let out = self.run(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// Asks the pane's shell whether the terminal is back in canonical mode with echo (raw
    /// mode off), and checks it is.
    fn assert_cooked_mode(&self) {
        self.type_text("stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo :stty");
        self.press("Enter");
        let screen = self.wait_for("stty's answer", |s| {
            s.lines()
                .any(|l| l.ends_with(":stty") && !l.contains("grep"))
        });
        let modes = screen
            .lines()
            .find(|l| l.ends_with(":stty") && !l.contains("grep"))
            .expect("stty line");
        assert_eq!(modes, "icanon echo :stty");
    }

    /// Polls the screen until `found` says yes, a bounded number of times.
    fn wait_for(&self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        for _ in 0..ATTEMPTS {
            screen = self.screen();
            if found(&screen) {
                return screen;
            }
            std::thread::sleep(POLL);
        }
        panic!("timed out waiting for {what}; the screen:\n{screen}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// sessctl and a demo database in a temporary folder (kept while the folder lives), or `None`
/// when tmux is not installed.
fn demo_database() -> Option<(PathBuf, tempfile::TempDir, PathBuf)> {
    if !tmux_installed() {
        eprintln!("SKIPPED tui_tmux: tmux is not installed (CI installs it)");
        return None;
    }
    let bin = sessdb_e2e::sessctl_bin();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("sessions.sessdb");
    let demo = sessctl(&bin, &db, &["demo"]);
    assert!(demo.status.success(), "sessctl demo: {demo:?}");
    Some((bin, dir, db))
}

#[test]
fn tui_filters_invalidates_one_session_and_restores_the_terminal() {
    let Some((bin, _dir, db)) = demo_database() else {
        return;
    };

    // A principal with at least two live sessions, none about to expire during the test.
    let live = json_lines(&sessctl(&bin, &db, &["list", "--limit", "0", "--json"]));
    let soon = json_lines(&sessctl(
        &bin,
        &db,
        &["list", "--limit", "0", "--json", "--expiring-within", "10m"],
    ));
    let mut count: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &live {
        if let Some(p) = s["principal"].as_str() {
            let handle = s["handle"].as_str().expect("handle").to_string();
            count.entry(p.to_string()).or_default().push(handle);
        }
    }
    for s in &soon {
        if let Some(p) = s["principal"].as_str() {
            count.remove(p);
        }
    }
    let (principal, handles) = count
        .into_iter()
        .find(|(_, handles)| handles.len() >= 2)
        .expect("the demo has a principal with two sessions that do not expire soon");

    let tmux = Tmux::start("invalidate", 100, 30);
    tmux.wait_for("the shell prompt", |s| !s.trim().is_empty());
    tmux.type_text(&format!(
        "env -u SESSCTL_DB -u NO_COLOR {} --db {} tui; echo \"sessctl exited $?\"",
        bin.display(),
        db.display()
    ));
    tmux.press("Enter");
    tmux.wait_for("the session table", |s| s.contains("live sessions"));
    assert!(
        tmux.alternate_screen_on(),
        "the TUI runs on the alternate screen"
    );

    tmux.type_text(&format!("/p:{principal}"));
    tmux.press("Enter");
    let filter_note = format!("filter p:{principal}");
    let rows = handles.len();
    let screen = tmux.wait_for("the filtered table", |s| {
        s.contains(&filter_note) && s.contains(&format!(" 1–{rows} "))
    });
    let listed = screen.lines().filter(|l| l.contains(&principal)).count();
    assert!(
        listed >= rows,
        "{rows} sessions of {principal} on:\n{screen}"
    );

    tmux.type_text("d");
    let screen = tmux.wait_for("the confirmation", |s| s.contains("Confirm"));
    let question = screen
        .lines()
        .find_map(|l| {
            let at = l.find("Invalidate session ")?;
            Some(l[at..].to_string())
        })
        .expect("the dialog names the session");
    assert!(question.contains(&format!("of {principal}?")), "{question}");
    let short = question["Invalidate session ".len()..][..8].to_string();
    let handle = handles
        .iter()
        .find(|h| h.starts_with(&short))
        .expect("the dialog names a session of the principal")
        .clone();

    tmux.type_text("y");
    tmux.wait_for("the confirmation message", |s| {
        s.contains(&format!("Invalidated session {short}"))
    });
    tmux.type_text("q");
    let screen = tmux.wait_for("the shell after quitting", |s| {
        s.contains("sessctl exited 0")
    });
    assert!(
        !tmux.alternate_screen_on(),
        "alternate screen left:\n{screen}"
    );
    assert!(
        !screen.contains("live sessions"),
        "the TUI is gone from the screen:\n{screen}"
    );

    // Raw mode is off again: the terminal is back in canonical mode with echo.
    tmux.assert_cooked_mode();

    // The session is gone (exit 1: not found); the principal's others are not.
    let show = sessctl(&bin, &db, &["show", &handle]);
    assert_eq!(
        show.status.code(),
        Some(1),
        "sessctl show {handle}: {show:?}"
    );
    for other in handles.iter().filter(|h| **h != handle) {
        let show = sessctl(&bin, &db, &["show", other]);
        assert_eq!(
            show.status.code(),
            Some(0),
            "sessctl show {other}: {show:?}"
        );
    }
}

/// The live sessions and the expired ones not yet purged, as `sessctl stats` counts them now.
/// Time moves sessions from one to the other; only a write changes their sum.
fn live_and_expired(bin: &Path, db: &Path) -> (u64, u64) {
    let stats = json_lines(&sessctl(bin, db, &["stats", "--json"]));
    let count = |key: &str| stats[0][key].as_u64().expect("a count");
    (count("live"), count("expired"))
}

#[test]
fn tui_as_of_a_future_time_refuses_to_invalidate_or_purge_and_writes_nothing() {
    let Some((bin, _dir, db)) = demo_database() else {
        return;
    };

    // A session live as of the --as-of time, five minutes from now (later than now however
    // slowly the TUI starts), and for the whole test.
    let handles = |out: &Output| -> BTreeSet<String> {
        json_lines(out)
            .iter()
            .map(|s| s["handle"].as_str().expect("handle").to_string())
            .collect()
    };
    let listed = handles(&sessctl(&bin, &db, &["list", "--limit", "0", "--json"]));
    let soon = handles(&sessctl(
        &bin,
        &db,
        &["list", "--limit", "0", "--json", "--expiring-within", "10m"],
    ));
    let handle = listed
        .difference(&soon)
        .next()
        .expect("the demo has sessions that do not expire soon")
        .clone();
    let (live_before, expired) = live_and_expired(&bin, &db);
    assert!(
        expired > 0,
        "the demo leaves expired sessions a purge would remove"
    );
    let as_of = (OffsetDateTime::now_utc() + Duration::from_secs(5 * 60))
        .replace_nanosecond(0)
        .expect("whole seconds")
        .format(&Rfc3339)
        .expect("RFC 3339");

    let tmux = Tmux::start("as-of", 160, 30);
    tmux.wait_for("the shell prompt", |s| !s.trim().is_empty());
    // No auto-refresh during the test: the screen changes only with the keys. (A refusal would
    // stay through refreshes anyway: an action's error lasts until the next key.)
    tmux.type_text(&format!(
        "env -u SESSCTL_DB -u NO_COLOR {} --db {} --as-of {as_of} tui --refresh 3600; \
         echo \"sessctl exited $?\"",
        bin.display(),
        db.display()
    ));
    tmux.press("Enter");
    tmux.wait_for("the session table", |s| s.contains("live sessions"));

    tmux.type_text(&format!("/{handle}"));
    tmux.press("Enter");
    let short = &handle[..8];
    tmux.wait_for("the table filtered to one session", |s| {
        s.contains(&format!("filter {handle}"))
            && s.contains(" 1–1 ")
            && s.lines().any(|l| l.contains(&format!("│{short} ")))
    });

    // d, and y as if a dialog had asked: refused, saying why, and nothing asked.
    let refused = format!("Read-only: --as-of {as_of} is later than now");
    tmux.type_text("d");
    let screen = tmux.wait_for("the refusal of d", |s| s.contains(&refused));
    assert!(!screen.contains("Confirm"), "no dialog:\n{screen}");
    tmux.type_text("y");
    // p (purge) too, once the status line says something else (a turns auto-refresh off).
    tmux.type_text("a");
    tmux.wait_for("the auto-refresh note", |s| s.contains("Auto-refresh off"));
    tmux.type_text("p");
    let screen = tmux.wait_for("the refusal of p", |s| s.contains(&refused));
    assert!(!screen.contains("Confirm"), "no dialog:\n{screen}");
    tmux.type_text("y");

    tmux.type_text("q");
    tmux.wait_for("the shell after quitting", |s| {
        s.contains("sessctl exited 0")
    });
    let show = sessctl(&bin, &db, &["show", &handle]);
    assert_eq!(
        show.status.code(),
        Some(0),
        "sessctl show {handle}: {show:?}"
    );
    let (live_after, expired_after) = live_and_expired(&bin, &db);
    assert_eq!(
        live_after + expired_after,
        live_before + expired,
        "nothing invalidated or purged"
    );
}

/// SIGTERM (`timeout`, `kill`, a service stop) quits the TUI as `q` does: the terminal is given
/// back, out of the alternate screen, the cursor shown, in cooked mode. Before, the process
/// died in raw mode on the alternate screen with the cursor hidden (found by a second
/// reviewer).
#[test]
fn tui_quits_on_sigterm_and_restores_the_terminal() {
    let Some((bin, dir, db)) = demo_database() else {
        return;
    };
    let pid_file = dir.path().join("tui.pid");
    let tmux = Tmux::start("sigterm", 120, 30);
    // `exec` keeps the pid the shell wrote.
    tmux.type_text(&format!(
        "sh -c 'echo $$ > {}; exec {} --db {} tui'; echo exit=$?",
        pid_file.display(),
        bin.display(),
        db.display()
    ));
    tmux.press("Enter");
    tmux.wait_for("the TUI", |s| s.contains("live sessions"));
    assert!(tmux.alternate_screen_on());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the pid")
        .trim()
        .parse()
        .expect("a pid");
    // SAFETY: a signal to the process this test started, by its pid.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    let screen = tmux.wait_for("the TUI to end", |s| s.lines().any(|l| l == "exit=0"));
    assert!(
        !tmux.alternate_screen_on(),
        "alternate screen left:\n{screen}"
    );
    let cursor = tmux.run(&["display-message", "-p", "-t", "e2e", "#{cursor_flag}"]);
    assert_eq!(
        String::from_utf8_lossy(&cursor.stdout).trim(),
        "1",
        "cursor shown"
    );
    tmux.assert_cooked_mode();
}
