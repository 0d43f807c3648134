//! Heap allocations of a request's session calls, counted with dhat, on the benchmark's session
//! (docs/BENCHMARKS.md, "What the benchmark changed in the store"):
//!
//! ```text
//! cargo run --release -p sessdb-bench --example allocations
//! ```
//!
//! Saves one session with the bench's content in a temporary store, then counts the heap
//! blocks allocated by a load, a load and `get::<String>("csrf")`, the bench's modification (a
//! `get` and two `insert`s), the save that follows it, and a whole-map read (`data()`). Each
//! figure is the median of 5 rounds (the first rounds warm sled's cache and thread-locals).

use anyhow::{Context as _, Result};
use sessdb::{ManualClock, Store};

#[path = "../src/data.rs"]
#[allow(dead_code)]
mod data;

use data::Plan;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Heap blocks allocated by `f`.
fn blocks<T>(f: impl FnOnce() -> Result<T>) -> Result<(u64, T)> {
    let before = dhat::HeapStats::get().total_blocks;
    let out = f()?;
    Ok((dhat::HeapStats::get().total_blocks - before, out))
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let plan = Plan::for_examples(1, 10);
    let clock = ManualClock::at_ms(plan.t0);
    let store = Store::builder()
        .clock(clock.clone())
        .open(dir.path().join("db"))?;
    let content = plan.content(0);
    let mut s = plan.sessdb_session(&store, 0, &content)?;
    s.save()?;
    let id = *s.id();
    drop(s);

    let _profiler = dhat::Profiler::builder().testing().build();
    let mut rows: [(&str, Vec<u64>); 5] = [
        ("load", Vec::new()),
        ("load + get csrf", Vec::new()),
        ("the modification: get + 2 inserts", Vec::new()),
        ("the save after it", Vec::new()),
        ("whole-map read (data())", Vec::new()),
    ];
    for round in 0..5u64 {
        clock.advance(std::time::Duration::from_secs(1));
        let (n, _) = blocks(|| store.load(&id)?.context("the session is missing"))?;
        rows[0].1.push(n);
        let (n, csrf) = blocks(|| {
            let s = store.load(&id)?.context("the session is missing")?;
            Ok(s.get::<String>("csrf")?)
        })?;
        anyhow::ensure!(csrf.is_some(), "the session has no csrf token");
        rows[1].1.push(n);
        let mut s = store.load(&id)?.context("the session is missing")?;
        let (n, ()) = blocks(|| {
            let visits: u64 = s.get("visits")?.unwrap_or(0);
            s.insert("visits", &(visits + 1))?;
            s.insert("last_page", &format!("/page/{round}"))?;
            Ok(())
        })?;
        rows[2].1.push(n);
        let (n, ()) = blocks(|| Ok(s.save()?))?;
        rows[3].1.push(n);
        let s = store.load(&id)?.context("the session is missing")?;
        let (n, len) = blocks(|| Ok(s.data().len()))?;
        anyhow::ensure!(len > 0, "the session has no data");
        rows[4].1.push(n);
    }
    println!("| calls | heap blocks (median of 5) |");
    println!("|---|---:|");
    for (name, mut counts) in rows {
        counts.sort_unstable();
        println!("| {name} | {} |", counts[counts.len() / 2]);
    }
    Ok(())
}
