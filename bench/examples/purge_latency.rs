//! What a purge costs the application around it (docs/BENCHMARKS.md, "What the benchmark changed
//! in the store"): loads of live sessions on one thread while another purges.
//!
//! ```text
//! cargo run --release -p sessdb-bench --example purge_latency -- 100000 DIR
//! ```
//!
//! Populates a store of N sessions as the bench does (one in ten expires before the purge),
//! loads every live session once so that the timed part reads from sled's cache, then purges
//! while a second thread loads live sessions in a fixed order until the purge returns. Prints
//! the purge's rate and the loads' count and latencies. DIR must not exist yet and should be on
//! the disk to measure (not tmpfs).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use sessdb::{ManualClock, SessionId, Store};

#[path = "../src/data.rs"]
#[allow(dead_code)]
mod data;

use data::Plan;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [n, dir] = args.as_slice() else {
        bail!("usage: purge_latency SESSIONS DIR");
    };
    let n: usize = n
        .parse()
        .with_context(|| format!("SESSIONS: not a number: {n}"))?;
    let dir = PathBuf::from(dir);
    ensure!(!dir.exists(), "{} exists; give a new folder", dir.display());
    let plan = Plan::for_examples(n, 10);

    let clock = ManualClock::at_ms(plan.t0);
    let store = Store::builder().clock(clock.clone()).open(&dir)?;
    let mut live: Vec<SessionId> = Vec::with_capacity(n);
    for i in 0..n {
        clock.set_ms(plan.created(i));
        let mut s = plan.sessdb_session(&store, i, &plan.content(i))?;
        s.save()?;
        if !plan.is_victim(i) {
            live.push(*s.id());
        }
    }
    store.flush()?;
    ensure!(
        !live.is_empty(),
        "no live session to load: give more SESSIONS"
    );
    clock.set_ms(plan.t_purge());
    for id in &live {
        ensure!(store.load(id)?.is_some(), "a live session did not load");
    }

    let done = AtomicBool::new(false);
    let (removed, secs, mut lat) = std::thread::scope(|scope| -> Result<_> {
        let reader = scope.spawn(|| -> Result<Vec<u64>> {
            let mut lat = Vec::new();
            // A stride through the live sessions, so that consecutive loads meet other pages.
            for i in (0..).map(|i: usize| i.wrapping_mul(7919) % live.len()) {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                let s = store.load(&live[i])?;
                lat.push(t.elapsed().as_nanos() as u64);
                ensure!(s.is_some(), "a live session did not load during the purge");
            }
            Ok(lat)
        });
        let t = Instant::now();
        let removed = store.purge_expired();
        let secs = t.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let lat = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the loading thread panicked"))??;
        Ok((removed?, secs, lat))
    })?;
    ensure!(!lat.is_empty(), "no load finished during the purge");
    ensure!(
        removed == plan.victims() as u64,
        "purge removed {removed} sessions, {} expected",
        plan.victims()
    );
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "purge: {removed} expired of {n} in {secs:.3} s = {:.0}/s",
        removed as f64 / secs
    );
    println!(
        "loads during the purge: {}; p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        lat.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    Ok(())
}
