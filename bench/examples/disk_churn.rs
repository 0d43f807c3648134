//! How large a store's files grow while its sessions are used, against the same store fresh
//! (docs/BENCHMARKS.md, "Missed targets", disk: "A store in use").
//!
//! ```text
//! cargo run --release -p sessdb-bench --example disk_churn -- DIR [SESSIONS] [ROUNDS] [STEP_MS] [--compact]
//! ```
//!
//! Creates SESSIONS (default 100,000) sessions in a new store at DIR (removed first), each with
//! a principal (three sessions a user) and about 300 B of data, and prints the bytes on disk a
//! session after the final flush. Then ROUNDS (default 12) times, every session once, in
//! order, on a manual clock that moves STEP_MS (default 50) milliseconds a request:
//! - 5 in 10 change their data and save;
//! - 3 in 10 save unchanged (a touch, when due);
//! - 1 in 10 rotate their id (`cycle_id`, a login);
//! - 1 in 10 are invalidated, and a new session of a random user takes their place.
//!
//! So the number of sessions stays SESSIONS. After each round it flushes and measures the bytes
//! on disk a session. With the default step a round moves each session's deadline by more than
//! the expiry entry's lag, so every save also moves its expiry entry, as for a user coming back
//! after a pause; with a step of 1 ms only logins and rotations write index entries.
//!
//! The peer, in the same run: raw sled with the same three trees, the same requests and about
//! the same bytes (records of sessdb's average size, the same index keys), one plain write per
//! change, as sessdb's writes reach sled. It shows what sled's log does with these writes
//! whoever makes them. The table: bytes a session for each after every round, each as a
//! multiple of its fresh size, and sessdb's bytes as a multiple of raw sled's.
//!
//! With `--compact`, the churned sessdb store is then taken back to its fresh size two ways,
//! each from the same churned files: `Store::compact`, and the procedure the README gave before
//! it, an export of the live sessions and an import into a new folder (the swap of the folders
//! left out). A second table gives each one's time and bytes a session after.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use sessdb::{ManualClock, Session, SessionId, Store};

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let compact = args.iter().any(|a| a == "--compact");
    args.retain(|a| a != "--compact");
    let Some(dir) = args.first().map(PathBuf::from) else {
        bail!("usage: disk_churn DIR [SESSIONS] [ROUNDS] [STEP_MS] [--compact]");
    };
    let number = |i: usize, default: u64, what: &str| -> Result<u64> {
        args.get(i).map_or(Ok(default), |a| {
            a.parse()
                .with_context(|| format!("{what}: not a number: {a}"))
        })
    };
    let run = Run {
        sessions: usize::try_from(number(1, 100_000, "SESSIONS")?)?,
        rounds: number(2, 12, "ROUNDS")?,
        step: Duration::from_millis(number(3, 50, "STEP_MS")?),
    };
    if run.sessions < 3 {
        bail!("SESSIONS: at least 3");
    }
    let (ours, record_bytes, segment) = sessdb_run(&run, &dir.join("sessdb"))?;
    let compaction = if compact {
        Some(compaction(&dir.join("sessdb"), &dir.join("copies"))?)
    } else {
        None
    };
    let theirs = raw_sled_run(&run, &dir.join("sled"), record_bytes)?;
    println!(
        "{} sessions, step {} ms a request, segment size {segment} KiB, sessdb's records {record_bytes} B on average",
        run.sessions,
        run.step.as_millis(),
    );
    println!();
    println!(
        "| round | sessdb B/session | × fresh | raw sled B/session | × fresh | sessdb ÷ raw sled |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (round, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let label = if round == 0 {
            "fresh".to_string()
        } else {
            round.to_string()
        };
        println!(
            "| {label} | {} | {:.2} | {} | {:.2} | {:.2} |",
            a / run.sessions as u64,
            *a as f64 / ours[0] as f64,
            b / run.sessions as u64,
            *b as f64 / theirs[0] as f64,
            *a as f64 / *b as f64
        );
    }
    if let Some(c) = compaction {
        println!();
        c.print(run.sessions as u64, ours[0]);
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

/// The churned store taken back to its fresh size two ways, each from the same churned files:
/// `Store::compact`, and its peer, the procedure the README gave before it (an export of the
/// live sessions, then an import into a new folder; the swap of folders left out).
struct Compaction {
    before: u64,
    compact: (Duration, u64),
    export_import: (Duration, u64),
}

fn compaction(dir: &Path, copies: &Path) -> Result<Compaction> {
    fresh_dir(copies)?;
    std::fs::create_dir_all(copies)?;
    let before = files_bytes(dir)?;
    // A day after the run began: every session is live (they live for IDLE), as at its end.
    let clock = ManualClock::at_ms(i64::try_from(T0_MS + 86_400_000)?);
    let open = || Store::builder().clock(clock.clone()).open(dir);

    let original = copies.join("original");
    let copied = copies.join("export-import");
    let file = copies.join("export.jsonl");
    let store = open()?;
    let started = Instant::now();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        sessdb::Admin::export(&store, &mut out, false)?;
        std::io::Write::flush(&mut out)?;
    }
    let imported = Store::open(&copied)?;
    let mut input = std::io::BufReader::new(std::fs::File::open(&file)?);
    sessdb::Admin::import(&imported, &mut input, &sessdb::ImportOptions::default())?;
    imported.flush()?;
    drop(imported);
    let export_import = (started.elapsed(), files_bytes(&copied)?);
    drop(store);

    // Compaction replaces the folder: a copy of the churned files goes first, so that both
    // start from the same bytes.
    copy_folder(dir, &original)?;
    let store = open()?;
    let started = Instant::now();
    let report = store.compact(&sessdb::CompactOptions::default())?;
    let compact = (started.elapsed(), report.bytes_after);
    std::fs::remove_dir_all(dir)?;
    std::fs::rename(&original, dir)?;
    Ok(Compaction {
        before,
        compact,
        export_import,
    })
}

