//! The concurrent rows of the engines' own APIs: the same operation on one thread and on several,
//! in one process, over the quarters of one sample (one thread, N, N, one), so both meet the
//! same store and cache. Rates are over wall time (the threads' start to the last one's end, plus
//! a flush where the workload writes), latencies are the operations'.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::data::Plan;
use crate::measure::{process_cpu, Measurement, Timer};

/// What every concurrent row's note adds (in the report's notes, once).
pub const NOTE: &str = "The rows \"…, 1 thread\" and \"…, N threads\" run in one process per \
engine after the other workloads: one thread, N threads, N threads and one thread take the \
four quarters of one sample in that order, each thread on its own contiguous part; rates over \
wall time, including the flush after each quarter for the writing workloads; latencies are the \
operations'. \"cores busy\": the process's CPU time (every thread's, the engine's background \
threads included) over that wall time. The N-thread row also gives each quarter's rate.";
/// Loads of live sessions.
pub const LOAD: &str = "load hit";
/// A request that changes its session: load, change two values, save.
pub const LOAD_SAVE: &str = "load + save modified";
/// The access orders of the two workloads' samples (see `Plan::live_order`).
const LOAD_SALT: u64 = 11;
const LOAD_SAVE_SALT: u64 = 12;
/// The round of `Plan::modify` the saves write.
pub const ROUND: u64 = 5;

/// The thread count of the concurrent rows: the machine's cores, and at least 2.
pub fn count() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
        .max(2)
}

/// The name of a concurrent row.
pub fn workload(base: &str, threads: usize) -> String {
    if threads == 1 {
        format!("{base}, 1 thread")
    } else {
        format!("{base}, {threads} threads")
    }
}

/// The base workload and thread count of a concurrent row's name.
pub fn parse(workload: &str) -> Option<(&str, usize)> {
    let (base, rest) = workload.rsplit_once(", ")?;
    let threads = rest
        .strip_suffix(" threads")
        .or_else(|| rest.strip_suffix(" thread"))?
        .parse()
        .ok()?;
    [LOAD, LOAD_SAVE].contains(&base).then_some((base, threads))
}

/// The sample of a concurrent workload: `plan.sample` live sessions in the salt's order.
fn sample(plan: &Plan, salt: u64) -> Vec<usize> {
    plan.live_order(salt)
        .into_iter()
        .take(plan.sample)
        .collect()
}

/// Runs `op` over the sample of the workload `base` ([`LOAD`] or [`LOAD_SAVE`]), prepared by
/// `prepare` before any timing: the first and last quarters on one thread, the second and third
/// on [`count`] threads (contiguous parts). Each thread has its own context (a connection, say),
/// made by `context` before the first quarter and kept throughout, as a pool keeps its
/// connections. `flush` runs after each quarter and its time counts. Emits the two measurements.
#[allow(clippy::too_many_arguments)]
pub fn measure<P, C>(
    base: &str,
    engine: &str,
    plan: &Plan,
    prepare: impl Fn(usize) -> P,
    context: impl Fn() -> Result<C>,
    op: impl Fn(&mut C, &P) -> Result<()> + Sync,
    flush: impl Fn() -> Result<()>,
    note: &str,
) -> Result<()>
where
    P: Sync,
    C: Send,
{
    let threads = count();
    let salt = if base == LOAD {
        LOAD_SALT
    } else {
        LOAD_SAVE_SALT
    };
    let sample = sample(plan, salt);
    let mut contexts = (0..threads)
        .map(|_| context())
        .collect::<Result<Vec<C>>>()?;
    // (timer, wall, CPU) of one thread and of `threads` threads.
    let mut totals: [(Timer, Duration, Duration); 2] = Default::default();
    let mut quarters = Vec::with_capacity(4);
    for k in 0..4 {
        let part = &sample[k * sample.len() / 4..(k + 1) * sample.len() / 4];
        let inputs: Vec<P> = part.iter().map(|&i| prepare(i)).collect();
        // One thread, N, N, one: a drift over the four quarters (the cache filling, the log
        // growing) falls on both alike.
        let several = k == 1 || k == 2;
        let n = if several { threads } else { 1 };
        let (cpu, start) = (process_cpu(), Instant::now());
        let timer = on_threads(&inputs, &mut contexts[..n], &op)?;
        flush()?;
        let took = start.elapsed();
        let total = &mut totals[usize::from(several)];
        total.0.merge(timer);
        total.1 += took;
        total.2 += process_cpu().saturating_sub(cpu);
        quarters.push(inputs.len() as f64 / took.as_secs_f64().max(1e-9));
    }
    for ((timer, wall, cpu), n) in totals.into_iter().zip([1, threads]) {
        let mut m: Measurement =
            timer.finish(&workload(base, n), engine, plan.n, Some(wall.as_secs_f64()));
        m.cpu_secs = Some(cpu.as_secs_f64());
        if n > 1 {
            m.quarters = quarters.clone();
        }
        m.note = Some(note.to_string());
        m.emit();
    }
    Ok(())
}

/// `op` over `inputs` split into as many contiguous parts as `contexts`, one thread each.
fn on_threads<P: Sync, C: Send>(
    inputs: &[P],
    contexts: &mut [C],
    op: &(impl Fn(&mut C, &P) -> Result<()> + Sync),
) -> Result<Timer> {
    let per = inputs.len().div_ceil(contexts.len()).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .chunks(per)
            .zip(contexts.iter_mut())
            .map(|(part, ctx)| {
                scope.spawn(move || -> Result<Timer> {
                    let mut timer = Timer::with_capacity(part.len());
                    for input in part {
                        timer.time(|| op(ctx, input))?;
                    }
                    Ok(timer)
                })
            })
            .collect();
        let mut all = Timer::default();
        for h in handles {
            all.merge(h.join().map_err(|_| anyhow!("a thread panicked"))??);
        }
        Ok(all)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(workload(LOAD, 1), "load hit, 1 thread");
        assert_eq!(parse(&workload(LOAD, 1)), Some((LOAD, 1)));
        assert_eq!(parse(&workload(LOAD_SAVE, 8)), Some((LOAD_SAVE, 8)));
        assert_eq!(parse("durable save, 8 savers"), None);
        assert_eq!(parse("load hit, cache_bytes 16 MiB"), None);
    }
}
