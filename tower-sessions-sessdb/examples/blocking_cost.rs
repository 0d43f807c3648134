//! Measures what the crate docs cite under "Blocking": how long sessdb's synchronous calls
//! take (how long they would hold an async worker thread), what running them on tokio's
//! blocking pool adds, and what `with_inline_calls` leaves of it.
//!
//! ```text
//! cargo run --release -p tower-sessions-sessdb --example blocking_cost [-- SESSIONS]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sessdb::{Durability, Store};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::SessionStore;
use tower_sessions_sessdb::{session_id, SessdbStore};

const OPS: usize = 20_000;
const FSYNC_OPS: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 100_000,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("db"))?;
    let adapter = Arc::new(SessdbStore::new(store.clone()).with_principal_key("user_id"));
    let inline = SessdbStore::new(store.clone())
        .with_principal_key("user_id")
        .with_inline_calls();
    let expiry = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let mut records = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let mut r = Record {
            id: Id::default(),
            data: serde_json::from_value(json!({
                "user_id": format!("user{}", i % 1000),
                "counter": i,
                "cart": [1, 2, 3],
                "csrf": "0123456789abcdef0123456789abcdef",
            }))?,
            expiry_date: expiry,
        };
        rt.block_on(adapter.create(&mut r))?;
        records.push(r);
    }
    store.flush()?;
    println!("{sessions} sessions; {OPS} operations each; times per operation");
    println!(
        "| operation | direct call | through SessdbStore (spawn_blocking) | with_inline_calls |"
    );
    println!("|---|---|---|---|");

    let pick = |i: usize| &records[(i * 7919) % records.len()];
    let direct_load = per_op(OPS, |i| {
        store
            .load(&session_id(&pick(i).id))
            .map(|s| assert!(s.is_some()))
    })?;
    let load = |adapter: &SessdbStore| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..OPS {
                assert!(adapter.load(&pick(i).id).await?.is_some());
            }
            Ok::<_, Box<dyn std::error::Error>>(start.elapsed() / OPS as u32)
        })
    };
    let adapter_load = load(&adapter)?;
    let inline_load = load(&inline)?;
    println!("| load | {direct_load:?} | {adapter_load:?} | {inline_load:?} |");
    let hop = rt.block_on(async {
        let start = Instant::now();
        for _ in 0..OPS {
            tokio::task::spawn_blocking(|| ()).await?;
        }
        Ok::<_, tokio::task::JoinError>(start.elapsed() / OPS as u32)
    })?;
    println!("| nothing (the blocking-pool round trip alone) | - | {hop:?} | - |");

    let direct_save = per_op(OPS, |i| {
        let mut s = store.load(&session_id(&pick(i).id))?.expect("live");
        s.insert("counter", &(i + 1))?;
        s.save()
    })?;
    let save = |adapter: &SessdbStore, offset: usize| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..OPS {
                let mut r = pick(i).clone();
                r.data.insert("counter".into(), json!(i + offset));
                adapter.save(&r).await?;
            }
            Ok::<_, Box<dyn std::error::Error>>(start.elapsed() / OPS as u32)
        })
    };
    let adapter_save = save(&adapter, 2)?;
    let inline_save = save(&inline, 3)?;
    println!(
        "| save (periodic durability) | {direct_save:?} | {adapter_save:?} | {inline_save:?} |"
    );
    drop(adapter);
    drop(inline);
    drop(store);

    let dir = tempfile::tempdir()?;
    let durable = Store::builder()
        .durability(Durability::Immediate)
        .open(dir.path().join("db"))?;
    let durable_save = per_op(FSYNC_OPS, |i| {
        let mut s = durable.create();
        s.insert("counter", &i)?;
        s.save()
    })?;
    println!(
        "| save (immediate durability) | {durable_save:?} | (same, plus the above) | (as spawn_blocking) |"
    );
    Ok(())
}

fn per_op(
    ops: usize,
    mut f: impl FnMut(usize) -> sessdb::Result<()>,
) -> Result<Duration, sessdb::Error> {
    let start = Instant::now();
    for i in 0..ops {
        f(i)?;
    }
    Ok(start.elapsed() / ops as u32)
}