impl Compaction {
    fn print(&self, sessions: u64, fresh: u64) {
        println!("| taken back to fresh size | time | B/session after | × fresh |");
        println!("|---|---:|---:|---:|");
        println!(
            "| churned, before | – | {} | {:.2} |",
            self.before / sessions,
            self.before as f64 / fresh as f64
        );
        for (what, (took, after)) in [
            ("`Store::compact`", self.compact),
            ("export + import into a new folder", self.export_import),
        ] {
            println!(
                "| {what} | {:.2} s | {} | {:.2} |",
                took.as_secs_f64(),
                after / sessions,
                after as f64 / fresh as f64
            );
        }
    }
}

fn copy_folder(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_folder(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

struct Run {
    sessions: usize,
    rounds: u64,
    step: Duration,
}

/// What a request does to its session, drawn the same way for both stores.
enum Request {
    Rotate,
    Replace { user: u64 },
    Change { item: u64 },
    Touch,
}

impl Rng {
    fn request(&mut self, users: u64) -> Request {
        match self.below(10) {
            0 => Request::Rotate,
            1 => Request::Replace {
                user: self.below(users),
            },
            2..=6 => Request::Change {
                item: self.below(100),
            },
            _ => Request::Touch,
        }
    }
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// sessdb's bytes on disk after populating and after each round; its average record size; its
/// segment size in KiB.
fn sessdb_run(run: &Run, dir: &Path) -> Result<(Vec<u64>, usize, u64)> {
    fresh_dir(dir)?;
    let clock = ManualClock::at_ms(i64::try_from(T0_MS)?);
    let store = Store::builder()
        .clock(clock.clone())
        // Long enough that nothing expires during the run: the count stays SESSIONS.
        .idle_timeout(IDLE)
        .absolute_lifetime(IDLE * 2)
        .open(dir)?;
    let users = run.sessions as u64 / 3;
    let mut rng = Rng(SEED);
    let mut ids = Vec::with_capacity(run.sessions);
    for i in 0..run.sessions {
        ids.push(login(&store, i as u64 % users)?);
    }
    store.flush()?;
    let mut sizes = vec![files_bytes(dir)?];
    let sample = sessdb::Admin::list(
        &store,
        &sessdb::ListQuery {
            limit: 1000,
            ..sessdb::ListQuery::default()
        },
    )?;
    let record_bytes =
        sample.sessions.iter().map(|s| s.size).sum::<usize>() / sample.sessions.len().max(1);
    for round in 1..=run.rounds {
        for id in ids.iter_mut() {
            clock.advance(run.step);
            let mut s = store.load(id)?.context("a session expired")?;
            match rng.request(users) {
                Request::Rotate => {
                    s.cycle_id()?;
                    *id = *s.id();
                }
                Request::Replace { user } => {
                    s.invalidate()?;
                    *id = login(&store, user)?;
                }
                Request::Change { item } => {
                    s.insert("cart", &[item, round])?;
                    s.save()?;
                }
                Request::Touch => s.save()?,
            }
        }
        store.flush()?;
        sizes.push(files_bytes(dir)?);
    }
    Ok((sizes, record_bytes, segment_kib(dir)))
}

/// One raw sled session: its key, the expiry entry's key and when it was placed, its user and
/// the principals entry's key.
struct RawSession {
    key: [u8; 16],
    expiry: Vec<u8>,
    placed: u64,
    user: u64,
    principal: Vec<u8>,
}

impl RawSession {
    /// Removes the record, then its entries, as sessdb invalidates.
    fn remove(
        &self,
        records: &sled::Tree,
        expiry: &sled::Tree,
        principals: &sled::Tree,
    ) -> sled::Result<()> {
        records.remove(self.key)?;
        expiry.remove(&self.expiry)?;
        principals.remove(&self.principal)?;
        Ok(())
    }
}

/// Raw sled's bytes on disk after populating and after each round, with records of
/// `record_bytes`.
fn raw_sled_run(run: &Run, dir: &Path, record_bytes: usize) -> Result<Vec<u64>> {
    fresh_dir(dir)?;
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(sessdb::Builder::DEFAULT_CACHE_BYTES)
        .segment_size(sessdb::Builder::NEW_STORE_SEGMENT_BYTES)
        .flush_every_ms(Some(500))
        .open()?;
    let records = db.open_tree("sessions")?;
    let expiry = db.open_tree("expiry")?;
    let principals = db.open_tree("principals")?;
    let users = run.sessions as u64 / 3;
    let mut rng = Rng(SEED);
    let mut keys = Rng(!SEED);
    let mut now = T0_MS;
    let step = u64::try_from(run.step.as_millis())?;
    let idle = u64::try_from(IDLE.as_millis())?;
    let value = |n: u64| {
        let mut v = vec![0x5a; record_bytes];
        let tag = n.to_le_bytes();
        let len = tag.len().min(v.len());
        v[..len].copy_from_slice(&tag[..len]);
        v
    };
    let expiry_key = |at: u64, key: &[u8; 16]| {
        let mut k = (at - at % 10_000).to_be_bytes().to_vec();
        k.extend_from_slice(key);
        k
    };
    let login = |user: u64, now: u64, keys: &mut Rng| -> sled::Result<RawSession> {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&keys.next().to_le_bytes());
        key[8..].copy_from_slice(&keys.next().to_le_bytes());
        let session = RawSession {
            key,
            expiry: expiry_key(now + idle, &key),
            placed: now,
            user,
            principal: [format!("user{user}@example.com").as_bytes(), &[0], &key].concat(),
        };
        expiry.insert(&session.expiry, &[])?;
        principals.insert(&session.principal, &[])?;
        records.insert(key, value(now))?;
        Ok(session)
    };
    let mut sessions = Vec::with_capacity(run.sessions);
    for i in 0..run.sessions {
        sessions.push(login(i as u64 % users, now, &mut keys)?);
    }
    db.flush()?;
    let mut sizes = vec![files_bytes(dir)?];
    for _ in 1..=run.rounds {
        for s in sessions.iter_mut() {
            now += step;
            match rng.request(users) {
                Request::Rotate => {
                    // New entries and record first, then the old ones go, as sessdb rotates.
                    let rotated = login(s.user, now, &mut keys)?;
                    s.remove(&records, &expiry, &principals)?;
                    *s = rotated;
                }
                Request::Replace { user } => {
                    s.remove(&records, &expiry, &principals)?;
                    *s = login(user, now, &mut keys)?;
                }
                Request::Change { .. } | Request::Touch => {
                    // The record rewritten; the expiry entry moved once it lags too far.
                    if now - s.placed > LAG_MS {
                        let moved = expiry_key(now + idle, &s.key);
                        expiry.insert(&moved, &[])?;
                        records.insert(s.key, value(now))?;
                        expiry.remove(&s.expiry)?;
                        s.expiry = moved;
                        s.placed = now;
                    } else {
                        records.insert(s.key, value(now))?;
                    }
                }
            }
        }
        db.flush()?;
        sizes.push(files_bytes(dir)?);
    }
    Ok(sizes)
}

/// A new session of `user`, saved: its id.
fn login(store: &Store, user: u64) -> Result<SessionId> {
    let mut s: Session = store.create();
    s.set_principal(Some(&format!("user{user}@example.com")))?;
    s.insert("csrf", &format!("{:032x}", user.wrapping_mul(0x9E37_79B9)))?;
    s.insert("cart", &[1, 2, 3])?;
    s.insert("prefs", &"x".repeat(200))?;
    s.save()?;
    Ok(*s.id())
}

/// The bytes of the files in `dir` and its folders, as `du --apparent-size` counts them.
fn files_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            files_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The segment size sled recorded in the store's `conf`, in KiB (0 if it cannot be read).
fn segment_kib(dir: &Path) -> u64 {
    // sled ends the file with a binary checksum.
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|conf| {
            String::from_utf8_lossy(&conf)
                .lines()
                .find_map(|l| l.strip_prefix("segment_size: "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .map_or(0, |bytes| bytes / 1024)
}

/// xorshift64: the same requests in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The start of the manual clock, and the seed of the requests: the same in every run.
const T0_MS: u64 = 1_700_000_000_000;
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// Long enough that nothing expires during a run.
const IDLE: Duration = Duration::from_secs(365 * 86_400);
/// How far sessdb lets an expiry entry lag behind its deadline before a save moves it.
const LAG_MS: u64 = 5 * 60 * 1000;
