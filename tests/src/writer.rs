//! The operations of the crash tests' writers (`src/bin/crash_writer.rs`,
//! `src/bin/power_writer.rs`): creates, updates (some of which move the expiry entry), rotates,
//! invalidates and purges sessions, and reports each operation before it starts (`op …`) and
//! once the store acknowledged it (`ok …`) through `say`.

use std::io;
use std::path::Path;
use std::time::Duration;

use sessdb::{Builder, Durability, Session, SessionId, Store};

/// Principals the sessions belong to (`-` is none).
const PRINCIPALS: [&str; 4] = ["alice", "bob", "carol", "-"];

struct Live {
    id: SessionId,
    n: u64,
}

fn principal(p: &str) -> Option<&str> {
    (p != "-").then_some(p)
}

/// Opens the store at `path` with `durability` and runs `ops` operations picked by `seed`,
/// telling `say` each one (`op …`) and its acknowledgement (`ok …`). The store is closed
/// when it returns. With `blobs`, the first created session and one in 20 after it hold
/// 600 KB (the store allows up
/// to 1 MiB), which sled writes
/// to a file of its own (a blob: above a quarter of its 2 MiB segment), and so does every
/// later rewrite of the tree node that holds it; otherwise those hold 20 KB.
///
/// # Errors
/// The store's errors, and those of `say`.
pub fn run(
    path: &Path,
    durability: Durability,
    seed: u64,
    ops: u64,
    blobs: bool,
    mut say: impl FnMut(String) -> io::Result<()>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let store = Store::builder()
        .durability(durability)
        .idle_timeout(Duration::from_secs(3600))
        .max_session_bytes(if blobs {
            1 << 20
        } else {
            Builder::DEFAULT_MAX_SESSION_BYTES
        })
        .open(path)?;
    let mut live: Vec<Live> = Vec::new();
    let mut made_big = false;
    for _ in 0..ops {
        let pick = rng.usize(..100);
        match pick {
            _ if live.is_empty() || pick < 25 => {
                let p = PRINCIPALS[rng.usize(..PRINCIPALS.len())];
                let big = rng.u8(..20) == 0 || (blobs && !made_big);
                made_big |= big;
                let pad = if big {
                    if blobs {
                        600_000
                    } else {
                        20_000
                    }
                } else {
                    rng.usize(..2_000)
                };
                let mut s = store.create();
                s.set_principal(principal(p))?;
                s.insert("n", &0u64)?;
                s.insert("pad", &"p".repeat(pad))?;
                say(format!("op create {} {p}", s.id()))?;
                s.save()?;
                say("ok".into())?;
                live.push(Live { id: *s.id(), n: 0 });
            }
            25..=54 => {
                let i = rng.usize(..live.len());
                let n = live[i].n + 1;
                say(format!("op update {} {n}", live[i].id))?;
                let mut s = load(&store, &live[i].id)?;
                s.insert("n", &n)?;
                // Half the time the idle timeout changes, moving the deadline by 30 minutes
                // (further than an expiry entry may lag), so the save moves the entry: the
                // three-write path (new entry, record, old entry) is killed mid-way too, not
                // only the record-alone save.
                let idle = if rng.bool() { 3600 } else { 1800 };
                s.set_idle_timeout(Duration::from_secs(idle));
                s.save()?;
                say("ok".into())?;
                live[i].n = n;
            }
            55..=69 => {
                let i = rng.usize(..live.len());
                say(format!("op rotate {}", live[i].id))?;
                let mut s = load(&store, &live[i].id)?;
                s.cycle_id()?;
                say(format!("ok {}", s.id()))?;
                live[i].id = *s.id();
            }
            70..=79 => {
                let i = rng.usize(..live.len());
                say(format!("op invalidate {}", live[i].id))?;
                let removed = store.invalidate(&live[i].id)?;
                say(format!("ok {removed}"))?;
                live.swap_remove(i);
            }
            80..=84 => {
                let p = PRINCIPALS[rng.usize(..3)];
                say(format!("op invalidate_principal {p}"))?;
                let removed = store.invalidate_principal(p)?;
                say(format!("ok {removed}"))?;
                let mut kept = Vec::new();
                for l in live.drain(..) {
                    if store.load(&l.id)?.is_some() {
                        kept.push(l);
                    }
                }
                live = kept;
            }
            85..=94 => {
                let p = PRINCIPALS[rng.usize(..PRINCIPALS.len())];
                let mut s = store.create();
                s.set_principal(principal(p))?;
                // An idle timeout of zero: expired as soon as it is written.
                s.set_idle_timeout(Duration::ZERO);
                say(format!("op create_expired {} {p}", s.id()))?;
                s.save()?;
                say("ok".into())?;
            }
            _ => {
                say("op purge".into())?;
                let removed = store.purge_expired()?;
                say(format!("ok {removed}"))?;
            }
        }
    }
    Ok(())
}

fn load(store: &Store, id: &SessionId) -> Result<Session, Box<dyn std::error::Error>> {
    store
        .load(id)?
        .ok_or_else(|| format!("session {:?} vanished", id.handle()).into())
}

/// Opens the store at `path` in immediate mode and runs `threads` savers at once, `ops`
/// operations each, on sessions of their own: creates (the first, and one in 10 after it,
/// 600 KB: sled blobs) and updates of the counter `n`. Tells `say` each operation before it
/// starts (`op T create ID`, `op T update ID N`) and once acknowledged (`ok T`), T being the
/// saver's number: the group commit serves several savers at once.
///
/// # Errors
/// The store's errors, and those of `say`.
pub fn run_concurrent(
    path: &Path,
    seed: u64,
    ops: u64,
    threads: u64,
    say: impl Fn(String) -> io::Result<()> + Sync,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::builder()
        .durability(Durability::Immediate)
        .idle_timeout(Duration::from_secs(3600))
        .max_session_bytes(1 << 20)
        .open(path)?;
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (store, say, failed) = (&store, &say, &failed);
            scope.spawn(move || {
                let saver = || -> Result<(), Box<dyn std::error::Error>> {
                    let mut rng = fastrand::Rng::with_seed(seed ^ t.wrapping_mul(0x9e37_79b9));
                    let mut mine: Vec<Live> = Vec::new();
                    for i in 0..ops {
                        if mine.is_empty() || rng.u8(..10) < 3 {
                            let pad = if i == 0 || rng.u8(..10) == 0 {
                                600_000
                            } else {
                                rng.usize(..2_000)
                            };
                            let mut s = store.create();
                            s.insert("n", &0u64)?;
                            s.insert("pad", &"p".repeat(pad))?;
                            say(format!("op {t} create {}", s.id()))?;
                            s.save()?;
                            say(format!("ok {t}"))?;
                            mine.push(Live { id: *s.id(), n: 0 });
                        } else {
                            let i = rng.usize(..mine.len());
                            let n = mine[i].n + 1;
                            say(format!("op {t} update {} {n}", mine[i].id))?;
                            let mut s = load(store, &mine[i].id)?;
                            s.insert("n", &n)?;
                            s.save()?;
                            say(format!("ok {t}"))?;
                            mine[i].n = n;
                        }
                    }
                    Ok(())
                };
                if let Err(e) = saver() {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
